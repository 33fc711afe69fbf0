//! Keys in the database (SQLite or Postgres), for deployments without
//! Redis: one row per key in `idempotency_keys`, named by its digest.
//!
//! A claim is one upsert that writes the row if none is there or the one
//! there has expired (`INSERT … ON CONFLICT DO UPDATE … WHERE expires_at <=
//! now`); the other changes are conditional `UPDATE`s on the owner's token,
//! so two instances never both hold a key. Expired rows are deleted by the
//! pruner, once a minute ([`DatabaseStore::prune`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row as _;
use uuid::Uuid;

use super::{
    Claim, Entry, Fingerprint, IdempotencyError, IdempotencyStore, KeyDigest, Owner, Times,
};
use crate::db::{Database, DbError, from_millis, timed, to_millis};

/// Keys in the database.
#[derive(Debug, Clone)]
pub struct DatabaseStore {
    db: Database,
}

impl DatabaseStore {
    /// A store on `db` (migrated).
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Deletes the keys expired at `now`; how many.
    pub async fn prune(db: &Database, now: DateTime<Utc>) -> Result<u64, DbError> {
        let delete = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
            .bind(to_millis(now))
            .execute(db.pool());
        Ok(timed(delete).await?.rows_affected())
    }

    /// The live entry under `key`, if any.
    async fn entry(
        &self,
        key: KeyDigest,
        now: DateTime<Utc>,
    ) -> Result<Option<Entry>, IdempotencyError> {
        let select = sqlx::query(
            "SELECT state, fingerprint, event_id, owner, lease_until FROM idempotency_keys
             WHERE key_digest = $1 AND expires_at > $2",
        )
        .bind(key.hex())
        .bind(to_millis(now))
        .fetch_optional(self.db.pool());
        let Some(row) = timed(select).await.map_err(failed)? else {
            return Ok(None);
        };
        let read = |e: sqlx::Error| failed(DbError::Query(e));
        let state: String = row.try_get("state").map_err(read)?;
        let fingerprint: String = row.try_get("fingerprint").map_err(read)?;
        let id: String = row.try_get("event_id").map_err(read)?;
        let owner: String = row.try_get("owner").map_err(read)?;
        let lease_until: i64 = row.try_get("lease_until").map_err(read)?;
        let (Some(fingerprint), Ok(id)) =
            (Fingerprint::from_hex(&fingerprint), Uuid::parse_str(&id))
        else {
            return Err(IdempotencyError::Corrupt(
                "an idempotency_keys row holds no fingerprint or event id",
            ));
        };
        Ok(Some(if state == "done" {
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
        }))
    }
}

/// A database failure as the store's.
fn failed(e: DbError) -> IdempotencyError {
    IdempotencyError::Database(e)
}

#[async_trait]
impl IdempotencyStore for DatabaseStore {
    async fn claim(
        &self,
        key: KeyDigest,
        claim: &Claim,
        times: Times,
    ) -> Result<Option<Entry>, IdempotencyError> {
        // A row can vanish between the upsert and the read (pruned,
        // expired): then the key is free again, and the upsert is retried.
        for _ in 0..3 {
            let upsert = sqlx::query(
                "INSERT INTO idempotency_keys
                     (key_digest, state, fingerprint, event_id, owner, lease_until, expires_at)
                 VALUES ($1, 'pending', $2, $3, $4, $5, $6)
                 ON CONFLICT (key_digest) DO UPDATE SET
                     state = excluded.state, fingerprint = excluded.fingerprint,
                     event_id = excluded.event_id, owner = excluded.owner,
                     lease_until = excluded.lease_until, expires_at = excluded.expires_at
                 WHERE idempotency_keys.expires_at <= $7",
            )
            .bind(key.hex())
            .bind(claim.fingerprint.hex())
            .bind(claim.id.hyphenated().to_string())
            .bind(claim.owner.as_str().to_owned())
            .bind(to_millis(times.lease_until))
            .bind(to_millis(times.expires_at))
            .bind(to_millis(times.now))
            .execute(self.db.pool());
            if timed(upsert).await.map_err(failed)?.rows_affected() > 0 {
                return Ok(None);
            }
            if let Some(entry) = self.entry(key, times.now).await? {
                return Ok(Some(entry));
            }
        }
        Err(IdempotencyError::Corrupt(
            "an idempotency_keys row came and went three times in a row",
        ))
    }

    async fn take_over(
        &self,
        key: KeyDigest,
        stale: &Owner,
        claim: &Claim,
        times: Times,
    ) -> Result<bool, IdempotencyError> {
        let update = sqlx::query(
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
        .bind(key.hex())
        .bind(stale.as_str().to_owned())
        .bind(to_millis(times.now))
        .execute(self.db.pool());
        Ok(timed(update).await.map_err(failed)?.rows_affected() > 0)
    }

    async fn complete(
        &self,
        key: KeyDigest,
        owner: &Owner,
        _now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, IdempotencyError> {
        let update = sqlx::query(
            "UPDATE idempotency_keys SET state = 'done', lease_until = 0, expires_at = $1
             WHERE key_digest = $2 AND owner = $3 AND state = 'pending'",
        )
        .bind(to_millis(expires_at))
        .bind(key.hex())
        .bind(owner.as_str().to_owned())
        .execute(self.db.pool());
        Ok(timed(update).await.map_err(failed)?.rows_affected() > 0)
    }

    async fn abandon(&self, key: KeyDigest, owner: &Owner) -> Result<bool, IdempotencyError> {
        let update = sqlx::query(
            "UPDATE idempotency_keys SET lease_until = 0
             WHERE key_digest = $1 AND owner = $2 AND state = 'pending'",
        )
        .bind(key.hex())
        .bind(owner.as_str().to_owned())
        .execute(self.db.pool());
        Ok(timed(update).await.map_err(failed)?.rows_affected() > 0)
    }
}
