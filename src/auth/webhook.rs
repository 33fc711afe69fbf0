//! The auth webhook verifier: the app's own endpoint says who the caller is,
//! from its `Authorization` header or (when forwarded) its session cookie.

use async_trait::async_trait;

use super::credential::Credential;
use super::remote::{Upstream, UpstreamError, Verdict};

/// Where the webhook is and what it receives (`SSE_TICKET_AUTH_WEBHOOK_*`).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The endpoint (`https://`, or `http://` to a loopback address).
    pub url: reqwest::Url,
    /// Whether the request's `Cookie` header is forwarded, and `POST
    /// /sse-token` may authenticate with cookies alone.
    pub forward_cookies: bool,
}

/// Asks the webhook.
#[derive(Debug)]
pub(crate) struct Webhook {
    #[allow(dead_code)]
    settings: WebhookSettings,
}

impl Webhook {
    pub(crate) fn new(settings: WebhookSettings) -> Self {
        Self { settings }
    }
}

#[async_trait]
impl Upstream for Webhook {
    fn name(&self) -> &'static str {
        "auth_webhook"
    }

    async fn ask(&self, _credential: &Credential) -> Result<Verdict, UpstreamError> {
        Err(UpstreamError::Answer {
            upstream: self.name(),
            expected: "implemented yet",
        })
    }
}
