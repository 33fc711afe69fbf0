//! The RFC 8693 form of `POST /sse-token`: an OAuth 2.0 token exchange whose
//! subject token is the bearer and whose issued token is a ticket, so OAuth
//! client libraries can call the service; and the RFC 8414 metadata that
//! advertises it.

use std::borrow::Cow;

use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

use super::bearer::{MAX_BEARER_TOKEN, credential};
use super::error::OAuthError;
use super::sse_token::{lifetime, stream_url};
use crate::audit::Client;
use crate::auth::TopicPattern;
use crate::hub::Hub;

/// The one grant type this endpoint takes.
pub(crate) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The type of the token it issues: a ticket.
pub(crate) const TICKET_TOKEN_TYPE: &str = "urn:sse-ticket:params:oauth:token-type:ticket";
/// The subject token types it takes; both are verified alike.
const SUBJECT_TOKEN_TYPES: [&str; 2] = [
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:access_token",
];

/// The parameters this endpoint reads. Any other is ignored (RFC 6749 §3.2);
/// none of these may appear twice.
const PARAMETERS: [&str; 7] = [
    "grant_type",
    "subject_token",
    "subject_token_type",
    "scope",
    "requested_token_type",
    "actor_token",
    "actor_token_type",
];

/// A well-formed token exchange, before its subject token is verified.
#[derive(Debug)]
struct ExchangeRequest {
    subject_token: String,
    topics: Vec<TopicPattern>,
}

impl ExchangeRequest {
    /// Reads a form-encoded body: every refusal an `invalid_request`,
    /// `unsupported_grant_type` or `invalid_scope`.
    fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let mut values: [Option<Cow<'_, str>>; PARAMETERS.len()] = Default::default();
        for (name, value) in form_urlencoded::parse(body) {
            let Some(slot) = PARAMETERS.iter().position(|known| *known == name) else {
                continue;
            };
            if values[slot].replace(value).is_some() {
                return Err(OAuthError::InvalidRequest(format!(
                    "the parameter {name} is repeated"
                )));
            }
        }
        let [
            grant_type,
            subject_token,
            subject_token_type,
            scope,
            requested_token_type,
            actor_token,
            actor_token_type,
        ] = values;

        match grant_type.as_deref() {
            None | Some("") => return Err(missing("grant_type")),
            Some(GRANT_TYPE) => {}
            Some(_) => return Err(OAuthError::UnsupportedGrantType),
        }
        let subject_token = subject_token
            .filter(|token| !token.is_empty())
            .ok_or_else(|| missing("subject_token"))?;
        match subject_token_type.as_deref() {
            None | Some("") => return Err(missing("subject_token_type")),
            Some(kind) if SUBJECT_TOKEN_TYPES.contains(&kind) => {}
            Some(_) => {
                return Err(OAuthError::InvalidRequest(format!(
                    "subject_token_type must be {} or {}",
                    SUBJECT_TOKEN_TYPES[0], SUBJECT_TOKEN_TYPES[1]
                )));
            }
        }
        if requested_token_type.is_some_and(|kind| kind != TICKET_TOKEN_TYPE) {
            return Err(OAuthError::InvalidRequest(format!(
                "requested_token_type must be {TICKET_TOKEN_TYPE}, if given"
            )));
        }
        if actor_token.is_some() || actor_token_type.is_some() {
            return Err(OAuthError::InvalidRequest(
                "delegation (actor_token) is not supported: a ticket acts for its subject only"
                    .into(),
            ));
        }
        if subject_token.len() > MAX_BEARER_TOKEN {
            return Err(OAuthError::InvalidGrant(format!(
                "the subject token is longer than {MAX_BEARER_TOKEN} bytes"
            )));
        }
        let topics = scope
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .filter(|entry| !entry.is_empty())
            .map(|raw| {
                TopicPattern::parse(raw).map_err(|e| {
                    OAuthError::InvalidScope(format!("{raw:?} is not a topic or pattern: {e}"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            subject_token: subject_token.into_owned(),
            topics,
        })
    }
}

fn missing(parameter: &str) -> OAuthError {
    OAuthError::InvalidRequest(format!("the parameter {parameter} is required"))
}

/// The answer of RFC 8693 §2.2.1.
#[derive(Serialize)]
struct ExchangeResponse {
    access_token: String,
    issued_token_type: &'static str,
    token_type: &'static str,
    expires_in: i64,
    scope: String,
    stream_url: String,
}

/// Exchanges the subject token of a form-encoded `body` for a ticket.
pub(super) async fn exchange(
    hub: &Hub,
    body: &[u8],
    client: &Client,
) -> Result<HttpResponse, OAuthError> {
    let request = ExchangeRequest::parse(body)?;
    let claims = hub
        .authenticate(&credential(request.subject_token, client))
        .await?;
    let ticket = hub.issue_ticket(&claims, request.topics, client).await?;
    let id = ticket.id().to_string();
    let scope = ticket
        .topics()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    Ok(HttpResponse::Ok()
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(ExchangeResponse {
            stream_url: stream_url(&id),
            access_token: id,
            issued_token_type: TICKET_TOKEN_TYPE,
            // RFC 8693 §2.2.1: the ticket is no access token for an Authorization header.
            token_type: "N_A",
            expires_in: lifetime(&ticket),
            scope,
        }))
}

/// The authorization server metadata of RFC 8414.
#[derive(Serialize)]
struct Metadata {
    issuer: String,
    token_endpoint: String,
    grant_types_supported: [&'static str; 1],
    token_endpoint_auth_methods_supported: [&'static str; 1],
}

/// `GET /.well-known/oauth-authorization-server`.
pub(crate) async fn metadata(req: HttpRequest, hub: Data<Hub>) -> HttpResponse {
    let issuer = base_url(&req, &hub);
    HttpResponse::Ok().json(Metadata {
        token_endpoint: format!("{issuer}/sse-token"),
        issuer,
        grant_types_supported: [GRANT_TYPE],
        token_endpoint_auth_methods_supported: ["none"],
    })
}

/// The URL the client reached this server at: its scheme and `Host` (the
/// `:authority` on HTTP/2), or, from a trusted proxy, those the proxy names in
/// `Forwarded` / `X-Forwarded-Proto` / `X-Forwarded-Host`. A host that is not
/// a host name or address gives way to the listen address.
fn base_url(req: &HttpRequest, hub: &Hub) -> String {
    let from_proxy = req
        .peer_addr()
        .is_some_and(|peer| hub.trusted_proxies().contains(peer.ip()));
    let (scheme, host) = if from_proxy {
        let info = req.connection_info();
        (info.scheme().to_owned(), info.host().to_owned())
    } else {
        let scheme = if req.app_config().secure() {
            "https"
        } else {
            "http"
        };
        let host = req
            .uri()
            .authority()
            .map(|authority| authority.as_str())
            .or_else(|| req.headers().get(header::HOST)?.to_str().ok())
            .unwrap_or_default();
        (scheme.to_owned(), host.to_owned())
    };
    let scheme = if scheme == "https" { "https" } else { "http" };
    let host = if is_host(&host) {
        host
    } else {
        req.app_config().host().to_owned()
    };
    format!("{scheme}://{host}")
}

/// Whether `host` is a host name or address with an optional port, and nothing else.
fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ExchangeRequest, OAuthError> {
        ExchangeRequest::parse(body.as_bytes())
    }

    const VALID: &str = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
                         &subject_token=abc&subject_token_type=urn:ietf:params:oauth:token-type:jwt";

    #[test]
    fn a_minimal_exchange_asks_for_the_own_topic() {
        let request = parse(VALID).expect("valid");
        assert_eq!(request.subject_token, "abc");
        assert!(request.topics.is_empty());
    }

    #[test]
    fn scope_is_split_on_spaces() {
        let request = parse(&format!("{VALID}&scope=orders%2F*+orders/42")).expect("valid");
        let topics: Vec<_> = request.topics.iter().map(ToString::to_string).collect();
        assert_eq!(topics, ["orders/*", "orders/42"]);
    }

    #[test]
    fn each_refusal_has_its_code() {
        let cases = [
            ("subject_token=abc", "invalid_request"),
            (
                "grant_type=password&subject_token=abc",
                "unsupported_grant_type",
            ),
            (&format!("{VALID}&subject_token=again"), "invalid_request"),
            (&VALID.replace("subject_token=abc&", ""), "invalid_request"),
            (&VALID.replace(":jwt", ":saml2"), "invalid_request"),
            (
                &format!("{VALID}&requested_token_type=x"),
                "invalid_request",
            ),
            (&format!("{VALID}&actor_token=x"), "invalid_request"),
            (&format!("{VALID}&scope=a//b"), "invalid_scope"),
        ];
        for (body, code) in cases {
            let error = parse(body).expect_err(body);
            assert_eq!(error.code(), code, "{body}");
        }
    }

    #[test]
    fn unknown_parameters_are_ignored_and_may_repeat() {
        parse(&format!("{VALID}&client_id=a&client_id=b&resource=x")).expect("valid");
    }

    #[test]
    fn hosts_are_names_or_addresses() {
        for host in ["example.com", "127.0.0.1:8080", "[::1]:443"] {
            assert!(is_host(host), "{host}");
        }
        for host in ["", "a/b", "a b", "evil\"", "a@b"] {
            assert!(!is_host(host), "{host}");
        }
    }
}
