//! `scaleout`: N instances of one fleet (the target and `--other`s), each
//! holding S streams on topics of its own (`user/<sub>`, every stream a
//! subject of its own); every topic gets E events, each published on the
//! next instance, so every event crosses Redis. Reports what each instance
//! received from Redis (`sse_ticket_broker_events_received_total`, read
//! before and after) against what was published in all: with fan-out that
//! scales out, an instance receives its own streams' events and no more,
//! however many instances there are.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use hyper::Method;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::Verdict;
use crate::auth::Permissions;
use crate::http::{Client, Failure, RequestTemplate, SseReader};
use crate::open::{self, Source};
use crate::report::{self, Errors, per_second, round3};
use crate::rss;
use crate::target::{Context, Endpoint};

/// The counter of events an instance received from Redis.
const RECEIVED: &str = "sse_ticket_broker_events_received_total";
/// Longest one request (publish, metrics) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Flags of `scaleout`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScaleoutArgs {
    /// Another instance of the same fleet (same Redis, same key); repeat for each.
    #[arg(long = "other")]
    pub others: Vec<String>,
    /// Streams per instance, each on a topic of its own.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub streams: u32,
    /// Events published to every topic.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub events: u32,
    /// Streams being opened at the same time, per instance.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub connections: u16,
    /// How long to wait after the last publish for deliveries still on their way.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// Longest one stream may take to open.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub open_timeout: Duration,
    /// The instances' process ids, in order (`--url`'s first), comma-separated:
    /// reports the CPU time each spent from the first publish to the last delivery.
    #[arg(long, value_delimiter = ',')]
    pub pids: Vec<u32>,
}

/// One instance of the fleet and its streams' subjects (`<prefix>-<k>`).
struct Instance {
    base: Endpoint,
    prefix: String,
}

impl Instance {
    fn topic(&self, k: u32) -> String {
        format!("user/{}-{k}", self.prefix)
    }
}

/// Runs `scaleout`.
pub async fn run(ctx: &Context, args: ScaleoutArgs) -> anyhow::Result<Verdict> {
    let credentials = ctx.credentials()?;
    if credentials.is_fixed() {
        bail!("scaleout needs --secret: every stream is a subject of its own");
    }
    let pid = std::process::id();
    let mut instances = vec![Instance {
        base: ctx.base.clone(),
        prefix: format!("scale-{pid}-0"),
    }];
    for (i, raw) in args.others.iter().enumerate() {
        instances.push(Instance {
            base: Endpoint::parse(raw).with_context(|| format!("--other {raw}"))?,
            prefix: format!("scale-{pid}-{}", i + 1),
        });
    }
    let n = instances.len();
    if !args.pids.is_empty() && args.pids.len() != n {
        bail!(
            "--pids names {} processes for {n} instances",
            args.pids.len()
        );
    }
    let per_instance = args.streams as usize;
    let connections = usize::from(args.connections);
    ctx.ensure_open_files(
        (n * (per_instance + connections + 1)) as u64,
        "--streams per instance",
    )?;

    // Open every instance's streams, each on its subject's own topic.
    let mut streams = Vec::new();
    let mut open_errors = Errors::default();
    for instance in &instances {
        let source = Source::tickets(
            &instance.base,
            credentials,
            instance.prefix.clone(),
            Permissions::default(),
            Bytes::new(),
        )?;
        let opened = open::open_all(open::Plan {
            source,
            count: per_instance,
            concurrency: connections,
            source_addrs: open::source_addrs(instance.base.addr, per_instance, None),
            timeout: args.open_timeout,
        })
        .await;
        open_errors.merge(&opened.errors);
        streams.push(opened.streams);
    }
    let opened: usize = streams.iter().map(Vec::len).sum();

    let before = received_by_each(&instances).await?;
    let (stop, stopped) = watch::channel(false);
    let mut subscribers = JoinSet::new();
    for stream in streams.into_iter().flatten() {
        subscribers.spawn(count_events(
            stream,
            u64::from(args.events),
            stopped.clone(),
        ));
    }

    // Instance i publishes every event of instance i+1's topics.
    let publisher = credentials.bearer(
        &format!("scale-publisher-{pid}"),
        &Permissions {
            publish: vec!["user/*".into()],
            ..Permissions::default()
        },
    )?;
    let cpu_before = cpu_of(&args.pids)?;
    let started = Instant::now();
    let mut publishers = JoinSet::new();
    for (i, on) in instances.iter().enumerate() {
        let topics: Vec<String> = (0..args.streams)
            .map(|k| instances[(i + 1) % n].topic(k))
            .collect();
        let template = RequestTemplate::at(&on.base, Method::POST, "/publish", Bytes::new())?;
        let client = Client::new(on.base.addr);
        publishers.spawn(publish_all(
            client,
            template,
            publisher.clone(),
            topics,
            args.events,
        ));
    }
    let (mut published, mut publish_errors) = (0u64, Errors::default());
    while let Some(joined) = publishers.join_next().await {
        let (ok, errors) = joined.context("a publisher failed")?;
        published += ok;
        publish_errors.merge(&errors);
    }
    let publish_elapsed = started.elapsed();

    let deadline = tokio::spawn(async move {
        tokio::time::sleep(args.drain).await;
        let _ = stop.send(true);
    });
    let mut delivered = 0u64;
    while let Some(joined) = subscribers.join_next().await {
        delivered += joined.unwrap_or(0);
    }
    deadline.abort();
    let cpu: Vec<f64> = cpu_of(&args.pids)?
        .iter()
        .zip(&cpu_before)
        .map(|(after, before)| round3(after - before))
        .collect();
    let after = received_by_each(&instances).await?;
    let received: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let expected = opened as u64 * u64::from(args.events);
    let own = per_instance as u64 * u64::from(args.events);

    let summary = format!(
        "scaleout over {n} instances: {opened}/{total} streams, {published} events published in \
         {secs:.2} s ({rate:.0}/s), {own} for each instance's own streams\n\
         \x20 received from Redis, per instance  {received:?}\n\
         \x20 delivered     {delivered}/{expected}; CPU s per instance {cpu:?}\n\
         \x20 open errors   {open_errors}; publish errors {publish_errors}\n",
        total = n * per_instance,
        secs = publish_elapsed.as_secs_f64(),
        rate = per_second(published, publish_elapsed),
        open_errors = open_errors.human(),
        publish_errors = publish_errors.human(),
    );
    let line = json!({
        "mode": "scaleout",
        "instances": n,
        "streams_per_instance": per_instance,
        "streams": opened,
        "events_per_topic": args.events,
        "published": published,
        "publish_s": round3(publish_elapsed.as_secs_f64()),
        "own_events_per_instance": own,
        "received_per_instance": received,
        "expected": expected,
        "delivered": delivered,
        "cpu_s_per_instance": cpu,
        "errors": open_errors.to_json(),
        "publish_errors": publish_errors.to_json(),
    });
    report::emit(&summary, &line);
    Ok(Verdict::unless(delivered == 0))
}

/// Each process's CPU time so far, in seconds.
fn cpu_of(pids: &[u32]) -> anyhow::Result<Vec<f64>> {
    pids.iter().map(|&pid| rss::cpu_seconds(pid)).collect()
}

/// Publishes `events` events to each of `topics`, round after round, one at a time.
async fn publish_all(
    mut client: Client,
    template: RequestTemplate,
    bearer: hyper::header::HeaderValue,
    topics: Vec<String>,
    events: u32,
) -> (u64, Errors) {
    let (mut published, mut errors) = (0u64, Errors::default());
    for n in 0..events {
        for topic in &topics {
            let body = json!({"topic": topic, "event": "scale", "data": {"n": n}});
            let request = template.build_with_body(Some(&bearer), Bytes::from(body.to_string()));
            match tokio::time::timeout(REQUEST_TIMEOUT, client.fetch(request)).await {
                Ok(Ok((status, _))) if status.is_success() => published += 1,
                Ok(Ok((status, _))) => errors.add(&Failure::Status(status)),
                Ok(Err(failure)) => errors.add(&failure),
                Err(_) => {
                    errors.add(&Failure::Timeout);
                    client.reset();
                }
            }
        }
    }
    (published, errors)
}

/// Counts `scale` events until `events` arrived, the stream ends, or stopped.
async fn count_events(mut stream: SseReader, events: u64, mut stop: watch::Receiver<bool>) -> u64 {
    let mut counted = 0;
    while counted < events {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            _ = stop.changed() => break,
        };
        match frame {
            Ok(Some(frame)) if frame.event == "scale" => counted += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    counted
}

/// Each instance's count of events received from Redis.
async fn received_by_each(instances: &[Instance]) -> anyhow::Result<Vec<f64>> {
    let mut counts = Vec::with_capacity(instances.len());
    for instance in instances {
        let template = RequestTemplate::at(&instance.base, Method::GET, "/metrics", Bytes::new())?;
        let mut client = Client::new(instance.base.addr);
        let (status, body) =
            tokio::time::timeout(REQUEST_TIMEOUT, client.fetch(template.build(None)))
                .await
                .map_err(|_| anyhow::anyhow!("GET /metrics timed out"))?
                .map_err(|f| anyhow::anyhow!("GET /metrics: {}", f.key()))?;
        if !status.is_success() {
            bail!("GET /metrics on {}: {status}", instance.base.addr);
        }
        let text = String::from_utf8_lossy(&body);
        counts.push(counter(&text, RECEIVED).with_context(|| {
            format!(
                "{} has no {RECEIVED}: is it on Redis (SSE_TICKET_REDIS_URL)?",
                instance.base.addr
            )
        })?);
    }
    Ok(counts)
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
fn counter(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|value| value.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_unlabelled_counter() {
        let text = "# HELP x\nsse_ticket_broker_events_received_total_created 1.7e9\n\
                    sse_ticket_broker_events_received_total 42\nother 1\n";
        assert_eq!(counter(text, RECEIVED), Some(42.0));
        assert_eq!(counter("other 1\n", RECEIVED), None);
    }
}
