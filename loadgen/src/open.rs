//! Opening many event streams at once: a ticket from `POST /sse-token`, then
//! `GET /stream` until `event: ready` (or a plain `GET` on any EventSource
//! URL), each stream on its own connection from one of several loopback
//! source addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use hyper::header::HeaderValue;
use serde::Deserialize;

use crate::auth::{Credentials, Permissions};
use crate::http::{Client, Conn, Failure, RequestTemplate, SseReader};
use crate::report::{Errors, Latency};
use crate::target::Endpoint;

/// Streams per source address: below the 28,232 ports of Linux's default
/// ephemeral range (32768–60999), which is per source address.
const STREAMS_PER_SOURCE: usize = 20_000;

/// sse-ticket streams: a ticket per stream, for subject `<prefix>-<i>`.
#[derive(Debug, Clone)]
pub struct Tickets {
    /// The server.
    pub base: Endpoint,
    /// How bearer tokens are made.
    pub credentials: Credentials,
    /// Subjects are `<prefix>-<i>`.
    pub prefix: String,
    /// What each subject's token allows.
    pub permissions: Permissions,
    /// The `POST /sse-token` request.
    pub ticket: RequestTemplate,
}

/// Where streams come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// sse-ticket: ticket, then `/stream` until `ready`.
    Tickets(Box<Tickets>),
    /// Any EventSource server: `GET` this URL, no ticket; open once the head is `200`.
    Raw(Endpoint),
}

impl Source {
    /// Streams of sse-ticket for subjects `<prefix>-<i>`, each with a token
    /// allowing `permissions` and a ticket asked for with `body` (empty: the
    /// subject's own topic).
    pub fn tickets(
        base: &Endpoint,
        credentials: &Credentials,
        prefix: String,
        permissions: Permissions,
        body: Bytes,
    ) -> anyhow::Result<Self> {
        Ok(Self::Tickets(Box::new(Tickets {
            ticket: RequestTemplate::at(base, Method::POST, "/sse-token", body)?,
            base: base.clone(),
            credentials: credentials.clone(),
            prefix,
            permissions,
        })))
    }

    /// The address streams connect to.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Self::Tickets(tickets) => tickets.base.addr,
            Self::Raw(url) => url.addr,
        }
    }
}

/// How many streams to open, how.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where streams come from.
    pub source: Source,
    /// How many streams.
    pub count: usize,
    /// How many are being opened at the same time.
    pub concurrency: usize,
    /// Local addresses to connect from, round robin; none: the kernel's choice.
    pub source_addrs: Vec<IpAddr>,
    /// Longest one stream may take to open.
    pub timeout: Duration,
}

/// What opening produced.
#[derive(Debug, Default)]
pub struct Opened {
    /// The open streams, ready.
    pub streams: Vec<SseReader>,
    /// Time from ticket request to `ready`, per stream.
    pub latency: Latency,
    /// Why the others failed.
    pub errors: Errors,
    /// From the first ticket to the last stream open.
    pub elapsed: Duration,
}

/// Loopback source addresses 127.0.0.2, 127.0.0.3, … for connections to
/// `server`: `requested` of them, or enough for `count` streams (at least
/// 4). None when the server is not on IPv4.
pub fn source_addrs(server: SocketAddr, count: usize, requested: Option<u8>) -> Vec<IpAddr> {
    if !server.is_ipv4() {
        return Vec::new();
    }
    let wanted = requested.map_or_else(|| count.div_ceil(STREAMS_PER_SOURCE).max(4), usize::from);
    (0..wanted.min(253))
        .filter_map(|k| u8::try_from(k + 2).ok())
        .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .collect()
}

#[derive(Deserialize)]
struct TicketResponse {
    stream_url: String,
}

/// Opens `plan.count` streams with `plan.concurrency` tasks.
pub async fn open_all(plan: Plan) -> Opened {
    let start = Instant::now();
    let plan = Arc::new(plan);
    let next = Arc::new(AtomicUsize::new(0));
    let openers: Vec<_> = (0..plan.concurrency.clamp(1, plan.count.max(1)))
        .map(|_| tokio::spawn(opener(Arc::clone(&plan), Arc::clone(&next))))
        .collect();
    let mut total = Opened::default();
    for opener in openers {
        match opener.await {
            Ok(opened) => {
                total.streams.extend(opened.streams);
                total.latency.merge(&opened.latency);
                total.errors.merge(&opened.errors);
            }
            Err(e) => total.errors.add_key(format!("opener: {e}"), 1),
        }
    }
    total.elapsed = start.elapsed();
    total
}

async fn opener(plan: Arc<Plan>, next: Arc<AtomicUsize>) -> Opened {
    let mut opened = Opened::default();
    let mut tickets = match &plan.source {
        Source::Tickets(tickets) => Some(Client::new(tickets.base.addr)),
        Source::Raw(_) => None,
    };
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= plan.count {
            break;
        }
        let bearer = match &plan.source {
            Source::Tickets(tickets) => match tickets
                .credentials
                .bearer(&format!("{}-{i}", tickets.prefix), &tickets.permissions)
            {
                Ok(bearer) => Some(bearer),
                Err(e) => {
                    opened.errors.add_key(format!("mint: {e}"), 1);
                    continue;
                }
            },
            Source::Raw(_) => None,
        };
        let source = match plan.source_addrs.len() {
            0 => None,
            n => Some(plan.source_addrs[i % n]),
        };
        let started = Instant::now();
        let attempt = open_one(&plan.source, tickets.as_mut(), bearer.as_ref(), source);
        match tokio::time::timeout(plan.timeout, attempt).await {
            Ok(Ok(stream)) => {
                opened.latency.record(started.elapsed());
                opened.streams.push(stream);
            }
            Ok(Err(failure)) => opened.errors.add(&failure),
            Err(_) => {
                opened.errors.add(&Failure::Timeout);
                if let Some(client) = tickets.as_mut() {
                    client.reset();
                }
            }
        }
    }
    opened
}

async fn open_one(
    source: &Source,
    tickets: Option<&mut Client>,
    bearer: Option<&HeaderValue>,
    from: Option<IpAddr>,
) -> Result<SseReader, Failure> {
    match (source, tickets) {
        (Source::Tickets(tickets), Some(client)) => {
            let base = &tickets.base;
            let (status, answer) = client.fetch(tickets.ticket.build(bearer)).await?;
            if !status.is_success() {
                return Err(Failure::Status(status));
            }
            let ticket: TicketResponse = serde_json::from_slice(&answer)
                .map_err(|e| Failure::Body(format!("ticket answer: {e}")))?;
            let conn = Conn::connect(base.addr, from).await?;
            let mut stream = conn
                .open_sse(&base.host, &base.join(&ticket.stream_url))
                .await?;
            stream.until_ready().await?;
            Ok(stream)
        }
        (Source::Raw(url), _) => {
            let conn = Conn::connect(url.addr, from).await?;
            conn.open_sse(&url.host, &url.path).await
        }
        (Source::Tickets(_), None) => Err(Failure::Closed("no ticket client")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_source_addresses() {
        let v4: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let addrs = source_addrs(v4, 20, None);
        assert_eq!(addrs.len(), 4);
        assert_eq!(addrs[0], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_addrs(v4, 100_000, None).len(), 5);
        assert_eq!(source_addrs(v4, 1, Some(255)).len(), 253);
        assert!(source_addrs("[::1]:80".parse().expect("addr"), 10, None).is_empty());
    }
}
