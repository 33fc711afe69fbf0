//! Tokens signed with the server's HMAC secret: the `Authorization` header,
//! signatures and algorithms, and every claim check (`exp`, `nbf`, `iat`,
//! `iss`, `aud`, `sub`, the `sse` claim), which do not depend on the key.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::{
    AUDIENCE, ISSUER, assert_accepted, assert_refused, base64url, hs256, now, sign, valid_claims,
    with, without,
};
use crate::helpers::{SECRET, TestApp, assert_bearer_error, spawn_app, spawn_app_with};

/// `POST /sse-token` with a raw `Authorization` value.
async fn post_with_authorization(app: &TestApp, authorization: &str) -> reqwest::Response {
    app.client
        .post(app.url("/sse-token"))
        .header("authorization", authorization)
        .send()
        .await
        .expect("POST /sse-token")
}

async fn spawn_with_issuer_and_audience() -> TestApp {
    spawn_app_with(|config| {
        config.verifier.issuer = Some(ISSUER.into());
        config.verifier.audience = Some(AUDIENCE.into());
    })
    .await
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
// Header extensions

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
