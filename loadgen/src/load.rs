//! The request loop behind `issue` and `soak`: N workers, each with its own
//! keep-alive connection, sending one request after another until a deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hyper::header::{HeaderName, HeaderValue};

use crate::auth::{Credentials, Permissions};
use crate::http::{Client, Failure, RequestTemplate};
use crate::report::{Errors, Latency};

/// Longest a single request may take before it counts as a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed connect, so a dead server is not hammered in a tight loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// The `Idempotency-Key` each request carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Keys {
    /// None.
    #[default]
    None,
    /// A new key on every request: each one publishes (the cost of a claim).
    Fresh,
    /// One key for the whole run: every request after the first is a replay.
    Repeat,
}

impl Keys {
    /// The name the JSON line gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Fresh => "fresh",
            Self::Repeat => "repeat",
        }
    }
}

/// What to send, how often, over how many connections.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The request.
    pub template: RequestTemplate,
    /// Bearer headers, used round robin (each worker from its own offset); none when empty.
    pub bearers: Arc<[HeaderValue]>,
    /// Worker tasks, one connection each.
    pub connections: usize,
    /// How long to send.
    pub duration: Duration,
    /// The `Idempotency-Key` of each request.
    pub keys: Keys,
}

/// What a run counted.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Responses received, whatever their status.
    pub requests: u64,
    /// Responses with a 2xx status.
    pub ok: u64,
    /// Latency of every response.
    pub latency: Latency,
    /// Non-2xx statuses and transport failures.
    pub errors: Errors,
    /// Connections made beyond one per worker.
    pub reconnects: u64,
    /// From the first request to the end of the last one.
    pub elapsed: Duration,
}

/// Mints one bearer per subject `<prefix>-<i>` with `permissions` (or the
/// fixed token once).
pub fn bearers(
    credentials: &Credentials,
    prefix: &str,
    subjects: usize,
    permissions: &Permissions,
) -> anyhow::Result<Arc<[HeaderValue]>> {
    if credentials.is_fixed() {
        return Ok(Arc::from(vec![credentials.bearer(prefix, permissions)?]));
    }
    (0..subjects)
        .map(|i| {
            credentials
                .bearer(&format!("{prefix}-{i}"), permissions)
                .with_context(|| format!("minting the token of subject {i}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .map(Arc::from)
}

/// Runs `plan` to its end.
pub async fn run(plan: Plan) -> Outcome {
    let start = Instant::now();
    let deadline = start + plan.duration;
    let plan = Arc::new(plan);
    // Keys of this run only: a server remembers them for a day.
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let run: Arc<str> = format!("{}-{}", std::process::id(), since_epoch.as_nanos()).into();
    let workers: Vec<_> = (0..plan.connections)
        .map(|worker| {
            let run = Arc::clone(&run);
            tokio::spawn(work(Arc::clone(&plan), worker, deadline, run))
        })
        .collect();
    let mut total = Outcome::default();
    for worker in workers {
        match worker.await {
            Ok(outcome) => {
                total.requests += outcome.requests;
                total.ok += outcome.ok;
                total.latency.merge(&outcome.latency);
                total.errors.merge(&outcome.errors);
                total.reconnects += outcome.reconnects;
            }
            Err(e) => total.errors.add_key(format!("worker: {e}"), 1),
        }
    }
    total.elapsed = start.elapsed();
    total
}

async fn work(plan: Arc<Plan>, worker: usize, deadline: Instant, run: Arc<str>) -> Outcome {
    let mut outcome = Outcome::default();
    let mut client = Client::new(plan.addr);
    let bearers = &plan.bearers;
    // Each worker walks the subjects from its own offset, so they spread evenly.
    let mut next = worker * bearers.len() / plan.connections.max(1);
    let mut sent_here = 0_u64;
    while Instant::now() < deadline {
        let bearer = if bearers.is_empty() {
            None
        } else {
            next = (next + 1) % bearers.len();
            Some(&bearers[next])
        };
        let mut request = plan.template.build(bearer);
        let key = match plan.keys {
            Keys::None => None,
            Keys::Fresh => Some(format!("load-{run}-{worker}-{sent_here}")),
            Keys::Repeat => Some(format!("load-{run}")),
        };
        if let Some(key) = key.and_then(|k| HeaderValue::from_str(&k).ok()) {
            static NAME: HeaderName = HeaderName::from_static("idempotency-key");
            request.headers_mut().insert(NAME.clone(), key);
        }
        sent_here += 1;
        let sent = Instant::now();
        match tokio::time::timeout(REQUEST_TIMEOUT, client.fetch(request)).await {
            Ok(Ok((status, _body))) => {
                outcome.requests += 1;
                outcome.latency.record(sent.elapsed());
                if status.is_success() {
                    outcome.ok += 1;
                } else {
                    outcome.errors.add(&Failure::Status(status));
                }
            }
            Ok(Err(failure)) => {
                outcome.errors.add(&failure);
                if matches!(failure, Failure::Connect(_)) {
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
            }
            Err(_) => {
                outcome.errors.add(&Failure::Timeout);
                client.reset();
            }
        }
    }
    outcome.reconnects = client.connects.saturating_sub(1);
    outcome
}
