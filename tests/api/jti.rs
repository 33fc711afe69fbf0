//! Revocation of one bearer token by its `jti` (`POST /admin/revoke` with
//! `jti`), on one instance: what it refuses and closes, what it spares, its
//! listing, lifting, expiry and persistence.

use std::time::Duration;

use chrono::SecondsFormat;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use sse_ticket::clock::{Clock as _, ManualClock};

use crate::helpers::{
    SECRET, TestApp, assert_bearer_error, assert_error, fresh_database_url, output, spawn_app,
    spawn_app_with, spawn_config_with_clock, sse_ticket, test_config,
};

/// A day-long HS256 token of `sub` with `jti` (none when `None`), allowed to
/// receive and publish on `t`.
pub fn token_with_jti(app: &TestApp, sub: &str, jti: Option<&str>) -> String {
    let now = app.clock.now().timestamp();
    let mut claims = json!({
        "sub": sub, "iat": now, "exp": now + 86_400,
        "sse": { "subscribe": ["t"], "publish": ["t"] },
    });
    if let Some(jti) = jti {
        claims["jti"] = jti.into();
    }
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    encode(&Header::new(Algorithm::HS256), &claims, &key).expect("signed")
}

impl TestApp {
    /// `POST /admin/revoke` with a raw JSON body, as an admin.
    pub async fn revoke_body(&self, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/admin/revoke"))
            .bearer_auth(self.admin_token("ops"))
            .json(&body)
            .send()
            .await
            .expect("POST /admin/revoke")
    }

    /// Revokes `jti` with the default lifetime, asserting it worked.
    pub async fn revoke_jti(&self, jti: &str) -> Value {
        let response = self.revoke_body(json!({ "jti": jti })).await;
        assert_eq!(response.status(), 200, "revoke jti {jti}");
        response.json().await.expect("JSON")
    }

    /// `DELETE /admin/revoke?<query>`, as an admin.
    async fn lift_jti(&self, query: &str) -> reqwest::Response {
        self.client
            .delete(self.url(&format!("/admin/revoke?{query}")))
            .bearer_auth(self.admin_token("ops"))
            .send()
            .await
            .expect("DELETE /admin/revoke")
    }

    async fn revocation_list(&self) -> Vec<Value> {
        let response = self
            .client
            .get(self.url("/admin/revocations"))
            .bearer_auth(self.admin_token("ops"))
            .send()
            .await
            .expect("GET /admin/revocations");
        assert_eq!(response.status(), 200);
        let json: Value = response.json().await.expect("JSON");
        json["revocations"].as_array().expect("list").clone()
    }
}

#[tokio::test]
async fn revoking_one_token_by_jti_closes_its_stream_and_spares_the_other() {
    let app = spawn_app().await;
    let first = token_with_jti(&app, "alice", Some("alice-1"));
    let second = token_with_jti(&app, "alice", Some("alice-2"));
    let mut on_first = app.stream(&app.ticket(&first, &["t"]).await).await;
    let mut on_second = app.stream(&app.ticket(&second, &["t"]).await).await;
    let outstanding = app.ticket(&first, &["t"]).await;

    let json = app.revoke_jti("alice-1").await;
    assert_eq!(json["kind"], "jti");
    assert_eq!(json["jti"], "alice-1");
    let default_until = app.clock.now() + chrono::TimeDelta::days(30);
    assert_eq!(
        json["until"],
        default_until.to_rfc3339_opts(SecondsFormat::Millis, true),
        "SSE_TICKET_JTI_REVOCATION_TTL, 30 days by default"
    );

    let close = on_first.next_event().await;
    assert_eq!(close.event.as_deref(), Some("close"));
    assert_eq!(close.json(), json!({ "reason": "revoked" }));
    on_first.assert_ends().await;
    assert_bearer_error(
        app.post_sse_token(Some(&first), None).await,
        "token_revoked",
    )
    .await;
    let event = r#"{"topic":"t","data":1}"#;
    assert_bearer_error(app.post_publish(Some(&first), event).await, "token_revoked").await;
    assert_error(app.get_stream(&outstanding).await, 401, "invalid_ticket").await;
    assert_eq!(
        app.metric(r#"sse_ticket_tickets_rejected_total{reason="revoked"}"#)
            .await,
        1.0
    );

    // The other token of the same subject carries on, and gets new tickets.
    assert_eq!(app.post_publish(Some(&second), event).await.status(), 200);
    assert_eq!(on_second.next_event().await.json(), json!(1));
    let _again = app.stream(&app.ticket(&second, &["t"]).await).await;
}

#[tokio::test]
async fn a_token_without_jti_is_not_reached_by_a_revocation_by_jti() {
    let app = spawn_app().await;
    let plain = token_with_jti(&app, "alice", None);
    let mut stream = app.stream(&app.ticket(&plain, &["t"]).await).await;
    app.revoke_jti("someone-else").await;
    assert_eq!(app.post_sse_token(Some(&plain), None).await.status(), 200);
    app.publish("t", None, json!("still open")).await;
    assert_eq!(stream.next_event().await.json(), json!("still open"));
}

#[tokio::test]
async fn a_revocation_names_exactly_one_of_sub_and_jti_and_a_valid_until() {
    let app = spawn_app().await;
    let past = (app.clock.now() - chrono::TimeDelta::seconds(1)).to_rfc3339();
    let refused = [
        json!({ "sub": "alice", "jti": "alice-1" }),
        json!({}),
        json!({ "jti": "alice-1", "until": "tomorrow" }),
        json!({ "jti": "alice-1", "until": null }),
        json!({ "sub": null, "jti": "alice-1" }),
        json!({ "jti": "" }),
        json!({ "sub": "alice", "until": "2099-01-01T00:00:00Z" }),
    ];
    for body in refused {
        assert_error(app.revoke_body(body.clone()).await, 400, "invalid_body").await;
    }
    // An `until` already past is over at once: answered, nothing kept.
    let response = app
        .revoke_body(json!({ "jti": "alice-1", "until": past }))
        .await;
    assert_eq!(response.status(), 200);
    assert!(
        app.revocation_list().await.is_empty(),
        "nothing was revoked"
    );

    let until = app.clock.now() + chrono::TimeDelta::hours(1);
    let until = until.to_rfc3339_opts(SecondsFormat::Millis, true);
    let response = app
        .revoke_body(json!({ "jti": "alice-1", "until": until }))
        .await;
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.expect("JSON");
    assert_eq!(json["until"], until);
}

#[tokio::test]
async fn revocations_are_listed_with_their_kind_and_a_lift_accepts_the_token_again() {
    let app = spawn_app().await;
    let token = token_with_jti(&app, "alice", Some("alice-1"));
    assert_eq!(app.revoke("bob").await.status(), 200);
    let revoked = app.revoke_jti("alice-1").await;

    let list = app.revocation_list().await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["kind"], "sub");
    assert_eq!(list[0]["sub"], "bob");
    assert_eq!(list[1], revoked, "the same entry as the answer");

    assert_bearer_error(
        app.post_sse_token(Some(&token), None).await,
        "token_revoked",
    )
    .await;
    assert_error(app.lift_jti("sub=alice").await, 400, "invalid_query").await;
    assert_error(app.lift_jti("jti=alice-2").await, 404, "not_found").await;
    let response = app.lift_jti("jti=alice-1").await;
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.expect("JSON");
    assert_eq!(json, json!({ "jti": "alice-1", "lifted": true }));
    assert_error(app.lift_jti("jti=alice-1").await, 404, "not_found").await;
    assert_eq!(app.post_sse_token(Some(&token), None).await.status(), 200);
    assert_eq!(app.revocation_list().await.len(), 1);
}

#[tokio::test]
async fn a_revocation_by_jti_survives_a_restart() {
    let database_url = fresh_database_url().await;
    let clock = ManualClock::default();
    let first = spawn_config_with_clock(test_config(&database_url), clock.clone()).await;
    let token = token_with_jti(&first, "alice", Some("alice-1"));
    first.revoke_jti("alice-1").await;
    first.stopper().stop().await;

    let second = spawn_config_with_clock(test_config(&database_url), clock).await;
    assert_bearer_error(
        second.post_sse_token(Some(&token), None).await,
        "token_revoked",
    )
    .await;
    let list = second.revocation_list().await;
    assert_eq!(list[0]["jti"], "alice-1");
}

#[tokio::test]
async fn a_revocation_by_jti_ends_at_its_until() {
    let app = spawn_app_with(|config| config.jti_revocation_ttl = Duration::from_secs(7200)).await;
    let token = token_with_jti(&app, "alice", Some("alice-1"));
    app.revoke_jti("alice-1").await;
    assert_eq!(app.metric("sse_ticket_jti_revocations").await, 1.0);
    app.advance(Duration::from_secs(7199));
    assert_bearer_error(
        app.post_sse_token(Some(&token), None).await,
        "token_revoked",
    )
    .await;

    app.advance(Duration::from_secs(1));
    assert_eq!(app.post_sse_token(Some(&token), None).await.status(), 200);
    assert!(app.revocation_list().await.is_empty(), "no longer listed");
    // The next reload forgets it.
    app.advance_until_metric(Duration::from_secs(10), "sse_ticket_jti_revocations", 0.0)
        .await;
}

#[tokio::test]
async fn a_jti_revocation_ttl_out_of_range_stops_start_up() {
    for ttl in ["0s", "11years"] {
        let args = [
            "serve",
            "--dev",
            "--bind",
            "127.0.0.1:0",
            "--jti-revocation-ttl",
            ttl,
        ];
        let mut serve = sse_ticket(&args);
        serve.env("SSE_TICKET_DATABASE_URL", fresh_database_url().await);
        let out = output(serve).await;
        assert!(!out.status.success(), "{ttl} is refused");
        let stderr = String::from_utf8(out.stderr).expect("UTF-8");
        assert!(
            stderr.contains(
                "SSE_TICKET_JTI_REVOCATION_TTL must be longer than zero and at most 10 years"
            ),
            "{stderr}"
        );
    }
}
