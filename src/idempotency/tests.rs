//! The ledger over each store, on a clock the tests move: claims, leases,
//! take-overs after a crash, expiry. SQLite always; Postgres and Redis too
//! when `SSE_TICKET_TEST_POSTGRES_URL` / `SSE_TICKET_TEST_REDIS_URL` are set.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::TimeDelta;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::clock::{Clock as _, ManualClock};
use crate::db::{Database, DatabaseUrl};
use crate::redis_link::RedisLink;

const TTL: Duration = Duration::from_secs(3600);

/// Every store this run can reach, each with a name.
async fn stores() -> Vec<(&'static str, Arc<dyn IdempotencyStore>)> {
    let file = std::env::temp_dir().join(format!("sse-ticket-idem-{}.db", Uuid::new_v4()));
    let url = DatabaseUrl::parse(&format!("sqlite://{}", file.display())).expect("a URL");
    let sqlite = Database::open(&url).await.expect("SQLite");
    let mut stores: Vec<(&'static str, Arc<dyn IdempotencyStore>)> =
        vec![("sqlite", Arc::new(DatabaseStore::new(sqlite)))];
    if let Some(base) = env("SSE_TICKET_TEST_POSTGRES_URL") {
        use sqlx::Connection as _;
        let schema = format!("t_{}", Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&base).await.expect("Postgres");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .expect("a schema");
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
        let db = Database::open(&DatabaseUrl::parse(&url).expect("a URL"))
            .await
            .expect("Postgres");
        stores.push(("postgres", Arc::new(DatabaseStore::new(db))));
    }
    if let Some(url) = env("SSE_TICKET_TEST_REDIS_URL") {
        let prefix = format!("test-{}:", Uuid::new_v4().simple());
        let link = RedisLink::connect(&url, &prefix, false)
            .await
            .expect("Redis");
        stores.push(("redis", Arc::new(RedisStore::new(link))));
    }
    stores
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A fresh key of one subject.
fn fresh_key() -> KeyDigest {
    let key = IdempotencyKey::parse(Uuid::new_v4().to_string().as_bytes()).expect("a key");
    key.digest(Scope::Outbox)
}

fn fingerprint(n: i64) -> Fingerprint {
    Fingerprint::of("orders/1", "message", &json!({ "n": n }))
}

/// A ledger on `store` and `clock` that waits 50 ms for a concurrent owner.
fn ledger(store: &Arc<dyn IdempotencyStore>, clock: &ManualClock) -> Ledger {
    Ledger::new(store.clone(), Arc::new(clock.clone()), TTL).waiting(Duration::from_millis(50))
}

/// A history that holds `ids` and counts how often it is asked.
struct History {
    ids: Vec<Uuid>,
    asked: AtomicUsize,
}

impl History {
    fn holding(ids: &[Uuid]) -> Self {
        Self {
            ids: ids.to_vec(),
            asked: AtomicUsize::new(0),
        }
    }

    async fn held(&self, id: Uuid) -> Result<bool, IdempotencyError> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        Ok(self.ids.contains(&id))
    }
}

async fn begin(ledger: &Ledger, key: KeyDigest, n: i64, history: &History) -> Begun {
    ledger
        .begin(key, fingerprint(n), |id| history.held(id), Holder::Shared)
        .await
        .expect("the store answers")
}

/// [`begin`] of event 1 by the only one who may publish it now.
async fn begin_exclusive(ledger: &Ledger, key: KeyDigest, history: &History) -> Begun {
    ledger
        .begin(
            key,
            fingerprint(1),
            |id| history.held(id),
            Holder::Exclusive,
        )
        .await
        .expect("the store answers")
}

fn published(begun: Begun) -> Claimed {
    match begun {
        Begun::Publish(claimed) => claimed,
        other => panic!("expected to publish, got {other:?}"),
    }
}

fn past_the_lease(clock: &ManualClock) {
    clock.advance(TimeDelta::from_std(LEASE).expect("a span") + TimeDelta::seconds(1));
}

#[tokio::test]
async fn a_crashed_owners_claim_is_taken_over_after_its_lease_under_the_same_id() {
    for (name, store) in stores().await {
        let clock = ManualClock::default();
        let (a, b) = (ledger(&store, &clock), ledger(&store, &clock));
        let none = History::holding(&[]);
        let key = fresh_key();
        let first = published(begin(&a, key, 1, &none).await);
        // A crashes here. Within its lease, a repeat waits, then gives up
        // until the lease ends.
        match begin(&b, key, 1, &none).await {
            Begun::InProgress { retry_after } => {
                assert!(retry_after > LEASE - Duration::from_secs(1), "{name}");
                assert!(retry_after <= LEASE, "{name}");
            }
            other => panic!("{name}: expected to wait in vain, got {other:?}"),
        }
        past_the_lease(&clock);
        let second = published(begin(&b, key, 1, &none).await);
        assert_eq!(second.id(), first.id(), "{name}: the id chosen first");
        assert!(second.taken_over(), "{name}");
        assert!(b.finish(&second).await.expect("finish"), "{name}");
        // The first owner, back too late, no longer holds the key.
        assert!(!a.finish(&first).await.expect("finish"), "{name}");
        match begin(&a, key, 1, &none).await {
            Begun::Replay(id) => assert_eq!(id, first.id(), "{name}"),
            other => panic!("{name}: expected a replay, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_exclusive_holder_takes_a_pending_claim_over_at_once_within_its_lease() {
    for (name, store) in stores().await {
        let clock = ManualClock::default();
        let (a, b) = (ledger(&store, &clock), ledger(&store, &clock));
        let key = fresh_key();
        let first = published(begin(&a, key, 1, &History::holding(&[])).await);
        // A crashed after storing its event: answered, not published again.
        let stored = History::holding(&[first.id()]);
        match begin_exclusive(&b, key, &stored).await {
            Begun::Replay(id) => assert_eq!(id, first.id(), "{name}"),
            other => panic!("{name}: expected a replay at once, got {other:?}"),
        }
        // A crashed before storing anything: published under its id, now.
        let key = fresh_key();
        let first = published(begin(&a, key, 1, &History::holding(&[])).await);
        let none = History::holding(&[]);
        let again = published(begin_exclusive(&b, key, &none).await);
        assert_eq!(again.id(), first.id(), "{name}");
        assert!(again.taken_over(), "{name}");
        assert!(
            !a.finish(&first).await.expect("finish"),
            "{name}: no longer A's"
        );
    }
}

#[tokio::test]
async fn a_crashed_owner_whose_event_was_stored_is_answered_without_publishing() {
    for (name, store) in stores().await {
        let clock = ManualClock::default();
        let ledger = ledger(&store, &clock);
        let key = fresh_key();
        let first = published(begin(&ledger, key, 1, &History::holding(&[])).await);
        past_the_lease(&clock);
        let history = History::holding(&[first.id()]);
        match begin(&ledger, key, 1, &history).await {
            Begun::Replay(id) => assert_eq!(id, first.id(), "{name}"),
            other => panic!("{name}: expected a replay, got {other:?}"),
        }
        // Now done: the next repeat does not ask the history again.
        assert!(matches!(
            begin(&ledger, key, 1, &history).await,
            Begun::Replay(_)
        ));
        assert!(matches!(
            begin(&ledger, key, 2, &history).await,
            Begun::Reused
        ));
        assert_eq!(history.asked.load(Ordering::Relaxed), 1, "{name}");
    }
}

#[tokio::test]
async fn another_body_after_a_crash_that_stored_nothing_is_published_under_a_new_id() {
    for (name, store) in stores().await {
        let clock = ManualClock::default();
        let ledger = ledger(&store, &clock);
        let none = History::holding(&[]);
        let key = fresh_key();
        let first = published(begin(&ledger, key, 1, &none).await);
        assert!(
            matches!(begin(&ledger, key, 2, &none).await, Begun::Reused),
            "{name}"
        );
        past_the_lease(&clock);
        let other = published(begin(&ledger, key, 2, &none).await);
        assert_ne!(other.id(), first.id(), "{name}");
    }
}

#[tokio::test]
async fn an_abandoned_claim_is_taken_over_at_once() {
    for (name, store) in stores().await {
        let clock = ManualClock::default();
        let ledger = ledger(&store, &clock);
        let none = History::holding(&[]);
        let key = fresh_key();
        let failed = published(begin(&ledger, key, 1, &none).await);
        assert!(ledger.abandon(&failed).await.expect("abandon"), "{name}");
        let retry = published(begin(&ledger, key, 1, &none).await);
        assert_eq!(retry.id(), failed.id(), "{name}");
        assert!(ledger.finish(&retry).await.expect("finish"), "{name}");
        assert!(!ledger.finish(&failed).await.expect("finish"), "{name}");
    }
}

#[tokio::test]
async fn a_done_key_replays_until_its_ttl_then_is_free() {
    for (name, store) in stores().await {
        let clock = ManualClock::default();
        let ledger = ledger(&store, &clock);
        let none = History::holding(&[]);
        let key = fresh_key();
        let first = published(begin(&ledger, key, 1, &none).await);
        assert!(ledger.finish(&first).await.expect("finish"), "{name}");
        clock.advance(TimeDelta::from_std(TTL).expect("a span") - TimeDelta::seconds(1));
        assert!(
            matches!(begin(&ledger, key, 1, &none).await, Begun::Replay(id) if id == first.id())
        );
        assert!(
            matches!(begin(&ledger, key, 2, &none).await, Begun::Reused),
            "{name}"
        );
        clock.advance(TimeDelta::seconds(2));
        let again = published(begin(&ledger, key, 2, &none).await);
        assert_ne!(again.id(), first.id(), "{name}");
        assert!(!again.taken_over(), "{name}");
        assert_eq!(none.asked.load(Ordering::Relaxed), 0, "{name}");
    }
}

#[tokio::test]
async fn the_pruner_deletes_expired_keys_only() {
    let file = std::env::temp_dir().join(format!("sse-ticket-idem-{}.db", Uuid::new_v4()));
    let url = DatabaseUrl::parse(&format!("sqlite://{}", file.display())).expect("a URL");
    let db = Database::open(&url).await.expect("SQLite");
    let store: Arc<dyn IdempotencyStore> = Arc::new(DatabaseStore::new(db.clone()));
    let clock = ManualClock::default();
    let ledger = ledger(&store, &clock);
    let none = History::holding(&[]);
    let (old, new) = (fresh_key(), fresh_key());
    let first = published(begin(&ledger, old, 1, &none).await);
    assert!(ledger.finish(&first).await.expect("finish"));
    clock.advance(TimeDelta::seconds(10));
    published(begin(&ledger, new, 1, &none).await);
    let before_expiry =
        clock.now() + TimeDelta::from_std(TTL).expect("a span") - TimeDelta::seconds(1);
    assert_eq!(
        DatabaseStore::prune(&db, before_expiry)
            .await
            .expect("prune"),
        1
    );
    assert!(matches!(
        begin(&ledger, new, 1, &none).await,
        Begun::InProgress { .. }
    ));
}

#[tokio::test]
async fn concurrent_claims_of_one_key_elect_one_owner() {
    for (name, store) in stores().await {
        let clock = ManualClock::default();
        let now = clock.now();
        let times = Times {
            now,
            lease_until: now + TimeDelta::seconds(10),
            expires_at: now + TimeDelta::seconds(60),
        };
        let (key, other) = (fresh_key(), fresh_key());
        let claims: Vec<Claim> = (0..20)
            .map(|_| Claim {
                owner: Owner::random(),
                fingerprint: fingerprint(1),
                id: Uuid::now_v7(),
            })
            .collect();
        // Queued together, so that the database store's writer takes
        // several of them (and one of another key) in one transaction.
        let attempts = claims.iter().map(|claim| store.claim(key, claim, times));
        let lone = Claim {
            owner: Owner::random(),
            fingerprint: fingerprint(2),
            id: Uuid::now_v7(),
        };
        let (found, alone) = tokio::join!(
            futures_util::future::join_all(attempts),
            store.claim(other, &lone, times)
        );
        assert_eq!(
            alone.expect("a claim"),
            None,
            "{name}: the other key is claimed"
        );
        let found: Vec<Option<Entry>> = found.into_iter().map(|f| f.expect("a claim")).collect();
        let winners: Vec<&Claim> = claims
            .iter()
            .zip(&found)
            .filter(|(_, found)| found.is_none())
            .map(|(claim, _)| claim)
            .collect();
        assert_eq!(winners.len(), 1, "{name}: one owner");
        for entry in found.iter().flatten() {
            match entry {
                Entry::Pending { claim, .. } => assert_eq!(claim, winners[0], "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        // Completed by the winner only.
        let loser = claims.iter().find(|c| c != &winners[0]).expect("a loser");
        assert!(
            !store
                .complete(key, &loser.owner, now, times.expires_at)
                .await
                .expect("complete")
        );
        assert!(
            store
                .complete(key, &winners[0].owner, now, times.expires_at)
                .await
                .expect("complete")
        );
    }
}
