//! Logging, set up once. Every line passes through [`redact`] on its way out,
//! so no ticket or bearer token reaches a log, whoever wrote the line.

use std::borrow::Cow;
use std::io;
use std::sync::LazyLock;

use regex::Regex;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// Text put where a secret was.
pub const REDACTED: &str = "[redacted]";

static SECRETS: LazyLock<Regex> = LazyLock::new(|| {
    // A `token` (or `access_token`, `ticket`) query value, a Bearer credential,
    // the password of a URL (`postgres://user:password@host`), and anything
    // shaped like a JWT.
    #[allow(clippy::unwrap_used)] // a constant pattern, covered by the tests below
    Regex::new(
        r#"(?i)(?P<key>\b(?:access_token|token|ticket)=)[^&\s"'<>\\]*|(?P<scheme>\bbearer\s+)[^\s"'\\]+|(?P<userinfo>\b[a-z][a-z0-9+.-]*://[^:/@\s"']+:)[^@/\s"']+@|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"#,
    )
    .unwrap()
});

/// `text` with ticket and token values replaced by `[redacted]`.
pub fn redact(text: &str) -> Cow<'_, str> {
    SECRETS.replace_all(text, |caps: &regex::Captures<'_>| {
        if let Some(userinfo) = caps.name("userinfo") {
            return format!("{}{REDACTED}@", userinfo.as_str());
        }
        let keep = caps
            .name("key")
            .or_else(|| caps.name("scheme"))
            .map_or("", |m| m.as_str());
        format!("{keep}{REDACTED}")
    })
}

/// Installs the global subscriber (`RUST_LOG` filters, default `info`) and
/// routes panics through it. Later calls do nothing.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Redacting(io::stderr));
    let installed = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if installed.is_ok() {
        std::panic::set_hook(Box::new(|info| {
            let location = info.location().map(ToString::to_string).unwrap_or_default();
            let payload = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(%location, panic = %payload, "panic");
        }));
    }
}

/// A writer factory whose writers redact each formatted line.
#[derive(Debug, Clone, Copy)]
pub struct Redacting<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

/// Writes what it is given with secrets redacted. The formatter hands over one
/// whole event per write, so a value is never split across two calls.
#[derive(Debug)]
pub struct RedactingWriter<W>(W);

impl<W: io::Write> io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_values_are_redacted_wherever_they_stand() {
        let ticket = "3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60";
        let jwt = &crate::auth::mint(
            &"a-test-secret".into(),
            &crate::auth::MintRequest {
                sub: crate::auth::Subject::parse("a").expect("subject"),
                permissions: crate::auth::Permissions::default(),
                ttl: std::time::Duration::from_secs(60),
                issuer: None,
                audience: None,
                now: chrono::Utc::now(),
            },
        )
        .expect("a token");
        for line in [
            format!("GET /stream?token={ticket} 200"),
            format!("GET /stream?lastEventId=1&token={ticket}&x=1"),
            format!(r#"{{"uri":"/stream?TOKEN={ticket}"}}"#),
            format!("authorization: Bearer {jwt}"),
            format!("error: bad token {jwt} seen"),
            format!("GET /stream?token={jwt}"),
        ] {
            let out = redact(&line);
            assert!(!out.contains(ticket) && !out.contains(jwt), "{out}");
            assert!(out.contains(REDACTED), "{out}");
        }
        assert_eq!(
            redact("GET /stream?token=abc&x=1"),
            "GET /stream?token=[redacted]&x=1"
        );
        assert_eq!(redact("GET /healthz 200"), "GET /healthz 200");
        assert_eq!(
            redact(r#"database_url: "postgres://app:s3cr3t@db:5432/sse""#),
            r#"database_url: "postgres://app:[redacted]@db:5432/sse""#
        );
        assert_eq!(redact("postgres://app@db/sse"), "postgres://app@db/sse");
    }
}
