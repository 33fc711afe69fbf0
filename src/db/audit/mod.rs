//! The audit trail: one row per ticket issued or redeemed, and per
//! revocation; rejected presentations counted in one row per client IP,
//! reason and minute. Never the ticket itself: a short fingerprint of it.
//!
//! One subject's rows are found through the `(epoch, sub, at)` index. A
//! writer fills one epoch at a time (see [`AuditEpoch`]), so a batch of rows
//! lands in the few index pages of the current epoch however many subjects
//! it names, where a `(sub, at)` index put each row on a random page of an
//! index as large as the trail. A query for one subject seeks once per epoch.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use sqlx::Row as _;

use super::{Backend, Database, DbError, Statement, from_millis, timed, to_millis};

const INSERT_CHUNK: usize = 500;

/// Rows a writer puts in one epoch before it starts the next.
const EPOCH_ROWS: usize = 65_536;

/// How long a writer fills one epoch at most. An epoch's entry in
/// `audit_epochs` goes, once its rows have, only this long past the audit
/// horizon, when no writer adds to it any more.
const EPOCH_SPAN: TimeDelta = TimeDelta::hours(1);

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A ticket was issued.
    TicketIssued,
    /// A ticket opened a stream.
    TicketRedeemed,
    /// A ticket was refused at `/stream`.
    TicketRejected,
    /// A subject was revoked.
    Revoked,
    /// A revocation was lifted.
    RevocationLifted,
}

impl AuditAction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TicketIssued => "ticket_issued",
            Self::TicketRedeemed => "ticket_redeemed",
            Self::TicketRejected => "ticket_rejected",
            Self::Revoked => "revoked",
            Self::RevocationLifted => "revocation_lifted",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        [
            Self::TicketIssued,
            Self::TicketRedeemed,
            Self::TicketRejected,
            Self::Revoked,
            Self::RevocationLifted,
        ]
        .into_iter()
        .find(|a| a.as_str() == raw)
    }
}

/// One audit row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    pub action: AuditAction,
    /// Why, for rejections (`malformed`, `unknown`, `expired`).
    pub reason: Option<String>,
    /// Whose ticket, or who was revoked.
    pub sub: Option<String>,
    /// The client's address.
    pub client_ip: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// The ticket's topics.
    pub topics: Vec<String>,
    /// A short hash of the ticket, to correlate rows; never the ticket.
    pub ticket_fingerprint: Option<String>,
    /// How many events the row stands for: 1, except for `ticket_rejected`,
    /// which counts the rejections of one client IP and reason in the minute
    /// starting at `at`'s minute (`at` being the first of them).
    pub count: u64,
}

/// The minute `at` falls in (minutes since the Unix epoch): rejected
/// presentations are counted per client IP, reason and minute.
pub fn minute_of(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis().div_euclid(60_000)
}

/// The name of the row a rejection is counted in; `None` for other actions,
/// whose rows stand alone.
fn bucket(record: &AuditRecord) -> Option<String> {
    (record.action == AuditAction::TicketRejected).then(|| {
        serde_json::json!([minute_of(record.at), record.reason, record.client_ip]).to_string()
    })
}

/// The statement `GET /admin/audit` runs for `query`.
fn select(backend: Backend, query: &AuditQuery) -> Statement {
    let mut select = Statement::new(
        backend,
        "SELECT at, action, reason, sub, client_ip, user_agent, topics, ticket_fingerprint, count FROM audit WHERE 1 = 1",
    );
    if let Some(sub) = &query.sub {
        // One seek of the `(epoch, sub, at)` index per epoch.
        select.push(match backend {
            Backend::Sqlite => " AND epoch IN (SELECT epoch FROM audit_epochs)",
            Backend::Postgres => " AND epoch = ANY(ARRAY(SELECT epoch FROM audit_epochs))",
        });
        select.push(" AND sub = ").text(sub.clone());
    }
    if let Some(since) = query.since {
        select.push(" AND at >= ").int(to_millis(since));
    }
    select
        .push(" ORDER BY at DESC, seq DESC LIMIT ")
        .int(i64::from(query.limit));
    select
}

/// The epoch a writer is filling: the region of the `(epoch, sub, at)` index
/// its rows go to. An epoch is named by the time (Unix ms) of its first batch;
/// each writer starts its own, and a new one after [`EPOCH_ROWS`] rows or
/// [`EPOCH_SPAN`], so that the region a batch lands in stays small.
#[derive(Debug, Default)]
pub struct AuditEpoch {
    current: Option<(i64, usize)>,
}

impl AuditEpoch {
    /// The epoch `records` go to, counting them in it.
    pub fn take(&mut self, records: &[AuditRecord]) -> i64 {
        let now = records.iter().map(|r| to_millis(r.at)).max().unwrap_or(0);
        let span = EPOCH_SPAN.num_milliseconds();
        let (epoch, rows) = match self.current {
            Some((epoch, rows)) if rows < EPOCH_ROWS && now.saturating_sub(epoch) < span => {
                (epoch, rows)
            }
            _ => (now, 0),
        };
        self.current = Some((epoch, rows.saturating_add(records.len())));
        epoch
    }
}

/// Which rows `GET /admin/audit` wants.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this subject's rows.
    pub sub: Option<String>,
    /// Only rows at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// At most this many rows.
    pub limit: u32,
}

impl Database {
    /// Stores `records` in `epoch` (see [`AuditEpoch`]), in one transaction.
    /// A `ticket_rejected` record adds its count to the row of its client IP,
    /// reason and minute if there is one.
    pub async fn insert_audit(&self, records: &[AuditRecord], epoch: i64) -> Result<(), DbError> {
        timed(self.insert_audit_now(records, epoch)).await
    }

    async fn insert_audit_now(&self, records: &[AuditRecord], epoch: i64) -> Result<(), DbError> {
        // One statement may not update a row twice (Postgres): merge first.
        let mut rows: Vec<(&AuditRecord, u64, Option<String>)> = Vec::with_capacity(records.len());
        let mut by_bucket: HashMap<String, usize> = HashMap::new();
        for record in records {
            let bucket = bucket(record);
            if let Some(name) = &bucket {
                if let Some(&row) = by_bucket.get(name) {
                    rows[row].1 = rows[row].1.saturating_add(record.count);
                    continue;
                }
                by_bucket.insert(name.clone(), rows.len());
            }
            rows.push((record, record.count, bucket));
        }
        let mut tx = self.pool().begin().await?;
        let mut listed =
            Statement::new(self.backend(), "INSERT INTO audit_epochs (epoch) VALUES (");
        listed.int(epoch).push(") ON CONFLICT (epoch) DO NOTHING");
        listed.query().execute(&mut *tx).await?;
        for chunk in rows.chunks(INSERT_CHUNK) {
            let mut insert = Statement::new(
                self.backend(),
                "INSERT INTO audit (at, action, reason, sub, client_ip, user_agent, topics, ticket_fingerprint, count, bucket, epoch) VALUES ",
            );
            for (i, (r, count, bucket)) in chunk.iter().enumerate() {
                insert
                    .push(if i == 0 { "(" } else { ", (" })
                    .int(to_millis(r.at))
                    .push(", ")
                    .text(r.action.as_str().to_owned())
                    .push(", ")
                    .text(r.reason.clone())
                    .push(", ")
                    .text(r.sub.clone())
                    .push(", ")
                    .text(r.client_ip.clone())
                    .push(", ")
                    .text(r.user_agent.clone())
                    .push(", ")
                    .text(serde_json::to_string(&r.topics).unwrap_or_else(|_| "[]".into()))
                    .push(", ")
                    .text(r.ticket_fingerprint.clone())
                    .push(", ")
                    .int(i64::try_from(*count).unwrap_or(i64::MAX))
                    .push(", ")
                    .text(bucket.clone())
                    .push(", ")
                    .int(epoch)
                    .push(")");
            }
            insert.push(" ON CONFLICT (bucket) DO UPDATE SET count = audit.count + excluded.count");
            insert.query().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Audit rows matching `query`, newest first.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, DbError> {
        let select = select(self.backend(), query);
        let rows = timed(select.query().fetch_all(self.pool())).await?;
        rows.iter()
            .map(|row| {
                let topics: String = row.try_get("topics")?;
                let action: String = row.try_get("action")?;
                Ok(AuditRecord {
                    at: from_millis(row.try_get("at")?),
                    action: AuditAction::parse(&action).unwrap_or(AuditAction::TicketRejected),
                    reason: row.try_get("reason")?,
                    sub: row.try_get("sub")?,
                    client_ip: row.try_get("client_ip")?,
                    user_agent: row.try_get("user_agent")?,
                    topics: serde_json::from_str(&topics).unwrap_or_default(),
                    ticket_fingerprint: row.try_get("ticket_fingerprint")?,
                    count: u64::try_from(row.try_get::<i64, _>("count")?).unwrap_or(0),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::from)
    }

    /// Deletes rows older than `older_than`, and the epochs left empty that
    /// no writer fills any more; returns how many rows went.
    pub async fn prune_audit(&self, older_than: DateTime<Utc>) -> Result<u64, DbError> {
        let delete = sqlx::query("DELETE FROM audit WHERE at < $1")
            .bind(to_millis(older_than))
            .execute(self.pool());
        let pruned = timed(delete).await?.rows_affected();
        let closed = to_millis(older_than - EPOCH_SPAN);
        let empty = sqlx::query(
            "DELETE FROM audit_epochs WHERE epoch < $1 \
             AND NOT EXISTS (SELECT 1 FROM audit WHERE audit.epoch = audit_epochs.epoch)",
        )
        .bind(closed)
        .execute(self.pool());
        timed(empty).await?;
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests;
