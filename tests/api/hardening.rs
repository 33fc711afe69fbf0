//! What an attacker tries against streams and revocation: racing a
//! revocation, holding streams without end, not reading, and subjects
//! shaped to reach into another's topics.

use std::time::Duration;

use serde_json::json;
use sse_ticket::clock::Clock as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{
    PATIENCE, address, assert_error, execute_sql, header, read_until, spawn_app, spawn_app_with,
};

#[tokio::test]
async fn a_ticket_issued_across_a_revocation_opens_no_stream() {
    let app = spawn_app().await;
    let alice = app.token("alice", &[], &[]);
    // The headers, then the body once the token was checked: the server
    // answers `100 Continue` after it took the request, extractors included.
    let mut socket = TcpStream::connect(address(&app)).await.expect("connect");
    let head = format!(
        "POST /sse-token HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {alice}\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.expect("headers");
    read_until(&mut socket, "100 Continue\r\n\r\n").await;

    assert_eq!(app.revoke("alice").await.status(), 200);

    socket.write_all(b"{}").await.expect("body");
    let response = read_until(&mut socket, "\"ticket\":\"").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let ticket = response
        .split("\"ticket\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a ticket")
        .to_owned();

    // Issued after the revocation, under a token the revocation covers.
    assert_error(app.get_stream(&ticket).await, 401, "invalid_ticket").await;
    assert_eq!(
        app.metric(r#"sse_ticket_tickets_rejected_total{reason="revoked"}"#)
            .await,
        1.0
    );
    assert_eq!(app.metric("sse_ticket_streams_open").await, 0.0);
}

#[tokio::test]
async fn a_subject_holds_at_most_its_streams() {
    let app = spawn_app_with(|c| c.streams.per_subject = 2).await;
    let first = app.subscribe("alice", &[]).await;
    let _second = app.subscribe("alice", &[]).await;

    let bearer = app.token("alice", &[], &[]);
    let ticket = app.ticket(&bearer, &[]).await;
    let response = app.get_stream(&ticket).await;
    assert_eq!(header(&response, "retry-after"), "5");
    assert_error(response, 429, "too_many_streams").await;
    // The ticket was spent on the refusal.
    assert_error(app.get_stream(&ticket).await, 401, "invalid_ticket").await;
    assert_eq!(
        app.metric(r#"sse_ticket_streams_refused_total{cap="per_subject"}"#)
            .await,
        1.0
    );
    // Another subject is not held back.
    let _bob = app.subscribe("bob", &[]).await;

    // A stream that ends gives its place back (the server notices the
    // closed connection on its next write).
    drop(first);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while app.metric("sse_ticket_streams_open").await != 2.0 {
        assert!(tokio::time::Instant::now() < deadline, "the place is freed");
        app.publish("user/alice", None, json!("anyone?")).await;
    }
    let _third = app.subscribe("alice", &[]).await;
}

#[tokio::test]
async fn an_instance_holds_at_most_its_streams() {
    let app = spawn_app_with(|c| c.streams.total = 2).await;
    assert_eq!(app.metric("sse_ticket_streams_max").await, 2.0);
    let _a = app.subscribe("alice", &[]).await;
    let _b = app.subscribe("bob", &[]).await;

    let ticket = app.ticket(&app.token("carol", &[], &[]), &[]).await;
    let response = app.get_stream(&ticket).await;
    assert_eq!(header(&response, "retry-after"), "5");
    assert_error(response, 503, "unavailable").await;
    assert_eq!(
        app.metric(r#"sse_ticket_streams_refused_total{cap="instance"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn the_default_stream_cap_follows_the_open_file_limit() {
    let app = spawn_app().await;
    let max = app.metric("sse_ticket_streams_max").await;
    assert!(max >= 1.0, "a stream cap is set: {max}");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_and_its_subscription_freed() {
    let app = spawn_app_with(|c| {
        c.streams.write_timeout = Duration::from_secs(2);
        c.retention.history_max_per_topic = 0;
    })
    .await;
    let bearer = app.token("alice", &["feed"], &[]);
    let ticket = app.ticket(&bearer, &["feed"]).await;
    // A small receive window, so the server's writes stall soon.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let addr: std::net::SocketAddr = address(&app).parse().expect("address");
    socket.connect(&addr.into()).expect("connect");
    socket.set_nonblocking(true).expect("non-blocking");
    let mut socket = TcpStream::from_std(socket.into()).expect("tokio socket");
    let request = format!("GET /stream?token={ticket} HTTP/1.1\r\nHost: test\r\n\r\n");
    socket.write_all(request.as_bytes()).await.expect("request");
    read_until(&mut socket, "event: ready").await;
    assert_eq!(app.metric("sse_ticket_streams_open").await, 1.0);

    // From now on the client reads nothing. Its window is shut at once; the
    // events fill the server's socket buffer (4 MiB at most here), then
    // wait in the stream's queue, well within the write timeout.
    let data = json!("x".repeat(60 * 1024));
    let publishes = (0..120).map(|_| app.publish("feed", None, data.clone()));
    futures_util::future::join_all(publishes).await;
    app.wait_for_metric("sse_ticket_streams_open", 0.0).await;
    assert_eq!(
        app.metric(r#"sse_ticket_streams_closed_total{reason="write_timeout"}"#)
            .await,
        1.0
    );
    // The server gave the connection up: what the client finally reads
    // ends in a reset, not in more of the stream.
    let mut buf = vec![0u8; 64 * 1024];
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection was closed");
}

#[tokio::test]
async fn a_subject_with_a_slash_has_no_own_topic() {
    let app = spawn_app().await;
    // `alice/x` would otherwise get `user/alice/x`, inside alice's namespace.
    let bearer = app.token("alice/x", &[], &[]);
    assert_error(
        app.post_sse_token(Some(&bearer), None).await,
        400,
        "invalid_topic",
    )
    .await;
    let body = json!({ "topics": ["user/alice/x"] }).to_string();
    assert_error(
        app.post_sse_token(Some(&bearer), Some(&body)).await,
        403,
        "forbidden_topic",
    )
    .await;
}

#[tokio::test]
async fn a_revocation_another_instance_wrote_is_learned_without_its_message() {
    let app = spawn_app().await;
    let alice = app.token("alice", &[], &[]);
    let ticket = app.ticket(&alice, &[]).await;
    let mut stream = app.stream(&ticket).await;

    // As if another instance revoked alice and its announcement was lost.
    let at = app.clock.now().timestamp_millis();
    execute_sql(
        &app.database_url,
        &format!("INSERT INTO revocations (sub, revoked_at) VALUES ('alice', {at})"),
    )
    .await;
    app.advance(Duration::from_secs(
        sse_ticket::REVOCATION_RELOAD.num_seconds().unsigned_abs() + 1,
    ));

    let close = stream.next_event().await;
    assert_eq!(close.event.as_deref(), Some("close"));
    assert_eq!(close.json(), json!({ "reason": "revoked" }));
    stream.assert_ends().await;
    let refused = app.post_sse_token(Some(&alice), None).await;
    assert_error(refused, 401, "token_revoked").await;
}
