//! The documentation against the binary: the settings table of
//! `docs/configuration.md` lists exactly the settings of `serve --help`, and
//! every `curl` line of the README's walkthrough runs as written against a
//! real `serve --dev`, with the answers the README shows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::helpers::PATIENCE;
use crate::helpers::{output, serve, sse_ticket};

/// The address every command of the walkthrough is written against.
const README_BASE: &str = "http://127.0.0.1:8080";

fn read_doc(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Long flags and `SSE_TICKET_*` variables.
#[derive(Debug, Default)]
struct Settings {
    flags: BTreeSet<String>,
    variables: BTreeSet<String>,
}

impl Settings {
    /// Adds every `--flag` and `SSE_TICKET_*` name in `text`.
    fn collect(&mut self, text: &str) {
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
            if word
                .strip_prefix("--")
                .is_some_and(|name| name.starts_with(|c: char| c.is_ascii_alphabetic()))
            {
                self.flags.insert(word.to_owned());
            } else if word.starts_with("SSE_TICKET_") {
                self.variables.insert(word.to_owned());
            }
        }
    }
}

/// Every `--flag` of an option line and every `[env: SSE_TICKET_…]` of
/// `serve --help`, but `--help`.
fn help_settings(help: &str) -> Settings {
    let mut settings = Settings::default();
    for line in help.lines() {
        let line = line.trim();
        if line.starts_with('-') {
            // `-h, --help`, `--bind <BIND>`: the option's own names.
            settings.collect(line.split('<').next().unwrap_or(line));
        } else if let Some(env) = line.strip_prefix("[env: ") {
            settings.collect(env.split(['=', ']']).next().unwrap_or(env));
        }
    }
    settings.flags.remove("--help");
    settings
}

/// The flags and variables of the settings table (its first two columns).
fn table_settings(page: &str) -> Settings {
    let mut settings = Settings::default();
    let mut in_table = false;
    for line in page.lines() {
        if line.starts_with("| variable | `serve` flag |") {
            in_table = true;
        } else if in_table && line.starts_with('|') {
            let columns: Vec<&str> = line.split('|').collect();
            for column in columns.iter().skip(1).take(2) {
                settings.collect(column);
            }
        } else if in_table {
            break;
        }
    }
    assert!(in_table, "docs/configuration.md has no settings table");
    settings
}

fn differences(what: &str, help: &BTreeSet<String>, table: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for missing in help.difference(table) {
        problems.push(format!(
            "{what} {missing} is in `serve --help` but not in docs/configuration.md"
        ));
    }
    for extra in table.difference(help) {
        problems.push(format!(
            "{what} {extra} is in docs/configuration.md but not in `serve --help`"
        ));
    }
    problems
}

#[tokio::test]
async fn the_configuration_table_lists_every_setting_of_serve_help() {
    let out = output(sse_ticket(&["serve", "--help"])).await;
    assert!(out.status.success(), "{out:?}");
    let help = help_settings(&String::from_utf8(out.stdout).expect("UTF-8"));
    // The parse found the help's settings at all.
    assert!(help.flags.contains("--bind") && help.flags.contains("--dev"));
    assert!(help.variables.contains("SSE_TICKET_BIND"));

    let table = table_settings(&read_doc("docs/configuration.md"));
    let mut problems = differences("flag", &help.flags, &table.flags);
    problems.extend(differences("variable", &help.variables, &table.variables));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A fenced block of the walkthrough: its language and its lines.
#[derive(Debug)]
struct Block {
    lang: String,
    lines: Vec<String>,
}

/// The fenced blocks of the README's "Walkthrough with curl" section.
fn walkthrough_blocks(readme: &str) -> Vec<Block> {
    let mut section = Vec::new();
    let mut inside = false;
    let mut fenced = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if !fenced && line.starts_with("## ") {
            if inside {
                break;
            }
            inside = line == "## Walkthrough with curl";
            continue;
        }
        if inside {
            section.push(line);
        }
    }
    assert!(!section.is_empty(), "the README has no walkthrough");
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for line in section {
        if let Some(lang) = line.strip_prefix("```") {
            match current.take() {
                Some(block) => blocks.push(block),
                None => {
                    current = Some(Block {
                        lang: lang.trim().to_owned(),
                        lines: Vec::new(),
                    })
                }
            }
        } else if let Some(block) = current.as_mut() {
            block.lines.push(line.to_owned());
        }
    }
    blocks
}

/// The command lines of a `sh` block, `\` continuations joined.
fn command_lines(block: &Block) -> Vec<String> {
    let mut commands = Vec::new();
    let mut pending = String::new();
    for line in &block.lines {
        match line.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(line);
                commands.push(std::mem::take(&mut pending));
            }
        }
    }
    commands
}

/// `NAME=$(curl …)`, `export NAME="$(curl …)"`: the variable it sets.
fn assigned_by_curl(line: &str) -> Option<&str> {
    let line = line.strip_prefix("export ").unwrap_or(line);
    let (name, value) = line.split_once('=')?;
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (valid && value.trim_start_matches('"').starts_with("$(curl ")).then_some(name)
}

/// The HTTP status of an error code the walkthrough shows.
fn status_of(code: &str) -> u16 {
    match code {
        "invalid_ticket" | "token_revoked" | "invalid_token" | "missing_token" => 401,
        other => panic!("the walkthrough shows error {other}: add its status here"),
    }
}

/// The walkthrough's environment and the streams it opened.
struct Walk {
    base: String,
    env: BTreeMap<String, String>,
    streams: Vec<(String, Child, Lines<BufReader<ChildStdout>>)>,
}

impl Walk {
    fn shell(&self, script: &str) -> Command {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(script.replace(README_BASE, &self.base))
            .envs(&self.env)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// `NAME=$(curl …)`: runs it and keeps the variable.
    async fn assign(&mut self, line: &str, name: &str) {
        let out = output(self.shell(&format!("{line}\nprintf %s \"${name}\""))).await;
        assert!(out.status.success(), "{line}: {out:?}");
        let value = String::from_utf8(out.stdout).expect("UTF-8");
        assert!(
            !value.is_empty() && !value.contains(['{', '"', ' ']),
            "{line} sets {name} to {value:?}"
        );
        self.env.insert(name.to_owned(), value);
    }

    /// `curl -N …`: starts it in the background and reads the frames the
    /// README shows for it.
    async fn open_stream(&mut self, line: &str, shown: Option<&Block>) {
        let mut child = self
            .shell(&format!("exec {line}"))
            .stdout(Stdio::piped())
            // `curl -N` without `-s` draws a progress meter there.
            .stderr(Stdio::null())
            .spawn()
            .expect("sh runs");
        let stdout = child.stdout.take().expect("stdout");
        self.streams
            .push((line.to_owned(), child, BufReader::new(stdout).lines()));
        if let Some(block) = shown {
            self.expect_frames(block).await;
        }
    }

    /// The last stream opened prints the frame lines of `block` next (an
    /// `id:` line's value differs from run to run).
    async fn expect_frames(&mut self, block: &Block) {
        let (line, _, lines) = self.streams.last_mut().expect("a stream is open");
        for expected in block.lines.iter().filter(|l| !l.is_empty()) {
            let got = tokio::time::timeout(PATIENCE, async {
                loop {
                    match lines.next_line().await.expect("stream output") {
                        Some(l) if l.is_empty() || l.starts_with(':') => continue,
                        other => break other,
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{line}: no {expected:?} in time"))
            .unwrap_or_else(|| panic!("{line}: ended before {expected:?}"));
            match expected.strip_prefix("id: ") {
                Some(_) => assert!(got.starts_with("id: "), "{line}: {got:?}, not {expected:?}"),
                None => assert_eq!(&got, expected, "{line}"),
            }
        }
    }

    /// Runs a plain `curl` line; checks its exit status, its HTTP status and
    /// the answer the README shows after it, if any.
    async fn request(&mut self, line: &str, shown: Option<&Block>) {
        assert!(!line.contains('|'), "{line}: a pipe hides curl's status");
        let out = output(self.shell(&format!("{line} -w '\\n%{{http_code}}'"))).await;
        assert!(out.status.success(), "{line}: {out:?}");
        let stdout = String::from_utf8(out.stdout).expect("UTF-8");
        let (body, status) = stdout.rsplit_once('\n').expect("the status line");
        let status: u16 = status.parse().expect("an HTTP status");
        let Some(block) = shown.filter(|b| b.lang == "json") else {
            assert_eq!(status, 200, "{line}: {body}");
            return;
        };
        let expected: Value = serde_json::from_str(&block.lines.join("\n")).expect("README JSON");
        let got: Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{line}: {e}: {body}"));
        match expected["error"].as_str() {
            Some(code) => {
                assert_eq!(status, status_of(code), "{line}: {body}");
                assert_eq!(got, expected, "{line}");
            }
            None => {
                assert_eq!(status, 200, "{line}: {body}");
                let keys = |v: &Value| -> Vec<String> {
                    v.as_object().expect("an object").keys().cloned().collect()
                };
                assert_eq!(keys(&got), keys(&expected), "{line}: {body}");
            }
        }
    }
}

#[tokio::test]
async fn every_curl_line_of_the_readme_walkthrough_runs() {
    let blocks = walkthrough_blocks(&read_doc("README.md"));
    let mut process = serve(&["--dev"], &[]).await;
    let env = process
        .stdout
        .iter()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(name, rest)| {
            let value = rest.split_whitespace().next().unwrap_or_default();
            (name.to_owned(), value.to_owned())
        })
        .collect();
    let mut walk = Walk {
        base: process.base.clone(),
        env,
        streams: Vec::new(),
    };
    assert!(walk.env.contains_key("SUB_TOKEN") && walk.env.contains_key("PUB_TOKEN"));

    let mut ran = 0;
    for (i, block) in blocks.iter().enumerate() {
        if block.lang != "sh" {
            continue;
        }
        // The blocks after a command block, up to the next: what it prints.
        let shown: Vec<&Block> = blocks[i + 1..]
            .iter()
            .take_while(|b| b.lang != "sh")
            .collect();
        let curls: Vec<String> = command_lines(block)
            .into_iter()
            .map(|l| l.split(" #").next().unwrap_or_default().trim().to_owned())
            .filter(|l| l.starts_with("curl ") || assigned_by_curl(l).is_some())
            .collect();
        for line in &curls {
            ran += 1;
            if let Some(name) = assigned_by_curl(line) {
                walk.assign(line, name).await;
            } else if line.split_whitespace().any(|w| w == "-N") {
                walk.open_stream(line, shown.first().copied()).await;
            } else {
                walk.request(line, shown.first().copied()).await;
                // Frames shown after the answer: what the open stream prints.
                for frames in shown.iter().skip(1).filter(|b| b.lang.is_empty()) {
                    walk.expect_frames(frames).await;
                }
            }
        }
    }
    assert!(ran >= 8, "only {ran} curl lines found in the walkthrough");
    drop(walk);
    process.stop_and_read_logs().await;
}
