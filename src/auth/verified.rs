//! The JWTs verified lately, keyed by [`Credential::fingerprint`] (the SHA-256
//! of the exact bearer bytes): a client that asks for a ticket on every
//! reconnect has its token's signature checked and its claims decoded once.
//!
//! An entry is used while the token would still pass an uncached check: until
//! its `exp` plus the leeway (the other time checks, `nbf` and `iat`, only get
//! easier as time passes), and only with the keys it was verified with (a
//! JWKS fetch makes every older entry a miss). Refusals are not kept: a token
//! that does not verify costs its check every time, as before. Revocations
//! are checked after the verifier, on every use.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::claims::Claims;
use super::credential::Credential;
use super::verifier::LEEWAY;

/// Most tokens kept at once.
const CAPACITY: u64 = 100_000;
/// Longest an entry stays in memory, whatever its `exp` (validity is decided
/// by the injected clock, not by this).
const IDLE: Duration = Duration::from_secs(600);

/// One verified token.
#[derive(Debug, Clone)]
struct Entry {
    claims: Claims,
    /// The generation of the keys it was verified with.
    keys: u64,
}

/// Verified JWTs, bounded.
#[derive(Debug)]
pub(crate) struct VerifiedTokens {
    entries: moka::future::Cache<[u8; 32], Entry>,
}

impl VerifiedTokens {
    pub(crate) fn new() -> Self {
        let entries = moka::future::Cache::builder()
            .max_capacity(CAPACITY)
            .time_to_idle(IDLE)
            .build();
        Self { entries }
    }

    /// The claims `credential` was verified to have with the keys of
    /// generation `keys`, if that still holds at `now`.
    pub(crate) async fn get(
        &self,
        credential: &Credential,
        keys: u64,
        now: DateTime<Utc>,
    ) -> Option<Claims> {
        let key = credential.fingerprint();
        let entry = self.entries.get(&key).await?;
        if entry.keys == keys && now <= entry.claims.exp + LEEWAY {
            return Some(entry.claims);
        }
        self.entries.invalidate(&key).await;
        None
    }

    /// Remembers that `credential` verified to `claims` with the keys of generation `keys`.
    pub(crate) async fn insert(&self, credential: &Credential, keys: u64, claims: &Claims) {
        let entry = Entry {
            claims: claims.clone(),
            keys,
        };
        self.entries.insert(credential.fingerprint(), entry).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Permissions, Subject};

    fn claims(exp: DateTime<Utc>) -> Claims {
        Claims {
            sub: Subject::parse("alice").expect("subject"),
            exp,
            iat: None,
            jti: None,
            permissions: Permissions::default(),
        }
    }

    #[tokio::test]
    async fn an_entry_holds_until_exp_and_leeway_and_only_with_its_keys() {
        let tokens = VerifiedTokens::new();
        let now = DateTime::from_timestamp(1_795_000_000, 0).expect("time");
        let exp = now + chrono::TimeDelta::seconds(60);
        let alice = Credential::bearer("a.b.c");
        tokens.insert(&alice, 1, &claims(exp)).await;

        assert!(
            tokens
                .get(&Credential::bearer("a.b.d"), 1, now)
                .await
                .is_none()
        );
        assert_eq!(tokens.get(&alice, 1, now).await.map(|c| c.exp), Some(exp));
        assert!(tokens.get(&alice, 1, exp + LEEWAY).await.is_some());
        assert!(tokens.get(&alice, 2, now).await.is_none(), "other keys");
        assert!(
            tokens.get(&alice, 1, now).await.is_none(),
            "dropped on the miss"
        );

        tokens.insert(&alice, 1, &claims(exp)).await;
        let later = exp + LEEWAY + chrono::TimeDelta::seconds(1);
        assert!(tokens.get(&alice, 1, later).await.is_none(), "expired");
    }
}
