//! HTTP/1.1 plumbing on hyper: one connection per task (optionally from a
//! chosen loopback source address), request templates, failures by kind,
//! and an SSE reader over a response body.

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;

use crate::sse;
use crate::target::Endpoint;

/// The request body type of every request sent.
pub type ReqBody = Full<Bytes>;

/// Why a request or a stream failed; [`Failure::key`] groups them in reports.
#[derive(Debug)]
pub enum Failure {
    /// The TCP connection could not be made.
    Connect(std::io::Error),
    /// HTTP-level failure (connection closed, malformed response).
    Http(hyper::Error),
    /// The server answered with a status that is not the expected one.
    Status(StatusCode),
    /// The answer did not come in time.
    Timeout,
    /// The response body was not what was expected.
    Body(String),
    /// A stream ended (or sent `close`) before it was ready.
    Closed(&'static str),
}

impl Failure {
    /// The label this failure is counted under: the status code, or the kind.
    pub fn key(&self) -> String {
        match self {
            Self::Connect(e) => format!("connect: {e}"),
            Self::Http(e) => format!("http: {e}"),
            Self::Status(status) => status.as_u16().to_string(),
            Self::Timeout => "timeout".into(),
            Self::Body(_) => "bad body".into(),
            Self::Closed(why) => (*why).into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Body(why) => write!(f, "bad body: {why}"),
            other => f.write_str(&other.key()),
        }
    }
}

impl std::error::Error for Failure {}

/// Aborts a spawned task when dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One HTTP/1.1 connection; its driver task lives as long as it does.
#[derive(Debug)]
pub struct Conn {
    sender: SendRequest<ReqBody>,
    _driver: AbortOnDrop,
}

impl Conn {
    /// Connects to `addr`, from `source` (port chosen by the kernel) when given.
    pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> Result<Self, Failure> {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(Failure::Connect)?;
        if let Some(ip) = source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(Failure::Connect)?;
        }
        let stream = socket.connect(addr).await.map_err(Failure::Connect)?;
        stream.set_nodelay(true).map_err(Failure::Connect)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(Failure::Http)?;
        let driver = tokio::spawn(async move {
            // Its errors surface on the request or the body.
            let _ = connection.await;
        });
        Ok(Self {
            sender,
            _driver: AbortOnDrop(driver),
        })
    }

    /// Sends `request` once the connection is free; returns the response head.
    pub async fn send(&mut self, request: Request<ReqBody>) -> Result<Response<Incoming>, Failure> {
        self.sender.ready().await.map_err(Failure::Http)?;
        self.sender
            .send_request(request)
            .await
            .map_err(Failure::Http)
    }

    /// Sends `request` and reads the whole body.
    pub async fn fetch(
        &mut self,
        request: Request<ReqBody>,
    ) -> Result<(StatusCode, Bytes), Failure> {
        let response = self.send(request).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(Failure::Http)?
            .to_bytes();
        Ok((status, body))
    }

    /// Opens an event stream at `path` on this connection and checks for `200`.
    pub async fn open_sse(mut self, host: &HeaderValue, path: &str) -> Result<SseReader, Failure> {
        let template = RequestTemplate::new(Method::GET, host.clone(), path, Bytes::new())
            .map_err(|e| Failure::Body(e.to_string()))?;
        let mut request = template.build(None);
        request.headers_mut().insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        let response = self.send(request).await?;
        if response.status() != StatusCode::OK {
            return Err(Failure::Status(response.status()));
        }
        Ok(SseReader {
            body: response.into_body(),
            parser: sse::Parser::new(),
            frames: VecDeque::new(),
            _conn: self,
        })
    }
}

/// A keep-alive client on one connection that reconnects after a failure.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    conn: Option<Conn>,
    /// How many connections it has made.
    pub connects: u64,
}

impl Client {
    /// A client for `addr`; it connects on first use.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            conn: None,
            connects: 0,
        }
    }

    /// Sends `request` and reads the whole answer; a transport failure drops
    /// the connection, so the next call connects again.
    pub async fn fetch(
        &mut self,
        request: Request<ReqBody>,
    ) -> Result<(StatusCode, Bytes), Failure> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            none => {
                self.connects += 1;
                none.insert(Conn::connect(self.addr, None).await?)
            }
        };
        let result = conn.fetch(request).await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// Drops the connection (after a timeout its state is unknown).
    pub fn reset(&mut self) {
        self.conn = None;
    }
}

/// The parts of a request that stay the same from one request to the next.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    method: Method,
    uri: Uri,
    host: HeaderValue,
    body: Bytes,
}

impl RequestTemplate {
    /// A template for `method path` with `Host: host` and `body` (JSON when not empty).
    pub fn new(method: Method, host: HeaderValue, path: &str, body: Bytes) -> anyhow::Result<Self> {
        let uri = path
            .parse::<Uri>()
            .map_err(|e| anyhow::anyhow!("{path:?} is not a request path: {e}"))?;
        Ok(Self {
            method,
            uri,
            host,
            body,
        })
    }

    /// The template for `path` under `endpoint`.
    pub fn at(
        endpoint: &Endpoint,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<Self> {
        Self::new(method, endpoint.host.clone(), &endpoint.join(path), body)
    }

    /// A request from the template, with `bearer` as `Authorization` when given.
    pub fn build(&self, bearer: Option<&HeaderValue>) -> Request<ReqBody> {
        self.build_with_body(bearer, self.body.clone())
    }

    /// A request from the template with another body.
    pub fn build_with_body(&self, bearer: Option<&HeaderValue>, body: Bytes) -> Request<ReqBody> {
        let has_body = !body.is_empty();
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(header::HOST, self.host.clone());
        if let Some(bearer) = bearer {
            headers.insert(header::AUTHORIZATION, bearer.clone());
        }
        if has_body {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        request
    }
}

/// An open event stream: frames as they arrive.
#[derive(Debug)]
pub struct SseReader {
    body: Incoming,
    parser: sse::Parser,
    frames: VecDeque<sse::Frame>,
    _conn: Conn,
}

impl SseReader {
    /// The next frame; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<sse::Frame>, Failure> {
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return Ok(Some(frame));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(Failure::Http(e)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.parser.feed(&data, &mut self.frames);
                    }
                }
            }
        }
    }

    /// Reads until the server's `event: ready`.
    pub async fn until_ready(&mut self) -> Result<(), Failure> {
        loop {
            match self.next().await? {
                Some(frame) if frame.event == "ready" => return Ok(()),
                Some(frame) if frame.event == "close" => {
                    return Err(Failure::Closed("closed before ready"));
                }
                Some(_) => {}
                None => return Err(Failure::Closed("ended before ready")),
            }
        }
    }
}
