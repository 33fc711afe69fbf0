//! `GET /stream?token=<ticket>`: redeem a ticket and stream its topics' events.
//!
//! The handler reads the ticket and the resume point, has the hub open the
//! stream, and answers with the frames [`crate::subscriber`] makes of it.

use actix_http::sse_ticket_patch::StreamWriteTimeout;
use actix_web::web::{Data, Query};
use actix_web::{HttpRequest, HttpResponse, Responder as _};
use actix_web_lab::sse;
use serde::Deserialize;

use super::bearer::ClientInfo;
use super::error::ApiError;
use crate::hub::Hub;
use crate::subscriber;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StreamQuery {
    token: Option<String>,
    last_event_id: Option<String>,
}

pub(crate) async fn open(
    hub: Data<Hub>,
    req: HttpRequest,
    ClientInfo(client): ClientInfo,
    query: Result<Query<StreamQuery>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let query = query.ok().map(Query::into_inner);
    let (token, from_query) = query.map_or((None, None), |q| (q.token, q.last_event_id));
    // The header is what a browser's own reconnect sends; the parameter is
    // how a new EventSource asks.
    let last_event_id = match req.headers().get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::InvalidQuery("Last-Event-ID is not text".into()))?
                .to_owned(),
        ),
        None => from_query,
    }
    .filter(|id| !id.trim().is_empty());
    // Parsed before the ticket is presented, so that a malformed id spends
    // no ticket.
    let resume_after = last_event_id
        .map(|raw| {
            uuid::Uuid::try_parse(raw.trim()).map_err(|_| {
                ApiError::InvalidQuery(
                    "Last-Event-ID / lastEventId must be an event id (a UUID)".into(),
                )
            })
        })
        .transpose()?;
    let opened = hub
        .open_stream(token.as_deref(), resume_after, &client)
        .await?;
    let settings = hub.stream_settings();
    let events = subscriber::frames(&hub, opened);
    let mut response = sse::Sse::from_infallible_stream(events)
        .with_retry_duration(settings.retry)
        .customize()
        .insert_header(("X-Accel-Buffering", "no"))
        .respond_to(&req)
        .map_into_boxed_body();
    // Over HTTP/2 a client can stop taking one stream's bytes and keep the
    // connection: the HTTP layer resets such a stream after the write timeout.
    // (Over HTTP/1.1 the kernel drops the whole connection: TCP_USER_TIMEOUT.)
    if req.version() == actix_web::http::Version::HTTP_2 {
        response
            .extensions_mut()
            .insert(StreamWriteTimeout(settings.write_timeout));
    }
    Ok(response)
}
