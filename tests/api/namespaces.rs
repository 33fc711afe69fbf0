//! Namespaces: a topic prefix with its own history size and age, per-subject
//! stream cap, event size, and whether `/publish` may publish there.

use std::time::Duration;

use serde_json::{Value, json};
use sse_ticket::namespace::{Namespace, NamespaceRules};

use crate::helpers::{assert_error, resume, spawn_app_with};

fn namespace(prefix: &str, rules: NamespaceRules) -> Namespace {
    Namespace::new(prefix, rules).expect("a valid namespace")
}

#[tokio::test]
async fn a_topic_under_a_namespace_keeps_only_its_namespace_s_history_size() {
    let app = spawn_app_with(|c| {
        c.retention.history_max_per_topic = 100;
        c.namespaces = vec![namespace(
            "chat/",
            NamespaceRules {
                history_max_per_topic: Some(2),
                ..NamespaceRules::default()
            },
        )];
    })
    .await;
    let mut chat = Vec::new();
    let mut orders = Vec::new();
    for n in 0..5 {
        chat.push(app.publish("chat/room-1", None, json!(n)).await);
        orders.push(app.publish("orders/1", None, json!(n)).await);
    }
    // `chatter` is not under `chat/`: it keeps the service's size.
    let chatter = app.publish("chatter", None, json!("kept")).await;
    app.advance_until_metric(
        Duration::from_secs(61),
        "sse_ticket_events_pruned_total",
        3.0,
    )
    .await;

    let mut stream = resume(&app, "alice", &["chat/room-1"], &chat[0]).await;
    assert_eq!(
        stream.next_event().await.event.as_deref(),
        Some("reset"),
        "chat[0] is pruned"
    );
    for id in &chat[3..] {
        assert_eq!(stream.next_event().await.id.as_deref(), Some(id.as_str()));
    }
    let mut stream = resume(&app, "bob", &["orders/1", "chatter"], &orders[0]).await;
    for id in orders[1..].iter().chain([&chatter]) {
        assert_eq!(
            stream.next_event().await.id.as_deref(),
            Some(id.as_str()),
            "the service's 100 still hold outside chat/"
        );
    }
}

#[tokio::test]
async fn a_namespace_s_history_ttl_and_history_where_the_service_keeps_none() {
    let app = spawn_app_with(|c| {
        c.retention.history_max_per_topic = 0;
        c.retention.history_ttl = Duration::from_secs(24 * 3600);
        c.namespaces = vec![namespace(
            "news",
            NamespaceRules {
                history_max_per_topic: Some(10),
                history_ttl: Some(Duration::from_secs(3600)),
                ..NamespaceRules::default()
            },
        )];
    })
    .await;
    let old = app.publish("news/world", None, json!("old")).await;
    let unkept = app.publish("sports/1", None, json!("not kept")).await;
    app.advance(Duration::from_secs(3000));
    let recent = app.publish("news/world", None, json!("recent")).await;
    let newer = app.publish("news/world", None, json!("newer")).await;

    let mut stream = resume(&app, "alice", &["news/world"], &old).await;
    assert_eq!(
        stream.next_event().await.id.as_deref(),
        Some(recent.as_str()),
        "news keeps history although the service keeps none"
    );
    let mut none = resume(&app, "bob", &["sports/1"], &unkept).await;
    assert_eq!(none.next_event().await.event.as_deref(), Some("reset"));

    app.advance(Duration::from_secs(700));
    app.advance_until_metric(
        Duration::from_secs(61),
        "sse_ticket_events_pruned_total",
        1.0,
    )
    .await;
    let mut stream = resume(&app, "carol", &["news/world"], &old).await;
    assert_eq!(
        stream.next_event().await.event.as_deref(),
        Some("reset"),
        "past news' hour, well within the service's day"
    );
    let mut stream = resume(&app, "dave", &["news/world"], &recent).await;
    assert_eq!(
        stream.next_event().await.id.as_deref(),
        Some(newer.as_str())
    );
}

#[tokio::test]
async fn publish_false_refuses_the_publish_endpoint_and_nothing_is_published() {
    let app = spawn_app_with(|c| {
        c.namespaces = vec![namespace(
            "orders",
            NamespaceRules {
                publish: Some(false),
                ..NamespaceRules::default()
            },
        )];
    })
    .await;
    let mut stream = app.subscribe("alice", &["orders/*", "ordersx/1"]).await;
    let publisher = app.token("shop", &[], &["*"]);
    for topic in ["orders", "orders/42"] {
        let body = json!({ "topic": topic, "data": "paid" }).to_string();
        let refused = assert_error(
            app.post_publish(Some(&publisher), &body).await,
            403,
            "forbidden_topic",
        )
        .await;
        assert!(
            refused["message"]
                .as_str()
                .is_some_and(|m| m.contains("outbox")),
            "{refused}"
        );
    }
    // A topic only sharing the letters is not in the namespace.
    let id = app.publish("ordersx/1", None, json!("elsewhere")).await;
    let event = stream.next_event().await;
    assert_eq!(
        event.id.as_deref(),
        Some(id.as_str()),
        "nothing came before it"
    );
    assert_eq!(app.metric("sse_ticket_events_published_total").await, 1.0);
}

#[tokio::test]
async fn a_namespace_s_event_size_limit_answers_413_below_the_service_s() {
    let app = spawn_app_with(|c| {
        c.namespaces = vec![namespace(
            "chat",
            NamespaceRules {
                max_event_bytes: Some(16),
                ..NamespaceRules::default()
            },
        )];
    })
    .await;
    let publisher = app.token("shop", &[], &["*"]);
    let fits = json!("x".repeat(14)); // 16 bytes serialized, with its quotes
    let over = json!("x".repeat(15));
    let body = |topic: &str, data: &Value| json!({ "topic": topic, "data": data }).to_string();
    let ok = app
        .post_publish(Some(&publisher), &body("chat/1", &fits))
        .await;
    assert_eq!(ok.status(), 200);
    let refused = assert_error(
        app.post_publish(Some(&publisher), &body("chat/1", &over))
            .await,
        413,
        "payload_too_large",
    )
    .await;
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("16")),
        "{refused}"
    );
    let elsewhere = app
        .post_publish(Some(&publisher), &body("news/1", &over))
        .await;
    assert_eq!(
        elsewhere.status(),
        200,
        "the service's 64 KiB hold outside chat"
    );
}

#[tokio::test]
async fn a_namespace_s_stream_cap_counts_only_streams_in_it() {
    let app = spawn_app_with(|c| {
        c.streams.per_subject = 2;
        c.namespaces = vec![namespace(
            "chat",
            NamespaceRules {
                max_streams_per_subject: Some(1),
                ..NamespaceRules::default()
            },
        )];
    })
    .await;
    let _chat = app.subscribe("alice", &["chat/a"]).await;
    let bearer = app.token("alice", &["*"], &[]);
    let ticket = app.ticket(&bearer, &["chat/*"]).await;
    assert_error(app.get_stream(&ticket).await, 429, "too_many_streams").await;
    let ticket = app.ticket(&bearer, &["news/1", "chat/b"]).await;
    assert_error(app.get_stream(&ticket).await, 429, "too_many_streams").await;
    // Outside chat, the service's two streams are still free.
    let _news = app.subscribe("alice", &["news/1"]).await;
    let _sports = app.subscribe("alice", &["sports/1"]).await;
    let ticket = app.ticket(&bearer, &["weather/1"]).await;
    assert_error(app.get_stream(&ticket).await, 429, "too_many_streams").await;
    // Another subject has chat's place of its own.
    let _bob = app.subscribe("bob", &["chat/a"]).await;
}
