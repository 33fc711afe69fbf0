//! Revocations: subjects whose tokens issued before a time are refused.

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
