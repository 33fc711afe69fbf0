//! Revocation, in one place: revoking and lifting (persisted first, then
//! applied here and announced to the other instances), the announcements
//! heard from them, and the reloads from the database that make up for
//! announcements lost on the way. The data itself (the copy of the
//! revocations, and the open streams by subject) is in [`crate::revocation`].

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use crate::audit::{Client, entry};
use crate::auth::{Claims, Subject};
use crate::broker::Notice;
use crate::db::{AuditAction, Database, DbError, Revocation};
use crate::revocation::Revocations;

use super::Hub;

/// How often revocations are read again from the database, in clock time.
pub const REVOCATION_RELOAD: TimeDelta = TimeDelta::seconds(10);

/// Why a revocation could not be changed or listed.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// The database, which holds the revocations, failed.
    #[error("the revocations cannot be read or written")]
    Database(#[from] DbError),
}

/// The revocations in `db`, for the copy an instance starts with.
pub async fn load_revocations(db: &Database) -> Result<Revocations, DbError> {
    let revocations = Revocations::default();
    for revocation in db.revocations().await? {
        if let Ok(sub) = Subject::parse(&revocation.sub) {
            revocations.insert(sub, revocation.revoked_at);
        }
    }
    Ok(revocations)
}

impl Hub {
    /// Revokes `sub` now: persisted, its outstanding tickets dropped, its
    /// streams closed. Returns the revocation time.
    #[tracing::instrument(skip_all, fields(admin = %admin.sub, sub = %sub))]
    pub async fn revoke(
        &self,
        admin: &Claims,
        sub: Subject,
        client: &Client,
    ) -> Result<DateTime<Utc>, RevocationError> {
        let now = self.clock.now();
        self.db.upsert_revocation(sub.as_str(), now).await?;
        self.revocations.insert(sub.clone(), now);
        let tickets = self.tickets.revoke_subject(&sub).await;
        let streams = self.streams_by_subject.close_subject(&sub);
        tracing::warn!(tickets, streams, "subject revoked");
        self.tell_instances(Notice::Revoked {
            sub: sub.clone(),
            at: now,
        })
        .await;
        let mut record = entry(AuditAction::Revoked, now, client);
        record.sub = Some(sub.to_string());
        record.reason = Some(format!("by {}", admin.sub));
        self.audit.record(record).await;
        Ok(now)
    }

    /// Lifts the revocation of `sub`; whether there was one.
    #[tracing::instrument(skip_all, fields(admin = %admin.sub, sub = %sub))]
    pub async fn lift_revocation(
        &self,
        admin: &Claims,
        sub: Subject,
        client: &Client,
    ) -> Result<bool, RevocationError> {
        let lifted = self.db.delete_revocation(sub.as_str()).await?;
        self.revocations.remove(&sub);
        if lifted {
            self.tell_instances(Notice::Lifted { sub: sub.clone() })
                .await;
            tracing::warn!("revocation lifted");
            let mut record = entry(AuditAction::RevocationLifted, self.clock.now(), client);
            record.sub = Some(sub.to_string());
            record.reason = Some(format!("by {}", admin.sub));
            self.audit.record(record).await;
        }
        Ok(lifted)
    }

    /// Every revocation in force.
    pub async fn list_revocations(&self) -> Result<Vec<Revocation>, RevocationError> {
        Ok(self.db.revocations().await?)
    }

    /// Announces a revocation change to the other instances. Should that
    /// fail, they reload revocations from the database once they hear from
    /// the broker again, or at their next periodic reload.
    async fn tell_instances(&self, notice: Notice) {
        if let Err(error) = self.broker.announce(&notice).await {
            tracing::warn!(%error, "other instances will learn of this revocation when Redis is back");
        }
    }

    /// Applies a revocation change announced by an instance (this one included).
    pub async fn apply_notice(&self, notice: Notice) {
        match notice {
            Notice::Revoked { sub, at } => {
                // Our own announcement coming back (times travel in whole
                // milliseconds): already applied.
                let known = self.revocations.at(&sub).map(|t| t.timestamp_millis());
                if known == Some(at.timestamp_millis()) {
                    return;
                }
                self.revocations.insert(sub.clone(), at);
                let streams = self.streams_by_subject.close_subject(&sub);
                tracing::warn!(%sub, streams, "subject revoked on another instance");
            }
            // Not trusted as said: the database is the truth, and a lift
            // read from it cannot be forged or reordered past a new revocation.
            Notice::Lifted { .. } | Notice::Resync => self.reload_revocations().await,
        }
    }

    /// Replaces the copy of the revocations with the database's, and closes
    /// the streams of subjects revoked anew.
    async fn reload_revocations(&self) {
        let mark = self.revocations.mark();
        match self.db.revocations().await {
            Ok(current) => {
                let current = current
                    .into_iter()
                    .filter_map(|r| Subject::parse(&r.sub).ok().map(|sub| (sub, r.revoked_at)));
                for sub in self.revocations.replace_all(mark, current) {
                    self.streams_by_subject.close_subject(&sub);
                }
            }
            Err(error) => tracing::warn!(%error, "cannot reload revocations"),
        }
    }
}

/// Applies the revocation changes the broker hears of, until shutdown.
pub async fn apply_notices(
    hub: Arc<Hub>,
    mut notices: UnboundedReceiver<Notice>,
    shutdown: CancellationToken,
) {
    loop {
        let notice = tokio::select! {
            () = shutdown.cancelled() => return,
            notice = notices.recv() => notice,
        };
        let Some(notice) = notice else { return };
        hub.apply_notice(notice).await;
    }
}

/// Reloads revocations from the database every [`REVOCATION_RELOAD`] of
/// clock time, so an instance that missed an announcement (a lost pub/sub
/// message, another instance writing the database directly) learns of it
/// within that time, and closes the streams it covers.
pub async fn reload_periodically(hub: Arc<Hub>, shutdown: CancellationToken) {
    loop {
        let clock = hub.clock().clone();
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = clock.sleep_until(clock.now() + REVOCATION_RELOAD) => {}
        }
        hub.reload_revocations().await;
    }
}
