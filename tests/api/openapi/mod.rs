//! `openapi.yaml` against the running server: the same routes, and each route
//! answers its main success and error case as documented.

use std::collections::BTreeSet;

use futures_util::FutureExt as _;
use serde_json::{Value, json};
use sse_ticket::auth::KeySource;
use sse_ticket::http::ROUTES;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

mod conformance;

use conformance::{Case, check, spec};

fn documented_routes(spec: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "put", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let documented = documented_routes(&spec());
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, served);
}

/// One request against the live server and the status it must get.
async fn cases(app: &TestApp) -> Vec<Case> {
    let subscriber = app.token("alice", &["orders/*"], &[]);
    let publisher = app.token("backend", &[], &["orders/*"]);
    let get = |path: &str| app.client.get(app.url(path)).send();
    let ticket = app.ticket(&subscriber, &[]).await;
    let forbidden = json!({ "topics": ["payments/1"] }).to_string();
    let admin = app.admin_token("ops");
    let admin_call = |method: reqwest::Method, path: &str, bearer: &str| {
        app.client
            .request(method, app.url(path))
            .bearer_auth(bearer)
            .json(&json!({ "sub": "mallory" }))
            .send()
    };
    let event = json!({ "topic": "orders/1", "data": 1 }).to_string();
    let keyed = |body: &str| {
        let publish = app.client.post(app.url("/publish")).bearer_auth(&publisher);
        let publish = publish.header("idempotency-key", "conformance-1");
        publish
            .body(body.to_owned())
            .send()
            .map(|r| r.expect("publish"))
    };
    let exchange = |subject_token: &str| {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            )
            .append_pair("subject_token", subject_token)
            .append_pair("subject_token_type", "urn:ietf:params:oauth:token-type:jwt")
            .finish();
        app.client
            .post(app.url("/sse-token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let mut cases = vec![
        Case {
            method: "POST",
            path: "/sse-token",
            status: 200,
            response: app.post_sse_token(Some(&subscriber), None).await,
        },
        Case {
            method: "POST",
            path: "/sse-token",
            status: 200,
            response: exchange(&subscriber).await.expect("exchange"),
        },
        Case {
            method: "POST",
            path: "/sse-token",
            status: 400,
            response: exchange("not-a-token").await.expect("exchange"),
        },
        Case {
            method: "GET",
            path: "/.well-known/oauth-authorization-server",
            status: 200,
            response: get("/.well-known/oauth-authorization-server")
                .await
                .expect("metadata"),
        },
        Case {
            method: "POST",
            path: "/sse-token",
            status: 401,
            response: app.post_sse_token(None, None).await,
        },
        Case {
            method: "POST",
            path: "/sse-token",
            status: 403,
            response: app
                .post_sse_token(Some(&subscriber), Some(&forbidden))
                .await,
        },
        Case {
            method: "GET",
            path: "/stream",
            status: 200,
            response: app.get_stream(&ticket).await,
        },
        Case {
            method: "GET",
            path: "/stream",
            status: 401,
            response: app.get_stream(&ticket).await,
        },
        Case {
            method: "GET",
            path: "/stream",
            status: 400,
            response: get(&format!("/stream?token={ticket}&lastEventId=not-an-id"))
                .await
                .expect("stream"),
        },
        Case {
            method: "POST",
            path: "/publish",
            status: 200,
            response: app.post_publish(Some(&publisher), &event).await,
        },
        Case {
            method: "POST",
            path: "/publish",
            status: 403,
            response: app.post_publish(Some(&subscriber), &event).await,
        },
        Case {
            method: "POST",
            path: "/publish",
            status: 400,
            response: app.post_publish(Some(&publisher), "{}").await,
        },
        Case {
            method: "POST",
            path: "/publish",
            status: 200,
            response: keyed(&event).await,
        },
        Case {
            method: "POST",
            path: "/publish",
            status: 200,
            response: keyed(&event).await,
        },
        Case {
            method: "POST",
            path: "/publish",
            status: 422,
            response: keyed(r#"{"topic": "orders/2", "data": 1}"#).await,
        },
        Case {
            method: "POST",
            path: "/admin/revoke",
            status: 200,
            response: admin_call(reqwest::Method::POST, "/admin/revoke", &admin)
                .await
                .expect("revoke"),
        },
        Case {
            method: "POST",
            path: "/admin/revoke",
            status: 403,
            response: admin_call(reqwest::Method::POST, "/admin/revoke", &subscriber)
                .await
                .expect("revoke"),
        },
        Case {
            method: "GET",
            path: "/admin/revocations",
            status: 200,
            response: admin_call(reqwest::Method::GET, "/admin/revocations", &admin)
                .await
                .expect("list"),
        },
        Case {
            method: "GET",
            path: "/admin/revocations",
            status: 401,
            response: get("/admin/revocations").await.expect("list"),
        },
        Case {
            method: "DELETE",
            path: "/admin/revoke/{sub}",
            status: 200,
            response: admin_call(reqwest::Method::DELETE, "/admin/revoke/mallory", &admin)
                .await
                .expect("lift"),
        },
        Case {
            method: "DELETE",
            path: "/admin/revoke/{sub}",
            status: 404,
            response: admin_call(reqwest::Method::DELETE, "/admin/revoke/mallory", &admin)
                .await
                .expect("lift"),
        },
        Case {
            method: "GET",
            path: "/admin/audit",
            status: 200,
            response: admin_call(reqwest::Method::GET, "/admin/audit?limit=5", &admin)
                .await
                .expect("audit"),
        },
        Case {
            method: "GET",
            path: "/admin/audit",
            status: 400,
            response: admin_call(reqwest::Method::GET, "/admin/audit?limit=0", &admin)
                .await
                .expect("audit"),
        },
        Case {
            method: "GET",
            path: "/admin/topics",
            status: 200,
            response: admin_call(reqwest::Method::GET, "/admin/topics?prefix=user/", &admin)
                .await
                .expect("topics"),
        },
        Case {
            method: "GET",
            path: "/admin/topics",
            status: 403,
            response: admin_call(reqwest::Method::GET, "/admin/topics", &subscriber)
                .await
                .expect("topics"),
        },
        Case {
            method: "GET",
            path: "/demo",
            status: 404,
            response: get("/demo").await.expect("demo"),
        },
        Case {
            method: "GET",
            path: "/demo/",
            status: 404,
            response: get("/demo/").await.expect("demo"),
        },
        Case {
            method: "GET",
            path: "/demo/sse-ticket.js",
            status: 404,
            response: get("/demo/sse-ticket.js").await.expect("demo client"),
        },
    ];
    let revoke = app
        .client
        .post(app.url("/admin/revoke"))
        .bearer_auth(&admin);
    let revoked = revoke.json(&json!({ "jti": "leaked" })).send().await;
    assert_eq!(revoked.expect("revoke jti").status(), 200);
    let lifts = [
        (200, "DELETE", "/admin/revoke"),
        (404, "DELETE", "/admin/revoke"),
    ];
    let paths = ["/healthz", "/readyz", "/metrics", "/openapi.yaml", "/docs"];
    let gets = paths.into_iter().chain(["/docs/redoc.standalone.js"]);
    for (status, method, path) in lifts.into_iter().chain(gets.map(|p| (200, "GET", p))) {
        let response = match method {
            "GET" => get(path).await,
            _ => admin_call(reqwest::Method::DELETE, "/admin/revoke?jti=leaked", &admin).await,
        };
        let response = response.expect(path);
        cases.push(Case {
            method,
            path,
            status,
            response,
        });
    }
    cases
}

#[tokio::test]
async fn every_route_answers_as_documented() {
    let spec = spec();
    let app = spawn_app().await;
    let mut covered = BTreeSet::new();
    for case in cases(&app).await {
        covered.insert((case.method.to_owned(), case.path.to_owned()));
        check(&spec, case).await;
    }

    // The demo exists on a development server only.
    let dev = spawn_app_with(|c| c.dev = true).await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = no_redirects
        .get(dev.url("/demo"))
        .send()
        .await
        .expect("demo");
    check(
        &spec,
        Case {
            method: "GET",
            path: "/demo",
            status: 308,
            response,
        },
    )
    .await;
    for path in ["/demo/", "/demo/sse-ticket.js"] {
        let response = dev.get(path).await;
        check(
            &spec,
            Case {
                method: "GET",
                path,
                status: 200,
                response,
            },
        )
        .await;
    }

    // Readiness failing: keys from an identity provider that does not answer.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let url = format!("http://{}/jwks.json", closed.local_addr().expect("addr"));
    drop(closed);
    let unready = spawn_app_with(|c| c.keys = KeySource::JwksUrl(url.parse().expect("url"))).await;
    let response = unready
        .client
        .get(unready.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    check(
        &spec,
        Case {
            method: "GET",
            path: "/readyz",
            status: 503,
            response,
        },
    )
    .await;

    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(covered, served, "every route has a case");
}
