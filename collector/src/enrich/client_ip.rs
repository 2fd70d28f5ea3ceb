//! Which IP address is the client's, and IP ranges as written in the configuration.
//!
//! Behind a reverse proxy or load balancer the socket's peer is the proxy, and the
//! client's address is in `X-Forwarded-For`, which each proxy extends with the address
//! it received the request from: `client, proxy1, proxy2` (the socket peer being the
//! last proxy). Anyone can send the header, so it is believed only as far as trusted
//! proxies vouch for it:
//!
//! - The socket peer is not a trusted proxy: the header is ignored, the peer is the
//!   client.
//! - Otherwise the hops are read from the right; trusted proxies are skipped, and the
//!   first address that is not a trusted proxy is the client. Whatever is to its left
//!   was written by that untrusted party and is ignored (a spoofed chain).
//! - When every hop is a trusted proxy, the left-most one is the client; when a hop is
//!   not an IP address, the walk stops and the last trusted address is the client.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;
use serde::Deserialize;

/// An IP address or a CIDR range (`203.0.113.7`, `10.0.0.0/8`, `2001:db8::/32`), as
/// written in `trusted_proxies` and `ip_exclusions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange(IpNet);

impl IpRange {
    pub fn contains(&self, address: IpAddr) -> bool {
        // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d.
        self.0.contains(&address.to_canonical())
    }
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(text: &str) -> Result<IpRange, String> {
        let text = text.trim();
        if let Ok(address) = text.parse::<IpAddr>() {
            return Ok(IpRange(IpNet::from(address.to_canonical())));
        }
        let network = text
            .parse::<IpNet>()
            .map_err(|_| format!("{text:?} is neither an IP address nor a CIDR range"))?;
        // `contains` compares canonical addresses (IPv4 as IPv4), so an IPv4-mapped range
        // such as `::ffff:10.0.0.0/104` must become the IPv4 range it stands for, or it
        // would never match anything (found by the `client_ip` fuzz target).
        if let IpNet::V6(v6) = network {
            if let (Some(v4), true) = (v6.network().to_ipv4_mapped(), v6.prefix_len() >= 96) {
                let v4 = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                    .map_err(|error| format!("{text:?}: {error}"))?;
                return Ok(IpRange(IpNet::V4(v4.trunc())));
            }
        }
        // `10.1.2.3/8` means `10.0.0.0/8`.
        Ok(IpRange(network.trunc()))
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for IpRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<IpRange, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether any range contains `address`.
pub fn in_any(ranges: &[IpRange], address: IpAddr) -> bool {
    ranges.iter().any(|range| range.contains(address))
}

/// The client's address, per the rules of this module. `forwarded_for` holds the
/// values of every `X-Forwarded-For` header of the request, in order.
pub fn client_ip(
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    trusted_proxies: &[IpRange],
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    if !in_any(trusted_proxies, peer) {
        return Some(peer);
    }
    let hops = forwarded_for
        .iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|hop| !hop.is_empty())
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(address) = parse_hop(hop) else {
            break;
        };
        client = address;
        if !in_any(trusted_proxies, address) {
            break;
        }
    }
    Some(client)
}

/// A hop is an address, possibly with a port (`203.0.113.7:1234`, `[2001:db8::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|socket| socket.ip()))
        .ok()
        .map(|address| address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(texts: &[&str]) -> Vec<IpRange> {
        texts.iter().map(|text| text.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_for_is_believed_only_through_trusted_proxies() {
        let trusted = ranges(&["10.0.0.0/8", "192.0.2.1", "2001:db8:ffff::/48"]);
        // (socket peer, X-Forwarded-For headers, expected client)
        let table: &[(&str, &[&str], &str)] = &[
            // Untrusted peer: the header is ignored, even when it looks plausible.
            ("198.51.100.9", &["203.0.113.7"], "198.51.100.9"),
            ("198.51.100.9", &[], "198.51.100.9"),
            // Trusted peer: the right-most address that is not a trusted proxy.
            ("10.0.0.5", &["203.0.113.7"], "203.0.113.7"),
            ("10.0.0.5", &["203.0.113.7, 10.1.1.1"], "203.0.113.7"),
            ("192.0.2.1", &["203.0.113.7", "10.2.2.2"], "203.0.113.7"),
            // A spoofed chain: the client wrote "1.2.3.4" itself; the proxy appended
            // the real address.
            ("10.0.0.5", &["1.2.3.4, 203.0.113.7"], "203.0.113.7"),
            (
                "10.0.0.5",
                &["1.2.3.4, 10.9.9.9, 203.0.113.7, 10.1.1.1"],
                "203.0.113.7",
            ),
            // Every hop is a trusted proxy: the left-most.
            ("10.0.0.5", &["10.3.3.3, 10.4.4.4"], "10.3.3.3"),
            // Trusted peer without the header: the peer.
            ("10.0.0.5", &[], "10.0.0.5"),
            // Garbage stops the walk at the last trusted address.
            ("10.0.0.5", &["203.0.113.7, unknown"], "10.0.0.5"),
            ("10.0.0.5", &["garbage, 10.1.1.1"], "10.1.1.1"),
            // Ports and IPv6.
            ("10.0.0.5", &["203.0.113.7:4711"], "203.0.113.7"),
            ("10.0.0.5", &["[2001:db8::7]:443"], "2001:db8::7"),
            ("2001:db8:ffff::1", &["2001:db8::7"], "2001:db8::7"),
            // A dual-stack socket's IPv4-mapped peer.
            ("::ffff:10.0.0.5", &["203.0.113.7"], "203.0.113.7"),
            ("::ffff:198.51.100.9", &["203.0.113.7"], "198.51.100.9"),
        ];
        for (peer, headers, expected) in table {
            let peer: IpAddr = peer.parse().unwrap();
            let found = client_ip(Some(peer), headers, &trusted);
            assert_eq!(found, Some(expected.parse().unwrap()), "{peer} {headers:?}");
        }
        assert_eq!(client_ip(None, &["203.0.113.7"], &trusted), None);
        // With no trusted proxies, the header never counts.
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        assert_eq!(client_ip(Some(peer), &["203.0.113.7"], &[]), Some(peer));
    }

    #[test]
    fn ranges_match_addresses_and_networks() {
        let excluded = ranges(&[
            "203.0.113.7",
            "198.51.100.0/24",
            "2001:db8:abcd::/48",
            "::ffff:10.0.0.0/104",
        ]);
        let table: &[(&str, bool)] = &[
            ("203.0.113.7", true),
            ("203.0.113.8", false),
            ("198.51.100.0", true),
            ("198.51.100.255", true),
            ("198.51.101.1", false),
            ("2001:db8:abcd:12::1", true),
            ("2001:db8:abce::1", false),
            ("::ffff:203.0.113.7", true),
            // An IPv4-mapped range means the IPv4 range, for both forms of address.
            ("10.200.0.1", true),
            ("::ffff:10.200.0.1", true),
            ("11.0.0.1", false),
        ];
        for (address, expected) in table {
            assert_eq!(
                in_any(&excluded, address.parse().unwrap()),
                *expected,
                "{address}"
            );
        }
        assert_eq!(
            "10.1.2.3/8".parse::<IpRange>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            "nope".parse::<IpRange>().unwrap_err(),
            "\"nope\" is neither an IP address nor a CIDR range"
        );
        assert!("10.0.0.0/33".parse::<IpRange>().is_err());
        assert_eq!(
            "::ffff:10.1.2.3/104"
                .parse::<IpRange>()
                .unwrap()
                .to_string(),
            "10.0.0.0/8"
        );
    }
}
