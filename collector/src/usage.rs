//! Usage per deployment and UTC day: events accepted by kind, events refused by
//! reason, new, total and identified sessions. The SQL is `store/usage_sql.rs`, the
//! route `app/usage.rs`, the job `app/housekeeping.rs`.
//!
//! How each figure is kept, and what could be lost:
//!
//! - Accepted events and sessions are derived from the stored rows by a job that
//!   summarises each UTC day, once it is over, into `usage_counts` (by the time the
//!   collector *received* the events, so that a late event counts on the day it came
//!   in, and a summarised day never changes). Exact: retention deletes no session
//!   with an event of a day not summarised yet, and an erase keeps each event's kind
//!   and each session's link kind (without the contact). A session counts as *total*
//!   on each day it received an event, as *new* on the day of its first, and as
//!   *identified* on each of those days when it is linked to a contact (or was,
//!   before an erase) at the time the day is summarised.
//! - Refused events are no rows: they are counted in memory ([`RefusalTally`]) and
//!   added to `usage_counts` every housekeeping run (a minute) and at shutdown. A
//!   crash loses at most the refusals of the last minute. Refusals are attributed to
//!   a deployment once the request has named a configured one; requests refused
//!   before that (unreadable, too large, no such deployment) are only in `/metrics`.
//!   After that point every refusal of an SDK batch counts for its deployment: IP
//!   exclusion, Global Privacy Control, a disallowed origin, an invalid visitor id or
//!   too many events, the rate limit, an overloaded or failed writer, and each
//!   rejected event.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use time::macros::format_description;
use time::Date;

use crate::metrics::{RefusalCounts, RefusalReason};
use crate::privacy::MILLISECONDS_PER_DAY;
use crate::store::StoreError;

/// Days since the Unix epoch, in UTC.
pub type Day = i64;

/// The longest range the usage endpoint serves, in days (both ends included).
pub const MAX_RANGE_DAYS: i64 = 366;

/// The UTC day of an instant.
pub fn utc_day(ms: i64) -> Day {
    ms.div_euclid(MILLISECONDS_PER_DAY)
}

/// `YYYY-MM-DD`.
pub fn format_day(day: Day) -> String {
    let date = Date::from_julian_day(
        i32::try_from(day + i64::from(EPOCH_JULIAN_DAY)).unwrap_or(EPOCH_JULIAN_DAY),
    )
    .unwrap_or(Date::MIN);
    date.format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

/// Parses `YYYY-MM-DD` (a real calendar date).
pub fn parse_day(text: &str) -> Option<Day> {
    if text.len() != 10 {
        return None;
    }
    let date = Date::parse(text, format_description!("[year]-[month]-[day]")).ok()?;
    Some(i64::from(date.to_julian_day() - EPOCH_JULIAN_DAY))
}

/// 1970-01-01.
const EPOCH_JULIAN_DAY: i32 = 2_440_588;

/// The range of days a usage request asks for, both ends included: `from` and `to`
/// as `YYYY-MM-DD`; `to` defaults to today and `from` to 30 days before `to`.
pub fn parse_range(from: Option<&str>, to: Option<&str>, today: Day) -> Result<(Day, Day), String> {
    let to_day = match to {
        Some(text) => {
            parse_day(text).ok_or_else(|| format!("to: must be a date YYYY-MM-DD, not {text:?}"))?
        }
        None => today,
    };
    let from_day = match from {
        Some(text) => parse_day(text)
            .ok_or_else(|| format!("from: must be a date YYYY-MM-DD, not {text:?}"))?,
        None => to_day - 29,
    };
    if from_day > to_day {
        return Err("from: must not be after to".to_owned());
    }
    if to_day - from_day + 1 > MAX_RANGE_DAYS {
        return Err(format!("from, to: at most {MAX_RANGE_DAYS} days at once"));
    }
    Ok((from_day, to_day))
}

/// The names of the figures in `usage_counts.metric`.
pub mod metric {
    /// Followed by the event's kind as stored (`pageview`, `record`, `identify`,
    /// `logout`).
    pub const ACCEPTED_PREFIX: &str = "accepted.";
    /// Followed by a [`crate::metrics::RefusalReason`]'s label.
    pub const REFUSED_PREFIX: &str = "refused.";
    pub const NEW_SESSIONS: &str = "sessions.new";
    pub const TOTAL_SESSIONS: &str = "sessions.total";
    pub const IDENTIFIED_SESSIONS: &str = "sessions.identified";
}

/// One figure of one deployment's day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCount {
    pub deployment_id: String,
    pub day: Day,
    pub metric: String,
    pub count: u64,
}

/// One deployment's day as served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageDay {
    pub events_accepted: BTreeMap<String, u64>,
    pub events_refused: BTreeMap<String, u64>,
    pub new_sessions: u64,
    pub total_sessions: u64,
    pub identified_sessions: u64,
}

/// Groups stored figures by (deployment, day).
pub fn usage_days(counts: &[UsageCount]) -> BTreeMap<(String, Day), UsageDay> {
    let mut days: BTreeMap<(String, Day), UsageDay> = BTreeMap::new();
    for count in counts {
        let day = days
            .entry((count.deployment_id.clone(), count.day))
            .or_default();
        if let Some(kind) = count.metric.strip_prefix(metric::ACCEPTED_PREFIX) {
            *day.events_accepted.entry(kind.to_owned()).or_default() += count.count;
        } else if let Some(reason) = count.metric.strip_prefix(metric::REFUSED_PREFIX) {
            *day.events_refused.entry(reason.to_owned()).or_default() += count.count;
        } else {
            match count.metric.as_str() {
                metric::NEW_SESSIONS => day.new_sessions += count.count,
                metric::TOTAL_SESSIONS => day.total_sessions += count.count,
                metric::IDENTIFIED_SESSIONS => day.identified_sessions += count.count,
                // A figure a later version added: not served by this one.
                _ => {}
            }
        }
    }
    days
}

/// Storage of usage figures: part of every [`crate::store::Store`].
pub trait UsageStore {
    /// Summarises every UTC day before `today` that is not summarised yet, from the
    /// stored events and sessions, and returns how many days it summarised. Reads
    /// from a snapshot, then writes the figures in one short transaction.
    fn summarise_usage(&self, today: Day) -> Result<u64, StoreError>;

    /// The first day that is not summarised yet (`None`: none was ever).
    fn usage_summarised_until(&self) -> Result<Option<Day>, StoreError>;

    /// Adds to the stored figures (refusals counted in memory).
    fn add_usage_counts(&self, counts: &[UsageCount]) -> Result<(), StoreError>;

    /// The figures of `from..=to`, of one deployment or all.
    fn usage_counts(
        &self,
        deployment_id: Option<&str>,
        from: Day,
        to: Day,
    ) -> Result<Vec<UsageCount>, StoreError>;
}

/// Refused events per deployment, day and reason, since the last flush.
#[derive(Debug, Default)]
pub struct RefusalTally {
    counts: Mutex<HashMap<(String, Day, RefusalReason), u64>>,
}

impl RefusalTally {
    /// Counts `events` refused for `reason` at `now_ms`. Deployment ids come from the
    /// configuration, never from a request that named no configured deployment, so
    /// the map stays small.
    pub fn add(&self, deployment_id: &str, now_ms: i64, reason: RefusalReason, events: u64) {
        if events == 0 {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts
            .entry((deployment_id.to_owned(), utc_day(now_ms), reason))
            .or_default() += events;
    }

    /// Counts every reason of `refused`.
    pub fn add_all(&self, deployment_id: &str, now_ms: i64, refused: &RefusalCounts) {
        for reason in RefusalReason::ALL {
            self.add(deployment_id, now_ms, reason, refused.get(reason));
        }
    }

    /// Takes what was counted, as figures to add to the store.
    pub fn take(&self) -> Vec<UsageCount> {
        let counts =
            std::mem::take(&mut *self.counts.lock().unwrap_or_else(PoisonError::into_inner));
        let mut taken: Vec<UsageCount> = counts
            .into_iter()
            .map(|((deployment_id, day, reason), count)| UsageCount {
                deployment_id,
                day,
                metric: format!("{}{}", metric::REFUSED_PREFIX, reason.as_str()),
                count,
            })
            .collect();
        taken.sort_by(|a, b| {
            (&a.deployment_id, a.day, &a.metric).cmp(&(&b.deployment_id, b.day, &b.metric))
        });
        taken
    }

    /// Puts back figures that could not be stored, for the next flush.
    pub fn restore(&self, counts: &[UsageCount]) {
        for count in counts {
            let Some(reason) = count
                .metric
                .strip_prefix(metric::REFUSED_PREFIX)
                .and_then(|label| RefusalReason::ALL.into_iter().find(|r| r.as_str() == label))
            else {
                continue;
            };
            let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
            *counts
                .entry((count.deployment_id.clone(), count.day, reason))
                .or_default() += count.count;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_format_and_parse() {
        let table: &[(i64, Day, &str)] = &[
            (0, 0, "1970-01-01"),
            (1_795_500_914_123, 20_781, "2026-11-24"),
            (MILLISECONDS_PER_DAY - 1, 0, "1970-01-01"),
            (-1, -1, "1969-12-31"),
            (951_782_400_000, 11_016, "2000-02-29"),
        ];
        for &(ms, day, text) in table {
            assert_eq!(utc_day(ms), day, "{ms}");
            assert_eq!(format_day(day), text, "{day}");
            assert_eq!(parse_day(text), Some(day), "{text}");
        }
        for bad in [
            "2026-02-30",
            "2026-1-01",
            "26-01-01",
            "2026-01-01T00:00",
            "",
            "yesterday",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges() {
        let today = parse_day("2026-11-24").unwrap();
        let day = |text: &str| parse_day(text).unwrap();
        // (from, to, the range or the error).
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Result<(&'a str, &'a str), &'a str>,
        );
        let table: &[Case] = &[
            (None, None, Ok(("2026-10-26", "2026-11-24"))),
            (Some("2026-11-01"), None, Ok(("2026-11-01", "2026-11-24"))),
            (None, Some("2026-01-31"), Ok(("2026-01-02", "2026-01-31"))),
            (
                Some("2026-11-24"),
                Some("2026-11-24"),
                Ok(("2026-11-24", "2026-11-24")),
            ),
            (
                Some("2025-11-24"),
                Some("2026-11-24"),
                Ok(("2025-11-24", "2026-11-24")),
            ),
            (
                Some("2025-11-23"),
                Some("2026-11-24"),
                Err("from, to: at most 366 days at once"),
            ),
            (
                Some("2026-11-25"),
                Some("2026-11-24"),
                Err("from: must not be after to"),
            ),
            (
                Some("2026-13-01"),
                None,
                Err("from: must be a date YYYY-MM-DD, not \"2026-13-01\""),
            ),
            (
                None,
                Some("now"),
                Err("to: must be a date YYYY-MM-DD, not \"now\""),
            ),
        ];
        for (from, to, expected) in table {
            let expected = expected
                .map(|(from, to)| (day(from), day(to)))
                .map_err(str::to_owned);
            assert_eq!(parse_range(*from, *to, today), expected, "{from:?} {to:?}");
        }
    }

    #[test]
    fn figures_group_by_deployment_and_day() {
        let count = |deployment: &str, day: Day, metric: &str, count: u64| UsageCount {
            deployment_id: deployment.to_owned(),
            day,
            metric: metric.to_owned(),
            count,
        };
        let days = usage_days(&[
            count("shop", 1, "accepted.pageview", 3),
            count("shop", 1, "accepted.record", 1),
            count("shop", 1, "refused.rate_limited", 2),
            count("shop", 1, "sessions.new", 1),
            count("shop", 1, "sessions.total", 2),
            count("shop", 1, "sessions.identified", 1),
            count("shop", 1, "sessions.someday", 9),
            count("blog", 2, "accepted.pageview", 5),
        ]);
        assert_eq!(days.len(), 2);
        let shop = &days[&("shop".to_owned(), 1)];
        assert_eq!(shop.events_accepted["pageview"], 3);
        assert_eq!(shop.events_accepted["record"], 1);
        assert_eq!(shop.events_refused["rate_limited"], 2);
        assert_eq!(
            (
                shop.new_sessions,
                shop.total_sessions,
                shop.identified_sessions
            ),
            (1, 2, 1)
        );
        assert_eq!(days[&("blog".to_owned(), 2)].events_accepted["pageview"], 5);
    }

    #[test]
    fn the_tally_counts_by_deployment_day_and_reason_and_can_be_restored() {
        let tally = RefusalTally::default();
        tally.add("shop", 10, RefusalReason::RateLimited, 2);
        tally.add("shop", 20, RefusalReason::RateLimited, 3);
        tally.add("shop", MILLISECONDS_PER_DAY, RefusalReason::RateLimited, 1);
        tally.add("blog", 10, RefusalReason::Invalid, 0);
        let taken = tally.take();
        let summary: Vec<(&str, Day, &str, u64)> = taken
            .iter()
            .map(|c| (c.deployment_id.as_str(), c.day, c.metric.as_str(), c.count))
            .collect();
        assert_eq!(
            summary,
            [
                ("shop", 0, "refused.rate_limited", 5),
                ("shop", 1, "refused.rate_limited", 1)
            ]
        );
        assert!(tally.take().is_empty());
        tally.restore(&taken);
        tally.add("shop", 10, RefusalReason::RateLimited, 1);
        assert_eq!(tally.take()[0].count, 6);
    }
}
