//! The token exchange driven by a maintained OAuth client library from outside
//! the project: Python's authlib (tests/oauth_library/exchange.py) discovers
//! the endpoint, exchanges a bearer token for a ticket, and meets each RFC
//! error as an `OAuthError`. `.ci/run` installs authlib in a venv and names
//! its Python in `SSE_TICKET_TEST_AUTHLIB_PYTHON`.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// Runs the authlib script against `app` with `bearer` and `scope`.
async fn authlib(app: &TestApp, bearer: &str, scope: &str) -> Value {
    let python = std::env::var("SSE_TICKET_TEST_AUTHLIB_PYTHON").expect(
        "SSE_TICKET_TEST_AUTHLIB_PYTHON names a Python with authlib and requests (.ci/run sets it)",
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/oauth_library/exchange.py"
    );
    let output = tokio::process::Command::new(python)
        .args([script, &app.url(""), bearer, scope])
        .output()
        .await
        .expect("python runs");
    assert!(
        output.status.success(),
        "the authlib script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object")
}

#[tokio::test]
#[ignore = "needs Python's authlib: .ci/run runs it with SSE_TICKET_TEST_AUTHLIB_PYTHON"]
async fn authlib_exchanges_a_bearer_token_for_a_ticket_that_opens_a_stream() {
    let app = spawn_app().await;
    let bearer = app.token("alice", &["orders/*"], &[]);
    let result = authlib(&app, &bearer, "orders/* orders/42").await;

    assert_eq!(
        result["metadata"]["token_endpoint"],
        app.url("/sse-token"),
        "discovered"
    );
    let token = &result["token"];
    assert_eq!(token["token_type"], "N_A");
    assert_eq!(token["scope"], "orders/* orders/42");
    assert!(
        token["expires_at"].is_number(),
        "authlib read expires_in: {token}"
    );
    let ticket = token["access_token"].as_str().expect("access_token");

    let mut stream = app.stream(ticket).await;
    let id = app.publish("orders/42", None, json!({"n": 1})).await;
    assert_eq!(stream.next_event().await.id.as_deref(), Some(id.as_str()));

    assert_eq!(
        result["errors"],
        json!({
            "bad_subject_token": "invalid_grant",
            "bad_scope": "invalid_scope",
            "other_grant": "unsupported_grant_type",
            "no_token_type": "invalid_request",
        })
    );
}

#[tokio::test]
#[ignore = "needs Python's authlib: .ci/run runs it with SSE_TICKET_TEST_AUTHLIB_PYTHON"]
async fn authlib_without_scope_gets_the_own_topic() {
    let app = spawn_app().await;
    let bearer = app.token("bob", &[], &[]);
    let result = authlib(&app, &bearer, "").await;
    assert_eq!(result["token"]["scope"], "user/bob");
    let ticket = result["token"]["access_token"].as_str().expect("ticket");
    app.stream(ticket).await;
}
