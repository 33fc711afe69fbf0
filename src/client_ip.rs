//! Who the client is, by address: the peer, or, when the peer is a trusted
//! proxy, the address that proxy forwarded. One rule, used by the audit
//! trail, the access log and the binding of tickets to addresses, so that
//! all three agree.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The proxies whose `Forwarded` / `X-Forwarded-For` headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses CIDRs or bare addresses (`10.0.0.0/8`, `192.0.2.7`, `fd00::/8`);
    /// blank entries are skipped. The error names the entry refused.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut nets = Vec::new();
        for raw in entries.into_iter().map(str::trim).filter(|e| !e.is_empty()) {
            let net = raw
                .parse::<IpNet>()
                .or_else(|_| raw.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!("holds {raw:?}, which is not a CIDR (10.0.0.0/8) or an address")
                })?;
            nets.push(net.trunc());
        }
        Ok(Self(nets))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// Whether a ticket is redeemable only from the client IP that requested it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum IpBinding {
    /// Redeemable from anywhere.
    #[default]
    Off,
    /// Only from the very address that requested it.
    Exact,
    /// From the same /24 (IPv4) or /64 (IPv6) as the address that requested it.
    Prefix,
}

impl IpBinding {
    /// Whether a ticket requested from `bound` may be redeemed from `presented`.
    pub fn admits(self, bound: IpAddr, presented: IpAddr) -> bool {
        let (bound, presented) = (bound.to_canonical(), presented.to_canonical());
        match self {
            Self::Off => true,
            Self::Exact => bound == presented,
            Self::Prefix => match (bound, presented) {
                (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..3] == b.octets()[..3],
                (IpAddr::V6(a), IpAddr::V6(b)) => a.segments()[..4] == b.segments()[..4],
                _ => false,
            },
        }
    }
}

/// The client's address. A peer that is not a trusted proxy is the client
/// (whatever headers it sends). From a trusted proxy, the forwarded chain is
/// read from the right: trusted addresses are passed over, and the first
/// address not trusted is the client. An entry that names no address
/// (`unknown`, an obfuscated `_hidden`, garbage) ends the walk: what lies to
/// its left cannot be vouched for, so the last trusted address passed stands
/// (the leftmost, when all are trusted). When a request carries both
/// `Forwarded` and `X-Forwarded-For` and they name different clients, one of
/// them passed through the proxy untouched from the client, so neither is
/// believed and the peer stands.
///
/// `forwarded` and `x_forwarded_for` are the values of every such header, in
/// the order received.
pub fn client_ip<'a>(
    peer: IpAddr,
    trusted: &TrustedProxies,
    forwarded: impl IntoIterator<Item = &'a str>,
    x_forwarded_for: impl IntoIterator<Item = &'a str>,
) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let from_forwarded = rightmost_untrusted(
        peer,
        trusted,
        forwarded
            .into_iter()
            .flat_map(|value| value.split(','))
            .map(forwarded_for),
    );
    let from_xff = rightmost_untrusted(
        peer,
        trusted,
        x_forwarded_for
            .into_iter()
            .flat_map(|value| value.split(','))
            .map(node),
    );
    match (from_forwarded, from_xff) {
        (Some(a), Some(b)) if a != b => peer,
        (Some(ip), _) | (None, Some(ip)) => ip,
        (None, None) => peer,
    }
}

/// The client named by one forwarded chain (`None` when the request has no
/// such header). A hop is `None` when it names no address.
fn rightmost_untrusted(
    peer: IpAddr,
    trusted: &TrustedProxies,
    hops: impl Iterator<Item = Option<IpAddr>>,
) -> Option<IpAddr> {
    let hops: Vec<_> = hops.collect();
    if hops.is_empty() {
        return None;
    }
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        match hop {
            Some(ip) if trusted.contains(ip) => client = ip,
            Some(ip) => return Some(ip),
            None => break,
        }
    }
    Some(client)
}

/// The address of the `for=` node of one `Forwarded` element (RFC 7239);
/// `None` when it has no `for=` or that names no address.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim().eq_ignore_ascii_case("for").then_some(value)
    })?;
    node(value.trim().trim_matches('"'))
}

/// An address as a forwarding header writes it: bare, with a port, IPv6 in
/// brackets (with or without a port). Anything else names no address.
fn node(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim();
    raw.parse::<IpAddr>()
        .ok()
        .or_else(|| raw.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            raw.strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<IpAddr>()
                .ok()
        })
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests;
