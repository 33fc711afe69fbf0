//! The server in-process: its test configuration and database, `spawn_app`,
//! and `TestApp`, which mints tokens and drives the endpoints.

use std::time::Duration;

use chrono::TimeDelta;
use secrecy::SecretString;
use serde_json::Value;
use sse_ticket::auth::{KeySource, MintRequest, Permissions, Subject, TopicPattern, mint};
use sse_ticket::clock::{Clock as _, ManualClock};
use sse_ticket::{Config, Stopper};

use super::{PATIENCE, SECRET, SseStream, root_certificate, test_redis_settings};

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
/// Redis backends (a namespace of its own) when `SSE_TICKET_TEST_REDIS_CLUSTER_URLS`
/// or `SSE_TICKET_TEST_REDIS_URL` is set.
pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::new(KeySource::Secret(SECRET.into()));
    config.bind = "127.0.0.1:0".into();
    config.database_url = database_url.parse().expect("a database URL");
    config.redis = test_redis_settings();
    config
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
    if config.database_url == sse_ticket::db::DatabaseUrl::default() {
        config.database_url = fresh_database_url().await.parse().expect("a database URL");
    }
    let secret = match &config.keys {
        KeySource::Secret(secret) => secret.clone(),
        _ => SECRET.into(),
    };
    let database_url = config.database_url.expose().to_owned();
    let server = sse_ticket::build_with_clock(config, std::sync::Arc::new(clock.clone()))
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
                jti: None,
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

    /// `GET /admin/topics<query>` as an admin.
    pub async fn get_admin_topics(&self, query: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/admin/topics{query}")))
            .bearer_auth(self.admin_token("ops"))
            .send()
            .await
            .expect("GET /admin/topics")
    }

    /// The `topics` of `GET /admin/topics<query>`, asserting a 200.
    pub async fn admin_topics(&self, query: &str) -> Value {
        let response = self.get_admin_topics(query).await;
        assert_eq!(response.status(), 200, "GET /admin/topics{query}");
        let json: Value = response.json().await.expect("JSON");
        json["topics"].clone()
    }

    /// `POST /admin/revoke` for `sub`, as an admin.
    pub async fn revoke(&self, sub: &str) -> reqwest::Response {
        self.client
            .post(self.url("/admin/revoke"))
            .bearer_auth(self.admin_token("ops"))
            .json(&serde_json::json!({ "sub": sub }))
            .send()
            .await
            .expect("POST /admin/revoke")
    }
}

/// Opens a stream for `sub` on `topics` resuming after `last_event_id`, and
/// reads through `ready`.
pub async fn resume(app: &TestApp, sub: &str, topics: &[&str], last_event_id: &str) -> SseStream {
    let ticket = app.ticket(&app.token(sub, topics, &[]), topics).await;
    let response = app
        .client
        .get(app.url("/stream"))
        .query(&[("token", ticket.as_str()), ("lastEventId", last_event_id)])
        .send()
        .await
        .expect("GET /stream");
    assert_eq!(response.status(), 200);
    let mut stream = SseStream::new(response);
    stream.next_frame().await; // retry
    assert_eq!(stream.next_frame().await.event.as_deref(), Some("ready"));
    stream
}
