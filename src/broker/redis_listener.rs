//! The listening half of [`super::RedisBroker`]: the instance's sharded
//! pub/sub connection, the events and notices that arrive on it, the
//! channels it subscribes to as local streams come and go, and what happens
//! when it is lost (re-subscribe with backoff, catch up from history, have
//! revocations reloaded).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::{PushInfo, PushKind};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::needs::{Needs, Request};
use super::redis_broker::{RedisBrokerParts, WireEvent};
use super::shards::{Channels, ShardConnection};
use super::{Broker as _, Event, MemoryBroker, Notice};
use crate::db::{ReplayBudget, StoredEvent};
use crate::redis_link::RedisLink;

/// How often the subscription is pinged, so a connection that died without
/// closing (a network partition) is noticed.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// How far before the subscription was lost the catch-up reads history, to
/// cover events stored before but published after that moment.
const CATCH_UP_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(10);
/// Most events one catch-up delivers, and most bytes of their data (the
/// newest that fit): a catch-up holds no more than this in memory.
const CATCH_UP_LIMIT: ReplayBudget = ReplayBudget {
    events: 10_000,
    bytes: 4 * 1024 * 1024,
};
/// Ids of recently delivered events remembered, so a catch-up delivers none twice.
const SEEN_CAPACITY: usize = 16_384;

/// The instance's pub/sub connection and what arrives on it.
pub(super) type PubSub = (ShardConnection, mpsc::UnboundedReceiver<PushInfo>);

/// Opens the instance's pub/sub connection and subscribes to `channels`.
pub(super) async fn subscribe(link: &RedisLink, channels: &[String]) -> Result<PubSub, String> {
    let (pushes, arrivals) = mpsc::unbounded_channel();
    let mut connection = ShardConnection::open(link, pushes).await?;
    connection.subscribe(channels).await?;
    Ok((connection, arrivals))
}

/// Ids of the events delivered lately, oldest dropped first.
#[derive(Default)]
struct Seen {
    order: VecDeque<Uuid>,
    ids: HashSet<Uuid>,
}

impl Seen {
    /// Remembers `id`; whether it is new.
    fn insert(&mut self, id: Uuid) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        if self.order.len() == SEEN_CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        self.order.push_back(id);
        true
    }
}

/// What the listener shares with the broker.
pub(super) struct Shared {
    pub(super) channels: Channels,
    pub(super) needs: Arc<Needs>,
    pub(super) requests: mpsc::UnboundedReceiver<Request>,
    pub(super) subscribed: Arc<AtomicBool>,
    pub(super) notices: mpsc::UnboundedSender<Notice>,
}

/// The task behind the pub/sub connection.
pub(super) struct Listener {
    local: MemoryBroker,
    shared: Shared,
    /// The event channels subscribed to on the current connection.
    active: HashSet<String>,
    seen: Seen,
    parts: RedisBrokerParts,
}

/// Why [`Listener::drain`] returned.
enum Lost {
    Connection,
    Shutdown,
}

impl Listener {
    pub(super) fn new(local: MemoryBroker, shared: Shared, parts: RedisBrokerParts) -> Self {
        Self {
            local,
            shared,
            active: HashSet::new(),
            seen: Seen::default(),
            parts,
        }
    }

    pub(super) async fn run(mut self, first: PubSub) {
        let mut pubsub = first;
        loop {
            if let Lost::Shutdown = self.drain(&mut pubsub).await {
                return;
            }
            self.shared.subscribed.store(false, Ordering::Release);
            self.active.clear();
            let lost_at = self.parts.clock.now();
            tracing::warn!("lost the Redis subscription; publishing answers 503 until it is back");
            let Some(again) = self.resubscribe().await else {
                return;
            };
            pubsub = again;
            self.catch_up(lost_at).await;
            self.shared.subscribed.store(true, Ordering::Release);
            let _ = self.shared.notices.send(Notice::Resync);
            tracing::info!("re-subscribed to Redis");
        }
    }

    /// Handles messages and the broker's requests until the connection
    /// ends, stops answering pings, or the service stops.
    async fn drain(&mut self, (connection, arrivals): &mut PubSub) -> Lost {
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.reset();
        loop {
            tokio::select! {
                () = self.parts.shutdown.cancelled() => return Lost::Shutdown,
                push = arrivals.recv() => match push {
                    Some(push) if push.kind == PushKind::Disconnection => return Lost::Connection,
                    Some(push) => self.arrived(push).await,
                    None => return Lost::Connection,
                },
                Some(request) = self.shared.requests.recv() => {
                    if !self.handle(request, connection).await {
                        return Lost::Connection;
                    }
                }
                _ = ping.tick() => {
                    if !connection.ping().await {
                        return Lost::Connection;
                    }
                }
            }
        }
    }

    /// Subscribes or unsubscribes as the broker asks; `false` when the
    /// connection failed.
    async fn handle(&mut self, request: Request, connection: &mut ShardConnection) -> bool {
        match request {
            Request::Subscribe(channels, done) => {
                let missing: Vec<String> = channels
                    .into_iter()
                    .filter(|c| !self.active.contains(c) && self.shared.needs.needs(c))
                    .collect();
                let result = connection.subscribe(&missing).await;
                let ok = result.is_ok();
                if ok {
                    self.active.extend(missing);
                }
                let _ = done.send(result);
                ok
            }
            Request::Unsubscribe(channel) => {
                if self.shared.needs.needs(&channel) || !self.active.remove(&channel) {
                    return true;
                }
                connection.unsubscribe(&[channel]).await.is_ok()
            }
        }
    }

    /// Handles one push from Redis: an event, a notice, or a confirmation.
    async fn arrived(&mut self, push: PushInfo) {
        if push.kind != PushKind::SMessage && push.kind != PushKind::Message {
            return;
        }
        let (Some(redis::Value::BulkString(channel)), Some(redis::Value::BulkString(payload))) =
            (push.data.first(), push.data.get(1))
        else {
            return;
        };
        if self.shared.channels.carries_events(channel) {
            self.parts.metrics.broker_events_received.inc();
            match serde_json::from_slice::<WireEvent>(payload) {
                Ok(wire) => self.deliver(wire.into(), "redis").await,
                Err(error) => {
                    // Without the payload: it may carry anything.
                    self.parts.metrics.events_invalid.inc();
                    tracing::warn!(
                        category = ?error.classify(),
                        column = error.column(),
                        "unreadable event from Redis; skipped"
                    );
                }
            }
        } else if channel.as_slice() == self.shared.channels.notices.as_bytes() {
            match serde_json::from_slice::<Notice>(payload) {
                Ok(notice) => {
                    let _ = self.shared.notices.send(notice);
                }
                Err(error) => tracing::warn!(%error, "unreadable notice from Redis"),
            }
        }
    }

    /// Fans `stored` out locally, unless it was delivered already or is
    /// invalid (skipped and counted: it would end every stream it went to).
    async fn deliver(&mut self, stored: StoredEvent, source: &'static str) {
        if !self.seen.insert(stored.id) {
            return;
        }
        let id = stored.id;
        let event = match Event::from_stored(stored) {
            Ok(event) => event,
            Err(reason) => {
                self.parts.metrics.record_invalid_event(id, source, &reason);
                return;
            }
        };
        if let Ok(fanout) = self.local.publish(Arc::new(event)).await {
            self.parts.metrics.record_fanout(fanout);
        }
    }

    /// Subscribes again to the notices and every channel a local stream
    /// needs, backing off while Redis is away; `None` at shutdown.
    async fn resubscribe(&mut self) -> Option<PubSub> {
        let mut backoff = crate::redis_link::backoff();
        loop {
            let mut wanted = self.shared.needs.all();
            wanted.push(self.shared.channels.notices.clone());
            match subscribe(&self.parts.link, &wanted).await {
                Ok(pubsub) => {
                    wanted.pop();
                    self.active = wanted.into_iter().collect();
                    return Some(pubsub);
                }
                Err(error) => tracing::debug!(%error, "Redis still away"),
            }
            if !backoff.wait(&self.parts.shutdown).await {
                return None;
            }
        }
    }

    /// Delivers what history holds from shortly before `lost_at` and the
    /// streams have not had: events published by other instances while this
    /// one was not listening.
    async fn catch_up(&mut self, lost_at: DateTime<Utc>) {
        let Some(db) = self.parts.history.clone() else {
            return;
        };
        let since = lost_at
            .checked_sub_signed(CATCH_UP_MARGIN)
            .unwrap_or(lost_at);
        match db.published_since(since, CATCH_UP_LIMIT).await {
            Ok(missed) => {
                if missed.gap {
                    tracing::warn!(
                        events = CATCH_UP_LIMIT.events,
                        bytes = CATCH_UP_LIMIT.bytes,
                        "more events were published during the Redis outage than a catch-up delivers; streams may have missed some"
                    );
                }
                for stored in missed.events {
                    self.deliver(stored, "history").await;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the history of the Redis outage; streams may have missed events");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::InvalidEvent;

    /// What the listener makes of an event payload from Redis.
    fn decode(payload: &str) -> Result<Event, InvalidEvent> {
        Event::from_stored(
            serde_json::from_str::<WireEvent>(payload)
                .expect("a WireEvent")
                .into(),
        )
    }

    #[test]
    fn an_event_from_redis_is_checked_as_publish_would() {
        let id = Uuid::now_v7();
        let payload = |topic: &str, kind: &str, data: &str| {
            serde_json::json!({
                "id": id, "topic": topic, "kind": kind, "data": data, "published_at": 1_795_000_000_123_i64,
            })
            .to_string()
        };
        let good = decode(&payload("orders/42", "order.updated", r#"{"n":1}"#)).expect("valid");
        assert_eq!((good.id(), good.kind()), (id, "order.updated"));
        for (topic, kind, data, why) in [
            ("orders/42", "bad type\n", "1", InvalidEvent::Kind),
            ("orders/42", "ready", "1", InvalidEvent::Kind),
            ("orders/42", "close", "1", InvalidEvent::Kind),
            ("orders/42", "", "1", InvalidEvent::Kind),
            ("orders/42\n", "message", "1", InvalidEvent::Topic),
            ("", "message", "1", InvalidEvent::Topic),
            ("orders/42", "message", "not json", InvalidEvent::Data),
            ("orders/42", "message", "", InvalidEvent::Data),
        ] {
            assert_eq!(
                decode(&payload(topic, kind, data)).map(|e| e.id()),
                Err(why),
                "{topic:?} {kind:?} {data:?}"
            );
        }
        let huge = format!("\"{}\"", "x".repeat(crate::broker::MAX_EVENT_DATA));
        assert_eq!(
            decode(&payload("t", "message", &huge)).map(|e| e.id()),
            Err(InvalidEvent::Data)
        );
    }

    #[test]
    fn seen_forgets_the_oldest_first() {
        let mut seen = Seen::default();
        let first = Uuid::now_v7();
        assert!(seen.insert(first));
        assert!(!seen.insert(first));
        for _ in 0..SEEN_CAPACITY {
            assert!(seen.insert(Uuid::now_v7()));
        }
        assert_eq!(seen.ids.len(), SEEN_CAPACITY);
        assert!(seen.insert(first), "forgotten once full");
    }
}
