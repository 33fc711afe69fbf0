//! Event history: what `/publish` accepted, kept for replay on resume.

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use sqlx::Row as _;
use uuid::Uuid;

use super::{Database, DbError, Statement, from_millis, timed, to_millis};
use crate::auth::TopicPattern;

/// Rows per multi-row `INSERT`, well under both engines' bind-parameter limits.
const INSERT_CHUNK: usize = 500;

/// A published event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    pub published_at: DateTime<Utc>,
}

/// The most a replay (or a catch-up) carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayBudget {
    /// Events.
    pub events: usize,
    /// Bytes of event data (the sum of `data` lengths).
    pub bytes: usize,
}

/// Where a resume starts in `seq` order.
#[derive(Debug, Clone, Copy)]
enum ResumeFrom {
    /// After a retained event: nothing is missing.
    After(i64),
    /// From the first event after an unknown id's time: a gap.
    Since(i64),
}

/// What a resume gets from history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// Retained events after the resume point, oldest first.
    pub events: Vec<StoredEvent>,
    /// Whether events may be missing before `events`: the resume point is not
    /// retained (unknown or pruned), or more events followed it than a replay
    /// carries (in number or in bytes).
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
            // An id stored already is the same event, published again by a
            // request that took over its Idempotency-Key: kept once.
            insert.push(" ON CONFLICT (id) DO NOTHING");
            insert.query().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether the history holds the event `id`.
    pub async fn holds_event(&self, id: Uuid) -> Result<bool, DbError> {
        let select = sqlx::query_scalar::<_, i64>("SELECT seq FROM events WHERE id = $1")
            .bind(id.hyphenated().to_string())
            .fetch_optional(self.pool());
        Ok(timed(select).await?.is_some())
    }

    /// The retained events on `patterns` published after the event `after`,
    /// the newest that fit in `budget` when there are more.
    ///
    /// The resume point is found by index, never by scanning the history: by
    /// its id when retained; else, for a UUID v7 (every id this service
    /// gives), by the time the id carries: the events with later ids, with
    /// `gap`. Any other id has no place in the history: nothing, with `gap`.
    pub async fn replay(
        &self,
        patterns: &[TopicPattern],
        after: Uuid,
        budget: ReplayBudget,
    ) -> Result<Replay, DbError> {
        timed(self.replay_now(patterns, after, budget)).await
    }

    async fn replay_now(
        &self,
        patterns: &[TopicPattern],
        after: Uuid,
        budget: ReplayBudget,
    ) -> Result<Replay, DbError> {
        let Some(from) = self.resume_point(after).await? else {
            return Ok(Replay {
                events: Vec::new(),
                gap: true,
            });
        };
        let range = |query: &mut Statement| {
            match from {
                ResumeFrom::After(seq) => query.push("seq > ").int(seq),
                ResumeFrom::Since(seq) => query.push("seq >= ").int(seq),
            };
            push_topic_filter(query, patterns);
        };
        let mut replay = self.newest_within(range, budget).await?;
        replay.gap |= matches!(from, ResumeFrom::Since(_));
        Ok(replay)
    }

    /// Where a resume after `after` starts; `None` when nothing can follow it.
    async fn resume_point(&self, after: Uuid) -> Result<Option<ResumeFrom>, DbError> {
        let known: Option<i64> = sqlx::query_scalar("SELECT seq FROM events WHERE id = $1")
            .bind(after.hyphenated().to_string())
            .fetch_optional(self.pool())
            .await?;
        if let Some(seq) = known {
            return Ok(Some(ResumeFrom::After(seq)));
        }
        // Not retained: pruned, or never stored. A UUID v7 is ordered by the
        // time it carries, and so are the ids this service gives events:
        // resume from the first retained event with a later id.
        if after.get_version() != Some(uuid::Version::SortRand) {
            return Ok(None);
        }
        Ok(
            sqlx::query_scalar("SELECT seq FROM events WHERE id > $1 ORDER BY id LIMIT 1")
                .bind(after.hyphenated().to_string())
                .fetch_optional(self.pool())
                .await?
                .map(ResumeFrom::Since),
        )
    }

    /// Events stored since the first one published at or after `since`, the
    /// newest that fit in `budget` (`gap` when there are more). That first
    /// one is found by index, so that a short window never scans the history.
    pub async fn published_since(
        &self,
        since: DateTime<Utc>,
        budget: ReplayBudget,
    ) -> Result<Replay, DbError> {
        timed(async {
            let Some(first) = self.first_published_since(to_millis(since)).await? else {
                return Ok(Replay::default());
            };
            let range = |query: &mut Statement| {
                query.push("seq >= ").int(first);
            };
            self.newest_within(range, budget).await
        })
        .await
    }

    /// The `seq` of the first event published at or after `millis`.
    async fn first_published_since(&self, millis: i64) -> Result<Option<i64>, DbError> {
        Ok(sqlx::query_scalar(
            "SELECT seq FROM events WHERE published_at >= $1 ORDER BY published_at, seq LIMIT 1",
        )
        .bind(millis)
        .fetch_optional(self.pool())
        .await?)
    }

    /// The events matching `range` (it writes the SQL after `WHERE`), the newest that fit in
    /// `budget`, oldest first; `gap` when older ones matched but did not fit.
    ///
    /// Two passes, so that neither this process nor the connection ever
    /// carries more than the budget: the sizes newest first, streamed and
    /// stopped at the budget; then the data of exactly the rows that fit.
    async fn newest_within(
        &self,
        range: impl Fn(&mut Statement),
        budget: ReplayBudget,
    ) -> Result<Replay, DbError> {
        let mut sizes = Statement::new(
            self.backend(),
            "SELECT seq, octet_length(data) AS size FROM events WHERE ",
        );
        range(&mut sizes);
        sizes.push(" ORDER BY seq DESC LIMIT ").int(
            i64::try_from(budget.events)
                .unwrap_or(i64::MAX)
                .saturating_add(1),
        );
        let mut fitting: Option<(i64, i64)> = None;
        let (mut count, mut bytes, mut gap) = (0_usize, 0_usize, false);
        {
            let mut rows = sizes.query().fetch(self.pool());
            while let Some(row) = rows.try_next().await? {
                let seq: i64 = row.try_get("seq")?;
                let size = usize::try_from(row.try_get::<i64, _>("size")?).unwrap_or(usize::MAX);
                if count == budget.events || size > budget.bytes - bytes {
                    gap = true;
                    break;
                }
                count += 1;
                bytes += size;
                fitting = Some((seq, fitting.map_or(seq, |(_, newest)| newest)));
            }
        }
        let Some((oldest, newest)) = fitting else {
            return Ok(Replay {
                events: Vec::new(),
                gap,
            });
        };
        let mut select = Statement::new(
            self.backend(),
            "SELECT id, topic, kind, data, published_at FROM events WHERE seq >= ",
        );
        select
            .int(oldest)
            .push(" AND seq <= ")
            .int(newest)
            .push(" AND (");
        range(&mut select);
        select.push(") ORDER BY seq");
        let mut events = Vec::with_capacity(count);
        let mut held = 0_usize;
        let mut rows = select.query().fetch(self.pool());
        while let Some(row) = rows.try_next().await? {
            let data: String = row.try_get("data")?;
            held += data.len();
            if held > budget.bytes {
                // Only if a row changed between the passes; keep what fits.
                gap = true;
                break;
            }
            events.push(StoredEvent {
                id: Uuid::parse_str(row.try_get::<&str, _>("id")?).unwrap_or_default(),
                topic: row.try_get("topic")?,
                kind: row.try_get("kind")?,
                data,
                published_at: from_millis(row.try_get("published_at")?),
            });
        }
        Ok(Replay { events, gap })
    }

    /// Deletes the events each [`Keep`] no longer keeps: older than its
    /// horizon, or beyond its newest `max_per_topic` of a topic; returns how
    /// many went. The first `keep` whose prefix covers a topic holds for it
    /// (give the longest prefixes first); `rest` for every other topic.
    pub async fn prune_events(&self, keep: &[Keep], rest: Retained) -> Result<u64, DbError> {
        let mut aged = Statement::new(self.backend(), "DELETE FROM events WHERE published_at < ");
        push_by_prefix(&mut aged, keep, rest, |r| to_millis(r.older_than));
        let aged = timed(aged.query().execute(self.pool()))
            .await?
            .rows_affected();
        let mut surplus = Statement::new(
            self.backend(),
            "DELETE FROM events WHERE seq IN (
                SELECT seq FROM (
                    SELECT seq, topic, ROW_NUMBER() OVER (PARTITION BY topic ORDER BY seq DESC) AS rank
                    FROM events
                ) ranked WHERE rank > ",
        );
        push_by_prefix(&mut surplus, keep, rest, |r| i64::from(r.max_per_topic));
        surplus.push(")");
        let surplus = timed(surplus.query().execute(self.pool()))
            .await?
            .rows_affected();
        Ok(aged + surplus)
    }
}

/// What the history keeps of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retained {
    /// Events published before this are deleted.
    pub older_than: DateTime<Utc>,
    /// Replayable events kept per topic; 0 keeps none.
    pub max_per_topic: u32,
}

/// What the history keeps of the topics under one prefix (a namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keep {
    /// The prefix: the topic itself and every topic below it.
    pub prefix: String,
    /// What is kept of each of them.
    pub retained: Retained,
}

/// `CASE WHEN <under prefix 1> THEN <value 1> … ELSE <rest's value> END`,
/// or the rest's value alone without namespaces (a `CASE` needs a `WHEN`).
fn push_by_prefix(
    query: &mut Statement,
    keep: &[Keep],
    rest: Retained,
    value: impl Fn(&Retained) -> i64,
) {
    if keep.is_empty() {
        query.int(value(&rest));
        return;
    }
    query.push("CASE");
    for Keep { prefix, retained } in keep {
        query.push(" WHEN ");
        push_under(query, prefix);
        query.push(" THEN ").int(value(retained));
    }
    query.push(" ELSE ").int(value(&rest)).push(" END");
}

/// `(topic = <prefix> OR <topic starts with prefix/>)`.
fn push_under(query: &mut Statement, prefix: &str) {
    let below = format!("{prefix}/");
    query
        .push("(topic = ")
        .text(prefix.to_owned())
        // The length is ours, not the request's: written out, it has the
        // integer type `substr` takes on both engines.
        .push(&format!(" OR substr(topic, 1, {}) = ", below.len()))
        .text(below)
        .push(")");
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
            TopicPattern::Prefix(prefix) => push_under(query, prefix.as_str()),
        }
    }
    if patterns.is_empty() {
        query.push("1 = 0");
    }
    query.push(")");
}
