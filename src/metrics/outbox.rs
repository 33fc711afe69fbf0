//! Metrics of the outbox consumer: rows published, rows dead-lettered, and
//! how long the oldest row has waited.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The outbox's rows, as this instance sees them.
#[derive(Debug, Clone, Default)]
pub struct OutboxMetrics {
    /// Rows published and deleted by this instance.
    pub published: Counter,
    /// Rows this instance moved to the dead-letter table.
    pub dead_lettered: Counter,
    /// Age of the oldest row in the outbox, in seconds; 0 when it is empty.
    pub lag_seconds: Gauge<f64, AtomicU64>,
}

impl OutboxMetrics {
    /// The metrics, registered in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "outbox_published",
            "Outbox rows this instance published and deleted",
            metrics.published.clone(),
        );
        registry.register(
            "outbox_dead_lettered",
            "Outbox rows this instance moved to the dead-letter table (invalid: see its reason column)",
            metrics.dead_lettered.clone(),
        );
        registry.register(
            "outbox_lag_seconds",
            "Age of the oldest row waiting in the outbox, 0 when empty (refreshed after each round and at each scrape)",
            metrics.lag_seconds.clone(),
        );
        metrics
    }
}
