//! `fanout`: S streams on one topic, E events published at a steady rate,
//! each carrying its send time; delivery latency and delivered/expected.
//! With `--raw-sub`/`--raw-pub` it measures any EventSource server the same
//! way, without tickets (nchan style: the POST body is the message).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use hyper::Method;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::Verdict;
use crate::auth::Permissions;
use crate::http::{Client, Failure, RequestTemplate, SseReader};
use crate::open::{self, Source};
use crate::report::{self, Errors, Latency, per_second, round3};
use crate::rss;
use crate::target::{Context, Endpoint};

/// Longest one publish may take.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Flags of `fanout`.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// Subscribers (streams on the topic).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub subs: u32,
    /// Events to publish.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub events: u32,
    /// Publish rate, events per second.
    #[arg(long, default_value_t = 100.0, value_parser = positive_rate)]
    pub rate: f64,
    /// Topic to publish on; default `bench/fanout-<pid>` (fresh for every run).
    #[arg(long)]
    pub topic: Option<String>,
    /// Streams being opened at the same time.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub connections: u16,
    /// Subscribe with `GET <URL>` on any EventSource server, no ticket (loopback only).
    #[arg(long, requires = "raw_pub")]
    pub raw_sub: Option<String>,
    /// Publish with `POST <URL>`, the body being the event's data (loopback only).
    #[arg(long, requires = "raw_sub")]
    pub raw_pub: Option<String>,
    /// Pause between all streams open and the first publish; default 0, or
    /// 500ms with --raw-sub (a raw stream has no `ready` to wait for).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub settle: Option<Duration>,
    /// How long to wait after the last publish for deliveries still on their way.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// Loopback source addresses for the streams (see `streams --sources`).
    #[arg(long)]
    pub sources: Option<u8>,
    /// Longest one stream may take to open.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub open_timeout: Duration,
}

fn positive_rate(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{raw:?} is not a positive number of events per second"
        )),
    }
}

/// The `data` of every published event.
#[derive(Debug, Deserialize)]
struct Bench {
    sent_ns: u64,
    seq: u64,
}

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// What one subscriber saw.
#[derive(Debug, Default)]
struct Received {
    /// Delivery latency of each event, in microseconds (a histogram per
    /// subscriber would cost tens of KiB each).
    latency_us: Vec<u64>,
    delivered: u64,
    duplicates: u64,
    ended: Option<String>,
}

/// How events are published.
struct Publisher {
    client: Client,
    template: RequestTemplate,
    bearer: Option<hyper::header::HeaderValue>,
    /// The topic, or none for a raw publisher (the body is the data itself).
    topic: Option<String>,
}

impl Publisher {
    fn body(&self, seq: u64) -> Bytes {
        let data = json!({"sent_ns": unix_nanos(), "seq": seq});
        let body = match &self.topic {
            Some(topic) => json!({"topic": topic, "event": "bench", "data": data}),
            None => data,
        };
        Bytes::from(body.to_string())
    }
}

/// Runs `fanout`.
pub async fn run(ctx: &Context, args: FanoutArgs) -> anyhow::Result<Verdict> {
    let subs = args.subs as usize;
    let events = u64::from(args.events);
    let concurrency = usize::from(args.connections);
    ctx.ensure_open_files((subs + concurrency) as u64, &format!("--subs {subs}"))?;
    let (source, mut publisher, target, settle) = match (&args.raw_sub, &args.raw_pub) {
        (Some(sub), Some(publish)) => {
            let sub = Endpoint::parse(sub).context("--raw-sub")?;
            let publish = Endpoint::parse(publish).context("--raw-pub")?;
            let publisher = Publisher {
                client: Client::new(publish.addr),
                template: RequestTemplate::new(
                    Method::POST,
                    publish.host.clone(),
                    &publish.path,
                    Bytes::new(),
                )?,
                bearer: None,
                topic: None,
            };
            let settle = args.settle.unwrap_or(Duration::from_millis(500));
            (Source::Raw(sub), publisher, "raw", settle)
        }
        (None, None) => {
            let credentials = ctx.credentials()?;
            let pid = std::process::id();
            let topic = args
                .topic
                .clone()
                .unwrap_or_else(|| format!("bench/fanout-{pid}"));
            let subscribe = Permissions {
                subscribe: vec![topic.clone()],
                ..Permissions::default()
            };
            let body = Bytes::from(json!({ "topics": [topic] }).to_string());
            let source = Source::tickets(
                &ctx.base,
                credentials,
                format!("load-fanout-{pid}"),
                subscribe,
                body,
            )?;
            let publish = Permissions {
                publish: vec![topic.clone()],
                ..Permissions::default()
            };
            let publisher = Publisher {
                client: Client::new(ctx.base.addr),
                template: RequestTemplate::at(&ctx.base, Method::POST, "/publish", Bytes::new())?,
                bearer: Some(credentials.bearer(&format!("load-publisher-{pid}"), &publish)?),
                topic: Some(topic),
            };
            (
                source,
                publisher,
                "sse-ticket",
                args.settle.unwrap_or_default(),
            )
        }
        _ => bail!("--raw-sub and --raw-pub go together"),
    };
    let stream_addr = source.addr();
    let opened = open::open_all(open::Plan {
        source,
        count: subs,
        concurrency,
        source_addrs: open::source_addrs(stream_addr, subs, args.sources),
        timeout: args.open_timeout,
    })
    .await;
    let subscribed = opened.streams.len();
    let (stop, stopped) = watch::channel(false);
    let mut subscribers = JoinSet::new();
    for stream in opened.streams {
        subscribers.spawn(subscribe(stream, events, stopped.clone()));
    }
    tokio::time::sleep(settle).await;

    // Publish at a steady rate.
    let cpu_before = ctx.server_pid.map(rss::cpu_seconds).transpose()?;
    let mut publish_latency = Latency::new();
    let mut publish_errors = Errors::default();
    let mut published = 0u64;
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for seq in 0..events {
        ticks.tick().await;
        let request = publisher
            .template
            .build_with_body(publisher.bearer.as_ref(), publisher.body(seq));
        let sent = Instant::now();
        match tokio::time::timeout(PUBLISH_TIMEOUT, publisher.client.fetch(request)).await {
            Ok(Ok((status, _))) if status.is_success() => {
                published += 1;
                publish_latency.record(sent.elapsed());
            }
            Ok(Ok((status, _))) => publish_errors.add(&Failure::Status(status)),
            Ok(Err(failure)) => publish_errors.add(&failure),
            Err(_) => {
                publish_errors.add(&Failure::Timeout);
                publisher.client.reset();
            }
        }
    }
    let publish_elapsed = started.elapsed();

    // Let the last deliveries arrive, then stop whoever is still waiting.
    let deadline = tokio::spawn(async move {
        tokio::time::sleep(args.drain).await;
        let _ = stop.send(true);
    });
    let mut latency = Latency::new();
    let (mut delivered, mut duplicates) = (0u64, 0u64);
    let mut ended = Errors::default();
    while let Some(joined) = subscribers.join_next().await {
        match joined {
            Ok(received) => {
                for &micros in &received.latency_us {
                    latency.record_micros(micros);
                }
                delivered += received.delivered;
                duplicates += received.duplicates;
                if let Some(why) = received.ended {
                    ended.add_key(why, 1);
                }
            }
            Err(e) => ended.add_key(format!("subscriber: {e}"), 1),
        }
    }
    deadline.abort();
    let expected = subs as u64 * published;
    let cpu_after = ctx.server_pid.map(rss::cpu_seconds).transpose()?;
    let server_cpu = cpu_before.zip(cpu_after).map(|(b, a)| a - b);
    let per_delivery_us = server_cpu
        .filter(|_| delivered > 0)
        .map(|cpu| round3(cpu * 1e6 / delivered as f64));

    let summary = format!(
        "fanout on {target}: {subscribed}/{subs} subscribers, {published}/{events} events \
         published in {secs:.2} s ({rate:.1}/s)\n\
         \x20 delivered     {delivered}/{expected}{dups}\n\
         \x20 latency       {latency}\n\
         \x20 publish       {publish}\n\
         \x20 open errors   {open_errors}; publish errors {publish_errors}; streams ended early {ended}\n",
        secs = publish_elapsed.as_secs_f64(),
        rate = per_second(published, publish_elapsed),
        dups = if duplicates > 0 {
            format!(" ({duplicates} duplicates)")
        } else {
            String::new()
        },
        latency = latency.human(),
        publish = publish_latency.human(),
        open_errors = opened.errors.human(),
        publish_errors = publish_errors.human(),
        ended = ended.human(),
    );
    let mut line = json!({
        "mode": "fanout",
        "target": target,
        "subs": subs,
        "subscribed": subscribed,
        "events": events,
        "rate": args.rate,
        "published": published,
        "publish_s": round3(publish_elapsed.as_secs_f64()),
        "expected": expected,
        "delivered": delivered,
        "duplicates": duplicates,
        "errors": opened.errors.to_json(),
        "publish_errors": publish_errors.to_json(),
        "ended_early": ended.to_json(),
        "server_cpu_s": server_cpu.map(round3),
        "server_cpu_us_per_delivery": per_delivery_us,
    });
    if let Some(map) = line.as_object_mut() {
        latency.json_into("", map);
        publish_latency.json_into("publish_", map);
        opened.latency.json_into("open_", map);
    }
    report::emit(&summary, &line);
    Ok(Verdict::unless(delivered == 0))
}

/// Reads `events` events (or until stopped), timing each by its `sent_ns`.
async fn subscribe(
    mut stream: SseReader,
    events: u64,
    mut stop: watch::Receiver<bool>,
) -> Received {
    let mut received = Received::default();
    let mut seen = vec![false; usize::try_from(events).unwrap_or(usize::MAX)];
    while received.delivered < events {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            _ = stop.changed() => break,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                received.ended = Some("stream ended".into());
                break;
            }
            Err(failure) => {
                received.ended = Some(failure.key());
                break;
            }
        };
        if frame.event == "close" {
            received.ended = Some(format!("close: {}", frame.data));
            break;
        }
        let Ok(bench) = serde_json::from_str::<Bench>(&frame.data) else {
            continue;
        };
        let latency = Duration::from_nanos(unix_nanos().saturating_sub(bench.sent_ns));
        match usize::try_from(bench.seq)
            .ok()
            .and_then(|i| seen.get_mut(i))
        {
            Some(seen) if *seen => received.duplicates += 1,
            Some(seen) => {
                *seen = true;
                received.delivered += 1;
                received
                    .latency_us
                    .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
            }
            None => {} // not from this run
        }
    }
    received
}
