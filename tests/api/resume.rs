//! Resuming a stream from history: `Last-Event-ID` / `lastEventId`.

use std::time::Duration;

use serde_json::{Value, json};
use sse_ticket::clock::ManualClock;

use crate::helpers::{
    SseStream, assert_error, fresh_database_url, resume, spawn_app, spawn_app_with,
    spawn_config_with_clock, test_config,
};

#[tokio::test]
async fn a_resumed_stream_replays_what_it_missed_then_continues_live() {
    let app = spawn_app().await;
    let mut first = app.subscribe("alice", &["t"]).await;
    let id1 = app.publish("t", None, json!(1)).await;
    assert_eq!(first.next_event().await.id.as_deref(), Some(id1.as_str()));
    drop(first);
    let id2 = app.publish("t", Some("kind.two"), json!(2)).await;
    let id3 = app.publish("t", None, json!(3)).await;
    app.publish("other", None, json!("not mine")).await;

    let mut resumed = resume(&app, "alice", &["t"], &id1).await;
    let two = resumed.next_event().await;
    assert_eq!(
        (two.id.as_deref(), two.event.as_deref()),
        (Some(id2.as_str()), Some("kind.two"))
    );
    assert_eq!(two.json(), json!(2));
    let three = resumed.next_event().await;
    assert_eq!(
        (three.id.as_deref(), three.event),
        (Some(id3.as_str()), None)
    );
    let id4 = app.publish("t", None, json!(4)).await;
    assert_eq!(resumed.next_event().await.id.as_deref(), Some(id4.as_str()));
}

#[tokio::test]
async fn the_last_event_id_header_resumes_too() {
    let app = spawn_app().await;
    let id1 = app.publish("user/alice", None, json!(1)).await;
    let id2 = app.publish("user/alice", None, json!(2)).await;
    let ticket = app.ticket(&app.token("alice", &[], &[]), &[]).await;
    let response = app
        .client
        .get(app.url(&format!("/stream?token={ticket}")))
        .header("last-event-id", &id1)
        .send()
        .await
        .expect("GET /stream");
    let mut stream = SseStream::new(response);
    stream.next_frame().await;
    stream.next_frame().await;
    assert_eq!(stream.next_event().await.id.as_deref(), Some(id2.as_str()));
}

#[tokio::test]
async fn an_unknown_last_event_id_gets_a_reset_then_everything_retained() {
    let app = spawn_app().await;
    // Older than everything retained: an unknown id resumes after its time.
    let unknown = uuid::Uuid::now_v7().to_string();
    let ids = [
        app.publish("t", None, json!(1)).await,
        app.publish("t", None, json!(2)).await,
    ];
    let mut stream = resume(&app, "alice", &["t"], &unknown).await;
    let reset = stream.next_event().await;
    assert_eq!(reset.event.as_deref(), Some("reset"));
    for id in &ids {
        assert_eq!(stream.next_event().await.id.as_deref(), Some(id.as_str()));
    }
}

#[tokio::test]
async fn a_malformed_last_event_id_is_refused_and_spends_no_ticket() {
    let app = spawn_app().await;
    let ticket = app.ticket(&app.token("alice", &[], &[]), &[]).await;
    for bad in ["abc", "1", "' OR 1=1 --", &"9".repeat(300)] {
        let response = app
            .client
            .get(app.url("/stream"))
            .query(&[("token", ticket.as_str()), ("lastEventId", bad)])
            .send()
            .await
            .expect("GET /stream");
        assert_error(response, 400, "invalid_query").await;
    }
    app.stream(&ticket).await;
}

#[tokio::test]
async fn resume_is_gapless_while_events_are_being_published() {
    const TOTAL: usize = 300;
    let app = std::sync::Arc::new(spawn_app().await);
    let mut stream = app.subscribe("alice", &["seq"]).await;
    let publisher = tokio::spawn({
        let app = app.clone();
        async move {
            for n in 0..TOTAL {
                app.publish("seq", None, json!(n)).await;
            }
        }
    });
    let mut received: Vec<usize> = Vec::new();
    let mut reconnects = 0;
    while received.len() < TOTAL {
        let frame = stream.next_event().await;
        assert_eq!(frame.event, None, "only events: {frame:?}");
        let n: usize = serde_json::from_value(frame.json()).expect("a number");
        received.push(n);
        let last_id = frame.id.expect("an id");
        // Drop the connection every 40 events and resume where it stopped.
        if received.len().is_multiple_of(40) && received.len() < TOTAL {
            drop(stream);
            stream = resume(&app, "alice", &["seq"], &last_id).await;
            reconnects += 1;
        }
    }
    publisher.await.expect("publisher");
    assert!(reconnects >= 5);
    assert_eq!(
        received,
        (0..TOTAL).collect::<Vec<_>>(),
        "in order, no gap, no duplicate"
    );
}

#[tokio::test]
async fn history_survives_a_restart() {
    let database_url = fresh_database_url().await;
    let clock = ManualClock::default();
    let config = || test_config(&database_url);
    let first = spawn_config_with_clock(config(), clock.clone()).await;
    let id1 = first.publish("t", None, json!(1)).await;
    let id2 = first.publish("t", None, json!(2)).await;
    first.stopper().stop().await;

    let second = spawn_config_with_clock(config(), clock).await;
    let mut stream = resume(&second, "alice", &["t"], &id1).await;
    assert_eq!(stream.next_event().await.id.as_deref(), Some(id2.as_str()));
}

#[tokio::test]
async fn history_keeps_only_so_many_events_per_topic() {
    let app = spawn_app_with(|c| c.retention.history_max_per_topic = 3).await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(app.publish("t", None, json!(n)).await);
    }
    app.publish("u", None, json!("other topic")).await;
    app.advance_until_metric(
        Duration::from_secs(61),
        "sse_ticket_events_pruned_total",
        3.0,
    )
    .await;

    let mut stream = resume(&app, "alice", &["t"], &ids[0]).await;
    assert_eq!(
        stream.next_event().await.event.as_deref(),
        Some("reset"),
        "ids[0] is gone"
    );
    for id in &ids[3..] {
        assert_eq!(stream.next_event().await.id.as_deref(), Some(id.as_str()));
    }
    let mut kept = resume(&app, "bob", &["u"], &ids[5]).await;
    assert_eq!(kept.next_event().await.json(), Value::from("other topic"));
}

#[tokio::test]
async fn history_expires_after_its_ttl() {
    let app = spawn_app_with(|c| c.retention.history_ttl = Duration::from_secs(3600)).await;
    let old = app.publish("t", None, json!("old")).await;
    app.advance(Duration::from_secs(3000));
    let recent = app.publish("t", None, json!("recent")).await;
    app.advance(Duration::from_secs(600));
    // Past the old event's TTL, well before the recent one's.
    app.advance_until_metric(
        Duration::from_secs(61),
        "sse_ticket_events_pruned_total",
        1.0,
    )
    .await;
    let mut stream = resume(&app, "alice", &["t"], &old).await;
    assert_eq!(stream.next_event().await.event.as_deref(), Some("reset"));
    assert_eq!(
        stream.next_event().await.id.as_deref(),
        Some(recent.as_str())
    );
}

#[tokio::test]
async fn a_stream_on_a_prefix_pattern_resumes_the_topics_under_it_only() {
    let app = spawn_app().await;
    let first = app.publish("orders/1", None, json!(1)).await;
    let below = app.publish("orders/2/lines", None, json!(2)).await;
    app.publish("ordersx", None, json!("not under orders/"))
        .await;
    let itself = app.publish("orders", None, json!(3)).await;
    let mut stream = resume(&app, "alice", &["orders/*"], &first).await;
    for id in [&below, &itself] {
        assert_eq!(stream.next_event().await.id.as_deref(), Some(id.as_str()));
    }
}
