//! The [`Ledger`]: one keyed publish's way through the store: claim the key,
//! or wait for its owner, or take over from an owner whose lease ran out;
//! then settle it as done, or abandon it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Claim, Entry, Fingerprint, IdempotencyError, IdempotencyStore, KeyDigest, LEASE, Owner, Times,
    WAIT,
};
use crate::backoff::Backoff;
use crate::clock::{SharedClock, span};

/// First and longest pause between two looks at a key another request is
/// publishing.
const POLL_MIN: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(250);

/// Who may publish a key while another's claim on it is pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Anyone with the key (`POST /publish`): wait for the claim's owner,
    /// or for its lease to end.
    Shared,
    /// Only the caller may publish it now (the outbox, holding the row's
    /// topic lock in the app's database, which a dead instance's
    /// transaction gave up with its connection): a pending claim is a dead
    /// owner's.
    Exclusive,
}

/// How a keyed publish begins.
#[derive(Debug)]
pub enum Begun {
    /// This request publishes, under the claim's event id.
    Publish(Claimed),
    /// The same publish happened before, with this id: answer it.
    Replay(Uuid),
    /// The key was used (or is in use) for another publish.
    Reused,
    /// Another request is still publishing this key after the wait; its
    /// lease ends in `retry_after` (at least a second).
    InProgress {
        /// When to try again.
        retry_after: Duration,
    },
}

/// A key this request holds while it publishes.
#[derive(Debug)]
pub struct Claimed {
    key: KeyDigest,
    claim: Claim,
    taken_over: bool,
}

impl Claimed {
    /// The event id to publish under.
    pub fn id(&self) -> Uuid {
        self.claim.id
    }

    /// Whether the claim was taken over from an owner whose lease ran out.
    pub fn taken_over(&self) -> bool {
        self.taken_over
    }
}

/// Keyed publishes over a shared store.
#[derive(Debug, Clone)]
pub struct Ledger {
    store: Arc<dyn IdempotencyStore>,
    clock: SharedClock,
    ttl: Duration,
    wait: Duration,
}

impl Ledger {
    /// A ledger on `store` remembering published keys for `ttl`.
    pub fn new(store: Arc<dyn IdempotencyStore>, clock: SharedClock, ttl: Duration) -> Self {
        Self {
            store,
            clock,
            ttl,
            wait: WAIT,
        }
    }

    /// The same, waiting at most `wait` for a concurrent owner (for tests).
    #[cfg(test)]
    pub(crate) fn waiting(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Begins a publish of `fingerprint` under `key`. `held(id)` says
    /// whether the event history already holds `id`: an owner whose lease
    /// ran out may have stored its event before it stopped. With
    /// [`Holder::Exclusive`], a pending claim is taken over at once.
    pub async fn begin<H, F>(
        &self,
        key: KeyDigest,
        fingerprint: Fingerprint,
        held: H,
        holder: Holder,
    ) -> Result<Begun, IdempotencyError>
    where
        H: Fn(Uuid) -> F,
        F: Future<Output = Result<bool, IdempotencyError>>,
    {
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut backoff = Backoff::new(POLL_MIN, POLL_MAX);
        let fresh = Claim {
            owner: Owner::random(),
            fingerprint,
            id: Uuid::now_v7(),
        };
        let mut lease_left = Duration::ZERO;
        let mut first = true;
        loop {
            let times = self.times(self.clock.now());
            // Most keys are new: the first look claims. A key found taken is
            // watched by reads until it is done or free again.
            let seen = if first {
                None
            } else {
                self.store.peek(key, times.now).await?
            };
            first = false;
            let found = match seen {
                Some(entry) => Some(entry),
                None => self.store.claim(key, &fresh, times).await?,
            };
            match found {
                None => {
                    return Ok(Begun::Publish(Claimed {
                        key,
                        claim: fresh,
                        taken_over: false,
                    }));
                }
                Some(Entry::Done { fingerprint: f, id }) => {
                    return Ok(answer(f == fingerprint, id));
                }
                Some(Entry::Pending { claim, lease_until })
                    if lease_until > times.now && holder == Holder::Shared =>
                {
                    if claim.fingerprint != fingerprint {
                        return Ok(Begun::Reused);
                    }
                    lease_left = (lease_until - times.now).to_std().unwrap_or_default();
                }
                Some(Entry::Pending {
                    claim: stale,
                    lease_until,
                }) => {
                    // An exclusive holder judges the claim as of its lease's
                    // end: the stores take over only an ended lease.
                    let times = Times {
                        now: times.now.max(lease_until),
                        ..times
                    };
                    let same = stale.fingerprint == fingerprint;
                    if held(stale.id).await? {
                        // Its owner stored it and stopped before saying so.
                        let expires_at = self.expiry(times.now);
                        self.store
                            .complete(key, &stale.owner, times.now, expires_at)
                            .await?;
                        return Ok(answer(same, stale.id));
                    }
                    // Nothing of it was stored: publish it under its id, or
                    // this other body under a new one.
                    let claim = Claim {
                        owner: fresh.owner.clone(),
                        fingerprint,
                        id: if same { stale.id } else { fresh.id },
                    };
                    if self
                        .store
                        .take_over(key, &stale.owner, &claim, times)
                        .await?
                    {
                        return Ok(Begun::Publish(Claimed {
                            key,
                            claim,
                            taken_over: true,
                        }));
                    }
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(Begun::InProgress {
                    retry_after: lease_left.max(Duration::from_secs(1)),
                });
            }
            tokio::time::sleep(backoff.next_wait().min(left)).await;
        }
    }

    /// Records `claimed` as published; `false` if another request took it
    /// over meanwhile (this one ran past its lease).
    pub async fn finish(&self, claimed: &Claimed) -> Result<bool, IdempotencyError> {
        let now = self.clock.now();
        self.store
            .complete(claimed.key, &claimed.claim.owner, now, self.expiry(now))
            .await
    }

    /// Gives `claimed` up after its publish failed: the next request with
    /// the key takes over at once (and publishes under the same id only if
    /// the history does not hold it already).
    pub async fn abandon(&self, claimed: &Claimed) -> Result<bool, IdempotencyError> {
        self.store.abandon(claimed.key, &claimed.claim.owner).await
    }

    /// The times of a claim made `now`: its lease, and its entry, which
    /// outlives the lease so that an owner's crash is noticed.
    fn times(&self, now: DateTime<Utc>) -> Times {
        Times {
            now,
            lease_until: now + span(LEASE),
            expires_at: self.expiry(now).max(now + span(LEASE)),
        }
    }

    /// When a key published `now` is forgotten.
    fn expiry(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now.checked_add_signed(span(self.ttl))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// A repeat's answer: the same publish replays `id`; another is refused.
fn answer(same: bool, id: Uuid) -> Begun {
    if same {
        Begun::Replay(id)
    } else {
        Begun::Reused
    }
}
