//! The settings a configuration file may set, read from clap's own definition
//! of `serve`: every option with an `SSE_TICKET_*` variable but
//! `SSE_TICKET_CONFIG`, keyed by that variable in lower case without the
//! prefix. The flags and the file therefore cannot list different settings.

use std::any::TypeId;

use clap::error::{ContextKind, ContextValue};
use clap::{Arg, ArgAction, Command};

use super::FileProblem;

/// The prefix of every variable, left out of a file's keys.
const PREFIX: &str = "SSE_TICKET_";

/// The variable naming the file itself: not a setting of the file.
const CONFIG_VARIABLE: &str = "SSE_TICKET_CONFIG";

/// The TOML type a setting takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `true` or `false`.
    Boolean,
    /// A count.
    Integer,
    /// A humantime string (`"60s"`).
    Duration,
    /// Any other string: an address, a URL, a path, one of a few words.
    Text,
    /// An array of strings, or one comma-separated string.
    List,
}

impl Kind {
    fn of(arg: &Arg) -> Self {
        if matches!(arg.get_action(), ArgAction::Append) {
            return Self::List;
        }
        let parsed = arg.get_value_parser().type_id();
        let integers = [
            TypeId::of::<usize>(),
            TypeId::of::<u64>(),
            TypeId::of::<u32>(),
            TypeId::of::<u16>(),
            TypeId::of::<u8>(),
        ];
        if parsed == TypeId::of::<bool>() {
            Self::Boolean
        } else if integers.iter().any(|t| parsed == *t) {
            Self::Integer
        } else if parsed == TypeId::of::<humantime::Duration>() {
            Self::Duration
        } else {
            Self::Text
        }
    }

    /// What a value of this kind looks like, for an error.
    pub(crate) fn expected(self) -> &'static str {
        match self {
            Self::Boolean => "a boolean (true or false)",
            Self::Integer => "an integer",
            Self::Duration => "a duration string such as \"60s\"",
            Self::Text => "a string",
            Self::List => "an array of strings",
        }
    }
}

/// One setting of the file: its key, and the option of `serve` behind it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setting<'a> {
    /// The option.
    pub arg: &'a Arg,
    /// Its TOML type.
    pub kind: Kind,
}

impl<'a> Setting<'a> {
    /// The key in a file: the variable without `SSE_TICKET_`, in lower case.
    pub fn key(&self) -> String {
        self.variable()
            .trim_start_matches(PREFIX)
            .to_ascii_lowercase()
    }

    /// The `SSE_TICKET_*` variable.
    pub fn variable(&self) -> &'a str {
        self.arg
            .get_env()
            .and_then(|v| v.to_str())
            .unwrap_or_default()
    }

    /// Whether its value is a secret (its variable's value is hidden from `--help`).
    pub fn is_secret(&self) -> bool {
        self.arg.is_hide_env_values_set()
    }

    /// Whether it holds URLs, which may carry a password.
    pub fn is_url(&self) -> bool {
        self.variable().ends_with("_URL")
    }

    /// The strings clap would take for `value`, once checked by the option's
    /// own parser, exactly as a flag's value is.
    pub fn values(&self, value: toml::Value) -> Result<Vec<String>, FileProblem> {
        let wrong = |found: &toml::Value| FileProblem::Type {
            key: self.key(),
            expected: self.kind.expected(),
            found: found.type_str(),
        };
        let values = match (self.kind, value) {
            (Kind::Boolean, toml::Value::Boolean(b)) => vec![b.to_string()],
            (Kind::Integer, toml::Value::Integer(i)) if i < 0 => {
                return Err(FileProblem::Value {
                    key: self.key(),
                    reason: "must not be negative".into(),
                });
            }
            (Kind::Integer, toml::Value::Integer(i)) => vec![i.to_string()],
            (Kind::Duration | Kind::Text | Kind::List, toml::Value::String(s)) => vec![s],
            (Kind::List, toml::Value::Array(items)) => items
                .into_iter()
                .map(|item| match item {
                    toml::Value::String(s) => Ok(s),
                    other => Err(wrong(&other)),
                })
                .collect::<Result<_, _>>()?,
            (_, other) => return Err(wrong(&other)),
        };
        self.check(&values)?;
        Ok(values)
    }

    /// Runs the option's parser on `values`, in a command of its own.
    fn check(&self, values: &[String]) -> Result<(), FileProblem> {
        let Some(long) = self.arg.get_long() else {
            return Ok(());
        };
        let alone = Command::new("sse-ticket")
            .no_binary_name(true)
            .arg(self.arg.clone().env(None::<&'static str>));
        alone
            .try_get_matches_from(values.iter().map(|v| format!("--{long}={v}")))
            .map(drop)
            .map_err(|e| {
                let mut reason = reason(&e);
                if self.kind == Kind::Duration {
                    reason = format!("not a duration such as \"60s\" ({reason})");
                }
                FileProblem::Value {
                    key: self.key(),
                    reason,
                }
            })
    }
}

/// Why clap refused a value, in a few words and without the value itself
/// (which may be a secret).
fn reason(error: &clap::Error) -> String {
    if let Some(source) = std::error::Error::source(error) {
        return source.to_string();
    }
    if let Some(ContextValue::Strings(valid)) = error.get(ContextKind::ValidValue) {
        return format!("must be one of {}", valid.join(", "));
    }
    error.kind().as_str().unwrap_or("invalid value").to_owned()
}

/// Every setting a file may set, in `serve --help` order.
pub(crate) fn settings(serve: &Command) -> impl Iterator<Item = Setting<'_>> {
    serve.get_arguments().filter_map(|arg| {
        let variable = arg.get_env()?.to_str()?;
        let setting = variable.starts_with(PREFIX)
            && variable != CONFIG_VARIABLE
            && arg.get_action().takes_values();
        setting.then(|| Setting {
            arg,
            kind: Kind::of(arg),
        })
    })
}

/// Why `key` is not a setting of the file: an option of `serve` that only
/// a flag (or the variable) sets, or no setting at all (with the nearest
/// one, when one is near).
pub(crate) fn not_a_setting(serve: &Command, key: &str) -> FileProblem {
    let flag_only = serve.get_arguments().find(|arg| {
        arg.get_id().as_str() == key
            && matches!(
                arg.get_action(),
                ArgAction::Set | ArgAction::SetTrue | ArgAction::Append
            )
    });
    if let Some(arg) = flag_only {
        let mut how = format!("--{}", arg.get_long().unwrap_or(key));
        if let Some(variable) = arg.get_env().and_then(|v| v.to_str()) {
            how = format!("{how} or {variable}");
        }
        return FileProblem::FlagOnly {
            key: key.to_owned(),
            how,
        };
    }
    let keys: Vec<String> = settings(serve).map(|s| s.key()).collect();
    FileProblem::Unknown {
        key: key.to_owned(),
        hint: nearest(key, keys.iter().map(String::as_str)),
    }
}

/// The key of `known` nearest to `key` when it is a likely typo of it.
pub(crate) fn nearest<'a>(key: &str, known: impl Iterator<Item = &'a str>) -> Option<String> {
    known
        .map(|k| (strsim::damerau_levenshtein(key, k), k))
        .filter(|(distance, _)| *distance <= 3)
        .min()
        .map(|(_, k)| k.to_owned())
}
