//! Tokens checked with a PEM public key (RSA, EC, Ed25519), and the keys
//! the service refuses to start with.

use std::path::PathBuf;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sse_ticket::auth::{KeyError, KeySource};
use sse_ticket::{Config, StartError};

use super::{
    assert_accepted, assert_refused, ec_key, ed_key, fixture, hs256, read_fixture, rsa_key, sign,
    valid_claims,
};
use crate::helpers::{TestApp, spawn_config};

async fn spawn_with_public_key(name: &str) -> TestApp {
    let mut config = Config::new(KeySource::PublicKeyPem(fixture(name)));
    config.bind = "127.0.0.1:0".into();
    spawn_config(config).await
}

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
    match sse_ticket::build(config).await {
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
