//! The binary as a process of its own: one-shot commands, and `serve`
//! started, read (its banner, its logs), driven and stopped.

use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};

use super::{PATIENCE, SseStream, fresh_database_url};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_sse-ticket");

/// The binary with no `SSE_TICKET_*` variable inherited from the environment.
pub fn sse_ticket(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).kill_on_drop(true);
    for (name, _) in std::env::vars() {
        if name.starts_with("SSE_TICKET_") {
            command.env_remove(name);
        }
    }
    command
}

/// Runs `command` to its end (within [`PATIENCE`]); what it printed and its status.
pub async fn output(mut command: Command) -> std::process::Output {
    tokio::time::timeout(PATIENCE, command.output())
        .await
        .expect("the command ends in time")
        .expect("the command runs")
}

/// A `serve` process, its base URL and what it printed.
pub struct Process {
    pub child: Child,
    pub base: String,
    pub stdout: Vec<String>,
}

/// Starts `serve` with `args` and `env`, and waits for it to listen.
pub async fn serve(args: &[&str], env: &[(&str, &str)]) -> Process {
    let mut all = vec!["serve", "--bind", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut command = sse_ticket(&all);
    command
        .env("SSE_TICKET_DATABASE_URL", fresh_database_url().await)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("serve starts");
    let (base, stdout) = if args.contains(&"--dev") {
        read_banner(&mut child).await
    } else {
        (read_listen_line(&mut child).await, Vec::new())
    };
    Process {
        child,
        base,
        stdout,
    }
}

/// Reads the dev banner up to its last line; returns the base URL and the lines.
pub async fn read_banner(child: &mut Child) -> (String, Vec<String>) {
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.expect("stdout line") {
            let last = line.contains("more tokens:");
            seen.push(line);
            if last {
                break;
            }
        }
    })
    .await
    .expect("the banner in time");
    let base = seen
        .iter()
        .find_map(|l| l.split("DEV MODE on ").nth(1))
        .expect("the banner names the address")
        .trim()
        .to_owned();
    (base, seen)
}

/// Reads stderr until the `listening` log line; returns the base URL.
async fn read_listen_line(child: &mut Child) -> String {
    let stderr = child.stderr.take().expect("stderr");
    let mut reader = BufReader::new(stderr);
    let mut line = String::new();
    let base = tokio::time::timeout(PATIENCE, async {
        loop {
            line.clear();
            assert!(
                reader.read_line(&mut line).await.expect("stderr line") > 0,
                "serve exited early"
            );
            let parsed: Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(_) => continue,
            };
            if parsed["message"] == "listening" {
                let scheme = if parsed["tls"] == true {
                    "https"
                } else {
                    "http"
                };
                return format!("{scheme}://{}", parsed["addr"].as_str().expect("addr"));
            }
        }
    })
    .await
    .expect("the server listens in time");
    child.stderr = Some(reader.into_inner());
    base
}

/// `POST /sse-token` on a `serve` process; the answer's JSON.
pub async fn post_ticket(
    client: &reqwest::Client,
    base: &str,
    bearer: &str,
    body: &'static str,
) -> Value {
    client
        .post(format!("{base}/sse-token"))
        .bearer_auth(bearer)
        .body(body)
        .send()
        .await
        .expect("ticket")
        .json()
        .await
        .expect("JSON")
}

impl Process {
    /// Stops the process with SIGTERM; returns everything it logged.
    pub async fn stop_and_read_logs(&mut self) -> String {
        terminate(&self.child);
        let mut logs = String::new();
        let mut stderr = self.child.stderr.take().expect("stderr");
        tokio::time::timeout(PATIENCE, stderr.read_to_string(&mut logs))
            .await
            .expect("the process ends")
            .expect("stderr");
        self.child.wait().await.expect("exit");
        logs
    }

    /// Opens a stream on `orders/*` as the banner's subscriber, through `ready`.
    pub async fn open_stream(&self, client: &reqwest::Client) -> SseStream {
        let bearer = exported(&self.stdout, "SUB_TOKEN");
        let ticket = post_ticket(client, &self.base, &bearer, r#"{"topics":["orders/*"]}"#).await;
        let url = ticket["stream_url"].as_str().expect("stream_url");
        let response = client
            .get(format!("{}{url}", self.base))
            .send()
            .await
            .expect("stream");
        assert_eq!(response.status(), 200);
        let mut stream = SseStream::new(response);
        stream.next_frame().await; // retry
        stream.next_frame().await; // ready
        stream
    }

    /// Publishes `body` as the banner's publisher; the status.
    pub async fn publish(&self, client: &reqwest::Client, body: &'static str) -> u16 {
        client
            .post(format!("{}/publish", self.base))
            .bearer_auth(exported(&self.stdout, "PUB_TOKEN"))
            .body(body)
            .send()
            .await
            .expect("publish")
            .status()
            .as_u16()
    }
}

/// Sends SIGTERM to `child`, as a service manager stopping it does.
pub fn terminate(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// The value the dev banner `lines` export as `name`.
pub fn exported(lines: &[String], name: &str) -> String {
    let prefix = format!("export {name}=");
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the banner exports {name}"))
        .to_owned()
}
