//! The one verifier seam: whatever checks a credential (a local key, a JWKS,
//! an introspection endpoint or the app's auth webhook) turns it into
//! [`Claims`], or says precisely why not.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeDelta;

use super::claims::Claims;
use super::credential::Credential;
use super::jwt::JwtVerifier;
use super::keys::{KeyError, KeySource, VerifyingKey};
use super::remote::Remote;
use super::{introspection, webhook};
use crate::clock::SharedClock;
use crate::metrics::Metrics;

/// Tolerated clock skew on `exp`, `nbf` and `iat`.
pub const LEEWAY: TimeDelta = TimeDelta::seconds(30);

/// Why a credential was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Malformed, badly signed, with claims that are missing or wrong, or
    /// refused by the upstream that decides.
    #[error("{0}")]
    Invalid(String),
    /// Past its `exp` (plus leeway).
    #[error("the bearer token has expired")]
    Expired,
    /// The keys or the upstream to check it with cannot be had right now.
    #[error("{0}")]
    Unavailable(String),
}

impl AuthError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
}

/// What the verifier checks besides the credential itself.
#[derive(Debug, Clone)]
pub struct VerifierSettings {
    /// When set, a JWT's `iss` must equal it.
    pub issuer: Option<String>,
    /// When set, a JWT's `aud` must contain it.
    pub audience: Option<String>,
    /// Longest time an upstream's answer is reused (`SSE_TICKET_AUTH_CACHE_TTL`).
    pub cache_ttl: Duration,
}

impl Default for VerifierSettings {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            cache_ttl: crate::config::defaults::AUTH_CACHE_TTL,
        }
    }
}

/// Something that turns a credential into claims: one implementation per
/// kind of verifier, chosen by configuration.
#[async_trait]
pub trait Verify: Send + Sync + std::fmt::Debug {
    /// The claims of `credential`, or why it is refused.
    async fn verify(&self, credential: &Credential) -> Result<Claims, AuthError>;

    /// Prepares ahead of the first request (fetches a JWKS); a no-op by default.
    async fn warm_up(&self) -> Result<(), AuthError> {
        Ok(())
    }

    /// The backend's name in `/readyz`, and whether it is ready (`Err` says why not).
    fn readiness(&self) -> (&'static str, Result<(), String>);
}

/// The configured verifier.
#[derive(Debug)]
pub struct Verifier {
    verify: Box<dyn Verify>,
    forwards_cookies: bool,
}

impl Verifier {
    /// The verifier `source` names. A PEM key is read and checked here; a JWKS
    /// is fetched on first use (see [`Verifier::warm_up`]). Upstream verifiers
    /// count their calls, cache and breaker in `metrics`.
    pub fn new(
        source: &KeySource,
        settings: VerifierSettings,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> Result<Self, KeyError> {
        let verify: Box<dyn Verify> = match source {
            KeySource::Secret(secret) => Box::new(JwtVerifier::with_key(
                VerifyingKey::from_secret(secret),
                settings,
                clock,
            )),
            KeySource::PublicKeyPem(path) => Box::new(JwtVerifier::with_key(
                VerifyingKey::from_pem_file(path)?,
                settings,
                clock,
            )),
            KeySource::JwksUrl(url) => {
                Box::new(JwtVerifier::with_jwks(url.clone(), settings, clock))
            }
            KeySource::Introspection(upstream) => Box::new(Remote::new(
                introspection::Introspection::new(upstream.clone()),
                &settings,
                clock,
                metrics,
            )),
            KeySource::AuthWebhook(upstream) => Box::new(Remote::new(
                webhook::Webhook::new(upstream.clone()),
                &settings,
                clock,
                metrics,
            )),
        };
        Ok(Self {
            verify,
            forwards_cookies: source.forwards_cookies(),
        })
    }

    /// Fetches what the verifier needs ahead of the first request.
    pub async fn warm_up(&self) -> Result<(), AuthError> {
        self.verify.warm_up().await
    }

    /// The verifier's name in `/readyz` and whether it is ready.
    pub fn readiness(&self) -> (&'static str, Result<(), String>) {
        self.verify.readiness()
    }

    /// Whether requests' `Cookie` headers belong in their credentials (the
    /// auth webhook with cookie forwarding on).
    pub fn forwards_cookies(&self) -> bool {
        self.forwards_cookies
    }

    /// Verifies `credential` and returns its claims.
    pub async fn verify(&self, credential: &Credential) -> Result<Claims, AuthError> {
        self.verify.verify(credential).await
    }
}
