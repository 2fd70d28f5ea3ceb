//! PostgreSQL's implementation of the ingest core's row operations
//! ([`crate::ingest::IngestTransaction`]) on one batch's transaction.
//!
//! Serialisation, as the trait asks, with transaction-scoped advisory locks (never a
//! global one):
//! - **per visitor**: the store takes the batch's visitor lock before the core reads
//!   anything ([`super::ingest_one`]), so two collectors' batches of one visitor run
//!   one after the other, and the second sees the first's sessions;
//! - **per customer**: every read or write of a contact's fields or cookies, and the
//!   first read of its Customer-scope segment counters and assignments
//!   ([`IngestTransaction::lock_customer`]), takes the contact's lock first;
//! - **short ids**: a candidate short id is locked (without waiting: a locked one counts
//!   as taken) before it is checked, so two transactions never both take it;
//! - **event ids**: [`IngestTransaction::event_exists`] claims the id in `event_ids`
//!   (INSERT ... ON CONFLICT DO NOTHING): a concurrent claim of the same id waits on the
//!   unique index until the first transaction ends, then finds the id taken.
//!
//! Events are inserted with multi-row statements: [`PostgresIngest::insert_event`]
//! buffers the row, and the buffer is written before anything reads events and when
//! the batch ends ([`PostgresIngest::finish`]).

use postgres::types::ToSql;

use super::super::sqlite::{from_json, parse_kind, to_json, EventJson};
use super::connection::{LockSpace, Tx};
use super::contacts::{load_contact, write_contact_fields};
use super::segments;
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

/// Columns of an events row, in the order [`EventRow::params`] gives them.
const EVENT_COLUMNS: &str = "id, session_id, deployment_id, visitor_id, kind, name,
    time_ms, client_time_ms, received_ms,
    page_url, page_title, page_referrer, page_lang, page_keywords, page_search_query,
    campaign_json, context_json, login_id, attributes_json, traits_json,
    user_agent, ip_address, authenticated, identity_verified,
    user_agent_json, geolocation_json, referrer_json";
const EVENT_COLUMN_COUNT: usize = 27;

/// Rows per multi-row insert: a batch holds at most 50 events, so one statement.
const EVENTS_PER_INSERT: usize = 64;

/// An event row waiting to be inserted.
struct EventRow {
    id: String,
    session_id: String,
    deployment_id: String,
    visitor_id: String,
    kind: &'static str,
    name: String,
    times: [i64; 3],
    page: [Option<String>; 6],
    login_id: Option<String>,
    json: EventJson,
    user_agent: Option<String>,
    ip_address: Option<String>,
    authenticated: bool,
    identity_verified: bool,
}

impl EventRow {
    fn params(&self) -> [&(dyn ToSql + Sync); EVENT_COLUMN_COUNT] {
        [
            &self.id,
            &self.session_id,
            &self.deployment_id,
            &self.visitor_id,
            &self.kind,
            &self.name,
            &self.times[0],
            &self.times[1],
            &self.times[2],
            &self.page[0],
            &self.page[1],
            &self.page[2],
            &self.page[3],
            &self.page[4],
            &self.page[5],
            &self.json.campaign,
            &self.json.context,
            &self.login_id,
            &self.json.attributes,
            &self.json.traits,
            &self.user_agent,
            &self.ip_address,
            &self.authenticated,
            &self.identity_verified,
            &self.json.user_agent,
            &self.json.geolocation,
            &self.json.referrer,
        ]
    }
}

/// The key of a visitor's advisory lock.
pub(super) fn visitor_key(deployment_id: &str, visitor_id: &str) -> String {
    format!("{deployment_id}\n{visitor_id}")
}

fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// One batch's row operations on its transaction.
///
/// Each statement is a round trip to the server, so two per-event reads are answered
/// for the whole batch: the batch's event ids are claimed in one statement when the
/// first is asked about, and a session's identity facts are read once and kept until
/// this transaction writes any of them (only this transaction can: it holds the
/// visitor's lock, and the session's contact and authentication are written on the
/// ingest path only).
pub(super) struct PostgresIngest<'t, 'c> {
    tx: &'t mut Tx<'c>,
    batch: &'t NewBatch,
    deployment_id: &'t str,
    visitor_id: &'t str,
    pending_events: Vec<EventRow>,
    /// The batch's ids that this transaction claimed and has not yet been asked about;
    /// `None` until the first question.
    claimed_ids: Option<foldhash::HashSet<String>>,
    /// The identity facts last read, and of which visitor and session.
    identity: Option<(String, String, IdentityFacts)>,
}

impl<'t, 'c> PostgresIngest<'t, 'c> {
    /// Row operations for `batch`, whose visitor lock the caller holds.
    pub(super) fn new(tx: &'t mut Tx<'c>, batch: &'t NewBatch) -> PostgresIngest<'t, 'c> {
        PostgresIngest {
            tx,
            batch,
            deployment_id: &batch.deployment_id,
            visitor_id: &batch.visitor_id,
            pending_events: Vec::new(),
            claimed_ids: None,
            identity: None,
        }
    }

    /// Writes the buffered events; the caller commits after this.
    pub(super) fn finish(mut self) -> Result<(), StoreError> {
        self.flush_events()
    }

    fn flush_events(&mut self) -> Result<(), StoreError> {
        let rows = std::mem::take(&mut self.pending_events);
        for chunk in rows.chunks(EVENTS_PER_INSERT) {
            let mut sql = format!("INSERT INTO events ({EVENT_COLUMNS}) VALUES ");
            for row in 0..chunk.len() {
                sql.push_str(if row == 0 { "(" } else { ", (" });
                for column in 0..EVENT_COLUMN_COUNT {
                    if column > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!("${}", row * EVENT_COLUMN_COUNT + column + 1));
                }
                sql.push(')');
            }
            let params: Vec<&(dyn ToSql + Sync)> =
                chunk.iter().flat_map(|row| row.params()).collect();
            self.tx.execute(&sql, &params)?;
        }
        Ok(())
    }

    /// Claims every event id of the batch in one statement (sorted, so that two
    /// transactions claiming overlapping ids take them in one order and cannot
    /// deadlock), and returns those this transaction claimed: the others are stored, or
    /// claimed by a transaction that committed first. An id given twice in the batch is
    /// claimed once.
    fn claim_batch_ids(&mut self) -> Result<foldhash::HashSet<String>, StoreError> {
        let mut ids: Vec<&str> = self
            .batch
            .events
            .iter()
            .map(|event| event.id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let rows = self.tx.query(
            "INSERT INTO event_ids (id, deployment_id, visitor_id)
             SELECT id, $2, $3 FROM unnest($1::text[]) WITH ORDINALITY AS ids(id, n)
             ORDER BY n
             ON CONFLICT (id) DO NOTHING RETURNING id",
            &[&ids, &self.deployment_id, &self.visitor_id],
        )?;
        rows.iter()
            .map(|row| Ok(row.try_get::<_, String>(0)?))
            .collect()
    }

    /// Forgets the identity facts read: this transaction is about to change them.
    fn identity_changes(&mut self) {
        self.identity = None;
    }

    /// Takes the contact's lock: what the transaction reads of the contact next is
    /// what no other transaction changes until this one ends.
    fn lock_contact(&mut self, contact_id: &ContactId) -> Result<(), StoreError> {
        self.tx.lock(LockSpace::Contact, contact_id.as_str())
    }
}

impl IngestTransaction for PostgresIngest<'_, '_> {
    fn event_exists(&mut self, event_id: &str) -> Result<bool, StoreError> {
        // The first question claims the whole batch's ids: from then on this
        // transaction owns those it claimed (see the module's documentation), and the
        // core stores the event whenever this says false, which it says once per id.
        if self.claimed_ids.is_none() {
            self.claimed_ids = Some(self.claim_batch_ids()?);
        }
        let claimed = self
            .claimed_ids
            .as_mut()
            .is_some_and(|ids| ids.remove(event_id));
        if !claimed && !self.batch.events.iter().any(|event| event.id == event_id) {
            // Not one of the batch's: the core asks only about those.
            return Err(StoreError::Corrupt(format!(
                "event {event_id} is not in the batch being stored"
            )));
        }
        Ok(!claimed)
    }

    fn candidate_sessions(
        &mut self,
        deployment_id: &DeploymentId,
        visitor_id: &VisitorId,
        last_after_ms: i64,
        first_before_ms: i64,
    ) -> Result<Vec<CandidateSession>, StoreError> {
        let rows = self.tx.query(
            "SELECT id, first_ms, last_ms, ended_ms FROM sessions
             WHERE deployment_id = $1 AND visitor_id = $2 AND last_ms > $3 AND first_ms < $4
               AND NOT closed",
            &[
                &deployment_id.as_str(),
                &visitor_id.as_str(),
                &last_after_ms,
                &first_before_ms,
            ],
        )?;
        rows.iter()
            .map(|row| {
                Ok(CandidateSession {
                    id: SessionId::new(row.try_get::<_, String>(0)?),
                    span: SessionSpan {
                        first_ms: row.try_get(1)?,
                        last_ms: row.try_get(2)?,
                    },
                    ended_ms: row.try_get(3)?,
                })
            })
            .collect()
    }

    fn short_id_taken(
        &mut self,
        deployment_id: &DeploymentId,
        short_id: &str,
        active_since_ms: i64,
    ) -> Result<bool, StoreError> {
        // Another transaction creating a session with this short id holds its lock
        // until it commits: the number counts as taken, and the core draws another
        // (not waiting means two transactions can never deadlock over short ids).
        let key = format!("{deployment_id}\n{short_id}");
        if !self.tx.try_lock(LockSpace::ShortId, &key)? {
            return Ok(true);
        }
        Ok(self
            .tx
            .query_opt(
                "SELECT 1 FROM sessions
                 WHERE deployment_id = $1 AND short_id = $2 AND last_ms >= $3 LIMIT 1",
                &[&deployment_id.as_str(), &short_id, &active_since_ms],
            )?
            .is_some())
    }

    fn insert_session(&mut self, session: &NewSession<'_>) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO sessions (id, short_id, deployment_id, visitor_id, first_ms, last_ms)
             VALUES ($1, $2, $3, $4, $5, $5)",
            &[
                &session.id.as_str(),
                &session.short_id,
                &session.deployment_id.as_str(),
                &session.visitor_id.as_str(),
                &session.first_ms,
            ],
        )?;
        Ok(())
    }

    fn update_session_span(
        &mut self,
        session_id: &SessionId,
        update: &SpanUpdate,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE sessions SET first_ms = $2, last_ms = $3, ended_ms = $4 WHERE id = $1",
            &[
                &session_id.as_str(),
                &update.span.first_ms,
                &update.span.last_ms,
                &update.ended_ms,
            ],
        )?;
        Ok(())
    }

    fn close_session(&mut self, session_id: &SessionId, ended_ms: i64) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE sessions SET ended_ms = $2, closed = true WHERE id = $1",
            &[&session_id.as_str(), &ended_ms],
        )?;
        Ok(())
    }

    fn session_summary(&mut self, session_id: &SessionId) -> Result<SummaryRow, StoreError> {
        let row = self
            .tx
            .query_opt(
                "SELECT event_count, pageview_count, last_event_id, last_event_ms,
                        last_pageview_id, landing_pageview_id, context_event_id,
                        search_terms_json, user_agent_json, geolocation_json
                 FROM sessions WHERE id = $1",
                &[&session_id.as_str()],
            )?
            .ok_or_else(|| StoreError::Corrupt(format!("session {session_id} vanished")))?;
        let last_event_id: Option<String> = row.try_get(2)?;
        let last_event_ms: Option<i64> = row.try_get(3)?;
        Ok(SummaryRow {
            event_count: u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0),
            pageview_count: u64::try_from(row.try_get::<_, i64>(1)?).unwrap_or(0),
            last_event: last_event_id
                .zip(last_event_ms)
                .map(|(id, time_ms)| (time_ms, id)),
            last_pageview_id: row.try_get(4)?,
            landing_pageview_id: row.try_get(5)?,
            context_event_id: row.try_get(6)?,
            search_terms: serde_json::from_str(row.try_get::<_, &str>(7)?)?,
            user_agent_info: from_json(row.try_get(8)?)?,
            geolocation: from_json(row.try_get(9)?)?,
        })
    }

    fn write_session_summary(
        &mut self,
        session_id: &SessionId,
        summary: &SummaryRow,
    ) -> Result<(), StoreError> {
        let search_terms = serde_json::to_string(&summary.search_terms)?;
        self.tx.execute(
            "UPDATE sessions SET
                event_count = $2, pageview_count = $3, last_event_id = $4, last_event_ms = $5,
                last_pageview_id = $6, landing_pageview_id = $7, context_event_id = $8,
                search_terms_json = $9, user_agent_json = $10, geolocation_json = $11
             WHERE id = $1",
            &[
                &session_id.as_str(),
                &count(summary.event_count),
                &count(summary.pageview_count),
                &summary.last_event.as_ref().map(|(_, id)| id),
                &summary.last_event.as_ref().map(|(time_ms, _)| *time_ms),
                &summary.last_pageview_id,
                &summary.landing_pageview_id,
                &summary.context_event_id,
                &search_terms,
                &to_json(summary.user_agent_info.as_ref())?,
                &to_json(summary.geolocation.as_ref())?,
            ],
        )?;
        Ok(())
    }

    fn session_summary_facts(
        &mut self,
        session_id: &SessionId,
    ) -> Result<Vec<SummaryFacts>, StoreError> {
        // The batch's own events are among the session's.
        self.flush_events()?;
        let rows = self.tx.query(
            "SELECT id, time_ms, kind, context_json IS NOT NULL, page_search_query,
                    user_agent_json, geolocation_json
             FROM events WHERE session_id = $1 ORDER BY time_ms, id",
            &[&session_id.as_str()],
        )?;
        rows.iter()
            .map(|row| {
                Ok(SummaryFacts {
                    id: row.try_get(0)?,
                    time_ms: row.try_get(1)?,
                    kind: parse_kind(row.try_get(2)?)?,
                    has_context: row.try_get(3)?,
                    search_query: row.try_get(4)?,
                    user_agent_info: from_json(row.try_get(5)?)?,
                    geolocation: from_json(row.try_get(6)?)?,
                })
            })
            .collect()
    }

    fn insert_event(
        &mut self,
        batch: &NewBatch,
        session_id: &SessionId,
        event: &NewEvent,
        authenticated: bool,
    ) -> Result<(), StoreError> {
        let page = event.page.as_ref();
        self.pending_events.push(EventRow {
            id: event.id.clone(),
            session_id: session_id.as_str().to_owned(),
            deployment_id: batch.deployment_id.clone(),
            visitor_id: batch.visitor_id.clone(),
            kind: event.kind.as_str(),
            name: event.name.clone(),
            times: [event.time_ms, event.client_time_ms, event.received_ms],
            page: [
                page.map(|page| page.url.clone()),
                page.map(|page| page.title.clone()),
                page.map(|page| page.referrer.clone()),
                page.map(|page| page.lang.clone()),
                page.map(|page| page.keywords.clone()),
                page.and_then(|page| page.search_query.clone()),
            ],
            login_id: event.login_id.clone(),
            json: EventJson::new(event)?,
            user_agent: event.user_agent.clone(),
            ip_address: event.ip_address.clone(),
            authenticated,
            identity_verified: event.identity_verified,
        });
        Ok(())
    }

    fn identity_facts(
        &mut self,
        visitor_id: &VisitorId,
        session_id: &SessionId,
    ) -> Result<IdentityFacts, StoreError> {
        if let Some((visitor, session, facts)) = &self.identity {
            if visitor == visitor_id.as_str() && session == session_id.as_str() {
                return Ok(facts.clone());
            }
        }
        let row = self.tx.query_one(
            "SELECT (SELECT contact_id FROM contact_identifiers
                     WHERE type = 'Cookie' AND value = $1),
                    s.authenticated, s.contact_id, s.contact_link
             FROM sessions s WHERE s.id = $2",
            &[&visitor_id.as_str(), &session_id.as_str()],
        )?;
        let facts = IdentityFacts {
            cookie_contact: row.try_get::<_, Option<String>>(0)?.map(ContactId::new),
            authenticated: row.try_get(1)?,
            session_contact: row.try_get::<_, Option<String>>(2)?.map(ContactId::new),
            session_link: row.try_get::<_, Option<&str>>(3)?.and_then(LinkKind::parse),
        };
        self.identity = Some((
            visitor_id.as_str().to_owned(),
            session_id.as_str().to_owned(),
            facts.clone(),
        ));
        Ok(facts)
    }

    fn contacts_with_identifier(
        &mut self,
        kind: IdentifierKind,
        value: &str,
    ) -> Result<Vec<ContactId>, StoreError> {
        let rows = self.tx.query(
            "SELECT c.id FROM contact_identifiers i JOIN contacts c ON c.id = i.contact_id
             WHERE i.type = $1 AND i.value = $2
             ORDER BY c.create_ms, c.id",
            &[&kind.as_str(), &value],
        )?;
        rows.iter()
            .map(|row| Ok(ContactId::new(row.try_get::<_, String>(0)?)))
            .collect()
    }

    fn remove_cookie(&mut self, visitor_id: &VisitorId) -> Result<(), StoreError> {
        // The cookie is the visitor's, whose lock this transaction holds.
        self.identity_changes();
        self.tx.execute(
            "DELETE FROM contact_identifiers WHERE type = 'Cookie' AND value = $1",
            &[&visitor_id.as_str()],
        )?;
        Ok(())
    }

    fn add_cookie(
        &mut self,
        contact_id: &ContactId,
        visitor_id: &VisitorId,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.lock_contact(contact_id)?;
        self.identity_changes();
        self.tx.execute(
            "INSERT INTO contact_identifiers (contact_id, type, value, created_ms)
             VALUES ($1, 'Cookie', $2, $3)",
            &[&contact_id.as_str(), &visitor_id.as_str(), &now_ms],
        )?;
        Ok(())
    }

    fn link_session(
        &mut self,
        session_id: &SessionId,
        contact_id: &ContactId,
        link: LinkKind,
    ) -> Result<(), StoreError> {
        self.identity_changes();
        self.tx.execute(
            "UPDATE sessions SET contact_id = $2, contact_link = $3 WHERE id = $1",
            &[&session_id.as_str(), &contact_id.as_str(), &link.as_str()],
        )?;
        Ok(())
    }

    fn set_session_authenticated(
        &mut self,
        session_id: &SessionId,
        authenticated: bool,
    ) -> Result<(), StoreError> {
        self.identity_changes();
        self.tx.execute(
            "UPDATE sessions SET authenticated = $2 WHERE id = $1",
            &[&session_id.as_str(), &authenticated],
        )?;
        Ok(())
    }

    fn contact(&mut self, contact_id: &ContactId) -> Result<Option<StoredContact>, StoreError> {
        // Read under the contact's lock: the core may write fields derived from it.
        self.lock_contact(contact_id)?;
        load_contact(self.tx, contact_id.as_str())
    }

    fn replace_contact_fields(
        &mut self,
        contact_id: &ContactId,
        fields: &ContactFields,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.lock_contact(contact_id)?;
        write_contact_fields(self.tx, contact_id.as_str(), fields, now_ms)?;
        Ok(())
    }

    fn definitions_generation(&mut self) -> Result<i64, StoreError> {
        segments::generation(self.tx)
    }

    fn active_definitions(&mut self) -> Result<Vec<StoredDefinition>, StoreError> {
        segments::all_definitions(self.tx)
    }

    fn session_identity(&mut self, session_id: &SessionId) -> Result<SessionIdentity, StoreError> {
        segments::session_identity(self.tx, session_id)
    }

    fn session_visit_facts(
        &mut self,
        session_id: &SessionId,
    ) -> Result<StoredVisitFacts, StoreError> {
        segments::session_visit_facts(self.tx, session_id)
    }

    fn session_matches(&mut self, session_id: &SessionId) -> Result<SessionMatches, StoreError> {
        segments::session_matches(self.tx, session_id)
    }

    fn visit_fingerprint(&mut self, session_id: &SessionId) -> Result<Option<String>, StoreError> {
        segments::visit_fingerprint(self.tx, session_id)
    }

    fn write_visit_fingerprint(
        &mut self,
        session_id: &SessionId,
        fingerprint: &str,
    ) -> Result<(), StoreError> {
        segments::write_visit_fingerprint(self.tx, session_id, fingerprint)
    }

    fn pattern_counts(&mut self, scope_key: &str) -> Result<Vec<PatternCount>, StoreError> {
        segments::pattern_counts(self.tx, scope_key)
    }

    fn write_pattern_counts(&mut self, counts: &[PatternCount]) -> Result<(), StoreError> {
        segments::write_pattern_counts(self.tx, counts)
    }

    fn customer_assignments(
        &mut self,
        customer_key: &str,
    ) -> Result<Vec<AssignmentExpiry>, StoreError> {
        segments::customer_assignments(self.tx, customer_key)
    }

    fn live_customer_assignments(
        &mut self,
        customer_key: &str,
        visitor_key: &str,
        now_ms: i64,
    ) -> Result<Vec<CustomerAssignment>, StoreError> {
        segments::live_customer_assignments(self.tx, customer_key, visitor_key, now_ms)
    }

    fn write_customer_assignments(
        &mut self,
        assignments: &[CustomerAssignment],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        segments::write_customer_assignments(self.tx, assignments, now_ms)
    }

    fn write_segment_assignments(
        &mut self,
        assignments: &[(SessionId, SegmentAssignment)],
    ) -> Result<(), StoreError> {
        segments::write_segment_assignments(
            self.tx,
            (self.deployment_id, self.visitor_id),
            assignments,
        )
    }

    fn write_outcome_achievements(
        &mut self,
        achievements: &[(SessionId, OutcomeAchievement)],
    ) -> Result<(), StoreError> {
        segments::write_outcome_achievements(
            self.tx,
            (self.deployment_id, self.visitor_id),
            achievements,
        )
    }

    fn lock_customer(&mut self, contact_id: &ContactId) -> Result<(), StoreError> {
        // The contact's lock, the one its fields, cookies and links are written under.
        self.lock_contact(contact_id)
    }
}
