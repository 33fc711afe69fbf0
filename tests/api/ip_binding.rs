//! Tickets bound to the client IP that requested them, and the client IP
//! behind trusted proxies (`SSE_TICKET_BIND_TICKET_TO_IP`,
//! `SSE_TICKET_TRUSTED_PROXIES`).

use std::net::IpAddr;

use serde_json::Value;
use sse_ticket::client_ip::{IpBinding, TrustedProxies};

use crate::helpers::{PATIENCE, SECRET, TestApp, assert_error, output, spawn_app_with, sse_ticket};

const REFUSED: &str = "sse_ticket_tickets_rejected_total{reason=\"client_mismatch\"}";

/// A server binding tickets by `binding`, trusting `proxies`.
async fn spawn(binding: IpBinding, proxies: &[&str]) -> TestApp {
    let proxies = TrustedProxies::parse(proxies.iter().copied()).expect("proxies");
    spawn_app_with(|config| {
        config.bind_ticket_to_ip = binding;
        config.trusted_proxies = proxies;
    })
    .await
}

/// An HTTP client whose connections leave from `source` (any 127.0.0.0/8
/// address is the loopback on Linux).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().expect("an address"))
        .read_timeout(PATIENCE)
        .build()
        .expect("client")
}

/// A ticket of alice's, requested over `client` with `X-Forwarded-For: xff`.
async fn ticket_via(app: &TestApp, client: &reqwest::Client, xff: Option<&str>) -> String {
    let mut request = client
        .post(app.url("/sse-token"))
        .bearer_auth(app.token("alice", &[], &[]));
    if let Some(xff) = xff {
        request = request.header("x-forwarded-for", xff);
    }
    let response = request.send().await.expect("POST /sse-token");
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.expect("JSON");
    json["ticket"].as_str().expect("ticket").to_owned()
}

/// `GET /stream` with `ticket` over `client`, with `X-Forwarded-For: xff`.
async fn open_via(
    app: &TestApp,
    client: &reqwest::Client,
    ticket: &str,
    xff: Option<&str>,
) -> reqwest::Response {
    let mut request = client.get(app.url("/stream")).query(&[("token", ticket)]);
    if let Some(xff) = xff {
        request = request.header("x-forwarded-for", xff);
    }
    request.send().await.expect("GET /stream")
}

/// Waits until the audit trail holds a rejection for `reason` from `client_ip`.
async fn wait_for_rejection(app: &TestApp, reason: &str, client_ip: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let response = app
            .client
            .get(app.url("/admin/audit?limit=100"))
            .bearer_auth(app.admin_token("ops"))
            .send()
            .await
            .expect("GET /admin/audit");
        let json: Value = response.json().await.expect("JSON");
        let rows = json["records"].as_array().cloned().unwrap_or_default();
        if rows
            .iter()
            .any(|row| row["reason"] == reason && row["client_ip"] == client_ip)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {reason} row from {client_ip}: {rows:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_ticket_presented_from_another_address_is_refused_and_spent() {
    let app = spawn(IpBinding::Exact, &[]).await;
    let (home, elsewhere) = (client_from("127.0.0.1"), client_from("127.0.0.2"));
    let ticket = ticket_via(&app, &home, None).await;

    let response = open_via(&app, &elsewhere, &ticket, None).await;
    assert_error(response, 401, "invalid_ticket").await;
    assert_eq!(app.metric(REFUSED).await, 1.0);
    wait_for_rejection(&app, "client_mismatch", "127.0.0.2").await;

    // Spent: not even its own client may use it now.
    let response = open_via(&app, &home, &ticket, None).await;
    assert_error(response, 401, "invalid_ticket").await;

    let ticket = ticket_via(&app, &home, None).await;
    let response = open_via(&app, &home, &ticket, None).await;
    assert_eq!(
        response.status(),
        200,
        "redeemed from where it was requested"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_counts() {
    let app = spawn(IpBinding::Exact, &["127.0.0.0/8"]).await;
    let proxy = client_from("127.0.0.1");
    // The client may forge the left of the chain; the proxy appends the peer it saw.
    let ticket = ticket_via(&app, &proxy, Some("192.0.2.66, 198.51.100.7")).await;
    let response = open_via(&app, &proxy, &ticket, Some("198.51.100.8")).await;
    assert_error(response, 401, "invalid_ticket").await;
    wait_for_rejection(&app, "client_mismatch", "198.51.100.8").await;

    let ticket = ticket_via(&app, &proxy, Some("192.0.2.66, 198.51.100.7")).await;
    let response = open_via(&app, &proxy, &ticket, Some("198.51.100.7, 127.0.0.9")).await;
    assert_eq!(response.status(), 200, "the same client behind two proxies");
}

#[tokio::test]
async fn from_an_untrusted_peer_x_forwarded_for_is_ignored() {
    let app = spawn(IpBinding::Exact, &["10.0.0.0/8"]).await;
    let (home, elsewhere) = (client_from("127.0.0.1"), client_from("127.0.0.2"));
    // A forged header cannot carry a ticket to another address...
    let ticket = ticket_via(&app, &home, Some("198.51.100.7")).await;
    let response = open_via(&app, &elsewhere, &ticket, Some("198.51.100.7")).await;
    assert_error(response, 401, "invalid_ticket").await;
    assert_eq!(app.metric(REFUSED).await, 1.0);
    wait_for_rejection(&app, "client_mismatch", "127.0.0.2").await;

    // ...nor keep its own client from using it.
    let ticket = ticket_via(&app, &home, Some("198.51.100.7")).await;
    let response = open_via(&app, &home, &ticket, Some("198.51.100.8")).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn prefix_mode_accepts_a_neighbour_in_the_same_ipv4_slash_24() {
    let app = spawn(IpBinding::Prefix, &[]).await;
    let home = client_from("127.0.0.1");
    let ticket = ticket_via(&app, &home, None).await;
    let response = open_via(&app, &client_from("127.0.0.2"), &ticket, None).await;
    assert_eq!(response.status(), 200, "127.0.0.2 is in 127.0.0.0/24");

    let ticket = ticket_via(&app, &home, None).await;
    let response = open_via(&app, &client_from("127.0.1.1"), &ticket, None).await;
    assert_error(response, 401, "invalid_ticket").await;
    assert_eq!(app.metric(REFUSED).await, 1.0);
}

#[tokio::test]
async fn prefix_mode_accepts_a_neighbour_in_the_same_ipv6_slash_64() {
    // IPv6 on the loopback is ::1 alone: the addresses come through a trusted proxy.
    let app = spawn(IpBinding::Prefix, &["127.0.0.1"]).await;
    let proxy = client_from("127.0.0.1");
    let ticket = ticket_via(&app, &proxy, Some("2001:db8:1:2::7")).await;
    let response = open_via(&app, &proxy, &ticket, Some("2001:db8:1:2:ffff::1")).await;
    assert_eq!(response.status(), 200, "same /64");

    let ticket = ticket_via(&app, &proxy, Some("2001:db8:1:2::7")).await;
    let response = open_via(&app, &proxy, &ticket, Some("2001:db8:1:3::7")).await;
    assert_error(response, 401, "invalid_ticket").await;
    assert_eq!(app.metric(REFUSED).await, 1.0);
}

#[tokio::test]
async fn unbound_tickets_are_redeemable_from_anywhere_by_default() {
    let app = spawn_app_with(|_| {}).await;
    let ticket = ticket_via(&app, &client_from("127.0.0.1"), None).await;
    let response = open_via(&app, &client_from("127.0.0.2"), &ticket, None).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_trusted_proxy_that_is_not_a_cidr_stops_start_up_naming_the_variable() {
    let mut command = sse_ticket(&["serve", "--bind", "127.0.0.1:0"]);
    command
        .env("SSE_TICKET_JWT_SECRET", SECRET)
        .env("SSE_TICKET_TRUSTED_PROXIES", "10.0.0.0/8,10.0.0.0/33");
    let out = output(command).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).expect("UTF-8");
    assert!(stderr.contains("SSE_TICKET_TRUSTED_PROXIES"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let mut command = sse_ticket(&["serve", "--bind", "127.0.0.1:0"]);
    command
        .env("SSE_TICKET_JWT_SECRET", SECRET)
        .env("SSE_TICKET_BIND_TICKET_TO_IP", "sometimes");
    let out = output(command).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).expect("UTF-8");
    assert!(stderr.contains("bind-ticket-to-ip"), "{stderr}");
}
