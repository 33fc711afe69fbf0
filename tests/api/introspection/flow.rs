//! What the introspection endpoint's answers buy: tickets and publishing with
//! the answer's permissions, refusals as `401`, the request it is sent.

use std::time::Duration;

use serde_json::{Value, json};
use sse_ticket::auth::KeySource;

use super::{IntrospectionServer, active, spawn_with};
use crate::helpers::{assert_bearer_error, assert_error, spawn_app_with};

const TTL: Duration = Duration::from_secs(60);

#[tokio::test]
async fn an_active_token_buys_a_ticket_within_the_answers_permissions() {
    let idp = IntrospectionServer::start().await;
    let app = spawn_with(&idp, TTL).await;
    idp.answer(
        "opaque-alice",
        active(&app, "alice", 3600, json!({ "subscribe": ["orders/*"] })),
    );

    let response = app
        .post_sse_token(Some("opaque-alice"), Some(r#"{"topics":["orders/42"]}"#))
        .await;
    assert_eq!(response.status(), 200);
    let ticket: Value = response.json().await.expect("JSON");
    assert_eq!(ticket["topics"], json!(["orders/42"]));
    // The ticket opens a stream as alice.
    let ticket = ticket["ticket"].as_str().expect("ticket");
    let mut stream = app.stream(ticket).await;
    idp.answer(
        "opaque-shop",
        active(&app, "shop", 3600, json!({ "publish": ["*"] })),
    );
    let published = app
        .post_publish(
            Some("opaque-shop"),
            r#"{"topic":"orders/42","data":"shipped"}"#,
        )
        .await;
    assert_eq!(published.status(), 200);
    assert_eq!(stream.next_event().await.json(), json!("shipped"));
    // Her own topic by default; another's topic is forbidden.
    assert_eq!(app.ticket("opaque-alice", &[]).await.len(), 36);
    assert_error(
        app.post_sse_token(Some("opaque-alice"), Some(r#"{"topics":["billing/1"]}"#))
            .await,
        403,
        "forbidden_topic",
    )
    .await;

    // The endpoint was asked as RFC 7662 says.
    let seen = idp.seen();
    let asked = seen
        .iter()
        .find(|s| s.form.get("token").map(String::as_str) == Some("opaque-alice"))
        .expect("asked about alice's token");
    assert_eq!(asked.form["token_type_hint"], "access_token");
    assert_eq!(asked.form.len(), 2, "{:?}", asked.form);
    assert!(
        asked
            .content_type
            .starts_with("application/x-www-form-urlencoded")
    );
}

#[tokio::test]
async fn inactive_unknown_and_incomplete_answers_are_401_invalid_token() {
    let idp = IntrospectionServer::start().await;
    let app = spawn_with(&idp, TTL).await;
    idp.answer(
        "opaque-inactive",
        json!({ "active": false, "sub": "alice" }),
    );
    let mut no_exp = active(&app, "alice", 3600, Value::Null);
    no_exp.as_object_mut().expect("object").remove("exp");
    idp.answer("opaque-no-exp", no_exp);
    let mut no_active = active(&app, "alice", 3600, Value::Null);
    no_active.as_object_mut().expect("object").remove("active");
    idp.answer("opaque-no-active", no_active);
    idp.answer(
        "opaque-bad-sse",
        active(&app, "alice", 3600, json!({ "subscribe": "orders/*" })),
    );

    for token in [
        "opaque-inactive",
        "opaque-unknown",
        "opaque-no-exp",
        "opaque-no-active",
        "opaque-bad-sse",
    ] {
        let json =
            assert_bearer_error(app.post_sse_token(Some(token), None).await, "invalid_token").await;
        assert!(
            !json["message"].as_str().unwrap_or_default().contains(token),
            "{json}"
        );
    }
    // An answer whose exp is past (beyond the leeway) is an expired token.
    idp.answer("opaque-old", active(&app, "alice", -60, Value::Null));
    assert_bearer_error(
        app.post_sse_token(Some("opaque-old"), None).await,
        "token_expired",
    )
    .await;
}

#[tokio::test]
async fn publish_follows_the_answers_sse_permissions() {
    let idp = IntrospectionServer::start().await;
    let app = spawn_with(&idp, TTL).await;
    idp.answer(
        "opaque-publisher",
        active(&app, "svc", 3600, json!({ "publish": ["orders/*"] })),
    );
    idp.answer("opaque-reader", active(&app, "bob", 3600, Value::Null));

    let body = r#"{"topic":"orders/1","data":{"n":1}}"#;
    assert_eq!(
        app.post_publish(Some("opaque-publisher"), body)
            .await
            .status(),
        200
    );
    assert_error(
        app.post_publish(
            Some("opaque-publisher"),
            r#"{"topic":"billing/1","data":1}"#,
        )
        .await,
        403,
        "forbidden_topic",
    )
    .await;
    assert_error(
        app.post_publish(Some("opaque-reader"), body).await,
        403,
        "forbidden_topic",
    )
    .await;
    assert_bearer_error(
        app.post_publish(Some("opaque-unknown"), body).await,
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn the_cookie_is_never_sent_to_the_introspection_endpoint() {
    let idp = IntrospectionServer::start().await;
    let app = spawn_with(&idp, TTL).await;
    idp.answer("opaque-alice", active(&app, "alice", 3600, Value::Null));

    let response = app
        .client
        .post(app.url("/sse-token"))
        .bearer_auth("opaque-alice")
        .header("cookie", "session=browser-session-secret")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 200);
    // A cookie alone authenticates nothing here.
    let response = app
        .client
        .post(app.url("/sse-token"))
        .header("cookie", "session=browser-session-secret")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 401);

    let seen = idp.seen();
    assert!(!seen.is_empty());
    for request in seen {
        assert_eq!(request.cookie, None);
        assert!(
            !request
                .form
                .values()
                .any(|v| v.contains("browser-session-secret")),
            "{:?}",
            request.form
        );
    }
}

#[tokio::test]
async fn wrong_client_credentials_are_503_unavailable_never_401() {
    let idp = IntrospectionServer::start().await;
    let mut settings = idp.settings();
    settings.client_secret = Some("not-the-secret".into());
    let app = spawn_app_with(|config| config.keys = KeySource::Introspection(settings)).await;
    idp.answer("opaque-alice", active(&app, "alice", 3600, Value::Null));

    assert_error(
        app.post_sse_token(Some("opaque-alice"), None).await,
        503,
        "unavailable",
    )
    .await;
    assert_eq!(idp.calls(), 1, "asked, and refused by the endpoint");
    // With the right ones, the same token is accepted.
    let app = spawn_with(&idp, TTL).await;
    idp.answer("opaque-alice", active(&app, "alice", 3600, Value::Null));
    assert_eq!(
        app.post_sse_token(Some("opaque-alice"), None)
            .await
            .status(),
        200
    );
}
