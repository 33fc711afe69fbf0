//! Turns a bearer token into [`Claims`], or says precisely why not.

use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use serde::Deserialize;

use super::claims::{Claims, Permissions, Subject};
use super::jwks::{JwksCache, LookupError};
use super::keys::{KeyError, KeySource, VerifyingKey};
use crate::clock::SharedClock;

/// Tolerated clock skew on `exp`, `nbf` and `iat`.
pub const LEEWAY: TimeDelta = TimeDelta::seconds(30);

/// Why a bearer token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Malformed, badly signed, or with claims that are missing or wrong.
    #[error("{0}")]
    Invalid(String),
    /// Past its `exp` (plus leeway).
    #[error("the bearer token has expired")]
    Expired,
    /// The keys to check it with cannot be had right now.
    #[error("{0}")]
    Unavailable(String),
}

impl AuthError {
    fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
}

/// What the verifier checks besides the signature.
#[derive(Debug, Clone, Default)]
pub struct VerifierSettings {
    /// When set, `iss` must equal it.
    pub issuer: Option<String>,
    /// When set, `aud` must contain it.
    pub audience: Option<String>,
}

enum Keys {
    Static(VerifyingKey),
    Jwks(Arc<JwksCache>),
}

/// Verifies bearer tokens against the configured key source.
pub struct Verifier {
    keys: Keys,
    settings: VerifierSettings,
    clock: SharedClock,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Self::One(a) => a == wanted,
            Self::Many(all) => all.iter().any(|a| a == wanted),
        }
    }
}

/// The registered claims as they come, checked one by one for clear errors.
#[derive(Deserialize)]
struct RawClaims {
    sub: Option<String>,
    exp: Option<f64>,
    nbf: Option<f64>,
    iat: Option<f64>,
    jti: Option<String>,
    iss: Option<String>,
    aud: Option<Audience>,
    sse: Option<serde_json::Value>,
}

impl Verifier {
    /// A verifier for `source`. A PEM key is read and checked here; a JWKS is
    /// fetched on first use (see [`Verifier::warm_up`]).
    pub fn new(
        source: &KeySource,
        settings: VerifierSettings,
        clock: SharedClock,
    ) -> Result<Self, KeyError> {
        let keys = match source {
            KeySource::Secret(secret) => Keys::Static(VerifyingKey::from_secret(secret)),
            KeySource::PublicKeyPem(path) => Keys::Static(VerifyingKey::from_pem_file(path)?),
            KeySource::JwksUrl(url) => {
                Keys::Jwks(Arc::new(JwksCache::new(url.clone(), clock.clone())))
            }
        };
        Ok(Self {
            keys,
            settings,
            clock,
        })
    }

    /// Fetches a JWKS ahead of the first request; a no-op for static keys.
    pub async fn warm_up(&self) -> Result<(), AuthError> {
        match &self.keys {
            Keys::Static(_) => Ok(()),
            Keys::Jwks(cache) => cache.refresh().await.map_err(lookup_error),
        }
    }

    /// Whether keys are at hand: always for static keys; for a JWKS, once fetched.
    pub fn is_ready(&self) -> bool {
        match &self.keys {
            Keys::Static(_) => true,
            Keys::Jwks(cache) => cache.is_loaded(),
        }
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
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
        let raw = decode::<RawClaims>(token, &key.key, &validation)
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
        self.check(raw)
    }

    fn check(&self, raw: RawClaims) -> Result<Claims, AuthError> {
        let now = self.clock.now();
        let sub = raw
            .sub
            .as_deref()
            .ok_or_else(|| AuthError::invalid("the bearer token has no sub"))
            .and_then(|s| {
                Subject::parse(s).map_err(|e| {
                    AuthError::Invalid(format!("the bearer token's sub is invalid: {e}"))
                })
            })?;
        let exp = raw
            .exp
            .ok_or_else(|| AuthError::invalid("the bearer token has no exp"))
            .and_then(|t| timestamp(t, "exp"))?;
        if now > exp + LEEWAY {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = raw.nbf.map(|t| timestamp(t, "nbf")).transpose()?
            && nbf > now + LEEWAY
        {
            return Err(AuthError::invalid(
                "the bearer token is not valid yet (nbf)",
            ));
        }
        let iat = raw.iat.map(|t| timestamp(t, "iat")).transpose()?;
        // A token "issued" in the future would outrun every revocation made
        // before that time.
        if iat.is_some_and(|iat| iat > now + LEEWAY) {
            return Err(AuthError::invalid(
                "the bearer token's issue time (iat) is in the future",
            ));
        }
        if let Some(wanted) = &self.settings.issuer
            && raw.iss.as_deref() != Some(wanted)
        {
            return Err(AuthError::invalid(
                "the bearer token's issuer (iss) is not accepted",
            ));
        }
        if let Some(wanted) = &self.settings.audience
            && !raw.aud.is_some_and(|aud| aud.contains(wanted))
        {
            return Err(AuthError::invalid(
                "the bearer token's audience (aud) does not include this service",
            ));
        }
        let permissions = match raw.sse {
            None | Some(serde_json::Value::Null) => Permissions::default(),
            Some(value) => serde_json::from_value(value).map_err(|e| {
                AuthError::Invalid(format!("the bearer token's sse claim is invalid: {e}"))
            })?,
        };
        Ok(Claims {
            sub,
            exp,
            iat,
            jti: raw.jti.map(Into::into),
            permissions,
        })
    }
}

fn timestamp(secs: f64, claim: &str) -> Result<DateTime<Utc>, AuthError> {
    let invalid = || AuthError::Invalid(format!("the bearer token's {claim} is not a valid time"));
    if !secs.is_finite() || secs.abs() > 1e12 {
        return Err(invalid());
    }
    #[allow(clippy::cast_possible_truncation)]
    DateTime::from_timestamp(secs.floor() as i64, 0).ok_or_else(invalid)
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
