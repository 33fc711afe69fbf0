//! `verifiers`: the latency `POST /sse-token` adds when an upstream verifies
//! the bearer (RFC 7662 introspection), with the answer cached and uncached,
//! against the local-key path. One sequential run alternates the three kinds
//! of request, each on its own keep-alive connection, so every kind sees the
//! same machine at the same moment. The introspection endpoint is a stub
//! served by this process (`--stub-bind`), answering at once, so what is
//! measured is sse-ticket's own cost of asking.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::Verdict;
use crate::auth::Permissions;
use crate::http::{Client, RequestTemplate};
use crate::issue::TICKET_PATH;
use crate::report::{Latency, round3};
use crate::target::{Context, Endpoint};

/// Flags of `verifiers`. `--url` and `--secret` name the server that verifies
/// with its HMAC secret (the local-key path).
#[derive(Debug, Clone, clap::Args)]
pub struct VerifiersArgs {
    /// Base URL of the server whose `SSE_TICKET_INTROSPECTION_URL` is
    /// `http://<stub-bind>/introspect`.
    #[arg(long)]
    pub remote_url: String,
    /// Where this process serves the stub introspection endpoint.
    #[arg(long, default_value = "127.0.0.1:18190")]
    pub stub_bind: SocketAddr,
    /// Rounds; each sends one request of each kind, in turn.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
}

/// The three kinds of request, in the order each round sends them.
const KINDS: [&str; 3] = [
    "local_key",
    "introspection_cached",
    "introspection_uncached",
];

/// Runs `verifiers`.
pub async fn run(ctx: &Context, args: VerifiersArgs) -> anyhow::Result<Verdict> {
    let remote = Endpoint::parse(&args.remote_url)?;
    let stub = tokio::net::TcpListener::bind(args.stub_bind)
        .await
        .with_context(|| format!("cannot serve the stub on {}", args.stub_bind))?;
    tokio::spawn(serve_stub(stub));

    let local_bearer = ctx
        .credentials()?
        .bearer("latency-local", &Permissions::default())?;
    let cached_bearer = HeaderValue::from_static("Bearer opaque-cached");
    let local = RequestTemplate::at(&ctx.base, Method::POST, TICKET_PATH, Bytes::new())?;
    let upstream = RequestTemplate::at(&remote, Method::POST, TICKET_PATH, Bytes::new())?;
    let mut clients = [
        Client::new(ctx.base.addr),
        Client::new(remote.addr),
        Client::new(remote.addr),
    ];
    let mut latencies = [Latency::new(), Latency::new(), Latency::new()];

    // One of each first: connections open, the cached answer cached.
    for round in 0..=args.rounds {
        for (kind, (client, latency)) in clients.iter_mut().zip(&mut latencies).enumerate() {
            let request = match kind {
                0 => local.build(Some(&local_bearer)),
                1 => upstream.build(Some(&cached_bearer)),
                _ => {
                    let fresh = HeaderValue::from_str(&format!("Bearer opaque-{round}"))?;
                    upstream.build(Some(&fresh))
                }
            };
            let started = Instant::now();
            let (status, body) = client
                .fetch(request)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {}", KINDS[kind], e.key()))?;
            if status != StatusCode::OK {
                bail!(
                    "{}: /sse-token answered {status}: {}",
                    KINDS[kind],
                    String::from_utf8_lossy(&body)
                );
            }
            if round > 0 {
                latency.record(started.elapsed());
            }
        }
    }

    let median = |i: usize| latencies[i].quantile_ms(0.5);
    let mut out = serde_json::Map::new();
    out.insert("mode".into(), json!("verifiers"));
    out.insert("rounds".into(), json!(args.rounds));
    for (kind, latency) in KINDS.iter().zip(&latencies) {
        latency.json_into(kind, &mut out);
        eprintln!("{kind:>24}: {}", latency.human());
    }
    for (i, kind) in KINDS.iter().enumerate().skip(1) {
        let added = round3(median(i) - median(0));
        out.insert(format!("{kind}_added_p50_ms"), json!(added));
        eprintln!("{kind:>24}: +{added} ms at the median over the local key");
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(Verdict::Pass)
}

/// Serves the stub RFC 7662 endpoint: every token is active, its `sub` the
/// token itself, valid for an hour.
async fn serve_stub(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(introspect);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn introspect(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let token = form_value(&body, "token").unwrap_or_default();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
        + 3600;
    let answer = json!({ "active": !token.is_empty(), "sub": token, "exp": exp });
    let mut response = Response::new(Full::new(Bytes::from(answer.to_string())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// The value of `name` in a form body whose values need no decoding.
fn form_value(body: &[u8], name: &str) -> Option<String> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .map(ToOwned::to_owned)
}
