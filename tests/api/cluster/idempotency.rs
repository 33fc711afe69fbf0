//! `Idempotency-Key` on instances sharing a Redis: one key publishes once
//! whichever instance each repeat reaches, and Redis holds the key's digest,
//! never the key or the publisher's `sub`.

use redis::AsyncCommands as _;
use serde_json::json;

use super::{NEEDS_REDIS, spawn_pair_with};
use crate::helpers::{redis_settings, test_redis_url};
use crate::idempotency::{Inserts, history_inserts, post_keyed, published};

#[tokio::test]
#[ignore = "needs Redis: .ci/run runs it with SSE_TICKET_TEST_REDIS_URL"]
async fn on_redis_a_key_publishes_once_across_instances_and_only_its_digest_is_stored() {
    let url = test_redis_url().expect(NEEDS_REDIS);
    let settings = redis_settings(&url);
    let prefix = settings.prefix.clone();
    let (a, b) = spawn_pair_with(settings, |_| {}).await;
    let mut on_a = a.subscribe("alice", &["t"]).await;
    let mut on_b = b.subscribe("bob", &["t"]).await;
    let bearer = a.token("billing-service", &[], &["t"]);
    let body = json!({ "topic": "t", "data": "once" }).to_string();

    // The first publish takes its time: the others arrive while it runs.
    history_inserts(&a, Inserts::Slow).await;
    let requests = (0..20).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        post_keyed(app, &bearer, &[b"invoice-77-paid"], &body)
    });
    let mut answers = Vec::new();
    for response in futures_util::future::join_all(requests).await {
        answers.push(published(response).await);
    }
    let id = answers[0].0.clone();
    assert!(answers.iter().all(|(other, _)| *other == id), "{answers:?}");
    assert_eq!(answers.iter().filter(|(_, replayed)| !replayed).count(), 1);
    history_inserts(&a, Inserts::Stored).await;
    let marker = b.publish("t", Some("marker"), json!(null)).await;
    for stream in [&mut on_a, &mut on_b] {
        assert_eq!(stream.next_event().await.id.as_ref(), Some(&id));
        assert_eq!(stream.next_event().await.id.as_ref(), Some(&marker));
    }

    let mut redis = redis::Client::open(url)
        .expect("URL")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers");
    let keys: Vec<String> = redis
        .keys(format!("{prefix}idempotency:*"))
        .await
        .expect("KEYS");
    assert_eq!(keys.len(), 1, "{keys:?}");
    let fields: Vec<String> = redis
        .hgetall::<_, Vec<String>>(&keys[0])
        .await
        .expect("HGETALL");
    for text in keys.iter().chain(&fields) {
        assert!(
            !text.contains("invoice-77") && !text.contains("billing"),
            "{text}"
        );
    }
    assert!(fields.contains(&id), "{fields:?}");
    // Not in the database: Redis is the store when there is one.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&a.database_url)
        .await
        .expect("the database");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys")
        .fetch_one(&pool)
        .await
        .expect("a count");
    assert_eq!(rows, 0);
    pool.close().await;
}
