//! `serve`'s flags and `SSE_TICKET_*` variables, as clap reads them, and the
//! default of each setting, written once.

use std::path::PathBuf;

use secrecy::SecretString;

use super::LogFormat;
use super::checks::secret;
use crate::namespace::Namespace;

/// The default of every setting, used by the flags and by [`super::Config::new`].
pub mod defaults {
    use std::time::Duration;

    /// `SSE_TICKET_BIND`.
    pub const BIND: &str = "127.0.0.1:8080";
    /// `SSE_TICKET_TICKET_TTL`.
    pub const TICKET_TTL: Duration = Duration::from_secs(60);
    /// `SSE_TICKET_MAX_TICKETS_PER_SUBJECT`.
    pub const MAX_TICKETS_PER_SUBJECT: usize = 32;
    /// `SSE_TICKET_MAX_TICKETS`.
    pub const MAX_TICKETS: usize = 1_000_000;
    /// `SSE_TICKET_HEARTBEAT`.
    pub const HEARTBEAT: Duration = Duration::from_secs(15);
    /// `SSE_TICKET_DATABASE_URL`: a SQLite file in the working directory.
    pub const DATABASE_URL: &str = "sqlite://sse-ticket.db";
    /// `SSE_TICKET_HISTORY_TTL`.
    pub const HISTORY_TTL: Duration = Duration::from_secs(24 * 3600);
    /// `SSE_TICKET_HISTORY_MAX_PER_TOPIC`.
    pub const HISTORY_MAX_PER_TOPIC: u32 = 1000;
    /// `SSE_TICKET_REDIS_PREFIX`.
    pub const REDIS_PREFIX: &str = "sse-ticket:";
    /// `SSE_TICKET_MAX_STREAMS_PER_SUBJECT`.
    pub const MAX_STREAMS_PER_SUBJECT: usize = 16;
    /// `SSE_TICKET_MAX_STREAMS`: 0 derives it from the open-file limit.
    pub const MAX_STREAMS: usize = 0;
    /// `SSE_TICKET_WRITE_TIMEOUT`.
    pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
    /// `SSE_TICKET_REQUEST_TIMEOUT`.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
    /// `SSE_TICKET_AUDIT_TTL`.
    pub const AUDIT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
    /// `SSE_TICKET_BIND_TICKET_TO_IP`: tickets are redeemable from anywhere.
    pub const BIND_TICKET_TO_IP: crate::client_ip::IpBinding = crate::client_ip::IpBinding::Off;
    /// `SSE_TICKET_JTI_REVOCATION_TTL`.
    pub const JTI_REVOCATION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
    /// `SSE_TICKET_AUTH_CACHE_TTL`.
    pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(60);
    /// `SSE_TICKET_OUTBOX_TABLE`.
    pub const OUTBOX_TABLE: &str = "sse_outbox";
    /// `SSE_TICKET_IDEMPOTENCY_TTL`.
    pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
}

/// The durable store's flag, shared by `serve` and `migrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Durable store: `sqlite://<file>` (created if missing) or `postgres://…`.
    #[arg(long, env = "SSE_TICKET_DATABASE_URL", default_value = defaults::DATABASE_URL)]
    pub database_url: String,
}

/// Flags (and environment variables) of `sse-ticket serve`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Service")]
pub struct ServeArgs {
    /// Listen address.
    #[arg(long, env = "SSE_TICKET_BIND", default_value = defaults::BIND)]
    pub bind: String,

    /// Development mode: generate a random HMAC secret and print ready tokens and curl lines.
    #[arg(long)]
    pub dev: bool,

    /// HMAC secret: accepts HS256/HS384/HS512 tokens.
    #[arg(long, env = "SSE_TICKET_JWT_SECRET", hide_env_values = true, value_parser = secret)]
    pub jwt_secret: Option<SecretString>,

    /// Path of a PEM public key: RS*/PS*, ES256/ES384 or EdDSA by key type.
    #[arg(long, env = "SSE_TICKET_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// JWKS endpoint of an identity provider.
    #[arg(long, env = "SSE_TICKET_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// RFC 7662 endpoint: opaque bearer tokens are verified there.
    #[arg(long, env = "SSE_TICKET_INTROSPECTION_URL")]
    pub introspection_url: Option<String>,

    /// HTTP Basic client id for the introspection endpoint.
    #[arg(long, env = "SSE_TICKET_INTROSPECTION_CLIENT_ID")]
    pub introspection_client_id: Option<String>,

    /// HTTP Basic client secret for the introspection endpoint.
    #[arg(long, env = "SSE_TICKET_INTROSPECTION_CLIENT_SECRET", hide_env_values = true, value_parser = secret)]
    pub introspection_client_secret: Option<SecretString>,

    /// The app's own endpoint decides who the bearer is.
    #[arg(long, env = "SSE_TICKET_AUTH_WEBHOOK_URL")]
    pub auth_webhook_url: Option<String>,

    /// Also forward the request's `Cookie` header to the webhook (session-cookie apps).
    #[arg(long, env = "SSE_TICKET_AUTH_WEBHOOK_FORWARD_COOKIES", default_value_t = false, action = clap::ArgAction::Set)]
    pub auth_webhook_forward_cookies: bool,

    /// Longest time an introspection or webhook answer is reused (never past the token's `exp`).
    #[arg(long, env = "SSE_TICKET_AUTH_CACHE_TTL", default_value_t = defaults::AUTH_CACHE_TTL.into())]
    pub auth_cache_ttl: humantime::Duration,

    /// When set, `iss` must equal it.
    #[arg(long, env = "SSE_TICKET_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// When set, `aud` must contain it.
    #[arg(long, env = "SSE_TICKET_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Ticket lifetime (`60s`, `2m`).
    #[arg(long, env = "SSE_TICKET_TICKET_TTL", default_value_t = defaults::TICKET_TTL.into())]
    pub ticket_ttl: humantime::Duration,

    /// Outstanding (unredeemed, unexpired) tickets one subject may hold.
    #[arg(long, env = "SSE_TICKET_MAX_TICKETS_PER_SUBJECT", default_value_t = defaults::MAX_TICKETS_PER_SUBJECT)]
    pub max_tickets_per_subject: usize,

    /// Outstanding tickets the whole service may hold; beyond it `/sse-token` answers 503.
    #[arg(long, env = "SSE_TICKET_MAX_TICKETS", default_value_t = defaults::MAX_TICKETS)]
    pub max_tickets: usize,

    /// Interval of `: ping` comments on idle streams.
    #[arg(long, env = "SSE_TICKET_HEARTBEAT", default_value_t = defaults::HEARTBEAT.into())]
    pub heartbeat: humantime::Duration,

    /// Comma-separated origins whose pages may fetch tickets, publish and open `/stream` cross-origin.
    #[arg(long, env = "SSE_TICKET_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// The durable store.
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// How long published events stay replayable (`24h`).
    #[arg(long, env = "SSE_TICKET_HISTORY_TTL", default_value_t = defaults::HISTORY_TTL.into())]
    pub history_ttl: humantime::Duration,

    /// Replayable events kept per topic; 0 stores none.
    #[arg(long, env = "SSE_TICKET_HISTORY_MAX_PER_TOPIC", default_value_t = defaults::HISTORY_MAX_PER_TOPIC)]
    pub history_max_per_topic: u32,

    /// Redis for several instances: tickets and fan-out go through it (`redis://host:6379/0`; `rediss://` for TLS).
    #[arg(long, env = "SSE_TICKET_REDIS_URL", hide_env_values = true, value_parser = secret)]
    pub redis_url: Option<SecretString>,

    /// Namespace of every Redis key and channel, so deployments can share one Redis.
    #[arg(long, env = "SSE_TICKET_REDIS_PREFIX", default_value = defaults::REDIS_PREFIX)]
    pub redis_prefix: String,

    /// SSE_TICKET_REDIS_URL is a comma-separated list of Redis Cluster seed nodes; the cluster client follows MOVED/ASK and failovers.
    #[arg(long, env = "SSE_TICKET_REDIS_CLUSTER", default_value_t = false, action = clap::ArgAction::Set)]
    pub redis_cluster: bool,

    /// PEM certificate chain: with --tls-key, serve TLS with HTTP/2 and HTTP/1.1 (ALPN); re-read on SIGHUP.
    #[arg(long, env = "SSE_TICKET_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "SSE_TICKET_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// With --dev: serve TLS with a self-signed certificate for localhost and 127.0.0.1, kept in ./sse-ticket-dev-tls/.
    #[arg(long)]
    pub tls: bool,

    /// Open streams one subject may hold on this instance; beyond, `/stream` answers 429 `too_many_streams`.
    #[arg(long, env = "SSE_TICKET_MAX_STREAMS_PER_SUBJECT", default_value_t = defaults::MAX_STREAMS_PER_SUBJECT)]
    pub max_streams_per_subject: usize,

    /// Open streams this instance holds; beyond, `/stream` answers 503. 0: the open-file limit less a reserve.
    #[arg(long, env = "SSE_TICKET_MAX_STREAMS", default_value_t = defaults::MAX_STREAMS)]
    pub max_streams: usize,

    /// A stream whose client accepts no bytes for this long is closed (`30s`).
    #[arg(long, env = "SSE_TICKET_WRITE_TIMEOUT", default_value_t = defaults::WRITE_TIMEOUT.into())]
    pub write_timeout: humantime::Duration,

    /// A request whose headers or body take longer to arrive gets `408 request_timeout` (`10s`).
    #[arg(long, env = "SSE_TICKET_REQUEST_TIMEOUT", default_value_t = defaults::REQUEST_TIMEOUT.into())]
    pub request_timeout: humantime::Duration,

    /// How long audit rows are kept (`30d`).
    #[arg(long, env = "SSE_TICKET_AUDIT_TTL", default_value_t = defaults::AUDIT_TTL.into())]
    pub audit_ttl: humantime::Duration,

    /// Comma-separated CIDRs (or addresses) of proxies whose `Forwarded` / `X-Forwarded-For` name the client.
    #[arg(long, env = "SSE_TICKET_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// Redeem a ticket only from the client IP that requested it: `off`, `exact`, or `prefix` (same /24 or /64).
    #[arg(long, env = "SSE_TICKET_BIND_TICKET_TO_IP", value_enum, default_value_t = defaults::BIND_TICKET_TO_IP)]
    pub bind_ticket_to_ip: crate::client_ip::IpBinding,

    /// How long a revocation by `jti` is kept when the request gives no `until` (`30d`).
    #[arg(long, env = "SSE_TICKET_JTI_REVOCATION_TTL", default_value_t = defaults::JTI_REVOCATION_TTL.into())]
    pub jti_revocation_ttl: humantime::Duration,

    /// `postgres://…` of the app's database: events inserted into its outbox table are published.
    #[arg(long, env = "SSE_TICKET_OUTBOX_URL", hide_env_values = true, value_parser = secret)]
    pub outbox_url: Option<SecretString>,

    /// The outbox table (created with its dead-letter twin `<table>_dead` if missing).
    #[arg(long, env = "SSE_TICKET_OUTBOX_TABLE", default_value = defaults::OUTBOX_TABLE)]
    pub outbox_table: String,

    /// How long `/publish` remembers an `Idempotency-Key` (`24h`).
    #[arg(long, env = "SSE_TICKET_IDEMPOTENCY_TTL", default_value_t = defaults::IDEMPOTENCY_TTL.into())]
    pub idempotency_ttl: humantime::Duration,

    /// Path of a TOML file: any setting by its name in lower case without the prefix, plus `[namespaces."<prefix>"]` tables; flags and variables win over it.
    #[arg(long, env = "SSE_TICKET_CONFIG")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration (secrets redacted, each value with where it came from) as a configuration file, and exit.
    #[arg(long)]
    pub print_config: bool,

    /// The `[namespaces."<prefix>"]` tables of the configuration file.
    #[arg(skip)]
    pub namespaces: Vec<Namespace>,

    /// Log format.
    #[arg(long, env = "SSE_TICKET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}
