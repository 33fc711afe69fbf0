//! The browser suite: real Chromium driving the client helper against the
//! real server (clients/js/test/e2e), plus the helper's unit tests. It needs
//! Debian's Chromium and the npm packages, which `.ci/run` installs.

#[tokio::test]
#[ignore = "needs Chromium (apt-get install chromium) and clients/js/node_modules (npm ci): .ci/run runs it"]
async fn the_browser_suite_passes() {
    let status = tokio::process::Command::new("node")
        .args(["--test", "--test-concurrency=1", "test/unit/", "test/e2e/"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/clients/js"))
        .env("SSE_TICKET_BIN", env!("CARGO_BIN_EXE_sse-ticket"))
        .status()
        .await
        .expect("node runs");
    assert!(status.success(), "the browser suite failed: {status}");
}
