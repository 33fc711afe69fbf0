//! Revoked subjects (cached from the database for the hot path) and the open
//! streams of each subject, so a revocation can close them. Revocations of
//! single tokens by `jti` are in [`jti`].

mod jti;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use crate::auth::{Claims, Subject};

/// Revocation times by subject: a token of a revoked subject issued before
/// that time (or without `iat`) is refused.
///
/// The database is the truth; this is its copy for the hot path, changed at
/// once by this instance's revocations and lifts and by other instances'
/// announcements, and replaced now and then by a fresh read of the database.
/// Every change is numbered, so that a read that began before a change cannot
/// undo it: see [`Revocations::mark`].
#[derive(Debug, Default)]
pub struct Revocations {
    revoked: DashMap<Subject, Revoked>,
    /// Lifts made since the last replacement, by change number.
    lifted: DashMap<Subject, u64>,
    /// Tokens revoked by `jti`, in force until a time.
    jtis: DashMap<Arc<str>, jti::RevokedJti>,
    /// Lifts by `jti` made since the last replacement, by change number.
    lifted_jtis: DashMap<Arc<str>, u64>,
    changes: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Revoked {
    at: DateTime<Utc>,
    change: u64,
}

/// The changes a read of the database is known to reflect: those made
/// before it began.
#[derive(Debug, Clone, Copy)]
pub struct Mark(u64);

impl Revocations {
    fn next_change(&self) -> u64 {
        self.changes.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Records that `sub` was revoked at `at` (once it is in the database).
    pub fn insert(&self, sub: Subject, at: DateTime<Utc>) {
        let change = self.next_change();
        self.lifted.remove(&sub);
        self.revoked.insert(sub, Revoked { at, change });
    }

    /// When `sub` was revoked, if it is.
    pub fn at(&self, sub: &Subject) -> Option<DateTime<Utc>> {
        self.revoked.get(sub).map(|r| r.at)
    }

    /// Taken before reading every revocation from the database, for
    /// [`Revocations::replace_all`].
    pub fn mark(&self) -> Mark {
        Mark(self.changes.load(Ordering::Acquire))
    }

    /// Replaces every revocation with `current`, as read from the database
    /// after `mark` was taken; returns the subjects revoked anew (absent
    /// before, or revoked at another time). What changed here after the mark
    /// stays as it is: the read may predate it, and must not undo a
    /// revocation made meanwhile.
    pub fn replace_all(
        &self,
        mark: Mark,
        current: impl IntoIterator<Item = (Subject, DateTime<Utc>)>,
    ) -> Vec<Subject> {
        let current: HashMap<Subject, DateTime<Utc>> = current.into_iter().collect();
        self.revoked
            .retain(|sub, r| r.change > mark.0 || current.contains_key(sub));
        let anew = current
            .into_iter()
            .filter(|(sub, at)| {
                if self.lifted.get(sub).is_some_and(|change| *change > mark.0) {
                    return false;
                }
                match self.revoked.get(sub).map(|r| *r) {
                    Some(r) if r.change > mark.0 || r.at == *at => false,
                    _ => {
                        let change = self.next_change();
                        self.revoked
                            .insert(sub.clone(), Revoked { at: *at, change });
                        true
                    }
                }
            })
            .map(|(sub, _)| sub)
            .collect();
        self.lifted.retain(|_, change| *change > mark.0);
        anew
    }

    /// Forgets the revocation of `sub` (once it is gone from the database).
    pub fn remove(&self, sub: &Subject) {
        let change = self.next_change();
        self.revoked.remove(sub);
        self.lifted.insert(sub.clone(), change);
    }

    /// Whether `claims` come from a token a revocation covers at `now`:
    /// its subject's, or its own by `jti`.
    pub fn refuses(&self, claims: &Claims, now: DateTime<Utc>) -> bool {
        self.covers(&claims.sub, claims.iat) || self.covers_jti(claims.jti.as_deref(), now)
    }

    /// Whether a revocation of `sub` covers a token issued at `iat`: one
    /// issued before it, in the same second (`iat` has whole seconds), or
    /// saying nothing of when it was issued.
    pub fn covers(&self, sub: &Subject, iat: Option<DateTime<Utc>>) -> bool {
        self.revoked
            .get(sub)
            .is_some_and(|r| iat.is_none_or(|iat| iat.timestamp() <= r.at.timestamp()))
    }

    /// Whether something of `sub` made at `made` predates a revocation.
    pub fn predates(&self, sub: &Subject, made: DateTime<Utc>) -> bool {
        self.revoked.get(sub).is_some_and(|r| made < r.at)
    }
}

/// The open streams of each subject, each with a token that closes it, and
/// the caps on how many there may be.
#[derive(Debug)]
pub struct StreamRegistry {
    by_subject: Arc<DashMap<Subject, HashMap<u64, CancellationToken>>>,
    /// The same streams, by the `jti` of the token they were opened under.
    by_jti: Arc<DashMap<Arc<str>, HashMap<u64, CancellationToken>>>,
    next_id: AtomicU64,
    /// Streams listed now, across subjects.
    open: Arc<AtomicUsize>,
    per_subject: usize,
    total: usize,
}

/// Why a stream was not listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The subject already holds its streams.
    #[error("the subject holds its maximum of open streams")]
    SubjectFull,
    /// This instance holds its streams.
    #[error("this instance holds its maximum of open streams")]
    InstanceFull,
}

/// Keeps a stream listed while it lives.
#[derive(Debug)]
pub struct Registration {
    by_subject: Arc<DashMap<Subject, HashMap<u64, CancellationToken>>>,
    by_jti: Arc<DashMap<Arc<str>, HashMap<u64, CancellationToken>>>,
    open: Arc<AtomicUsize>,
    sub: Subject,
    jti: Option<Arc<str>>,
    id: u64,
    /// Cancelled when the subject or the token's `jti` is revoked, or with the `parent` given to
    /// [`StreamRegistry::register`] (the server's shutdown).
    pub closed: CancellationToken,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(mut streams) = self.by_subject.get_mut(&self.sub) {
            streams.remove(&self.id);
        }
        self.by_subject
            .remove_if(&self.sub, |_, streams| streams.is_empty());
        if let Some(jti) = &self.jti {
            if let Some(mut streams) = self.by_jti.get_mut(jti) {
                streams.remove(&self.id);
            }
            self.by_jti.remove_if(jti, |_, streams| streams.is_empty());
        }
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl StreamRegistry {
    /// A registry holding at most `per_subject` streams of one subject and
    /// `total` in all.
    pub fn new(per_subject: usize, total: usize) -> Self {
        Self {
            by_subject: Arc::default(),
            by_jti: Arc::default(),
            next_id: AtomicU64::new(0),
            open: Arc::default(),
            per_subject,
            total,
        }
    }

    /// The most streams this registry lists at once.
    pub fn capacity(&self) -> usize {
        self.total
    }

    /// Lists a new stream of `sub`, opened under a token with `jti` (if it
    /// has one), closed when `sub` or `jti` is revoked or when `parent` is
    /// cancelled: one future for the stream to wait on. Refused when the
    /// subject or the instance holds its maximum.
    pub fn register(
        &self,
        sub: Subject,
        jti: Option<Arc<str>>,
        parent: &CancellationToken,
    ) -> Result<Registration, RegisterError> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.total).then_some(open + 1)
            })
            .map_err(|_| RegisterError::InstanceFull)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let closed = parent.child_token();
        {
            // The count and the insert under one shard lock: concurrent
            // opens of one subject cannot both take its last place.
            let mut streams = self.by_subject.entry(sub.clone()).or_default();
            if streams.len() >= self.per_subject {
                drop(streams);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(RegisterError::SubjectFull);
            }
            streams.insert(id, closed.clone());
        }
        if let Some(jti) = &jti {
            self.by_jti
                .entry(jti.clone())
                .or_default()
                .insert(id, closed.clone());
        }
        Ok(Registration {
            by_subject: self.by_subject.clone(),
            by_jti: self.by_jti.clone(),
            open: self.open.clone(),
            sub,
            jti,
            id,
            closed,
        })
    }

    /// Closes every open stream of `sub`; returns how many.
    pub fn close_subject(&self, sub: &Subject) -> usize {
        self.by_subject.get(sub).map_or(0, |streams| {
            streams.values().for_each(CancellationToken::cancel);
            streams.len()
        })
    }

    /// Closes every open stream opened under a token with `jti`; returns how many.
    pub fn close_jti(&self, jti: &str) -> usize {
        self.by_jti.get(jti).map_or(0, |streams| {
            streams.values().for_each(CancellationToken::cancel);
            streams.len()
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn sub(raw: &str) -> Subject {
        Subject::parse(raw).expect("subject")
    }

    #[test]
    fn replacing_all_names_only_the_subjects_revoked_anew() {
        let revocations = Revocations::default();
        let then = Utc::now();
        revocations.insert(sub("kept"), then);
        revocations.insert(sub("lifted"), then);
        revocations.insert(sub("again"), then);
        let later = then + TimeDelta::seconds(5);
        let mark = revocations.mark();
        let mut anew = revocations.replace_all(
            mark,
            [
                (sub("kept"), then),
                (sub("again"), later),
                (sub("new"), later),
            ],
        );
        anew.sort();
        assert_eq!(anew, [sub("again"), sub("new")]);
        assert_eq!(revocations.at(&sub("kept")), Some(then));
        assert_eq!(revocations.at(&sub("again")), Some(later));
        assert_eq!(revocations.at(&sub("lifted")), None);
    }

    #[test]
    fn a_read_that_began_before_a_change_does_not_undo_it() {
        let revocations = Revocations::default();
        let then = Utc::now();
        revocations.insert(sub("lifted-meanwhile"), then);
        // A reload reads the database, and meanwhile one subject is revoked
        // and another lifted, here and in the database.
        let mark = revocations.mark();
        let read_before = [(sub("lifted-meanwhile"), then)];
        revocations.insert(sub("revoked-meanwhile"), then);
        revocations.remove(&sub("lifted-meanwhile"));
        let anew = revocations.replace_all(mark, read_before);
        assert!(anew.is_empty(), "{anew:?}");
        assert_eq!(revocations.at(&sub("revoked-meanwhile")), Some(then));
        assert_eq!(revocations.at(&sub("lifted-meanwhile")), None);
        // The next read sees both changes and agrees.
        let mark = revocations.mark();
        revocations.replace_all(mark, [(sub("revoked-meanwhile"), then)]);
        assert_eq!(revocations.at(&sub("revoked-meanwhile")), Some(then));
        assert_eq!(revocations.at(&sub("lifted-meanwhile")), None);
    }

    #[test]
    fn a_subject_and_the_instance_hold_at_most_their_streams() {
        let registry = StreamRegistry::new(2, 3);
        let parent = CancellationToken::new();
        let a1 = registry.register(sub("a"), None, &parent).expect("first");
        let _a2 = registry.register(sub("a"), None, &parent).expect("second");
        assert_eq!(
            registry.register(sub("a"), None, &parent).err(),
            Some(RegisterError::SubjectFull)
        );
        let _b1 = registry.register(sub("b"), None, &parent).expect("b");
        assert_eq!(
            registry.register(sub("c"), None, &parent).err(),
            Some(RegisterError::InstanceFull)
        );
        drop(a1);
        let _c1 = registry
            .register(sub("c"), None, &parent)
            .expect("a place freed");
        assert_eq!(
            registry.register(sub("a"), None, &parent).err(),
            Some(RegisterError::InstanceFull)
        );
    }
}
