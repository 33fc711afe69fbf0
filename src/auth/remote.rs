//! Verifiers that ask an upstream (an RFC 7662 introspection endpoint, the
//! app's auth webhook) who a credential belongs to: the [`Upstream`] each
//! implements, and [`Remote`], which puts the rules every upstream shares
//! around it: a 2 s limit, the claims checked like a JWT's, the answer cache
//! ([`super::cache`]) and the circuit breaker ([`super::breaker`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeDelta;

use super::breaker::{Breaker, FAILURES_TO_OPEN};
use super::cache::{Answer, AnswerCache};
use super::claims::Claims;
use super::credential::Credential;
use super::registered::{Expected, RegisteredClaims};
use super::verifier::{AuthError, VerifierSettings, Verify};
use crate::clock::SharedClock;
use crate::metrics::{CacheLabels, Metrics, UpstreamCallLabels, UpstreamLabels};

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

impl UpstreamError {
    /// `upstream` could not be reached. The URL is left out of the cause, so
    /// that credentials an operator put in it never reach a log line.
    pub(crate) fn unreachable(upstream: &'static str, source: reqwest::Error) -> Self {
        Self::Unreachable {
            upstream,
            source: source.without_url(),
        }
    }
}

/// Largest answer body read from an upstream: claims fit in far less, and a
/// larger answer is a broken upstream (`503`), not a reason to buffer it.
pub(crate) const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The body of `response` from `upstream`, up to [`MAX_ANSWER_BYTES`]
/// (beyond: not `expected`).
pub(crate) async fn answer_body(
    upstream: &'static str,
    expected: &'static str,
    mut response: reqwest::Response,
) -> Result<Vec<u8>, UpstreamError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| UpstreamError::unreachable(upstream, source))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(UpstreamError::Answer { upstream, expected });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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

/// A verifier that asks `U`, through the answer cache and the circuit breaker.
#[derive(Debug)]
pub(crate) struct Remote<U> {
    upstream: U,
    clock: SharedClock,
    cache: AnswerCache,
    cache_ttl: TimeDelta,
    breaker: Breaker,
    metrics: Arc<Metrics>,
}

impl<U: Upstream> Remote<U> {
    /// A verifier asking `upstream`, its answers kept for `settings.cache_ttl`.
    pub(crate) fn new(
        upstream: U,
        settings: &VerifierSettings,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> Self {
        let labels = UpstreamLabels {
            upstream: upstream.name(),
        };
        metrics.auth.circuit_open.get_or_create(&labels).set(0);
        Self {
            upstream,
            clock,
            cache: AnswerCache::new(settings.cache_ttl),
            cache_ttl: crate::clock::span(settings.cache_ttl),
            breaker: Breaker::default(),
            metrics,
        }
    }

    fn count_lookup(&self, result: &'static str) {
        self.metrics
            .auth
            .cache
            .get_or_create(&CacheLabels { result })
            .inc();
    }

    /// Asks the upstream unless the breaker is open: the answer to keep, or
    /// why there is none (`503`).
    async fn ask(&self, credential: &Credential) -> Result<Answer, String> {
        let name = self.upstream.name();
        let permit = self.breaker.admit(self.clock.now()).map_err(|until| {
            format!(
                "{name} failed {FAILURES_TO_OPEN} times in a row; not asked until {}",
                until.to_rfc3339()
            )
        })?;
        let started = std::time::Instant::now();
        let verdict = tokio::time::timeout(UPSTREAM_TIMEOUT, self.upstream.ask(credential)).await;
        let labels = UpstreamLabels { upstream: name };
        self.metrics
            .auth
            .upstream_duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        let now = self.clock.now();
        let verdict = match verdict {
            Ok(Ok(verdict)) => Ok(verdict),
            Ok(Err(e)) => Err(crate::telemetry::error_chain(&e)),
            Err(_) => Err(format!(
                "{name} did not answer within {} s",
                UPSTREAM_TIMEOUT.as_secs()
            )),
        };
        let verdict = match verdict {
            Ok(verdict) => {
                permit.succeeded();
                self.metrics.auth.circuit_open.get_or_create(&labels).set(0);
                verdict
            }
            Err(why) => {
                if permit.failed(now) {
                    self.metrics.auth.circuit_open.get_or_create(&labels).set(1);
                    tracing::warn!(upstream = name, reason = %why, "circuit breaker open");
                }
                self.count_call(name, "unavailable");
                return Err(why);
            }
        };
        let outcome = match verdict {
            Verdict::Accepted(claims) => claims.check(now, Expected::default()),
            Verdict::Refused(why) => Err(AuthError::Invalid(why)),
        };
        self.count_call(
            name,
            if outcome.is_ok() {
                "accepted"
            } else {
                "refused"
            },
        );
        Answer::new(outcome, now, self.cache_ttl)
            .ok_or_else(|| format!("{name} gave no usable answer"))
    }

    fn count_call(&self, upstream: &'static str, outcome: &'static str) {
        self.metrics
            .auth
            .upstream_requests
            .get_or_create(&UpstreamCallLabels { upstream, outcome })
            .inc();
    }
}

#[async_trait]
impl<U: Upstream> Verify for Remote<U> {
    async fn verify(&self, credential: &Credential) -> Result<Claims, AuthError> {
        if credential.is_empty() {
            return Err(AuthError::invalid("no credential to verify"));
        }
        if let Some(answer) = self.cache.get(credential, self.clock.now()).await {
            self.count_lookup("hit");
            return answer.outcome();
        }
        self.count_lookup("miss");
        self.cache
            .get_or_ask(credential, self.ask(credential))
            .await
            .map_err(|why| AuthError::Unavailable(why.as_ref().clone()))?
            .outcome()
    }

    fn readiness(&self) -> (&'static str, Result<(), String>) {
        let name = self.upstream.name();
        let state = match self.breaker.open_until(self.clock.now()) {
            None => Ok(()),
            Some(until) => Err(format!(
                "circuit open: {name} failed {FAILURES_TO_OPEN} times in a row; the next request after {} probes it",
                until.to_rfc3339()
            )),
        };
        (name, state)
    }
}
