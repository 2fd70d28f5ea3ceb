//! Server-side enrichment of incoming events: what the collector learns from the
//! request and the page rather than from the SDK.
//!
//! - [`user_agent`]: the `User-Agent` header → browser family and version, operating
//!   system, device category, type and manufacturer (uap-core rules).
//! - [`referrer`]: a referrer URL → its name and medium (search, social, email,
//!   internal, paid, unknown) and the search terms it carries (Footpath's own list,
//!   plus an operator's file when `referrer_list_path` is set).
//! - [`geo`]: the client's IP address → country, region, city and coordinates, from a
//!   MaxMind-format (GeoIP2/GeoLite2 City) database file when one is configured.
//! - [`client_ip`]: which IP address is the client's (the socket peer, or the
//!   `X-Forwarded-For` hop that trusted proxies vouch for), and IP ranges as
//!   configured for trusted proxies and per-deployment exclusions.
//!
//! Everything here is pure except reading the GeoIP file and the operator's referrer
//! list, both at startup. The batch handler computes the request-level results (user
//! agent, client IP, geolocation) once per request; the referrer, which depends on
//! each event's page, is classified per event. The results are stored with each
//! event, so that a later update of the lists or of the GeoIP file does not rewrite
//! history.
//!
//! The data files compiled in, their sources and licences are described in
//! `collector/data/README.md`.

pub mod client_ip;
pub mod geo;
pub mod referrer;
pub mod user_agent;

/// The registrable domain of a host name ("eTLD+1": `shop.example.co.uk` for
/// `www.shop.example.co.uk`), by the Public Suffix List compiled into the `psl` crate.
/// A host that has none (an IP address, `localhost`, a bare public suffix) is its own
/// domain, without a leading `www.`.
pub fn registrable_domain(host: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return host;
    }
    match psl::domain_str(&host) {
        Some(domain) => domain.to_owned(),
        None => host.strip_prefix("www.").unwrap_or(&host).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable_domains() {
        let check = |host: &str, expected: &str| {
            assert_eq!(registrable_domain(host), expected, "{host}");
        };
        check("www.example.co.uk", "example.co.uk");
        check("shop.example.co.uk", "example.co.uk");
        check("a.b.example.com", "example.com");
        check("example.com", "example.com");
        check("www.shop.example", "shop.example");
        check("WWW.Example.COM.", "example.com");
        check("user.github.io", "user.github.io");
        check("mail.google.com", "google.com");
        check("203.0.113.7", "203.0.113.7");
        check("localhost", "localhost");
        check("co.uk", "co.uk");
    }
}
