//! The cache of upstream answers, keyed by [`Credential::fingerprint`]: an
//! acceptance is reused for at most `SSE_TICKET_AUTH_CACHE_TTL` and never past
//! the token's `exp`, a refusal for [`REFUSAL_TTL`]; an upstream that gave no
//! answer is never remembered.
//!
//! `moka` bounds the size and coalesces concurrent misses of one credential
//! into one upstream call; whether an entry is still valid is decided by the
//! injected clock (its `valid_until`), so tests advance time instead of sleeping.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::claims::Claims;
use super::credential::Credential;
use super::verifier::AuthError;

/// How long a refusal is reused.
pub const REFUSAL_TTL: TimeDelta = TimeDelta::seconds(5);
/// Most answers kept at once.
const CAPACITY: u64 = 100_000;

/// A refusal as it is kept.
#[derive(Debug, Clone)]
enum Refusal {
    Invalid(String),
    Expired,
}

/// One remembered answer.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    outcome: Result<Claims, Refusal>,
    valid_until: DateTime<Utc>,
}

impl Answer {
    /// What the verifier concluded at `now`, kept while the cache allows:
    /// `None` for unavailability, which is never kept.
    pub(crate) fn new(
        outcome: Result<Claims, AuthError>,
        now: DateTime<Utc>,
        ttl: TimeDelta,
    ) -> Option<Self> {
        let (outcome, valid_until) = match outcome {
            Ok(claims) => {
                let until = (now + ttl).min(claims.exp);
                (Ok(claims), until)
            }
            Err(AuthError::Invalid(why)) => (Err(Refusal::Invalid(why)), now + REFUSAL_TTL),
            Err(AuthError::Expired) => (Err(Refusal::Expired), now + REFUSAL_TTL),
            Err(AuthError::Unavailable(_)) => return None,
        };
        Some(Self {
            outcome,
            valid_until,
        })
    }

    /// The answer as the verifier returns it.
    pub(crate) fn outcome(&self) -> Result<Claims, AuthError> {
        match &self.outcome {
            Ok(claims) => Ok(claims.clone()),
            Err(Refusal::Invalid(why)) => Err(AuthError::Invalid(why.clone())),
            Err(Refusal::Expired) => Err(AuthError::Expired),
        }
    }

    fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        now < self.valid_until
    }
}

/// The answers of one upstream.
#[derive(Debug)]
pub(crate) struct AnswerCache {
    answers: moka::future::Cache<[u8; 32], Answer>,
}

impl AnswerCache {
    /// A cache whose acceptances live at most `ttl`.
    pub(crate) fn new(ttl: Duration) -> Self {
        let answers = moka::future::Cache::builder()
            .max_capacity(CAPACITY)
            // Only frees memory: validity is decided by `valid_until`.
            .time_to_live(ttl.max(Duration::from_secs(5)) + Duration::from_secs(1))
            .build();
        Self { answers }
    }

    /// The answer still valid at `now` for `credential`, if one is kept.
    pub(crate) async fn get(&self, credential: &Credential, now: DateTime<Utc>) -> Option<Answer> {
        let key = credential.fingerprint();
        let answer = self.answers.get(&key).await?;
        if answer.is_valid_at(now) {
            return Some(answer);
        }
        self.answers.invalidate(&key).await;
        None
    }

    /// The answer `ask` gives for `credential`, kept when it is an answer;
    /// concurrent calls for one credential share one `ask`. `Err` is the
    /// reason no answer was had (unavailability), shared by those calls.
    pub(crate) async fn get_or_ask(
        &self,
        credential: &Credential,
        ask: impl Future<Output = Result<Answer, String>>,
    ) -> Result<Answer, Arc<String>> {
        self.answers
            .try_get_with(credential.fingerprint(), ask)
            .await
    }
}
