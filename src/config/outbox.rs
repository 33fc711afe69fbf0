//! The outbox's settings: the app's database and the table sse-ticket
//! consumes there.

use secrecy::{ExposeSecret as _, SecretString};

use super::ConfigError;

/// Longest outbox table name: `<table>_dead` must stay within PostgreSQL's
/// 63-byte identifiers.
const MAX_TABLE_LEN: usize = 63 - "_dead".len();

/// Where the outbox is, when one is configured.
#[derive(Clone)]
pub struct OutboxSettings {
    /// `postgres://…` of the app's database; may hold a password.
    pub url: SecretString,
    /// The outbox table; its dead-letter twin is `<table>_dead`.
    pub table: String,
}

impl std::fmt::Debug for OutboxSettings {
    /// Shows the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxSettings")
            .field("url", &crate::db::redact_url(self.url.expose_secret()))
            .field("table", &self.table)
            .finish()
    }
}

/// Checks `SSE_TICKET_OUTBOX_URL` and `SSE_TICKET_OUTBOX_TABLE`.
pub(super) fn outbox_settings(
    url: Option<SecretString>,
    table: String,
) -> Result<Option<OutboxSettings>, ConfigError> {
    let valid_table = !table.is_empty()
        && table.len() <= MAX_TABLE_LEN
        && table.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && table
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_table {
        return Err(ConfigError::Invalid {
            name: "SSE_TICKET_OUTBOX_TABLE",
            problem: format!(
                "must be a lower-case SQL identifier (a-z, 0-9, _; not starting with a digit) of at most {MAX_TABLE_LEN} bytes (got {table:?})"
            ),
        });
    }
    let Some(url) = url else {
        return Ok(None);
    };
    let raw = url.expose_secret();
    if !(raw.starts_with("postgres://") || raw.starts_with("postgresql://")) {
        return Err(ConfigError::Invalid {
            name: "SSE_TICKET_OUTBOX_URL",
            problem: format!(
                "must start with postgres:// (got {})",
                crate::db::redact_url(raw)
            ),
        });
    }
    Ok(Some(OutboxSettings { url, table }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: Option<&str>, table: &str) -> Result<Option<OutboxSettings>, ConfigError> {
        outbox_settings(url.map(|u| SecretString::from(u.to_owned())), table.into())
    }

    #[test]
    fn the_url_must_be_postgres_and_the_table_an_identifier() {
        assert!(check(None, "sse_outbox").expect("unset").is_none());
        let set = check(Some("postgres://app:pw@db/app"), "events_out")
            .expect("valid")
            .expect("set");
        assert_eq!(set.table, "events_out");
        assert!(!format!("{set:?}").contains("pw"), "no password in Debug");
        for table in ["", "Outbox", "1box", "out box", "out;drop", &"t".repeat(59)] {
            assert!(check(None, table).is_err(), "{table:?}");
        }
        assert!(check(None, &"t".repeat(58)).is_ok());
        let error = check(Some("mysql://app@db/app"), "sse_outbox")
            .expect_err("not postgres")
            .to_string();
        assert!(error.starts_with("SSE_TICKET_OUTBOX_URL"), "{error}");
    }
}
