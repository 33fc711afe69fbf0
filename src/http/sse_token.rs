//! `POST /sse-token`: trade a bearer token for a single-use ticket.

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::web::{Bytes, Data};
use actix_web::{HttpResponse, HttpResponseBuilder};
use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};

use super::bearer::{Bearer, ClientInfo};
use super::body;
use super::error::ApiError;
use crate::auth::TopicPattern;
use crate::hub::Hub;

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

pub(crate) async fn issue(
    hub: Data<Hub>,
    Bearer(claims): Bearer,
    ClientInfo(client): ClientInfo,
    raw: Result<Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let request: TicketRequest = body::json(raw)?.unwrap_or_default();
    let ticket = hub
        .issue_ticket(&claims, request.patterns()?, &client)
        .await?;
    let id = ticket.id().to_string();
    Ok(HttpResponseBuilder::new(actix_web::http::StatusCode::OK)
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .json(TicketResponse {
            stream_url: format!("/stream?token={id}"),
            ticket: id,
            expires_in: (ticket.expires_at() - ticket.issued_at()).num_seconds(),
            expires_at: ticket
                .expires_at()
                .to_rfc3339_opts(SecondsFormat::Secs, true),
            topics: ticket.topics(),
        }))
}
