//! `sse-ticket-load`: drives a running `sse-ticket` server over real HTTP from
//! another process.
//!
//! Modes: `issue` (requests per second on one path over N keep-alive
//! connections), `streams` (open N streams, report the open rate and the
//! server's memory per stream), `fanout` (delivery latency from `/publish` to
//! S subscribers, or any EventSource server with `--raw-sub`/`--raw-pub`) and
//! `soak` (issue at full rate while sampling the server's RSS, which must
//! plateau), `verifiers` (what an introspection verifier adds to
//! `/sse-token`, cached and uncached, against the local key) and `scaleout`
//! (what each instance of a fleet receives from Redis as instances are
//! added). Each prints a human summary on stderr and one JSON line on
//! stdout. Traffic goes only to loopback addresses, and every mode stops by
//! itself.

mod auth;
mod fanout;
mod http;
mod issue;
mod load;
mod open;
mod report;
mod rss;
mod scaleout;
mod soak;
mod sse;
mod streams;
mod target;
mod verifiers;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "sse-ticket-load",
    version,
    about,
    long_about = None,
    after_help = "Each mode prints a human summary on stderr and one JSON line on stdout.\n\
                  Exit status: 0 measured; 1 measured, but nothing got through or soak's memory \
                  kept growing; 2 bad arguments or setup."
)]
struct Cli {
    #[command(flatten)]
    target: target::TargetArgs,
    #[command(subcommand)]
    mode: Mode,
}

/// What to measure.
#[derive(Debug, Subcommand)]
enum Mode {
    /// Requests at maximum rate on one path (POST /sse-token by default) over N keep-alive connections.
    Issue(issue::IssueArgs),
    /// Open N streams (ticket, then GET /stream until `ready`), hold them, report the server's RSS per stream.
    Streams(streams::StreamsArgs),
    /// S streams on one topic, E published events; delivery latency and delivered/expected.
    Fanout(fanout::FanoutArgs),
    /// Issue tickets at maximum rate, never redeemed, and sample the server's RSS every second.
    Soak(soak::SoakArgs),
    /// `/sse-token` latency with an introspection verifier (cached, uncached) against the local key, alternating.
    Verifiers(verifiers::VerifiersArgs),
    /// Several instances on one Redis, streams of disjoint topics on each: events each received from Redis.
    Scaleout(scaleout::ScaleoutArgs),
}

/// How a run ended, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Measured; nothing to object to.
    Pass,
    /// Measured, but nothing got through, or soak's memory kept growing.
    Fail,
}

impl Verdict {
    /// `Fail` when `failed`, else `Pass`.
    fn unless(failed: bool) -> Self {
        if failed { Self::Fail } else { Self::Pass }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(Verdict::Pass) => ExitCode::SUCCESS,
        Ok(Verdict::Fail) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<Verdict> {
    let ctx = target::Context::from_args(&cli.target)?;
    match cli.mode {
        Mode::Issue(args) => issue::run(&ctx, args).await,
        Mode::Streams(args) => streams::run(&ctx, args).await,
        Mode::Fanout(args) => fanout::run(&ctx, args).await,
        Mode::Soak(args) => soak::run(&ctx, args).await,
        Mode::Verifiers(args) => verifiers::run(&ctx, args).await,
        Mode::Scaleout(args) => scaleout::run(&ctx, args).await,
    }
}
