//! Session cookies: forwarded only when configured; alone, they open only
//! `POST /sse-token` with a JSON body.

use serde_json::{Value, json};

use super::{assert_ticket, plain, post_ticket, spawn_with};
use crate::helpers::{AuthHook, TestApp, assert_bearer_error, header};

const COOKIE: &str = "theme=dark; session=alice-session";

#[tokio::test]
async fn a_session_cookie_alone_gets_a_ticket_with_a_json_body() {
    let hook = AuthHook::start().await;
    hook.accept_session("alice-session", plain("alice"));
    let app = spawn_with(&hook, true).await;

    for body in ["", "{}", r#"{"topics": ["user/alice"]}"#] {
        let response = post_ticket(&app, None, Some(COOKIE), body).await;
        let json = assert_ticket(response, json!(["user/alice"])).await;
        let _stream = app.stream(json["ticket"].as_str().expect("ticket")).await;
    }
    let question = &hook.received()[0];
    assert_eq!(question["cookie"], COOKIE);
    assert!(
        question
            .get("authorization")
            .is_none_or(serde_json::Value::is_null),
        "no Authorization, none sent: {question}"
    );
    assert_eq!(question["client_ip"], "127.0.0.1");
    assert_eq!(question["user_agent"], "webhook-test/1.0");
}

#[tokio::test]
async fn a_cookie_the_webhook_does_not_know_is_invalid_token() {
    let hook = AuthHook::start().await;
    let app = spawn_with(&hook, true).await;
    let response = post_ticket(&app, None, Some("session=stolen"), "").await;
    assert_bearer_error(response, "invalid_token").await;
}

#[tokio::test]
async fn with_forwarding_on_the_cookie_goes_along_with_a_bearer_too() {
    let hook = AuthHook::start().await;
    hook.accept_bearer("alice-opaque", plain("alice"));
    let publisher = crate::helpers::hook_claims("backend", json!({ "publish": ["*"] }));
    hook.accept_bearer("backend-opaque", publisher);
    let app = spawn_with(&hook, true).await;

    let response = post_ticket(&app, Some("alice-opaque"), Some(COOKIE), "").await;
    assert_eq!(response.status(), 200);
    let response = app
        .client
        .post(app.url("/publish"))
        .bearer_auth("backend-opaque")
        .header("cookie", "session=backend")
        .header("content-type", "application/json")
        .body(r#"{"topic": "news", "data": 1}"#)
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), 200);

    let received = hook.received();
    assert_eq!(received[0]["authorization"], "Bearer alice-opaque");
    assert_eq!(received[0]["cookie"], COOKIE);
    assert_eq!(received[1]["authorization"], "Bearer backend-opaque");
    assert_eq!(received[1]["cookie"], "session=backend");
}

/// Asserts a cookie-only request was refused as `missing_token` without
/// asking the webhook; returns the message.
async fn assert_missing(hook: &AuthHook, response: reqwest::Response) -> String {
    let json: Value = assert_bearer_error(response, "missing_token").await;
    assert!(hook.received().is_empty(), "the webhook was not asked");
    json["message"].as_str().expect("message").to_owned()
}

/// `POST /sse-token` with the session cookie, `content_type` (if any) and `body`.
async fn cookie_only(app: &TestApp, content_type: Option<&str>, body: &str) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/sse-token"))
        .header("cookie", COOKIE)
        .body(body.to_owned());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await.expect("POST /sse-token")
}

#[tokio::test]
async fn a_cookie_without_a_json_content_type_is_missing_token_saying_to_send_json() {
    let hook = AuthHook::start().await;
    hook.accept_session("alice-session", plain("alice"));
    let app = spawn_with(&hook, true).await;

    // What a cross-site HTML form (or a no-preflight fetch) can send.
    for (content_type, body) in [
        (None, ""),
        (Some("text/plain"), r#"{"topics": []}"#),
        (Some("multipart/form-data; boundary=x"), "--x--"),
        (Some("application/x-www-form-urlencoded"), ""),
        (Some("application/x-www-form-urlencoded"), "{}"),
    ] {
        let message = assert_missing(&hook, cookie_only(&app, content_type, body).await).await;
        assert!(
            message.contains("application/json") && message.contains("cookie"),
            "{content_type:?}: {message}"
        );
    }
    // The parameter of a JSON type is no obstacle.
    let response = cookie_only(&app, Some("application/json; charset=utf-8"), "").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_cookie_is_no_credential_when_forwarding_is_off() {
    let hook = AuthHook::start().await;
    hook.accept_session("alice-session", plain("alice"));
    let app = spawn_with(&hook, false).await;

    let response = cookie_only(&app, Some("application/json"), "{}").await;
    let message = assert_missing(&hook, response).await;
    assert!(message.contains("Authorization"), "{message}");
}

#[tokio::test]
async fn publish_and_admin_need_an_authorization_header_even_with_cookies_on() {
    let hook = AuthHook::start().await;
    let claims = crate::helpers::hook_claims("root", json!({ "publish": ["*"], "admin": true }));
    hook.accept_session("alice-session", claims);
    let app = spawn_with(&hook, true).await;

    let response = app
        .client
        .post(app.url("/publish"))
        .header("cookie", COOKIE)
        .header("content-type", "application/json")
        .body(r#"{"topic": "news", "data": 1}"#)
        .send()
        .await
        .expect("publish");
    assert_missing(&hook, response).await;
    let response = app
        .client
        .get(app.url("/admin/revocations"))
        .header("cookie", COOKIE)
        .send()
        .await
        .expect("admin");
    assert_missing(&hook, response).await;
}

#[tokio::test]
async fn the_token_exchange_works_with_the_webhook_and_never_by_cookie() {
    let hook = AuthHook::start().await;
    hook.accept_bearer("alice-opaque", plain("alice"));
    hook.accept_session("alice-session", plain("alice"));
    let app = spawn_with(&hook, true).await;
    let exchange = |subject_token: &str| {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", subject_token),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
            ])
            .finish();
        app.client
            .post(app.url("/sse-token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", COOKIE)
            .body(body)
            .send()
    };

    let response = exchange("alice-opaque").await.expect("exchange");
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "cache-control"), "no-store");
    let json: Value = response.json().await.expect("JSON");
    assert_eq!(json["scope"], "user/alice");
    let _stream = app
        .stream(json["access_token"].as_str().expect("ticket"))
        .await;

    // A form is what a cross-site page can post with the user's cookies: a
    // subject token the webhook refuses is refused, whatever the cookie.
    let response = exchange("forged").await.expect("exchange");
    assert_eq!(response.status(), 400);
    let json: Value = response.json().await.expect("JSON");
    assert_eq!(json["error"], "invalid_grant", "{json}");

    for question in hook.received() {
        assert!(question.get("cookie").is_none(), "{question}");
    }
    assert_eq!(hook.received()[1]["authorization"], "Bearer forged");
}
