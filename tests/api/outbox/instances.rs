//! Several instances on one outbox: every row published once, in order per
//! topic, however the rows come.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::postgres::PgPoolOptions;

use crate::helpers::{
    AppDb, PATIENCE, fresh_database_url, spawn_config, test_config, wait_for_outbox,
};

/// Topics the rows are spread over.
const TOPICS: i64 = 10;
/// Rows per insert (one transaction each).
const BURST: i64 = 100;
/// Rows in all.
const ROWS: i64 = 2_000;

#[tokio::test]
#[ignore = "needs Postgres: .ci/run runs it with SSE_TICKET_TEST_POSTGRES_URL"]
async fn two_instances_publish_every_row_once_in_order_per_topic() {
    let db = AppDb::fresh().await;
    // One fleet: one service database (and one Redis when the suite has one).
    let service = fresh_database_url().await;
    let mut config = test_config(&service);
    config.outbox = Some(db.settings());
    // Started together: both find the tables missing and create them in turn.
    let (a, b) = tokio::join!(spawn_config(config.clone()), spawn_config(config));
    wait_for_outbox(&a, "ok").await;
    wait_for_outbox(&b, "ok").await;

    for first in (0..ROWS).step_by(BURST as usize) {
        sqlx::query(
            "INSERT INTO sse_outbox (topic, event, data) \
             SELECT 'topic/' || (n % $3), 'counted', jsonb_build_object('n', n) \
             FROM generate_series($1::int8, $2::int8) AS n",
        )
        .bind(first)
        .bind(first + BURST - 1)
        .bind(TOPICS)
        .execute(&db.pool)
        .await
        .expect("a burst of rows");
    }

    let sample = "sse_ticket_outbox_published_total";
    let deadline = tokio::time::Instant::now() + 6 * PATIENCE;
    let (by_a, by_b) = loop {
        let (by_a, by_b) = (a.metric(sample).await, b.metric(sample).await);
        if by_a + by_b >= ROWS as f64 || tokio::time::Instant::now() > deadline {
            break (by_a, by_b);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    eprintln!("published by the first instance: {by_a}, by the second: {by_b}");
    assert_eq!(by_a + by_b, ROWS as f64, "rows published");
    assert_eq!(db.waiting().await, 0);
    assert!(db.dead().await.is_empty());

    // The history, in the order the instances accepted the events.
    let history = PgPoolOptions::new()
        .max_connections(1)
        .connect(&service)
        .await
        .expect("the service database");
    let events: Vec<(String, String)> =
        sqlx::query_as("SELECT topic, data FROM events WHERE topic LIKE 'topic/%' ORDER BY seq")
            .fetch_all(&history)
            .await
            .expect("the history");
    let mut published: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (topic, data) in events {
        let data: Value = serde_json::from_str(&data).expect("JSON data");
        published
            .entry(topic)
            .or_default()
            .push(data["n"].as_i64().expect("n"));
    }
    for topic in 0..TOPICS {
        let wanted: Vec<i64> = (0..ROWS).filter(|n| n % TOPICS == topic).collect();
        assert_eq!(
            published.get(&format!("topic/{topic}")),
            Some(&wanted),
            "topic/{topic}: each row once, in order"
        );
    }
}
