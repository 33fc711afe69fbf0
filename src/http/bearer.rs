//! The `Authorization: Bearer` extractor: yields verified [`Claims`].

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, web};

use super::error::ApiError;
use crate::audit::Client;
use crate::auth::{Claims, Credential};
use crate::hub::Hub;

/// The verified claims of the request's bearer token.
#[derive(Debug)]
pub(crate) struct Bearer(pub(crate) Claims);

impl FromRequest for Bearer {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        Box::pin(authenticate(req, false))
    }
}

impl Bearer {
    /// As the extractor; and when the auth webhook forwards cookies, a
    /// request without `Authorization` whose body is typed JSON authenticates
    /// with its cookies alone (`POST /sse-token`). The type matters: a
    /// cross-site HTML form cannot send it without a CORS preflight.
    pub(crate) fn or_session(
        req: &HttpRequest,
    ) -> impl Future<Output = Result<Self, ApiError>> + 'static {
        authenticate(req, true)
    }
}

/// Why a request without `Authorization` that could have used its cookies did not.
const COOKIES_NEED_JSON: &str = "send an Authorization: Bearer <token> header, or the session cookie with a JSON body (Content-Type: application/json)";
const NO_COOKIE: &str =
    "send an Authorization: Bearer <token> header or the session cookie: the request has neither";

/// The claims of the request's credential: its bearer token, with its
/// cookies when the verifier takes them, or (where `session` allows) its
/// cookies alone.
fn authenticate(
    req: &HttpRequest,
    session: bool,
) -> impl Future<Output = Result<Bearer, ApiError>> + 'static {
    let hub = req.app_data::<web::Data<Hub>>().cloned();
    let client = client_info(req);
    let token = req.headers().get(header::AUTHORIZATION).map(|value| {
        value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_owned())
            .filter(|token| !token.is_empty())
    });
    let cookie = cookie_header(req);
    let json = req.content_type().eq_ignore_ascii_case("application/json");
    async move {
        let hub = hub.ok_or_else(|| ApiError::Unavailable("the hub is not configured".into()))?;
        let cookie = cookie.filter(|_| hub.forwards_cookies());
        let bearer = match token {
            Some(Some(token)) => {
                check_length(&token)?;
                Some(token)
            }
            Some(None) => {
                return Err(ApiError::InvalidToken(
                    "the Authorization header is not of the form Bearer <token>".into(),
                ));
            }
            None if !(session && hub.forwards_cookies()) => return Err(ApiError::MissingToken),
            None if !json => return Err(ApiError::MissingCredential(COOKIES_NEED_JSON)),
            None if cookie.is_none() => return Err(ApiError::MissingCredential(NO_COOKIE)),
            None => None,
        };
        let credential = Credential {
            bearer,
            cookie,
            client_ip: client.ip,
            user_agent: client.user_agent,
        };
        Ok(Bearer(hub.authenticate(&credential).await?))
    }
}

/// The request's cookies as one `Cookie` header (HTTP/2 may split them
/// over several fields, joined here by `; ` as RFC 9113 says).
fn cookie_header(req: &HttpRequest) -> Option<String> {
    let values: Vec<&str> = req
        .headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    (!values.is_empty()).then(|| values.join("; "))
}

/// Longest bearer token accepted, in bytes. A longer one is refused before
/// anything decodes it: no identity provider issues such tokens, and the
/// cost of refusing one stays constant.
pub(crate) const MAX_BEARER_TOKEN: usize = 8 * 1024;

/// Refuses a bearer token over [`MAX_BEARER_TOKEN`] (`401 invalid_token`).
pub(crate) fn check_length(token: &str) -> Result<(), ApiError> {
    if token.len() > MAX_BEARER_TOKEN {
        return Err(ApiError::InvalidToken(format!(
            "the bearer token is longer than {MAX_BEARER_TOKEN} bytes"
        )));
    }
    Ok(())
}

/// The verified claims of a bearer token with the admin permission.
#[derive(Debug)]
pub(crate) struct Admin(pub(crate) Claims);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let bearer = Bearer::from_request(req, payload);
        Box::pin(async move {
            let Bearer(claims) = bearer.await?;
            if claims.permissions.admin {
                Ok(Admin(claims))
            } else {
                Err(ApiError::Forbidden)
            }
        })
    }
}

/// Who sent the request, for the audit trail and the binding of tickets: the
/// client IP by [`client_ip`] and the `User-Agent`.
#[derive(Debug)]
pub(crate) struct ClientInfo(pub(crate) Client);

impl FromRequest for ClientInfo {
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(Ok(ClientInfo(client_info(req))))
    }
}

/// The request's client IP and `User-Agent`.
fn client_info(req: &HttpRequest) -> Client {
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(MAX_USER_AGENT).collect());
    Client {
        ip: client_ip(req).map(|ip| ip.to_string()),
        user_agent,
    }
}

/// The credential of a request by `client` that presents `bearer`.
pub(crate) fn credential(bearer: String, client: &Client) -> Credential {
    Credential {
        bearer: Some(bearer),
        cookie: None,
        client_ip: client.ip.clone(),
        user_agent: client.user_agent.clone(),
    }
}

/// The client's address: the peer, or from a trusted proxy the address its
/// `Forwarded` / `X-Forwarded-For` name (one rule for the audit trail, the
/// access log and the binding of tickets: [`crate::client_ip::client_ip`]).
pub(crate) fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let Some(hub) = req.app_data::<web::Data<Hub>>() else {
        return Some(peer);
    };
    let trusted = hub.trusted_proxies();
    if trusted.is_empty() {
        return Some(peer);
    }
    let values = |name| {
        req.headers()
            .get_all(name)
            // A value that is not text names no address: the walk stops there.
            .map(|value| value.to_str().unwrap_or("unknown"))
    };
    Some(crate::client_ip::client_ip(
        peer,
        trusted,
        values(header::FORWARDED),
        values(header::X_FORWARDED_FOR),
    ))
}

/// Longest `User-Agent` kept in the audit trail.
const MAX_USER_AGENT: usize = 256;
