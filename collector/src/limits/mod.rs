//! Limits on what one request, one visitor and one client address may send: the
//! checks that keep a hostile or broken client from costing the collector more than a
//! well-behaved one.
//!
//! - [`check_json_depth`]: a pre-scan of the raw body that refuses deeply nested JSON
//!   before serde builds anything from it.
//! - [`EventLimits`]: attributes per event, name and string value lengths, as
//!   configured (never looser than the protocol's own limits, which the SDK checks
//!   before sending).
//! - [`RateLimits`]: events per minute per visitor and per client address, with
//!   `governor`'s keyed GCRA limiters driven by the injected [`Clock`], so that tests
//!   move time instead of sleeping.
//!
//! Body size, events per batch, read timeouts and the cap on concurrent requests are
//! enforced in the HTTP layer (`app`), with the values of [`crate::config::Config`].

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use footpath_protocol::v1::{AttributeValue, Event, Map};
use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::clock::Clock;
use crate::config::Config;
use crate::error::ApiError;

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

/// Per-event size limits, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLimits {
    pub max_attributes_per_event: usize,
    pub max_name_bytes: usize,
    pub max_value_bytes: usize,
}

impl EventLimits {
    pub fn from_config(config: &Config) -> EventLimits {
        EventLimits {
            max_attributes_per_event: config.max_attributes_per_event,
            max_name_bytes: config.max_name_bytes,
            max_value_bytes: config.max_value_bytes,
        }
    }

    /// Checks the event at `index` of its batch; the error names the field the way
    /// `validate` does (`events[2].attributes: has more than 50 entries`). The
    /// protocol's own checks (in `validate`) still run after this one.
    pub fn check_event(&self, index: usize, event: &Event) -> Result<(), String> {
        let field = |name: &str, reason: String| format!("events[{index}].{name}: {reason}");
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

/// The injected clock as a `governor` clock: nanoseconds since the epoch.
#[derive(Clone)]
struct InjectedClock(Arc<dyn Clock>);

impl GovernorClock for InjectedClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        let ms = u64::try_from(self.0.now_ms()).unwrap_or(0);
        Nanos::from(ms.saturating_mul(1_000_000))
    }
}

type KeyedLimiter<K> =
    RateLimiter<K, DefaultKeyedStateStore<K>, InjectedClock, NoOpMiddleware<Nanos>>;

/// Events-per-minute limits per visitor and per client address. A limit of 0 is off.
pub struct RateLimits {
    clock: InjectedClock,
    visitor: Option<(u32, KeyedLimiter<String>)>,
    client_ip: Option<(u32, KeyedLimiter<IpAddr>)>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field(
                "visitor_events_per_minute",
                &self.visitor.as_ref().map(|v| v.0),
            )
            .field(
                "client_ip_events_per_minute",
                &self.client_ip.as_ref().map(|v| v.0),
            )
            .finish()
    }
}

impl RateLimits {
    pub fn new(config: &Config, clock: Arc<dyn Clock>) -> RateLimits {
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
            visitor: limiter(config.visitor_rate_limit_events_per_minute, &clock),
            client_ip: limiter(config.client_ip_rate_limit_events_per_minute, &clock),
            clock,
        }
    }

    /// Takes `events` from the visitor's and the address's allowance, or answers 429
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
        if let Some((per_minute, limiter)) = &self.visitor {
            let key = visitor_id.to_owned();
            self.take(limiter, &key, events, *per_minute, "visitor")?;
        }
        if let (Some((per_minute, limiter)), Some(address)) = (&self.client_ip, client_ip) {
            self.take(limiter, &address, events, *per_minute, "client address")?;
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
        Err(ApiError::RateLimited {
            message: format!(
                "the {whose} sent more than {per_minute} events per minute; retry in {retry_after_seconds} s"
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
