//! Two instances on a Redis Cluster of the test's own (3 masters, 3
//! replicas): tickets and events hold across them as on one Redis.

use serde_json::json;

use super::spawn_pair_with;
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
    let attempts = (0..40).map(|i| if i % 2 == 0 { &a } else { &b }.get_stream(&ticket));
    let responses = futures_util::future::join_all(attempts).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        39,
        "{statuses:?}"
    );
}

#[tokio::test]
#[ignore = "needs redis-server: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn on_a_cluster_an_event_from_either_instance_reaches_streams_on_both() {
    let cluster = RedisCluster::start().await;
    let (a, b) = spawn_pair_with(cluster.settings(), |_| {}).await;
    let mut on_a = a.subscribe("alice", &["orders/*"]).await;
    let mut on_b = b.subscribe("bob", &["orders/42"]).await;
    for (publisher, n) in [(&a, 1), (&b, 2)] {
        let id = publisher
            .publish("orders/42", Some("order.paid"), json!({ "n": n }))
            .await;
        for stream in [&mut on_a, &mut on_b] {
            let frame = stream.next_event().await;
            assert_eq!(frame.id.as_deref(), Some(id.as_str()), "same id everywhere");
            assert_eq!(frame.json(), json!({ "n": n }));
        }
    }
}
