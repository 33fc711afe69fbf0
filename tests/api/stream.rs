//! `GET /stream`: single-use tickets, the frames of a stream, and how it ends.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{SseStream, assert_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_ticket_opens_one_stream_and_only_once() {
    let app = spawn_app().await;
    let bearer = app.token("alice", &[], &[]);
    let ticket = app.ticket(&bearer, &[]).await;

    let response = app.get_stream(&ticket).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert!(
        headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/event-stream")
    );
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    let mut stream = SseStream::new(response);
    assert_eq!(stream.next_frame().await.retry, Some(3000));
    let ready = stream.next_frame().await;
    assert_eq!(ready.event.as_deref(), Some("ready"));
    assert_eq!(
        ready.json(),
        json!({ "sub": "alice", "topics": ["user/alice"] })
    );

    assert_error(app.get_stream(&ticket).await, 401, "invalid_ticket").await;
    assert_eq!(app.metric("sse_ticket_tickets_redeemed_total").await, 1.0);
    assert_eq!(
        app.metric(r#"sse_ticket_tickets_rejected_total{reason="unknown"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn of_fifty_concurrent_connects_with_one_ticket_exactly_one_wins() {
    let app = spawn_app().await;
    let ticket = app.ticket(&app.token("alice", &[], &[]), &[]).await;
    let attempts = (0..50).map(|_| app.get_stream(&ticket));
    let responses = futures_util::future::join_all(attempts).await;
    let mut statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        49,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn anything_but_a_live_ticket_is_refused_alike() {
    let app = spawn_app().await;
    let bearer = app.token("alice", &[], &[]);
    let unknown = uuid::Uuid::new_v4().to_string();
    let v7 = uuid::Uuid::now_v7().to_string();
    for token in [
        bearer.as_str(),
        unknown.as_str(),
        v7.as_str(),
        "",
        "not-a-ticket",
    ] {
        assert_error(app.get_stream(token).await, 401, "invalid_ticket").await;
    }
    let no_token = app
        .client
        .get(app.url("/stream"))
        .send()
        .await
        .expect("request");
    assert_error(no_token, 401, "invalid_ticket").await;
    assert_eq!(
        app.metric(r#"sse_ticket_tickets_rejected_total{reason="malformed"}"#)
            .await,
        5.0
    );
    // A bearer token in the URL is not a credential here, and spends nothing.
    let ticket = app.ticket(&bearer, &[]).await;
    app.stream(&ticket).await;
}

#[tokio::test]
async fn a_ticket_expires_after_its_ttl() {
    let app = spawn_app().await;
    let bearer = app.token("alice", &[], &[]);
    let early = app.ticket(&bearer, &[]).await;
    let late = app.ticket(&bearer, &[]).await;
    app.advance(Duration::from_millis(59_900));
    app.stream(&early).await;
    app.advance(Duration::from_millis(100));
    assert_error(app.get_stream(&late).await, 401, "invalid_ticket").await;
    // Refused as expired, or as unknown if the sweeper took it first.
    let expired = app
        .metric(r#"sse_ticket_tickets_rejected_total{reason="expired"}"#)
        .await;
    let unknown = app
        .metric(r#"sse_ticket_tickets_rejected_total{reason="unknown"}"#)
        .await;
    assert_eq!(expired + unknown, 1.0);
}

#[tokio::test]
async fn unused_expired_tickets_are_swept() {
    let app = spawn_app().await;
    let bearer = app.token("alice", &[], &[]);
    for _ in 0..3 {
        app.ticket(&bearer, &[]).await;
    }
    assert_eq!(app.metric("sse_ticket_tickets_outstanding").await, 3.0);
    app.advance(Duration::from_secs(61));
    app.wait_for_metric("sse_ticket_tickets_outstanding", 0.0)
        .await;
    assert_eq!(app.metric("sse_ticket_tickets_expired_total").await, 3.0);
}

#[tokio::test]
async fn a_stream_receives_only_its_topics() {
    let app = spawn_app().await;
    let mut alice = app.subscribe("alice", &[]).await;
    let mut bob = app.subscribe("bob", &[]).await;
    app.publish("user/bob", None, json!("for bob")).await;
    let id = app
        .publish("user/alice", Some("note"), json!({ "to": "alice" }))
        .await;

    let frame = alice.next_event().await;
    assert_eq!(frame.id.as_deref(), Some(id.as_str()));
    assert_eq!(frame.event.as_deref(), Some("note"));
    assert_eq!(frame.json(), json!({ "to": "alice" }));
    assert_eq!(bob.next_event().await.json(), json!("for bob"));
    // Bob never saw Alice's event: his next frame is the one published after it.
    app.publish("user/bob", None, json!(2)).await;
    assert_eq!(bob.next_event().await.json(), json!(2));
}

#[tokio::test]
async fn patterns_deliver_their_subtree_once() {
    let app = spawn_app().await;
    let mut orders = app.subscribe("ops", &["orders/*", "orders/42"]).await;
    for topic in ["ordersx", "orders/42", "orders", "orders/42/lines", "other"] {
        app.publish(topic, None, json!(topic)).await;
    }
    for expected in ["orders/42", "orders", "orders/42/lines"] {
        assert_eq!(orders.next_event().await.json(), json!(expected));
    }
    app.publish("orders/last", None, json!("last")).await;
    assert_eq!(
        orders.next_event().await.json(),
        json!("last"),
        "no duplicate, nothing foreign"
    );
}

#[tokio::test]
async fn a_message_event_has_no_event_line() {
    let app = spawn_app().await;
    let mut stream = app.subscribe("alice", &[]).await;
    app.publish("user/alice", None, json!([1, 2])).await;
    app.publish("user/alice", Some("message"), json!(null))
        .await;
    for data in [json!([1, 2]), json!(null)] {
        let frame = stream.next_event().await;
        assert_eq!(frame.event, None);
        assert_eq!(frame.json(), data);
        let id = uuid::Uuid::parse_str(frame.id.as_deref().expect("id")).expect("uuid");
        assert_eq!(id.get_version_num(), 7);
    }
}

#[tokio::test]
async fn an_idle_stream_gets_heartbeats() {
    let app = spawn_app_with(|c| c.heartbeat = Duration::from_millis(50)).await;
    let mut stream = app.subscribe("alice", &[]).await;
    for _ in 0..2 {
        assert_eq!(stream.next_frame().await.comment.as_deref(), Some("ping"));
    }
}

#[tokio::test]
async fn a_stream_closes_when_its_bearer_token_expires() {
    let app = spawn_app().await;
    let bearer = app.token_for("alice", &[], &[], Duration::from_secs(120));
    let ticket = app.ticket(&bearer, &[]).await;
    let mut stream = app.stream(&ticket).await;
    app.advance(Duration::from_secs(121));
    let close = stream.next_event().await;
    assert_eq!(close.event.as_deref(), Some("close"));
    assert_eq!(close.json(), json!({ "reason": "token_expired" }));
    stream.assert_ends().await;
    app.wait_for_metric("sse_ticket_streams_open", 0.0).await;
    assert_eq!(
        app.metric(r#"sse_ticket_streams_closed_total{reason="token_expired"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn shutdown_closes_streams_with_a_reason() {
    let app = spawn_app().await;
    let mut stream = app.subscribe("alice", &[]).await;
    let stopping = tokio::spawn({
        let stopper = app.stopper();
        async move { stopper.stop().await }
    });
    let close = stream.next_event().await;
    assert_eq!(close.event.as_deref(), Some("close"));
    assert_eq!(close.json(), json!({ "reason": "shutdown" }));
    stream.assert_ends().await;
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown completes within seconds")
        .expect("stop task");
}

#[tokio::test]
async fn a_client_that_leaves_frees_its_subscription() {
    let app = spawn_app().await;
    let stream = app.subscribe("alice", &[]).await;
    assert_eq!(app.metric("sse_ticket_streams_open").await, 1.0);
    drop(stream);
    // The server notices the closed connection on its next write.
    let deadline = tokio::time::Instant::now() + crate::helpers::PATIENCE;
    while app.metric("sse_ticket_streams_open").await != 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream was never released"
        );
        app.publish("user/alice", None, json!("anyone?")).await;
    }
    assert_eq!(
        app.metric(r#"sse_ticket_streams_closed_total{reason="client"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_stream_that_stops_reading_is_detached_without_holding_back_the_others() {
    let app = spawn_app().await;
    // Opened but not read: its socket, then its queue, fill up.
    let mut stalled = app.subscribe("stalled", &["t"]).await;
    let mut reader = app.subscribe("reader", &["t"]).await;
    let bearer = app.token("publisher", &[], &["*"]);
    let body = json!({ "topic": "t", "data": "x".repeat(60_000) }).to_string();
    let mut sent = 0;
    while app.metric("sse_ticket_streams_lagging_total").await == 0.0 {
        assert!(sent < 5_000, "the stalled stream was never detached");
        for _ in 0..50 {
            let response = app.post_publish(Some(&bearer), &body).await;
            assert_eq!(
                response.status(),
                200,
                "publishing never waits for a slow stream"
            );
            sent += 1;
            // The reader keeps up and gets every event.
            assert_eq!(
                reader.next_event().await.data.map(|d| d.len()),
                Some(60_002)
            );
        }
    }
    app.publish("t", None, json!("after")).await;
    assert_eq!(reader.next_event().await.json(), json!("after"));

    // Once it reads again, the stalled stream gets what was queued, then the
    // reason it was cut off, and ends: its client reconnects and resumes.
    let mut drained = 0;
    let close = loop {
        let frame = stalled.next_event().await;
        if frame.event.as_deref() == Some("close") {
            break frame;
        }
        drained += 1;
    };
    assert!(
        drained < sent,
        "the stalled stream missed events ({drained} of {sent})"
    );
    assert_eq!(close.json(), json!({ "reason": "lagging" }));
    stalled.assert_ends().await;
}
