//! Bearer tokens in, tickets out: verifying the long-lived credential and
//! issuing the single-use ticket that stands in for it.

use crate::audit::Client;
use crate::auth::{AuthError, Claims, Credential, TopicPattern};
use crate::client_ip::IpBinding;
use crate::db::AuditAction;
use crate::ticket::{Grant, IssueError, Ticket};

use super::{Hub, ticket_entry};

/// Most topics one ticket may carry.
pub const MAX_TOPICS_PER_TICKET: usize = 64;

/// Why a bearer token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum BearerError {
    /// The verifier refused it (or could not check it).
    #[error(transparent)]
    Verify(#[from] AuthError),
    /// A revocation of its subject, or of its `jti`, covers it.
    #[error("the bearer token has been revoked")]
    Revoked,
}

/// Why no ticket was issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueTicketError {
    /// More than [`MAX_TOPICS_PER_TICKET`] topics were asked for.
    #[error("a ticket carries at most {MAX_TOPICS_PER_TICKET} topics")]
    TooManyTopics,
    /// No topics were asked for, and the subject has no own topic.
    #[error("the subject cannot form the topic user/<sub>; name the topics explicitly")]
    NoOwnTopic,
    /// The token may not subscribe to this pattern.
    #[error("the token may not subscribe to {0:?}")]
    Forbidden(String),
    /// The ticket store refused or failed.
    #[error(transparent)]
    Store(#[from] IssueError),
}

impl Hub {
    /// Fetches remote verification keys ahead of the first request.
    pub async fn warm_up_keys(&self) -> Result<(), AuthError> {
        self.verifier.warm_up().await
    }

    /// Whether requests' cookies authenticate them (through the auth webhook).
    pub fn forwards_cookies(&self) -> bool {
        self.verifier.forwards_cookies()
    }

    /// Verifies a credential and checks its claims against the revocations
    /// (every time: a cached answer is no way around a revocation).
    pub async fn authenticate(&self, credential: &Credential) -> Result<Claims, BearerError> {
        let claims = self.verifier.verify(credential).await?;
        if self.revocations.refuses(&claims, self.clock.now()) {
            return Err(BearerError::Revoked);
        }
        Ok(claims)
    }

    /// Issues a ticket for `claims` to receive `topics` (empty: the
    /// subject's own topic).
    #[tracing::instrument(skip_all, fields(sub = %claims.sub))]
    pub async fn issue_ticket(
        &self,
        claims: &Claims,
        topics: Vec<TopicPattern>,
        client: &Client,
    ) -> Result<Ticket, IssueTicketError> {
        let topics = permitted_topics(claims, topics)?;
        let grant = Grant {
            sub: claims.sub.clone(),
            topics,
            bearer_exp: claims.exp,
            bearer_iat: claims.iat,
            bearer_jti: claims.jti.clone(),
            client_ip: match self.ip_binding {
                IpBinding::Off => None,
                IpBinding::Exact | IpBinding::Prefix => client.ip_addr(),
            },
        };
        let ticket = self.tickets.issue(grant, self.clock.now()).await?;
        self.metrics.tickets_issued.inc();
        tracing::info!(topics = ?ticket.topics(), "ticket issued");
        self.audit
            .record(ticket_entry(
                AuditAction::TicketIssued,
                ticket.issued_at(),
                &ticket,
                client,
            ))
            .await;
        Ok(ticket)
    }
}

/// The topics a ticket of `claims` carries: `requested` without repeats, each
/// permitted; or the subject's own topic when none is requested.
fn permitted_topics(
    claims: &Claims,
    requested: Vec<TopicPattern>,
) -> Result<Vec<TopicPattern>, IssueTicketError> {
    if requested.len() > MAX_TOPICS_PER_TICKET {
        return Err(IssueTicketError::TooManyTopics);
    }
    if requested.is_empty() {
        let own = claims.own_topic().ok_or(IssueTicketError::NoOwnTopic)?;
        return Ok(vec![TopicPattern::Exact(own)]);
    }
    let mut topics = Vec::with_capacity(requested.len());
    for pattern in requested {
        if !claims.may_subscribe(&pattern) {
            return Err(IssueTicketError::Forbidden(pattern.to_string()));
        }
        if !topics.contains(&pattern) {
            topics.push(pattern);
        }
    }
    Ok(topics)
}
