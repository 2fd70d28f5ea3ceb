//! What keeps sign-in and sign-out to the desk's own page and to a human's pace.
//!
//! - [`check_same_origin`]: sign-in and sign-out refuse requests that another site
//!   made the agent's browser send (403). `Sec-Fetch-Site` must be `same-origin` or
//!   `none` (typed or bookmarked) when the browser sends it; `same-site` is refused
//!   too, since a sibling subdomain may be a different party. When an `Origin` header
//!   is present it must be the desk's own origin: `[desk] public_origin` when
//!   configured, otherwise rebuilt from the request (`Host` and `http`, or, only when
//!   the socket peer is one of `trusted_proxies`, `X-Forwarded-Host` and
//!   `X-Forwarded-Proto`). Requests with neither header (command-line clients) pass:
//!   browsers always send one of them on a cross-site form post, and the session
//!   cookie is `SameSite=Strict` besides.
//! - [`SignInLimiter`]: sign-in attempts per client address (after trusted proxies),
//!   a keyed `governor` limiter on the injected clock. Every attempt counts, right
//!   token or wrong, and a limited address is refused before its token is looked at,
//!   so that the answer never tells whether a guess was right.
//! - [`UnknownCookieLimiter`]: session cookies that name no sign-in, per client
//!   address, at the same rate. A session id has 256 random bits, so guessing one is
//!   hopeless at any rate; what this bounds is the store reads a stream of made-up
//!   cookies would cost (the sign-in cache holds found sign-ins only).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::extract::ConnectInfo;
use axum::http::{header, Extensions, HeaderMap};
use governor::clock::Clock as GovernorClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::clock::Clock;
use crate::enrich::client_ip::{client_ip, in_any, IpRange};
use crate::error::ApiError;
use crate::limits::{InjectedClock, KeyedLimiter};

/// The socket peer of a request, as `app::serve` records it in its extensions.
pub fn socket_peer(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
}

/// The client's address by the rules of `enrich::client_ip`.
pub fn client_address(
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    trusted_proxies: &[IpRange],
) -> Option<IpAddr> {
    let forwarded_for: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    client_ip(peer, &forwarded_for, trusted_proxies)
}

/// Refuses a request that a browser sent on another site's behalf; `action` names
/// what was refused in the message ("sign-in", "sign-out").
pub fn check_same_origin(
    action: &str,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    trusted_proxies: &[IpRange],
    public_origin: Option<&url::Origin>,
) -> Result<(), ApiError> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if !matches!(site, "same-origin" | "none") {
            return Err(ApiError::OriginNotAllowed(format!(
                "{action} refused: the browser says the request came from another site \
                 (Sec-Fetch-Site: {site}); {action} works only from the desk's own pages"
            )));
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin_text = origin.to_str().unwrap_or("");
    let presented = url::Url::parse(origin_text).ok().map(|url| url.origin());
    let own = match public_origin {
        Some(configured) => Some(configured.clone()),
        None => own_origin(headers, peer, trusted_proxies),
    };
    let Some(own) = own else {
        return Err(ApiError::OriginNotAllowed(format!(
            "{action} refused: the collector cannot tell its own origin (no Host header) \
             to compare with Origin: {origin_text}; set [desk] public_origin"
        )));
    };
    match presented {
        Some(presented) if presented.is_tuple() && presented == own => Ok(()),
        _ => Err(ApiError::OriginNotAllowed(format!(
            "{action} refused: Origin {origin_text} is not the desk's own origin {}; \
             {action} works only from the desk's own pages",
            own.ascii_serialization()
        ))),
    }
}

/// The collector's origin as the browser sees it, rebuilt from the request.
fn own_origin(
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    trusted_proxies: &[IpRange],
) -> Option<url::Origin> {
    let first_value = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    let behind_trusted_proxy = peer.is_some_and(|peer| in_any(trusted_proxies, peer));
    let (scheme, forwarded_host) = if behind_trusted_proxy {
        let scheme = first_value("x-forwarded-proto")
            .map(str::to_ascii_lowercase)
            .filter(|scheme| scheme == "https" || scheme == "http")
            .unwrap_or_else(|| "http".to_owned());
        (scheme, first_value("x-forwarded-host"))
    } else {
        ("http".to_owned(), None)
    };
    let host = forwarded_host.or_else(|| first_value(header::HOST.as_str()))?;
    // A host with a path, credentials or a query is not a host: the parsed URL would
    // not be `scheme://host/`.
    let url = url::Url::parse(&format!("{scheme}://{host}/")).ok()?;
    (url.path() == "/" && url.username().is_empty() && url.query().is_none()).then(|| url.origin())
}

/// Sign-in attempts per client address (`[desk] sign_in_attempts_per_minute`).
pub struct SignInLimiter {
    clock: InjectedClock,
    /// `None` when the limit is 0 (off).
    limiter: Option<(u32, KeyedLimiter<IpAddr>)>,
}

impl SignInLimiter {
    pub fn new(per_minute: u32, clock: Arc<dyn Clock>) -> SignInLimiter {
        let clock = InjectedClock(clock);
        let limiter = NonZeroU32::new(per_minute).map(|rate| {
            let limiter = RateLimiter::new(
                Quota::per_minute(rate),
                DefaultKeyedStateStore::default(),
                clock.clone(),
            );
            (per_minute, limiter)
        });
        SignInLimiter { clock, limiter }
    }

    /// Counts one attempt from `address`, or answers 429 with the time until the next
    /// one is allowed. Requests whose address is unknown (no socket peer, as in tests
    /// that call the router directly) share one allowance rather than none.
    pub fn take(&self, address: Option<IpAddr>) -> Result<(), ApiError> {
        let Some((per_minute, limiter)) = &self.limiter else {
            return Ok(());
        };
        let key = address_key(address);
        let Err(not_until) = limiter.check_key(&key) else {
            return Ok(());
        };
        let wait = not_until.wait_time_from(self.clock.now());
        let retry_after_seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        // The address is a person's: only at debug level.
        tracing::debug!(client = %key, "desk sign-in rate limited (address)");
        tracing::warn!("desk sign-in rate limited");
        Err(ApiError::RateLimited {
            message: format!(
                "too many sign-in attempts from this address (the limit is {per_minute} per \
                 minute); try again in {retry_after_seconds} s"
            ),
            retry_after_seconds,
        })
    }

    /// Forgets addresses whose allowance is full again, so that memory follows the
    /// addresses that are signing in now.
    pub fn forget_idle_addresses(&self) {
        if let Some((_, limiter)) = &self.limiter {
            limiter.retain_recent();
        }
    }
}

/// The key of a client address in the limiters: its /64 for IPv6; requests whose
/// address is unknown (no socket peer, as in tests that call the router directly)
/// share one key rather than none.
fn address_key(address: Option<IpAddr>) -> IpAddr {
    address.map_or(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        crate::limits::rate_limit_key,
    )
}

/// Desk session cookies that named no stored sign-in, per client address
/// (`[desk] sign_in_attempts_per_minute`, the same allowance as sign-in attempts, kept
/// apart from them so that a stale cookie never stops an agent signing in). An address
/// past its allowance has its cookies that the sign-in cache does not hold taken as no
/// cookie, without reading the store, until the allowance has refilled by one.
pub struct UnknownCookieLimiter {
    clock: InjectedClock,
    /// `None` when the limit is 0 (off).
    limiter: Option<KeyedLimiter<IpAddr>>,
    /// Addresses past their allowance, until when (ms, by the injected clock).
    refused_until_ms: Mutex<HashMap<IpAddr, i64>>,
}

impl UnknownCookieLimiter {
    pub fn new(per_minute: u32, clock: Arc<dyn Clock>) -> UnknownCookieLimiter {
        let clock = InjectedClock(clock);
        let limiter = NonZeroU32::new(per_minute).map(|rate| {
            RateLimiter::new(
                Quota::per_minute(rate),
                DefaultKeyedStateStore::default(),
                clock.clone(),
            )
        });
        UnknownCookieLimiter {
            clock,
            limiter,
            refused_until_ms: Mutex::new(HashMap::new()),
        }
    }

    fn refused(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, i64>> {
        // Every update is one insert or retain: a panic leaves a consistent map.
        self.refused_until_ms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a cookie from `address` may be looked up in the store.
    pub fn may_look_up(&self, address: Option<IpAddr>) -> bool {
        let now_ms = self.clock.0.now_ms();
        self.refused()
            .get(&address_key(address))
            .is_none_or(|until_ms| *until_ms <= now_ms)
    }

    /// Counts a cookie from `address` that named no sign-in.
    pub fn found_nothing(&self, address: Option<IpAddr>) {
        let Some(limiter) = &self.limiter else {
            return;
        };
        let key = address_key(address);
        if let Err(not_until) = limiter.check_key(&key) {
            let wait = not_until.wait_time_from(self.clock.now());
            let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX).max(1);
            let until_ms = self.clock.0.now_ms().saturating_add(wait_ms);
            self.refused().insert(key, until_ms);
            // The address is a person's: only at debug level.
            tracing::debug!(client = %key, "unknown desk session cookies limited (address)");
            tracing::warn!("unknown desk session cookies limited");
        }
    }

    /// Forgets addresses whose allowance is full again.
    pub fn forget_idle_addresses(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
        }
        let now_ms = self.clock.0.now_ms();
        self.refused().retain(|_, until_ms| *until_ms > now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn same_origin_rules() {
        let proxies: Vec<IpRange> = vec!["10.0.0.0/8".parse().unwrap()];
        let direct: IpAddr = "198.51.100.9".parse().unwrap();
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let configured = crate::desk::config::public_origin("https://desk.example").unwrap();
        // (headers, socket peer, configured origin, allowed)
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let table: &[(Headers, IpAddr, bool, bool)] = &[
            // A command-line client: neither header.
            (&[("host", "c.example:8700")], direct, false, true),
            (&[("sec-fetch-site", "same-origin")], direct, false, true),
            (&[("sec-fetch-site", "none")], direct, false, true),
            (&[("sec-fetch-site", "cross-site")], direct, false, false),
            (&[("sec-fetch-site", "same-site")], direct, false, false),
            (&[("sec-fetch-site", "SAME-ORIGIN")], direct, false, false),
            // Origin against Host, with http.
            (
                &[
                    ("host", "c.example:8700"),
                    ("origin", "http://c.example:8700"),
                ],
                direct,
                false,
                true,
            ),
            (
                &[
                    ("host", "C.Example:8700"),
                    ("origin", "http://c.example:8700"),
                ],
                direct,
                false,
                true,
            ),
            (
                &[("host", "c.example"), ("origin", "http://c.example:80")],
                direct,
                false,
                true,
            ),
            (
                &[
                    ("host", "c.example:8700"),
                    ("origin", "http://evil.example"),
                ],
                direct,
                false,
                false,
            ),
            (
                &[
                    ("host", "c.example:8700"),
                    ("origin", "https://c.example:8700"),
                ],
                direct,
                false,
                false,
            ),
            (
                &[("host", "c.example:8700"), ("origin", "null")],
                direct,
                false,
                false,
            ),
            (&[("origin", "http://c.example:8700")], direct, false, false),
            // Forwarded headers count only from a trusted proxy.
            (
                &[
                    ("host", "10.0.0.2:8700"),
                    ("x-forwarded-host", "desk.example"),
                    ("x-forwarded-proto", "https"),
                    ("origin", "https://desk.example"),
                ],
                proxy,
                false,
                true,
            ),
            (
                &[
                    ("host", "10.0.0.2:8700"),
                    ("x-forwarded-host", "desk.example"),
                    ("x-forwarded-proto", "https"),
                    ("origin", "https://desk.example"),
                ],
                direct,
                false,
                false,
            ),
            // A configured origin is the only one.
            (
                &[
                    ("host", "10.0.0.2:8700"),
                    ("origin", "https://desk.example"),
                ],
                direct,
                true,
                true,
            ),
            (
                &[
                    ("host", "10.0.0.2:8700"),
                    ("origin", "http://10.0.0.2:8700"),
                ],
                direct,
                true,
                false,
            ),
        ];
        for (pairs, peer, use_configured, allowed) in table {
            let result = check_same_origin(
                "sign-in",
                &headers(pairs),
                Some(*peer),
                &proxies,
                use_configured.then_some(&configured),
            );
            assert_eq!(
                result.is_ok(),
                *allowed,
                "{pairs:?} from {peer}: {result:?}"
            );
            if let Err(error) = result {
                assert_eq!(error.status(), axum::http::StatusCode::FORBIDDEN);
                assert!(
                    error.to_string().starts_with("sign-in refused: "),
                    "{error}"
                );
            }
        }
    }

    #[test]
    fn attempts_are_limited_per_address_by_the_injected_clock() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let limiter = SignInLimiter::new(6, clock.clone());
        let one: IpAddr = "203.0.113.1".parse().unwrap();
        let two: IpAddr = "203.0.113.2".parse().unwrap();
        for _ in 0..6 {
            assert!(limiter.take(Some(one)).is_ok());
        }
        match limiter.take(Some(one)) {
            Err(ApiError::RateLimited {
                retry_after_seconds,
                message,
            }) => {
                assert_eq!(retry_after_seconds, 10, "one attempt per 10 s refills");
                assert!(message.contains("6 per minute"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            limiter.take(Some(two)).is_ok(),
            "another address is not limited"
        );
        clock.advance_ms(10_000);
        assert!(limiter.take(Some(one)).is_ok());
        assert!(limiter.take(Some(one)).is_err());
        assert!(SignInLimiter::new(0, clock).take(Some(one)).is_ok());
    }

    #[test]
    fn unknown_cookies_stop_lookups_per_address_until_the_allowance_refills() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let limiter = UnknownCookieLimiter::new(6, clock.clone());
        let one: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::2".parse().unwrap();
        let two: IpAddr = "203.0.113.2".parse().unwrap();
        for _ in 0..6 {
            assert!(limiter.may_look_up(Some(one)));
            limiter.found_nothing(Some(one));
        }
        assert!(limiter.may_look_up(Some(one)), "the allowance is 6");
        limiter.found_nothing(Some(one));
        assert!(!limiter.may_look_up(Some(one)));
        assert!(
            !limiter.may_look_up(Some(same_64)),
            "an IPv6 client by its /64"
        );
        assert!(limiter.may_look_up(Some(two)), "another address");
        // One more every 10 s.
        clock.advance_ms(9_999);
        assert!(!limiter.may_look_up(Some(one)));
        clock.advance_ms(1);
        assert!(limiter.may_look_up(Some(one)));
        limiter.found_nothing(Some(one));
        limiter.found_nothing(Some(one));
        assert!(!limiter.may_look_up(Some(one)));
        limiter.forget_idle_addresses();
        assert!(!limiter.may_look_up(Some(one)), "still refused");
        // 0: no limit.
        let off = UnknownCookieLimiter::new(0, clock);
        for _ in 0..100 {
            off.found_nothing(Some(one));
        }
        assert!(off.may_look_up(Some(one)));
    }
}
