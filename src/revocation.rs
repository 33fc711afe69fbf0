//! Revoked subjects (cached from the database for the hot path) and the open
//! streams of each subject, so a revocation can close them ([`streams`]).
//! Revocations of single tokens by `jti` are in [`jti`].

mod closing;
mod jti;
mod streams;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use dashmap::DashMap;

pub use self::closing::{Closed, Closing};
pub use self::streams::{RegisterError, Registration, StreamCap, StreamRegistry};
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
}
