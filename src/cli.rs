//! The binary's command line: `serve` runs the service (its settings from
//! flags, variables and the configuration file), `mint` signs a development
//! token, `migrate` applies the migrations.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use secrecy::SecretString;

use crate::auth::{KeySource, MintRequest, Permissions, Subject, TopicPattern, mint as sign};
use crate::config::{Config, ConfigFile, Provenance, ServeArgs, TlsSetting};

/// Single-use tickets for authenticated Server-Sent Events.
#[derive(Parser)]
#[command(name = "sse-ticket", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Run the service.
    Serve(Box<ServeArgs>),
    /// Print an HS256 bearer token signed with SSE_TICKET_JWT_SECRET, for curl and load tests.
    Mint(MintArgs),
    /// Apply the database migrations and exit (serve applies them too).
    Migrate(MigrateArgs),
}

/// Parses the command line (exiting on `--help` or a bad flag, as clap
/// does) and runs the subcommand.
pub async fn run() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let (cli, provenance) = match parse(&argv) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("sse-ticket: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Serve(args) => serve(*args, provenance).await,
        Command::Mint(args) => mint(args),
        Command::Migrate(args) => migrate(args).await,
    }
}

/// Parses `argv`; when `serve` names a configuration file, parses it again
/// with the file's values as the defaults of `serve`'s options, so a flag
/// or a variable still wins over them.
pub fn parse(argv: &[OsString]) -> Result<(Cli, Provenance), crate::config::ConfigFileError> {
    let first = Cli::command().get_matches_from(argv);
    let path = first
        .subcommand_matches("serve")
        .and_then(|serve| serve.get_one::<std::path::PathBuf>("config"));
    let mut command = Cli::command();
    // Its options in their own order (installing defaults moves them).
    let serve = command
        .find_subcommand("serve")
        .cloned()
        .unwrap_or_else(|| clap::Command::new("serve"));
    let file = match path {
        Some(path) => {
            let file = ConfigFile::read(path, &serve)?;
            command = command.mut_subcommand("serve", |serve| file.install(serve));
            Some(file)
        }
        None => None,
    };
    let matches = command.get_matches_from(argv);
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let serve_matches = matches
        .subcommand_matches("serve")
        .cloned()
        .unwrap_or_default();
    if let (Command::Serve(args), Some(file)) = (&mut cli.command, &file) {
        args.namespaces = file.namespaces();
    }
    Ok((cli, Provenance::new(serve, serve_matches, file)))
}

/// Flags of `sse-ticket mint`.
#[derive(Debug, Clone, clap::Args)]
pub struct MintArgs {
    /// The token's subject (`sub`).
    #[arg(long, value_parser = |s: &str| Subject::parse(s))]
    pub sub: Subject,
    /// A topic pattern the token may subscribe to (repeatable).
    #[arg(long, value_parser = |s: &str| TopicPattern::parse(s))]
    pub subscribe: Vec<TopicPattern>,
    /// A topic pattern the token may publish to (repeatable).
    #[arg(long, value_parser = |s: &str| TopicPattern::parse(s))]
    pub publish: Vec<TopicPattern>,
    /// Grant the admin permission.
    #[arg(long)]
    pub admin: bool,
    /// Lifetime of the token (`24h`, `15m`).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// HMAC secret to sign with.
    #[arg(long, env = "SSE_TICKET_JWT_SECRET", hide_env_values = true, value_parser = |s: &str| Ok::<_, std::convert::Infallible>(SecretString::from(s)))]
    pub secret: SecretString,
    /// `iss` to put in the token (the server checks it when configured).
    #[arg(long, env = "SSE_TICKET_JWT_ISSUER")]
    pub issuer: Option<String>,
    /// `aud` to put in the token (the server checks it when configured).
    #[arg(long, env = "SSE_TICKET_JWT_AUDIENCE")]
    pub audience: Option<String>,
    /// `jti` to put in the token, to revoke it alone by (`POST /admin/revoke {"jti": …}`).
    #[arg(long)]
    pub jti: Option<String>,
}

/// Flags of `sse-ticket migrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// The durable store, as `serve` takes it.
    #[command(flatten)]
    pub database: crate::config::DatabaseArgs,
}

/// `sse-ticket migrate`: applies pending migrations and exits.
pub async fn migrate(args: MigrateArgs) -> ExitCode {
    let opened = match crate::db::DatabaseUrl::parse(&args.database.database_url) {
        Ok(url) => crate::db::Database::open(&url).await.map(|db| (db, url)),
        Err(e) => Err(e),
    };
    match opened {
        Ok((db, url)) => {
            db.close().await;
            println!("migrations applied to {url}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `sse-ticket mint`: prints one HS256 token on stdout.
pub fn mint(args: MintArgs) -> ExitCode {
    let request = MintRequest {
        sub: args.sub,
        permissions: Permissions {
            subscribe: args.subscribe,
            publish: args.publish,
            admin: args.admin,
        },
        ttl: args.ttl,
        issuer: args.issuer,
        audience: args.audience,
        jti: args.jti,
        now: chrono::Utc::now(),
    };
    match sign(&args.secret, &request) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `sse-ticket serve`: runs the service until SIGINT or SIGTERM; with
/// `--print-config`, prints the effective configuration and exits.
pub async fn serve(args: ServeArgs, provenance: Provenance) -> ExitCode {
    let print_config = args.print_config;
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{}", provenance.explain(&e));
            return ExitCode::from(2);
        }
    };
    if print_config {
        print!("{}", provenance.render(&config));
        return ExitCode::SUCCESS;
    }
    crate::telemetry::init(config.log_format);
    // Each stream holds a socket: take every file the hard limit allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(files) => tracing::info!(?config, open_files = files, "starting"),
        Err(error) => tracing::info!(?config, %error, "starting; the open-file limit stays"),
    }
    let self_signed = matches!(config.tls, Some(TlsSetting::DevSelfSigned(_)));
    let dev_secret = match (&config.keys, config.dev) {
        (KeySource::Secret(secret), true) => Some(secret.clone()),
        _ => None,
    };
    let server = match crate::build(config).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let (Some(secret), Some(tokens)) = (dev_secret, server.dev_tokens()) {
        print_dev_banner(&secret, tokens, &server, self_signed);
    }
    let stopper = server.stopper();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        stopper.stop().await;
    });
    match server.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Tells a new user everything needed to try the service with curl; with the
/// self-signed certificate of `--tls`, how to trust it.
fn print_dev_banner(
    secret: &SecretString,
    tokens: &crate::dev::DevTokens,
    server: &crate::Server,
    self_signed: bool,
) {
    use secrecy::ExposeSecret as _;
    let subscriber = &tokens.subscriber;
    let publisher = &tokens.publisher;
    let base = format!("{}://{}", server.scheme(), server.local_addr());
    let (curl, tls_note) = match server.tls_files() {
        None => ("curl".to_owned(), String::new()),
        Some(files) if self_signed => {
            let cert = std::fs::canonicalize(&files.cert).unwrap_or_else(|_| files.cert.clone());
            (
                format!("curl --cacert {}", cert.display()),
                format!(
                    "TLS with HTTP/2 and HTTP/1.1, self-signed for localhost and 127.0.0.1, kept in {}:\n  \
                     curl trusts it with --cacert {}; a browser after you accept or import it.\n",
                    files
                        .cert
                        .parent()
                        .map(|d| d.display().to_string())
                        .unwrap_or_default(),
                    cert.display()
                ),
            )
        }
        Some(files) => (
            "curl".to_owned(),
            format!(
                "TLS with HTTP/2 and HTTP/1.1, certificate {}.\n",
                files.cert.display()
            ),
        ),
    };
    println!(
        r#"
sse-ticket is running in DEV MODE on {base}
Tokens are signed with a random secret that lives as long as this process. Not for production.
{tls_note}
  export SSE_TICKET_JWT_SECRET={secret}
  export SUB_TOKEN={subscriber}   # sub=alice, may subscribe to orders/* (and user/alice)
  export PUB_TOKEN={publisher}   # sub=backend, may publish anywhere

Try it (in a second terminal, after the exports above):
  # 1. trade the bearer token for a single-use ticket
  {curl} -s -X POST {base}/sse-token -H "Authorization: Bearer $SUB_TOKEN" -d '{{"topics":["orders/*"]}}'
  # 2. open the stream with the ticket (it is consumed now)
  {curl} -N "{base}/stream?token=<ticket from step 1>"
  # 3. publish from a third terminal
  {curl} -s -X POST {base}/publish -H "Authorization: Bearer $PUB_TOKEN" -d '{{"topic":"orders/42","event":"order.updated","data":{{"status":"shipped"}}}}'
  # or watch it in a browser: {base}/demo/
  # more tokens: sse-ticket mint --sub bob --subscribe 'orders/*'
"#,
        secret = secret.expose_secret(),
    );
}
