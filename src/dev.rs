//! Development mode: ready-made tokens for the banner and the demo page.

use std::time::Duration;

use secrecy::SecretString;

use crate::auth::{MintError, MintRequest, Permissions, Subject, TopicPattern, mint};

/// How long the tokens printed by `serve --dev` stay valid.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// The tokens `serve --dev` hands out.
#[derive(Clone)]
pub struct DevTokens {
    /// `sub` alice, may subscribe to `orders/*` (and `user/alice`).
    pub subscriber: String,
    /// `sub` backend, may publish anywhere.
    pub publisher: String,
}

impl std::fmt::Debug for DevTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevTokens([redacted])")
    }
}

impl DevTokens {
    /// Mints both tokens with `secret`, valid from `now`.
    pub fn mint(
        secret: &SecretString,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Self, MintError> {
        let token = |sub: &str, subscribe: &[&str], publish: &[&str]| {
            let patterns = |raw: &[&str]| {
                raw.iter()
                    .filter_map(|p| TopicPattern::parse(p).ok())
                    .collect()
            };
            let request = MintRequest {
                sub: Subject::parse(sub)
                    .unwrap_or_else(|_| unreachable!("a constant, valid subject")),
                permissions: Permissions {
                    subscribe: patterns(subscribe),
                    publish: patterns(publish),
                    admin: false,
                },
                ttl: DEV_TOKEN_TTL,
                issuer: None,
                audience: None,
                jti: None,
                now,
            };
            mint(secret, &request)
        };
        Ok(Self {
            subscriber: token("alice", &["orders/*"], &[])?,
            publisher: token("backend", &[], &["*"])?,
        })
    }
}
