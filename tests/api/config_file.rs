//! The configuration file (`SSE_TICKET_CONFIG`) through the binary: its
//! mistakes stop start-up with one line naming file, line and key; flags and
//! variables win over it; `serve --print-config` shows the effective
//! configuration without a secret, and is itself a configuration file; and a
//! setting or namespace only the file gives holds in a running server.

use std::path::PathBuf;

use crate::helpers::{
    SECRET, SseStream, assert_error, output, post_ticket, serve, sse_ticket, terminate,
};

/// A configuration file of `text`, in a file of its own.
fn config_file(text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("sse-ticket-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&path, text).expect("write the configuration file");
    path
}

/// `serve --print-config` with the file at `path`, `flags` and `env`: its
/// exit code, stdout and stderr.
async fn print_config(
    path: &std::path::Path,
    flags: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let path = path.to_str().expect("UTF-8 path");
    let mut args = vec!["serve", "--print-config", "--config", path];
    args.extend_from_slice(flags);
    let mut command = sse_ticket(&args);
    command.envs(env.iter().copied());
    let out = output(command).await;
    let text = |bytes| String::from_utf8(bytes).expect("UTF-8");
    (out.status.code(), text(out.stdout), text(out.stderr))
}

/// The `key = value` lines of a printed configuration, without their origins.
fn settings(printed: &str) -> Vec<&str> {
    printed
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split("  #").next().unwrap_or(l))
        .collect()
}

#[tokio::test]
async fn a_bad_configuration_file_stops_start_up_with_one_line_naming_file_line_and_key() {
    for (text, line, key) in [
        (
            "bind = \"127.0.0.1:0\"\n\nmax_stream_per_subject = 8\n",
            3,
            "\"max_stream_per_subject\"",
        ),
        (
            "[namespaces.\"chat/\"]\nhistory_max_per_topic = 5\nmax_event_byte = 10\n",
            3,
            "\"max_event_byte\"",
        ),
        ("ticket_ttl = \"90s\"\nheartbeat = 15\n", 2, "heartbeat"),
        ("ticket_ttl = \"soon\"\n", 1, "ticket_ttl"),
        ("dev = true\n", 1, "\"dev\""),
        (
            "[namespaces.chat]\n\nmax_event_bytes = 100000\n",
            3,
            "max_event_bytes",
        ),
        (
            "[namespaces.chat]\n[namespaces.\"chat/\"]\n",
            2,
            "namespaces \"chat\" and \"chat/\"",
        ),
        // Read, then refused by the same check as its variable.
        (
            "\nmax_streams_per_subject = 0\n",
            2,
            "max_streams_per_subject",
        ),
        ("bind = \n", 1, ""),
    ] {
        let path = config_file(text);
        let location = format!("sse-ticket: {}:{line}: ", path.display());
        for print in [false, true] {
            let config = path.to_str().expect("UTF-8 path");
            let mut args = vec!["serve", "--bind", "127.0.0.1:0", "--config", config];
            if print {
                args.push("--print-config");
            }
            let mut command = sse_ticket(&args);
            command.env("SSE_TICKET_JWT_SECRET", SECRET);
            let out = output(command).await;
            let stderr = String::from_utf8(out.stderr).expect("UTF-8");
            assert_eq!(out.status.code(), Some(2), "{text:?}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{text:?}: {stderr}");
            assert!(
                stderr.starts_with(&location) && stderr.contains(key),
                "{text:?}: {stderr}"
            );
            assert!(out.stdout.is_empty(), "{text:?}: nothing printed");
        }
    }
    let mut command = sse_ticket(&["serve", "--config", "/nonexistent/sse-ticket.toml"]);
    command.env("SSE_TICKET_JWT_SECRET", SECRET);
    let out = output(command).await;
    let stderr = String::from_utf8(out.stderr).expect("UTF-8");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("sse-ticket: /nonexistent/sse-ticket.toml: "),
        "{stderr}"
    );
}

const NAMESPACES: &str = r#"
[namespaces."chat/"]
history_max_per_topic = 50
history_ttl = "1h"
max_streams_per_subject = 4
max_event_bytes = 4096

[namespaces."orders/"]
publish = false
"#;

#[tokio::test]
async fn a_flag_wins_over_a_variable_which_wins_over_the_file_which_wins_over_the_default() {
    let path = config_file(&format!(
        "jwt_secret = \"{SECRET}\"\nticket_ttl = \"90s\"\nheartbeat = \"3s\"\nmax_tickets = 7\n\
         cors_origins = [\"https://a.example\", \"https://b.example\"]\n{NAMESPACES}"
    ));
    // Held, so `--print-config` would fail if it bound anything.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let bind = held.local_addr().expect("addr").to_string();
    let (code, printed, stderr) = print_config(
        &path,
        &["--ticket-ttl", "3m", "--bind", &bind],
        &[
            ("SSE_TICKET_TICKET_TTL", "2m"),
            ("SSE_TICKET_HEARTBEAT", "4s"),
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    let file = path.display();
    for line in [
        "ticket_ttl = \"3m\"  # flag".to_owned(),
        "heartbeat = \"4s\"  # env SSE_TICKET_HEARTBEAT".to_owned(),
        format!("max_tickets = 7  # file {file}:4"),
        format!("cors_origins = [\"https://a.example\", \"https://b.example\"]  # file {file}:5"),
        format!("jwt_secret = \"[redacted]\"  # file {file}:1"),
        "request_timeout = \"10s\"  # default".to_owned(),
        "# jwks_url: not set".to_owned(),
        format!("[namespaces.\"orders/\"]  # file {file}:13"),
    ] {
        assert!(printed.lines().any(|l| l == line), "{line} in:\n{printed}");
    }

    // The output is a configuration file giving the same configuration
    // (the redacted secret given again, by its variable).
    let again = config_file(&printed);
    let (code, reprinted, stderr) =
        print_config(&again, &[], &[("SSE_TICKET_JWT_SECRET", SECRET)]).await;
    assert_eq!(code, Some(0), "{stderr}\n{printed}");
    // Every setting and namespace table, with the same values.
    assert_eq!(settings(&reprinted), settings(&printed));
    assert!(settings(&printed).contains(&"[namespaces.\"chat/\"]"));
}

#[tokio::test]
async fn print_config_never_shows_a_secret() {
    let secrets = [
        "file-secret-that-is-long-enough-for-hs256",
        "redis-password",
        "outbox-password",
        "database-password",
    ];
    let path = config_file(&format!(
        "jwt_secret = \"{}\"\nredis_url = \"redis://:{}@127.0.0.1:6379/0\"\n",
        secrets[0], secrets[1]
    ));
    let outbox = format!("postgres://app:{}@127.0.0.1/app", secrets[2]);
    let database = format!("postgres://app:{}@127.0.0.1/db", secrets[3]);
    let (code, printed, stderr) = print_config(
        &path,
        &["--database-url", &database],
        &[("SSE_TICKET_OUTBOX_URL", &outbox)],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(printed.contains("outbox_url = \"postgres://app:[redacted]@127.0.0.1/app\""));
    // The secret given by its variable, a URL's password by the file.
    let env_secret = "env-secret-that-is-long-enough-for-hs256!";
    let with_password = config_file(&format!("database_url = \"{database}\"\n"));
    let (code, printed_too, stderr_too) = print_config(
        &with_password,
        &[],
        &[("SSE_TICKET_JWT_SECRET", env_secret)],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr_too}");
    assert!(printed_too.contains("jwt_secret = \"[redacted]\"  # env SSE_TICKET_JWT_SECRET"));
    let everything = [printed, stderr, printed_too, stderr_too].concat();
    for secret in secrets.iter().chain([&env_secret]) {
        assert!(
            !everything.contains(secret),
            "{secret} printed:\n{everything}"
        );
    }
}

#[tokio::test]
async fn settings_and_namespaces_only_the_file_gives_hold_in_a_running_server() {
    let path = config_file(&format!(
        "jwt_secret = \"{SECRET}\"\nlog_format = \"json\"\nmax_streams_per_subject = 1\n{NAMESPACES}"
    ));
    let config = path.to_str().expect("UTF-8 path");
    let mut process = serve(&[], &[("SSE_TICKET_CONFIG", config)]).await;
    let mut mint = sse_ticket(&[
        "mint",
        "--sub",
        "alice",
        "--subscribe",
        "*",
        "--publish",
        "*",
    ]);
    mint.env("SSE_TICKET_JWT_SECRET", SECRET);
    let bearer = String::from_utf8(output(mint).await.stdout).expect("UTF-8");
    let bearer = bearer.trim();
    let client = reqwest::Client::new();
    let base = process.base.clone();

    // One stream per subject, from the file (the default is 16).
    let open = |body: &'static str| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let ticket = post_ticket(&client, &base, bearer, body).await;
            let url = ticket["stream_url"]
                .as_str()
                .expect("stream_url")
                .to_owned();
            client
                .get(format!("{base}{url}"))
                .send()
                .await
                .expect("stream")
        }
    };
    let first = open(r#"{"topics":["news/*"]}"#).await;
    assert_eq!(first.status(), 200);
    let mut first = SseStream::new(first);
    first.next_frame().await;
    let second = open(r#"{"topics":["news/*"]}"#).await;
    assert_error(second, 429, "too_many_streams").await;

    // `publish = false` under orders/, from the file's namespace.
    let publish = |topic: &'static str| {
        client
            .post(format!("{base}/publish"))
            .bearer_auth(bearer)
            .json(&serde_json::json!({ "topic": topic, "data": 1 }))
            .send()
    };
    let refused = publish("orders/1").await.expect("publish");
    assert_error(refused, 403, "forbidden_topic").await;
    assert_eq!(publish("news/1").await.expect("publish").status(), 200);

    terminate(&process.child);
    let _ = process.child.wait().await;
}
