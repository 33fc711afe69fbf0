//! Bearer tokens: minted here with the server's HMAC secret (the claims of
//! `sse-ticket mint`), or one given token for everything.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use hyper::header::HeaderValue;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde::Serialize;

use crate::target::TargetArgs;

/// Lifetime of minted tokens: longer than any bounded run.
const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// The `sse` claim: what a token may subscribe to, publish to, administer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Permissions {
    /// Topic patterns the bearer may subscribe to (beyond `user/<sub>`).
    pub subscribe: Vec<String>,
    /// Topic patterns the bearer may publish to.
    pub publish: Vec<String>,
    /// Whether the bearer may use `/admin`.
    pub admin: bool,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    sse: &'a Permissions,
}

/// How requests get their `Authorization: Bearer` header.
#[derive(Clone)]
pub enum Credentials {
    /// Mint an HS256 token per subject with this secret.
    Mint {
        /// The signing key.
        key: EncodingKey,
        /// `iss`, when the server checks one.
        issuer: Option<String>,
        /// `aud`, when the server checks one.
        audience: Option<String>,
    },
    /// Send this header whatever the subject.
    Fixed(HeaderValue),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Mint { .. } => f.write_str("Credentials::Mint([redacted])"),
            Self::Fixed(_) => f.write_str("Credentials::Fixed([redacted])"),
        }
    }
}

impl Credentials {
    /// `--token` when given, else `--secret` / `SSE_TICKET_JWT_SECRET`, else none.
    pub fn from_args(args: &TargetArgs) -> anyhow::Result<Option<Self>> {
        if let Some(token) = &args.token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .context("--token holds characters a header cannot carry")?;
            value.set_sensitive(true);
            return Ok(Some(Self::Fixed(value)));
        }
        match &args.secret {
            Some(secret) if secret.is_empty() => bail!("--secret is empty"),
            Some(secret) => Ok(Some(Self::Mint {
                key: EncodingKey::from_secret(secret.as_bytes()),
                issuer: args.issuer.clone().filter(|s| !s.is_empty()),
                audience: args.audience.clone().filter(|s| !s.is_empty()),
            })),
            None => Ok(None),
        }
    }

    /// Whether every request carries the same token (so one subject's quotas apply to all).
    pub fn is_fixed(&self) -> bool {
        matches!(self, Self::Fixed(_))
    }

    /// The `Authorization` header for `sub` with `permissions` (ignored for a fixed token).
    pub fn bearer(&self, sub: &str, permissions: &Permissions) -> anyhow::Result<HeaderValue> {
        let (key, issuer, audience) = match self {
            Self::Fixed(value) => return Ok(value.clone()),
            Self::Mint {
                key,
                issuer,
                audience,
            } => (key, issuer, audience),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the system clock is before 1970")?
            .as_secs();
        let claims = Claims {
            sub,
            iat: now,
            exp: now + TOKEN_TTL.as_secs(),
            iss: issuer.as_deref(),
            aud: audience.as_deref(),
            sse: permissions,
        };
        let token = encode(&Header::default(), &claims, key).context("cannot sign a token")?;
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .context("a minted token is not a valid header")?;
        value.set_sensitive(true);
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation, decode};

    #[test]
    fn mints_the_claims_of_sse_ticket_mint() {
        let credentials = Credentials::Mint {
            key: EncodingKey::from_secret(b"s3cret"),
            issuer: None,
            audience: None,
        };
        let permissions = Permissions {
            subscribe: vec!["bench/*".into()],
            publish: vec![],
            admin: false,
        };
        let header = credentials.bearer("load-1", &permissions).expect("mints");
        let token = header
            .to_str()
            .expect("ascii")
            .strip_prefix("Bearer ")
            .expect("bearer prefix");
        let claims = decode::<serde_json::Value>(
            token,
            &DecodingKey::from_secret(b"s3cret"),
            &Validation::default(),
        )
        .expect("verifies")
        .claims;
        assert_eq!(claims["sub"], "load-1");
        assert_eq!(
            claims["sse"],
            serde_json::json!({"subscribe": ["bench/*"], "publish": [], "admin": false})
        );
        assert!(claims["exp"].as_u64() > claims["iat"].as_u64());
        assert!(claims.get("iss").is_none());
    }
}
