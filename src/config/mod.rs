//! One [`Config`], read from `serve`'s flags and `SSE_TICKET_*` variables and
//! validated before anything starts.

mod args;
mod checks;
mod file;
mod outbox;
mod provenance;
mod redact;

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::auth::{KeySource, VerifierSettings};
use crate::client_ip::{IpBinding, TrustedProxies};
use crate::db::DatabaseUrl;
use crate::namespace::{Namespace, NamespaceError, Namespaces, Policy};
use crate::ticket::StoreLimits;

pub use args::{DatabaseArgs, ServeArgs, defaults};
pub use checks::{MIN_SECRET_BYTES, dev_secret};
use checks::{
    credentialed_cors, database_url, dev_bind, key_source, origin, positive_long, redis_settings,
    tls_setting, trusted_proxies,
};
pub use file::{ConfigFile, ConfigFileError, FileProblem};
pub use outbox::OutboxSettings;
pub use provenance::Provenance;

/// Longest ticket lifetime or heartbeat interval accepted.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// The durable store used when none is configured: a SQLite file in the
/// working directory.
pub const DEFAULT_DATABASE_URL: &str = defaults::DATABASE_URL;

/// The namespace of Redis keys and channels when none is configured.
pub const DEFAULT_REDIS_PREFIX: &str = defaults::REDIS_PREFIX;

/// The directory, under the working directory, that keeps the certificate of
/// `serve --dev --tls`.
pub const DEV_TLS_DIR: &str = "sse-ticket-dev-tls";

/// How the listener speaks TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSetting {
    /// The operator's certificate and key.
    Files(crate::tls::TlsFiles),
    /// `--dev --tls`: a self-signed certificate kept in this directory.
    DevSelfSigned(PathBuf),
}

/// Where tickets and fan-out go when several instances share them.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://…` or `rediss://…`; may hold a password.
    pub url: SecretString,
    /// Namespace of every key and channel.
    pub prefix: String,
    /// Whether `url` lists the seed nodes of a Redis Cluster, comma-separated.
    pub cluster: bool,
}

impl std::fmt::Debug for RedisSettings {
    /// Shows the URL (each seed node's, for a cluster) without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use secrecy::ExposeSecret as _;
        f.debug_struct("RedisSettings")
            .field("url", &redact::urls(self.url.expose_secret(), true))
            .field("prefix", &self.prefix)
            .field("cluster", &self.cluster)
            .finish()
    }
}

/// Caps on open streams, and how long a client that reads nothing keeps one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Open streams one subject may hold on this instance.
    pub per_subject: usize,
    /// Open streams this instance holds; 0 derives it from the open-file limit.
    pub total: usize,
    /// A stream whose client accepts no bytes for this long is closed.
    pub write_timeout: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            per_subject: defaults::MAX_STREAMS_PER_SUBJECT,
            total: defaults::MAX_STREAMS,
            write_timeout: defaults::WRITE_TIMEOUT,
        }
    }
}

/// What is kept for replay and audit, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// How long published events stay replayable.
    pub history_ttl: Duration,
    /// Replayable events kept per topic; 0 stores none.
    pub history_max_per_topic: u32,
    /// How long audit rows are kept.
    pub audit_ttl: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            history_ttl: defaults::HISTORY_TTL,
            history_max_per_topic: defaults::HISTORY_MAX_PER_TOPIC,
            audit_ttl: defaults::AUDIT_TTL,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No key source and no `--dev`.
    #[error(
        "no verifier for bearer tokens: set exactly one of SSE_TICKET_JWT_SECRET, SSE_TICKET_JWT_PUBLIC_KEY, SSE_TICKET_JWKS_URL, SSE_TICKET_INTROSPECTION_URL or SSE_TICKET_AUTH_WEBHOOK_URL, or run `serve --dev`"
    )]
    NoKey,
    /// More than one key source.
    #[error(
        "set only one of SSE_TICKET_JWT_SECRET, SSE_TICKET_JWT_PUBLIC_KEY, SSE_TICKET_JWKS_URL, SSE_TICKET_INTROSPECTION_URL and SSE_TICKET_AUTH_WEBHOOK_URL (found: {0})"
    )]
    SeveralKeys(String),
    /// `--dev` with a public key or JWKS.
    #[error(
        "--dev signs its tokens with a secret: it cannot be combined with SSE_TICKET_JWT_PUBLIC_KEY, SSE_TICKET_JWKS_URL, SSE_TICKET_INTROSPECTION_URL or SSE_TICKET_AUTH_WEBHOOK_URL"
    )]
    DevWithPublicKey,
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A namespace table refused, or two naming one prefix.
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    /// A setting with a value outside its range.
    #[error("{name} {problem}")]
    Invalid {
        /// The environment variable.
        name: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// The validated configuration of a running service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub bind: String,
    /// Where bearer-token keys come from.
    pub keys: KeySource,
    /// Issuer and audience checks.
    pub verifier: VerifierSettings,
    /// Ticket lifetime and caps.
    pub tickets: StoreLimits,
    /// Interval of `: ping` on idle streams.
    pub heartbeat: Duration,
    /// Caps on open streams, and how long a stalled client keeps one.
    pub streams: StreamLimits,
    /// Origins allowed cross-origin (`*` for any).
    pub cors_origins: Vec<String>,
    /// Durable store URL.
    pub database_url: DatabaseUrl,
    /// History and audit retention.
    pub retention: Retention,
    /// How long a revocation by `jti` lasts when the request gives no `until`.
    pub jti_revocation_ttl: Duration,
    /// Redis, when tickets and fan-out are shared by several instances.
    pub redis: Option<RedisSettings>,
    /// TLS on the listener; plain HTTP when `None`.
    pub tls: Option<TlsSetting>,
    /// Longest time a request's headers, and then its body, may take to arrive.
    pub request_timeout: Duration,
    /// Proxies whose forwarding headers name the client.
    pub trusted_proxies: TrustedProxies,
    /// Whether a ticket is redeemable only from the client IP that requested it.
    pub bind_ticket_to_ip: IpBinding,
    /// The app's outbox table, when events are published from it.
    pub outbox: Option<OutboxSettings>,
    /// How long `/publish` remembers an `Idempotency-Key`.
    pub idempotency_ttl: Duration,
    /// The `[namespaces."<prefix>"]` tables of the configuration file.
    pub namespaces: Vec<Namespace>,
    /// Log format.
    pub log_format: LogFormat,
    /// Whether `--dev` was given (the secret in `keys` was generated or given).
    pub dev: bool,
}

impl Config {
    /// A configuration with every default and the given key source.
    pub fn new(keys: KeySource) -> Self {
        Self {
            bind: defaults::BIND.into(),
            keys,
            verifier: VerifierSettings::default(),
            tickets: StoreLimits {
                ttl: defaults::TICKET_TTL,
                per_subject: defaults::MAX_TICKETS_PER_SUBJECT,
                total: defaults::MAX_TICKETS,
            },
            heartbeat: defaults::HEARTBEAT,
            streams: StreamLimits::default(),
            cors_origins: Vec::new(),
            database_url: DatabaseUrl::default(),
            retention: Retention::default(),
            jti_revocation_ttl: defaults::JTI_REVOCATION_TTL,
            redis: None,
            tls: None,
            request_timeout: defaults::REQUEST_TIMEOUT,
            trusted_proxies: TrustedProxies::default(),
            bind_ticket_to_ip: defaults::BIND_TICKET_TO_IP,
            outbox: None,
            idempotency_ttl: defaults::IDEMPOTENCY_TTL,
            namespaces: Vec::new(),
            log_format: LogFormat::Pretty,
            dev: false,
        }
    }

    /// The policy of every topic: the service-wide settings, and the
    /// namespaces' resolved against them.
    pub fn namespace_policies(&self) -> Result<Namespaces, NamespaceError> {
        let service = Policy {
            history_max_per_topic: self.retention.history_max_per_topic,
            history_ttl: self.retention.history_ttl,
            max_streams_per_subject: self.streams.per_subject,
            max_event_bytes: crate::broker::MAX_EVENT_DATA,
            publish: true,
        };
        Namespaces::new(service, &self.namespaces)
    }

    /// Validates `serve`'s arguments.
    pub fn from_args(args: ServeArgs) -> Result<Self, ConfigError> {
        let keys = key_source(&args)?;
        dev_bind(&args.bind, args.dev)?;
        let positive = |name, value: Duration| {
            if value.is_zero() || value > MAX_INTERVAL {
                Err(ConfigError::Invalid {
                    name,
                    problem: "must be longer than zero and at most 24h".into(),
                })
            } else {
                Ok(value)
            }
        };
        let at_least_one = |name, value: usize| {
            if value == 0 {
                Err(ConfigError::Invalid {
                    name,
                    problem: "must be at least 1".into(),
                })
            } else {
                Ok(value)
            }
        };
        let non_empty = |name, value: Option<String>| match value {
            Some(v) if v.trim().is_empty() => Err(ConfigError::Invalid {
                name,
                problem: "is empty".into(),
            }),
            other => Ok(other),
        };
        let cors_origins = args
            .cors_origins
            .iter()
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
            .map(origin)
            .collect::<Result<Vec<_>, _>>()?;
        credentialed_cors(&cors_origins, &keys)?;
        let config = Self {
            bind: args.bind,
            keys,
            verifier: VerifierSettings {
                issuer: non_empty("SSE_TICKET_JWT_ISSUER", args.jwt_issuer)?,
                audience: non_empty("SSE_TICKET_JWT_AUDIENCE", args.jwt_audience)?,
                cache_ttl: positive("SSE_TICKET_AUTH_CACHE_TTL", args.auth_cache_ttl.into())?,
            },
            tickets: StoreLimits {
                ttl: positive("SSE_TICKET_TICKET_TTL", args.ticket_ttl.into())?,
                per_subject: at_least_one(
                    "SSE_TICKET_MAX_TICKETS_PER_SUBJECT",
                    args.max_tickets_per_subject,
                )?,
                total: at_least_one("SSE_TICKET_MAX_TICKETS", args.max_tickets)?,
            },
            heartbeat: positive("SSE_TICKET_HEARTBEAT", args.heartbeat.into())?,
            streams: StreamLimits {
                per_subject: at_least_one(
                    "SSE_TICKET_MAX_STREAMS_PER_SUBJECT",
                    args.max_streams_per_subject,
                )?,
                total: args.max_streams,
                write_timeout: positive("SSE_TICKET_WRITE_TIMEOUT", args.write_timeout.into())?,
            },
            cors_origins,
            database_url: database_url(&args.database.database_url)?,
            retention: Retention {
                history_ttl: positive_long("SSE_TICKET_HISTORY_TTL", args.history_ttl.into())?,
                history_max_per_topic: args.history_max_per_topic,
                audit_ttl: positive_long("SSE_TICKET_AUDIT_TTL", args.audit_ttl.into())?,
            },
            jti_revocation_ttl: positive_long(
                "SSE_TICKET_JTI_REVOCATION_TTL",
                args.jti_revocation_ttl.into(),
            )?,
            redis: redis_settings(args.redis_url, args.redis_prefix, args.redis_cluster)?,
            tls: tls_setting(args.tls_cert, args.tls_key, args.tls, args.dev)?,
            request_timeout: positive("SSE_TICKET_REQUEST_TIMEOUT", args.request_timeout.into())?,
            trusted_proxies: trusted_proxies(&args.trusted_proxies)?,
            bind_ticket_to_ip: args.bind_ticket_to_ip,
            outbox: outbox::outbox_settings(args.outbox_url, args.outbox_table)?,
            idempotency_ttl: positive_long(
                "SSE_TICKET_IDEMPOTENCY_TTL",
                args.idempotency_ttl.into(),
            )?,
            namespaces: args.namespaces,
            log_format: args.log_format,
            dev: args.dev,
        };
        config.namespace_policies()?;
        Ok(config)
    }
}
