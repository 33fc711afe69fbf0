//! What operators ask of the hub: readiness, gauges, the audit trail, and
//! a flush of queued writes at shutdown.

use crate::auth::TopicPrefix;
use crate::db::{AuditQuery, AuditRecord, DbError};
use crate::fleet::{FleetError, PatternStreams};

use super::Hub;

impl Hub {
    /// Each backend with its state: `Err` says why it is not ready.
    pub async fn readiness(&self) -> Vec<(&'static str, Result<(), String>)> {
        vec![
            self.verifier.readiness(),
            ("database", self.db.ping().await.map_err(|e| e.to_string())),
            (
                "tickets",
                self.tickets.ping().await.map_err(|e| e.to_string()),
            ),
            (
                "broker",
                self.broker.ping().await.map_err(|e| e.to_string()),
            ),
        ]
    }

    /// Waits until every queued database write is done (at shutdown).
    pub async fn flush(&self) {
        if let Some(history) = &self.history {
            history.flush().await;
        }
        self.audit.flush().await;
    }

    /// Audit rows, newest first.
    pub async fn audit_trail(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, DbError> {
        self.db.audit(query).await
    }

    /// Refreshes gauges that are read from the backends, before a scrape.
    pub async fn refresh_gauges(&self) {
        let held = i64::try_from(self.tickets.outstanding().await).unwrap_or(i64::MAX);
        self.metrics.tickets_outstanding.set(held);
        self.fleet.refresh_gauge(&self.metrics.topic_streams);
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
