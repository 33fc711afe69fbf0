//! A verified token is remembered (by the SHA-256 of its bytes), so a client
//! that re-tickets on every reconnect is not decoded again; remembering it
//! must change nothing a client or an attacker can see. (A withdrawn JWKS
//! key: `jwks.rs`; a revocation after the token was remembered: `admin.rs`.)

use std::time::Duration;

use serde_json::json;

use super::{assert_accepted, assert_refused, hs256, now, valid_claims, with};
use crate::helpers::spawn_app;

#[tokio::test]
async fn a_remembered_token_still_expires_at_its_exp_and_the_leeway() {
    let app = spawn_app().await;
    let claims = with(valid_claims(&app), "exp", json!(now(&app) + 60));
    let token = hs256(&claims);
    for _ in 0..3 {
        assert_accepted(&app, &token, "a token valid for a minute").await;
    }
    // Until exp + 30 s it is accepted, as it would be the first time (exp
    // is in whole seconds, the server's clock is not).
    app.advance(Duration::from_secs(89));
    assert_accepted(&app, &token, "just before exp + the leeway").await;
    app.advance(Duration::from_secs(2));
    assert_refused(&app, &token, "token_expired").await;
    assert_refused(&app, &token, "token_expired").await;
}

#[tokio::test]
async fn a_remembered_token_is_not_a_key_for_a_look_alike() {
    let app = spawn_app().await;
    let token = hs256(&valid_claims(&app));
    assert_accepted(&app, &token, "the token").await;
    // The same bytes but for the signature's last character: remembering
    // the first must not let this one through.
    let mut forged = token.clone();
    let last = forged.pop().expect("a signature");
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_refused(&app, &forged, "invalid_token").await;
    assert_accepted(&app, &token, "the token, again").await;
}
