//! Fan-out across instances through Redis pub/sub.
//!
//! Every instance holds one pub/sub connection, subscribed to two channels
//! under the configured prefix: `events` (every published event, as JSON) and
//! `notices` (revocations). A publish goes to Redis; each instance, the
//! publisher included, hands what arrives to its in-process [`MemoryBroker`],
//! which fans it out to the local streams. Events keep their ids, so a client
//! resumes on any instance from the shared history.
//!
//! When the subscription is lost, publishing answers `unavailable` until it is
//! back; open streams stay open. Once re-subscribed, the instance re-reads the
//! history of the outage (when history is kept) and delivers what its streams
//! missed, and asks for revocations to be reloaded.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use redis::AsyncCommands as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Broker, BrokerError, Event, Fanout, MemoryBroker, Notice, Subscription};
use crate::auth::TopicPattern;
use crate::clock::SharedClock;
use crate::db::{Database, ReplayBudget, StoredEvent};
use crate::metrics::Metrics;
use crate::redis_link::{BACKOFF_MAX, BACKOFF_MIN, RedisLink};

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

/// What the listener needs besides the broker's own parts.
pub struct RedisBrokerParts {
    /// The shared command connection.
    pub link: Arc<RedisLink>,
    /// History, to catch up after an outage; `None` when none is kept.
    pub history: Option<Database>,
    /// The clock events are stamped with.
    pub clock: SharedClock,
    /// Where local fan-out is counted.
    pub metrics: Arc<Metrics>,
    /// Ends the listener.
    pub shutdown: CancellationToken,
}

/// Fan-out through Redis pub/sub, to every instance of a deployment.
pub struct RedisBroker {
    link: Arc<RedisLink>,
    local: MemoryBroker,
    events_channel: String,
    notices_channel: String,
    subscribed: Arc<AtomicBool>,
    notices: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<Notice>>>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("events_channel", &self.events_channel)
            .field("subscribed", &self.subscribed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// Subscribes (an error if Redis does not answer) and starts the listener.
    pub async fn start(parts: RedisBrokerParts) -> Result<Self, BrokerError> {
        let events_channel = parts.link.key("events");
        let notices_channel = parts.link.key("notices");
        let channels = [events_channel.clone(), notices_channel.clone()];
        let first = subscribe(&parts.link, &channels)
            .await
            .map_err(BrokerError::Unavailable)?;
        let subscribed = Arc::new(AtomicBool::new(true));
        let local = MemoryBroker::new();
        let (notice_tx, notice_rx) = mpsc::unbounded_channel();
        let listener = Listener {
            local: local.clone(),
            channels,
            subscribed: subscribed.clone(),
            notices: notice_tx,
            seen: Seen::default(),
            parts: RedisBrokerParts {
                link: parts.link.clone(),
                ..parts
            },
        };
        tokio::spawn(listener.run(first));
        Ok(Self {
            link: parts.link,
            local,
            events_channel,
            notices_channel,
            subscribed,
            notices: parking_lot::Mutex::new(Some(notice_rx)),
        })
    }

    fn check_subscribed(&self) -> Result<(), BrokerError> {
        if self.subscribed.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(BrokerError::Unavailable(
                "not subscribed to Redis; reconnecting".into(),
            ))
        }
    }

    async fn send(&self, channel: &str, payload: String) -> Result<(), BrokerError> {
        let channel = channel.to_owned();
        self.link
            .run(|mut c| async move { c.publish::<_, _, ()>(channel, payload).await })
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))
    }
}

#[async_trait::async_trait]
impl Broker for RedisBroker {
    async fn publish(&self, event: Arc<Event>) -> Result<Fanout, BrokerError> {
        self.ready()?;
        let payload = serde_json::to_string(&event.to_stored())
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        self.send(&self.events_channel, payload).await?;
        // Delivered by the listener, when the event comes back from Redis.
        Ok(Fanout::default())
    }

    async fn subscribe(&self, patterns: &[TopicPattern]) -> Result<Subscription, BrokerError> {
        self.local.subscribe(patterns).await
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        self.check_subscribed()?;
        self.link
            .ping()
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))
    }

    fn ready(&self) -> Result<(), BrokerError> {
        self.check_subscribed()?;
        if self.link.is_healthy() {
            Ok(())
        } else {
            Err(BrokerError::Unavailable("Redis is unreachable".into()))
        }
    }

    async fn announce(&self, notice: &Notice) -> Result<(), BrokerError> {
        if *notice == Notice::Resync {
            return Ok(());
        }
        let payload =
            serde_json::to_string(notice).map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        self.send(&self.notices_channel, payload).await
    }

    fn notices(&self) -> Option<mpsc::UnboundedReceiver<Notice>> {
        self.notices.lock().take()
    }
}

/// The instance's pub/sub connection: commands (pings) and messages.
type PubSub = (redis::aio::PubSubSink, redis::aio::PubSubStream);

/// Opens the instance's pub/sub connection and subscribes to `channels`.
async fn subscribe(link: &RedisLink, channels: &[String; 2]) -> Result<PubSub, String> {
    let connect = async {
        let (mut sink, messages) = link.client().get_async_pubsub().await?.split();
        sink.subscribe(&channels[..]).await?;
        Ok::<_, redis::RedisError>((sink, messages))
    };
    match tokio::time::timeout(SUBSCRIBE_TIMEOUT, connect).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("cannot subscribe to Redis: {e}")),
        Err(_) => Err("cannot subscribe to Redis: timed out".into()),
    }
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
struct Listener {
    local: MemoryBroker,
    channels: [String; 2],
    subscribed: Arc<AtomicBool>,
    notices: mpsc::UnboundedSender<Notice>,
    seen: Seen,
    parts: RedisBrokerParts,
}

impl Listener {
    async fn run(mut self, first: PubSub) {
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
                match serde_json::from_slice::<StoredEvent>(payload) {
                    Ok(stored) => self.deliver(stored, "redis").await,
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
        let mut wait = BACKOFF_MIN;
        loop {
            match subscribe(&self.parts.link, &self.channels).await {
                Ok(messages) => return Some(messages),
                Err(error) => tracing::debug!(%error, "Redis still away"),
            }
            tokio::select! {
                () = self.parts.shutdown.cancelled() => return None,
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(BACKOFF_MAX);
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

    #[test]
    fn notices_travel_as_tagged_json_with_times_in_milliseconds() {
        let sub = crate::auth::Subject::parse("alice").expect("subject");
        let at = DateTime::from_timestamp_millis(1_795_000_000_123).expect("time");
        let revoked = Notice::Revoked {
            sub: sub.clone(),
            at,
        };
        let json = serde_json::to_string(&revoked).expect("JSON");
        assert_eq!(json, r#"{"revoked":{"sub":"alice","at":1795000000123}}"#);
        assert_eq!(
            serde_json::from_str::<Notice>(&json).expect("back"),
            revoked
        );
        let lifted = serde_json::from_str::<Notice>(r#"{"lifted":{"sub":"alice"}}"#);
        assert_eq!(lifted.expect("lifted"), Notice::Lifted { sub });
        assert!(
            serde_json::from_str::<Notice>(r#""resync""#).is_err(),
            "never sent"
        );
    }

    /// What the listener makes of an event payload from Redis.
    fn decode(payload: &str) -> Result<Event, InvalidEvent> {
        Event::from_stored(serde_json::from_str::<StoredEvent>(payload).expect("a StoredEvent"))
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
