//! One access-log line and one latency sample per request. The URI is logged
//! with every credential parameter (`token=`, however encoded) redacted; the
//! latency label is the route pattern.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::Data;

use super::bearer::client_ip;
use crate::hub::Hub;
use crate::metrics::RequestLabels;
use crate::telemetry::{redact, redact_query};

/// Logs the request and records its latency until the response head.
pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let hub = req.app_data::<Data<Hub>>().cloned();
    let response = next.call(req).await?;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let request = response.request();
    if let Some(hub) = hub {
        hub.metrics()
            .request_duration
            .get_or_create(&RequestLabels {
                method: method_label(request.method()).to_owned(),
                route: request
                    .match_pattern()
                    .unwrap_or_else(|| "unmatched".to_owned()),
                status,
            })
            .observe(elapsed.as_secs_f64());
    }
    // The line is built only when it is logged: the redaction costs a regex pass.
    if tracing::enabled!(target: "sse_ticket::access", tracing::Level::INFO) {
        // Only a query string can carry a ticket. Its keys are decoded as the
        // server decodes them (`%74oken=` is `token=`); the regex is a second net.
        let query = request.query_string();
        let uri = if query.is_empty() {
            request.path().to_owned()
        } else {
            let uri = format!("{}?{}", request.path(), redact_query(query));
            redact(&uri).into_owned()
        };
        // The same client IP as the audit trail's; the peer is the last hop
        // (a trusted proxy, or the client itself).
        let client = client_ip(request)
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        let peer = request
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        tracing::info!(
            target: "sse_ticket::access",
            method = %request.method(),
            %uri,
            status,
            micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            %client,
            %peer,
            "request"
        );
    }
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
