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
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a command may wait for its answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// First and longest wait between probes of an unreachable Redis.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

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
    client: redis::Client,
    connection: ConnectionManager,
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
    /// starts with `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Arc<Self>, RedisLinkError> {
        let shown = crate::db::redact_url(url);
        let client =
            redis::Client::open(url).map_err(|e| RedisLinkError::Url(format!("{shown}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            // One attempt per reconnect: requests must not queue behind a
            // retry loop; `probe` does the backing off.
            .set_number_of_retries(0);
        let unreachable = |cause: String| RedisLinkError::Connect {
            url: shown.clone(),
            cause,
        };
        let connection = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let link = Self {
            client,
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

    /// The client, for connections of their own (pub/sub).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Whether the last command got through.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Runs `op` on the shared connection, unless Redis is known to be down.
    /// A failure to reach Redis marks it down and wakes the prober.
    pub async fn run<T, F>(
        &self,
        op: impl FnOnce(ConnectionManager) -> F,
    ) -> Result<T, RedisFailure>
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
