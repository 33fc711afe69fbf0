//! `streams`: open N streams (ticket, then `GET /stream` until `ready`),
//! report the open rate, hold them, and report the server's RSS per open
//! stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use serde_json::json;
use tokio::task::JoinSet;

use crate::Verdict;
use crate::auth::Permissions;
use crate::http::SseReader;
use crate::open::{self, Source};
use crate::report::{self, per_second, round3};
use crate::rss;
use crate::target::Context;

/// Flags of `streams`.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamsArgs {
    /// How many streams to open (one subject, ticket and connection each).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub n: u32,
    /// Streams being opened at the same time.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub connections: u16,
    /// How long to hold the streams open once all are ready, before reading the server's RSS.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub hold: Duration,
    /// Loopback source addresses (127.0.0.2, …) to spread streams over; 0 lets
    /// the kernel choose. Default: one per 20,000 streams, at least 4.
    #[arg(long)]
    pub sources: Option<u8>,
    /// Longest one stream may take to open (ticket, connect, ready).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub open_timeout: Duration,
}

/// Runs `streams`.
pub async fn run(ctx: &Context, args: StreamsArgs) -> anyhow::Result<Verdict> {
    let credentials = ctx.credentials()?;
    let n = args.n as usize;
    let concurrency = usize::from(args.connections);
    if credentials.is_fixed() && (concurrency > 32 || n > 16) {
        eprintln!(
            "note: with --token every ticket and stream is one subject's; the server's per-subject \
             caps (SSE_TICKET_MAX_TICKETS_PER_SUBJECT, default 32 outstanding tickets, and \
             SSE_TICKET_MAX_STREAMS_PER_SUBJECT, default 16 open streams) answer 429 beyond them"
        );
    }
    ctx.ensure_open_files((n + concurrency) as u64, &format!("--n {n}"))?;
    let server_files = ctx.server_pid.and_then(rss::max_open_files);
    if let Some(limit) = server_files.filter(|&limit| (n as u64) + 64 > limit) {
        eprintln!(
            "warning: the server may open at most {limit} files, so not all {n} streams can open"
        );
    }
    let rss_before = ctx.server_pid.map(rss::vm_rss_kb).transpose()?;
    let cpu = || ctx.server_pid.map(rss::cpu_seconds).transpose();
    let cpu_before_open = cpu()?;
    let source_addrs = open::source_addrs(ctx.base.addr, n, args.sources);
    let source = Source::tickets(
        &ctx.base,
        credentials,
        format!("load-stream-{}", std::process::id()),
        Permissions::default(),
        Bytes::new(),
    )?;
    let opened = open::open_all(open::Plan {
        source,
        count: n,
        concurrency,
        source_addrs: source_addrs.clone(),
        timeout: args.open_timeout,
    })
    .await;
    let count = opened.streams.len();
    let open_rate = per_second(count as u64, opened.elapsed);
    let cpu_before_hold = cpu()?;

    let alive = Arc::new(AtomicUsize::new(count));
    let mut holders = JoinSet::new();
    for stream in opened.streams {
        holders.spawn(hold(stream, Arc::clone(&alive)));
    }
    tokio::time::sleep(args.hold).await;
    let rss_after = ctx
        .server_pid
        .map(rss::vm_rss_kb)
        .transpose()
        .context("reading the server's RSS after the hold")?;
    let cpu_after_hold = cpu()?;
    let spent = |from: Option<f64>, to: Option<f64>| Some(round3(to? - from?));
    let (open_cpu, hold_cpu) = (
        spent(cpu_before_open, cpu_before_hold),
        spent(cpu_before_hold, cpu_after_hold),
    );
    let still_open = alive.load(Ordering::Relaxed);
    holders.abort_all();
    while holders.join_next().await.is_some() {}

    let per_stream = match (rss_before, rss_after) {
        (Some(before), Some(after)) if count > 0 => {
            Some(after.saturating_sub(before) as f64 * 1024.0 / count as f64)
        }
        _ => None,
    };
    let kb = |v: Option<u64>| v.map_or("n/a (no --server-pid)".into(), |kb| format!("{kb} KiB"));
    let summary = format!(
        "streams on {host}: {count}/{n} open in {secs:.2} s ({open_rate:.1}/s), \
         {concurrency} at a time, from {sources} source addresses\n\
         \x20 open latency  {latency}\n\
         \x20 errors        {errors}\n\
         \x20 held {hold:?}: {still_open} still open\n\
         \x20 server RSS    before {before}, after {after}, per stream {per}\n\
         \x20 server CPU    opening {open_cpu:?} s, holding {hold_cpu:?} s\n",
        host = ctx.base.host.to_str().unwrap_or("?"),
        secs = opened.elapsed.as_secs_f64(),
        sources = source_addrs.len(),
        latency = opened.latency.human(),
        errors = opened.errors.human(),
        hold = args.hold,
        before = kb(rss_before),
        after = kb(rss_after),
        per = per_stream.map_or("n/a".into(), |b| format!("{:.0} bytes", b)),
    );
    let mut line = json!({
        "mode": "streams",
        "n": n,
        "opened": count,
        "failed": n - count,
        "connections": concurrency,
        "source_addrs": source_addrs.len(),
        "open_s": round3(opened.elapsed.as_secs_f64()),
        "open_rate": round3(open_rate),
        "hold_s": round3(args.hold.as_secs_f64()),
        "still_open": still_open,
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "rss_per_stream_bytes": per_stream.map(f64::round),
        "open_cpu_s": open_cpu,
        "hold_cpu_s": hold_cpu,
        "server_max_open_files": server_files,
        "errors": opened.errors.to_json(),
    });
    if let Some(map) = line.as_object_mut() {
        opened.latency.json_into("open_", map);
    }
    report::emit(&summary, &line);
    Ok(Verdict::unless(count == 0))
}

/// Reads a stream (pings) until it ends or the task is aborted.
async fn hold(mut stream: SseReader, alive: Arc<AtomicUsize>) {
    loop {
        match stream.next().await {
            Ok(Some(frame)) if frame.event == "close" => break,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    alive.fetch_sub(1, Ordering::Relaxed);
}
