//! `issue`: requests at maximum rate on one path over N keep-alive
//! connections; `POST /sse-token` by default, any path for a baseline.

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use hyper::Method;
use serde_json::json;

use crate::Verdict;
use crate::auth::Permissions;
use crate::http::RequestTemplate;
use crate::load::{self, Plan};
use crate::report::{self, per_second, round3};
use crate::target::Context;

/// The ticket endpoint, the default path.
pub const TICKET_PATH: &str = "/sse-token";

/// Flags of `issue`.
#[derive(Debug, Clone, clap::Args)]
pub struct IssueArgs {
    /// Path to load, under --url (e.g. /healthz for the baseline of the same run).
    #[arg(long, default_value = TICKET_PATH)]
    pub path: String,
    /// HTTP method; POST for /sse-token and /publish, GET for any other path.
    #[arg(long, value_parser = parse_method)]
    pub method: Option<Method>,
    /// Request body (JSON); none by default, so tickets are for `user/<sub>`.
    #[arg(long)]
    pub body: Option<String>,
    /// Keep-alive connections, one worker task each.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub connections: u16,
    /// How long to send (humantime: 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Distinct subjects to mint tokens for on /sse-token, used round robin, so
    /// that no subject reaches the server's per-subject ticket cap (32 per
    /// ticket TTL by default); needs about rate × min(duration, TTL) / 32.
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1..))]
    pub subjects: u32,
    /// `Idempotency-Key` on each request (for /publish): none, a fresh one
    /// per request, or one repeated for the whole run (replays).
    #[arg(long, value_enum, default_value_t = load::Keys::None)]
    pub idempotency_key: load::Keys,
}

/// Parses an HTTP method name.
pub fn parse_method(raw: &str) -> Result<Method, String> {
    Method::from_bytes(raw.to_ascii_uppercase().as_bytes()).map_err(|e| e.to_string())
}

/// Runs `issue`.
pub async fn run(ctx: &Context, args: IssueArgs) -> anyhow::Result<Verdict> {
    let is_ticket = args.path == TICKET_PATH;
    let method = args.method.clone().unwrap_or_else(|| {
        if is_ticket || args.path == "/publish" {
            Method::POST
        } else {
            Method::GET
        }
    });
    let body = Bytes::from(args.body.clone().unwrap_or_default());
    let template = RequestTemplate::at(&ctx.base, method.clone(), &args.path, body)?;
    let prefix = format!("load-issue-{}", std::process::id());
    // Every request carries a bearer when there is one, so the baseline path
    // gets a request of the same size; /sse-token cannot do without.
    let bearers = match (&ctx.credentials, is_ticket) {
        (_, true) => {
            let credentials = ctx.credentials()?;
            if credentials.is_fixed() {
                eprintln!(
                    "note: with --token every ticket is for one subject; past the server's \
                     per-subject cap (32 by default) it answers 429"
                );
            }
            load::bearers(
                credentials,
                &prefix,
                args.subjects as usize,
                &Permissions::default(),
            )?
        }
        // A minted bearer may publish anywhere, for /publish.
        (Some(credentials), false) => load::bearers(
            credentials,
            &prefix,
            1,
            &Permissions {
                publish: vec!["*".to_owned()],
                ..Permissions::default()
            },
        )?,
        (None, false) => Vec::new().into(),
    };
    let subjects = bearers.len();
    let connections = usize::from(args.connections);
    ctx.ensure_open_files(connections as u64, "--connections")
        .context("too many connections")?;
    let outcome = load::run(Plan {
        addr: ctx.base.addr,
        template,
        bearers,
        connections,
        duration: args.duration,
        keys: args.idempotency_key,
    })
    .await;

    let rps = per_second(outcome.requests, outcome.elapsed);
    let ok_rps = per_second(outcome.ok, outcome.elapsed);
    let summary = format!(
        "issue {method} {path} on {host}: {connections} connections{subjects}{keys}, {secs:.2} s\n\
         \x20 requests  {requests} ({rps:.1}/s), 2xx {ok} ({ok_rps:.1}/s)\n\
         \x20 latency   {latency}\n\
         \x20 errors    {errors}\n\
         \x20 reconnects {reconnects}\n",
        path = args.path,
        host = ctx.base.host.to_str().unwrap_or("?"),
        subjects = if is_ticket {
            format!(", {subjects} subjects")
        } else {
            String::new()
        },
        keys = match args.idempotency_key {
            load::Keys::None => String::new(),
            keys => format!(", Idempotency-Key {}", keys.as_str()),
        },
        secs = outcome.elapsed.as_secs_f64(),
        requests = outcome.requests,
        ok = outcome.ok,
        latency = outcome.latency.human(),
        errors = outcome.errors.human(),
        reconnects = outcome.reconnects,
    );
    let mut line = json!({
        "mode": "issue",
        "method": method.as_str(),
        "path": args.path,
        "connections": connections,
        "subjects": subjects,
        "idempotency_key": args.idempotency_key.as_str(),
        "duration_s": round3(outcome.elapsed.as_secs_f64()),
        "requests": outcome.requests,
        "ok": outcome.ok,
        "rps": round3(rps),
        "ok_rps": round3(ok_rps),
        "errors": outcome.errors.to_json(),
        "reconnects": outcome.reconnects,
    });
    if let Some(map) = line.as_object_mut() {
        outcome.latency.json_into("", map);
    }
    report::emit(&summary, &line);
    Ok(Verdict::unless(outcome.ok == 0))
}
