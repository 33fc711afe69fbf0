//! The hub: the service's domain operations, over the parts the server wires
//! together (verifier, ticket store, broker, database, audit trail). One file
//! per thing it does, as in Mercure's hub: [`issuing`] (bearer tokens in,
//! tickets out), [`opening`] (a ticket in, a live stream out), [`publishing`],
//! [`revoking`] (the one revocation service: the copy in memory, its
//! announcement between instances and its reloads) and [`operations`]
//! (readiness, gauges, the audit trail).
//!
//! Each operation returns an error enum of its own, causes kept; only
//! `http/error.rs` turns them into statuses and JSON.

mod idempotent;
mod issuing;
mod opening;
mod operations;
mod publishing;
mod revoking;

use std::sync::Arc;
use std::time::Duration;

use crate::audit::{AuditLog, Client, entry, fingerprint};
use crate::auth::Verifier;
use crate::broker::Broker;
use crate::client_ip::{IpBinding, TrustedProxies};
use crate::clock::SharedClock;
use crate::db::{AuditAction, AuditRecord, BatchWriter, Database, StoredEvent};
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::namespace::Namespaces;
use crate::revocation::{Revocations, StreamRegistry};
use crate::ticket::{Ticket, TicketStore};

pub use crate::broker::{MAX_EVENT_DATA, MAX_EVENT_TYPE_LEN};
pub use idempotent::Published;
pub use issuing::{BearerError, IssueTicketError, MAX_TOPICS_PER_TICKET};
pub use opening::{MAX_REPLAY, MAX_REPLAY_BYTES, OpenStreamError, OpenedStream, STREAM_CAP_RETRY};
pub use publishing::{Publication, PublicationError, PublishError, Publisher};
pub use revoking::{JtiRevoked, MAX_JTI_LEN, REVOCATION_RELOAD, RevocationError};
pub(crate) use revoking::{apply_notices, load_revocations, reload_periodically};

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

/// The service's domain operations, over the parts the server wires in.
pub struct Hub {
    pub(crate) verifier: Verifier,
    pub(crate) tickets: Arc<dyn TicketStore>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) clock: SharedClock,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) streams: StreamSettings,
    pub(crate) db: Database,
    /// Where published events are stored for replay; `None` keeps no history.
    pub(crate) history: Option<BatchWriter<StoredEvent>>,
    pub(crate) revocations: Revocations,
    pub(crate) streams_by_subject: StreamRegistry,
    /// How long a revocation by `jti` lasts when no `until` is given.
    pub(crate) jti_revocation_ttl: Duration,
    pub(crate) audit: AuditLog,
    /// The tokens of `serve --dev`, for the demo page; `None` otherwise.
    pub(crate) dev_tokens: Option<crate::dev::DevTokens>,
    /// Proxies whose forwarding headers name the client.
    pub(crate) trusted_proxies: TrustedProxies,
    /// Whether tickets are redeemable only from the IP that requested them.
    pub(crate) ip_binding: IpBinding,
    /// Open streams per pattern, here and on the other instances.
    pub(crate) fleet: Arc<Fleet>,
    /// The policy of each topic: its namespace's, or the service's.
    pub(crate) namespaces: Arc<Namespaces>,
    /// The app's outbox, when one is consumed.
    pub(crate) outbox: Option<Arc<crate::outbox::OutboxProbe>>,
    /// The `Idempotency-Key`s of publishes, shared by every instance.
    pub(crate) idempotency: crate::idempotency::Ledger,
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
    /// Proxies whose `Forwarded` / `X-Forwarded-For` name the client.
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.trusted_proxies
    }
    /// Open streams per pattern, here and on the other instances.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }
    /// The policy of each topic.
    pub fn namespaces(&self) -> &Namespaces {
        &self.namespaces
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
