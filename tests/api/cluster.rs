//! Several instances on one Redis and one database, as behind a load
//! balancer; and what happens when Redis goes away and comes back.
//!
//! They need a Redis: `.ci/run` runs them with `SSE_TICKET_TEST_REDIS_URL`
//! (and Postgres as the shared database); the outage test starts a
//! `redis-server` of its own.

use std::sync::Arc;

use serde_json::{Value, json};
use sse_ticket::Config;
use sse_ticket::clock::{Clock as _, ManualClock};
use tokio::sync::mpsc;

use crate::cli::{output, serve, sse_ticket, terminate};
use crate::helpers::{
    OwnRedis, SseStream, TestApp, assert_error, fresh_database_url, redis_settings,
    spawn_config_with_clock, test_config, test_redis_url, tls_certificates,
};
use crate::resume::resume;

const NEEDS_REDIS: &str = "set SSE_TICKET_TEST_REDIS_URL to a Redis these tests may write to";

/// Two instances sharing a Redis namespace, a database and a clock.
async fn spawn_pair_on(redis_url: &str, tweak: impl Fn(&mut Config)) -> (TestApp, TestApp) {
    let database_url = fresh_database_url().await;
    let redis = redis_settings(redis_url);
    let clock = ManualClock::default();
    let config = || {
        let mut config = test_config(&database_url);
        config.redis = Some(redis.clone());
        tweak(&mut config);
        config
    };
    let a = spawn_config_with_clock(config(), clock.clone()).await;
    let b = spawn_config_with_clock(config(), clock).await;
    (a, b)
}

async fn spawn_pair(tweak: impl Fn(&mut Config)) -> (TestApp, TestApp) {
    let url = test_redis_url().expect(NEEDS_REDIS);
    spawn_pair_on(&url, tweak).await
}

#[tokio::test]
#[ignore = "needs Redis: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn a_ticket_from_one_instance_redeems_exactly_once_on_either() {
    let (a, b) = spawn_pair(|_| {}).await;
    let alice = a.token("alice", &[], &[]);

    let ticket = a.ticket(&alice, &[]).await;
    let _stream = b.stream(&ticket).await;
    for app in [&a, &b] {
        assert_error(app.get_stream(&ticket).await, 401, "invalid_ticket").await;
    }

    // A race of 60 connects with one ticket, half on each instance.
    let ticket = b.ticket(&alice, &[]).await;
    let attempts = (0..60).map(|i| if i % 2 == 0 { &a } else { &b }.get_stream(&ticket));
    let responses = futures_util::future::join_all(attempts).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        59,
        "{statuses:?}"
    );
}

#[tokio::test]
#[ignore = "needs Redis: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn an_event_published_on_one_instance_reaches_streams_on_both() {
    let (a, b) = spawn_pair(|_| {}).await;
    let mut on_a = a.subscribe("alice", &["orders/*"]).await;
    let mut on_b = b.subscribe("bob", &["orders/42"]).await;
    for (publisher, n) in [(&a, 1), (&b, 2)] {
        let id = publisher
            .publish("orders/42", Some("order.paid"), json!({ "n": n }))
            .await;
        for stream in [&mut on_a, &mut on_b] {
            let frame = stream.next_event().await;
            assert_eq!(frame.id.as_deref(), Some(id.as_str()), "same id everywhere");
            assert_eq!(frame.event.as_deref(), Some("order.paid"));
            assert_eq!(frame.json(), json!({ "n": n }));
        }
    }
}

#[tokio::test]
#[ignore = "needs Redis: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn a_revocation_on_one_instance_closes_streams_on_the_other() {
    let (a, b) = spawn_pair(|_| {}).await;
    let alice = a.token("alice", &["t"], &[]);
    let ticket = a.ticket(&alice, &["t"]).await;
    let mut on_a = a.stream(&ticket).await;
    let mut bystander = a.subscribe("bob", &["t"]).await;

    assert_eq!(b.revoke("alice").await.status(), 200);

    let close = on_a.next_event().await;
    assert_eq!(close.event.as_deref(), Some("close"));
    assert_eq!(close.json(), json!({ "reason": "revoked" }));
    on_a.assert_ends().await;
    // Instance A refuses the revoked token too, not only B.
    let refused = a.post_sse_token(Some(&alice), None).await;
    assert_error(refused, 401, "token_revoked").await;
    // Others' streams carry on.
    let id = b.publish("t", None, json!("still here")).await;
    assert_eq!(
        bystander.next_event().await.id.as_deref(),
        Some(id.as_str())
    );
}

#[tokio::test]
#[ignore = "needs Redis: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn resuming_on_the_other_instance_is_gapless() {
    const TOTAL: usize = 240;
    let (a, b) = spawn_pair(|_| {}).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut stream = a.subscribe("alice", &["seq"]).await;
    let publisher = tokio::spawn({
        let (a, b) = (a.clone(), b.clone());
        async move {
            for n in 0..TOTAL {
                let app = if n % 2 == 0 { &a } else { &b };
                app.publish("seq", None, json!(n)).await;
            }
        }
    });
    let mut received: Vec<usize> = Vec::new();
    let mut reconnects = 0;
    while received.len() < TOTAL {
        let frame = stream.next_event().await;
        let n: usize = serde_json::from_value(frame.json()).expect("a number");
        received.push(n);
        // Every 30 events, reconnect to the other instance and resume.
        if received.len().is_multiple_of(30) && received.len() < TOTAL {
            drop(stream);
            reconnects += 1;
            let other = if reconnects % 2 == 1 { &b } else { &a };
            stream = resume(other, "alice", &["seq"], &frame.id.expect("an id")).await;
        }
    }
    publisher.await.expect("publisher");
    assert!(reconnects >= 7);
    assert_eq!(
        received,
        (0..TOTAL).collect::<Vec<_>>(),
        "in order, no gap, no duplicate"
    );
}

#[tokio::test]
#[ignore = "needs Redis: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn the_per_subject_cap_holds_across_instances() {
    let (a, b) = spawn_pair(|c| c.tickets.per_subject = 3).await;
    let alice = a.token("alice", &[], &[]);
    a.ticket(&alice, &[]).await;
    b.ticket(&alice, &[]).await;
    let third = a.ticket(&alice, &[]).await;
    for app in [&a, &b] {
        let refused = app.post_sse_token(Some(&alice), None).await;
        assert_eq!(refused.headers()["retry-after"], "60");
        assert_error(refused, 429, "too_many_tickets").await;
    }
    // Others are unaffected; redeeming on B frees a place on A.
    b.ticket(&b.token("bob", &[], &[]), &[]).await;
    let _stream = b.stream(&third).await;
    a.ticket(&alice, &[]).await;
    assert_error(
        b.post_sse_token(Some(&alice), None).await,
        429,
        "too_many_tickets",
    )
    .await;
}

/// Collects the ids of `stream`'s events until one of type `end`.
fn collect_until_end(mut stream: SseStream) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut ids = Vec::new();
        loop {
            let frame = stream.next_event().await;
            if frame.event.as_deref() == Some("end") {
                return ids;
            }
            ids.push(frame.id.expect("an event id"));
        }
    })
}

/// Polls `path` on `app` until it answers `status`.
async fn wait_for_status(app: &TestApp, path: &str, status: u16) -> Value {
    let deadline = tokio::time::Instant::now() + crate::helpers::PATIENCE;
    loop {
        let response = app.get(path).await;
        if response.status() == status {
            return response.json().await.unwrap_or(Value::Null);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never answered {status}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
#[ignore = "needs redis-server: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn a_redis_outage_answers_503_then_recovers_without_losing_events() {
    assert!(test_redis_url().is_some(), "{NEEDS_REDIS}");
    let mut redis = OwnRedis::start().await;
    let (a, b) = spawn_pair_on(&redis.url(), |_| {}).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let readers = [
        collect_until_end(a.subscribe("alice", &["t"]).await),
        collect_until_end(b.subscribe("bob", &["t"]).await),
    ];

    // A publisher that never stops trying, on both instances in turn.
    let (results, mut answered) = mpsc::unbounded_channel::<(u16, Option<String>)>();
    let stop = tokio_util::sync::CancellationToken::new();
    let publisher = tokio::spawn({
        let (a, b, stop) = (a.clone(), b.clone(), stop.clone());
        async move {
            let bearer = a.token("publisher", &[], &["*"]);
            let mut accepted = Vec::new();
            for n in 0.. {
                if stop.is_cancelled() {
                    return accepted;
                }
                let app = if n % 2 == 0 { &a } else { &b };
                let response = app
                    .post_publish(
                        Some(&bearer),
                        &json!({ "topic": "t", "data": n }).to_string(),
                    )
                    .await;
                let status = response.status().as_u16();
                let id = if status == 200 {
                    let json: Value = response.json().await.expect("JSON");
                    let id = json["id"].as_str().expect("id").to_owned();
                    accepted.push(id.clone());
                    Some(id)
                } else {
                    assert_error(response, 503, "unavailable").await;
                    None
                };
                let _ = results.send((status, id));
            }
            accepted
        }
    });
    let mut wait_for = async |status: u16, count: usize| {
        let mut seen = 0;
        while seen < count {
            let (got, _) = answered.recv().await.expect("the publisher runs");
            if got == status {
                seen += 1;
            }
        }
    };

    wait_for(200, 20).await;
    // One instance at a time loses its subscription: while it re-subscribes,
    // the other's publishes succeed, and its streams must still get them.
    let mut admin = redis.connect().await;
    for _ in 0..10 {
        let clients: String = redis::cmd("CLIENT")
            .arg(&["LIST", "TYPE", "pubsub"][..])
            .query_async(&mut admin)
            .await
            .expect("CLIENT LIST");
        let id = clients
            .split_whitespace()
            .find_map(|field| field.strip_prefix("id="))
            .expect("a subscribed instance");
        let _: () = redis::cmd("CLIENT")
            .arg(&["KILL", "ID", id][..])
            .query_async(&mut admin)
            .await
            .expect("CLIENT KILL");
        wait_for(200, 10).await;
    }

    let held = a.ticket(&a.token("carol", &[], &[]), &[]).await;
    redis.stop().await;
    wait_for(503, 20).await;
    assert_error(b.get_stream(&held).await, 503, "unavailable").await;
    for app in [&a, &b] {
        let ready = wait_for_status(app, "/readyz", 503).await;
        assert_eq!(ready["error"], "unavailable", "{ready}");
        assert_eq!(ready["backends"]["tickets"], "unavailable", "{ready}");
        assert_eq!(ready["backends"]["broker"], "unavailable", "{ready}");
        let bearer = app.token("carol", &[], &[]);
        assert_error(
            app.post_sse_token(Some(&bearer), None).await,
            503,
            "unavailable",
        )
        .await;
    }

    redis.restart().await;
    for app in [&a, &b] {
        wait_for_status(app, "/readyz", 200).await;
    }
    wait_for(200, 40).await;
    // Tickets work again, across instances.
    let ticket = b.ticket(&b.token("carol", &[], &[]), &[]).await;
    let _stream = a.stream(&ticket).await;

    stop.cancel();
    let accepted = publisher.await.expect("the publisher never saw a 500");
    a.publish("t", Some("end"), Value::Null).await;
    for reader in readers {
        let received = reader.await.expect("the stream stayed open throughout");
        let delivered: Vec<&String> = received.iter().filter(|id| accepted.contains(id)).collect();
        let missing = accepted.iter().filter(|id| !received.contains(id)).count();
        assert!(
            delivered == accepted.iter().collect::<Vec<_>>(),
            "every event answered 200 arrives, once, in order: {missing} of {} missing, {} received",
            accepted.len(),
            delivered.len()
        );
    }
}

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

/// One instance on the shared Redis, and its key prefix.
async fn spawn_on_redis() -> (TestApp, String, redis::aio::MultiplexedConnection) {
    let url = test_redis_url().expect(NEEDS_REDIS);
    let redis = redis_settings(&url);
    let prefix = redis.prefix.clone();
    let mut config = test_config(&fresh_database_url().await);
    config.redis = Some(redis);
    let app = spawn_config_with_clock(config, ManualClock::default()).await;
    let connection = redis::Client::open(url)
        .expect("URL")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers");
    (app, prefix, connection)
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
        .publish(&channel, r#"{"lifted":{"sub":"alice"}}"#)
        .await
        .expect("PUBLISH");
    let at = app.clock.now().timestamp_millis() + 1000;
    let _: i64 = redis
        .publish(
            &channel,
            format!(r#"{{"revoked":{{"sub":"carol","at":{at}}}}}"#),
        )
        .await
        .expect("PUBLISH");
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
