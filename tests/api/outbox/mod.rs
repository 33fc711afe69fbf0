//! The outbox: rows an app inserts in its own transaction, published as
//! `POST /publish` would publish them. Each test has an app database of its
//! own (a Postgres schema) and a service database of its own.

mod delivery;
mod failures;
mod instances;
mod keys;

/// The SQL docs/outbox.md gives apps that manage their own migrations is
/// the SQL the service runs when the tables are missing.
#[test]
fn the_documented_schema_is_the_one_the_service_creates() {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/outbox.md"))
        .expect("docs/outbox.md");
    let schema = sse_ticket::outbox::schema_sql("sse_outbox");
    assert!(
        page.contains(&format!("```sql\n{schema}```")),
        "docs/outbox.md must show, in one sql block, exactly:\n{schema}"
    );
}
