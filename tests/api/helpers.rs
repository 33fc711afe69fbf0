//! One way to start the server and talk to it, shared by every test.

use std::time::Duration;

use chrono::TimeDelta;
use futures_util::StreamExt as _;
use secrecy::SecretString;
use serde_json::Value;
use sse_ticket::auth::{KeySource, MintRequest, Permissions, Subject, TopicPattern, mint};
use sse_ticket::clock::{Clock as _, ManualClock};
use sse_ticket::config::RedisSettings;
use sse_ticket::{Config, Stopper};

/// Longest any test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The HMAC secret of test servers.
pub const SECRET: &str = "test-secret-that-is-long-enough-for-hs256!";

/// A running server and what a test needs to drive it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: ManualClock,
    /// The durable store this server uses (each test has its own).
    pub database_url: String,
    secret: SecretString,
    stopper: Stopper,
}

/// Runs `sql` directly against a test server's database (to break it on purpose).
pub async fn execute_sql(database_url: &str, sql: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(database_url)
        .await
        .expect("the test database");
    sqlx::query(sql)
        .execute(&pool)
        .await
        .expect("the statement runs");
    pool.close().await;
}

/// A fresh, empty database for one test: a SQLite file by default, or a new
/// schema in the Postgres named by `SSE_TICKET_TEST_POSTGRES_URL`.
pub async fn fresh_database_url() -> String {
    match std::env::var("SSE_TICKET_TEST_POSTGRES_URL") {
        Ok(base) if !base.is_empty() => {
            use sqlx::Connection as _;
            let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&base)
                .await
                .expect("the test Postgres answers");
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&mut conn)
                .await
                .expect("create the test schema");
            let separator = if base.contains('?') { '&' } else { '?' };
            format!("{base}{separator}options=-c%20search_path%3D{schema}")
        }
        _ => {
            let dir = std::env::temp_dir().join("sse-ticket-tests");
            std::fs::create_dir_all(&dir).expect("temp dir");
            format!(
                "sqlite://{}",
                dir.join(format!("{}.db", uuid::Uuid::new_v4())).display()
            )
        }
    }
}

/// Starts a server with an HMAC secret, a manual clock and default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The test configuration: HMAC secret, port 0, the given database, and the
/// Redis backends (a namespace of its own) when `SSE_TICKET_TEST_REDIS_URL` is set.
pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::new(KeySource::Secret(SECRET.into()));
    config.bind = "127.0.0.1:0".into();
    config.database_url = database_url.to_owned();
    config.redis = test_redis_url().map(|url| redis_settings(&url));
    config
}

/// The Redis the suite runs against, if any.
pub fn test_redis_url() -> Option<String> {
    std::env::var("SSE_TICKET_TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// Redis at `url` under a fresh prefix: instances given the same settings
/// share tickets and fan-out, and no other test sees them.
pub fn redis_settings(url: &str) -> RedisSettings {
    RedisSettings {
        url: url.into(),
        prefix: format!("test-{}:", uuid::Uuid::new_v4().simple()),
    }
}

/// Starts a server after `tweak` has adjusted the default test configuration.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(&fresh_database_url().await);
    tweak(&mut config);
    spawn_config(config).await
}

/// Starts a server with exactly `config` (its bind address should be port 0).
pub async fn spawn_config(config: Config) -> TestApp {
    spawn_config_with_clock(config, ManualClock::default()).await
}

/// Starts a server with exactly `config` on `clock` (to restart on the same time line).
pub async fn spawn_config_with_clock(mut config: Config, clock: ManualClock) -> TestApp {
    // Never the working directory's database.
    if config.database_url == sse_ticket::config::DEFAULT_DATABASE_URL {
        config.database_url = fresh_database_url().await;
    }
    let secret = match &config.keys {
        KeySource::Secret(secret) => secret.clone(),
        _ => SECRET.into(),
    };
    let database_url = config.database_url.clone();
    let server = sse_ticket::run_with_clock(config, std::sync::Arc::new(clock.clone()))
        .await
        .expect("the server starts");
    let base = format!("{}://{}", server.scheme(), server.local_addr());
    let mut client = reqwest::Client::builder().read_timeout(PATIENCE);
    if let Some(files) = server.tls_files() {
        client = client.add_root_certificate(root_certificate(&files.cert));
    }
    let stopper = server.stopper();
    tokio::spawn(server.run());
    TestApp {
        base,
        client: client.build().expect("client"),
        clock,
        database_url,
        secret,
        stopper,
    }
}

/// Parses a list of patterns.
pub fn patterns(raw: &[&str]) -> Vec<TopicPattern> {
    raw.iter()
        .map(|p| TopicPattern::parse(p).expect("pattern"))
        .collect()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET <path>`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    /// A bearer token valid for a day on this server's clock.
    pub fn token(&self, sub: &str, subscribe: &[&str], publish: &[&str]) -> String {
        self.token_for(sub, subscribe, publish, Duration::from_secs(86_400))
    }

    /// A bearer token with the admin permission.
    pub fn admin_token(&self, sub: &str) -> String {
        let permissions = Permissions {
            admin: true,
            ..Permissions::default()
        };
        self.mint_with(sub, permissions, Duration::from_secs(86_400))
    }

    /// A bearer token valid for `ttl` on this server's clock.
    pub fn token_for(
        &self,
        sub: &str,
        subscribe: &[&str],
        publish: &[&str],
        ttl: Duration,
    ) -> String {
        let permissions = Permissions {
            subscribe: patterns(subscribe),
            publish: patterns(publish),
            admin: false,
        };
        self.mint_with(sub, permissions, ttl)
    }

    fn mint_with(&self, sub: &str, permissions: Permissions, ttl: Duration) -> String {
        mint(
            &self.secret,
            &MintRequest {
                sub: Subject::parse(sub).expect("subject"),
                permissions,
                ttl,
                issuer: None,
                audience: None,
                now: self.clock.now(),
            },
        )
        .expect("mint")
    }

    /// `POST /sse-token` with an optional bearer and raw body.
    pub async fn post_sse_token(
        &self,
        bearer: Option<&str>,
        body: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.client.post(self.url("/sse-token"));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        request.send().await.expect("POST /sse-token")
    }

    /// A ticket for `topics` (empty: the default), asserting it was issued.
    pub async fn ticket(&self, bearer: &str, topics: &[&str]) -> String {
        let body = serde_json::json!({ "topics": topics }).to_string();
        let response = self.post_sse_token(Some(bearer), Some(&body)).await;
        assert_eq!(response.status(), 200, "ticket for {topics:?}");
        let json: Value = response.json().await.expect("ticket JSON");
        json["ticket"].as_str().expect("ticket field").to_owned()
    }

    /// `GET /stream?token=<token>`.
    pub async fn get_stream(&self, token: &str) -> reqwest::Response {
        self.client
            .get(self.url("/stream"))
            .query(&[("token", token)])
            .send()
            .await
            .expect("GET /stream")
    }

    /// Opens a stream with `ticket` and reads it up to and including `ready`.
    pub async fn stream(&self, ticket: &str) -> SseStream {
        let response = self.get_stream(ticket).await;
        assert_eq!(response.status(), 200, "stream opens");
        let mut stream = SseStream::new(response);
        let retry = stream.next_frame().await;
        assert!(
            retry.retry.is_some(),
            "the stream starts with retry:, got {retry:?}"
        );
        let ready = stream.next_frame().await;
        assert_eq!(
            ready.event.as_deref(),
            Some("ready"),
            "then ready, got {ready:?}"
        );
        stream
    }

    /// A stream of `sub` on `topics`, ready to receive.
    pub async fn subscribe(&self, sub: &str, topics: &[&str]) -> SseStream {
        let bearer = self.token(sub, topics, &[]);
        let ticket = self.ticket(&bearer, topics).await;
        self.stream(&ticket).await
    }

    /// `POST /publish` with a raw JSON body.
    pub async fn post_publish(&self, bearer: Option<&str>, body: &str) -> reqwest::Response {
        let mut request = self.client.post(self.url("/publish"));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("POST /publish")
    }

    /// Publishes `data` to `topic` as a publisher allowed everywhere; returns the id.
    pub async fn publish(&self, topic: &str, event: Option<&str>, data: Value) -> String {
        let bearer = self.token("publisher", &[], &["*"]);
        let mut body = serde_json::json!({ "topic": topic, "data": data });
        if let Some(event) = event {
            body["event"] = event.into();
        }
        let response = self.post_publish(Some(&bearer), &body.to_string()).await;
        assert_eq!(response.status(), 200, "publish to {topic}");
        let json: Value = response.json().await.expect("publish JSON");
        json["id"].as_str().expect("id").to_owned()
    }

    /// The value of one sample of `/metrics` (`name{labels}` as printed), 0 if absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
            .map_or(0.0, |v| v.trim().parse().expect("a number"))
    }

    /// Waits until `sample` reads `want` in `/metrics`.
    pub async fn wait_for_metric(&self, sample: &str, want: f64) {
        self.poll_metric(sample, want, || {}).await;
    }

    /// Moves the clock forward by `step` until `sample` reads `want`: for work
    /// that background tasks do on clock deadlines, whose exact instant a
    /// test cannot know.
    pub async fn advance_until_metric(&self, step: Duration, sample: &str, want: f64) {
        self.poll_metric(sample, want, || self.advance(step)).await;
    }

    async fn poll_metric(&self, sample: &str, want: f64, mut before_each: impl FnMut()) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            before_each();
            let got = self.metric(sample).await;
            if got == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{sample} stayed at {got}, wanted {want}"
            );
            tokio::task::yield_now().await;
        }
    }

    /// Moves the server's clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock
            .advance(TimeDelta::from_std(by).expect("duration"));
    }

    /// A handle that stops the server the way a signal does.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }
}

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

/// One SSE frame as a client parses it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Frame {
    pub comment: Option<String>,
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: Option<String>,
    pub retry: Option<u64>,
}

impl Frame {
    /// The `data` parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("a data field")).expect("JSON data")
    }
}

/// Reads SSE frames off a streaming response, comments included (the
/// `EventSource` API hides them, but heartbeats are comments).
pub struct SseStream {
    body: futures_util::stream::BoxStream<'static, Result<bytes::Bytes, String>>,
    buffer: String,
}

impl SseStream {
    pub fn new(response: reqwest::Response) -> Self {
        Self::from_chunks(
            response
                .bytes_stream()
                .map(|chunk| chunk.map_err(|e| e.to_string())),
        )
    }

    /// Frames from any stream of body chunks (an HTTP/2 stream, for one).
    pub fn from_chunks(
        chunks: impl futures_util::Stream<Item = Result<bytes::Bytes, String>> + Send + 'static,
    ) -> Self {
        Self {
            body: chunks.boxed(),
            buffer: String::new(),
        }
    }

    /// The next frame; panics if none comes within [`PATIENCE`] or the stream ends.
    pub async fn next_frame(&mut self) -> Frame {
        self.try_next_frame(PATIENCE)
            .await
            .expect("a frame before the stream ended")
    }

    /// The next frame, `None` if the stream ends; panics on a timeout.
    pub async fn try_next_frame(&mut self, patience: Duration) -> Option<Frame> {
        tokio::time::timeout(patience, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let raw: String = self.buffer.drain(..end + 2).collect();
                    return Some(parse_frame(&raw));
                }
                match self.body.next().await {
                    Some(Ok(chunk)) => self
                        .buffer
                        .push_str(std::str::from_utf8(&chunk).expect("UTF-8 stream")),
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
        .expect("a frame or the end of the stream in time")
    }

    /// The next frame that is not a heartbeat.
    pub async fn next_event(&mut self) -> Frame {
        loop {
            let frame = self.next_frame().await;
            if frame.comment.is_none() {
                return frame;
            }
        }
    }

    /// Asserts the stream ends (after any heartbeats) without another event.
    pub async fn assert_ends(&mut self) {
        while let Some(frame) = self.try_next_frame(PATIENCE).await {
            assert!(
                frame.comment.is_some(),
                "expected the end of the stream, got {frame:?}"
            );
        }
    }
}

fn parse_frame(raw: &str) -> Frame {
    let mut frame = Frame::default();
    for line in raw.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            frame.comment = Some(comment.trim_start().to_owned());
            continue;
        }
        let (field, value) = line
            .split_once(':')
            .map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
        match field {
            "event" => frame.event = Some(value.to_owned()),
            "id" => frame.id = Some(value.to_owned()),
            "retry" => frame.retry = value.parse().ok(),
            "data" => {
                let data = frame.data.get_or_insert_with(String::new);
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            _ => {}
        }
    }
    frame
}

/// A response header as text ("" when absent).
pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
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

    /// A TLS-only server presenting `dir/leaf.pem` (see [`tls_certificates`]).
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

/// Writes a test CA (`ca.pem`) and a certificate it signed for `localhost`
/// and 127.0.0.1 (`leaf.pem`, `leaf.key`) into `dir`, with the openssl CLI.
pub fn tls_certificates(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl {args:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "1",
                "-subj",
                "/CN=sse-ticket test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("extensions file");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
    ]);
}

/// The PEM certificate at `path`, for a client to trust.
pub fn root_certificate(path: &std::path::Path) -> reqwest::Certificate {
    reqwest::Certificate::from_pem(&std::fs::read(path).expect("the certificate file"))
        .expect("a PEM certificate")
}
