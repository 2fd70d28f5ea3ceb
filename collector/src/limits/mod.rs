//! Limits on what one request, one visitor and one client address may send: the
//! checks that keep a hostile or broken client from costing the collector more than a
//! well-behaved one.
//!
//! - [`check_json_depth`]: a pre-scan of the raw body that refuses deeply nested JSON
//!   before serde builds anything from it.
//! - [`EventLimits`]: attributes per event, name and string value lengths, and the
//!   lengths of the page fields (URL, referrer, title, keywords, search term, campaign
//!   values, language tags), as configured (never looser than the protocol's own
//!   limits, which the SDK checks before sending).
//! - [`check_request_headers`] and [`bounded_user_agent`]: the headers ingest parses.
//!   An oversized `Origin` or `X-Forwarded-For` refuses the request (400); an
//!   oversized `User-Agent` is cut to `max_user_agent_bytes` before it is parsed and
//!   stored (see the field's documentation for why it is not refused).
//! - [`RateLimits`]: events (or, for the ping endpoint, pings) per minute per visitor
//!   and per client address, with `governor`'s keyed GCRA limiters driven by the
//!   injected [`Clock`], so that tests move time instead of sleeping.
//!
//! Body size, events per batch, read timeouts, the request-head size, the caps on open
//! connections and on concurrent ingest requests are enforced in the HTTP layer
//! (`app`); what one session may accumulate (events, search terms) and the short-id
//! space are enforced by the store. All take their values from
//! [`crate::config::Config`].

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::http::{header, HeaderMap};
use footpath_protocol::v1::{AttributeValue, Event, Map, Page, CAMPAIGN_PARAMETERS};
use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::clock::Clock;
use crate::config::Config;
use crate::error::ApiError;
use crate::model::EventFieldError;

/// Why a body was refused by [`check_json_depth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    pub max_depth: usize,
}

/// Refuses JSON whose arrays and objects nest deeper than `max_depth` levels (the
/// top-level object is level 1). It counts brackets outside strings and stops at the
/// first one too deep, so a hostile body costs one pass over its bytes and no
/// allocation. Anything else that is malformed is left for the parser to report.
pub fn check_json_depth(bytes: &[u8], max_depth: usize) -> Result<(), TooDeep> {
    let mut depth = 0_usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return Err(TooDeep { max_depth });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

impl TooDeep {
    pub fn into_api_error(self) -> ApiError {
        ApiError::BadRequest(format!(
            "request body nests JSON deeper than the limit of {} levels",
            self.max_depth
        ))
    }
}

/// Longest language tag (`page.lang`, `context.browserLang`): BCP 47 tags in use are
/// far shorter.
pub const MAX_LANGUAGE_TAG_BYTES: usize = 64;

/// Longest `Origin` header ingest reads. An origin is a scheme, a host (at most 253
/// bytes) and a port.
pub const MAX_ORIGIN_BYTES: usize = 512;

/// Most bytes of all `X-Forwarded-For` headers of a request together: room for a
/// chain of dozens of proxies.
pub const MAX_FORWARDED_FOR_BYTES: usize = 1024;

/// Per-event size limits, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLimits {
    pub max_attributes_per_event: usize,
    pub max_name_bytes: usize,
    pub max_value_bytes: usize,
    /// `page.url` and `page.referrer`.
    pub max_page_url_bytes: usize,
    /// `page.title`, `page.keywords`, `page.searchQuery` and campaign values.
    pub max_page_text_bytes: usize,
}

impl EventLimits {
    pub fn from_config(config: &Config) -> EventLimits {
        EventLimits {
            max_attributes_per_event: config.max_attributes_per_event,
            max_name_bytes: config.max_name_bytes,
            max_value_bytes: config.max_value_bytes,
            max_page_url_bytes: config.max_page_url_bytes,
            max_page_text_bytes: config.max_page_text_bytes,
        }
    }

    /// Checks the event at `index` of its batch; the error names the field the way
    /// `validate` does (`events[2].attributes: has more than 50 entries`). The
    /// protocol's own checks (in `validate`) still run after this one.
    pub fn check_event(&self, index: usize, event: &Event) -> Result<(), EventFieldError> {
        let field = |name: &str, reason: String| EventFieldError::new(index, name, reason);
        if event.name.len() > self.max_name_bytes {
            let reason = format!("is longer than {} bytes", self.max_name_bytes);
            return Err(field("name", reason));
        }
        for (label, map) in [("attributes", &event.attributes), ("traits", &event.traits)] {
            self.check_map(map)
                .map_err(|(name, reason)| field(&format!("{label}{name}"), reason))?;
        }
        if let Some(login_id) = &event.login_id {
            if login_id.len() > self.max_value_bytes {
                let reason = format!("is longer than {} bytes", self.max_value_bytes);
                return Err(field("loginId", reason));
            }
        }
        if let Some(page) = &event.page {
            self.check_page(page)
                .map_err(|(name, reason)| field(&format!("page.{name}"), reason))?;
        }
        if let Some(context) = &event.context {
            if context.browser_lang.len() > MAX_LANGUAGE_TAG_BYTES {
                let reason = format!("is longer than {MAX_LANGUAGE_TAG_BYTES} bytes");
                return Err(field("context.browserLang", reason));
            }
        }
        Ok(())
    }

    /// Only lengths are compared here, so a valid page costs no allocation; the error
    /// is the field's name within `page` and the reason.
    fn check_page(&self, page: &Page) -> Result<(), (String, String)> {
        let too_long =
            |name: &str, limit: usize| (name.to_owned(), format!("is longer than {limit} bytes"));
        let urls = [("url", &page.url), ("referrer", &page.referrer)];
        for (name, value) in urls {
            if value.len() > self.max_page_url_bytes {
                return Err(too_long(name, self.max_page_url_bytes));
            }
        }
        let search_query = page.search_query.as_deref().unwrap_or("");
        let texts = [
            ("title", page.title.as_str()),
            ("keywords", page.keywords.as_str()),
            ("searchQuery", search_query),
        ];
        for (name, value) in texts {
            if value.len() > self.max_page_text_bytes {
                return Err(too_long(name, self.max_page_text_bytes));
            }
        }
        if page.lang.len() > MAX_LANGUAGE_TAG_BYTES {
            return Err(too_long("lang", MAX_LANGUAGE_TAG_BYTES));
        }
        if page.campaign.len() > CAMPAIGN_PARAMETERS.len() {
            let reason = format!("has more than {} entries", CAMPAIGN_PARAMETERS.len());
            return Err(("campaign".to_owned(), reason));
        }
        for (name, value) in page.campaign.iter() {
            if name.len() > self.max_name_bytes {
                let reason = format!("name is longer than {} bytes", self.max_name_bytes);
                return Err(("campaign".to_owned(), reason));
            }
            if value.len() > self.max_page_text_bytes {
                return Err(too_long(
                    &format!("campaign.{name}"),
                    self.max_page_text_bytes,
                ));
            }
        }
        Ok(())
    }

    fn check_map(&self, map: &Map<AttributeValue>) -> Result<(), (String, String)> {
        if map.len() > self.max_attributes_per_event {
            let reason = format!("has more than {} entries", self.max_attributes_per_event);
            return Err((String::new(), reason));
        }
        for (name, value) in map.iter() {
            if name.len() > self.max_name_bytes {
                let reason = format!("name is longer than {} bytes", self.max_name_bytes);
                return Err((String::new(), reason));
            }
            if let AttributeValue::String(text) = value {
                if text.len() > self.max_value_bytes {
                    let reason = format!("is longer than {} bytes", self.max_value_bytes);
                    return Err((format!(".{name}"), reason));
                }
            }
        }
        Ok(())
    }
}

/// `text` cut to at most `max_bytes`, at the last character boundary within them.
pub fn truncate_at_char_boundary(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The request's `User-Agent`, cut to `max_bytes` (see `Config::max_user_agent_bytes`);
/// `None` when absent or not visible ASCII/Latin-1 text that `to_str` accepts.
pub fn bounded_user_agent(headers: &HeaderMap, max_bytes: usize) -> Option<&str> {
    let user_agent = headers.get(header::USER_AGENT)?.to_str().ok()?;
    Some(truncate_at_char_boundary(user_agent, max_bytes))
}

/// Refuses (400) a request whose `Origin` is longer than [`MAX_ORIGIN_BYTES`] or given
/// more than once, or whose `X-Forwarded-For` headers together are longer than
/// [`MAX_FORWARDED_FOR_BYTES`]: both are parsed or compared, and an origin is echoed
/// in error messages. Counting lengths allocates nothing.
pub fn check_request_headers(headers: &HeaderMap) -> Result<(), ApiError> {
    let mut origins = headers.get_all(header::ORIGIN).iter();
    if let Some(origin) = origins.next() {
        if origin.len() > MAX_ORIGIN_BYTES {
            return Err(ApiError::BadRequest(format!(
                "Origin: is longer than {MAX_ORIGIN_BYTES} bytes"
            )));
        }
        if origins.next().is_some() {
            return Err(ApiError::BadRequest(
                "Origin: must be given once".to_owned(),
            ));
        }
    }
    let forwarded_for: usize = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|value| value.len())
        .sum();
    if forwarded_for > MAX_FORWARDED_FOR_BYTES {
        return Err(ApiError::BadRequest(format!(
            "X-Forwarded-For: is longer than {MAX_FORWARDED_FOR_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The injected clock as a `governor` clock: nanoseconds since the epoch. Every keyed
/// limit of the collector (events, pings, desk sign-ins) runs on it.
#[derive(Clone)]
pub(crate) struct InjectedClock(pub(crate) Arc<dyn Clock>);

impl GovernorClock for InjectedClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        let ms = u64::try_from(self.0.now_ms()).unwrap_or(0);
        Nanos::from(ms.saturating_mul(1_000_000))
    }
}

pub(crate) type KeyedLimiter<K> =
    RateLimiter<K, DefaultKeyedStateStore<K>, InjectedClock, NoOpMiddleware<Nanos>>;

/// Per-minute limits per visitor and per client address, of events or of pings. A
/// limit of 0 is off.
pub struct RateLimits {
    clock: InjectedClock,
    /// What is counted, for messages: "events" or "pings".
    unit: &'static str,
    visitor: Option<(u32, KeyedLimiter<String>)>,
    client_ip: Option<(u32, KeyedLimiter<IpAddr>)>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("unit", &self.unit)
            .field("visitor_per_minute", &self.visitor.as_ref().map(|v| v.0))
            .field(
                "client_ip_per_minute",
                &self.client_ip.as_ref().map(|v| v.0),
            )
            .finish()
    }
}

impl RateLimits {
    /// Events per minute (`visitor_rate_limit_events_per_minute`,
    /// `client_ip_rate_limit_events_per_minute`).
    pub fn new(config: &Config, clock: Arc<dyn Clock>) -> RateLimits {
        RateLimits::per_minute(
            "events",
            config.visitor_rate_limit_events_per_minute,
            config.client_ip_rate_limit_events_per_minute,
            clock,
        )
    }

    /// Pings per minute (`visitor_ping_rate_limit_per_minute`,
    /// `client_ip_ping_rate_limit_per_minute`).
    pub fn for_pings(config: &Config, clock: Arc<dyn Clock>) -> RateLimits {
        RateLimits::per_minute(
            "pings",
            config.visitor_ping_rate_limit_per_minute,
            config.client_ip_ping_rate_limit_per_minute,
            clock,
        )
    }

    fn per_minute(
        unit: &'static str,
        visitor_per_minute: u32,
        client_ip_per_minute: u32,
        clock: Arc<dyn Clock>,
    ) -> RateLimits {
        let clock = InjectedClock(clock);
        fn limiter<K: Clone + std::hash::Hash + Eq>(
            per_minute: u32,
            clock: &InjectedClock,
        ) -> Option<(u32, KeyedLimiter<K>)> {
            // A full minute's allowance may arrive at once (a burst of batches after the
            // SDK was offline), then it refills evenly.
            let rate = NonZeroU32::new(per_minute)?;
            let quota = Quota::per_minute(rate);
            let state = DefaultKeyedStateStore::default();
            Some((per_minute, RateLimiter::new(quota, state, clock.clone())))
        }
        RateLimits {
            unit,
            visitor: limiter(visitor_per_minute, &clock),
            client_ip: limiter(client_ip_per_minute, &clock),
            clock,
        }
    }

    /// Takes `events` (events or pings) from the visitor's and the address's
    /// allowance, or answers 429
    /// with the time until the request would fit.
    pub fn check(
        &self,
        visitor_id: &str,
        client_ip: Option<IpAddr>,
        events: usize,
    ) -> Result<(), ApiError> {
        let Some(events) = u32::try_from(events).ok().and_then(NonZeroU32::new) else {
            return Ok(());
        };
        // The address first: a client over its own allowance must not spend the
        // allowance of a visitor whose id it knows (and lock that visitor out).
        if let (Some((per_minute, limiter)), Some(address)) = (&self.client_ip, client_ip) {
            let key = rate_limit_key(address);
            self.take(limiter, &key, events, *per_minute, "client address")?;
        }
        if let Some((per_minute, limiter)) = &self.visitor {
            let key = visitor_id.to_owned();
            self.take(limiter, &key, events, *per_minute, "visitor")?;
        }
        Ok(())
    }

    fn take<K: Clone + std::hash::Hash + Eq>(
        &self,
        limiter: &KeyedLimiter<K>,
        key: &K,
        events: NonZeroU32,
        per_minute: u32,
        whose: &str,
    ) -> Result<(), ApiError> {
        let wait = match limiter.check_key_n(key, events) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(not_until)) => not_until.wait_time_from(self.clock.now()),
            // More events than a whole minute's allowance: never fits (the batch-size
            // limit normally makes this impossible); a minute is the honest answer.
            Err(_) => std::time::Duration::from_secs(60),
        };
        let retry_after_seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let unit = self.unit;
        Err(ApiError::RateLimited {
            message: format!(
                "the {whose} sent more than {per_minute} {unit} per minute; retry in {retry_after_seconds} s"
            ),
            retry_after_seconds: retry_after_seconds.max(1),
        })
    }

    /// Forgets keys whose allowance is full again, so that the limiters' memory
    /// follows the active visitors rather than every visitor ever seen.
    pub fn forget_idle_keys(&self) {
        if let Some((_, limiter)) = &self.visitor {
            limiter.retain_recent();
        }
        if let Some((_, limiter)) = &self.client_ip {
            limiter.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn depth_counts_brackets_outside_strings() {
        let check = |text: &str, max: usize| check_json_depth(text.as_bytes(), max).is_ok();
        assert!(check(r#"{"a":[1,{"b":2}]}"#, 3));
        assert!(!check(r#"{"a":[1,{"b":2}]}"#, 2));
        // Brackets inside strings, escaped quotes included, do not count.
        assert!(check(r#"{"a":"[[[[\"{{{{"}"#, 1));
        assert!(!check(&"[".repeat(10_000), 64));
        assert!(check("", 1));
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate_at_char_boundary("abc", 5), "abc");
        assert_eq!(truncate_at_char_boundary("abcdef", 3), "abc");
        // "é" is two bytes: cutting inside it keeps the text before it.
        assert_eq!(truncate_at_char_boundary("aé", 2), "a");
        assert_eq!(truncate_at_char_boundary("aé", 3), "aé");
        assert_eq!(truncate_at_char_boundary("é", 0), "");
    }

    #[test]
    fn page_fields_have_limits_with_field_paths() {
        let limits = EventLimits::from_config(&Config::default());
        let event = |page: Page| Event {
            id: "x".into(),
            kind: footpath_protocol::v1::EventKind::Pageview,
            name: "page_viewed".into(),
            time: 0,
            session_id: None,
            page: Some(page),
            context: None,
            login_id: None,
            attributes: Map::new(),
            traits: Map::new(),
        };
        let check = |page: Page| {
            limits
                .check_event(2, &event(page))
                .err()
                .map(|error| error.to_string())
        };
        let url = "https://a.example/".to_owned();
        assert_eq!(
            check(Page {
                url: url.clone(),
                ..Page::default()
            }),
            None
        );
        let long_url = format!("{url}{}", "a".repeat(4096));
        assert_eq!(
            check(Page {
                url: long_url.clone(),
                ..Page::default()
            })
            .as_deref(),
            Some("events[2].page.url: is longer than 4096 bytes")
        );
        assert_eq!(
            check(Page {
                url: url.clone(),
                referrer: long_url,
                ..Page::default()
            })
            .as_deref(),
            Some("events[2].page.referrer: is longer than 4096 bytes")
        );
        assert_eq!(
            check(Page {
                url: url.clone(),
                title: "t".repeat(1025),
                ..Page::default()
            })
            .as_deref(),
            Some("events[2].page.title: is longer than 1024 bytes")
        );
        assert_eq!(
            check(Page {
                url: url.clone(),
                search_query: Some("q".repeat(1025)),
                ..Page::default()
            })
            .as_deref(),
            Some("events[2].page.searchQuery: is longer than 1024 bytes")
        );
        assert_eq!(
            check(Page {
                url: url.clone(),
                lang: "x".repeat(65),
                ..Page::default()
            })
            .as_deref(),
            Some("events[2].page.lang: is longer than 64 bytes")
        );
        let mut campaign = Map::new();
        campaign.insert("utm_source".to_owned(), "s".repeat(1025));
        assert_eq!(
            check(Page {
                url,
                campaign,
                ..Page::default()
            })
            .as_deref(),
            Some("events[2].page.campaign.utm_source: is longer than 1024 bytes")
        );
    }

    #[test]
    fn oversized_origin_and_forwarded_for_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, "https://a.example".parse().unwrap());
        headers.insert("x-forwarded-for", "203.0.113.7, 10.0.0.1".parse().unwrap());
        assert!(check_request_headers(&headers).is_ok());
        headers.append("x-forwarded-for", "1".repeat(1024).parse().unwrap());
        assert!(check_request_headers(&headers).is_err());
        let mut headers = HeaderMap::new();
        let origin = format!("https://{}.example", "a".repeat(600));
        headers.insert(header::ORIGIN, origin.parse().unwrap());
        assert!(check_request_headers(&headers).is_err());
    }

    #[test]
    fn rate_limits_refill_by_the_injected_clock() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let config = Config {
            visitor_rate_limit_events_per_minute: 60,
            client_ip_rate_limit_events_per_minute: 0,
            ..Config::default()
        };
        let limits = RateLimits::new(&config, clock.clone());
        assert!(limits.check("v", None, 60).is_ok());
        match limits.check("v", None, 1) {
            Err(ApiError::RateLimited {
                retry_after_seconds,
                ..
            }) => assert_eq!(retry_after_seconds, 1),
            other => panic!("{other:?}"),
        }
        assert!(limits.check("other", None, 1).is_ok());
        clock.advance_ms(1_000);
        assert!(limits.check("v", None, 1).is_ok());
        assert!(limits.check("v", None, 1).is_err());
    }
}

/// The key a client address is limited by: an IPv4 address itself (an IPv4-mapped IPv6
/// address as its IPv4 address), an IPv6 address by its /64 network, since one host is
/// commonly given a whole /64 and could otherwise take a new address for each request.
pub fn rate_limit_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1_u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(network))
            }
        },
    }
}

#[cfg(test)]
mod rate_limit_key_tests {
    use super::rate_limit_key;
    use std::net::IpAddr;

    #[test]
    fn ipv6_is_limited_by_its_64_network() {
        let key = |text: &str| rate_limit_key(text.parse::<IpAddr>().unwrap()).to_string();
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }
}

/// Open connections per client address (see [`rate_limit_key`]), for the accept loop:
/// a place is taken when a connection is accepted and given back when it ends.
#[derive(Debug, Default)]
pub struct ConnectionsPerAddress {
    open: std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>,
}

/// One connection's place, given back when dropped.
#[must_use]
pub struct ConnectionPlace {
    connections: std::sync::Arc<ConnectionsPerAddress>,
    key: IpAddr,
}

impl ConnectionsPerAddress {
    /// A place for a connection from `address`, or `None` when the address already
    /// holds `max` connections.
    pub fn take(
        connections: &std::sync::Arc<ConnectionsPerAddress>,
        address: IpAddr,
        max: usize,
    ) -> Option<ConnectionPlace> {
        let key = rate_limit_key(address);
        let mut open = connections
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ConnectionPlace {
            connections: std::sync::Arc::clone(connections),
            key,
        })
    }
}

impl Drop for ConnectionPlace {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod connections_per_address_tests {
    use super::ConnectionsPerAddress;
    use std::net::IpAddr;
    use std::sync::Arc;

    #[test]
    fn places_are_counted_per_address_and_given_back() {
        let connections = Arc::new(ConnectionsPerAddress::default());
        let one: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::2".parse().unwrap();
        let other: IpAddr = "203.0.113.9".parse().unwrap();
        let first = ConnectionsPerAddress::take(&connections, one, 2).unwrap();
        let _second = ConnectionsPerAddress::take(&connections, same_64, 2).unwrap();
        assert!(ConnectionsPerAddress::take(&connections, one, 2).is_none());
        let _elsewhere = ConnectionsPerAddress::take(&connections, other, 2).unwrap();
        drop(first);
        assert!(ConnectionsPerAddress::take(&connections, one, 2).is_some());
    }
}
