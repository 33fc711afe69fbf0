//! A Redis Cluster of the test's own: 3 masters and 3 replicas from
//! `redis-server` binaries on free ports in a temporary directory, made one
//! cluster by `redis-cli --cluster create`, killed (and its directory
//! removed) when dropped.

use std::path::PathBuf;
use std::time::Duration;

use sse_ticket::config::RedisSettings;

/// Longest the cluster may take to form or to fail over.
const FORMING: Duration = Duration::from_secs(30);

/// A running Redis Cluster.
pub struct RedisCluster {
    dir: PathBuf,
    ports: Vec<u16>,
    processes: Vec<Option<tokio::process::Child>>,
}

impl RedisCluster {
    /// Starts six nodes, makes them a cluster with one replica per master,
    /// and waits until every node reports `cluster_state:ok`.
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("sse-ticket-cluster-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        // Six ports that are free now, each with its cluster bus port
        // (the port + 10000) free too; held together so they differ.
        let mut listeners = Vec::new();
        while listeners.len() < 6 {
            let port = 20_000 + (uuid::Uuid::new_v4().as_u128() % 25_000) as u16;
            if let (Ok(client), Ok(bus)) = (
                std::net::TcpListener::bind(("127.0.0.1", port)),
                std::net::TcpListener::bind(("127.0.0.1", port + 10_000)),
            ) {
                listeners.push((port, client, bus));
            }
        }
        let ports: Vec<u16> = listeners.iter().map(|(port, ..)| *port).collect();
        drop(listeners);
        let mut cluster = Self {
            dir,
            ports: ports.clone(),
            processes: Vec::new(),
        };
        for port in &ports {
            let node_dir = cluster.dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("a node directory");
            let port = port.to_string();
            let process = tokio::process::Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .args(["--cluster-node-timeout", "2000"])
                // A replica takes over even if it lost its master long ago,
                // and syncs at once rather than after 5 s.
                .args(["--cluster-replica-validity-factor", "0"])
                .args(["--repl-diskless-sync-delay", "0"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("redis-server runs (Debian package redis-server)");
            cluster.processes.push(Some(process));
        }
        for port in &ports {
            wait_listening(*port).await;
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = tokio::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create");
        cluster.wait_ok().await;
        cluster
    }

    /// The seed list `SSE_TICKET_REDIS_URL` takes with `SSE_TICKET_REDIS_CLUSTER=true`.
    pub fn urls(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Cluster settings under a fresh prefix, as [`super::redis_settings`].
    pub fn settings(&self) -> RedisSettings {
        let mut settings = super::redis_settings(&self.urls());
        settings.cluster = true;
        settings
    }

    /// A plain connection to the node on `port`.
    pub async fn node(&self, port: u16) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .expect("URL")
            .get_multiplexed_async_connection()
            .await
            .expect("the node answers")
    }

    /// The ports of the nodes that are masters now (and alive).
    pub async fn masters(&self) -> Vec<u16> {
        let mut masters = Vec::new();
        for (i, port) in self.ports.iter().enumerate() {
            if self.processes[i].is_none() {
                continue;
            }
            let mut node = self.node(*port).await;
            let role: Vec<redis::Value> = redis::cmd("ROLE")
                .query_async(&mut node)
                .await
                .expect("ROLE");
            if matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") {
                masters.push(*port);
            }
        }
        masters
    }

    /// Whether the master on `port` serves the slot of `key`.
    pub async fn serves(&self, port: u16, key: &str) -> bool {
        let mut node = self.node(port).await;
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut node)
            .await
            .expect("CLUSTER KEYSLOT");
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut node)
            .await
            .expect("CLUSTER NODES");
        let myself = nodes
            .lines()
            .find(|line| line.contains("myself"))
            .expect("the node itself");
        myself.split_whitespace().skip(8).any(|range| {
            let (low, high) = range.split_once('-').unwrap_or((range, range));
            matches!((low.parse::<i64>(), high.parse::<i64>()), (Ok(l), Ok(h)) if (l..=h).contains(&slot))
        })
    }

    /// Kills the node on `port`.
    pub async fn kill(&mut self, port: u16) {
        let i = self.ports.iter().position(|p| *p == port).expect("a node");
        if let Some(mut process) = self.processes[i].take() {
            process.kill().await.expect("kill redis-server");
        }
    }

    /// Waits, at most `within`, until a replica has taken over from every
    /// killed master (three live masters) and the cluster reports ok.
    pub async fn wait_failover(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.masters().await.len() < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a replica takes over"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.wait_ok().await;
    }

    /// Waits until every live node reports `cluster_state:ok` and every
    /// replica is in sync with its master.
    pub async fn wait_ok(&self) {
        let deadline = tokio::time::Instant::now() + FORMING;
        'retry: loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the cluster reports cluster_state:ok"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            for (i, port) in self.ports.iter().enumerate() {
                if self.processes[i].is_none() {
                    continue;
                }
                let mut node = self.node(*port).await;
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut node)
                    .await
                    .unwrap_or_default();
                if !info.contains("cluster_state:ok") {
                    continue 'retry;
                }
                let replication: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut node)
                    .await
                    .unwrap_or_default();
                if replication.contains("role:slave")
                    && !replication.contains("master_link_status:up")
                {
                    continue 'retry;
                }
            }
            return;
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for process in self.processes.iter_mut().flatten() {
            let _ = process.start_kill();
        }
        // Briefly, so the directory is not written to as it is removed.
        for process in self.processes.iter_mut().flatten() {
            for _ in 0..100 {
                if !matches!(process.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn wait_listening(port: u16) {
    let deadline = tokio::time::Instant::now() + super::PATIENCE;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis-server listens on {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
