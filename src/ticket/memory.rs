//! The in-process ticket store: a DashMap of tickets, a per-subject index for
//! the quota, and expiry queues in issue order for the sweeper.

use std::collections::VecDeque;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use parking_lot::Mutex;

use super::places::Places;
use super::{Grant, IssueError, RedeemError, StoreLimits, Ticket, TicketId, TicketStore};
use crate::auth::Subject;

/// Shards of ticket ids: an expiry queue and a count of places each.
const SHARDS: usize = 16;

/// `(expires_at, id)` in issue order, hence in expiry order (the TTL is constant).
type ExpiryQueue = Mutex<VecDeque<(DateTime<Utc>, TicketId)>>;

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
    tickets: DashMap<TicketId, Ticket>,
    /// Expiry times of each subject's outstanding tickets, oldest first.
    by_subject: DashMap<Subject, VecDeque<(DateTime<Utc>, TicketId)>>,
    /// `(expires_at, id)` of every ticket issued, sharded by ticket id so that
    /// concurrent issuers rarely meet on one lock; each shard is in issue
    /// order. Entries of tickets already redeemed are skipped when popped.
    expiry: Box<[ExpiryQueue]>,
    /// The total cap, counted per shard.
    places: Places,
}

impl MemoryStore {
    /// An empty store with these bounds.
    pub fn new(limits: StoreLimits) -> Self {
        Self {
            places: Places::new(limits.total, SHARDS),
            limits,
            tickets: DashMap::new(),
            by_subject: DashMap::new(),
            expiry: (0..SHARDS).map(|_| Mutex::new(VecDeque::new())).collect(),
        }
    }

    /// Removes `id` from the map; `expired_at` set means only if it has expired then.
    fn take(&self, id: TicketId, expired_at: Option<DateTime<Utc>>) -> Option<Ticket> {
        let (_, ticket) = match expired_at {
            None => self.tickets.remove(&id)?,
            Some(now) => self.tickets.remove_if(&id, |_, t| t.is_expired(now))?,
        };
        self.places.give_back(id.shard(SHARDS));
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

    fn expiry_queue(&self, id: TicketId) -> &ExpiryQueue {
        &self.expiry[id.shard(SHARDS)]
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
        let shard = ticket.id().shard(SHARDS);
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
        self.expiry_queue(ticket.id())
            .lock()
            .push_back((ticket.expires_at(), ticket.id()));
        self.tickets.insert(ticket.id(), ticket.clone());
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
                let taken = self.tickets.remove(id).is_some();
                if taken {
                    self.places.give_back(id.shard(SHARDS));
                }
                taken
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
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::TimeDelta;

    use super::*;
    use crate::auth::TopicPattern;

    fn store(per_subject: usize, total: usize) -> MemoryStore {
        MemoryStore::new(StoreLimits {
            ttl: Duration::from_secs(60),
            per_subject,
            total,
        })
    }

    fn grant(sub: &str) -> Grant {
        Grant {
            sub: Subject::parse(sub).expect("subject"),
            topics: vec![TopicPattern::parse("a").expect("pattern")],
            bearer_exp: Utc::now() + TimeDelta::hours(1),
            bearer_iat: None,
            bearer_jti: None,
            client_ip: None,
        }
    }

    #[tokio::test]
    async fn a_ticket_redeems_once() {
        let store = store(4, 100);
        let now = Utc::now();
        let ticket = store.issue(grant("alice"), now).await.expect("issued");
        assert!(store.redeem(ticket.id(), now).await.is_ok());
        assert!(matches!(
            store.redeem(ticket.id(), now).await,
            Err(RedeemError::Unknown)
        ));
        assert_eq!(store.outstanding().await, 0);
        assert!(store.by_subject.is_empty());
    }

    #[tokio::test]
    async fn concurrent_redeems_have_one_winner() {
        let store = Arc::new(store(4, 100));
        let now = Utc::now();
        let id = store.issue(grant("alice"), now).await.expect("issued").id();
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.redeem(id, now).await.is_ok() })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            wins += usize::from(task.await.expect("task"));
        }
        assert_eq!(wins, 1);
    }

    #[tokio::test]
    async fn the_quota_frees_up_when_the_oldest_ticket_expires() {
        let store = store(2, 100);
        let t0 = Utc::now();
        store.issue(grant("alice"), t0).await.expect("first");
        store
            .issue(grant("alice"), t0 + TimeDelta::seconds(10))
            .await
            .expect("second");
        let refused = store
            .issue(grant("alice"), t0 + TimeDelta::seconds(20))
            .await;
        match refused {
            Err(IssueError::TooMany { retry_after }) => {
                assert_eq!(retry_after, Duration::from_secs(40))
            }
            other => panic!("expected TooMany, got {other:?}"),
        }
        store
            .issue(grant("bob"), t0 + TimeDelta::seconds(20))
            .await
            .expect("others unaffected");
        store
            .issue(grant("alice"), t0 + TimeDelta::seconds(60))
            .await
            .expect("freed");
    }

    #[tokio::test]
    async fn the_total_cap_holds() {
        let store = store(10, 3);
        let now = Utc::now();
        for sub in ["a", "b", "c"] {
            store.issue(grant(sub), now).await.expect("under the cap");
        }
        assert!(matches!(
            store.issue(grant("d"), now).await,
            Err(IssueError::Full)
        ));
        // Once the held tickets expire, the cap makes room by sweeping.
        let later = now + TimeDelta::seconds(61);
        store
            .issue(grant("d"), later)
            .await
            .expect("room after expiry");
        assert_eq!(store.outstanding().await, 1);
    }

    #[tokio::test]
    async fn sweeping_removes_only_expired_tickets() {
        let store = store(10, 100);
        let t0 = Utc::now();
        let early = store.issue(grant("a"), t0).await.expect("early");
        store
            .issue(grant("b"), t0 + TimeDelta::seconds(30))
            .await
            .expect("late");
        let redeemed = store.issue(grant("c"), t0).await.expect("redeemed");
        store.redeem(redeemed.id(), t0).await.expect("redeem");
        assert_eq!(store.sweep_expired(t0 + TimeDelta::seconds(60)).await, 1);
        assert!(matches!(
            store.redeem(early.id(), t0).await,
            Err(RedeemError::Unknown)
        ));
        assert_eq!(store.outstanding().await, 1);
        assert_eq!(store.next_expiry().await, Some(t0 + TimeDelta::seconds(90)));
    }

    #[test]
    fn only_canonical_uuid_v4_parses_as_a_ticket_id() {
        let id = TicketId::random().to_string();
        assert!(TicketId::parse(&id).is_some());
        assert!(TicketId::parse(&id.to_uppercase()).is_some());
        assert!(TicketId::parse(&uuid::Uuid::now_v7().to_string()).is_none());
        assert!(TicketId::parse(&id.replace('-', "")).is_none());
        assert!(TicketId::parse("eyJhbGciOiJIUzI1NiJ9.e30.sig").is_none());
        assert!(TicketId::parse("").is_none());
    }
}
