//! [`DatabaseUrl`]: where the durable store is, which engine it is, and a
//! password that never reaches a log line.

use std::fmt;
use std::str::FromStr;

use super::{Backend, DbError};

/// A database URL: `sqlite:…` or `postgres://…`. Only [`DatabaseUrl::parse`]
/// (or `FromStr`, or the default SQLite file) makes one; it is shown with its
/// password replaced.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    url: String,
    backend: Backend,
}

impl DatabaseUrl {
    /// Parses `raw`, knowing its engine by its scheme.
    pub fn parse(raw: &str) -> Result<Self, DbError> {
        let backend = if raw.starts_with("sqlite:") {
            Backend::Sqlite
        } else if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(DbError::Scheme(redact_url(raw)));
        };
        Ok(Self {
            url: raw.to_owned(),
            backend,
        })
    }

    /// Which engine it names.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL itself, password included: for connecting, never for showing.
    pub fn expose(&self) -> &str {
        &self.url
    }
}

impl Default for DatabaseUrl {
    /// The SQLite file `sse-ticket.db` in the working directory.
    fn default() -> Self {
        Self {
            url: crate::config::defaults::DATABASE_URL.to_owned(),
            backend: Backend::Sqlite,
        }
    }
}

impl FromStr for DatabaseUrl {
    type Err = DbError;

    fn from_str(raw: &str) -> Result<Self, DbError> {
        Self::parse(raw)
    }
}

impl fmt::Display for DatabaseUrl {
    /// The URL with its password replaced.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.url))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// A URL fit for a log line: the password replaced.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("[redacted]"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_knows_its_engine_and_hides_its_password() {
        let url = DatabaseUrl::parse("postgres://app:s3cr3t@db:5432/sse").expect("a URL");
        assert_eq!(url.backend(), Backend::Postgres);
        assert!(!url.to_string().contains("s3cr3t"), "{url}");
        assert!(!format!("{url:?}").contains("s3cr3t"), "{url:?}");
        assert!(url.expose().contains("s3cr3t"));
        assert_eq!(DatabaseUrl::default().backend(), Backend::Sqlite);
        assert!(DatabaseUrl::parse("mysql://db").is_err());
    }
}
