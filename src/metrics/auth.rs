//! Metrics of the verifiers that ask an upstream (introspection, the auth
//! webhook): their calls, the answer cache and the circuit breaker.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of one call to an upstream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamCallLabels {
    /// `introspection` or `auth_webhook`.
    pub upstream: &'static str,
    /// - `accepted`: it answered with claims that passed the checks;
    /// - `refused`: it refused the credential, or its claims failed the checks;
    /// - `unavailable`: no answer, a timeout, an unexpected status or body.
    pub outcome: &'static str,
}

/// Labels naming an upstream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// `introspection` or `auth_webhook`.
    pub upstream: &'static str,
}

/// Labels of a look-up in the answer cache.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `hit` (a valid answer was reused) or `miss` (the upstream is asked,
    /// or a call already under way for the same credential is joined).
    pub result: &'static str,
}

/// Metrics of the upstream verifiers.
#[derive(Debug, Clone)]
pub struct AuthMetrics {
    /// Calls to an upstream, by outcome (not the requests its breaker refused).
    pub upstream_requests: Family<UpstreamCallLabels, Counter>,
    /// How long each call took.
    pub upstream_duration: Family<UpstreamLabels, Histogram>,
    /// Answer-cache look-ups, by result.
    pub cache: Family<CacheLabels, Counter>,
    /// 1 from when an upstream's breaker opens until a probe succeeds.
    pub circuit_open: Family<UpstreamLabels, Gauge>,
}

impl AuthMetrics {
    /// The metrics, registered in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            upstream_requests: Family::default(),
            upstream_duration: Family::new_with_constructor(
                (|| Histogram::new(exponential_buckets(0.002, 2.0, 11))) as fn() -> Histogram,
            ),
            cache: Family::default(),
            circuit_open: Family::default(),
        };
        registry.register(
            "auth_upstream_requests",
            "Calls to the introspection endpoint or auth webhook, by outcome (accepted, refused, unavailable)",
            metrics.upstream_requests.clone(),
        );
        registry.register(
            "auth_upstream_duration_seconds",
            "Time the introspection endpoint or auth webhook took to answer (or fail)",
            metrics.upstream_duration.clone(),
        );
        registry.register(
            "auth_cache",
            "Look-ups in the cache of upstream answers (hit: reused; miss: the upstream is asked)",
            metrics.cache.clone(),
        );
        registry.register(
            "auth_circuit_open",
            "1 while the upstream's circuit breaker is open (5 failures in a row) until a probe succeeds",
            metrics.circuit_open.clone(),
        );
        metrics
    }
}
