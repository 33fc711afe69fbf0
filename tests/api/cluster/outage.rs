//! Redis going away and coming back, on a `redis-server` of the test's own.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{NEEDS_REDIS, collect_until_end, spawn_pair_on};
use crate::helpers::{
    OwnRedis, TestApp, assert_error, kill_client, pubsub_clients, shard_channels, test_redis_url,
};

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
        let clients = pubsub_clients(&mut admin).await;
        let first = clients.first().expect("a subscribed instance");
        kill_client(&mut admin, &first.id).await;
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
#[ignore = "needs redis-server: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn an_instance_with_thousands_of_channels_subscribes_to_every_one_again() {
    assert!(test_redis_url().is_some(), "{NEEDS_REDIS}");
    let redis = OwnRedis::start().await;
    let (a, b) = spawn_pair_on(&redis.url(), |_| {}).await;
    // 40 streams of 64 topics each: 2,560 channels, more than one batch.
    let mut streams = Vec::new();
    for s in 0..40 {
        let topics: Vec<String> = (0..64).map(|t| format!("many/{s}/{t}")).collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        streams.push(a.subscribe(&format!("s{s}"), &topics).await);
    }
    let mut admin = redis.connect().await;
    let count = async |admin: &mut redis::aio::MultiplexedConnection| {
        shard_channels(admin, "*many/*").await.len()
    };
    assert_eq!(count(&mut admin).await, 2_560);

    // A's subscription is lost: the connection with the most channels.
    let clients = pubsub_clients(&mut admin).await;
    let busiest = clients.iter().max_by_key(|c| c.ssub);
    kill_client(&mut admin, &busiest.expect("a subscribed instance").id).await;

    // Every channel comes back, and events flow to the first and last topics.
    let deadline = tokio::time::Instant::now() + crate::helpers::PATIENCE;
    while count(&mut admin).await == 2_560 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "unsubscribed by the kill"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    while count(&mut admin).await != 2_560 || a.get("/readyz").await.status() != 200 {
        assert!(tokio::time::Instant::now() < deadline, "re-subscribed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let first = b.publish("many/0/0", None, json!("first")).await;
    let last = b.publish("many/39/63", None, json!("last")).await;
    assert_eq!(
        streams[0].next_event().await.id.as_deref(),
        Some(first.as_str())
    );
    assert_eq!(
        streams[39].next_event().await.id.as_deref(),
        Some(last.as_str())
    );
}
