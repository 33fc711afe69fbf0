//! Smoke load: the real server on 127.0.0.1:0 in this process, the load
//! generator as a child process, every mode once with a tiny load.

use std::process::Output;

use serde_json::Value;
use sse_ticket::Config;
use sse_ticket::auth::KeySource;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

const SECRET: &str = "smoke-secret-that-is-long-enough-for-hs256!";

/// Starts sse-ticket with a fresh SQLite file; returns its base URL.
async fn start_server(dir: &tempfile::TempDir) -> String {
    let mut config = Config::new(KeySource::Secret(SECRET.into()));
    config.bind = "127.0.0.1:0".into();
    config.database_url = format!("sqlite://{}", dir.path().join("smoke.db").display())
        .parse()
        .expect("a database URL");
    let server = sse_ticket::build(config).await.expect("the server starts");
    let base = format!("http://{}", server.local_addr());
    tokio::spawn(server.run());
    base
}

/// Runs the load generator with `args` and returns its output.
async fn run_load(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_sse-ticket-load"))
            .args(&args)
            .env_remove("SSE_TICKET_JWT_SECRET")
            .output()
            .expect("the load generator runs")
    })
    .await
    .expect("the blocking task completes")
}

/// Runs one mode against `base` and returns its JSON line, checking it exited 0.
async fn load(base: &str, mode: &[&str]) -> Value {
    let mut args: Vec<String> = mode.iter().map(|s| (*s).to_owned()).collect();
    args.extend([
        "--url".into(),
        base.into(),
        "--secret".into(),
        SECRET.into(),
        "--server-pid".into(),
        std::process::id().to_string(),
    ]);
    let output = run_load(args).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{mode:?} exited with {}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line on stdout, got {stdout}");
    eprintln!("{stderr}");
    serde_json::from_str(lines[0]).expect("the line is JSON")
}

fn number(line: &Value, key: &str) -> f64 {
    line[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is a number in {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_runs_a_tiny_load() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let base = start_server(&dir).await;

    let issue = load(
        &base,
        &[
            "issue",
            "--duration",
            "1s",
            "--connections",
            "2",
            "--subjects",
            "256",
        ],
    )
    .await;
    assert_eq!(issue["mode"], "issue");
    assert_eq!(issue["path"], "/sse-token");
    assert_eq!(issue["connections"], 2);
    assert!(number(&issue, "rps") > 0.0, "{issue}");
    assert_eq!(issue["requests"], issue["ok"], "{issue}");
    assert_eq!(issue["errors"], serde_json::json!({}), "{issue}");
    assert!(number(&issue, "p99_ms") >= number(&issue, "p50_ms"));

    let healthz = load(
        &base,
        &[
            "issue",
            "--path",
            "/healthz",
            "--duration",
            "1s",
            "--connections",
            "2",
        ],
    )
    .await;
    assert_eq!(healthz["path"], "/healthz");
    assert_eq!(healthz["method"], "GET");
    assert!(number(&healthz, "rps") > 0.0, "{healthz}");
    assert_eq!(healthz["requests"], healthz["ok"], "{healthz}");

    // /publish with a fresh Idempotency-Key on each request, then one key
    // repeated: every answer a 200.
    for keys in ["fresh", "repeat"] {
        let publish = load(
            &base,
            &[
                "issue",
                "--path",
                "/publish",
                "--body",
                r#"{"topic":"smoke","data":1}"#,
                "--idempotency-key",
                keys,
                "--duration",
                "1s",
                "--connections",
                "2",
            ],
        )
        .await;
        assert_eq!(publish["idempotency_key"], keys);
        assert!(number(&publish, "ok") > 0.0, "{publish}");
        assert_eq!(publish["requests"], publish["ok"], "{publish}");
    }

    let streams = load(&base, &["streams", "--n", "20", "--hold", "1s"]).await;
    assert_eq!(streams["opened"], 20, "{streams}");
    assert_eq!(streams["still_open"], 20, "{streams}");
    assert!(number(&streams, "open_rate") > 0.0);
    assert!(number(&streams, "rss_after_kb") > 0.0);
    assert!(streams["rss_per_stream_bytes"].is_number(), "{streams}");

    let fanout = load(
        &base,
        &["fanout", "--subs", "5", "--events", "20", "--rate", "100"],
    )
    .await;
    assert_eq!(fanout["published"], 20, "{fanout}");
    assert_eq!(fanout["expected"], 100, "{fanout}");
    assert_eq!(fanout["delivered"], fanout["expected"], "{fanout}");
    assert!(number(&fanout, "max_ms") > 0.0);

    let soak = load(
        &base,
        &[
            "soak",
            "--duration",
            "2s",
            "--connections",
            "2",
            "--subjects",
            "256",
        ],
    )
    .await;
    assert!(number(&soak, "rps") > 0.0, "{soak}");
    let series = soak["rss_kb"].as_array().expect("an RSS series");
    assert!(series.len() >= 2, "{soak}");
    assert!(
        soak["plateau"].is_null(),
        "2s is shorter than two TTLs: {soak}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_fanout_measures_a_plain_eventsource_server() {
    let (sub, publish) = start_raw_server().await;
    let fanout = load(
        "http://127.0.0.1:1",
        &[
            "fanout",
            "--subs",
            "3",
            "--events",
            "10",
            "--rate",
            "200",
            "--raw-sub",
            &sub,
            "--raw-pub",
            &publish,
            "--settle",
            "100ms",
        ],
    )
    .await;
    assert_eq!(fanout["target"], "raw");
    assert_eq!(fanout["expected"], 30, "{fanout}");
    assert_eq!(fanout["delivered"], 30, "{fanout}");
}

#[tokio::test]
async fn refuses_addresses_off_this_machine() {
    let output = run_load(
        [
            "issue",
            "--path",
            "/healthz",
            "--url",
            "http://192.0.2.1:8080",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("only sent to loopback"), "{stderr}");
    assert!(output.stdout.is_empty());
}

/// A minimal nchan-like server: `GET /sub` streams `data: <body>` for every
/// `POST /pub` body. Returns both URLs.
async fn start_raw_server() -> (String, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (events, _) = broadcast::channel::<String>(1024);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve_raw(socket, events.clone()));
        }
    });
    (format!("http://{addr}/sub"), format!("http://{addr}/pub"))
}

async fn serve_raw(socket: TcpStream, events: broadcast::Sender<String>) {
    let (read, mut write) = socket.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if read.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if read.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        if request_line.starts_with("GET /sub") {
            let mut subscription = events.subscribe();
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n: hi\n\n";
            if write.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            while let Ok(message) = subscription.recv().await {
                if write
                    .write_all(format!("data: {message}\n\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
            return;
        }
        let mut body = vec![0; length];
        if read.read_exact(&mut body).await.is_err() {
            return;
        }
        let _ = events.send(String::from_utf8_lossy(&body).into_owned());
        let answer = "HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n";
        if write.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}
