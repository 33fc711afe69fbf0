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

/// `error` and its causes, one after another (`outer: inner: root`), for a
/// log line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

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

/// `query` (a URI's part after `?`) with the value of every parameter that
/// may carry a credential replaced by `[redacted]`. Keys are read the way the
/// server reads them (`form_urlencoded`: percent-decoded, `+` as a space), so
/// `%74oken=` is redacted like `token=`; a credential key is one that holds
/// `token` or `ticket` in any case (`token`, `access_token`, `subject_token`,
/// `ticket`, `TOKEN`). A redacted key is shown decoded (then re-encoded).
pub fn redact_query(query: &str) -> Cow<'_, str> {
    let key_of = |pair: &str| -> String {
        let raw = pair.split_once('=').map_or(pair, |(key, _)| key);
        form_urlencoded::parse(raw.as_bytes())
            .next()
            .map(|(key, _)| key.into_owned())
            .unwrap_or_default()
    };
    if !query
        .split('&')
        .any(|pair| is_credential_key(&key_of(pair)))
    {
        return Cow::Borrowed(query);
    }
    let mut out = String::with_capacity(query.len());
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        let key = key_of(pair);
        if is_credential_key(&key) {
            out.extend(form_urlencoded::byte_serialize(key.as_bytes()));
            out.push('=');
            out.push_str(REDACTED);
        } else {
            out.push_str(pair);
        }
    }
    Cow::Owned(out)
}

/// Whether a decoded query key may carry a credential.
fn is_credential_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("token") || key.contains("ticket")
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
                jti: None,
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

    #[test]
    fn query_keys_are_read_as_the_server_reads_them() {
        let ticket = "3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60";
        for (query, want) in [
            // Percent-encoded letters: the server decodes these keys to `token`.
            (format!("%74oken={ticket}"), "token=[redacted]".to_owned()),
            (format!("to%6Ben={ticket}"), "token=[redacted]".to_owned()),
            (
                format!("%74%6F%6B%65%6E={ticket}"),
                "token=[redacted]".to_owned(),
            ),
            // Case variants.
            (format!("TOKEN={ticket}"), "TOKEN=[redacted]".to_owned()),
            (format!("Ticket={ticket}"), "Ticket=[redacted]".to_owned()),
            // Repeated keys: every value.
            (
                format!("token=a{ticket}&token=b{ticket}"),
                "token=[redacted]&token=[redacted]".to_owned(),
            ),
            // `+` is a space, in keys and values alike.
            (format!("token+={ticket}"), "token+=[redacted]".to_owned()),
            (format!("token={ticket}+x"), "token=[redacted]".to_owned()),
            // Other credential names, and a key without a value.
            (
                format!("access_token={ticket}&subject_token={ticket}&token"),
                "access_token=[redacted]&subject_token=[redacted]&token=[redacted]".to_owned(),
            ),
            // Other parameters are kept as they were.
            (
                format!("lastEventId=01937a9e&%74oken={ticket}&x=%41"),
                "lastEventId=01937a9e&token=[redacted]&x=%41".to_owned(),
            ),
        ] {
            assert_eq!(redact_query(&query), want, "{query}");
        }
        assert!(matches!(
            redact_query("lastEventId=01937a9e&x=1"),
            Cow::Borrowed("lastEventId=01937a9e&x=1")
        ));
        // A decoded key is re-encoded: it cannot break the log line.
        assert_eq!(redact_query("%0Atoken=1"), "%0Atoken=[redacted]");
    }
}
