//! Where each setting of `serve` came from (flag, variable, file or
//! default), and `serve --print-config`: the effective configuration as a
//! configuration file, secrets redacted, each value with its origin.

use std::fmt::Write as _;

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

use super::file::{ConfigFile, Kind, Setting, settings};
use super::redact::{self, REDACTED};
use super::{Config, ConfigError};
use crate::namespace::{NamespaceRules, Policy};

/// `serve`'s options as parsed, and the configuration file they read.
#[derive(Debug, Clone)]
pub struct Provenance {
    serve: Command,
    matches: ArgMatches,
    file: Option<ConfigFile>,
}

/// Where one setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    /// A flag of `serve`.
    Flag,
    /// This environment variable.
    Env(String),
    /// This line of the configuration file.
    File(usize),
    /// The built-in default.
    Default,
}

impl Provenance {
    /// `serve` (its options in the order to print them), its parsed
    /// options, and the configuration file they read.
    pub fn new(serve: Command, matches: ArgMatches, file: Option<ConfigFile>) -> Self {
        Self {
            serve,
            matches,
            file,
        }
    }

    /// Where `setting`'s value came from; `None` when it has none.
    fn origin(&self, setting: &Setting<'_>) -> Option<Origin> {
        let id = setting.arg.get_id();
        match self.matches.value_source(id.as_str())? {
            ValueSource::CommandLine => Some(Origin::Flag),
            ValueSource::EnvVariable => Some(Origin::Env(setting.variable().to_owned())),
            _ => Some(
                self.file
                    .as_ref()
                    .and_then(|f| f.line_of(id))
                    .map_or(Origin::Default, Origin::File),
            ),
        }
    }

    /// The one line that reports `error`: with the file and line when the
    /// refused value came from the configuration file.
    pub fn explain(&self, error: &ConfigError) -> String {
        if let (ConfigError::Invalid { name, problem }, Some(file)) = (error, &self.file) {
            let from_file = settings(&self.serve)
                .find(|s| s.variable() == *name)
                .and_then(|s| match self.origin(&s) {
                    Some(Origin::File(line)) => Some((s.key(), line)),
                    _ => None,
                });
            if let Some((key, line)) = from_file {
                return format!(
                    "sse-ticket: {}:{line}: {key} {problem}",
                    file.path().display()
                );
            }
        }
        format!("error: {error}")
    }

    /// The effective configuration as a configuration file: every setting
    /// (unset ones as comments), secrets redacted, each with its origin; then
    /// the namespace tables with the values they leave to the service.
    pub fn render(&self, config: &Config) -> String {
        let mut out = String::from(
            "# The effective configuration of `sse-ticket serve`, secrets redacted;\n\
             # after each value, where it came from.\n",
        );
        match &self.file {
            Some(file) => {
                let _ = writeln!(out, "# configuration file: {}", comment(file.path()));
            }
            None => out.push_str("# no configuration file\n"),
        }
        for setting in settings(&self.serve) {
            let key = setting.key();
            let (Some(origin), Some(raw)) = (
                self.origin(&setting),
                self.matches
                    .try_get_raw(setting.arg.get_id().as_str())
                    .ok()
                    .flatten(),
            ) else {
                let _ = writeln!(out, "# {key}: not set");
                continue;
            };
            let raw: Vec<String> = raw.map(|v| v.to_string_lossy().into_owned()).collect();
            let value = toml_value(&setting, &raw);
            let _ = writeln!(out, "{key} = {value}  # {}", self.describe(&origin));
        }
        let Ok(policies) = config.namespace_policies() else {
            return out;
        };
        let service = policies.service();
        for namespace in &config.namespaces {
            let prefix = namespace.prefix();
            let origin = match self.file.as_ref().and_then(|f| f.namespace_line(prefix)) {
                Some(line) => self.describe(&Origin::File(line)),
                None => "default".into(),
            };
            let header = toml::Value::String(format!("{prefix}/"));
            let _ = writeln!(out, "\n[namespaces.{header}]  # {origin}");
            rules(&mut out, namespace.rules(), service);
        }
        out
    }

    fn describe(&self, origin: &Origin) -> String {
        match (origin, &self.file) {
            (Origin::Flag, _) => "flag".into(),
            (Origin::Env(variable), _) => format!("env {variable}"),
            (Origin::File(line), Some(file)) => format!("file {}:{line}", comment(file.path())),
            (Origin::File(line), None) => format!("file, line {line}"),
            (Origin::Default, _) => "default".into(),
        }
    }
}

/// A namespace table's lines: what it sets, and as comments what it leaves
/// to the service-wide settings.
fn rules(out: &mut String, rules: &NamespaceRules, service: &Policy) {
    let duration = |d: std::time::Duration| {
        toml::Value::String(humantime::format_duration(d).to_string()).to_string()
    };
    let lines = [
        (
            "history_max_per_topic",
            rules.history_max_per_topic.map(|v| v.to_string()),
            service.history_max_per_topic.to_string(),
        ),
        (
            "history_ttl",
            rules.history_ttl.map(duration),
            duration(service.history_ttl),
        ),
        (
            "max_streams_per_subject",
            rules.max_streams_per_subject.map(|v| v.to_string()),
            service.max_streams_per_subject.to_string(),
        ),
        (
            "max_event_bytes",
            rules.max_event_bytes.map(|v| v.to_string()),
            service.max_event_bytes.to_string(),
        ),
        (
            "publish",
            rules.publish.map(|v| v.to_string()),
            service.publish.to_string(),
        ),
    ];
    for (key, set, service) in lines {
        let _ = match set {
            Some(value) => writeln!(out, "{key} = {value}"),
            None => writeln!(out, "# {key} = {service}  (service-wide)"),
        };
    }
}

/// `raw`, clap's strings for `setting`, as a TOML value, secrets redacted.
fn toml_value(setting: &Setting<'_>, raw: &[String]) -> String {
    let shown: Vec<String> = raw.iter().map(|v| shown(setting, v)).collect();
    let text = |s: &str| toml::Value::String(s.to_owned()).to_string();
    match setting.kind {
        Kind::List => {
            let items: Vec<String> = shown.iter().map(|s| text(s)).collect();
            format!("[{}]", items.join(", "))
        }
        // clap parsed these as a number or a boolean: TOML ones too.
        Kind::Integer => {
            let value = shown.concat();
            value
                .parse::<u128>()
                .map_or_else(|_| text(&value), |n| n.to_string())
        }
        Kind::Boolean => {
            let value = shown.concat();
            if value == "true" || value == "false" {
                value
            } else {
                text(&value)
            }
        }
        Kind::Duration | Kind::Text => text(&shown.concat()),
    }
}

/// `value` fit to be shown: URLs without their passwords, secrets replaced.
fn shown(setting: &Setting<'_>, value: &str) -> String {
    if setting.is_url() {
        return redact::urls(value, setting.is_secret());
    }
    if setting.is_secret() {
        return REDACTED.into();
    }
    value.into()
}

/// `path` fit for a TOML comment: no line break can end the comment early.
fn comment(path: &std::path::Path) -> String {
    path.display()
        .to_string()
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests;
