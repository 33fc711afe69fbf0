use std::path::Path;

use clap::{Args as _, Command, FromArgMatches as _};

use super::*;
use crate::config::ServeArgs;

/// `serve`'s provenance for `flags` and a file of `text`, and its configuration.
fn provenance(text: &str, flags: &[&str]) -> (Provenance, Config) {
    let serve = ServeArgs::augment_args(Command::new("serve"));
    let file = ConfigFile::parse(Path::new("/etc/sse.toml"), text, &serve).expect("valid file");
    let serve = file.install(serve);
    let argv = std::iter::once("serve").chain(flags.iter().copied());
    let matches = serve.clone().get_matches_from(argv);
    let mut args = ServeArgs::from_arg_matches(&matches).expect("ServeArgs");
    args.namespaces = file.namespaces();
    let config = Config::from_args(args).expect("valid configuration");
    (Provenance::new(serve, matches, Some(file)), config)
}

const SECRET: &str = "file-secret-that-is-long-enough-for-hs256";

#[test]
fn print_config_names_each_origin_and_redacts_secrets() {
    let (provenance, config) = provenance(
        &format!(
            "jwt_secret = \"{SECRET}\"\nmax_streams_per_subject = 8\n\
             database_url = \"postgres://app:db-password@db/app?password=query-password\"\n\
             redis_url = \"redis://:redis-password@a:7000,redis://:redis-password@b:7001\"\n\
             redis_cluster = true\n\
             [namespaces.\"chat/\"]\nhistory_max_per_topic = 50\n"
        ),
        &["--heartbeat", "5s"],
    );
    let printed = provenance.render(&config);
    for secret in [SECRET, "db-password", "query-password", "redis-password"] {
        assert!(!printed.contains(secret), "{secret} in:\n{printed}");
    }
    for line in [
        "jwt_secret = \"[redacted]\"  # file /etc/sse.toml:1",
        "max_streams_per_subject = 8  # file /etc/sse.toml:2",
        "heartbeat = \"5s\"  # flag",
        "ticket_ttl = \"1m\"  # default",
        "redis_url = \"redis://:[redacted]@a:7000,redis://:[redacted]@b:7001\"  # file /etc/sse.toml:4",
        "# jwks_url: not set",
        "[namespaces.\"chat/\"]  # file /etc/sse.toml:6",
        "history_max_per_topic = 50",
        "# publish = true  (service-wide)",
    ] {
        assert!(printed.lines().any(|l| l == line), "{line} in:\n{printed}");
    }
    // The output is a configuration file.
    let serve = ServeArgs::augment_args(Command::new("serve"));
    let again = ConfigFile::parse(Path::new("printed.toml"), &printed, &serve)
        .unwrap_or_else(|e| panic!("{e} in:\n{printed}"));
    assert_eq!(again.namespaces(), config.namespaces);
}

#[test]
fn a_refused_value_from_the_file_is_reported_at_its_line() {
    let serve = ServeArgs::augment_args(Command::new("serve"));
    let file = ConfigFile::parse(
        Path::new("/etc/sse.toml"),
        &format!("jwt_secret = \"{SECRET}\"\n\nmax_streams_per_subject = 0\n"),
        &serve,
    )
    .expect("valid file");
    let serve = file.install(serve);
    let matches = serve.clone().get_matches_from(["serve"]);
    let args = ServeArgs::from_arg_matches(&matches).expect("ServeArgs");
    let error = Config::from_args(args).expect_err("0 streams");
    let provenance = Provenance::new(serve, matches, Some(file));
    assert_eq!(
        provenance.explain(&error),
        "sse-ticket: /etc/sse.toml:3: max_streams_per_subject must be at least 1"
    );
}
