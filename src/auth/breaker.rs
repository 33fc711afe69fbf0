//! The circuit breaker in front of an upstream: after [`FAILURES_TO_OPEN`]
//! failures in a row it stops asking for [`OPEN_FOR`], then lets one probe
//! through (half-open) whose outcome closes it or opens it again.
//!
//! Hand-written rather than taken from a crate (`failsafe`, say): those read a
//! global clock, and the service's expiry decisions all read the injected
//! [`crate::clock::Clock`], so tests advance time instead of sleeping.

use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;

/// Consecutive failures that open the breaker.
pub const FAILURES_TO_OPEN: u32 = 5;
/// How long an open breaker refuses before it lets a probe through.
pub const OPEN_FOR: TimeDelta = TimeDelta::seconds(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Asking; `failures` in a row so far.
    Closed { failures: u32 },
    /// Not asking until `until`.
    Open { until: DateTime<Utc> },
    /// One probe is asking; everyone else is refused until it answers.
    Probing { until: DateTime<Utc> },
}

/// A breaker's state, shared by every request to one upstream.
#[derive(Debug)]
pub(crate) struct Breaker {
    state: Mutex<State>,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }
}

/// Permission to ask the upstream once; say how it went with
/// [`Permit::succeeded`] or [`Permit::failed`]. A probe dropped without a
/// word (its request went away) lets the next request probe instead.
#[derive(Debug)]
#[must_use]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    settled: bool,
}

impl Breaker {
    /// A permit to ask at `now`, or `Err(until)`: open until then.
    pub(crate) fn admit(&self, now: DateTime<Utc>) -> Result<Permit<'_>, DateTime<Utc>> {
        let mut state = self.state.lock();
        match *state {
            State::Closed { .. } => {}
            State::Open { until } if now >= until => *state = State::Probing { until },
            State::Open { until } | State::Probing { until } => return Err(until),
        }
        Ok(Permit {
            breaker: self,
            settled: false,
        })
    }

    /// `Some(until)` while it refuses without asking (open, and not yet
    /// `until`, or a probe is out); `None` while requests may ask.
    pub(crate) fn open_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match *self.state.lock() {
            State::Closed { .. } => None,
            State::Open { until } => (now < until).then_some(until),
            State::Probing { until } => Some(until),
        }
    }

    /// Whether it has opened and no probe has succeeded since.
    #[cfg(test)]
    fn is_open(&self) -> bool {
        !matches!(*self.state.lock(), State::Closed { .. })
    }
}

impl Permit<'_> {
    /// The upstream answered: the breaker closes (or stays closed).
    pub(crate) fn succeeded(mut self) {
        self.settled = true;
        *self.breaker.state.lock() = State::Closed { failures: 0 };
    }

    /// The upstream failed at `now`: one more failure in a row; the breaker
    /// opens at [`FAILURES_TO_OPEN`], and again at once after a failed probe.
    /// Returns whether it is open now.
    pub(crate) fn failed(mut self, now: DateTime<Utc>) -> bool {
        self.settled = true;
        let mut state = self.breaker.state.lock();
        let failures = match *state {
            State::Closed { failures } => failures.saturating_add(1),
            State::Open { .. } | State::Probing { .. } => FAILURES_TO_OPEN,
        };
        *state = if failures >= FAILURES_TO_OPEN {
            State::Open {
                until: now + OPEN_FOR,
            }
        } else {
            State::Closed { failures }
        };
        failures >= FAILURES_TO_OPEN
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut state = self.breaker.state.lock();
        if let State::Probing { until } = *state {
            *state = State::Open { until };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_five_failures_in_a_row_and_a_probe_decides_after_five_seconds() {
        let breaker = Breaker::default();
        let now = Utc::now();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            assert!(!breaker.admit(now).expect("closed").failed(now));
        }
        // A success in between starts the count again.
        breaker.admit(now).expect("closed").succeeded();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            assert!(!breaker.admit(now).expect("closed").failed(now));
        }
        assert!(breaker.admit(now).expect("closed").failed(now));
        assert_eq!(breaker.admit(now).err(), Some(now + OPEN_FOR));
        assert_eq!(breaker.open_until(now), Some(now + OPEN_FOR));

        let later = now + OPEN_FOR;
        assert_eq!(breaker.open_until(later), None, "ready to probe");
        let probe = breaker.admit(later).expect("one probe");
        assert!(breaker.admit(later).is_err(), "only one probe at a time");
        assert!(probe.failed(later), "a failed probe opens it again");
        assert!(breaker.admit(later).is_err());

        let again = later + OPEN_FOR;
        breaker.admit(again).expect("a probe").succeeded();
        assert!(!breaker.is_open());
        assert!(breaker.admit(again).is_ok());
    }

    #[test]
    fn a_probe_that_goes_away_lets_the_next_request_probe() {
        let breaker = Breaker::default();
        let now = Utc::now();
        for _ in 0..FAILURES_TO_OPEN {
            let _ = breaker.admit(now).expect("closed").failed(now);
        }
        let later = now + OPEN_FOR;
        drop(breaker.admit(later).expect("a probe"));
        assert!(breaker.admit(later).is_ok(), "the next one probes");
    }
}
