//! The HTTP edge under abuse: requests whose head or body never arrives,
//! oversized credentials and header blocks (HTTP/1.1 and HTTP/2), credentials
//! smuggled past the log redaction by encoding, and spec drift on `/publish`.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{
    PATIENCE, SECRET, assert_bearer_error, assert_closed, assert_error, connect, h2_connection,
    h2_tls, header, output, post_ticket, read_response, serve, spawn_app, spawn_app_with,
    spawn_tls_app, sse_ticket,
};

/// The request timeout of the tests that wait for it.
const SHORT: Duration = Duration::from_millis(700);

/// Largest request head the server accepts (request line and headers).
const MAX_HEAD: usize = 16 * 1024;

#[tokio::test]
async fn a_body_that_never_arrives_gets_408_request_timeout() {
    let app = spawn_app_with(|c| c.request_timeout = SHORT).await;
    let bearer = app.token("alice", &["t"], &["t"]);
    for path in ["/publish", "/sse-token"] {
        let mut stream = connect(&app).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"topic\":"
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        let started = tokio::time::Instant::now();
        let response = read_response(&mut stream).await;
        response.assert_error(408, "request_timeout");
        let waited = started.elapsed();
        assert!(
            waited >= SHORT - Duration::from_millis(100),
            "{path}: answered only once the timeout passed, not after {waited:?}"
        );
    }
    app.wait_for_metric(r#"sse_ticket_requests_timed_out_total{phase="body"}"#, 2.0)
        .await;
    // A body that arrives in time is read as usual.
    let response = app
        .post_publish(Some(&bearer), r#"{"topic":"t","data":1}"#)
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn headers_that_never_finish_get_408_request_timeout() {
    let app = spawn_app_with(|c| c.request_timeout = SHORT).await;
    let before = app
        .metric(r#"sse_ticket_requests_timed_out_total{phase="head"}"#)
        .await;

    // The first request of a connection.
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    let response = read_response(&mut stream).await;
    response.assert_error(408, "request_timeout");
    assert_closed(&mut stream).await;

    // A later request on a kept-alive connection: upstream actix times only
    // the first one.
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(read_response(&mut stream).await.status, 200);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    let response = read_response(&mut stream).await;
    response.assert_error(408, "request_timeout");
    assert_closed(&mut stream).await;

    // Counted for the whole process (other servers of this test binary too).
    let after = app
        .metric(r#"sse_ticket_requests_timed_out_total{phase="head"}"#)
        .await;
    assert!(after >= before + 2.0, "{before} -> {after}");
}

#[tokio::test]
async fn a_bearer_token_over_8_kib_is_refused_before_it_is_decoded() {
    let app = spawn_app().await;
    // Valid, well signed tokens, made long by their permissions: the longest
    // within the limit, and the shortest beyond it.
    let mut patterns: Vec<String> = Vec::new();
    let mut fits = String::new();
    let long = loop {
        let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
        let token = app.token("alice", &refs, &[]);
        if token.len() > 8 * 1024 {
            break token;
        }
        fits = token;
        patterns.push(format!("orders/{:04}/items/*", patterns.len()));
    };
    assert!(long.len() <= 9 * 1024 && fits.len() > 8 * 1024 - 100);
    let response = app.post_sse_token(Some(&long), None).await;
    let body = assert_bearer_error(response, "invalid_token").await;
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains("8192")),
        "{body}"
    );
    let published = app
        .post_publish(Some(&long), r#"{"topic":"t","data":1}"#)
        .await;
    assert_bearer_error(published, "invalid_token").await;

    // Just under the limit it is an ordinary token.
    assert_eq!(app.post_sse_token(Some(&fits), None).await.status(), 200);
}

#[tokio::test]
async fn a_header_block_over_16_kib_gets_431_over_http1() {
    let app = spawn_app().await;
    let before = app.metric("sse_ticket_request_heads_too_large_total").await;
    let filler = |len: usize| "a".repeat(len);

    for size in [20 * 1024, 120 * 1024] {
        let response = app
            .client
            .get(app.url("/healthz"))
            .header("x-filler", filler(size))
            .send()
            .await
            .expect("GET");
        assert_eq!(header(&response, "connection"), "close");
        assert_error(response, 431, "headers_too_large").await;
    }

    // Many headers adding up to more than the limit.
    let mut request = app.client.get(app.url("/healthz"));
    for i in 0..40 {
        request = request.header(format!("x-filler-{i}"), filler(512));
    }
    assert_error(request.send().await.expect("GET"), 431, "headers_too_large").await;

    // A large head within the limit is served.
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-filler", filler(MAX_HEAD - 1024))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);

    // A client still sending the rest of its head when the answer comes: the
    // server reads and drops it, then closes cleanly, rather than resetting
    // the connection (which can destroy the answer before it is read).
    let mut stream = connect(&app).await;
    let mut head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: ".to_vec();
    head.extend(filler(20 * 1024).bytes());
    stream.write_all(&head).await.expect("write");
    read_response(&mut stream)
        .await
        .assert_error(431, "headers_too_large");
    for _ in 0..16 {
        stream
            .write_all(filler(8 * 1024).as_bytes())
            .await
            .expect("the server still reads");
    }
    stream.shutdown().await.expect("half-close");
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .expect("a clean close, not a reset");
    assert!(rest.is_empty(), "nothing after the answer");

    let after = app.metric("sse_ticket_request_heads_too_large_total").await;
    assert!(after >= before + 4.0, "{before} -> {after}");
}

#[tokio::test]
async fn http2_advertises_a_16_kib_header_list_and_refuses_a_larger_one() {
    let (app, cert) = spawn_tls_app(|_| {}).await;

    // The server's SETTINGS frame, read raw after the client preface.
    let mut tls = h2_tls(&app, &cert).await;
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("preface");
    let mut frame_head = [0u8; 9];
    tokio::time::timeout(PATIENCE, tls.read_exact(&mut frame_head))
        .await
        .expect("in time")
        .expect("a frame");
    assert_eq!(frame_head[3], 0x4, "the server speaks first with SETTINGS");
    let length = usize::from(frame_head[0]) << 16
        | usize::from(frame_head[1]) << 8
        | usize::from(frame_head[2]);
    let mut payload = vec![0u8; length];
    tls.read_exact(&mut payload)
        .await
        .expect("SETTINGS payload");
    let settings: Vec<(u16, u32)> = payload
        .chunks_exact(6)
        .map(|s| {
            (
                u16::from_be_bytes([s[0], s[1]]),
                u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
            )
        })
        .collect();
    const MAX_HEADER_LIST_SIZE: u16 = 0x6;
    assert!(
        settings.contains(&(MAX_HEADER_LIST_SIZE, 16 * 1024)),
        "SETTINGS_MAX_HEADER_LIST_SIZE = 16384 in {settings:?}"
    );

    // An oversized header block is answered 431 (by h2, without a body) and
    // the stream is reset; the connection serves on.
    let connection = h2_connection(&app, &cert).await;
    let get = |filler: usize| {
        http::Request::get(app.url("/healthz"))
            .header("x-filler", "a".repeat(filler))
            .body(())
            .expect("request")
    };
    let mut sender = connection.clone().ready().await.expect("ready");
    let (response, _) = sender.send_request(get(20 * 1024), true).expect("sent");
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .expect("an answer in time")
        .expect("a response");
    assert_eq!(response.status(), 431);

    let mut sender = connection.clone().ready().await.expect("ready");
    let (response, _) = sender
        .send_request(get(MAX_HEAD - 1024), true)
        .expect("sent");
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .expect("an answer in time")
        .expect("a response");
    assert_eq!(response.status(), 200, "a large head within the limit");
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk: Bytes = chunk.expect("data");
        data.extend_from_slice(&chunk);
    }
    assert_eq!(
        serde_json::from_slice::<Value>(&data).expect("JSON"),
        json!({ "status": "ok" })
    );
}

#[tokio::test]
async fn a_credential_parameter_is_redacted_from_the_logs_however_it_is_encoded() {
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
    let bearer = app.token("alice", &["orders/*"], &[]);
    let client = reqwest::Client::new();
    let base = &process.base;
    let ticket = |json: Value| json["ticket"].as_str().expect("ticket").to_owned();

    // The server reads `%74oken` as `token`: the stream opens.
    let first = ticket(post_ticket(&client, base, &bearer, "").await);
    let opened = client
        .get(format!("{base}/stream?%74oken={first}"))
        .send()
        .await
        .expect("stream");
    assert_eq!(opened.status(), 200);
    drop(opened);
    // Other spellings, each with a live ticket (refused or not, never logged).
    let mut tickets = vec![first];
    for query in [
        "to%6Ben",
        "TOKEN",
        "token=x&token",
        "access_token",
        "tok%65n+",
    ] {
        let live = ticket(post_ticket(&client, base, &bearer, "").await);
        let response = client
            .get(format!("{base}/stream?lastEventId=&{query}={live}"))
            .send()
            .await
            .expect("stream");
        assert!(
            [200, 401].contains(&response.status().as_u16()),
            "{query}: {}",
            response.status()
        );
        tickets.push(live);
    }

    let logs = process.stop_and_read_logs().await;

    assert!(
        logs.contains("/stream?token=[redacted]"),
        "the access log shows the decoded key, redacted:\n{logs}"
    );
    for ticket in &tickets {
        assert!(
            !logs.contains(ticket.as_str()),
            "{ticket} leaked into the logs:\n{logs}"
        );
    }
}

#[tokio::test]
async fn publish_refuses_a_null_event_type() {
    let app = spawn_app().await;
    let bearer = app.token("publisher", &[], &["*"]);
    let response = app
        .post_publish(Some(&bearer), r#"{"topic":"t","event":null,"data":1}"#)
        .await;
    let body = assert_error(response, 400, "invalid_body").await;
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("event") || m.contains("string")),
        "{body}"
    );
    // Absent still means `message`.
    let response = app
        .post_publish(Some(&bearer), r#"{"topic":"t","data":1}"#)
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_request_timeout_is_a_setting_checked_at_start_up() {
    for value in ["0s", "2days", "soon"] {
        let mut command = sse_ticket(&["serve", "--bind", "127.0.0.1:0"]);
        command
            .env("SSE_TICKET_JWT_SECRET", SECRET)
            .env("SSE_TICKET_REQUEST_TIMEOUT", value);
        let out = output(command).await;
        assert_eq!(out.status.code(), Some(2), "{value}");
        let stderr = String::from_utf8(out.stderr).expect("UTF-8");
        assert!(
            stderr.contains("SSE_TICKET_REQUEST_TIMEOUT") || stderr.contains("--request-timeout"),
            "{value}: {stderr}"
        );
    }
    let help = output(sse_ticket(&["serve", "--help"])).await;
    let help = String::from_utf8(help.stdout).expect("UTF-8");
    assert!(help.contains("--request-timeout"), "{help}");
    assert!(help.contains("SSE_TICKET_REQUEST_TIMEOUT"), "{help}");
}
