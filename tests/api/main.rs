//! Black-box tests: each starts the real server on 127.0.0.1:0 and talks HTTP.

mod admin;
mod architecture;
mod bearer;
mod browser;
mod cli;
mod cluster;
mod cors;
mod docs;
mod docs_page;
mod hardening;
mod hardening_db;
mod hardening_edge;
mod helpers;
mod introspection;
mod ip_binding;
mod jti;
mod oauth_library;
mod openapi;
mod ops;
mod publish;
mod resume;
mod sse_token;
mod stream;
mod tls;
mod token_exchange;
mod webhook;
