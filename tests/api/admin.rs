//! `/admin`: revocation and the audit trail.

use std::time::Duration;

use serde_json::{Value, json};
use sse_ticket::clock::ManualClock;

use crate::helpers::{
    TestApp, assert_bearer_error, assert_error, execute_sql, fresh_database_url, spawn_app,
    spawn_config_with_clock, test_config,
};

impl TestApp {
    async fn lift(&self, sub: &str) -> reqwest::Response {
        self.client
            .delete(self.url(&format!("/admin/revoke/{sub}")))
            .bearer_auth(self.admin_token("ops"))
            .send()
            .await
            .expect("DELETE /admin/revoke")
    }

    async fn admin_get(&self, path_and_query: &str) -> reqwest::Response {
        self.client
            .get(self.url(path_and_query))
            .bearer_auth(self.admin_token("ops"))
            .send()
            .await
            .expect("admin GET")
    }

    async fn revocations(&self) -> Value {
        let response = self.admin_get("/admin/revocations").await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("JSON")
    }

    async fn audit_rows(&self, query: &str) -> Vec<Value> {
        let response = self.admin_get(&format!("/admin/audit{query}")).await;
        assert_eq!(response.status(), 200);
        let json: Value = response.json().await.expect("JSON");
        json["records"].as_array().expect("records").clone()
    }
}

#[tokio::test]
async fn revoking_a_subject_cuts_it_off_everywhere_at_once() {
    let app = spawn_app().await;
    let alice = app.token("alice", &["orders/*"], &["orders/*"]);
    let outstanding = app.ticket(&alice, &[]).await;
    let mut open = app.subscribe("alice", &[]).await;
    let mut bob = app.subscribe("bob", &[]).await;

    let response = app.revoke("alice").await;
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.expect("JSON");
    assert_eq!(json["sub"], "alice");
    assert!(
        json["revoked_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    let close = open.next_event().await;
    assert_eq!(close.event.as_deref(), Some("close"));
    assert_eq!(close.json(), json!({ "reason": "revoked" }));
    open.assert_ends().await;
    assert_error(app.get_stream(&outstanding).await, 401, "invalid_ticket").await;
    assert_bearer_error(
        app.post_sse_token(Some(&alice), None).await,
        "token_revoked",
    )
    .await;
    let publish = json!({ "topic": "orders/1", "data": 1 }).to_string();
    assert_bearer_error(
        app.post_publish(Some(&alice), &publish).await,
        "token_revoked",
    )
    .await;

    // Others are untouched.
    app.publish("user/bob", None, json!("still here")).await;
    assert_eq!(bob.next_event().await.json(), json!("still here"));

    // A token issued after the revocation is accepted.
    app.advance(Duration::from_secs(1));
    let fresh = app.token("alice", &[], &[]);
    assert_eq!(app.post_sse_token(Some(&fresh), None).await.status(), 200);

    let list = app.revocations().await;
    assert_eq!(list["revocations"][0]["sub"], "alice");
    assert_eq!(list["revocations"].as_array().map(Vec::len), Some(1));

    // Lifting lets the old token in again.
    let lifted = app.lift("alice").await;
    assert_eq!(lifted.status(), 200);
    assert_eq!(
        lifted.json::<Value>().await.expect("JSON"),
        json!({ "sub": "alice", "lifted": true })
    );
    assert_eq!(app.post_sse_token(Some(&alice), None).await.status(), 200);
    assert_error(app.lift("alice").await, 404, "not_found").await;
    assert_eq!(
        app.metric(r#"sse_ticket_streams_closed_total{reason="revoked"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_permission() {
    let app = spawn_app().await;
    let user = app.token("alice", &["*"], &["*"]);
    for (method, path) in [
        (reqwest::Method::POST, "/admin/revoke"),
        (reqwest::Method::GET, "/admin/revocations"),
        (reqwest::Method::DELETE, "/admin/revoke/bob"),
        (reqwest::Method::GET, "/admin/audit"),
    ] {
        let anonymous = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .expect("request");
        assert_bearer_error(anonymous, "missing_token").await;
        let response = app
            .client
            .request(method, app.url(path))
            .bearer_auth(&user)
            .json(&json!({ "sub": "bob" }))
            .send()
            .await
            .expect("request");
        assert_error(response, 403, "forbidden").await;
    }
    let list = app.revocations().await;
    assert_eq!(list, json!({ "revocations": [] }), "nothing was revoked");
}

#[tokio::test]
async fn malformed_admin_requests_are_refused() {
    let app = spawn_app().await;
    let admin = app.admin_token("ops");
    for body in [
        "",
        "{}",
        r#"{"sub": ""}"#,
        r#"{"sub": 5}"#,
        r#"{"sub": "a", "x": 1}"#,
        r#"{"sub": "a\u0000b"}"#,
    ] {
        let response = app
            .client
            .post(app.url("/admin/revoke"))
            .bearer_auth(&admin)
            .body(body)
            .send()
            .await
            .expect("request");
        assert_error(response, 400, "invalid_body").await;
    }
    let long = "x".repeat(300);
    for query in [
        "?limit=0",
        "?limit=1001",
        "?limit=99999999999",
        "?limit=ten",
        "?since=yesterday",
        &format!("?sub={long}"),
    ] {
        assert_error(
            app.admin_get(&format!("/admin/audit{query}")).await,
            400,
            "invalid_query",
        )
        .await;
    }
    let list = app.revocations().await;
    assert_eq!(list, json!({ "revocations": [] }));
}

#[tokio::test]
async fn revocations_survive_a_restart() {
    let database_url = fresh_database_url().await;
    let clock = ManualClock::default();
    let first = spawn_config_with_clock(test_config(&database_url), clock.clone()).await;
    let alice = first.token("alice", &[], &[]);
    assert_eq!(first.revoke("alice").await.status(), 200);
    first.stopper().stop().await;

    let second = spawn_config_with_clock(test_config(&database_url), clock).await;
    assert_bearer_error(
        second.post_sse_token(Some(&alice), None).await,
        "token_revoked",
    )
    .await;
    let list = second.revocations().await;
    assert_eq!(list["revocations"][0]["sub"], "alice");
}

/// Waits until the audit trail holds `n` rows (it is written in the background).
async fn wait_for_rows(app: &TestApp, query: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + crate::helpers::PATIENCE;
    loop {
        let rows = app.audit_rows(query).await;
        if rows.len() >= n {
            assert_eq!(rows.len(), n, "exactly {n} rows: {rows:#?}");
            return rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} audit rows",
            rows.len()
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn every_ticket_action_leaves_exactly_one_audit_row_and_never_the_ticket() {
    let app = spawn_app().await;
    let alice = app.token("alice", &["orders/*"], &[]);
    let redeemed = app.ticket(&alice, &["orders/*"]).await;
    app.advance(Duration::from_secs(1));
    let _stream = app.stream(&redeemed).await;
    app.advance(Duration::from_secs(1));
    assert_error(app.get_stream(&redeemed).await, 401, "invalid_ticket").await;
    app.advance(Duration::from_secs(1));
    assert_eq!(app.revoke("mallory").await.status(), 200);

    let rows = wait_for_rows(&app, "", 4).await;
    let actions: Vec<&str> = rows
        .iter()
        .map(|r| r["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        [
            "revoked",
            "ticket_rejected",
            "ticket_redeemed",
            "ticket_issued"
        ],
        "newest first"
    );
    let issued = &rows[3];
    assert_eq!(issued["sub"], "alice");
    assert_eq!(issued["topics"], json!(["orders/*"]));
    assert_eq!(issued["client_ip"], "127.0.0.1");
    let fingerprint = issued["ticket_fingerprint"].as_str().expect("fingerprint");
    assert_eq!(fingerprint.len(), 16);
    assert_eq!(
        rows[2]["ticket_fingerprint"], fingerprint,
        "rows of one ticket correlate"
    );
    assert_eq!(rows[1]["reason"], "unknown");
    assert_eq!(rows[1]["ticket_fingerprint"], fingerprint);
    assert_eq!(rows[0]["sub"], "mallory");
    let everything = serde_json::to_string(&rows).expect("JSON");
    assert!(
        !everything.contains(&redeemed),
        "a ticket leaked into the audit trail"
    );

    // Filters.
    assert_eq!(app.audit_rows("?sub=mallory").await.len(), 1);
    assert_eq!(app.audit_rows("?limit=2").await.len(), 2);
    let since = rows[1]["at"].as_str().expect("at");
    assert_eq!(app.audit_rows(&format!("?since={since}")).await.len(), 2);
}

#[tokio::test]
async fn one_subjects_trail_spans_every_hour_it_was_written_in() {
    // Rows written an hour apart go to different epochs of the index; a
    // subject's trail must still hold all of them, newest first.
    let app = spawn_app().await;
    for hour in 0..3 {
        app.ticket(&app.token("alice", &[], &[]), &[]).await;
        app.ticket(&app.token(&format!("user-{hour}"), &[], &[]), &[])
            .await;
        wait_for_rows(&app, "?sub=alice", hour + 1).await;
        app.advance(Duration::from_secs(3601));
    }
    let rows = wait_for_rows(&app, "?sub=alice", 3).await;
    let times: Vec<&str> = rows.iter().filter_map(|r| r["at"].as_str()).collect();
    assert!(
        times.windows(2).all(|w| w[0] > w[1]),
        "newest first: {times:?}"
    );
    assert_eq!(app.audit_rows("?sub=user-1").await.len(), 1);
}

#[tokio::test]
async fn audit_rows_are_flushed_on_graceful_shutdown() {
    let database_url = fresh_database_url().await;
    let clock = ManualClock::default();
    let first = spawn_config_with_clock(test_config(&database_url), clock.clone()).await;
    let bearer = first.token("alice", &[], &[]);
    for _ in 0..20 {
        first.ticket(&bearer, &[]).await;
    }
    first.stopper().stop().await;
    let second = spawn_config_with_clock(test_config(&database_url), clock).await;
    assert_eq!(second.audit_rows("?sub=alice").await.len(), 20);
}

#[tokio::test]
async fn tickets_and_streams_keep_working_when_the_audit_trail_cannot_be_written() {
    let app = spawn_app().await;
    execute_sql(&app.database_url, "DROP TABLE audit").await;
    let bearer = app.token("alice", &[], &[]);
    let ticket = app.ticket(&bearer, &[]).await;
    let mut stream = app.stream(&ticket).await;
    app.publish("user/alice", None, json!("delivered")).await;
    assert_eq!(stream.next_event().await.json(), json!("delivered"));
    let deadline = tokio::time::Instant::now() + crate::helpers::PATIENCE;
    while app.metric("sse_ticket_audit_write_failures_total").await == 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failure is counted"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn publish_answers_503_when_history_cannot_be_written() {
    let app = spawn_app().await;
    let _stream = app.subscribe("alice", &[]).await;
    execute_sql(&app.database_url, "DROP TABLE events").await;
    let bearer = app.token("backend", &[], &["*"]);
    let body = json!({ "topic": "user/alice", "data": "lost?" }).to_string();
    assert_error(
        app.post_publish(Some(&bearer), &body).await,
        503,
        "unavailable",
    )
    .await;
    // Nothing was delivered that history does not hold.
    assert_eq!(app.metric("sse_ticket_events_delivered_total").await, 0.0);
}

#[tokio::test]
async fn audit_rows_are_kept_only_for_the_audit_ttl() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.retention.audit_ttl = Duration::from_secs(3600);
    })
    .await;
    app.ticket(&app.token("alice", &[], &[]), &[]).await;
    wait_for_rows(&app, "?sub=alice", 1).await;
    app.advance(Duration::from_secs(3500));
    app.ticket(&app.token("alice", &[], &[]), &[]).await;
    wait_for_rows(&app, "?sub=alice", 2).await;
    // Past the first row's TTL, before the second's.
    let deadline = tokio::time::Instant::now() + crate::helpers::PATIENCE;
    while app.audit_rows("?sub=alice").await.len() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old row was never pruned"
        );
        app.advance(Duration::from_secs(61));
        tokio::task::yield_now().await;
    }
}
