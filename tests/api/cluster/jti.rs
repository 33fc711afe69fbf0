//! Revocation by `jti` across instances: announced over Redis, kept in the
//! shared database.

use serde_json::json;

use super::spawn_pair;
use crate::helpers::{assert_bearer_error, assert_error};
use crate::jti::token_with_jti;

#[tokio::test]
#[ignore = "needs Redis: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn a_revocation_by_jti_on_one_instance_closes_the_stream_on_the_other() {
    let (a, b) = spawn_pair(|_| {}).await;
    let revoked = token_with_jti(&a, "alice", Some("alice-1"));
    let spared = token_with_jti(&a, "alice", Some("alice-2"));
    let mut on_a = a.stream(&a.ticket(&revoked, &["t"]).await).await;
    let mut spared_on_a = a.stream(&a.ticket(&spared, &["t"]).await).await;
    let outstanding = b.ticket(&revoked, &["t"]).await;

    b.revoke_jti("alice-1").await;

    let close = on_a.next_event().await;
    assert_eq!(close.event.as_deref(), Some("close"));
    assert_eq!(close.json(), json!({ "reason": "revoked" }));
    on_a.assert_ends().await;
    // Instance A refuses the token too, and its outstanding ticket.
    assert_bearer_error(
        a.post_sse_token(Some(&revoked), None).await,
        "token_revoked",
    )
    .await;
    assert_error(a.get_stream(&outstanding).await, 401, "invalid_ticket").await;
    // The other token of alice carries on, on both.
    b.publish("t", None, json!("still here")).await;
    assert_eq!(spared_on_a.next_event().await.json(), json!("still here"));
    assert_eq!(a.post_sse_token(Some(&spared), None).await.status(), 200);

    // A lift on A is heard on B (B re-reads the database).
    let lifted = a
        .client
        .delete(a.url("/admin/revoke?jti=alice-1"))
        .bearer_auth(a.admin_token("ops"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(lifted.status(), 200);
    let deadline = tokio::time::Instant::now() + crate::helpers::PATIENCE;
    while b.post_sse_token(Some(&revoked), None).await.status() != 200 {
        assert!(tokio::time::Instant::now() < deadline, "the lift is heard");
        tokio::task::yield_now().await;
    }
}
