//! Tokens checked against a JWKS URL: which keys of a set count, rotation
//! and its rate-limited refetch, a stale cache, redirects and outages.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use sse_ticket::Config;
use sse_ticket::auth::KeySource;

use super::idp::{JwksServer, jwk, redirecting_to};
use super::{
    assert_accepted, assert_refused, base64url, ec_key, header, rsa_key, sign, valid_claims,
};
use crate::helpers::{PATIENCE, SECRET, TestApp, assert_bearer_error, assert_error, spawn_config};

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
