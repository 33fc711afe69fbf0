//! The binary with introspection: unsafe settings stop start-up, and no
//! token or client secret reaches its logs.

use serde_json::{Value, json};

use super::{CLIENT_ID, CLIENT_SECRET, IntrospectionServer, Mode};
use crate::helpers::{output, serve, sse_ticket};

#[tokio::test]
async fn unsafe_introspection_settings_stop_start_up_naming_the_setting() {
    for (env, mention) in [
        // Tokens and client credentials in clear over the network.
        (
            vec![(
                "SSE_TICKET_INTROSPECTION_URL",
                "http://idp.example/oauth2/introspect",
            )],
            "SSE_TICKET_INTROSPECTION_URL",
        ),
        // An id without its secret (and the reverse).
        (
            vec![
                (
                    "SSE_TICKET_INTROSPECTION_URL",
                    "https://idp.example/oauth2/introspect",
                ),
                ("SSE_TICKET_INTROSPECTION_CLIENT_ID", "sse-ticket"),
            ],
            "SSE_TICKET_INTROSPECTION_CLIENT_ID",
        ),
        (
            vec![
                (
                    "SSE_TICKET_INTROSPECTION_URL",
                    "https://idp.example/oauth2/introspect",
                ),
                ("SSE_TICKET_INTROSPECTION_CLIENT_SECRET", "a-secret"),
            ],
            "SSE_TICKET_INTROSPECTION_CLIENT",
        ),
        // Introspection and a local key at once.
        (
            vec![
                (
                    "SSE_TICKET_INTROSPECTION_URL",
                    "https://idp.example/oauth2/introspect",
                ),
                ("SSE_TICKET_JWT_SECRET", crate::helpers::SECRET),
            ],
            "SSE_TICKET_INTROSPECTION_URL",
        ),
    ] {
        let mut command = sse_ticket(&["serve", "--bind", "127.0.0.1:0"]);
        command.envs(env.iter().copied());
        let out = output(command).await;
        let stderr = String::from_utf8(out.stderr).expect("UTF-8");
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(mention), "{env:?}: {stderr}");
    }
}

#[tokio::test]
async fn no_opaque_token_and_no_client_secret_reaches_the_logs() {
    let idp = IntrospectionServer::start().await;
    let url = idp.url.to_string();
    let mut process = serve(
        &[],
        &[
            ("SSE_TICKET_INTROSPECTION_URL", url.as_str()),
            ("SSE_TICKET_INTROSPECTION_CLIENT_ID", CLIENT_ID),
            ("SSE_TICKET_INTROSPECTION_CLIENT_SECRET", CLIENT_SECRET),
            ("SSE_TICKET_LOG_FORMAT", "json"),
            ("RUST_LOG", "trace"),
        ],
    )
    .await;
    let now = chrono::Utc::now().timestamp();
    let accepted = "opaque-accepted-7f3a9c";
    let refused = "opaque-refused-2b8e1d";
    let failing = "opaque-failing-9c4f0a";
    idp.answer(
        accepted,
        json!({ "active": true, "sub": "alice", "exp": now + 3600, "sse": { "publish": ["orders/*"] } }),
    );
    let client = reqwest::Client::new();
    let base = &process.base;
    let ask = |token: &'static str| {
        client
            .post(format!("{base}/sse-token"))
            .bearer_auth(token)
            .send()
    };

    let ticket: Value = ask(accepted)
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON");
    assert!(ticket["ticket"].is_string(), "{ticket}");
    assert_eq!(ask(accepted).await.expect("POST").status(), 200); // cached
    assert_eq!(ask(refused).await.expect("POST").status(), 401);
    let published = client
        .post(format!("{base}/publish"))
        .bearer_auth(accepted)
        .body(r#"{"topic":"orders/1","data":1}"#)
        .send()
        .await
        .expect("publish");
    assert_eq!(published.status(), 200);
    idp.set_mode(Mode::Status(500));
    assert_eq!(ask(failing).await.expect("POST").status(), 503);
    idp.set_mode(Mode::NotJson);
    assert_eq!(ask(failing).await.expect("POST").status(), 503);

    let logs = process.stop_and_read_logs().await;
    assert!(
        logs.contains("answering 503"),
        "the outage is logged:\n{logs}"
    );
    let basic = super::expected_basic();
    let encoded = basic.trim_start_matches("Basic ");
    for secret in [accepted, refused, failing, CLIENT_SECRET, encoded] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
}
