//! A local auth webhook: it accepts the bearer tokens and session cookies a
//! test tells it, refuses the rest, and records every question it receives.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sse_ticket::Config;
use sse_ticket::auth::{KeySource, WebhookSettings};

/// A webhook on 127.0.0.1 answering `POST /auth`.
pub struct AuthHook {
    pub url: reqwest::Url,
    state: Arc<Mutex<HookState>>,
    handle: actix_web::dev::ServerHandle,
}

#[derive(Default)]
struct HookState {
    /// `Bearer <token>` or `session=<value>` → the status and body answered.
    answers: HashMap<String, (u16, Value)>,
    /// Answered to every question instead, when set: status and raw body.
    fixed: Option<(u16, String)>,
    /// Waited before answering.
    delay: Option<Duration>,
    /// Every question: its JSON body and its `Content-Type`.
    received: Vec<(Value, String)>,
}

/// The claims a webhook answers for `sub`: valid for an hour, with `sse`.
pub fn hook_claims(sub: &str, sse: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({ "sub": sub, "exp": now + 3600, "iat": now, "sse": sse })
}

impl AuthHook {
    /// Starts a webhook that refuses everything (401) until told otherwise.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(HookState::default()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the webhook");
        let addr = listener.local_addr().expect("webhook address");
        let shared = state.clone();
        let server = HttpServer::new(move || {
            let shared = shared.clone();
            App::new().route(
                "/auth",
                web::post().to(move |req: HttpRequest, body: web::Bytes| {
                    answer(shared.clone(), req, body)
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url: format!("http://{addr}/auth").parse().expect("URL"),
            state,
            handle,
        }
    }

    /// Accepts `Authorization: Bearer <token>` with `claims`.
    pub fn accept_bearer(&self, token: &str, claims: Value) {
        self.answer(format!("Bearer {token}"), 200, claims);
    }

    /// Accepts the cookie `session=<value>` with `claims`.
    pub fn accept_session(&self, value: &str, claims: Value) {
        self.answer(format!("session={value}"), 200, claims);
    }

    /// Answers `status` (and an empty object) to `Authorization: Bearer <token>`.
    pub fn refuse_bearer(&self, token: &str, status: u16) {
        self.answer(format!("Bearer {token}"), status, json!({}));
    }

    fn answer(&self, key: String, status: u16, body: Value) {
        self.state.lock().answers.insert(key, (status, body));
    }

    /// Answers every question with `status` and the raw `body` from now on.
    pub fn always(&self, status: u16, body: &str) {
        self.state.lock().fixed = Some((status, body.to_owned()));
    }

    /// Waits `delay` before every answer from now on.
    pub fn delay(&self, delay: Duration) {
        self.state.lock().delay = Some(delay);
    }

    /// Every question received so far (JSON bodies).
    pub fn received(&self) -> Vec<Value> {
        self.state
            .lock()
            .received
            .iter()
            .map(|(v, _)| v.clone())
            .collect()
    }

    /// The `Content-Type` of every question received so far.
    pub fn content_types(&self) -> Vec<String> {
        self.state
            .lock()
            .received
            .iter()
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// The key source that asks this webhook.
    pub fn key_source(&self, forward_cookies: bool) -> KeySource {
        KeySource::AuthWebhook(WebhookSettings {
            url: self.url.clone(),
            forward_cookies,
        })
    }

    /// Sets `config` to ask this webhook.
    pub fn configure(&self, config: &mut Config, forward_cookies: bool) {
        config.keys = self.key_source(forward_cookies);
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

async fn answer(state: Arc<Mutex<HookState>>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let question: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (delay, reply) = {
        let mut state = state.lock();
        state.received.push((question.clone(), content_type));
        let reply = match &state.fixed {
            Some((status, body)) => (*status, body.clone()),
            None => decide(&state.answers, &question),
        };
        (state.delay, reply)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let status = actix_web::http::StatusCode::from_u16(reply.0).expect("status");
    HttpResponse::build(status)
        .content_type("application/json")
        .body(reply.1)
}

/// The answer to `question`: by its bearer token first, then by its session
/// cookie, else 401.
fn decide(answers: &HashMap<String, (u16, Value)>, question: &Value) -> (u16, String) {
    let by_bearer = question["authorization"]
        .as_str()
        .and_then(|a| answers.get(a));
    let by_cookie = || {
        question["cookie"].as_str().and_then(|cookie| {
            cookie
                .split(';')
                .map(str::trim)
                .find_map(|pair| answers.get(pair))
        })
    };
    match by_bearer.or_else(by_cookie) {
        Some((status, body)) => (*status, body.to_string()),
        None => (401, "{}".into()),
    }
}
