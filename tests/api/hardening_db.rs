//! The database paths under abuse: audit floods, costly resumes, bad stored
//! events and a database that stops answering.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use sse_ticket::clock::Clock as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::{
    PATIENCE, SseStream, TestApp, assert_error, execute_sql, fresh_database_url, resume, spawn_app,
    spawn_config, test_config,
};

/// What `GET /admin/audit` holds, newest first.
async fn audit_rows(app: &TestApp, query: &str) -> Vec<Value> {
    let response = app
        .client
        .get(app.url(&format!("/admin/audit{query}")))
        .bearer_auth(app.admin_token("ops"))
        .send()
        .await
        .expect("GET /admin/audit");
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.expect("JSON");
    json["records"].as_array().expect("records").clone()
}

/// Polls the audit trail until `done` holds for its rows.
async fn audit_until(app: &TestApp, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let rows = audit_rows(app, "?limit=1000").await;
        if done(&rows) {
            return rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}; the trail holds {rows:#?}"
        );
        tokio::task::yield_now().await;
    }
}

fn rejected(rows: &[Value]) -> Vec<&Value> {
    rows.iter()
        .filter(|r| r["action"] == "ticket_rejected")
        .collect()
}

#[tokio::test]
async fn bad_tickets_from_one_ip_make_one_counted_row_and_a_revocation_amid_them_is_kept() {
    let app = Arc::new(spawn_app().await);
    let flood = tokio::spawn({
        let app = app.clone();
        async move {
            futures_util::stream::iter(0..300)
                .map(|_| {
                    let app = app.clone();
                    async move {
                        let unknown = uuid::Uuid::new_v4().to_string();
                        assert_error(app.get_stream(&unknown).await, 401, "invalid_ticket").await;
                    }
                })
                .buffer_unordered(8)
                .collect::<Vec<()>>()
                .await;
        }
    });
    // Revoke while the flood is on.
    let unknown = r#"sse_ticket_tickets_rejected_total{reason="unknown"}"#;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while app.metric(unknown).await < 100.0 {
        assert!(tokio::time::Instant::now() < deadline, "the flood started");
        tokio::task::yield_now().await;
    }
    assert_eq!(app.revoke("mallory").await.status(), 200);
    flood.await.expect("the flood");
    assert_eq!(app.metric(unknown).await, 300.0);

    // The clock minute is over: the row gets the rest of its count.
    app.advance(Duration::from_secs(60));
    let rows = audit_until(&app, "one rejected row counting 300", |rows| {
        rejected(rows).first().is_some_and(|r| r["count"] == 300)
    })
    .await;
    let rejections = rejected(&rows);
    assert_eq!(rejections.len(), 1, "one row for one IP, reason and minute");
    let row = rejections[0];
    assert_eq!(row["reason"], "unknown");
    assert_eq!(row["client_ip"], "127.0.0.1");
    assert!(
        row["ticket_fingerprint"].is_string(),
        "the first one's: {row}"
    );
    let revoked: Vec<&Value> = rows.iter().filter(|r| r["action"] == "revoked").collect();
    assert_eq!(revoked.len(), 1, "{rows:#?}");
    assert_eq!(revoked[0]["sub"], "mallory");
    assert_eq!(revoked[0]["count"], 1);
    assert_eq!(
        app.metric("sse_ticket_audit_records_dropped_total").await,
        0.0
    );
}

/// `data` of about `kib` KiB, tagged with `n`.
fn bulky(n: usize, kib: usize) -> Value {
    json!({ "n": n, "pad": "x".repeat(kib * 1024) })
}

#[tokio::test]
async fn a_deep_resume_replays_only_the_newest_4_mib_after_a_reset() {
    const LIMIT: usize = 4 * 1024 * 1024;
    let app = spawn_app().await;
    let mut ids = Vec::new();
    let mut sizes = Vec::new();
    for n in 0..80 {
        let data = bulky(n, 60);
        sizes.push(data.to_string().len());
        ids.push(app.publish("big", None, data).await);
    }
    // The newest events whose data fits in 4 MiB.
    let mut fit = 0;
    let mut total = 0;
    for size in sizes.iter().rev() {
        if total + size > LIMIT {
            break;
        }
        total += size;
        fit += 1;
    }
    assert!(
        fit < 79,
        "the test publishes more than 4 MiB after the first"
    );

    let mut stream = resume(&app, "alice", &["big"], &ids[0]).await;
    let reset = stream.next_event().await;
    assert_eq!(
        reset.event.as_deref(),
        Some("reset"),
        "reset first, got id {:?}",
        reset.id
    );
    let mut replayed = Vec::new();
    let mut bytes = 0;
    while replayed.last() != ids.last() {
        let frame = stream.next_event().await;
        bytes += frame.data.as_deref().map_or(0, str::len);
        replayed.push(frame.id.expect("an id"));
    }
    assert_eq!(replayed, ids[80 - fit..], "the newest that fit, in order");
    assert!(bytes <= LIMIT, "{bytes} bytes replayed");
    assert_eq!(app.metric("sse_ticket_replays_reset_total").await, 1.0);
    let live = app.publish("big", None, json!("live")).await;
    let next = stream.next_event().await;
    assert_eq!(next.id.as_deref(), Some(live.as_str()), "then live events");
}

#[tokio::test]
async fn an_unknown_id_resumes_from_the_time_it_carries_after_a_reset() {
    let app = spawn_app().await;
    app.publish("t", None, json!("before")).await;
    // An id of an event that was never stored, from between the two.
    let unknown = uuid::Uuid::now_v7().to_string();
    let after = [
        app.publish("t", None, json!("after 1")).await,
        app.publish("t", None, json!("after 2")).await,
    ];

    let mut stream = resume(&app, "alice", &["t"], &unknown).await;
    assert_eq!(stream.next_event().await.event.as_deref(), Some("reset"));
    for id in &after {
        assert_eq!(stream.next_event().await.id.as_deref(), Some(id.as_str()));
    }
    let live = app.publish("t", None, json!("live")).await;
    assert_eq!(stream.next_event().await.id.as_deref(), Some(live.as_str()));

    // An id that is no v7 carries no time: a reset, then live events only.
    let v4 = uuid::Uuid::new_v4().to_string();
    let mut stream = resume(&app, "alice", &["t"], &v4).await;
    assert_eq!(stream.next_event().await.event.as_deref(), Some("reset"));
    let live = app.publish("t", None, json!("live again")).await;
    assert_eq!(stream.next_event().await.id.as_deref(), Some(live.as_str()));
}

#[tokio::test]
async fn invalid_stored_events_are_skipped_and_counted_and_the_stream_lives_on() {
    let app = spawn_app().await;
    let first = app.publish("t", None, json!(1)).await;
    let newline = if app.database_url.starts_with("sqlite") {
        "char(10)"
    } else {
        "chr(10)"
    };
    let published_at = app.clock.now().timestamp_millis();
    for (topic, kind, data) in [
        ("'t'", format!("'bad type' || {newline}"), "'1'"),
        ("'t'", "'ready'".to_owned(), "'1'"),
        ("'t'", "'message'".to_owned(), "'not json'"),
        (&*format!("'t' || {newline}"), "'message'".to_owned(), "'1'"),
    ] {
        let id = uuid::Uuid::now_v7();
        execute_sql(
            &app.database_url,
            &format!(
                "INSERT INTO events (id, topic, kind, data, published_at) \
                 VALUES ('{id}', {topic}, {kind}, {data}, {published_at})"
            ),
        )
        .await;
    }
    let good = app.publish("t", Some("fine"), json!(2)).await;

    let mut stream: SseStream = resume(&app, "alice", &["*"], &first).await;
    let frame = stream.next_event().await;
    assert_eq!(
        (frame.id.as_deref(), frame.event.as_deref()),
        (Some(good.as_str()), Some("fine"))
    );
    assert_eq!(app.metric("sse_ticket_events_invalid_total").await, 4.0);
    let live = app.publish("t", None, json!(3)).await;
    assert_eq!(stream.next_event().await.id.as_deref(), Some(live.as_str()));
    // Every resume across them fares the same.
    let mut again = resume(&app, "alice", &["*"], &first).await;
    assert_eq!(again.next_event().await.id.as_deref(), Some(good.as_str()));
    assert_eq!(app.metric("sse_ticket_events_invalid_total").await, 8.0);
}

/// What a [`FreezableProxy`] holds back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freeze {
    /// Nothing: bytes flow both ways.
    Open,
    /// Every statement, though the pool's liveness pings (a bare Sync
    /// message) still get through and answered: a connection is taken, then
    /// its statement never ends, as with a database stuck on locks or I/O.
    AllButPings,
    /// Every byte, both ways, as a hung server or network.
    All,
}

/// A TCP proxy to Postgres that can be frozen: it then holds bytes and keeps
/// every socket open.
struct FreezableProxy {
    addr: std::net::SocketAddr,
    freeze: watch::Sender<Freeze>,
    stop: Arc<AtomicBool>,
}

impl FreezableProxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (freeze, watching) = watch::channel(Freeze::Open);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, true, watching.clone()));
                tokio::spawn(pump(server_read, client_write, false, watching.clone()));
            }
        });
        Self { addr, freeze, stop }
    }

    fn set(&self, freeze: Freeze) {
        self.freeze.send_replace(freeze);
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.freeze.send_replace(Freeze::Open);
    }
}

/// Copies `from` to `to`, holding a chunk as long as the freeze says so.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    upstream: bool,
    mut freeze: watch::Receiver<Freeze>,
) {
    let mut buffer = vec![0_u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &buffer[..n];
        let ping = !upstream || chunk == b"S\0\0\0\x04";
        let gone = freeze
            .wait_for(|f| match f {
                Freeze::Open => true,
                Freeze::AllButPings => ping,
                Freeze::All => false,
            })
            .await
            .is_err();
        if gone || to.write_all(chunk).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn publish_answers_503_within_seconds_while_the_database_hangs_then_recovers() {
    if std::env::var("SSE_TICKET_TEST_POSTGRES_URL").map_or(true, |u| u.is_empty()) {
        eprintln!("skipped: set SSE_TICKET_TEST_POSTGRES_URL to run it against Postgres");
        return;
    }
    let direct = fresh_database_url().await;
    let mut url = reqwest::Url::parse(&direct).expect("the Postgres URL");
    let upstream = format!(
        "{}:{}",
        url.host_str().expect("a host"),
        url.port().unwrap_or(5432)
    );
    let proxy = FreezableProxy::start(upstream).await;
    url.set_port(Some(proxy.addr.port())).expect("port");
    url.set_host(Some("127.0.0.1")).expect("host");
    // In the clear, so that the proxy can tell a ping from a statement.
    url.query_pairs_mut().append_pair("sslmode", "disable");
    let app = spawn_config(test_config(url.as_str())).await;
    let bearer = app.token("backend", &[], &["*"]);
    let body = json!({ "topic": "t", "data": "x" }).to_string();
    assert_eq!(app.post_publish(Some(&bearer), &body).await.status(), 200);

    for freeze in [Freeze::AllButPings, Freeze::All] {
        proxy.set(freeze);
        let answer = tokio::time::timeout(PATIENCE, app.post_publish(Some(&bearer), &body))
            .await
            .unwrap_or_else(|_| panic!("no answer in {PATIENCE:?} with {freeze:?}"));
        assert_error(answer, 503, "unavailable").await;
        assert_eq!(app.get("/healthz").await.status(), 200);
        assert!(app.metric("sse_ticket_database_timeouts_total").await >= 1.0);

        proxy.set(Freeze::Open);
        let answer = tokio::time::timeout(PATIENCE, app.post_publish(Some(&bearer), &body))
            .await
            .expect("an answer once the database is back");
        assert_eq!(
            answer.status(),
            200,
            "publishing works again after {freeze:?}"
        );
    }
}
