//! The background task that drops expired tickets nobody redeemed.

use std::sync::Arc;

use chrono::TimeDelta;
use tokio_util::sync::CancellationToken;

use super::TicketStore;
use crate::clock::SharedClock;

/// Least clock time between two sweeps, so a busy store is swept in batches.
const GRANULARITY: TimeDelta = TimeDelta::seconds(1);

/// Sweeps `store` each time its earliest ticket expires (at most once per
/// second of clock time) until `shutdown`; `on_swept` hears how many went.
pub async fn run_sweeper(
    store: Arc<dyn TicketStore>,
    clock: SharedClock,
    idle: TimeDelta,
    shutdown: CancellationToken,
    on_swept: impl Fn(usize) + Send + 'static,
) {
    loop {
        let now = clock.now();
        let deadline = store
            .next_expiry()
            .await
            .map_or(now + idle, |at| at.max(now + GRANULARITY));
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = clock.sleep_until(deadline) => {}
        }
        let swept = store.sweep_expired(clock.now()).await;
        if swept > 0 {
            on_swept(swept);
        }
    }
}
