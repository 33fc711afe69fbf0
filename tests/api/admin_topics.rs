//! `GET /admin/topics`: open streams per subscribed pattern (on one instance;
//! across instances in `cluster/topics.rs`).

use serde_json::{Value, json};

use crate::helpers::{PATIENCE, TestApp, assert_bearer_error, assert_error, spawn_app};

/// `[{"pattern", "streams"}, …]` as the endpoint answers it.
fn counts(pairs: &[(&str, u64)]) -> Value {
    pairs
        .iter()
        .map(|(pattern, streams)| json!({ "pattern": pattern, "streams": streams }))
        .collect()
}

/// Publishes to `topic` (a write is how the server notices a client that
/// left) until `/admin/topics` answers `want`.
async fn wait_for_topics(app: &TestApp, topic: &str, want: &Value) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let got = app.admin_topics("").await;
        if &got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "topics stayed {got}, wanted {want}"
        );
        app.publish(topic, None, json!("anyone there?")).await;
    }
}

#[tokio::test]
async fn open_streams_are_counted_once_per_pattern_of_their_ticket() {
    let app = spawn_app().await;
    assert_eq!(app.admin_topics("").await, json!([]));

    let _alice = app.subscribe("alice", &["orders/*", "news"]).await;
    let _bob = app.subscribe("bob", &["orders/*"]).await;
    let _carol = app.subscribe("carol", &["orders/42"]).await;

    let all = counts(&[("news", 1), ("orders/*", 2), ("orders/42", 1)]);
    assert_eq!(app.admin_topics("").await, all, "sorted by pattern");
    // The same counts as this instance's metric.
    for (pattern, streams) in [("news", 1.0), ("orders/*", 2.0), ("orders/42", 1.0)] {
        let sample = format!(r#"sse_ticket_topic_streams{{pattern="{pattern}"}}"#);
        assert_eq!(app.metric(&sample).await, streams, "{sample}");
    }
}

#[tokio::test]
async fn the_prefix_keeps_the_patterns_that_start_with_it() {
    let app = spawn_app().await;
    let _alice = app.subscribe("alice", &["orders/*", "news"]).await;
    let _carol = app.subscribe("carol", &["orders/42"]).await;
    let _dave = app.subscribe("dave", &["ordersx"]).await;

    let orders = counts(&[("orders/*", 1), ("orders/42", 1)]);
    assert_eq!(app.admin_topics("?prefix=orders/").await, orders);
    assert_eq!(
        app.admin_topics("?prefix=orders").await,
        counts(&[("orders/*", 1), ("orders/42", 1), ("ordersx", 1)])
    );
    assert_eq!(
        app.admin_topics("?prefix=news").await,
        counts(&[("news", 1)])
    );
    assert_eq!(app.admin_topics("?prefix=payments").await, json!([]));
    assert_eq!(
        app.admin_topics("?prefix=").await,
        app.admin_topics("").await,
        "an empty prefix keeps every pattern"
    );
}

#[tokio::test]
async fn a_stream_that_ends_drops_out_of_the_counts() {
    let app = spawn_app().await;
    let alice = app.subscribe("alice", &["orders/*", "alerts"]).await;
    let mut bob = app.subscribe("bob", &["orders/*", "news"]).await;
    let _carol = app.subscribe("carol", &["news"]).await;
    assert_eq!(
        app.admin_topics("").await,
        counts(&[("alerts", 1), ("news", 2), ("orders/*", 2)])
    );

    // The client leaves (noticed at the next event sent to it alone).
    drop(alice);
    wait_for_topics(&app, "alerts", &counts(&[("news", 2), ("orders/*", 1)])).await;

    // The server ends the stream.
    assert_eq!(app.revoke("bob").await.status(), 200);
    assert_eq!(bob.next_event().await.event.as_deref(), Some("close"));
    bob.assert_ends().await;
    assert_eq!(app.admin_topics("").await, counts(&[("news", 1)]));
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(
        !metrics.contains(r#"pattern="orders/*""#),
        "a pattern without streams leaves the metric:\n{metrics}"
    );
}

#[tokio::test]
async fn a_prefix_outside_the_topic_alphabet_is_refused() {
    let app = spawn_app().await;
    let too_long = format!("?prefix={}", "a".repeat(256));
    for query in [
        "?prefix=orders/*",
        "?prefix=a%20b",
        "?prefix=%C3%A4",
        &too_long,
    ] {
        let response = app.get_admin_topics(query).await;
        assert_error(response, 400, "invalid_query").await;
    }
    let longest = format!("?prefix={}", "a/".repeat(127) + "a");
    assert_eq!(
        app.admin_topics(&longest).await,
        json!([]),
        "255 characters"
    );
}

#[tokio::test]
async fn only_an_admin_reads_the_counts() {
    let app = spawn_app().await;
    let anonymous = app.get("/admin/topics").await;
    assert_bearer_error(anonymous, "missing_token").await;

    let subscriber = app.token("alice", &["*"], &["*"]);
    let response = app
        .client
        .get(app.url("/admin/topics"))
        .bearer_auth(subscriber)
        .send()
        .await
        .expect("GET /admin/topics");
    assert_error(response, 403, "forbidden").await;
}
