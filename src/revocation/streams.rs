//! The open streams of each subject (and of each token's `jti`), so that a
//! revocation, or the shutdown, can close them; and the caps on how many
//! there may be.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;

use super::closing::{CloseSignal, Closed, Closing};
use crate::auth::Subject;

/// Open streams by some key, each with the signal that closes it.
type Streams<K> = Arc<DashMap<K, HashMap<u64, Arc<CloseSignal>>>>;

/// The open streams of each subject, with how many count in each scope.
type BySubject = Arc<DashMap<Subject, Held>>;

/// A cap a stream counts against: at most `max` streams of one subject in
/// `scope` (0 the service, else a namespace: see
/// [`Namespaces::stream_caps`](crate::namespace::Namespaces::stream_caps)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCap {
    /// Whose cap.
    pub scope: usize,
    /// Streams of one subject it allows.
    pub max: usize,
}

/// A listed stream of a subject: its signal, and the scopes it counts in.
#[derive(Debug)]
struct Listed {
    signal: Arc<CloseSignal>,
    scopes: Box<[usize]>,
}

/// One subject's open streams, and how many of them count in each scope
/// (kept, not counted, so an open costs the same at 10 streams or 10,000).
#[derive(Debug, Default)]
struct Held {
    streams: HashMap<u64, Listed>,
    per_scope: HashMap<usize, usize>,
}

impl Held {
    fn count(&self, scope: usize) -> usize {
        self.per_scope.get(&scope).copied().unwrap_or(0)
    }

    fn insert(&mut self, id: u64, listed: Listed) {
        for scope in &listed.scopes {
            *self.per_scope.entry(*scope).or_default() += 1;
        }
        self.streams.insert(id, listed);
    }

    fn remove(&mut self, id: u64) {
        let Some(listed) = self.streams.remove(&id) else {
            return;
        };
        for scope in &listed.scopes {
            if let Some(n) = self.per_scope.get_mut(scope) {
                *n -= 1;
                if *n == 0 {
                    self.per_scope.remove(scope);
                }
            }
        }
    }

    fn signals(&self) -> impl Iterator<Item = &Arc<CloseSignal>> {
        self.streams.values().map(|listed| &listed.signal)
    }
}

/// The open streams of each subject, each with a signal that closes it, and
/// the caps on how many there may be.
#[derive(Debug)]
pub struct StreamRegistry {
    by_subject: BySubject,
    /// The same streams, by the `jti` of the token they were opened under.
    by_jti: Streams<Arc<str>>,
    next_id: AtomicU64,
    /// Set by [`StreamRegistry::close_all`]: streams listed after it close at once.
    shut: AtomicBool,
    /// Streams listed now, across subjects.
    open: Arc<AtomicUsize>,
    total: usize,
}

/// Why a stream was not listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The subject already holds its streams (in one of the stream's scopes).
    #[error("the subject holds its maximum of open streams")]
    SubjectFull,
    /// This instance holds its streams.
    #[error("this instance holds its maximum of open streams")]
    InstanceFull,
}

/// Keeps a stream listed while it lives.
#[derive(Debug)]
pub struct Registration {
    by_subject: BySubject,
    by_jti: Streams<Arc<str>>,
    open: Arc<AtomicUsize>,
    sub: Subject,
    jti: Option<Arc<str>>,
    id: u64,
    signal: Arc<CloseSignal>,
}

impl Registration {
    /// Resolves when the subject or the token's `jti` is revoked, or at
    /// [`StreamRegistry::close_all`] (the server's shutdown).
    pub fn closing(&self) -> Closing {
        Closing(self.signal.clone())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(mut held) = self.by_subject.get_mut(&self.sub) {
            held.remove(self.id);
        }
        self.by_subject
            .remove_if(&self.sub, |_, held| held.streams.is_empty());
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
    /// A registry holding at most `total` streams.
    pub fn new(total: usize) -> Self {
        Self {
            by_subject: Arc::default(),
            by_jti: Arc::default(),
            next_id: AtomicU64::new(0),
            shut: AtomicBool::new(false),
            open: Arc::default(),
            total,
        }
    }

    /// The most streams this registry lists at once.
    pub fn capacity(&self) -> usize {
        self.total
    }

    /// Lists a new stream of `sub`, opened under a token with `jti` (if it
    /// has one), closed when `sub` or `jti` is revoked or at
    /// [`StreamRegistry::close_all`]. Refused when the instance holds its
    /// maximum, or the subject holds the maximum of one of `caps`.
    pub fn register(
        &self,
        sub: Subject,
        jti: Option<Arc<str>>,
        caps: &[StreamCap],
    ) -> Result<Registration, RegisterError> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.total).then_some(open + 1)
            })
            .map_err(|_| RegisterError::InstanceFull)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let signal = Arc::new(CloseSignal::default());
        {
            // The count and the insert under one shard lock: concurrent
            // opens of one subject cannot both take its last place.
            let mut held = self.by_subject.entry(sub.clone()).or_default();
            if caps.iter().any(|cap| held.count(cap.scope) >= cap.max) {
                drop(held);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(RegisterError::SubjectFull);
            }
            let scopes = caps.iter().map(|cap| cap.scope).collect();
            held.insert(
                id,
                Listed {
                    signal: signal.clone(),
                    scopes,
                },
            );
        }
        if let Some(jti) = &jti {
            self.by_jti
                .entry(jti.clone())
                .or_default()
                .insert(id, signal.clone());
        }
        // `close_all` sets `shut` before it visits the subject's shard: if
        // it visited before the insert, the shard's lock makes the flag seen.
        if self.shut.load(Ordering::Acquire) {
            signal.close(Closed::Shutdown);
        }
        Ok(Registration {
            by_subject: self.by_subject.clone(),
            by_jti: self.by_jti.clone(),
            open: self.open.clone(),
            sub,
            jti,
            id,
            signal,
        })
    }

    /// Closes every open stream of `sub`; returns how many.
    pub fn close_subject(&self, sub: &Subject) -> usize {
        self.by_subject
            .get(sub)
            .map_or(0, |held| close(held.signals(), Closed::Revoked))
    }

    /// Closes every open stream opened under a token with `jti`; returns how many.
    pub fn close_jti(&self, jti: &str) -> usize {
        self.by_jti
            .get(jti)
            .map_or(0, |streams| close(streams.values(), Closed::Revoked))
    }

    /// Closes every open stream, and every stream listed from now on, for
    /// the shutdown.
    pub fn close_all(&self) {
        self.shut.store(true, Ordering::Release);
        for held in self.by_subject.iter() {
            close(held.signals(), Closed::Shutdown);
        }
    }
}

fn close<'a>(signals: impl Iterator<Item = &'a Arc<CloseSignal>>, why: Closed) -> usize {
    signals.map(|signal| signal.close(why)).count()
}

#[cfg(test)]
mod tests {
    use std::future::Future as _;

    use super::*;

    fn sub(raw: &str) -> Subject {
        Subject::parse(raw).expect("subject")
    }

    /// The service's cap alone.
    fn cap(max: usize) -> [StreamCap; 1] {
        [StreamCap { scope: 0, max }]
    }

    #[test]
    fn a_stream_counts_in_each_scope_it_names_and_fits_only_if_each_has_room() {
        let registry = StreamRegistry::new(10);
        let chat = [StreamCap { scope: 1, max: 1 }];
        let both = [
            StreamCap { scope: 0, max: 2 },
            StreamCap { scope: 1, max: 1 },
        ];
        let in_chat = registry.register(sub("a"), None, &chat).expect("chat");
        assert_eq!(
            registry.register(sub("a"), None, &both).err(),
            Some(RegisterError::SubjectFull),
            "chat is full, whatever the service's room"
        );
        let _service = registry.register(sub("a"), None, &cap(2)).expect("service");
        let _more = registry
            .register(sub("a"), None, &cap(2))
            .expect("chat's stream is not the service's");
        assert_eq!(
            registry.register(sub("a"), None, &cap(2)).err(),
            Some(RegisterError::SubjectFull)
        );
        let _other = registry
            .register(sub("b"), None, &chat)
            .expect("per subject");
        drop(in_chat);
        registry
            .register(sub("a"), None, &chat)
            .expect("a place freed in chat");
    }

    #[test]
    fn a_subject_and_the_instance_hold_at_most_their_streams() {
        const CAP: [StreamCap; 1] = [StreamCap { scope: 0, max: 2 }];
        let registry = StreamRegistry::new(3);
        let a1 = registry.register(sub("a"), None, &CAP).expect("first");
        let _a2 = registry.register(sub("a"), None, &CAP).expect("second");
        assert_eq!(
            registry.register(sub("a"), None, &CAP).err(),
            Some(RegisterError::SubjectFull)
        );
        let _b1 = registry.register(sub("b"), None, &CAP).expect("b");
        assert_eq!(
            registry.register(sub("c"), None, &CAP).err(),
            Some(RegisterError::InstanceFull)
        );
        drop(a1);
        let _c1 = registry
            .register(sub("c"), None, &CAP)
            .expect("a place freed");
        assert_eq!(
            registry.register(sub("a"), None, &CAP).err(),
            Some(RegisterError::InstanceFull)
        );
    }

    fn closed_now(registration: &Registration) -> Option<Closed> {
        let mut closing = std::pin::pin!(registration.closing());
        let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
        match closing.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(why) => Some(why),
            std::task::Poll::Pending => None,
        }
    }

    #[test]
    fn a_revocation_closes_the_subjects_and_the_tokens_streams_only() {
        const CAP: [StreamCap; 1] = [StreamCap { scope: 0, max: 10 }];
        let registry = StreamRegistry::new(10);
        let a = registry
            .register(sub("a"), Some("t1".into()), &CAP)
            .expect("a");
        let a_other_token = registry
            .register(sub("a"), Some("t2".into()), &CAP)
            .expect("a");
        let b = registry
            .register(sub("b"), Some("t1".into()), &CAP)
            .expect("b");
        let c = registry.register(sub("c"), None, &CAP).expect("c");
        assert_eq!(registry.close_jti("t1"), 2);
        assert_eq!(closed_now(&a), Some(Closed::Revoked));
        assert_eq!(closed_now(&b), Some(Closed::Revoked));
        assert_eq!(closed_now(&a_other_token), None);
        assert_eq!(registry.close_subject(&sub("a")), 2);
        assert_eq!(closed_now(&a_other_token), Some(Closed::Revoked));
        assert_eq!(closed_now(&c), None);
        assert_eq!(registry.close_subject(&sub("nobody")), 0);
    }

    #[test]
    fn the_shutdown_closes_every_stream_and_any_listed_after_it() {
        const CAP: [StreamCap; 1] = [StreamCap { scope: 0, max: 10 }];
        let registry = StreamRegistry::new(10);
        let before = registry
            .register(sub("a"), Some("t".into()), &CAP)
            .expect("a");
        let revoked = registry.register(sub("b"), None, &CAP).expect("b");
        registry.close_subject(&sub("b"));
        registry.close_all();
        assert_eq!(closed_now(&before), Some(Closed::Shutdown));
        // A revocation that came first keeps its reason.
        assert_eq!(closed_now(&revoked), Some(Closed::Revoked));
        let after = registry.register(sub("c"), None, &CAP).expect("c");
        assert_eq!(closed_now(&after), Some(Closed::Shutdown));
    }
}
