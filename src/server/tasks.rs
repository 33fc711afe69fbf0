//! The server's background tasks: retention and the key warm-up.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::db::{Database, Keep, Retained};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::namespace::{Namespaces, Policy};

/// How often retention is enforced, in clock time.
const PRUNE_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// How often an unreachable JWKS is retried after start-up.
const JWKS_RETRY: Duration = Duration::from_secs(5);

/// Deletes history and audit rows past their retention, revocations by
/// `jti` past their `until`, and expired `Idempotency-Key`s (of the database
/// store), once a minute of clock time.
pub(super) async fn run_pruner(
    db: Database,
    namespaces: Arc<Namespaces>,
    audit_ttl: Duration,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = clock.sleep_until(clock.now() + PRUNE_INTERVAL) => {}
        }
        let now = clock.now();
        let horizon = |keep| {
            now.checked_sub_signed(crate::clock::span(keep))
                .unwrap_or(now)
        };
        let retained = |policy: &Policy| Retained {
            older_than: horizon(policy.history_ttl),
            max_per_topic: policy.history_max_per_topic,
        };
        let keep: Vec<Keep> = namespaces
            .iter()
            .map(|(prefix, policy)| Keep {
                prefix: prefix.to_owned(),
                retained: retained(policy),
            })
            .collect();
        match db.prune_events(&keep, retained(namespaces.service())).await {
            Ok(pruned) => {
                metrics.events_pruned.inc_by(pruned);
            }
            Err(error) => tracing::warn!(%error, "pruning the event history failed"),
        }
        if let Err(error) = db.prune_audit(horizon(audit_ttl)).await {
            tracing::warn!(%error, "pruning the audit trail failed");
        }
        if let Err(error) = db.prune_jti_revocations(now).await {
            tracing::warn!(%error, "pruning the expired revocations by jti failed");
        }
        if let Err(error) = crate::idempotency::DatabaseStore::prune(&db, now).await {
            tracing::warn!(%error, "pruning the expired Idempotency-Keys failed");
        }
    }
}

/// At shutdown, closes every open stream (`event: close`, `"reason":
/// "shutdown"`), and any opened after it.
pub(super) fn spawn_stream_closer(hub: web::Data<Hub>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        shutdown.cancelled().await;
        hub.streams_by_subject.close_all();
    });
}

/// Fetches remote keys (JWKS) in the background until it succeeds, so the
/// first request does not pay for it and `/readyz` turns green.
pub(super) fn spawn_key_warm_up(hub: web::Data<Hub>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            match hub.warm_up_keys().await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(%error, "cannot fetch the verification keys yet; retrying")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(JWKS_RETRY) => {}
            }
        }
    });
}
