//! One stream's queue of events: bounded, many senders (one per pattern in
//! the index), one receiver. A tokio `mpsc` channel did this in ~800 bytes
//! per stream held for its whole life (cache-padded halves and a first block
//! of 32 slots); this one is a mutex around a `VecDeque` that holds no
//! allocation while empty, ~100 bytes per idle stream.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

use super::Event;

struct State {
    events: VecDeque<Arc<Event>>,
    senders: usize,
    receiver_alive: bool,
    waker: Option<Waker>,
}

struct Shared {
    capacity: usize,
    state: Mutex<State>,
}

/// A queue of at most `capacity` events.
pub(crate) fn queue(capacity: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        capacity,
        state: Mutex::new(State {
            events: VecDeque::new(),
            senders: 1,
            receiver_alive: true,
            waker: None,
        }),
    });
    (Sender(shared.clone()), Receiver(shared))
}

/// Why an event was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendError {
    /// The queue holds `capacity` events.
    Full,
    /// The receiver is gone.
    Closed,
}

/// The sending side; clones share the queue.
pub(crate) struct Sender(Arc<Shared>);

impl Sender {
    /// Queues `event` unless the queue is full or its receiver gone.
    pub(crate) fn try_send(&self, event: Arc<Event>) -> Result<(), SendError> {
        let waker = {
            let mut state = self.0.state.lock();
            if !state.receiver_alive {
                return Err(SendError::Closed);
            }
            if state.events.len() >= self.0.capacity {
                return Err(SendError::Full);
            }
            state.events.push_back(event);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl Clone for Sender {
    fn clone(&self) -> Self {
        self.0.state.lock().senders += 1;
        Self(self.0.clone())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.0.state.lock();
            state.senders -= 1;
            if state.senders == 0 {
                state.waker.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The receiving side.
pub(crate) struct Receiver(Arc<Shared>);

impl Receiver {
    /// The next event; `None` once every sender is gone and the queue drained.
    pub(crate) async fn recv(&mut self) -> Option<Arc<Event>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Arc<Event>>> {
        let mut state = self.0.state.lock();
        if let Some(event) = state.take() {
            return Poll::Ready(Some(event));
        }
        if state.senders == 0 {
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waker => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next event if one is queued.
    #[cfg(test)]
    pub(crate) fn try_recv(&mut self) -> Option<Arc<Event>> {
        self.0.state.lock().take()
    }

    /// Whether no event is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.state.lock().events.is_empty()
    }
}

impl State {
    fn take(&mut self) -> Option<Arc<Event>> {
        let event = self.events.pop_front()?;
        if self.events.is_empty() {
            // Idle again: hold no allocation until the next event.
            self.events = VecDeque::new();
        }
        Some(event)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let events = {
            let mut state = self.0.state.lock();
            state.receiver_alive = false;
            state.waker = None;
            std::mem::take(&mut state.events)
        };
        drop(events);
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use futures_util::FutureExt as _;
    use uuid::Uuid;

    use super::*;
    use crate::auth::Topic;

    fn event() -> Arc<Event> {
        Arc::new(Event::new(
            Uuid::now_v7(),
            Topic::parse("t").expect("topic"),
            "message",
            "{}".into(),
            Utc::now(),
        ))
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_an_event_and_ends_with_its_last_sender() {
        let (tx, mut rx) = queue(2);
        let other = tx.clone();
        let waiting = tokio::spawn(async move {
            let first = rx.recv().await.map(|e| e.id());
            let second = rx.recv().await.map(|e| e.id());
            let end = rx.recv().await.is_none();
            (first, second, end)
        });
        tokio::task::yield_now().await;
        let (a, b) = (event(), event());
        tx.try_send(a.clone()).expect("queued");
        other.try_send(b.clone()).expect("queued");
        drop(tx);
        drop(other);
        let (first, second, end) = waiting.await.expect("receiver");
        assert_eq!((first, second), (Some(a.id()), Some(b.id())));
        assert!(end, "no sender left: the receiver ends");
    }

    #[test]
    fn it_holds_capacity_events_and_refuses_once_the_receiver_is_gone() {
        let (tx, mut rx) = queue(2);
        tx.try_send(event()).expect("queued");
        tx.try_send(event()).expect("queued");
        assert_eq!(tx.try_send(event()), Err(SendError::Full));
        assert!(rx.recv().now_or_never().flatten().is_some());
        tx.try_send(event()).expect("room again");
        assert!(!rx.is_empty());
        drop(rx);
        assert_eq!(tx.try_send(event()), Err(SendError::Closed));
    }
}
