//! `/demo/`: the browser demo page and the client module, served by
//! `serve --dev` only, with the dev tokens filled in. Anywhere else these
//! routes answer 404, so no token is ever served by a production server.

use actix_web::HttpResponse;
use actix_web::web::Data;

use super::error::ApiError;
use crate::hub::Hub;

/// The demo page, as in `clients/js/demo/index.html`.
const PAGE: &str = include_str!("../../clients/js/demo/index.html");
/// The client module, as in `clients/js/sse-ticket.js`.
const CLIENT: &str = include_str!("../../clients/js/sse-ticket.js");

/// `/demo` without the slash: the page's relative `./sse-ticket.js` needs it.
pub(crate) async fn redirect(hub: Data<Hub>) -> Result<HttpResponse, ApiError> {
    hub.dev_tokens().ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/demo/"))
        .finish())
}

pub(crate) async fn page(hub: Data<Hub>) -> Result<HttpResponse, ApiError> {
    let tokens = hub.dev_tokens().ok_or(ApiError::NotFound)?;
    let page = PAGE
        .replace("__SSE_TICKET_SUB_TOKEN__", &tokens.subscriber)
        .replace("__SSE_TICKET_PUB_TOKEN__", &tokens.publisher);
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(page))
}

pub(crate) async fn client(hub: Data<Hub>) -> Result<HttpResponse, ApiError> {
    hub.dev_tokens().ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(CLIENT))
}
