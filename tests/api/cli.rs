//! The binary itself: start-up errors, `mint`, `serve --dev`, signals, and
//! what reaches its logs.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{
    SECRET, SseStream, assert_bearer_error, exported, fresh_database_url, output, post_ticket,
    serve, spawn_app, sse_ticket, terminate,
};

#[tokio::test]
async fn serve_without_a_key_stops_with_one_line_naming_the_settings() {
    let out = output(sse_ticket(&["serve"])).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).expect("UTF-8");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for name in [
        "SSE_TICKET_JWT_SECRET",
        "SSE_TICKET_JWT_PUBLIC_KEY",
        "SSE_TICKET_JWKS_URL",
    ] {
        assert!(stderr.contains(name), "{stderr}");
    }
}

#[tokio::test]
async fn unsafe_settings_stop_start_up_with_one_line_naming_the_setting() {
    let short = "a".repeat(31);
    for (args, env, mention) in [
        // Shorter than HS256's 256 bits: guessable offline from one token.
        (
            vec!["serve", "--bind", "127.0.0.1:0"],
            vec![("SSE_TICKET_JWT_SECRET", short.as_str())],
            "SSE_TICKET_JWT_SECRET",
        ),
        // Keys fetched over plain HTTP can be swapped on the way.
        (
            vec!["serve", "--bind", "127.0.0.1:0"],
            vec![("SSE_TICKET_JWKS_URL", "http://idp.example/jwks.json")],
            "SSE_TICKET_JWKS_URL",
        ),
        // Development tokens served to the network.
        (
            vec!["serve", "--dev", "--bind", "0.0.0.0:0"],
            vec![],
            "--dev",
        ),
        (
            vec!["serve", "--dev"],
            vec![("SSE_TICKET_BIND", "[::]:0")],
            "--dev",
        ),
    ] {
        let mut command = sse_ticket(&args);
        command.env_remove("SSE_TICKET_JWT_SECRET");
        for (name, value) in &env {
            command.env(name, value);
        }
        let out = output(command).await;
        let stderr = String::from_utf8(out.stderr).expect("UTF-8");
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(mention), "{args:?} {env:?}: {stderr}");
    }
    // A secret of exactly 32 bytes is enough.
    let enough = "a".repeat(32);
    let env = [
        ("SSE_TICKET_JWT_SECRET", enough.as_str()),
        ("SSE_TICKET_LOG_FORMAT", "json"),
    ];
    let mut process = serve(&[], &env).await;
    terminate(&process.child);
    let _ = process.child.wait().await;
}

#[tokio::test]
async fn invalid_settings_stop_start_up_with_one_clear_line() {
    for (name, value, mention) in [
        (
            "SSE_TICKET_JWKS_URL",
            "https://idp.example/jwks",
            "SSE_TICKET_JWKS_URL",
        ),
        (
            "SSE_TICKET_CORS_ORIGINS",
            "not an origin",
            "SSE_TICKET_CORS_ORIGINS",
        ),
        ("SSE_TICKET_TICKET_TTL", "0s", "SSE_TICKET_TICKET_TTL"),
        (
            "SSE_TICKET_TICKET_TTL",
            "100000000years",
            "SSE_TICKET_TICKET_TTL",
        ),
        ("SSE_TICKET_HEARTBEAT", "2days", "SSE_TICKET_HEARTBEAT"),
        (
            "SSE_TICKET_MAX_TICKETS_PER_SUBJECT",
            "0",
            "SSE_TICKET_MAX_TICKETS_PER_SUBJECT",
        ),
        (
            "SSE_TICKET_JWT_PUBLIC_KEY",
            "/nonexistent/key.pem",
            "/nonexistent/key.pem",
        ),
        (
            "SSE_TICKET_MAX_STREAMS_PER_SUBJECT",
            "0",
            "SSE_TICKET_MAX_STREAMS_PER_SUBJECT",
        ),
        ("SSE_TICKET_WRITE_TIMEOUT", "0s", "SSE_TICKET_WRITE_TIMEOUT"),
    ] {
        let mut command = sse_ticket(&["serve", "--bind", "127.0.0.1:0"]);
        command
            .env("SSE_TICKET_JWT_SECRET", SECRET)
            .env(name, value);
        if name == "SSE_TICKET_JWT_PUBLIC_KEY" || name == "SSE_TICKET_JWKS_URL" {
            command.env_remove("SSE_TICKET_JWT_SECRET");
        }
        if name == "SSE_TICKET_JWKS_URL" {
            // Two key sources at once.
            command.env("SSE_TICKET_JWT_SECRET", SECRET);
        }
        let out = output(command).await;
        assert_eq!(out.status.code(), Some(2), "{name}={value}");
        let stderr = String::from_utf8(out.stderr).expect("UTF-8");
        assert!(stderr.contains(mention), "{name}={value}: {stderr}");
    }
}

#[tokio::test]
async fn a_minted_token_is_accepted_with_its_permissions() {
    let mut command = sse_ticket(&[
        "mint",
        "--sub",
        "alice",
        "--subscribe",
        "orders/*",
        "--ttl",
        "1h",
    ]);
    command.env("SSE_TICKET_JWT_SECRET", SECRET);
    let out = output(command).await;
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned();
    assert_eq!(token.split('.').count(), 3, "one JWT on stdout: {token}");

    let app = spawn_app().await;
    let body = json!({ "topics": ["orders/*"] }).to_string();
    let response = app.post_sse_token(Some(&token), Some(&body)).await;
    assert_eq!(response.status(), 200);
    let forbidden = json!({ "topics": ["payments/*"] }).to_string();
    assert_eq!(
        app.post_sse_token(Some(&token), Some(&forbidden))
            .await
            .status(),
        403
    );
}

#[tokio::test]
async fn a_token_minted_with_a_jti_is_refused_once_that_jti_is_revoked() {
    let mint = |jti: &'static str| {
        let mut command = sse_ticket(&["mint", "--sub", "alice", "--jti", jti]);
        command.env("SSE_TICKET_JWT_SECRET", SECRET);
        output(command)
    };
    let (leaked, kept) = (mint("leaked-1").await, mint("kept-2").await);
    let token = |out: std::process::Output| String::from_utf8(out.stdout).expect("UTF-8");
    let (leaked, kept) = (token(leaked), token(kept));

    let app = spawn_app().await;
    app.revoke_jti("leaked-1").await;
    let refused = app.post_sse_token(Some(leaked.trim()), None).await;
    assert_bearer_error(refused, "token_revoked").await;
    let accepted = app.post_sse_token(Some(kept.trim()), None).await;
    assert_eq!(accepted.status(), 200);
}

#[tokio::test]
async fn mint_refuses_a_bad_pattern() {
    let mut command = sse_ticket(&["mint", "--sub", "alice", "--subscribe", "a//b"]);
    command.env("SSE_TICKET_JWT_SECRET", SECRET);
    let out = output(command).await;
    assert!(!out.status.success());
}

#[tokio::test]
async fn dev_mode_prints_working_tokens_and_sigterm_closes_streams() {
    let mut process = serve(&["--dev"], &[]).await;
    let banner = process.stdout.join("\n");
    for needle in ["curl", "/sse-token", "/stream?token=", "/publish"] {
        assert!(banner.contains(needle), "banner lacks {needle}: {banner}");
    }
    let sub_token = exported(&process.stdout, "SUB_TOKEN");
    let pub_token = exported(&process.stdout, "PUB_TOKEN");
    let client = reqwest::Client::new();
    let mut stream = process.open_stream(&client).await;
    let published = process
        .publish(
            &client,
            r#"{"topic":"orders/42","event":"order.updated","data":{"status":"shipped"}}"#,
        )
        .await;
    assert_eq!(published, 200);
    assert_eq!(
        stream.next_event().await.json(),
        json!({ "status": "shipped" })
    );

    // The demo page carries this process's tokens, and the client module.
    let demo = client
        .get(format!("{}/demo/", process.base))
        .send()
        .await
        .expect("demo");
    assert_eq!(demo.status(), 200);
    let page = demo.text().await.expect("page");
    assert!(page.contains(&sub_token) && page.contains(&pub_token));
    let module = client
        .get(format!("{}/demo/sse-ticket.js", process.base))
        .send()
        .await
        .expect("module");
    assert_eq!(module.status(), 200);

    terminate(&process.child);
    let close = stream.next_event().await;
    assert_eq!(close.event.as_deref(), Some("close"));
    assert_eq!(close.json(), json!({ "reason": "shutdown" }));
    let status = tokio::time::timeout(Duration::from_secs(10), process.child.wait())
        .await
        .expect("exits within seconds of SIGTERM")
        .expect("exit status");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn no_ticket_and_no_bearer_token_reaches_the_logs() {
    let mut process = serve(
        &[],
        &[
            ("SSE_TICKET_JWT_SECRET", SECRET),
            ("SSE_TICKET_LOG_FORMAT", "json"),
            ("RUST_LOG", "trace"),
        ],
    )
    .await;
    let app = spawn_app().await; // only to mint tokens with the same secret
    let bearer = app.token("alice", &["orders/*"], &["orders/*"]);
    let client = reqwest::Client::new();
    let base = &process.base;

    let ticket = post_ticket(&client, base, &bearer, "").await;
    let ticket = ticket["ticket"].as_str().expect("ticket").to_owned();
    let stream = client
        .get(format!("{base}/stream?token={ticket}"))
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), 200);
    let mut stream = SseStream::new(stream);
    stream.next_frame().await;
    stream.next_frame().await;
    // Reuse, a JWT where a ticket belongs, a bad bearer, a publish.
    let reused = client
        .get(format!("{base}/stream?token={ticket}"))
        .send()
        .await
        .expect("reuse");
    assert_eq!(reused.status(), 401);
    let jwt_in_url = client
        .get(format!(
            "{base}/stream?lastEventId={}&token={bearer}",
            uuid::Uuid::now_v7()
        ))
        .send()
        .await
        .expect("jwt");
    assert_eq!(jwt_in_url.status(), 401);
    let bad = client
        .post(format!("{base}/sse-token"))
        .bearer_auth(format!("{bearer}x"))
        .send()
        .await
        .expect("bad bearer");
    assert_eq!(bad.status(), 401);
    let published = client
        .post(format!("{base}/publish"))
        .bearer_auth(&bearer)
        .body(r#"{"topic":"orders/1","data":1}"#)
        .send()
        .await
        .expect("publish");
    assert_eq!(published.status(), 200);

    let logs = process.stop_and_read_logs().await;
    stream.next_event().await; // close

    assert!(
        logs.contains("token=[redacted]"),
        "the access log shows the redaction:\n{logs}"
    );
    let signature = bearer.rsplit('.').next().expect("signature");
    for secret in [ticket.as_str(), bearer.as_str(), signature, SECRET] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
}

#[tokio::test]
async fn migrate_applies_the_migrations_and_says_so() {
    let url = fresh_database_url().await;
    let mut command = sse_ticket(&["migrate"]);
    command.env("SSE_TICKET_DATABASE_URL", &url);
    let out = output(command).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrations applied"));
    // Applied: the tables are there (and a second run has nothing to do).
    crate::helpers::execute_sql(&url, "SELECT count(*) FROM events").await;
    let mut again = sse_ticket(&["migrate", "--database-url", &url]);
    again.env_remove("SSE_TICKET_DATABASE_URL");
    assert!(output(again).await.status.success());
}

#[tokio::test]
async fn migrate_fails_clearly_when_the_database_cannot_be_reached() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let url = format!(
        "postgres://nobody@{}/none",
        closed.local_addr().expect("addr")
    );
    drop(closed);
    let out = output(sse_ticket(&["migrate", "--database-url", &url])).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).expect("UTF-8");
    assert!(
        stderr.starts_with("error: cannot connect to the database"),
        "{stderr}"
    );
}
