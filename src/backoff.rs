//! Exponential backoff for the loops that wait for a backend to come back.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Waits that double from `min` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `min`, doubles up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { next: min, max }
    }

    /// The next wait: the last one doubled, at most the maximum.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// Sleeps the next wait; `false` if `shutdown` came first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let wait = self.next_wait();
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_double_up_to_the_most_and_end_at_shutdown() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(50), ms(150));
        let waits: Vec<_> = (0..4).map(|_| backoff.next_wait()).collect();
        assert_eq!(waits, [ms(50), ms(100), ms(150), ms(150)]);
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        assert!(!Backoff::new(ms(60_000), ms(60_000)).wait(&shutdown).await);
    }
}
