//! `GET /docs`: the spec rendered for people by Redoc, served from the binary
//! with nothing loaded from another origin. (That it renders every path in a
//! real browser is checked by the browser suite, clients/js/test/e2e/docs.test.mjs.)

use std::collections::BTreeMap;

use crate::helpers::{header, spawn_app};

/// The bundle as committed (src/http/docs/README.md names its npm origin).
const REDOC: &[u8] = include_bytes!("../../src/http/docs/redoc.standalone.js");

#[tokio::test]
async fn the_docs_page_is_html_that_loads_only_same_origin_resources() {
    let app = spawn_app().await;
    let response = app.get("/docs").await;
    assert_eq!(response.status(), 200);
    assert!(
        header(&response, "content-type").starts_with("text/html"),
        "content type {}",
        header(&response, "content-type")
    );
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    assert_eq!(header(&response, "cache-control"), "no-cache");
    let csp = header(&response, "content-security-policy").to_owned();
    let body = response.text().await.expect("body");

    assert!(body.contains("<title>sse-ticket API</title>"), "{body}");
    assert!(
        body.contains(r#"<script src="/docs/redoc.standalone.js"></script>"#),
        "{body}"
    );
    assert!(body.contains(r#"spec-url="/openapi.yaml""#), "{body}");
    for scheme in ["http://", "https://", "//cdn", "src=\"//", "href=\"//"] {
        assert!(!body.contains(scheme), "{scheme} in the page: {body}");
    }

    // The policy: nothing by default, and every directive allows only the
    // page's own origin or the few local schemes Redoc needs.
    let directives: BTreeMap<&str, Vec<&str>> = csp
        .split(';')
        .filter_map(|d| {
            let mut words = d.split_whitespace();
            Some((words.next()?, words.collect()))
        })
        .collect();
    assert_eq!(
        directives.get("default-src"),
        Some(&vec!["'none'"]),
        "{csp}"
    );
    assert_eq!(directives.get("script-src"), Some(&vec!["'self'"]), "{csp}");
    assert_eq!(
        directives.get("frame-ancestors"),
        Some(&vec!["'none'"]),
        "{csp}"
    );
    for (name, sources) in &directives {
        for source in sources {
            let allowed = match *source {
                "'self'" | "'none'" => true,
                "'unsafe-inline'" => *name == "style-src",
                "data:" => *name == "img-src",
                "blob:" => *name == "worker-src",
                _ => false,
            };
            assert!(allowed, "{name} allows {source}: {csp}");
        }
    }
}

#[tokio::test]
async fn the_redoc_bundle_is_served_as_javascript_byte_for_byte() {
    let app = spawn_app().await;
    let response = app.get("/docs/redoc.standalone.js").await;
    assert_eq!(response.status(), 200);
    let content_type = header(&response, "content-type");
    assert!(
        content_type.starts_with("text/javascript"),
        "content type {content_type}"
    );
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    assert_eq!(header(&response, "cache-control"), "public, max-age=86400");
    let served = response.bytes().await.expect("body");
    assert!(served.as_ref() == REDOC, "the served bundle differs");
}
