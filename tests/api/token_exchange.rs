//! The RFC 8693 form of `POST /sse-token` and its RFC 8414 metadata, with
//! hand-built requests (`oauth_library` drives it with an OAuth client library).

use std::time::Duration;

use serde_json::Value;
use sse_ticket::client_ip::TrustedProxies;

use crate::helpers::{TestApp, assert_error, header, spawn_app, spawn_app_with};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const TICKET: &str = "urn:sse-ticket:params:oauth:token-type:ticket";

/// `POST /sse-token` with `pairs` form-encoded, and no `Authorization` header.
async fn exchange(app: &TestApp, pairs: &[(&str, &str)]) -> reqwest::Response {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    post_form(app, body).await
}

async fn post_form(app: &TestApp, body: String) -> reqwest::Response {
    app.client
        .post(app.url("/sse-token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("POST /sse-token")
}

/// The pairs of a valid exchange of `token`, plus `extra`.
fn exchange_of<'a>(token: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut pairs = vec![
        ("grant_type", GRANT),
        ("subject_token", token),
        ("subject_token_type", JWT),
    ];
    pairs.extend_from_slice(extra);
    pairs
}

/// Asserts an RFC 6749 §5.2 error: status, code, a description, and never cached.
async fn assert_oauth_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status, "status for {code}");
    assert_eq!(header(&response, "cache-control"), "no-store");
    assert_eq!(header(&response, "pragma"), "no-cache");
    let json: Value = response.json().await.expect("JSON error body");
    assert_eq!(json["error"], code, "{json}");
    assert!(
        json["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "a description: {json}"
    );
    assert!(json.get("message").is_none(), "the RFC shape only: {json}");
    json
}

#[tokio::test]
async fn an_exchange_without_scope_issues_a_ticket_for_the_own_topic() {
    let app = spawn_app().await;
    let bearer = app.token("alice", &[], &[]);
    let response = exchange(&app, &exchange_of(&bearer, &[])).await;

    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "cache-control"), "no-store");
    assert_eq!(header(&response, "pragma"), "no-cache");
    let json: Value = response.json().await.expect("JSON");
    assert_eq!(json["issued_token_type"], TICKET);
    assert_eq!(json["token_type"], "N_A");
    assert_eq!(json["expires_in"], 60);
    assert_eq!(json["scope"], "user/alice");
    let ticket = json["access_token"].as_str().expect("access_token");
    assert_eq!(json["stream_url"], format!("/stream?token={ticket}"));

    let _stream = app.stream(ticket).await;
    // The ticket is single-use like any other.
    assert_error(app.get_stream(ticket).await, 401, "invalid_ticket").await;
}

#[tokio::test]
async fn scope_names_the_topics_and_the_answer_repeats_them() {
    let app = spawn_app().await;
    let bearer = app.token("alice", &["orders/*"], &[]);
    let scope = [("scope", "orders/* orders/42")];
    let response = exchange(&app, &exchange_of(&bearer, &scope)).await;
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.expect("JSON");
    assert_eq!(json["scope"], "orders/* orders/42");

    // The stream carries exactly those topics.
    let ticket = json["access_token"].as_str().expect("ticket");
    let response = app.get_stream(ticket).await;
    let mut stream = crate::helpers::SseStream::new(response);
    stream.next_frame().await;
    let ready = stream.next_frame().await;
    assert_eq!(
        ready.json()["topics"],
        serde_json::json!(["orders/*", "orders/42"])
    );
}

#[tokio::test]
async fn every_malformed_request_is_an_invalid_request() {
    let app = spawn_app().await;
    let bearer = app.token("alice", &[], &[]);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("no grant_type", exchange_of(&bearer, &[])[1..].to_vec()),
        (
            "no subject_token",
            vec![("grant_type", GRANT), ("subject_token_type", JWT)],
        ),
        (
            "no subject_token_type",
            vec![("grant_type", GRANT), ("subject_token", &bearer)],
        ),
        (
            "a repeated parameter",
            exchange_of(&bearer, &[("subject_token", &bearer)]),
        ),
        (
            "another token type",
            exchange_of(&bearer, &[])
                .into_iter()
                .map(|(k, v)| match k {
                    "subject_token_type" => (k, "urn:ietf:params:oauth:token-type:saml2"),
                    _ => (k, v),
                })
                .collect(),
        ),
        (
            "another requested token type",
            exchange_of(&bearer, &[("requested_token_type", JWT)]),
        ),
        (
            "delegation",
            exchange_of(
                &bearer,
                &[("actor_token", &bearer), ("actor_token_type", JWT)],
            ),
        ),
    ];
    for (case, pairs) in cases {
        let response = exchange(&app, &pairs).await;
        let json = assert_oauth_error(response, 400, "invalid_request").await;
        eprintln!("{case}: {json}");
    }
    assert_eq!(app.metric("sse_ticket_tickets_issued_total").await, 0.0);
}

#[tokio::test]
async fn another_grant_type_is_unsupported() {
    let app = spawn_app().await;
    let bearer = app.token("alice", &[], &[]);
    let mut pairs = exchange_of(&bearer, &[]);
    pairs[0] = ("grant_type", "client_credentials");
    assert_oauth_error(exchange(&app, &pairs).await, 400, "unsupported_grant_type").await;
}

#[tokio::test]
async fn a_bad_expired_or_revoked_subject_token_is_an_invalid_grant() {
    let app = spawn_app().await;
    let expired = app.token_for("alice", &[], &[], Duration::from_secs(1));
    app.clock.advance(chrono::TimeDelta::seconds(120));
    let revoked = app.token("bob", &[], &[]);
    app.clock.advance(chrono::TimeDelta::seconds(1));
    assert_eq!(app.revoke("bob").await.status(), 200);
    let too_long = "a".repeat(9 * 1024);

    for token in ["not-a-jwt", &expired, &revoked, &too_long] {
        let response = exchange(&app, &exchange_of(token, &[])).await;
        assert!(
            response.headers().get("www-authenticate").is_none(),
            "no bearer challenge: the token was in the body"
        );
        assert_oauth_error(response, 400, "invalid_grant").await;
    }
    assert_eq!(app.metric("sse_ticket_tickets_issued_total").await, 0.0);
}

#[tokio::test]
async fn a_bad_or_forbidden_scope_is_an_invalid_scope() {
    let app = spawn_app().await;
    let bearer = app.token("alice", &["orders/*"], &[]);
    let too_many = (0..65)
        .map(|i| format!("orders/{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    for scope in ["orders/1 invoices/1", "orders//1", "*", too_many.as_str()] {
        let response = exchange(&app, &exchange_of(&bearer, &[("scope", scope)])).await;
        assert_oauth_error(response, 400, "invalid_scope").await;
    }
    // A subject without an own topic must name its topics.
    let odd = app.token("a b", &["orders/*"], &[]);
    let response = exchange(&app, &exchange_of(&odd, &[])).await;
    assert_oauth_error(response, 400, "invalid_scope").await;
}

#[tokio::test]
async fn too_many_tickets_and_a_full_store_keep_their_codes_in_the_rfc_shape() {
    let app = spawn_app_with(|c| {
        c.tickets.per_subject = 1;
        c.tickets.total = 2;
    })
    .await;
    let alice = app.token("alice", &[], &[]);
    assert_eq!(
        exchange(&app, &exchange_of(&alice, &[])).await.status(),
        200
    );
    let response = exchange(&app, &exchange_of(&alice, &[])).await;
    assert!(!header(&response, "retry-after").is_empty(), "Retry-After");
    assert_oauth_error(response, 429, "too_many_tickets").await;

    let bob = app.token("bob", &[], &[]);
    assert_eq!(exchange(&app, &exchange_of(&bob, &[])).await.status(), 200);
    let carol = app.token("carol", &[], &[]);
    let response = exchange(&app, &exchange_of(&carol, &[])).await;
    assert_oauth_error(response, 503, "unavailable").await;
}

#[tokio::test]
async fn the_json_form_keeps_working_under_a_form_content_type() {
    // curl -d '{"topics": …}' sends JSON as application/x-www-form-urlencoded.
    let app = spawn_app().await;
    let bearer = app.token("alice", &["orders/*"], &[]);
    for body in [r#"{"topics": ["orders/1"]}"#, ""] {
        let response = app
            .client
            .post(app.url("/sse-token"))
            .bearer_auth(&bearer)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), 200, "{body:?}");
        let json: Value = response.json().await.expect("JSON");
        assert!(json["ticket"].is_string(), "the JSON form: {json}");
    }
    // Without a bearer, a JSON body under that type is the JSON form's 401.
    let response = post_form(&app, r#"{"topics": []}"#.into()).await;
    assert_error(response, 401, "missing_token").await;
}

#[tokio::test]
async fn the_metadata_advertises_the_token_endpoint() {
    let app = spawn_app().await;
    let json = metadata(&app, &[]).await;
    let base = app.url("");
    assert_eq!(
        json,
        serde_json::json!({
            "issuer": base,
            "token_endpoint": format!("{base}/sse-token"),
            "grant_types_supported": [GRANT],
            "token_endpoint_auth_methods_supported": ["none"],
        })
    );
}

/// `GET /.well-known/oauth-authorization-server` with `headers`, as JSON.
async fn metadata(app: &TestApp, headers: &[(&str, &str)]) -> Value {
    let request = app
        .client
        .get(app.url("/.well-known/oauth-authorization-server"));
    let request = headers.iter().fold(request, |request, (name, value)| {
        request.header(*name, *value)
    });
    let response = request.send().await.expect("GET");
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

#[tokio::test]
async fn the_metadata_names_the_proxy_s_url_only_from_a_trusted_proxy() {
    let forwarded = [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "events.example.com"),
    ];
    let untrusted = spawn_app().await;
    let json = metadata(&untrusted, &forwarded).await;
    assert_eq!(json["issuer"], untrusted.url(""));

    let proxies = TrustedProxies::parse(["127.0.0.1/32"]).expect("proxies");
    let trusted = spawn_app_with(|c| c.trusted_proxies = proxies).await;
    let json = metadata(&trusted, &forwarded).await;
    assert_eq!(json["issuer"], "https://events.example.com");
    assert_eq!(
        json["token_endpoint"],
        "https://events.example.com/sse-token"
    );

    // A host that is no host name falls back to the listen address.
    let json = metadata(&untrusted, &[("host", "evil\"/x")]).await;
    assert_eq!(json["issuer"], untrusted.url(""));
}
