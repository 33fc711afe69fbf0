//! The audit log: what must never be dropped, and how rejections are counted.

use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Semaphore;

use super::*;
use crate::clock::{Clock as _, ManualClock};
use crate::db::minute_of;

/// An audit log whose batches land in `written`, each once `gate` lets it.
struct Harness {
    log: AuditLog,
    written: Arc<Mutex<Vec<AuditRecord>>>,
    gate: Arc<Semaphore>,
    clock: ManualClock,
    metrics: Arc<Metrics>,
}

fn harness(queue: usize, open: bool) -> Harness {
    let written = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(Semaphore::new(if open {
        Semaphore::MAX_PERMITS
    } else {
        0
    }));
    let (sink, door) = (written.clone(), gate.clone());
    let (writer, _task) = BatchWriter::spawn(
        queue,
        Batching::AT_ONCE,
        move |records: Vec<AuditRecord>| {
            let (sink, door) = (sink.clone(), door.clone());
            async move {
                door.acquire().await.map_err(|_| "closed")?.forget();
                sink.lock().map_err(|_| "poisoned")?.extend(records);
                Ok::<_, &str>(())
            }
        },
    );
    let start: DateTime<Utc> = "2026-11-25T14:00:10Z".parse().expect("time");
    let clock = ManualClock::new(start);
    let metrics = Arc::new(Metrics::new());
    let log = AuditLog::with_writer(writer, metrics.clone(), Arc::new(clock.clone()));
    Harness {
        log,
        written,
        gate,
        clock,
        metrics,
    }
}

impl Harness {
    fn rejection(&self, ip: &str, reason: &str, ticket: &str) -> AuditRecord {
        let client = Client {
            ip: Some(ip.to_owned()),
            user_agent: Some(format!("agent of {ticket}")),
        };
        let mut record = entry(AuditAction::TicketRejected, self.clock.now(), &client);
        record.reason = Some(reason.to_owned());
        record.ticket_fingerprint = Some(fingerprint(ticket));
        record
    }

    fn written(&self) -> Vec<AuditRecord> {
        self.written.lock().expect("lock").clone()
    }

    /// The rows written for `ip` and `reason`, and the sum of their counts.
    fn counted(&self, ip: Option<&str>, reason: &str) -> (Vec<AuditRecord>, u64) {
        let rows: Vec<AuditRecord> = self
            .written()
            .into_iter()
            .filter(|r| r.client_ip.as_deref() == ip && r.reason.as_deref() == Some(reason))
            .collect();
        let sum = rows.iter().map(|r| r.count).sum();
        (rows, sum)
    }

    async fn until(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let waited = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while !done(self) {
                tokio::task::yield_now().await;
            }
        });
        assert!(waited.await.is_ok(), "{what}: {:#?}", self.written());
    }
}

#[tokio::test]
async fn rejections_make_one_row_per_client_ip_reason_and_minute() {
    let h = harness(64, true);
    for n in 0..300 {
        h.log
            .reject(h.rejection("203.0.113.7", "unknown", &format!("t{n}")));
    }
    h.log.reject(h.rejection("203.0.113.7", "expired", "e"));
    h.log.reject(h.rejection("2001:db8::1", "unknown", "v6"));
    // The first of each row is written at once.
    h.until("first rows", |h| h.written().len() == 3).await;
    let (rows, sum) = h.counted(Some("203.0.113.7"), "unknown");
    assert_eq!((rows.len(), sum), (1, 1));
    assert_eq!(
        rows[0].ticket_fingerprint,
        Some(fingerprint("t0")),
        "the first one's"
    );
    assert_eq!(rows[0].user_agent.as_deref(), Some("agent of t0"));

    // The minute ends: the rest of each count follows, for the same row.
    h.clock.advance(TimeDelta::seconds(50));
    h.until("the rest of the minute", |h| {
        h.counted(Some("203.0.113.7"), "unknown").1 == 300
    })
    .await;
    let (rows, _) = h.counted(Some("203.0.113.7"), "unknown");
    assert_eq!(rows.len(), 2, "once at once, once at the end of the minute");
    assert!(
        rows.iter()
            .all(|r| r.at == rows[0].at && r.ticket_fingerprint == rows[0].ticket_fingerprint)
    );
    assert_eq!(h.counted(Some("203.0.113.7"), "expired").1, 1);
    assert_eq!(h.counted(Some("2001:db8::1"), "unknown").1, 1);

    // A new minute starts a new row.
    h.log.reject(h.rejection("203.0.113.7", "unknown", "later"));
    h.log.flush().await;
    let (rows, sum) = h.counted(Some("203.0.113.7"), "unknown");
    assert_eq!((rows.len(), sum), (3, 301));
    assert_ne!(minute_of(rows[2].at), minute_of(rows[0].at));
    assert_eq!(h.metrics.audit_records_dropped.get(), 0);
}

#[tokio::test]
async fn past_the_row_limit_rejections_are_folded_into_one_row_without_client_ip() {
    let h = harness(2 * MAX_REJECTION_ROWS, true);
    for n in 0..MAX_REJECTION_ROWS + 40 {
        h.log
            .reject(h.rejection(&format!("2001:db8::{n:x}"), "malformed", "x"));
    }
    assert_eq!(
        h.log.rejections.tallies.lock().rows.len(),
        MAX_REJECTION_ROWS + 1
    );
    assert_eq!(h.metrics.audit_rejections_folded.get(), 40);
    h.log.flush().await;
    let (rows, sum) = h.counted(None, "malformed");
    assert_eq!(sum, 40);
    assert!(
        rows.iter()
            .all(|r| r.user_agent.is_none() && r.ticket_fingerprint.is_none())
    );
    let all: u64 = h.written().iter().map(|r| r.count).sum();
    assert_eq!(
        all,
        (MAX_REJECTION_ROWS + 40) as u64,
        "every rejection counted once"
    );
}

#[tokio::test]
async fn a_record_that_must_be_kept_waits_for_room_instead_of_being_dropped() {
    let h = harness(2, false);
    let issued = |n: i64| {
        let mut r = entry(AuditAction::TicketIssued, h.clock.now(), &Client::default());
        r.sub = Some(format!("s{n}"));
        r
    };
    // One record stuck in a write that does not end, two in the queue: full.
    h.log.record(issued(1)).await;
    tokio::task::yield_now().await;
    h.log.record(issued(2)).await;
    h.log.record(issued(3)).await;
    let revoked = {
        let mut r = entry(AuditAction::Revoked, h.clock.now(), &Client::default());
        r.sub = Some("mallory".into());
        r
    };
    let log = h.log.clone();
    let mut waiting = tokio::spawn(async move { log.record(revoked).await });
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(50), &mut waiting)
            .await
            .is_err(),
        "waits while the queue is full"
    );
    // Rejections meanwhile never wait (and are only counted).
    for n in 0..100 {
        h.log
            .reject(h.rejection("198.51.100.1", "unknown", &format!("t{n}")));
    }
    h.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    waiting.await.expect("recorded once there is room");
    h.log.flush().await;
    let written = h.written();
    assert!(
        written.iter().any(|r| r.action == AuditAction::Revoked),
        "{written:#?}"
    );
    assert_eq!(
        written
            .iter()
            .filter(|r| r.action == AuditAction::TicketIssued)
            .count(),
        3
    );
    assert_eq!(h.counted(Some("198.51.100.1"), "unknown").1, 100);
    assert_eq!(h.metrics.audit_records_dropped.get(), 0);
}

#[test]
fn a_fingerprint_is_short_stable_and_not_the_ticket() {
    let ticket = "3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60";
    let print = fingerprint(ticket);
    assert_eq!(print.len(), 16);
    assert_eq!(print, fingerprint(ticket));
    assert_ne!(print, fingerprint("3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f61"));
    assert!(!ticket.contains(&print));
}
