//! The outbox table and its dead-letter twin: their schema, and the SQL
//! every round runs against them, written once per table name.

use crate::auth::MAX_TOPIC_LEN;
use crate::broker::{MAX_EVENT_DATA, MAX_EVENT_TYPE_LEN};
use crate::idempotency::MAX_KEY_LEN;

/// Longest `data` read back as text, in bytes: the JSON text Postgres
/// prints for a `jsonb` adds a space after each `,` and `:`, at most half as
/// much again as the compact form the size limit applies to, so anything
/// longer is over every limit and is dead-lettered without being read.
pub(super) const MAX_DATA_TEXT: usize = 2 * MAX_EVENT_DATA;

/// The schema sse-ticket creates when it is missing: the outbox, its index
/// on `(topic, id)`, the dead-letter table `<table>_dead`, and a
/// statement-level trigger that wakes the consumers on commit. Apps that
/// manage their own migrations run exactly this (docs/outbox.md shows it
/// for `sse_outbox`).
pub fn schema_sql(table: &str) -> String {
    let dead = dead_table(table);
    format!(
        r#"CREATE TABLE IF NOT EXISTS "{table}" (
    id              bigserial PRIMARY KEY,
    topic           text,
    event           text,
    data            jsonb,
    idempotency_key text,
    created_at      timestamptz DEFAULT now()
);
CREATE INDEX IF NOT EXISTS "{table}_topic_id" ON "{table}" (topic, id);
CREATE TABLE IF NOT EXISTS "{dead}" (
    id              bigint PRIMARY KEY,
    topic           text,
    event           text,
    data            jsonb,
    idempotency_key text,
    created_at      timestamptz,
    reason          text NOT NULL,
    failed_at       timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION "{table}_notify"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{table}', '');
    RETURN NULL;
END
$$;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_trigger
                   WHERE tgrelid = '"{table}"'::regclass AND tgname = '{table}_notify') THEN
        CREATE TRIGGER "{table}_notify" AFTER INSERT ON "{table}"
            FOR EACH STATEMENT EXECUTE FUNCTION "{table}_notify"();
    END IF;
END
$$;
"#
    )
}

/// The SQL of one outbox table, built once. The name is a checked
/// lower-case identifier (see `SSE_TICKET_OUTBOX_TABLE`); it is quoted
/// anyway.
#[derive(Debug, Clone)]
pub(super) struct Table {
    /// The table's name, also the channel its trigger notifies.
    pub name: String,
    /// Whether the table and its twin exist, and whether the trigger does.
    pub exists: String,
    /// Serializes the schema's creation between instances starting at once.
    pub setup_lock: String,
    /// `schema_sql`.
    pub schema: String,
    /// The topics of the oldest rows (by a 32-bit hash, so a topic of any
    /// length is never read here), with their first id and row count.
    pub head: String,
    /// Takes, without waiting, a transaction lock on each topic hash given.
    pub lock: String,
    /// Claims the oldest rows of the locked topics, and lists beside them
    /// the rows a foreign lock made it skip, so that a topic stops there.
    pub claim: String,
    /// Copies rows to the dead-letter table with their reasons.
    pub bury: String,
    /// Deletes rows.
    pub delete: String,
    /// The age of the oldest row, in seconds (no row: none).
    pub lag: String,
}

/// The dead-letter twin of the outbox table `table`.
fn dead_table(table: &str) -> String {
    format!("{table}_dead")
}

impl Table {
    /// The SQL of `name` and of `<name>_dead`.
    pub fn new(name: &str) -> Self {
        let t = format!("\"{name}\"");
        let dead = format!("\"{}\"", dead_table(name));
        // Per table (its oid, so the same name in two schemas is two
        // tables) and per topic hash: one 64-bit advisory lock key.
        let topic_lock = format!(
            "pg_try_advisory_xact_lock(('{t}'::regclass::oid::int8 << 32) | (k::int8 & 4294967295))"
        );
        Self {
            name: name.to_owned(),
            exists: format!(
                "SELECT to_regclass('{t}') IS NOT NULL AND to_regclass('{dead}') IS NOT NULL, \
                     EXISTS (SELECT FROM pg_trigger \
                             WHERE tgrelid = to_regclass('{t}') AND tgname = '{name}_notify')"
            ),
            setup_lock: format!(
                "SELECT pg_advisory_xact_lock(hashtext('sse-ticket outbox'), hashtext('{name}'))"
            ),
            schema: schema_sql(name),
            head: format!(
                "SELECT hashtext(coalesce(topic, '')) AS k, min(id) AS first, count(*) AS n \
                 FROM (SELECT id, topic FROM {t} ORDER BY id LIMIT $1) AS head \
                 GROUP BY 1 ORDER BY 2"
            ),
            lock: format!("SELECT k FROM unnest($1::int4[]) AS keys(k) WHERE {topic_lock}"),
            claim: format!(
                "WITH claimed AS ( \
                     SELECT id FROM {t} WHERE hashtext(coalesce(topic, '')) = ANY($1) \
                     ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 SELECT o.id, c.id IS NOT NULL AS claimed, hashtext(coalesce(o.topic, '')) AS k, \
                     left(o.topic, {topic_cap}) AS topic, left(o.event, {event_cap}) AS event, \
                     o.data IS NULL AS no_data, octet_length(j.text) AS data_bytes, \
                     CASE WHEN c.id IS NOT NULL AND octet_length(j.text) <= {MAX_DATA_TEXT} \
                          THEN j.text END AS data, \
                     left(o.idempotency_key, {key_cap}) AS idempotency_key, \
                     coalesce((extract(epoch FROM o.created_at) * 1000000)::int8, 0) AS created_us \
                 FROM {t} AS o LEFT JOIN claimed AS c ON c.id = o.id \
                     CROSS JOIN LATERAL (SELECT o.data::text AS text) AS j \
                 WHERE hashtext(coalesce(o.topic, '')) = ANY($1) \
                     AND o.id <= (SELECT max(id) FROM claimed) \
                 ORDER BY o.id",
                // One past each limit: enough to be refused for its length.
                topic_cap = MAX_TOPIC_LEN + 1,
                event_cap = MAX_EVENT_TYPE_LEN + 1,
                key_cap = MAX_KEY_LEN + 1,
            ),
            bury: format!(
                "INSERT INTO {dead} (id, topic, event, data, idempotency_key, created_at, reason) \
                 SELECT o.id, o.topic, o.event, o.data, o.idempotency_key, o.created_at, d.reason \
                 FROM {t} AS o JOIN unnest($1::int8[], $2::text[]) AS d(id, reason) ON d.id = o.id \
                 ON CONFLICT (id) DO UPDATE SET topic = EXCLUDED.topic, event = EXCLUDED.event, \
                     data = EXCLUDED.data, idempotency_key = EXCLUDED.idempotency_key, \
                     created_at = EXCLUDED.created_at, reason = EXCLUDED.reason, \
                     failed_at = EXCLUDED.failed_at"
            ),
            delete: format!("DELETE FROM {t} WHERE id = ANY($1)"),
            lag: format!(
                "SELECT greatest(coalesce(extract(epoch FROM clock_timestamp() - created_at), 0), 0)::float8 \
                 FROM {t} ORDER BY id LIMIT 1"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_names_the_table_quoted() {
        let table = Table::new("app_outbox");
        for sql in [&table.head, &table.claim, &table.delete, &table.lag] {
            assert!(sql.contains("\"app_outbox\""), "{sql}");
        }
        assert!(table.bury.contains("INSERT INTO \"app_outbox_dead\""));
        assert!(table.schema.contains("pg_notify('app_outbox', '')"));
        assert!(table.exists.contains("'app_outbox_notify'"));
    }
}
