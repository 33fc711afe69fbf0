//! One round of the consumer, in one transaction: lock the topics of the
//! oldest rows, claim their rows, publish each topic's rows in order
//! (topics side by side), move invalid rows to the dead-letter table,
//! delete what is done, commit.
//!
//! Why topics are locked before rows: `FOR UPDATE SKIP LOCKED` alone lets
//! a second instance skip rows 1 and 2 of a topic that the first holds and
//! publish row 3 first. A transaction-level advisory lock per topic (by a
//! hash of it: a collision only makes two topics take turns) gives each
//! topic to one instance at a time; the row locks then only keep out
//! anyone else, and a row someone else holds stops its topic for the
//! round instead of being jumped.

use futures_util::future::join_all;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::row::{Outcome, Row, publish_row};
use super::table::Table;
use super::{OutboxError, timed};
use crate::hub::{Hub, PublishError};

/// Rows claimed per round at most.
pub(super) const BATCH: i64 = 128;
/// Rows whose topics a round looks at to choose the topics it locks.
const HEAD: i64 = 4 * BATCH;

/// What a round did.
#[derive(Debug, Default)]
pub(super) struct Report {
    /// Rows published and deleted.
    pub published: usize,
    /// Rows moved to the dead-letter table.
    pub dead: usize,
    /// Why a topic stopped for now, if one did (its rows stay).
    pub retry: Option<PublishError>,
}

/// Runs one round; an error leaves every row where it was.
pub(super) async fn run(pool: &PgPool, table: &Table, hub: &Hub) -> Result<Report, OutboxError> {
    let mut tx = timed(pool.begin()).await?;
    let head: Vec<(i32, i64, i64)> =
        timed(sqlx::query_as(&table.head).bind(HEAD).fetch_all(&mut *tx)).await?;
    let keys = lock_topics(&mut tx, table, &head).await?;
    let mut report = Report::default();
    if keys.is_empty() {
        timed(tx.commit()).await?;
        return Ok(report);
    }
    let rows = timed(
        sqlx::query(&table.claim)
            .bind(&keys)
            .bind(BATCH)
            .fetch_all(&mut *tx),
    )
    .await?
    .iter()
    .map(Row::read)
    .collect::<Result<Vec<_>, _>>()?;

    let outcomes = join_all(
        by_topic(rows)
            .iter()
            .map(|rows| publish_topic(hub, &table.name, rows)),
    )
    .await;
    let (mut done, mut dead_ids, mut reasons) = (Vec::new(), Vec::new(), Vec::new());
    for (id, outcome) in outcomes.into_iter().flatten() {
        match outcome {
            Outcome::Published => done.push(id),
            Outcome::Dead(reason) => {
                tracing::warn!(id, %reason, "outbox row moved to the dead-letter table");
                dead_ids.push(id);
                reasons.push(reason);
            }
            Outcome::Retry(error) => report.retry = Some(error),
        }
    }
    (report.published, report.dead) = (done.len(), dead_ids.len());
    if let Err(error) = finish(tx, table, done, dead_ids, reasons).await {
        if report.published > 0 {
            // Published but not deleted: a later round publishes them again.
            tracing::error!(%error, rows = report.published, "outbox rows were published but their deletion did not commit; they will be published again");
        }
        return Err(error);
    }
    Ok(report)
}

/// Moves the dead rows to the dead-letter table, deletes them and the
/// published ones, and commits.
async fn finish(
    mut tx: Transaction<'_, Postgres>,
    table: &Table,
    mut done: Vec<i64>,
    mut dead: Vec<i64>,
    reasons: Vec<String>,
) -> Result<(), OutboxError> {
    if !dead.is_empty() {
        timed(
            sqlx::query(&table.bury)
                .bind(&dead)
                .bind(&reasons)
                .execute(&mut *tx),
        )
        .await?;
    }
    done.append(&mut dead);
    if !done.is_empty() {
        timed(sqlx::query(&table.delete).bind(&done).execute(&mut *tx)).await?;
    }
    timed(tx.commit()).await
}

/// Locks topics of `head` (hash, first id, rows), oldest first, until their
/// rows could fill a batch; returns the hashes locked. Topics another
/// instance holds are left to it.
async fn lock_topics(
    conn: &mut PgConnection,
    table: &Table,
    head: &[(i32, i64, i64)],
) -> Result<Vec<i32>, OutboxError> {
    let mut locked = Vec::new();
    let mut rows = 0;
    let mut rest = head;
    while rows < BATCH && !rest.is_empty() {
        let mut take = 0;
        let mut wanted = rows;
        while take < rest.len() && wanted < BATCH {
            wanted += rest[take].2;
            take += 1;
        }
        let (chunk, later) = rest.split_at(take);
        let keys: Vec<i32> = chunk.iter().map(|(key, _, _)| *key).collect();
        let got: Vec<i32> = timed(
            sqlx::query_scalar(&table.lock)
                .bind(&keys)
                .fetch_all(&mut *conn),
        )
        .await?;
        rows += chunk
            .iter()
            .filter(|(key, _, _)| got.contains(key))
            .map(|(_, _, n)| n)
            .sum::<i64>();
        locked.extend(got);
        rest = later;
    }
    Ok(locked)
}

/// The rows of each topic hash, in id order, topics in the order of their
/// first row.
fn by_topic(rows: Vec<Row>) -> Vec<Vec<Row>> {
    let mut topics: Vec<Vec<Row>> = Vec::new();
    for row in rows {
        match topics
            .iter_mut()
            .find(|rows| rows.first().is_some_and(|first| first.key == row.key))
        {
            Some(rows) => rows.push(row),
            None => topics.push(vec![row]),
        }
    }
    topics
}

/// Publishes one topic's rows one after the other; stops at a row someone
/// else holds, or at one that must wait, so no row jumps one before it.
async fn publish_topic(hub: &Hub, table: &str, rows: &[Row]) -> Vec<(i64, Outcome)> {
    let mut outcomes = Vec::new();
    for row in rows.iter().take_while(|row| row.claimed) {
        let outcome = publish_row(hub, table, row).await;
        let wait = matches!(outcome, Outcome::Retry(_));
        outcomes.push((row.id, outcome));
        if wait {
            break;
        }
    }
    outcomes
}
