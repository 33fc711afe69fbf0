//! Keys published by an identity provider at a JWKS URL, cached and refreshed
//! when a token names a key id the cache does not know (rate-limited).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::keys::VerifyingKey;
use crate::clock::SharedClock;

/// Least time between two fetches of the key set.
const MIN_REFRESH_INTERVAL: TimeDelta = TimeDelta::seconds(5);
/// Age after which the key set is fetched again even without an unknown `kid`,
/// so that keys the provider withdrew stop being accepted.
const MAX_AGE: TimeDelta = TimeDelta::minutes(15);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Most redirects followed from the JWKS URL.
const MAX_REDIRECTS: usize = 5;

/// Whether what is fetched from `url` cannot be read or changed on the way:
/// `https://`, or `http://` to a loopback address (a sidecar, a test).
pub fn is_confidential(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    match url.scheme() {
        "https" => true,
        "http" => {
            host.eq_ignore_ascii_case("localhost")
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    }
}

/// Why no key could be chosen for a token.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LookupError {
    /// The token names no key the provider publishes.
    #[error("the token's key id is not published by the identity provider")]
    UnknownKey,
    /// The token has no `kid` and the provider publishes several keys.
    #[error("the token has no key id and the identity provider publishes several keys")]
    NoKeyId,
    /// The key set could not be fetched and none is cached.
    #[error("the identity provider's keys cannot be fetched: {0}")]
    Unavailable(String),
}

#[derive(Default)]
struct Snapshot {
    keys: HashMap<String, VerifyingKey>,
    /// Keys without a `kid`, usable only when the set holds exactly one key.
    anonymous: Vec<VerifyingKey>,
    fetched_at: Option<DateTime<Utc>>,
}

/// A cached JWKS with rate-limited refresh.
pub(crate) struct JwksCache {
    url: reqwest::Url,
    client: reqwest::Client,
    clock: SharedClock,
    snapshot: ArcSwap<Snapshot>,
    /// Serialises refreshes and remembers when the last one was tried.
    last_attempt: tokio::sync::Mutex<Option<DateTime<Utc>>>,
    /// Set while a refresh of a stale set runs in the background.
    background_refresh: AtomicBool,
    /// How many key sets have been fetched: tokens verified with an older
    /// set are verified again.
    generation: AtomicU64,
}

impl JwksCache {
    pub(crate) fn new(url: reqwest::Url, clock: SharedClock) -> Self {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            // A redirect may not lead the key fetch to where it can be read
            // or changed on the way.
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else if is_confidential(attempt.url()) {
                    attempt.follow()
                } else {
                    attempt.error("a redirect to a URL that is neither https:// nor loopback")
                }
            }))
            .build()
            .unwrap_or_default();
        Self {
            url,
            client,
            clock,
            snapshot: ArcSwap::default(),
            last_attempt: tokio::sync::Mutex::new(None),
            background_refresh: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        }
    }

    /// Which key set is current: it changes with every fetch. A set that
    /// is old starts its refresh behind the caller, as a look-up does, so
    /// tokens remembered as verified do not keep an old set alive.
    pub(crate) fn generation(self: &Arc<Self>) -> u64 {
        let generation = self.generation.load(Ordering::Acquire);
        let snapshot = self.snapshot.load_full();
        if self.is_stale(&snapshot) && snapshot.fetched_at.is_some() {
            self.refresh_behind(snapshot);
        }
        generation
    }

    fn is_stale(&self, snapshot: &Snapshot) -> bool {
        snapshot
            .fetched_at
            .is_none_or(|at| self.clock.now() - at >= MAX_AGE)
    }

    /// Refreshes `snapshot` in the background, one refresh at a time.
    fn refresh_behind(self: &Arc<Self>, snapshot: Arc<Snapshot>) {
        if !self.background_refresh.swap(true, Ordering::AcqRel) {
            let cache = self.clone();
            tokio::spawn(async move {
                cache.refresh_if_allowed(&snapshot).await;
                cache.background_refresh.store(false, Ordering::Release);
            });
        }
    }

    /// Whether a key set has been fetched at least once.
    pub(crate) fn is_loaded(&self) -> bool {
        self.snapshot.load().fetched_at.is_some()
    }

    /// Fetches the key set now, whatever the rate limit says.
    pub(crate) async fn refresh(&self) -> Result<(), LookupError> {
        let mut last = self.last_attempt.lock().await;
        *last = Some(self.clock.now());
        self.fetch().await
    }

    /// The key a token with this `kid` must be verified with.
    pub(crate) async fn lookup(
        self: &Arc<Self>,
        kid: Option<&str>,
    ) -> Result<VerifyingKey, LookupError> {
        let snapshot = self.snapshot.load_full();
        let stale = self.is_stale(&snapshot);
        match find(&snapshot, kid) {
            Ok(key) if !stale => return Ok(key),
            Ok(key) if snapshot.fetched_at.is_some() => {
                // Usable but old: refresh behind the request, not in front of it.
                self.refresh_behind(snapshot);
                return Ok(key);
            }
            Err(LookupError::NoKeyId) => return Err(LookupError::NoKeyId),
            _ => {}
        }
        self.refresh_if_allowed(&snapshot).await;
        let current = self.snapshot.load_full();
        if current.fetched_at.is_none() {
            return Err(LookupError::Unavailable(
                "no key set has been fetched yet".into(),
            ));
        }
        find(&current, kid)
    }

    async fn refresh_if_allowed(&self, seen: &Arc<Snapshot>) {
        let mut last = self.last_attempt.lock().await;
        // Another request refreshed while this one waited for the lock.
        if !Arc::ptr_eq(seen, &self.snapshot.load_full()) {
            return;
        }
        let now = self.clock.now();
        if last.is_some_and(|at| now - at < MIN_REFRESH_INTERVAL) {
            return;
        }
        *last = Some(now);
        if let Err(error) = self.fetch().await {
            tracing::warn!(%error, "JWKS refresh failed; keeping the cached keys");
        }
    }

    async fn fetch(&self) -> Result<(), LookupError> {
        let set: JwkSet = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| LookupError::Unavailable(e.to_string()))?
            .json()
            .await
            .map_err(|e| LookupError::Unavailable(e.to_string()))?;
        let mut snapshot = Snapshot {
            fetched_at: Some(self.clock.now()),
            ..Snapshot::default()
        };
        for jwk in &set.keys {
            let Some(key) = verifying_key(jwk) else {
                continue;
            };
            match &jwk.common.key_id {
                Some(kid) => {
                    snapshot.keys.insert(kid.clone(), key);
                }
                None => snapshot.anonymous.push(key),
            }
        }
        tracing::info!(
            keys = snapshot.keys.len() + snapshot.anonymous.len(),
            "JWKS fetched"
        );
        self.snapshot.store(Arc::new(snapshot));
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

fn find(snapshot: &Snapshot, kid: Option<&str>) -> Result<VerifyingKey, LookupError> {
    match kid {
        Some(kid) => snapshot
            .keys
            .get(kid)
            .cloned()
            .ok_or(LookupError::UnknownKey),
        None => match (snapshot.keys.len(), snapshot.anonymous.as_slice()) {
            (0, [only]) => Ok(only.clone()),
            (1, []) => Ok(snapshot
                .keys
                .values()
                .next()
                .cloned()
                .ok_or(LookupError::UnknownKey)?),
            (0, []) => Err(LookupError::UnknownKey),
            _ => Err(LookupError::NoKeyId),
        },
    }
}

/// A public key from a JWK, with the algorithms its type allows, narrowed to
/// the JWK's own `alg` when it names one. Symmetric (`oct`) keys are refused:
/// a key served over HTTP is public.
fn verifying_key(jwk: &jsonwebtoken::jwk::Jwk) -> Option<VerifyingKey> {
    // Only keys published for signatures (RFC 7517 §4.2, §4.3).
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
        || jwk
            .common
            .key_operations
            .as_ref()
            .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return None;
    }
    let family_algorithms: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            &[Algorithm::EdDSA]
        }
        _ => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    let algorithms = match jwk.common.key_algorithm {
        None => family_algorithms.to_vec(),
        Some(named) => {
            // `KeyAlgorithm` and `Algorithm` share their JOSE names.
            let name = serde_json::to_value(named).ok()?;
            let alg: Algorithm = name.as_str()?.parse().ok()?;
            if !family_algorithms.contains(&alg) {
                return None;
            }
            vec![alg]
        }
    };
    Some(VerifyingKey { key, algorithms })
}
