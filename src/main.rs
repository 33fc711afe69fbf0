//! The `sse-ticket` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sse_ticket::cli::{self, MigrateArgs, MintArgs};
use sse_ticket::config::ServeArgs;

/// jemalloc instead of the system allocator: glibc's malloc took about 11% of
/// the server's CPU under ticket load, and jemalloc holds the same memory per
/// open stream (mimalloc did not: BENCHMARKS.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Single-use tickets for authenticated Server-Sent Events.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve(Box<ServeArgs>),
    /// Print an HS256 bearer token signed with SSE_TICKET_JWT_SECRET, for curl and load tests.
    Mint(MintArgs),
    /// Apply the database migrations and exit (serve applies them too).
    Migrate(MigrateArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve(args) => cli::serve(*args).await,
        Command::Mint(args) => cli::mint(args),
        Command::Migrate(args) => cli::migrate(args).await,
    }
}
