//! One access-log line and one latency sample per request. The URI is logged
//! with `token=` redacted; the latency label is the route pattern.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::Data;

use crate::hub::Hub;
use crate::metrics::RequestLabels;
use crate::telemetry::redact;

/// Logs the request and records its latency until the response head.
pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    // Only a query string can carry a ticket.
    let uri = if req.query_string().is_empty() {
        req.path().to_owned()
    } else {
        redact(&req.uri().to_string()).into_owned()
    };
    let peer = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let hub = req.app_data::<Data<Hub>>().cloned();
    let response = next.call(req).await?;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    if let Some(hub) = hub {
        hub.metrics()
            .request_duration
            .get_or_create(&RequestLabels {
                method: method_label(&method).to_owned(),
                route,
                status,
            })
            .observe(elapsed.as_secs_f64());
    }
    tracing::info!(
        target: "sse_ticket::access",
        %method,
        %uri,
        status,
        micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        %peer,
        "request"
    );
    Ok(response)
}

/// The method as a label with a bounded set of values.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}
