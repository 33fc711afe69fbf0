//! Micro-benchmarks of the hot paths: the ticket store, bearer verification,
//! topic matching, SSE frame encoding and in-process fan-out.
//!
//! `cargo bench --bench core`; figures and the machine go in BENCHMARKS.md.

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web_lab::sse;
use chrono::{TimeDelta, Utc};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use sse_ticket::auth::{KeySource, Subject, Topic, TopicPattern, Verifier, VerifierSettings};
use sse_ticket::broker::{Broker, Event, MemoryBroker};
use sse_ticket::clock::SystemClock;
use sse_ticket::ticket::{Grant, MemoryStore, StoreLimits, TicketStore};
use uuid::Uuid;

fn store() -> MemoryStore {
    MemoryStore::new(StoreLimits {
        ttl: Duration::from_secs(60),
        per_subject: 32,
        total: 10_000_000,
    })
}

fn grant(sub: &Subject) -> Grant {
    Grant {
        sub: sub.clone(),
        topics: vec![TopicPattern::parse("orders/*").expect("pattern")],
        bearer_exp: Utc::now() + TimeDelta::hours(1),
        bearer_iat: None,
        bearer_jti: None,
        client_ip: None,
    }
}

/// Issue then redeem: one ticket's whole life in the store. The store's
/// methods never wait, so they are polled once instead of run on an executor.
fn issue_and_redeem(store: &MemoryStore, sub: &Subject) {
    let now = Utc::now();
    let ticket = store
        .issue(grant(sub), now)
        .now_or_never()
        .expect("completes at once")
        .expect("issued");
    let redeemed = store
        .redeem(ticket.id(), now)
        .now_or_never()
        .expect("completes at once");
    black_box(redeemed.expect("redeemed"));
}

fn tickets(c: &mut Criterion) {
    let mut group = c.benchmark_group("ticket_store");
    let sub = Subject::parse("alice").expect("subject");

    // Issuing alone: each sample issues its `iters` tickets into a fresh store,
    // a subject per ticket (so the per-subject cap never refuses), the
    // subjects made before the clock starts. The store grows during a sample
    // as it would under a burst of ticket requests.
    group.bench_function("issue", |b| {
        b.iter_custom(|iters| {
            let issuing = store();
            let subjects: Vec<Subject> = (0..iters)
                .map(|n| Subject::parse(&format!("user-{n}")).expect("subject"))
                .collect();
            let start = Instant::now();
            for sub in &subjects {
                black_box(
                    issuing
                        .issue(grant(sub), Utc::now())
                        .now_or_never()
                        .expect("completes at once")
                        .expect("issued"),
                );
            }
            let elapsed = start.elapsed();
            drop(issuing);
            elapsed
        })
    });

    let redeeming = store();
    let mut n = 0u64;
    // Redeeming alone: a subject per ticket, so a batch set up ahead never
    // meets the per-subject cap.
    group.bench_function("redeem", |b| {
        b.iter_batched(
            || {
                n += 1;
                let sub = Subject::parse(&format!("user-{n}")).expect("subject");
                redeeming
                    .issue(grant(&sub), Utc::now())
                    .now_or_never()
                    .expect("at once")
                    .expect("issued")
                    .id()
            },
            |id| black_box(redeeming.redeem(id, Utc::now()).now_or_never()),
            BatchSize::SmallInput,
        );
    });

    let single = store();
    group.bench_function("issue+redeem, 1 thread", |b| {
        b.iter(|| issue_and_redeem(&single, &sub))
    });

    // Two threads on one store, each doing `iters` operations: the time per
    // operation as each thread sees it.
    let shared = Arc::new(store());
    group.bench_function("issue+redeem, 2 threads contending", |b| {
        b.iter_custom(|iters| two_threads(iters, |_| shared.clone()))
    });
    // The control: the same two threads, each on a store of its own, so that
    // nothing is shared. What the machine gives two threads at once; the
    // contending case is measured against it.
    let separate = [Arc::new(store()), Arc::new(store())];
    group.bench_function("issue+redeem, 2 threads, a store each (control)", |b| {
        b.iter_custom(|iters| two_threads(iters, |t| separate[t].clone()))
    });
    group.finish();
}

/// Runs `iters` issue+redeem operations on each of two threads at once, on
/// the store `store_of(thread)`; the wall time of the slower.
fn two_threads(iters: u64, store_of: impl Fn(usize) -> Arc<MemoryStore>) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..2 {
            let store = store_of(t);
            scope.spawn(move || {
                let sub = Subject::parse(&format!("thread-{t}")).expect("subject");
                for _ in 0..iters {
                    issue_and_redeem(&store, &sub);
                }
            });
        }
    });
    start.elapsed()
}

/// Where the test key `name` lives.
fn fixture_path(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).expect("fixture")
}

fn bearer_verification(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify_bearer");
    let now = Utc::now().timestamp();
    let secret = "benchmark-secret-benchmark-secret-0123456789";
    // Each case signs tokens of `claims` with its key.
    let cases: Vec<(&str, KeySource, Header, EncodingKey)> = vec![
        (
            "HS256",
            KeySource::Secret(secret.into()),
            Header::new(Algorithm::HS256),
            EncodingKey::from_secret(secret.as_bytes()),
        ),
        (
            "RS256",
            KeySource::PublicKeyPem(fixture_path("rsa_public.pem").into()),
            Header::new(Algorithm::RS256),
            EncodingKey::from_rsa_pem(&fixture("rsa_private.pem")).expect("RSA key"),
        ),
        (
            "ES256",
            KeySource::PublicKeyPem(fixture_path("ec_public.pem").into()),
            Header::new(Algorithm::ES256),
            EncodingKey::from_ec_pem(&fixture("ec_private.pem")).expect("EC key"),
        ),
        (
            "EdDSA",
            KeySource::PublicKeyPem(fixture_path("ed25519_public.pem").into()),
            Header::new(Algorithm::EdDSA),
            EncodingKey::from_ed_pem(&fixture("ed25519_private.pem")).expect("Ed25519 key"),
        ),
    ];
    for (name, keys, header, key) in cases {
        let verifier = Verifier::new(
            &keys,
            VerifierSettings::default(),
            Arc::new(SystemClock),
            Arc::new(sse_ticket::metrics::Metrics::new()),
        )
        .expect("verifier");
        let mut serial = 0u64;
        let mut fresh_token = || {
            serial += 1;
            let claims = json!({ "sub": "alice", "iat": now, "exp": now + 3600, "jti": format!("t-{serial}"), "sse": { "subscribe": ["orders/*"] } });
            let token = jsonwebtoken::encode(&header, &claims, &key).expect("signed");
            sse_ticket::auth::Credential::bearer(token)
        };
        let verify = |token: &sse_ticket::auth::Credential| {
            verifier
                .verify(token)
                .now_or_never()
                .expect("at once")
                .is_ok()
        };
        let token = fresh_token();
        assert!(verify(&token), "{name} verifies");
        // A token seen for the first time: decoded, its signature checked, remembered.
        group.bench_function(format!("{name}, first use"), |b| {
            b.iter_batched(
                &mut fresh_token,
                |t| black_box(verify(&t)),
                BatchSize::SmallInput,
            );
        });
        // The same token again (a client re-ticketing): found by its SHA-256.
        group.bench_function(format!("{name}, remembered"), |b| {
            b.iter(|| black_box(verify(black_box(&token))));
        });
    }
    group.finish();
}

fn topics(c: &mut Criterion) {
    let mut group = c.benchmark_group("topics");
    let topic = Topic::parse("orders/eu/42/lines").expect("topic");
    let prefix = TopicPattern::parse("orders/*").expect("pattern");
    let exact = TopicPattern::parse("orders/eu/42/lines").expect("pattern");
    group.bench_function("parse topic", |b| {
        b.iter(|| Topic::parse(black_box("orders/eu/42/lines")))
    });
    group.bench_function("match prefix pattern", |b| {
        b.iter(|| black_box(&prefix).matches(black_box(&topic)))
    });
    group.bench_function("match exact pattern", |b| {
        b.iter(|| black_box(&exact).matches(black_box(&topic)))
    });
    group.bench_function("covers", |b| {
        b.iter(|| black_box(&prefix).covers(black_box(&exact)))
    });
    group.finish();
}

fn frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("sse_frame");
    let data =
        json!({ "id": 42, "status": "shipped", "note": "a typical small event" }).to_string();
    let topic = Topic::parse("orders/42").expect("topic");
    group.bench_function("build event (once per publish)", |b| {
        b.iter(|| {
            Event::new(
                Uuid::now_v7(),
                topic.clone(),
                "order.updated",
                data.clone().into(),
                Utc::now(),
            )
        });
    });
    let event = Event::new(
        Uuid::now_v7(),
        topic.clone(),
        "order.updated",
        data.into(),
        Utc::now(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    group.bench_function("encode frame (once per stream)", |b| {
        b.iter(|| {
            let body =
                sse::Sse::from_infallible_stream(futures_util::stream::iter([sse::Event::from(
                    event.frame(),
                )]));
            rt.block_on(actix_web::body::to_bytes(body)).expect("bytes")
        });
    });
    group.finish();
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    group.sample_size(20);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let broker = MemoryBroker::new();
    let pattern = [TopicPattern::parse("orders/*").expect("pattern")];
    let mut subscriptions: Vec<_> = (0..10_000)
        .map(|_| rt.block_on(broker.subscribe(&pattern)).expect("subscribed"))
        .collect();
    let topic = Topic::parse("orders/42").expect("topic");
    group.bench_function("publish to 10,000 subscribers", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let event = Arc::new(Event::new(
                    Uuid::now_v7(),
                    topic.clone(),
                    "tick",
                    "{}".into(),
                    Utc::now(),
                ));
                let start = Instant::now();
                let fanout = rt.block_on(broker.publish(event)).expect("published");
                total += start.elapsed();
                assert_eq!(fanout.delivered, 10_000);
                // Drain outside the measurement so no queue fills.
                for subscription in &mut subscriptions {
                    black_box(subscription.recv().now_or_never());
                }
            }
            total
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    tickets,
    bearer_verification,
    topics,
    frames,
    fanout
);
criterion_main!(benches);
