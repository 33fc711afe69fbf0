//! What a request presents to prove who it is, as the verifiers see it.

use sha2::{Digest, Sha256};

/// The credential of one request: its bearer token, and for the auth webhook
/// the request's context. The `Debug` output names which parts are present,
/// never their values.
#[derive(Clone, Default)]
pub struct Credential {
    /// The bearer token (`Authorization: Bearer`, or a token exchange's
    /// `subject_token`).
    pub bearer: Option<String>,
    /// The request's `Cookie` header: set only when the auth webhook forwards
    /// cookies and the request may authenticate with them.
    pub cookie: Option<String>,
    /// The client IP, by the one rule of [`crate::client_ip`].
    pub client_ip: Option<String>,
    /// The request's `User-Agent`.
    pub user_agent: Option<String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("bearer", &self.bearer.as_ref().map(|_| "[redacted]"))
            .field("cookie", &self.cookie.as_ref().map(|_| "[redacted]"))
            .field("client_ip", &self.client_ip)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

impl Credential {
    /// A credential of just a bearer token.
    pub fn bearer(token: impl Into<String>) -> Self {
        Self {
            bearer: Some(token.into()),
            ..Self::default()
        }
    }

    /// Whether it carries anything to authenticate with.
    pub fn is_empty(&self) -> bool {
        self.bearer.is_none() && self.cookie.is_none()
    }

    /// SHA-256 of what authenticates (the bearer token and the cookie), the
    /// key under which a verifier's answer may be cached: two requests with
    /// the same fingerprint are the same caller.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        for part in [&self.bearer, &self.cookie] {
            match part {
                // A length prefix keeps ("ab", "c") apart from ("a", "bc").
                Some(value) => {
                    hash.update([1]);
                    hash.update((value.len() as u64).to_be_bytes());
                    hash.update(value.as_bytes());
                }
                None => hash.update([0]),
            }
        }
        hash.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_tells_the_parts_apart() {
        let of = |bearer: Option<&str>, cookie: Option<&str>| {
            Credential {
                bearer: bearer.map(Into::into),
                cookie: cookie.map(Into::into),
                ..Credential::default()
            }
            .fingerprint()
        };
        assert_ne!(of(Some("ab"), Some("c")), of(Some("a"), Some("bc")));
        assert_ne!(of(Some("a"), None), of(None, Some("a")));
        assert_eq!(of(Some("a"), None), of(Some("a"), None));
    }

    #[test]
    fn debug_never_shows_the_secret_parts() {
        let credential = Credential {
            bearer: Some("secret-token".into()),
            cookie: Some("session=secret-cookie".into()),
            ..Credential::default()
        };
        let shown = format!("{credential:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
