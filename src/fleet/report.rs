//! The reports in Redis: one hash `<prefix>topics` (field: an instance's id,
//! value: its counts as a JSON object, pattern → streams) and one sorted set
//! `<prefix>instances` (member: the id, score: the Unix time in seconds its
//! report expires). Every command names one key, so both work on a Redis
//! Cluster, wherever their slots are.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::redis_link::{RedisFailure, RedisLink};

/// How long, in real time, the two keys outlive the last report of any
/// instance: a fleet that is gone entirely leaves nothing behind.
const KEYS_TTL_MS: i64 = 60_000;

/// The names of the two keys.
#[derive(Debug)]
pub(super) struct Keys {
    topics: String,
    instances: String,
}

impl Keys {
    pub(super) fn new(link: &RedisLink) -> Self {
        Self {
            topics: link.key("topics"),
            instances: link.key("instances"),
        }
    }
}

/// A time as a sorted-set score: Unix seconds, to the millisecond.
fn score(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

/// The reports of the instances whose report has not expired at `now`, and
/// the ids of the reports that have (or that no live instance stands behind).
#[derive(Debug, Default)]
pub(super) struct Reports {
    /// Counts by instance id.
    pub(super) live: Vec<(String, BTreeMap<String, u64>)>,
    /// Ids whose report is to be removed.
    pub(super) stale: Vec<Vec<u8>>,
}

/// Writes `counts` as `instance`'s report, expiring at `expires`.
pub(super) async fn write(
    link: &RedisLink,
    keys: &Keys,
    instance: &str,
    counts: &BTreeMap<String, u64>,
    expires: DateTime<Utc>,
) -> Result<(), RedisFailure> {
    // Serializing a map of strings to numbers cannot fail.
    let report = serde_json::to_string(counts).unwrap_or_else(|_| "{}".to_owned());
    let report = &report;
    let expires = score(expires);
    link.run(|mut c| async move {
        // The expiry first: a reader never sees a report without one.
        redis::cmd("ZADD")
            .arg(&keys.instances)
            .arg(expires)
            .arg(instance)
            .query_async::<()>(&mut c)
            .await?;
        redis::cmd("HSET")
            .arg(&keys.topics)
            .arg(instance)
            .arg(report)
            .query_async::<()>(&mut c)
            .await?;
        for key in [&keys.instances, &keys.topics] {
            redis::cmd("PEXPIRE")
                .arg(key)
                .arg(KEYS_TTL_MS)
                .query_async::<()>(&mut c)
                .await?;
        }
        Ok(())
    })
    .await
}

/// Every report that has not expired at `now` but `own`'s (this instance
/// counts its own streams live), and those to remove.
pub(super) async fn read(
    link: &RedisLink,
    keys: &Keys,
    own: &str,
    now: DateTime<Utc>,
) -> Result<Reports, RedisFailure> {
    let after_now = format!("({}", score(now));
    let after_now = &after_now;
    let (live, reports) = link
        .run(|mut c| async move {
            let live: Vec<Vec<u8>> = redis::cmd("ZRANGEBYSCORE")
                .arg(&keys.instances)
                .arg(after_now)
                .arg("+inf")
                .query_async(&mut c)
                .await?;
            let reports: HashMap<Vec<u8>, Vec<u8>> = redis::cmd("HGETALL")
                .arg(&keys.topics)
                .query_async(&mut c)
                .await?;
            Ok((live, reports))
        })
        .await?;
    let live: HashSet<Vec<u8>> = live.into_iter().collect();
    let mut out = Reports::default();
    for (id, report) in reports {
        if id == own.as_bytes() {
            continue;
        }
        if !live.contains(&id) {
            out.stale.push(id);
            continue;
        }
        let id = String::from_utf8_lossy(&id).into_owned();
        match serde_json::from_slice::<BTreeMap<String, u64>>(&report) {
            Ok(counts) => out.live.push((id, counts)),
            Err(error) => {
                tracing::warn!(instance = %id, %error, "skipped an instance's unreadable stream counts");
            }
        }
    }
    Ok(out)
}

/// Removes the reports of `stale` and every expiry already past at `now`.
pub(super) async fn forget(
    link: &RedisLink,
    keys: &Keys,
    stale: &[Vec<u8>],
    now: DateTime<Utc>,
) -> Result<(), RedisFailure> {
    let now = score(now);
    link.run(|mut c| async move {
        if !stale.is_empty() {
            redis::cmd("HDEL")
                .arg(&keys.topics)
                .arg(stale)
                .query_async::<()>(&mut c)
                .await?;
        }
        // By score, not by id: an instance that reported again meanwhile stays.
        redis::cmd("ZREMRANGEBYSCORE")
            .arg(&keys.instances)
            .arg("-inf")
            .arg(now)
            .query_async::<()>(&mut c)
            .await
    })
    .await
}

/// The ids whose report expired by `now`.
pub(super) async fn expired(
    link: &RedisLink,
    keys: &Keys,
    now: DateTime<Utc>,
) -> Result<Vec<Vec<u8>>, RedisFailure> {
    let now = score(now);
    link.run(|mut c| async move {
        redis::cmd("ZRANGEBYSCORE")
            .arg(&keys.instances)
            .arg("-inf")
            .arg(now)
            .query_async(&mut c)
            .await
    })
    .await
}
