//! The auth webhook verifier: the app's own endpoint says who the caller is,
//! from its `Authorization` header or (when forwarded) its session cookie.

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use serde::{Deserialize, Serialize};

use super::claims::Permissions;
use super::credential::Credential;
use super::registered::RegisteredClaims;
use super::remote::{Upstream, UpstreamError, Verdict, answer_body, http_client};

/// What the answer must be, in the words of the `503`'s logged cause.
const EXPECTED: &str = r#"JSON {"sub": "…", "exp": <unix>, …}"#;

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
    settings: WebhookSettings,
    client: reqwest::Client,
}

impl Webhook {
    pub(crate) fn new(settings: WebhookSettings) -> Self {
        Self {
            settings,
            client: http_client(),
        }
    }
}

/// The JSON the webhook receives.
#[derive(Debug, Serialize)]
struct Question<'a> {
    /// `Bearer <token>`; absent when the request had no `Authorization`.
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization: Option<String>,
    /// The `Cookie` header; absent unless cookies are forwarded.
    #[serde(skip_serializing_if = "Option::is_none")]
    cookie: Option<&'a str>,
    client_ip: Option<&'a str>,
    user_agent: Option<&'a str>,
}

/// The shape a `200` must have: `sub` and `exp` present, and the rest, when
/// present, of the right types. The claims are then checked like a JWT's.
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // Read only to check the shape.
struct Answer {
    sub: String,
    exp: f64,
    iat: Option<f64>,
    jti: Option<String>,
    sse: Option<Permissions>,
}

impl Webhook {
    fn question<'a>(&self, credential: &'a Credential) -> Question<'a> {
        Question {
            authorization: credential.bearer.as_ref().map(|t| format!("Bearer {t}")),
            // The setting is checked here too: a cookie is never sent to a
            // webhook that was not configured to receive it.
            cookie: credential
                .cookie
                .as_deref()
                .filter(|_| self.settings.forward_cookies),
            client_ip: credential.client_ip.as_deref(),
            user_agent: credential.user_agent.as_deref(),
        }
    }

    /// The claims of a `200`'s body.
    fn claims(&self, body: &[u8]) -> Result<RegisteredClaims, UpstreamError> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| self.malformed())?;
        Answer::deserialize(&value).map_err(|_| self.malformed())?;
        RegisteredClaims::deserialize(value).map_err(|_| self.malformed())
    }

    fn malformed(&self) -> UpstreamError {
        UpstreamError::Answer {
            upstream: self.name(),
            expected: EXPECTED,
        }
    }
}

#[async_trait]
impl Upstream for Webhook {
    fn name(&self) -> &'static str {
        "auth_webhook"
    }

    async fn ask(&self, credential: &Credential) -> Result<Verdict, UpstreamError> {
        let response = self
            .client
            .post(self.settings.url.clone())
            .header(ACCEPT, "application/json")
            .json(&self.question(credential))
            .send()
            .await
            .map_err(|source| UpstreamError::unreachable(self.name(), source))?;
        match response.status() {
            StatusCode::OK => {
                let body = answer_body(self.name(), EXPECTED, response).await?;
                Ok(Verdict::Accepted(self.claims(&body)?))
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Ok(Verdict::Refused(
                "the auth webhook refused the credential".into(),
            )),
            status => Err(UpstreamError::Status {
                upstream: self.name(),
                status: status.as_u16(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(forward_cookies: bool) -> Webhook {
        Webhook::new(WebhookSettings {
            url: "http://127.0.0.1:9/hook".parse().expect("URL"),
            forward_cookies,
        })
    }

    fn credential() -> Credential {
        Credential {
            bearer: Some("tok".into()),
            cookie: Some("session=s".into()),
            client_ip: Some("192.0.2.1".into()),
            user_agent: Some("ua".into()),
        }
    }

    #[test]
    fn the_cookie_is_sent_only_when_forwarding_is_on() {
        let on = serde_json::to_value(webhook(true).question(&credential())).expect("JSON");
        assert_eq!(on["cookie"], "session=s");
        assert_eq!(on["authorization"], "Bearer tok");
        let off = serde_json::to_value(webhook(false).question(&credential())).expect("JSON");
        assert!(off.get("cookie").is_none(), "{off}");
    }

    #[test]
    fn an_answer_without_sub_or_exp_or_with_a_bad_sse_is_malformed() {
        let hook = webhook(false);
        for body in [
            r#"{"exp": 1}"#,
            r#"{"sub": "a"}"#,
            r#"{"sub": "a", "exp": "soon"}"#,
            r#"{"sub": "a", "exp": 1, "sse": {"subscribe": "x"}}"#,
            "[]",
            "<html>",
        ] {
            assert!(
                matches!(
                    hook.claims(body.as_bytes()),
                    Err(UpstreamError::Answer { .. })
                ),
                "{body}"
            );
        }
        assert!(
            hook.claims(br#"{"sub": "a", "exp": 1, "sse": null}"#)
                .is_ok()
        );
    }
}
