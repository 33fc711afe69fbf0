//! Fan-out across instances through Redis sharded pub/sub.
//!
//! Every instance holds one pub/sub connection (RESP3; on a cluster, one per
//! node the cluster client needs), `SSUBSCRIBE`d to `notices` (revocations)
//! and to the event channels its own streams need (see [`super::shards`]
//! for the rule): subscribed when the first stream of a channel opens,
//! unsubscribed when the last closes. A publish `SPUBLISH`es the event, as
//! JSON, to its topic's channel, its prefixes' and `events:*`; each instance that
//! listens, the publisher included, hands what arrives to its in-process
//! [`MemoryBroker`], which fans it out to the local streams. Events keep
//! their ids, so a client resumes on any instance from the shared history.
//!
//! When the subscription is lost, publishing answers `unavailable` until it is
//! back; open streams stay open. Once re-subscribed, the instance re-reads the
//! history of the outage (when history is kept) and delivers what its streams
//! missed, and asks for revocations to be reloaded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use futures_util::future::try_join_all;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::needs::{NeedGuard, Needs, Request};
use super::redis_listener::{self, Listener, Shared};
use super::shards::Channels;
use super::{Broker, BrokerError, Event, Fanout, MemoryBroker, Notice, Subscription};
use crate::auth::TopicPattern;
use crate::clock::SharedClock;
use crate::db::{Database, StoredEvent};
use crate::metrics::Metrics;
use crate::redis_link::RedisLink;

/// An event as it travels on the event channels: this backend's own wire
/// format, JSON with the time in Unix milliseconds.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct WireEvent {
    id: Uuid,
    topic: String,
    kind: String,
    data: String,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    published_at: DateTime<Utc>,
}

impl From<&Event> for WireEvent {
    fn from(event: &Event) -> Self {
        Self {
            id: event.id(),
            topic: event.topic().as_str().to_owned(),
            kind: event.kind().to_owned(),
            data: event.data().to_string(),
            published_at: event.published_at(),
        }
    }
}

impl From<WireEvent> for StoredEvent {
    /// Checked like a stored one on the way in ([`Event::from_stored`]).
    fn from(wire: WireEvent) -> Self {
        Self {
            id: wire.id,
            topic: wire.topic,
            kind: wire.kind,
            data: wire.data,
            published_at: wire.published_at,
        }
    }
}

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
    channels: Channels,
    needs: Arc<Needs>,
    requests: mpsc::UnboundedSender<Request>,
    subscribed: Arc<AtomicBool>,
    notices: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<Notice>>>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("channels", &self.channels)
            .field("subscribed", &self.subscribed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// Subscribes (an error if Redis does not answer) and starts the listener.
    pub async fn start(parts: RedisBrokerParts) -> Result<Self, BrokerError> {
        let channels = Channels::new(&parts.link);
        let first = redis_listener::subscribe(&parts.link, std::slice::from_ref(&channels.notices))
            .await
            .map_err(BrokerError::Unavailable)?;
        let subscribed = Arc::new(AtomicBool::new(true));
        let local = MemoryBroker::new();
        let needs = Arc::new(Needs::default());
        let (notice_tx, notice_rx) = mpsc::unbounded_channel();
        let (requests, request_rx) = mpsc::unbounded_channel();
        let shared = Shared {
            channels: channels.clone(),
            needs: needs.clone(),
            requests: request_rx,
            subscribed: subscribed.clone(),
            notices: notice_tx,
        };
        let listener = Listener::new(
            local.clone(),
            shared,
            RedisBrokerParts {
                link: parts.link.clone(),
                ..parts
            },
        );
        tokio::spawn(listener.run(first));
        Ok(Self {
            link: parts.link,
            local,
            channels,
            needs,
            requests,
            subscribed,
            notices: parking_lot::Mutex::new(Some(notice_rx)),
        })
    }

    /// Has the listener subscribed to `channels` (those not yet), waiting
    /// until it has.
    async fn ensure_subscribed(&self, channels: Vec<String>) -> Result<(), BrokerError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.requests
            .send(Request::Subscribe(channels, done))
            .map_err(|_| BrokerError::Unavailable("the Redis listener stopped".into()))?;
        match tokio::time::timeout(SUBSCRIBE_WAIT, answer).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(BrokerError::Unavailable(e)),
            Ok(Err(_)) => Err(BrokerError::Unavailable(
                "the Redis listener stopped".into(),
            )),
            Err(_) => Err(BrokerError::Unavailable(
                "cannot subscribe to Redis: timed out".into(),
            )),
        }
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

    async fn send(&self, channel: &str, payload: &str) -> Result<(), BrokerError> {
        self.link
            .run(|mut c| async move {
                redis::cmd("SPUBLISH")
                    .arg(channel)
                    .arg(payload)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))
    }
}

/// Longest a stream waits for its channels to be subscribed to.
const SUBSCRIBE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

#[async_trait::async_trait]
impl Broker for RedisBroker {
    async fn publish(&self, event: Arc<Event>) -> Result<Fanout, BrokerError> {
        self.ready()?;
        let payload = serde_json::to_string(&WireEvent::from(&*event))
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        // All at once, each on its own: on a cluster the channels live on
        // several slots; on one Redis the connection pipelines them.
        let channels = self.channels.of_topic(event.topic());
        try_join_all(channels.iter().map(|channel| self.send(channel, &payload))).await?;
        // Delivered by the listener, when the event comes back from Redis.
        Ok(Fanout::default())
    }

    async fn subscribe(&self, patterns: &[TopicPattern]) -> Result<Subscription, BrokerError> {
        let mut channels: Vec<String> = patterns
            .iter()
            .map(|p| self.channels.of_pattern(p))
            .collect();
        channels.sort_unstable();
        channels.dedup();
        self.needs.add(&channels);
        let guard = NeedGuard {
            needs: self.needs.clone(),
            channels: channels.clone(),
            requests: self.requests.clone(),
        };
        // On failure the guard releases the channels again.
        self.ensure_subscribed(channels).await?;
        let Subscription {
            events,
            detached,
            _guard,
        } = self.local.subscribe(patterns).await?;
        Ok(Subscription {
            events,
            detached,
            _guard: Box::new((_guard, guard)),
        })
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
        self.send(&self.channels.notices, &payload).await
    }

    fn notices(&self) -> Option<mpsc::UnboundedReceiver<Notice>> {
        self.notices.lock().take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let jti = Notice::RevokedJti {
            jti: "t-1".into(),
            until: at,
        };
        let json = serde_json::to_string(&jti).expect("JSON");
        assert_eq!(
            json,
            r#"{"revoked_jti":{"jti":"t-1","until":1795000000123}}"#
        );
        assert_eq!(serde_json::from_str::<Notice>(&json).expect("back"), jti);
        assert!(
            serde_json::from_str::<Notice>(r#""resync""#).is_err(),
            "never sent"
        );
    }
}
