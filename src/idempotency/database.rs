//! Keys in the database (SQLite or Postgres), for deployments without
//! Redis: one row per key in `idempotency_keys`, named by its digest.
//!
//! Reads go straight to the pool: a repeat that finds a live entry costs one
//! indexed `SELECT` and writes nothing. Every change goes through one writer
//! that commits whatever is waiting in one transaction (group commit, as the
//! history does), in order: a claim is `INSERT … ON CONFLICT DO NOTHING`,
//! else a conditional `UPDATE` of an expired row, else the live row read
//! back; the other changes are `UPDATE`s conditional on the owner's token,
//! so two instances never both hold a key. A change is answered once its
//! transaction has committed. Expired rows are deleted by the pruner, once a
//! minute ([`DatabaseStore::prune`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{
    Claim, Entry, Fingerprint, IdempotencyError, IdempotencyStore, KeyDigest, Owner, Times,
};
use crate::db::{
    BatchError, BatchWriter, Batching, Database, DbError, from_millis, timed, to_millis,
};

/// Changes waiting for the writer, beyond which a publish waits.
const QUEUE: usize = 4096;

/// The columns of an entry, for `SELECT`.
const ENTRY: &str = "SELECT state, fingerprint, event_id, owner, lease_until FROM idempotency_keys
     WHERE key_digest = $1 AND expires_at > $2";

/// Keys in the database.
#[derive(Debug, Clone)]
pub struct DatabaseStore {
    db: Database,
    writer: BatchWriter<Change>,
}

/// One change to a key, and who waits for its outcome.
struct Change {
    key: KeyDigest,
    op: Op,
    outcome: oneshot::Sender<Outcome>,
}

/// What a change does.
enum Op {
    Claim(Claim, Times),
    TakeOver(Owner, Claim, Times),
    Complete(Owner, DateTime<Utc>),
    Abandon(Owner),
}

/// What a change did: a claim's entry found (`None`: claimed), or whether
/// a conditional update applied.
enum Outcome {
    Claimed(Option<Entry>),
    Applied(bool),
}

impl DatabaseStore {
    /// A store on `db` (migrated), with its writer task.
    pub fn new(db: Database) -> Self {
        let writer_db = db.clone();
        let (writer, _task) = BatchWriter::spawn(QUEUE, Batching::AT_ONCE, move |changes| {
            let db = writer_db.clone();
            async move { apply_all(&db, changes).await }
        });
        Self { db, writer }
    }

    /// Deletes the keys expired at `now`; how many.
    pub async fn prune(db: &Database, now: DateTime<Utc>) -> Result<u64, DbError> {
        let delete = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
            .bind(to_millis(now))
            .execute(db.pool());
        Ok(timed(delete).await?.rows_affected())
    }

    /// Queues a change and waits for its outcome, once committed.
    async fn change(&self, key: KeyDigest, op: Op) -> Result<Outcome, IdempotencyError> {
        let (outcome, answer) = oneshot::channel();
        let change = Change { key, op, outcome };
        self.writer
            .write(change)
            .await
            .map_err(IdempotencyError::Writer)?;
        // Answered before its commit is reported: never dropped unanswered.
        answer
            .await
            .map_err(|_| IdempotencyError::Writer(BatchError::Stopped))
    }
}

/// Applies `changes` in order in one transaction, then answers each.
async fn apply_all(db: &Database, changes: Vec<Change>) -> Result<(), DbError> {
    let mut tx = db.pool().begin().await?;
    let mut answers = Vec::with_capacity(changes.len());
    for change in changes {
        let outcome = apply(&mut tx, change.key, change.op).await?;
        answers.push((change.outcome, outcome));
    }
    tx.commit().await?;
    for (to, outcome) in answers {
        let _ = to.send(outcome);
    }
    Ok(())
}

/// Applies one change.
async fn apply(conn: &mut AnyConnection, key: KeyDigest, op: Op) -> Result<Outcome, DbError> {
    let digest = key.hex();
    let applied = |done: sqlx::any::AnyQueryResult| Outcome::Applied(done.rows_affected() > 0);
    Ok(match op {
        Op::Claim(claim, times) => Outcome::Claimed(claim_in(conn, &digest, &claim, times).await?),
        Op::TakeOver(stale, claim, times) => applied(
            sqlx::query(
                "UPDATE idempotency_keys SET fingerprint = $1, event_id = $2, owner = $3,
                     lease_until = $4, expires_at = $5
                 WHERE key_digest = $6 AND owner = $7 AND state = 'pending'
                     AND lease_until <= $8 AND expires_at > $8",
            )
            .bind(claim.fingerprint.hex())
            .bind(claim.id.hyphenated().to_string())
            .bind(claim.owner.as_str().to_owned())
            .bind(to_millis(times.lease_until))
            .bind(to_millis(times.expires_at))
            .bind(digest)
            .bind(stale.as_str().to_owned())
            .bind(to_millis(times.now))
            .execute(&mut *conn)
            .await?,
        ),
        Op::Complete(owner, expires_at) => applied(
            sqlx::query(
                "UPDATE idempotency_keys SET state = 'done', lease_until = 0, expires_at = $1
                 WHERE key_digest = $2 AND owner = $3 AND state = 'pending'",
            )
            .bind(to_millis(expires_at))
            .bind(digest)
            .bind(owner.as_str().to_owned())
            .execute(&mut *conn)
            .await?,
        ),
        Op::Abandon(owner) => applied(
            sqlx::query(
                "UPDATE idempotency_keys SET lease_until = 0
                 WHERE key_digest = $1 AND owner = $2 AND state = 'pending'",
            )
            .bind(digest)
            .bind(owner.as_str().to_owned())
            .execute(&mut *conn)
            .await?,
        ),
    })
}

/// Writes `claim` under `digest` if no row is there or the row there has
/// expired; else reads the live row back.
async fn claim_in(
    conn: &mut AnyConnection,
    digest: &str,
    claim: &Claim,
    times: Times,
) -> Result<Option<Entry>, DbError> {
    // A row can be pruned between the statements (Postgres reads what
    // others committed meanwhile): then the key is free again.
    for _ in 0..3 {
        if write_claim(conn, digest, claim, times).await? {
            return Ok(None);
        }
        let row = sqlx::query(ENTRY)
            .bind(digest.to_owned())
            .bind(to_millis(times.now))
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = row {
            return entry(&row).map(Some);
        }
    }
    Err(DbError::Query(sqlx::Error::Protocol(
        "an idempotency_keys row came and went three times in a row".into(),
    )))
}

/// Inserts `claim` as a new row, or over an expired one; whether it did.
async fn write_claim(
    conn: &mut AnyConnection,
    digest: &str,
    claim: &Claim,
    times: Times,
) -> Result<bool, DbError> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys
             (key_digest, state, fingerprint, event_id, owner, lease_until, expires_at)
         VALUES ($1, 'pending', $2, $3, $4, $5, $6)
         ON CONFLICT (key_digest) DO NOTHING",
    )
    .bind(digest.to_owned())
    .bind(claim.fingerprint.hex())
    .bind(claim.id.hyphenated().to_string())
    .bind(claim.owner.as_str().to_owned())
    .bind(to_millis(times.lease_until))
    .bind(to_millis(times.expires_at))
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() > 0 {
        return Ok(true);
    }
    let replaced = sqlx::query(
        "UPDATE idempotency_keys SET state = 'pending', fingerprint = $1, event_id = $2,
             owner = $3, lease_until = $4, expires_at = $5
         WHERE key_digest = $6 AND expires_at <= $7",
    )
    .bind(claim.fingerprint.hex())
    .bind(claim.id.hyphenated().to_string())
    .bind(claim.owner.as_str().to_owned())
    .bind(to_millis(times.lease_until))
    .bind(to_millis(times.expires_at))
    .bind(digest.to_owned())
    .bind(to_millis(times.now))
    .execute(&mut *conn)
    .await?;
    Ok(replaced.rows_affected() > 0)
}

/// An entry as a row holds it.
fn entry(row: &AnyRow) -> Result<Entry, DbError> {
    let state: String = row.try_get("state")?;
    let fingerprint: String = row.try_get("fingerprint")?;
    let id: String = row.try_get("event_id")?;
    let owner: String = row.try_get("owner")?;
    let lease_until: i64 = row.try_get("lease_until")?;
    let (Some(fingerprint), Ok(id)) = (Fingerprint::from_hex(&fingerprint), Uuid::parse_str(&id))
    else {
        return Err(DbError::Query(sqlx::Error::Decode(
            "an idempotency_keys row holds no fingerprint or event id".into(),
        )));
    };
    Ok(if state == "done" {
        Entry::Done { fingerprint, id }
    } else {
        Entry::Pending {
            claim: Claim {
                owner: Owner::stored(owner),
                fingerprint,
                id,
            },
            lease_until: from_millis(lease_until),
        }
    })
}

#[async_trait]
impl IdempotencyStore for DatabaseStore {
    async fn claim(
        &self,
        key: KeyDigest,
        claim: &Claim,
        times: Times,
    ) -> Result<Option<Entry>, IdempotencyError> {
        // A live entry is all most repeats need: read, nothing written.
        let select = sqlx::query(ENTRY)
            .bind(key.hex())
            .bind(to_millis(times.now))
            .fetch_optional(self.db.pool());
        let found = timed(select).await.map_err(IdempotencyError::Database)?;
        if let Some(row) = found {
            return entry(&row).map(Some).map_err(IdempotencyError::Database);
        }
        match self.change(key, Op::Claim(claim.clone(), times)).await? {
            Outcome::Claimed(found) => Ok(found),
            Outcome::Applied(_) => Err(IdempotencyError::Corrupt("a claim answered as an update")),
        }
    }

    async fn take_over(
        &self,
        key: KeyDigest,
        stale: &Owner,
        claim: &Claim,
        times: Times,
    ) -> Result<bool, IdempotencyError> {
        let op = Op::TakeOver(stale.clone(), claim.clone(), times);
        self.change(key, op).await.map(applied)
    }

    async fn complete(
        &self,
        key: KeyDigest,
        owner: &Owner,
        _now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, IdempotencyError> {
        let op = Op::Complete(owner.clone(), expires_at);
        self.change(key, op).await.map(applied)
    }

    async fn abandon(&self, key: KeyDigest, owner: &Owner) -> Result<bool, IdempotencyError> {
        self.change(key, Op::Abandon(owner.clone()))
            .await
            .map(applied)
    }
}

/// Whether a conditional update applied.
fn applied(outcome: Outcome) -> bool {
    matches!(outcome, Outcome::Applied(true))
}
