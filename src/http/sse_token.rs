//! `POST /sse-token`: trade a bearer token for a single-use ticket.

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::web::{Bytes, Data};
use actix_web::{HttpResponse, HttpResponseBuilder};
use chrono::SecondsFormat;
use serde::Serialize;

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

pub(crate) async fn issue(
    hub: Data<Hub>,
    Bearer(claims): Bearer,
    ClientInfo(client): ClientInfo,
    raw: Result<Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let request = body::json(raw)?.unwrap_or_default();
    let ticket = hub.issue_ticket(&claims, request, &client).await?;
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
