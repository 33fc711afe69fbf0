//! What a verified bearer token says: who it is, until when, and what it may do.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::topic::{Topic, TopicPattern};

/// Longest `sub` accepted, in bytes.
pub const MAX_SUBJECT_LEN: usize = 255;

/// The non-empty `sub` of a bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Subject(Arc<str>);

/// Why a string is not a subject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a subject is 1 to 255 bytes without control characters")]
pub struct SubjectError;

impl Subject {
    /// Parses a subject: 1–255 bytes, no control characters.
    pub fn parse(raw: &str) -> Result<Self, SubjectError> {
        if raw.is_empty() || raw.len() > MAX_SUBJECT_LEN || raw.chars().any(char::is_control) {
            return Err(SubjectError);
        }
        Ok(Self(raw.into()))
    }

    /// The subject as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Subject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The `sse` claim: what the bearer may subscribe to, publish to, and administer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Permissions {
    /// Patterns the bearer may subscribe to, beyond its own `user/<sub>`.
    pub subscribe: Vec<TopicPattern>,
    /// Patterns the bearer may publish to.
    pub publish: Vec<TopicPattern>,
    /// Whether the bearer may use the `/admin` endpoints.
    pub admin: bool,
}

/// A verified bearer token.
#[derive(Debug, Clone)]
pub struct Claims {
    /// Who the token speaks for.
    pub sub: Subject,
    /// When the token stops being valid.
    pub exp: DateTime<Utc>,
    /// When the token was issued, if it says.
    pub iat: Option<DateTime<Utc>>,
    /// The token's own id (`jti`), if it has one.
    pub jti: Option<Arc<str>>,
    /// The `sse` claim.
    pub permissions: Permissions,
}

impl Claims {
    /// The subject's own topic, if its `sub` can form one.
    pub fn own_topic(&self) -> Option<Topic> {
        Topic::for_user(&self.sub).ok()
    }

    /// Whether the bearer may subscribe to everything `pattern` names.
    pub fn may_subscribe(&self, pattern: &TopicPattern) -> bool {
        let own = matches!(pattern, TopicPattern::Exact(t) if Some(t) == self.own_topic().as_ref());
        own || self.permissions.subscribe.iter().any(|p| p.covers(pattern))
    }

    /// Whether the bearer may publish to `topic`.
    pub fn may_publish(&self, topic: &Topic) -> bool {
        self.permissions.publish.iter().any(|p| p.matches(topic))
    }
}
