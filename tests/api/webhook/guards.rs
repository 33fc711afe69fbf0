//! What keeps cookies safe: CORS grants credentials only with cookie
//! forwarding and listed origins, start-up refuses any origin with cookies,
//! and no credential reaches the logs.

use serde_json::Value;

use super::plain;
use crate::helpers::{AuthHook, header, output, serve, spawn_app_with, sse_ticket};

const ALLOWED: &str = "http://127.0.0.1:5173";

/// The preflight and the answer of a cookie-only ticket request from
/// [`ALLOWED`]: their `Access-Control-Allow-Credentials` headers.
async fn credentials_granted(forward_cookies: bool) -> (String, String) {
    let hook = AuthHook::start().await;
    hook.accept_session("alice-session", plain("alice"));
    hook.accept_bearer("alice-opaque", plain("alice"));
    let app = spawn_app_with(|config| {
        hook.configure(config, forward_cookies);
        config.cors_origins = vec![ALLOWED.into()];
    })
    .await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/sse-token"))
        .header("origin", ALLOWED)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .expect("preflight");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(header(&preflight, "access-control-allow-origin"), ALLOWED);
    let mut request = app
        .client
        .post(app.url("/sse-token"))
        .header("origin", ALLOWED)
        .header("content-type", "application/json")
        .header("cookie", "session=alice-session");
    if !forward_cookies {
        request = request.bearer_auth("alice-opaque");
    }
    let answer = request.send().await.expect("ticket");
    assert_eq!(answer.status(), 200);
    assert_eq!(header(&answer, "access-control-allow-origin"), ALLOWED);
    (
        header(&preflight, "access-control-allow-credentials").to_owned(),
        header(&answer, "access-control-allow-credentials").to_owned(),
    )
}

#[tokio::test]
async fn cors_allows_credentials_for_a_listed_origin_when_cookies_are_forwarded() {
    let granted = credentials_granted(true).await;
    assert_eq!(granted, ("true".to_owned(), "true".to_owned()));
}

#[tokio::test]
async fn cors_allows_no_credentials_without_cookie_forwarding() {
    let granted = credentials_granted(false).await;
    assert_eq!(granted, (String::new(), String::new()));
}

#[tokio::test]
async fn start_up_refuses_any_origin_together_with_cookie_forwarding() {
    for origins in ["*", "https://app.example.com,*"] {
        let mut command = sse_ticket(&["serve", "--bind", "127.0.0.1:0"]);
        command
            .env("SSE_TICKET_AUTH_WEBHOOK_URL", "http://127.0.0.1:9/auth")
            .env("SSE_TICKET_AUTH_WEBHOOK_FORWARD_COOKIES", "true")
            .env("SSE_TICKET_CORS_ORIGINS", origins);
        let out = output(command).await;
        let stderr = String::from_utf8(out.stderr).expect("UTF-8");
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        for name in [
            "SSE_TICKET_CORS_ORIGINS",
            "SSE_TICKET_AUTH_WEBHOOK_FORWARD_COOKIES",
        ] {
            assert!(stderr.contains(name), "{stderr}");
        }
    }
}

#[tokio::test]
async fn the_logs_never_show_the_cookie_or_the_token() {
    let hook = AuthHook::start().await;
    hook.accept_session("s3cr3t-session", plain("alice"));
    hook.accept_bearer("0paque-b3arer", plain("alice"));
    let url = hook.url.to_string();
    let env = [
        ("SSE_TICKET_AUTH_WEBHOOK_URL", url.as_str()),
        ("SSE_TICKET_AUTH_WEBHOOK_FORWARD_COOKIES", "true"),
        ("SSE_TICKET_CORS_ORIGINS", ALLOWED),
        ("SSE_TICKET_LOG_FORMAT", "json"),
        ("RUST_LOG", "debug"),
    ];
    let mut process = serve(&[], &env).await;
    let client = reqwest::Client::new();
    let post = |bearer: Option<&str>, cookie: &str| {
        let mut request = client
            .post(format!("{}/sse-token", process.base))
            .header("content-type", "application/json")
            .header("cookie", cookie);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    let mut tickets = Vec::new();
    for (bearer, cookie, status) in [
        (None, "session=s3cr3t-session", 200),
        (Some("0paque-b3arer"), "session=s3cr3t-session", 200),
        (None, "session=wr0ng-session", 401),
        (Some("wr0ng-b3arer"), "session=wr0ng-session", 401),
    ] {
        let response = post(bearer, cookie).await.expect("ticket");
        assert_eq!(response.status(), status);
        if status == 200 {
            let json: Value = response.json().await.expect("JSON");
            tickets.push(json["ticket"].as_str().expect("ticket").to_owned());
        }
    }
    // And when the webhook fails, its error is logged: still without them.
    hook.always(500, "session=s3cr3t-session 0paque-b3arer");
    let response = post(Some("0paque-b3arer"), "session=fr3sh-session")
        .await
        .expect("ticket");
    assert_eq!(response.status(), 503);

    let logs = process.stop_and_read_logs().await;
    assert!(
        logs.contains("auth_webhook"),
        "the failure is logged:\n{logs}"
    );
    for secret in [
        "s3cr3t-session",
        "wr0ng-session",
        "fr3sh-session",
        "0paque-b3arer",
        "wr0ng-b3arer",
    ]
    .into_iter()
    .chain(tickets.iter().map(String::as_str))
    {
        assert!(!logs.contains(secret), "{secret} leaked:\n{logs}");
    }
}
