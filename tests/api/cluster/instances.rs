//! One service made of instances: tickets, events, revocations, resumes and
//! caps hold across them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{assert_events_reach_both, assert_exactly_one_redeems, spawn_pair};
use crate::helpers::{assert_error, resume};

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
    assert_exactly_one_redeems(&a, &b, &ticket, 60).await;
}

#[tokio::test]
#[ignore = "needs Redis: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn an_event_published_on_one_instance_reaches_streams_on_both() {
    let (a, b) = spawn_pair(|_| {}).await;
    assert_events_reach_both(&a, &b).await;
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

#[tokio::test]
#[ignore = "needs Redis: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn expired_places_free_a_subject_at_its_cap_and_the_cap_still_holds() {
    // The issue script prunes a subject's expired places only at its cap.
    let (a, b) = spawn_pair(|c| c.tickets.per_subject = 2).await;
    let alice = a.token("alice", &[], &[]);
    a.ticket(&alice, &[]).await;
    b.ticket(&alice, &[]).await;
    a.advance(Duration::from_secs(30));
    let refused = b.post_sse_token(Some(&alice), None).await;
    assert_eq!(
        refused.headers()["retry-after"],
        "30",
        "until the oldest expires"
    );
    assert_error(refused, 429, "too_many_tickets").await;
    a.advance(Duration::from_secs(31));
    // Both places expired: two new tickets, then the cap again.
    let fresh = a.ticket(&alice, &[]).await;
    b.ticket(&alice, &[]).await;
    assert_error(
        a.post_sse_token(Some(&alice), None).await,
        429,
        "too_many_tickets",
    )
    .await;
    let _stream = b.stream(&fresh).await;
}

#[tokio::test]
#[ignore = "needs Redis: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn on_one_redis_an_instance_receives_only_the_topics_its_streams_subscribe_to() {
    let url = crate::helpers::test_redis_url().expect(super::NEEDS_REDIS);
    let settings = crate::helpers::redis_settings(&url);
    let prefix = settings.prefix.clone();
    let (a, b) = super::spawn_pair_with(settings, |_| {}).await;
    let mut redis = redis::Client::open(url)
        .expect("URL")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers");
    let received = "sse_ticket_broker_events_received_total";
    let mut orders = a.subscribe("alice", &["orders/*"]).await;
    let mut order = b.subscribe("bob", &["orders/42"]).await;
    let channels = crate::helpers::shard_channels(&mut redis, &format!("{prefix}*")).await;
    let events = |name: &str| format!("{prefix}events:{name}");
    assert_eq!(
        channels,
        [
            events("{orders/*}"),
            events("{orders/42}"),
            format!("{prefix}notices")
        ]
    );
    for n in 0..3 {
        a.publish("orders/42", None, json!(n)).await;
        b.publish("orders/7", None, json!(n)).await;
    }
    for n in 0..3 {
        assert_eq!(orders.next_event().await.json(), json!(n));
        assert_eq!(orders.next_event().await.json(), json!(n));
        assert_eq!(order.next_event().await.json(), json!(n));
    }
    assert_eq!(a.metric(received).await, 6.0, "both topics, by orders/*");
    assert_eq!(b.metric(received).await, 3.0, "orders/42's, not orders/7's");
}

#[tokio::test]
#[ignore = "needs Redis: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn on_one_redis_a_stream_on_overlapping_patterns_gets_each_event_once() {
    let url = crate::helpers::test_redis_url().expect(super::NEEDS_REDIS);
    let (a, b) = super::spawn_pair_with(crate::helpers::redis_settings(&url), |_| {}).await;
    let received = "sse_ticket_broker_events_received_total";
    // Two channels carry orders/42's events to this instance: orders/*'s and its own.
    let mut both = a.subscribe("alice", &["orders/*", "orders/42"]).await;
    let ids = [
        b.publish("orders/42", None, json!(0)).await,
        b.publish("orders/7", None, json!(1)).await,
        b.publish("orders/42", None, json!(2)).await,
        b.publish("orders/9", None, json!("end")).await,
    ];
    for id in &ids {
        assert_eq!(both.next_event().await.id.as_deref(), Some(id.as_str()));
    }
    assert_eq!(
        a.metric(received).await,
        6.0,
        "orders/42's events arrived twice, and were delivered once"
    );
}
