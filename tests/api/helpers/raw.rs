//! HTTP/1.1 spoken by hand over a plain TCP connection, for requests no
//! client library would send (a head that never ends, `Expect: 100-continue`
//! answered before the body) and answers read byte by byte.

use serde_json::Value;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

use super::{PATIENCE, TestApp};

/// One HTTP/1.1 response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The value of header `name` (any case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts a JSON error `code` with status `status`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert!(
            self.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "a JSON error: {self:?}"
        );
        let body: Value = serde_json::from_slice(&self.body).expect("a JSON body");
        assert_eq!(body["error"], code, "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
}

/// A plain TCP connection to `app`.
pub async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Reads one response (head, then a `Content-Length` body) off `stream`.
pub async fn read_response(stream: &mut TcpStream) -> RawResponse {
    tokio::time::timeout(PATIENCE, async {
        let mut buffer = Vec::new();
        let head_end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the connection closed without an answer");
            buffer.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buffer[..head_end].to_vec()).expect("a text head");
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .expect("a status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().expect("a length"));
        let mut body = buffer[head_end + 4..].to_vec();
        while body.len() < length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the connection closed inside the body");
            body.extend_from_slice(&chunk[..n]);
        }
        RawResponse {
            status,
            headers,
            body,
        }
    })
    .await
    .expect("an answer in time")
}

/// Asserts the server closes `stream` (after anything it still had to send).
pub async fn assert_closed(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection")
        .ok();
}

/// Reads from `socket` until what was read contains `marker`; returns it all.
pub async fn read_until(socket: &mut TcpStream, marker: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        while !String::from_utf8_lossy(&seen).contains(marker) {
            let n = socket.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "closed before {marker:?}: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{marker:?} in time"));
    String::from_utf8_lossy(&seen).into_owned()
}

/// The `host:port` of `app` (plain HTTP).
pub fn address(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}
