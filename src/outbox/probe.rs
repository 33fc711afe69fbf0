//! What the rest of the service asks of the outbox: is it ready (`/readyz`
//! names it `outbox`), how old is its oldest row (the lag gauge), and has
//! its consumer stopped (at shutdown, before the last writes are flushed).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::PgPool;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::table::Table;
use super::{OutboxError, timed};
use crate::metrics::outbox::OutboxMetrics;

/// How long a shutdown waits for the consumer to finish its round.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// The outbox's state, shared by its consumer and the hub.
#[derive(Debug)]
pub struct OutboxProbe {
    pub(super) pool: PgPool,
    pub(super) table: Table,
    pub(super) metrics: OutboxMetrics,
    /// Why the outbox is not set up yet; `None` once it is.
    pub(super) setup: parking_lot::Mutex<Option<String>>,
    /// Cancelled when the consumer has stopped.
    pub(super) stopped: CancellationToken,
    /// The runtime the consumer runs on, once it runs: every statement runs
    /// there (see [`OutboxProbe::readiness`]).
    pub(super) runtime: OnceLock<Handle>,
}

impl OutboxProbe {
    /// Whether the outbox is set up and its database answers (within the
    /// database's deadline); refreshes the lag gauge on the way.
    pub async fn readiness(self: &Arc<Self>) -> Result<(), String> {
        if let Some(why) = self.setup.lock().clone() {
            return Err(why);
        }
        let Some(runtime) = self.runtime.get() else {
            return Err("the outbox consumer has not started".into());
        };
        // On the consumer's runtime: a pooled connection opened here, on an
        // HTTP worker's runtime, would die with that runtime when the server
        // stops, under the consumer's last round, which would then publish
        // its rows a second time after the restart.
        let probe = self.clone();
        match runtime
            .spawn(async move { probe.refresh_lag().await })
            .await
        {
            Ok(checked) => checked.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the outbox check did not run: {e}")),
        }
    }

    /// Reads the age of the oldest row into the lag gauge.
    pub(super) async fn refresh_lag(&self) -> Result<(), OutboxError> {
        let age: Option<f64> =
            timed(sqlx::query_scalar(&self.table.lag).fetch_optional(&self.pool)).await?;
        self.metrics.lag_seconds.set(age.unwrap_or(0.0));
        Ok(())
    }

    /// Waits (a few seconds at most) until the consumer has finished its
    /// round and stopped, so that a graceful shutdown publishes no row twice.
    pub async fn stopped(&self) {
        let _ = tokio::time::timeout(STOP_WAIT, self.stopped.cancelled()).await;
    }
}
