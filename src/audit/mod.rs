//! Audit records, queued off the request path and written in batches.
//!
//! A record that must never be lost for room (a ticket issued or redeemed, a
//! revocation, anything an admin does) waits for room in the queue. A rejected
//! ticket presentation, which anyone can send without credentials, is counted
//! in memory instead: one row per client IP, reason and minute of the clock,
//! with a `count`. The first rejection of a row is written at once (the trail
//! shows it without delay), the rest of its count when the minute is over, or
//! at shutdown; the database adds them up in that one row.

mod rejections;

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::clock::SharedClock;
use crate::db::{AuditAction, AuditEpoch, AuditRecord, BatchWriter, Batching, Database};
use crate::metrics::Metrics;
use rejections::{Rejections, write_each_minute};

/// Audit records waiting to be written; beyond this, a request whose record
/// must be kept waits for room.
const AUDIT_QUEUE: usize = 65_536;

/// Audit rows go to the database in one transaction per batch; a busy
/// server's rows wait up to 200 ms to share one (the trail shows them that
/// much later), so that each transaction writes each index page it touches
/// once for many rows.
const BATCHING: Batching = Batching {
    max: 16_384,
    linger: Duration::from_millis(200),
    linger_from: 256,
};

/// Most rows of rejections (client IP, reason, minute) counted in memory at
/// once. A rejection that would start a further one is counted in the row of
/// its reason and minute without a client IP (`client_ip: null`), so that many
/// client addresses (IPv6) cannot grow memory or the trail.
pub const MAX_REJECTION_ROWS: usize = 4096;

/// Who made a request, as the audit trail records it.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// The client's address: the peer, or the address a trusted proxy
    /// forwarded (see [`crate::client_ip::client_ip`]).
    pub ip: Option<String>,
    /// Its `User-Agent`.
    pub user_agent: Option<String>,
}

impl Client {
    /// The client's address, parsed.
    pub fn ip_addr(&self) -> Option<std::net::IpAddr> {
        self.ip.as_deref().and_then(|ip| ip.parse().ok())
    }
}

/// A short, one-way fingerprint of a presented ticket: 16 hex characters of
/// its SHA-256, enough to correlate rows, useless to redeem anything.
pub fn fingerprint(ticket: &str) -> String {
    hex::encode(&Sha256::digest(ticket.as_bytes())[..8])
}

/// The audit trail's writer.
#[derive(Debug, Clone)]
pub struct AuditLog {
    writer: BatchWriter<AuditRecord>,
    metrics: Arc<Metrics>,
    rejections: Arc<Rejections>,
}

impl AuditLog {
    /// Starts the background writer into `db`, and the task that writes the
    /// counts of rejections once their minute of `clock` is over.
    pub fn spawn(db: Database, metrics: Arc<Metrics>, clock: SharedClock) -> Self {
        let failures = metrics.clone();
        let epoch = parking_lot::Mutex::new(AuditEpoch::default());
        let (writer, _task) = BatchWriter::spawn(
            AUDIT_QUEUE,
            BATCHING,
            move |records: Vec<AuditRecord>| {
                let db = db.clone();
                let failures = failures.clone();
                let epoch = epoch.lock().take(&records);
                async move {
                    let written = db.insert_audit(&records, epoch).await;
                    if let Err(error) = &written {
                        failures.audit_write_failures.inc();
                        tracing::error!(%error, rows = records.len(), "audit rows could not be written");
                    }
                    written
                }
            },
        );
        Self::with_writer(writer, metrics, clock)
    }

    fn with_writer(
        writer: BatchWriter<AuditRecord>,
        metrics: Arc<Metrics>,
        clock: SharedClock,
    ) -> Self {
        let rejections = Arc::new(Rejections {
            tallies: parking_lot::Mutex::default(),
            writer: writer.clone(),
            metrics: metrics.clone(),
        });
        tokio::spawn(write_each_minute(Arc::downgrade(&rejections), clock));
        Self {
            writer,
            metrics,
            rejections,
        }
    }

    /// Queues `record`, waiting for room in the queue rather than dropping it
    /// (never for the write itself). A `ticket_rejected` record is counted
    /// instead, as [`AuditLog::reject`] does.
    pub async fn record(&self, record: AuditRecord) {
        if record.action == AuditAction::TicketRejected {
            self.reject(record);
            return;
        }
        if self.writer.queue(record).await.is_err() {
            // Only if the writer task died: it lives as long as any AuditLog.
            self.metrics.audit_records_dropped.inc();
            tracing::error!("the audit writer has stopped; a record was lost");
        }
    }

    /// Counts a rejected ticket presentation in the row of its client IP,
    /// reason and minute; never waits. The row keeps the user agent and
    /// ticket fingerprint of the first rejection it counts.
    pub fn reject(&self, record: AuditRecord) {
        self.rejections.count(record);
    }

    /// Writes the counts of rejections so far, then waits until every queued
    /// record is written.
    pub async fn flush(&self) {
        self.rejections.write_all();
        self.writer.flush().await;
    }
}

/// A record of `action` by `client` at `at`.
pub fn entry(
    action: AuditAction,
    at: chrono::DateTime<chrono::Utc>,
    client: &Client,
) -> AuditRecord {
    AuditRecord {
        at,
        action,
        reason: None,
        sub: None,
        client_ip: client.ip.clone(),
        user_agent: client.user_agent.clone(),
        topics: Vec::new(),
        ticket_fingerprint: None,
        count: 1,
    }
}

#[cfg(test)]
mod tests;
