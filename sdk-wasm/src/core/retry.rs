//! How long to wait before sending again after a failed send.
//!
//! The send queue lives in `host.js`; it asks the module how long to wait after a
//! network error, a 5xx or a 429 (see `WAKE_RETRY` in `web/mod.rs`), so that this rule
//! is tested here without a browser.

/// The longest wait the backoff alone reaches.
pub const MAX_BACKOFF_MS: u32 = 60_000;
/// The longest `Retry-After` obeyed: a misconfigured server must not silence the SDK
/// for the rest of the visit.
pub const MAX_RETRY_AFTER_MS: u32 = 600_000;

/// The wait before the next attempt after `failures` sends in a row failed (1 after the
/// first). The ceiling doubles from 2 s to 60 s, and the wait is a random point in its
/// upper half ("equal jitter", from `random`), so that many pages that lost the
/// collector at the same moment do not come back at the same moment. A server's
/// `Retry-After` (seconds) is honoured as a minimum, never as a replacement: `0` must
/// not turn the retries into a hot loop.
pub fn retry_delay_ms(failures: u32, retry_after_seconds: Option<u32>, random: u32) -> u32 {
    let ceiling = (1_000u32 << failures.clamp(1, 6)).min(MAX_BACKOFF_MS);
    let backoff = ceiling / 2 + random % (ceiling / 2 + 1);
    let asked = retry_after_seconds.map_or(0, |seconds| {
        seconds.saturating_mul(1_000).min(MAX_RETRY_AFTER_MS)
    });
    backoff.max(asked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_up_to_a_minute_and_jitter_stays_in_its_upper_half() {
        let ceilings = [2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000];
        for (i, ceiling) in ceilings.into_iter().enumerate() {
            let failures = i as u32 + 1;
            assert_eq!(
                retry_delay_ms(failures, None, 0),
                ceiling / 2,
                "failures {failures}"
            );
            assert_eq!(
                retry_delay_ms(failures, None, ceiling / 2),
                ceiling,
                "failures {failures}"
            );
            for random in [1, 777, 123_456_789, u32::MAX] {
                let delay = retry_delay_ms(failures, None, random);
                assert!(
                    (ceiling / 2..=ceiling).contains(&delay),
                    "failures {failures}: {delay}"
                );
            }
        }
        assert_eq!(
            retry_delay_ms(u32::MAX, None, u32::MAX),
            retry_delay_ms(6, None, u32::MAX)
        );
        assert_eq!(
            retry_delay_ms(0, None, 0),
            1_000,
            "0 failures counts as the first"
        );
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let delays: std::collections::BTreeSet<u32> = (0..50u32)
            .map(|r| retry_delay_ms(3, None, r * 97))
            .collect();
        assert!(delays.len() > 40, "{delays:?}");
    }

    #[test]
    fn retry_after_is_a_floor_not_a_replacement() {
        // `Retry-After: 0` keeps the backoff: no hot loop.
        assert_eq!(retry_delay_ms(1, Some(0), 0), 1_000);
        assert_eq!(retry_delay_ms(4, Some(0), 0), 8_000);
        // A longer wait asked by the server is obeyed.
        assert_eq!(retry_delay_ms(1, Some(30), 0), 30_000);
        assert_eq!(retry_delay_ms(1, Some(120), 0), 120_000);
        // Up to ten minutes, however much is asked.
        assert_eq!(retry_delay_ms(1, Some(86_400), 0), MAX_RETRY_AFTER_MS);
        assert_eq!(retry_delay_ms(1, Some(u32::MAX), 0), MAX_RETRY_AFTER_MS);
        // A shorter wait than the backoff's does not shorten it.
        assert_eq!(retry_delay_ms(6, Some(5), 0), 30_000);
    }
}
