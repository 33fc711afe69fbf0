//! A ticket in, a live stream out: redemption, the caps on open streams, the
//! revocation check, the subscription and the replay of what a resuming
//! client missed.

use std::time::Duration;

use uuid::Uuid;

use crate::audit::{Client, entry, fingerprint};
use crate::auth::TopicPattern;
use crate::broker::{BrokerError, Subscription};
use crate::db::{AuditAction, DbError, Replay, ReplayBudget};
use crate::metrics::{RejectLabels, StreamRefusalLabels};
use crate::revocation::{RegisterError, Registration};
use crate::ticket::{RedeemError, Ticket, TicketId};

use super::{Hub, ticket_entry};

/// Most events one resume replays; a client further behind gets the newest
/// ones and `event: reset`.
pub const MAX_REPLAY: usize = 10_000;
/// Most bytes of event data one resume replays (the newest that fit, after
/// `event: reset`): a resume never holds more than this in memory.
pub const MAX_REPLAY_BYTES: usize = 4 * 1024 * 1024;

/// The `Retry-After` of a stream refused at a cap: streams end at the
/// client's will, so no time is known when one frees up.
pub const STREAM_CAP_RETRY: Duration = Duration::from_secs(5);

/// A stream whose ticket was just redeemed: the subscription is already live.
#[derive(Debug)]
pub struct OpenedStream {
    /// The redeemed ticket.
    pub ticket: Ticket,
    /// Events for the ticket's topics.
    pub subscription: Subscription,
    /// What history holds after the resume point, when the client resumes.
    pub replay: Option<Replay>,
    /// When the subscription went live.
    pub subscribed_at: chrono::DateTime<chrono::Utc>,
    /// Lists the stream under its subject and its token's `jti`, so a
    /// revocation can close it.
    pub registration: Registration,
}

/// Why no stream was opened. Every refusal of a presented ticket spends it.
#[derive(Debug, thiserror::Error)]
pub enum OpenStreamError {
    /// Missing, malformed, unknown, used, expired, or covered by a
    /// revocation: the client is told nothing more (the reason is logged).
    #[error("the ticket was refused: {0}")]
    Refused(&'static str),
    /// The subject holds its maximum of open streams on this instance.
    #[error("the subject holds its maximum of open streams")]
    TooManyStreams,
    /// This instance holds its maximum of open streams.
    #[error("this instance holds its maximum of open streams")]
    InstanceFull,
    /// The ticket store cannot be reached.
    #[error("the ticket cannot be redeemed")]
    Tickets(#[source] RedeemError),
    /// The broker cannot subscribe.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The history cannot be read for the replay.
    #[error("the history cannot be read")]
    History(#[source] DbError),
}

impl Hub {
    /// Redeems the ticket in `token`, subscribes to its topics and, when the
    /// client resumes after the event `resume_after`, reads what history
    /// holds since.
    #[tracing::instrument(skip_all)]
    pub async fn open_stream(
        &self,
        token: Option<&str>,
        resume_after: Option<Uuid>,
        client: &Client,
    ) -> Result<OpenedStream, OpenStreamError> {
        let refuse = |reason: &'static str, error: OpenStreamError| {
            self.metrics
                .tickets_rejected
                .get_or_create(&RejectLabels { reason })
                .inc();
            tracing::info!(reason, "ticket refused");
            let mut record = entry(AuditAction::TicketRejected, self.clock.now(), client);
            record.reason = Some(reason.to_owned());
            record.ticket_fingerprint = token.map(fingerprint);
            // Counted per client IP, reason and minute: a flood of bad
            // tickets costs a counter, not a row each.
            self.audit.reject(record);
            error
        };
        let reject = |reason: &'static str| refuse(reason, OpenStreamError::Refused(reason));
        let id = token
            .and_then(TicketId::parse)
            .ok_or_else(|| reject("malformed"))?;
        let ticket = match self.tickets.redeem(id, self.clock.now()).await {
            Ok(ticket) => ticket,
            Err(RedeemError::Unknown) => return Err(reject("unknown")),
            Err(RedeemError::Expired) => return Err(reject("expired")),
            Err(unavailable) => return Err(OpenStreamError::Tickets(unavailable)),
        };
        // Spent already: a ticket presented from elsewhere is not tried twice.
        if let Some(bound) = ticket.client_ip() {
            let admitted = client
                .ip_addr()
                .is_some_and(|presented| self.ip_binding.admits(bound, presented));
            if !admitted {
                return Err(reject("client_mismatch"));
            }
        }
        // Listed before the revocation check: a revocation that lands after
        // the check finds the stream and closes it.
        let caps = self.namespaces.stream_caps(ticket.topics());
        let registration = match self.streams_by_subject.register(
            ticket.sub().clone(),
            ticket.bearer_jti().map(Into::into),
            &caps,
        ) {
            Ok(registration) => registration,
            Err(full) => {
                let (cap, reason, error) = match full {
                    RegisterError::SubjectFull => (
                        "per_subject",
                        "too_many_streams",
                        OpenStreamError::TooManyStreams,
                    ),
                    RegisterError::InstanceFull => {
                        ("instance", "streams_full", OpenStreamError::InstanceFull)
                    }
                };
                self.metrics
                    .streams_refused
                    .get_or_create(&StreamRefusalLabels { cap })
                    .inc();
                return Err(refuse(reason, error));
            }
        };
        // Whenever the ticket was issued: its token may have been revoked
        // between the token's check and the ticket's issue.
        if self.revocations.covers(ticket.sub(), ticket.bearer_iat())
            || self.revocations.predates(ticket.sub(), ticket.issued_at())
            || self
                .revocations
                .covers_jti(ticket.bearer_jti(), self.clock.now())
        {
            return Err(reject("revoked"));
        }
        // Subscribe before reading history: an event published meanwhile is
        // then in one or both, never in neither.
        let subscription = self.broker.subscribe(ticket.topics()).await?;
        let subscribed_at = self.clock.now();
        let replay = match resume_after {
            None => None,
            Some(after) => Some(self.replay(ticket.topics(), after).await?),
        };
        self.metrics.tickets_redeemed.inc();
        tracing::info!(sub = %ticket.sub(), topics = ?ticket.topics(), resumed = replay.is_some(), "ticket redeemed, stream open");
        self.audit
            .record(ticket_entry(
                AuditAction::TicketRedeemed,
                subscribed_at,
                &ticket,
                client,
            ))
            .await;
        Ok(OpenedStream {
            ticket,
            subscription,
            replay,
            subscribed_at,
            registration,
        })
    }

    async fn replay(
        &self,
        topics: &[TopicPattern],
        after: Uuid,
    ) -> Result<Replay, OpenStreamError> {
        let replay = if self.history.is_none() {
            Replay {
                events: Vec::new(),
                gap: true,
            }
        } else {
            let budget = ReplayBudget {
                events: MAX_REPLAY,
                bytes: MAX_REPLAY_BYTES,
            };
            self.db
                .replay(topics, after, budget)
                .await
                .map_err(OpenStreamError::History)?
        };
        if replay.gap {
            self.metrics.replays_reset.inc();
        }
        Ok(replay)
    }
}
