//! Several instances on one Redis and one database, as behind a load
//! balancer; and what happens when Redis goes away and comes back.
//!
//! They need a Redis: `.ci/run` runs them with `SSE_TICKET_TEST_REDIS_URL`
//! (and Postgres as the shared database); the outage test starts a
//! `redis-server` of its own.

mod failover;
mod idempotency;
mod instances;
mod introspection;
mod jti;
mod outage;
mod redis_cluster;
mod topics;
mod trust;
mod webhook;

use serde_json::json;
use sse_ticket::Config;
use sse_ticket::clock::ManualClock;

use crate::helpers::{
    SseStream, TestApp, fresh_database_url, redis_settings, spawn_config_with_clock, test_config,
    test_redis_url,
};

pub(super) const NEEDS_REDIS: &str =
    "set SSE_TICKET_TEST_REDIS_URL to a Redis these tests may write to";

/// Two instances sharing a Redis namespace, a database and a clock.
async fn spawn_pair_on(redis_url: &str, tweak: impl Fn(&mut Config)) -> (TestApp, TestApp) {
    spawn_pair_with(redis_settings(redis_url), tweak).await
}

/// Two instances given the same Redis settings, a database and a clock.
async fn spawn_pair_with(
    redis: sse_ticket::config::RedisSettings,
    tweak: impl Fn(&mut Config),
) -> (TestApp, TestApp) {
    let database_url = fresh_database_url().await;
    let clock = ManualClock::default();
    let config = || {
        let mut config = test_config(&database_url);
        config.redis = Some(redis.clone());
        tweak(&mut config);
        config
    };
    let a = spawn_config_with_clock(config(), clock.clone()).await;
    let b = spawn_config_with_clock(config(), clock).await;
    (a, b)
}

/// Collects the ids of `stream`'s events until one of type `end`.
fn collect_until_end(mut stream: SseStream) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut ids = Vec::new();
        loop {
            let frame = stream.next_event().await;
            if frame.event.as_deref() == Some("end") {
                return ids;
            }
            ids.push(frame.id.expect("an event id"));
        }
    })
}

/// `attempts` concurrent connects with one `ticket`, half on each instance:
/// exactly one opens a stream, every other gets `401`.
async fn assert_exactly_one_redeems(a: &TestApp, b: &TestApp, ticket: &str, attempts: usize) {
    let connects = (0..attempts).map(|i| if i % 2 == 0 { a } else { b }.get_stream(ticket));
    let responses = futures_util::future::join_all(connects).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    let count = |status| statuses.iter().filter(|s| **s == status).count();
    assert_eq!(count(200), 1, "{statuses:?}");
    assert_eq!(count(401), attempts - 1, "{statuses:?}");
}

/// An event published on either instance reaches a stream on each, with
/// one id, its type and its data.
async fn assert_events_reach_both(a: &TestApp, b: &TestApp) {
    let mut on_a = a.subscribe("alice", &["orders/*"]).await;
    let mut on_b = b.subscribe("bob", &["orders/42"]).await;
    for (publisher, n) in [(a, 1), (b, 2)] {
        let id = publisher
            .publish("orders/42", Some("order.paid"), json!({ "n": n }))
            .await;
        for stream in [&mut on_a, &mut on_b] {
            let frame = stream.next_event().await;
            assert_eq!(frame.id.as_deref(), Some(id.as_str()), "same id everywhere");
            assert_eq!(frame.event.as_deref(), Some("order.paid"));
            assert_eq!(frame.json(), json!({ "n": n }));
        }
    }
}

/// Two instances on the suite's Redis (see [`spawn_pair_on`]).
async fn spawn_pair(tweak: impl Fn(&mut Config)) -> (TestApp, TestApp) {
    let url = test_redis_url().expect(NEEDS_REDIS);
    spawn_pair_on(&url, tweak).await
}

/// One instance on the shared Redis, and its key prefix.
async fn spawn_on_redis() -> (TestApp, String, redis::aio::MultiplexedConnection) {
    let url = test_redis_url().expect(NEEDS_REDIS);
    let redis = redis_settings(&url);
    let prefix = redis.prefix.clone();
    let mut config = test_config(&fresh_database_url().await);
    config.redis = Some(redis);
    let app = spawn_config_with_clock(config, ManualClock::default()).await;
    let connection = redis::Client::open(url)
        .expect("URL")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers");
    (app, prefix, connection)
}
