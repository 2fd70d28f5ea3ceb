//! SQLite's implementation of the ingest core's row operations
//! ([`crate::ingest::IngestTransaction`]), on the writer's open transaction.
//!
//! Serialisation comes from SQLite itself: one write transaction at a time (the
//! writer thread's, taken IMMEDIATE), so every per-visitor and per-customer guarantee
//! the trait asks for holds without locks of its own.

use rusqlite::{params, Row, Transaction};

/// A visitor's sessions an event may join. `INDEXED BY`, because SQLite's planner
/// (with no `ANALYZE` statistics, as here) preferred `sessions_by_deployment_created`
/// for the `first_ms` bound once that index existed, and then read every session of
/// the deployment on every batch: measured, the ingest writer's CPU went from 12 to 60
/// µs per event with 10,000 sessions. A missing index now fails the statement loudly.
pub(super) const CANDIDATE_SESSIONS: &str =
    "SELECT id, first_ms, last_ms, ended_ms FROM sessions INDEXED BY sessions_by_visitor
     WHERE deployment_id = ?1 AND visitor_id = ?2 AND last_ms > ?3 AND first_ms < ?4
       AND closed = 0";

/// Whether a short id is in use among the deployment's recent sessions.
pub(super) const SHORT_ID_TAKEN: &str = "SELECT 1 FROM sessions INDEXED BY sessions_by_short_id
     WHERE deployment_id = ?1 AND short_id = ?2 AND last_ms >= ?3";

use super::contacts_sql;
use super::segments_sql;
use super::sqlite::{from_json, insert_event, parse_kind, to_json, EventJson};
use crate::contacts::ContactFields;
use crate::identity::LinkKind;
use crate::ingest::store::{
    AssignmentExpiry, CandidateSession, CustomerAssignment, IdentityFacts, NewSession,
    PatternCount, SessionIdentity, SessionMatches, SpanUpdate, StoredVisitFacts, SummaryFacts,
    SummaryRow,
};
use crate::ingest::IngestTransaction;
use crate::model::{
    ContactId, DeploymentId, IdentifierKind, NewBatch, NewEvent, SessionId, StoreError,
    StoredContact, VisitorId,
};
use crate::segments::{OutcomeAchievement, SegmentAssignment, StoredDefinition};
use crate::sessions::SessionSpan;

/// One batch's ingest on the writer's transaction.
pub(super) struct SqliteIngest<'t, 'c> {
    transaction: &'t Transaction<'c>,
}

impl<'t, 'c> SqliteIngest<'t, 'c> {
    pub(super) fn new(transaction: &'t Transaction<'c>) -> SqliteIngest<'t, 'c> {
        SqliteIngest { transaction }
    }
}

fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl IngestTransaction for SqliteIngest<'_, '_> {
    fn event_exists(&mut self, event_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .transaction
            .prepare_cached("SELECT 1 FROM events WHERE id = ?1")?
            .exists([event_id])?)
    }

    fn candidate_sessions(
        &mut self,
        deployment_id: &DeploymentId,
        visitor_id: &VisitorId,
        last_after_ms: i64,
        first_before_ms: i64,
    ) -> Result<Vec<CandidateSession>, StoreError> {
        let mut statement = self.transaction.prepare_cached(CANDIDATE_SESSIONS)?;
        let mut rows = statement.query(params![
            deployment_id.as_str(),
            visitor_id.as_str(),
            last_after_ms,
            first_before_ms,
        ])?;
        let mut sessions = Vec::new();
        while let Some(row) = rows.next()? {
            sessions.push(CandidateSession {
                id: SessionId::new(row.get::<_, String>(0)?),
                span: SessionSpan {
                    first_ms: row.get(1)?,
                    last_ms: row.get(2)?,
                },
                ended_ms: row.get(3)?,
            });
        }
        Ok(sessions)
    }

    fn short_id_taken(
        &mut self,
        deployment_id: &DeploymentId,
        short_id: &str,
        active_since_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(self
            .transaction
            .prepare_cached(SHORT_ID_TAKEN)?
            .exists(params![deployment_id.as_str(), short_id, active_since_ms])?)
    }

    fn insert_session(&mut self, session: &NewSession<'_>) -> Result<(), StoreError> {
        self.transaction
            .prepare_cached(
                "INSERT INTO sessions (id, short_id, deployment_id, visitor_id, first_ms, last_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            )?
            .execute(params![
                session.id.as_str(),
                session.short_id,
                session.deployment_id.as_str(),
                session.visitor_id.as_str(),
                session.first_ms
            ])?;
        Ok(())
    }

    fn update_session_span(
        &mut self,
        session_id: &SessionId,
        update: &SpanUpdate,
    ) -> Result<(), StoreError> {
        // Setting first_ms rewrites the entries of the indexes that hold it, even with
        // the same value: only late events move it.
        if update.first_moved {
            self.transaction
                .prepare_cached(
                    "UPDATE sessions SET first_ms = ?2, last_ms = ?3, ended_ms = ?4 WHERE id = ?1",
                )?
                .execute(params![
                    session_id.as_str(),
                    update.span.first_ms,
                    update.span.last_ms,
                    update.ended_ms
                ])?;
        } else {
            self.transaction
                .prepare_cached("UPDATE sessions SET last_ms = ?2, ended_ms = ?3 WHERE id = ?1")?
                .execute(params![
                    session_id.as_str(),
                    update.span.last_ms,
                    update.ended_ms
                ])?;
        }
        Ok(())
    }

    fn close_session(&mut self, session_id: &SessionId, ended_ms: i64) -> Result<(), StoreError> {
        self.transaction
            .prepare_cached("UPDATE sessions SET ended_ms = ?2, closed = 1 WHERE id = ?1")?
            .execute(params![session_id.as_str(), ended_ms])?;
        Ok(())
    }

    fn session_summary(&mut self, session_id: &SessionId) -> Result<SummaryRow, StoreError> {
        let mut statement = self.transaction.prepare_cached(
            "SELECT s.event_count, s.pageview_count, s.last_event_id, le.time_ms,
                    s.last_pageview_id, s.landing_pageview_id, s.context_event_id,
                    s.search_terms_json, s.user_agent_json, s.geolocation_json
             FROM sessions s LEFT JOIN events le ON le.id = s.last_event_id
             WHERE s.id = ?1",
        )?;
        let mut rows = statement.query([session_id.as_str()])?;
        let row = rows
            .next()?
            .ok_or_else(|| StoreError::Corrupt(format!("session {session_id} vanished")))?;
        let last_event_id: Option<String> = row.get(2)?;
        let last_event_time_ms: Option<i64> = row.get(3)?;
        Ok(SummaryRow {
            event_count: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
            pageview_count: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
            last_event: last_event_id
                .zip(last_event_time_ms)
                .map(|(id, time_ms)| (time_ms, id)),
            last_pageview_id: row.get(4)?,
            landing_pageview_id: row.get(5)?,
            context_event_id: row.get(6)?,
            search_terms: serde_json::from_str(&row.get::<_, String>(7)?)?,
            user_agent_info: from_json(row.get(8)?)?,
            geolocation: from_json(row.get(9)?)?,
        })
    }

    fn write_session_summary(
        &mut self,
        session_id: &SessionId,
        summary: &SummaryRow,
    ) -> Result<(), StoreError> {
        self.transaction
            .prepare_cached(
                "UPDATE sessions SET
                    event_count = ?2, pageview_count = ?3, last_event_id = ?4,
                    last_pageview_id = ?5, landing_pageview_id = ?6, context_event_id = ?7,
                    search_terms_json = ?8, user_agent_json = ?9, geolocation_json = ?10
                 WHERE id = ?1",
            )?
            .execute(params![
                session_id.as_str(),
                count(summary.event_count),
                count(summary.pageview_count),
                summary.last_event.as_ref().map(|(_, id)| id),
                summary.last_pageview_id,
                summary.landing_pageview_id,
                summary.context_event_id,
                serde_json::to_string(&summary.search_terms)?,
                to_json(summary.user_agent_info.as_ref())?,
                to_json(summary.geolocation.as_ref())?,
            ])?;
        Ok(())
    }

    fn session_summary_facts(
        &mut self,
        session_id: &SessionId,
    ) -> Result<Vec<SummaryFacts>, StoreError> {
        let mut statement = self.transaction.prepare_cached(
            "SELECT id, time_ms, kind, context_json IS NOT NULL, page_search_query,
                    user_agent_json, geolocation_json
             FROM events WHERE session_id = ?1 ORDER BY time_ms, id",
        )?;
        let mut rows = statement.query([session_id.as_str()])?;
        let mut facts = Vec::new();
        while let Some(row) = rows.next()? {
            facts.push(summary_facts_from_row(row)?);
        }
        Ok(facts)
    }

    fn insert_event(
        &mut self,
        batch: &NewBatch,
        session_id: &SessionId,
        event: &NewEvent,
        authenticated: bool,
    ) -> Result<(), StoreError> {
        let json = EventJson::new(event)?;
        insert_event(
            self.transaction,
            batch,
            session_id.as_str(),
            event,
            authenticated,
            &json,
        )
    }

    fn identity_facts(
        &mut self,
        visitor_id: &VisitorId,
        session_id: &SessionId,
    ) -> Result<IdentityFacts, StoreError> {
        // One query for every event, anonymous ones included.
        Ok(self
            .transaction
            .prepare_cached(
                "SELECT (SELECT contact_id FROM contact_identifiers
                         WHERE type = 'Cookie' AND value = ?1),
                        s.authenticated, s.contact_id, s.contact_link
                 FROM sessions s WHERE s.id = ?2",
            )?
            .query_row([visitor_id.as_str(), session_id.as_str()], |row| {
                Ok(IdentityFacts {
                    cookie_contact: row.get::<_, Option<String>>(0)?.map(ContactId::new),
                    authenticated: row.get(1)?,
                    session_contact: row.get::<_, Option<String>>(2)?.map(ContactId::new),
                    session_link: row
                        .get::<_, Option<String>>(3)?
                        .as_deref()
                        .and_then(LinkKind::parse),
                })
            })?)
    }

    fn contacts_with_identifier(
        &mut self,
        kind: IdentifierKind,
        value: &str,
    ) -> Result<Vec<ContactId>, StoreError> {
        let mut statement = self.transaction.prepare_cached(
            "SELECT c.id FROM contact_identifiers i JOIN contacts c ON c.id = i.contact_id
             WHERE i.type = ?1 AND i.value = ?2
             ORDER BY c.create_ms, c.id",
        )?;
        let rows = statement.query_map(params![kind.as_str(), value], |row| {
            row.get::<_, String>(0).map(ContactId::new)
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn remove_cookie(&mut self, visitor_id: &VisitorId) -> Result<(), StoreError> {
        self.transaction
            .prepare_cached("DELETE FROM contact_identifiers WHERE type = 'Cookie' AND value = ?1")?
            .execute([visitor_id.as_str()])?;
        Ok(())
    }

    fn add_cookie(
        &mut self,
        contact_id: &ContactId,
        visitor_id: &VisitorId,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.transaction
            .prepare_cached(
                "INSERT INTO contact_identifiers (contact_id, type, value, created_ms)
                 VALUES (?1, 'Cookie', ?2, ?3)",
            )?
            .execute(params![contact_id.as_str(), visitor_id.as_str(), now_ms])?;
        Ok(())
    }

    fn link_session(
        &mut self,
        session_id: &SessionId,
        contact_id: &ContactId,
        link: LinkKind,
    ) -> Result<(), StoreError> {
        self.transaction
            .prepare_cached("UPDATE sessions SET contact_id = ?2, contact_link = ?3 WHERE id = ?1")?
            .execute(params![
                session_id.as_str(),
                contact_id.as_str(),
                link.as_str()
            ])?;
        Ok(())
    }

    fn set_session_authenticated(
        &mut self,
        session_id: &SessionId,
        authenticated: bool,
    ) -> Result<(), StoreError> {
        self.transaction
            .prepare_cached("UPDATE sessions SET authenticated = ?2 WHERE id = ?1")?
            .execute(params![session_id.as_str(), authenticated])?;
        Ok(())
    }

    fn contact(&mut self, contact_id: &ContactId) -> Result<Option<StoredContact>, StoreError> {
        contacts_sql::load_contact(self.transaction, contact_id.as_str())
    }

    fn replace_contact_fields(
        &mut self,
        contact_id: &ContactId,
        fields: &ContactFields,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        contacts_sql::update_contact(self.transaction, contact_id.as_str(), fields, now_ms)?;
        Ok(())
    }

    fn definitions_generation(&mut self) -> Result<i64, StoreError> {
        segments_sql::generation(self.transaction)
    }

    fn active_definitions(&mut self) -> Result<Vec<StoredDefinition>, StoreError> {
        segments_sql::all_definitions(self.transaction)
    }

    fn session_identity(&mut self, session_id: &SessionId) -> Result<SessionIdentity, StoreError> {
        segments_sql::session_identity(self.transaction, session_id)
    }

    fn session_visit_facts(
        &mut self,
        session_id: &SessionId,
    ) -> Result<StoredVisitFacts, StoreError> {
        segments_sql::session_visit_facts(self.transaction, session_id)
    }

    fn session_matches(&mut self, session_id: &SessionId) -> Result<SessionMatches, StoreError> {
        segments_sql::session_matches(self.transaction, session_id)
    }

    fn visit_fingerprint(&mut self, session_id: &SessionId) -> Result<Option<String>, StoreError> {
        segments_sql::visit_fingerprint(self.transaction, session_id)
    }

    fn write_visit_fingerprint(
        &mut self,
        session_id: &SessionId,
        fingerprint: &str,
    ) -> Result<(), StoreError> {
        segments_sql::write_visit_fingerprint(self.transaction, session_id, fingerprint)
    }

    fn pattern_counts(&mut self, scope_key: &str) -> Result<Vec<PatternCount>, StoreError> {
        segments_sql::pattern_counts(self.transaction, scope_key)
    }

    fn write_pattern_counts(&mut self, counts: &[PatternCount]) -> Result<(), StoreError> {
        segments_sql::write_pattern_counts(self.transaction, counts)
    }

    fn customer_assignments(
        &mut self,
        customer_key: &str,
    ) -> Result<Vec<AssignmentExpiry>, StoreError> {
        segments_sql::customer_assignments(self.transaction, customer_key)
    }

    fn live_customer_assignments(
        &mut self,
        customer_key: &str,
        visitor_key: &str,
        now_ms: i64,
    ) -> Result<Vec<CustomerAssignment>, StoreError> {
        segments_sql::live_customer_assignments(self.transaction, customer_key, visitor_key, now_ms)
    }

    fn write_customer_assignments(
        &mut self,
        assignments: &[CustomerAssignment],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        segments_sql::write_customer_assignments(self.transaction, assignments, now_ms)
    }

    fn write_segment_assignments(
        &mut self,
        assignments: &[(SessionId, SegmentAssignment)],
    ) -> Result<(), StoreError> {
        segments_sql::write_segment_assignments(self.transaction, assignments)
    }

    fn write_outcome_achievements(
        &mut self,
        achievements: &[(SessionId, OutcomeAchievement)],
    ) -> Result<(), StoreError> {
        segments_sql::write_outcome_achievements(self.transaction, achievements)
    }

    fn lock_customer(&mut self, _contact_id: &ContactId) -> Result<(), StoreError> {
        // The single writer serialises every transaction already.
        Ok(())
    }
}

fn summary_facts_from_row(row: &Row<'_>) -> Result<SummaryFacts, StoreError> {
    Ok(SummaryFacts {
        id: row.get(0)?,
        time_ms: row.get(1)?,
        kind: parse_kind(&row.get::<_, String>(2)?)?,
        has_context: row.get(3)?,
        search_query: row.get(4)?,
        user_agent_info: from_json(row.get(5)?)?,
        geolocation: from_json(row.get(6)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan SQLite makes for a statement (its `detail` column).
    fn plan(connection: &rusqlite::Connection, sql: &str, parameters: usize) -> String {
        let mut statement = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let values: Vec<i64> = (0..parameters).map(|_| 0).collect();
        let rows = statement
            .query_map(rusqlite::params_from_iter(values), |row| {
                row.get::<_, String>(3)
            })
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    }

    #[test]
    fn the_ingest_lookups_search_by_visitor_and_by_short_id() {
        // Every batch runs these: a scan of the deployment's sessions would make a
        // batch cost grow with every session ever made.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plans.sqlite3");
        drop(super::super::SqliteStore::open(&path).unwrap());
        let connection = rusqlite::Connection::open(&path).unwrap();
        for (sql, parameters, index) in [
            (
                CANDIDATE_SESSIONS,
                4,
                "sessions_by_visitor (deployment_id=? AND visitor_id=? AND last_ms>?)",
            ),
            (
                SHORT_ID_TAKEN,
                3,
                "sessions_by_short_id (deployment_id=? AND short_id=?",
            ),
        ] {
            let plan = plan(&connection, sql, parameters);
            assert!(plan.contains(index), "{sql}: {plan}");
        }
    }
}
