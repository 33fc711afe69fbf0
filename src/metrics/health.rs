//! Gauges an operator alerts on, refreshed before each scrape: whether each
//! backend is ready, and the process's open files against its limit.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels naming a backend of `/readyz`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// `keys` (or `introspection`, `auth_webhook`), `database`, `tickets`
    /// or `broker`: the names `/readyz` reports.
    pub backend: &'static str,
}

/// Backend readiness and open files.
#[derive(Debug, Clone)]
pub struct HealthMetrics {
    /// 1 while the backend is ready, 0 while `/readyz` calls it unavailable.
    pub backend_up: Family<BackendLabels, Gauge>,
    /// File descriptors the process holds (sockets included).
    pub open_files: Gauge,
    /// The soft limit on file descriptors (`RLIMIT_NOFILE`).
    pub open_files_limit: Gauge,
}

impl HealthMetrics {
    /// The metrics, registered in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            backend_up: Family::default(),
            open_files: Gauge::default(),
            open_files_limit: Gauge::default(),
        };
        registry.register(
            "backend_up",
            "1 while the backend is ready, 0 while /readyz reports it unavailable (refreshed at each scrape)",
            metrics.backend_up.clone(),
        );
        registry.register(
            "open_files",
            "File descriptors the process holds, sockets included (refreshed at each scrape)",
            metrics.open_files.clone(),
        );
        registry.register(
            "open_files_limit",
            "The soft limit on the process's file descriptors, RLIMIT_NOFILE (refreshed at each scrape)",
            metrics.open_files_limit.clone(),
        );
        metrics
    }

    /// Sets each backend's gauge from a readiness check.
    pub fn record_readiness<E>(&self, checks: &[(&'static str, Result<(), E>)]) {
        for (backend, state) in checks {
            self.backend_up
                .get_or_create(&BackendLabels { backend })
                .set(i64::from(state.is_ok()));
        }
    }

    /// Reads the open files and their limit from the system. Where the
    /// system does not say (no `/proc/self/fd`), the gauge keeps its value.
    pub fn refresh_open_files(&self) {
        if let Some(open) = open_files() {
            self.open_files.set(open);
        }
        if let Ok((soft, _hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
            self.open_files_limit
                .set(i64::try_from(soft).unwrap_or(i64::MAX));
        }
    }
}

/// Descriptors in `/proc/self/fd`, less the one that reads the directory.
fn open_files() -> Option<i64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    let count = entries.filter(Result::is_ok).count().saturating_sub(1);
    Some(i64::try_from(count).unwrap_or(i64::MAX))
}
