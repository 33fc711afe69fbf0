//! `POST /publish` with `Idempotency-Key`: a repeat answers the first id and
//! publishes nothing; another body is `422 idempotency_key_reused`; keys are
//! per `sub`, shared by instances, forgotten after their TTL, and a publish
//! that fails leaves its key free.

use std::time::Duration;

use serde_json::{Value, json};
use sse_ticket::clock::ManualClock;

use crate::helpers::{
    SseStream, TestApp, assert_error, execute_sql, fresh_database_url, header, resume, spawn_app,
    spawn_app_with, spawn_config_with_clock, test_config,
};

/// `POST /publish` of `body` as `bearer` with these `Idempotency-Key` values.
pub async fn post_keyed(
    app: &TestApp,
    bearer: &str,
    keys: &[&[u8]],
    body: &str,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/publish"))
        .bearer_auth(bearer)
        .header("content-type", "application/json")
        .body(body.to_owned());
    for key in keys {
        let value = reqwest::header::HeaderValue::from_bytes(key).expect("a header value");
        request = request.header("idempotency-key", value);
    }
    request.send().await.expect("POST /publish")
}

/// The id of a `200` answer, and whether it says it was replayed.
pub async fn published(response: reqwest::Response) -> (String, bool) {
    assert_eq!(response.status(), 200, "published");
    let replayed = match header(&response, "idempotent-replayed") {
        "" => false,
        "true" => true,
        other => panic!("Idempotent-Replayed: {other}"),
    };
    let json: Value = response.json().await.expect("JSON");
    (json["id"].as_str().expect("an id").to_owned(), replayed)
}

/// Publishes `key` with `body` as `bearer`; its id and whether it was replayed.
async fn publish_keyed(app: &TestApp, bearer: &str, key: &str, body: &Value) -> (String, bool) {
    published(post_keyed(app, bearer, &[key.as_bytes()], &body.to_string()).await).await
}

async fn outcome(app: &TestApp, outcome: &str) -> f64 {
    app.metric(&format!(
        "sse_ticket_idempotency_total{{outcome=\"{outcome}\"}}"
    ))
    .await
}

/// The next events of `stream` are exactly `ids`: publishes a marker after
/// them, so that a duplicate would come before it.
async fn assert_next_events(app: &TestApp, stream: &mut SseStream, topic: &str, ids: &[&str]) {
    let marker = app.publish(topic, Some("marker"), json!(null)).await;
    for id in ids.iter().copied().chain([marker.as_str()]) {
        assert_eq!(stream.next_event().await.id.as_deref(), Some(id));
    }
}

#[tokio::test]
async fn a_repeat_with_the_same_key_answers_the_first_id_and_publishes_nothing() {
    let app = spawn_app().await;
    let before = app.publish("orders/1", None, json!("before")).await;
    let mut stream = app.subscribe("alice", &["orders/*"]).await;
    let bearer = app.token("backend", &[], &["orders/*"]);
    let body = json!({ "topic": "orders/1", "event": "order.paid", "data": { "n": 1 } });

    let (id, replayed) = publish_keyed(&app, &bearer, "order-1-paid", &body).await;
    assert!(!replayed, "the first answer is no replay");
    for _ in 0..3 {
        assert_eq!(
            publish_keyed(&app, &bearer, "order-1-paid", &body).await,
            (id.clone(), true)
        );
    }

    // Live, and from the history: one event, then the next one.
    let mut resumed = resume(&app, "carol", &["orders/1"], &before).await;
    let next = app.publish("orders/1", None, json!("next")).await;
    for stream in [&mut stream, &mut resumed] {
        for expected in [&id, &next] {
            assert_eq!(stream.next_event().await.id.as_ref(), Some(expected));
        }
    }
    assert_eq!(outcome(&app, "first").await, 1.0);
    assert_eq!(outcome(&app, "replayed").await, 3.0);
    assert_eq!(app.metric("sse_ticket_events_published_total").await, 3.0);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_publish_one_event_under_one_id() {
    let app = spawn_app().await;
    let mut stream = app.subscribe("alice", &["t"]).await;
    let bearer = app.token("backend", &[], &["t"]);
    let body = json!({ "topic": "t", "data": "once" }).to_string();
    // The first publish takes its time: the others arrive while it runs.
    history_inserts(&app, Inserts::Slow).await;
    let requests = (0..10).map(|_| post_keyed(&app, &bearer, &[b"k"], &body));
    let mut answers = Vec::new();
    for response in futures_util::future::join_all(requests).await {
        answers.push(published(response).await);
    }
    let id = answers[0].0.clone();
    assert!(answers.iter().all(|(other, _)| *other == id), "{answers:?}");
    let firsts = answers.iter().filter(|(_, replayed)| !replayed).count();
    assert_eq!(firsts, 1, "{answers:?}");
    history_inserts(&app, Inserts::Stored).await;
    assert_next_events(&app, &mut stream, "t", &[&id]).await;
    assert_eq!(outcome(&app, "replayed").await, 9.0);
}

#[tokio::test]
async fn instances_sharing_the_store_answer_one_id() {
    // One database (and, when the suite runs on Redis, one Redis namespace).
    let config = test_config(&fresh_database_url().await);
    let clock = ManualClock::default();
    let a = spawn_config_with_clock(config.clone(), clock.clone()).await;
    let b = spawn_config_with_clock(config, clock).await;
    let bearer = a.token("backend", &[], &["t"]);
    let body = json!({ "topic": "t", "data": 1 });
    let (id, _) = publish_keyed(&a, &bearer, "k1", &body).await;
    assert_eq!(publish_keyed(&b, &bearer, "k1", &body).await, (id, true));

    let body = json!({ "topic": "t", "data": 2 }).to_string();
    history_inserts(&a, Inserts::Slow).await;
    let requests =
        (0..10).map(|i| post_keyed(if i % 2 == 0 { &a } else { &b }, &bearer, &[b"k2"], &body));
    let mut ids = Vec::new();
    for response in futures_util::future::join_all(requests).await {
        ids.push(published(response).await);
    }
    assert!(ids.iter().all(|(id, _)| *id == ids[0].0), "{ids:?}");
    assert_eq!(ids.iter().filter(|(_, replayed)| !replayed).count(), 1);
    let published_total = a.metric("sse_ticket_events_published_total").await
        + b.metric("sse_ticket_events_published_total").await;
    assert_eq!(published_total, 2.0);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused_and_publishes_nothing() {
    let app = spawn_app().await;
    let mut stream = app.subscribe("alice", &["*"]).await;
    let bearer = app.token("backend", &[], &["*"]);
    let body = json!({ "topic": "t", "event": "e", "data": { "n": 1 } });
    let (id, _) = publish_keyed(&app, &bearer, "k", &body).await;
    for other in [
        json!({ "topic": "u", "event": "e", "data": { "n": 1 } }),
        json!({ "topic": "t", "data": { "n": 1 } }),
        json!({ "topic": "t", "event": "e", "data": { "n": 2 } }),
        json!({ "topic": "t", "event": "e", "data": { "n": 1.0 } }),
    ] {
        let response = post_keyed(&app, &bearer, &[b"k"], &other.to_string()).await;
        let error = assert_error(response, 422, "idempotency_key_reused").await;
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("Idempotency-Key"))
        );
    }
    assert_next_events(&app, &mut stream, "t", &[&id]).await;
    assert_eq!(outcome(&app, "reused").await, 4.0);
    assert_eq!(app.metric("sse_ticket_events_published_total").await, 2.0);
}

#[tokio::test]
async fn keys_belong_to_the_publishing_subject() {
    let app = spawn_app().await;
    let body = json!({ "topic": "t", "data": 1 });
    let alice = app.token("alice", &[], &["t"]);
    let bob = app.token("bob", &[], &["t"]);
    let (for_alice, _) = publish_keyed(&app, &alice, "k", &body).await;
    let (for_bob, replayed) = publish_keyed(&app, &bob, "k", &body).await;
    assert!(!replayed);
    assert_ne!(for_alice, for_bob);
    // Another token of the same subject shares the key.
    let alice_again = app.token_for("alice", &[], &["*"], Duration::from_secs(60));
    assert_eq!(
        publish_keyed(&app, &alice_again, "k", &body).await,
        (for_alice, true)
    );
}

#[tokio::test]
async fn whitespace_key_order_and_the_default_type_do_not_make_another_body() {
    let app = spawn_app().await;
    let bearer = app.token("backend", &[], &["t"]);
    let first = r#"{"topic":"t","data":{"a":1,"b":[1,"x"]}}"#;
    let same = "{ \"data\" : {\"b\": [1, \"\\u0078\"],\n \"a\": 1}, \"event\": \"message\", \"topic\": \"t\" }";
    let (id, _) = published(post_keyed(&app, &bearer, &[b"k"], first).await).await;
    assert_eq!(
        published(post_keyed(&app, &bearer, &[b"k"], same).await).await,
        (id, true)
    );
}

#[tokio::test]
async fn invalid_keys_are_refused_and_nothing_is_published() {
    let app = spawn_app().await;
    let bearer = app.token("backend", &[], &["t"]);
    let body = json!({ "topic": "t", "data": 1 }).to_string();
    let long = vec![b'k'; 256];
    let invalid: [&[&[u8]]; 5] = [
        &[b""],
        &[&long],
        &[b"a\tb"],
        &["clé".as_bytes()],
        &[b"one", b"two"],
    ];
    for keys in invalid {
        let response = post_keyed(&app, &bearer, keys, &body).await;
        let error = assert_error(response, 400, "invalid_body").await;
        let message = error["message"].as_str().expect("a message");
        assert!(message.contains("Idempotency-Key"), "{message}");
    }
    assert_eq!(app.metric("sse_ticket_events_published_total").await, 0.0);
    // The longest and the widest are keys.
    let widest: Vec<u8> = (0x20..=0x7e).collect();
    for key in [&vec![b'k'; 255][..], &widest] {
        let (_, replayed) = published(post_keyed(&app, &bearer, &[key], &body).await).await;
        assert!(!replayed);
    }
}

#[tokio::test]
async fn after_its_ttl_a_key_publishes_anew() {
    let app = spawn_app_with(|c| c.idempotency_ttl = Duration::from_secs(3600)).await;
    let body = json!({ "topic": "t", "data": 1 });
    let bearer = app.token("backend", &[], &["t"]);
    let (id, _) = publish_keyed(&app, &bearer, "k", &body).await;
    app.advance(Duration::from_secs(3599));
    assert_eq!(
        publish_keyed(&app, &bearer, "k", &body).await,
        (id.clone(), true)
    );
    app.advance(Duration::from_secs(2));
    let (again, replayed) = publish_keyed(&app, &bearer, "k", &body).await;
    assert!(!replayed);
    assert_ne!(again, id);
}

#[tokio::test]
async fn a_publish_that_fails_leaves_its_key_free() {
    let app = &spawn_app().await;
    let bearer = &app.token("backend", &[], &["t"]);
    let post =
        |body: Value| async move { post_keyed(app, bearer, &[b"k"], &body.to_string()).await };
    // Refused before the key is looked at.
    let too_large = json!({ "topic": "t", "data": "x".repeat(70_000) });
    assert_error(post(too_large).await, 413, "payload_too_large").await;

    // Failed once the key was claimed: the history refuses to store it.
    history_inserts(app, Inserts::Refused).await;
    let body = json!({ "topic": "t", "data": 1 });
    assert_error(post(body.clone()).await, 503, "unavailable").await;
    history_inserts(app, Inserts::Stored).await;

    let (id, replayed) = published(post(body.clone()).await).await;
    assert!(!replayed);
    assert_eq!(published(post(body).await).await, (id, true));
    assert_eq!(outcome(app, "taken_over").await, 1.0);
    assert_eq!(app.metric("sse_ticket_events_published_total").await, 1.0);
}

/// What the history does with an insert, for a test to make a publish fail
/// or take its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserts {
    /// Stored.
    Stored,
    /// Refused: the publish fails once its key is claimed.
    Refused,
    /// Stored after a few hundred milliseconds, while repeats arrive.
    Slow,
}

/// Makes the history of `app` treat inserts as `inserts` says.
pub async fn history_inserts(app: &TestApp, inserts: Inserts) {
    let sqlite = app.database_url.starts_with("sqlite");
    let statements: &[&str] = match (sqlite, inserts) {
        (true, Inserts::Refused) => &[
            "CREATE TRIGGER hold BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'refused'); END",
        ],
        (true, Inserts::Slow) => &["CREATE TRIGGER hold BEFORE INSERT ON events BEGIN
                 SELECT count(*) FROM (WITH RECURSIVE n(i) AS
                     (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500000) SELECT i FROM n);
             END"],
        (true, Inserts::Stored) => &["DROP TRIGGER hold"],
        (false, Inserts::Refused) => &[
            "CREATE FUNCTION hold() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER hold BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION hold()",
        ],
        (false, Inserts::Slow) => &[
            "CREATE FUNCTION hold() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER hold BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION hold()",
        ],
        (false, Inserts::Stored) => &["DROP TRIGGER hold ON events", "DROP FUNCTION hold()"],
    };
    for sql in statements {
        execute_sql(&app.database_url, sql).await;
    }
}
