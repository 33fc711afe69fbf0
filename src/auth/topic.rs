//! Topics and topic patterns, parsed once at the edge so the rest of the code
//! only ever holds valid ones.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Longest topic accepted, in bytes (ASCII only, so also in characters).
pub const MAX_TOPIC_LEN: usize = 255;

/// Why a string is not a topic or a pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Empty or longer than [`MAX_TOPIC_LEN`].
    #[error("a topic is 1 to 255 characters long")]
    Length,
    /// A segment is empty (leading, trailing or doubled `/`).
    #[error("a topic has no empty segment (no leading, trailing or doubled '/')")]
    EmptySegment,
    /// A character outside `[A-Za-z0-9._~:@-]` and `/`.
    #[error("a topic holds only the characters A-Z a-z 0-9 . _ ~ : @ - and '/'")]
    Character,
}

/// A concrete topic such as `orders/42`: 1–255 chars of `/`-separated
/// segments of `[A-Za-z0-9._~:@-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Topic(Arc<str>);

impl Topic {
    /// Parses a topic.
    pub fn parse(raw: &str) -> Result<Self, TopicError> {
        validate(raw)?;
        Ok(Self(raw.into()))
    }

    /// The topic `user/<sub>` every subject may subscribe to. A `sub` holding
    /// `/` has none: `alice/x` would otherwise get `user/alice/x`, a topic
    /// below `alice`'s own, which `user/alice/*` covers.
    pub fn for_user(sub: &super::Subject) -> Result<Self, TopicError> {
        if sub.as_str().contains('/') {
            return Err(TopicError::Character);
        }
        Self::parse(&format!("user/{}", sub.as_str()))
    }

    /// The topic as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ancestors of this topic and itself, shortest first: `a`, `a/b`, `a/b/c`.
    pub fn prefixes(&self) -> impl Iterator<Item = &str> {
        let s = self.as_str();
        s.match_indices('/')
            .map(move |(i, _)| &s[..i])
            .chain(std::iter::once(s))
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Topic {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

fn validate(raw: &str) -> Result<(), TopicError> {
    if raw.is_empty() || raw.len() > MAX_TOPIC_LEN {
        return Err(TopicError::Length);
    }
    for segment in raw.split('/') {
        if segment.is_empty() {
            return Err(TopicError::EmptySegment);
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~:@-".contains(&b))
        {
            return Err(TopicError::Character);
        }
    }
    Ok(())
}

/// What a subscription or a permission names: one topic, a subtree, or everything.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicPattern {
    /// `*`: every topic.
    All,
    /// `prefix/*`: `prefix` itself and every topic below it.
    Prefix(Topic),
    /// One topic.
    Exact(Topic),
}

impl TopicPattern {
    /// Parses `*`, `a/b/*` or `a/b`.
    pub fn parse(raw: &str) -> Result<Self, TopicError> {
        if raw == "*" {
            return Ok(Self::All);
        }
        match raw.strip_suffix("/*") {
            Some(prefix) => Topic::parse(prefix).map(Self::Prefix),
            None => Topic::parse(raw).map(Self::Exact),
        }
    }

    /// Whether `topic` is one of the topics this pattern names.
    pub fn matches(&self, topic: &Topic) -> bool {
        match self {
            Self::All => true,
            Self::Exact(t) => t == topic,
            Self::Prefix(p) => is_within(topic.as_str(), p.as_str()),
        }
    }

    /// Whether every topic `other` names is also named by `self`.
    pub fn covers(&self, other: &TopicPattern) -> bool {
        match (self, other) {
            (Self::All, _) => true,
            (_, Self::All) => false,
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Exact(_), Self::Prefix(_)) => false,
            (Self::Prefix(p), Self::Exact(t) | Self::Prefix(t)) => {
                is_within(t.as_str(), p.as_str())
            }
        }
    }
}

/// The start of a topic or pattern, as `GET /admin/topics?prefix=` takes
/// it: up to [`MAX_TOPIC_LEN`] characters of the topic alphabet and `/`
/// (empty: every pattern).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPrefix(String);

impl TopicPrefix {
    /// Parses a prefix.
    pub fn parse(raw: &str) -> Result<Self, TopicError> {
        if raw.len() > MAX_TOPIC_LEN {
            return Err(TopicError::Length);
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~:@-/".contains(&b))
        {
            return Err(TopicError::Character);
        }
        Ok(Self(raw.to_owned()))
    }

    /// Whether `pattern` (as text) starts with this prefix.
    pub fn starts(&self, pattern: &str) -> bool {
        pattern.starts_with(&self.0)
    }
}

/// `topic` equals `prefix` or lies below it (`prefix/…`).
fn is_within(topic: &str, prefix: &str) -> bool {
    topic
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Prefix(p) => write!(f, "{p}/*"),
            Self::Exact(t) => write!(f, "{t}"),
        }
    }
}

// Debug output (logs, test failures) shows the text a user wrote.
impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

impl Serialize for TopicPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TopicPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Drops duplicates and every pattern another one in the set already covers,
/// so that the remaining patterns never name the same topic twice.
pub fn minimal_cover(patterns: &[TopicPattern]) -> Vec<TopicPattern> {
    let mut sorted: Vec<&TopicPattern> = patterns.iter().collect();
    sorted.sort();
    sorted.dedup();
    sorted
        .iter()
        .filter(|p| !sorted.iter().any(|q| q != *p && q.covers(p)))
        .map(|p| (*p).clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(raw: &str) -> TopicPattern {
        TopicPattern::parse(raw).expect("valid pattern")
    }

    fn t(raw: &str) -> Topic {
        Topic::parse(raw).expect("valid topic")
    }

    #[test]
    fn topics_are_segments_of_a_restricted_alphabet() {
        for ok in [
            "a",
            "orders/42",
            "user/alice@example.com",
            "a.b_c~d:e-f/g",
            &"x".repeat(255),
        ] {
            assert!(Topic::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(Topic::parse(""), Err(TopicError::Length));
        assert_eq!(Topic::parse(&"x".repeat(256)), Err(TopicError::Length));
        for bad in ["/a", "a/", "a//b"] {
            assert_eq!(Topic::parse(bad), Err(TopicError::EmptySegment), "{bad}");
        }
        for bad in ["a b", "a*", "ä", "a\nb", "a?b", "a%20"] {
            assert_eq!(Topic::parse(bad), Err(TopicError::Character), "{bad}");
        }
    }

    #[test]
    fn a_prefix_pattern_names_its_prefix_and_everything_below() {
        let orders = p("orders/*");
        assert!(orders.matches(&t("orders")));
        assert!(orders.matches(&t("orders/42")));
        assert!(orders.matches(&t("orders/42/lines")));
        assert!(!orders.matches(&t("ordersx")));
        assert!(!orders.matches(&t("user/orders")));
        assert!(p("*").matches(&t("anything/at/all")));
        assert!(p("orders/42").matches(&t("orders/42")));
        assert!(!p("orders/42").matches(&t("orders/42/x")));
        assert!(TopicPattern::parse("orders/*/x").is_err());
        assert!(TopicPattern::parse("/*").is_err());
    }

    #[test]
    fn coverage_follows_the_sets_of_topics_named() {
        assert!(p("*").covers(&p("*")));
        assert!(p("*").covers(&p("a/*")));
        assert!(!p("a/*").covers(&p("*")));
        assert!(p("a/*").covers(&p("a")));
        assert!(p("a/*").covers(&p("a/b/*")));
        assert!(!p("a/b/*").covers(&p("a/*")));
        assert!(!p("a").covers(&p("a/*")));
        assert!(!p("a/*").covers(&p("ab")));
    }

    #[test]
    fn a_minimal_cover_names_each_topic_once() {
        let cover = minimal_cover(&[p("orders/42"), p("orders/*"), p("user/a"), p("orders/*")]);
        assert_eq!(cover, vec![p("orders/*"), p("user/a")]);
        assert_eq!(minimal_cover(&[p("a"), p("*")]), vec![p("*")]);
    }

    #[test]
    fn a_prefix_is_up_to_255_characters_of_the_topic_alphabet_and_slashes() {
        for ok in [
            "",
            "orders",
            "orders/",
            "/",
            "a.b_c~d:e-f@g/h",
            &"x".repeat(255),
        ] {
            assert!(TopicPrefix::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            TopicPrefix::parse(&"x".repeat(256)),
            Err(TopicError::Length)
        );
        for bad in ["orders/*", "*", "a b", "ä", "a?b", "a%2F"] {
            assert_eq!(TopicPrefix::parse(bad), Err(TopicError::Character), "{bad}");
        }
        let orders = TopicPrefix::parse("orders/").expect("prefix");
        assert!(orders.starts("orders/*") && orders.starts("orders/42"));
        assert!(!orders.starts("orders") && !orders.starts("*"));
    }

    #[test]
    fn prefixes_run_from_the_root_down() {
        let topic = t("a/b/c");
        assert_eq!(topic.prefixes().collect::<Vec<_>>(), ["a", "a/b", "a/b/c"]);
    }
}
