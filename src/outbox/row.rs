//! One outbox row: read, parsed the way `POST /publish` parses a body, and
//! published through the hub, or found invalid with a reason.

use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::table::MAX_DATA_TEXT;
use crate::broker::MAX_EVENT_DATA;
use crate::hub::{Hub, Publication, PublishError, Publisher};
use crate::idempotency::{IdempotencyKey, KeyDigest, KeyError, MAX_KEY_LEN, Scope};

/// A row as a round reads it. Text columns come capped one past their
/// limit, and `data` only when it can be within it, so a huge row costs no
/// memory here.
#[derive(Debug)]
pub(super) struct Row {
    /// Its id: the outbox's order.
    pub id: i64,
    /// Whether this round holds its row lock; `false`: someone else does,
    /// and its topic waits behind it.
    pub claimed: bool,
    /// The hash its topic is locked by.
    pub key: i32,
    topic: Option<String>,
    event: Option<String>,
    /// `data` is SQL `NULL`.
    no_data: bool,
    /// The length of `data` as text.
    data_bytes: Option<i32>,
    data: Option<String>,
    idempotency_key: Option<String>,
    /// `created_at` in microseconds since the epoch (0 when `NULL`): with
    /// the id, the row's identity when it has no `idempotency_key`.
    created_us: i64,
}

impl Row {
    /// Reads a row of the claim query.
    pub fn read(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            claimed: row.try_get("claimed")?,
            key: row.try_get("k")?,
            topic: row.try_get("topic")?,
            event: row.try_get("event")?,
            no_data: row.try_get("no_data")?,
            data_bytes: row.try_get("data_bytes")?,
            data: row.try_get("data")?,
            idempotency_key: row.try_get("idempotency_key")?,
            created_us: row.try_get("created_us")?,
        })
    }

    /// The row's `idempotency_key`, if any, or why it is invalid.
    fn idempotency_key(&self) -> Result<Option<IdempotencyKey>, String> {
        let Some(raw) = self.idempotency_key.as_deref() else {
            return Ok(None);
        };
        IdempotencyKey::parse(raw.as_bytes())
            .map(Some)
            .map_err(|e| match e {
                // The claim query reads one character past the limit.
                KeyError::TooLong(_) => {
                    format!("idempotency_key is longer than {MAX_KEY_LEN} characters")
                }
                KeyError::Empty => "idempotency_key is empty".into(),
                KeyError::NotPrintable => {
                    "idempotency_key holds a character that is not printable ASCII".into()
                }
            })
    }

    /// The event this row asks for, or why it is invalid.
    fn publication(&self) -> Result<Publication, String> {
        let Some(topic) = self.topic.as_deref() else {
            return Err("topic is NULL".into());
        };
        if self.no_data {
            return Err(
                "data is NULL: an event carries JSON data ('null'::jsonb for a JSON null)".into(),
            );
        }
        let Some(text) = self.data.as_deref() else {
            let bytes = self.data_bytes.unwrap_or_default();
            return Err(format!(
                "data is {bytes} bytes as text, over any topic's limit of {MAX_EVENT_DATA} bytes \
                 (more than {MAX_DATA_TEXT} bytes as text)"
            ));
        };
        let data: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| format!("data is JSON this service cannot read: {e}"))?;
        Publication::parse(topic, self.event.as_deref(), data).map_err(|e| e.to_string())
    }
}

/// What became of a row.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Published: delete it.
    Published,
    /// Invalid: move it to the dead-letter table with this reason.
    Dead(String),
    /// Not published for now (the broker or the history is away): it stays,
    /// and so do the rows of its topic behind it.
    Retry(PublishError),
}

/// Publishes `row` exactly as `POST /publish` would publish its body, with
/// the outbox's rights: the one place the outbox calls the hub.
pub(super) async fn publish_row(hub: &Hub, table: &str, row: &Row) -> Outcome {
    let publication = match row.publication() {
        Ok(publication) => publication,
        Err(reason) => return Outcome::Dead(reason),
    };
    // Deduplicated as `POST /publish`'s `Idempotency-Key`, in the outbox's
    // own scope; a row without one under its own identity. Either way a
    // row published again after a crash answers its first id.
    let key = match row.idempotency_key() {
        Ok(Some(key)) => key.digest(Scope::Outbox),
        Ok(None) => KeyDigest::outbox_row(table, row.id, row.created_us),
        Err(reason) => return Outcome::Dead(reason),
    };
    match hub
        .publish_keyed(Publisher::Outbox, Some(key), publication)
        .await
    {
        Ok(_) => Outcome::Published,
        // Rules of the topic, or a key taken by another event: the same row
        // would fail again.
        Err(
            e @ (PublishError::TooLarge { .. }
            | PublishError::Forbidden(_)
            | PublishError::NamespaceClosed(_)
            | PublishError::KeyReused),
        ) => Outcome::Dead(e.to_string()),
        Err(
            e @ (PublishError::Broker(_)
            | PublishError::History(_)
            | PublishError::KeyInProgress { .. }
            | PublishError::Idempotency(_)),
        ) => Outcome::Retry(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(topic: Option<&str>, event: Option<&str>, data: Option<&str>) -> Row {
        Row {
            id: 1,
            claimed: true,
            key: 0,
            topic: topic.map(Into::into),
            event: event.map(Into::into),
            no_data: data.is_none(),
            data_bytes: data.map(|d| i32::try_from(d.len()).expect("short")),
            data: data.map(Into::into),
            idempotency_key: None,
            created_us: 0,
        }
    }

    #[test]
    fn a_row_is_parsed_as_a_publish_body_is() {
        let ok = row(
            Some("orders/42"),
            Some("order.updated"),
            Some(r#"{"a": 1}"#),
        )
        .publication()
        .expect("valid");
        assert_eq!(ok.topic.as_str(), "orders/42");
        assert_eq!(ok.kind.as_str(), "order.updated");
        assert_eq!(ok.data, serde_json::json!({"a": 1}));
        let plain = row(Some("t"), None, Some("null"))
            .publication()
            .expect("null is data");
        assert_eq!(plain.kind.as_str(), "message");

        for (bad, why) in [
            (row(None, None, Some("1")), "topic is NULL"),
            (row(Some("a//b"), None, Some("1")), "is not a topic"),
            (row(Some("t"), Some("ready"), Some("1")), "reserved"),
            (
                row(Some("t"), Some("no spaces"), Some("1")),
                "event must be",
            ),
            (row(Some("t"), None, None), "data is NULL"),
            (row(Some("t"), None, Some("1e400")), "cannot read"),
        ] {
            let reason = bad.publication().expect_err(why);
            assert!(reason.contains(why), "{reason}");
        }
        let mut huge = row(Some("t"), None, None);
        (huge.no_data, huge.data_bytes) = (false, Some(1 << 20));
        let reason = huge.publication().expect_err("too large");
        assert!(reason.contains("1048576 bytes"), "{reason}");
    }
}
