//! The outbox's `idempotency_key`: deduplicated as `POST /publish`'s
//! `Idempotency-Key`, in a scope of the outbox's own.

use serde_json::json;

use crate::helpers::{AppDb, spawn_with_outbox};
use crate::idempotency::{post_keyed, published};

#[tokio::test]
#[ignore = "needs Postgres: .ci/run runs it with SSE_TICKET_TEST_POSTGRES_URL"]
async fn rows_with_one_key_publish_one_event_and_another_body_under_it_is_dead_lettered() {
    let db = AppDb::fresh().await;
    let app = spawn_with_outbox(&db).await;
    let mut live = app.subscribe("alice", &["orders/42"]).await;
    // The app inserted its event twice (a retried job), then another body
    // under the same key, an event without a key, and an empty key.
    db.execute(
        r#"INSERT INTO sse_outbox (topic, event, data, idempotency_key) VALUES
            ('orders/42', 'order.paid', '{"total": 12}', 'order-42-paid'),
            ('orders/42', 'order.paid', '{"total":12}', 'order-42-paid'),
            ('orders/42', 'order.paid', '{"total": 13}', 'order-42-paid'),
            ('orders/42', 'order.shipped', 'null', NULL),
            ('orders/42', 'order.lost', 'null', '');"#,
    )
    .await;

    let paid = live.next_event().await;
    assert_eq!(paid.event.as_deref(), Some("order.paid"));
    assert_eq!(paid.json(), json!({"total": 12}));
    // Nothing between the two: the repeat published nothing.
    let shipped = live.next_event().await;
    assert_eq!(shipped.event.as_deref(), Some("order.shipped"));
    db.wait_drained().await;
    let dead = db.dead().await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(
        dead[0].1.contains("Idempotency-Key was already used"),
        "{dead:?}"
    );
    assert_eq!(dead[1].1, "idempotency_key is empty");
    assert_eq!(
        app.metric("sse_ticket_idempotency_total{outcome=\"replayed\"}")
            .await,
        1.0
    );

    // A bearer's key of the same name is its own.
    let bearer = app.token("backend", &[], &["orders/*"]);
    let body = json!({ "topic": "orders/42", "event": "order.paid", "data": { "total": 12 } });
    let response = post_keyed(&app, &bearer, &[b"order-42-paid"], &body.to_string()).await;
    let (id, replayed) = published(response).await;
    assert!(!replayed);
    assert_ne!(Some(id), paid.id);
}

#[tokio::test]
#[ignore = "needs Postgres: .ci/run runs it with SSE_TICKET_TEST_POSTGRES_URL"]
async fn a_row_without_a_key_that_comes_back_after_its_publish_is_not_published_twice() {
    let db = AppDb::fresh().await;
    let app = spawn_with_outbox(&db).await;
    let mut live = app.subscribe("alice", &["orders/42"]).await;
    db.execute(
        r#"CREATE TABLE kept AS SELECT * FROM sse_outbox WITH NO DATA;
           INSERT INTO sse_outbox (topic, event, data) VALUES ('orders/42', 'order.paid', '{"n": 1}');
           INSERT INTO kept SELECT * FROM sse_outbox;"#,
    )
    .await;
    let first = live.next_event().await;
    assert_eq!(first.json(), json!({"n": 1}));
    db.wait_drained().await;
    // The row as it was before its round committed: what an instance
    // killed between its publish and its commit leaves behind. Then a new
    // row, to see what was published between them.
    db.execute(
        r#"INSERT INTO sse_outbox SELECT * FROM kept;
           INSERT INTO sse_outbox (topic, event, data) VALUES ('orders/42', 'order.paid', '{"n": 2}');"#,
    )
    .await;
    let next = live.next_event().await;
    assert_eq!(
        next.json(),
        json!({"n": 2}),
        "the row came back unpublished"
    );
    db.wait_drained().await;
    assert!(db.dead().await.is_empty());
    assert_eq!(
        app.metric("sse_ticket_idempotency_total{outcome=\"replayed\"}")
            .await,
        1.0
    );
}
