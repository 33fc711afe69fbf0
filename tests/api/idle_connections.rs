//! A connection that waits gives its HTTP/1 buffers back (the patched
//! actix-http, `vendor/actix-http/PATCHED.md` item 8) and takes them again
//! when it has bytes to read or write: an idle stream still delivers, small
//! events and ones larger than the buffers it had, and a kept-alive connection
//! still serves large answers, large heads and bodies, and pipelined requests.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{PATIENCE, connect, spawn_app, spawn_app_with};

/// Responses read off one connection in order, bytes past one kept for the
/// next (pipelined answers may arrive in one read).
struct Responses {
    socket: TcpStream,
    buffer: Vec<u8>,
}

impl Responses {
    async fn fill(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(PATIENCE, self.socket.read(&mut chunk))
            .await
            .expect("bytes in time")
            .expect("read");
        assert!(n > 0, "the connection closed");
        self.buffer.extend_from_slice(&chunk[..n]);
    }

    /// The next response's status and `Content-Length` body.
    async fn next(&mut self) -> (u16, Vec<u8>) {
        let head_end = loop {
            if let Some(i) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await;
        };
        let head = String::from_utf8(self.buffer[..head_end].to_vec()).expect("a text head");
        let status = head[9..12].parse().expect("a status");
        let length: usize = head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.trim().parse().expect("a length"));
        while self.buffer.len() < head_end + length {
            self.fill().await;
        }
        let body = self.buffer[head_end..head_end + length].to_vec();
        self.buffer.drain(..head_end + length);
        (status, body)
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).await.expect("write");
    }
}

#[tokio::test]
async fn a_stream_idle_across_heartbeats_still_delivers_small_and_large_events() {
    let app = spawn_app_with(|c| c.heartbeat = Duration::from_millis(50)).await;
    let mut stream = app.subscribe("alice", &[]).await;
    for round in 0..2 {
        for _ in 0..3 {
            assert_eq!(stream.next_frame().await.comment.as_deref(), Some("ping"));
        }
        let small = app.publish("user/alice", None, json!(round)).await;
        let large = "x".repeat(60_000);
        let big = app
            .publish("user/alice", Some("big"), json!(large.clone()))
            .await;
        let frame = stream.next_event().await;
        assert_eq!(frame.id.as_deref(), Some(small.as_str()));
        assert_eq!(frame.json(), json!(round));
        let frame = stream.next_event().await;
        assert_eq!(frame.id.as_deref(), Some(big.as_str()));
        assert_eq!(frame.event.as_deref(), Some("big"));
        assert_eq!(frame.json(), json!(large));
    }
}

#[tokio::test]
async fn a_kept_alive_connection_serves_large_and_pipelined_requests_after_idling() {
    let app = spawn_app().await;
    let openapi = app
        .get("/openapi.yaml")
        .await
        .bytes()
        .await
        .expect("the OpenAPI document");
    assert!(openapi.len() > 64 * 1024, "larger than the buffers");
    let mut socket = Responses {
        socket: connect(&app).await,
        buffer: Vec::new(),
    };
    let healthz = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    socket.send(healthz.as_bytes()).await;
    assert_eq!(socket.next().await.0, 200);

    // Idle, then three requests in one write: a large answer between two small ones.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pipelined = format!("{healthz}GET /openapi.yaml HTTP/1.1\r\nHost: x\r\n\r\n{healthz}");
    socket.send(pipelined.as_bytes()).await;
    assert_eq!(socket.next().await, (200, br#"{"status":"ok"}"#.to_vec()));
    let (status, document) = socket.next().await;
    assert_eq!(status, 200);
    assert!(document == openapi.as_ref(), "the whole document, intact");
    assert_eq!(socket.next().await, (200, br#"{"status":"ok"}"#.to_vec()));

    // Idle, then a head larger than the 8 KiB the read buffer starts with.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let filler = "f".repeat(12 * 1024);
    let large_head = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: {filler}\r\n\r\n");
    socket.send(large_head.as_bytes()).await;
    assert_eq!(socket.next().await.0, 200);

    // Idle, then a head in two parts with a pause between: the first part
    // waits in the read buffer, which must not be given back.
    tokio::time::sleep(Duration::from_millis(200)).await;
    socket.send(b"GET /openapi.yaml HTTP/1.1\r\nHo").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    socket.send(b"st: x\r\n\r\n").await;
    let (status, document) = socket.next().await;
    assert_eq!(status, 200);
    assert!(document == openapi.as_ref(), "the whole document, intact");

    // Idle, then a 60 KB body, sent in two parts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bearer = app.token("publisher", &[], &["*"]);
    let body = json!({ "topic": "t", "data": "y".repeat(60_000) }).to_string();
    let head = format!(
        "POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (early, late) = body.split_at(body.len() / 2);
    socket.send(format!("{head}{early}").as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    socket.send(late.as_bytes()).await;
    let (status, published) = socket.next().await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&published));
    let id: serde_json::Value = serde_json::from_slice(&published).expect("JSON");
    assert!(id["id"].is_string(), "{id}");
}
