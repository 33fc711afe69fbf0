//! What became of the publishes that carried an `Idempotency-Key`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Labels of a keyed publish's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// - `first`: the key was new (or expired): the event was published;
    /// - `taken_over`: an earlier request with the key stopped (crashed, or
    ///   failed) before it finished: this one published under its id;
    /// - `replayed`: a repeat, answered with the first event's id
    ///   (`Idempotent-Replayed: true`), nothing published;
    /// - `reused`: the key was used with another body (`422`);
    /// - `in_progress`: another request was still publishing the key after
    ///   5 s (`503` with `Retry-After`).
    pub outcome: &'static str,
}

/// Keyed publishes, by outcome.
#[derive(Debug, Clone)]
pub struct IdempotencyMetrics {
    /// Publishes with an `Idempotency-Key` (the outbox's included), by outcome.
    pub outcomes: Family<OutcomeLabels, Counter>,
}

impl IdempotencyMetrics {
    /// The metrics, registered in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            outcomes: Family::default(),
        };
        registry.register(
            "idempotency",
            "Publishes with an Idempotency-Key (the outbox's included), by outcome: first, taken_over, replayed, reused (422), in_progress (503)",
            metrics.outcomes.clone(),
        );
        metrics
    }

    /// Counts one keyed publish's outcome.
    pub fn record(&self, outcome: &'static str) {
        self.outcomes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}
