//! Keys in the database (SQLite or Postgres), for deployments without
//! Redis: one row per key in `idempotency_keys`, named by its digest.
//!
//! Reads ([`IdempotencyStore::peek`], while a repeat waits for the first
//! request) go straight to the pool. Every change goes through one writer
//! (`database/writer.rs`) that commits whatever is waiting in one transaction (group
//! commit, as the history does): a claim is `INSERT … ON CONFLICT DO
//! NOTHING`, else a conditional `UPDATE` of an expired row, else the live row
//! read back; the other changes are `UPDATE`s conditional on the owner's
//! token, so two instances never both hold a key. A change is answered once
//! its transaction has committed. Expired rows are deleted by the pruner,
//! once a minute ([`DatabaseStore::prune`]).

mod writer;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row as _;
use sqlx::any::AnyRow;
use tokio::sync::oneshot;
use uuid::Uuid;

use writer::{Change, Op, Outcome};

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

impl DatabaseStore {
    /// A store on `db` (migrated), with its writer task.
    pub fn new(db: Database) -> Self {
        let writer_db = db.clone();
        let (writer, _task) = BatchWriter::spawn(QUEUE, Batching::AT_ONCE, move |changes| {
            let db = writer_db.clone();
            async move { writer::apply_all(&db, changes).await }
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
    async fn peek(
        &self,
        key: KeyDigest,
        now: DateTime<Utc>,
    ) -> Result<Option<Entry>, IdempotencyError> {
        let select = sqlx::query(ENTRY)
            .bind(key.hex())
            .bind(to_millis(now))
            .fetch_optional(self.db.pool());
        let found = timed(select).await.map_err(IdempotencyError::Database)?;
        found
            .map(|row| entry(&row))
            .transpose()
            .map_err(IdempotencyError::Database)
    }

    async fn claim(
        &self,
        key: KeyDigest,
        claim: &Claim,
        times: Times,
    ) -> Result<Option<Entry>, IdempotencyError> {
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
