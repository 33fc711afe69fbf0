//! Revocations: subjects whose tokens issued before a time are refused, and
//! single tokens refused by their `jti` until a time.

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::{Database, DbError, from_millis, timed, to_millis};

/// One revoked subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The subject.
    pub sub: String,
    /// Tokens issued before this are refused.
    pub revoked_at: DateTime<Utc>,
}

impl Database {
    /// Revokes `sub` as of `at` (replacing an earlier revocation).
    pub async fn upsert_revocation(&self, sub: &str, at: DateTime<Utc>) -> Result<(), DbError> {
        let upsert = sqlx::query(
            "INSERT INTO revocations (sub, revoked_at) VALUES ($1, $2)
             ON CONFLICT (sub) DO UPDATE SET revoked_at = excluded.revoked_at",
        )
        .bind(sub.to_owned())
        .bind(to_millis(at))
        .execute(self.pool());
        timed(upsert).await?;
        Ok(())
    }

    /// Lifts the revocation of `sub`; whether there was one.
    pub async fn delete_revocation(&self, sub: &str) -> Result<bool, DbError> {
        let delete = sqlx::query("DELETE FROM revocations WHERE sub = $1")
            .bind(sub.to_owned())
            .execute(self.pool());
        let deleted = timed(delete).await?.rows_affected();
        Ok(deleted > 0)
    }

    /// Every revocation, by subject.
    pub async fn revocations(&self) -> Result<Vec<Revocation>, DbError> {
        let select = sqlx::query("SELECT sub, revoked_at FROM revocations ORDER BY sub")
            .fetch_all(self.pool());
        let rows = timed(select).await?;
        rows.iter()
            .map(|row| {
                Ok(Revocation {
                    sub: row.try_get("sub")?,
                    revoked_at: from_millis(row.try_get("revoked_at")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::from)
    }
}

/// One revoked bearer token, by its `jti`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JtiRevocation {
    /// The token's `jti`.
    pub jti: String,
    /// When it was revoked.
    pub revoked_at: DateTime<Utc>,
    /// Until when it is refused.
    pub until: DateTime<Utc>,
}

impl Database {
    /// Revokes the token `jti` from `at` until `until` (replacing an earlier
    /// revocation of it).
    pub async fn upsert_jti_revocation(
        &self,
        jti: &str,
        at: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<(), DbError> {
        let upsert = sqlx::query(
            "INSERT INTO jti_revocations (jti, revoked_at, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (jti) DO UPDATE
             SET revoked_at = excluded.revoked_at, expires_at = excluded.expires_at",
        )
        .bind(jti.to_owned())
        .bind(to_millis(at))
        .bind(to_millis(until))
        .execute(self.pool());
        timed(upsert).await?;
        Ok(())
    }

    /// Lifts the revocation of `jti`; whether one was in force at `now`.
    pub async fn delete_jti_revocation(
        &self,
        jti: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        let delete = sqlx::query("DELETE FROM jti_revocations WHERE jti = $1 AND expires_at > $2")
            .bind(jti.to_owned())
            .bind(to_millis(now))
            .execute(self.pool());
        let deleted = timed(delete).await?.rows_affected();
        Ok(deleted > 0)
    }

    /// Every revocation by `jti` in force at `now`, by `jti`.
    pub async fn jti_revocations(&self, now: DateTime<Utc>) -> Result<Vec<JtiRevocation>, DbError> {
        let select = sqlx::query(
            "SELECT jti, revoked_at, expires_at FROM jti_revocations
             WHERE expires_at > $1 ORDER BY jti",
        )
        .bind(to_millis(now))
        .fetch_all(self.pool());
        let rows = timed(select).await?;
        rows.iter()
            .map(|row| {
                Ok(JtiRevocation {
                    jti: row.try_get("jti")?,
                    revoked_at: from_millis(row.try_get("revoked_at")?),
                    until: from_millis(row.try_get("expires_at")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::from)
    }

    /// Deletes the revocations by `jti` no longer in force at `now`; how many.
    pub async fn prune_jti_revocations(&self, now: DateTime<Utc>) -> Result<u64, DbError> {
        let delete = sqlx::query("DELETE FROM jti_revocations WHERE expires_at <= $1")
            .bind(to_millis(now))
            .execute(self.pool());
        Ok(timed(delete).await?.rows_affected())
    }
}
