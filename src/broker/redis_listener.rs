//! The listening half of [`super::RedisBroker`]: the instance's pub/sub
//! connection, the events and notices that arrive on it, and what happens
//! when it is lost (re-subscribe with backoff, catch up from history, have
//! revocations reloaded).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::redis_broker::{RedisBrokerParts, WireEvent};
use super::{Broker as _, Event, MemoryBroker, Notice};
use crate::db::{ReplayBudget, StoredEvent};
use crate::redis_link::RedisLink;

/// How long subscribing, or a ping on the subscription, may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
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

/// The instance's pub/sub connection: commands (pings) and messages.
pub(super) type PubSub = (redis::aio::PubSubSink, redis::aio::PubSubStream);

/// Opens the instance's pub/sub connection and subscribes to `channels`.
pub(super) async fn subscribe(link: &RedisLink, channels: &[String; 2]) -> Result<PubSub, String> {
    // A cluster's nodes are tried in turn: a message published on any node
    // reaches the subscribers of every node.
    let mut last = String::from("no Redis node configured");
    for node in link.nodes() {
        let connect = async {
            let (mut sink, messages) = node.get_async_pubsub().await?.split();
            sink.subscribe(&channels[..]).await?;
            Ok::<_, redis::RedisError>((sink, messages))
        };
        match tokio::time::timeout(SUBSCRIBE_TIMEOUT, connect).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".into(),
        }
    }
    Err(format!("cannot subscribe to Redis: {last}"))
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

/// The task behind the pub/sub connection.
pub(super) struct Listener {
    local: MemoryBroker,
    channels: [String; 2],
    subscribed: Arc<AtomicBool>,
    notices: mpsc::UnboundedSender<Notice>,
    seen: Seen,
    parts: RedisBrokerParts,
}

impl Listener {
    pub(super) fn new(
        local: MemoryBroker,
        channels: [String; 2],
        subscribed: Arc<AtomicBool>,
        notices: mpsc::UnboundedSender<Notice>,
        parts: RedisBrokerParts,
    ) -> Self {
        Self {
            local,
            channels,
            subscribed,
            notices,
            seen: Seen::default(),
            parts,
        }
    }

    pub(super) async fn run(mut self, first: PubSub) {
        let mut pubsub = first;
        loop {
            self.drain(&mut pubsub).await;
            self.subscribed.store(false, Ordering::Release);
            if self.parts.shutdown.is_cancelled() {
                return;
            }
            let lost_at = self.parts.clock.now();
            tracing::warn!("lost the Redis subscription; publishing answers 503 until it is back");
            let Some(again) = self.resubscribe().await else {
                return;
            };
            pubsub = again;
            self.catch_up(lost_at).await;
            self.subscribed.store(true, Ordering::Release);
            let _ = self.notices.send(Notice::Resync);
            tracing::info!("re-subscribed to Redis");
        }
    }

    /// Handles messages until the connection ends, stops answering pings,
    /// or the service stops.
    async fn drain(&mut self, (sink, messages): &mut PubSub) {
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.reset();
        loop {
            let message = tokio::select! {
                () = self.parts.shutdown.cancelled() => return,
                message = messages.next() => message,
                _ = ping.tick() => {
                    match tokio::time::timeout(SUBSCRIBE_TIMEOUT, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => continue,
                        _ => return,
                    }
                }
            };
            let Some(message) = message else { return };
            let payload = message.get_payload_bytes();
            if message.get_channel_name() == self.channels[0] {
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
            } else {
                match serde_json::from_slice::<Notice>(payload) {
                    Ok(notice) => {
                        let _ = self.notices.send(notice);
                    }
                    Err(error) => tracing::warn!(%error, "unreadable notice from Redis"),
                }
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

    /// Subscribes again, backing off while Redis is away; `None` at shutdown.
    async fn resubscribe(&self) -> Option<PubSub> {
        let mut backoff = crate::redis_link::backoff();
        loop {
            match subscribe(&self.parts.link, &self.channels).await {
                Ok(messages) => return Some(messages),
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
