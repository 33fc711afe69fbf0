//! `Idempotency-Key` on `POST /publish` (and the outbox's `idempotency_key`):
//! a repeat of a publish answers the first one's event id instead of
//! publishing again.
//!
//! A key lives in a [`IdempotencyStore`] shared by every instance: Redis when
//! configured ([`RedisStore`]), else the database ([`DatabaseStore`]). It is
//! known there by a [`KeyDigest`] (SHA-256 of its [`Scope`] and the key),
//! and holds an [`Entry`]:
//! - *pending*: a publish of this key is under way, by the claim's owner, who
//!   chose its event id up front; the claim is a lease of [`LEASE`];
//! - *done*: the event was published with that id; remembered for
//!   `SSE_TICKET_IDEMPOTENCY_TTL` after that.
//!
//! The [`Ledger`] drives a publish through it: claim, or wait for a
//! concurrent owner, or take over from one whose lease ran out (a crash),
//! then settle. Every expiry is judged by the service's clock, which the
//! stores are given, so tests move time instead of waiting.

mod database;
mod fingerprint;
mod key;
mod ledger;
mod redis_store;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::DbError;
use crate::redis_link::RedisFailure;

pub use database::DatabaseStore;
pub use fingerprint::Fingerprint;
pub use key::{IdempotencyKey, KeyDigest, KeyError, MAX_KEY_LEN, Scope};
pub use ledger::{Begun, Claimed, Holder, Ledger};
pub use redis_store::RedisStore;

/// How long a pending claim holds a key before another request may take it
/// over: longer than a publish takes (its database and Redis steps each
/// give up within 5 s).
pub const LEASE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a repeat waits for a concurrent publish of its key to finish
/// before it answers `503` (with `Retry-After`).
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Who holds a pending claim: a random token of the request that made it.
#[derive(Clone, PartialEq, Eq)]
pub struct Owner(String);

impl Owner {
    /// A fresh owner token.
    pub fn random() -> Self {
        Self(Uuid::new_v4().simple().to_string())
    }

    /// The token as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A token read back from a store.
    pub(crate) fn stored(token: String) -> Self {
        Self(token)
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Owner({})", self.0)
    }
}

/// A claim on a key: who publishes, what, and under which event id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Its owner.
    pub owner: Owner,
    /// The fingerprint of the publish.
    pub fingerprint: Fingerprint,
    /// The event id chosen for it.
    pub id: Uuid,
}

/// What a store holds under a key (entries past their expiry are absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A publish under way, or abandoned (its lease then ends at once).
    Pending {
        /// The claim.
        claim: Claim,
        /// Until when its owner holds it.
        lease_until: DateTime<Utc>,
    },
    /// A publish that happened.
    Done {
        /// The fingerprint of what was published.
        fingerprint: Fingerprint,
        /// The event's id.
        id: Uuid,
    },
}

/// When a claim is made, and until when its lease and its entry last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    /// Now, by the service's clock.
    pub now: DateTime<Utc>,
    /// The end of the claim's lease.
    pub lease_until: DateTime<Utc>,
    /// The end of the entry: the store forgets the key then.
    pub expires_at: DateTime<Utc>,
}

/// Where keys are kept, shared by every instance. Each operation is atomic
/// on one key.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + fmt::Debug {
    /// The live entry under `key` at `now`, if any; writes nothing.
    async fn peek(
        &self,
        key: KeyDigest,
        now: DateTime<Utc>,
    ) -> Result<Option<Entry>, IdempotencyError>;

    /// Writes `claim` as pending under `key` if no entry is there (or only
    /// an expired one); returns `None` when it did, else the entry found.
    async fn claim(
        &self,
        key: KeyDigest,
        claim: &Claim,
        times: Times,
    ) -> Result<Option<Entry>, IdempotencyError>;

    /// Replaces the pending claim of `stale`, whose lease has ended by
    /// `times.now`, with `claim`; whether it did (not if anything changed).
    async fn take_over(
        &self,
        key: KeyDigest,
        stale: &Owner,
        claim: &Claim,
        times: Times,
    ) -> Result<bool, IdempotencyError>;

    /// Turns the pending claim of `owner` into a done entry lasting from
    /// `now` until `expires_at`; whether it was still that owner's.
    async fn complete(
        &self,
        key: KeyDigest,
        owner: &Owner,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, IdempotencyError>;

    /// Ends the lease of `owner`'s pending claim at once (its publish
    /// failed), keeping its id: the next request takes over; whether it was
    /// still that owner's.
    async fn abandon(&self, key: KeyDigest, owner: &Owner) -> Result<bool, IdempotencyError>;
}

/// Why the idempotency of a publish could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// Redis did not answer.
    #[error("the Idempotency-Key store (Redis) did not answer")]
    Redis(#[source] RedisFailure),
    /// The database did not answer.
    #[error("the Idempotency-Key store (database) did not answer")]
    Database(#[source] DbError),
    /// The database's writer did not commit the change.
    #[error("the Idempotency-Key store (database) did not commit a change")]
    Writer(#[source] crate::db::BatchError),
    /// The store holds an entry this service did not write.
    #[error("an Idempotency-Key entry is unreadable: {0}")]
    Corrupt(&'static str),
}

#[cfg(test)]
mod tests;
