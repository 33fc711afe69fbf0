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
use crate::db::{AuditAction, Database, DbError, JtiRevocation, Revocation};
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

/// Longest `jti` a revocation takes, in bytes (longer ones are no `jti` an
/// identity provider issues).
pub const MAX_JTI_LEN: usize = 1024;

/// A token revoked by its `jti`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JtiRevoked {
    /// When.
    pub revoked_at: DateTime<Utc>,
    /// Until when the token is refused.
    pub until: DateTime<Utc>,
}

/// The revocations in `db` in force at `now`, for the copy an instance
/// starts with.
pub async fn load_revocations(db: &Database, now: DateTime<Utc>) -> Result<Revocations, DbError> {
    let revocations = Revocations::default();
    for revocation in db.revocations().await? {
        if let Ok(sub) = Subject::parse(&revocation.sub) {
            revocations.insert(sub, revocation.revoked_at);
        }
    }
    for revocation in db.jti_revocations(now).await? {
        revocations.insert_jti(revocation.jti.into(), revocation.until);
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

    /// Revokes the one token carrying `jti` until `until` (by default for
    /// `SSE_TICKET_JTI_REVOCATION_TTL`): persisted, the streams opened under
    /// it closed; its outstanding tickets are refused at redemption.
    #[tracing::instrument(skip_all, fields(admin = %admin.sub, jti = ?jti))]
    pub async fn revoke_jti(
        &self,
        admin: &Claims,
        jti: Arc<str>,
        until: Option<DateTime<Utc>>,
        client: &Client,
    ) -> Result<JtiRevoked, RevocationError> {
        let now = self.clock.now();
        let until = match until {
            // Over already: there is nothing left for it to refuse.
            Some(until) if until <= now => {
                return Ok(JtiRevoked {
                    revoked_at: now,
                    until,
                });
            }
            Some(until) => until,
            None => now
                .checked_add_signed(crate::clock::span(self.jti_revocation_ttl))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        };
        self.db.upsert_jti_revocation(&jti, now, until).await?;
        self.revocations.insert_jti(jti.clone(), until);
        self.count_jti_revocations();
        let streams = self.streams_by_subject.close_jti(&jti);
        tracing::warn!(streams, %until, "token revoked by jti");
        self.tell_instances(Notice::RevokedJti {
            jti: jti.clone(),
            until,
        })
        .await;
        let mut record = entry(AuditAction::Revoked, now, client);
        record.reason = Some(format!("jti {jti} by {}", admin.sub));
        self.audit.record(record).await;
        Ok(JtiRevoked {
            revoked_at: now,
            until,
        })
    }

    /// Lifts the revocation of the token `jti`; whether one was in force.
    #[tracing::instrument(skip_all, fields(admin = %admin.sub, jti = ?jti))]
    pub async fn lift_jti_revocation(
        &self,
        admin: &Claims,
        jti: Arc<str>,
        client: &Client,
    ) -> Result<bool, RevocationError> {
        let now = self.clock.now();
        let lifted = self.db.delete_jti_revocation(&jti, now).await?;
        self.revocations.remove_jti(&jti);
        self.count_jti_revocations();
        if lifted {
            self.tell_instances(Notice::LiftedJti { jti: jti.clone() })
                .await;
            tracing::warn!("revocation by jti lifted");
            let mut record = entry(AuditAction::RevocationLifted, now, client);
            record.reason = Some(format!("jti {jti} by {}", admin.sub));
            self.audit.record(record).await;
        }
        Ok(lifted)
    }

    /// Every revocation by `jti` in force.
    pub async fn list_jti_revocations(&self) -> Result<Vec<JtiRevocation>, RevocationError> {
        Ok(self.db.jti_revocations(self.clock.now()).await?)
    }

    fn count_jti_revocations(&self) {
        self.metrics
            .jti_revocations
            .set(i64::try_from(self.revocations.jti_count()).unwrap_or(i64::MAX));
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
            Notice::RevokedJti { jti, until } => {
                let known = self.revocations.jti_until(&jti);
                if known.map(|t| t.timestamp_millis()) == Some(until.timestamp_millis()) {
                    return;
                }
                if until <= self.clock.now() {
                    return;
                }
                self.revocations.insert_jti(jti.clone(), until);
                self.count_jti_revocations();
                let streams = self.streams_by_subject.close_jti(&jti);
                tracing::warn!(jti = ?jti, streams, "token revoked by jti on another instance");
            }
            // Not trusted as said: the database is the truth, and a lift
            // read from it cannot be forged or reordered past a new revocation.
            Notice::Lifted { .. } | Notice::LiftedJti { .. } | Notice::Resync => {
                self.reload_revocations().await;
            }
        }
    }

    /// Replaces the copy of the revocations with the database's, and closes
    /// the streams of subjects and tokens revoked anew; revocations by `jti`
    /// past their time are forgotten.
    async fn reload_revocations(&self) {
        let mark = self.revocations.mark();
        let now = self.clock.now();
        let read = match self.db.revocations().await {
            Ok(subjects) => self.db.jti_revocations(now).await.map(|j| (subjects, j)),
            Err(error) => Err(error),
        };
        match read {
            Ok((subjects, jtis)) => {
                let subjects = subjects
                    .into_iter()
                    .filter_map(|r| Subject::parse(&r.sub).ok().map(|sub| (sub, r.revoked_at)));
                for sub in self.revocations.replace_all(mark, subjects) {
                    self.streams_by_subject.close_subject(&sub);
                }
                let jtis = jtis.into_iter().map(|r| (Arc::from(r.jti), r.until));
                for jti in self.revocations.replace_jtis(mark, jtis, now) {
                    self.streams_by_subject.close_jti(&jti);
                }
                self.count_jti_revocations();
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
