//! Bearer tokens: what `POST /sse-token` accepts and refuses, for every key
//! source: an HMAC secret ([`hmac`], with the claims checks and the
//! `Authorization` header), a PEM public key ([`pem`]), and a JWKS URL with
//! rotation ([`jwks`], against the identity provider in [`idp`]); a verified
//! token remembered changes nothing ([`remembered`]).

mod hmac;
mod idp;
mod jwks;
mod pem;
mod remembered;

use std::path::PathBuf;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use sse_ticket::clock::Clock as _;

use crate::helpers::{SECRET, TestApp, assert_bearer_error};

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
