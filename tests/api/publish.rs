//! `POST /publish`: who may publish what, and what is refused.

use serde_json::{Value, json};

use crate::helpers::{assert_bearer_error, assert_error, spawn_app};

#[tokio::test]
async fn a_permitted_publisher_gets_an_event_id() {
    let app = spawn_app().await;
    let mut stream = app.subscribe("alice", &["orders/*"]).await;
    let bearer = app.token("backend", &[], &["orders/*"]);
    let body =
        json!({ "topic": "orders/42", "event": "order.updated", "data": { "status": "shipped" } });
    let response = app.post_publish(Some(&bearer), &body.to_string()).await;
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.expect("JSON");
    let id = json["id"].as_str().expect("id");
    assert_eq!(
        uuid::Uuid::parse_str(id).expect("uuid").get_version_num(),
        7
    );

    let frame = stream.next_event().await;
    assert_eq!(frame.id.as_deref(), Some(id));
    assert_eq!(frame.event.as_deref(), Some("order.updated"));
    assert_eq!(frame.json(), json!({ "status": "shipped" }));
    assert_eq!(app.metric("sse_ticket_events_published_total").await, 1.0);
    assert_eq!(app.metric("sse_ticket_events_delivered_total").await, 1.0);
}

#[tokio::test]
async fn event_ids_increase_in_publish_order() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(app.publish("t", None, json!(i)).await);
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
}

#[tokio::test]
async fn publishing_needs_a_covering_permission() {
    let app = spawn_app().await;
    let bearer = app.token("backend", &["*"], &["orders/*"]);
    for topic in ["payments/1", "ordersx", "user/backend"] {
        let body = json!({ "topic": topic, "data": 1 }).to_string();
        assert_error(
            app.post_publish(Some(&bearer), &body).await,
            403,
            "forbidden_topic",
        )
        .await;
    }
    let subscriber_only = app.token("alice", &["*"], &[]);
    let body = json!({ "topic": "orders/1", "data": 1 }).to_string();
    assert_error(
        app.post_publish(Some(&subscriber_only), &body).await,
        403,
        "forbidden_topic",
    )
    .await;
    assert_eq!(app.metric("sse_ticket_events_published_total").await, 0.0);
}

#[tokio::test]
async fn publishing_needs_a_bearer_token() {
    let app = spawn_app().await;
    let body = json!({ "topic": "t", "data": 1 }).to_string();
    assert_bearer_error(app.post_publish(None, &body).await, "missing_token").await;
    assert_bearer_error(
        app.post_publish(Some("x.y.z"), &body).await,
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn malformed_events_are_refused_and_nothing_is_published() {
    let app = spawn_app().await;
    let bearer = app.token("backend", &[], &["*"]);
    for (body, status, code) in [
        (
            json!({ "topic": "a//b", "data": 1 }).to_string(),
            400,
            "invalid_topic",
        ),
        (
            json!({ "topic": "*", "data": 1 }).to_string(),
            400,
            "invalid_topic",
        ),
        (
            json!({ "topic": "", "data": 1 }).to_string(),
            400,
            "invalid_topic",
        ),
        (json!({ "topic": "t" }).to_string(), 400, "invalid_body"),
        (json!({ "data": 1 }).to_string(), 400, "invalid_body"),
        (
            json!({ "topic": "t", "data": 1, "extra": 1 }).to_string(),
            400,
            "invalid_body",
        ),
        (
            json!({ "topic": "t", "event": "", "data": 1 }).to_string(),
            400,
            "invalid_body",
        ),
        (
            json!({ "topic": "t", "event": "a\nb", "data": 1 }).to_string(),
            400,
            "invalid_body",
        ),
        (
            json!({ "topic": "t", "event": "x".repeat(65), "data": 1 }).to_string(),
            400,
            "invalid_body",
        ),
        (
            json!({ "topic": "t", "event": "close", "data": 1 }).to_string(),
            400,
            "invalid_body",
        ),
        (
            json!({ "topic": "t", "event": "error", "data": 1 }).to_string(),
            400,
            "invalid_body",
        ),
        (
            json!({ "topic": "t", "event": "ready", "data": 1 }).to_string(),
            400,
            "invalid_body",
        ),
        (
            json!({ "topic": 5, "data": 1 }).to_string(),
            400,
            "invalid_body",
        ),
        ("{".to_owned(), 400, "invalid_body"),
        (String::new(), 400, "invalid_body"),
    ] {
        assert_error(app.post_publish(Some(&bearer), &body).await, status, code).await;
    }
    assert_eq!(app.metric("sse_ticket_events_published_total").await, 0.0);
}

#[tokio::test]
async fn data_is_limited_to_64_kib_serialized() {
    let app = spawn_app().await;
    let bearer = app.token("backend", &[], &["*"]);
    // A JSON string of n characters serializes to n + 2 bytes.
    let fits = json!({ "topic": "t", "data": "x".repeat(65_536 - 2) }).to_string();
    assert_eq!(app.post_publish(Some(&bearer), &fits).await.status(), 200);
    let over = json!({ "topic": "t", "data": "x".repeat(65_536 - 1) }).to_string();
    assert_error(
        app.post_publish(Some(&bearer), &over).await,
        413,
        "payload_too_large",
    )
    .await;
    let huge = json!({ "topic": "t", "data": "x".repeat(1_000_000) }).to_string();
    assert_error(
        app.post_publish(Some(&bearer), &huge).await,
        413,
        "payload_too_large",
    )
    .await;
}
