//! Revocations of single bearer tokens by their `jti`, each in force until a
//! time. Numbered like the subjects' (see [`Revocations::mark`]), so a read
//! of the database that began before a change cannot undo it; only the ones
//! still in force are kept, so the copy stays as small as what refuses.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Mark, Revocations};

/// A token revoked by `jti`.
#[derive(Debug, Clone, Copy)]
pub(super) struct RevokedJti {
    until: DateTime<Utc>,
    change: u64,
}

impl Revocations {
    /// Records that the token `jti` is refused until `until` (once it is in
    /// the database).
    pub fn insert_jti(&self, jti: Arc<str>, until: DateTime<Utc>) {
        let change = self.next_change();
        self.lifted_jtis.remove(&jti);
        self.jtis.insert(jti, RevokedJti { until, change });
    }

    /// Until when the token `jti` is refused, if a revocation of it is known.
    pub fn jti_until(&self, jti: &str) -> Option<DateTime<Utc>> {
        self.jtis.get(jti).map(|r| r.until)
    }

    /// Forgets the revocation of `jti` (once it is gone from the database).
    pub fn remove_jti(&self, jti: &str) {
        let change = self.next_change();
        self.jtis.remove(jti);
        self.lifted_jtis.insert(jti.into(), change);
    }

    /// Whether a revocation of `jti` is in force at `now`. A token without
    /// `jti` is never covered: only its subject's revocation reaches it.
    pub fn covers_jti(&self, jti: Option<&str>, now: DateTime<Utc>) -> bool {
        jti.is_some_and(|jti| self.jtis.get(jti).is_some_and(|r| now < r.until))
    }

    /// How many revocations by `jti` the copy holds.
    pub fn jti_count(&self) -> usize {
        self.jtis.len()
    }

    /// Replaces every revocation by `jti` with `current`, as read from the
    /// database after `mark` was taken, and drops those past their `until`
    /// at `now`; returns the `jti`s revoked anew. What changed here after
    /// the mark stays as it is, as for subjects.
    pub fn replace_jtis(
        &self,
        mark: Mark,
        current: impl IntoIterator<Item = (Arc<str>, DateTime<Utc>)>,
        now: DateTime<Utc>,
    ) -> Vec<Arc<str>> {
        let current: HashMap<Arc<str>, DateTime<Utc>> = current
            .into_iter()
            .filter(|(_, until)| now < *until)
            .collect();
        self.jtis
            .retain(|jti, r| now < r.until && (r.change > mark.0 || current.contains_key(jti)));
        let anew = current
            .into_iter()
            .filter(|(jti, until)| {
                if self
                    .lifted_jtis
                    .get(jti)
                    .is_some_and(|change| *change > mark.0)
                {
                    return false;
                }
                match self.jtis.get(jti).map(|r| *r) {
                    Some(r) if r.change > mark.0 || r.until == *until => false,
                    _ => {
                        let change = self.next_change();
                        self.jtis.insert(
                            jti.clone(),
                            RevokedJti {
                                until: *until,
                                change,
                            },
                        );
                        true
                    }
                }
            })
            .map(|(jti, _)| jti)
            .collect();
        self.lifted_jtis.retain(|_, change| *change > mark.0);
        anew
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn a_jti_is_refused_until_its_time_and_a_reload_forgets_it_then() {
        let revocations = Revocations::default();
        let now = Utc::now();
        let until = now + TimeDelta::seconds(60);
        revocations.insert_jti("t-1".into(), until);
        assert!(revocations.covers_jti(Some("t-1"), now));
        assert!(!revocations.covers_jti(Some("t-2"), now));
        assert!(!revocations.covers_jti(None, now));
        assert!(!revocations.covers_jti(Some("t-1"), until));
        let mark = revocations.mark();
        let anew = revocations.replace_jtis(mark, [("t-1".into(), until)], until);
        assert!(anew.is_empty());
        assert_eq!(revocations.jti_count(), 0, "past its time, not kept");
    }

    #[test]
    fn a_read_that_began_before_a_jti_change_does_not_undo_it() {
        let revocations = Revocations::default();
        let now = Utc::now();
        let until = now + TimeDelta::seconds(60);
        revocations.insert_jti("lifted".into(), until);
        let mark = revocations.mark();
        let read_before: [(Arc<str>, _); 1] = [("lifted".into(), until)];
        revocations.insert_jti("revoked".into(), until);
        revocations.remove_jti("lifted");
        let anew = revocations.replace_jtis(mark, read_before, now);
        assert!(anew.is_empty(), "{anew:?}");
        assert!(revocations.covers_jti(Some("revoked"), now));
        assert!(!revocations.covers_jti(Some("lifted"), now));
        let mark = revocations.mark();
        let anew = revocations.replace_jtis(mark, [("new".into(), until)], now);
        assert_eq!(anew, [Arc::<str>::from("new")]);
        assert!(
            !revocations.covers_jti(Some("revoked"), now),
            "gone from the database"
        );
    }
}
