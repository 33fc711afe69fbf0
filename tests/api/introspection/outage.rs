//! An introspection endpoint that is down, slow or failing: `503
//! unavailable`, never `401`, nothing of it cached; and the circuit breaker
//! that stops asking after 5 failures in a row.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sse_ticket::auth::UPSTREAM_TIMEOUT;

use super::{IntrospectionServer, Mode, active, spawn_with};
use crate::helpers::{TestApp, assert_error};

const TTL: Duration = Duration::from_secs(60);
const CIRCUIT: &str = r#"sse_ticket_auth_circuit_open{upstream="introspection"}"#;
const UNAVAILABLE: &str =
    r#"sse_ticket_auth_upstream_requests_total{upstream="introspection",outcome="unavailable"}"#;

async fn assert_unavailable(app: &TestApp, token: &str) {
    assert_error(
        app.post_sse_token(Some(token), None).await,
        503,
        "unavailable",
    )
    .await;
}

async fn assert_accepted(app: &TestApp, token: &str) {
    let response = app.post_sse_token(Some(token), None).await;
    assert_eq!(response.status(), 200, "{token} is accepted");
}

#[tokio::test]
async fn an_endpoint_that_is_down_is_503_and_its_return_is_seen_at_once() {
    let idp = IntrospectionServer::start().await;
    let app = spawn_with(&idp, TTL).await;
    let addr = format!(
        "{}:{}",
        idp.url.host_str().expect("host"),
        idp.url.port().expect("port")
    );
    idp.stop().await;

    assert_unavailable(&app, "opaque-alice").await;
    assert_unavailable(&app, "opaque-alice").await;
    assert_eq!(app.metric(UNAVAILABLE).await, 2.0);

    // Back on the same port: the outage was not remembered.
    let idp = IntrospectionServer::start_on(&addr).await;
    idp.answer("opaque-alice", active(&app, "alice", 3600, Value::Null));
    assert_accepted(&app, "opaque-alice").await;
    assert_eq!(idp.calls_for("opaque-alice"), 1);
}

#[tokio::test]
async fn an_endpoint_slower_than_two_seconds_is_503() {
    let idp = IntrospectionServer::start().await;
    let app = spawn_with(&idp, TTL).await;
    idp.answer("opaque-alice", active(&app, "alice", 3600, Value::Null));
    idp.set_mode(Mode::Slow(UPSTREAM_TIMEOUT + Duration::from_secs(3)));

    let started = Instant::now();
    assert_unavailable(&app, "opaque-alice").await;
    let waited = started.elapsed();
    assert!(
        waited >= UPSTREAM_TIMEOUT && waited < UPSTREAM_TIMEOUT + Duration::from_secs(2),
        "gave up after {waited:?}"
    );

    idp.set_mode(Mode::Normal);
    assert_accepted(&app, "opaque-alice").await;
}

#[tokio::test]
async fn server_errors_and_answers_that_are_not_json_are_503_never_401() {
    let idp = IntrospectionServer::start().await;
    let app = spawn_with(&idp, TTL).await;
    idp.answer("opaque-alice", active(&app, "alice", 3600, Value::Null));

    for mode in [
        Mode::Status(500),
        Mode::Status(502),
        Mode::Status(404),
        Mode::NotJson,
    ] {
        idp.set_mode(mode);
        assert_unavailable(&app, "opaque-alice").await;
    }
    assert_eq!(idp.calls_for("opaque-alice"), 4);

    idp.set_mode(Mode::Normal);
    assert_accepted(&app, "opaque-alice").await;
    assert_eq!(idp.calls_for("opaque-alice"), 5);
}

#[tokio::test]
async fn five_failures_open_the_breaker_until_a_probe_succeeds() {
    let idp = IntrospectionServer::start().await;
    let app = spawn_with(&idp, TTL).await;
    idp.answer("opaque-alice", active(&app, "alice", 3600, Value::Null));
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(app.metric(CIRCUIT).await, 0.0);
    idp.set_mode(Mode::Status(503));

    for _ in 0..5 {
        assert_unavailable(&app, "opaque-alice").await;
    }
    assert_eq!(idp.calls(), 5);
    // Open: refused at once, the endpoint is not asked.
    assert_unavailable(&app, "opaque-other").await;
    assert_eq!(idp.calls(), 5, "the 6th request asks nobody");
    assert_eq!(app.metric(CIRCUIT).await, 1.0);
    assert_eq!(app.metric(UNAVAILABLE).await, 5.0);
    let ready = app.get("/readyz").await;
    let json = assert_error(ready, 503, "unavailable").await;
    assert_eq!(json["backends"]["introspection"], "unavailable", "{json}");
    assert!(
        json["message"]
            .as_str()
            .is_some_and(|m| m.contains("introspection")),
        "{json}"
    );

    // After 5 s one probe goes; it fails, and the breaker opens again.
    app.advance(Duration::from_secs(5));
    assert_unavailable(&app, "opaque-alice").await;
    assert_eq!(idp.calls(), 6, "one probe");
    assert_unavailable(&app, "opaque-alice").await;
    assert_eq!(idp.calls(), 6, "open again");

    // The endpoint recovers: after 5 s the probe succeeds and closes it.
    idp.set_mode(Mode::Normal);
    app.advance(Duration::from_secs(5));
    assert_eq!(app.get("/readyz").await.status(), 200, "ready to probe");
    assert_accepted(&app, "opaque-alice").await;
    assert_eq!(idp.calls(), 7);
    assert_eq!(app.metric(CIRCUIT).await, 0.0);
    let json: Value = app.get("/readyz").await.json().await.expect("JSON");
    assert_eq!(json["backends"]["introspection"], json!("ok"));
    // Closed: the request the open breaker refused now reaches the endpoint.
    crate::helpers::assert_bearer_error(
        app.post_sse_token(Some("opaque-other"), None).await,
        "invalid_token",
    )
    .await;
    assert_eq!(idp.calls_for("opaque-other"), 1);
}
