//! Sharded fan-out: which Redis channel an event goes to and which channels
//! a stream needs, how many local streams need each channel, and the
//! instance's connection that `SSUBSCRIBE`s to exactly those.
//!
//! The rule: shard by a topic's first segment. Topic `orders/42` goes to
//! `<prefix>events:{orders}`; the patterns `orders/*` and `orders/42` need
//! that channel. Every event is also published to `<prefix>events:*`, which
//! only instances holding a `*` stream subscribe to. The hash tag `{orders}`
//! keeps every channel of one first segment on one cluster slot.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike as _, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, ProtocolVersion, PushInfo};
use tokio::sync::{mpsc, oneshot};

use crate::auth::{Topic, TopicPattern};
use crate::redis_link::RedisLink;

/// How long connecting, subscribing or a ping may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The channel names of one deployment.
#[derive(Debug, Clone)]
pub(super) struct Channels {
    events: String,
    /// Where every event also goes, for `*` streams.
    pub(super) all: String,
    /// Revocations; every instance listens.
    pub(super) notices: String,
}

impl Channels {
    pub(super) fn new(link: &RedisLink) -> Self {
        Self {
            events: link.key("events:"),
            all: link.key("events:*"),
            notices: link.key("notices"),
        }
    }

    /// The shard channel of `topic`: `<prefix>events:{<first segment>}`.
    pub(super) fn of_topic(&self, topic: &Topic) -> String {
        self.of_segment(first_segment(topic))
    }

    /// The channel a stream on `pattern` needs.
    pub(super) fn of_pattern(&self, pattern: &TopicPattern) -> String {
        match pattern {
            TopicPattern::All => self.all.clone(),
            TopicPattern::Prefix(t) | TopicPattern::Exact(t) => self.of_topic(t),
        }
    }

    /// Whether `channel` carries events (rather than notices).
    pub(super) fn carries_events(&self, channel: &[u8]) -> bool {
        channel.starts_with(self.events.as_bytes())
    }

    fn of_segment(&self, segment: &str) -> String {
        format!("{}{{{segment}}}", self.events)
    }
}

fn first_segment(topic: &Topic) -> &str {
    let raw = topic.as_str();
    raw.split('/').next().unwrap_or(raw)
}

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

/// The instance's sharded pub/sub connection; what arrives on it goes to
/// the push channel given to [`ShardConnection::open`].
pub(super) enum ShardConnection {
    /// One Redis, over RESP3.
    Single(MultiplexedConnection),
    /// A Redis Cluster: the client sends each `SSUBSCRIBE` to the node
    /// owning its slot, and follows the slot when it moves.
    Cluster(ClusterConnection),
}

impl ShardConnection {
    /// Connects (RESP3, pushes to `pushes`).
    pub(super) async fn open(
        link: &RedisLink,
        pushes: mpsc::UnboundedSender<PushInfo>,
    ) -> Result<Self, String> {
        let connect = async {
            if link.is_cluster() {
                let seeds = link.nodes().iter().map(|n| n.get_connection_info().clone());
                let client = ClusterClientBuilder::new(seeds)
                    .use_protocol(ProtocolVersion::RESP3)
                    .connection_timeout(TIMEOUT)
                    .response_timeout(TIMEOUT)
                    .push_sender(pushes)
                    .build()?;
                Ok(Self::Cluster(client.get_async_connection().await?))
            } else {
                let mut last = None;
                for node in link.nodes() {
                    let info = node.get_connection_info().clone();
                    let settings = info
                        .redis_settings()
                        .clone()
                        .set_protocol(ProtocolVersion::RESP3);
                    let client = redis::Client::open(info.set_redis_settings(settings))?;
                    let config = AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(TIMEOUT))
                        .set_response_timeout(Some(TIMEOUT))
                        .set_push_sender(pushes.clone());
                    match client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                    {
                        Ok(c) => return Ok(Self::Single(c)),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    redis::RedisError::from((redis::ErrorKind::Client, "no Redis node"))
                }))
            }
        };
        match tokio::time::timeout(TIMEOUT, connect).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(e)) => Err(format!("cannot connect for pub/sub: {e}")),
            Err(_) => Err("cannot connect for pub/sub: timed out".into()),
        }
    }

    /// `SSUBSCRIBE`s to `channels`.
    pub(super) async fn subscribe(&mut self, channels: &[String]) -> Result<(), String> {
        self.subscription("SSUBSCRIBE", channels).await
    }

    /// `SUNSUBSCRIBE`s from `channels`.
    pub(super) async fn unsubscribe(&mut self, channels: &[String]) -> Result<(), String> {
        self.subscription("SUNSUBSCRIBE", channels).await
    }

    async fn subscription(&mut self, command: &str, channels: &[String]) -> Result<(), String> {
        if channels.is_empty() {
            return Ok(());
        }
        let sent = async {
            match self {
                // One channel per command: channels of several slots in one
                // command are refused (CROSSSLOT).
                Self::Cluster(c) => {
                    for channel in channels {
                        if command == "SSUBSCRIBE" {
                            c.ssubscribe(channel).await?;
                        } else {
                            c.sunsubscribe(channel).await?;
                        }
                    }
                    Ok(())
                }
                Self::Single(c) => {
                    // The connection has no `ssubscribe`: the confirmations
                    // arrive as pushes, and the answer to the `PING` behind
                    // them says Redis has handled the commands.
                    let mut pipe = redis::pipe();
                    for channel in channels {
                        pipe.cmd(command).arg(channel);
                    }
                    pipe.cmd("PING");
                    c.req_packed_commands(&pipe, 0, 1).await.map(drop)
                }
            }
        };
        match tokio::time::timeout(TIMEOUT, sent).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{command}: {e}")),
            Err(_) => Err(format!("{command}: timed out")),
        }
    }

    /// Whether Redis answers on this connection.
    pub(super) async fn ping(&mut self) -> bool {
        let ping = redis::cmd("PING");
        let answered = async {
            match self {
                Self::Single(c) => c.req_packed_command(&ping).await,
                Self::Cluster(c) => c.req_packed_command(&ping).await,
            }
        };
        matches!(tokio::time::timeout(TIMEOUT, answered).await, Ok(Ok(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_patterns_map_to_the_channel_of_their_first_segment() {
        let channels = Channels {
            events: "p:events:".into(),
            all: "p:events:*".into(),
            notices: "p:notices".into(),
        };
        let topic = |raw| Topic::parse(raw).expect("topic");
        let pattern = |raw| channels.of_pattern(&TopicPattern::parse(raw).expect("pattern"));
        assert_eq!(channels.of_topic(&topic("orders/42")), "p:events:{orders}");
        assert_eq!(channels.of_topic(&topic("orders")), "p:events:{orders}");
        assert_eq!(pattern("orders/*"), "p:events:{orders}");
        assert_eq!(pattern("orders/42/lines"), "p:events:{orders}");
        assert_eq!(pattern("*"), "p:events:*");
        assert!(channels.carries_events(b"p:events:{orders}"));
        assert!(!channels.carries_events(b"p:notices"));
    }

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
