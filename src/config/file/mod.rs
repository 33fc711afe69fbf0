//! The configuration file (`--config`, `SSE_TICKET_CONFIG`): TOML giving any
//! setting of `serve` by its variable's name in lower case without the prefix,
//! and `[namespaces."<prefix>"]` tables.
//!
//! The file's values become the defaults of `serve`'s options, so clap reads
//! them exactly as a flag's and its own precedence holds: flag, then
//! variable, then file, then the built-in default. Anything wrong stops
//! start-up with one line naming the file, the line and the key.

mod namespaces;
mod setting;

use std::ops::Range;
use std::path::{Path, PathBuf};

use clap::Command;
use serde::Deserialize as _;
use toml::de::{DeTable, ValueDeserializer};

use crate::namespace::{Namespace, NamespaceError};
pub(crate) use setting::{Kind, Setting, settings};

/// Largest configuration file read (1 MiB).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file cannot be read.
    #[error("{path}: cannot read the configuration file: {source}")]
    Read {
        /// The file as named.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Something at one line of the file.
    #[error("{path}:{line}: {problem}")]
    At {
        /// The file as named.
        path: String,
        /// 1-based.
        line: usize,
        /// What is wrong there.
        #[source]
        problem: FileProblem,
    },
}

/// What is wrong at one place of a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    /// Not TOML, or not the shape expected.
    #[error("{0}")]
    Syntax(String),
    /// A key that is no setting.
    #[error("unknown key {key:?}{}", hint.as_ref().map(|h| format!(" (did you mean {h:?}?)")).unwrap_or_default())]
    Unknown {
        /// The key as written.
        key: String,
        /// The nearest known key.
        hint: Option<String>,
    },
    /// An option of `serve` that the file cannot set.
    #[error("key {key:?} cannot be set in the configuration file, only by {how}")]
    FlagOnly {
        /// The key as written.
        key: String,
        /// The flag (and variable) that set it.
        how: String,
    },
    /// A value of the wrong TOML type.
    #[error("{key} must be {expected}, not {found}")]
    Type {
        /// The key.
        key: String,
        /// What it takes.
        expected: &'static str,
        /// The TOML type written.
        found: &'static str,
    },
    /// A value its setting's parser refuses.
    #[error("{key}: {reason}")]
    Value {
        /// The key.
        key: String,
        /// Why it was refused.
        reason: String,
    },
    /// `namespaces` is not a table of tables.
    #[error("namespaces must be tables: [namespaces.\"<prefix>\"]")]
    NamespacesNotTables,
    /// A problem inside one namespace table.
    #[error("[namespaces.{prefix:?}]: {problem}")]
    InNamespace {
        /// The table's prefix as written.
        prefix: String,
        /// What is wrong in it.
        #[source]
        problem: Box<FileProblem>,
    },
    /// A namespace refused by its own checks.
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
}

/// One setting given by the file.
#[derive(Debug, Clone)]
struct FileValue {
    /// The option of `serve`.
    id: clap::Id,
    /// The strings clap takes for it.
    values: Vec<String>,
    /// Where it is.
    line: usize,
}

/// A configuration file, read and checked.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    values: Vec<FileValue>,
    namespaces: Vec<(Namespace, usize)>,
}

impl ConfigFile {
    /// Reads and checks the file at `path` against the options of `serve`.
    pub fn read(path: &Path, serve: &Command) -> Result<Self, ConfigFileError> {
        use std::io::Read as _;
        let failed = |source| ConfigFileError::Read {
            path: path.display().to_string(),
            source,
        };
        let mut text = String::new();
        // Bounded, so `--config /dev/zero` is an error rather than all memory.
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
            .map_err(failed)?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(failed(std::io::Error::other(format!(
                "larger than {MAX_FILE_BYTES} bytes"
            ))));
        }
        Self::parse(path, &text, serve)
    }

    /// Checks `text`, the content of the file at `path`.
    pub fn parse(path: &Path, text: &str, serve: &Command) -> Result<Self, ConfigFileError> {
        let line = |offset: usize| {
            let before = text.get(..offset).unwrap_or(text);
            before.bytes().filter(|b| *b == b'\n').count() + 1
        };
        let at = |span: Range<usize>, problem| ConfigFileError::At {
            path: path.display().to_string(),
            line: line(span.start),
            problem,
        };
        let document = DeTable::parse(text).map_err(|e| {
            let message = e.message().replace('\n', " ");
            at(e.span().unwrap_or(0..0), FileProblem::Syntax(message))
        })?;
        let known: Vec<Setting<'_>> = settings(serve).collect();
        let mut file = Self {
            path: path.to_owned(),
            values: Vec::new(),
            namespaces: Vec::new(),
        };
        // In the file's order, so the first mistake is the one reported.
        let mut entries: Vec<_> = document.into_inner().into_iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        for (key, value) in entries {
            let key_span = key.span();
            let key: &str = key.get_ref();
            if key == "namespaces" {
                file.namespaces = namespaces::namespaces(value)
                    .map_err(|(span, problem)| at(span, problem))?
                    .into_iter()
                    .map(|(namespace, offset)| (namespace, line(offset)))
                    .collect();
                continue;
            }
            let Some(setting) = known.iter().find(|s| s.key() == key) else {
                return Err(at(key_span, setting::not_a_setting(serve, key)));
            };
            let value_span = value.span();
            let value = toml::Value::deserialize(ValueDeserializer::from(value))
                .map_err(|e| at(value_span.clone(), FileProblem::Syntax(e.message().into())))?;
            let values = setting
                .values(value)
                .map_err(|problem| at(key_span.clone(), problem))?;
            file.values.push(FileValue {
                id: setting.arg.get_id().clone(),
                values,
                line: line(key_span.start),
            });
        }
        Ok(file)
    }

    /// `serve` with the file's values as its options' defaults, under flags
    /// and variables.
    pub fn install(&self, serve: Command) -> Command {
        self.values.iter().fold(serve, |serve, value| {
            serve.mut_arg(&value.id, |arg| {
                arg.default_values(value.values.clone())
                    .hide_default_value(true)
            })
        })
    }

    /// The file as named.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The line that sets option `id`, when the file sets it.
    pub fn line_of(&self, id: &clap::Id) -> Option<usize> {
        self.values.iter().find(|v| &v.id == id).map(|v| v.line)
    }

    /// The namespace tables, in the file's order.
    pub fn namespaces(&self) -> Vec<Namespace> {
        self.namespaces.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The line of the table of the namespace with `prefix`.
    pub fn namespace_line(&self, prefix: &str) -> Option<usize> {
        self.namespaces
            .iter()
            .find(|(n, _)| n.prefix() == prefix)
            .map(|(_, line)| *line)
    }
}

#[cfg(test)]
mod tests;
