//! Audit records, queued off the request path and written in batches.
//!
//! A record that must never be lost for room (a ticket issued or redeemed, a
//! revocation, anything an admin does) waits for room in the queue. A rejected
//! ticket presentation, which anyone can send without credentials, is counted
//! in memory instead: one row per client IP, reason and minute of the clock,
//! with a `count`. The first rejection of a row is written at once (the trail
//! shows it without delay), the rest of its count when the minute is over, or
//! at shutdown; the database adds them up in that one row.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Weak};

use sha2::{Digest as _, Sha256};

use crate::clock::SharedClock;
use crate::db::{AuditAction, AuditRecord, BatchWriter, Database, minute_of};
use crate::metrics::Metrics;

/// Audit records waiting to be written; beyond this, a request whose record
/// must be kept waits for room.
const AUDIT_QUEUE: usize = 65_536;

/// Most rows of rejections (client IP, reason, minute) counted in memory at
/// once. A rejection that would start a further one is counted in the row of
/// its reason and minute without a client IP (`client_ip: null`), so that many
/// client addresses (IPv6) cannot grow memory or the trail.
pub const MAX_REJECTION_ROWS: usize = 4096;

/// Who made a request, as the audit trail records it.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// The peer's address.
    pub ip: Option<String>,
    /// Its `User-Agent`.
    pub user_agent: Option<String>,
}

/// A short, one-way fingerprint of a presented ticket: 16 hex characters of
/// its SHA-256, enough to correlate rows, useless to redeem anything.
pub fn fingerprint(ticket: &str) -> String {
    hex::encode(&Sha256::digest(ticket.as_bytes())[..8])
}

/// The audit trail's writer.
#[derive(Debug, Clone)]
pub struct AuditLog {
    writer: BatchWriter<AuditRecord>,
    metrics: Arc<Metrics>,
    rejections: Arc<Rejections>,
}

impl AuditLog {
    /// Starts the background writer into `db`, and the task that writes the
    /// counts of rejections once their minute of `clock` is over.
    pub fn spawn(db: Database, metrics: Arc<Metrics>, clock: SharedClock) -> Self {
        let failures = metrics.clone();
        let (writer, _task) = BatchWriter::spawn(AUDIT_QUEUE, move |records: Vec<AuditRecord>| {
            let db = db.clone();
            let failures = failures.clone();
            async move {
                let written = db.insert_audit(&records).await;
                if let Err(error) = &written {
                    failures.audit_write_failures.inc();
                    tracing::error!(%error, rows = records.len(), "audit rows could not be written");
                }
                written
            }
        });
        Self::with_writer(writer, metrics, clock)
    }

    fn with_writer(
        writer: BatchWriter<AuditRecord>,
        metrics: Arc<Metrics>,
        clock: SharedClock,
    ) -> Self {
        let rejections = Arc::new(Rejections {
            tallies: parking_lot::Mutex::default(),
            writer: writer.clone(),
            metrics: metrics.clone(),
        });
        tokio::spawn(write_each_minute(Arc::downgrade(&rejections), clock));
        Self {
            writer,
            metrics,
            rejections,
        }
    }

    /// Queues `record`, waiting for room in the queue rather than dropping it
    /// (never for the write itself). A `ticket_rejected` record is counted
    /// instead, as [`AuditLog::reject`] does.
    pub async fn record(&self, record: AuditRecord) {
        if record.action == AuditAction::TicketRejected {
            self.reject(record);
            return;
        }
        if self.writer.queue(record).await.is_err() {
            // Only if the writer task died: it lives as long as any AuditLog.
            self.metrics.audit_records_dropped.inc();
            tracing::error!("the audit writer has stopped; a record was lost");
        }
    }

    /// Counts a rejected ticket presentation in the row of its client IP,
    /// reason and minute; never waits. The row keeps the user agent and
    /// ticket fingerprint of the first rejection it counts.
    pub fn reject(&self, record: AuditRecord) {
        self.rejections.count(record);
    }

    /// Writes the counts of rejections so far, then waits until every queued
    /// record is written.
    pub async fn flush(&self) {
        self.rejections.write_all();
        self.writer.flush().await;
    }
}

/// Rejections counted in memory, by the row they go to.
struct Rejections {
    tallies: parking_lot::Mutex<Tallies>,
    writer: BatchWriter<AuditRecord>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Rejections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rejections").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Tallies {
    rows: HashMap<RowKey, Tally>,
    /// The latest minute seen; the rows of earlier ones are written.
    minute: i64,
}

/// What one row of rejections counts: a client IP (or none, once folded),
/// a reason and a minute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RowKey {
    minute: i64,
    reason: Option<String>,
    client_ip: Option<String>,
}

struct Tally {
    /// The row as first written (its `count` aside).
    first: AuditRecord,
    /// Rejections counted and not yet queued for writing.
    unwritten: u64,
}

impl Rejections {
    fn count(&self, mut record: AuditRecord) {
        let minute = minute_of(record.at);
        let mut tallies = self.tallies.lock();
        if minute > tallies.minute {
            tallies.minute = minute;
            self.write_before(&mut tallies, minute);
        }
        let mut key = RowKey {
            minute,
            reason: record.reason.clone(),
            client_ip: record.client_ip.clone(),
        };
        if key.client_ip.is_some()
            && tallies.rows.len() >= MAX_REJECTION_ROWS
            && !tallies.rows.contains_key(&key)
        {
            self.metrics.audit_rejections_folded.inc();
            key.client_ip = None;
            record.client_ip = None;
            record.user_agent = None;
            record.ticket_fingerprint = None;
            record.sub = None;
            record.topics.clear();
        }
        match tallies.rows.entry(key) {
            Entry::Occupied(mut row) => row.get_mut().unwritten += 1,
            Entry::Vacant(row) => {
                record.count = 1;
                // Shown at once; should the queue be full, written with the rest.
                let unwritten = u64::from(self.writer.enqueue(record.clone()).is_err());
                row.insert(Tally {
                    first: record,
                    unwritten,
                });
            }
        }
    }

    /// Writes and forgets the rows of minutes before `minute`.
    fn write_before(&self, tallies: &mut Tallies, minute: i64) {
        tallies.rows.retain(|key, tally| {
            if key.minute >= minute {
                return true;
            }
            self.write(tally);
            false
        });
    }

    /// Writes what every row counted so far (at shutdown); the rows stay, so
    /// that later rejections of the minute add to them.
    fn write_all(&self) {
        for tally in self.tallies.lock().rows.values_mut() {
            self.write(tally);
        }
    }

    fn write(&self, tally: &mut Tally) {
        if tally.unwritten == 0 {
            return;
        }
        let mut record = tally.first.clone();
        record.count = std::mem::take(&mut tally.unwritten);
        if self.writer.enqueue(record).is_err() {
            self.metrics.audit_records_dropped.inc();
        }
    }
}

/// Writes the rows of each minute of `clock` once it is over, until the
/// audit log is dropped.
async fn write_each_minute(rejections: Weak<Rejections>, clock: SharedClock) {
    loop {
        let next = (minute_of(clock.now()) + 1).saturating_mul(60_000);
        let Some(next) = chrono::DateTime::from_timestamp_millis(next) else {
            return;
        };
        clock.sleep_until(next).await;
        let Some(rejections) = rejections.upgrade() else {
            return;
        };
        let minute = minute_of(clock.now());
        let mut tallies = rejections.tallies.lock();
        if minute > tallies.minute {
            tallies.minute = minute;
        }
        rejections.write_before(&mut tallies, minute);
    }
}

/// A record of `action` by `client` at `at`.
pub fn entry(
    action: AuditAction,
    at: chrono::DateTime<chrono::Utc>,
    client: &Client,
) -> AuditRecord {
    AuditRecord {
        at,
        action,
        reason: None,
        sub: None,
        client_ip: client.ip.clone(),
        user_agent: client.user_agent.clone(),
        topics: Vec::new(),
        ticket_fingerprint: None,
        count: 1,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::{DateTime, TimeDelta, Utc};
    use tokio::sync::Semaphore;

    use super::*;
    use crate::clock::{Clock as _, ManualClock};

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
        let (writer, _task) = BatchWriter::spawn(queue, move |records: Vec<AuditRecord>| {
            let (sink, door) = (sink.clone(), door.clone());
            async move {
                door.acquire().await.map_err(|_| "closed")?.forget();
                sink.lock().map_err(|_| "poisoned")?.extend(records);
                Ok::<_, &str>(())
            }
        });
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
}
