//! A TCP relay to a real server that a test can cut and restore, to see an
//! outage of a database without stopping it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::task::JoinHandle;

/// Relays 127.0.0.1:`port` to an upstream address while open.
pub struct Relay {
    pub port: u16,
    open: Arc<AtomicBool>,
    tasks: Arc<parking_lot::Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    /// Relays to `upstream` (`host:port`), open.
    pub async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let open = Arc::new(AtomicBool::new(true));
        let tasks = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let (accepting, relayed) = (open.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    // Cut: the connection is closed at once.
                    continue;
                }
                let upstream = upstream.clone();
                relayed.lock().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Self {
            port,
            open,
            tasks,
            accept,
        }
    }

    /// A relay to the Postgres of `url`, and `url` through it.
    pub async fn to_postgres(url: &str) -> (Self, String) {
        let direct: reqwest::Url = url.parse().expect("a database URL");
        let upstream = format!(
            "{}:{}",
            direct.host_str().expect("host"),
            direct.port().unwrap_or(5432)
        );
        let relay = Self::start(upstream).await;
        let mut relayed = direct;
        relayed.set_port(Some(relay.port)).expect("port");
        (relay, relayed.to_string())
    }

    /// Closes every relayed connection, and each new one as it comes.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }

    /// Relays new connections again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
