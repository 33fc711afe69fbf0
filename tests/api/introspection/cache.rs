//! The answer cache: acceptances reused up to `SSE_TICKET_AUTH_CACHE_TTL` and
//! never past `exp`, refusals for 5 s, and revocations that apply over it.

use std::time::Duration;

use serde_json::{Value, json};

use super::{IntrospectionServer, active, revoke, spawn_with};
use crate::helpers::{assert_bearer_error, assert_error};

const HIT: &str = r#"sse_ticket_auth_cache_total{result="hit"}"#;
const MISS: &str = r#"sse_ticket_auth_cache_total{result="miss"}"#;
const ACCEPTED: &str =
    r#"sse_ticket_auth_upstream_requests_total{upstream="introspection",outcome="accepted"}"#;
const REFUSED: &str =
    r#"sse_ticket_auth_upstream_requests_total{upstream="introspection",outcome="refused"}"#;

#[tokio::test]
async fn a_second_request_with_the_same_token_asks_nobody() {
    let idp = IntrospectionServer::start().await;
    let app = spawn_with(&idp, Duration::from_secs(60)).await;
    idp.answer("opaque-alice", active(&app, "alice", 3600, Value::Null));
    idp.answer("opaque-bob", active(&app, "bob", 3600, Value::Null));

    app.ticket("opaque-alice", &[]).await;
    app.ticket("opaque-alice", &[]).await;
    assert_eq!(idp.calls_for("opaque-alice"), 1);
    assert_eq!(app.metric(HIT).await, 1.0);
    assert_eq!(app.metric(MISS).await, 1.0);
    assert_eq!(app.metric(ACCEPTED).await, 1.0);
    // Another token is another entry.
    app.ticket("opaque-bob", &[]).await;
    assert_eq!(idp.calls_for("opaque-bob"), 1);
    assert_eq!(app.metric(MISS).await, 2.0);
    let durations = r#"sse_ticket_auth_upstream_duration_seconds_count{upstream="introspection"}"#;
    assert_eq!(app.metric(durations).await, 2.0);
}

#[tokio::test]
async fn concurrent_requests_with_one_token_share_one_call() {
    let idp = IntrospectionServer::start().await;
    let app = spawn_with(&idp, Duration::from_secs(60)).await;
    idp.answer("opaque-alice", active(&app, "alice", 3600, Value::Null));
    idp.set_mode(super::Mode::Slow(Duration::from_millis(300)));

    let requests = (0..8).map(|_| app.post_sse_token(Some("opaque-alice"), None));
    for response in futures_util::future::join_all(requests).await {
        assert_eq!(response.status(), 200);
    }
    assert_eq!(idp.calls_for("opaque-alice"), 1);
}

#[tokio::test]
async fn an_answer_is_reused_up_to_the_cache_ttl_then_asked_again() {
    let idp = IntrospectionServer::start().await;
    let app = spawn_with(&idp, Duration::from_secs(60)).await;
    idp.answer("opaque-alice", active(&app, "alice", 3600, Value::Null));

    app.ticket("opaque-alice", &[]).await;
    app.advance(Duration::from_secs(59));
    app.ticket("opaque-alice", &[]).await;
    assert_eq!(idp.calls_for("opaque-alice"), 1, "still cached at 59 s");
    app.advance(Duration::from_secs(2));
    app.ticket("opaque-alice", &[]).await;
    assert_eq!(idp.calls_for("opaque-alice"), 2, "asked again after 60 s");
}

#[tokio::test]
async fn an_answer_is_never_reused_past_the_tokens_exp() {
    let idp = IntrospectionServer::start().await;
    let app = spawn_with(&idp, Duration::from_secs(60)).await;
    idp.answer("opaque-alice", active(&app, "alice", 10, Value::Null));

    app.ticket("opaque-alice", &[]).await;
    // The endpoint now says what it says of an expired token.
    idp.answer("opaque-alice", json!({ "active": false }));
    app.advance(Duration::from_secs(11));
    // Kept past exp, the claims would still pass (30 s leeway): re-asked instead.
    assert_bearer_error(
        app.post_sse_token(Some("opaque-alice"), None).await,
        "invalid_token",
    )
    .await;
    assert_eq!(idp.calls_for("opaque-alice"), 2);
}

#[tokio::test]
async fn a_refusal_is_reused_for_five_seconds() {
    let idp = IntrospectionServer::start().await;
    let app = spawn_with(&idp, Duration::from_secs(60)).await;

    assert_bearer_error(
        app.post_sse_token(Some("opaque-new"), None).await,
        "invalid_token",
    )
    .await;
    // The token becomes active at the endpoint: the refusal is kept 5 s.
    idp.answer("opaque-new", active(&app, "alice", 3600, Value::Null));
    app.advance(Duration::from_secs(4));
    assert_bearer_error(
        app.post_sse_token(Some("opaque-new"), None).await,
        "invalid_token",
    )
    .await;
    assert_eq!(idp.calls_for("opaque-new"), 1);
    assert_eq!(app.metric(REFUSED).await, 1.0);
    app.advance(Duration::from_secs(1));
    app.ticket("opaque-new", &[]).await;
    assert_eq!(idp.calls_for("opaque-new"), 2);
    // Claims that fail the checks are refusals too: kept 5 s.
    idp.answer("opaque-bad", json!({ "active": true, "sub": "eve" }));
    for _ in 0..2 {
        assert_bearer_error(
            app.post_sse_token(Some("opaque-bad"), None).await,
            "invalid_token",
        )
        .await;
    }
    assert_eq!(idp.calls_for("opaque-bad"), 1);
}

#[tokio::test]
async fn a_revocation_of_the_subject_refuses_a_cached_token_at_once() {
    let idp = IntrospectionServer::start().await;
    let app = spawn_with(&idp, Duration::from_secs(60)).await;
    idp.answer("opaque-alice", active(&app, "alice", 3600, Value::Null));
    let outstanding = app.ticket("opaque-alice", &[]).await;

    revoke(&app, json!({ "sub": "alice" })).await;

    assert_bearer_error(
        app.post_sse_token(Some("opaque-alice"), None).await,
        "token_revoked",
    )
    .await;
    assert_eq!(
        idp.calls_for("opaque-alice"),
        1,
        "refused from the cached answer"
    );
    assert_error(app.get_stream(&outstanding).await, 401, "invalid_ticket").await;
}

#[tokio::test]
async fn a_revocation_of_the_jti_refuses_a_cached_token_at_once_and_spares_the_other() {
    let idp = IntrospectionServer::start().await;
    let app = spawn_with(&idp, Duration::from_secs(60)).await;
    let mut first = active(&app, "alice", 3600, Value::Null);
    first["jti"] = "alice-1".into();
    let mut second = first.clone();
    second["jti"] = "alice-2".into();
    idp.answer("opaque-alice-1", first);
    idp.answer("opaque-alice-2", second);
    app.ticket("opaque-alice-1", &[]).await;
    app.ticket("opaque-alice-2", &[]).await;

    revoke(&app, json!({ "jti": "alice-1" })).await;

    assert_bearer_error(
        app.post_sse_token(Some("opaque-alice-1"), None).await,
        "token_revoked",
    )
    .await;
    app.ticket("opaque-alice-2", &[]).await;
    assert_eq!(idp.calls_for("opaque-alice-1"), 1);
    assert_eq!(idp.calls_for("opaque-alice-2"), 1);
}
