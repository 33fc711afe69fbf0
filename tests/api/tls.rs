//! TLS on the listener: HTTP/2 and HTTP/1.1 by ALPN on one port, many streams
//! over one HTTP/2 connection, resets, certificate reload, and bad TLS input.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use sse_ticket::tls::TlsFiles;
use tokio::io::AsyncBufReadExt as _;

use crate::helpers::{
    PATIENCE, SECRET, SseStream, TestCert, fresh_database_url, h2_connection, h2_stream, h2_tls,
    output, read_banner, root_certificate, serve, spawn_tls_app, sse_ticket, terminate,
};

#[tokio::test]
async fn http2_and_http1_share_one_listener_and_behave_alike() {
    let (app, cert) = spawn_tls_app(|c| c.heartbeat = Duration::from_millis(200)).await;
    let mut streams = Vec::new();
    for (client, version) in [
        (cert.client(false), http::Version::HTTP_2),
        (cert.client(true), http::Version::HTTP_11),
    ] {
        let bearer = app.token("alice", &["t"], &[]);
        let issued = client
            .post(app.url("/sse-token"))
            .bearer_auth(&bearer)
            .json(&json!({ "topics": ["t"] }))
            .send()
            .await
            .expect("POST /sse-token");
        assert_eq!(issued.version(), version, "ALPN");
        assert_eq!(issued.status(), 200);
        let issued: Value = issued.json().await.expect("JSON");
        let response = client
            .get(app.url("/stream"))
            .query(&[("token", issued["ticket"].as_str().expect("ticket"))])
            .send()
            .await
            .expect("GET /stream");
        assert_eq!(response.version(), version);
        assert_eq!(response.status(), 200);
        let mut stream = SseStream::new(response);
        stream.next_frame().await; // retry
        assert_eq!(stream.next_frame().await.event.as_deref(), Some("ready"));
        streams.push((version, stream));
    }
    let id = app.publish("t", None, json!("to both")).await;
    for (version, stream) in &mut streams {
        let event = stream.next_event().await;
        assert_eq!(event.id.as_deref(), Some(id.as_str()), "{version:?}");
        let ping = stream.next_frame().await;
        assert_eq!(
            ping.comment.as_deref(),
            Some("ping"),
            "heartbeat over {version:?}"
        );
    }
    app.stopper().stop().await;
    for (version, stream) in &mut streams {
        let close = stream.next_event().await;
        assert_eq!(close.event.as_deref(), Some("close"), "{version:?}");
        assert_eq!(close.json(), json!({ "reason": "shutdown" }));
    }
}

#[tokio::test]
async fn twenty_streams_over_one_http2_connection_all_receive_an_event() {
    let (app, cert) = spawn_tls_app(|c| c.streams.per_subject = 20).await;
    let connection = h2_connection(&app, &cert).await;
    let bearer = app.token("alice", &["t"], &[]);
    let mut streams = Vec::new();
    for _ in 0..20 {
        let ticket = app.ticket(&bearer, &["t"]).await;
        streams.push(h2_stream(&connection, &app, &ticket).await);
    }
    assert_eq!(app.metric("sse_ticket_streams_open").await, 20.0);
    assert_eq!(
        connection.current_max_send_streams(),
        100,
        "the server advertises its limit on concurrent streams"
    );
    let id = app.publish("t", Some("multiplexed"), json!(20)).await;
    for stream in &mut streams {
        let event = stream.next_event().await;
        assert_eq!(
            (event.id.as_deref(), event.event.as_deref()),
            (Some(id.as_str()), Some("multiplexed"))
        );
    }
}

#[tokio::test]
async fn a_reset_http2_stream_frees_its_subscription_at_once() {
    // No heartbeat for an hour: nothing is written that would reveal the reset.
    let (app, cert) = spawn_tls_app(|c| c.heartbeat = Duration::from_secs(3600)).await;
    let connection = h2_connection(&app, &cert).await;
    let bearer = app.token("alice", &["t"], &[]);
    let mut kept = h2_stream(&connection, &app, &app.ticket(&bearer, &["t"]).await).await;
    let reset = h2_stream(&connection, &app, &app.ticket(&bearer, &["t"]).await).await;
    assert_eq!(app.metric("sse_ticket_streams_open").await, 2.0);

    drop(reset); // the client resets the stream (RST_STREAM, CANCEL)
    app.wait_for_metric("sse_ticket_streams_open", 1.0).await;
    app.wait_for_metric(r#"sse_ticket_streams_closed_total{reason="client"}"#, 1.0)
        .await;
    // The connection and its other stream carry on.
    let id = app.publish("t", None, json!("still here")).await;
    assert_eq!(kept.next_event().await.id.as_deref(), Some(id.as_str()));
}

/// `serve` with TLS files, as a process of its own.
fn serve_tls(files: &TlsFiles) -> [(&'static str, String); 2] {
    [
        ("SSE_TICKET_TLS_CERT", files.cert.display().to_string()),
        ("SSE_TICKET_TLS_KEY", files.key.display().to_string()),
    ]
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_open_streams_survive() {
    let first = TestCert::new();
    let second = TestCert::new();
    let live = TestCert::new();
    let install = |from: &TestCert| {
        for name in ["cert.pem", "key.pem"] {
            std::fs::copy(from.dir.join(name), live.dir.join(name)).expect("copy");
        }
    };
    install(&first);
    let env = serve_tls(&live.files());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut process = serve(&["--dev"], &env).await;
    assert!(process.base.starts_with("https://"), "{}", process.base);

    let mut stream = process.open_stream(&first.client(false)).await;

    install(&second);
    let pid = process.child.id().expect("running").to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    // A new connection sees the new certificate (once the signal is handled).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let healthz = format!("{}/healthz", process.base);
    while second.client(false).get(&healthz).send().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate is served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        first.client(false).get(&healthz).send().await.is_err(),
        "the old certificate is gone for new connections"
    );
    // The stream opened before the reload keeps receiving.
    let published = process
        .publish(
            &second.client(false),
            r#"{"topic":"orders/1","data":"after the reload"}"#,
        )
        .await;
    assert_eq!(published, 200);
    assert_eq!(stream.next_event().await.json(), json!("after the reload"));

    // A broken file on the next reload keeps the current certificate.
    std::fs::write(live.dir.join("cert.pem"), "garbage").expect("write");
    let signalled = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    assert_eq!(
        second
            .client(false)
            .get(&healthz)
            .send()
            .await
            .expect("still served")
            .status(),
        200
    );
    terminate(&process.child);
    let _ = process.child.wait().await;
}

#[tokio::test]
async fn bad_tls_settings_stop_start_up_with_one_clear_line() {
    let good = TestCert::new();
    let other = TestCert::new();
    let garbage = good.dir.join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64\n").expect("write");
    let missing = good.dir.join("missing.pem");
    let path = |p: &Path| p.display().to_string();
    // (environment, extra flags, what the one line says)
    type Case<'a> = (Vec<(&'a str, String)>, Vec<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("SSE_TICKET_TLS_CERT", path(&good.cert()))],
            vec![],
            "SSE_TICKET_TLS_CERT is set without SSE_TICKET_TLS_KEY",
        ),
        (
            vec![("SSE_TICKET_TLS_KEY", path(&good.files().key))],
            vec![],
            "SSE_TICKET_TLS_KEY is set without SSE_TICKET_TLS_CERT",
        ),
        (
            vec![
                ("SSE_TICKET_TLS_CERT", path(&missing)),
                ("SSE_TICKET_TLS_KEY", path(&good.files().key)),
            ],
            vec![],
            "cannot read the TLS certificate from",
        ),
        (
            vec![
                ("SSE_TICKET_TLS_CERT", path(&garbage)),
                ("SSE_TICKET_TLS_KEY", path(&good.files().key)),
            ],
            vec![],
            "cannot read the TLS certificate from",
        ),
        (
            vec![
                ("SSE_TICKET_TLS_CERT", path(&good.cert())),
                ("SSE_TICKET_TLS_KEY", path(&garbage)),
            ],
            vec![],
            "cannot read the TLS private key from",
        ),
        (
            vec![
                ("SSE_TICKET_TLS_CERT", path(&good.cert())),
                ("SSE_TICKET_TLS_KEY", path(&other.files().key)),
            ],
            vec![],
            "does not fit the certificate",
        ),
        (
            vec![],
            vec!["--tls"],
            "--tls generates a development certificate",
        ),
    ];
    for (env, flags, needle) in cases {
        let mut args = vec!["serve", "--bind", "127.0.0.1:0"];
        args.extend(flags);
        let mut command = sse_ticket(&args);
        command
            .env("SSE_TICKET_JWT_SECRET", SECRET)
            .env("SSE_TICKET_DATABASE_URL", fresh_database_url().await)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let out = output(command).await;
        let stderr = String::from_utf8(out.stderr).expect("UTF-8");
        assert_eq!(out.status.code(), Some(2), "{needle}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(needle),
            "{needle}: {stderr}"
        );
    }
}

#[tokio::test]
async fn dev_tls_generates_a_certificate_and_says_how_to_trust_it() {
    let dir = std::env::temp_dir().join(format!("sse-ticket-devtls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let start = || {
        let mut command = sse_ticket(&["serve", "--dev", "--tls", "--bind", "127.0.0.1:0"]);
        command
            .current_dir(&dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command.spawn().expect("serve starts")
    };
    let mut child = start();
    let (base, banner) = read_banner(&mut child).await;
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let cert = std::fs::canonicalize(dir.join("sse-ticket-dev-tls/cert.pem")).expect("cert.pem");
    let cacert = format!("--cacert {}", cert.display());
    assert!(banner.join("\n").contains(&cacert), "{banner:?}");
    let client = reqwest::Client::builder()
        .add_root_certificate(root_certificate(&cert))
        .build()
        .expect("client");
    let healthz = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        (healthz.version(), healthz.status().as_u16()),
        (http::Version::HTTP_2, 200)
    );
    terminate(&child);
    let _ = child.wait().await;

    // The next start keeps the certificate a browser may have been told to trust.
    let before = std::fs::read(&cert).expect("cert");
    let mut child = start();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let (base, _) = read_banner(&mut child).await;
    let healthz = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("GET");
    assert_eq!(healthz.status(), 200);
    assert_eq!(std::fs::read(&cert).expect("cert"), before);
    terminate(&child);
    let _ = child.wait().await;
    while let Ok(Some(line)) = stderr.next_line().await {
        assert!(!line.contains("ERROR"), "{line}");
    }
}

#[tokio::test]
async fn an_http2_stream_whose_client_takes_no_bytes_is_reset_and_freed() {
    let (app, cert) = spawn_tls_app(|c| {
        c.streams.write_timeout = Duration::from_secs(1);
        c.retention.history_max_per_topic = 0;
    })
    .await;
    // Small stream windows, a large connection window: one stream can stall
    // while the connection and its other streams still move.
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(16 * 1024)
        .initial_connection_window_size(8 * 1024 * 1024)
        .handshake::<_, Bytes>(h2_tls(&app, &cert).await)
        .await
        .expect("h2 handshake");
    tokio::spawn(connection);
    let bearer = app.token("alice", &["t"], &[]);
    let mut kept = h2_stream(&client, &app, &app.ticket(&bearer, &["t"]).await).await;

    // A stream whose body is never read: its window is never given back.
    let ticket = app.ticket(&bearer, &["t"]).await;
    let mut sender = client.clone().ready().await.expect("a stream slot");
    let request = http::Request::get(app.url(&format!("/stream?token={ticket}")))
        .body(())
        .expect("request");
    let (response, _) = sender.send_request(request, true).expect("sent");
    let stalled = response.await.expect("response");
    assert_eq!(stalled.status(), 200);
    assert_eq!(app.metric("sse_ticket_streams_open").await, 2.0);

    let data = json!("x".repeat(20 * 1024));
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.publish("t", None, data.clone()).await);
        assert_eq!(kept.next_event().await.id, ids.last().cloned());
    }
    app.wait_for_metric("sse_ticket_streams_open", 1.0).await;
    assert_eq!(
        app.metric(r#"sse_ticket_streams_closed_total{reason="write_timeout"}"#)
            .await,
        1.0
    );
    // The connection and its other stream carry on.
    let id = app.publish("t", None, json!("still here")).await;
    assert_eq!(kept.next_event().await.id.as_deref(), Some(id.as_str()));
    drop(stalled);
}
