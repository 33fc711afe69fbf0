//! The auth webhook on the Redis backends: a ticket a session cookie got
//! from one instance opens a stream on the other, which receives what a
//! webhook-verified publisher sends to either.

use serde_json::{Value, json};

use super::spawn_pair;
use crate::helpers::{AuthHook, hook_claims};

#[tokio::test]
#[ignore = "needs Redis: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn a_session_cookie_ticket_from_one_instance_streams_on_the_other() {
    let hook = AuthHook::start().await;
    hook.accept_session("alice-session", hook_claims("alice", json!(null)));
    let publisher = hook_claims("backend", json!({ "publish": ["user/*"] }));
    hook.accept_bearer("backend-opaque", publisher);
    let (a, b) = spawn_pair(|config| hook.configure(config, true)).await;

    let response = a
        .client
        .post(a.url("/sse-token"))
        .header("content-type", "application/json")
        .header("cookie", "session=alice-session")
        .send()
        .await
        .expect("ticket");
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.expect("JSON");
    let mut stream = b.stream(json["ticket"].as_str().expect("ticket")).await;

    for (publisher, n) in [(&a, 1), (&b, 2)] {
        let response = publisher
            .post_publish(
                Some("backend-opaque"),
                &json!({ "topic": "user/alice", "data": { "n": n } }).to_string(),
            )
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(stream.next_event().await.json(), json!({ "n": n }));
    }
    assert!(
        hook.received()
            .iter()
            .any(|q| q["cookie"] == "session=alice-session")
    );
}
