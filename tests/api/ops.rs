//! Operations endpoints and answers to requests nobody routes.

use serde_json::{Value, json};

use crate::helpers::{Relay, assert_error, header, spawn_app};

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.expect("JSON"),
        json!({ "status": "ok" })
    );
}

#[tokio::test]
async fn readyz_names_every_backend() {
    let app = spawn_app().await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.expect("JSON");
    assert_eq!(json["status"], "ready");
    assert_eq!(
        json["backends"],
        json!({ "keys": "ok", "database": "ok", "tickets": "ok", "broker": "ok" })
    );
}

#[tokio::test]
async fn metrics_cover_tickets_streams_events_and_latency() {
    let app = spawn_app().await;
    let _stream = app.subscribe("alice", &[]).await;
    app.publish("user/alice", None, json!(1)).await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").contains("text"));
    let text = response.text().await.expect("text");
    for sample in [
        "sse_ticket_tickets_issued_total 1",
        "sse_ticket_tickets_redeemed_total 1",
        "sse_ticket_tickets_outstanding 0",
        "sse_ticket_streams_open 1",
        "sse_ticket_events_published_total 1",
        "sse_ticket_events_delivered_total 1",
        r#"sse_ticket_http_request_duration_seconds_count{method="POST",route="/sse-token",status="200"} 1"#,
        r#"sse_ticket_http_request_duration_seconds_count{method="GET",route="/stream",status="200"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == sample),
            "missing {sample:?} in\n{text}"
        );
    }
}

#[tokio::test]
async fn the_spec_is_served_byte_for_byte() {
    let app = spawn_app().await;
    let response = app.get("/openapi.yaml").await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").contains("yaml"));
    let served = response.bytes().await.expect("body");
    let file =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).expect("openapi.yaml");
    assert_eq!(served.as_ref(), file.as_slice());
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let app = spawn_app().await;
    let response = app.get("/nope").await;
    assert_error(response, 404, "not_found").await;
    let response = app
        .client
        .delete(app.url("/sse-token"))
        .send()
        .await
        .expect("request");
    assert_eq!(header(&response, "allow"), "POST");
    assert_error(response, 405, "method_not_allowed").await;
    let response = app
        .client
        .post(app.url("/healthz"))
        .send()
        .await
        .expect("request");
    assert_eq!(header(&response, "allow"), "GET");
    assert_error(response, 405, "method_not_allowed").await;
}

#[tokio::test]
#[ignore = "needs a Postgres to cut off: .ci/run runs it with SSE_TICKET_TEST_POSTGRES_URL"]
async fn readyz_names_the_database_when_it_stops_answering() {
    assert!(
        std::env::var("SSE_TICKET_TEST_POSTGRES_URL").is_ok(),
        "set SSE_TICKET_TEST_POSTGRES_URL to a Postgres this test can cut off"
    );
    let direct = crate::helpers::fresh_database_url().await;
    let (relay, relayed) = Relay::to_postgres(&direct).await;
    let relayed = relayed.parse().expect("a database URL");
    let app = crate::helpers::spawn_app_with(|c| c.database_url = relayed).await;
    assert_eq!(app.get("/readyz").await.status(), 200);

    relay.cut();
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let json: Value = response.json().await.expect("JSON");
    assert_eq!(json["error"], "unavailable");
    assert_eq!(json["backends"]["database"], "unavailable");
    assert!(
        json["message"]
            .as_str()
            .is_some_and(|m| m.contains("database")),
        "{json}"
    );
    // Tickets do not depend on the database; publishing does.
    let bearer = app.token("alice", &[], &["*"]);
    assert_eq!(app.post_sse_token(Some(&bearer), None).await.status(), 200);
    let body = json!({ "topic": "t", "data": 1 }).to_string();
    assert_error(
        app.post_publish(Some(&bearer), &body).await,
        503,
        "unavailable",
    )
    .await;
}
