//! Epochs, and the index that finds one subject's rows.

use sqlx::Row as _;

use super::*;
use crate::db::DatabaseUrl;

/// A migrated database: a SQLite file, or a fresh schema of the Postgres
/// named by `SSE_TICKET_TEST_POSTGRES_URL` when `postgres`.
async fn database(postgres: bool) -> Option<Database> {
    let url = if postgres {
        let base = std::env::var("SSE_TICKET_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())?;
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(&DatabaseUrl::parse(&base).expect("a URL"))
            .await
            .expect("Postgres");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(admin.pool())
            .await
            .expect("a schema");
        let separator = if base.contains('?') { '&' } else { '?' };
        format!("{base}{separator}options=-c%20search_path%3D{schema}")
    } else {
        let path = std::env::temp_dir().join(format!("sse-ticket-{}.db", uuid::Uuid::new_v4()));
        format!("sqlite://{}", path.display())
    };
    Some(
        Database::open(&DatabaseUrl::parse(&url).expect("a URL"))
            .await
            .expect("migrated"),
    )
}

/// How the database would run `query`, one line per step.
async fn plan(db: &Database, query: &AuditQuery) -> String {
    let statement = select(db.backend(), query);
    let mut conn = db.pool().acquire().await.expect("a connection");
    let (explain, column) = match db.backend() {
        Backend::Postgres => {
            // Postgres scans a small table whatever its indexes: what
            // matters is that the index can serve the query.
            sqlx::query("SET enable_seqscan = off")
                .execute(&mut *conn)
                .await
                .expect("set");
            ("EXPLAIN ", 0)
        }
        Backend::Sqlite => ("EXPLAIN QUERY PLAN ", 3),
    };
    let mut explained = Statement::new(db.backend(), "");
    explained.sql = format!("{explain}{}", statement.sql);
    explained.args = statement.args;
    let rows = explained
        .query()
        .fetch_all(&mut *conn)
        .await
        .expect("a plan");
    rows.iter()
        .map(|row| row.try_get::<String, _>(column).expect("a step"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn one_subjects_trail_is_read_through_the_epoch_index() {
    for postgres in [false, true] {
        let Some(db) = database(postgres).await else {
            eprintln!("Postgres skipped: set SSE_TICKET_TEST_POSTGRES_URL to run it");
            continue;
        };
        let start: DateTime<Utc> = "2026-12-02T00:00:00Z".parse().expect("time");
        let mut epoch = AuditEpoch::default();
        for hour in 0..3 {
            let at = start + TimeDelta::hours(hour);
            let mut batch = records(2, at);
            batch[1].sub = Some(format!("user-{hour}"));
            db.insert_audit(&batch, epoch.take(&batch))
                .await
                .expect("written");
        }
        let query = AuditQuery {
            sub: Some("alice".into()),
            since: None,
            limit: 10,
        };
        let found = db.audit(&query).await.expect("read");
        let times: Vec<_> = found.iter().map(|r| r.at).collect();
        let hours = |h: [i64; 3]| h.map(|h| start + TimeDelta::hours(h)).to_vec();
        assert_eq!(times, hours([2, 1, 0]), "every epoch's row, newest first");
        let plan = plan(&db, &query).await;
        assert!(plan.contains("audit_epoch_sub_at"), "{plan}");
        assert!(
            !plan.contains("SCAN audit\n") && !plan.ends_with("SCAN audit"),
            "{plan}"
        );
        db.close().await;
    }
}

fn records(n: usize, at: DateTime<Utc>) -> Vec<AuditRecord> {
    let record = AuditRecord {
        at,
        action: AuditAction::TicketIssued,
        reason: None,
        sub: Some("alice".into()),
        client_ip: None,
        user_agent: None,
        topics: Vec::new(),
        ticket_fingerprint: None,
        count: 1,
    };
    vec![record; n]
}

#[test]
fn a_writer_starts_a_new_epoch_when_the_current_one_is_full_or_old() {
    let start: DateTime<Utc> = "2026-12-02T00:00:00Z".parse().expect("time");
    let mut epoch = AuditEpoch::default();
    let first = epoch.take(&records(1, start));
    assert_eq!(first, to_millis(start), "named by its first batch's time");
    let later = start + TimeDelta::seconds(1);
    assert_eq!(epoch.take(&records(EPOCH_ROWS - 2, later)), first);
    assert_eq!(
        epoch.take(&records(1, later)),
        first,
        "the last row that fits"
    );
    let full = epoch.take(&records(1, later));
    assert_eq!(full, to_millis(later), "full: a new epoch");
    let old = start + EPOCH_SPAN + TimeDelta::seconds(1);
    assert_eq!(
        epoch.take(&records(1, old)),
        to_millis(old),
        "an hour on: a new epoch"
    );
}

async fn epochs(db: &Database) -> Vec<i64> {
    sqlx::query("SELECT epoch FROM audit_epochs ORDER BY epoch")
        .fetch_all(db.pool())
        .await
        .expect("epochs")
        .iter()
        .map(|row| row.try_get::<i64, _>(0).expect("an epoch"))
        .collect()
}

#[tokio::test]
async fn pruning_drops_the_epochs_it_empties_once_no_writer_fills_them() {
    let db = database(false).await.expect("SQLite");
    let start: DateTime<Utc> = "2026-12-02T00:00:00Z".parse().expect("time");
    let mut epoch = AuditEpoch::default();
    let mut named = vec![0];
    for hours in [0, 2, 4] {
        let batch = records(1, start + TimeDelta::hours(hours));
        let e = epoch.take(&batch);
        named.push(e);
        db.insert_audit(&batch, e).await.expect("written");
    }
    assert_eq!(
        epochs(&db).await,
        named,
        "the migration's 0, then one per batch"
    );
    // The first two epochs' rows go; the second's entry stays while a writer
    // may still be filling it (up to an hour after the horizon).
    let pruned = db
        .prune_audit(start + TimeDelta::hours(3))
        .await
        .expect("pruned");
    assert_eq!(pruned, 2);
    assert_eq!(epochs(&db).await, named[2..].to_vec());
    db.prune_audit(start + TimeDelta::hours(3) + EPOCH_SPAN)
        .await
        .expect("pruned");
    assert_eq!(epochs(&db).await, named[3..].to_vec());
}
