//! When rows cannot be published now: the outbox database unreachable, the
//! service's history unreachable, a row another transaction holds. Rows
//! wait, in order, the lag shows it, and `/readyz` names the outbox.

use serde_json::{Value, json};

use crate::helpers::{
    AppDb, Relay, advancing_clock, fresh_database_url, spawn_app_with, spawn_config,
    spawn_with_outbox, test_config, wait_for_metric_at_least, wait_for_outbox,
};

const LAG: &str = "sse_ticket_outbox_lag_seconds";

#[tokio::test]
#[ignore = "needs Postgres: .ci/run runs it with SSE_TICKET_TEST_POSTGRES_URL"]
async fn readyz_names_the_outbox_while_its_database_is_unreachable() {
    let db = AppDb::fresh().await;
    let (relay, relayed) = Relay::to_postgres(&db.url).await;
    relay.cut();
    // It starts anyway, and says what is missing.
    let app = spawn_app_with(|config| config.outbox = Some(AppDb::settings_via(&relayed))).await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let json: Value = response.json().await.expect("JSON");
    assert_eq!(json["message"], "the outbox backend is not available");
    assert_eq!(json["backends"]["outbox"], "unavailable");
    assert_eq!(json["backends"]["database"], "ok");

    // The app made its tables meanwhile and committed a row: it waits.
    db.execute(&sse_ticket::outbox::schema_sql("sse_outbox"))
        .await;
    db.insert("t", None, json!("waited")).await;
    let mut stream = app.subscribe("alice", &["t"]).await;
    relay.restore();
    wait_for_outbox(&app, "ok").await;
    // Found once the database answers again (the clock never moves: no poll).
    assert_eq!(stream.next_event().await.json(), json!("waited"));
    // (Its deletion commits just after the fan-out: cut before, it would be
    // published again, the at-least-once case docs/outbox.md describes.)
    db.wait_drained().await;

    // Cut again while it waits: the row committed meanwhile notifies
    // nobody, and is found when the listener is back.
    relay.cut();
    wait_for_outbox(&app, "unavailable").await;
    assert_eq!(app.get("/readyz").await.status(), 503);
    db.insert("t", None, json!("missed notification")).await;
    relay.restore();
    assert_eq!(
        stream.next_event().await.json(),
        json!("missed notification")
    );
}

#[tokio::test]
#[ignore = "needs Postgres: .ci/run runs it with SSE_TICKET_TEST_POSTGRES_URL"]
async fn rows_whose_history_cannot_be_written_wait_in_order_and_the_lag_shows_it() {
    let db = AppDb::fresh().await;
    let (relay, relayed) = Relay::to_postgres(&fresh_database_url().await).await;
    let mut config = test_config(&relayed);
    config.outbox = Some(db.settings());
    let app = spawn_config(config).await;
    wait_for_outbox(&app, "ok").await;
    let mut stream = app.subscribe("alice", &["t"]).await;
    db.insert("t", None, json!(1)).await;
    assert_eq!(stream.next_event().await.json(), json!(1));

    // The service's database goes away: publishing fails for now.
    relay.cut();
    db.execute(
        "INSERT INTO sse_outbox (topic, data, created_at) \
         VALUES ('t', '2', now() - interval '1 minute'), ('t', '3', now())",
    )
    .await;
    let lag = wait_for_metric_at_least(&app, LAG, 60.0).await;
    assert!(lag < 600.0, "the oldest row's age: {lag}");
    assert_eq!(db.waiting().await, 2, "nothing is lost meanwhile");

    relay.restore();
    assert_eq!(stream.next_event().await.json(), json!(2));
    assert_eq!(stream.next_event().await.json(), json!(3));
    db.wait_drained().await;
    assert!(
        db.dead().await.is_empty(),
        "an outage is no reason to dead-letter"
    );
    app.wait_for_metric(LAG, 0.0).await;
}

#[tokio::test]
#[ignore = "needs Postgres: .ci/run runs it with SSE_TICKET_TEST_POSTGRES_URL"]
async fn a_row_another_transaction_holds_keeps_its_topic_waiting_behind_it() {
    let db = AppDb::fresh().await;
    db.execute(&sse_ticket::outbox::schema_sql("sse_outbox"))
        .await;
    db.execute(
        "INSERT INTO sse_outbox (topic, data, created_at) \
         VALUES ('x', '1', now() - interval '1 minute'), ('x', '2', now())",
    )
    .await;
    let mut holder = db.pool.begin().await.expect("a transaction");
    sqlx::query("SELECT id FROM sse_outbox WHERE data = '1' FOR UPDATE")
        .execute(&mut *holder)
        .await
        .expect("hold the first row");

    let app = spawn_with_outbox(&db).await;
    let mut stream = app.subscribe("alice", &["x", "y"]).await;
    db.insert("y", None, json!("free")).await;
    // Another topic goes by; row 2 of x does not jump row 1.
    assert_eq!(stream.next_event().await.json(), json!("free"));
    app.wait_for_metric("sse_ticket_outbox_published_total", 1.0)
        .await;
    let lag = wait_for_metric_at_least(&app, LAG, 60.0).await;
    assert!(lag < 600.0, "the held row's age: {lag}");

    holder.commit().await.expect("release the row");
    // No insert, no notification: the poll finds them.
    let first = advancing_clock(&app, stream.next_event()).await;
    assert_eq!(first.json(), json!(1));
    assert_eq!(stream.next_event().await.json(), json!(2));
    app.wait_for_metric(LAG, 0.0).await;
}
