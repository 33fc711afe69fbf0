//! `LISTEN` on the outbox's channel: each notification (sent by the
//! trigger when an insert commits) wakes the consumer. A lost connection is
//! re-made with backoff, and each (re)connection wakes the consumer too,
//! since whatever was notified meanwhile reached nobody.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// First wait before listening again after a failure.
const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest wait between two attempts.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Listens on `channel` until `shutdown`, waking `wake` for each notification.
pub(super) async fn listen(
    pool: PgPool,
    channel: String,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
    loop {
        let connect = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(&channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let connected = tokio::select! {
            () = shutdown.cancelled() => return,
            connected = tokio::time::timeout(crate::db::DB_TIMEOUT, connect) => connected,
        };
        match connected {
            Ok(Ok(mut listener)) => {
                backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
                tracing::debug!(%channel, "listening for outbox notifications");
                wake.notify_one();
                loop {
                    let next = tokio::select! {
                        () = shutdown.cancelled() => return,
                        next = listener.try_recv() => next,
                    };
                    match next {
                        Ok(Some(_)) => wake.notify_one(),
                        // Reconnected: notifications may have been lost.
                        Ok(None) => wake.notify_one(),
                        Err(error) => {
                            tracing::warn!(%error, "lost the outbox notifications; polling until they are back");
                            break;
                        }
                    }
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot listen for outbox notifications; polling until it can");
            }
            Err(_) => tracing::warn!("the outbox database did not answer LISTEN in time"),
        }
        if !backoff.wait(&shutdown).await {
            return;
        }
    }
}
