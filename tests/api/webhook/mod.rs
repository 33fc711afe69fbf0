//! The auth webhook verifier, against a local webhook
//! ([`crate::helpers::AuthHook`]): its verdicts and what it receives
//! ([`verdicts`]), its failures ([`outages`]), session cookies
//! ([`cookies`]), and CORS, start-up and logs around cookies ([`guards`]).

mod cookies;
mod guards;
mod outages;
mod verdicts;

use serde_json::{Value, json};

use crate::helpers::{AuthHook, TestApp, hook_claims, spawn_app_with};

/// A server asking `hook`, with cookie forwarding as given.
async fn spawn_with(hook: &AuthHook, forward_cookies: bool) -> TestApp {
    spawn_app_with(|config| hook.configure(config, forward_cookies)).await
}

/// `POST /sse-token` with a JSON body and the given `Authorization` bearer and `Cookie`.
async fn post_ticket(
    app: &TestApp,
    bearer: Option<&str>,
    cookie: Option<&str>,
    body: &str,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/sse-token"))
        .header("content-type", "application/json")
        .header("user-agent", "webhook-test/1.0")
        .body(body.to_owned());
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.expect("POST /sse-token")
}

/// Asserts a ticket was issued for `topics`; returns the answer.
async fn assert_ticket(response: reqwest::Response, topics: Value) -> Value {
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.expect("ticket JSON");
    assert_eq!(json["topics"], topics, "{json}");
    json
}

/// A subscriber `sub` with no permissions beyond its own topic.
fn plain(sub: &str) -> Value {
    hook_claims(sub, json!(null))
}
