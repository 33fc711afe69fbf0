//! `soak`: tickets at maximum rate, never redeemed, while the server's RSS is
//! sampled every second. Once tickets start expiring (after one ticket TTL)
//! memory must stop growing: the peak of the last TTL window is compared with
//! the peak of the first.

use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use hyper::Method;
use serde_json::json;

use crate::Verdict;
use crate::auth::Permissions;
use crate::http::RequestTemplate;
use crate::issue::TICKET_PATH;
use crate::load::{self, Plan};
use crate::report::{self, per_second, round3};
use crate::rss::{Sample, Sampler};
use crate::target::Context;

/// Flags of `soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How long to run; at least three times --ticket-ttl for a plateau verdict.
    #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Keep-alive connections, one worker task each.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub connections: u16,
    /// Distinct subjects, used round robin (see `issue --subjects`).
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1..))]
    pub subjects: u32,
    /// The server's ticket lifetime (`SSE_TICKET_TICKET_TTL`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub ticket_ttl: Duration,
    /// Growth of the last TTL window's peak RSS over the first's that still counts as a plateau, in percent.
    #[arg(long, default_value_t = 10.0)]
    pub tolerance: f64,
}

/// Peak RSS of the first and the last TTL window, and whether memory plateaued.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Comparison {
    second_kb: u64,
    last_kb: u64,
    growth_pct: f64,
    plateau: bool,
}

/// Compares the peak RSS of the second `ttl` window of `samples` (the first
/// one after every early ticket could have expired) with that of the last,
/// over a run of `elapsed`; none when the run is shorter than three TTLs (the
/// windows would overlap). The first window is the ramp-up, so it is left out.
fn compare(
    samples: &[Sample],
    ttl: Duration,
    elapsed: Duration,
    tolerance: f64,
) -> Option<Comparison> {
    let ttl = ttl.as_secs_f64();
    let end = elapsed.as_secs_f64();
    if end < 3.0 * ttl {
        return None;
    }
    let peak = |keep: &dyn Fn(f64) -> bool| {
        samples
            .iter()
            .filter(|s| keep(s.at_s))
            .map(|s| s.rss_kb)
            .max()
    };
    let second_kb = peak(&|at| at > ttl && at <= 2.0 * ttl)?;
    let last_kb = peak(&|at| at > end - ttl)?;
    let growth_pct = (last_kb as f64 / second_kb.max(1) as f64 - 1.0) * 100.0;
    Some(Comparison {
        second_kb,
        last_kb,
        growth_pct,
        plateau: growth_pct <= tolerance,
    })
}

/// Runs `soak`.
pub async fn run(ctx: &Context, args: SoakArgs) -> anyhow::Result<Verdict> {
    let Some(pid) = ctx.server_pid else {
        bail!("soak samples the server's memory: pass --server-pid <pid of the server>");
    };
    let credentials = ctx.credentials()?;
    let connections = usize::from(args.connections);
    ctx.ensure_open_files(connections as u64, "--connections")?;
    let prefix = format!("load-soak-{}", std::process::id());
    let bearers = load::bearers(
        credentials,
        &prefix,
        args.subjects as usize,
        &Permissions::default(),
    )?;
    let template = RequestTemplate::at(&ctx.base, Method::POST, TICKET_PATH, Bytes::new())?;
    let sampler = Sampler::start(pid, Duration::from_secs(1));
    let outcome = load::run(Plan {
        addr: ctx.base.addr,
        template,
        bearers,
        connections,
        duration: args.duration,
        keys: load::Keys::None,
    })
    .await;
    let samples = sampler
        .finish()
        .await
        .context("sampling the server's RSS")?;
    let comparison = compare(&samples, args.ticket_ttl, outcome.elapsed, args.tolerance);

    let mib = |kb: u64| kb as f64 / 1024.0;
    let series = samples
        .chunks(10)
        .map(|row| {
            row.iter()
                .map(|s| format!("{:7.1}", mib(s.rss_kb)))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n   ");
    let verdict = match comparison {
        Some(c) => format!(
            "peak of the second TTL {:.1} MiB, of the last TTL {:.1} MiB ({:+.1}%): {}",
            mib(c.second_kb),
            mib(c.last_kb),
            c.growth_pct,
            if c.plateau {
                "plateau"
            } else {
                "STILL GROWING"
            }
        ),
        None => format!(
            "no verdict: a run shorter than three ticket TTLs ({:?}) cannot show a plateau",
            args.ticket_ttl * 3
        ),
    };
    let rps = per_second(outcome.requests, outcome.elapsed);
    let summary = format!(
        "soak POST {TICKET_PATH} on {host}: {connections} connections, {secs:.2} s, server pid {pid}\n\
         \x20 requests  {requests} ({rps:.1}/s), 2xx {ok}\n\
         \x20 latency   {latency}\n\
         \x20 errors    {errors}\n\
         \x20 RSS (MiB, one sample a second):\n   {series}\n\
         \x20 {verdict}\n",
        host = ctx.base.host.to_str().unwrap_or("?"),
        secs = outcome.elapsed.as_secs_f64(),
        requests = outcome.requests,
        ok = outcome.ok,
        latency = outcome.latency.human(),
        errors = outcome.errors.human(),
    );
    let mut line = json!({
        "mode": "soak",
        "path": TICKET_PATH,
        "connections": connections,
        "duration_s": round3(outcome.elapsed.as_secs_f64()),
        "requests": outcome.requests,
        "ok": outcome.ok,
        "rps": round3(rps),
        "errors": outcome.errors.to_json(),
        "ticket_ttl_s": args.ticket_ttl.as_secs_f64(),
        "rss_kb": samples.iter().map(|s| s.rss_kb).collect::<Vec<_>>(),
        "rss_second_ttl_peak_kb": comparison.map(|c| c.second_kb),
        "rss_last_ttl_peak_kb": comparison.map(|c| c.last_kb),
        "rss_growth_pct": comparison.map(|c| round3(c.growth_pct)),
        "plateau": comparison.map(|c| c.plateau),
    });
    if let Some(map) = line.as_object_mut() {
        outcome.latency.json_into("", map);
    }
    report::emit(&summary, &line);
    let growing = comparison.is_some_and(|c| !c.plateau);
    Ok(Verdict::unless(growing || outcome.ok == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(kb: &[u64]) -> Vec<Sample> {
        kb.iter()
            .enumerate()
            .map(|(i, &rss_kb)| Sample {
                at_s: i as f64,
                rss_kb,
            })
            .collect()
    }

    #[test]
    fn plateau_and_growth() {
        let ttl = Duration::from_secs(3);
        // The ramp-up of the first TTL, and a peak at the first sweep, do not count as growth.
        let flat = samples(&[10, 50, 90, 100, 140, 99, 102, 100, 101, 98]);
        let c = compare(&flat, ttl, Duration::from_secs(9), 10.0).expect("long enough");
        assert_eq!((c.second_kb, c.last_kb), (140, 101));
        assert!(c.plateau);
        let growing = samples(&[10, 50, 90, 100, 110, 120, 140, 160, 190, 220]);
        let c = compare(&growing, ttl, Duration::from_secs(9), 10.0).expect("long enough");
        assert_eq!((c.second_kb, c.last_kb), (140, 220));
        assert!(!c.plateau);
        assert!(compare(&flat, ttl, Duration::from_secs(8), 10.0).is_none());
    }
}
