use std::net::IpAddr;

use super::{IpBinding, TrustedProxies, client_ip};

fn ip(raw: &str) -> IpAddr {
    raw.parse().expect("an address")
}

fn proxies(raw: &str) -> TrustedProxies {
    TrustedProxies::parse(raw.split(',')).expect("trusted proxies")
}

/// The client seen from `peer` with one `Forwarded` and one `X-Forwarded-For` value.
fn seen(peer: &str, trusted: &str, forwarded: Option<&str>, xff: Option<&str>) -> IpAddr {
    client_ip(ip(peer), &proxies(trusted), forwarded, xff)
}

#[test]
fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
    let client = seen(
        "203.0.113.9",
        "10.0.0.0/8",
        Some("for=198.51.100.1"),
        Some("198.51.100.2"),
    );
    assert_eq!(client, ip("203.0.113.9"));
    assert_eq!(
        seen("203.0.113.9", "", None, Some("198.51.100.2")),
        ip("203.0.113.9")
    );
}

#[test]
fn x_forwarded_for_from_a_trusted_proxy_gives_the_rightmost_untrusted_address() {
    let client = seen(
        "10.0.0.1",
        "10.0.0.0/8",
        None,
        Some(" 192.0.2.66 ,198.51.100.7,  10.1.2.3 "),
    );
    assert_eq!(
        client,
        ip("198.51.100.7"),
        "a forged leftmost entry is not the client"
    );
}

#[test]
fn when_every_address_is_trusted_the_leftmost_stands() {
    let client = seen("10.0.0.1", "10.0.0.0/8", None, Some("10.9.9.9, 10.1.2.3"));
    assert_eq!(client, ip("10.9.9.9"));
}

#[test]
fn a_trusted_proxy_without_headers_is_the_client() {
    assert_eq!(seen("10.0.0.1", "10.0.0.0/8", None, None), ip("10.0.0.1"));
}

#[test]
fn forwarded_reads_quoted_nodes_ports_and_bracketed_ipv6() {
    let trusted = "10.0.0.0/8, 192.0.2.1";
    let cases = [
        ("for=198.51.100.7", "198.51.100.7"),
        ("For=\"198.51.100.7:4711\"", "198.51.100.7"),
        ("for=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
        (
            "for=\"[2001:db8:cafe::17]\";proto=https",
            "2001:db8:cafe::17",
        ),
        ("proto=https;for=198.51.100.7;by=10.0.0.1", "198.51.100.7"),
        (
            "for=192.0.2.66, for=198.51.100.7;proto=http, for=10.2.2.2",
            "198.51.100.7",
        ),
    ];
    for (header, want) in cases {
        assert_eq!(
            seen("10.0.0.1", trusted, Some(header), None),
            ip(want),
            "{header}"
        );
    }
}

#[test]
fn an_obfuscated_or_unknown_node_names_no_address_and_ends_the_walk() {
    let trusted = "10.0.0.0/8";
    // The rightmost untrusted node is an address: what lies left of it does not matter.
    let client = seen(
        "10.0.0.1",
        trusted,
        Some("for=_hidden, for=198.51.100.7"),
        None,
    );
    assert_eq!(client, ip("198.51.100.7"));
    // An obfuscated node is never taken as an address, nor looked past.
    let client = seen(
        "10.0.0.1",
        trusted,
        Some("for=192.0.2.66, for=_hidden, for=10.3.3.3"),
        None,
    );
    assert_eq!(client, ip("10.3.3.3"));
    let client = seen(
        "10.0.0.1",
        trusted,
        Some("for=192.0.2.66, for=unknown"),
        None,
    );
    assert_eq!(client, ip("10.0.0.1"));
    let client = seen("10.0.0.1", trusted, None, Some("192.0.2.66, garbage"));
    assert_eq!(client, ip("10.0.0.1"));
}

#[test]
fn several_header_lines_are_one_chain_in_order() {
    let client = client_ip(
        ip("10.0.0.1"),
        &proxies("10.0.0.0/8"),
        [],
        ["192.0.2.66, 198.51.100.7", "10.4.4.4"],
    );
    assert_eq!(client, ip("198.51.100.7"));
}

#[test]
fn forwarded_and_x_forwarded_for_that_disagree_are_both_disbelieved() {
    let trusted = "10.0.0.0/8";
    let agree = seen(
        "10.0.0.1",
        trusted,
        Some("for=198.51.100.7"),
        Some("198.51.100.7"),
    );
    assert_eq!(agree, ip("198.51.100.7"));
    // A proxy that appends X-Forwarded-For passes a forged Forwarded on.
    let forged = seen(
        "10.0.0.1",
        trusted,
        Some("for=192.0.2.66"),
        Some("198.51.100.7"),
    );
    assert_eq!(forged, ip("10.0.0.1"));
}

#[test]
fn ipv4_mapped_peers_are_ipv4() {
    assert_eq!(
        seen("::ffff:10.0.0.1", "10.0.0.0/8", None, Some("198.51.100.7")),
        ip("198.51.100.7")
    );
}

#[test]
fn trusted_proxies_refuse_what_is_not_a_cidr() {
    assert!(TrustedProxies::parse(["10.0.0.0/33"]).is_err());
    assert!(TrustedProxies::parse(["proxy.internal"]).is_err());
    assert!(TrustedProxies::parse(["10.0.0.0/8", " ", "fd00::/8", "192.0.2.1"]).is_ok());
}

#[test]
fn binding_modes_admit_the_same_address_or_its_neighbourhood() {
    let (a, b) = (ip("198.51.100.7"), ip("198.51.100.200"));
    assert!(IpBinding::Exact.admits(a, a));
    assert!(!IpBinding::Exact.admits(a, b));
    assert!(IpBinding::Prefix.admits(a, b));
    assert!(!IpBinding::Prefix.admits(a, ip("198.51.101.7")));
    let (c, d) = (ip("2001:db8:1:2::7"), ip("2001:db8:1:2:ffff::1"));
    assert!(IpBinding::Prefix.admits(c, d));
    assert!(!IpBinding::Prefix.admits(c, ip("2001:db8:1:3::7")));
    assert!(!IpBinding::Prefix.admits(a, c));
    assert!(IpBinding::Off.admits(a, c));
}
