//! Tickets: single-use, short-lived stand-ins for a bearer token, small enough
//! to sit in a URL, and the [`TicketStore`] that issues and redeems them.

mod memory;
mod places;
mod redis_store;
mod sweeper;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::auth::{Subject, TopicPattern};

pub use memory::MemoryStore;
pub use redis_store::RedisStore;
pub use sweeper::run_sweeper;

/// A ticket's identity: a random UUID v4 (122 random bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TicketId(Uuid);

impl TicketId {
    /// A fresh random id, from a thread-local CSPRNG seeded by the OS.
    pub(crate) fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// Parses the canonical hyphenated form of a UUID v4; anything else
    /// (a JWT, a UUID of another version, braces, a URN) is not a ticket.
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() != 36 {
            return None;
        }
        let uuid = Uuid::try_parse(raw).ok()?;
        (uuid.get_version() == Some(uuid::Version::Random)).then_some(Self(uuid))
    }
}

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for TicketId {
    /// Never prints the id itself: a ticket is a credential.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TicketId([redacted])")
    }
}

/// What a ticket is issued for.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The subject of the bearer token the ticket stands in for.
    pub sub: Subject,
    /// The topics and patterns the stream will receive.
    pub topics: Vec<TopicPattern>,
    /// When that bearer token expires: the stream ends then.
    pub bearer_exp: DateTime<Utc>,
    /// When that bearer token was issued (`iat`), so that a revocation made
    /// after the ticket was issued but covering the token still refuses it.
    pub bearer_iat: Option<DateTime<Utc>>,
    /// That bearer token's `jti`, if it has one.
    pub bearer_jti: Option<Arc<str>>,
    /// The client IP that requested it, when tickets are bound to IPs.
    pub client_ip: Option<IpAddr>,
}

/// An issued ticket. Only a [`TicketStore`] makes one.
#[derive(Debug, Clone)]
pub struct Ticket {
    id: TicketId,
    sub: Subject,
    topics: Arc<[TopicPattern]>,
    bearer_exp: DateTime<Utc>,
    bearer_iat: Option<DateTime<Utc>>,
    bearer_jti: Option<Arc<str>>,
    client_ip: Option<IpAddr>,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl Ticket {
    pub(crate) fn new(grant: Grant, issued_at: DateTime<Utc>, ttl: Duration) -> Self {
        let expires_at = issued_at
            .checked_add_signed(crate::clock::span(ttl))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Self::restore(TicketId::random(), grant, issued_at, expires_at)
    }

    /// A ticket read back from a shared store.
    pub(crate) fn restore(
        id: TicketId,
        grant: Grant,
        issued_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            sub: grant.sub,
            topics: grant.topics.into(),
            bearer_exp: grant.bearer_exp,
            bearer_iat: grant.bearer_iat,
            bearer_jti: grant.bearer_jti,
            client_ip: grant.client_ip,
            issued_at,
            expires_at,
        }
    }

    /// The same ticket under a new id.
    pub(crate) fn with_fresh_id(&self) -> Self {
        Self {
            id: TicketId::random(),
            ..self.clone()
        }
    }

    /// The ticket's id: the secret the client presents.
    pub fn id(&self) -> TicketId {
        self.id
    }
    /// Whose ticket it is.
    pub fn sub(&self) -> &Subject {
        &self.sub
    }
    /// What the stream receives.
    pub fn topics(&self) -> &[TopicPattern] {
        &self.topics
    }
    /// When the bearer token it was issued under expires.
    pub fn bearer_exp(&self) -> DateTime<Utc> {
        self.bearer_exp
    }
    /// When the bearer token it was issued under was issued, if it says.
    pub fn bearer_iat(&self) -> Option<DateTime<Utc>> {
        self.bearer_iat
    }
    /// The `jti` of the bearer token it was issued under, if any.
    pub fn bearer_jti(&self) -> Option<&str> {
        self.bearer_jti.as_deref()
    }
    /// The client IP it is bound to, if it is.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }
    /// When it was issued.
    pub fn issued_at(&self) -> DateTime<Utc> {
        self.issued_at
    }
    /// When it stops being redeemable.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }
    /// Whether it can no longer be redeemed at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }
}

/// Why no ticket was issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The subject already holds its quota of outstanding tickets.
    #[error("the subject holds too many outstanding tickets")]
    TooMany {
        /// When the oldest of them expires.
        retry_after: Duration,
    },
    /// The store holds its maximum number of tickets.
    #[error("the ticket store is full")]
    Full,
    /// The backend cannot be reached.
    #[error("the ticket store is unavailable: {0}")]
    Unavailable(String),
}

/// Why a ticket was not redeemed. The client sees one answer for all of them.
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    /// Never issued, already redeemed, or swept after expiry.
    #[error("unknown or already used")]
    Unknown,
    /// Issued, unused, but past its expiry.
    #[error("expired")]
    Expired,
    /// The backend cannot be reached.
    #[error("the ticket store is unavailable: {0}")]
    Unavailable(String),
}

/// Issues and redeems tickets. Redemption is an atomic take: of concurrent
/// redeems of one ticket exactly one succeeds.
#[async_trait]
pub trait TicketStore: Send + Sync + 'static {
    /// Issues a ticket for `grant` at `now`.
    async fn issue(&self, grant: Grant, now: DateTime<Utc>) -> Result<Ticket, IssueError>;

    /// Takes the ticket `id` out of the store, if it is there and unexpired at `now`.
    async fn redeem(&self, id: TicketId, now: DateTime<Utc>) -> Result<Ticket, RedeemError>;

    /// Drops every outstanding ticket of `sub`; returns how many.
    async fn revoke_subject(&self, sub: &Subject) -> usize;

    /// Removes tickets expired at `now`; returns how many.
    async fn sweep_expired(&self, now: DateTime<Utc>) -> usize;

    /// When the earliest outstanding ticket expires, if the store knows.
    async fn next_expiry(&self) -> Option<DateTime<Utc>>;

    /// How many tickets are held (unredeemed and not yet swept).
    async fn outstanding(&self) -> usize;

    /// Checks the backend answers.
    async fn ping(&self) -> Result<(), crate::redis_link::RedisFailure>;
}

/// Bounds of a ticket store.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// Ticket lifetime.
    pub ttl: Duration,
    /// Outstanding tickets one subject may hold.
    pub per_subject: usize,
    /// Tickets the whole store may hold.
    pub total: usize,
}
