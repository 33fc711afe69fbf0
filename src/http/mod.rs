//! The HTTP surface: one file per endpoint, the route table, and the
//! middleware every request passes through.

mod access_log;
mod admin;
mod bearer;
mod body;
mod deadline;
mod demo;
mod docs;
pub mod error;
mod ops;
mod publish;
mod sse_token;
mod stream;
mod token_exchange;
mod topics;

use actix_cors::Cors;
use actix_web::http::{Method, header};
use actix_web::middleware::Condition;
use actix_web::web;

pub use access_log::access_log;
pub use deadline::{RequestTimeout, body_deadline};
use error::ApiError;

/// Largest request body accepted, in bytes: an event's data limit plus room
/// for the envelope.
pub const MAX_BODY: usize = crate::hub::MAX_EVENT_DATA * 2 + 4096;

/// Declares every route once: the table [`ROUTES`] (checked against
/// `openapi.yaml` by the tests) and their registration come from one list.
macro_rules! routes {
    ($($path:literal cors=$cors:literal { $($method:ident => $handler:path),+ $(,)? })*) => {
        /// Every `(method, path)` the server answers, in OpenAPI path syntax.
        pub const ROUTES: &[(&str, &str)] = &[$($((stringify!($method), $path),)+)*];

        /// Registers every route, with CORS for `origins` where a browser page
        /// needs it (`credentials`: pages may send their cookies).
        pub fn configure(origins: &[String], credentials: bool) -> impl FnOnce(&mut web::ServiceConfig) + '_ {
            move |cfg| {
                $(
                    cfg.service(
                        web::resource($path)
                            $(.route(web::method(Method::$method).to($handler)))+
                            .default_service(web::to(|| async {
                                Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed(&[$(stringify!($method)),+]))
                            }))
                            .wrap(Condition::new($cors && !origins.is_empty(), cors(origins, credentials))),
                    );
                )*
                cfg.default_service(web::to(not_found));
            }
        }
    };
}

routes! {
    "/sse-token" cors=true { POST => sse_token::issue }
    "/.well-known/oauth-authorization-server" cors=true { GET => token_exchange::metadata }
    "/stream" cors=true { GET => stream::open }
    "/publish" cors=true { POST => publish::publish }
    "/healthz" cors=false { GET => ops::healthz }
    "/readyz" cors=false { GET => ops::readyz }
    "/metrics" cors=false { GET => ops::metrics }
    "/openapi.yaml" cors=false { GET => ops::openapi }
    "/docs" cors=false { GET => docs::page }
    "/docs/redoc.standalone.js" cors=false { GET => docs::redoc }
    "/admin/revoke" cors=false { POST => admin::revoke, DELETE => admin::lift_jti }
    "/admin/revocations" cors=false { GET => admin::revocations }
    "/admin/revoke/{sub}" cors=false { DELETE => admin::lift }
    "/admin/audit" cors=false { GET => admin::audit }
    "/admin/topics" cors=false { GET => topics::streams }
    "/demo" cors=false { GET => demo::redirect }
    "/demo/" cors=false { GET => demo::page }
    "/demo/sse-ticket.js" cors=false { GET => demo::client }
}

/// CORS for browser pages on `origins`: the `Authorization` header may be sent
/// (after a preflight) and the stream may be read cross-origin. With
/// `credentials` (the auth webhook forwards cookies), those pages may send
/// their cookies too (`Access-Control-Allow-Credentials: true`); start-up
/// refuses that together with any origin (`*`).
fn cors(origins: &[String], credentials: bool) -> Cors {
    // A request from another origin is served without CORS headers (so the
    // browser withholds the answer) rather than answered with a non-JSON 400.
    let cors = Cors::default()
        .block_on_origin_mismatch(false)
        .allowed_methods([Method::GET, Method::POST])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("last-event-id"),
            header::HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([
            header::RETRY_AFTER,
            header::HeaderName::from_static("idempotent-replayed"),
        ])
        .max_age(3600);
    let cors = if credentials {
        cors.supports_credentials()
    } else {
        cors
    };
    if origins.iter().any(|o| o == "*") {
        return cors.allow_any_origin();
    }
    origins
        .iter()
        .fold(cors, |cors, origin| cors.allowed_origin(origin))
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
