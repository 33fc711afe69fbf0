//! [`ApiError`]: every error a client can see, mapped in one place to the
//! contract's JSON body `{"error": "<code>", "message": "<sentence>"}`.
//! Which domain error becomes which `ApiError` is in `error/from.rs`.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use serde::Serialize;

mod from;

/// `WWW-Authenticate` value on bearer-token failures.
pub const BEARER_CHALLENGE: &str = r#"Bearer error="invalid_token""#;

/// An error answered to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No `Authorization: Bearer` header.
    #[error("an Authorization: Bearer <token> header is required")]
    MissingToken,
    /// No `Authorization` header, where a session cookie could have stood in
    /// for it: this sentence says how.
    #[error("{0}")]
    MissingCredential(&'static str),
    /// The bearer token is malformed, badly signed or carries wrong claims.
    #[error("{0}")]
    InvalidToken(String),
    /// The bearer token has expired.
    #[error("the bearer token has expired")]
    TokenExpired,
    /// The bearer token's subject has been revoked.
    #[error("the bearer token has been revoked")]
    TokenRevoked,
    /// The bearer lacks the admin permission.
    #[error("this endpoint needs a bearer token with the admin permission")]
    Forbidden,
    /// The token may not use a topic.
    #[error("{0}")]
    ForbiddenTopic(String),
    /// A topic or pattern is malformed.
    #[error("{0}")]
    InvalidTopic(String),
    /// The body is not what the endpoint takes.
    #[error("{0}")]
    InvalidBody(String),
    /// A query parameter or header is malformed.
    #[error("{0}")]
    InvalidQuery(String),
    /// The body or its data is too large.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The subject holds its quota of outstanding tickets.
    #[error("too many outstanding tickets for this subject; retry after the oldest expires")]
    TooManyTickets {
        /// When one frees up.
        retry_after: Duration,
    },
    /// The subject holds its quota of open streams on this instance.
    #[error("too many open streams for this subject; close one or retry later")]
    TooManyStreams {
        /// When to try again.
        retry_after: Duration,
    },
    /// This instance holds all the streams it may; another may have room.
    #[error("this instance holds all the streams it may; retry shortly")]
    AtCapacity {
        /// When to try again.
        retry_after: Duration,
    },
    /// The `Idempotency-Key` was already used with another body.
    #[error("{0}")]
    IdempotencyKeyReused(String),
    /// A request with the same `Idempotency-Key` is still being published.
    #[error("a request with this Idempotency-Key is still being published; retry shortly")]
    IdempotencyKeyInProgress {
        /// When to try again.
        retry_after: Duration,
    },
    /// The ticket is unknown, used, expired or not a ticket at all.
    #[error("the ticket is invalid, expired or already used; fetch a new one from POST /sse-token")]
    InvalidTicket,
    /// The request's body did not arrive within the request timeout.
    #[error("the request's body took too long to arrive")]
    RequestTimeout,
    /// A backend is down or full; the cause is logged, not shown.
    #[error("the service is temporarily unavailable; retry shortly")]
    Unavailable(String),
    /// No such route.
    #[error("no such endpoint")]
    NotFound,
    /// The route exists, with other methods: these.
    #[error("this method is not allowed on this endpoint")]
    MethodNotAllowed(&'static [&'static str]),
}

impl ApiError {
    /// The contract's snake_case error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken | Self::MissingCredential(_) => "missing_token",
            Self::InvalidToken(_) => "invalid_token",
            Self::TokenExpired => "token_expired",
            Self::TokenRevoked => "token_revoked",
            Self::Forbidden => "forbidden",
            Self::ForbiddenTopic(_) => "forbidden_topic",
            Self::InvalidTopic(_) => "invalid_topic",
            Self::InvalidBody(_) => "invalid_body",
            Self::InvalidQuery(_) => "invalid_query",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::TooManyTickets { .. } => "too_many_tickets",
            Self::TooManyStreams { .. } => "too_many_streams",
            Self::AtCapacity { .. } | Self::IdempotencyKeyInProgress { .. } => "unavailable",
            Self::IdempotencyKeyReused(_) => "idempotency_key_reused",
            Self::InvalidTicket => "invalid_ticket",
            Self::RequestTimeout => "request_timeout",
            Self::Unavailable(_) => "unavailable",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
        }
    }

    fn is_bearer_failure(&self) -> bool {
        matches!(
            self,
            Self::MissingToken
                | Self::MissingCredential(_)
                | Self::InvalidToken(_)
                | Self::TokenExpired
                | Self::TokenRevoked
        )
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MissingToken
            | Self::MissingCredential(_)
            | Self::InvalidToken(_)
            | Self::TokenExpired
            | Self::TokenRevoked
            | Self::InvalidTicket => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::ForbiddenTopic(_) => StatusCode::FORBIDDEN,
            Self::InvalidTopic(_) | Self::InvalidBody(_) | Self::InvalidQuery(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyTickets { .. } | Self::TooManyStreams { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::IdempotencyKeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_)
            | Self::AtCapacity { .. }
            | Self::IdempotencyKeyInProgress { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = self.response_head();
        if self.is_bearer_failure() {
            response.insert_header((header::WWW_AUTHENTICATE, BEARER_CHALLENGE));
        }
        response.json(Body {
            error: self.code(),
            message: self.to_string(),
        })
    }
}

impl ApiError {
    /// The status and headers of the answer, whatever shape its body takes;
    /// logs the cause of a 503.
    fn response_head(&self) -> HttpResponseBuilder {
        if let Self::Unavailable(cause) = self {
            tracing::error!(%cause, "answering 503");
        }
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header(CacheControl(vec![CacheDirective::NoStore]));
        if let Self::MethodNotAllowed(allowed) = self {
            response.insert_header((header::ALLOW, allowed.join(", ")));
        }
        if let Self::TooManyTickets { retry_after }
        | Self::TooManyStreams { retry_after }
        | Self::AtCapacity { retry_after }
        | Self::IdempotencyKeyInProgress { retry_after } = self
        {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response.insert_header((header::RETRY_AFTER, secs.max(1)));
        }
        response
    }
}

/// An error of the token exchange (the RFC 8693 form of `POST /sse-token`),
/// answered in the shape of RFC 6749 §5.2:
/// `{"error": "<code>", "error_description": "<sentence>"}`.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// A parameter is missing, repeated or has a value this server does not take.
    #[error("{0}")]
    InvalidRequest(String),
    /// `grant_type` is not token exchange.
    #[error("grant_type must be urn:ietf:params:oauth:grant-type:token-exchange")]
    UnsupportedGrantType,
    /// The subject token is invalid, expired or revoked.
    #[error("{0}")]
    InvalidGrant(String),
    /// A topic of `scope` is malformed or not permitted to the subject token.
    #[error("{0}")]
    InvalidScope(String),
    /// Any other failure (`429`, `503`, `408`, `413`), with its code.
    #[error(transparent)]
    Api(ApiError),
}

impl OAuthError {
    /// The RFC 6749 error code, or the contract's code for any other failure.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::InvalidScope(_) => "invalid_scope",
            Self::Api(e) => e.code(),
        }
    }
}

#[derive(Serialize)]
struct OAuthBody<'a> {
    error: &'a str,
    error_description: String,
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Api(e) => e.status_code(),
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = match self {
            Self::Api(e) => e.response_head(),
            _ => HttpResponse::build(self.status_code()),
        };
        response
            .insert_header(CacheControl(vec![CacheDirective::NoStore]))
            .insert_header((header::PRAGMA, "no-cache"))
            .json(OAuthBody {
                error: self.code(),
                error_description: self.to_string(),
            })
    }
}

impl ApiError {
    /// A backend failed: `error` and its causes, one after another, for the
    /// log line of the 503 (the client sees none of it).
    pub fn unavailable(error: &dyn std::error::Error) -> Self {
        Self::Unavailable(crate::telemetry::error_chain(error))
    }
}
