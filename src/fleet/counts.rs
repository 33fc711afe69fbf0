//! This instance's open streams per subscribed pattern: a stream counts once
//! for each pattern of its ticket, from the moment it opens until it ends,
//! whichever way it ends (the count is held by a guard the stream owns).

use std::collections::BTreeMap;
use std::sync::Arc;

use dashmap::DashMap;

use crate::auth::TopicPattern;

/// Open streams per pattern on this instance.
#[derive(Debug, Clone, Default)]
pub struct TopicCounts {
    by_pattern: Arc<DashMap<TopicPattern, u64>>,
}

/// Counts one stream under each of its patterns while it lives.
#[derive(Debug)]
pub struct CountedStream {
    by_pattern: Arc<DashMap<TopicPattern, u64>>,
    patterns: Vec<TopicPattern>,
}

impl TopicCounts {
    /// Counts a stream opened on `patterns` (each distinct pattern once)
    /// until the returned guard is dropped.
    pub fn open(&self, patterns: &[TopicPattern]) -> CountedStream {
        let mut patterns = patterns.to_vec();
        patterns.sort();
        patterns.dedup();
        for pattern in &patterns {
            *self.by_pattern.entry(pattern.clone()).or_default() += 1;
        }
        CountedStream {
            by_pattern: self.by_pattern.clone(),
            patterns,
        }
    }

    /// The patterns with at least one open stream, and how many, by pattern.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.by_pattern
            .iter()
            .filter(|entry| *entry.value() > 0)
            .map(|entry| (entry.key().to_string(), *entry.value()))
            .collect()
    }
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        for pattern in &self.patterns {
            if let Some(mut count) = self.by_pattern.get_mut(pattern) {
                *count = count.saturating_sub(1);
            }
            // Checked again under the shard lock: a stream opened meanwhile keeps it.
            self.by_pattern.remove_if(pattern, |_, count| *count == 0);
        }
    }
}

/// The label that stands for every pattern beyond the [`capped`] ones.
pub const OTHER_PATTERNS: &str = "(other)";

/// The `cap` patterns with the most streams (ties by pattern), and the sum
/// of the rest under [`OTHER_PATTERNS`] when there is a rest: a bounded
/// label set for the metric, however many patterns clients subscribe to.
pub fn capped(counts: BTreeMap<String, u64>, cap: usize) -> Vec<(String, u64)> {
    let mut ranked: Vec<(String, u64)> = counts.into_iter().collect();
    // Stable: equal counts stay in pattern order.
    ranked.sort_by_key(|(_, streams)| std::cmp::Reverse(*streams));
    if ranked.len() > cap {
        let other = ranked
            .drain(cap..)
            .fold(0u64, |sum, (_, n)| sum.saturating_add(n));
        ranked.push((OTHER_PATTERNS.to_owned(), other));
    }
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(raw: &[&str]) -> Vec<TopicPattern> {
        raw.iter()
            .map(|p| TopicPattern::parse(p).expect("pattern"))
            .collect()
    }

    #[test]
    fn a_stream_counts_once_per_pattern_while_it_lives() {
        let counts = TopicCounts::default();
        let one = counts.open(&patterns(&["orders/*", "user/alice", "orders/*"]));
        let two = counts.open(&patterns(&["orders/*"]));
        let expected: BTreeMap<String, u64> =
            [("orders/*".to_owned(), 2), ("user/alice".to_owned(), 1)].into();
        assert_eq!(counts.snapshot(), expected);
        drop(one);
        assert_eq!(counts.snapshot(), [("orders/*".to_owned(), 1)].into());
        drop(two);
        assert!(counts.snapshot().is_empty());
        assert!(counts.by_pattern.is_empty(), "no pattern is kept at zero");
    }

    #[test]
    fn beyond_the_cap_the_fewest_streams_are_summed_as_other() {
        let counts: BTreeMap<String, u64> = [
            ("a".into(), 1),
            ("b".into(), 5),
            ("c".into(), 2),
            ("d".into(), 2),
        ]
        .into();
        assert_eq!(
            capped(counts.clone(), 2),
            [
                ("b".to_owned(), 5),
                ("c".to_owned(), 2),
                ("(other)".to_owned(), 3)
            ]
        );
        assert_eq!(
            capped(counts.clone(), 4).len(),
            4,
            "no (other) when all fit"
        );
        assert!(capped(counts, 4).iter().all(|(p, _)| p != OTHER_PATTERNS));
    }
}
