//! The `sse-ticket` command line.

use std::process::ExitCode;

use sse_ticket::cli;

/// jemalloc instead of the system allocator: glibc's malloc took about 11% of
/// the server's CPU under ticket load, and jemalloc holds the same memory per
/// open stream (mimalloc did not: BENCHMARKS.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    cli::run().await
}
