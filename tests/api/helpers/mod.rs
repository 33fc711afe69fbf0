//! One way to start the server and talk to it, shared by every test: the
//! server in-process ([`app`]), its SSE streams ([`sse`]), the binary as a
//! process ([`process`]), raw HTTP/1.1 over TCP ([`raw`]), Redis ([`redis`]),
//! certificates and HTTP/2 over TLS ([`tls`]), a local auth webhook
//! ([`webhook`]), a TCP relay that cuts a database off ([`relay`]), and an
//! app's outbox ([`outbox`]).

use std::time::Duration;

use serde_json::Value;

mod app;
mod cluster;
mod outbox;
mod process;
mod raw;
mod redis;
mod relay;
mod sse;
mod tls;
mod webhook;

pub use self::app::*;
pub use self::cluster::*;
pub use self::outbox::*;
pub use self::process::*;
pub use self::raw::*;
pub use self::redis::*;
pub use self::relay::*;
pub use self::sse::*;
pub use self::tls::*;
pub use self::webhook::*;

/// Longest any test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The HMAC secret of test servers.
pub const SECRET: &str = "test-secret-that-is-long-enough-for-hs256!";

/// Asserts an error response's status, JSON code, and returns its JSON.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status, "status for {code}");
    let content_type = header(&response, "content-type").to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "JSON error, got {content_type}"
    );
    let json: Value = response.json().await.expect("JSON error body");
    assert_eq!(json["error"], code, "{json}");
    assert!(
        json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a human message: {json}"
    );
    json
}

/// Asserts a bearer failure: 401, the code, and the `WWW-Authenticate` challenge.
pub async fn assert_bearer_error(response: reqwest::Response, code: &str) -> Value {
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(ToOwned::to_owned);
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer error="invalid_token""#),
        "challenge for {code}"
    );
    assert_error(response, 401, code).await
}

/// A response header as text ("" when absent).
pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}
