//! Namespaces: a policy per topic prefix (history size and age, streams per
//! subject, event size, whether `/publish` may publish there), set by the
//! `[namespaces."<prefix>"]` tables of the configuration file.
//!
//! A prefix covers the topic it names and every topic below it (`chat` and
//! `chat/` both cover `chat` and `chat/room-1`, never `chatter`); the longest
//! prefix covering a topic wins. A setting a namespace leaves out is the
//! service-wide one, not an enclosing namespace's.

use std::time::Duration;

use crate::auth::{Topic, TopicPattern};
use crate::broker::MAX_EVENT_DATA;
use crate::revocation::StreamCap;

/// What one namespace table sets; `None` keeps the service-wide value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceRules {
    /// Replayable events kept per topic; 0 stores none.
    pub history_max_per_topic: Option<u32>,
    /// How long published events stay replayable.
    pub history_ttl: Option<Duration>,
    /// Open streams one subject may hold on one instance.
    pub max_streams_per_subject: Option<usize>,
    /// Largest event data, serialized; at most [`MAX_EVENT_DATA`].
    pub max_event_bytes: Option<usize>,
    /// `false`: `POST /publish` is refused; only the outbox publishes there.
    pub publish: Option<bool>,
}

/// One `[namespaces."<prefix>"]` table, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    prefix: Topic,
    rules: NamespaceRules,
}

/// Why a namespace table was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NamespaceError {
    /// The prefix is not a topic.
    #[error("namespace {prefix:?}: not a topic prefix: {reason}")]
    Prefix {
        /// The prefix as written.
        prefix: String,
        /// Why it is not a topic.
        reason: String,
    },
    /// `max_event_bytes` is 0 or above the service's limit.
    #[error("namespace {0:?}: max_event_bytes must be between 1 and {MAX_EVENT_DATA}")]
    EventBytes(String),
    /// `max_streams_per_subject` is 0.
    #[error("namespace {0:?}: max_streams_per_subject must be at least 1")]
    Streams(String),
    /// `history_ttl` is zero.
    #[error("namespace {0:?}: history_ttl must be longer than zero")]
    HistoryTtl(String),
    /// Two tables name the same prefix (`chat` and `chat/`).
    #[error("namespaces {0:?} and {1:?} name the same prefix")]
    Duplicate(String, String),
}

impl Namespace {
    /// Checks one table: its prefix (a trailing `/` is dropped) and values.
    pub fn new(prefix: &str, rules: NamespaceRules) -> Result<Self, NamespaceError> {
        let written = || prefix.to_owned();
        let topic = Topic::parse(prefix.strip_suffix('/').unwrap_or(prefix)).map_err(|e| {
            NamespaceError::Prefix {
                prefix: written(),
                reason: e.to_string(),
            }
        })?;
        if rules
            .max_event_bytes
            .is_some_and(|n| n == 0 || n > MAX_EVENT_DATA)
        {
            return Err(NamespaceError::EventBytes(written()));
        }
        if rules.max_streams_per_subject == Some(0) {
            return Err(NamespaceError::Streams(written()));
        }
        if rules.history_ttl.is_some_and(|ttl| ttl.is_zero()) {
            return Err(NamespaceError::HistoryTtl(written()));
        }
        Ok(Self {
            prefix: topic,
            rules,
        })
    }

    /// The prefix, without a trailing `/`.
    pub fn prefix(&self) -> &str {
        self.prefix.as_str()
    }

    /// What the table sets.
    pub fn rules(&self) -> &NamespaceRules {
        &self.rules
    }
}

/// The settings that hold for one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Replayable events kept per topic; 0 stores none.
    pub history_max_per_topic: u32,
    /// How long published events stay replayable.
    pub history_ttl: Duration,
    /// Open streams one subject may hold on one instance.
    pub max_streams_per_subject: usize,
    /// Largest event data, serialized.
    pub max_event_bytes: usize,
    /// Whether `POST /publish` may publish here.
    pub publish: bool,
}

impl Policy {
    fn with(mut self, rules: &NamespaceRules) -> Self {
        let NamespaceRules {
            history_max_per_topic,
            history_ttl,
            max_streams_per_subject,
            max_event_bytes,
            publish,
        } = rules;
        self.history_max_per_topic = history_max_per_topic.unwrap_or(self.history_max_per_topic);
        self.history_ttl = history_ttl.unwrap_or(self.history_ttl);
        self.max_streams_per_subject =
            max_streams_per_subject.unwrap_or(self.max_streams_per_subject);
        self.max_event_bytes = max_event_bytes.unwrap_or(self.max_event_bytes);
        self.publish = publish.unwrap_or(self.publish);
        self
    }
}

/// Every namespace, resolved against the service-wide settings.
#[derive(Debug, Clone)]
pub struct Namespaces {
    service: Policy,
    /// Longest prefix first, so the first that covers a topic wins.
    by_prefix: Vec<(Topic, Policy)>,
}

/// Which policy holds: the service-wide one, or a namespace's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope<'a> {
    /// No namespace covers it.
    Service,
    /// The namespace with this prefix.
    Namespace(&'a str),
}

impl Namespaces {
    /// Resolves `namespaces` against `service`; two naming one prefix are refused.
    pub fn new(service: Policy, namespaces: &[Namespace]) -> Result<Self, NamespaceError> {
        let mut by_prefix: Vec<(Topic, Policy)> = Vec::with_capacity(namespaces.len());
        for namespace in namespaces {
            if by_prefix.iter().any(|(p, _)| p == &namespace.prefix) {
                return Err(NamespaceError::Duplicate(
                    namespace.prefix().to_owned(),
                    format!("{}/", namespace.prefix()),
                ));
            }
            by_prefix.push((namespace.prefix.clone(), service.with(&namespace.rules)));
        }
        by_prefix.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.as_str().len()));
        Ok(Self { service, by_prefix })
    }

    /// The service-wide policy.
    pub fn service(&self) -> &Policy {
        &self.service
    }

    /// The namespaces, longest prefix first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Policy)> {
        self.by_prefix
            .iter()
            .map(|(p, policy)| (p.as_str(), policy))
    }

    /// The policy of `topic`, and whose it is.
    pub fn of(&self, topic: &str) -> (Scope<'_>, &Policy) {
        self.find(topic)
            .map_or((Scope::Service, &self.service), |(_, prefix, policy)| {
                (Scope::Namespace(prefix), policy)
            })
    }

    /// The namespace covering `topic`: its place in [`Namespaces::iter`],
    /// prefix and policy.
    fn find(&self, topic: &str) -> Option<(usize, &str, &Policy)> {
        self.by_prefix
            .iter()
            .enumerate()
            .find(|(_, (prefix, _))| covers(prefix.as_str(), topic))
            .map(|(i, (prefix, policy))| (i, prefix.as_str(), policy))
    }

    /// The per-subject caps a stream on `patterns` counts against: one per
    /// scope its patterns fall in: a pattern's topic (for `prefix/*`, the
    /// prefix) falls in the namespace covering it, `*` in the service's.
    /// Scope 0 is the service, `i + 1` the namespace listed `i`-th by
    /// [`Namespaces::iter`].
    pub fn stream_caps(&self, patterns: &[TopicPattern]) -> Vec<StreamCap> {
        let mut caps: Vec<StreamCap> = Vec::with_capacity(1);
        for pattern in patterns {
            let prefix = match pattern {
                TopicPattern::All => None,
                TopicPattern::Exact(topic) | TopicPattern::Prefix(topic) => Some(topic.as_str()),
            };
            let (scope, policy) = prefix
                .and_then(|topic| self.find(topic))
                .map_or((0, &self.service), |(i, _, policy)| (i + 1, policy));
            if !caps.iter().any(|cap| cap.scope == scope) {
                caps.push(StreamCap {
                    scope,
                    max: policy.max_streams_per_subject,
                });
            }
        }
        caps
    }

    /// Whether a namespace keeps history although the service keeps none.
    pub fn any_history(&self) -> bool {
        self.service.history_max_per_topic > 0
            || self
                .by_prefix
                .iter()
                .any(|(_, p)| p.history_max_per_topic > 0)
    }
}

/// Whether `prefix` covers `topic`: the topic itself or one below it.
pub fn covers(prefix: &str, topic: &str) -> bool {
    topic
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Policy {
        Policy {
            history_max_per_topic: 1000,
            history_ttl: Duration::from_secs(3600),
            max_streams_per_subject: 16,
            max_event_bytes: MAX_EVENT_DATA,
            publish: true,
        }
    }

    fn namespace(prefix: &str, rules: NamespaceRules) -> Namespace {
        Namespace::new(prefix, rules).expect("namespace")
    }

    #[test]
    fn the_longest_prefix_covering_a_topic_wins_and_unset_rules_are_the_service_s() {
        let namespaces = Namespaces::new(
            service(),
            &[
                namespace(
                    "chat/",
                    NamespaceRules {
                        history_max_per_topic: Some(10),
                        publish: Some(false),
                        ..NamespaceRules::default()
                    },
                ),
                namespace(
                    "chat/vip",
                    NamespaceRules {
                        max_event_bytes: Some(512),
                        ..NamespaceRules::default()
                    },
                ),
            ],
        )
        .expect("namespaces");
        let (scope, chat) = namespaces.of("chat/room-1");
        assert_eq!(scope, Scope::Namespace("chat"));
        assert_eq!((chat.history_max_per_topic, chat.publish), (10, false));
        let (scope, vip) = namespaces.of("chat/vip/lounge");
        assert_eq!(scope, Scope::Namespace("chat/vip"));
        assert_eq!(vip.max_event_bytes, 512);
        assert_eq!(
            (vip.history_max_per_topic, vip.publish),
            (1000, true),
            "unset: the service's, not the enclosing namespace's"
        );
        assert_eq!(namespaces.of("chat").0, Scope::Namespace("chat"));
        assert_eq!(namespaces.of("chatter").0, Scope::Service);
        assert_eq!(namespaces.of("orders/1").1, &service());
    }

    #[test]
    fn bad_tables_are_refused() {
        let bytes = |n| NamespaceRules {
            max_event_bytes: Some(n),
            ..NamespaceRules::default()
        };
        assert!(matches!(
            Namespace::new("chat", bytes(MAX_EVENT_DATA + 1)),
            Err(NamespaceError::EventBytes(_))
        ));
        assert!(Namespace::new("chat", bytes(MAX_EVENT_DATA)).is_ok());
        assert!(matches!(
            Namespace::new("bad topic", NamespaceRules::default()),
            Err(NamespaceError::Prefix { .. })
        ));
        assert!(matches!(
            Namespace::new("", NamespaceRules::default()),
            Err(NamespaceError::Prefix { .. })
        ));
        let twice = [
            namespace("chat", NamespaceRules::default()),
            namespace("chat/", NamespaceRules::default()),
        ];
        assert!(matches!(
            Namespaces::new(service(), &twice),
            Err(NamespaceError::Duplicate(..))
        ));
    }
}
