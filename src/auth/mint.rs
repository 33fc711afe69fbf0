//! Signs HS256 bearer tokens for development, curl walkthroughs and load tests.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{EncodingKey, Header, encode};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;

use super::claims::{Permissions, Subject};

/// What a minted token says.
#[derive(Debug, Clone)]
pub struct MintRequest {
    /// The token's `sub`.
    pub sub: Subject,
    /// Its `sse` claim.
    pub permissions: Permissions,
    /// How long it stays valid from `now`.
    pub ttl: Duration,
    /// `iss`, when the server checks one.
    pub issuer: Option<String>,
    /// `aud`, when the server checks one.
    pub audience: Option<String>,
    /// `jti`, to revoke this one token by (`POST /admin/revoke {"jti": …}`).
    pub jti: Option<String>,
    /// The issue time (`iat`).
    pub now: DateTime<Utc>,
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The lifetime does not fit a timestamp.
    #[error("the token lifetime is too long")]
    Ttl,
    /// Signing failed.
    #[error("cannot sign the token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a Subject,
    iat: i64,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<&'a str>,
    sse: &'a Permissions,
}

/// Signs `request` with `secret` as an HS256 JWT.
pub fn mint(secret: &SecretString, request: &MintRequest) -> Result<String, MintError> {
    let ttl = chrono::TimeDelta::from_std(request.ttl).map_err(|_| MintError::Ttl)?;
    let exp = request.now.checked_add_signed(ttl).ok_or(MintError::Ttl)?;
    let claims = MintedClaims {
        sub: &request.sub,
        iat: request.now.timestamp(),
        exp: exp.timestamp(),
        iss: request.issuer.as_deref(),
        aud: request.audience.as_deref(),
        jti: request.jti.as_deref(),
        sse: &request.permissions,
    };
    let key = EncodingKey::from_secret(secret.expose_secret().as_bytes());
    Ok(encode(&Header::default(), &claims, &key)?)
}
