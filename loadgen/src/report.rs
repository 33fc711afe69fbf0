//! Figures and how they are printed: latency histograms, failures by kind,
//! a human summary on stderr and one JSON line on stdout.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use crate::http::Failure;

/// A latency histogram in microseconds (3 significant figures, grows as needed).
#[derive(Debug, Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Self {
        // Three significant figures is within what hdrhistogram accepts.
        Self(Histogram::new(3).expect("3 significant figures is valid"))
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        self.record_micros(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records one latency given in microseconds.
    pub fn record_micros(&mut self, micros: u64) {
        // The histogram grows to fit; past what it can ever track, clamp.
        if self.0.record(micros.max(1)).is_err() {
            self.0.saturating_record(micros.max(1));
        }
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Self) {
        // Cannot fail: this histogram resizes itself to any value.
        let _ = self.0.add(&other.0);
    }

    /// The value at quantile `q` (0..=1), in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    /// The largest value, in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.0.max() as f64 / 1000.0
    }

    /// `p50_ms`, `p90_ms`, `p99_ms`, `max_ms` under `prefix` (`open_p50_ms`, …).
    pub fn json_into(&self, prefix: &str, out: &mut Map<String, Value>) {
        for (name, value) in [
            ("p50_ms", self.quantile_ms(0.5)),
            ("p90_ms", self.quantile_ms(0.9)),
            ("p99_ms", self.quantile_ms(0.99)),
            ("max_ms", self.max_ms()),
        ] {
            out.insert(format!("{prefix}{name}"), json!(round3(value)));
        }
    }

    /// `p50 1.234 ms, p90 …, p99 …, max …`.
    pub fn human(&self) -> String {
        format!(
            "p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            self.quantile_ms(0.5),
            self.quantile_ms(0.9),
            self.quantile_ms(0.99),
            self.max_ms()
        )
    }
}

/// Failures counted by [`Failure::key`] (status code or kind).
#[derive(Debug, Clone, Default)]
pub struct Errors(BTreeMap<String, u64>);

impl Errors {
    /// Counts one failure.
    pub fn add(&mut self, failure: &Failure) {
        self.add_key(failure.key(), 1);
    }

    /// Counts `n` failures under `key`.
    pub fn add_key(&mut self, key: String, n: u64) {
        *self.0.entry(key).or_default() += n;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Self) {
        for (key, n) in &other.0 {
            self.add_key(key.clone(), *n);
        }
    }

    /// The total.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// As a JSON object `{"429": 3, "timeout": 1}`.
    pub fn to_json(&self) -> Value {
        json!(self.0)
    }

    /// `none` or `4 (429: 3, timeout: 1)`.
    pub fn human(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        let each = self
            .0
            .iter()
            .map(|(key, n)| format!("{key}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!("{} ({each})", self.total())
    }
}

/// Rounds to 3 decimals, for readable JSON.
pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// `count / seconds`, 0 for an empty interval.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Prints the human summary (stderr) and then the JSON line (stdout).
pub fn emit(summary: &str, line: &Value) {
    eprintln!("{}", summary.trim_end());
    println!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_milliseconds() {
        let mut latency = Latency::new();
        for ms in 1..=100 {
            latency.record(Duration::from_millis(ms));
        }
        let mut other = Latency::new();
        other.record(Duration::from_secs(2));
        latency.merge(&other);
        assert_eq!(latency.0.len(), 101);
        let p50 = latency.quantile_ms(0.5);
        assert!((50.0..=51.1).contains(&p50), "{p50}");
        assert!((latency.max_ms() - 2000.0).abs() < 2.0);
        let mut map = Map::new();
        latency.json_into("open_", &mut map);
        assert!(map.contains_key("open_p99_ms"));
    }

    #[test]
    fn errors_by_key() {
        let mut errors = Errors::default();
        errors.add(&Failure::Status(hyper::StatusCode::TOO_MANY_REQUESTS));
        errors.add(&Failure::Timeout);
        errors.add(&Failure::Timeout);
        assert_eq!(errors.total(), 3);
        assert_eq!(errors.to_json(), json!({"429": 1, "timeout": 2}));
        assert_eq!(errors.human(), "3 (429: 1, timeout: 2)");
    }
}
