//! The in-process ticket store: a DashMap of tickets, a per-subject index for
//! the quota, and expiry queues in issue order for the sweeper.
//!
//! The expiry queues and the total cap's counters are sharded by the thread
//! that issues (each thread takes a shard of its own, in turn), not by ticket
//! id: threads issuing at once then write different cache lines, where with
//! shards picked by random ids every shard's lines went back and forth
//! between cores. A ticket remembers its shard, so whichever thread redeems
//! or sweeps it gives its place back where it was counted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crossbeam_utils::CachePadded;
use dashmap::DashMap;
use parking_lot::Mutex;

use super::places::Places;
use super::{Grant, IssueError, RedeemError, StoreLimits, Ticket, TicketId, TicketStore};
use crate::auth::Subject;

/// Shards of issuing threads: an expiry queue and a count of places each.
const SHARDS: usize = 16;

/// `(expires_at, id)` in issue order, hence in expiry order (the TTL is
/// constant); padded so that neighbouring queues never share a cache line.
type ExpiryQueue = CachePadded<Mutex<VecDeque<(DateTime<Utc>, TicketId)>>>;

/// The shard of the calling thread: threads take shards in turn on first
/// use, so up to `SHARDS` threads issuing at once each write their own.
fn home_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static HOME: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    HOME.with(|home| *home)
}

/// A ticket in the map, with the shard its place is counted in.
#[derive(Debug)]
struct Held {
    ticket: Ticket,
    shard: usize,
}

/// Most expired entries popped from the queue per lock hold, so a sweep never
/// keeps issuers waiting long.
const SWEEP_BATCH: usize = 4096;

/// Tickets in memory, for a single instance.
///
/// With a constant TTL, tickets expire in the order they were issued, so the
/// expiry queue is sorted by construction: a sweep pops from its front and
/// never scans the map.
#[derive(Debug)]
pub struct MemoryStore {
    limits: StoreLimits,
    /// Hashed with foldhash (seeded per process), not SipHash: the keys are
    /// ids this server drew at random, so no one can choose keys that
    /// collide, and a lookup of any presented id finds short chains.
    tickets: DashMap<TicketId, Held, foldhash::fast::RandomState>,
    /// Expiry times of each subject's outstanding tickets, oldest first.
    by_subject: DashMap<Subject, VecDeque<(DateTime<Utc>, TicketId)>>,
    /// `(expires_at, id)` of every ticket issued, sharded by issuing thread so
    /// that concurrent issuers neither meet on one lock nor write one cache
    /// line; each shard is in issue order. Entries of tickets already
    /// redeemed are skipped when popped.
    expiry: Box<[ExpiryQueue]>,
    /// The total cap, counted per shard (the same shards as `expiry`).
    places: Places,
}

impl MemoryStore {
    /// An empty store with these bounds.
    pub fn new(limits: StoreLimits) -> Self {
        Self {
            places: Places::new(limits.total, SHARDS),
            limits,
            tickets: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            by_subject: DashMap::new(),
            expiry: (0..SHARDS).map(|_| CachePadded::default()).collect(),
        }
    }

    /// Removes `id` from the map; `expired_at` set means only if it has expired then.
    fn take(&self, id: TicketId, expired_at: Option<DateTime<Utc>>) -> Option<Ticket> {
        let (_, Held { ticket, shard }) = match expired_at {
            None => self.tickets.remove(&id)?,
            Some(now) => self
                .tickets
                .remove_if(&id, |_, held| held.ticket.is_expired(now))?,
        };
        self.places.give_back(shard);
        self.forget_for_subject(ticket.sub(), id);
        Some(ticket)
    }

    fn forget_for_subject(&self, sub: &Subject, id: TicketId) {
        // One shard lock: forget the ticket, and the subject once it holds none.
        self.by_subject.remove_if_mut(sub, |_, held| {
            held.retain(|(_, other)| *other != id);
            held.is_empty()
        });
    }

    /// Reserves a place for one more ticket of `sub`, or says when one frees up.
    fn reserve(&self, ticket: &Ticket, now: DateTime<Utc>) -> Result<(), IssueError> {
        let mut held = self.by_subject.entry(ticket.sub().clone()).or_default();
        // Expired tickets no longer count, even before the sweeper removes them.
        while held.front().is_some_and(|(at, _)| *at <= now) {
            held.pop_front();
        }
        if held.len() >= self.limits.per_subject {
            let oldest = held.front().map_or(now, |(at, _)| *at);
            let retry_after = (oldest - now).to_std().unwrap_or_default();
            return Err(IssueError::TooMany { retry_after });
        }
        held.push_back((ticket.expires_at(), ticket.id()));
        Ok(())
    }
}

#[async_trait]
impl TicketStore for MemoryStore {
    async fn issue(&self, grant: Grant, now: DateTime<Utc>) -> Result<Ticket, IssueError> {
        let ticket = Ticket::new(grant, now, self.limits.ttl);
        let shard = home_shard();
        if !self.places.take(shard) {
            // Full: expired tickets not yet swept make room.
            self.sweep_expired(now).await;
            if !self.places.take(shard) {
                return Err(IssueError::Full);
            }
        }
        if let Err(e) = self.reserve(&ticket, now) {
            self.places.give_back(shard);
            return Err(e);
        }
        self.expiry[shard]
            .lock()
            .push_back((ticket.expires_at(), ticket.id()));
        let held = Held {
            ticket: ticket.clone(),
            shard,
        };
        self.tickets.insert(ticket.id(), held);
        Ok(ticket)
    }

    async fn redeem(&self, id: TicketId, now: DateTime<Utc>) -> Result<Ticket, RedeemError> {
        let ticket = self.take(id, None).ok_or(RedeemError::Unknown)?;
        if ticket.is_expired(now) {
            return Err(RedeemError::Expired);
        }
        Ok(ticket)
    }

    async fn revoke_subject(&self, sub: &Subject) -> usize {
        let Some((_, held)) = self.by_subject.remove(sub) else {
            return 0;
        };
        held.into_iter()
            .filter(|(_, id)| {
                let taken = self.tickets.remove(id);
                if let Some((_, held)) = &taken {
                    self.places.give_back(held.shard);
                }
                taken.is_some()
            })
            .count()
    }

    async fn sweep_expired(&self, now: DateTime<Utc>) -> usize {
        let mut swept = 0;
        for shard in self.expiry.iter() {
            loop {
                let due: Vec<TicketId> = {
                    let mut queue = shard.lock();
                    let n = queue
                        .iter()
                        .take(SWEEP_BATCH)
                        .take_while(|(at, _)| *at <= now)
                        .count();
                    queue.drain(..n).map(|(_, id)| id).collect()
                };
                if due.is_empty() {
                    break;
                }
                swept += due
                    .into_iter()
                    .filter(|id| self.take(*id, Some(now)).is_some())
                    .count();
            }
        }
        swept
    }

    async fn next_expiry(&self) -> Option<DateTime<Utc>> {
        self.expiry
            .iter()
            .filter_map(|shard| shard.lock().front().map(|(at, _)| *at))
            .min()
    }

    async fn outstanding(&self) -> usize {
        self.places.taken()
    }

    async fn ping(&self) -> Result<(), crate::redis_link::RedisFailure> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
