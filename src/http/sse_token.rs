//! `POST /sse-token`: trade a bearer token for a single-use ticket.

use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::web::{self, Bytes, Data};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, HttpResponseBuilder};
use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};

use super::bearer::{Bearer, ClientInfo};
use super::body;
use super::error::{ApiError, OAuthError};
use super::token_exchange;
use crate::audit::Client;
use crate::auth::TopicPattern;
use crate::hub::Hub;
use crate::ticket::Ticket;

#[derive(Serialize)]
struct TicketResponse<'a> {
    ticket: String,
    expires_in: i64,
    expires_at: String,
    stream_url: String,
    topics: &'a [TopicPattern],
}

/// Body of `POST /sse-token`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketRequest {
    /// Topics and patterns to receive; empty means `user/<sub>`.
    #[serde(default)]
    topics: Vec<String>,
}

impl TicketRequest {
    /// The topics, parsed.
    fn patterns(self) -> Result<Vec<TopicPattern>, ApiError> {
        self.topics
            .iter()
            .map(|raw| {
                TopicPattern::parse(raw).map_err(|e| {
                    ApiError::InvalidTopic(format!("{raw:?} is not a topic or pattern: {e}"))
                })
            })
            .collect()
    }
}

/// `POST /sse-token`: the JSON form, or — for a body sent as
/// `application/x-www-form-urlencoded` — the RFC 8693 token exchange
/// ([`super::token_exchange`]). A form-typed body that is empty or begins with
/// `{` is the JSON form: curl's `-d '{…}'` sends JSON under that type.
pub(crate) async fn issue(
    req: HttpRequest,
    hub: Data<Hub>,
    ClientInfo(client): ClientInfo,
    payload: web::Payload,
) -> actix_web::Result<HttpResponse> {
    let mut payload = payload.into_inner();
    if !req
        .content_type()
        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    {
        // The credential is checked before the body is read.
        let bearer = Bearer::or_session(&req).await?;
        let raw = body::bytes(Bytes::from_request(&req, &mut payload).await)?;
        return Ok(issue_json(&hub, bearer, raw, &client).await?);
    }
    let raw = Bytes::from_request(&req, &mut payload).await;
    let raw = body::bytes(raw).map_err(OAuthError::from)?;
    if body::shape(&raw) == body::Shape::Other {
        return Ok(token_exchange::exchange(&hub, &raw, &client).await?);
    }
    // Typed as a form, so never by cookies alone; the message says how.
    let bearer = Bearer::or_session(&req).await?;
    Ok(issue_json(&hub, bearer, raw, &client).await?)
}

/// The JSON form: a ticket for the bearer's `topics`.
async fn issue_json(
    hub: &Hub,
    Bearer(claims): Bearer,
    raw: Bytes,
    client: &Client,
) -> Result<HttpResponse, ApiError> {
    let request: TicketRequest = body::parse_json(raw)?.unwrap_or_default();
    let ticket = hub
        .issue_ticket(&claims, request.patterns()?, client)
        .await?;
    let id = ticket.id().to_string();
    Ok(HttpResponseBuilder::new(actix_web::http::StatusCode::OK)
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(TicketResponse {
            stream_url: stream_url(&id),
            ticket: id,
            expires_in: lifetime(&ticket),
            expires_at: ticket
                .expires_at()
                .to_rfc3339_opts(SecondsFormat::Secs, true),
            topics: ticket.topics(),
        }))
}

/// Where the ticket `id` opens its stream.
pub(super) fn stream_url(id: &str) -> String {
    format!("/stream?token={id}")
}

/// The ticket's lifetime in whole seconds.
pub(super) fn lifetime(ticket: &Ticket) -> i64 {
    (ticket.expires_at() - ticket.issued_at()).num_seconds()
}
