//! How a revocation or the shutdown reaches one open stream: a flag that
//! the stream reads on every poll without taking a lock, and the waker that
//! wakes it when the flag is set.
//!
//! A stream checks it before anything else each time it is polled (for every
//! event of a fan-out), so the check is one atomic load; a
//! `CancellationToken` took a mutex there, and another in its `Notify`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// Why a stream was closed from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Its subject, or the `jti` of the token it was opened under, was revoked.
    Revoked,
    /// The server is stopping.
    Shutdown,
}

const OPEN: u8 = 0;
const REVOKED: u8 = 1;
const SHUTDOWN: u8 = 2;

/// The flag and waker one stream shares with the registry that lists it.
#[derive(Debug, Default)]
pub(super) struct CloseSignal {
    state: AtomicU8,
    waker: AtomicWaker,
}

impl CloseSignal {
    /// Closes the stream for `why` and wakes it; the first reason stays.
    pub(super) fn close(&self, why: Closed) {
        let state = match why {
            Closed::Revoked => REVOKED,
            Closed::Shutdown => SHUTDOWN,
        };
        if self
            .state
            .compare_exchange(OPEN, state, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.waker.wake();
        }
    }

    fn get(&self) -> Option<Closed> {
        match self.state.load(Ordering::Acquire) {
            OPEN => None,
            REVOKED => Some(Closed::Revoked),
            _ => Some(Closed::Shutdown),
        }
    }
}

/// Resolves, with the reason, once the stream it belongs to is closed from
/// outside; polling it again after that gives the same reason.
#[derive(Debug)]
pub struct Closing(pub(super) Arc<CloseSignal>);

impl Future for Closing {
    type Output = Closed;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Closed> {
        if let Some(why) = self.0.get() {
            return Poll::Ready(why);
        }
        self.0.waker.register(cx.waker());
        // Closed between the check and the registration: its wake may have
        // found no waker yet.
        self.0.get().map_or(Poll::Pending, Poll::Ready)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::task::noop_waker_ref;

    use super::*;

    #[test]
    fn the_first_reason_stays_and_a_closed_stream_stays_closed() {
        let signal = Arc::new(CloseSignal::default());
        let mut closing = Closing(signal.clone());
        let mut cx = Context::from_waker(noop_waker_ref());
        assert_eq!(Pin::new(&mut closing).poll(&mut cx), Poll::Pending);
        signal.close(Closed::Revoked);
        signal.close(Closed::Shutdown);
        assert_eq!(
            Pin::new(&mut closing).poll(&mut cx),
            Poll::Ready(Closed::Revoked)
        );
        assert_eq!(
            Pin::new(&mut closing).poll(&mut cx),
            Poll::Ready(Closed::Revoked)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn closing_wakes_a_waiting_stream() {
        let signal = Arc::new(CloseSignal::default());
        let waiting = tokio::spawn(Closing(signal.clone()));
        // The spawned task runs first, finds the stream open and waits.
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        signal.close(Closed::Shutdown);
        // A lost wake-up would leave it waiting: the paused clock then jumps
        // to the timeout at once and the test fails instead of hanging.
        let woken = tokio::time::timeout(std::time::Duration::from_secs(1), waiting).await;
        assert_eq!(woken.expect("woken").expect("joined"), Closed::Shutdown);
    }
}
