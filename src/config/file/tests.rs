use std::path::Path;
use std::time::Duration;

use clap::{Args as _, FromArgMatches as _};
use secrecy::ExposeSecret as _;

use super::namespaces::KEYS;
use super::*;
use crate::config::ServeArgs;
use crate::namespace::NamespaceRules;

fn serve() -> Command {
    ServeArgs::augment_args(Command::new("serve"))
}

fn parse(text: &str) -> Result<ConfigFile, ConfigFileError> {
    ConfigFile::parse(Path::new("/etc/sse.toml"), text, &serve())
}

/// The one line the file's refusal prints.
fn refusal(text: &str) -> String {
    let error = parse(text).expect_err("refused").to_string();
    assert!(!error.contains('\n'), "one line: {error}");
    error
}

/// `serve` parsed from `flags` with `file`'s values installed.
fn args(file: &ConfigFile, flags: &[&str]) -> ServeArgs {
    let argv = std::iter::once("serve").chain(flags.iter().copied());
    let matches = file.install(serve()).get_matches_from(argv);
    ServeArgs::from_arg_matches(&matches).expect("ServeArgs")
}

#[test]
fn every_kind_of_setting_is_read_as_its_flag_would_be() {
    let file = parse(
        r#"
        bind = "0.0.0.0:9000"
        jwt_secret = "a-secret-that-is-long-enough-for-hs256"
        ticket_ttl = "2m"
        max_streams_per_subject = 8
        redis_cluster = false
        auth_webhook_forward_cookies = true
        cors_origins = ["https://a.example", "https://b.example"]
        trusted_proxies = "10.0.0.0/8,192.0.2.7"
        bind_ticket_to_ip = "prefix"
        log_format = "json"
        database_url = "postgres://app:pw@db/app"
        "#,
    )
    .expect("valid");
    let args = args(&file, &[]);
    assert_eq!(args.bind, "0.0.0.0:9000");
    assert_eq!(
        args.jwt_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned()),
        Some("a-secret-that-is-long-enough-for-hs256".to_owned())
    );
    assert_eq!(Duration::from(args.ticket_ttl), Duration::from_secs(120));
    assert_eq!(args.max_streams_per_subject, 8);
    assert!(!args.redis_cluster && args.auth_webhook_forward_cookies);
    assert_eq!(
        args.cors_origins,
        ["https://a.example", "https://b.example"]
    );
    assert_eq!(args.trusted_proxies, ["10.0.0.0/8", "192.0.2.7"]);
    assert_eq!(args.bind_ticket_to_ip, crate::client_ip::IpBinding::Prefix);
    assert_eq!(args.log_format, crate::config::LogFormat::Json);
    assert_eq!(args.database.database_url, "postgres://app:pw@db/app");
    // Untouched settings keep their defaults.
    assert_eq!(args.max_tickets, crate::config::defaults::MAX_TICKETS);
}

#[test]
fn a_flag_wins_over_the_file() {
    let file = parse("max_streams_per_subject = 8\nbind = \"127.0.0.1:1\"").expect("valid");
    let args = args(&file, &["--max-streams-per-subject", "3"]);
    assert_eq!(args.max_streams_per_subject, 3);
    assert_eq!(args.bind, "127.0.0.1:1");
}

#[test]
fn an_unknown_key_is_refused_with_its_file_line_and_a_hint() {
    let error = refusal("bind = \"127.0.0.1:1\"\n\nmax_stream_per_subject = 8\n");
    assert_eq!(
        error,
        r#"/etc/sse.toml:3: unknown key "max_stream_per_subject" (did you mean "max_streams_per_subject"?)"#
    );
    assert_eq!(
        refusal("[server]\nbind = \"x\""),
        r#"/etc/sse.toml:1: unknown key "server""#
    );
}

#[test]
fn options_only_a_flag_sets_are_refused_by_name() {
    for (text, how) in [
        ("dev = true", "only by --dev"),
        ("tls = true", "only by --tls"),
        ("print_config = true", "only by --print-config"),
        (
            "config = \"/x.toml\"",
            "only by --config or SSE_TICKET_CONFIG",
        ),
    ] {
        let error = refusal(text);
        assert!(
            error.starts_with("/etc/sse.toml:1: key") && error.ends_with(how),
            "{error}"
        );
    }
}

#[test]
fn a_value_of_the_wrong_type_is_refused() {
    for (text, message) in [
        (
            "max_streams = \"8\"",
            "max_streams must be an integer, not string",
        ),
        (
            "ticket_ttl = 60",
            "ticket_ttl must be a duration string such as \"60s\", not integer",
        ),
        (
            "redis_cluster = \"yes\"",
            "redis_cluster must be a boolean (true or false), not string",
        ),
        ("bind = 8080", "bind must be a string, not integer"),
        (
            "cors_origins = [\"https://a.example\", 1]",
            "cors_origins must be an array of strings, not integer",
        ),
        ("jwt_secret = 1.5", "jwt_secret must be a string, not float"),
    ] {
        assert_eq!(refusal(text), format!("/etc/sse.toml:1: {message}"));
    }
}

#[test]
fn a_value_its_flag_refuses_is_refused_with_the_flag_s_reason() {
    let error = refusal("\nticket_ttl = \"soon\"");
    assert!(
        error.starts_with("/etc/sse.toml:2: ticket_ttl: "),
        "{error}"
    );
    let error = refusal("log_format = \"xml\"");
    assert_eq!(
        error,
        "/etc/sse.toml:1: log_format: must be one of pretty, json"
    );
    let error = refusal("max_streams = -1");
    assert!(
        error.starts_with("/etc/sse.toml:1: max_streams: "),
        "{error}"
    );
}

#[test]
fn a_file_that_is_not_toml_is_refused_with_its_line() {
    let error = refusal("bind = \"127.0.0.1:1\"\nheartbeat = \n");
    assert!(error.starts_with("/etc/sse.toml:2: "), "{error}");
    let error = refusal("bind = \"a\"\nbind = \"b\"\n");
    assert!(error.starts_with("/etc/sse.toml:2: "), "duplicate: {error}");
}

#[test]
fn namespaces_are_read_with_their_lines() {
    let file = parse(
        r#"
[namespaces."chat/"]
history_max_per_topic = 50
history_ttl = "1h"
max_streams_per_subject = 4
max_event_bytes = 4096

[namespaces."orders/"]
publish = false
"#,
    )
    .expect("valid");
    let namespaces = file.namespaces();
    assert_eq!(namespaces.len(), 2);
    let chat = namespaces
        .iter()
        .find(|n| n.prefix() == "chat")
        .expect("chat");
    assert_eq!(
        chat.rules(),
        &NamespaceRules {
            history_max_per_topic: Some(50),
            history_ttl: Some(Duration::from_secs(3600)),
            max_streams_per_subject: Some(4),
            max_event_bytes: Some(4096),
            publish: None,
        }
    );
    assert_eq!(file.namespace_line("chat"), Some(2));
    assert_eq!(file.namespace_line("orders"), Some(8));
    // Into `serve`'s arguments.
    let mut args = args(&file, &[]);
    args.namespaces = file.namespaces();
    assert_eq!(args.namespaces.len(), 2);
}

#[test]
fn a_bad_namespace_table_is_refused_at_the_key_it_is_about() {
    for (text, expected) in [
        (
            "[namespaces.\"chat/\"]\npublish = false\nmax_stream_per_subject = 4\n",
            "/etc/sse.toml:3: [namespaces.\"chat/\"]: unknown key \"max_stream_per_subject\" (did you mean \"max_streams_per_subject\"?)",
        ),
        (
            "[namespaces.chat]\n\nmax_event_bytes = 65537\n",
            "/etc/sse.toml:3: namespace \"chat\": max_event_bytes must be between 1 and 65536",
        ),
        (
            "[namespaces.chat]\nmax_streams_per_subject = 0\n",
            "/etc/sse.toml:2: namespace \"chat\": max_streams_per_subject must be at least 1",
        ),
        (
            "[namespaces.chat]\npublish = \"no\"\n",
            "/etc/sse.toml:2: [namespaces.\"chat\"]: invalid type: string \"no\", expected a boolean",
        ),
        (
            "namespaces = 3",
            "/etc/sse.toml:1: namespaces must be tables: [namespaces.\"<prefix>\"]",
        ),
        (
            "[namespaces]\nchat = 3",
            "/etc/sse.toml:2: [namespaces.\"chat\"]: chat must be a table, not integer",
        ),
    ] {
        assert_eq!(refusal(text), expected, "{text}");
    }
    let error = refusal("[namespaces.chat]\nhistory_ttl = \"forever\"\n");
    assert!(
        error.starts_with("/etc/sse.toml:2: [namespaces.\"chat\"]: history_ttl: "),
        "{error}"
    );
    let error = refusal("[namespaces.\"bad topic\"]\npublish = false\n");
    assert!(
        error.starts_with("/etc/sse.toml:1: namespace \"bad topic\": not a topic prefix"),
        "{error}"
    );
    let error = refusal("[namespaces.chat]\npublish = false\n\n[namespaces.\"chat/\"]\n");
    assert!(
        error.starts_with("/etc/sse.toml:4: namespaces \"chat\" and \"chat/\""),
        "{error}"
    );
}

#[test]
fn the_namespace_keys_are_the_table_s_fields() {
    let all: String = KEYS
        .iter()
        .map(|key| match *key {
            "history_ttl" => format!("{key} = \"1h\"\n"),
            "publish" => format!("{key} = false\n"),
            _ => format!("{key} = 1\n"),
        })
        .collect();
    parse(&format!("[namespaces.chat]\n{all}")).expect("every key of KEYS is a field");
}

#[test]
fn a_missing_file_is_refused_naming_it() {
    let error = ConfigFile::read(Path::new("/nonexistent/sse.toml"), &serve())
        .expect_err("missing")
        .to_string();
    assert!(
        error.starts_with("/nonexistent/sse.toml: cannot read the configuration file: "),
        "{error}"
    );
}

#[test]
fn every_setting_with_a_variable_is_a_key_but_the_file_itself() {
    let serve = serve();
    let keys: Vec<String> = settings(&serve).map(|s| s.key()).collect();
    for key in [
        "bind",
        "jwt_secret",
        "database_url",
        "tls_cert",
        "redis_cluster",
        "outbox_url",
        "outbox_table",
        "idempotency_ttl",
        "max_tickets",
        "log_format",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
    }
    for key in ["config", "dev", "tls", "print_config", "help"] {
        assert!(!keys.iter().any(|k| k == key), "{key} in {keys:?}");
    }
}
