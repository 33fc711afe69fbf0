//! The checks each setting passes before the service starts: one line naming
//! the setting when it does not.

use std::path::PathBuf;
use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString as _};
use secrecy::SecretString;

use super::{ConfigError, DEV_TLS_DIR, RedisSettings, ServeArgs, TlsSetting};
use crate::auth::{IntrospectionSettings, KeySource, WebhookSettings};
use crate::client_ip::TrustedProxies;
use crate::db::DatabaseUrl;

/// Longest retention accepted (ten years).
const MAX_RETENTION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

pub(super) fn positive_long(name: &'static str, value: Duration) -> Result<Duration, ConfigError> {
    if value.is_zero() || value > MAX_RETENTION {
        return Err(ConfigError::Invalid {
            name,
            problem: "must be longer than zero and at most 10 years".into(),
        });
    }
    Ok(value)
}

pub(super) fn database_url(url: &str) -> Result<DatabaseUrl, ConfigError> {
    DatabaseUrl::parse(url).map_err(|_| ConfigError::Invalid {
        name: "SSE_TICKET_DATABASE_URL",
        problem: format!(
            "must start with sqlite: or postgres:// (got {})",
            crate::db::redact_url(url)
        ),
    })
}

pub(super) fn tls_setting(
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

pub(super) fn redis_settings(
    url: Option<SecretString>,
    prefix: String,
    cluster: bool,
) -> Result<Option<RedisSettings>, ConfigError> {
    use secrecy::ExposeSecret as _;
    let Some(url) = url else {
        return if cluster {
            Err(ConfigError::Invalid {
                name: "SSE_TICKET_REDIS_CLUSTER",
                problem:
                    "is true without SSE_TICKET_REDIS_URL: list the cluster's seed nodes there"
                        .into(),
            })
        } else {
            Ok(None)
        };
    };
    let raw = url.expose_secret();
    let nodes: Vec<&str> = if cluster {
        raw.split(',').map(str::trim).collect()
    } else {
        vec![raw]
    };
    for node in nodes {
        if !(node.starts_with("redis://") || node.starts_with("rediss://")) {
            let what = if cluster {
                "must be a comma-separated list of redis:// or rediss:// seed nodes"
            } else {
                "must start with redis:// or rediss://"
            };
            return Err(ConfigError::Invalid {
                name: "SSE_TICKET_REDIS_URL",
                problem: format!("{what} (got {})", crate::db::redact_url(node)),
            });
        }
    }
    Ok(Some(RedisSettings {
        url,
        prefix,
        cluster,
    }))
}

pub(super) fn key_source(args: &ServeArgs) -> Result<KeySource, ConfigError> {
    let set = [
        ("SSE_TICKET_JWT_SECRET", args.jwt_secret.is_some()),
        ("SSE_TICKET_JWT_PUBLIC_KEY", args.jwt_public_key.is_some()),
        ("SSE_TICKET_JWKS_URL", args.jwks_url.is_some()),
        (
            "SSE_TICKET_INTROSPECTION_URL",
            args.introspection_url.is_some(),
        ),
        (
            "SSE_TICKET_AUTH_WEBHOOK_URL",
            args.auth_webhook_url.is_some(),
        ),
    ];
    let found: Vec<&str> = set
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect();
    if found.len() > 1 {
        return Err(ConfigError::SeveralKeys(found.join(", ")));
    }
    if args.dev
        && found
            .first()
            .is_some_and(|name| *name != "SSE_TICKET_JWT_SECRET")
    {
        return Err(ConfigError::DevWithPublicKey);
    }
    needs(
        "SSE_TICKET_INTROSPECTION_CLIENT_ID",
        args.introspection_client_id.is_some(),
        "SSE_TICKET_INTROSPECTION_URL",
        args.introspection_url.is_some(),
    )?;
    needs(
        "SSE_TICKET_INTROSPECTION_CLIENT_SECRET",
        args.introspection_client_secret.is_some(),
        "SSE_TICKET_INTROSPECTION_URL",
        args.introspection_url.is_some(),
    )?;
    needs(
        "SSE_TICKET_AUTH_WEBHOOK_FORWARD_COOKIES",
        args.auth_webhook_forward_cookies,
        "SSE_TICKET_AUTH_WEBHOOK_URL",
        args.auth_webhook_url.is_some(),
    )?;
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
        return Ok(KeySource::JwksUrl(confidential_url(
            "SSE_TICKET_JWKS_URL",
            url,
            "keys cannot be swapped on the way",
        )?));
    }
    if let Some(url) = &args.introspection_url {
        if args.introspection_client_id.is_some() != args.introspection_client_secret.is_some() {
            return Err(ConfigError::Invalid {
                name: "SSE_TICKET_INTROSPECTION_CLIENT_ID",
                problem:
                    "and SSE_TICKET_INTROSPECTION_CLIENT_SECRET go together: set both or neither"
                        .into(),
            });
        }
        return Ok(KeySource::Introspection(IntrospectionSettings {
            url: confidential_url(
                "SSE_TICKET_INTROSPECTION_URL",
                url,
                "bearer tokens and client credentials cannot be read on the way",
            )?,
            client_id: args.introspection_client_id.clone(),
            client_secret: args.introspection_client_secret.clone(),
        }));
    }
    if let Some(url) = &args.auth_webhook_url {
        return Ok(KeySource::AuthWebhook(WebhookSettings {
            url: confidential_url(
                "SSE_TICKET_AUTH_WEBHOOK_URL",
                url,
                "credentials and cookies cannot be read on the way",
            )?,
            forward_cookies: args.auth_webhook_forward_cookies,
        }));
    }
    if args.dev {
        return Ok(KeySource::Secret(dev_secret()));
    }
    Err(ConfigError::NoKey)
}

/// `setting` only means something with `with`: refused alone.
fn needs(setting: &'static str, set: bool, with: &str, with_set: bool) -> Result<(), ConfigError> {
    if set && !with_set {
        return Err(ConfigError::Invalid {
            name: setting,
            problem: format!("needs {with}"),
        });
    }
    Ok(())
}

/// An upstream URL a credential may be sent to: `https://`, or plain
/// `http://` only to a loopback address (a sidecar), so that `why`.
fn confidential_url(name: &'static str, raw: &str, why: &str) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(raw)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| ConfigError::Invalid {
            name,
            problem: format!("is not an http(s) URL: {}", crate::db::redact_url(raw)),
        })?;
    if !crate::auth::is_confidential(&url) {
        return Err(ConfigError::Invalid {
            name,
            problem: format!(
                "must be https:// (plain http:// only to a loopback address), so {why}: {}",
                crate::db::redact_url(raw)
            ),
        });
    }
    Ok(url)
}

pub(super) fn secret(raw: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(raw.into())
}

/// Shortest HMAC secret accepted: HS256's own output size.
pub const MIN_SECRET_BYTES: usize = 32;

/// `--dev` prints working tokens and its secret: only a loopback address may
/// serve them.
pub(super) fn dev_bind(bind: &str, dev: bool) -> Result<(), ConfigError> {
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

/// Refuses any origin (`*`) together with cookie forwarding: every site
/// could then fetch tickets with its visitors' cookies.
pub(super) fn credentialed_cors(origins: &[String], keys: &KeySource) -> Result<(), ConfigError> {
    if keys.forwards_cookies() && origins.iter().any(|o| o == "*") {
        return Err(ConfigError::Invalid {
            name: "SSE_TICKET_CORS_ORIGINS",
            problem: "cannot be * while SSE_TICKET_AUTH_WEBHOOK_FORWARD_COOKIES is true: any site could get tickets with its visitors' cookies; list the allowed origins".into(),
        });
    }
    Ok(())
}

/// Validates one CORS origin: `*`, or `scheme://host[:port]` with nothing after.
pub(super) fn origin(raw: &str) -> Result<String, ConfigError> {
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

pub(super) fn trusted_proxies(raw: &[String]) -> Result<TrustedProxies, ConfigError> {
    TrustedProxies::parse(raw.iter().map(String::as_str)).map_err(|problem| ConfigError::Invalid {
        name: "SSE_TICKET_TRUSTED_PROXIES",
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: Option<&str>, cluster: bool) -> Result<Option<RedisSettings>, ConfigError> {
        redis_settings(url.map(Into::into), "p:".into(), cluster)
    }

    #[test]
    fn a_cluster_takes_a_list_of_redis_seed_nodes() {
        let ok = settings(Some("redis://a:7000, rediss://b:7001"), true)
            .expect("valid")
            .expect("set");
        assert!(ok.cluster);
        for bad in ["redis://a:7000,http://b:7001", "redis://a:7000,", "a:7000"] {
            let refused = settings(Some(bad), true).expect_err(bad);
            assert!(
                matches!(
                    refused,
                    ConfigError::Invalid {
                        name: "SSE_TICKET_REDIS_URL",
                        ..
                    }
                ),
                "{bad}: {refused}"
            );
        }
        let alone = settings(None, true).expect_err("no seeds");
        assert!(matches!(
            alone,
            ConfigError::Invalid {
                name: "SSE_TICKET_REDIS_CLUSTER",
                ..
            }
        ));
        let single = settings(Some("redis://a:7000/0"), false).expect("valid");
        assert!(single.is_some_and(|s| !s.cluster));
        assert!(settings(None, false).is_ok_and(|s| s.is_none()));
    }
}
