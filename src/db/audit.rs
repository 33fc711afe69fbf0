//! The audit trail: one row per ticket issued or redeemed, and per
//! revocation; rejected presentations counted in one row per client IP,
//! reason and minute. Never the ticket itself: a short fingerprint of it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row as _;

use super::{Database, DbError, Statement, from_millis, timed, to_millis};

const INSERT_CHUNK: usize = 500;

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
    /// Stores `records` in one transaction. A `ticket_rejected` record adds
    /// its count to the row of its client IP, reason and minute if there is one.
    pub async fn insert_audit(&self, records: &[AuditRecord]) -> Result<(), DbError> {
        timed(self.insert_audit_now(records)).await
    }

    async fn insert_audit_now(&self, records: &[AuditRecord]) -> Result<(), DbError> {
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
        for chunk in rows.chunks(INSERT_CHUNK) {
            let mut insert = Statement::new(
                self.backend(),
                "INSERT INTO audit (at, action, reason, sub, client_ip, user_agent, topics, ticket_fingerprint, count, bucket) VALUES ",
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
        let mut select = Statement::new(
            self.backend(),
            "SELECT at, action, reason, sub, client_ip, user_agent, topics, ticket_fingerprint, count FROM audit WHERE 1 = 1",
        );
        if let Some(sub) = &query.sub {
            select.push(" AND sub = ").text(sub.clone());
        }
        if let Some(since) = query.since {
            select.push(" AND at >= ").int(to_millis(since));
        }
        select
            .push(" ORDER BY at DESC, seq DESC LIMIT ")
            .int(i64::from(query.limit));
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

    /// Deletes rows older than `older_than`; returns how many went.
    pub async fn prune_audit(&self, older_than: DateTime<Utc>) -> Result<u64, DbError> {
        let delete = sqlx::query("DELETE FROM audit WHERE at < $1")
            .bind(to_millis(older_than))
            .execute(self.pool());
        Ok(timed(delete).await?.rows_affected())
    }
}
