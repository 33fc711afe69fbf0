//! `sse-ticket`: single-use, short-lived tickets that let a browser's
//! `EventSource` open an authenticated Server-Sent Events stream without a
//! long-lived token in the URL, and the small real-time hub around them.
//!
//! [`build`] builds the whole service from a [`Config`], and [`Server::run`]
//! serves it until stopped; the binary and the tests both start it that way.

pub mod audit;
pub mod auth;
pub mod backoff;
pub mod broker;
pub mod cli;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod db;
pub mod dev;
pub mod fleet;
pub mod http;
pub mod hub;
pub mod idempotency;
pub mod metrics;
pub mod namespace;
pub mod outbox;
pub mod redis_link;
pub mod revocation;
mod server;
pub mod subscriber;
pub mod telemetry;
pub mod ticket;
pub mod tls;

use std::sync::Arc;

pub use config::Config;
pub use hub::REVOCATION_RELOAD;
pub use server::{STREAM_RETRY, Server, StartError, Stopper};

use clock::{SharedClock, SystemClock};

/// Builds the service on the wall clock; await [`Server::run`] to serve.
pub async fn build(config: Config) -> Result<Server, StartError> {
    build_with_clock(config, Arc::new(SystemClock)).await
}

/// Builds the service with an injected clock (tests move time instead of sleeping).
pub async fn build_with_clock(config: Config, clock: SharedClock) -> Result<Server, StartError> {
    Server::build(config, clock).await
}
