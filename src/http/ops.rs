//! Operations endpoints: liveness, readiness, metrics and the API spec.

use actix_web::HttpResponse;
use actix_web::web::Data;
use serde_json::json;

use crate::hub::Hub;

/// The spec, byte for byte the repository's `openapi.yaml`.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub(crate) async fn readyz(hub: Data<Hub>) -> HttpResponse {
    let checks = hub.readiness().await;
    let failing: Vec<_> = checks
        .iter()
        .filter_map(|(name, state)| state.as_ref().err().map(|why| (*name, why)))
        .collect();
    let backends: serde_json::Map<_, _> = checks
        .iter()
        .map(|(name, state)| {
            (
                (*name).to_owned(),
                json!(if state.is_ok() { "ok" } else { "unavailable" }),
            )
        })
        .collect();
    match failing.first() {
        None => HttpResponse::Ok().json(json!({ "status": "ready", "backends": backends })),
        Some((name, why)) => {
            tracing::warn!(backend = name, reason = %why, "not ready");
            HttpResponse::ServiceUnavailable().json(json!({
                "error": "unavailable",
                "message": format!("the {name} backend is not available"),
                "backends": backends,
            }))
        }
    }
}

pub(crate) async fn metrics(hub: Data<Hub>) -> HttpResponse {
    hub.refresh_gauges().await;
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(hub.metrics().render())
}

pub(crate) async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/yaml")
        .body(OPENAPI_YAML)
}
