//! An app's outbox for a test: a fresh Postgres schema standing for the
//! app's database, the rows the app inserts there, and a server consuming it.

use secrecy::SecretString;
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sse_ticket::config::OutboxSettings;

use super::{PATIENCE, TestApp, fresh_database_url, spawn_app_with};

/// The outbox table every test uses (the default name).
pub const OUTBOX: &str = "sse_outbox";

/// The Postgres the outbox tests need, asserting it is configured.
pub fn require_postgres() {
    assert!(
        std::env::var("SSE_TICKET_TEST_POSTGRES_URL").is_ok_and(|url| !url.is_empty()),
        "set SSE_TICKET_TEST_POSTGRES_URL to the Postgres the outbox tests use"
    );
}

/// The app's database: a schema of the test's own.
pub struct AppDb {
    pub url: String,
    pub pool: PgPool,
}

impl AppDb {
    /// A fresh, empty schema (no outbox table yet).
    pub async fn fresh() -> Self {
        require_postgres();
        let url = fresh_database_url().await;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .expect("the app's database");
        Self { url, pool }
    }

    /// The outbox settings of a server consuming this database (through `url`).
    pub fn settings_via(url: &str) -> OutboxSettings {
        OutboxSettings {
            url: SecretString::from(url.to_owned()),
            table: OUTBOX.into(),
        }
    }

    /// The outbox settings of a server consuming this database.
    pub fn settings(&self) -> OutboxSettings {
        Self::settings_via(&self.url)
    }

    /// Runs `sql` (one or more statements).
    pub async fn execute(&self, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Inserts one outbox row, committed at once.
    pub async fn insert(&self, topic: &str, event: Option<&str>, data: Value) {
        sqlx::query("INSERT INTO sse_outbox (topic, event, data) VALUES ($1, $2, $3::jsonb)")
            .bind(topic)
            .bind(event)
            .bind(data.to_string())
            .execute(&self.pool)
            .await
            .expect("insert an outbox row");
    }

    /// Rows still in the outbox.
    pub async fn waiting(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM sse_outbox")
            .fetch_one(&self.pool)
            .await
            .expect("count the outbox")
    }

    /// Waits until the outbox is empty: a round fans out before it commits
    /// the rows' deletion, so a stream sees an event a moment before.
    pub async fn wait_drained(&self) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let left = self.waiting().await;
            if left == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{left} rows stayed in the outbox"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The dead-letter table: `(id, reason)` by id.
    pub async fn dead(&self) -> Vec<(i64, String)> {
        sqlx::query_as("SELECT id, reason FROM sse_outbox_dead ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .expect("read the dead letters")
    }
}

/// A server consuming `db`'s outbox, once `/readyz` says its outbox is set up.
pub async fn spawn_with_outbox(db: &AppDb) -> TestApp {
    let app = spawn_app_with(|config| config.outbox = Some(db.settings())).await;
    wait_for_outbox(&app, "ok").await;
    app
}

/// Waits until `/readyz` reports the outbox `state` (`ok` or `unavailable`).
pub async fn wait_for_outbox(app: &TestApp, state: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let json: Value = app.get("/readyz").await.json().await.expect("JSON");
        if json["backends"]["outbox"] == state {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox never became {state}: {json}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits until `sample` in `/metrics` reads at least `least`; returns it.
pub async fn wait_for_metric_at_least(app: &TestApp, sample: &str, least: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let got = app.metric(sample).await;
        if got >= least {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sample} stayed at {got}, wanted at least {least}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Moves `app`'s clock a second at a time (the outbox's poll) until
/// `until` resolves: for rows no notification announces.
pub async fn advancing_clock<T>(app: &TestApp, until: impl Future<Output = T>) -> T {
    let clock = app.clock.clone();
    let ticker = tokio::spawn(async move {
        loop {
            clock.advance(chrono::TimeDelta::seconds(1));
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    let done = until.await;
    ticker.abort();
    done
}
