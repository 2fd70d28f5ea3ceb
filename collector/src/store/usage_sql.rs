//! The SQL of usage figures ([`crate::usage`]): summarising days from the stored rows
//! and keeping the figures.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::sqlite::SqliteStore;
use super::StoreError;
use crate::privacy::MILLISECONDS_PER_DAY;
use crate::usage::{metric, Day, UsageCount, UsageStore};

fn summarised_until(connection: &Connection) -> Result<Option<Day>, StoreError> {
    Ok(connection
        .prepare_cached("SELECT summarised_until_day FROM usage_summary_state WHERE one = 1")?
        .query_row([], |row| row.get(0))
        .optional()?)
}

/// The figures of the days `from..until` (by received time) from the stored rows.
fn derive_counts(
    connection: &Connection,
    from: Option<Day>,
    until: Day,
) -> Result<Vec<UsageCount>, StoreError> {
    let from_ms = from.map_or(i64::MIN, |day| day * MILLISECONDS_PER_DAY);
    let until_ms = until * MILLISECONDS_PER_DAY;
    let mut counts: BTreeMap<(String, Day, String), u64> = BTreeMap::new();
    {
        let mut statement = connection.prepare_cached(
            "SELECT deployment_id, received_ms / ?3, kind, COUNT(*) FROM events
             WHERE received_ms >= ?1 AND received_ms < ?2
             GROUP BY 1, 2, 3",
        )?;
        let mut rows = statement.query(params![from_ms, until_ms, MILLISECONDS_PER_DAY])?;
        while let Some(row) = rows.next()? {
            let kind: String = row.get(2)?;
            counts.insert(
                (
                    row.get(0)?,
                    row.get(1)?,
                    format!("{}{kind}", metric::ACCEPTED_PREFIX),
                ),
                to_count(row.get(3)?),
            );
        }
    }
    {
        // Each session once per day it received an event; new on the day of its first
        // event ever received, identified when it has (or had, before an erase) a
        // contact link.
        let mut statement = connection.prepare_cached(
            "SELECT e.deployment_id, e.day, COUNT(*),
                    SUM((SELECT MIN(received_ms) FROM events f WHERE f.session_id = e.session_id)
                        / ?3 = e.day),
                    SUM(s.contact_link IS NOT NULL)
             FROM (SELECT DISTINCT session_id, deployment_id, received_ms / ?3 AS day
                   FROM events WHERE received_ms >= ?1 AND received_ms < ?2) e
             JOIN sessions s ON s.id = e.session_id
             GROUP BY 1, 2",
        )?;
        let mut rows = statement.query(params![from_ms, until_ms, MILLISECONDS_PER_DAY])?;
        while let Some(row) = rows.next()? {
            let deployment_id: String = row.get(0)?;
            let day: Day = row.get(1)?;
            for (index, name) in [
                (2, metric::TOTAL_SESSIONS),
                (3, metric::NEW_SESSIONS),
                (4, metric::IDENTIFIED_SESSIONS),
            ] {
                counts.insert(
                    (deployment_id.clone(), day, name.to_owned()),
                    to_count(row.get(index)?),
                );
            }
        }
    }
    Ok(counts
        .into_iter()
        .map(|((deployment_id, day, metric), count)| UsageCount {
            deployment_id,
            day,
            metric,
            count,
        })
        .collect())
}

fn to_count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

fn add_counts(connection: &Connection, counts: &[UsageCount]) -> Result<(), StoreError> {
    let mut statement = connection.prepare_cached(
        "INSERT INTO usage_counts (deployment_id, day, metric, count) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (deployment_id, day, metric) DO UPDATE SET count = count + excluded.count",
    )?;
    for count in counts {
        statement.execute(params![
            count.deployment_id,
            count.day,
            count.metric,
            i64::try_from(count.count).unwrap_or(i64::MAX)
        ])?;
    }
    Ok(())
}

impl UsageStore for SqliteStore {
    fn summarise_usage(&self, today: Day) -> Result<u64, StoreError> {
        // The scan runs on the read connection's snapshot, without holding the writer:
        // days before today get no new rows (events are received now), and neither an
        // erase nor retention (which waits for the summary) changes what is counted.
        if summarised_until(&self.reader())?.is_some_and(|from| from >= today) {
            return Ok(0);
        }
        // A day's scan reads every event of the day: on a connection of its own, so
        // that the read API's waits for none of it.
        let (from, counts) = {
            let mut connection = self.open_scan_reader()?;
            let transaction = connection.transaction()?;
            let from = summarised_until(&transaction)?;
            if from.is_some_and(|from| from >= today) {
                return Ok(0);
            }
            (from, derive_counts(&transaction, from, today)?)
        };
        let mut connection = self.writer();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another summary got there first (two collectors on one file): keep its work.
        if summarised_until(&transaction)? != from {
            return Ok(0);
        }
        add_counts(&transaction, &counts)?;
        transaction
            .prepare_cached(
                "INSERT INTO usage_summary_state (one, summarised_until_day) VALUES (1, ?1)
                 ON CONFLICT (one) DO UPDATE SET summarised_until_day = excluded.summarised_until_day",
            )?
            .execute([today])?;
        transaction.commit()?;
        let first = from.or_else(|| counts.iter().map(|count| count.day).min());
        Ok(first.map_or(0, |first| to_count(today - first)))
    }

    fn usage_summarised_until(&self) -> Result<Option<Day>, StoreError> {
        summarised_until(&self.reader())
    }

    fn add_usage_counts(&self, counts: &[UsageCount]) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut connection = self.writer();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        add_counts(&transaction, counts)?;
        transaction.commit()?;
        Ok(())
    }

    fn usage_counts(
        &self,
        deployment_id: Option<&str>,
        from: Day,
        to: Day,
    ) -> Result<Vec<UsageCount>, StoreError> {
        let connection = self.reader();
        let mut statement = connection.prepare_cached(
            "SELECT deployment_id, day, metric, count FROM usage_counts
             WHERE (?1 IS NULL OR deployment_id = ?1) AND day >= ?2 AND day <= ?3
             ORDER BY deployment_id, day, metric",
        )?;
        let rows = statement.query_map(params![deployment_id, from, to], |row| {
            Ok(UsageCount {
                deployment_id: row.get(0)?,
                day: row.get(1)?,
                metric: row.get(2)?,
                count: to_count(row.get(3)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
