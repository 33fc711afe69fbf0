//! In-process fan-out: subscriptions indexed by exact topic and by prefix, so a
//! publish looks up only the topic itself and its ancestors.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;

use super::queue::{self, SendError, Sender};
use super::{Broker, BrokerError, Detached, Event, Fanout, Subscription};
use crate::auth::{TopicPattern, minimal_cover};

/// Events one stream may have queued before it counts as lagging and is
/// detached (it can reconnect and resume).
pub const SUBSCRIBER_BUFFER: usize = 256;

type SubscriberId = u64;

#[derive(Clone)]
struct Subscriber {
    tx: Sender,
    detached: Arc<OnceLock<Detached>>,
    patterns: Arc<[TopicPattern]>,
}

/// Key under which `*` subscriptions sit in the prefix index: the ancestor of every topic.
const ROOT: &str = "";

/// Subscribers by the topic (or prefix) they named.
type Shelf = DashMap<Arc<str>, HashMap<SubscriberId, Subscriber>>;

#[derive(Default)]
struct Index {
    exact: Shelf,
    prefix: Shelf,
}

impl Index {
    fn slot(&self, pattern: &TopicPattern) -> (&Shelf, Arc<str>) {
        match pattern {
            TopicPattern::All => (&self.prefix, ROOT.into()),
            TopicPattern::Prefix(p) => (&self.prefix, p.as_str().into()),
            TopicPattern::Exact(t) => (&self.exact, t.as_str().into()),
        }
    }

    fn insert(&self, id: SubscriberId, subscriber: &Subscriber) {
        for pattern in subscriber.patterns.iter() {
            let (map, key) = self.slot(pattern);
            map.entry(key).or_default().insert(id, subscriber.clone());
        }
    }

    fn remove(&self, id: SubscriberId, patterns: &[TopicPattern]) {
        for pattern in patterns {
            let (map, key) = self.slot(pattern);
            if let Some(mut subs) = map.get_mut(&key) {
                subs.remove(&id);
            }
            map.remove_if(&key, |_, subs| subs.is_empty());
        }
    }
}

/// Fan-out within one process. Each stream has a bounded queue; a publish
/// never waits for a slow stream: a full queue detaches that stream.
#[derive(Clone, Default)]
pub struct MemoryBroker {
    index: Arc<Index>,
    next_id: Arc<AtomicU64>,
}

impl MemoryBroker {
    /// An empty broker.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Removes a subscription from the index when its stream goes away.
struct Unsubscribe {
    index: Arc<Index>,
    id: SubscriberId,
    patterns: Arc<[TopicPattern]>,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        self.index.remove(self.id, &self.patterns);
    }
}

#[async_trait::async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, event: Arc<Event>) -> Result<Fanout, BrokerError> {
        let mut delivered = 0;
        let mut lagging = Vec::new();
        let mut offer = |subs: &HashMap<SubscriberId, Subscriber>| {
            for (id, sub) in subs {
                match sub.tx.try_send(event.clone()) {
                    Ok(()) => delivered += 1,
                    Err(SendError::Full) => lagging.push((*id, sub.clone())),
                    // The stream is gone; its guard is unsubscribing it.
                    Err(SendError::Closed) => {}
                }
            }
        };
        if let Some(subs) = self.index.exact.get(event.topic().as_str()) {
            offer(&subs);
        }
        for prefix in std::iter::once(ROOT).chain(event.topic().prefixes()) {
            if let Some(subs) = self.index.prefix.get(prefix) {
                offer(&subs);
            }
        }
        // Detach outside the index's locks: dropping every sender of a lagging
        // stream ends it once it has drained what it already holds.
        let detached = lagging.len();
        for (id, sub) in lagging {
            let _ = sub.detached.set(Detached::Lagging);
            self.index.remove(id, &sub.patterns);
        }
        Ok(Fanout {
            delivered,
            detached,
        })
    }

    async fn subscribe(&self, patterns: &[TopicPattern]) -> Result<Subscription, BrokerError> {
        let (tx, events) = queue::queue(SUBSCRIBER_BUFFER);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Patterns that overlap would deliver an event twice; keep only the widest.
        let patterns: Arc<[TopicPattern]> = minimal_cover(patterns).into();
        let detached = Arc::new(OnceLock::new());
        let subscriber = Subscriber {
            tx,
            detached: detached.clone(),
            patterns: patterns.clone(),
        };
        self.index.insert(id, &subscriber);
        Ok(Subscription {
            events,
            detached,
            _guard: Box::new(Unsubscribe {
                index: self.index.clone(),
                id,
                patterns,
            }),
        })
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::auth::Topic;

    fn event(topic: &str) -> Arc<Event> {
        Arc::new(Event::new(
            Uuid::now_v7(),
            Topic::parse(topic).expect("topic"),
            "message",
            "{}".into(),
            Utc::now(),
        ))
    }

    fn patterns(raw: &[&str]) -> Vec<TopicPattern> {
        raw.iter()
            .map(|p| TopicPattern::parse(p).expect("pattern"))
            .collect()
    }

    #[tokio::test]
    async fn events_reach_matching_subscriptions_once() {
        let broker = MemoryBroker::new();
        let mut overlapping = broker
            .subscribe(&patterns(&["orders/42", "orders/*", "*"]))
            .await
            .expect("sub");
        let mut other = broker
            .subscribe(&patterns(&["user/bob"]))
            .await
            .expect("sub");
        assert_eq!(
            broker
                .publish(event("orders/42"))
                .await
                .expect("publish")
                .delivered,
            1
        );
        assert_eq!(
            overlapping.recv().await.expect("event").topic().as_str(),
            "orders/42"
        );
        assert!(overlapping.events.try_recv().is_none(), "delivered once");
        assert!(other.events.try_recv().is_none());
    }

    #[tokio::test]
    async fn dropping_a_subscription_empties_the_index() {
        let broker = MemoryBroker::new();
        let sub = broker
            .subscribe(&patterns(&["a/*", "b", "*"]))
            .await
            .expect("sub");
        drop(sub);
        assert!(broker.index.exact.is_empty());
        assert!(broker.index.prefix.is_empty());
        assert_eq!(
            broker
                .publish(event("a/b"))
                .await
                .expect("publish")
                .delivered,
            0
        );
    }

    #[tokio::test]
    async fn a_full_buffer_detaches_only_the_slow_subscription() {
        let broker = MemoryBroker::new();
        let mut slow = broker.subscribe(&patterns(&["t"])).await.expect("sub");
        let mut fast = broker.subscribe(&patterns(&["t"])).await.expect("sub");
        for _ in 0..SUBSCRIBER_BUFFER {
            broker.publish(event("t")).await.expect("publish");
            fast.recv().await.expect("fast keeps up");
        }
        let fanout = broker.publish(event("t")).await.expect("publish");
        assert_eq!(
            fanout,
            Fanout {
                delivered: 1,
                detached: 1
            }
        );
        assert_eq!(slow.detached(), Some(Detached::Lagging));
        let mut drained = 0;
        while slow.recv().await.is_some() {
            drained += 1;
        }
        assert_eq!(drained, SUBSCRIBER_BUFFER);
        assert!(fast.recv().await.is_some());
    }
}
