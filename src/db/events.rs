//! Event history: what `/publish` accepted, kept for replay on resume.

use chrono::{DateTime, Utc};
use sqlx::Row as _;
use uuid::Uuid;

use super::{Database, DbError, Statement, from_millis, timed, to_millis};
use crate::auth::TopicPattern;

/// Rows per multi-row `INSERT`, well under both engines' bind-parameter limits.
const INSERT_CHUNK: usize = 500;

/// A published event as stored (and as sent between instances).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredEvent {
    /// Its id (UUID v7).
    pub id: Uuid,
    /// The topic it was published to.
    pub topic: String,
    /// Its event type.
    pub kind: String,
    /// Its data, serialized JSON.
    pub data: String,
    /// When it was accepted.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub published_at: DateTime<Utc>,
}

/// What a resume gets from history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// Retained events after the resume point, oldest first.
    pub events: Vec<StoredEvent>,
    /// Whether events may be missing before `events`: the resume point is not
    /// retained (unknown or pruned), or more events followed it than a replay
    /// carries.
    pub gap: bool,
}

impl Database {
    /// Stores `events` in one transaction, in the order given.
    pub async fn insert_events(&self, events: &[StoredEvent]) -> Result<(), DbError> {
        timed(self.insert_events_now(events)).await
    }

    async fn insert_events_now(&self, events: &[StoredEvent]) -> Result<(), DbError> {
        let mut tx = self.pool().begin().await?;
        for chunk in events.chunks(INSERT_CHUNK) {
            let mut insert = Statement::new(
                self.backend(),
                "INSERT INTO events (id, topic, kind, data, published_at) VALUES ",
            );
            for (i, event) in chunk.iter().enumerate() {
                insert
                    .push(if i == 0 { "(" } else { ", (" })
                    .text(event.id.hyphenated().to_string())
                    .push(", ")
                    .text(event.topic.clone())
                    .push(", ")
                    .text(event.kind.clone())
                    .push(", ")
                    .text(event.data.clone())
                    .push(", ")
                    .int(to_millis(event.published_at))
                    .push(")");
            }
            insert.query().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The retained events on `patterns` published after the event `after`
    /// (all retained ones when `after` is not retained), at most `limit`, the
    /// newest kept when there are more.
    pub async fn replay(
        &self,
        patterns: &[TopicPattern],
        after: Uuid,
        limit: usize,
    ) -> Result<Replay, DbError> {
        let after_seq = sqlx::query_scalar("SELECT seq FROM events WHERE id = $1")
            .bind(after.hyphenated().to_string())
            .fetch_optional(self.pool());
        let after_seq: Option<i64> = timed(after_seq).await?;
        let mut select = Statement::new(
            self.backend(),
            "SELECT id, topic, kind, data, published_at FROM events WHERE ",
        );
        match after_seq {
            Some(seq) => select.push("seq > ").int(seq),
            None => select.push("1 = 1"),
        };
        push_topic_filter(&mut select, patterns);
        let newest = self.newest_first(select, limit).await?;
        Ok(Replay {
            gap: after_seq.is_none() || newest.gap,
            events: newest.events,
        })
    }

    /// Events published at or after `since`, at most `limit`, the newest
    /// kept when there are more (`gap` then).
    pub async fn published_since(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Replay, DbError> {
        let mut select = Statement::new(
            self.backend(),
            "SELECT id, topic, kind, data, published_at FROM events WHERE published_at >= ",
        );
        select.int(to_millis(since));
        self.newest_first(select, limit).await
    }

    /// Runs `select` (a `SELECT id, topic, kind, data, published_at … WHERE …`)
    /// for its newest `limit` rows; returns them oldest first.
    async fn newest_first(&self, mut select: Statement, limit: usize) -> Result<Replay, DbError> {
        select
            .push(" ORDER BY seq DESC LIMIT ")
            .int(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1));
        let rows = timed(select.query().fetch_all(self.pool())).await?;
        let truncated = rows.len() > limit;
        let mut events = rows
            .iter()
            .take(limit)
            .map(|row| {
                Ok(StoredEvent {
                    id: Uuid::parse_str(row.try_get::<&str, _>("id")?).unwrap_or_default(),
                    topic: row.try_get("topic")?,
                    kind: row.try_get("kind")?,
                    data: row.try_get("data")?,
                    published_at: from_millis(row.try_get("published_at")?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        events.reverse();
        Ok(Replay {
            events,
            gap: truncated,
        })
    }

    /// Deletes events older than `older_than`, then all but the newest
    /// `max_per_topic` of each topic; returns how many went.
    pub async fn prune_events(
        &self,
        older_than: DateTime<Utc>,
        max_per_topic: u32,
    ) -> Result<u64, DbError> {
        let aged = sqlx::query("DELETE FROM events WHERE published_at < $1")
            .bind(to_millis(older_than))
            .execute(self.pool());
        let aged = timed(aged).await?.rows_affected();
        let surplus = sqlx::query(
            "DELETE FROM events WHERE seq IN (
                SELECT seq FROM (
                    SELECT seq, ROW_NUMBER() OVER (PARTITION BY topic ORDER BY seq DESC) AS rank
                    FROM events
                ) ranked WHERE rank > $1
            )",
        )
        .bind(i64::from(max_per_topic))
        .execute(self.pool());
        let surplus = timed(surplus).await?.rows_affected();
        Ok(aged + surplus)
    }
}

/// ` AND (<one clause per pattern, OR-ed>)`.
fn push_topic_filter(query: &mut Statement, patterns: &[TopicPattern]) {
    if patterns.iter().any(|p| matches!(p, TopicPattern::All)) {
        return;
    }
    query.push(" AND (");
    for (i, pattern) in patterns.iter().enumerate() {
        if i > 0 {
            query.push(" OR ");
        }
        match pattern {
            TopicPattern::All => {}
            TopicPattern::Exact(topic) => {
                query.push("topic = ").text(topic.as_str().to_owned());
            }
            TopicPattern::Prefix(prefix) => {
                let below = format!("{}/", prefix.as_str());
                query
                    .push("(topic = ")
                    .text(prefix.as_str().to_owned())
                    .push(" OR substr(topic, 1, ")
                    .int(i64::try_from(below.len()).unwrap_or(i64::MAX))
                    .push(") = ")
                    .text(below)
                    .push(")");
            }
        }
    }
    if patterns.is_empty() {
        query.push("1 = 0");
    }
    query.push(")");
}
