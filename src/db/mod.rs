//! The durable store: event history, revocations and the audit trail, in
//! SQLite (the default, a file) or Postgres (for shared deployments).
//!
//! One API over both through sqlx's `Any` driver: the queries are written once
//! in the SQL the two share, and only the migrations differ per backend.

mod audit;
mod batch;
mod events;
mod revocations;
mod url;

use std::str::FromStr as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor as _};

pub use audit::{AuditAction, AuditEpoch, AuditQuery, AuditRecord, minute_of};
pub use batch::{BatchError, BatchWriter, Batching};
pub use events::{Keep, Replay, ReplayBudget, Retained, StoredEvent};
pub use revocations::{JtiRevocation, Revocation};
pub use url::{DatabaseUrl, redact_url};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a query may wait for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest any database operation may take, connection included: past it the
/// operation fails with [`DbError::Timeout`] (a hung database answers 503
/// instead of holding requests forever). Postgres also enforces it on the
/// server as `statement_timeout`.
pub const DB_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the database did not answer as hoped.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL names no supported database.
    #[error("SSE_TICKET_DATABASE_URL must start with sqlite: or postgres:// (got {0})")]
    Scheme(String),
    /// No connection could be made.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// The migrations failed.
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// The database did not answer within [`DB_TIMEOUT`].
    #[error("the database did not answer within {} s", DB_TIMEOUT.as_secs())]
    Timeout,
}

/// Operations that ran out of [`DB_TIMEOUT`], in this process.
static TIMEOUTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many database operations ran out of [`DB_TIMEOUT`] since the process
/// started (every database of the process counted together).
pub fn timeouts() -> u64 {
    TIMEOUTS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Runs one database operation under [`DB_TIMEOUT`].
pub(crate) async fn timed<T, E>(operation: impl Future<Output = Result<T, E>>) -> Result<T, DbError>
where
    DbError: From<E>,
{
    let done = match tokio::time::timeout(DB_TIMEOUT, operation).await {
        Ok(done) => done.map_err(DbError::from),
        Err(_) => Err(DbError::Timeout),
    };
    match done {
        // Waiting for a pooled connection runs out at about the same time
        // when the database hangs: the same outage, counted the same way.
        Err(DbError::Timeout | DbError::Query(sqlx::Error::PoolTimedOut)) => {
            TIMEOUTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(DbError::Timeout)
        }
        other => other,
    }
}

/// Which SQL engine is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (WAL mode) or memory database.
    Sqlite,
    /// A Postgres server.
    Postgres,
}

/// A pool onto the durable store.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
}

impl Database {
    /// Connects to `url` (`sqlite://path`, created if missing; `sqlite::memory:`;
    /// or `postgres://…`). Does not migrate.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = url.backend();
        let url = url.expose();
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") && !url.contains(":memory:") => {
                let separator = if url.contains('?') { '&' } else { '?' };
                format!("{url}{separator}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url).map_err(DbError::Connect)?;
        let pool = AnyPoolOptions::new()
            // One SQLite file takes one writer at a time anyway.
            .max_connections(if backend == Backend::Sqlite { 4 } else { 10 })
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;")
                                .await?;
                        }
                        Backend::Postgres => {
                            conn.execute(statement_timeout(DB_TIMEOUT).as_str()).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(DbError::Connect)?;
        Ok(Self { pool, backend })
    }

    /// Connects and applies the migrations.
    pub async fn open(url: &DatabaseUrl) -> Result<Self, DbError> {
        let db = Self::connect(url).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Applies the pending migrations of this backend. Not under
    /// [`DB_TIMEOUT`]: building an index on a large table may take longer.
    pub async fn migrate(&self) -> Result<(), DbError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => {
                let mut conn = self.pool.acquire().await?;
                conn.execute("SET statement_timeout = 0").await?;
                let migrated = POSTGRES_MIGRATIONS.run(&mut *conn).await;
                conn.execute(statement_timeout(DB_TIMEOUT).as_str()).await?;
                migrated?;
            }
        }
        Ok(())
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        timed(sqlx::query("SELECT 1").execute(&self.pool)).await?;
        Ok(())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// SQL text with parameters in each engine's own style: `$N` for Postgres
/// (the `Any` query builder writes `?`, which Postgres refuses), `?` for
/// SQLite, where a named `$N` costs a linear search per bound value, which a
/// multi-row insert with thousands of values turns quadratic.
#[derive(Debug)]
pub(crate) struct Statement {
    sql: String,
    args: Vec<Arg>,
    backend: Backend,
}

#[derive(Debug)]
enum Arg {
    Int(i64),
    Text(Option<String>),
}

impl Statement {
    pub(crate) fn new(backend: Backend, sql: &str) -> Self {
        Self {
            sql: sql.to_owned(),
            args: Vec::new(),
            backend,
        }
    }

    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    pub(crate) fn int(&mut self, value: i64) -> &mut Self {
        self.args.push(Arg::Int(value));
        self.placeholder()
    }

    pub(crate) fn text(&mut self, value: impl Into<Option<String>>) -> &mut Self {
        self.args.push(Arg::Text(value.into()));
        self.placeholder()
    }

    fn placeholder(&mut self) -> &mut Self {
        match self.backend {
            Backend::Sqlite => self.sql.push('?'),
            Backend::Postgres => {
                self.sql.push('$');
                self.sql.push_str(&self.args.len().to_string());
            }
        }
        self
    }

    pub(crate) fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        self.args
            .iter()
            .fold(sqlx::query(&self.sql), |query, arg| match arg {
                Arg::Int(v) => query.bind(*v),
                Arg::Text(v) => query.bind(v.clone()),
            })
    }
}

/// `SET statement_timeout` to `limit`, for a Postgres session.
fn statement_timeout(limit: Duration) -> String {
    format!("SET statement_timeout = {}", limit.as_millis())
}

/// Unix milliseconds, the stored form of every time.
pub(crate) fn to_millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use sqlx::Row as _;

    use super::*;

    #[tokio::test]
    async fn postgres_sessions_carry_the_deadline_as_statement_timeout() {
        let Some(url) = std::env::var("SSE_TICKET_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            eprintln!("skipped: set SSE_TICKET_TEST_POSTGRES_URL to run it against Postgres");
            return;
        };
        let url = DatabaseUrl::parse(&url).expect("a Postgres URL");
        let db = Database::connect(&url).await.expect("Postgres");
        let row = sqlx::query("SHOW statement_timeout")
            .fetch_one(db.pool())
            .await
            .expect("SHOW");
        let shown: String = row.try_get(0).expect("a setting");
        assert_eq!(shown, format!("{}s", DB_TIMEOUT.as_secs()));
        db.close().await;
    }
}
