//! Where the load goes: the common flags, loopback-only endpoints, and the
//! context every mode starts from.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context as _, bail};
use hyper::Uri;
use hyper::header::HeaderValue;

use crate::auth::Credentials;

/// Flags shared by every mode (they may stand before or after the mode).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Server and credentials (any mode)")]
pub struct TargetArgs {
    /// Base URL of the sse-ticket server; loopback only (127.0.0.0/8, ::1, localhost).
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// HMAC secret to mint HS256 bearer tokens with (the server's `SSE_TICKET_JWT_SECRET`).
    #[arg(
        long,
        global = true,
        env = "SSE_TICKET_JWT_SECRET",
        hide_env_values = true
    )]
    pub secret: Option<String>,
    /// Use this bearer token for every request instead of minting (wins over --secret).
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// `iss` to put in minted tokens, when the server checks one.
    #[arg(long, global = true, env = "SSE_TICKET_JWT_ISSUER")]
    pub issuer: Option<String>,
    /// `aud` to put in minted tokens, when the server checks one.
    #[arg(long, global = true, env = "SSE_TICKET_JWT_AUDIENCE")]
    pub audience: Option<String>,
    /// Process id of the server, to read its VmRSS from /proc/<pid>/status.
    #[arg(long, visible_alias = "pid", global = true)]
    pub server_pid: Option<u32>,
}

/// A loopback HTTP endpoint: where to connect, what to send as `Host`, and a path.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The socket address to connect to.
    pub addr: SocketAddr,
    /// The `Host` header (the URL's authority).
    pub host: HeaderValue,
    /// The URL's path and query (`/` when it has none).
    pub path: String,
}

impl Endpoint {
    /// Parses an `http://` URL whose host is a loopback address or `localhost`;
    /// refuses anything else.
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        let uri: Uri = raw
            .parse()
            .with_context(|| format!("{raw:?} is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            bail!("{raw}: only http:// URLs are supported (plain HTTP on loopback)");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("{raw}: the URL has no host"))?;
        let host = authority.host();
        let ip = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .with_context(|| {
                    format!("{raw}: the host must be a loopback IP address or localhost")
                })?
        };
        if !ip.is_loopback() {
            bail!(
                "{raw}: load is only sent to loopback addresses (127.0.0.0/8, ::1, localhost), and {host} is not one"
            );
        }
        let port = authority.port_u16().unwrap_or(80);
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Ok(Self {
            addr: SocketAddr::new(ip, port),
            host: HeaderValue::from_str(authority.as_str())
                .with_context(|| format!("{raw}: the host is not a valid Host header"))?,
            path: if path.is_empty() { "/".into() } else { path },
        })
    }

    /// `path` under this endpoint's base path (`http://h/base` + `/x` = `/base/x`).
    pub fn join(&self, path: &str) -> String {
        let base = self.path.split('?').next().unwrap_or_default();
        format!("{}{}", base.trim_end_matches('/'), path)
    }
}

/// What every mode starts from: the server, the credentials, the server's pid.
#[derive(Debug)]
pub struct Context {
    /// The server's base URL.
    pub base: Endpoint,
    /// How bearer tokens are obtained, when any were given.
    pub credentials: Option<Credentials>,
    /// The server's pid, for RSS sampling.
    pub server_pid: Option<u32>,
    /// This process's open-file limit, after raising the soft limit to the hard one.
    pub open_files: u64,
}

impl Context {
    /// Validates the common flags and raises this process's open-file limit.
    pub fn from_args(args: &TargetArgs) -> anyhow::Result<Self> {
        let base = Endpoint::parse(&args.url)?;
        let credentials = Credentials::from_args(args)?;
        let open_files = rlimit::increase_nofile_limit(u64::MAX)
            .context("cannot read or raise this process's open-file limit")?;
        if let Some(pid) = args.server_pid {
            crate::rss::vm_rss_kb(pid)
                .with_context(|| format!("--server-pid {pid}: cannot read its memory"))?;
        }
        Ok(Self {
            base,
            credentials,
            server_pid: args.server_pid,
            open_files,
        })
    }

    /// The credentials, or an error that says how to give them.
    pub fn credentials(&self) -> anyhow::Result<&Credentials> {
        self.credentials.as_ref().context(
            "no credentials: pass --secret (or set SSE_TICKET_JWT_SECRET) to mint tokens, or --token",
        )
    }

    /// Fails with a clear message when `needed` sockets exceed this process's open-file limit.
    pub fn ensure_open_files(&self, needed: u64, what: &str) -> anyhow::Result<()> {
        // Headroom for the runtime, stdio and the ticket connections.
        let budget = self.open_files.saturating_sub(64);
        if needed > budget {
            bail!(
                "{what} needs {needed} sockets, but this process may open only {} files \
                 (hard limit, ulimit -Hn, less 64 for itself); lower the count or raise the hard limit",
                self.open_files
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_loopback_only() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.9.8.7",
            "http://localhost:1/x",
            "http://[::1]:80/",
        ] {
            assert!(Endpoint::parse(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://10.0.0.1:8080",
            "http://192.168.1.2",
            "http://example.com",
            "https://127.0.0.1",
            "http://[::2]:80",
            "127.0.0.1:8080",
        ] {
            assert!(Endpoint::parse(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn joins_under_the_base_path() {
        let root = Endpoint::parse("http://127.0.0.1:8080").expect("valid");
        assert_eq!(root.join("/sse-token"), "/sse-token");
        assert_eq!(root.addr.port(), 8080);
        assert_eq!(root.host, "127.0.0.1:8080");
        let nested = Endpoint::parse("http://localhost/events/").expect("valid");
        assert_eq!(nested.join("/stream?token=x"), "/events/stream?token=x");
        assert_eq!(nested.addr.port(), 80);
        let raw = Endpoint::parse("http://127.0.0.1:81/sub/t?x=1").expect("valid");
        assert_eq!(raw.path, "/sub/t?x=1");
    }
}
