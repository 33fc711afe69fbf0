//! A local identity provider: a JWKS endpoint whose key set a test swaps,
//! and redirects to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{App, HttpResponse, HttpServer, web};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey};
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::ec_key;

/// A local identity provider's JWKS endpoint whose key set the test swaps.
pub(super) struct JwksServer {
    pub(super) url: reqwest::Url,
    /// What `GET` answers: the set, or 503 while it is `null`.
    set: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    handle: actix_web::dev::ServerHandle,
}

impl JwksServer {
    /// Serves EC P-256 keys given as `(kid, private key fixture)`.
    pub(super) async fn start(keys: &[(&str, &str)]) -> Self {
        Self::serving(ec_jwk_set(keys)).await
    }

    /// Serves `set` as it is (`null`: answers 503).
    pub(super) async fn serving(set: Value) -> Self {
        let set = Arc::new(Mutex::new(set));
        let fetches = Arc::new(AtomicUsize::new(0));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the JWKS server");
        let addr = listener.local_addr().expect("JWKS address");
        let (served, counted) = (set.clone(), fetches.clone());
        let server = HttpServer::new(move || {
            let (served, counted) = (served.clone(), counted.clone());
            App::new().route(
                "/.well-known/jwks.json",
                web::get().to(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = served.lock().clone();
                    async move {
                        if body.is_null() {
                            HttpResponse::ServiceUnavailable().finish()
                        } else {
                            HttpResponse::Ok().json(body)
                        }
                    }
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
            url: format!("http://{addr}/.well-known/jwks.json")
                .parse()
                .expect("URL"),
            set,
            fetches,
            handle,
        }
    }

    /// Publishes these EC keys instead.
    pub(super) fn rotate(&self, keys: &[(&str, &str)]) {
        self.publish(ec_jwk_set(keys));
    }

    /// Serves `set` from now on (`null`: answers 503).
    fn publish(&self, set: Value) {
        *self.set.lock() = set;
    }

    pub(super) fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    pub(super) async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

/// The public JWK of a private key, with `kid`, naming `alg` (or no `alg`).
pub(super) fn jwk(key: &EncodingKey, alg: Algorithm, named: bool, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(key, alg).expect("JWK");
    jwk.common.key_id = Some(kid.to_owned());
    if !named {
        jwk.common.key_algorithm = None;
    }
    serde_json::to_value(jwk).expect("JWK JSON")
}

/// A JWK set of `(kid, private key fixture)` EC P-256 keys.
fn ec_jwk_set(keys: &[(&str, &str)]) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, private)| jwk(&ec_key(private), Algorithm::ES256, true, kid))
        .collect();
    // Round-trip through the library's type: the set is what it would publish.
    let set: JwkSet = serde_json::from_value(json!({ "keys": keys })).expect("a JWK set");
    serde_json::to_value(set).expect("JWKS JSON")
}

/// An endpoint that answers every `GET` with a redirect to `location`.
pub(super) async fn redirecting_to(
    location: String,
) -> (reqwest::Url, actix_web::dev::ServerHandle) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the redirect");
    let addr = listener.local_addr().expect("address");
    let server = HttpServer::new(move || {
        let location = location.clone();
        App::new().default_service(web::to(move || {
            let location = location.clone();
            async move {
                HttpResponse::Found()
                    .insert_header(("location", location))
                    .finish()
            }
        }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    let url = format!("http://{addr}/jwks").parse().expect("URL");
    (url, handle)
}
