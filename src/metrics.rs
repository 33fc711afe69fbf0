//! The Prometheus metrics served at `/metrics`. Labels never carry a ticket,
//! a token or a raw path: routes are their patterns.

mod auth;
mod health;
pub mod idempotency;
pub mod outbox;
mod process;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use auth::{AuthMetrics, CacheLabels, UpstreamCallLabels, UpstreamLabels};
pub use health::{BackendLabels, HealthMetrics};

/// Labels of a refused ticket.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// Why `/stream` refused it:
    /// - `malformed`: missing, or not a canonical UUID v4 (a JWT, say);
    /// - `unknown`: never issued, already used, swept after expiring, or
    ///   dropped by a revocation of its subject;
    /// - `expired`: past its lifetime, not yet swept;
    /// - `revoked`: a revocation of its subject covers the bearer token it
    ///   was issued under (`iat` at or before `revoked_at`, or no `iat`), or
    ///   the ticket was issued before that revocation, or the token's `jti`
    ///   is revoked: whenever it was issued;
    /// - `client_mismatch`: bound to a client IP (`SSE_TICKET_BIND_TICKET_TO_IP`)
    ///   and presented from another;
    /// - `too_many_streams`: the subject holds `SSE_TICKET_MAX_STREAMS_PER_SUBJECT`
    ///   streams on this instance, or a namespace's own cap (429);
    /// - `streams_full`: the instance holds `SSE_TICKET_MAX_STREAMS` streams
    ///   (503).
    pub reason: &'static str,
}

/// Labels of a closed stream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabels {
    /// Why the stream ended:
    /// - `client`: the client went away;
    /// - `token_expired`: the bearer token its ticket was issued under expired;
    /// - `revoked`: its subject, or its token's `jti`, was revoked;
    /// - `lagging`: it fell 256 events behind and was detached;
    /// - `write_timeout`: its client accepted no bytes for
    ///   `SSE_TICKET_WRITE_TIMEOUT` while frames were waiting;
    /// - `shutdown`: the server is stopping.
    pub reason: &'static str,
}

/// Labels of a pattern's open streams: the pattern, or `(other)` for those
/// beyond the most counted (see [`crate::fleet::MAX_PATTERN_LABELS`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    /// The pattern as subscribed (`orders/*`).
    pub pattern: String,
}

/// Labels of a stream refused for a cap.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamRefusalLabels {
    /// `per_subject` (`SSE_TICKET_MAX_STREAMS_PER_SUBJECT`) or `instance`
    /// (`SSE_TICKET_MAX_STREAMS`).
    pub cap: &'static str,
}

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// The matched route pattern, or `unmatched`.
    pub route: String,
    /// Response status code.
    pub status: u16,
}

/// Labels of a request answered `408 request_timeout`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TimeoutLabels {
    /// `head` (the headers did not arrive in time) or `body`.
    pub phase: &'static str,
}

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    /// Tickets issued.
    pub tickets_issued: Counter,
    /// Tickets redeemed by a stream.
    pub tickets_redeemed: Counter,
    /// Ticket presentations refused, by reason.
    pub tickets_rejected: Family<RejectLabels, Counter>,
    /// Tickets that expired unused and were swept.
    pub tickets_expired: Counter,
    /// Tickets currently held.
    pub tickets_outstanding: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Streams currently open.
    pub streams_open: Gauge,
    /// Streams open on this instance per subscribed pattern (capped).
    pub topic_streams: Family<TopicLabels, Gauge>,
    /// Streams closed, by reason.
    pub streams_closed: Family<CloseLabels, Counter>,
    /// Streams detached from the broker for falling too far behind.
    pub streams_lagging: Counter,
    /// Streams refused because a cap was reached, by cap.
    pub streams_refused: Family<StreamRefusalLabels, Counter>,
    /// The most streams this instance holds (`SSE_TICKET_MAX_STREAMS`, resolved).
    pub streams_max: Gauge,
    /// Revocations by `jti` this instance holds in force.
    pub jti_revocations: Gauge,
    /// Events accepted by `/publish`.
    pub events_published: Counter,
    /// Events deleted from history by retention.
    pub events_pruned: Counter,
    /// Events queued to a stream (one per stream per event).
    pub events_delivered: Counter<u64, std::sync::atomic::AtomicU64>,
    /// Events read back from history or Redis that broke the rules of
    /// `/publish`, skipped instead of sent.
    pub events_invalid: Counter,
    /// Events received from Redis, duplicates included (sharded pub/sub).
    pub broker_events_received: Counter,
    /// Resumes that began with `event: reset`.
    pub replays_reset: Counter,
    /// Database operations that ran out of their deadline (whole process).
    pub database_timeouts: Counter,
    /// Rows of rejected presentations not queued because the audit queue
    /// was full (no other audit record is ever dropped for room).
    pub audit_records_dropped: Counter,
    /// Rejected presentations counted in the row without a client IP,
    /// because too many client IPs were counted already.
    pub audit_rejections_folded: Counter,
    /// Audit batches that failed to write.
    pub audit_write_failures: Counter,
    /// Request latency until the response head.
    pub request_duration: Family<RequestLabels, Histogram>,
    /// Requests answered `408` because their headers or body came too slowly.
    pub requests_timed_out: Family<TimeoutLabels, Counter>,
    /// Requests answered `431` because their headers were too large.
    pub request_heads_too_large: Counter,
    /// The introspection endpoint or auth webhook: calls, cache, breaker.
    pub auth: AuthMetrics,
    /// Backend readiness and open files, refreshed before each scrape.
    pub health: HealthMetrics,
    /// The outbox consumer's rows and lag.
    pub outbox: outbox::OutboxMetrics,
    /// Publishes with an `Idempotency-Key`, by outcome.
    pub idempotency: idempotency::IdempotencyMetrics,
}

impl Metrics {
    /// Counts an event read back from history or Redis that is invalid, and
    /// says so in the log (without its data).
    pub fn record_invalid_event(
        &self,
        id: uuid::Uuid,
        source: &'static str,
        reason: &dyn std::fmt::Display,
    ) {
        self.events_invalid.inc();
        tracing::warn!(%id, source, %reason, "skipped an invalid event");
    }

    /// Counts what one local fan-out did.
    pub fn record_fanout(&self, fanout: crate::broker::Fanout) {
        self.events_delivered.inc_by(fanout.delivered as u64);
        if fanout.detached > 0 {
            self.streams_lagging.inc_by(fanout.detached as u64);
            tracing::warn!(
                streams = fanout.detached,
                "streams fell too far behind and were detached"
            );
        }
    }

    /// Registers every metric under the `sse_ticket` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sse_ticket");
        let tickets_issued = Counter::default();
        let tickets_redeemed = Counter::default();
        let tickets_rejected = Family::<RejectLabels, Counter>::default();
        let tickets_expired = Counter::default();
        let tickets_outstanding = Gauge::default();
        let streams_open = Gauge::default();
        let streams_closed = Family::<CloseLabels, Counter>::default();
        let topic_streams = Family::<TopicLabels, Gauge>::default();
        let streams_lagging = Counter::default();
        let streams_refused = Family::<StreamRefusalLabels, Counter>::default();
        let streams_max = Gauge::default();
        let jti_revocations = Gauge::default();
        let events_published = Counter::default();
        let events_delivered = Counter::default();
        let events_pruned = Counter::default();
        let events_invalid = Counter::default();
        let broker_events_received = Counter::default();
        let replays_reset = Counter::default();
        let database_timeouts = Counter::default();
        let audit_records_dropped = Counter::default();
        let audit_write_failures = Counter::default();
        let audit_rejections_folded = Counter::default();
        let request_duration = Family::<RequestLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.000_1, 2.5, 12))) as fn() -> Histogram,
        );
        registry.register("tickets_issued", "Tickets issued", tickets_issued.clone());
        registry.register(
            "tickets_redeemed",
            "Tickets redeemed by a stream",
            tickets_redeemed.clone(),
        );
        registry.register(
            "tickets_rejected",
            "Ticket presentations refused, by reason",
            tickets_rejected.clone(),
        );
        registry.register(
            "tickets_expired",
            "Tickets that expired unused",
            tickets_expired.clone(),
        );
        registry.register(
            "tickets_outstanding",
            "Tickets currently held",
            tickets_outstanding.clone(),
        );
        registry.register(
            "streams_open",
            "Event streams currently open",
            streams_open.clone(),
        );
        registry.register(
            "topic_streams",
            "Event streams open on this instance per subscribed pattern (the 1,000 with most streams; the rest summed as pattern=\"(other)\")",
            topic_streams.clone(),
        );
        registry.register(
            "streams_closed",
            "Event streams closed, by reason",
            streams_closed.clone(),
        );
        registry.register(
            "streams_lagging",
            "Event streams detached for falling too far behind (they end with reason lagging)",
            streams_lagging.clone(),
        );
        registry.register(
            "streams_refused",
            "Event streams refused at a cap (per_subject: SSE_TICKET_MAX_STREAMS_PER_SUBJECT, instance: SSE_TICKET_MAX_STREAMS)",
            streams_refused.clone(),
        );
        registry.register(
            "streams_max",
            "The most event streams this instance holds",
            streams_max.clone(),
        );
        registry.register(
            "jti_revocations",
            "Revocations by jti in force on this instance (each kept until its until, by default SSE_TICKET_JTI_REVOCATION_TTL)",
            jti_revocations.clone(),
        );
        registry.register(
            "events_published",
            "Events accepted by /publish",
            events_published.clone(),
        );
        registry.register(
            "events_delivered",
            "Events queued to a stream",
            events_delivered.clone(),
        );
        registry.register(
            "events_pruned",
            "Events deleted from history by retention",
            events_pruned.clone(),
        );
        registry.register(
            "replays_reset",
            "Resumes that began with event: reset (resume point not retained, or more than 10,000 events or 4 MiB after it)",
            replays_reset.clone(),
        );
        registry.register(
            "database_timeouts",
            "Database operations that did not finish within their 5 s deadline (counted for the whole process)",
            database_timeouts.clone(),
        );
        registry.register(
            "events_invalid",
            "Events read back from history or Redis that were invalid (bad type, topic or data) and skipped",
            events_invalid.clone(),
        );
        registry.register(
            "broker_events_received",
            "Events this instance received from Redis: only those of the channels its own streams need",
            broker_events_received.clone(),
        );
        registry.register(
            "audit_records_dropped",
            "Audit rows of rejected tickets dropped because the write queue was full",
            audit_records_dropped.clone(),
        );
        registry.register(
            "audit_rejections_folded",
            "Rejected ticket presentations audited without their client IP, past the limit of rows counted at once",
            audit_rejections_folded.clone(),
        );
        registry.register(
            "audit_write_failures",
            "Audit batches that could not be written",
            audit_write_failures.clone(),
        );
        let requests_timed_out = Family::<TimeoutLabels, Counter>::default();
        let request_heads_too_large = Counter::default();
        registry.register(
            "requests_timed_out",
            "Requests answered 408 because their headers (phase head, counted per process) or body came too slowly",
            requests_timed_out.clone(),
        );
        registry.register(
            "request_heads_too_large",
            "HTTP/1.1 requests answered 431 because their headers were over 16 KiB (counted per process)",
            request_heads_too_large.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency until the response head",
            request_duration.clone(),
        );
        Self {
            tickets_issued,
            tickets_redeemed,
            tickets_rejected,
            tickets_expired,
            tickets_outstanding,
            streams_open,
            topic_streams,
            streams_closed,
            streams_lagging,
            streams_refused,
            streams_max,
            jti_revocations,
            events_published,
            events_delivered,
            events_pruned,
            events_invalid,
            broker_events_received,
            replays_reset,
            database_timeouts,
            audit_records_dropped,
            audit_rejections_folded,
            audit_write_failures,
            request_duration,
            requests_timed_out,
            request_heads_too_large,
            auth: AuthMetrics::register(&mut registry),
            health: HealthMetrics::register(&mut registry),
            outbox: outbox::OutboxMetrics::register(&mut registry),
            idempotency: idempotency::IdempotencyMetrics::register(&mut registry),
            registry,
        }
    }

    /// The metrics in the Prometheus/OpenMetrics text format.
    pub fn render(&self) -> String {
        self.sync_connection_counts();
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}
