//! The hub: what the HTTP handlers ask for, in domain terms. It wires the
//! verifier, the ticket store and the broker together; handlers only
//! extract, call one method here, and map the result.

use std::sync::Arc;
use std::time::Duration;

use bytestring::ByteString;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::audit::{AuditLog, Client, entry, fingerprint};
use crate::auth::{Claims, Subject, Topic, TopicPattern, Verifier};
use crate::broker::{
    Broker, DEFAULT_EVENT_TYPE, Event, Notice, RESERVED_EVENT_TYPES, Subscription,
    is_well_formed_event_type,
};
use crate::clock::SharedClock;
use crate::db::{
    AuditAction, AuditQuery, AuditRecord, BatchWriter, Database, Replay, ReplayBudget, Revocation,
    StoredEvent,
};
use crate::http::error::ApiError;
use crate::metrics::{Metrics, RejectLabels, StreamRefusalLabels};
use crate::revocation::{RegisterError, Registration, Revocations, StreamRegistry};
use crate::ticket::{Grant, RedeemError, Ticket, TicketId, TicketStore};

pub use crate::broker::{MAX_EVENT_DATA, MAX_EVENT_TYPE_LEN};

/// Most topics one ticket may carry.
pub const MAX_TOPICS_PER_TICKET: usize = 64;
/// Most events one resume replays; a client further behind gets the newest
/// ones and `event: reset`.
pub const MAX_REPLAY: usize = 10_000;
/// Most bytes of event data one resume replays (the newest that fit, after
/// `event: reset`): a resume never holds more than this in memory.
pub const MAX_REPLAY_BYTES: usize = 4 * 1024 * 1024;

/// The `Retry-After` of a stream refused at a cap: streams end at the
/// client's will, so no time is known when one frees up.
pub const STREAM_CAP_RETRY: Duration = Duration::from_secs(5);

/// Stream settings the HTTP layer needs.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    /// Interval of `: ping` on idle streams.
    pub heartbeat: Duration,
    /// The `retry:` sent first on every stream.
    pub retry: Duration,
    /// A stream whose client takes no bytes for this long is closed.
    pub write_timeout: Duration,
}

/// Body of `POST /sse-token`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketRequest {
    /// Topics and patterns to receive; empty means `user/<sub>`.
    #[serde(default)]
    pub topics: Vec<String>,
}

/// Body of `POST /publish`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The topic to publish to.
    pub topic: String,
    /// Event type; `message` when absent (`null` is refused: the spec says string).
    #[serde(default, deserialize_with = "string_not_null")]
    pub event: Option<String>,
    /// Any JSON value; required (it may be `null`).
    #[serde(default, deserialize_with = "present")]
    pub data: Option<serde_json::Value>,
}

/// A field that may be absent but, when present, is a string (not `null`).
fn string_not_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

/// Distinguishes `"data": null` (present) from a missing `data`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

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
    /// Lists the stream under its subject, so a revocation can close it.
    pub registration: Registration,
}

/// The service's domain operations, over the parts the server wires in.
pub struct Hub {
    pub(crate) verifier: Verifier,
    pub(crate) tickets: Arc<dyn TicketStore>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) clock: SharedClock,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) streams: StreamSettings,
    pub(crate) shutdown: CancellationToken,
    pub(crate) db: Database,
    /// Where published events are stored for replay; `None` keeps no history.
    pub(crate) history: Option<BatchWriter<StoredEvent>>,
    pub(crate) revocations: Revocations,
    pub(crate) streams_by_subject: StreamRegistry,
    pub(crate) audit: AuditLog,
    /// The tokens of `serve --dev`, for the demo page; `None` otherwise.
    pub(crate) dev_tokens: Option<crate::dev::DevTokens>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// The tokens of `serve --dev`, if this is a development server.
    pub fn dev_tokens(&self) -> Option<&crate::dev::DevTokens> {
        self.dev_tokens.as_ref()
    }

    /// The clock every expiry is judged by.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }
    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
    /// A shared handle onto the metrics, for what outlives a request.
    pub fn metrics_handle(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }
    /// Stream settings.
    pub fn stream_settings(&self) -> StreamSettings {
        self.streams
    }
    /// Cancelled when the service shuts down.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Fetches remote verification keys ahead of the first request.
    pub async fn warm_up_keys(&self) -> Result<(), crate::auth::AuthError> {
        self.verifier.warm_up().await
    }

    /// Verifies a bearer token.
    pub async fn authenticate(&self, bearer: &str) -> Result<Claims, ApiError> {
        let claims = self.verifier.verify(bearer).await?;
        if self.revocations.refuses(&claims) {
            return Err(ApiError::TokenRevoked);
        }
        Ok(claims)
    }

    /// Issues a ticket for `claims` to receive `request.topics`.
    #[tracing::instrument(skip_all, fields(sub = %claims.sub))]
    pub async fn issue_ticket(
        &self,
        claims: &Claims,
        request: TicketRequest,
        client: &Client,
    ) -> Result<Ticket, ApiError> {
        let topics = self.requested_topics(claims, request)?;
        let grant = Grant {
            sub: claims.sub.clone(),
            topics,
            bearer_exp: claims.exp,
            bearer_iat: claims.iat,
            bearer_jti: claims.jti.clone(),
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

    fn requested_topics(
        &self,
        claims: &Claims,
        request: TicketRequest,
    ) -> Result<Vec<TopicPattern>, ApiError> {
        if request.topics.len() > MAX_TOPICS_PER_TICKET {
            return Err(ApiError::InvalidBody(format!(
                "a ticket carries at most {MAX_TOPICS_PER_TICKET} topics"
            )));
        }
        if request.topics.is_empty() {
            let own = claims.own_topic().ok_or_else(|| {
                ApiError::InvalidTopic(
                    "the subject cannot form the topic user/<sub>; name the topics explicitly"
                        .into(),
                )
            })?;
            return Ok(vec![TopicPattern::Exact(own)]);
        }
        let mut topics = Vec::with_capacity(request.topics.len());
        for raw in request.topics {
            let pattern = TopicPattern::parse(&raw).map_err(|e| {
                ApiError::InvalidTopic(format!("{raw:?} is not a topic or pattern: {e}"))
            })?;
            if !claims.may_subscribe(&pattern) {
                return Err(ApiError::ForbiddenTopic(format!(
                    "the token may not subscribe to {raw:?}"
                )));
            }
            if !topics.contains(&pattern) {
                topics.push(pattern);
            }
        }
        Ok(topics)
    }

    /// Redeems the ticket in `token`, subscribes to its topics and, when the
    /// client resumes after `last_event_id`, reads what history holds since.
    #[tracing::instrument(skip_all)]
    pub async fn open_stream(
        &self,
        token: Option<&str>,
        last_event_id: Option<&str>,
        client: &Client,
    ) -> Result<OpenedStream, ApiError> {
        // Checked first, so that a malformed id spends no ticket.
        let resume_after = last_event_id
            .map(|raw| {
                Uuid::try_parse(raw.trim()).map_err(|_| {
                    ApiError::InvalidQuery(
                        "Last-Event-ID / lastEventId must be an event id (a UUID)".into(),
                    )
                })
            })
            .transpose()?;
        let refuse = |reason: &'static str, error: ApiError| {
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
        let reject = |reason: &'static str| refuse(reason, ApiError::InvalidTicket);
        let id = token
            .and_then(TicketId::parse)
            .ok_or_else(|| reject("malformed"))?;
        let ticket = match self.tickets.redeem(id, self.clock.now()).await {
            Ok(ticket) => ticket,
            Err(RedeemError::Unknown) => return Err(reject("unknown")),
            Err(RedeemError::Expired) => return Err(reject("expired")),
            Err(RedeemError::Unavailable(cause)) => return Err(ApiError::Unavailable(cause)),
        };
        // Listed before the revocation check: a revocation that lands after
        // the check finds the stream and closes it.
        let registration = match self
            .streams_by_subject
            .register(ticket.sub().clone(), &self.shutdown)
        {
            Ok(registration) => registration,
            Err(full) => {
                let (cap, reason, error) = match full {
                    RegisterError::SubjectFull => (
                        "per_subject",
                        "too_many_streams",
                        ApiError::TooManyStreams {
                            retry_after: STREAM_CAP_RETRY,
                        },
                    ),
                    RegisterError::InstanceFull => (
                        "instance",
                        "streams_full",
                        ApiError::AtCapacity {
                            retry_after: STREAM_CAP_RETRY,
                        },
                    ),
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

    async fn replay(&self, topics: &[TopicPattern], after: Uuid) -> Result<Replay, ApiError> {
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
                .map_err(|e| ApiError::Unavailable(e.to_string()))?
        };
        if replay.gap {
            self.metrics.replays_reset.inc();
        }
        Ok(replay)
    }

    /// Publishes an event for a bearer allowed to; returns its id.
    #[tracing::instrument(skip_all, fields(sub = %claims.sub, topic = %request.topic))]
    pub async fn publish(
        &self,
        claims: &Claims,
        request: PublishRequest,
    ) -> Result<Uuid, ApiError> {
        let topic = Topic::parse(&request.topic).map_err(|e| {
            ApiError::InvalidTopic(format!("{:?} is not a topic: {e}", request.topic))
        })?;
        let kind = request.event.as_deref().unwrap_or(DEFAULT_EVENT_TYPE);
        validate_event_type(kind)?;
        let data = request
            .data
            .ok_or_else(|| ApiError::InvalidBody("the body has no data field".into()))?;
        let data = serde_json::to_string(&data)
            .map_err(|e| ApiError::InvalidBody(format!("data cannot be serialized: {e}")))?;
        if data.len() > MAX_EVENT_DATA {
            return Err(ApiError::PayloadTooLarge(format!(
                "data is {} bytes serialized; the limit is {MAX_EVENT_DATA}",
                data.len()
            )));
        }
        if !claims.may_publish(&topic) {
            return Err(ApiError::ForbiddenTopic(format!(
                "the token may not publish to {:?}",
                topic.as_str()
            )));
        }
        // Refused before it is stored, so a 503 leaves nothing behind.
        self.broker.ready()?;
        let id = Uuid::now_v7();
        let event = Arc::new(Event::new(
            id,
            topic,
            kind,
            ByteString::from(data),
            self.clock.now(),
        ));
        // Stored before anyone receives it, so a client that saw it can resume after it.
        if let Some(history) = &self.history {
            history.write(event.to_stored()).await.map_err(|e| {
                ApiError::Unavailable(format!("the event could not be stored: {e}"))
            })?;
        }
        let fanout = self.broker.publish(event).await?;
        self.metrics.events_published.inc();
        self.metrics.record_fanout(fanout);
        tracing::debug!(%id, delivered = fanout.delivered, "event published");
        Ok(id)
    }

    /// Each backend with its state: `Err` names why it is not ready.
    pub async fn readiness(&self) -> Vec<(&'static str, Result<(), String>)> {
        let keys = if self.verifier.is_ready() {
            Ok(())
        } else {
            Err("the identity provider's keys have not been fetched yet".to_owned())
        };
        vec![
            ("keys", keys),
            ("database", self.db.ping().await.map_err(|e| e.to_string())),
            ("tickets", self.tickets.ping().await),
            ("broker", self.broker.ping().await),
        ]
    }

    /// Waits until every queued database write is done (at shutdown).
    pub async fn flush(&self) {
        if let Some(history) = &self.history {
            history.flush().await;
        }
        self.audit.flush().await;
    }

    /// Revokes `sub` now: persisted, its outstanding tickets dropped, its
    /// streams closed. Returns the revocation time.
    #[tracing::instrument(skip_all, fields(admin = %admin.sub, sub = %sub))]
    pub async fn revoke(
        &self,
        admin: &Claims,
        sub: Subject,
        client: &Client,
    ) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
        let now = self.clock.now();
        self.db
            .upsert_revocation(sub.as_str(), now)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        self.revocations.insert(sub.clone(), now);
        let tickets = self.tickets.revoke_subject(&sub).await;
        let streams = self.streams_by_subject.close_subject(&sub);
        tracing::warn!(tickets, streams, "subject revoked");
        self.tell_instances(Notice::Revoked {
            sub: sub.clone(),
            at: now,
        })
        .await;
        let mut record = entry(AuditAction::Revoked, now, client);
        record.sub = Some(sub.to_string());
        record.reason = Some(format!("by {}", admin.sub));
        self.audit.record(record).await;
        Ok(now)
    }

    /// Lifts the revocation of `sub`; whether there was one.
    #[tracing::instrument(skip_all, fields(admin = %admin.sub, sub = %sub))]
    pub async fn lift_revocation(
        &self,
        admin: &Claims,
        sub: Subject,
        client: &Client,
    ) -> Result<bool, ApiError> {
        let lifted = self
            .db
            .delete_revocation(sub.as_str())
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        self.revocations.remove(&sub);
        if lifted {
            self.tell_instances(Notice::Lifted { sub: sub.clone() })
                .await;
            tracing::warn!("revocation lifted");
            let mut record = entry(AuditAction::RevocationLifted, self.clock.now(), client);
            record.sub = Some(sub.to_string());
            record.reason = Some(format!("by {}", admin.sub));
            self.audit.record(record).await;
        }
        Ok(lifted)
    }

    /// Announces a revocation change to the other instances. Should that
    /// fail, they reload revocations from the database once they hear from
    /// the broker again.
    async fn tell_instances(&self, notice: Notice) {
        if let Err(error) = self.broker.announce(&notice).await {
            tracing::warn!(%error, "other instances will learn of this revocation when Redis is back");
        }
    }

    /// Applies a revocation change announced by an instance (this one included).
    pub async fn apply_notice(&self, notice: Notice) {
        match notice {
            Notice::Revoked { sub, at } => {
                // Our own announcement coming back (times travel in whole
                // milliseconds): already applied.
                let known = self.revocations.at(&sub).map(|t| t.timestamp_millis());
                if known == Some(at.timestamp_millis()) {
                    return;
                }
                self.revocations.insert(sub.clone(), at);
                let streams = self.streams_by_subject.close_subject(&sub);
                tracing::warn!(%sub, streams, "subject revoked on another instance");
            }
            // Not trusted as said: the database is the truth, and a lift
            // read from it cannot be forged or reordered past a new revocation.
            Notice::Lifted { .. } | Notice::Resync => {
                let mark = self.revocations.mark();
                match self.db.revocations().await {
                    Ok(current) => {
                        let current = current.into_iter().filter_map(|r| {
                            Subject::parse(&r.sub).ok().map(|sub| (sub, r.revoked_at))
                        });
                        for sub in self.revocations.replace_all(mark, current) {
                            self.streams_by_subject.close_subject(&sub);
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot reload revocations"),
                }
            }
        }
    }

    /// Every revocation in force.
    pub async fn list_revocations(&self) -> Result<Vec<Revocation>, ApiError> {
        self.db
            .revocations()
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))
    }

    /// Audit rows, newest first.
    pub async fn audit_trail(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, ApiError> {
        self.db
            .audit(query)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))
    }

    /// Refreshes gauges that are read from the backends, before a scrape.
    pub async fn refresh_gauges(&self) {
        let held = i64::try_from(self.tickets.outstanding().await).unwrap_or(i64::MAX);
        self.metrics.tickets_outstanding.set(held);
    }
}

/// An audit record about `ticket`.
fn ticket_entry(
    action: AuditAction,
    at: chrono::DateTime<chrono::Utc>,
    ticket: &Ticket,
    client: &Client,
) -> AuditRecord {
    let mut record = entry(action, at, client);
    record.sub = Some(ticket.sub().to_string());
    record.topics = ticket.topics().iter().map(ToString::to_string).collect();
    record.ticket_fingerprint = Some(fingerprint(&ticket.id().to_string()));
    record
}

fn validate_event_type(kind: &str) -> Result<(), ApiError> {
    if !is_well_formed_event_type(kind) {
        return Err(ApiError::InvalidBody(format!(
            "event must be 1 to {MAX_EVENT_TYPE_LEN} characters of A-Z a-z 0-9 . _ : -"
        )));
    }
    if RESERVED_EVENT_TYPES.contains(&kind) {
        return Err(ApiError::InvalidBody(format!(
            "the event type {kind:?} is reserved for the server"
        )));
    }
    Ok(())
}
