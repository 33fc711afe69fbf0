//! Cross-origin pages: allowed origins may fetch tickets and read streams.

use crate::helpers::spawn_app_with;

const ALLOWED: &str = "https://app.example.com";

#[tokio::test]
async fn an_allowed_origin_passes_the_preflight_and_reads_the_stream() {
    let app = spawn_app_with(|c| c.cors_origins = vec![ALLOWED.into()]).await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/sse-token"))
        .header("origin", ALLOWED)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("preflight");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], ALLOWED);
    let allowed_headers = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_ascii_lowercase();
    assert!(
        allowed_headers.contains("authorization"),
        "{allowed_headers}"
    );

    let bearer = app.token("alice", &[], &[]);
    let ticket = app
        .client
        .post(app.url("/sse-token"))
        .header("origin", ALLOWED)
        .bearer_auth(&bearer)
        .send()
        .await
        .expect("ticket");
    assert_eq!(ticket.headers()["access-control-allow-origin"], ALLOWED);
    let json: serde_json::Value = ticket.json().await.expect("JSON");
    let stream = app
        .client
        .get(app.url(json["stream_url"].as_str().expect("stream_url")))
        .header("origin", ALLOWED)
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["access-control-allow-origin"], ALLOWED);
}

#[tokio::test]
async fn another_origin_gets_no_cors_grant() {
    let app = spawn_app_with(|c| c.cors_origins = vec![ALLOWED.into()]).await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/sse-token"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    assert!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let ticket = app.ticket(&app.token("alice", &[], &[]), &[]).await;
    let stream = app
        .client
        .get(app.url(&format!("/stream?token={ticket}")))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("stream");
    assert!(
        stream
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn without_configured_origins_nothing_is_granted() {
    let app = spawn_app_with(|_| {}).await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("origin", ALLOWED)
        .send()
        .await
        .expect("request");
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let ticket = app
        .client
        .post(app.url("/sse-token"))
        .header("origin", ALLOWED)
        .bearer_auth(app.token("alice", &[], &[]))
        .send()
        .await
        .expect("ticket");
    assert_eq!(ticket.status(), 200);
    assert!(
        ticket
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}
