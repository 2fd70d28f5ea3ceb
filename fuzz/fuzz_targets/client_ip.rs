//! The client's address: IP ranges as configured (`trusted_proxies`, `ip_exclusions`)
//! and the walk through `X-Forwarded-For` that believes only trusted proxies.
//!
//! Input, line by line: the socket peer's address, the trusted ranges (comma
//! separated), then one `X-Forwarded-For` header value per line.
//!
//! Invariants: a range that parses prints as text that parses to the same range, and
//! contains its own network address; there is a client address exactly when there is
//! a peer; an untrusted peer is the client whatever the header says; otherwise the
//! client is the peer or one of the header's hops; addresses come out canonical (IPv4
//! rather than IPv4-mapped IPv6).

#![no_main]

use std::net::{IpAddr, SocketAddr};

use footpath_collector::enrich::client_ip::{client_ip, in_any, IpRange};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let mut lines = input.split('\n');
    let peer_text = lines.next().unwrap_or_default();
    let ranges_text = lines.next().unwrap_or_default();
    let forwarded_for: Vec<&str> = lines.collect();

    let mut trusted = Vec::new();
    for text in ranges_text.split(',') {
        let Ok(range) = text.parse::<IpRange>() else {
            continue;
        };
        let printed = range.to_string();
        let again: IpRange = printed
            .parse()
            .unwrap_or_else(|error| panic!("{printed:?} of {text:?}: {error}"));
        assert_eq!(again, range, "{text:?} printed as {printed:?}");
        let network = printed.split('/').next().unwrap_or_default();
        let network: IpAddr = network.parse().unwrap_or_else(|_| panic!("{printed:?}"));
        assert!(
            range.contains(network),
            "{printed:?} does not contain {network}"
        );
        trusted.push(range);
    }

    let peer = peer_text.parse::<IpAddr>().ok();
    let client = client_ip(peer, &forwarded_for, &trusted);
    let Some(peer) = peer else {
        assert_eq!(client, None);
        return;
    };
    let client = client.expect("a request with a peer has a client address");
    assert_eq!(client, client.to_canonical(), "{client} is not canonical");
    if !in_any(&trusted, peer) {
        assert_eq!(
            client,
            peer.to_canonical(),
            "an untrusted peer's header was believed"
        );
        return;
    }
    let hops = forwarded_for
        .iter()
        .flat_map(|value| value.split(','))
        .filter_map(|hop| {
            let hop = hop.trim();
            hop.parse::<IpAddr>()
                .or_else(|_| hop.parse::<SocketAddr>().map(|socket| socket.ip()))
                .ok()
        })
        .map(|address| address.to_canonical());
    assert!(
        client == peer.to_canonical() || hops.into_iter().any(|hop| hop == client),
        "client {client} is neither the peer nor a hop"
    );
});
