//! Where verification keys come from, and the algorithms each key allows.

use std::path::PathBuf;

use jsonwebtoken::{Algorithm, DecodingKey};
use secrecy::{ExposeSecret as _, SecretString};

/// The one configured verifier: a key or key set that checks JWTs here, or an
/// upstream that decides.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// An HMAC secret (HS256/HS384/HS512).
    Secret(SecretString),
    /// Path of a PEM public key (RSA, EC P-256/P-384 or Ed25519).
    PublicKeyPem(PathBuf),
    /// A JWKS endpoint of an identity provider.
    JwksUrl(reqwest::Url),
    /// An RFC 7662 introspection endpoint (opaque tokens).
    Introspection(super::IntrospectionSettings),
    /// The app's auth webhook (any bearer token, or session cookies).
    AuthWebhook(super::WebhookSettings),
}

impl KeySource {
    /// Whether requests' cookies go to the auth webhook, and `POST /sse-token`
    /// may authenticate with them alone (which CORS must then allow).
    pub fn forwards_cookies(&self) -> bool {
        matches!(self, Self::AuthWebhook(settings) if settings.forward_cookies)
    }
}

/// Why a configured key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The PEM file could not be read.
    #[error("cannot read the public key {path}: {source}")]
    Read {
        /// The configured path.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// The file holds a private key.
    #[error("{0} holds a private key; give the public key (SSE_TICKET_JWT_PUBLIC_KEY)")]
    PrivateKey(PathBuf),
    /// The file is not a supported public key.
    #[error("{0} is not a PEM public key of type RSA, EC (P-256, P-384) or Ed25519")]
    Unsupported(PathBuf),
}

/// A decoding key with the algorithms it may verify: never `none`, and
/// never an HMAC algorithm for a public key.
#[derive(Clone)]
pub(crate) struct VerifyingKey {
    pub(crate) key: DecodingKey,
    pub(crate) algorithms: Vec<Algorithm>,
}

impl VerifyingKey {
    /// A key whose algorithms are those of its family.
    pub(crate) fn new(key: DecodingKey) -> Self {
        let algorithms = key.family().algorithms().to_vec();
        Self { key, algorithms }
    }

    pub(crate) fn from_secret(secret: &SecretString) -> Self {
        Self::new(DecodingKey::from_secret(secret.expose_secret().as_bytes()))
    }

    pub(crate) fn from_pem_file(path: &PathBuf) -> Result<Self, KeyError> {
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.clone(),
            source,
        })?;
        if pem.windows(11).any(|w| w == b"PRIVATE KEY") {
            return Err(KeyError::PrivateKey(path.clone()));
        }
        DecodingKey::from_rsa_pem(&pem)
            .or_else(|_| DecodingKey::from_ec_pem(&pem))
            .or_else(|_| DecodingKey::from_ed_pem(&pem))
            .map(Self::new)
            .map_err(|_| KeyError::Unsupported(path.clone()))
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}
