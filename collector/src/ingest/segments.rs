//! Segment and outcome evaluation on ingest (see `crate::segments` for the rules), as
//! plain Rust over the transaction's row operations ([`IngestTransaction`]).
//!
//! Evaluation is one call per stored event, [`BatchEvaluation::evaluate`], made by
//! [`super::ingest_batch`] in the transaction that stores the event, with a
//! [`BatchEvaluation`] that lives for the batch: the event, its pattern counters, and
//! any assignment or achievement it completes commit or roll back together.
//!
//! Per batch it costs: one read of the definitions' generation (to know whether the
//! store's cached index is current); per session of the batch, each read only when
//! first needed, one read of what the session has (segments, outcomes: when some
//! candidate pattern or visit-level definition could match), one of its last visit
//! fingerprint and one of its summary as of before the batch (when visit-level
//! definitions exist or a candidate pattern is left); per counter scope and customer
//! touched, one read of its counters and assignments; and at the end a few multi-row
//! writes of the batch's assignments, achievements and changed counters.
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

use footpath_protocol::v1::{Context, EventKind, Page};

use super::store::{AssignmentExpiry, CustomerAssignment, PatternCount, StoredVisitFacts};
use super::IngestTransaction;
use crate::enrich::geo::Geolocation;
use crate::enrich::referrer::ReferrerInfo;
use crate::enrich::user_agent::UserAgentInfo;
use crate::model::{ContactId, NewBatch, NewEvent, SessionId, StoreError};
use crate::segments::definition::ValueType;
use crate::segments::index::{EventValues, Index, PatternRef, Visit, VisitSources};
use crate::segments::{
    criteria, Definition, Details, OutcomeAchievement, Scope, SegmentAssignment, StoredDefinition,
};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The index of the active definitions, kept by a store instance (not per process):
/// every change of a definition moves the database's generation, which tells
/// [`IndexCache::current`] to rebuild, so that several store instances and processes
/// on one database apply the same definitions.
#[derive(Default)]
pub struct IndexCache {
    index: Mutex<Option<Arc<Index>>>,
}

impl std::fmt::Debug for IndexCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexCache").finish_non_exhaustive()
    }
}

impl IndexCache {
    /// The index of the active definitions, rebuilt when they changed.
    pub fn current<T: IngestTransaction>(
        &self,
        transaction: &mut T,
    ) -> Result<Arc<Index>, StoreError> {
        let generation = transaction.definitions_generation()?;
        if let Some(index) = self
            .index
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|index| index.generation == generation)
        {
            return Ok(Arc::clone(index));
        }
        let definitions = transaction.active_definitions()?;
        let index = Arc::new(Index::build(generation, definitions));
        *self.index.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&index));
        Ok(index)
    }
}

/// The visit's sources as of `event` (stored in this transaction): the session's
/// summary as it was before the batch, completed by the event's own values (the
/// earliest user agent and geolocation, the latest context, the earliest pageview).
fn sources<'a>(
    stored: &'a StoredVisitFacts,
    event: &'a NewEvent,
    authenticated: bool,
) -> SourcesRef<'a> {
    let event_is_earlier_pageview = event.kind == EventKind::Pageview
        && event.page.is_some()
        && stored
            .landing
            .as_ref()
            .is_none_or(|landing| event.time_ms < landing.time_ms);
    let (landing_page, landing_referrer) = if event_is_earlier_pageview {
        (event.page.as_ref(), event.referrer_info.as_ref())
    } else {
        match &stored.landing {
            Some(landing) => (Some(&landing.page), landing.referrer.as_ref()),
            None => (None, None),
        }
    };
    SourcesRef {
        user_agent: stored
            .user_agent
            .as_ref()
            .or(event.user_agent_info.as_ref()),
        context: event.context.as_ref().or(stored.context.as_ref()),
        geolocation: stored.geolocation.as_ref().or(event.geolocation.as_ref()),
        landing_page,
        landing_referrer,
        authenticated,
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
}

/// What evaluation knows about the sessions, customers and pattern counters of one
/// batch, so that it asks the store once per batch and session rather than once per
/// event and definition, and skips the definitions a session already has before
/// testing anything.
///
/// [`super::ingest_batch`] makes one, empty, before a batch's first event, calls
/// [`BatchEvaluation::evaluate`] for each stored event and
/// [`BatchEvaluation::finish`] after the last, all inside the batch's transaction. It
/// holds nothing across batches: a batch that is rolled back (or a commit that fails)
/// drops it with everything it knew, and the next batch reads again what the store
/// holds. So it can never claim an assignment or a count that was not written.
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
pub struct BatchEvaluation {
    /// The definitions, read at the batch's first event: the batch applies one
    /// generation of them throughout.
    index: Option<Arc<Index>>,
    /// The key of the batch's visitor cookie as a customer.
    visitor_key: String,
    sessions: HashMap<SessionId, SessionState>,
    /// Customer key → segment id → when its assignment expires (`None`: never).
    customers: HashMap<String, HashMap<String, Option<i64>>>,
    /// The contacts whose customer lock this batch took.
    locked_contacts: HashSet<ContactId>,
    /// Scope key → its counters.
    scopes: HashMap<String, ScopeCounters>,
    /// Session segment assignments, outcome achievements and customer assignments
    /// not written yet: written at [`BatchEvaluation::finish`] (and the customer ones
    /// before customer assignments are read).
    pending_segments: Vec<(SessionId, SegmentAssignment)>,
    pending_outcomes: Vec<(SessionId, OutcomeAchievement)>,
    pending_customers: Vec<CustomerAssignment>,
    /// The time that decides which pending customer assignments replace expired ones.
    pending_customers_now_ms: i64,
    /// The candidate patterns of the current event (a buffer kept for the batch).
    candidates: Vec<PatternRef>,
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
    stored: Option<StoredVisitFacts>,
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

#[derive(Default)]
struct ScopeCounters {
    /// The session, for a session scope.
    session_id: Option<SessionId>,
    /// By (definition position, pattern index), for the current version.
    counts: HashMap<(usize, usize), Counter>,
}

struct Counter {
    count: u64,
    /// Changed since it was read.
    dirty: bool,
}

/// The key of a visitor cookie as a customer (and as a counter scope). Erasure finds
/// these by the same shape (`crate::privacy::customer_keys`).
fn visitor_customer_key(deployment_id: &str, visitor_id: &str) -> String {
    format!("visitor:{deployment_id}:{visitor_id}")
}

fn contact_customer_key(contact_id: &ContactId) -> String {
    format!("contact:{contact_id}")
}

impl BatchEvaluation {
    /// An evaluation for `batch`, knowing nothing yet.
    pub fn new(batch: &NewBatch) -> BatchEvaluation {
        BatchEvaluation {
            index: None,
            visitor_key: visitor_customer_key(&batch.deployment_id, &batch.visitor_id),
            sessions: HashMap::new(),
            customers: HashMap::new(),
            locked_contacts: HashSet::default(),
            scopes: HashMap::new(),
            pending_segments: Vec::new(),
            pending_outcomes: Vec::new(),
            pending_customers: Vec::new(),
            pending_customers_now_ms: 0,
            candidates: Vec::new(),
        }
    }

    fn index<T: IngestTransaction>(
        &mut self,
        transaction: &mut T,
        cache: &IndexCache,
    ) -> Result<Arc<Index>, StoreError> {
        if let Some(index) = &self.index {
            return Ok(Arc::clone(index));
        }
        let index = cache.current(transaction)?;
        self.index = Some(Arc::clone(&index));
        Ok(index)
    }

    /// The session's state, made empty when the batch first meets the session.
    fn session(&mut self, session_id: &SessionId) -> &mut SessionState {
        if !self.sessions.contains_key(session_id) {
            self.sessions
                .insert(session_id.clone(), SessionState::default());
        }
        self.sessions
            .get_mut(session_id)
            .expect("the session's state was just made")
    }

    /// What the session has, read at first need.
    fn has<T: IngestTransaction>(
        &mut self,
        transaction: &mut T,
        session_id: &SessionId,
    ) -> Result<&mut SessionHas, StoreError> {
        let index = self.index.clone();
        let session = self.session(session_id);
        if session.has.is_none() {
            let matches = transaction.session_matches(session_id)?;
            let segments: HashSet<String> = matches.segment_ids.into_iter().collect();
            let outcomes: HashSet<String> = matches.outcome_ids.into_iter().collect();
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
    fn fingerprint<T: IngestTransaction>(
        &mut self,
        transaction: &mut T,
        session_id: &SessionId,
    ) -> Result<&mut Option<String>, StoreError> {
        let session = self.session(session_id);
        if session.fingerprint.is_none() {
            session.fingerprint = Some(transaction.visit_fingerprint(session_id)?);
        }
        Ok(session
            .fingerprint
            .as_mut()
            .expect("the fingerprint was just read"))
    }

    /// The session's visit as of `event`, made anew only when what it is made of
    /// differs from what the session's previous evaluated event had, with its
    /// fingerprint and the customer's key.
    fn event_visit<T: IngestTransaction>(
        &mut self,
        transaction: &mut T,
        session_id: &SessionId,
        event: &NewEvent,
        generation: i64,
    ) -> Result<EventVisit, StoreError> {
        let identity = transaction.session_identity(session_id)?;
        let customer_key = match &identity.contact_id {
            Some(contact_id) => {
                // Counters and assignments of a contact are shared by its visitors:
                // taken under its lock before anything of them is read.
                if !self.locked_contacts.contains(contact_id) {
                    transaction.lock_customer(contact_id)?;
                    self.locked_contacts.insert(contact_id.clone());
                }
                contact_customer_key(contact_id)
            }
            None => self.visitor_key.clone(),
        };
        let session = self.session(session_id);
        if session.stored.is_none() {
            session.stored = Some(transaction.session_visit_facts(session_id)?);
        }
        let stored = session
            .stored
            .as_ref()
            .expect("the session's facts were just read");
        let sources = sources(stored, event, identity.authenticated);
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
        })
    }

    fn customer<T: IngestTransaction>(
        &mut self,
        transaction: &mut T,
        customer_key: &str,
    ) -> Result<&mut HashMap<String, Option<i64>>, StoreError> {
        if !self.customers.contains_key(customer_key) {
            let assignments = transaction
                .customer_assignments(customer_key)?
                .into_iter()
                .map(
                    |AssignmentExpiry {
                         segment_id,
                         expires_ms,
                     }| (segment_id, expires_ms),
                )
                .collect();
            self.customers.insert(customer_key.to_owned(), assignments);
        }
        Ok(self
            .customers
            .get_mut(customer_key)
            .expect("the customer's state was just made"))
    }

    fn scope<T: IngestTransaction>(
        &mut self,
        transaction: &mut T,
        index: &Index,
        scope_key: &str,
        session_id: Option<&SessionId>,
    ) -> Result<&mut ScopeCounters, StoreError> {
        if !self.scopes.contains_key(scope_key) {
            let mut counts = HashMap::new();
            for stored in transaction.pattern_counts(scope_key)? {
                // Counts of other versions, or of definitions no longer active, are
                // never read by this batch.
                let Some(&position) = index.by_id.get(&stored.definition_id) else {
                    continue;
                };
                if index.definitions[position].version != stored.version {
                    continue;
                }
                counts.insert(
                    (position, stored.pattern_index),
                    Counter {
                        count: stored.count,
                        dirty: false,
                    },
                );
            }
            self.scopes.insert(
                scope_key.to_owned(),
                ScopeCounters {
                    session_id: session_id.cloned(),
                    counts,
                },
            );
        }
        Ok(self
            .scopes
            .get_mut(scope_key)
            .expect("the scope's counters were just read"))
    }

    /// Writes the customer assignments made so far (before the customer assignments
    /// are read, and at the end).
    fn flush_customers<T: IngestTransaction>(
        &mut self,
        transaction: &mut T,
    ) -> Result<(), StoreError> {
        if self.pending_customers.is_empty() {
            return Ok(());
        }
        transaction
            .write_customer_assignments(&self.pending_customers, self.pending_customers_now_ms)?;
        self.pending_customers.clear();
        Ok(())
    }

    /// Writes what the batch matched and the counters that changed and can still be
    /// read. Call it once, after the batch's last event, inside the batch's
    /// transaction.
    pub fn finish<T: IngestTransaction>(mut self, transaction: &mut T) -> Result<(), StoreError> {
        let Some(index) = self.index.clone() else {
            return Ok(());
        };
        if !self.pending_segments.is_empty() {
            transaction.write_segment_assignments(&self.pending_segments)?;
        }
        if !self.pending_outcomes.is_empty() {
            transaction.write_outcome_achievements(&self.pending_outcomes)?;
        }
        self.flush_customers(transaction)?;
        let mut counters = Vec::new();
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
                counters.push(PatternCount {
                    scope_key: scope_key.clone(),
                    definition_id: stored.id.clone(),
                    version: stored.version,
                    pattern_index: pattern,
                    count: counter.count,
                });
            }
        }
        if counters.is_empty() {
            return Ok(());
        }
        transaction.write_pattern_counts(&counters)
    }

    /// Evaluates the active segments and outcomes against `event`, which was just
    /// stored in `session_id` by this same transaction.
    pub fn evaluate<T: IngestTransaction>(
        &mut self,
        transaction: &mut T,
        cache: &IndexCache,
        session_id: &SessionId,
        event: &NewEvent,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let index = self.index(transaction, cache)?;
        if index.is_empty() {
            return Ok(());
        }
        let values = index.values(event);
        // The batch's buffer, given back whatever happens.
        let mut candidates = std::mem::take(&mut self.candidates);
        index.collect_candidates(&values, &mut candidates);
        let result = self.evaluate_candidates(
            transaction,
            &index,
            &values,
            &mut candidates,
            session_id,
            event,
            now_ms,
        );
        candidates.clear();
        self.candidates = candidates;
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn evaluate_candidates<T: IngestTransaction>(
        &mut self,
        transaction: &mut T,
        index: &Arc<Index>,
        values: &EventValues<'_>,
        candidates: &mut Vec<PatternRef>,
        session_id: &SessionId,
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
            let has = self.has(transaction, session_id)?;
            candidates.retain(|reference| !has.is_settled(reference.definition));
        }
        if candidates.is_empty() && !visit_level {
            return Ok(());
        }
        let (mut visit, visit_fingerprint, customer_key) = if visit_level {
            let current = self.event_visit(transaction, session_id, event, index.generation)?;
            (
                Some(current.visit),
                Some(current.fingerprint),
                current.customer_key,
            )
        } else {
            // Customer-scope segments make evaluation visit-level: without them, the
            // customer's key is never used.
            (None, None, String::new())
        };
        let mut matcher = Matcher {
            transaction,
            index,
            state: self,
            session_id,
            event,
            values,
            now_ms,
            session_scope_key: format!("session:{session_id}"),
            customer_key,
        };

        if let Some(fingerprint) = visit_fingerprint {
            let previous = matcher.state.fingerprint(matcher.transaction, session_id)?;
            if previous.as_deref() != Some(fingerprint.as_str()) {
                matcher.carry_customer_segments()?;
                let unsettled: Vec<usize> = {
                    let has = matcher.state.has(matcher.transaction, session_id)?;
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
                matcher
                    .transaction
                    .write_visit_fingerprint(session_id, &fingerprint)?;
                *matcher.state.fingerprint(matcher.transaction, session_id)? = Some(fingerprint);
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
                            matcher.transaction,
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
}

/// A UUID v7 for a segment-assigned or outcome-achieved event, greater than every one
/// made before by this process: readers order a session's matches of the same time by
/// id, which is then the order they were made in (the tables keep no insertion order).
/// The 12 bits after the milliseconds count the ids of that millisecond; the random
/// bits come from the thread's generator rather than from a system call per id.
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
struct Matcher<'a, 'v, T> {
    transaction: &'a mut T,
    index: &'a Index,
    state: &'a mut BatchEvaluation,
    session_id: &'a SessionId,
    event: &'a NewEvent,
    values: &'a EventValues<'v>,
    now_ms: i64,
    /// The scope key of the session's counters, and the customer's key.
    session_scope_key: String,
    customer_key: String,
}

impl<T: IngestTransaction> Matcher<'_, '_, T> {
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
                        // The batch's time decides what has expired; it is the same for
                        // every event of the batch.
                        if self.state.pending_customers_now_ms != now_ms {
                            self.state.flush_customers(self.transaction)?;
                            self.state.pending_customers_now_ms = now_ms;
                        }
                        self.state.pending_customers.push(CustomerAssignment {
                            customer_key,
                            segment_id: stored.id.clone(),
                            display_name: stored.definition.display_name.clone(),
                            color: color.clone(),
                            should_display_to_agent: *should_display_to_agent,
                            assigned_ms: self.event.time_ms,
                            expires_ms,
                        });
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
                self.state.pending_outcomes.push((
                    self.session_id.clone(),
                    OutcomeAchievement {
                        id: new_event_id(),
                        outcome_id: stored.id.clone(),
                        display_name: stored.definition.display_name.clone(),
                        version: stored.version,
                        is_positive: *is_positive,
                        associated_value,
                        achieved_ms: self.event.time_ms,
                        trigger_event_id: self.event.id.clone(),
                    },
                ));
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
        self.state.pending_segments.push((
            self.session_id.clone(),
            SegmentAssignment {
                id: new_event_id(),
                segment_id: segment_id.to_owned(),
                display_name: display_name.to_owned(),
                color: color.to_owned(),
                should_display_to_agent,
                assigned_ms: self.event.time_ms,
                trigger_event_id: self.event.id.clone(),
            },
        ));
        Ok(())
    }

    /// Gives the session the customer's live Customer-scope segments (by contact and by
    /// visitor cookie) that are still defined and active.
    fn carry_customer_segments(&mut self) -> Result<(), StoreError> {
        if self.index.customer_segments.is_empty() {
            return Ok(());
        }
        // The customer assignments of this batch so far are read too.
        self.state.flush_customers(self.transaction)?;
        let carried = self.transaction.live_customer_assignments(
            &self.customer_key,
            &self.state.visitor_key,
            self.now_ms,
        )?;
        for assignment in carried {
            if self
                .index
                .customer_segments
                .contains_key(&assignment.segment_id)
            {
                self.assign_to_session(
                    &assignment.segment_id,
                    &assignment.display_name,
                    &assignment.color,
                    assignment.should_display_to_agent,
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use footpath_protocol::v1::AttributeValue;
    use serde_json::{json, Value};

    use super::super::memory::{MemoryRows, SegmentReads, SegmentWrites};
    use super::super::{ingest_batch, SessionLimits};
    use super::*;
    use crate::segments::DefinitionKind;

    const T0: i64 = 1_700_000_000_000;
    const MINUTE: i64 = 60_000;
    const TIMEOUT: i64 = 20 * MINUTE;

    #[test]
    fn event_ids_increase_in_the_order_they_are_made() {
        let ids: Vec<String> = (0..10_000).map(|_| new_event_id()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
        }
        let parsed = uuid::Uuid::parse_str(&ids[0]).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
    }

    fn event_id(number: usize) -> String {
        format!("00000000-0000-7000-8000-{number:012}")
    }

    /// A pageview of `path` (or, when `path` starts with `!`, a record of that name)
    /// at `minute`, with the browser language `lang` when given.
    fn event(number: usize, path: &str, minute: i64, lang: Option<&str>) -> NewEvent {
        let record = path.strip_prefix('!');
        NewEvent {
            id: event_id(number),
            kind: if record.is_some() {
                EventKind::Record
            } else {
                EventKind::Pageview
            },
            name: record.unwrap_or("page_viewed").to_owned(),
            time_ms: T0 + minute * MINUTE,
            client_time_ms: T0 + minute * MINUTE,
            received_ms: T0 + minute * MINUTE,
            page: record.is_none().then(|| Page {
                url: format!("https://shop.example{path}"),
                ..Page::default()
            }),
            context: lang.map(|lang| Context {
                browser_lang: lang.to_owned(),
                ..Context::default()
            }),
            login_id: None,
            attributes: record
                .map(|_| {
                    BTreeMap::from([("value".to_owned(), AttributeValue::String("9.5".to_owned()))])
                })
                .unwrap_or_default(),
            traits: BTreeMap::new(),
            user_agent: None,
            ip_address: None,
            user_agent_info: None,
            geolocation: None,
            referrer_info: None,
            identity_verified: false,
            identity_proof: Default::default(),
        }
    }

    fn batch(events: Vec<NewEvent>) -> NewBatch {
        NewBatch {
            deployment_id: "shop".to_owned(),
            visitor_id: "0b7e0c2a-5b9e-4a57-9f3e-000000000001".to_owned(),
            events,
            require_verified_identity: false,
        }
    }

    /// Ingests the batches (events numbered from 0 across them), each at the time of
    /// its last event.
    fn ingest(rows: &mut MemoryRows, cache: &IndexCache, batches: &[&[(&str, i64, Option<&str>)]]) {
        let mut number = rows.events.len();
        for events in batches {
            let events: Vec<NewEvent> = events
                .iter()
                .map(|&(path, minute, lang)| {
                    number += 1;
                    event(number - 1, path, minute, lang)
                })
                .collect();
            let now_ms = events.iter().map(|event| event.time_ms).max().unwrap_or(T0);
            let limits = SessionLimits::default();
            ingest_batch(rows, &batch(events), now_ms, TIMEOUT, &limits, cache).unwrap();
        }
    }

    fn segment(pattern: Value) -> Value {
        json!({"displayName": "S", "color": "#000000", "journey": {"patterns": [pattern]}})
    }

    /// What the sessions got: `(session number, definition id, trigger event number)`,
    /// in the order it was written.
    fn matches(rows: &MemoryRows) -> Vec<(usize, String, usize)> {
        let session = |id: &SessionId| {
            rows.sessions
                .iter()
                .position(|session| session.id == *id)
                .unwrap()
        };
        let event = |id: &str| (0..).find(|number| event_id(*number) == id).unwrap();
        rows.segment_assignments
            .iter()
            .map(|(id, row)| {
                (
                    session(id),
                    row.segment_id.clone(),
                    event(&row.trigger_event_id),
                )
            })
            .chain(rows.outcome_achievements.iter().map(|(id, row)| {
                (
                    session(id),
                    row.outcome_id.clone(),
                    event(&row.trigger_event_id),
                )
            }))
            .collect()
    }

    type Definitions<'a> = &'a [(&'a str, DefinitionKind, Value)];
    type Batches<'a> = &'a [&'a [&'a [(&'a str, i64, Option<&'a str>)]]];
    /// A case: its name, the definitions, groups of batches, what matched.
    type Case<'a> = (
        &'a str,
        Definitions<'a>,
        Batches<'a>,
        &'a [(usize, &'a str, usize)],
    );

    #[test]
    fn definitions_match_by_their_rules() {
        use DefinitionKind::{Outcome, Segment};
        let cart = || {
            segment(json!({"count": 1, "criteria": [
            {"key": "page.pathname", "operator": "startsWith", "values": ["/cart"]}]}))
        };
        let two_pages = || segment(json!({"eventName": "page_viewed", "count": 2}));
        let mut loyal = segment(json!({"eventName": "page_viewed", "count": 3}));
        loyal["scope"] = json!("Customer");
        let order = json!({"displayName": "Order", "isPositive": true,
            "journey": {"patterns": [{"eventName": "order_completed", "count": 1}]},
            "associatedValueField": {"dataType": "Number", "name": "value"}});
        let german = json!({"displayName": "German", "color": "#000000",
            "context": {"patterns": [{"criteria": [{"key": "browser.lang",
                "operator": "startsWith", "values": ["de"], "entityType": "visit"}]}]}});
        let cases: &[Case<'_>] = &[
            (
                "a page pattern assigns a session segment once",
                &[("cart", Segment, cart())],
                &[&[&[("/", 0, None), ("/cart", 1, None), ("/cart/2", 2, None)]]],
                &[(0, "cart", 1)],
            ),
            (
                "an outcome is achieved once per session",
                &[("order", Outcome, order.clone())],
                &[&[
                    &[("!order_completed", 0, None)],
                    &[("!order_completed", 1, None)],
                ]],
                &[(0, "order", 0)],
            ),
            (
                "counts add up across batches",
                &[("two", Segment, two_pages())],
                &[&[
                    &[("/a", 0, None)],
                    &[("!clicked", 1, None)],
                    &[("/b", 2, None)],
                ]],
                &[(0, "two", 2)],
            ),
            (
                "session counts start afresh in a new session",
                &[("two", Segment, two_pages())],
                &[&[&[("/a", 0, None)], &[("/b", 30, None), ("/c", 31, None)]]],
                &[(1, "two", 2)],
            ),
            (
                "customer counts go on across sessions and the segment is carried",
                &[("loyal", Segment, loyal.clone())],
                &[&[
                    &[("/a", 0, None), ("/b", 1, None)],
                    &[("/c", 30, None)],
                    &[("/d", 60, None)],
                ]],
                &[(1, "loyal", 2), (2, "loyal", 3)],
            ),
            (
                "context-only definitions follow the visit within a batch",
                &[("german", Segment, german.clone())],
                &[&[&[
                    ("/", 0, None),
                    ("!clicked", 1, Some("en")),
                    ("!clicked", 2, Some("de-AT")),
                ]]],
                &[(0, "german", 2)],
            ),
        ];
        for (name, definitions, batches, expected) in cases {
            let mut rows = MemoryRows::default();
            for (id, kind, json) in *definitions {
                rows.define(id, *kind, json.clone());
            }
            let cache = IndexCache::default();
            for batches in *batches {
                ingest(&mut rows, &cache, batches);
            }
            let expected: Vec<(usize, String, usize)> = expected
                .iter()
                .map(|(session, id, event)| (*session, (*id).to_owned(), *event))
                .collect();
            assert_eq!(matches(&rows), expected, "{name}");
        }
    }

    #[test]
    fn an_outcome_keeps_its_associated_value_and_version() {
        let mut rows = MemoryRows::default();
        rows.define(
            "order",
            DefinitionKind::Outcome,
            json!({"displayName": "Order", "isPositive": true,
                "journey": {"patterns": [{"eventName": "order_completed", "count": 1}]},
                "associatedValueField": {"dataType": "Number", "name": "value"}}),
        );
        ingest(
            &mut rows,
            &IndexCache::default(),
            &[&[("!order_completed", 0, None)]],
        );
        let (_, achievement) = &rows.outcome_achievements[0];
        assert_eq!(achievement.associated_value.as_deref(), Some("9.5"));
        assert_eq!(achievement.version, 1);
        assert!(achievement.is_positive);
    }

    /// The visit can change from one event of a batch to the next (here the latest
    /// context): context-only definitions are evaluated again then, and each match
    /// is triggered by the event that made it, while events that change nothing
    /// re-evaluate nothing.
    #[test]
    fn the_visit_changes_within_a_batch() {
        let mut rows = MemoryRows::default();
        for (id, prefix) in [("german", "de"), ("english", "en")] {
            rows.define(
                id,
                DefinitionKind::Segment,
                json!({"displayName": id, "color": "#000000",
                    "context": {"patterns": [{"criteria": [{"key": "browser.lang",
                        "operator": "startsWith", "values": [prefix], "entityType": "visit"}]}]}}),
            );
        }
        ingest(
            &mut rows,
            &IndexCache::default(),
            &[&[
                ("/", 0, None),
                ("!clicked", 0, Some("de-DE")),
                ("!clicked", 0, Some("de-AT")),
                ("!clicked", 0, None),
                ("/", 0, Some("en-GB")),
            ]],
        );
        assert_eq!(
            matches(&rows),
            [(0, "german".to_owned(), 1), (0, "english".to_owned(), 4)]
        );
        let fingerprint = rows.fingerprints.values().next().unwrap();
        assert!(fingerprint.contains("browser.lang=en-GB"), "{fingerprint}");
    }

    /// The per-batch cost the module promises: reads once per batch and session, writes
    /// once per batch; a batch no definition cares about reads only the generation.
    #[test]
    fn a_batch_reads_once_and_writes_once() {
        let mut rows = MemoryRows::default();
        rows.define(
            "five",
            DefinitionKind::Segment,
            segment(json!({"eventName": "page_viewed", "count": 5})),
        );
        let cache = IndexCache::default();
        ingest(
            &mut rows,
            &cache,
            &[&[
                ("/a", 0, None),
                ("/b", 1, None),
                ("/c", 2, None),
                ("/d", 3, None),
            ]],
        );
        assert_eq!(
            rows.reads,
            SegmentReads {
                generation: 1,
                definitions: 1,
                visit_facts: 0,
                matches: 1,
                counts: 1,
            }
        );
        assert_eq!(
            rows.writes,
            SegmentWrites {
                segments: 0,
                outcomes: 0,
                counts: 1,
            }
        );
        // The index is kept while the generation stays. Once the session has the
        // segment, its counts in the session are never read again, nor written.
        ingest(
            &mut rows,
            &cache,
            &[&[("!clicked", 4, None), ("/e", 5, None)]],
        );
        assert_eq!((rows.reads.generation, rows.reads.definitions), (2, 1));
        assert_eq!((rows.writes.segments, rows.writes.counts), (1, 1));
        // A changed definition is read again; the session has it, so nothing counts.
        rows.define(
            "five",
            DefinitionKind::Segment,
            segment(json!({"eventName": "page_viewed", "count": 1})),
        );
        ingest(&mut rows, &cache, &[&[("/f", 6, None)]]);
        assert_eq!(rows.reads.definitions, 2);
        let counts: Vec<(u64, u64)> = rows
            .pattern_counts
            .iter()
            .map(|count| (count.version, count.count))
            .collect();
        assert_eq!(counts, [(1, 4)]);
        assert_eq!(rows.segment_assignments.len(), 1);
    }

    #[test]
    fn a_contact_customer_is_locked_before_its_counters_are_read() {
        let mut rows = MemoryRows::default();
        rows.add_contact("ada", "ada@example.com");
        let mut loyal = segment(json!({"eventName": "page_viewed", "count": 1}));
        loyal["scope"] = json!("Customer");
        rows.define("loyal", DefinitionKind::Segment, loyal);
        let mut identify = event(0, "/", 0, None);
        identify.kind = EventKind::Identify;
        identify.name = "identified".to_owned();
        identify.page = None;
        identify.traits.insert(
            "email".to_owned(),
            AttributeValue::String("ada@example.com".to_owned()),
        );
        let events = vec![identify, event(1, "/", 1, None), event(2, "/x", 2, None)];
        ingest_batch(
            &mut rows,
            &batch(events),
            T0 + 2 * MINUTE,
            TIMEOUT,
            &SessionLimits::default(),
            &IndexCache::default(),
        )
        .unwrap();
        assert_eq!(rows.customer_locks, [ContactId::new("ada")]);
        let keys: Vec<&str> = rows
            .customer_assignments
            .iter()
            .map(|assignment| assignment.customer_key.as_str())
            .collect();
        assert_eq!(keys, ["contact:ada"]);
    }
}
