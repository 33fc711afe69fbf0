//! Bearer tokens: what `POST /sse-token` accepts and refuses, for every key
//! source (HMAC secret, PEM public key, JWKS with rotation).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sse_ticket::auth::{KeyError, KeySource};
use sse_ticket::clock::Clock as _;
use sse_ticket::{Config, StartError};

use crate::helpers::{
    PATIENCE, SECRET, TestApp, assert_bearer_error, assert_error, spawn_app, spawn_app_with,
    spawn_config,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const ISSUER: &str = "https://idp.example";
const AUDIENCE: &str = "sse-ticket";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(FIXTURES).join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// The server's "now" as a JWT timestamp.
fn now(app: &TestApp) -> i64 {
    app.clock.now().timestamp()
}

/// Claims valid for an hour on the server's clock.
fn valid_claims(app: &TestApp) -> Value {
    let now = now(app);
    json!({ "sub": "alice", "iat": now, "exp": now + 3600 })
}

/// `claims` without `name`.
fn without(mut claims: Value, name: &str) -> Value {
    claims
        .as_object_mut()
        .expect("claims are an object")
        .remove(name)
        .unwrap_or_else(|| panic!("the claims hold {name}"));
    claims
}

/// `claims` with `name` set to `value`.
fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    encode(header, claims, key).expect("the token is signed")
}

/// An HS256 token signed with the test servers' secret.
fn hs256(claims: &Value) -> String {
    sign(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&read_fixture("rsa_private.pem")).expect("RSA private key")
}

fn ec_key(name: &str) -> EncodingKey {
    EncodingKey::from_ec_pem(&read_fixture(name)).expect("EC private key")
}

fn ed_key() -> EncodingKey {
    EncodingKey::from_ed_pem(&read_fixture("ed25519_private.pem")).expect("Ed25519 private key")
}

fn header(alg: Algorithm, kid: Option<&str>) -> Header {
    let mut header = Header::new(alg);
    header.kid = kid.map(ToOwned::to_owned);
    header
}

/// Unpadded base64url, as JWTs use it.
fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `POST /sse-token` with a raw `Authorization` value.
async fn post_with_authorization(app: &TestApp, authorization: &str) -> reqwest::Response {
    app.client
        .post(app.url("/sse-token"))
        .header("authorization", authorization)
        .send()
        .await
        .expect("POST /sse-token")
}

/// Asserts `bearer` buys a ticket.
async fn assert_accepted(app: &TestApp, bearer: &str, what: &str) {
    let response = app.post_sse_token(Some(bearer), None).await;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{what} should be accepted: {body}");
}

/// Asserts `bearer` is refused with 401 and `code`.
async fn assert_refused(app: &TestApp, bearer: &str, code: &str) -> Value {
    assert_bearer_error(app.post_sse_token(Some(bearer), None).await, code).await
}

async fn spawn_with_issuer_and_audience() -> TestApp {
    spawn_app_with(|config| {
        config.verifier.issuer = Some(ISSUER.into());
        config.verifier.audience = Some(AUDIENCE.into());
    })
    .await
}

async fn spawn_with_public_key(name: &str) -> TestApp {
    let mut config = Config::new(KeySource::PublicKeyPem(fixture(name)));
    config.bind = "127.0.0.1:0".into();
    spawn_config(config).await
}

async fn spawn_with_jwks(url: reqwest::Url) -> TestApp {
    let mut config = Config::new(KeySource::JwksUrl(url));
    config.bind = "127.0.0.1:0".into();
    spawn_config(config).await
}

/// Polls `GET /readyz` until it answers 200, at most [`PATIENCE`].
async fn wait_until_ready(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let response = app
            .client
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("GET /readyz");
        if response.status() == 200 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz still answers {} after {PATIENCE:?}",
            response.status()
        );
        tokio::task::yield_now().await;
    }
}

// ---------------------------------------------------------------------------
// The Authorization header

#[tokio::test]
async fn a_request_without_authorization_is_refused_as_missing_token() {
    let app = spawn_app().await;
    let json = assert_bearer_error(app.post_sse_token(None, None).await, "missing_token").await;
    assert!(
        json["message"]
            .as_str()
            .is_some_and(|m| m.contains("Bearer")),
        "the message says what is expected: {json}"
    );
}

#[tokio::test]
async fn an_authorization_that_is_not_a_bearer_token_is_refused_as_invalid() {
    let app = spawn_app().await;
    let valid = app.token("alice", &[], &[]);
    let (basic, token) = (format!("Basic {valid}"), format!("Token {valid}"));
    for authorization in [
        "Basic abc",
        "Bearer ",
        "Bearer",
        "Token abc",
        &basic,
        &token,
    ] {
        let response = post_with_authorization(&app, authorization).await;
        let json = assert_bearer_error(response, "invalid_token").await;
        assert!(json["message"].is_string(), "{authorization:?}: {json}");
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    let valid = app.token("alice", &[], &[]);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = post_with_authorization(&app, &format!("{scheme} {valid}")).await;
        assert_eq!(response.status(), 200, "scheme {scheme}");
    }
}

#[tokio::test]
async fn a_bearer_value_that_is_not_a_jwt_is_refused_as_invalid() {
    let app = spawn_app().await;
    let valid = app.token("alice", &[], &[]);
    let truncated = valid.rsplit_once('.').expect("three parts").0.to_owned();
    for bearer in ["not-a-jwt", "a.b.c", "....", truncated.as_str()] {
        assert_refused(&app, bearer, "invalid_token").await;
    }
    // The same header with the intact token is accepted: the refusals above
    // are about the values, not the request.
    assert_accepted(&app, &valid, "the intact token").await;
}

// ---------------------------------------------------------------------------
// Signature and algorithm (HMAC secret)

#[tokio::test]
async fn a_token_signed_with_the_server_secret_is_accepted() {
    let app = spawn_app().await;
    assert_accepted(
        &app,
        &hs256(&valid_claims(&app)),
        "an HS256 token with the secret",
    )
    .await;
    let hs512 = sign(
        &Header::new(Algorithm::HS512),
        &valid_claims(&app),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    );
    assert_accepted(&app, &hs512, "an HS512 token with the secret").await;
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_refused() {
    let app = spawn_app().await;
    let forged = sign(
        &Header::new(Algorithm::HS256),
        &valid_claims(&app),
        &EncodingKey::from_secret(b"another-secret-that-is-long-enough-for-hs256"),
    );
    assert_refused(&app, &forged, "invalid_token").await;
}

#[tokio::test]
async fn a_token_whose_claims_were_altered_after_signing_is_refused() {
    let app = spawn_app().await;
    let token = hs256(&valid_claims(&app));
    let parts: Vec<&str> = token.split('.').collect();
    let altered_claims = with(valid_claims(&app), "sub", json!("mallory"));
    let altered = format!(
        "{}.{}.{}",
        parts[0],
        base64url(altered_claims.to_string().as_bytes()),
        parts[2]
    );
    assert_refused(&app, &altered, "invalid_token").await;
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_refused() {
    let app = spawn_app().await;
    let claims = base64url(valid_claims(&app).to_string().as_bytes());
    for alg in ["none", "None", "NONE"] {
        let header = base64url(json!({ "alg": alg, "typ": "JWT" }).to_string().as_bytes());
        assert_refused(&app, &format!("{header}.{claims}."), "invalid_token").await;
    }
    // With the signature of a genuine token kept, `none` still does not pass.
    let genuine = hs256(&valid_claims(&app));
    let signature = genuine.rsplit('.').next().expect("a signature");
    let header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    assert_refused(
        &app,
        &format!("{header}.{claims}.{signature}"),
        "invalid_token",
    )
    .await;
}

// ---------------------------------------------------------------------------
// exp and nbf, against the server's clock with 30 s leeway

#[tokio::test]
async fn a_token_expired_beyond_the_leeway_is_refused_as_expired() {
    let app = spawn_app().await;
    let claims = with(valid_claims(&app), "exp", json!(now(&app) - 31));
    let json = assert_refused(&app, &hs256(&claims), "token_expired").await;
    assert!(
        json["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{json}"
    );
}

#[tokio::test]
async fn a_token_expired_within_the_leeway_is_accepted() {
    let app = spawn_app().await;
    let claims = with(valid_claims(&app), "exp", json!(now(&app) - 10));
    assert_accepted(&app, &hs256(&claims), "a token expired 10 s ago").await;
}

#[tokio::test]
async fn a_token_expires_when_the_server_clock_passes_exp_plus_leeway() {
    let app = spawn_app().await;
    let bearer = app.token_for("alice", &[], &[], Duration::from_secs(60));
    assert_accepted(&app, &bearer, "a fresh token").await;
    app.advance(Duration::from_secs(60 + 29));
    assert_accepted(&app, &bearer, "a token 29 s past its exp").await;
    app.advance(Duration::from_secs(2));
    assert_refused(&app, &bearer, "token_expired").await;
}

#[tokio::test]
async fn a_token_not_valid_before_a_time_beyond_the_leeway_is_refused() {
    let app = spawn_app().await;
    let claims = with(valid_claims(&app), "nbf", json!(now(&app) + 31));
    let bearer = hs256(&claims);
    assert_refused(&app, &bearer, "invalid_token").await;
    // Once the server's clock gets there, the same token is good.
    app.advance(Duration::from_secs(2));
    assert_accepted(&app, &bearer, "the token once nbf is within the leeway").await;
}

#[tokio::test]
async fn a_token_not_valid_before_a_time_within_the_leeway_is_accepted() {
    let app = spawn_app().await;
    let claims = with(valid_claims(&app), "nbf", json!(now(&app) + 10));
    assert_accepted(&app, &hs256(&claims), "a token valid in 10 s").await;
}

#[tokio::test]
async fn a_token_issued_beyond_the_leeway_in_the_future_is_refused() {
    // It would outrun every revocation made before its iat.
    let app = spawn_app().await;
    let claims = with(valid_claims(&app), "iat", json!(now(&app) + 31));
    let body = assert_refused(&app, &hs256(&claims), "invalid_token").await;
    assert!(
        body["message"].as_str().unwrap_or_default().contains("iat"),
        "{body}"
    );
    let skewed = with(valid_claims(&app), "iat", json!(now(&app) + 10));
    assert_accepted(&app, &hs256(&skewed), "an iat within the leeway").await;
}

// ---------------------------------------------------------------------------
// iss and aud, when configured

#[tokio::test]
async fn a_token_with_the_configured_issuer_and_audience_is_accepted() {
    let app = spawn_with_issuer_and_audience().await;
    let claims = with(
        with(valid_claims(&app), "iss", json!(ISSUER)),
        "aud",
        json!(AUDIENCE),
    );
    assert_accepted(&app, &hs256(&claims), "aud as a string").await;
    let claims = with(claims, "aud", json!(["other-service", AUDIENCE]));
    assert_accepted(
        &app,
        &hs256(&claims),
        "aud as an array holding the audience",
    )
    .await;
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let app = spawn_with_issuer_and_audience().await;
    let claims = with(valid_claims(&app), "aud", json!(AUDIENCE));
    for iss in [
        "https://evil.example",
        "https://idp.example/",
        "HTTPS://IDP.EXAMPLE",
    ] {
        let bearer = hs256(&with(claims.clone(), "iss", json!(iss)));
        assert_refused(&app, &bearer, "invalid_token").await;
    }
}

#[tokio::test]
async fn a_token_without_an_issuer_is_refused_when_one_is_configured() {
    let app = spawn_with_issuer_and_audience().await;
    let claims = with(valid_claims(&app), "aud", json!(AUDIENCE));
    assert_refused(&app, &hs256(&claims), "invalid_token").await;
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let app = spawn_with_issuer_and_audience().await;
    let claims = with(valid_claims(&app), "iss", json!(ISSUER));
    for aud in [
        json!("other-service"),
        json!(["other-service", "another"]),
        json!([]),
    ] {
        let bearer = hs256(&with(claims.clone(), "aud", aud.clone()));
        let json = assert_refused(&app, &bearer, "invalid_token").await;
        assert!(json["message"].is_string(), "aud {aud}: {json}");
    }
    // And without any aud at all.
    assert_refused(&app, &hs256(&claims), "invalid_token").await;
}

#[tokio::test]
async fn issuer_and_audience_are_not_required_when_not_configured() {
    let app = spawn_app().await;
    let claims = with(
        with(valid_claims(&app), "iss", json!("https://anyone.example")),
        "aud",
        json!("anything"),
    );
    assert_accepted(&app, &hs256(&claims), "a token with any iss and aud").await;
}

// ---------------------------------------------------------------------------
// Required and well-formed claims

#[tokio::test]
async fn a_token_without_sub_is_refused() {
    let app = spawn_app().await;
    let claims = without(valid_claims(&app), "sub");
    assert_refused(&app, &hs256(&claims), "invalid_token").await;
}

#[tokio::test]
async fn a_token_with_an_empty_sub_is_refused() {
    let app = spawn_app().await;
    let claims = with(valid_claims(&app), "sub", json!(""));
    assert_refused(&app, &hs256(&claims), "invalid_token").await;
}

#[tokio::test]
async fn a_token_without_exp_is_refused() {
    let app = spawn_app().await;
    let claims = without(valid_claims(&app), "exp");
    assert_refused(&app, &hs256(&claims), "invalid_token").await;
}

#[tokio::test]
async fn a_token_with_claims_of_the_wrong_type_is_refused() {
    let app = spawn_app().await;
    let exp = now(&app) + 3600;
    for (name, value) in [
        ("sub", json!(42)),
        ("exp", json!(exp.to_string())),
        ("nbf", json!("yesterday")),
        ("sse", json!("everything")),
    ] {
        let bearer = hs256(&with(valid_claims(&app), name, value.clone()));
        let json = assert_refused(&app, &bearer, "invalid_token").await;
        assert!(json["message"].is_string(), "{name} = {value}: {json}");
    }
}

#[tokio::test]
async fn a_token_with_a_malformed_sse_pattern_is_refused() {
    let app = spawn_app().await;
    for sse in [
        json!({ "subscribe": ["a//b"] }),
        json!({ "publish": ["orders/*/x"] }),
        json!({ "subscribe": ["orders/"] }),
        json!({ "subscribe": ["orders"], "unknown": true }),
    ] {
        let bearer = hs256(&with(valid_claims(&app), "sse", sse.clone()));
        let json = assert_refused(&app, &bearer, "invalid_token").await;
        assert!(json["message"].is_string(), "sse {sse}: {json}");
    }
    // A well-formed claim passes, so the refusals above are about the patterns.
    let sse = json!({ "subscribe": ["orders/*", "a/b"], "publish": ["orders/*"], "admin": false });
    assert_accepted(
        &app,
        &hs256(&with(valid_claims(&app), "sse", sse)),
        "a well-formed sse claim",
    )
    .await;
}

// ---------------------------------------------------------------------------
// PEM public keys

#[tokio::test]
async fn rs256_and_ps256_tokens_are_accepted_with_an_rsa_public_key() {
    let app = spawn_with_public_key("rsa_public.pem").await;
    let claims = valid_claims(&app);
    for alg in [Algorithm::RS256, Algorithm::PS256, Algorithm::RS512] {
        let bearer = sign(&Header::new(alg), &claims, &rsa_key());
        assert_accepted(&app, &bearer, &format!("{alg:?} with the RSA key")).await;
    }
}

#[tokio::test]
async fn an_es256_token_is_accepted_with_an_ec_public_key() {
    let app = spawn_with_public_key("ec_public.pem").await;
    let bearer = sign(
        &Header::new(Algorithm::ES256),
        &valid_claims(&app),
        &ec_key("ec_private.pem"),
    );
    assert_accepted(&app, &bearer, "ES256 with the EC key").await;
}

#[tokio::test]
async fn an_eddsa_token_is_accepted_with_an_ed25519_public_key() {
    let app = spawn_with_public_key("ed25519_public.pem").await;
    let bearer = sign(
        &Header::new(Algorithm::EdDSA),
        &valid_claims(&app),
        &ed_key(),
    );
    assert_accepted(&app, &bearer, "EdDSA with the Ed25519 key").await;
}

#[tokio::test]
async fn an_rs256_token_is_refused_by_a_server_with_an_ec_key() {
    let app = spawn_with_public_key("ec_public.pem").await;
    let bearer = sign(
        &Header::new(Algorithm::RS256),
        &valid_claims(&app),
        &rsa_key(),
    );
    assert_refused(&app, &bearer, "invalid_token").await;
}

#[tokio::test]
async fn a_token_signed_by_another_key_of_the_same_type_is_refused() {
    let app = spawn_with_public_key("ec_public.pem").await;
    let bearer = sign(
        &Header::new(Algorithm::ES256),
        &valid_claims(&app),
        &ec_key("ec2_private.pem"),
    );
    assert_refused(&app, &bearer, "invalid_token").await;
}

#[tokio::test]
async fn an_hmac_token_keyed_with_the_rsa_public_key_is_refused() {
    // The classic algorithm confusion: the attacker knows the public key and
    // uses its PEM bytes as an HMAC secret.
    let app = spawn_with_public_key("rsa_public.pem").await;
    let public_pem = read_fixture("rsa_public.pem");
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let bearer = sign(
            &Header::new(alg),
            &valid_claims(&app),
            &EncodingKey::from_secret(&public_pem),
        );
        assert_refused(&app, &bearer, "invalid_token").await;
    }
    // Nor does the server's default test secret mean anything to it.
    assert_refused(&app, &hs256(&valid_claims(&app)), "invalid_token").await;
}

/// Starts the service with `path` as its public key, expecting a refusal.
async fn start_error(path: PathBuf) -> StartError {
    let mut config = Config::new(KeySource::PublicKeyPem(path.clone()));
    config.bind = "127.0.0.1:0".into();
    match sse_ticket::run(config).await {
        Ok(server) => panic!(
            "the server started with {} at {}",
            path.display(),
            server.local_addr()
        ),
        Err(error) => error,
    }
}

#[tokio::test]
async fn the_service_refuses_to_start_with_a_private_key_and_names_the_file() {
    for name in ["rsa_private.pem", "ec_private.pem", "ed25519_private.pem"] {
        let path = fixture(name);
        let error = start_error(path.clone()).await;
        assert!(
            matches!(error, StartError::Key(KeyError::PrivateKey(_))),
            "{name}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(&path.display().to_string()),
            "{name}: {message}"
        );
        assert!(message.contains("private key"), "{name}: {message}");
    }
}

#[tokio::test]
async fn the_service_refuses_to_start_with_a_file_that_is_not_a_public_key_and_names_it() {
    let garbage = fixture("garbage.pem");
    let error = start_error(garbage.clone()).await;
    assert!(
        matches!(error, StartError::Key(KeyError::Unsupported(_))),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&garbage.display().to_string()),
        "{error}"
    );
    let missing = fixture("no-such-key.pem");
    let error = start_error(missing.clone()).await;
    assert!(
        matches!(error, StartError::Key(KeyError::Read { .. })),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&missing.display().to_string()),
        "{error}"
    );
}

// ---------------------------------------------------------------------------
// JWKS

/// A local identity provider's JWKS endpoint whose key set the test swaps.
struct JwksServer {
    url: reqwest::Url,
    /// What `GET` answers: the set, or 503 while it is `null`.
    set: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    handle: actix_web::dev::ServerHandle,
}

impl JwksServer {
    /// Serves EC P-256 keys given as `(kid, private key fixture)`.
    async fn start(keys: &[(&str, &str)]) -> Self {
        Self::serving(ec_jwk_set(keys)).await
    }

    /// Serves `set` as it is (`null`: answers 503).
    async fn serving(set: Value) -> Self {
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
    fn rotate(&self, keys: &[(&str, &str)]) {
        self.publish(ec_jwk_set(keys));
    }

    /// Serves `set` from now on (`null`: answers 503).
    fn publish(&self, set: Value) {
        *self.set.lock() = set;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

/// The public JWK of a private key, with `kid`, naming `alg` (or no `alg`).
fn jwk(key: &EncodingKey, alg: Algorithm, named: bool, kid: &str) -> Value {
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

/// An ES256 token signed with a private key fixture, naming `kid`.
fn es256(app: &TestApp, private: &str, kid: Option<&str>) -> String {
    sign(
        &header(Algorithm::ES256, kid),
        &valid_claims(app),
        &ec_key(private),
    )
}

#[tokio::test]
async fn jwks_keys_rotate_with_a_rate_limited_refetch() {
    let jwks = JwksServer::start(&[("k1", "ec_private.pem")]).await;
    let app = spawn_with_jwks(jwks.url.clone()).await;
    wait_until_ready(&app).await;
    assert_eq!(jwks.fetches(), 1, "one fetch at start-up");

    let k1 = es256(&app, "ec_private.pem", Some("k1"));
    assert_accepted(&app, &k1, "a token with kid k1").await;
    assert_eq!(jwks.fetches(), 1, "a known kid is served from the cache");

    jwks.rotate(&[("k2", "ec2_private.pem")]);
    let k2 = es256(&app, "ec2_private.pem", Some("k2"));
    let before = jwks.fetches();
    assert_refused(&app, &k2, "invalid_token").await;
    for _ in 0..20 {
        assert_refused(&app, &k2, "invalid_token").await;
    }
    let after_hammering = jwks.fetches();
    assert!(
        after_hammering <= before + 1,
        "21 tokens with an unknown kid caused {} fetches",
        after_hammering - before
    );

    app.advance(Duration::from_secs(6));
    assert_accepted(&app, &k2, "a token with kid k2 once a refetch is allowed").await;
    assert_eq!(jwks.fetches(), after_hammering + 1, "exactly one refetch");

    // k1 was withdrawn: it is no longer in the cached set, and another
    // refetch is rate-limited.
    assert_refused(&app, &k1, "invalid_token").await;
    assert_eq!(jwks.fetches(), after_hammering + 1, "no refetch within 5 s");
    jwks.stop().await;
}

#[tokio::test]
async fn a_token_without_kid_is_refused_when_the_jwks_holds_several_keys() {
    let jwks = JwksServer::start(&[("k1", "ec_private.pem"), ("k2", "ec2_private.pem")]).await;
    let app = spawn_with_jwks(jwks.url.clone()).await;
    wait_until_ready(&app).await;
    // Signed with either key: the server must not guess which one is meant.
    for private in ["ec_private.pem", "ec2_private.pem"] {
        assert_refused(&app, &es256(&app, private, None), "invalid_token").await;
    }
    // Both keys serve tokens that name them.
    assert_accepted(&app, &es256(&app, "ec_private.pem", Some("k1")), "kid k1").await;
    assert_accepted(&app, &es256(&app, "ec2_private.pem", Some("k2")), "kid k2").await;
    jwks.stop().await;
}

#[tokio::test]
async fn a_token_without_kid_is_accepted_when_the_jwks_holds_one_key() {
    let jwks = JwksServer::start(&[("k1", "ec_private.pem")]).await;
    let app = spawn_with_jwks(jwks.url.clone()).await;
    wait_until_ready(&app).await;
    assert_accepted(
        &app,
        &es256(&app, "ec_private.pem", None),
        "a token without kid",
    )
    .await;
    jwks.stop().await;
}

#[tokio::test]
async fn a_jwks_token_must_use_the_key_and_algorithm_the_jwk_names() {
    let jwks = JwksServer::start(&[("k1", "ec_private.pem")]).await;
    let app = spawn_with_jwks(jwks.url.clone()).await;
    wait_until_ready(&app).await;
    // kid k1, but signed with another EC key.
    assert_refused(
        &app,
        &es256(&app, "ec2_private.pem", Some("k1")),
        "invalid_token",
    )
    .await;
    // kid k1, but HMAC keyed with the server's test secret.
    let hmac = sign(
        &header(Algorithm::HS256, Some("k1")),
        &valid_claims(&app),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    );
    assert_refused(&app, &hmac, "invalid_token").await;
    jwks.stop().await;
}

/// An endpoint that answers every `GET` with a redirect to `location`.
async fn redirecting_to(location: String) -> (reqwest::Url, actix_web::dev::ServerHandle) {
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

#[tokio::test]
async fn a_jwks_redirect_is_followed_only_where_keys_cannot_be_swapped_on_the_way() {
    let jwks = JwksServer::start(&[("k1", "ec_private.pem")]).await;
    let port = jwks.url.port().expect("port");
    // 0.0.0.0 reaches this machine, but is no loopback name: a plain-http
    // hop to it stands for one to any host on the network.
    let (plain, plain_server) =
        redirecting_to(format!("http://0.0.0.0:{port}/.well-known/jwks.json")).await;
    let app = spawn_with_jwks(plain).await;
    let bearer = es256(&app, "ec_private.pem", Some("k1"));
    let response = app.post_sse_token(Some(&bearer), None).await;
    assert_error(response, 503, "unavailable").await;
    assert_eq!(jwks.fetches(), 0, "the redirect was not followed");

    // The same keys behind a redirect to a loopback address are used.
    let (loopback, loopback_server) = redirecting_to(jwks.url.to_string()).await;
    let app = spawn_with_jwks(loopback).await;
    wait_until_ready(&app).await;
    assert_accepted(
        &app,
        &es256(&app, "ec_private.pem", Some("k1")),
        "via loopback",
    )
    .await;
    plain_server.stop(false).await;
    loopback_server.stop(false).await;
    jwks.stop().await;
}

#[tokio::test]
async fn an_unreachable_jwks_makes_the_service_unready_and_unavailable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let url = format!("http://127.0.0.1:{port}/.well-known/jwks.json")
        .parse()
        .expect("URL");
    let app = spawn_with_jwks(url).await;

    let response = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("GET /readyz");
    let json = assert_error(response, 503, "unavailable").await;
    assert_eq!(json["backends"]["keys"], "unavailable", "{json}");

    let bearer = es256(&app, "ec_private.pem", Some("k1"));
    let response = app.post_sse_token(Some(&bearer), None).await;
    assert!(
        response.headers().get("www-authenticate").is_none(),
        "an outage is not the token's fault"
    );
    assert_error(response, 503, "unavailable").await;
}

#[tokio::test]
async fn a_withdrawn_jwks_key_is_refused_once_the_cached_set_is_15_minutes_old() {
    let jwks = JwksServer::start(&[("k1", "ec_private.pem")]).await;
    let app = spawn_with_jwks(jwks.url.clone()).await;
    wait_until_ready(&app).await;
    let k1 = es256(&app, "ec_private.pem", Some("k1"));
    assert_accepted(&app, &k1, "a token with kid k1").await;

    jwks.rotate(&[("k2", "ec2_private.pem")]);
    app.advance(Duration::from_secs(14 * 60));
    assert_accepted(&app, &k1, "k1 from a 14-minute-old cache").await;
    let fetches = jwks.fetches();

    // At 15 minutes the cached key still answers at once, while the set is
    // fetched again behind the request; from then on k1 is gone.
    app.advance(Duration::from_secs(60));
    assert_accepted(&app, &k1, "k1 while the stale set is refreshed").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while jwks.fetches() == fetches {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stale set is fetched again"
        );
        tokio::task::yield_now().await;
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let response = app.post_sse_token(Some(&k1), None).await;
        if response.status() == 401 {
            assert_bearer_error(response, "invalid_token").await;
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "k1 is refused once the new set is in"
        );
    }
    assert_eq!(jwks.fetches(), fetches + 1, "one refetch");
    let k2 = es256(&app, "ec2_private.pem", Some("k2"));
    assert_accepted(&app, &k2, "k2 from the fresh set").await;
    assert_eq!(jwks.fetches(), fetches + 1, "the fresh set is cached");
    jwks.stop().await;
}

#[tokio::test]
async fn a_jwks_that_comes_back_is_used_once_a_refetch_is_allowed() {
    let jwks = JwksServer::serving(Value::Null).await;
    let app = spawn_with_jwks(jwks.url.clone()).await;
    let bearer = es256(&app, "ec_private.pem", Some("k1"));
    assert_error(
        app.post_sse_token(Some(&bearer), None).await,
        503,
        "unavailable",
    )
    .await;

    jwks.rotate(&[("k1", "ec_private.pem")]);
    app.advance(Duration::from_secs(6));
    assert_accepted(&app, &bearer, "a token once the keys can be fetched").await;
    wait_until_ready(&app).await;
    jwks.stop().await;
}

#[tokio::test]
async fn a_symmetric_key_published_in_a_jwks_is_ignored() {
    // A key served over HTTP is public: an HMAC key there would let anyone
    // sign tokens.
    let secret = b"a-secret-published-for-everyone-to-read";
    let oct = json!({ "kty": "oct", "kid": "h1", "alg": "HS256", "k": base64url(secret) });
    let set =
        json!({ "keys": [oct, jwk(&ec_key("ec_private.pem"), Algorithm::ES256, true, "k1")] });
    let jwks = JwksServer::serving(set).await;
    let app = spawn_with_jwks(jwks.url.clone()).await;
    wait_until_ready(&app).await;
    let forged = sign(
        &header(Algorithm::HS256, Some("h1")),
        &valid_claims(&app),
        &EncodingKey::from_secret(secret),
    );
    assert_refused(&app, &forged, "invalid_token").await;
    // The EC key next to it works.
    assert_accepted(&app, &es256(&app, "ec_private.pem", Some("k1")), "kid k1").await;
    jwks.stop().await;
}

#[tokio::test]
async fn a_jwk_that_names_its_algorithm_accepts_only_that_algorithm() {
    let set = json!({ "keys": [
        jwk(&rsa_key(), Algorithm::RS256, true, "named"),
        jwk(&rsa_key(), Algorithm::RS256, false, "unnamed"),
    ] });
    let jwks = JwksServer::serving(set).await;
    let app = spawn_with_jwks(jwks.url.clone()).await;
    wait_until_ready(&app).await;
    let token = |alg, kid| sign(&header(alg, Some(kid)), &valid_claims(&app), &rsa_key());
    assert_accepted(
        &app,
        &token(Algorithm::RS256, "named"),
        "RS256 with the RS256 JWK",
    )
    .await;
    assert_refused(&app, &token(Algorithm::PS256, "named"), "invalid_token").await;
    assert_refused(&app, &token(Algorithm::RS512, "named"), "invalid_token").await;
    // Without an alg, the key type decides.
    assert_accepted(
        &app,
        &token(Algorithm::PS256, "unnamed"),
        "PS256 with an RSA JWK",
    )
    .await;
    assert_accepted(
        &app,
        &token(Algorithm::RS512, "unnamed"),
        "RS512 with an RSA JWK",
    )
    .await;
    jwks.stop().await;
}

#[tokio::test]
async fn a_jwks_key_meant_for_encryption_or_without_verify_is_ignored() {
    let mut enc = jwk(&ec_key("ec_private.pem"), Algorithm::ES256, true, "enc");
    enc["use"] = json!("enc");
    let mut no_verify = jwk(
        &ec_key("ec2_private.pem"),
        Algorithm::ES256,
        true,
        "sign-only",
    );
    no_verify["key_ops"] = json!(["sign"]);
    let mut sig = jwk(&rsa_key(), Algorithm::RS256, true, "sig");
    sig["use"] = json!("sig");
    sig["key_ops"] = json!(["verify"]);
    let jwks = JwksServer::serving(json!({ "keys": [enc, no_verify, sig] })).await;
    let app = spawn_with_jwks(jwks.url.clone()).await;
    wait_until_ready(&app).await;
    assert_refused(
        &app,
        &es256(&app, "ec_private.pem", Some("enc")),
        "invalid_token",
    )
    .await;
    assert_refused(
        &app,
        &es256(&app, "ec2_private.pem", Some("sign-only")),
        "invalid_token",
    )
    .await;
    let rs256 = sign(
        &header(Algorithm::RS256, Some("sig")),
        &valid_claims(&app),
        &rsa_key(),
    );
    assert_accepted(&app, &rs256, "a signature key").await;
    jwks.stop().await;
}

#[tokio::test]
async fn a_token_with_critical_header_extensions_is_refused() {
    let app = spawn_app().await;
    let claims = valid_claims(&app);
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    // jsonwebtoken's Header cannot carry `crit`: build the signing input by hand.
    let header =
        base64url(br#"{"alg":"HS256","typ":"JWT","crit":["exp-unknown"],"exp-unknown":1}"#);
    let payload = base64url(claims.to_string().as_bytes());
    let message = format!("{header}.{payload}");
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).expect("sign");
    assert_refused(&app, &format!("{message}.{signature}"), "invalid_token").await;
    // The same token without `crit` verifies: the signature was right.
    assert_accepted(&app, &hs256(&claims), "no crit").await;
}
