//! Counts the process keeps outside [`Metrics`], copied in at each scrape:
//! the refusals the patched actix-http answers before a request reaches the
//! service, and the database operations that ran out of their deadline.

use std::sync::atomic::Ordering;

use actix_http::sse_ticket_patch as edge;

use super::{Metrics, TimeoutLabels};

impl Metrics {
    /// Copies in the refusals the HTTP layer answers before a request reaches
    /// the service (slow and oversized heads): the patched actix-http counts
    /// them for the whole process, and they only ever grow.
    pub(super) fn sync_connection_counts(&self) {
        self.requests_timed_out
            .get_or_create(&TimeoutLabels { phase: "head" })
            .inner()
            .store(edge::request_heads_timed_out(), Ordering::Relaxed);
        self.request_heads_too_large
            .inner()
            .store(edge::request_heads_too_large(), Ordering::Relaxed);
        self.database_timeouts
            .inner()
            .store(crate::db::timeouts(), Ordering::Relaxed);
    }
}
