//! A webhook that answers nothing usable is `503 unavailable`, never `401`:
//! a broken webhook must not log users out.

use std::time::Duration;

use super::{plain, post_ticket, spawn_with};
use crate::helpers::{AuthHook, assert_error};

/// Asserts `POST /sse-token` with a bearer is `503 unavailable`, without a
/// bearer challenge.
async fn assert_unavailable(app: &crate::helpers::TestApp) {
    let response = post_ticket(app, Some("alice-opaque"), None, "").await;
    assert!(
        response.headers().get("www-authenticate").is_none(),
        "not a bearer failure"
    );
    assert_error(response, 503, "unavailable").await;
}

#[tokio::test]
async fn a_5xx_or_an_unexpected_status_is_unavailable() {
    let hook = AuthHook::start().await;
    hook.accept_bearer("alice-opaque", plain("alice"));
    // One server per case: a circuit breaker's 503 would prove nothing.
    for status in [500, 502, 503, 404, 302, 204] {
        hook.always(status, "{}");
        assert_unavailable(&spawn_with(&hook, false).await).await;
    }
}

#[tokio::test]
async fn a_500_with_garbage_is_unavailable() {
    let hook = AuthHook::start().await;
    hook.always(500, "<html>Internal Server Error</html>");
    let app = spawn_with(&hook, false).await;
    assert_unavailable(&app).await;
}

#[tokio::test]
async fn a_200_that_is_not_the_claims_json_is_unavailable() {
    let hook = AuthHook::start().await;
    for body in [
        "<html>ok</html>",
        "",
        "[]",
        r#"{"sub": "alice"}"#,
        r#"{"exp": 1893456000}"#,
        r#"{"sub": "alice", "exp": "tomorrow"}"#,
        r#"{"sub": "alice", "exp": 1893456000, "sse": {"subscribe": "orders/*"}}"#,
    ] {
        hook.always(200, body);
        assert_unavailable(&spawn_with(&hook, false).await).await;
    }
}

#[tokio::test]
async fn an_unreachable_webhook_is_unavailable() {
    let hook = AuthHook::start().await;
    hook.accept_bearer("alice-opaque", plain("alice"));
    let app = spawn_with(&hook, false).await;
    hook.stop().await;
    assert_unavailable(&app).await;
}

#[tokio::test]
async fn a_webhook_slower_than_two_seconds_is_unavailable() {
    let hook = AuthHook::start().await;
    hook.accept_bearer("alice-opaque", plain("alice"));
    hook.delay(Duration::from_secs(4));
    let app = spawn_with(&hook, false).await;
    let started = std::time::Instant::now();
    assert_unavailable(&app).await;
    // The upstream limit is wall time (2 s), not the injected clock's.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "gave up in time"
    );
}
