//! Introspection with the Redis backends: a ticket bought with an opaque
//! token on one instance opens a stream on the other, each instance keeps
//! its own answers, and a revocation on one refuses the cached token on both.

use serde_json::{Value, json};
use sse_ticket::auth::KeySource;

use super::spawn_pair;
use crate::helpers::{TestApp, assert_bearer_error};
use crate::introspection::{ADMIN_TOKEN, IntrospectionServer, active, revoke};

#[tokio::test]
#[ignore = "needs Redis: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn an_opaque_token_works_across_instances_and_a_revocation_reaches_both_caches() {
    let idp = IntrospectionServer::start().await;
    let settings = idp.settings();
    let (a, b) = spawn_pair(|config| {
        config.keys = KeySource::Introspection(settings.clone());
    })
    .await;
    let now = sse_ticket::clock::Clock::now(&a.clock).timestamp();
    idp.answer(
        ADMIN_TOKEN,
        json!({ "active": true, "sub": "ops", "exp": now + 86_400, "sse": { "admin": true } }),
    );
    idp.answer(
        "opaque-alice",
        active(&a, "alice", 3600, json!({ "subscribe": ["orders/*"] })),
    );
    idp.answer(
        "opaque-shop",
        active(&a, "shop", 3600, json!({ "publish": ["orders/*"] })),
    );

    let ticket = a.ticket("opaque-alice", &["orders/*"]).await;
    let mut stream = b.stream(&ticket).await;
    let published = b
        .post_publish(Some("opaque-shop"), r#"{"topic":"orders/7","data":"paid"}"#)
        .await;
    assert_eq!(published.status(), 200);
    assert_eq!(stream.next_event().await.json(), json!("paid"));
    // Each instance asked once, then answers from its cache.
    b.ticket("opaque-alice", &[]).await;
    a.ticket("opaque-alice", &[]).await;
    assert_eq!(idp.calls_for("opaque-alice"), 2);

    revoke(&a, json!({ "sub": "alice" })).await;

    let close = stream.next_event().await;
    assert_eq!(close.json(), json!({ "reason": "revoked" }));
    for app in [&a, &b] {
        refused_at_once(app).await;
    }
    assert_eq!(idp.calls_for("opaque-alice"), 2, "both refused from cache");
}

async fn refused_at_once(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + crate::helpers::PATIENCE;
    loop {
        let response = app.post_sse_token(Some("opaque-alice"), None).await;
        if response.status() == 401 {
            let json: Value = assert_bearer_error(response, "token_revoked").await;
            assert_eq!(json["error"], "token_revoked");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revocation is heard"
        );
        tokio::task::yield_now().await;
    }
}
