//! Data rights, retention and usage figures on PostgreSQL: the same rules as SQLite's
//! (`store/privacy_sql.rs`, `store/usage_sql.rs`; see [`crate::privacy`] and
//! [`crate::usage`]) in this dialect, with this backend's locks.
//!
//! - **Locks**: an erase and a retention chunk take the advisory locks of every
//!   visitor whose sessions they change (sorted, as one batch's ingest takes its one
//!   visitor's lock first), then, for an erase, the contact's: so neither interleaves
//!   with a batch of the same visitor (which could otherwise add an event to a session
//!   being deleted, or relink a cookie being removed). Locks taken in a different
//!   order by a concurrent transaction end in a deadlock that PostgreSQL reports; the
//!   transaction is then run again, as ingest does.
//! - **`event_ids`**: an erase keeps an erased event's row (the shell event is still
//!   stored, so a resent copy must still be found a duplicate, as on SQLite, whose
//!   events table is its dedupe) and replaces the row's visitor id with its session
//!   shell's. Retention deletes the rows of the events it deletes: kept forever, the
//!   table would grow without bound and name visitors past their deployment's
//!   retention. An id resent after its session was deleted is stored again, as on
//!   SQLite; retention only deletes sessions whose every event was received before the
//!   last summarised UTC day, long after an SDK stops resending a batch.
//! - **Overwriting**: PostgreSQL has no `secure_delete`; erased and deleted values
//!   stay in dead tuples until VACUUM reclaims them (autovacuum, or the operator's).

use std::collections::{BTreeMap, BTreeSet};

use super::connection::{is_retryable, LockSpace, Tx};
use super::ingest::visitor_key;
use super::{PostgresStore, INGEST_ATTEMPTS};
use crate::privacy::{
    self, DataSubject, ErasureReport, PrivacyStore, RetentionRun, StoredCustomerSegment,
    SubjectSessions, EMPTIED_EVENT_MAPS, ERASED_EVENT_FIELDS, MILLISECONDS_PER_DAY,
};
use crate::store::StoreError;
use crate::usage::{metric, Day, UsageCount, UsageStore};

/// A session of a subject, with the ids it had before an erase.
struct SubjectSession {
    id: String,
    deployment_id: String,
    visitor_id: String,
    first_ms: i64,
}

/// A subject's sessions and, for a visitor, the contact its cookie is linked to.
type FoundSubject = (Vec<SubjectSession>, Option<String>);

const SUBJECT_SESSION_COLUMNS: &str = "id, deployment_id, visitor_id, first_ms";

fn subject_sessions_from(rows: &[postgres::Row]) -> Result<Vec<SubjectSession>, StoreError> {
    rows.iter()
        .map(|row| {
            Ok(SubjectSession {
                id: row.try_get(0)?,
                deployment_id: row.try_get(1)?,
                visitor_id: row.try_get(2)?,
                first_ms: row.try_get(3)?,
            })
        })
        .collect()
}

/// The subject's sessions, newest first (by creation); `None` when nothing is stored
/// under the subject's id.
fn find_subject(
    tx: &mut Tx<'_>,
    subject: &DataSubject,
) -> Result<Option<FoundSubject>, StoreError> {
    let mut sessions;
    let linked_contact_id = match subject {
        DataSubject::Contact { contact_id } => {
            if tx
                .query_opt("SELECT 1 FROM contacts WHERE id = $1", &[contact_id])?
                .is_none()
            {
                return Ok(None);
            }
            sessions = subject_sessions_from(&tx.query(
                &format!("SELECT {SUBJECT_SESSION_COLUMNS} FROM sessions WHERE contact_id = $1"),
                &[contact_id],
            )?)?;
            // The sessions of every cookie linked to the contact, also those from
            // before it identified itself: the cookie is one of its identifiers. A
            // cookie names no deployment: every deployment's, found by walking the
            // deployments of the (deployment_id, visitor_id, ...) index one seek each.
            let cookies: Vec<String> = tx
                .query(
                    "SELECT value FROM contact_identifiers
                     WHERE contact_id = $1 AND type = 'Cookie'",
                    &[contact_id],
                )?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<_, _>>()?;
            if !cookies.is_empty() {
                sessions.extend(subject_sessions_from(&tx.query(
                    "WITH RECURSIVE deployment (id) AS (
                         SELECT MIN(deployment_id) FROM sessions
                         UNION ALL
                         SELECT (SELECT MIN(deployment_id) FROM sessions
                                 WHERE deployment_id > deployment.id)
                         FROM deployment WHERE deployment.id IS NOT NULL
                     )
                     SELECT s.id, s.deployment_id, s.visitor_id, s.first_ms
                     FROM deployment d
                     JOIN sessions s ON s.deployment_id = d.id AND s.visitor_id = ANY($1)",
                    &[&cookies],
                )?)?);
            }
            None
        }
        DataSubject::Visitor {
            deployment_id,
            visitor_id,
        } => {
            sessions = subject_sessions_from(&tx.query(
                &format!(
                    "SELECT {SUBJECT_SESSION_COLUMNS} FROM sessions
                     WHERE deployment_id = $1 AND visitor_id = $2"
                ),
                &[deployment_id, visitor_id],
            )?)?;
            let linked: Option<String> = tx
                .query_opt(
                    "SELECT contact_id FROM contact_identifiers
                     WHERE type = 'Cookie' AND value = $1",
                    &[visitor_id],
                )?
                .map(|row| row.try_get(0))
                .transpose()?;
            if sessions.is_empty() && linked.is_none() {
                return Ok(None);
            }
            linked
        }
    };
    sessions.sort_by(|a, b| (b.first_ms, &b.id).cmp(&(a.first_ms, &a.id)));
    sessions.dedup_by(|a, b| a.id == b.id);
    Ok(Some((sessions, linked_contact_id)))
}

/// The contact and the (deployment, visitor id) pairs whose customer keys belong to
/// the subject: its own, and those of its sessions (a contact's cookies).
fn subject_keys<'a>(
    subject: &'a DataSubject,
    sessions: &[SubjectSession],
) -> (Option<&'a str>, Vec<(String, String)>) {
    let mut visitors: Vec<(String, String)> = sessions
        .iter()
        .map(|session| (session.deployment_id.clone(), session.visitor_id.clone()))
        .collect();
    match subject {
        DataSubject::Contact { contact_id } => (Some(contact_id.as_str()), visitors),
        DataSubject::Visitor {
            deployment_id,
            visitor_id,
        } => {
            visitors.push((deployment_id.clone(), visitor_id.clone()));
            (None, visitors)
        }
    }
}

/// Turns one session and its events into shells (see [`crate::privacy`]); returns
/// how many events it has.
fn erase_session(tx: &mut Tx<'_>, session_id: &str) -> Result<u64, StoreError> {
    let shell_visitor_id = privacy::shell_visitor_id();
    let cleared: Vec<String> = ERASED_EVENT_FIELDS
        .iter()
        .map(|column| format!("{column} = NULL"))
        .chain(
            EMPTIED_EVENT_MAPS
                .iter()
                .map(|column| format!("{column} = '{{}}'")),
        )
        .collect();
    let events = tx.execute(
        &format!(
            "UPDATE events SET visitor_id = $2, {} WHERE session_id = $1",
            cleared.join(", ")
        ),
        &[&session_id, &shell_visitor_id],
    )?;
    // The dedupe rows stay (the shells are still stored), without the visitor.
    tx.execute(
        "UPDATE event_ids SET visitor_id = $2
         WHERE id IN (SELECT id FROM events WHERE session_id = $1)",
        &[&session_id, &shell_visitor_id],
    )?;
    let pages = tx.query(
        "SELECT id, time_ms, page_url FROM events
         WHERE session_id = $1 AND page_url IS NOT NULL",
        &[&session_id],
    )?;
    for row in &pages {
        let event_id: &str = row.try_get(0)?;
        let time_ms: i64 = row.try_get(1)?;
        let url: &str = row.try_get(2)?;
        let kept = privacy::erased_page_url(url);
        if kept.as_deref() != Some(url) {
            tx.execute(
                "UPDATE events SET page_url = $3 WHERE id = $1 AND time_ms = $2",
                &[&event_id, &time_ms, &kept],
            )?;
        }
    }
    // contact_link stays: how a link had been made ('Verified', 'Cookie'), without
    // whom, which the usage figures count as an identified session.
    tx.execute(
        "UPDATE sessions SET visitor_id = $2, contact_id = NULL,
             search_terms_json = '[]', user_agent_json = NULL, geolocation_json = NULL,
             ended_ms = COALESCE(ended_ms, last_ms), closed = true
         WHERE id = $1",
        &[&session_id, &shell_visitor_id],
    )?;
    tx.execute(
        "DELETE FROM session_segment_assignments WHERE session_id = $1",
        &[&session_id],
    )?;
    tx.execute(
        "UPDATE session_outcome_achievements SET associated_value = NULL WHERE session_id = $1",
        &[&session_id],
    )?;
    tx.execute(
        "DELETE FROM session_visit_evaluations WHERE session_id = $1",
        &[&session_id],
    )?;
    tx.execute(
        "DELETE FROM journey_pattern_counts WHERE scope_key = 'session:' || $1",
        &[&session_id],
    )?;
    Ok(events)
}

/// Takes the advisory locks of these visitors not held yet, in sorted order.
fn lock_visitors(
    tx: &mut Tx<'_>,
    held: &mut BTreeSet<String>,
    visitors: impl IntoIterator<Item = String>,
) -> Result<(), StoreError> {
    let wanted: BTreeSet<String> = visitors.into_iter().collect();
    for key in wanted {
        if !held.contains(&key) {
            tx.lock(LockSpace::Visitor, &key)?;
            held.insert(key);
        }
    }
    Ok(())
}

fn subject_visitor_keys(subject: &DataSubject, sessions: &[SubjectSession]) -> Vec<String> {
    let (_, visitors) = subject_keys(subject, sessions);
    visitors
        .iter()
        .map(|(deployment_id, visitor_id)| visitor_key(deployment_id, visitor_id))
        .collect()
}

fn erase_in_transaction(
    tx: &mut Tx<'_>,
    subject: &DataSubject,
) -> Result<Option<ErasureReport>, StoreError> {
    // The visitors' locks first, as a batch's ingest takes them before a contact's;
    // then read again under them, and lock any visitor that appeared meanwhile.
    let mut held = BTreeSet::new();
    let Some((sessions, _)) = find_subject(tx, subject)? else {
        return Ok(None);
    };
    lock_visitors(tx, &mut held, subject_visitor_keys(subject, &sessions))?;
    let contact_to_lock = match subject {
        DataSubject::Contact { contact_id } => Some(contact_id.clone()),
        DataSubject::Visitor { visitor_id, .. } => tx
            .query_opt(
                "SELECT contact_id FROM contact_identifiers WHERE type = 'Cookie' AND value = $1",
                &[visitor_id],
            )?
            .map(|row| row.try_get(0))
            .transpose()?,
    };
    if let Some(contact_id) = &contact_to_lock {
        tx.lock(LockSpace::Contact, contact_id)?;
    }
    let sessions = loop {
        let Some((sessions, _)) = find_subject(tx, subject)? else {
            return Ok(None);
        };
        let keys = subject_visitor_keys(subject, &sessions);
        if keys.iter().all(|key| held.contains(key)) {
            break sessions;
        }
        lock_visitors(tx, &mut held, keys)?;
    };
    let mut report = ErasureReport::default();
    for session in &sessions {
        report.events += erase_session(tx, &session.id)?;
        report.sessions += 1;
    }
    let (contact_id, visitors) = subject_keys(subject, &sessions);
    match subject {
        DataSubject::Contact { contact_id } => {
            report.cookie_links = u64::try_from(
                tx.query_one(
                    "SELECT COUNT(*) FROM contact_identifiers
                     WHERE contact_id = $1 AND type = 'Cookie'",
                    &[contact_id],
                )?
                .try_get::<_, i64>(0)?,
            )
            .unwrap_or_default();
            // Its identifiers go with it (ON DELETE CASCADE).
            report.contact_deleted =
                tx.execute("DELETE FROM contacts WHERE id = $1", &[contact_id])? > 0;
        }
        DataSubject::Visitor { visitor_id, .. } => {
            report.cookie_links = tx.execute(
                "DELETE FROM contact_identifiers WHERE type = 'Cookie' AND value = $1",
                &[visitor_id],
            )?;
        }
    }
    let keys = privacy::customer_keys(contact_id, &visitors);
    tx.execute(
        "DELETE FROM customer_segment_assignments WHERE customer_key = ANY($1)",
        &[&keys],
    )?;
    tx.execute(
        "DELETE FROM journey_pattern_counts WHERE scope_key = ANY($1)",
        &[&keys],
    )?;
    Ok(Some(report))
}

/// The time before which every event's day is summarised (`i64::MIN`: none is).
fn summarised_until_ms(tx: &mut Tx<'_>) -> Result<i64, StoreError> {
    Ok(summarised_until(tx)?.map_or(i64::MIN, |day| day.saturating_mul(MILLISECONDS_PER_DAY)))
}

/// The sessions retention may delete, oldest first by the (deployment_id, first_ms,
/// id) index (a session's last activity is never before its first), among
/// `among` when given.
fn deletable_sessions(
    tx: &mut Tx<'_>,
    deployment_id: &str,
    before_ms: i64,
    limit: i64,
    among: Option<&[String]>,
) -> Result<Vec<(String, String)>, StoreError> {
    // A session with an event received on a day that the usage figures do not hold
    // yet stays until they do (crate::usage).
    let summarised_until_ms = summarised_until_ms(tx)?;
    tx.query(
        "SELECT id, visitor_id FROM sessions
         WHERE deployment_id = $1 AND first_ms < $2 AND last_ms < $2
           AND ($5::text[] IS NULL OR id = ANY($5))
           AND NOT EXISTS (SELECT 1 FROM events
                           WHERE session_id = sessions.id AND received_ms >= $4)
         ORDER BY first_ms, id LIMIT $3",
        &[
            &deployment_id,
            &before_ms,
            &limit,
            &summarised_until_ms,
            &among,
        ],
    )?
    .iter()
    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
    .collect()
}

fn delete_before_in_transaction(
    tx: &mut Tx<'_>,
    deployment_id: &str,
    before_ms: i64,
    max_sessions: usize,
) -> Result<RetentionRun, StoreError> {
    let limit = i64::try_from(max_sessions).unwrap_or(i64::MAX);
    let candidates = deletable_sessions(tx, deployment_id, before_ms, limit, None)?;
    if candidates.is_empty() {
        return Ok(RetentionRun::default());
    }
    // Under the visitors' locks no batch adds to these sessions; one may have before
    // the locks were taken, so they are chosen again.
    let mut held = BTreeSet::new();
    lock_visitors(
        tx,
        &mut held,
        candidates
            .iter()
            .map(|(_, visitor_id)| visitor_key(deployment_id, visitor_id)),
    )?;
    let ids: Vec<String> = candidates.into_iter().map(|(id, _)| id).collect();
    let session_ids: Vec<String> =
        deletable_sessions(tx, deployment_id, before_ms, limit, Some(&ids))?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
    let deleted_events: Vec<String> = tx
        .query(
            "DELETE FROM events WHERE session_id = ANY($1) RETURNING id",
            &[&session_ids],
        )?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    tx.execute(
        "DELETE FROM event_ids WHERE id = ANY($1)",
        &[&deleted_events],
    )?;
    for statement in [
        "DELETE FROM session_segment_assignments WHERE session_id = ANY($1)",
        "DELETE FROM session_outcome_achievements WHERE session_id = ANY($1)",
        "DELETE FROM session_visit_evaluations WHERE session_id = ANY($1)",
        "DELETE FROM journey_pattern_counts
         WHERE scope_key = ANY(ARRAY(SELECT 'session:' || unnest($1::text[])))",
    ] {
        tx.execute(statement, &[&session_ids])?;
    }
    let sessions = tx.execute("DELETE FROM sessions WHERE id = ANY($1)", &[&session_ids])?;
    Ok(RetentionRun {
        sessions,
        events: u64::try_from(deleted_events.len()).unwrap_or(u64::MAX),
    })
}

impl PostgresStore {
    /// Runs `work` in a write transaction and commits it, running it again when it
    /// loses a deadlock (see the module documentation).
    fn write_retrying<T>(
        &self,
        mut work: impl FnMut(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection()?;
        let mut attempt = 1;
        loop {
            let result = connection.transaction(false).and_then(|mut tx| {
                let value = work(&mut tx)?;
                tx.commit()?;
                Ok(value)
            });
            match result {
                Err(error) if attempt < INGEST_ATTEMPTS && is_retryable(&error) => attempt += 1,
                result => return result,
            }
        }
    }
}

impl PrivacyStore for PostgresStore {
    fn subject_sessions(
        &self,
        subject: &DataSubject,
    ) -> Result<Option<SubjectSessions>, StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(true)?;
        let Some((sessions, linked_contact_id)) = find_subject(&mut tx, subject)? else {
            return Ok(None);
        };
        let (contact_id, visitors) = subject_keys(subject, &sessions);
        let keys = privacy::customer_keys(contact_id, &visitors);
        let mut customer_segments = tx
            .query(
                "SELECT segment_id, display_name, assigned_ms, expires_ms
                 FROM customer_segment_assignments WHERE customer_key = ANY($1)",
                &[&keys],
            )?
            .iter()
            .map(|row| {
                Ok(StoredCustomerSegment {
                    segment_id: row.try_get(0)?,
                    display_name: row.try_get(1)?,
                    assigned_ms: row.try_get(2)?,
                    expires_ms: row.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        customer_segments
            .sort_by(|a, b| (a.assigned_ms, &a.segment_id).cmp(&(b.assigned_ms, &b.segment_id)));
        Ok(Some(SubjectSessions {
            session_ids: sessions.into_iter().map(|session| session.id).collect(),
            linked_contact_id,
            customer_segments,
        }))
    }

    fn erase_subject(&self, subject: &DataSubject) -> Result<Option<ErasureReport>, StoreError> {
        self.write_retrying(|tx| erase_in_transaction(tx, subject))
    }

    fn delete_sessions_before(
        &self,
        deployment_id: &str,
        before_ms: i64,
        max_sessions: usize,
    ) -> Result<RetentionRun, StoreError> {
        self.write_retrying(|tx| {
            delete_before_in_transaction(tx, deployment_id, before_ms, max_sessions)
        })
    }
}

fn summarised_until(tx: &mut Tx<'_>) -> Result<Option<Day>, StoreError> {
    tx.query_opt(
        "SELECT summarised_until_day FROM usage_summary_state WHERE one = 1",
        &[],
    )?
    .map(|row| Ok(row.try_get(0)?))
    .transpose()
}

fn to_count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

/// The figures of the days `from..until` (by received time) from the stored rows.
fn derive_counts(
    tx: &mut Tx<'_>,
    from: Option<Day>,
    until: Day,
) -> Result<Vec<UsageCount>, StoreError> {
    let from_ms = from.map_or(i64::MIN, |day| day.saturating_mul(MILLISECONDS_PER_DAY));
    let until_ms = until.saturating_mul(MILLISECONDS_PER_DAY);
    let mut counts: BTreeMap<(String, Day, String), u64> = BTreeMap::new();
    for row in tx.query(
        "SELECT deployment_id, received_ms / $3, kind, COUNT(*) FROM events
         WHERE received_ms >= $1 AND received_ms < $2
         GROUP BY 1, 2, 3",
        &[&from_ms, &until_ms, &MILLISECONDS_PER_DAY],
    )? {
        let kind: &str = row.try_get(2)?;
        counts.insert(
            (
                row.try_get(0)?,
                row.try_get(1)?,
                format!("{}{kind}", metric::ACCEPTED_PREFIX),
            ),
            to_count(row.try_get(3)?),
        );
    }
    // Each session once per day it received an event; new on the day of its first
    // event ever received, identified when it has (or had, before an erase) a contact
    // link.
    for row in tx.query(
        "SELECT e.deployment_id, e.day, COUNT(*),
                COUNT(*) FILTER (WHERE (SELECT MIN(received_ms) FROM events f
                                        WHERE f.session_id = e.session_id) / $3 = e.day),
                COUNT(*) FILTER (WHERE s.contact_link IS NOT NULL)
         FROM (SELECT DISTINCT session_id, deployment_id, received_ms / $3 AS day
               FROM events WHERE received_ms >= $1 AND received_ms < $2) e
         JOIN sessions s ON s.id = e.session_id
         GROUP BY 1, 2",
        &[&from_ms, &until_ms, &MILLISECONDS_PER_DAY],
    )? {
        let deployment_id: String = row.try_get(0)?;
        let day: Day = row.try_get(1)?;
        for (index, name) in [
            (2, metric::TOTAL_SESSIONS),
            (3, metric::NEW_SESSIONS),
            (4, metric::IDENTIFIED_SESSIONS),
        ] {
            counts.insert(
                (deployment_id.clone(), day, name.to_owned()),
                to_count(row.try_get(index)?),
            );
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

fn add_counts(tx: &mut Tx<'_>, counts: &[UsageCount]) -> Result<(), StoreError> {
    for count in counts {
        tx.execute(
            "INSERT INTO usage_counts (deployment_id, day, metric, count)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (deployment_id, day, metric)
             DO UPDATE SET count = usage_counts.count + excluded.count",
            &[
                &count.deployment_id,
                &count.day,
                &count.metric,
                &i64::try_from(count.count).unwrap_or(i64::MAX),
            ],
        )?;
    }
    Ok(())
}

impl UsageStore for PostgresStore {
    fn summarise_usage(&self, today: Day) -> Result<u64, StoreError> {
        let mut connection = self.connection()?;
        // The scan on one snapshot, without a lock: days before today get no new rows
        // (events are received now), and neither an erase nor retention (which waits
        // for the summary) changes what is counted.
        let (from, counts) = {
            let mut tx = connection.transaction(true)?;
            let from = summarised_until(&mut tx)?;
            if from.is_some_and(|from| from >= today) {
                return Ok(0);
            }
            (from, derive_counts(&mut tx, from, today)?)
        };
        let mut tx = connection.transaction(false)?;
        tx.lock(LockSpace::Usage, "summary")?;
        // Another collector's summary got there first: keep its work.
        if summarised_until(&mut tx)? != from {
            return Ok(0);
        }
        add_counts(&mut tx, &counts)?;
        tx.execute(
            "INSERT INTO usage_summary_state (one, summarised_until_day) VALUES (1, $1)
             ON CONFLICT (one) DO UPDATE SET summarised_until_day = excluded.summarised_until_day",
            &[&today],
        )?;
        tx.commit()?;
        let first = from.or_else(|| counts.iter().map(|count| count.day).min());
        Ok(first.map_or(0, |first| to_count(today - first)))
    }

    fn usage_summarised_until(&self) -> Result<Option<Day>, StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(true)?;
        summarised_until(&mut tx)
    }

    fn add_usage_counts(&self, counts: &[UsageCount]) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        self.write_retrying(|tx| add_counts(tx, counts))
    }

    fn usage_counts(
        &self,
        deployment_id: Option<&str>,
        from: Day,
        to: Day,
    ) -> Result<Vec<UsageCount>, StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(true)?;
        // Byte order, as SQLite sorts, whatever the database's collation.
        tx.query(
            "SELECT deployment_id, day, metric, count FROM usage_counts
             WHERE ($1::text IS NULL OR deployment_id = $1) AND day >= $2 AND day <= $3
             ORDER BY deployment_id COLLATE \"C\", day, metric COLLATE \"C\"",
            &[&deployment_id, &from, &to],
        )?
        .iter()
        .map(|row| {
            Ok(UsageCount {
                deployment_id: row.try_get(0)?,
                day: row.try_get(1)?,
                metric: row.try_get(2)?,
                count: to_count(row.try_get(3)?),
            })
        })
        .collect()
    }
}
