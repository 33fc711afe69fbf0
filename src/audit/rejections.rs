//! Rejected ticket presentations, counted in memory per client IP, reason
//! and minute, and written as one row each with its `count`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Weak};

use super::MAX_REJECTION_ROWS;
use crate::clock::SharedClock;
use crate::db::{AuditRecord, BatchWriter, minute_of};
use crate::metrics::Metrics;

/// Rejections counted in memory, by the row they go to.
pub(super) struct Rejections {
    pub(super) tallies: parking_lot::Mutex<Tallies>,
    pub(super) writer: BatchWriter<AuditRecord>,
    pub(super) metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Rejections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rejections").finish_non_exhaustive()
    }
}

#[derive(Default)]
pub(super) struct Tallies {
    pub(super) rows: HashMap<RowKey, Tally>,
    /// The latest minute seen; the rows of earlier ones are written.
    minute: i64,
}

/// What one row of rejections counts: a client IP (or none, once folded),
/// a reason and a minute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct RowKey {
    minute: i64,
    reason: Option<String>,
    client_ip: Option<String>,
}

pub(super) struct Tally {
    /// The row as first written (its `count` aside).
    first: AuditRecord,
    /// Rejections counted and not yet queued for writing.
    unwritten: u64,
}

impl Rejections {
    pub(super) fn count(&self, mut record: AuditRecord) {
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
    pub(super) fn write_all(&self) {
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
pub(super) async fn write_each_minute(rejections: Weak<Rejections>, clock: SharedClock) {
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
