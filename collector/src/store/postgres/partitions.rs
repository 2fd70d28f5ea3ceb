//! The events table's monthly partitions (declarative RANGE partitioning on
//! `time_ms`), made ahead of time so that retention can drop a month with one
//! `DROP TABLE` instead of deleting rows (`privacy.rs` decides when it may).
//!
//! Partitions are made outside ingest transactions (when the store opens, and by every
//! idle sweep), months ahead of need. Creating one takes the parent table's strongest
//! lock: it waits for the transactions using `events` and holds new ones back for the
//! few milliseconds of the DDL, so it gives up after [`LOCK_TIMEOUT`] rather than
//! stall ingest behind a long read, and the next sweep tries again. Events whose month
//! has no partition (far in the past or the future) go to `events_default`; a month is
//! only ever made ahead of now, or when the store first opens, so the default never
//! holds rows of a month made later.

use time::{Date, Month, OffsetDateTime, Time};

use super::connection::{LockSpace, PgConnection, Tx};
use crate::model::StoreError;

/// Months made before the current one when the store first opens (late events of the
/// last month land in their own partition).
const MONTHS_BEFORE: i32 = 1;
/// Months made ahead of the current one.
const MONTHS_AHEAD: i32 = 2;

/// How long making a partition waits for the events table's lock.
const LOCK_TIMEOUT: &str = "2s";

/// A month: its partition's name and its bounds in milliseconds (start inclusive, end
/// exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MonthPartition {
    pub name: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

fn month_start_ms(year: i32, month: Month) -> Result<i64, StoreError> {
    let date = Date::from_calendar_date(year, month, 1)
        .map_err(|error| StoreError::Corrupt(format!("no such month: {error}")))?;
    let start = date.with_time(Time::MIDNIGHT).assume_utc();
    i64::try_from(start.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| StoreError::Corrupt("month out of range".to_owned()))
}

/// The partition of the month `offset` months from the one holding `time_ms`.
pub(super) fn month_partition(time_ms: i64, offset: i32) -> Result<MonthPartition, StoreError> {
    let at = OffsetDateTime::from_unix_timestamp(time_ms.div_euclid(1000))
        .map_err(|error| StoreError::Corrupt(format!("time out of range: {error}")))?;
    let months = at.year() * 12 + i32::from(u8::from(at.month())) - 1 + offset;
    let (year, month_index) = (months.div_euclid(12), months.rem_euclid(12));
    let month = |index: i32| {
        Month::try_from(u8::try_from(index + 1).unwrap_or(1)).unwrap_or(Month::January)
    };
    let next = months + 1;
    Ok(MonthPartition {
        name: format!("events_y{year:04}m{:02}", month_index + 1),
        start_ms: month_start_ms(year, month(month_index))?,
        end_ms: month_start_ms(next.div_euclid(12), month(next.rem_euclid(12)))?,
    })
}

impl MonthPartition {
    /// The month a partition's name stands for (`events_y2026m11`); `None` for any
    /// other name, such as `events_default`.
    pub(super) fn from_name(name: &str) -> Option<MonthPartition> {
        let rest = name.strip_prefix("events_y")?;
        let (year, month) = rest.split_once('m')?;
        if year.len() != 4 || month.len() != 2 {
            return None;
        }
        let year: i32 = year.parse().ok()?;
        let month = Month::try_from(month.parse::<u8>().ok()?).ok()?;
        let partition = month_partition(month_start_ms(year, month).ok()?, 0).ok()?;
        // Only names this module makes: the name is put into DDL as it is made here.
        (partition.name == name).then_some(partition)
    }
}

/// The monthly partitions of the events table, oldest first.
pub(super) fn monthly(tx: &mut Tx<'_>) -> Result<Vec<MonthPartition>, StoreError> {
    let mut months: Vec<MonthPartition> = tx
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'events'::regclass",
            &[],
        )?
        .iter()
        .map(|row| row.try_get::<_, String>(0))
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .filter_map(|name| MonthPartition::from_name(name))
        .collect();
    months.sort_by_key(|month| month.start_ms);
    Ok(months)
}

/// Makes the partitions from [`MONTHS_BEFORE`] months before `now_ms`'s month (only
/// when the table has no monthly partition yet) to [`MONTHS_AHEAD`] after it, in one
/// transaction under the partitions lock, so that collectors doing it at once do not
/// race.
pub(super) fn ensure_around(connection: &mut PgConnection, now_ms: i64) -> Result<(), StoreError> {
    let mut tx = connection.transaction(false)?;
    tx.lock(LockSpace::Partitions, "events")?;
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))?;
    let monthly: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'events'::regclass AND c.relname LIKE 'events\\_y%'",
            &[],
        )?
        .try_get(0)?;
    let first = if monthly == 0 { -MONTHS_BEFORE } else { 0 };
    for offset in first..=MONTHS_AHEAD {
        let partition = month_partition(now_ms, offset)?;
        let exists = tx
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&partition.name])?
            .try_get::<_, bool>(0)?;
        if !exists {
            // DDL takes no parameters; the name and bounds are made here, not given.
            tx.batch_execute(&format!(
                "CREATE TABLE {} PARTITION OF events FOR VALUES FROM ({}) TO ({})",
                partition.name, partition.start_ms, partition.end_ms
            ))?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_have_their_calendar_bounds() {
        // 2026-12-06T04:00:00Z.
        let now_ms = 1_796_529_600_000;
        let check = |offset: i32, name: &str, start: &str, end: &str| {
            let partition = month_partition(now_ms, offset).unwrap();
            let format = |ms: i64| crate::timefmt::format_ms(ms);
            assert_eq!(
                (
                    partition.name.as_str(),
                    format(partition.start_ms),
                    format(partition.end_ms)
                ),
                (name, start.to_owned(), end.to_owned()),
                "offset {offset}"
            );
        };
        check(
            0,
            "events_y2026m12",
            "2026-12-01T00:00:00.000Z",
            "2027-01-01T00:00:00.000Z",
        );
        check(
            1,
            "events_y2027m01",
            "2027-01-01T00:00:00.000Z",
            "2027-02-01T00:00:00.000Z",
        );
        check(
            -12,
            "events_y2025m12",
            "2025-12-01T00:00:00.000Z",
            "2026-01-01T00:00:00.000Z",
        );
        check(
            -2,
            "events_y2026m10",
            "2026-10-01T00:00:00.000Z",
            "2026-11-01T00:00:00.000Z",
        );
    }

    #[test]
    fn only_monthly_names_are_months() {
        let november = month_partition(1_796_529_600_000, -1).unwrap();
        assert_eq!(MonthPartition::from_name("events_y2026m11"), Some(november));
        for name in [
            "events_default",
            "events_y2026m13",
            "events_y2026m1",
            "events_y26m11",
            "events_y2026m11; DROP TABLE events",
            "sessions",
        ] {
            assert_eq!(MonthPartition::from_name(name), None, "{name}");
        }
    }
}
