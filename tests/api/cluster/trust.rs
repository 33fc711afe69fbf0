//! What an instance trusts Redis with: the connection is checked (TLS), no
//! ticket can be read back from it, and what it announces is checked.

use serde_json::json;
use sse_ticket::clock::Clock as _;

use super::spawn_on_redis;
use crate::helpers::{
    OwnRedis, assert_error, fresh_database_url, output, serve, sse_ticket, terminate,
    test_redis_url, tls_certificates,
};

#[tokio::test]
#[ignore = "needs redis-server and openssl: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn an_instance_reaches_redis_over_tls_and_checks_its_certificate() {
    assert!(
        test_redis_url().is_some(),
        "set SSE_TICKET_TEST_REDIS_URL: this test runs with the Redis suite"
    );
    let dir = std::env::temp_dir().join(format!("sse-ticket-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    tls_certificates(&dir);
    let redis = OwnRedis::start_tls(&dir).await;
    let url = redis.url();

    // A certificate from a CA nobody trusts: start-up stops with one clear line.
    let mut untrusted = sse_ticket(&["serve", "--dev", "--bind", "127.0.0.1:0"]);
    untrusted
        .env("SSE_TICKET_DATABASE_URL", fresh_database_url().await)
        .env("SSE_TICKET_REDIS_URL", &url);
    let out = output(untrusted).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).expect("UTF-8");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("error: cannot reach Redis at {url}"))
            && last.contains("certificate"),
        "{stderr}"
    );

    // Trusted (SSL_CERT_FILE names the test CA): tickets and events go through it.
    let ca = dir.join("ca.pem");
    let ca = ca.to_str().expect("UTF-8 path");
    let mut process = serve(
        &["--dev"],
        &[("SSE_TICKET_REDIS_URL", &url), ("SSL_CERT_FILE", ca)],
    )
    .await;
    let client = reqwest::Client::new();
    let mut stream = process.open_stream(&client).await;
    let published = process
        .publish(&client, r#"{"topic":"orders/7","data":"over TLS"}"#)
        .await;
    assert_eq!(published, 200);
    assert_eq!(stream.next_event().await.json(), json!("over TLS"));
    terminate(&process.child);
    let _ = process.child.wait().await;
}

#[tokio::test]
#[ignore = "needs Redis: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn whoever_reads_redis_finds_no_redeemable_ticket() {
    use redis::AsyncCommands as _;
    use sha2::Digest as _;
    let (app, prefix, mut redis) = spawn_on_redis().await;
    let ticket = app.ticket(&app.token("alice", &[], &[]), &[]).await;

    // Everything under the prefix, as SCAN and a dump would show it.
    let keys: Vec<String> = redis.keys(format!("{prefix}*")).await.expect("KEYS");
    let mut seen = keys.join("\n");
    for key in &keys {
        let kind: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut redis)
            .await
            .expect("TYPE");
        match kind.as_str() {
            "string" => seen.push_str(&redis.get::<_, String>(key).await.expect("GET")),
            "zset" => {
                let members: Vec<String> = redis.zrange(key, 0, -1).await.expect("ZRANGE");
                seen.push_str(&members.join("\n"));
            }
            _ => {}
        }
    }
    assert!(!seen.contains(&ticket), "the ticket is readable in Redis");
    let digest = hex::encode(sha2::Sha256::digest(ticket.as_bytes()));
    assert!(
        keys.contains(&format!("{prefix}ticket:{digest}")),
        "{keys:?}"
    );
    // The ticket itself still opens its stream, once.
    let _stream = app.stream(&ticket).await;
    assert_error(app.get_stream(&ticket).await, 401, "invalid_ticket").await;
}

#[tokio::test]
#[ignore = "needs Redis: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn a_lift_announced_over_redis_is_checked_against_the_database() {
    use redis::AsyncCommands as _;
    let (app, prefix, mut redis) = spawn_on_redis().await;
    let alice = app.token("alice", &[], &[]);
    let carol = app.token("carol", &[], &[]);
    assert_eq!(app.revoke("alice").await.status(), 200);

    // Whoever can publish on Redis claims alice's revocation was lifted,
    // then revokes carol: once carol is refused, the lift was heard too.
    let channel = format!("{prefix}notices");
    let _: i64 = redis
        .spublish(&channel, r#"{"lifted":{"sub":"alice"}}"#)
        .await
        .expect("SPUBLISH");
    let at = app.clock.now().timestamp_millis() + 1000;
    let _: i64 = redis
        .spublish(
            &channel,
            format!(r#"{{"revoked":{{"sub":"carol","at":{at}}}}}"#),
        )
        .await
        .expect("SPUBLISH");
    let deadline = tokio::time::Instant::now() + crate::helpers::PATIENCE;
    while app.post_sse_token(Some(&carol), None).await.status() != 401 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "carol's revocation is heard"
        );
        tokio::task::yield_now().await;
    }
    let refused = app.post_sse_token(Some(&alice), None).await;
    assert_error(refused, 401, "token_revoked").await;
}
