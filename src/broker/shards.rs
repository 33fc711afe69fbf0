//! Sharded fan-out: which Redis channels an event goes to and which channel
//! a stream needs, and the instance's connection that `SSUBSCRIBE`s to
//! exactly those (which those are is counted in [`super::needs`]).
//!
//! The rule: a channel per topic and per prefix. An event on `orders/42`
//! goes to `<prefix>events:{orders/42}` (its topic's), `<prefix>events:{orders/*}`
//! and `<prefix>events:{orders/42/*}` (its prefixes', for `…/*` streams), and
//! `<prefix>events:*` (for `*` streams); a stream on `orders/42` needs
//! `{orders/42}`, one on `orders/*` needs `{orders/*}`. An instance thus
//! receives only the events of topics its own streams subscribe to. The hash
//! tag is the whole topic or prefix, so channels spread over a cluster's
//! slots. Prefixes count up to [`PREFIX_DEPTH`] segments: a deeper `…/*`
//! stream listens on the channel of its first segments and its instance
//! drops the rest locally.

use std::time::Duration;

use futures_util::future::try_join_all;
use redis::aio::{ConnectionLike as _, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, ProtocolVersion, PushInfo};
use tokio::sync::mpsc;

use crate::auth::{Topic, TopicPattern};
use crate::redis_link::RedisLink;

/// How long connecting, a ping, or subscribing to one batch of channels may take.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Channels subscribed to in one go: one pipeline on one Redis, as many
/// commands in flight on a cluster.
const BATCH: usize = 1_000;

/// Prefixes longer than this many segments share the channel of their
/// first `PREFIX_DEPTH`: an event goes to at most `PREFIX_DEPTH + 2`
/// channels, however deep its topic.
pub(super) const PREFIX_DEPTH: usize = 4;

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

    /// Every channel an event on `topic` goes to: its own, that of each of
    /// its first [`PREFIX_DEPTH`] prefixes (itself included, which `topic/*`
    /// names too), and `*`'s.
    pub(super) fn of_topic(&self, topic: &Topic) -> Vec<String> {
        let mut channels = Vec::with_capacity(PREFIX_DEPTH + 2);
        channels.push(self.exact(topic.as_str()));
        channels.extend(
            topic
                .prefixes()
                .take(PREFIX_DEPTH)
                .map(|prefix| self.below(prefix)),
        );
        channels.push(self.all.clone());
        channels
    }

    /// The channel a stream on `pattern` needs.
    pub(super) fn of_pattern(&self, pattern: &TopicPattern) -> String {
        match pattern {
            TopicPattern::All => self.all.clone(),
            TopicPattern::Exact(topic) => self.exact(topic.as_str()),
            TopicPattern::Prefix(prefix) => {
                let shared = prefix.prefixes().take(PREFIX_DEPTH).last();
                self.below(shared.unwrap_or(prefix.as_str()))
            }
        }
    }

    /// Whether `channel` carries events (rather than notices).
    pub(super) fn carries_events(&self, channel: &[u8]) -> bool {
        channel.starts_with(self.events.as_bytes())
    }

    /// `<prefix>events:{orders/42}`.
    fn exact(&self, topic: &str) -> String {
        format!("{}{{{topic}}}", self.events)
    }

    /// `<prefix>events:{orders/*}`.
    fn below(&self, prefix: &str) -> String {
        format!("{}{{{prefix}/*}}", self.events)
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

    /// Sends `command` for `channels`, [`BATCH`] at a time, each batch
    /// within [`TIMEOUT`]: re-subscribing every channel of an instance with
    /// many streams takes time in proportion to them, not a fixed limit.
    async fn subscription(&mut self, command: &str, channels: &[String]) -> Result<(), String> {
        for batch in channels.chunks(BATCH) {
            let sent = async {
                match self {
                    // One channel per command: channels of several slots in
                    // one command are refused (CROSSSLOT). The batch's
                    // commands go at once (clones share the connection).
                    Self::Cluster(c) => try_join_all(batch.iter().map(|channel| {
                        let mut c = c.clone();
                        async move {
                            if command == "SSUBSCRIBE" {
                                c.ssubscribe(channel).await
                            } else {
                                c.sunsubscribe(channel).await
                            }
                        }
                    }))
                    .await
                    .map(drop),
                    Self::Single(c) => {
                        // The connection has no `ssubscribe`: the
                        // confirmations arrive as pushes, and the answer to
                        // the `PING` behind them says Redis has handled the
                        // commands.
                        let mut pipe = redis::pipe();
                        for channel in batch {
                            pipe.cmd(command).arg(channel);
                        }
                        pipe.cmd("PING");
                        c.req_packed_commands(&pipe, 0, 1).await.map(drop)
                    }
                }
            };
            match tokio::time::timeout(TIMEOUT, sent).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("{command}: {e}")),
                Err(_) => return Err(format!("{command}: timed out")),
            }
        }
        Ok(())
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

    fn channels() -> Channels {
        Channels {
            events: "p:events:".into(),
            all: "p:events:*".into(),
            notices: "p:notices".into(),
        }
    }

    fn topic(raw: &str) -> Topic {
        Topic::parse(raw).expect("topic")
    }

    fn pattern(raw: &str) -> TopicPattern {
        TopicPattern::parse(raw).expect("pattern")
    }

    #[test]
    fn an_event_goes_to_its_topic_its_prefixes_and_everything() {
        let channels = channels();
        assert_eq!(
            channels.of_topic(&topic("orders/42")),
            [
                "p:events:{orders/42}",
                "p:events:{orders/*}",
                "p:events:{orders/42/*}",
                "p:events:*"
            ]
        );
        assert_eq!(
            channels.of_topic(&topic("orders")),
            ["p:events:{orders}", "p:events:{orders/*}", "p:events:*"]
        );
        let deep = channels.of_topic(&topic("a/b/c/d/e/f"));
        assert_eq!(deep.len(), PREFIX_DEPTH + 2, "{deep:?}");
        assert_eq!(deep[PREFIX_DEPTH], "p:events:{a/b/c/d/*}");
        assert!(channels.carries_events(b"p:events:{orders/42}"));
        assert!(!channels.carries_events(b"p:notices"));
    }

    #[test]
    fn a_stream_needs_one_channel_that_every_matching_event_goes_to() {
        let channels = channels();
        let of = |raw| channels.of_pattern(&pattern(raw));
        assert_eq!(of("orders/42"), "p:events:{orders/42}");
        assert_eq!(of("orders/*"), "p:events:{orders/*}");
        assert_eq!(of("*"), "p:events:*");
        assert_eq!(
            of("a/b/c/d/e/*"),
            "p:events:{a/b/c/d/*}",
            "shared below the depth"
        );
        // The rule's promise, both ways: a stream's channel carries every
        // event its pattern matches, and an exact stream's no other topic's.
        let topics = [
            "orders",
            "orders/42",
            "orders/42/lines",
            "ordersx",
            "a/b/c/d/e",
            "a/b/c/d/e/f/g",
            "a/b/c/d/x",
        ];
        let patterns = [
            "orders",
            "orders/42",
            "orders/*",
            "orders/42/*",
            "a/b/c/d/e/*",
            "a/b/*",
            "*",
        ];
        for raw_pattern in patterns {
            let needed = of(raw_pattern);
            for raw_topic in topics {
                let carried = channels.of_topic(&topic(raw_topic)).contains(&needed);
                if pattern(raw_pattern).matches(&topic(raw_topic)) {
                    assert!(carried, "{raw_pattern} misses {raw_topic}");
                } else if raw_pattern != "a/b/c/d/e/*" {
                    // (Deeper than PREFIX_DEPTH: its instance filters.)
                    assert!(!carried, "{raw_pattern} receives {raw_topic}");
                }
            }
        }
    }
}
