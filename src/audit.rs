//! Audit records, queued off the request path and written in batches.

use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::db::{AuditAction, AuditRecord, BatchError, BatchWriter, Database};
use crate::metrics::Metrics;

/// Audit records waiting to be written; beyond this they are dropped (and counted).
const AUDIT_QUEUE: usize = 65_536;

/// Who made a request, as the audit trail records it.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// The peer's address.
    pub ip: Option<String>,
    /// Its `User-Agent`.
    pub user_agent: Option<String>,
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
}

impl AuditLog {
    /// Starts the background writer into `db`.
    pub fn spawn(db: Database, metrics: Arc<Metrics>) -> Self {
        let failures = metrics.clone();
        let (writer, _task) = BatchWriter::spawn(AUDIT_QUEUE, move |records: Vec<AuditRecord>| {
            let db = db.clone();
            let failures = failures.clone();
            async move {
                let written = db.insert_audit(&records).await;
                if let Err(error) = &written {
                    failures.audit_write_failures.inc();
                    tracing::error!(%error, rows = records.len(), "audit rows could not be written");
                }
                written
            }
        });
        Self { writer, metrics }
    }

    /// Queues `record`; never waits.
    pub fn record(&self, record: AuditRecord) {
        match self.writer.enqueue(record) {
            Ok(()) => {}
            Err(BatchError::Full | BatchError::Stopped | BatchError::Failed(_)) => {
                self.metrics.audit_records_dropped.inc();
            }
        }
    }

    /// Waits until every queued record is written.
    pub async fn flush(&self) {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_short_stable_and_not_the_ticket() {
        let ticket = "3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60";
        let print = fingerprint(ticket);
        assert_eq!(print.len(), 16);
        assert_eq!(print, fingerprint(ticket));
        assert_ne!(print, fingerprint("3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f61"));
        assert!(!ticket.contains(&print));
    }
}
