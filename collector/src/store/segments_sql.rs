//! SQL of segments and outcomes (see `crate::segments` for the rules): the
//! definitions' storage, and their evaluation inside the ingest transaction.
//!
//! Evaluation is one call per stored event, [`evaluate_in_tx`], made by the ingest
//! code in the transaction that stores the event, with a [`BatchEvaluation`] that
//! lives for the batch (its savepoint): the event, its pattern counters, and any
//! assignment or achievement it completes commit or roll back together.
//!
//! Per batch it costs: one lookup of the definitions' generation (to know whether the
//! cached index is current); per session of the batch, each read only when first
//! needed, one read of what the session has (segments, outcomes: when some candidate
//! pattern or visit-level definition could match), one of its last visit fingerprint
//! and one of its summary as of before the batch (when visit-level definitions
//! exist or a candidate pattern is left); per counter scope and customer touched, one
//! read of its counters and assignments; and at the end a few multi-row statements
//! that write the batch's assignments, achievements and changed counters.
//! Per event, only when some definition could care: the session's contact and
//! authentication (one read by primary key: identity can change them with any event),
//! and the candidate patterns of the event's name, attributes and values (see
//! `segments::index`, into a buffer kept for the batch), minus the definitions the
//! session already has, tested in memory. The visit is made anew only when what it is
//! made of differs from the session's previous event of the batch; context-only
//! definitions and carried Customer-scope segments are evaluated only when the visit's
//! fingerprint changes.

use foldhash::{HashMap, HashMapExt, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use footpath_protocol::v1::{Context, EventKind, Map, Page};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::sqlite::SqliteStore;
use super::{NewBatch, NewEvent, StoreError, StoredSession};
use crate::enrich::geo::Geolocation;
use crate::enrich::referrer::ReferrerInfo;
use crate::enrich::user_agent::UserAgentInfo;
use crate::segments::definition::{self, ValueType};
use crate::segments::index::{EventValues, Index, PatternRef, Visit, VisitSources};
use crate::segments::{
    criteria, Definition, DefinitionKind, DefinitionStore, DefinitionWrite, Details,
    OutcomeAchievement, Scope, SegmentAssignment, StoredDefinition, MAX_DEFINITIONS_PER_KIND,
};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The index of the active definitions, kept by the store that owns the database (one
/// per `SqliteStore`, not per process): every change of a definition moves the
/// database's generation, which tells [`IndexCache::current`] to rebuild, so that
/// several stores and processes on one database apply the same definitions.
#[derive(Default)]
pub(super) struct IndexCache {
    index: Mutex<Option<Arc<Index>>>,
}

impl IndexCache {
    /// The index of the active definitions, rebuilt when they changed.
    fn current(&self, connection: &Connection) -> Result<Arc<Index>, StoreError> {
        let generation: i64 = connection
            .prepare_cached("SELECT generation FROM journey_definitions_generation WHERE one = 1")?
            .query_row([], |row| row.get(0))?;
        if let Some(index) = self
            .index
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|index| index.generation == generation)
        {
            return Ok(Arc::clone(index));
        }
        let mut definitions = load_definitions(connection, DefinitionKind::Segment)?;
        definitions.extend(load_definitions(connection, DefinitionKind::Outcome)?);
        let index = Arc::new(Index::build(generation, definitions));
        *self.index.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&index));
        Ok(index)
    }
}

fn bump_generation(transaction: &Transaction<'_>) -> Result<(), StoreError> {
    transaction
        .prepare_cached("UPDATE journey_definitions_generation SET generation = generation + 1")?
        .execute([])?;
    Ok(())
}

fn load_definitions(
    connection: &Connection,
    kind: DefinitionKind,
) -> Result<Vec<StoredDefinition>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT id, definition_json, version, created_ms, modified_ms FROM journey_definitions
         WHERE kind = ?1 ORDER BY created_ms, rowid",
    )?;
    let mut rows = statement.query([kind.as_str()])?;
    let mut definitions = Vec::new();
    while let Some(row) = rows.next()? {
        definitions.push(definition_from_row(kind, row)?);
    }
    Ok(definitions)
}

fn definition_from_row(
    kind: DefinitionKind,
    row: &rusqlite::Row<'_>,
) -> Result<StoredDefinition, StoreError> {
    let id: String = row.get(0)?;
    let json: String = row.get(1)?;
    let value: serde_json::Value = serde_json::from_str(&json)?;
    let definition = definition::parse(kind, &value)
        .map_err(|problem| StoreError::Corrupt(format!("{} {id}: {problem}", kind.as_str())))?;
    let version: i64 = row.get(2)?;
    Ok(StoredDefinition {
        id,
        version: u64::try_from(version).unwrap_or(0),
        definition,
        created_ms: row.get(3)?,
        modified_ms: row.get(4)?,
    })
}

/// What the session had before this batch: its summary columns, which the ingest code
/// writes only at the end of each batch (`SessionSummary::write`), so they are read
/// once per session and batch. Its contact and whether it is authenticated can change
/// with any event (identity runs per event), so they are not kept here.
struct StoredFacts {
    /// The visitor cookie's customer key.
    visitor_key: String,
    user_agent: Option<UserAgentInfo>,
    geolocation: Option<Geolocation>,
    context: Option<Context>,
    /// The landing pageview, its referrer classification and time.
    landing: Option<(Page, Option<ReferrerInfo>, i64)>,
}

impl StoredFacts {
    fn read(transaction: &Transaction<'_>, session_id: &str) -> Result<StoredFacts, StoreError> {
        let mut statement = transaction.prepare_cached(
            "SELECT s.deployment_id, s.visitor_id, s.user_agent_json, s.geolocation_json,
                    lp.page_url, lp.page_referrer, lp.campaign_json, lp.referrer_json, lp.time_ms,
                    ce.context_json
             FROM sessions s
             LEFT JOIN events lp ON lp.id = s.landing_pageview_id
             LEFT JOIN events ce ON ce.id = s.context_event_id
             WHERE s.id = ?1",
        )?;
        let mut rows = statement.query([session_id])?;
        let row = rows
            .next()?
            .ok_or_else(|| StoreError::Corrupt(format!("session {session_id} vanished")))?;
        let from_json = |index: usize| -> Result<Option<serde_json::Value>, StoreError> {
            Ok(row
                .get::<_, Option<String>>(index)?
                .map(|json| serde_json::from_str(&json))
                .transpose()?)
        };
        let user_agent = from_json(2)?.map(serde_json::from_value).transpose()?;
        let geolocation = from_json(3)?.map(serde_json::from_value).transpose()?;
        let context = from_json(9)?.map(serde_json::from_value).transpose()?;
        let landing = match row.get::<_, Option<String>>(4)? {
            Some(url) => {
                let campaign: Map<String> = match row.get::<_, Option<String>>(6)? {
                    Some(json) => serde_json::from_str(&json)?,
                    None => Map::new(),
                };
                let page = Page {
                    url,
                    referrer: row.get::<_, Option<String>>(5)?.unwrap_or_default(),
                    campaign,
                    ..Page::default()
                };
                let referrer = from_json(7)?.map(serde_json::from_value).transpose()?;
                let time_ms: i64 = row.get(8)?;
                Some((page, referrer, time_ms))
            }
            None => None,
        };
        let deployment_id: String = row.get(0)?;
        let visitor_id: String = row.get(1)?;
        Ok(StoredFacts {
            visitor_key: format!("visitor:{deployment_id}:{visitor_id}"),
            user_agent,
            geolocation,
            context,
            landing,
        })
    }

    /// The visit's sources as of `event` (stored in this transaction): the session's
    /// summary as it was before the batch, completed by the event's own values (the
    /// earliest user agent and geolocation, the latest context, the earliest pageview).
    fn sources<'a>(&'a self, event: &'a NewEvent, authenticated: bool) -> SourcesRef<'a> {
        let event_is_earlier_pageview = event.kind == EventKind::Pageview
            && event.page.is_some()
            && self
                .landing
                .as_ref()
                .is_none_or(|(_, _, time_ms)| event.time_ms < *time_ms);
        let (landing_page, landing_referrer) = if event_is_earlier_pageview {
            (event.page.as_ref(), event.referrer_info.as_ref())
        } else {
            match &self.landing {
                Some((page, referrer, _)) => (Some(page), referrer.as_ref()),
                None => (None, None),
            }
        };
        SourcesRef {
            user_agent: self.user_agent.as_ref().or(event.user_agent_info.as_ref()),
            context: event.context.as_ref().or(self.context.as_ref()),
            geolocation: self.geolocation.as_ref().or(event.geolocation.as_ref()),
            landing_page,
            landing_referrer,
            authenticated,
        }
    }
}

/// [`VisitSources`], borrowed: compared with the ones of the session's last visit
/// before a visit is made anew.
struct SourcesRef<'a> {
    user_agent: Option<&'a UserAgentInfo>,
    context: Option<&'a Context>,
    geolocation: Option<&'a Geolocation>,
    landing_page: Option<&'a Page>,
    landing_referrer: Option<&'a ReferrerInfo>,
    authenticated: bool,
}

impl SourcesRef<'_> {
    fn is(&self, sources: &VisitSources) -> bool {
        self.authenticated == sources.authenticated
            && self.user_agent == sources.user_agent.as_ref()
            && self.context == sources.context.as_ref()
            && self.geolocation == sources.geolocation.as_ref()
            && self.landing_page == sources.landing_page.as_ref()
            && self.landing_referrer == sources.landing_referrer.as_ref()
    }

    fn to_owned(&self) -> VisitSources {
        VisitSources {
            user_agent: self.user_agent.cloned(),
            context: self.context.cloned(),
            geolocation: self.geolocation.cloned(),
            landing_page: self.landing_page.cloned(),
            landing_referrer: self.landing_referrer.cloned(),
            authenticated: self.authenticated,
        }
    }
}

/// A visit made from `sources`, and its fingerprint.
struct CachedVisit {
    sources: VisitSources,
    visit: Arc<Visit>,
    fingerprint: String,
}

/// The visit of one event (see [`BatchEvaluation::event_visit`]).
struct EventVisit {
    visit: Arc<Visit>,
    /// What decides whether visit-level definitions are evaluated again: the
    /// definitions' generation, the customer and the visit's values.
    fingerprint: String,
    customer_key: String,
    visitor_key: String,
}

/// The session's contact and whether it is authenticated, as of now in this
/// transaction.
fn session_identity(
    transaction: &Transaction<'_>,
    session_id: &str,
) -> Result<(Option<String>, bool), StoreError> {
    transaction
        .prepare_cached("SELECT contact_id, authenticated FROM sessions WHERE id = ?1")?
        .query_row([session_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?
        .ok_or_else(|| StoreError::Corrupt(format!("session {session_id} vanished")))
}

/// What evaluation knows about the sessions, customers and pattern counters of one
/// batch, so that it asks SQLite once per batch and session rather than once per event
/// and definition, and skips the definitions a session already has before testing
/// anything.
///
/// The ingest code makes one, empty, before a batch's first event, passes it to
/// [`evaluate_in_tx`] for each event and calls [`BatchEvaluation::finish`] after the
/// last, all inside the batch's savepoint. It holds nothing across batches: a batch
/// that is rolled back (or a commit that fails) drops it with everything it knew, and
/// the next batch reads again what the transaction holds. So it can never claim an
/// assignment or a count that was not written.
///
/// What it knows, and why skipping on it changes nothing observable:
/// - the segments and outcomes each session has: a session gets each at most once, so
///   for a Session-scope segment or an outcome it already has, neither a count nor a
///   match can change anything (its counts in the session are only ever read to decide
///   that match);
/// - each customer's Customer-scope assignments and when they expire: a live one is
///   kept as it is, so matching it again writes nothing;
/// - the pattern counters of each scope: they are counted here and written once, at
///   [`BatchEvaluation::finish`], except the session counters of definitions the
///   session has (never read again).
pub(super) struct BatchEvaluation {
    /// The definitions, read at the batch's first event: they cannot change during it,
    /// since the batch's transaction holds the write lock.
    index: Option<Arc<Index>>,
    sessions: HashMap<String, SessionState>,
    /// Customer key → segment id → when its assignment expires (`None`: never).
    customers: HashMap<String, HashMap<String, Option<i64>>>,
    /// Scope key → its counters.
    scopes: HashMap<String, ScopeCounters>,
    /// Session segment assignments, outcome achievements and customer assignments
    /// not written yet: written at [`BatchEvaluation::finish`] (and the customer ones
    /// before customer assignments are read).
    pending_segments: PendingRows,
    pending_outcomes: PendingRows,
    pending_customers: PendingRows,
    /// The candidate patterns of the current event (a buffer kept for the batch).
    candidates: Vec<PatternRef>,
}

impl Default for BatchEvaluation {
    fn default() -> BatchEvaluation {
        BatchEvaluation {
            index: None,
            candidates: Vec::new(),
            sessions: HashMap::new(),
            customers: HashMap::new(),
            scopes: HashMap::new(),
            pending_segments: PendingRows::new(
                "INSERT INTO session_segment_assignments (
                    id, session_id, segment_id, display_name, color, should_display_to_agent,
                    assigned_ms, trigger_event_id
                 ) VALUES",
                "ON CONFLICT (session_id, segment_id) DO NOTHING",
                8,
            ),
            pending_outcomes: PendingRows::new(
                "INSERT INTO session_outcome_achievements (
                    id, session_id, outcome_id, display_name, version, is_positive,
                    associated_value, achieved_ms, trigger_event_id
                 ) VALUES",
                "ON CONFLICT (session_id, outcome_id) DO NOTHING",
                9,
            ),
            // A live assignment is kept as it is; an expired one is made anew.
            pending_customers: PendingRows::new(
                "INSERT INTO customer_segment_assignments (
                    customer_key, segment_id, display_name, color,
                    should_display_to_agent, assigned_ms, expires_ms
                 ) VALUES",
                "ON CONFLICT (customer_key, segment_id) DO UPDATE SET
                    display_name = excluded.display_name, color = excluded.color,
                    should_display_to_agent = excluded.should_display_to_agent,
                    assigned_ms = excluded.assigned_ms, expires_ms = excluded.expires_ms
                 WHERE expires_ms IS NOT NULL AND expires_ms <= ?",
                7,
            ),
        }
    }
}

/// What evaluation knows about one session of the batch, each part read when first
/// needed (a session whose events no definition could care about costs no read).
#[derive(Default)]
struct SessionState {
    /// What the session has, as of this point of the batch.
    has: Option<SessionHas>,
    /// The fingerprint of the last visit-level evaluation: `None` until read.
    fingerprint: Option<Option<String>>,
    /// The session's summary as of before the batch.
    stored: Option<StoredFacts>,
    /// The visit of the session's last evaluated event, and what it was made of.
    visit: Option<CachedVisit>,
}

/// The segments and outcomes a session has.
struct SessionHas {
    segments: HashSet<String>,
    outcomes: HashSet<String>,
    /// By definition position: whether the session has that Session-scope segment or
    /// outcome, so that nothing about it can change in this session.
    settled: Vec<bool>,
}

/// Whether having the definition settles it for the session (see [`SessionHas`]).
fn settles(stored: &StoredDefinition) -> bool {
    !matches!(
        stored.definition.details,
        Details::Segment {
            scope: Scope::Customer,
            ..
        }
    )
}

impl SessionHas {
    fn is_settled(&self, position: usize) -> bool {
        self.settled.get(position).copied().unwrap_or(false)
    }

    fn add_segment(&mut self, index: &Index, segment_id: &str) {
        if let Some(&position) = index.by_id.get(segment_id) {
            if settles(&index.definitions[position]) {
                self.settled[position] = true;
            }
        }
        self.segments.insert(segment_id.to_owned());
    }

    fn add_outcome(&mut self, index: &Index, outcome_id: &str) {
        if let Some(&position) = index.by_id.get(outcome_id) {
            self.settled[position] = true;
        }
        self.outcomes.insert(outcome_id.to_owned());
    }
}

/// Rows to insert with a few multi-row statements rather than one statement each.
struct PendingRows {
    /// `INSERT INTO table (columns) VALUES`.
    head: &'static str,
    /// Whatever follows the rows (`ON CONFLICT ...`), with `?` placeholders bound to
    /// `trailing`.
    tail: &'static str,
    columns: usize,
    values: Vec<rusqlite::types::Value>,
    trailing: Vec<rusqlite::types::Value>,
}

impl PendingRows {
    const fn new(head: &'static str, tail: &'static str, columns: usize) -> PendingRows {
        PendingRows {
            head,
            tail,
            columns,
            values: Vec::new(),
            trailing: Vec::new(),
        }
    }

    fn push(&mut self, row: impl IntoIterator<Item = rusqlite::types::Value>) {
        let before = self.values.len();
        self.values.extend(row);
        debug_assert_eq!(self.values.len() - before, self.columns);
    }

    /// Inserts the rows in their order, in chunks of 64, 16, 4 and 1 rows, so that
    /// few statements are prepared (and cached) for any number of rows.
    fn flush(&mut self, transaction: &Transaction<'_>) -> Result<(), StoreError> {
        let values = std::mem::take(&mut self.values);
        let mut rows = values.len() / self.columns;
        let mut start = 0;
        while rows > 0 {
            let chunk = [64, 16, 4, 1]
                .into_iter()
                .find(|size| *size <= rows)
                .unwrap_or(1);
            let row = format!("({})", vec!["?"; self.columns].join(", "));
            let sql = format!(
                "{} {} {}",
                self.head,
                vec![row; chunk].join(", "),
                self.tail
            );
            let end = start + chunk * self.columns;
            let parameters = values[start..end].iter().chain(&self.trailing);
            transaction
                .prepare_cached(&sql)?
                .execute(rusqlite::params_from_iter(parameters))?;
            start = end;
            rows -= chunk;
        }
        Ok(())
    }
}

#[derive(Default)]
struct ScopeCounters {
    /// The session, for a session scope.
    session_id: Option<String>,
    /// By (definition position, pattern index), for the current version.
    counts: HashMap<(usize, usize), Counter>,
}

struct Counter {
    count: u64,
    /// Changed since it was read.
    dirty: bool,
}

impl BatchEvaluation {
    fn index(
        &mut self,
        connection: &Connection,
        cache: &IndexCache,
    ) -> Result<Arc<Index>, StoreError> {
        if let Some(index) = &self.index {
            return Ok(Arc::clone(index));
        }
        let index = cache.current(connection)?;
        self.index = Some(Arc::clone(&index));
        Ok(index)
    }

    /// The session's state, made empty when the batch first meets the session.
    fn session(&mut self, session_id: &str) -> &mut SessionState {
        if !self.sessions.contains_key(session_id) {
            self.sessions
                .insert(session_id.to_owned(), SessionState::default());
        }
        self.sessions
            .get_mut(session_id)
            .expect("the session's state was just made")
    }

    /// What the session has, read at first need.
    fn has(
        &mut self,
        transaction: &Transaction<'_>,
        session_id: &str,
    ) -> Result<&mut SessionHas, StoreError> {
        let index = self.index.clone();
        let session = self.session(session_id);
        if session.has.is_none() {
            let ids = |sql: &str| -> Result<HashSet<String>, StoreError> {
                let mut statement = transaction.prepare_cached(sql)?;
                let rows = statement.query_map([session_id], |row| row.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            };
            let segments =
                ids("SELECT segment_id FROM session_segment_assignments WHERE session_id = ?1")?;
            let outcomes =
                ids("SELECT outcome_id FROM session_outcome_achievements WHERE session_id = ?1")?;
            // From what the session has (a few), not from every definition.
            let settled = match &index {
                Some(index) => {
                    let mut settled = vec![false; index.definitions.len()];
                    for (ids, segment) in [(&segments, true), (&outcomes, false)] {
                        for id in ids {
                            let Some(&position) = index.by_id.get(id) else {
                                continue;
                            };
                            let stored = &index.definitions[position];
                            let of_kind =
                                matches!(stored.definition.details, Details::Segment { .. })
                                    == segment;
                            if of_kind && settles(stored) {
                                settled[position] = true;
                            }
                        }
                    }
                    settled
                }
                None => Vec::new(),
            };
            session.has = Some(SessionHas {
                segments,
                outcomes,
                settled,
            });
        }
        Ok(session
            .has
            .as_mut()
            .expect("what the session has was just read"))
    }

    /// The fingerprint of the session's last visit-level evaluation, read at first
    /// need.
    fn fingerprint(
        &mut self,
        transaction: &Transaction<'_>,
        session_id: &str,
    ) -> Result<&mut Option<String>, StoreError> {
        let session = self.session(session_id);
        if session.fingerprint.is_none() {
            let fingerprint: Option<String> = transaction
                .prepare_cached(
                    "SELECT fingerprint FROM session_visit_evaluations WHERE session_id = ?1",
                )?
                .query_row([session_id], |row| row.get(0))
                .optional()?;
            session.fingerprint = Some(fingerprint);
        }
        Ok(session
            .fingerprint
            .as_mut()
            .expect("the fingerprint was just read"))
    }

    /// The session's visit as of `event`, made anew only when what it is made of
    /// differs from what the session's previous evaluated event had, with its
    /// fingerprint and the keys of the visitor and the customer.
    fn event_visit(
        &mut self,
        transaction: &Transaction<'_>,
        session_id: &str,
        event: &NewEvent,
        generation: i64,
    ) -> Result<EventVisit, StoreError> {
        let (contact_id, authenticated) = session_identity(transaction, session_id)?;
        let session = self.stored_facts(transaction, session_id)?;
        let stored = session
            .stored
            .as_ref()
            .expect("the session's facts were just read");
        let visitor_key = stored.visitor_key.clone();
        let customer_key = match &contact_id {
            Some(contact_id) => format!("contact:{contact_id}"),
            None => visitor_key.clone(),
        };
        let sources = stored.sources(event, authenticated);
        let current = match &session.visit {
            Some(cached) if sources.is(&cached.sources) => cached,
            _ => {
                let sources = sources.to_owned();
                let visit = Visit::new(&sources);
                let fingerprint = visit.fingerprint();
                session.visit.insert(CachedVisit {
                    sources,
                    visit: Arc::new(visit),
                    fingerprint,
                })
            }
        };
        Ok(EventVisit {
            visit: Arc::clone(&current.visit),
            fingerprint: format!("{generation}|{customer_key}|{}", current.fingerprint),
            customer_key,
            visitor_key,
        })
    }

    /// The session's summary as of before the batch, read at first need.
    fn stored_facts(
        &mut self,
        transaction: &Transaction<'_>,
        session_id: &str,
    ) -> Result<&mut SessionState, StoreError> {
        let session = self.session(session_id);
        if session.stored.is_none() {
            session.stored = Some(StoredFacts::read(transaction, session_id)?);
        }
        Ok(session)
    }

    fn customer(
        &mut self,
        transaction: &Transaction<'_>,
        customer_key: &str,
    ) -> Result<&mut HashMap<String, Option<i64>>, StoreError> {
        if !self.customers.contains_key(customer_key) {
            let mut statement = transaction.prepare_cached(
                "SELECT segment_id, expires_ms FROM customer_segment_assignments
                 WHERE customer_key = ?1",
            )?;
            let rows = statement.query_map([customer_key], |row| Ok((row.get(0)?, row.get(1)?)))?;
            let assignments = rows.collect::<Result<_, _>>()?;
            self.customers.insert(customer_key.to_owned(), assignments);
        }
        Ok(self
            .customers
            .get_mut(customer_key)
            .expect("the customer's state was just made"))
    }

    fn scope(
        &mut self,
        transaction: &Transaction<'_>,
        index: &Index,
        scope_key: &str,
        session_id: Option<&str>,
    ) -> Result<&mut ScopeCounters, StoreError> {
        if !self.scopes.contains_key(scope_key) {
            let mut statement = transaction.prepare_cached(
                "SELECT definition_id, version, pattern_index, count FROM journey_pattern_counts
                 WHERE scope_key = ?1",
            )?;
            let mut rows = statement.query([scope_key])?;
            let mut counts = HashMap::new();
            while let Some(row) = rows.next()? {
                let definition_id: String = row.get(0)?;
                let version: i64 = row.get(1)?;
                let pattern: i64 = row.get(2)?;
                let count: i64 = row.get(3)?;
                // Counts of other versions, or of definitions no longer active, are
                // never read by this batch.
                let Some(&position) = index.by_id.get(&definition_id) else {
                    continue;
                };
                if index.definitions[position].version as i64 != version {
                    continue;
                }
                counts.insert(
                    (position, usize::try_from(pattern).unwrap_or(usize::MAX)),
                    Counter {
                        count: u64::try_from(count).unwrap_or(0),
                        dirty: false,
                    },
                );
            }
            self.scopes.insert(
                scope_key.to_owned(),
                ScopeCounters {
                    session_id: session_id.map(str::to_owned),
                    counts,
                },
            );
        }
        Ok(self
            .scopes
            .get_mut(scope_key)
            .expect("the scope's counters were just read"))
    }

    /// Writes the counters that changed and can still be read. Call it once, after the
    /// batch's last event, inside the batch's savepoint.
    pub(super) fn finish(mut self, transaction: &Transaction<'_>) -> Result<(), StoreError> {
        let Some(index) = &self.index else {
            return Ok(());
        };
        self.pending_segments.flush(transaction)?;
        self.pending_outcomes.flush(transaction)?;
        self.pending_customers.flush(transaction)?;
        let mut counters = PendingRows::new(
            "INSERT INTO journey_pattern_counts (scope_key, definition_id, version, pattern_index, count)
             VALUES",
            "ON CONFLICT (scope_key, definition_id, version, pattern_index)
             DO UPDATE SET count = excluded.count",
            5,
        );
        for (scope_key, scope) in &self.scopes {
            let session = scope
                .session_id
                .as_ref()
                .and_then(|session_id| self.sessions.get(session_id))
                .and_then(|session| session.has.as_ref());
            for (&(position, pattern), counter) in &scope.counts {
                if !counter.dirty {
                    continue;
                }
                if session.is_some_and(|session| session.is_settled(position)) {
                    continue;
                }
                let stored = &index.definitions[position];
                counters.push([
                    Value::Text(scope_key.clone()),
                    Value::Text(stored.id.clone()),
                    Value::Integer(stored.version as i64),
                    Value::Integer(pattern as i64),
                    Value::Integer(i64::try_from(counter.count).unwrap_or(i64::MAX)),
                ]);
            }
        }
        counters.flush(transaction)
    }
}

/// Evaluates the active segments and outcomes against `event`, which was just stored
/// in `session_id` by this same transaction. `state` is the batch's (see
/// [`BatchEvaluation`]).
pub(super) fn evaluate_in_tx(
    transaction: &Transaction<'_>,
    _batch: &NewBatch,
    state: &mut BatchEvaluation,
    cache: &IndexCache,
    session_id: &str,
    event: &NewEvent,
    now_ms: i64,
) -> Result<(), StoreError> {
    let index = state.index(transaction, cache)?;
    if index.is_empty() {
        return Ok(());
    }
    let values = index.values(event);
    // The batch's buffer, given back whatever happens.
    let mut candidates = std::mem::take(&mut state.candidates);
    index.collect_candidates(&values, &mut candidates);
    let result = evaluate_candidates(
        transaction,
        state,
        &index,
        &values,
        &mut candidates,
        session_id,
        event,
        now_ms,
    );
    candidates.clear();
    state.candidates = candidates;
    result
}

#[allow(clippy::too_many_arguments)]
fn evaluate_candidates(
    transaction: &Transaction<'_>,
    state: &mut BatchEvaluation,
    index: &Arc<Index>,
    values: &EventValues<'_>,
    candidates: &mut Vec<PatternRef>,
    session_id: &str,
    event: &NewEvent,
    now_ms: i64,
) -> Result<(), StoreError> {
    let visit_level = !index.context_only.is_empty() || !index.customer_segments.is_empty();
    if candidates.is_empty() && !visit_level {
        return Ok(());
    }
    // Nothing about a definition the session already has can change: leave it out
    // before testing anything.
    if !candidates.is_empty() {
        let has = state.has(transaction, session_id)?;
        candidates.retain(|reference| !has.is_settled(reference.definition));
    }
    if candidates.is_empty() && !visit_level {
        return Ok(());
    }
    let (mut visit, visit_fingerprint, customer_key, visitor_key) = if visit_level {
        let current = state.event_visit(transaction, session_id, event, index.generation)?;
        (
            Some(current.visit),
            Some(current.fingerprint),
            current.customer_key,
            current.visitor_key,
        )
    } else {
        // Customer-scope segments make evaluation visit-level: without them, the
        // customer's keys are never used.
        (None, None, String::new(), String::new())
    };
    let mut matcher = Matcher {
        transaction,
        index,
        state,
        session_id,
        event,
        values,
        now_ms,
        session_scope_key: format!("session:{session_id}"),
        customer_key,
        visitor_key,
    };

    if let Some(fingerprint) = visit_fingerprint {
        let previous = matcher.state.fingerprint(transaction, session_id)?;
        if previous.as_deref() != Some(fingerprint.as_str()) {
            matcher.carry_customer_segments()?;
            let unsettled: Vec<usize> = {
                let has = matcher.state.has(transaction, session_id)?;
                index
                    .context_only
                    .iter()
                    .copied()
                    .filter(|position| !has.is_settled(*position))
                    .collect()
            };
            let visit = visit
                .as_ref()
                .expect("visit-level evaluation made the visit");
            for position in unsettled {
                if index.context_matches(position, visit) {
                    matcher.record_match(position)?;
                }
            }
            transaction
                .prepare_cached(
                    "INSERT INTO session_visit_evaluations (session_id, fingerprint) VALUES (?1, ?2)
                     ON CONFLICT (session_id) DO UPDATE SET fingerprint = excluded.fingerprint",
                )?
                .execute(params![session_id, fingerprint])?;
            *matcher.state.fingerprint(transaction, session_id)? = Some(fingerprint);
        }
    }

    let mut matched_definitions: Vec<usize> = Vec::new();
    for &reference in candidates.iter() {
        if !index.pattern_matches(reference, values) {
            continue;
        }
        matcher.count(reference)?;
        if matched_definitions.last() != Some(&reference.definition) {
            matched_definitions.push(reference.definition);
        }
    }
    for position in matched_definitions {
        if !matcher.counts_reached(position)? {
            continue;
        }
        if index.has_context(position) {
            let visit = match &visit {
                Some(visit) => visit,
                None => {
                    let current = matcher.state.event_visit(
                        transaction,
                        session_id,
                        event,
                        index.generation,
                    )?;
                    visit.insert(current.visit)
                }
            };
            if !index.context_matches(position, visit) {
                continue;
            }
        }
        matcher.record_match(position)?;
    }
    Ok(())
}

/// A UUID v7 for a segment-assigned or outcome-achieved event, greater than every one
/// made before by this process: readers order a session's matches of the same time by
/// id, which is then the order they were made in (the tables have no rowid to keep
/// it). The 12 bits after the milliseconds count the ids of that millisecond; the
/// random bits come from the thread's generator rather than from a system call per id.
fn new_event_id() -> String {
    /// The milliseconds and counter of the last id.
    static LAST: Mutex<(u64, u16)> = Mutex::new((0, 0));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        });
    let (millis, counter) = {
        let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
        *last = if now > last.0 {
            (now, 0)
        } else if last.1 < 0x0fff {
            (last.0, last.1 + 1)
        } else {
            // 4096 ids in one millisecond: borrow the next one.
            (last.0 + 1, 0)
        };
        *last
    };
    let mut bytes: [u8; 10] = rand::random();
    let [high, low] = counter.to_be_bytes();
    bytes[0] = high;
    bytes[1] = low;
    uuid::Builder::from_unix_timestamp_millis(millis, &bytes)
        .into_uuid()
        .to_string()
}

/// What recording a match needs.
struct Matcher<'a, 'v> {
    transaction: &'a Transaction<'a>,
    index: &'a Index,
    state: &'a mut BatchEvaluation,
    session_id: &'a str,
    event: &'a NewEvent,
    values: &'a EventValues<'v>,
    now_ms: i64,
    /// The scope key of the session's counters, and the customer's key.
    session_scope_key: String,
    customer_key: String,
    visitor_key: String,
}

impl<'a> Matcher<'a, '_> {
    /// Where the definition's pattern counts are kept: the session, or for a
    /// Customer-scope segment, the customer.
    /// Returns the scope's counters.
    fn scope_of(&mut self, definition: &Definition) -> Result<&mut ScopeCounters, StoreError> {
        let (scope_key, session_id) = match definition.details {
            Details::Segment {
                scope: Scope::Customer,
                ..
            } => (&self.customer_key, None),
            _ => (&self.session_scope_key, Some(self.session_id)),
        };
        self.state
            .scope(self.transaction, self.index, scope_key, session_id)
    }

    /// Counts one more event for the pattern.
    fn count(&mut self, reference: PatternRef) -> Result<(), StoreError> {
        let index = self.index;
        let scope = self.scope_of(&index.definition(reference).definition)?;
        let counter = scope
            .counts
            .entry((reference.definition, reference.pattern))
            .or_insert(Counter {
                count: 0,
                dirty: false,
            });
        counter.count = counter.count.saturating_add(1);
        counter.dirty = true;
        Ok(())
    }

    /// Whether every journey pattern of the definition reached its count.
    fn counts_reached(&mut self, position: usize) -> Result<bool, StoreError> {
        let index = self.index;
        let stored = &index.definitions[position];
        let scope = self.scope_of(&stored.definition)?;
        Ok(stored
            .definition
            .journey
            .iter()
            .enumerate()
            .all(|(pattern_index, pattern)| {
                scope
                    .counts
                    .get(&(position, pattern_index))
                    .map_or(0, |counter| counter.count)
                    >= pattern.count
            }))
    }

    /// Records that the definition at `position` matched: assigns the segment (to the
    /// session, and for Customer scope to the customer) or achieves the outcome, once.
    fn record_match(&mut self, position: usize) -> Result<(), StoreError> {
        let stored = &self.index.definitions[position];
        match &stored.definition.details {
            Details::Segment {
                color,
                scope,
                should_display_to_agent,
                assignment_expiration_days,
            } => {
                if *scope == Scope::Customer {
                    let customer_key = self.customer_key.clone();
                    let now_ms = self.now_ms;
                    let assignments = self.state.customer(self.transaction, &customer_key)?;
                    // A live assignment is kept as it is; an expired one is made anew.
                    let live = assignments
                        .get(&stored.id)
                        .is_some_and(|expires_ms| expires_ms.is_none_or(|ms| ms > now_ms));
                    if !live {
                        let expires_ms = assignment_expiration_days.map(|days| {
                            self.event
                                .time_ms
                                .saturating_add((days as i64).saturating_mul(DAY_MS))
                        });
                        assignments.insert(stored.id.clone(), expires_ms);
                        let pending = &mut self.state.pending_customers;
                        // The batch's time decides what has expired; it is the same for
                        // every event of the batch.
                        if pending.trailing.first() != Some(&Value::Integer(now_ms)) {
                            pending.flush(self.transaction)?;
                            pending.trailing = vec![Value::Integer(now_ms)];
                        }
                        pending.push([
                            Value::Text(customer_key),
                            Value::Text(stored.id.clone()),
                            Value::Text(stored.definition.display_name.clone()),
                            Value::Text(color.clone()),
                            Value::Integer(i64::from(*should_display_to_agent)),
                            Value::Integer(self.event.time_ms),
                            expires_ms.map_or(Value::Null, Value::Integer),
                        ]);
                    }
                }
                self.assign_to_session(
                    &stored.id,
                    &stored.definition.display_name,
                    color,
                    *should_display_to_agent,
                )
            }
            Details::Outcome {
                is_positive,
                associated_value_field,
            } => {
                let session = self.state.has(self.transaction, self.session_id)?;
                if session.outcomes.contains(&stored.id) {
                    return Ok(());
                }
                session.add_outcome(self.index, &stored.id);
                let associated_value = associated_value_field.as_ref().and_then(|field| {
                    let text = self.values.attribute(&field.name)?;
                    let number = criteria::number(&text)?;
                    match field.data_type {
                        ValueType::Number => Some(text.trim().to_owned()),
                        ValueType::Integer => {
                            (number.fract() == 0.0).then(|| format!("{}", number as i64))
                        }
                    }
                });
                self.state.pending_outcomes.push([
                    Value::Text(new_event_id()),
                    Value::Text(self.session_id.to_owned()),
                    Value::Text(stored.id.clone()),
                    Value::Text(stored.definition.display_name.clone()),
                    Value::Integer(stored.version as i64),
                    Value::Integer(i64::from(*is_positive)),
                    associated_value.map_or(Value::Null, Value::Text),
                    Value::Integer(self.event.time_ms),
                    Value::Text(self.event.id.clone()),
                ]);
                Ok(())
            }
        }
    }

    fn assign_to_session(
        &mut self,
        segment_id: &str,
        display_name: &str,
        color: &str,
        should_display_to_agent: bool,
    ) -> Result<(), StoreError> {
        let session = self.state.has(self.transaction, self.session_id)?;
        if session.segments.contains(segment_id) {
            return Ok(());
        }
        session.add_segment(self.index, segment_id);
        self.state.pending_segments.push([
            Value::Text(new_event_id()),
            Value::Text(self.session_id.to_owned()),
            Value::Text(segment_id.to_owned()),
            Value::Text(display_name.to_owned()),
            Value::Text(color.to_owned()),
            Value::Integer(i64::from(should_display_to_agent)),
            Value::Integer(self.event.time_ms),
            Value::Text(self.event.id.clone()),
        ]);
        Ok(())
    }

    /// Gives the session the customer's live Customer-scope segments (by contact and by
    /// visitor cookie) that are still defined and active.
    fn carry_customer_segments(&mut self) -> Result<(), StoreError> {
        if self.index.customer_segments.is_empty() {
            return Ok(());
        }
        // The customer assignments of this batch so far are read too.
        self.state.pending_customers.flush(self.transaction)?;
        let carried: Vec<(String, String, String, bool)> = {
            let mut statement = self.transaction.prepare_cached(
                "SELECT segment_id, display_name, color, should_display_to_agent
                 FROM customer_segment_assignments
                 WHERE customer_key IN (?1, ?2) AND (expires_ms IS NULL OR expires_ms > ?3)
                 ORDER BY assigned_ms, segment_id",
            )?;
            let rows = statement.query_map(
                params![self.customer_key, self.visitor_key, self.now_ms],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )?;
            rows.collect::<Result<_, _>>()?
        };
        for (segment_id, display_name, color, should_display_to_agent) in carried {
            if self.index.customer_segments.contains_key(&segment_id) {
                self.assign_to_session(
                    &segment_id,
                    &display_name,
                    &color,
                    should_display_to_agent,
                )?;
            }
        }
        Ok(())
    }
}

/// Fills the session's segment assignments and outcome achievements, oldest first.
pub(super) fn attach_assignments(
    connection: &Connection,
    session: &mut StoredSession,
) -> Result<(), StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT id, segment_id, display_name, color, should_display_to_agent, assigned_ms,
                trigger_event_id
         FROM session_segment_assignments WHERE session_id = ?1 ORDER BY assigned_ms, id",
    )?;
    session.segment_assignments = statement
        .query_map([&session.id], |row| {
            Ok(SegmentAssignment {
                id: row.get(0)?,
                segment_id: row.get(1)?,
                display_name: row.get(2)?,
                color: row.get(3)?,
                should_display_to_agent: row.get(4)?,
                assigned_ms: row.get(5)?,
                trigger_event_id: row.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut statement = connection.prepare_cached(
        "SELECT id, outcome_id, display_name, version, is_positive, associated_value,
                achieved_ms, trigger_event_id
         FROM session_outcome_achievements WHERE session_id = ?1 ORDER BY achieved_ms, id",
    )?;
    session.outcome_achievements = statement
        .query_map([&session.id], |row| {
            let version: i64 = row.get(3)?;
            Ok(OutcomeAchievement {
                id: row.get(0)?,
                outcome_id: row.get(1)?,
                display_name: row.get(2)?,
                version: u64::try_from(version).unwrap_or(0),
                is_positive: row.get(4)?,
                associated_value: row.get(5)?,
                achieved_ms: row.get(6)?,
                trigger_event_id: row.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(())
}

fn count_of_kind(connection: &Connection, kind: DefinitionKind) -> Result<usize, StoreError> {
    let count: i64 = connection
        .prepare_cached("SELECT COUNT(*) FROM journey_definitions WHERE kind = ?1")?
        .query_row([kind.as_str()], |row| row.get(0))?;
    Ok(usize::try_from(count).unwrap_or(usize::MAX))
}

fn insert_definition(
    transaction: &Transaction<'_>,
    id: &str,
    definition: &Definition,
    now_ms: i64,
) -> Result<(), StoreError> {
    transaction
        .prepare_cached(
            "INSERT INTO journey_definitions (id, kind, definition_json, version, created_ms, modified_ms)
             VALUES (?1, ?2, ?3, 1, ?4, ?4)",
        )?
        .execute(params![
            id,
            definition.kind().as_str(),
            definition.to_json().to_string(),
            now_ms
        ])?;
    bump_generation(transaction)
}

fn load_definition(
    connection: &Connection,
    kind: DefinitionKind,
    id: &str,
) -> Result<Option<StoredDefinition>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT id, definition_json, version, created_ms, modified_ms FROM journey_definitions
         WHERE kind = ?1 AND id = ?2",
    )?;
    let mut rows = statement.query(params![kind.as_str(), id])?;
    match rows.next()? {
        Some(row) => Ok(Some(definition_from_row(kind, row)?)),
        None => Ok(None),
    }
}

impl DefinitionStore for SqliteStore {
    fn create_definition(
        &self,
        definition: &Definition,
        now_ms: i64,
    ) -> Result<DefinitionWrite, StoreError> {
        let mut connection = self.writer();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let kind = definition.kind();
        if count_of_kind(&transaction, kind)? >= MAX_DEFINITIONS_PER_KIND {
            return Ok(DefinitionWrite::LimitReached);
        }
        let id = uuid::Uuid::new_v4().to_string();
        insert_definition(&transaction, &id, definition, now_ms)?;
        let stored = load_definition(&transaction, kind, &id)?
            .ok_or_else(|| StoreError::Corrupt(format!("{} {id} vanished", kind.as_str())))?;
        transaction.commit()?;
        Ok(DefinitionWrite::Written(stored))
    }

    fn definition(
        &self,
        kind: DefinitionKind,
        id: &str,
    ) -> Result<Option<StoredDefinition>, StoreError> {
        load_definition(&self.reader(), kind, id)
    }

    fn definitions(
        &self,
        kind: DefinitionKind,
        page_number: usize,
        page_size: usize,
    ) -> Result<(Vec<StoredDefinition>, u64), StoreError> {
        let mut connection = self.reader();
        // The page and the total from one snapshot.
        let transaction = connection.transaction()?;
        let total = count_of_kind(&transaction, kind)?;
        let offset = page_number.saturating_sub(1).saturating_mul(page_size);
        let mut statement = transaction.prepare_cached(
            "SELECT id, definition_json, version, created_ms, modified_ms FROM journey_definitions
             WHERE kind = ?1 ORDER BY created_ms, rowid LIMIT ?2 OFFSET ?3",
        )?;
        let mut rows = statement.query(params![
            kind.as_str(),
            i64::try_from(page_size).unwrap_or(i64::MAX),
            i64::try_from(offset).unwrap_or(i64::MAX)
        ])?;
        let mut items = Vec::new();
        while let Some(row) = rows.next()? {
            items.push(definition_from_row(kind, row)?);
        }
        Ok((items, total as u64))
    }

    fn update_definition(
        &self,
        id: &str,
        definition: &Definition,
        base_version: u64,
        now_ms: i64,
    ) -> Result<DefinitionWrite, StoreError> {
        let mut connection = self.writer();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let kind = definition.kind();
        let Some(current) = load_definition(&transaction, kind, id)? else {
            return Ok(DefinitionWrite::NotFound);
        };
        if current.version != base_version {
            return Ok(DefinitionWrite::VersionChanged {
                current: current.version,
            });
        }
        transaction
            .prepare_cached(
                "UPDATE journey_definitions
                 SET definition_json = ?2, version = version + 1, modified_ms = ?3
                 WHERE id = ?1",
            )?
            .execute(params![id, definition.to_json().to_string(), now_ms])?;
        bump_generation(&transaction)?;
        let stored = load_definition(&transaction, kind, id)?
            .ok_or_else(|| StoreError::Corrupt(format!("{} {id} vanished", kind.as_str())))?;
        transaction.commit()?;
        Ok(DefinitionWrite::Written(stored))
    }

    fn delete_definition(&self, kind: DefinitionKind, id: &str) -> Result<bool, StoreError> {
        let mut connection = self.writer();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let deleted = transaction
            .prepare_cached("DELETE FROM journey_definitions WHERE kind = ?1 AND id = ?2")?
            .execute(params![kind.as_str(), id])?
            > 0;
        if deleted {
            bump_generation(&transaction)?;
        }
        transaction.commit()?;
        Ok(deleted)
    }

    fn load_configured_definitions(
        &self,
        definitions: &[(String, Definition)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut connection = self.writer();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (id, definition) in definitions {
            let kind = definition.kind();
            let existing: Option<(String, String)> = transaction
                .prepare_cached(
                    "SELECT kind, definition_json FROM journey_definitions WHERE id = ?1",
                )?
                .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            match existing {
                None => {
                    if count_of_kind(&transaction, kind)? >= MAX_DEFINITIONS_PER_KIND {
                        return Err(StoreError::Corrupt(format!(
                            "the configured {} {id} would make more than {MAX_DEFINITIONS_PER_KIND}",
                            kind.as_str()
                        )));
                    }
                    insert_definition(&transaction, id, definition, now_ms)?;
                }
                Some((stored_kind, _)) if stored_kind != kind.as_str() => {
                    return Err(StoreError::Corrupt(format!(
                        "the configured {} {id} has the id of a stored {stored_kind}",
                        kind.as_str()
                    )));
                }
                Some((_, json)) => {
                    let stored: serde_json::Value = serde_json::from_str(&json)?;
                    if stored != definition.to_json() {
                        transaction
                            .prepare_cached(
                                "UPDATE journey_definitions
                                 SET definition_json = ?2, version = version + 1, modified_ms = ?3
                                 WHERE id = ?1",
                            )?
                            .execute(params![id, definition.to_json().to_string(), now_ms])?;
                        bump_generation(&transaction)?;
                    }
                }
            }
        }
        transaction.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite_migration::{Migrations, M};

    #[test]
    fn event_ids_increase_in_the_order_they_are_made() {
        let ids: Vec<String> = (0..10_000).map(|_| new_event_id()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
        }
        let parsed = uuid::Uuid::parse_str(&ids[0]).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
    }

    /// The rebuild of the match tables keeps their rows, and the conflict targets of the
    /// ingest statements still exist.
    #[test]
    fn match_storage_migration_keeps_the_rows() {
        let migrations = Migrations::new(vec![
            M::up(include_str!("../../migrations/sqlite/0001_init.sql")),
            M::up(include_str!("../../migrations/sqlite/0002_contacts.sql")),
            M::up(include_str!("../../migrations/sqlite/0003_enrichment.sql")),
            M::up(include_str!("../../migrations/sqlite/0004_segments.sql")),
            M::up(include_str!(
                "../../migrations/sqlite/0005_match_storage.sql"
            )),
        ]);
        let mut connection = Connection::open_in_memory().unwrap();
        connection
            .pragma_update(None, "foreign_keys", true)
            .unwrap();
        migrations.to_version(&mut connection, 4).unwrap();
        connection
            .execute_batch(
                "INSERT INTO sessions (id, short_id, deployment_id, visitor_id, first_ms, last_ms)
                 VALUES ('s1', '123456', 'd', 'v', 1, 9);
                 INSERT INTO session_segment_assignments (id, session_id, segment_id,
                    display_name, color, should_display_to_agent, assigned_ms, trigger_event_id)
                 VALUES ('a2', 's1', 'seg-b', 'B', '#fff', 1, 5, 'e1'),
                        ('a1', 's1', 'seg-a', 'A', '#000', 0, 5, 'e1');
                 INSERT INTO session_outcome_achievements (id, session_id, outcome_id,
                    display_name, version, is_positive, associated_value, achieved_ms,
                    trigger_event_id)
                 VALUES ('o1', 's1', 'out-a', 'O', 2, 1, '9.5', 7, 'e2');",
            )
            .unwrap();
        migrations.to_latest(&mut connection).unwrap();
        let segments: Vec<(String, String, String, i64)> = connection
            .prepare(
                "SELECT id, segment_id, display_name, assigned_ms
                 FROM session_segment_assignments WHERE session_id = 's1'
                 ORDER BY assigned_ms, id",
            )
            .unwrap()
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            segments,
            vec![
                ("a1".to_owned(), "seg-a".to_owned(), "A".to_owned(), 5),
                ("a2".to_owned(), "seg-b".to_owned(), "B".to_owned(), 5),
            ]
        );
        let outcome: (String, String, i64, Option<String>) = connection
            .query_row(
                "SELECT id, outcome_id, version, associated_value
                 FROM session_outcome_achievements WHERE session_id = 's1'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            outcome,
            (
                "o1".to_owned(),
                "out-a".to_owned(),
                2,
                Some("9.5".to_owned())
            )
        );
        let without_rowid = |table: &str| -> bool {
            connection
                .query_row(&format!("SELECT rowid FROM {table}"), [], |_| Ok(()))
                .is_err()
        };
        assert!(without_rowid("session_segment_assignments"));
        assert!(without_rowid("session_outcome_achievements"));
        // Matching the same segment again is still a conflict on (session, segment).
        let inserted = connection
            .execute(
                "INSERT INTO session_segment_assignments (id, session_id, segment_id,
                    display_name, color, should_display_to_agent, assigned_ms, trigger_event_id)
                 VALUES ('a3', 's1', 'seg-a', 'A', '#000', 0, 9, 'e3')
                 ON CONFLICT (session_id, segment_id) DO NOTHING",
                [],
            )
            .unwrap();
        assert_eq!(inserted, 0);
    }

    fn event(number: usize, kind: EventKind, context_lang: Option<&str>) -> NewEvent {
        NewEvent {
            id: format!("00000000-0000-7000-8000-{number:012}"),
            kind,
            name: if kind == EventKind::Pageview {
                "page_viewed".to_owned()
            } else {
                "clicked".to_owned()
            },
            time_ms: 1_700_000_000_000 + number as i64,
            client_time_ms: 1_700_000_000_000 + number as i64,
            received_ms: 1_700_000_000_000 + number as i64,
            page: (kind == EventKind::Pageview).then(|| Page {
                url: "https://shop.example/".to_owned(),
                ..Page::default()
            }),
            context: context_lang.map(|lang| Context {
                browser_lang: lang.to_owned(),
                ..Context::default()
            }),
            login_id: None,
            attributes: Default::default(),
            traits: Default::default(),
            user_agent: None,
            ip_address: None,
            user_agent_info: None,
            geolocation: None,
            referrer_info: None,
            identity_verified: false,
            identity_proof: Default::default(),
        }
    }

    /// The visit can change from one event of a batch to the next (here the latest
    /// context): context-only definitions are evaluated again then, and each match
    /// is triggered by the event that made it, while events that change nothing
    /// re-evaluate nothing.
    #[test]
    fn the_visit_changes_within_a_batch() {
        use crate::store::Store;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.sqlite3");
        let store = SqliteStore::open(&path).unwrap();
        let lang = |id: &str, prefix: &str| {
            let body = serde_json::json!({"displayName": id, "color": "#000000",
                "context": {"patterns": [{"criteria": [{"key": "browser.lang",
                    "operator": "startsWith", "values": [prefix], "entityType": "visit"}]}]}});
            (
                id.to_owned(),
                definition::parse(DefinitionKind::Segment, &body).unwrap(),
            )
        };
        store
            .load_configured_definitions(&[lang("german", "de"), lang("english", "en")], 0)
            .unwrap();
        let batch = NewBatch {
            deployment_id: "test".to_owned(),
            visitor_id: "0b5c8c3e-6f6e-4f7a-9d51-1d0b7f0e2a11".to_owned(),
            events: vec![
                event(1, EventKind::Pageview, None),
                event(2, EventKind::Record, Some("de-DE")),
                event(3, EventKind::Record, Some("de-AT")),
                event(4, EventKind::Record, None),
                event(5, EventKind::Pageview, Some("en-GB")),
            ],
            require_verified_identity: false,
        };
        store
            .ingest(&batch, 1_700_000_001_000, 30 * 60 * 1000)
            .unwrap();
        let connection = Connection::open(&path).unwrap();
        let assignments: Vec<(String, String)> = connection
            .prepare(
                "SELECT segment_id, trigger_event_id FROM session_segment_assignments
                 ORDER BY trigger_event_id",
            )
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            assignments,
            [
                ("german".to_owned(), batch.events[1].id.clone()),
                ("english".to_owned(), batch.events[4].id.clone()),
            ]
        );
        let fingerprint: String = connection
            .query_row(
                "SELECT fingerprint FROM session_visit_evaluations",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert!(fingerprint.contains("browser.lang=en-GB"), "{fingerprint}");
    }
}
