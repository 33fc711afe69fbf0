//! One instance's link to Redis: the command connection the ticket store and
//! the broker share, the key namespace, and whether Redis is answering.
//!
//! While Redis is unreachable, requests fail at once with `unavailable`
//! instead of waiting on a dead socket; one background task probes with
//! backoff and lets traffic through again as soon as Redis answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a command may wait for its answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// First and longest wait between probes of an unreachable Redis.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

mod connection;

pub use connection::RedisConnection;

/// The backoff of every loop that waits for Redis to come back.
pub(crate) fn backoff() -> crate::backoff::Backoff {
    crate::backoff::Backoff::new(BACKOFF_MIN, BACKOFF_MAX)
}

/// Why Redis could not be used at start-up.
#[derive(Debug, thiserror::Error)]
pub enum RedisLinkError {
    /// The URL is not a Redis URL.
    #[error("SSE_TICKET_REDIS_URL is not a redis:// or rediss:// URL ({0})")]
    Url(String),
    /// Redis did not answer.
    #[error("cannot reach Redis at {url}: {cause}")]
    Connect {
        /// The URL, without its password.
        url: String,
        /// Why.
        cause: String,
    },
}

/// Why a command did not get its answer.
#[derive(Debug, thiserror::Error)]
pub enum RedisFailure {
    /// Redis is known to be unreachable; the command was not sent.
    #[error("Redis is unreachable; retrying in the background")]
    Down,
    /// Redis refused the command, or could not be reached for it.
    #[error("Redis: {0}")]
    Command(#[from] redis::RedisError),
}

impl RedisFailure {
    /// Whether Redis did not know a script (it forgets them when it restarts).
    pub fn is_unknown_script(&self) -> bool {
        matches!(self, Self::Command(e)
            if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript))
    }
}

/// The shared command connection, its namespace and its health.
pub struct RedisLink {
    /// One client per node to open pub/sub connections on: the one Redis,
    /// or the cluster's seed nodes.
    nodes: Vec<redis::Client>,
    connection: RedisConnection,
    prefix: String,
    healthy: AtomicBool,
    probe: Notify,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("prefix", &self.prefix)
            .field("healthy", &self.is_healthy())
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// Connects to `url` and checks Redis answers; every key and channel
    /// starts with `prefix`. With `cluster`, `url` is a comma-separated list
    /// of a Redis Cluster's seed nodes.
    pub async fn connect(
        url: &str,
        prefix: &str,
        cluster: bool,
    ) -> Result<Arc<Self>, RedisLinkError> {
        let shown = if cluster {
            url.split(',')
                .map(|node| crate::db::redact_url(node.trim()))
                .collect::<Vec<_>>()
                .join(",")
        } else {
            crate::db::redact_url(url)
        };
        let bad_url = |e: redis::RedisError| RedisLinkError::Url(format!("{shown}: {e}"));
        let unreachable = |cause: String| RedisLinkError::Connect {
            url: shown.clone(),
            cause,
        };
        let (nodes, connection) = if cluster {
            let seeds: Vec<&str> = url.split(',').map(str::trim).collect();
            let nodes = seeds
                .iter()
                .map(|seed| redis::Client::open(*seed))
                .collect::<Result<Vec<_>, _>>()
                .map_err(bad_url)?;
            let client = ClusterClientBuilder::new(seeds)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .build()
                .map_err(bad_url)?;
            let connection = client
                .get_async_connection()
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            (nodes, RedisConnection::Cluster(connection))
        } else {
            let client = redis::Client::open(url).map_err(bad_url)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT))
                // One attempt per reconnect: requests must not queue behind a
                // retry loop; `probe` does the backing off.
                .set_number_of_retries(0);
            let connection = ConnectionManager::new_with_config(client.clone(), config)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            (vec![client], RedisConnection::Single(connection))
        };
        let link = Self {
            nodes,
            connection,
            prefix: prefix.to_owned(),
            healthy: AtomicBool::new(true),
            probe: Notify::new(),
        };
        link.ping().await.map_err(|e| unreachable(e.to_string()))?;
        Ok(Arc::new(link))
    }

    /// `prefix` followed by `name`.
    pub fn key(&self, name: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + name.len());
        key.push_str(&self.prefix);
        key.push_str(name);
        key
    }

    /// The clients to open connections of their own (pub/sub) on: the one
    /// Redis, or each seed node of the cluster, to be tried in turn.
    pub fn nodes(&self) -> &[redis::Client] {
        &self.nodes
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.connection, RedisConnection::Cluster(_))
    }

    /// Whether the last command got through.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Runs `op` on the shared connection, unless Redis is known to be down.
    /// A failure to reach Redis marks it down and wakes the prober.
    pub async fn run<T, F>(&self, op: impl FnOnce(RedisConnection) -> F) -> Result<T, RedisFailure>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        if !self.is_healthy() {
            return Err(RedisFailure::Down);
        }
        op(self.connection.clone()).await.map_err(|e| {
            if is_link_failure(&e) {
                self.mark_down();
            }
            RedisFailure::Command(e)
        })
    }

    /// Checks Redis answers a `PING`.
    pub async fn ping(&self) -> Result<(), RedisFailure> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<()>(&mut c).await })
            .await
    }

    /// Marks Redis down and wakes the prober.
    pub fn mark_down(&self) {
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!("Redis is unreachable; answering 503 until it is back");
        }
        self.probe.notify_one();
    }

    /// Probes an unreachable Redis with backoff until it answers, for as long
    /// as the service runs.
    pub async fn run_prober(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.probe.notified() => {}
            }
            let mut backoff = backoff();
            while !self.is_healthy() {
                let mut connection = self.connection.clone();
                let answered = redis::cmd("PING")
                    .query_async::<()>(&mut connection)
                    .await
                    .is_ok();
                if answered {
                    self.healthy.store(true, Ordering::Release);
                    tracing::info!("Redis answers again");
                    break;
                }
                if !backoff.wait(&shutdown).await {
                    return;
                }
            }
        }
    }
}

/// Whether `e` says Redis could not be reached (rather than refusing one command).
pub(crate) fn is_link_failure(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}
