//! The RFC 7662 verifier: opaque bearer tokens checked at the identity
//! provider's introspection endpoint.

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;

use super::credential::Credential;
use super::registered::RegisteredClaims;
use super::remote::{Upstream, UpstreamError, Verdict, answer_body, http_client};

/// What the answer must be, in the words of the `503`'s logged cause.
const EXPECTED: &str = "an RFC 7662 JSON object";

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
    url: reqwest::Url,
    /// The `Authorization` header's value (marked sensitive), when client
    /// credentials are set.
    basic: Option<HeaderValue>,
    client: reqwest::Client,
}

impl Introspection {
    pub(crate) fn new(settings: IntrospectionSettings) -> Self {
        let basic = match (&settings.client_id, &settings.client_secret) {
            // Always a valid header: "Basic " and base64.
            (Some(id), Some(secret)) => {
                HeaderValue::from_str(&basic_authorization(id, secret.expose_secret()))
                    .ok()
                    .map(|mut value| {
                        value.set_sensitive(true);
                        value
                    })
            }
            _ => None,
        };
        Self {
            url: settings.url,
            basic,
            client: http_client(),
        }
    }

    fn bad_answer(&self) -> UpstreamError {
        UpstreamError::Answer {
            upstream: self.name(),
            expected: EXPECTED,
        }
    }
}

/// `Basic base64(id:secret)` with both form-encoded first (RFC 6749 §2.3.1).
fn basic_authorization(id: &str, secret: &str) -> String {
    let encode = |raw: &str| form_urlencoded::byte_serialize(raw.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(id), encode(secret));
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    format!("Basic {encoded}")
}

#[async_trait]
impl Upstream for Introspection {
    fn name(&self) -> &'static str {
        "introspection"
    }

    async fn ask(&self, credential: &Credential) -> Result<Verdict, UpstreamError> {
        // Only the bearer token is ever sent: never the cookie.
        let Some(bearer) = &credential.bearer else {
            return Ok(Verdict::Refused(
                "a bearer token is required (the introspection endpoint checks bearer tokens)"
                    .into(),
            ));
        };
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", bearer)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let mut request = self
            .client
            .post(self.url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body);
        if let Some(basic) = &self.basic {
            request = request.header(reqwest::header::AUTHORIZATION, basic.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| UpstreamError::unreachable(self.name(), e))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(UpstreamError::Status {
                upstream: self.name(),
                status: status.as_u16(),
            });
        }
        let bytes = answer_body(self.name(), EXPECTED, response).await?;
        let answer: Value = serde_json::from_slice(&bytes).map_err(|_| self.bad_answer())?;
        verdict(answer).ok_or_else(|| self.bad_answer())
    }
}

/// The verdict of an introspection answer; `None` when it is not one (not an
/// object, or `active` not a boolean).
fn verdict(answer: Value) -> Option<Verdict> {
    let Value::Object(members) = &answer else {
        return None;
    };
    match members.get("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) | None => {
            return Some(Verdict::Refused(
                "the bearer token is not active (introspection)".into(),
            ));
        }
        Some(_) => return None,
    }
    // Claims of the wrong type concern this token alone: refused, like a
    // JWT's, rather than counted against the endpoint.
    Some(match serde_json::from_value::<RegisteredClaims>(answer) {
        Ok(claims) => Verdict::Accepted(claims),
        Err(e) => Verdict::Refused(format!(
            "the introspection answer's claims are malformed: {e}"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_are_form_encoded_before_basic() {
        let header = basic_authorization("my client", "s3cr:t/é");
        let encoded = header.strip_prefix("Basic ").expect("Basic");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64");
        assert_eq!(
            String::from_utf8(decoded).expect("UTF-8"),
            "my+client:s3cr%3At%2F%C3%A9"
        );
    }

    #[test]
    fn only_active_true_accepts_and_a_non_boolean_active_is_no_answer() {
        let accepted = verdict(serde_json::json!({"active": true, "sub": "a", "exp": 1}));
        assert!(matches!(accepted, Some(Verdict::Accepted(_))));
        for refused in [
            serde_json::json!({"active": false, "sub": "a"}),
            serde_json::json!({"sub": "a", "exp": 1}),
            serde_json::json!({"active": true, "sub": 42}),
        ] {
            assert!(
                matches!(verdict(refused.clone()), Some(Verdict::Refused(_))),
                "{refused}"
            );
        }
        for broken in [
            serde_json::json!({"active": "true"}),
            serde_json::json!([true]),
        ] {
            assert!(verdict(broken.clone()).is_none(), "{broken}");
        }
    }
}
