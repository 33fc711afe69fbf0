//! The database store's one writer: the changes waiting when it starts a
//! transaction go into it together, in a few statements whatever their
//! number (one multi-row `INSERT` for the claims, one `UPDATE` for the
//! completions), so a burst of keyed publishes costs a few round trips and
//! one commit, not two of each per publish. All the changes of a batch are
//! concurrent requests', so any order of them is one they could have had.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row as _};
use tokio::sync::oneshot;

use super::{ENTRY, entry};
use crate::db::{Backend, Database, DbError, Statement, to_millis};
use crate::idempotency::{Claim, Entry, KeyDigest, Owner, Times};

/// Rows per multi-row statement, well under both engines' parameter limits.
const CHUNK: usize = 500;

/// One change to a key, and who waits for its outcome.
pub(super) struct Change {
    pub(super) key: KeyDigest,
    pub(super) op: Op,
    pub(super) outcome: oneshot::Sender<Outcome>,
}

/// What a change does.
pub(super) enum Op {
    Claim(Claim, Times),
    TakeOver(Owner, Claim, Times),
    Complete(Owner, DateTime<Utc>),
    Abandon(Owner),
}

/// What a change did: a claim's entry found (`None`: claimed), or whether
/// a conditional update applied.
pub(super) enum Outcome {
    Claimed(Option<Entry>),
    Applied(bool),
}

/// Applies `changes` in one transaction, then answers each.
pub(super) async fn apply_all(db: &Database, changes: Vec<Change>) -> Result<(), DbError> {
    let backend = db.backend();
    let mut tx = db.pool().begin().await?;
    let (mut claims, mut completions, mut others) = (Vec::new(), Vec::new(), Vec::new());
    for change in changes {
        match change.op {
            Op::Claim(..) => claims.push(change),
            Op::Complete(..) => completions.push(change),
            _ => others.push(change),
        }
    }
    let mut answers = Vec::new();
    for chunk in claims.chunks(CHUNK) {
        let inserted = insert_claims(&mut tx, backend, chunk).await?;
        for change in chunk {
            let found = match &change.op {
                Op::Claim(claim, times) => {
                    let digest = change.key.hex();
                    let mine = (digest.clone(), claim.owner.as_str().to_owned());
                    if inserted.contains(&mine) {
                        None
                    } else {
                        claim_one(&mut tx, &digest, claim, *times).await?
                    }
                }
                _ => None,
            };
            answers.push(Outcome::Claimed(found));
        }
    }
    for chunk in completions.chunks(CHUNK) {
        let completed = complete_all(&mut tx, backend, chunk).await?;
        for change in chunk {
            answers.push(Outcome::Applied(completed.contains(&change.key.hex())));
        }
    }
    for change in &others {
        answers.push(apply_one(&mut tx, change).await?);
    }
    tx.commit().await?;
    let waiting = claims.into_iter().chain(completions).chain(others);
    for (change, outcome) in waiting.zip(answers) {
        let _ = change.outcome.send(outcome);
    }
    Ok(())
}

/// Inserts the claims where no row is; returns the (digest, owner) of those inserted.
async fn insert_claims(
    conn: &mut AnyConnection,
    backend: Backend,
    claims: &[Change],
) -> Result<HashSet<(String, String)>, DbError> {
    let mut insert = Statement::new(
        backend,
        "INSERT INTO idempotency_keys
             (key_digest, state, fingerprint, event_id, owner, lease_until, expires_at) VALUES ",
    );
    let mut rows = 0;
    for change in claims {
        let Op::Claim(claim, times) = &change.op else {
            continue;
        };
        insert
            .push(if rows == 0 { "(" } else { ", (" })
            .text(change.key.hex())
            .push(", 'pending', ")
            .text(claim.fingerprint.hex())
            .push(", ")
            .text(claim.id.hyphenated().to_string())
            .push(", ")
            .text(claim.owner.as_str().to_owned())
            .push(", ")
            .int(to_millis(times.lease_until))
            .push(", ")
            .int(to_millis(times.expires_at))
            .push(")");
        rows += 1;
    }
    insert.push(" ON CONFLICT (key_digest) DO NOTHING RETURNING key_digest, owner");
    insert
        .query()
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("key_digest")?, row.try_get("owner")?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::from)
}

/// A claim the multi-row insert did not write: the live row read back (a
/// repeat), else over the expired row, else (the row went meanwhile)
/// written anew.
async fn claim_one(
    conn: &mut AnyConnection,
    digest: &str,
    claim: &Claim,
    times: Times,
) -> Result<Option<Entry>, DbError> {
    for _ in 0..3 {
        let row = sqlx::query(ENTRY)
            .bind(digest.to_owned())
            .bind(to_millis(times.now))
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = row {
            return entry(&row).map(Some);
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
        if replaced.rows_affected() > 0 {
            return Ok(None);
        }
        // Pruned between the statements (Postgres reads what others
        // committed meanwhile): the key is free again.
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
            return Ok(None);
        }
    }
    Err(DbError::Query(sqlx::Error::Protocol(
        "an idempotency_keys row came and went three times in a row".into(),
    )))
}

/// Marks done the pending claims of these owners; returns the digests it did.
/// An owner token is random and claims one key, so matching the keys and
/// the owners as two lists matches each pair and no other.
async fn complete_all(
    conn: &mut AnyConnection,
    backend: Backend,
    completions: &[Change],
) -> Result<HashSet<String>, DbError> {
    // The latest expiry of the batch: they differ by the milliseconds between the publishes.
    let expires_at = completions
        .iter()
        .filter_map(|change| match &change.op {
            Op::Complete(_, at) => Some(*at),
            _ => None,
        })
        .max()
        .unwrap_or_default();
    let mut update = Statement::new(
        backend,
        "UPDATE idempotency_keys SET state = 'done', lease_until = 0, expires_at = ",
    );
    update
        .int(to_millis(expires_at))
        .push(" WHERE state = 'pending' AND key_digest IN (");
    for (i, change) in completions.iter().enumerate() {
        update
            .push(if i == 0 { "" } else { ", " })
            .text(change.key.hex());
    }
    update.push(") AND owner IN (");
    let owners = completions.iter().filter_map(|change| match &change.op {
        Op::Complete(owner, _) => Some(owner.as_str().to_owned()),
        _ => None,
    });
    for (i, owner) in owners.enumerate() {
        update.push(if i == 0 { "" } else { ", " }).text(owner);
    }
    update.push(") RETURNING key_digest");
    update
        .query()
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| row.try_get("key_digest"))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::from)
}

/// Applies a take-over or an abandon.
async fn apply_one(conn: &mut AnyConnection, change: &Change) -> Result<Outcome, DbError> {
    let digest = change.key.hex();
    let done = match &change.op {
        Op::TakeOver(stale, claim, times) => {
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
            .await?
        }
        Op::Abandon(owner) => {
            sqlx::query(
                "UPDATE idempotency_keys SET lease_until = 0
                 WHERE key_digest = $1 AND owner = $2 AND state = 'pending'",
            )
            .bind(digest)
            .bind(owner.as_str().to_owned())
            .execute(&mut *conn)
            .await?
        }
        Op::Claim(..) | Op::Complete(..) => return Ok(Outcome::Applied(false)),
    };
    Ok(Outcome::Applied(done.rows_affected() > 0))
}
