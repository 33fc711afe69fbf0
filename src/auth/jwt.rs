//! A JWT checked with a local key (an HMAC secret or a PEM public key) or
//! with the keys of a JWKS endpoint, and remembered once it verified (see
//! [`super::verified`]).

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};

use super::claims::Claims;
use super::credential::Credential;
use super::jwks::{JwksCache, LookupError};
use super::keys::VerifyingKey;
use super::registered::{Expected, RegisteredClaims};
use super::verified::VerifiedTokens;
use super::verifier::{AuthError, VerifierSettings, Verify};
use crate::clock::SharedClock;

enum Keys {
    Static(VerifyingKey),
    Jwks(Arc<JwksCache>),
}

/// Verifies JWTs against the configured key source.
pub(crate) struct JwtVerifier {
    keys: Keys,
    settings: VerifierSettings,
    clock: SharedClock,
    verified: VerifiedTokens,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// A verifier with one key (an HMAC secret or a PEM public key).
    pub(crate) fn with_key(
        key: VerifyingKey,
        settings: VerifierSettings,
        clock: SharedClock,
    ) -> Self {
        Self {
            keys: Keys::Static(key),
            settings,
            clock,
            verified: VerifiedTokens::new(),
        }
    }

    /// A verifier with the keys of a JWKS endpoint, fetched on first use (see
    /// [`Verify::warm_up`]).
    pub(crate) fn with_jwks(
        url: reqwest::Url,
        settings: VerifierSettings,
        clock: SharedClock,
    ) -> Self {
        Self {
            keys: Keys::Jwks(Arc::new(JwksCache::new(url, clock.clone()))),
            settings,
            clock,
            verified: VerifiedTokens::new(),
        }
    }

    /// Which keys tokens are verified with now: a static key never changes.
    fn keys_generation(&self) -> u64 {
        match &self.keys {
            Keys::Static(_) => 0,
            Keys::Jwks(cache) => cache.generation(),
        }
    }

    /// Verifies `token` and returns its claims.
    async fn verify_token(&self, token: &str) -> Result<Claims, AuthError> {
        let header = decode_header(token).map_err(|_| {
            AuthError::invalid(
                "the bearer token is not a well-formed JWT with a supported algorithm",
            )
        })?;
        if has_critical_extensions(token) {
            return Err(AuthError::invalid(
                "the bearer token names critical header extensions (crit) this service does not implement",
            ));
        }
        let key = match &self.keys {
            Keys::Static(key) => key.clone(),
            Keys::Jwks(cache) => cache
                .lookup(header.kid.as_deref())
                .await
                .map_err(lookup_error)?,
        };
        if !key.algorithms.contains(&header.alg) {
            return Err(AuthError::Invalid(format!(
                "the algorithm {:?} is not accepted for the configured key",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        // Time and audience are checked below against the injected clock, with
        // error messages of our own.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let raw = decode::<RegisteredClaims>(token, &key.key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => {
                    AuthError::invalid("the bearer token's signature does not verify")
                }
                ErrorKind::Json(_) => {
                    AuthError::invalid("the bearer token's claims are not of the expected types")
                }
                _ => AuthError::invalid("the bearer token cannot be verified"),
            })?
            .claims;
        raw.check(
            self.clock.now(),
            Expected {
                issuer: self.settings.issuer.as_deref(),
                audience: self.settings.audience.as_deref(),
            },
        )
    }
}

#[async_trait]
impl Verify for JwtVerifier {
    async fn verify(&self, credential: &Credential) -> Result<Claims, AuthError> {
        let Some(token) = credential.bearer.as_deref() else {
            return Err(AuthError::invalid("a bearer token is required"));
        };
        // Read before verifying: a fetch meanwhile leaves the entry stale.
        let keys = self.keys_generation();
        if let Some(claims) = self.verified.get(credential, keys, self.clock.now()).await {
            return Ok(claims);
        }
        let claims = self.verify_token(token).await?;
        self.verified.insert(credential, keys, &claims).await;
        Ok(claims)
    }

    /// Fetches a JWKS ahead of the first request; a no-op for static keys.
    async fn warm_up(&self) -> Result<(), AuthError> {
        match &self.keys {
            Keys::Static(_) => Ok(()),
            Keys::Jwks(cache) => cache.refresh().await.map_err(lookup_error),
        }
    }

    /// Ready with a static key; with a JWKS, once it was fetched.
    fn readiness(&self) -> (&'static str, Result<(), String>) {
        let ready = match &self.keys {
            Keys::Static(_) => Ok(()),
            Keys::Jwks(cache) if cache.is_loaded() => Ok(()),
            Keys::Jwks(_) => {
                Err("the identity provider's keys have not been fetched yet".to_owned())
            }
        };
        ("keys", ready)
    }
}

/// Whether the JOSE header has a `crit` member: this service understands no
/// extension, so such a token must be refused (RFC 7515 §4.1.11). The header
/// was already decoded once by `decode_header`, which ignores `crit`.
fn has_critical_extensions(token: &str) -> bool {
    let Some(encoded) = token.split('.').next() else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()
        .and_then(|json| {
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&json).ok()
        })
        .is_some_and(|header| header.contains_key("crit"))
}

fn lookup_error(e: LookupError) -> AuthError {
    match e {
        LookupError::Unavailable(_) => AuthError::Unavailable(e.to_string()),
        LookupError::UnknownKey | LookupError::NoKeyId => AuthError::Invalid(e.to_string()),
    }
}
