//! `POST /sse-token`: trading a bearer token for a ticket.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{assert_bearer_error, assert_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_bearer_token_buys_a_ticket_for_its_own_topic() {
    let app = spawn_app().await;
    let bearer = app.token("alice", &[], &[]);
    let response = app.post_sse_token(Some(&bearer), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let json: Value = response.json().await.expect("JSON");
    let ticket = json["ticket"].as_str().expect("ticket");
    let uuid = uuid::Uuid::parse_str(ticket).expect("a UUID");
    assert_eq!(uuid.get_version_num(), 4);
    assert_eq!(json["expires_in"], 60);
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(json["expires_at"].as_str().expect("expires_at"))
            .expect("RFC 3339");
    assert!(expires_at.to_rfc3339().ends_with("+00:00"));
    assert_eq!(json["stream_url"], format!("/stream?token={ticket}"));
    assert_eq!(json["topics"], json!(["user/alice"]));
}

#[tokio::test]
async fn an_empty_body_or_topic_list_means_the_own_topic() {
    let app = spawn_app().await;
    let bearer = app.token("alice", &[], &[]);
    for body in ["", "  ", "{}", r#"{"topics": []}"#] {
        let response = app.post_sse_token(Some(&bearer), Some(body)).await;
        assert_eq!(response.status(), 200, "body {body:?}");
        let json: Value = response.json().await.expect("JSON");
        assert_eq!(json["topics"], json!(["user/alice"]), "body {body:?}");
    }
}

#[tokio::test]
async fn a_body_without_json_content_type_is_still_read() {
    // `curl -d` sends application/x-www-form-urlencoded.
    let app = spawn_app().await;
    let bearer = app.token("alice", &["orders/*"], &[]);
    let response = app
        .client
        .post(app.url("/sse-token"))
        .bearer_auth(&bearer)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"topics":["orders/7"]}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.expect("JSON");
    assert_eq!(json["topics"], json!(["orders/7"]));
}

#[tokio::test]
async fn topics_must_be_covered_by_subscribe_permissions() {
    let app = spawn_app().await;
    let bearer = app.token("alice", &["orders/*", "news"], &[]);
    for allowed in [
        json!(["orders/42"]),
        json!(["orders/*"]),
        json!(["orders"]),
        json!(["orders/42/lines/*"]),
        json!(["news", "user/alice"]),
    ] {
        let body = json!({ "topics": allowed }).to_string();
        let response = app.post_sse_token(Some(&bearer), Some(&body)).await;
        assert_eq!(response.status(), 200, "{allowed}");
    }
    for forbidden in [
        json!(["*"]),
        json!(["users/x"]),
        json!(["news/*"]),
        json!(["user/bob"]),
        json!(["ordersx"]),
    ] {
        let body = json!({ "topics": forbidden }).to_string();
        let response = app.post_sse_token(Some(&bearer), Some(&body)).await;
        assert_error(response, 403, "forbidden_topic").await;
    }
    assert_eq!(
        app.metric("sse_ticket_tickets_issued_total").await,
        5.0,
        "refusals issue nothing"
    );
}

#[tokio::test]
async fn a_wildcard_permission_covers_everything() {
    let app = spawn_app().await;
    let bearer = app.token("ops", &["*"], &[]);
    let body = json!({ "topics": ["*", "a/b/c"] }).to_string();
    let response = app.post_sse_token(Some(&bearer), Some(&body)).await;
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.expect("JSON");
    assert_eq!(json["topics"], json!(["*", "a/b/c"]));
}

#[tokio::test]
async fn malformed_topics_are_refused() {
    let app = spawn_app().await;
    let bearer = app.token("alice", &["*"], &[]);
    let too_long = "x".repeat(256);
    for topic in [
        "",
        "/a",
        "a/",
        "a//b",
        "a b",
        "a/*/b",
        "ä",
        too_long.as_str(),
    ] {
        let body = json!({ "topics": [topic] }).to_string();
        let response = app.post_sse_token(Some(&bearer), Some(&body)).await;
        assert_error(response, 400, "invalid_topic").await;
    }
}

#[tokio::test]
async fn a_subject_outside_the_topic_alphabet_must_name_its_topics() {
    let app = spawn_app().await;
    let bearer = app.token("auth0|123", &["orders/*"], &[]);
    let response = app.post_sse_token(Some(&bearer), None).await;
    assert_error(response, 400, "invalid_topic").await;
    let body = json!({ "topics": ["orders/1"] }).to_string();
    assert_eq!(
        app.post_sse_token(Some(&bearer), Some(&body))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn malformed_bodies_are_refused() {
    let app = spawn_app().await;
    let bearer = app.token("alice", &["*"], &[]);
    let many: Vec<String> = (0..65).map(|i| format!("t/{i}")).collect();
    let many = json!({ "topics": many }).to_string();
    for body in [
        "not json",
        "[]",
        r#"{"topics": "orders"}"#,
        r#"{"topics": [1]}"#,
        r#"{"topic": ["orders"]}"#,
        r#"{"topics": ["a"], "extra": true}"#,
        many.as_str(),
    ] {
        let response = app.post_sse_token(Some(&bearer), Some(body)).await;
        assert_error(response, 400, "invalid_body").await;
    }
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let app = spawn_app().await;
    let bearer = app.token("alice", &[], &[]);
    let body = format!(r#"{{"topics": ["{}"]}}"#, "a".repeat(200_000));
    let response = app.post_sse_token(Some(&bearer), Some(&body)).await;
    assert_error(response, 413, "payload_too_large").await;
}

#[tokio::test]
async fn bearer_failures_are_401_with_a_challenge() {
    let app = spawn_app().await;
    assert_bearer_error(app.post_sse_token(None, None).await, "missing_token").await;
    assert_bearer_error(
        app.post_sse_token(Some("garbage"), None).await,
        "invalid_token",
    )
    .await;
    let expired = app.token_for("alice", &[], &[], Duration::from_secs(60));
    app.advance(Duration::from_secs(60 + 31));
    assert_bearer_error(
        app.post_sse_token(Some(&expired), None).await,
        "token_expired",
    )
    .await;
}

#[tokio::test]
async fn a_subject_may_hold_only_so_many_outstanding_tickets() {
    let app = spawn_app_with(|c| c.tickets.per_subject = 3).await;
    let alice = app.token("alice", &[], &[]);
    for _ in 0..3 {
        app.ticket(&alice, &[]).await;
    }
    app.advance(Duration::from_secs(20));
    let refused = app.post_sse_token(Some(&alice), None).await;
    assert_eq!(
        refused.headers()["retry-after"],
        "40",
        "until the oldest expires"
    );
    assert_error(refused, 429, "too_many_tickets").await;

    // Others are unaffected, and redeeming one frees a place.
    app.ticket(&app.token("bob", &[], &[]), &[]).await;
    let ticket = {
        app.advance(Duration::from_secs(41));
        app.ticket(&alice, &[]).await
    };
    let _stream = app.stream(&ticket).await;
    app.ticket(&alice, &[]).await;
}

#[tokio::test]
async fn a_full_store_answers_503() {
    let app = spawn_app_with(|c| c.tickets.total = 2).await;
    for sub in ["a", "b"] {
        app.ticket(&app.token(sub, &[], &[]), &[]).await;
    }
    let response = app
        .post_sse_token(Some(&app.token("c", &[], &[])), None)
        .await;
    assert_error(response, 503, "unavailable").await;
}
