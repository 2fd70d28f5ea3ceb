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
//! - **Retention by month**: before the row path, the housekeeping run drops whole
//!   monthly partitions of `events` ([`partitions`]) where it can, so that the events
//!   of a month past retention go without a row deleted. A month goes when no event
//!   can land in it any more (it ended before the oldest time an event is accepted
//!   with, less the session timeout), every deployment with events in it has
//!   retention and the month ended before that deployment's cutoff, and every event
//!   in it was received before the last summarised day. Its sessions go with it, as
//!   whole sessions, with what the row path deletes with a session (`event_ids` rows,
//!   segment assignments, outcome achievements, visit evaluations, session pattern
//!   counters); a session that also has events in another month goes whole too (those
//!   events row by row) if it is past retention as the row path judges, otherwise the
//!   month stays. One transaction per month: its visitors' locks for sessions that
//!   span months, then `LOCK TABLE ... IN EXCLUSIVE MODE` on the month (its writers
//!   wait, its readers do not), then `DROP TABLE`, which holds the events table's
//!   strongest lock from the drop to the commit; a lock not had within 2 s leaves the
//!   month for the next run. A month that a deployment without retention (or with a
//!   longer one) still has events in stays, and the row path deletes what is past
//!   retention in it as before. `events_default` and the current and coming months are
//!   never dropped.
//! - **Overwriting**: PostgreSQL has no `secure_delete`; erased and deleted values
//!   stay in dead tuples until VACUUM reclaims them (autovacuum, or the operator's).

use std::collections::{BTreeMap, BTreeSet};

use super::connection::{is_lock_timeout, is_retryable, LockSpace, Tx};
use super::ingest::visitor_key;
use super::partitions::{self, MonthPartition};
use super::{PostgresStore, INGEST_ATTEMPTS};
use crate::privacy::{
    self, DataSubject, ErasureReport, PrivacyStore, RetentionPolicy, RetentionRun,
    StoredCustomerSegment, SubjectSessions, EMPTIED_EVENT_MAPS, ERASED_EVENT_FIELDS,
    MILLISECONDS_PER_DAY,
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

/// How long dropping a month waits for a lock: dropping a partition takes the events
/// table's strongest lock for a moment, as making one does (see [`partitions`]).
const PARTITION_LOCK_TIMEOUT: &str = "2s";

/// Whether a deployment other than those in `dropping` has a session that started in
/// `month`: such a month is kept, and knowing it costs one index seek per deployment
/// (a skip scan of the (deployment_id, first_ms, id) index) instead of a scan of the
/// month. A month kept for another reason is found by [`drop_month_in_transaction`].
fn month_kept_by_another_deployment(
    tx: &mut Tx<'_>,
    month: &MonthPartition,
    dropping: &[String],
) -> Result<bool, StoreError> {
    Ok(tx
        .query_opt(
            "WITH RECURSIVE deployment (id) AS (
                 SELECT MIN(deployment_id) FROM sessions
                 UNION ALL
                 SELECT (SELECT MIN(deployment_id) FROM sessions
                         WHERE deployment_id > deployment.id)
                 FROM deployment WHERE deployment.id IS NOT NULL
             )
             SELECT 1 FROM deployment d
             WHERE d.id IS NOT NULL AND NOT (d.id = ANY($3))
               AND EXISTS (SELECT 1 FROM sessions s WHERE s.deployment_id = d.id
                           AND s.first_ms >= $1 AND s.first_ms < $2)
             LIMIT 1",
            &[&month.start_ms, &month.end_ms, &dropping],
        )?
        .is_some())
}

/// The sessions with an event in `month` and events in other months too, as (id,
/// deployment, visitor).
fn sessions_spanning(
    tx: &mut Tx<'_>,
    month: &MonthPartition,
) -> Result<Vec<(String, String, String)>, StoreError> {
    tx.query(
        "SELECT id, deployment_id, visitor_id FROM sessions
         WHERE id IN (SELECT session_id FROM events WHERE time_ms >= $1 AND time_ms < $2)
           AND (first_ms < $1 OR last_ms >= $2)",
        &[&month.start_ms, &month.end_ms],
    )?
    .iter()
    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
    .collect()
}

/// Drops `month`'s partition when every session with an event in it is past its
/// deployment's retention as the row path ([`deletable_sessions`]) would find it, with
/// those sessions and what points at their events; `None` when the month stays.
///
/// The caller has checked that the month ends before `policy.settled_before_ms`: no
/// event can be added to it, nor to a session that ends in it. The `EXCLUSIVE` lock
/// makes that hold here too (writers of the month wait; readers do not), so what is
/// read of the month below does not change before the drop. Sessions with events in
/// other months as well are locked by their visitors first, as the row path and an
/// erase lock them before they touch the events table.
fn drop_month_in_transaction(
    tx: &mut Tx<'_>,
    month: &MonthPartition,
    policy: &RetentionPolicy,
) -> Result<Option<RetentionRun>, StoreError> {
    // Another collector's sweep dropping the same month: it does the work.
    if !tx.try_lock(LockSpace::Partitions, &month.name)? {
        return Ok(None);
    }
    let exists: bool = tx
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&month.name])?
        .try_get(0)?;
    if !exists {
        return Ok(None);
    }
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{PARTITION_LOCK_TIMEOUT}'"
    ))?;
    let mut held = BTreeSet::new();
    let spanning = sessions_spanning(tx, month)?;
    lock_visitors(
        tx,
        &mut held,
        spanning
            .iter()
            .map(|(_, deployment_id, visitor_id)| visitor_key(deployment_id, visitor_id)),
    )?;
    // DDL takes no parameters; the name is made by `partitions`, not read.
    tx.batch_execute(&format!("LOCK TABLE {} IN EXCLUSIVE MODE", month.name))?;
    let summarised_until_ms = summarised_until_ms(tx)?;
    // The month's events, per deployment, by the parent table with the month's bounds
    // (pruned to the partition), so that the statement is prepared once for all months.
    let mut events = 0;
    for row in tx.query(
        "SELECT deployment_id, COUNT(*), MAX(received_ms) FROM events
         WHERE time_ms >= $1 AND time_ms < $2 GROUP BY deployment_id",
        &[&month.start_ms, &month.end_ms],
    )? {
        let deployment_id: &str = row.try_get(0)?;
        let past_retention = policy
            .cutoffs_ms
            .get(deployment_id)
            .is_some_and(|&cutoff_ms| month.end_ms <= cutoff_ms);
        // An event received on a day the usage figures do not hold yet keeps its
        // session, as on the row path.
        let summarised = row.try_get::<_, i64>(2)? < summarised_until_ms;
        if !past_retention || !summarised {
            return Ok(None);
        }
        events += to_count(row.try_get(1)?);
    }
    // Sessions that also have events in another month go whole: those events are
    // deleted row by row. Read again under the locks; one whose visitor was not
    // locked (an erase or a row-path chunk changed it meanwhile) waits for a later run.
    let spanning = sessions_spanning(tx, month)?;
    for (session_id, deployment_id, visitor_id) in &spanning {
        let Some(&cutoff_ms) = policy.cutoffs_ms.get(deployment_id) else {
            return Ok(None);
        };
        if !held.contains(&visitor_key(deployment_id, visitor_id)) {
            return Ok(None);
        }
        let deletable = tx
            .query_opt(
                "SELECT 1 FROM sessions
                 WHERE id = $1 AND first_ms < $2 AND last_ms < $2 AND last_ms < $3
                   AND NOT EXISTS (SELECT 1 FROM events
                                   WHERE session_id = sessions.id AND received_ms >= $4)",
                &[
                    session_id,
                    &cutoff_ms,
                    &policy.settled_before_ms,
                    &summarised_until_ms,
                ],
            )?
            .is_some();
        if !deletable {
            return Ok(None);
        }
    }
    let spanning_ids: Vec<&str> = spanning.iter().map(|(id, _, _)| id.as_str()).collect();
    let elsewhere: Vec<String> = tx
        .query(
            "DELETE FROM events
             WHERE session_id = ANY($1) AND (time_ms < $2 OR time_ms >= $3) RETURNING id",
            &[&spanning_ids, &month.start_ms, &month.end_ms],
        )?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    tx.execute("DELETE FROM event_ids WHERE id = ANY($1)", &[&elsewhere])?;
    // What the row path deletes with a session, for every session of the month at once
    // (the month's sessions are read once); the month's own events go with the table.
    let sessions = to_count(
        tx.query_one(
            "WITH gone AS (SELECT DISTINCT session_id AS id FROM events
                           WHERE time_ms >= $1 AND time_ms < $2),
                  ids AS (DELETE FROM event_ids WHERE id IN (SELECT id FROM events
                                                             WHERE time_ms >= $1 AND time_ms < $2)),
                  assignments AS (DELETE FROM session_segment_assignments
                                  WHERE session_id IN (SELECT id FROM gone)),
                  achievements AS (DELETE FROM session_outcome_achievements
                                   WHERE session_id IN (SELECT id FROM gone)),
                  visits AS (DELETE FROM session_visit_evaluations
                             WHERE session_id IN (SELECT id FROM gone)),
                  counts AS (DELETE FROM journey_pattern_counts
                             WHERE scope_key IN (SELECT 'session:' || id FROM gone)),
                  deleted AS (DELETE FROM sessions WHERE id IN (SELECT id FROM gone) RETURNING 1)
             SELECT COUNT(*) FROM deleted",
            &[&month.start_ms, &month.end_ms],
        )?
        .try_get(0)?,
    );
    // Takes the events table's strongest lock until the commit, which follows at once.
    tx.batch_execute(&format!("DROP TABLE {}", month.name))?;
    Ok(Some(RetentionRun {
        sessions,
        events: events + u64::try_from(elsewhere.len()).unwrap_or(u64::MAX),
    }))
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
            sessions: sessions
                .into_iter()
                .map(|session| privacy::SessionKey {
                    id: session.id,
                    first_ms: session.first_ms,
                })
                .collect(),
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

    fn drop_expired_partitions(
        &self,
        policy: &RetentionPolicy,
        max_partitions: usize,
    ) -> Result<RetentionRun, StoreError> {
        let Some(&latest_cutoff_ms) = policy.cutoffs_ms.values().max() else {
            return Ok(RetentionRun::default());
        };
        // Oldest first, as retention deletes; never a month that may still get rows
        // (which also keeps the current and the coming months).
        let months: Vec<MonthPartition> = {
            let mut connection = self.connection()?;
            let mut tx = connection.transaction(true)?;
            partitions::monthly(&mut tx)?
                .into_iter()
                .filter(|month| {
                    month.end_ms <= latest_cutoff_ms && month.end_ms <= policy.settled_before_ms
                })
                .collect()
        };
        let mut total = RetentionRun::default();
        let mut dropped = 0;
        for month in &months {
            if dropped >= max_partitions {
                break;
            }
            let dropping: Vec<String> = policy
                .cutoffs_ms
                .iter()
                .filter(|(_, &cutoff_ms)| month.end_ms <= cutoff_ms)
                .map(|(deployment_id, _)| deployment_id.clone())
                .collect();
            let kept = {
                let mut connection = self.connection()?;
                let mut tx = connection.transaction(true)?;
                month_kept_by_another_deployment(&mut tx, month, &dropping)?
            };
            if kept {
                continue;
            }
            match self.write_retrying(|tx| drop_month_in_transaction(tx, month, policy)) {
                Ok(Some(run)) => {
                    tracing::info!(
                        partition = %month.name,
                        sessions = run.sessions,
                        events = run.events,
                        "dropped a month of events past retention"
                    );
                    // An empty month costs its drop only: it does not count.
                    if run.events > 0 {
                        dropped += 1;
                    }
                    total += run;
                }
                Ok(None) => {}
                // Busy: the next run tries again, and the row path goes on meanwhile.
                Err(error) if is_lock_timeout(&error) => {
                    tracing::warn!(partition = %month.name, "a month's drop waited too long for a lock");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(total)
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
