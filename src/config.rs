//! One [`Config`], read from `serve`'s flags and `SSE_TICKET_*` variables and
//! validated before anything starts.

use std::path::PathBuf;
use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString as _};
use secrecy::SecretString;

use crate::auth::{KeySource, VerifierSettings};
use crate::ticket::StoreLimits;

/// Longest ticket lifetime or heartbeat interval accepted.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Flags (and environment variables) of `sse-ticket serve`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Service")]
pub struct ServeArgs {
    /// Listen address.
    #[arg(long, env = "SSE_TICKET_BIND", default_value = "127.0.0.1:8080")]
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

    /// When set, `iss` must equal it.
    #[arg(long, env = "SSE_TICKET_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// When set, `aud` must contain it.
    #[arg(long, env = "SSE_TICKET_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Ticket lifetime (`60s`, `2m`).
    #[arg(long, env = "SSE_TICKET_TICKET_TTL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub ticket_ttl: Duration,

    /// Outstanding (unredeemed, unexpired) tickets one subject may hold.
    #[arg(long, env = "SSE_TICKET_MAX_TICKETS_PER_SUBJECT", default_value_t = 32)]
    pub max_tickets_per_subject: usize,

    /// Outstanding tickets the whole service may hold; beyond it `/sse-token` answers 503.
    #[arg(long, env = "SSE_TICKET_MAX_TICKETS", default_value_t = 1_000_000)]
    pub max_tickets: usize,

    /// Interval of `: ping` comments on idle streams.
    #[arg(long, env = "SSE_TICKET_HEARTBEAT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,

    /// Comma-separated origins whose pages may fetch tickets, publish and open `/stream` cross-origin.
    #[arg(long, env = "SSE_TICKET_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Durable store: `sqlite://<file>` (created if missing) or `postgres://…`.
    #[arg(long, env = "SSE_TICKET_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// How long published events stay replayable (`24h`).
    #[arg(long, env = "SSE_TICKET_HISTORY_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub history_ttl: Duration,

    /// Replayable events kept per topic; 0 stores none.
    #[arg(long, env = "SSE_TICKET_HISTORY_MAX_PER_TOPIC", default_value_t = 1000)]
    pub history_max_per_topic: u32,

    /// Redis for several instances: tickets and fan-out go through it (`redis://host:6379/0`; `rediss://` for TLS).
    #[arg(long, env = "SSE_TICKET_REDIS_URL", hide_env_values = true, value_parser = secret)]
    pub redis_url: Option<SecretString>,

    /// Namespace of every Redis key and channel, so deployments can share one Redis.
    #[arg(long, env = "SSE_TICKET_REDIS_PREFIX", default_value = DEFAULT_REDIS_PREFIX)]
    pub redis_prefix: String,

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
    #[arg(long, env = "SSE_TICKET_MAX_STREAMS_PER_SUBJECT", default_value_t = 16)]
    pub max_streams_per_subject: usize,

    /// Open streams this instance holds; beyond, `/stream` answers 503. 0: the open-file limit less a reserve.
    #[arg(long, env = "SSE_TICKET_MAX_STREAMS", default_value_t = 0)]
    pub max_streams: usize,

    /// A stream whose client accepts no bytes for this long is closed (`30s`).
    #[arg(long, env = "SSE_TICKET_WRITE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub write_timeout: Duration,

    /// A request whose headers or body take longer to arrive gets `408 request_timeout` (`10s`).
    #[arg(long, env = "SSE_TICKET_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// How long audit rows are kept (`30d`).
    #[arg(long, env = "SSE_TICKET_AUDIT_TTL", default_value = "30d", value_parser = humantime::parse_duration)]
    pub audit_ttl: Duration,

    /// Log format.
    #[arg(long, env = "SSE_TICKET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

/// The durable store used when none is configured: a SQLite file in the
/// working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://sse-ticket.db";

/// The namespace of Redis keys and channels when none is configured.
pub const DEFAULT_REDIS_PREFIX: &str = "sse-ticket:";

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
}

impl std::fmt::Debug for RedisSettings {
    /// Shows the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use secrecy::ExposeSecret as _;
        f.debug_struct("RedisSettings")
            .field("url", &crate::db::redact_url(self.url.expose_secret()))
            .field("prefix", &self.prefix)
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
            per_subject: 16,
            total: 0,
            write_timeout: Duration::from_secs(30),
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
            history_ttl: Duration::from_secs(24 * 3600),
            history_max_per_topic: 1000,
            audit_ttl: Duration::from_secs(30 * 24 * 3600),
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
        "no key to verify bearer tokens: set exactly one of SSE_TICKET_JWT_SECRET, SSE_TICKET_JWT_PUBLIC_KEY or SSE_TICKET_JWKS_URL, or run `serve --dev`"
    )]
    NoKey,
    /// More than one key source.
    #[error(
        "set only one of SSE_TICKET_JWT_SECRET, SSE_TICKET_JWT_PUBLIC_KEY and SSE_TICKET_JWKS_URL (found: {0})"
    )]
    SeveralKeys(String),
    /// `--dev` with a public key or JWKS.
    #[error(
        "--dev signs its tokens with a secret: it cannot be combined with SSE_TICKET_JWT_PUBLIC_KEY or SSE_TICKET_JWKS_URL"
    )]
    DevWithPublicKey,
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
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
    pub database_url: String,
    /// History and audit retention.
    pub retention: Retention,
    /// Redis, when tickets and fan-out are shared by several instances.
    pub redis: Option<RedisSettings>,
    /// TLS on the listener; plain HTTP when `None`.
    pub tls: Option<TlsSetting>,
    /// Longest time a request's headers, and then its body, may take to arrive.
    pub request_timeout: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Whether `--dev` was given (the secret in `keys` was generated or given).
    pub dev: bool,
}

impl Config {
    /// A configuration with every default and the given key source.
    pub fn new(keys: KeySource) -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            keys,
            verifier: VerifierSettings::default(),
            tickets: StoreLimits {
                ttl: Duration::from_secs(60),
                per_subject: 32,
                total: 1_000_000,
            },
            heartbeat: Duration::from_secs(15),
            streams: StreamLimits::default(),
            cors_origins: Vec::new(),
            database_url: DEFAULT_DATABASE_URL.into(),
            retention: Retention::default(),
            redis: None,
            tls: None,
            request_timeout: Duration::from_secs(10),
            log_format: LogFormat::Pretty,
            dev: false,
        }
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
        Ok(Self {
            bind: args.bind,
            keys,
            verifier: VerifierSettings {
                issuer: non_empty("SSE_TICKET_JWT_ISSUER", args.jwt_issuer)?,
                audience: non_empty("SSE_TICKET_JWT_AUDIENCE", args.jwt_audience)?,
            },
            tickets: StoreLimits {
                ttl: positive("SSE_TICKET_TICKET_TTL", args.ticket_ttl)?,
                per_subject: at_least_one(
                    "SSE_TICKET_MAX_TICKETS_PER_SUBJECT",
                    args.max_tickets_per_subject,
                )?,
                total: at_least_one("SSE_TICKET_MAX_TICKETS", args.max_tickets)?,
            },
            heartbeat: positive("SSE_TICKET_HEARTBEAT", args.heartbeat)?,
            streams: StreamLimits {
                per_subject: at_least_one(
                    "SSE_TICKET_MAX_STREAMS_PER_SUBJECT",
                    args.max_streams_per_subject,
                )?,
                total: args.max_streams,
                write_timeout: positive("SSE_TICKET_WRITE_TIMEOUT", args.write_timeout)?,
            },
            cors_origins: args
                .cors_origins
                .iter()
                .map(|o| o.trim())
                .filter(|o| !o.is_empty())
                .map(origin)
                .collect::<Result<_, _>>()?,
            database_url: database_url(args.database_url)?,
            retention: Retention {
                history_ttl: positive_long("SSE_TICKET_HISTORY_TTL", args.history_ttl)?,
                history_max_per_topic: args.history_max_per_topic,
                audit_ttl: positive_long("SSE_TICKET_AUDIT_TTL", args.audit_ttl)?,
            },
            redis: redis_settings(args.redis_url, args.redis_prefix)?,
            tls: tls_setting(args.tls_cert, args.tls_key, args.tls, args.dev)?,
            request_timeout: positive("SSE_TICKET_REQUEST_TIMEOUT", args.request_timeout)?,
            log_format: args.log_format,
            dev: args.dev,
        })
    }
}

/// Longest retention accepted (ten years).
const MAX_RETENTION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

fn positive_long(name: &'static str, value: Duration) -> Result<Duration, ConfigError> {
    if value.is_zero() || value > MAX_RETENTION {
        return Err(ConfigError::Invalid {
            name,
            problem: "must be longer than zero and at most 10 years".into(),
        });
    }
    Ok(value)
}

fn database_url(url: String) -> Result<String, ConfigError> {
    let known = ["sqlite:", "postgres://", "postgresql://"];
    if known.iter().any(|scheme| url.starts_with(scheme)) {
        Ok(url)
    } else {
        Err(ConfigError::Invalid {
            name: "SSE_TICKET_DATABASE_URL",
            problem: format!(
                "must start with sqlite: or postgres:// (got {})",
                crate::db::redact_url(&url)
            ),
        })
    }
}

fn tls_setting(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    self_signed: bool,
    dev: bool,
) -> Result<Option<TlsSetting>, ConfigError> {
    let invalid = |name, problem: &str| ConfigError::Invalid {
        name,
        problem: problem.into(),
    };
    match (cert, key, self_signed) {
        (None, None, false) => Ok(None),
        (None, None, true) if dev => Ok(Some(TlsSetting::DevSelfSigned(DEV_TLS_DIR.into()))),
        (None, None, true) => Err(invalid(
            "--tls",
            "generates a development certificate and needs --dev; to serve TLS otherwise, set SSE_TICKET_TLS_CERT and SSE_TICKET_TLS_KEY",
        )),
        (Some(_), Some(_), true) => Err(invalid(
            "--tls",
            "generates a certificate: leave it out when SSE_TICKET_TLS_CERT and SSE_TICKET_TLS_KEY are set",
        )),
        (Some(cert), Some(key), false) => {
            let files = crate::tls::TlsFiles { cert, key };
            // Checked here, so a bad pair stops start-up before anything runs.
            files.load()?;
            Ok(Some(TlsSetting::Files(files)))
        }
        (Some(_), None, _) => Err(invalid(
            "SSE_TICKET_TLS_CERT",
            "is set without SSE_TICKET_TLS_KEY: set both to serve TLS",
        )),
        (None, Some(_), _) => Err(invalid(
            "SSE_TICKET_TLS_KEY",
            "is set without SSE_TICKET_TLS_CERT: set both to serve TLS",
        )),
    }
}

fn redis_settings(
    url: Option<SecretString>,
    prefix: String,
) -> Result<Option<RedisSettings>, ConfigError> {
    use secrecy::ExposeSecret as _;
    let Some(url) = url else { return Ok(None) };
    let raw = url.expose_secret();
    if !(raw.starts_with("redis://") || raw.starts_with("rediss://")) {
        return Err(ConfigError::Invalid {
            name: "SSE_TICKET_REDIS_URL",
            problem: format!(
                "must start with redis:// or rediss:// (got {})",
                crate::db::redact_url(raw)
            ),
        });
    }
    Ok(Some(RedisSettings { url, prefix }))
}

fn key_source(args: &ServeArgs) -> Result<KeySource, ConfigError> {
    let mut found = Vec::new();
    if args.jwt_secret.is_some() {
        found.push("SSE_TICKET_JWT_SECRET");
    }
    if args.jwt_public_key.is_some() {
        found.push("SSE_TICKET_JWT_PUBLIC_KEY");
    }
    if args.jwks_url.is_some() {
        found.push("SSE_TICKET_JWKS_URL");
    }
    if found.len() > 1 {
        return Err(ConfigError::SeveralKeys(found.join(", ")));
    }
    if args.dev && (args.jwt_public_key.is_some() || args.jwks_url.is_some()) {
        return Err(ConfigError::DevWithPublicKey);
    }
    if let Some(secret) = &args.jwt_secret {
        use secrecy::ExposeSecret as _;
        if secret.expose_secret().len() < MIN_SECRET_BYTES {
            return Err(ConfigError::Invalid {
                name: "SSE_TICKET_JWT_SECRET",
                problem: format!(
                    "must be at least {MIN_SECRET_BYTES} bytes (HS256 needs 256 bits of key; try: head -c 32 /dev/urandom | base64)"
                ),
            });
        }
        return Ok(KeySource::Secret(secret.clone()));
    }
    if let Some(path) = &args.jwt_public_key {
        return Ok(KeySource::PublicKeyPem(path.clone()));
    }
    if let Some(url) = &args.jwks_url {
        let url = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| ConfigError::Invalid {
                name: "SSE_TICKET_JWKS_URL",
                problem: format!("is not an http(s) URL: {url}"),
            })?;
        if !crate::auth::is_confidential(&url) {
            return Err(ConfigError::Invalid {
                name: "SSE_TICKET_JWKS_URL",
                problem: format!(
                    "must be https:// (plain http:// only to a loopback address), so keys cannot be swapped on the way: {url}"
                ),
            });
        }
        return Ok(KeySource::JwksUrl(url));
    }
    if args.dev {
        return Ok(KeySource::Secret(dev_secret()));
    }
    Err(ConfigError::NoKey)
}

fn secret(raw: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(raw.into())
}

/// Shortest HMAC secret accepted: HS256's own output size.
pub const MIN_SECRET_BYTES: usize = 32;

/// `--dev` prints working tokens and its secret: only a loopback address may
/// serve them.
fn dev_bind(bind: &str, dev: bool) -> Result<(), ConfigError> {
    let host = bind.rsplit_once(':').map_or(bind, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if dev && !loopback {
        return Err(ConfigError::Invalid {
            name: "--dev",
            problem: format!(
                "serves development tokens and only binds a loopback address (SSE_TICKET_BIND is {bind}); use 127.0.0.1 or configure a real key"
            ),
        });
    }
    Ok(())
}

/// A random 43-character secret for `--dev`.
pub fn dev_secret() -> SecretString {
    Alphanumeric.sample_string(&mut rand::rng(), 43).into()
}

/// Validates one CORS origin: `*`, or `scheme://host[:port]` with nothing after.
fn origin(raw: &str) -> Result<String, ConfigError> {
    if raw == "*" {
        return Ok(raw.into());
    }
    let invalid = || ConfigError::Invalid {
        name: "SSE_TICKET_CORS_ORIGINS",
        problem: format!("holds {raw:?}, which is not an origin like https://app.example.com"),
    };
    let url = reqwest::Url::parse(raw).map_err(|_| invalid())?;
    let bare = url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && !raw.ends_with('/');
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || !bare {
        return Err(invalid());
    }
    Ok(url.origin().ascii_serialization())
}
