//! `GET /docs`: the served `openapi.yaml` rendered for people by Redoc, whose
//! bundle is embedded in the binary (`src/http/docs/README.md`) and served
//! from the same origin, so the page loads nothing from anywhere else.

use actix_web::HttpResponse;

/// Redoc's standalone bundle, byte for byte the npm package's.
const REDOC: &[u8] = include_bytes!("docs/redoc.standalone.js");

/// The page: Redoc renders `/openapi.yaml` into the `<redoc>` element when
/// its bundle loads (no inline script).
const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sse-ticket API</title>
<link rel="icon" href="data:,">
</head>
<body>
<redoc spec-url="/openapi.yaml"></redoc>
<script src="/docs/redoc.standalone.js"></script>
</body>
</html>
"#;

/// Same-origin scripts, styles and fetches only. Redoc's styles are inline
/// `<style>` elements (styled-components) and its search index runs in a
/// worker made from a `blob:` URL; its icons may be `data:` images. Redoc's
/// sidebar always shows Redocly's logo from `cdn.redoc.ly` (no option turns it
/// off): this policy blocks it in the browser, so the request never leaves.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; font-src 'self'; connect-src 'self'; worker-src blob:; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(crate) async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", CSP))
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(PAGE)
}

pub(crate) async fn redoc() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=86400"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(REDOC)
}
