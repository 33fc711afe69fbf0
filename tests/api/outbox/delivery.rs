//! What an app's transaction publishes: a committed row reaches streams and
//! history, a rolled-back one nothing; rows wait for a server to start; a
//! notification wakes it, the poll finds rows without one.

use serde_json::json;
use sse_ticket::namespace::{Namespace, NamespaceRules};

use crate::helpers::{
    AppDb, advancing_clock, assert_error, fresh_database_url, resume, spawn_config,
    spawn_with_outbox, test_config, wait_for_outbox,
};

#[tokio::test]
#[ignore = "needs Postgres: .ci/run runs it with SSE_TICKET_TEST_POSTGRES_URL"]
async fn a_committed_row_reaches_live_streams_and_history_and_a_rolled_back_one_nothing() {
    let db = AppDb::fresh().await;
    let app = spawn_with_outbox(&db).await;
    db.execute("CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL); INSERT INTO orders VALUES (42, 'new');")
        .await;
    let before = app.publish("orders/42", None, json!("before")).await;
    let mut live = app.subscribe("alice", &["orders/42"]).await;

    // The app's transaction, rolled back: its event with it.
    db.execute(
        r#"BEGIN;
        UPDATE orders SET status = 'cancelled' WHERE id = 42;
        INSERT INTO sse_outbox (topic, event, data) VALUES ('orders/42', 'order.updated', '{"status":"cancelled"}');
        ROLLBACK;"#,
    )
    .await;
    // The worked example of docs/outbox.md, committed.
    db.execute(
        r#"BEGIN;
        UPDATE orders SET status = 'paid' WHERE id = 42;
        INSERT INTO sse_outbox (topic, event, data) VALUES ('orders/42', 'order.updated', '{"status":"paid"}');
        COMMIT;"#,
    )
    .await;

    let paid = live.next_event().await;
    assert_eq!(paid.event.as_deref(), Some("order.updated"));
    assert_eq!(paid.json(), json!({"status": "paid"}));
    let id = paid.id.clone().expect("an id");
    let mut resumed = resume(&app, "bob", &["orders/42"], &before).await;
    let replayed = resumed.next_event().await;
    assert_eq!(
        replayed.id.as_deref(),
        Some(id.as_str()),
        "the resume replays it"
    );
    assert_eq!(replayed.json(), json!({"status": "paid"}));

    // Nothing came before it, and the next event is the next row.
    db.insert("orders/42", None, json!({"status": "shipped"}))
        .await;
    assert_eq!(live.next_event().await.json(), json!({"status": "shipped"}));
    assert_eq!(
        resumed.next_event().await.json(),
        json!({"status": "shipped"})
    );
    db.wait_drained().await;
    app.wait_for_metric("sse_ticket_outbox_published_total", 2.0)
        .await;
    app.wait_for_metric("sse_ticket_outbox_dead_lettered_total", 0.0)
        .await;
}

#[tokio::test]
#[ignore = "needs Postgres: .ci/run runs it with SSE_TICKET_TEST_POSTGRES_URL"]
async fn rows_committed_while_no_instance_runs_are_published_at_start_up() {
    let db = AppDb::fresh().await;
    // The app made the tables itself, with the SQL of docs/outbox.md.
    db.execute(&sse_ticket::outbox::schema_sql("sse_outbox"))
        .await;
    let service = fresh_database_url().await;
    let first = spawn_config(test_config(&service)).await;
    let before = first.publish("t", None, json!(0)).await;
    first.stopper().stop().await;

    for n in 1..=3 {
        db.insert("t", Some("counted"), json!(n)).await;
    }
    let mut config = test_config(&service);
    config.outbox = Some(db.settings());
    let app = spawn_config(config).await;
    let mut resumed = resume(&app, "alice", &["t"], &before).await;
    for n in 1..=3 {
        let event = resumed.next_event().await;
        assert_eq!(
            (event.event.as_deref(), event.json()),
            (Some("counted"), json!(n))
        );
    }
    db.wait_drained().await;
}

#[tokio::test]
#[ignore = "needs Postgres: .ci/run runs it with SSE_TICKET_TEST_POSTGRES_URL"]
async fn invalid_rows_are_dead_lettered_with_their_reason_and_block_nothing_behind_them() {
    let db = AppDb::fresh().await;
    let app = spawn_with_outbox(&db).await;
    let mut stream = app.subscribe("alice", &["t"]).await;
    // One transaction: ids 1 to 8 in this order.
    db.execute(
        r#"INSERT INTO sse_outbox (topic, event, data) VALUES
        ('t', NULL, '1'),
        ('a//b', NULL, '"bad topic"'),
        ('t', 'ready', '"reserved type"'),
        ('t', NULL, NULL),
        ('t', NULL, jsonb_build_object('s', repeat('x', 70000))),
        ('t', NULL, jsonb_build_object('s', repeat('x', 200000))),
        (NULL, NULL, '"no topic"'),
        ('t', NULL, '2');"#,
    )
    .await;
    assert_eq!(stream.next_event().await.json(), json!(1));
    assert_eq!(stream.next_event().await.json(), json!(2));
    db.wait_drained().await;

    let dead = db.dead().await;
    let ids: Vec<i64> = dead.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [2, 3, 4, 5, 6, 7], "{dead:?}");
    for ((id, reason), wanted) in dead.iter().zip([
        "\"a//b\" is not a topic",
        "reserved",
        "data is NULL",
        "the limit for this topic is 65536",
        "over any topic's limit",
        "topic is NULL",
    ]) {
        assert!(reason.contains(wanted), "row {id}: {reason}");
    }
    // The dead-letter table keeps the row itself.
    let kept: (String, String) =
        sqlx::query_as("SELECT topic, data::text FROM sse_outbox_dead WHERE id = 2")
            .fetch_one(&db.pool)
            .await
            .expect("the dead row");
    assert_eq!(kept, ("a//b".into(), "\"bad topic\"".into()));
    app.wait_for_metric("sse_ticket_outbox_dead_lettered_total", 6.0)
        .await;
    app.wait_for_metric("sse_ticket_outbox_published_total", 2.0)
        .await;
}

#[tokio::test]
#[ignore = "needs Postgres: .ci/run runs it with SSE_TICKET_TEST_POSTGRES_URL"]
async fn a_notification_wakes_the_consumer_with_no_poll() {
    // The poll runs on the server's clock, which this test never moves: the
    // second row can only be found because its insert notified.
    let db = AppDb::fresh().await;
    let app = spawn_with_outbox(&db).await;
    let mut stream = app.subscribe("alice", &["t"]).await;
    db.insert("t", None, json!(1)).await;
    assert_eq!(stream.next_event().await.json(), json!(1));
    db.insert("t", None, json!(2)).await;
    assert_eq!(stream.next_event().await.json(), json!(2));
}

#[tokio::test]
#[ignore = "needs Postgres: .ci/run runs it with SSE_TICKET_TEST_POSTGRES_URL"]
async fn without_the_trigger_the_poll_finds_rows_each_second() {
    let db = AppDb::fresh().await;
    let app = spawn_with_outbox(&db).await;
    let mut stream = app.subscribe("alice", &["t"]).await;
    db.execute("DROP TRIGGER sse_outbox_notify ON sse_outbox")
        .await;
    db.insert("t", None, json!("polled")).await;
    let event = advancing_clock(&app, stream.next_event()).await;
    assert_eq!(event.json(), json!("polled"));
}

#[tokio::test]
#[ignore = "needs Postgres: .ci/run runs it with SSE_TICKET_TEST_POSTGRES_URL"]
async fn the_outbox_publishes_where_the_namespace_refuses_publish() {
    let db = AppDb::fresh().await;
    let app = crate::helpers::spawn_app_with(|config| {
        config.outbox = Some(db.settings());
        let rules = NamespaceRules {
            publish: Some(false),
            ..NamespaceRules::default()
        };
        config.namespaces = vec![Namespace::new("internal", rules).expect("a namespace")];
    })
    .await;
    wait_for_outbox(&app, "ok").await;
    let mut stream = app.subscribe("alice", &["internal/audit"]).await;
    let publisher = app.token("backend", &[], &["*"]);
    let body = json!({"topic": "internal/audit", "data": "by hand"}).to_string();
    assert_error(
        app.post_publish(Some(&publisher), &body).await,
        403,
        "forbidden_topic",
    )
    .await;
    db.insert("internal/audit", None, json!("from the outbox"))
        .await;
    assert_eq!(stream.next_event().await.json(), json!("from the outbox"));
}
