//! The registered claims as a verifier receives them (from a JWT's payload,
//! an introspection answer or the auth webhook's answer), checked one by one
//! into [`Claims`] with clear errors.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::claims::{Claims, Permissions, Subject};
use super::verifier::{AuthError, LEEWAY};

#[derive(Debug, Deserialize)]
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

/// The claims as they come: every one optional, checked by [`Self::check`].
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RegisteredClaims {
    sub: Option<String>,
    exp: Option<f64>,
    nbf: Option<f64>,
    iat: Option<f64>,
    jti: Option<String>,
    iss: Option<String>,
    aud: Option<Audience>,
    sse: Option<serde_json::Value>,
}

/// What [`RegisteredClaims::check`] wants besides the rules every token follows.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Expected<'a> {
    /// When set, `iss` must equal it.
    pub issuer: Option<&'a str>,
    /// When set, `aud` must contain it.
    pub audience: Option<&'a str>,
}

impl RegisteredClaims {
    /// The claims of a token at `now`: `sub` and `exp` required, `exp` and
    /// `nbf` within the leeway, `iat` not in the future, `iss`/`aud` as
    /// `expected`, and the `sse` permissions well-formed.
    pub(crate) fn check(
        self,
        now: DateTime<Utc>,
        expected: Expected<'_>,
    ) -> Result<Claims, AuthError> {
        let sub = self
            .sub
            .as_deref()
            .ok_or_else(|| AuthError::invalid("the bearer token has no sub"))
            .and_then(|s| {
                Subject::parse(s).map_err(|e| {
                    AuthError::Invalid(format!("the bearer token's sub is invalid: {e}"))
                })
            })?;
        let exp = self
            .exp
            .ok_or_else(|| AuthError::invalid("the bearer token has no exp"))
            .and_then(|t| timestamp(t, "exp"))?;
        if now > exp + LEEWAY {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = self.nbf.map(|t| timestamp(t, "nbf")).transpose()?
            && nbf > now + LEEWAY
        {
            return Err(AuthError::invalid(
                "the bearer token is not valid yet (nbf)",
            ));
        }
        let iat = self.iat.map(|t| timestamp(t, "iat")).transpose()?;
        // A token "issued" in the future would outrun every revocation made
        // before that time.
        if iat.is_some_and(|iat| iat > now + LEEWAY) {
            return Err(AuthError::invalid(
                "the bearer token's issue time (iat) is in the future",
            ));
        }
        if let Some(wanted) = expected.issuer
            && self.iss.as_deref() != Some(wanted)
        {
            return Err(AuthError::invalid(
                "the bearer token's issuer (iss) is not accepted",
            ));
        }
        if let Some(wanted) = expected.audience
            && !self.aud.is_some_and(|aud| aud.contains(wanted))
        {
            return Err(AuthError::invalid(
                "the bearer token's audience (aud) does not include this service",
            ));
        }
        let permissions = match self.sse {
            None | Some(serde_json::Value::Null) => Permissions::default(),
            Some(value) => serde_json::from_value(value).map_err(|e| {
                AuthError::Invalid(format!("the bearer token's sse claim is invalid: {e}"))
            })?,
        };
        Ok(Claims {
            sub,
            exp,
            iat,
            jti: self.jti.map(Into::into),
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
