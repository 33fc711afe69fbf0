//! Opaque bearer tokens checked at an RFC 7662 introspection endpoint (the
//! local one in [`IntrospectionServer`]): what is accepted and refused
//! ([`flow`]), the answer cache and revocations over it ([`cache`]), an
//! endpoint that is down, slow or failing and the circuit breaker
//! ([`outage`]), and the settings and logs of the binary ([`process`]).

mod cache;
mod flow;
mod outage;
mod process;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use parking_lot::Mutex;
use secrecy::SecretString;
use serde_json::{Value, json};
use sse_ticket::auth::{IntrospectionSettings, KeySource};
use sse_ticket::clock::Clock as _;

use crate::helpers::{TestApp, spawn_app_with};

/// The client credentials the endpoint wants; the secret needs form-encoding.
pub const CLIENT_ID: &str = "sse ticket";
pub const CLIENT_SECRET: &str = "s3cret:with/odd&chars";
/// The opaque token the endpoint answers as an admin's.
pub const ADMIN_TOKEN: &str = "opaque-admin-token";

/// How the endpoint answers every request for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// By its table of tokens (unknown ones inactive).
    Normal,
    /// With this status and an empty body.
    Status(u16),
    /// After this delay, then normally.
    Slow(Duration),
    /// `200` with a body that is not JSON.
    NotJson,
}

/// What the endpoint saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub form: HashMap<String, String>,
    pub cookie: Option<String>,
    pub content_type: String,
}

#[derive(Debug)]
struct State {
    answers: Mutex<HashMap<String, Value>>,
    mode: Mutex<Mode>,
    seen: Mutex<Vec<Seen>>,
    calls: AtomicUsize,
}

/// A local RFC 7662 endpoint: checks the HTTP Basic client credentials
/// (wrong ones: `401`), answers tokens from a table, counts its calls.
pub struct IntrospectionServer {
    pub url: reqwest::Url,
    state: Arc<State>,
    handle: actix_web::dev::ServerHandle,
}

async fn introspect(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(ToOwned::to_owned)
    };
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    state.seen.lock().push(Seen {
        form: form.clone(),
        cookie: header("cookie"),
        content_type: header("content-type").unwrap_or_default(),
    });
    let mode = *state.mode.lock();
    match mode {
        Mode::Status(status) => {
            let status = actix_web::http::StatusCode::from_u16(status).expect("a status");
            return HttpResponse::build(status).finish();
        }
        Mode::NotJson => return HttpResponse::Ok().body("<html>sign in</html>"),
        Mode::Slow(delay) => tokio::time::sleep(delay).await,
        Mode::Normal => {}
    }
    if header("authorization") != Some(expected_basic()) {
        return HttpResponse::Unauthorized().json(json!({ "error": "invalid_client" }));
    }
    let answer = form
        .get("token")
        .and_then(|token| state.answers.lock().get(token).cloned())
        .unwrap_or_else(|| json!({ "active": false }));
    HttpResponse::Ok().json(answer)
}

/// `Basic` of the form-encoded id and secret, written out by hand.
fn expected_basic() -> String {
    use base64::Engine as _;
    // "sse ticket" and "s3cret:with/odd&chars", form-encoded (RFC 6749 §2.3.1).
    let pair = "sse+ticket:s3cret%3Awith%2Fodd%26chars";
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

impl IntrospectionServer {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    /// Listens on `addr` (to come back where a stopped one was).
    pub async fn start_on(addr: &str) -> Self {
        let state = Arc::new(State {
            answers: Mutex::new(HashMap::new()),
            mode: Mutex::new(Mode::Normal),
            seen: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
        });
        let listener = std::net::TcpListener::bind(addr).expect("bind the endpoint");
        let addr = listener.local_addr().expect("address");
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/oauth2/introspect", web::post().to(introspect))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url: format!("http://{addr}/oauth2/introspect")
                .parse()
                .expect("URL"),
            state,
            handle,
        }
    }

    /// The verifier settings that use this endpoint, with its credentials.
    pub fn settings(&self) -> IntrospectionSettings {
        IntrospectionSettings {
            url: self.url.clone(),
            client_id: Some(CLIENT_ID.into()),
            client_secret: Some(SecretString::from(CLIENT_SECRET)),
        }
    }

    /// Answers `answer` for `token` from now on.
    pub fn answer(&self, token: &str, answer: Value) {
        self.state.answers.lock().insert(token.into(), answer);
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock() = mode;
    }

    /// Requests received so far.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().clone()
    }

    /// Requests received so far that asked about `token`.
    pub fn calls_for(&self, token: &str) -> usize {
        self.state
            .seen
            .lock()
            .iter()
            .filter(|seen| seen.form.get("token").map(String::as_str) == Some(token))
            .count()
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

/// A server verifying with `idp`, answers kept `cache_ttl`; `idp` knows
/// [`ADMIN_TOKEN`].
pub async fn spawn_with(idp: &IntrospectionServer, cache_ttl: Duration) -> TestApp {
    let settings = idp.settings();
    let app = spawn_app_with(|config| {
        config.keys = KeySource::Introspection(settings);
        config.verifier.cache_ttl = cache_ttl;
    })
    .await;
    let now = app.clock.now().timestamp();
    idp.answer(
        ADMIN_TOKEN,
        json!({ "active": true, "sub": "ops", "exp": now + 86_400, "sse": { "admin": true } }),
    );
    app
}

/// An active answer for `sub`: issued 10 s ago on the server's clock,
/// expiring in `ttl_secs`, with `sse` permissions.
pub fn active(app: &TestApp, sub: &str, ttl_secs: i64, sse: Value) -> Value {
    let now = app.clock.now().timestamp();
    json!({
        "active": true,
        "sub": sub,
        "iat": now - 10,
        "exp": now + ttl_secs,
        "sse": sse,
        "client_id": "web-app",
        "token_type": "Bearer",
    })
}

/// `POST /admin/revoke` with `body`, as the admin; asserts `200`.
pub async fn revoke(app: &TestApp, body: Value) {
    let response = app
        .client
        .post(app.url("/admin/revoke"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("POST /admin/revoke");
    assert_eq!(response.status(), 200, "revoke {body}");
}
