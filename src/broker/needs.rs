//! Which channels the local streams need, counted, and what the broker
//! asks of the listener as streams come and go.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

/// What the broker asks of the listener, in order.
pub(super) enum Request {
    /// Make sure the connection is subscribed to these channels (those
    /// some stream still needs); answers once it is, or why not.
    Subscribe(Vec<String>, oneshot::Sender<Result<(), String>>),
    /// Unsubscribe from a channel whose last stream closed.
    Unsubscribe(String),
}

/// How many local streams need each channel.
#[derive(Debug, Default)]
pub(super) struct Needs {
    counts: parking_lot::Mutex<HashMap<String, usize>>,
}

impl Needs {
    /// Counts one more stream on each of `channels`; those it is the first of.
    pub(super) fn add(&self, channels: &[String]) -> Vec<String> {
        let mut counts = self.counts.lock();
        let mut first = Vec::new();
        for channel in channels {
            let count = counts.entry(channel.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                first.push(channel.clone());
            }
        }
        first
    }

    /// Counts one fewer stream on each of `channels`; those no stream needs now.
    pub(super) fn remove(&self, channels: &[String]) -> Vec<String> {
        let mut counts = self.counts.lock();
        let mut last = Vec::new();
        for channel in channels {
            if let Some(count) = counts.get_mut(channel) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    counts.remove(channel);
                    last.push(channel.clone());
                }
            }
        }
        last
    }

    /// Whether some stream needs `channel`.
    pub(super) fn needs(&self, channel: &str) -> bool {
        self.counts.lock().contains_key(channel)
    }

    /// Every channel some stream needs.
    pub(super) fn all(&self) -> Vec<String> {
        self.counts.lock().keys().cloned().collect()
    }
}

/// Held by a stream's subscription: dropping it releases its channels.
pub(super) struct NeedGuard {
    pub(super) needs: Arc<Needs>,
    pub(super) channels: Vec<String>,
    pub(super) requests: mpsc::UnboundedSender<Request>,
}

impl Drop for NeedGuard {
    fn drop(&mut self) {
        for channel in self.needs.remove(&self.channels) {
            let _ = self.requests.send(Request::Unsubscribe(channel));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_is_needed_from_its_first_stream_to_its_last() {
        let needs = Needs::default();
        let ch = |s: &str| vec![s.to_owned()];
        assert_eq!(needs.add(&ch("a")), ch("a"));
        assert!(needs.add(&ch("a")).is_empty());
        assert!(needs.remove(&ch("a")).is_empty());
        assert!(needs.needs("a"));
        assert_eq!(needs.remove(&ch("a")), ch("a"));
        assert!(!needs.needs("a"));
        assert!(needs.remove(&ch("a")).is_empty(), "never below zero");
    }
}
