//! The outbox consumer: events an app inserts into its outbox table, in the
//! same transaction as its own change, published exactly as `POST /publish`
//! publishes (see docs/outbox.md).
//!
//! [`table`] holds the schema and the SQL; [`round`] one round of claiming,
//! publishing and deleting in one transaction; [`row`] one row and the one
//! call into the hub; [`listener`] the `LISTEN` that wakes the consumer;
//! [`probe`] what `/readyz`, `/metrics` and the shutdown ask of it.
//!
//! The outbox lives in the app's database, not in the service's: it has a
//! pool of its own. An unreachable outbox does not stop start-up: the
//! consumer retries with backoff, and `/readyz` names `outbox` until the
//! table is in place and its database answers.

mod listener;
mod probe;
mod round;
mod row;
mod table;

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor as _, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::OutboxSettings;
use crate::db::DB_TIMEOUT;
use crate::hub::Hub;
use crate::metrics::outbox::OutboxMetrics;

pub use probe::OutboxProbe;
pub use table::schema_sql;

/// How often the outbox is read when no notification came, in clock time.
pub const POLL: Duration = Duration::from_secs(1);
/// First wait after a failed round or set-up.
const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest wait between two failed rounds.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Connections to the outbox database: the listener, a round, and
/// `/readyz` or a scrape.
const CONNECTIONS: u32 = 4;
/// Every outbox session: the database's deadline, and the isolation the
/// rounds are written for (each statement sees what committed before it).
const SESSION: &str = "SET statement_timeout = 5000; \
                       SET default_transaction_isolation = 'read committed'";

/// Why the outbox could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// `SSE_TICKET_OUTBOX_URL` cannot be used.
    #[error("SSE_TICKET_OUTBOX_URL is not a usable Postgres URL: {0}")]
    Url(#[source] sqlx::Error),
    /// A statement failed.
    #[error("outbox database query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// The outbox database did not answer within [`DB_TIMEOUT`].
    #[error("the outbox database did not answer within {} s", DB_TIMEOUT.as_secs())]
    Timeout,
}

/// Runs one statement under [`DB_TIMEOUT`].
async fn timed<T>(
    statement: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, OutboxError> {
    tokio::time::timeout(DB_TIMEOUT, statement)
        .await
        .map_err(|_| OutboxError::Timeout)?
        .map_err(OutboxError::Query)
}

/// A configured outbox, not yet consumed.
#[derive(Debug)]
pub struct Outbox {
    probe: Arc<OutboxProbe>,
}

impl Outbox {
    /// The outbox of `settings`; connects only once [`Outbox::run`] does.
    pub fn new(settings: &OutboxSettings, metrics: OutboxMetrics) -> Result<Self, OutboxError> {
        let options = PgConnectOptions::from_str(settings.url.expose_secret())
            .map_err(OutboxError::Url)?
            .application_name("sse-ticket outbox");
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .acquire_timeout(DB_TIMEOUT)
            .after_connect(|conn, _| {
                Box::pin(async move { conn.execute(SESSION).await.map(|_| ()) })
            })
            .connect_lazy_with(options);
        Ok(Self {
            probe: Arc::new(OutboxProbe {
                pool,
                table: table::Table::new(&settings.table),
                metrics,
                setup: parking_lot::Mutex::new(Some("not set up yet".into())),
                stopped: CancellationToken::new(),
                runtime: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The handle the hub asks for readiness.
    pub fn probe(&self) -> Arc<OutboxProbe> {
        self.probe.clone()
    }

    /// Consumes the outbox until `shutdown`: sets the tables up, then runs
    /// rounds while they find rows, and otherwise waits for a notification
    /// or the next poll. A round under way when `shutdown` comes finishes.
    pub async fn run(self, hub: Arc<Hub>, shutdown: CancellationToken) {
        let probe = self.probe;
        let _ = probe.runtime.set(tokio::runtime::Handle::current());
        let _stopped = probe.stopped.clone().drop_guard();
        let wake = Arc::new(Notify::new());
        let channel = probe.table.name.clone();
        tokio::spawn(listener::listen(
            probe.pool.clone(),
            channel,
            wake.clone(),
            shutdown.clone(),
        ));
        if !set_up(&probe, &shutdown).await {
            return;
        }
        let clock = hub.clock().clone();
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
        loop {
            let outcome = round::run(&probe.pool, &probe.table, &hub).await;
            if let Err(error) = probe.refresh_lag().await {
                tracing::debug!(%error, "cannot read the outbox lag");
            }
            let next = match outcome {
                Ok(report) => {
                    let metrics = &hub.metrics().outbox;
                    metrics.published.inc_by(report.published as u64);
                    metrics.dead_lettered.inc_by(report.dead as u64);
                    match report.retry {
                        Some(error) => {
                            tracing::warn!(%error, "an outbox topic waits: its next row cannot be published now");
                            Next::Retry
                        }
                        None if report.published + report.dead > 0 => Next::Round,
                        None => Next::Wait,
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "outbox round failed; its rows stay");
                    Next::Retry
                }
            };
            if next != Next::Retry {
                backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
            }
            let go_on = match next {
                Next::Round => !shutdown.is_cancelled(),
                Next::Wait => tokio::select! {
                    () = shutdown.cancelled() => false,
                    () = wake.notified() => true,
                    () = clock.sleep_until(clock.now() + crate::clock::span(POLL)) => true,
                },
                Next::Retry => backoff.wait(&shutdown).await,
            };
            if !go_on {
                return;
            }
        }
    }
}

/// What the consumer does after a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Another round at once: this one made progress.
    Round,
    /// Wait for a notification or the poll: nothing to do, or nothing this
    /// instance may do (other instances hold the topics).
    Wait,
    /// Back off, then try again: a row or the round could not be done now.
    Retry,
}

/// Creates what is missing of the outbox, retrying with backoff until it
/// is in place; `false` if `shutdown` came first.
async fn set_up(probe: &OutboxProbe, shutdown: &CancellationToken) -> bool {
    let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
    loop {
        match create_missing(&probe.pool, &probe.table).await {
            Ok(()) => {
                *probe.setup.lock() = None;
                tracing::info!(table = %probe.table.name, "consuming the outbox");
                return true;
            }
            Err(error) => {
                tracing::warn!(%error, table = %probe.table.name, "the outbox is not set up yet; retrying");
                *probe.setup.lock() = Some(format!("the outbox is not set up yet: {error}"));
            }
        }
        if !backoff.wait(shutdown).await {
            return false;
        }
    }
}

/// Runs the schema when a table or the trigger is missing, under a lock
/// that makes instances starting together take turns. Without the rights
/// to add a missing trigger, the tables are used as they are, polled.
async fn create_missing(pool: &PgPool, table: &table::Table) -> Result<(), OutboxError> {
    let (tables, trigger): (bool, bool) =
        timed(sqlx::query_as(&table.exists).fetch_one(pool)).await?;
    if tables && trigger {
        return Ok(());
    }
    let created = async {
        let mut tx = timed(pool.begin()).await?;
        timed(sqlx::query(&table.setup_lock).execute(&mut *tx)).await?;
        timed((&mut *tx).execute(table.schema.as_str())).await?;
        timed(tx.commit()).await
    };
    match created.await {
        Err(error) if tables => {
            tracing::warn!(%error, "cannot add the outbox's notify trigger; new rows are found by the poll, once a second");
            Ok(())
        }
        other => other,
    }
}
