//! What the webhook decides, and what it is asked.

use serde_json::{Value, json};

use super::{assert_ticket, plain, post_ticket, spawn_with};
use crate::helpers::{AuthHook, assert_bearer_error, assert_error, hook_claims};

#[tokio::test]
async fn a_bearer_the_webhook_accepts_gets_a_ticket_whose_stream_receives_events() {
    let hook = AuthHook::start().await;
    hook.accept_bearer("alice-opaque", plain("alice"));
    let publisher = hook_claims("backend", json!({ "publish": ["user/*"] }));
    hook.accept_bearer("backend-opaque", publisher);
    let app = spawn_with(&hook, false).await;

    let json = assert_ticket(
        post_ticket(&app, Some("alice-opaque"), None, "").await,
        json!(["user/alice"]),
    )
    .await;
    let mut stream = app.stream(json["ticket"].as_str().expect("ticket")).await;
    let response = app
        .post_publish(
            Some("backend-opaque"),
            r#"{"topic": "user/alice", "data": {"n": 1}}"#,
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(stream.next_event().await.json(), json!({ "n": 1 }));
}

#[tokio::test]
async fn a_401_or_a_403_from_the_webhook_is_invalid_token() {
    let hook = AuthHook::start().await;
    hook.refuse_bearer("forbidden", 403);
    let app = spawn_with(&hook, false).await;

    for bearer in ["unknown", "forbidden"] {
        let response = post_ticket(&app, Some(bearer), None, "").await;
        assert_bearer_error(response, "invalid_token").await;
    }
    assert_eq!(hook.received().len(), 2, "both were asked");
}

#[tokio::test]
async fn an_answer_past_its_exp_is_token_expired() {
    let hook = AuthHook::start().await;
    let mut claims = plain("alice");
    claims["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    hook.accept_bearer("stale", claims);
    let app = spawn_with(&hook, false).await;

    let response = post_ticket(&app, Some("stale"), None, "").await;
    assert_bearer_error(response, "token_expired").await;
}

#[tokio::test]
async fn the_sse_permissions_of_the_answer_are_enforced() {
    let hook = AuthHook::start().await;
    let sse = json!({ "subscribe": ["orders/*"], "publish": ["orders/*"] });
    hook.accept_bearer("shop", hook_claims("shop", sse));
    let app = spawn_with(&hook, false).await;

    let body = r#"{"topics": ["orders/*", "orders/42"]}"#;
    let response = post_ticket(&app, Some("shop"), None, body).await;
    assert_ticket(response, json!(["orders/*", "orders/42"])).await;

    let body = r#"{"topics": ["invoices/1"]}"#;
    let response = post_ticket(&app, Some("shop"), None, body).await;
    assert_error(response, 403, "forbidden_topic").await;

    let publish = |topic: &str| format!(r#"{{"topic": "{topic}", "data": 1}}"#);
    let allowed = app.post_publish(Some("shop"), &publish("orders/42")).await;
    assert_eq!(allowed.status(), 200);
    let refused = app.post_publish(Some("shop"), &publish("invoices/1")).await;
    assert_error(refused, 403, "forbidden_topic").await;
}

#[tokio::test]
async fn the_webhook_receives_the_authorization_client_ip_and_user_agent_but_no_cookie_when_off() {
    let hook = AuthHook::start().await;
    hook.accept_bearer("alice-opaque", plain("alice"));
    let app = spawn_with(&hook, false).await;

    let response = post_ticket(
        &app,
        Some("alice-opaque"),
        Some("session=secret-session"),
        "",
    )
    .await;
    assert_eq!(response.status(), 200);

    let received = hook.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let question = &received[0];
    assert_eq!(question["authorization"], "Bearer alice-opaque");
    assert_eq!(question["client_ip"], "127.0.0.1");
    assert_eq!(question["user_agent"], "webhook-test/1.0");
    assert!(
        question.get("cookie").is_none(),
        "no cookie unless forwarding is on: {question}"
    );
    assert_eq!(hook.content_types(), ["application/json"]);
    let fields: Vec<&String> = question.as_object().expect("an object").keys().collect();
    assert_eq!(fields, ["authorization", "client_ip", "user_agent"]);
}

#[tokio::test]
async fn a_refusal_is_answered_the_same_way_twice() {
    let hook = AuthHook::start().await;
    let app = spawn_with(&hook, false).await;
    for _ in 0..2 {
        let response = post_ticket(&app, Some("unknown"), None, "").await;
        let json: Value = assert_bearer_error(response, "invalid_token").await;
        assert!(
            json["message"]
                .as_str()
                .is_some_and(|m| m.contains("webhook")),
            "{json}"
        );
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_webhook_gets_the_forwarded_client_ip() {
    let hook = AuthHook::start().await;
    hook.accept_bearer("alice-opaque", plain("alice"));
    let proxies = sse_ticket::client_ip::TrustedProxies::parse(["127.0.0.1/32"]).expect("proxies");
    let app = crate::helpers::spawn_app_with(|config| {
        hook.configure(config, false);
        config.trusted_proxies = proxies;
    })
    .await;

    let response = app
        .client
        .post(app.url("/sse-token"))
        .bearer_auth("alice-opaque")
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .expect("ticket");
    assert_eq!(response.status(), 200);
    assert_eq!(hook.received()[0]["client_ip"], "203.0.113.7");
}
