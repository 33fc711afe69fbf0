//! The `[namespaces."<prefix>"]` tables of a configuration file, read into
//! checked [`Namespace`]s; each refusal points at the key it is about.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::FileProblem;
use super::setting::nearest;
use crate::namespace::{Namespace, NamespaceError, NamespaceRules, Namespaces, Policy};

/// The keys of a namespace table, as [`NamespaceTable`] names them.
pub(crate) const KEYS: [&str; 5] = [
    "history_max_per_topic",
    "history_ttl",
    "max_streams_per_subject",
    "max_event_bytes",
    "publish",
];

/// One table as written, each value with where it is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceTable {
    history_max_per_topic: Option<Spanned<u32>>,
    history_ttl: Option<Spanned<String>>,
    max_streams_per_subject: Option<Spanned<usize>>,
    max_event_bytes: Option<Spanned<usize>>,
    publish: Option<Spanned<bool>>,
}

/// A refusal and the bytes of the file it is about.
pub(crate) type Located = (Range<usize>, FileProblem);

/// Reads the value of the top-level `namespaces` key: each of its tables, with
/// the line of its prefix.
pub(crate) fn namespaces(value: Spanned<DeValue<'_>>) -> Result<Vec<(Namespace, usize)>, Located> {
    let span = value.span();
    let DeValue::Table(tables) = value.into_inner() else {
        return Err((span, FileProblem::NamespacesNotTables));
    };
    let mut tables: Vec<_> = tables.into_iter().collect();
    tables.sort_by_key(|(prefix, _)| prefix.span().start);
    let mut found: Vec<(Namespace, usize)> = Vec::new();
    for (prefix, table) in tables {
        let at = prefix.span();
        let prefix = prefix.into_inner().into_owned();
        let namespace = one(&prefix, table)?;
        let mut so_far: Vec<Namespace> = found.iter().map(|(n, _)| n.clone()).collect();
        so_far.push(namespace.clone());
        // The one rule of `Namespaces::new`: the newest table repeats a prefix.
        if let Err(e) = Namespaces::new(placeholder(), &so_far) {
            return Err((at, FileProblem::Namespace(e)));
        }
        found.push((namespace, at.start));
    }
    Ok(found)
}

fn one(prefix: &str, table: Spanned<DeValue<'_>>) -> Result<Namespace, Located> {
    let span = table.span();
    let table_problem = |problem| FileProblem::InNamespace {
        prefix: prefix.to_owned(),
        problem: Box::new(problem),
    };
    let DeValue::Table(keys) = table.get_ref() else {
        return Err((
            span,
            table_problem(FileProblem::Type {
                key: prefix.to_owned(),
                expected: "a table",
                found: table.get_ref().type_str(),
            }),
        ));
    };
    check_keys(keys).map_err(|(at, p)| (at, table_problem(p)))?;
    let written = NamespaceTable::deserialize(ValueDeserializer::from(table)).map_err(|e| {
        let at = e.span().unwrap_or(span.clone());
        let problem = FileProblem::Syntax(e.message().replace('\n', " "));
        (at, table_problem(problem))
    })?;
    let history_ttl = match &written.history_ttl {
        Some(ttl) => Some(humantime::parse_duration(ttl.get_ref()).map_err(|e| {
            let problem = FileProblem::Value {
                key: "history_ttl".into(),
                reason: e.to_string(),
            };
            (ttl.span(), table_problem(problem))
        })?),
        None => None,
    };
    let rules = NamespaceRules {
        history_max_per_topic: written
            .history_max_per_topic
            .clone()
            .map(Spanned::into_inner),
        history_ttl,
        max_streams_per_subject: written
            .max_streams_per_subject
            .clone()
            .map(Spanned::into_inner),
        max_event_bytes: written.max_event_bytes.clone().map(Spanned::into_inner),
        publish: written.publish.clone().map(Spanned::into_inner),
    };
    Namespace::new(prefix, rules).map_err(|e| {
        let at = match &e {
            NamespaceError::EventBytes(_) => written.max_event_bytes.as_ref().map(Spanned::span),
            NamespaceError::Streams(_) => {
                written.max_streams_per_subject.as_ref().map(Spanned::span)
            }
            NamespaceError::HistoryTtl(_) => written.history_ttl.as_ref().map(Spanned::span),
            NamespaceError::Prefix { .. } | NamespaceError::Duplicate(..) => None,
        };
        (at.unwrap_or(span), FileProblem::Namespace(e))
    })
}

/// Refuses a key no namespace table has, naming it (and the nearest one).
fn check_keys(table: &DeTable<'_>) -> Result<(), Located> {
    for key in table.keys() {
        let name: &str = key.get_ref();
        if !KEYS.contains(&name) {
            return Err((
                key.span(),
                FileProblem::Unknown {
                    key: name.to_owned(),
                    hint: nearest(name, KEYS.into_iter()),
                },
            ));
        }
    }
    Ok(())
}

/// Any service-wide policy: only the prefixes matter for duplicates.
fn placeholder() -> Policy {
    Policy {
        history_max_per_topic: 0,
        history_ttl: std::time::Duration::from_secs(1),
        max_streams_per_subject: 1,
        max_event_bytes: 1,
        publish: true,
    }
}
