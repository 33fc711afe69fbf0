//! What operators ask of the hub: readiness, gauges, the audit trail, and
//! a flush of queued writes at shutdown.

use crate::auth::TopicPrefix;
use crate::db::{AuditQuery, AuditRecord, DbError};
use crate::fleet::{FleetError, PatternStreams};

use super::Hub;

impl Hub {
    /// Each backend with its state: `Err` says why it is not ready. The
    /// backends are asked at once, so a hung one delays the answer by its
    /// own deadline only.
    pub async fn readiness(&self) -> Vec<(&'static str, Result<(), String>)> {
        let outbox = async {
            match &self.outbox {
                Some(outbox) => Some(outbox.readiness().await),
                None => None,
            }
        };
        let (database, tickets, broker, outbox) = futures_util::join!(
            self.db.ping(),
            self.tickets.ping(),
            self.broker.ping(),
            outbox
        );
        let mut checks = vec![
            self.verifier.readiness(),
            ("database", database.map_err(|e| e.to_string())),
            ("tickets", tickets.map_err(|e| e.to_string())),
            ("broker", broker.map_err(|e| e.to_string())),
        ];
        checks.extend(outbox.map(|state| ("outbox", state)));
        checks
    }

    /// Waits until every queued database write is done (at shutdown).
    pub async fn flush(&self) {
        // The outbox's round under way publishes before the history flushes.
        if let Some(outbox) = &self.outbox {
            outbox.stopped().await;
        }
        if let Some(history) = &self.history {
            history.flush().await;
        }
        self.audit.flush().await;
    }

    /// Audit rows, newest first.
    pub async fn audit_trail(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, DbError> {
        self.db.audit(query).await
    }

    /// Refreshes gauges that are read from the backends and the system
    /// (tickets held, backend readiness, open files), before a scrape.
    pub async fn refresh_gauges(&self) {
        let held = i64::try_from(self.tickets.outstanding().await).unwrap_or(i64::MAX);
        self.metrics.tickets_outstanding.set(held);
        self.fleet.refresh_gauge(&self.metrics.topic_streams);
        let health = &self.metrics.health;
        health.record_readiness(&self.readiness().await);
        health.refresh_open_files();
    }

    /// Open streams per subscribed pattern over every instance sharing the
    /// Redis (this one alone without), optionally only patterns starting
    /// with `prefix`, sorted by pattern.
    pub async fn streams_by_pattern(
        &self,
        prefix: Option<&TopicPrefix>,
    ) -> Result<Vec<PatternStreams>, FleetError> {
        self.fleet.streams(prefix).await
    }
}
