//! The RFC 7662 verifier: opaque bearer tokens checked at the identity
//! provider's introspection endpoint.

use async_trait::async_trait;
use secrecy::SecretString;

use super::credential::Credential;
use super::remote::{Upstream, UpstreamError, Verdict};

/// Where and how to introspect (`SSE_TICKET_INTROSPECTION_*`).
#[derive(Debug, Clone)]
pub struct IntrospectionSettings {
    /// The endpoint (`https://`, or `http://` to a loopback address).
    pub url: reqwest::Url,
    /// HTTP Basic client id.
    pub client_id: Option<String>,
    /// HTTP Basic client secret.
    pub client_secret: Option<SecretString>,
}

/// Asks the introspection endpoint.
#[derive(Debug)]
pub(crate) struct Introspection {
    #[allow(dead_code)]
    settings: IntrospectionSettings,
}

impl Introspection {
    pub(crate) fn new(settings: IntrospectionSettings) -> Self {
        Self { settings }
    }
}

#[async_trait]
impl Upstream for Introspection {
    fn name(&self) -> &'static str {
        "introspection"
    }

    async fn ask(&self, _credential: &Credential) -> Result<Verdict, UpstreamError> {
        Err(UpstreamError::Answer {
            upstream: self.name(),
            expected: "implemented yet",
        })
    }
}
