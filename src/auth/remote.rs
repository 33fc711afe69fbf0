//! Verifiers that ask an upstream (an RFC 7662 introspection endpoint, the
//! app's auth webhook) who a credential belongs to: the [`Upstream`] each
//! implements, and [`Remote`], which puts the rules every upstream shares
//! around it (a 2 s limit, the claims checked like a JWT's).

use std::time::Duration;

use async_trait::async_trait;

use super::claims::Claims;
use super::credential::Credential;
use super::registered::{Expected, RegisteredClaims};
use super::verifier::{AuthError, VerifierSettings, Verify};
use crate::clock::SharedClock;

/// Longest an upstream may take to answer; beyond, the request is `503`.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// What an upstream says of a credential.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// It belongs to someone: these claims (checked by [`Remote`] as a JWT's are).
    Accepted(RegisteredClaims),
    /// It does not: why, in one sentence for the `401 invalid_token`.
    Refused(String),
}

/// Why an upstream gave no verdict: the request gets `503 unavailable`, never `401`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// No connection, or no answer within [`UPSTREAM_TIMEOUT`].
    #[error("{upstream} cannot be reached")]
    Unreachable {
        /// The upstream's name.
        upstream: &'static str,
        /// The transport's failure.
        #[source]
        source: reqwest::Error,
    },
    /// An answer with a status that decides nothing (5xx, or unexpected).
    #[error("{upstream} answered HTTP {status}")]
    Status {
        /// The upstream's name.
        upstream: &'static str,
        /// The status it answered.
        status: u16,
    },
    /// An answer whose body is not what the contract says.
    #[error("{upstream} answered a body that is not {expected}")]
    Answer {
        /// The upstream's name.
        upstream: &'static str,
        /// What was expected.
        expected: &'static str,
    },
}

/// An upstream that decides who a credential belongs to.
#[async_trait]
pub(crate) trait Upstream: Send + Sync + std::fmt::Debug + 'static {
    /// Its name in `/readyz`, the metrics and the logs: `introspection` or `auth_webhook`.
    fn name(&self) -> &'static str;

    /// Asks once. Never called with an empty credential.
    async fn ask(&self, credential: &Credential) -> Result<Verdict, UpstreamError>;
}

/// An HTTP client for an upstream: the 2 s limit on the whole exchange, no
/// redirects (a credential is never sent anywhere but the configured URL).
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(UPSTREAM_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// A verifier that asks `U`.
#[derive(Debug)]
pub(crate) struct Remote<U> {
    upstream: U,
    clock: SharedClock,
}

impl<U: Upstream> Remote<U> {
    /// A verifier asking `upstream`.
    pub(crate) fn new(upstream: U, _settings: &VerifierSettings, clock: SharedClock) -> Self {
        Self { upstream, clock }
    }
}

#[async_trait]
impl<U: Upstream> Verify for Remote<U> {
    async fn verify(&self, credential: &Credential) -> Result<Claims, AuthError> {
        if credential.is_empty() {
            return Err(AuthError::invalid("no credential to verify"));
        }
        let name = self.upstream.name();
        let verdict = tokio::time::timeout(UPSTREAM_TIMEOUT, self.upstream.ask(credential))
            .await
            .map_err(|_| {
                AuthError::Unavailable(format!(
                    "{name} did not answer within {} s",
                    UPSTREAM_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| AuthError::Unavailable(crate::telemetry::error_chain(&e)))?;
        match verdict {
            Verdict::Accepted(claims) => claims.check(self.clock.now(), Expected::default()),
            Verdict::Refused(why) => Err(AuthError::Invalid(why)),
        }
    }

    fn readiness(&self) -> (&'static str, Result<(), String>) {
        (self.upstream.name(), Ok(()))
    }
}
