use std::future::Future;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use chrono::TimeDelta;
use futures_util::FutureExt as _;

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

/// The store's methods never wait: polled once, on the calling thread.
fn at_once<F: Future>(call: F) -> F::Output {
    call.now_or_never().expect("completes at once")
}

#[test]
fn a_place_goes_back_to_the_shard_of_the_thread_that_issued() {
    // Each thread counts its tickets in a shard of its own: a ticket issued
    // on one thread and redeemed on another frees its place where it was taken.
    let store = store(10, 4);
    let t0 = Utc::now();
    let ids: Vec<TicketId> = thread::scope(|s| {
        s.spawn(|| {
            (0..4)
                .map(|_| {
                    at_once(store.issue(grant("alice"), t0))
                        .expect("issued")
                        .id()
                })
                .collect()
        })
        .join()
        .expect("issuer")
    });
    assert!(matches!(
        at_once(store.issue(grant("bob"), t0)),
        Err(IssueError::Full)
    ));
    thread::scope(|s| {
        s.spawn(|| {
            for id in &ids {
                at_once(store.redeem(*id, t0)).expect("redeemed");
            }
        });
    });
    assert_eq!(at_once(store.outstanding()), 0);
    thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..4 {
                at_once(store.issue(grant("carol"), t0)).expect("room again");
            }
            assert!(matches!(
                at_once(store.issue(grant("carol"), t0)),
                Err(IssueError::Full)
            ));
        });
    });
}

#[test]
fn threads_racing_to_redeem_the_same_tickets_win_each_once() {
    let store = store(100, 10_000);
    let t0 = Utc::now();
    let ids: Vec<TicketId> = (0..2000)
        .map(|n| {
            let sub = format!("user-{}", n % 100);
            at_once(store.issue(grant(&sub), t0)).expect("issued").id()
        })
        .collect();
    let start = Barrier::new(4);
    let wins: usize = thread::scope(|s| {
        let redeemers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    ids.iter()
                        .filter(|id| at_once(store.redeem(**id, t0)).is_ok())
                        .count()
                })
            })
            .collect();
        redeemers
            .into_iter()
            .map(|t| t.join().expect("redeemer"))
            .sum()
    });
    // Every thread tried every ticket: one win each, none twice.
    assert_eq!(wins, ids.len());
    assert_eq!(at_once(store.outstanding()), 0);
    assert!(store.tickets.is_empty());
    assert!(store.by_subject.is_empty());
}

/// Four threads, started together, each issuing for `sub(thread, n)` for n
/// in 0..40: the tickets issued.
fn issue_from_four_threads(
    store: &MemoryStore,
    now: DateTime<Utc>,
    sub: impl Fn(usize, usize) -> String + Sync,
) -> Vec<Ticket> {
    let start = Barrier::new(4);
    thread::scope(|s| {
        let issuers: Vec<_> = (0..4)
            .map(|t| {
                let (start, sub) = (&start, &sub);
                s.spawn(move || {
                    start.wait();
                    (0..40)
                        .filter_map(|n| at_once(store.issue(grant(&sub(t, n)), now)).ok())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        issuers
            .into_iter()
            .flat_map(|t| t.join().expect("issuer"))
            .collect()
    })
}

#[test]
fn the_per_subject_cap_holds_against_threads_issuing_at_once() {
    let store = store(5, 1000);
    let issued = issue_from_four_threads(&store, Utc::now(), |_, n| format!("user-{}", n % 4));
    for n in 0..4 {
        let sub = Subject::parse(&format!("user-{n}")).expect("subject");
        let held = issued.iter().filter(|t| *t.sub() == sub).count();
        assert_eq!(held, 5, "tickets for user-{n}");
    }
}

#[test]
fn the_total_cap_holds_against_threads_issuing_at_once() {
    let total = 40;
    let store = store(1000, total);
    let t0 = Utc::now();
    let issued = issue_from_four_threads(&store, t0, |t, n| format!("user-{t}-{n}"));
    assert!(issued.len() <= total, "{} issued of {total}", issued.len());
    assert_eq!(at_once(store.outstanding()), issued.len());
    // Every place comes back, whichever shard it was taken in.
    for ticket in &issued {
        at_once(store.redeem(ticket.id(), t0)).expect("redeemed");
    }
    for n in 0..total {
        at_once(store.issue(grant(&format!("other-{n}")), t0)).expect("under the cap");
    }
    assert!(matches!(
        at_once(store.issue(grant("one-more"), t0)),
        Err(IssueError::Full)
    ));
}
