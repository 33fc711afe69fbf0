//! The operator's files of docs/fleet/ against the served `/metrics`: every
//! `sse_ticket_*` series the Grafana dashboard or the alert rules query is
//! one the service exports, and the gauges the alerts added are refreshed at
//! each scrape. (promtool checks and unit-tests the rules in .ci/fleet.sh.)

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use sse_ticket::auth::KeySource;

use crate::helpers::{AuthHook, PATIENCE, TestApp, hook_claims, spawn_app, spawn_app_with};

const DASHBOARD: &str = include_str!("../../docs/fleet/grafana-dashboard.json");
const ALERTS: &str = include_str!("../../docs/fleet/alerts.yml");
const RUNBOOK: &str = include_str!("../../docs/fleet.md");

/// The families of an exposition (`# TYPE` lines: name to type) and the
/// names of its samples.
struct Exposition {
    families: BTreeMap<String, String>,
    samples: BTreeSet<String>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut families = BTreeMap::new();
        let mut samples = BTreeSet::new();
        for line in text.lines() {
            if let Some(declared) = line.strip_prefix("# TYPE ") {
                let mut words = declared.split_whitespace();
                if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                    families.insert(name.to_owned(), kind.to_owned());
                }
            } else if !line.starts_with('#') {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                samples.insert(line[..end].to_owned());
            }
        }
        Self { families, samples }
    }

    /// Whether a query naming `series` finds it: a sample of that name, or a
    /// family whose type gives it that name (a counter's `_total`, a
    /// histogram's `_bucket`, `_sum`, `_count`; a gauge's own name) even
    /// before it has samples (a labelled family with no child yet).
    fn serves(&self, series: &str) -> bool {
        if self.samples.contains(series) {
            return true;
        }
        let suffixes: &[&str] = &["", "_total", "_bucket", "_sum", "_count"];
        suffixes.iter().any(|suffix| {
            let Some(family) = series.strip_suffix(suffix) else {
                return false;
            };
            let kind = self.families.get(family).map(String::as_str);
            matches!(
                (*suffix, kind),
                ("", Some("gauge" | "unknown"))
                    | ("_total", Some("counter"))
                    | ("_bucket" | "_sum" | "_count", Some("histogram"))
            )
        })
    }
}

/// Every string under an `expr` key, at any depth.
fn exprs(node: &Value, found: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => found.push(expr.clone()),
                    _ => exprs(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| exprs(item, found)),
        _ => {}
    }
}

/// The `sse_ticket_*` series named in `exprs`.
fn series_named(exprs: &[String]) -> BTreeSet<String> {
    let name = regex::Regex::new(r"\bsse_ticket_[a-zA-Z0-9_]+").expect("regex");
    exprs
        .iter()
        .flat_map(|expr| name.find_iter(expr).map(|m| m.as_str().to_owned()))
        .collect()
}

fn dashboard_exprs() -> Vec<String> {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("dashboard JSON");
    let mut found = Vec::new();
    exprs(&dashboard["panels"], &mut found);
    found
}

/// The rules of alerts.yml, as JSON.
fn alert_rules() -> Vec<Value> {
    let alerts: Value = serde_yaml_ng::from_str(ALERTS).expect("alerts YAML");
    let groups = alerts["groups"].as_array().expect("groups");
    groups
        .iter()
        .flat_map(|group| group["rules"].as_array().expect("rules").clone())
        .collect()
}

/// `/metrics` as served, parsed.
async fn scrape(app: &TestApp) -> String {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    response.text().await.expect("metrics text")
}

/// A little of everything, since a labelled family is served only once it
/// has a sample: a ticket issued, redeemed and one refused, an event
/// published and delivered, a stream closed by its client; and on a second
/// instance verifying bearers with an auth webhook, one call to it. Returns
/// both instances' `/metrics`.
async fn exercised_metrics() -> Exposition {
    let app = spawn_app().await;
    let stream = app.subscribe("alice", &[]).await;
    app.publish("user/alice", None, json!(1)).await;
    assert_eq!(app.get_stream("not-a-ticket").await.status(), 401);
    drop(stream);
    // The server notices the closed connection on its next write.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while app.metric("sse_ticket_streams_open").await != 0.0 {
        assert!(tokio::time::Instant::now() < deadline, "stream not closed");
        app.publish("user/alice", None, json!("anyone?")).await;
    }

    let hook = AuthHook::start().await;
    hook.accept_bearer("alice-opaque", hook_claims("alice", json!(null)));
    let verified = spawn_app_with(|config| hook.configure(config, false)).await;
    let response = verified.post_sse_token(Some("alice-opaque"), None).await;
    assert_eq!(response.status(), 200, "the webhook accepts alice");

    Exposition::parse(&format!(
        "{}{}",
        scrape(&app).await,
        scrape(&verified).await
    ))
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_alerts_query_is_served() {
    let served = exercised_metrics().await;

    let dashboard = series_named(&dashboard_exprs());
    let rules: Vec<String> = alert_rules()
        .iter()
        .map(|rule| rule["expr"].as_str().expect("expr").to_owned())
        .collect();
    let alerts = series_named(&rules);
    // The extraction works: names each file is known to query are found.
    for (file, names, known) in [
        ("dashboard", &dashboard, "sse_ticket_streams_open"),
        (
            "dashboard",
            &dashboard,
            "sse_ticket_http_request_duration_seconds_bucket",
        ),
        ("alerts", &alerts, "sse_ticket_open_files_limit"),
        ("alerts", &alerts, "sse_ticket_tickets_rejected_total"),
    ] {
        assert!(
            names.contains(known),
            "{known} not found in the {file}: {names:?}"
        );
    }
    // The check can fail: a misspelling, a counter without `_total`, a
    // gauge with it, a histogram's family name alone.
    for wrong in [
        "sse_ticket_tickets_isued_total",
        "sse_ticket_tickets_issued",
        "sse_ticket_streams_open_total",
        "sse_ticket_http_request_duration_seconds",
    ] {
        assert!(!served.serves(wrong), "{wrong} should not be served");
    }

    for (file, names) in [
        ("grafana-dashboard.json", dashboard),
        ("alerts.yml", alerts),
    ] {
        let missing: Vec<_> = names.iter().filter(|n| !served.serves(n)).collect();
        assert!(
            missing.is_empty(),
            "docs/fleet/{file} queries series /metrics does not serve: {missing:?}"
        );
    }
}

#[tokio::test]
async fn every_alert_has_a_severity_a_summary_a_description_and_a_runbook_section() {
    let rules = alert_rules();
    let names: BTreeSet<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    for wanted in [
        "InstanceDown",
        "BackendUnavailable",
        "StreamsLagging",
        "AuditRecordsDropped",
        "TicketRejectionsSpiking",
        "OpenFilesNearLimit",
        "DatabaseTimeouts",
        "VerifierCircuitOpen",
    ] {
        assert!(names.contains(wanted), "no alert {wanted} in {names:?}");
    }
    let headings: BTreeSet<String> = RUNBOOK
        .lines()
        .filter_map(|line| line.strip_prefix("### "))
        .map(|heading| heading.trim().to_lowercase())
        .collect();
    for rule in &rules {
        let name = rule["alert"].as_str().expect("every rule is an alert");
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for annotation in ["summary", "description"] {
            assert!(
                rule["annotations"][annotation]
                    .as_str()
                    .is_some_and(|text| !text.is_empty()),
                "{name}: no {annotation}"
            );
        }
        let runbook = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_default();
        let anchor = name.to_lowercase();
        assert_eq!(runbook, format!("docs/fleet.md#{anchor}"), "{name}");
        assert!(
            headings.contains(&anchor),
            "docs/fleet.md has no section \"### {name}\""
        );
    }
}

#[tokio::test]
async fn backend_up_and_open_files_are_read_at_each_scrape() {
    let app = spawn_app().await;
    for backend in ["keys", "database", "tickets", "broker"] {
        let sample = format!("sse_ticket_backend_up{{backend=\"{backend}\"}}");
        assert_eq!(app.metric(&sample).await, 1.0, "{sample}");
    }
    let open = app.metric("sse_ticket_open_files").await;
    let limit = app.metric("sse_ticket_open_files_limit").await;
    assert!(open >= 1.0, "open files {open}");
    assert!(open <= limit, "open files {open} over the limit {limit}");
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
    #[allow(clippy::cast_precision_loss)]
    let soft = soft.min(i64::MAX as u64) as f64;
    assert_eq!(limit, soft, "the soft limit of this process");

    // Keys from an identity provider that does not answer: `keys` reads 0,
    // the other backends 1, as /readyz says.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let url = format!("http://{}/jwks.json", closed.local_addr().expect("addr"));
    drop(closed);
    let unready = spawn_app_with(|c| c.keys = KeySource::JwksUrl(url.parse().expect("url"))).await;
    let ready: Value = unready.get("/readyz").await.json().await.expect("JSON");
    assert_eq!(ready["backends"]["keys"], "unavailable", "{ready}");
    assert_eq!(
        unready
            .metric(r#"sse_ticket_backend_up{backend="keys"}"#)
            .await,
        0.0
    );
    assert_eq!(
        unready
            .metric(r#"sse_ticket_backend_up{backend="database"}"#)
            .await,
        1.0
    );
}
