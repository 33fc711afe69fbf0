//! `GET /admin/topics` across instances: each reports its open streams per
//! pattern to Redis every 5 s of its clock, each report valid 15 s.

use std::collections::HashMap;

use chrono::{TimeDelta, Utc};
use redis::AsyncCommands as _;
use serde_json::{Value, json};
use sse_ticket::clock::ManualClock;

use super::NEEDS_REDIS;
use crate::helpers::{
    OwnRedis, PATIENCE, TestApp, assert_error, fresh_database_url, redis_settings,
    spawn_config_with_clock, test_config, test_redis_url,
};

/// How often an instance reports, and how long a report counts.
const REPORT_EVERY: TimeDelta = TimeDelta::seconds(5);
const REPORT_TTL: TimeDelta = TimeDelta::seconds(15);

/// Two instances on one Redis namespace and database, each on a clock of
/// its own (both starting at the same instant); the namespace's prefix.
async fn spawn_two_clocks(redis_url: &str) -> (TestApp, TestApp, String) {
    let database_url = fresh_database_url().await;
    let redis = redis_settings(redis_url);
    let start = Utc::now();
    let mut apps = Vec::new();
    for _ in 0..2 {
        let mut config = test_config(&database_url);
        config.redis = Some(redis.clone());
        apps.push(spawn_config_with_clock(config, ManualClock::new(start)).await);
    }
    let b = apps.pop().expect("b");
    let a = apps.pop().expect("a");
    (a, b, redis.prefix)
}

/// `[{"pattern", "streams"}, …]` as the endpoint answers it.
fn counts(pairs: &[(&str, u64)]) -> Value {
    pairs
        .iter()
        .map(|(pattern, streams)| json!({ "pattern": pattern, "streams": streams }))
        .collect()
}

/// Polls `GET /admin/topics<query>` on `app` until it answers `want`.
async fn wait_for_topics(app: &TestApp, query: &str, want: &Value) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let got = app.admin_topics(query).await;
        if &got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "topics{query} stayed {got}, wanted {want}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
#[ignore = "needs Redis: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn stream_counts_are_summed_across_instances() {
    let url = test_redis_url().expect(NEEDS_REDIS);
    let (a, b, _) = spawn_two_clocks(&url).await;
    let _alice = a.subscribe("alice", &["orders/*"]).await;
    let _bob = b.subscribe("bob", &["orders/*", "news"]).await;
    let _carol = b.subscribe("carol", &["orders/42"]).await;

    // Each sees its own streams at once, the other's from its next report.
    assert_eq!(a.admin_topics("").await, counts(&[("orders/*", 1)]));
    a.clock.advance(REPORT_EVERY);
    b.clock.advance(REPORT_EVERY);
    let fleet = counts(&[("news", 1), ("orders/*", 2), ("orders/42", 1)]);
    for app in [&a, &b] {
        wait_for_topics(app, "", &fleet).await;
        let orders = counts(&[("orders/*", 2), ("orders/42", 1)]);
        assert_eq!(app.admin_topics("?prefix=orders/").await, orders);
    }
    // The metric is the instance's own.
    let sample = r#"sse_ticket_topic_streams{pattern="orders/*"}"#;
    assert_eq!(a.metric(sample).await, 1.0);
    assert_eq!(b.metric(sample).await, 1.0);
}

#[tokio::test]
#[ignore = "needs Redis: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn an_instance_that_stops_reporting_drops_out_once_its_report_expires() {
    let url = test_redis_url().expect(NEEDS_REDIS);
    let (a, b, prefix) = spawn_two_clocks(&url).await;
    let _bob = b.subscribe("bob", &["orders/*"]).await;
    b.clock.advance(REPORT_EVERY);
    let on_b = counts(&[("orders/*", 1)]);
    wait_for_topics(&a, "", &on_b).await;

    let mut redis = redis::Client::open(url)
        .expect("URL")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers");
    let (topics, instances) = (format!("{prefix}topics"), format!("{prefix}instances"));
    let reports: HashMap<String, String> = redis.hgetall(&topics).await.expect("HGETALL");
    let b_id = reports
        .iter()
        .find(|(_, report)| report.contains("orders/*"))
        .map(|(id, _)| id.clone())
        .unwrap_or_else(|| panic!("B's report among {reports:?}"));

    // B stops: its last report, made at 5 s of its clock, counts until 20 s
    // of A's (the clocks started together), however few streams B holds now.
    b.stopper().stop().await;
    a.clock
        .advance(REPORT_EVERY + REPORT_TTL - TimeDelta::milliseconds(1));
    assert_eq!(a.admin_topics("").await, on_b, "not expired yet");
    a.clock.advance(TimeDelta::milliseconds(1));
    assert_eq!(a.admin_topics("").await, json!([]), "expired");
    // And the reading instance removed it.
    let kept: bool = redis.hexists(&topics, &b_id).await.expect("HEXISTS");
    let expiry: Option<f64> = redis.zscore(&instances, &b_id).await.expect("ZSCORE");
    assert!(
        !kept && expiry.is_none(),
        "B's report is gone: {kept} {expiry:?}"
    );
    // Both keys expire once no instance reports any more.
    for key in [&topics, &instances] {
        let ttl: i64 = redis.pttl(key).await.expect("PTTL");
        assert!((1..=60_000).contains(&ttl), "{key} has a TTL: {ttl}");
    }
}

#[tokio::test]
#[ignore = "needs redis-server: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn the_counts_answer_503_while_redis_is_down() {
    assert!(test_redis_url().is_some(), "{NEEDS_REDIS}");
    let mut redis = OwnRedis::start().await;
    let mut config = test_config(&fresh_database_url().await);
    config.redis = Some(redis_settings(&redis.url()));
    let app = spawn_config_with_clock(config, ManualClock::default()).await;
    let _alice = app.subscribe("alice", &["orders/*"]).await;
    assert_eq!(app.admin_topics("").await, counts(&[("orders/*", 1)]));

    redis.stop().await;
    let response = app.get_admin_topics("").await;
    assert_error(response, 503, "unavailable").await;

    redis.restart().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while app.get_admin_topics("").await.status() != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never answered 200 again"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.admin_topics("").await, counts(&[("orders/*", 1)]));
}
