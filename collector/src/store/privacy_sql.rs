//! The SQL of data rights and retention ([`crate::privacy`]): finding a subject's
//! sessions, erasing them into shells, and deleting whole sessions by age.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::sqlite::SqliteStore;
use super::StoreError;
use crate::privacy::{
    self, DataSubject, ErasureReport, PrivacyStore, RetentionRun, StoredCustomerSegment,
    SubjectSessions, EMPTIED_EVENT_MAPS, ERASED_EVENT_FIELDS,
};

/// A session of a subject, with the ids it had before an erase.
struct SubjectSession {
    id: String,
    deployment_id: String,
    visitor_id: String,
    first_ms: i64,
}

/// A subject's sessions and, for a visitor, the contact its cookie is linked to.
type FoundSubject = (Vec<SubjectSession>, Option<String>);

/// The subject's sessions, newest first (by creation); `None` when nothing is stored
/// under the subject's id.
fn find_subject(
    connection: &Connection,
    subject: &DataSubject,
) -> Result<Option<FoundSubject>, StoreError> {
    let mut sessions = Vec::new();
    let linked_contact_id = match subject {
        DataSubject::Contact { contact_id } => {
            let exists = connection
                .prepare_cached("SELECT 1 FROM contacts WHERE id = ?1")?
                .query_row([contact_id], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                return Ok(None);
            }
            let mut statement = connection.prepare_cached(
                "SELECT id, deployment_id, visitor_id, first_ms FROM sessions
                 WHERE contact_id = ?1",
            )?;
            let rows = statement.query_map([contact_id], subject_session_from_row)?;
            for row in rows {
                sessions.push(row?);
            }
            // The sessions of every cookie linked to the contact, also those from
            // before it identified itself: the cookie is one of its identifiers.
            let cookies: Vec<String> = connection
                .prepare_cached(
                    "SELECT value FROM contact_identifiers
                     WHERE contact_id = ?1 AND type = 'Cookie'",
                )?
                .query_map([contact_id], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            if !cookies.is_empty() {
                for deployment_id in deployments_with_sessions(connection)? {
                    for cookie in &cookies {
                        sessions.extend(visitor_sessions(connection, &deployment_id, cookie)?);
                    }
                }
            }
            None
        }
        DataSubject::Visitor {
            deployment_id,
            visitor_id,
        } => {
            sessions = visitor_sessions(connection, deployment_id, visitor_id)?;
            let linked = cookie_contact(connection, visitor_id)?;
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

fn subject_session_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SubjectSession> {
    Ok(SubjectSession {
        id: row.get(0)?,
        deployment_id: row.get(1)?,
        visitor_id: row.get(2)?,
        first_ms: row.get(3)?,
    })
}

fn visitor_sessions(
    connection: &Connection,
    deployment_id: &str,
    visitor_id: &str,
) -> Result<Vec<SubjectSession>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT id, deployment_id, visitor_id, first_ms FROM sessions
         WHERE deployment_id = ?1 AND visitor_id = ?2",
    )?;
    let rows = statement.query_map([deployment_id, visitor_id], subject_session_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn cookie_contact(connection: &Connection, visitor_id: &str) -> Result<Option<String>, StoreError> {
    Ok(connection
        .prepare_cached(
            "SELECT contact_id FROM contact_identifiers WHERE type = 'Cookie' AND value = ?1",
        )?
        .query_row([visitor_id], |row| row.get(0))
        .optional()?)
}

/// Every deployment that has a session, by a skip scan of the (deployment_id, ...)
/// index: one index seek per deployment rather than a pass over every session.
fn deployments_with_sessions(connection: &Connection) -> Result<Vec<String>, StoreError> {
    let mut statement = connection.prepare_cached(
        "WITH RECURSIVE deployment (id) AS (
             SELECT MIN(deployment_id) FROM sessions
             UNION ALL
             SELECT (SELECT MIN(deployment_id) FROM sessions WHERE deployment_id > deployment.id)
             FROM deployment WHERE deployment.id IS NOT NULL
         )
         SELECT id FROM deployment WHERE id IS NOT NULL",
    )?;
    let rows = statement.query_map([], |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
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
fn erase_session(connection: &Connection, session_id: &str) -> Result<u64, StoreError> {
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
    let events = connection
        .prepare_cached(&format!(
            "UPDATE events SET visitor_id = ?2, {} WHERE session_id = ?1",
            cleared.join(", ")
        ))?
        .execute(params![session_id, shell_visitor_id])?;
    let pages: Vec<(String, String)> = connection
        .prepare_cached(
            "SELECT id, page_url FROM events WHERE session_id = ?1 AND page_url IS NOT NULL",
        )?
        .query_map([session_id], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    {
        let mut update =
            connection.prepare_cached("UPDATE events SET page_url = ?2 WHERE id = ?1")?;
        for (event_id, url) in &pages {
            let kept = privacy::erased_page_url(url);
            if kept.as_deref() != Some(url.as_str()) {
                update.execute(params![event_id, kept])?;
            }
        }
    }
    connection
        .prepare_cached(
            // contact_link stays: how a link had been made ('Verified', 'Cookie'),
            // without whom, which the usage figures count as an identified session.
            "UPDATE sessions SET visitor_id = ?2, contact_id = NULL,
                 search_terms_json = '[]', user_agent_json = NULL, geolocation_json = NULL,
                 ended_ms = COALESCE(ended_ms, last_ms), closed = 1
             WHERE id = ?1",
        )?
        .execute(params![session_id, shell_visitor_id])?;
    connection
        .prepare_cached("DELETE FROM session_segment_assignments WHERE session_id = ?1")?
        .execute([session_id])?;
    connection
        .prepare_cached(
            "UPDATE session_outcome_achievements SET associated_value = NULL
             WHERE session_id = ?1",
        )?
        .execute([session_id])?;
    connection
        .prepare_cached("DELETE FROM session_visit_evaluations WHERE session_id = ?1")?
        .execute([session_id])?;
    connection
        .prepare_cached("DELETE FROM journey_pattern_counts WHERE scope_key = 'session:' || ?1")?
        .execute([session_id])?;
    Ok(events as u64)
}

/// Deletes one session with everything that refers to it; returns how many events
/// it had.
fn delete_session(connection: &Connection, session_id: &str) -> Result<u64, StoreError> {
    let events = connection
        .prepare_cached("DELETE FROM events WHERE session_id = ?1")?
        .execute([session_id])?;
    for statement in [
        "DELETE FROM session_segment_assignments WHERE session_id = ?1",
        "DELETE FROM session_outcome_achievements WHERE session_id = ?1",
        "DELETE FROM session_visit_evaluations WHERE session_id = ?1",
        "DELETE FROM journey_pattern_counts WHERE scope_key = 'session:' || ?1",
        "DELETE FROM sessions WHERE id = ?1",
    ] {
        connection
            .prepare_cached(statement)?
            .execute([session_id])?;
    }
    Ok(events as u64)
}

/// Runs `work` with SQLite's `secure_delete` on, so that what an erase or retention
/// removes is overwritten with zeros in the database file rather than left in free
/// space. Only for these writes: ingest's many small updates do not pay for it. Older
/// copies of the pages stay in the write-ahead log until it is reused.
fn with_secure_delete<T>(
    connection: &mut Connection,
    work: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    connection.pragma_update(None, "secure_delete", true)?;
    let result = work(connection);
    let reset = connection.pragma_update(None, "secure_delete", false);
    let value = result?;
    reset?;
    Ok(value)
}

impl PrivacyStore for SqliteStore {
    fn subject_sessions(
        &self,
        subject: &DataSubject,
    ) -> Result<Option<SubjectSessions>, StoreError> {
        let mut connection = self.reader();
        let transaction = connection.transaction()?;
        let Some((sessions, linked_contact_id)) = find_subject(&transaction, subject)? else {
            return Ok(None);
        };
        let (contact_id, visitors) = subject_keys(subject, &sessions);
        let mut customer_segments = Vec::new();
        {
            let mut statement = transaction.prepare_cached(
                "SELECT segment_id, display_name, assigned_ms, expires_ms
                 FROM customer_segment_assignments WHERE customer_key = ?1
                 ORDER BY assigned_ms, segment_id",
            )?;
            for key in privacy::customer_keys(contact_id, &visitors) {
                let rows = statement.query_map([&key], |row| {
                    Ok(StoredCustomerSegment {
                        segment_id: row.get(0)?,
                        display_name: row.get(1)?,
                        assigned_ms: row.get(2)?,
                        expires_ms: row.get(3)?,
                    })
                })?;
                for row in rows {
                    customer_segments.push(row?);
                }
            }
        }
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
        with_secure_delete(&mut self.writer(), |connection| {
            erase_in_transaction(connection, subject)
        })
    }

    fn delete_sessions_before(
        &self,
        deployment_id: &str,
        before_ms: i64,
        max_sessions: usize,
    ) -> Result<RetentionRun, StoreError> {
        with_secure_delete(&mut self.writer(), |connection| {
            delete_before_in_transaction(connection, deployment_id, before_ms, max_sessions)
        })
    }
}

fn erase_in_transaction(
    connection: &mut Connection,
    subject: &DataSubject,
) -> Result<Option<ErasureReport>, StoreError> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some((sessions, _)) = find_subject(&transaction, subject)? else {
        return Ok(None);
    };
    let mut report = ErasureReport::default();
    let mut visitors: Vec<(String, String)> = Vec::new();
    for session in &sessions {
        report.events += erase_session(&transaction, &session.id)?;
        report.sessions += 1;
        visitors.push((session.deployment_id.clone(), session.visitor_id.clone()));
    }
    let contact_id = match subject {
        DataSubject::Contact { contact_id } => {
            report.cookie_links = transaction
                .prepare_cached(
                    "SELECT COUNT(*) FROM contact_identifiers
                         WHERE contact_id = ?1 AND type = 'Cookie'",
                )?
                .query_row([contact_id], |row| row.get::<_, i64>(0))?
                .try_into()
                .unwrap_or_default();
            // Its identifiers go with it (ON DELETE CASCADE).
            report.contact_deleted = transaction
                .prepare_cached("DELETE FROM contacts WHERE id = ?1")?
                .execute([contact_id])?
                > 0;
            Some(contact_id.as_str())
        }
        DataSubject::Visitor {
            deployment_id,
            visitor_id,
        } => {
            visitors.push((deployment_id.clone(), visitor_id.clone()));
            report.cookie_links = transaction
                .prepare_cached(
                    "DELETE FROM contact_identifiers WHERE type = 'Cookie' AND value = ?1",
                )?
                .execute([visitor_id])? as u64;
            None
        }
    };
    for key in privacy::customer_keys(contact_id, &visitors) {
        transaction
            .prepare_cached("DELETE FROM customer_segment_assignments WHERE customer_key = ?1")?
            .execute([&key])?;
        transaction
            .prepare_cached("DELETE FROM journey_pattern_counts WHERE scope_key = ?1")?
            .execute([&key])?;
    }
    transaction.commit()?;
    Ok(Some(report))
}

fn delete_before_in_transaction(
    connection: &mut Connection,
    deployment_id: &str,
    before_ms: i64,
    max_sessions: usize,
) -> Result<RetentionRun, StoreError> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // A session with an event received on a day that the usage figures do not
    // hold yet stays until they do (crate::usage).
    let summarised_until_ms: i64 = transaction
        .prepare_cached("SELECT summarised_until_day FROM usage_summary_state WHERE one = 1")?
        .query_row([], |row| row.get::<_, i64>(0))
        .optional()?
        .map_or(i64::MIN, |day| {
            day.saturating_mul(privacy::MILLISECONDS_PER_DAY)
        });
    // Oldest first by the (deployment_id, first_ms, id) index: a session's last
    // activity is never before its first.
    let session_ids: Vec<String> = transaction
        .prepare_cached(
            "SELECT id FROM sessions INDEXED BY sessions_by_deployment_created
                 WHERE deployment_id = ?1 AND first_ms < ?2 AND last_ms < ?2
                   AND NOT EXISTS (SELECT 1 FROM events
                                   WHERE session_id = sessions.id AND received_ms >= ?4)
                 ORDER BY first_ms, id LIMIT ?3",
        )?
        .query_map(
            params![
                deployment_id,
                before_ms,
                i64::try_from(max_sessions).unwrap_or(i64::MAX),
                summarised_until_ms
            ],
            |row| row.get(0),
        )?
        .collect::<Result<_, _>>()?;
    let mut run = RetentionRun::default();
    for session_id in &session_ids {
        run.events += delete_session(&transaction, session_id)?;
        run.sessions += 1;
    }
    transaction.commit()?;
    Ok(run)
}
