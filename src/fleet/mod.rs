//! The fleet's open streams per subscribed pattern (`GET /admin/topics`).
//!
//! Each instance counts its own streams ([`TopicCounts`]); with Redis, it
//! reports them every [`REPORT_EVERY`] into the keys of [`report`], each
//! report valid for [`REPORT_TTL`], so an instance that stops reporting
//! (crashed, cut off, stopped) drops out once its last report expires. A
//! reader sums the reports not yet expired by its own clock with its own
//! live counts, and removes the expired ones. Without Redis the fleet is this
//! instance. The metric `sse_ticket_topic_streams{pattern}` is this
//! instance's counts, capped at [`MAX_PATTERN_LABELS`] patterns.

mod counts;
mod report;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::TimeDelta;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use counts::{CountedStream, OTHER_PATTERNS, TopicCounts, capped};

use crate::auth::{TopicPattern, TopicPrefix};
use crate::clock::SharedClock;
use crate::metrics::TopicLabels;
use crate::redis_link::{RedisFailure, RedisLink};

/// How often, in clock time, an instance reports its counts.
pub const REPORT_EVERY: TimeDelta = TimeDelta::seconds(5);
/// How long a report counts: three reports missed and the instance drops out.
pub const REPORT_TTL: TimeDelta = TimeDelta::seconds(15);
/// Most patterns the metric names; the others are summed under `(other)`.
pub const MAX_PATTERN_LABELS: usize = 1000;

/// Why the fleet's counts cannot be given.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Redis, where the other instances report, does not answer.
    #[error("the other instances' stream counts cannot be read")]
    Redis(#[source] RedisFailure),
}

/// Open streams of one pattern, across the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatternStreams {
    /// The pattern, as subscribed (`orders/*`).
    pub pattern: String,
    /// Streams open on it.
    pub streams: u64,
}

/// This instance's counts, and the other instances' through Redis.
pub struct Fleet {
    instance: String,
    counts: TopicCounts,
    redis: Option<(Arc<RedisLink>, report::Keys)>,
    clock: SharedClock,
    /// The patterns the metric named at its last refresh.
    labelled: parking_lot::Mutex<Vec<String>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("instance", &self.instance)
            .field("redis", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// This instance, under a fresh random id; reporting through `link` when
    /// there is one.
    pub fn new(link: Option<Arc<RedisLink>>, clock: SharedClock) -> Self {
        Self {
            instance: Uuid::new_v4().to_string(),
            counts: TopicCounts::default(),
            redis: link.map(|link| {
                let keys = report::Keys::new(&link);
                (link, keys)
            }),
            clock,
            labelled: parking_lot::Mutex::default(),
        }
    }

    /// The id this instance reports under.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Counts a stream on `patterns` while the guard lives.
    pub fn open(&self, patterns: &[TopicPattern]) -> CountedStream {
        self.counts.open(patterns)
    }

    /// Open streams per pattern over every instance whose report has not
    /// expired, this one counted live; only patterns that start with
    /// `prefix` when given; sorted by pattern.
    pub async fn streams(
        &self,
        prefix: Option<&TopicPrefix>,
    ) -> Result<Vec<PatternStreams>, FleetError> {
        let mut total = self.counts.snapshot();
        if let Some((link, keys)) = &self.redis {
            let now = self.clock.now();
            let reports = report::read(link, keys, &self.instance, now)
                .await
                .map_err(FleetError::Redis)?;
            for (_, counts) in reports.live {
                add(&mut total, counts);
            }
            if let Err(error) = report::forget(link, keys, &reports.stale, now).await {
                tracing::warn!(%error, "cannot remove expired stream counts");
            }
        }
        Ok(total
            .into_iter()
            .filter(|(pattern, streams)| *streams > 0 && prefix.is_none_or(|p| p.starts(pattern)))
            .map(|(pattern, streams)| PatternStreams { pattern, streams })
            .collect())
    }

    /// Sets `gauge` to this instance's counts, at most
    /// [`MAX_PATTERN_LABELS`] patterns and `(other)`; patterns no longer
    /// open leave it.
    pub fn refresh_gauge(&self, gauge: &Family<TopicLabels, Gauge>) {
        let mut labelled = self.labelled.lock();
        let now = capped(self.counts.snapshot(), MAX_PATTERN_LABELS);
        let kept: HashSet<&str> = now.iter().map(|(pattern, _)| pattern.as_str()).collect();
        for gone in labelled.iter().filter(|p| !kept.contains(p.as_str())) {
            gauge.remove(&TopicLabels {
                pattern: gone.clone(),
            });
        }
        for (pattern, streams) in &now {
            gauge
                .get_or_create(&TopicLabels {
                    pattern: pattern.clone(),
                })
                .set(i64::try_from(*streams).unwrap_or(i64::MAX));
        }
        *labelled = now.into_iter().map(|(pattern, _)| pattern).collect();
    }

    /// Reports this instance's counts now and every [`REPORT_EVERY`] of
    /// clock time, removing expired reports as it goes, until `shutdown`.
    /// Nothing to do without Redis.
    pub async fn run_reporter(self: Arc<Self>, shutdown: CancellationToken) {
        let Some((link, keys)) = &self.redis else {
            return;
        };
        tracing::info!(instance = %self.instance, "reporting open streams per pattern to Redis");
        loop {
            let now = self.clock.now();
            let counts = self.counts.snapshot();
            let reported =
                report::write(link, keys, &self.instance, &counts, now + REPORT_TTL).await;
            let pruned = match report::expired(link, keys, now).await {
                Ok(expired) => report::forget(link, keys, &expired, now).await,
                Err(error) => Err(error),
            };
            match reported.and(pruned) {
                Ok(()) => {}
                // The prober says when Redis goes and comes back.
                Err(RedisFailure::Down) => {}
                Err(error) => tracing::warn!(%error, "cannot report the open streams per pattern"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.clock.sleep_until(now + REPORT_EVERY) => {}
            }
        }
    }
}

/// Adds another instance's `counts` into `total`, skipping what is not a pattern.
fn add(total: &mut BTreeMap<String, u64>, counts: BTreeMap<String, u64>) {
    for (pattern, streams) in counts {
        if TopicPattern::parse(&pattern).is_err() {
            tracing::warn!("skipped stream counts of a malformed pattern");
            continue;
        }
        let sum = total.entry(pattern).or_default();
        *sum = sum.saturating_add(streams);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn gauge_of(gauge: &Family<TopicLabels, Gauge>, pattern: &str) -> Option<i64> {
        gauge
            .get(&TopicLabels {
                pattern: pattern.to_owned(),
            })
            .map(|g| g.get())
    }

    #[test]
    fn the_metric_names_the_busiest_patterns_and_sums_the_rest() {
        let fleet = Fleet::new(None, Arc::new(ManualClock::default()));
        let pattern = |n: usize| TopicPattern::parse(&format!("t/{n:04}")).expect("pattern");
        let busy = TopicPattern::parse("busy/*").expect("pattern");
        let mut streams: Vec<CountedStream> = (0..MAX_PATTERN_LABELS + 5)
            .map(|n| fleet.open(&[pattern(n)]))
            .collect();
        let busy = [busy];
        streams.push(fleet.open(&busy));
        streams.push(fleet.open(&busy));
        let gauge = Family::<TopicLabels, Gauge>::default();

        fleet.refresh_gauge(&gauge);
        assert_eq!(gauge_of(&gauge, "busy/*"), Some(2));
        // 1,000 labels: busy/* and t/0000..t/0998 (ties by pattern); 6 summed.
        assert_eq!(gauge_of(&gauge, "t/0998"), Some(1));
        assert_eq!(gauge_of(&gauge, "t/0999"), None);
        assert_eq!(gauge_of(&gauge, OTHER_PATTERNS), Some(6));

        streams.clear();
        fleet.refresh_gauge(&gauge);
        assert_eq!(gauge_of(&gauge, "busy/*"), None, "closed patterns leave");
        assert_eq!(gauge_of(&gauge, OTHER_PATTERNS), None);
    }
}
