//! Redis: the one the suite may run against, a namespace of a test's own on
//! it, and `redis-server` processes a test starts and stops itself.

use std::time::Duration;

use sse_ticket::config::RedisSettings;

use super::PATIENCE;

/// The Redis the suite runs against, if any.
pub fn test_redis_url() -> Option<String> {
    std::env::var("SSE_TICKET_TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// The Redis Cluster seed nodes the suite runs against, if any
/// (`SSE_TICKET_TEST_REDIS_CLUSTER_URLS`, comma-separated; `.ci/run` starts one).
pub fn test_redis_cluster_urls() -> Option<String> {
    std::env::var("SSE_TICKET_TEST_REDIS_CLUSTER_URLS")
        .ok()
        .filter(|urls| !urls.is_empty())
}

/// The Redis backends of [`super::test_config`]: the cluster of
/// `SSE_TICKET_TEST_REDIS_CLUSTER_URLS` if set, else the Redis of
/// `SSE_TICKET_TEST_REDIS_URL` if set, each under a fresh prefix.
pub fn test_redis_settings() -> Option<RedisSettings> {
    if let Some(urls) = test_redis_cluster_urls() {
        let mut settings = redis_settings(&urls);
        settings.cluster = true;
        return Some(settings);
    }
    test_redis_url().map(|url| redis_settings(&url))
}

/// Redis at `url` under a fresh prefix: instances given the same settings
/// share tickets and fan-out, and no other test sees them.
pub fn redis_settings(url: &str) -> RedisSettings {
    RedisSettings {
        url: url.into(),
        prefix: format!("test-{}:", uuid::Uuid::new_v4().simple()),
        cluster: false,
    }
}

/// A `redis-server` of the test's own, on a free port, to stop and start.
pub struct OwnRedis {
    port: u16,
    /// With TLS: the directory holding `leaf.pem` and `leaf.key`.
    tls: Option<std::path::PathBuf>,
    process: Option<tokio::process::Child>,
}

impl OwnRedis {
    /// A plain-TCP server.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A TLS-only server presenting `dir/leaf.pem` (see
    /// [`tls_certificates`](super::tls_certificates)).
    pub async fn start_tls(dir: &std::path::Path) -> Self {
        Self::start_with(Some(dir.to_owned())).await
    }

    async fn start_with(tls: Option<std::path::PathBuf>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = Self {
            port,
            tls,
            process: None,
        };
        redis.restart().await;
        redis
    }

    /// Its URL: `redis://127.0.0.1:<port>`, or `rediss://localhost:<port>` with TLS.
    pub fn url(&self) -> String {
        match self.tls {
            None => format!("redis://127.0.0.1:{}", self.port),
            Some(_) => format!("rediss://localhost:{}", self.port),
        }
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub async fn restart(&mut self) {
        let port = self.port.to_string();
        let mut command = tokio::process::Command::new("redis-server");
        command.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        match &self.tls {
            None => command.args(["--port", &port]),
            Some(dir) => command
                .args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port,
                    "--tls-auth-clients",
                    "no",
                ])
                .arg("--tls-cert-file")
                .arg(dir.join("leaf.pem"))
                .arg("--tls-key-file")
                .arg(dir.join("leaf.key")),
        };
        let process = command
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server runs (Debian package redis-server)");
        self.process = Some(process);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server listens"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A plain connection of the test's own.
    pub async fn connect(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("URL")
            .get_multiplexed_async_connection()
            .await
            .expect("redis-server answers")
    }

    /// Kills the server.
    pub async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().await.expect("stop redis-server");
        }
    }
}

/// The shard channels `node` knows of whose names match `pattern`, sorted.
pub async fn shard_channels(
    node: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
) -> Vec<String> {
    let mut channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("SHARDCHANNELS")
        .arg(pattern)
        .query_async(node)
        .await
        .expect("PUBSUB SHARDCHANNELS");
    channels.sort();
    channels
}

/// One of a node's pub/sub connections, as `CLIENT LIST TYPE pubsub` shows it.
#[derive(Debug)]
pub struct PubSubClient {
    pub id: String,
    /// Its shard channels.
    pub ssub: u64,
}

/// The pub/sub connections of `node`, in its order.
pub async fn pubsub_clients(node: &mut redis::aio::MultiplexedConnection) -> Vec<PubSubClient> {
    let list: String = redis::cmd("CLIENT")
        .arg(&["LIST", "TYPE", "pubsub"][..])
        .query_async(node)
        .await
        .expect("CLIENT LIST");
    let field = |line: &str, name: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .map(str::to_owned)
    };
    list.lines()
        .filter_map(|line| {
            Some(PubSubClient {
                id: field(line, "id=")?,
                ssub: field(line, "ssub=")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
            })
        })
        .collect()
}

/// Closes the connection `id` of `node` (`CLIENT KILL ID`).
pub async fn kill_client(node: &mut redis::aio::MultiplexedConnection, id: &str) {
    let _: () = redis::cmd("CLIENT")
        .arg(&["KILL", "ID", id][..])
        .query_async(node)
        .await
        .expect("CLIENT KILL");
}
