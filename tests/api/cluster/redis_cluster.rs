//! Two instances on a Redis Cluster of the test's own (3 masters, 3
//! replicas): tickets and events hold across them as on one Redis.

use std::time::Duration;

use serde_json::json;

use super::{assert_events_reach_both, assert_exactly_one_redeems, spawn_pair_with};
use crate::helpers::{RedisCluster, assert_error};

#[tokio::test]
#[ignore = "needs redis-server: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn on_a_cluster_a_ticket_redeems_exactly_once_on_either_instance() {
    let cluster = RedisCluster::start().await;
    let (a, b) = spawn_pair_with(cluster.settings(), |_| {}).await;
    let alice = a.token("alice", &[], &[]);

    let ticket = a.ticket(&alice, &[]).await;
    let _stream = b.stream(&ticket).await;
    for app in [&a, &b] {
        assert_error(app.get_stream(&ticket).await, 401, "invalid_ticket").await;
    }

    // Many tickets, so their keys land on every master's slots.
    for i in 0..12 {
        let ticket = if i % 2 == 0 { &a } else { &b }.ticket(&alice, &[]).await;
        let _open = if i % 2 == 0 { &b } else { &a }.stream(&ticket).await;
    }

    // A race of 40 connects with one ticket, half on each instance.
    let ticket = b.ticket(&alice, &[]).await;
    assert_exactly_one_redeems(&a, &b, &ticket, 40).await;
}

#[tokio::test]
#[ignore = "needs redis-server: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn on_a_cluster_an_event_from_either_instance_reaches_streams_on_both() {
    let cluster = RedisCluster::start().await;
    let (a, b) = spawn_pair_with(cluster.settings(), |_| {}).await;
    assert_events_reach_both(&a, &b).await;
}

/// The shard channels the cluster knows of, across every master.
async fn shard_channels(cluster: &RedisCluster, prefix: &str) -> Vec<String> {
    let mut channels = Vec::new();
    for port in cluster.masters().await {
        let mut node = cluster.node(port).await;
        channels.extend(crate::helpers::shard_channels(&mut node, &format!("{prefix}*")).await);
    }
    channels.sort();
    channels
}

#[tokio::test]
#[ignore = "needs redis-server: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn an_instance_receives_only_the_events_of_the_channels_its_streams_need() {
    let cluster = RedisCluster::start().await;
    let settings = cluster.settings();
    let prefix = settings.prefix.clone();
    let (a, b) = spawn_pair_with(settings, |_| {}).await;
    let events = |name: &str| format!("{prefix}events:{name}");
    let received = "sse_ticket_broker_events_received_total";
    // Topics under one first segment: each has channels of its own.
    let mut orders = a.subscribe("alice", &["orders/42"]).await;
    // Streams that end when their bearer token expires, later on.
    let short = |sub: &str, topic: &str| b.token_for(sub, &[topic], &[], Duration::from_secs(120));
    let mut other = b
        .stream(&b.ticket(&short("bob", "orders/7"), &["orders/7"]).await)
        .await;
    assert_eq!(
        shard_channels(&cluster, &prefix).await,
        vec![
            events("{orders/42}"),
            events("{orders/7}"),
            format!("{prefix}notices")
        ],
        "one shard channel per topic a stream needs, and the notices"
    );

    for n in 0..5 {
        a.publish("orders/7", None, json!(n)).await;
        b.publish("orders/42", None, json!(n)).await;
    }
    for n in 0..5 {
        assert_eq!(orders.next_event().await.json(), json!(n));
        assert_eq!(other.next_event().await.json(), json!(n));
    }
    // Each instance received its own five, none of the other's.
    assert_eq!(a.metric(received).await, 5.0);
    assert_eq!(b.metric(received).await, 5.0);

    // A `*` stream listens on the channel every event also goes to.
    let mut everything = b
        .stream(&b.ticket(&short("carol", "*"), &["*"]).await)
        .await;
    assert!(
        shard_channels(&cluster, &prefix)
            .await
            .contains(&events("*"))
    );
    let id = a.publish("orders/42", None, json!("x")).await;
    assert_eq!(
        everything.next_event().await.id.as_deref(),
        Some(id.as_str())
    );
    assert_eq!(orders.next_event().await.id.as_deref(), Some(id.as_str()));
    assert_eq!(b.metric(received).await, 6.0, "by the * channel");
    assert_eq!(a.metric(received).await, 6.0, "by its topic's channel");

    // The last stream of a channel gone, the instance unsubscribes.
    b.advance(Duration::from_secs(121));
    for stream in [&mut other, &mut everything] {
        assert_eq!(stream.next_event().await.event.as_deref(), Some("close"));
        stream.assert_ends().await;
    }
    let deadline = tokio::time::Instant::now() + crate::helpers::PATIENCE;
    while shard_channels(&cluster, &prefix)
        .await
        .contains(&events("{orders/7}"))
    {
        assert!(tokio::time::Instant::now() < deadline, "unsubscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.publish("orders/7", None, json!("nobody")).await;
    a.publish("orders/42", None, json!("last")).await;
    assert_eq!(orders.next_event().await.json(), json!("last"));
    assert_eq!(b.metric(received).await, 6.0, "nothing more for b");
}

#[tokio::test]
#[ignore = "needs redis-server: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn events_received_per_instance_stay_flat_as_instances_are_added() {
    let cluster = RedisCluster::start().await;
    let settings = cluster.settings();
    let database_url = crate::helpers::fresh_database_url().await;
    let clock = sse_ticket::clock::ManualClock::default();
    let received = "sse_ticket_broker_events_received_total";
    let mut instances = Vec::new();
    let mut streams = Vec::new();
    // Each round adds two instances, each with a stream on a user's own
    // topic (all under `user/`); every topic gets the same events.
    for round in 1..=2 {
        for i in instances.len()..2 * round {
            let mut config = crate::helpers::test_config(&database_url);
            config.redis = Some(settings.clone());
            let app = crate::helpers::spawn_config_with_clock(config, clock.clone()).await;
            streams.push(app.subscribe(&format!("s{i}"), &[]).await);
            instances.push(app);
        }
        let publisher = &instances[0];
        for n in 0..5 {
            for i in 0..instances.len() {
                publisher
                    .publish(&format!("user/s{i}"), None, json!(n))
                    .await;
            }
        }
        for stream in &mut streams {
            for _ in 0..5 {
                stream.next_event().await;
            }
        }
        // Every instance received 5 events per round it was there for,
        // however many instances (and topics) there are.
        for (i, app) in instances.iter().enumerate() {
            let rounds = if i < 2 { round } else { round - 1 };
            assert_eq!(
                app.metric(received).await,
                5.0 * rounds as f64,
                "instance {i} of {}",
                instances.len()
            );
        }
    }
}
