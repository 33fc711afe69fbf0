//! Events and the [`Broker`] that fans them out to open streams.

mod memory;
mod needs;
mod queue;
mod redis_broker;
mod redis_listener;
mod shards;

use std::sync::Arc;

use actix_web_lab::sse;
use bytestring::ByteString;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::auth::{Subject, Topic, TopicPattern};

pub use memory::MemoryBroker;
pub use redis_broker::{RedisBroker, RedisBrokerParts};

/// The event type SSE clients receive when a frame has no `event:` line.
pub const DEFAULT_EVENT_TYPE: &str = "message";

/// Event types the server sends itself, and the names `EventSource` gives its
/// own connection events (a frame named `error` would reach a client's
/// connection-error handler); publishers may not use them.
pub const RESERVED_EVENT_TYPES: [&str; 5] = ["ready", "close", "reset", "error", "open"];

/// Largest serialized `data` of one event.
pub const MAX_EVENT_DATA: usize = 64 * 1024;
/// Longest event type.
pub const MAX_EVENT_TYPE_LEN: usize = 64;

/// Whether `kind` has the form of an event type: 1 to [`MAX_EVENT_TYPE_LEN`]
/// characters of `A-Z a-z 0-9 . _ : -` (reserved names included).
pub fn is_well_formed_event_type(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= MAX_EVENT_TYPE_LEN
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// The type of an event a publisher sends: 1 to [`MAX_EVENT_TYPE_LEN`]
/// characters of `A-Z a-z 0-9 . _ : -`, and none of the
/// [`RESERVED_EVENT_TYPES`]. Only [`EventType::parse`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventType(ByteString);

/// Why a string is not an event type a publisher may use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventTypeError {
    /// Empty, too long, or a character outside the alphabet.
    #[error("event must be 1 to {MAX_EVENT_TYPE_LEN} characters of A-Z a-z 0-9 . _ : -")]
    Malformed,
    /// One of the types the server sends itself.
    #[error("the event type {0:?} is reserved for the server")]
    Reserved(String),
}

impl EventType {
    /// Parses a publisher's event type.
    pub fn parse(raw: &str) -> Result<Self, EventTypeError> {
        if !is_well_formed_event_type(raw) {
            return Err(EventTypeError::Malformed);
        }
        if RESERVED_EVENT_TYPES.contains(&raw) {
            return Err(EventTypeError::Reserved(raw.to_owned()));
        }
        Ok(Self(raw.into()))
    }

    /// `message`, what an event without a type is.
    pub fn message() -> Self {
        Self(DEFAULT_EVENT_TYPE.into())
    }

    /// The type as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why an event read back from history, or received from another instance,
/// was refused: it breaks a rule `/publish` enforces (a row written by hand,
/// by an older version, or by something else sharing the database or Redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEvent {
    /// The id is not a UUID.
    #[error("its id is not a UUID")]
    Id,
    /// The topic is not a valid topic.
    #[error("its topic is not a valid topic")]
    Topic,
    /// The type is malformed or reserved for the server.
    #[error("its event type is malformed or reserved")]
    Kind,
    /// The data is not JSON, or is larger than [`MAX_EVENT_DATA`].
    #[error("its data is not JSON of at most {MAX_EVENT_DATA} bytes")]
    Data,
}

/// A published event, encoded once and shared by every stream that receives it.
///
/// It carries its SSE frame (`actix_web_lab::sse::Data`), built when the
/// event is: the one accepted exception to "the broker knows no wire format".
/// Fan-out to 10,000 streams then shares one encoding instead of making
/// 10,000; see `docs/architecture.md`.
#[derive(Debug)]
pub struct Event {
    id: Uuid,
    topic: Topic,
    kind: ByteString,
    data: ByteString,
    published_at: DateTime<Utc>,
    frame: sse::Data,
}

impl Event {
    /// An event with a time-ordered id (UUID v7) whose `data` is serialized JSON.
    pub fn new(
        id: Uuid,
        topic: Topic,
        kind: &str,
        data: ByteString,
        published_at: DateTime<Utc>,
    ) -> Self {
        let kind = ByteString::from(kind);
        let mut frame = sse::Data::new(data.clone()).id(id.hyphenated().to_string());
        if kind != DEFAULT_EVENT_TYPE {
            frame.set_event(kind.clone());
        }
        Self {
            id,
            topic,
            kind,
            data,
            published_at,
            frame,
        }
    }

    /// The event's id.
    pub fn id(&self) -> Uuid {
        self.id
    }
    /// The topic it was published to.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }
    /// Its event type.
    pub fn kind(&self) -> &str {
        &self.kind
    }
    /// When it was published.
    pub fn published_at(&self) -> DateTime<Utc> {
        self.published_at
    }
    /// The event as history stores it.
    pub fn to_stored(&self) -> crate::db::StoredEvent {
        crate::db::StoredEvent {
            id: self.id,
            topic: self.topic.as_str().to_owned(),
            kind: self.kind.to_string(),
            data: self.frame_data().to_string(),
            published_at: self.published_at,
        }
    }

    /// An event read back from history or received from another instance,
    /// checked against the rules `/publish` applies, so that a bad one never
    /// reaches the SSE encoder (which would end every stream it went to).
    pub fn from_stored(stored: crate::db::StoredEvent) -> Result<Self, InvalidEvent> {
        if stored.id.is_nil() {
            return Err(InvalidEvent::Id);
        }
        let topic = Topic::parse(&stored.topic).map_err(|_| InvalidEvent::Topic)?;
        if !is_well_formed_event_type(&stored.kind)
            || RESERVED_EVENT_TYPES.contains(&stored.kind.as_str())
        {
            return Err(InvalidEvent::Kind);
        }
        if stored.data.len() > MAX_EVENT_DATA
            || serde_json::from_str::<serde::de::IgnoredAny>(&stored.data).is_err()
        {
            return Err(InvalidEvent::Data);
        }
        Ok(Self::new(
            stored.id,
            topic,
            &stored.kind,
            stored.data.into(),
            stored.published_at,
        ))
    }

    /// Its data, serialized JSON.
    pub fn data(&self) -> &str {
        &self.data
    }

    fn frame_data(&self) -> &ByteString {
        &self.data
    }

    /// The SSE frame: a handle onto the shared, already-serialized payload.
    pub fn frame(&self) -> sse::Data {
        self.frame.clone()
    }
}

/// Why a stream stopped receiving events from the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detached {
    /// It fell too far behind: its buffer filled up.
    Lagging,
}

/// The receiving end of one stream's subscription. Dropping it unsubscribes.
pub struct Subscription {
    pub(crate) events: queue::Receiver,
    pub(crate) detached: Arc<std::sync::OnceLock<Detached>>,
    pub(crate) _guard: Box<dyn Send + Sync>,
}

impl Subscription {
    /// The next event; `None` once the broker detached this subscription.
    pub async fn recv(&mut self) -> Option<Arc<Event>> {
        self.events.recv().await
    }

    /// Whether events wait in the queue, or the broker detached it for not
    /// taking them fast enough.
    pub fn has_pending(&self) -> bool {
        !self.events.is_empty() || self.detached().is_some()
    }

    /// Why the broker detached this subscription, once it has.
    pub fn detached(&self) -> Option<Detached> {
        self.detached.get().copied()
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

/// What a publish did locally.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fanout {
    /// Subscriptions the event was queued for.
    pub delivered: usize,
    /// Subscriptions detached because their queue was full.
    pub detached: usize,
}

/// Why an event could not be handed to the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The backend cannot be reached.
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
}

/// Fans events out to subscriptions; the seam for a multi-instance backend.
#[async_trait::async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Delivers `event` to every subscription whose patterns match its topic.
    async fn publish(&self, event: Arc<Event>) -> Result<Fanout, BrokerError>;

    /// Subscribes to `patterns`; events published after this returns are received.
    async fn subscribe(&self, patterns: &[TopicPattern]) -> Result<Subscription, BrokerError>;

    /// Checks the backend answers.
    async fn ping(&self) -> Result<(), BrokerError>;

    /// Whether a publish would be accepted now, without asking the backend
    /// (checked before an event is stored, so a refused event is not).
    fn ready(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    /// Tells the other instances about a revocation change.
    async fn announce(&self, _notice: &Notice) -> Result<(), BrokerError> {
        Ok(())
    }

    /// The notices other instances (and this one) announced; `Some` once.
    fn notices(&self) -> Option<mpsc::UnboundedReceiver<Notice>> {
        None
    }
}

/// A revocation change every instance must apply; all but `Resync` are sent
/// between instances as JSON (`{"revoked":{"sub":…,"at":<Unix ms>}}`,
/// `{"revoked_jti":{"jti":…,"until":<Unix ms>}}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Notice {
    /// `sub` was revoked at `at`: refuse its older tokens, close its streams.
    Revoked {
        /// The subject.
        sub: Subject,
        /// When.
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// The revocation of `sub` was lifted.
    Lifted {
        /// The subject.
        sub: Subject,
    },
    /// The token `jti` is refused until `until`: close its streams.
    RevokedJti {
        /// The token's `jti`.
        jti: Arc<str>,
        /// Until when.
        #[serde(with = "chrono::serde::ts_milliseconds")]
        until: DateTime<Utc>,
    },
    /// The revocation of the token `jti` was lifted.
    LiftedJti {
        /// The token's `jti`.
        jti: Arc<str>,
    },
    /// Notices may have been missed: reload revocations from the database.
    /// Local to an instance, never sent.
    #[serde(skip)]
    Resync,
}
