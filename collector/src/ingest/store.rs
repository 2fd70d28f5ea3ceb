//! The narrow interface the ingest core runs on: the row operations of one ingest
//! transaction. A backend implements [`IngestTransaction`] and nothing of the rules.

use footpath_protocol::v1::{Context, EventKind, Page};

use crate::enrich::geo::Geolocation;
use crate::enrich::referrer::ReferrerInfo;
use crate::enrich::user_agent::UserAgentInfo;
use crate::identity::LinkKind;
use crate::model::{
    ContactId, DeploymentId, IdentifierKind, NewBatch, NewEvent, SessionId, StoreError,
    StoredContact, VisitorId,
};
use crate::segments::{OutcomeAchievement, SegmentAssignment, StoredDefinition};
use crate::sessions::SessionSpan;

/// A session of the batch's visitor that the batch's events could join, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateSession {
    pub id: SessionId,
    pub span: SessionSpan,
    pub ended_ms: Option<i64>,
}

/// A session the core creates for an event that joins none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession<'a> {
    pub id: &'a SessionId,
    pub short_id: &'a str,
    pub deployment_id: &'a DeploymentId,
    pub visitor_id: &'a VisitorId,
    /// The first event's time: the session's first and last activity.
    pub first_ms: i64,
}

/// A session's span and end, as the batch changed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanUpdate {
    pub span: SessionSpan,
    pub ended_ms: Option<i64>,
    /// Whether `span.first_ms` differs from the stored one. Only late events move it,
    /// and a backend may skip writing it otherwise (SQLite rewrites the index entries
    /// of a column it sets, even to the same value).
    pub first_moved: bool,
}

/// What a session card shows that depends on the session's events (see
/// [`super::summary::SessionSummary`], which maintains it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SummaryRow {
    pub event_count: u64,
    pub pageview_count: u64,
    /// `(time_ms, id)` of the latest event. `None` with a non-zero `event_count` means
    /// the stored summary does not point at its latest event (it is recomputed).
    pub last_event: Option<(i64, String)>,
    pub last_pageview_id: Option<String>,
    pub landing_pageview_id: Option<String>,
    pub context_event_id: Option<String>,
    pub search_terms: Vec<String>,
    pub user_agent_info: Option<UserAgentInfo>,
    pub geolocation: Option<Geolocation>,
}

/// What a stored event contributes to its session's summary: what a recompute reads
/// for each event of the session, in `(time_ms, id)` order.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryFacts {
    pub id: String,
    pub time_ms: i64,
    pub kind: EventKind,
    pub has_context: bool,
    pub search_query: Option<String>,
    pub user_agent_info: Option<UserAgentInfo>,
    pub geolocation: Option<Geolocation>,
}

impl SummaryFacts {
    /// The facts as [`SummaryEvent`] borrows them.
    pub fn as_event(&self) -> SummaryEvent<'_> {
        SummaryEvent {
            id: &self.id,
            time_ms: self.time_ms,
            kind: self.kind,
            has_context: self.has_context,
            search_query: self.search_query.as_deref(),
            user_agent_info: self.user_agent_info.as_ref(),
            geolocation: self.geolocation.as_ref(),
        }
    }
}

/// [`SummaryFacts`] borrowed from a stored row or from an event about to be stored,
/// so that following a batch's events copies only what the summary keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SummaryEvent<'a> {
    pub id: &'a str,
    pub time_ms: i64,
    pub kind: EventKind,
    pub has_context: bool,
    pub search_query: Option<&'a str>,
    pub user_agent_info: Option<&'a UserAgentInfo>,
    pub geolocation: Option<&'a Geolocation>,
}

impl<'a> SummaryEvent<'a> {
    pub fn of(event: &'a NewEvent) -> SummaryEvent<'a> {
        SummaryEvent {
            id: &event.id,
            time_ms: event.time_ms,
            kind: event.kind,
            has_context: event.context.is_some(),
            search_query: event
                .page
                .as_ref()
                .and_then(|page| page.search_query.as_deref()),
            user_agent_info: event.user_agent_info.as_ref(),
            geolocation: event.geolocation.as_ref(),
        }
    }
}

/// What identity resolution reads for every event, anonymous ones included: the
/// contact the visitor's cookie belongs to, whether the session is authenticated, and
/// the session's current link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFacts {
    pub cookie_contact: Option<ContactId>,
    pub authenticated: bool,
    pub session_contact: Option<ContactId>,
    pub session_link: Option<LinkKind>,
}

/// A session's contact and whether it is authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionIdentity {
    pub contact_id: Option<ContactId>,
    pub authenticated: bool,
}

/// What a session's visit is made of, as its summary stores it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredVisitFacts {
    pub user_agent: Option<UserAgentInfo>,
    pub geolocation: Option<Geolocation>,
    /// The context of the session's latest event that had one.
    pub context: Option<Context>,
    pub landing: Option<LandingPage>,
}

/// A session's landing pageview: its page (the URL, referrer and campaign are what a
/// visit reads), its referrer's classification and its time.
#[derive(Debug, Clone, PartialEq)]
pub struct LandingPage {
    pub page: Page,
    pub referrer: Option<ReferrerInfo>,
    pub time_ms: i64,
}

/// The segments and outcomes a session has, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionMatches {
    pub segment_ids: Vec<String>,
    pub outcome_ids: Vec<String>,
}

/// How many events matched one journey pattern of one version of a definition, in one
/// scope (a session's key, or a customer's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternCount {
    pub scope_key: String,
    pub definition_id: String,
    pub version: u64,
    pub pattern_index: usize,
    pub count: u64,
}

/// When a customer's assignment of a segment expires (`None`: never).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentExpiry {
    pub segment_id: String,
    pub expires_ms: Option<i64>,
}

/// A Customer-scope segment assigned to a customer (a contact, or a visitor cookie),
/// with what the segment looked like then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerAssignment {
    pub customer_key: String,
    pub segment_id: String,
    pub display_name: String,
    pub color: String,
    pub should_display_to_agent: bool,
    pub assigned_ms: i64,
    pub expires_ms: Option<i64>,
}

/// The row operations of one ingest transaction. Everything the core does to a batch
/// goes through these; none of them decides anything.
///
/// **Serialisation** (what an implementation must guarantee, because the core reads
/// and then writes on the strength of what it read):
/// - **per visitor**: no two transactions that ingest events of the same deployment
///   and visitor run at once (the visitor's sessions are read, chosen from and
///   extended; a duplicate event id is checked and then inserted);
/// - **per customer**: no two transactions that change the links, fields or
///   Customer-scope segment counters and assignments of the same contact run at once
///   (the evaluation asks for it with [`IngestTransaction::lock_customer`] before it
///   reads a contact's counters; a customer that is a visitor cookie is covered by the
///   visitor's guarantee);
/// - **short ids**: [`IngestTransaction::short_id_taken`] sees the short ids of the
///   deployment's sessions committed or created by the same transaction.
///
/// SQLite gets all three from its single writer (one write transaction at a time); a
/// server backend takes transaction-scoped locks (e.g. PostgreSQL advisory locks keyed
/// by the deployment and visitor, and by the contact), never a global lock. An event id
/// is unique in the events table, so a duplicate that slips past
/// [`IngestTransaction::event_exists`] fails the insert rather than being stored twice.
///
/// The methods are synchronous: the core is plain Rust that runs on the backend's
/// writer (SQLite's group-committing thread), not on the async runtime.
pub trait IngestTransaction {
    /// Whether an event with this id is stored (a retried batch).
    fn event_exists(&mut self, event_id: &str) -> Result<bool, StoreError>;

    /// The visitor's sessions not closed by a logout (or for being full) whose last
    /// activity is after `last_after_ms` and whose first is before `first_before_ms`.
    fn candidate_sessions(
        &mut self,
        deployment_id: &DeploymentId,
        visitor_id: &VisitorId,
        last_after_ms: i64,
        first_before_ms: i64,
    ) -> Result<Vec<CandidateSession>, StoreError>;

    /// Whether a session of the deployment active at or after `active_since_ms` has
    /// this short id.
    fn short_id_taken(
        &mut self,
        deployment_id: &DeploymentId,
        short_id: &str,
        active_since_ms: i64,
    ) -> Result<bool, StoreError>;

    fn insert_session(&mut self, session: &NewSession<'_>) -> Result<(), StoreError>;

    fn update_session_span(
        &mut self,
        session_id: &SessionId,
        update: &SpanUpdate,
    ) -> Result<(), StoreError>;

    /// Marks the session closed (it takes no more events) and sets its end.
    fn close_session(&mut self, session_id: &SessionId, ended_ms: i64) -> Result<(), StoreError>;

    fn session_summary(&mut self, session_id: &SessionId) -> Result<SummaryRow, StoreError>;

    fn write_session_summary(
        &mut self,
        session_id: &SessionId,
        summary: &SummaryRow,
    ) -> Result<(), StoreError>;

    /// The summary facts of every stored event of the session, in `(time_ms, id)`
    /// order (only for a recompute, which late events need).
    fn session_summary_facts(
        &mut self,
        session_id: &SessionId,
    ) -> Result<Vec<SummaryFacts>, StoreError>;

    /// Stores the event in the session; `authenticated` is the session's state once
    /// the event's identity was resolved.
    fn insert_event(
        &mut self,
        batch: &NewBatch,
        session_id: &SessionId,
        event: &NewEvent,
        authenticated: bool,
    ) -> Result<(), StoreError>;

    fn identity_facts(
        &mut self,
        visitor_id: &VisitorId,
        session_id: &SessionId,
    ) -> Result<IdentityFacts, StoreError>;

    /// Contacts that have the identifier, oldest contact first.
    fn contacts_with_identifier(
        &mut self,
        kind: IdentifierKind,
        value: &str,
    ) -> Result<Vec<ContactId>, StoreError>;

    /// Removes the visitor's cookie identifier from whichever contact has it.
    fn remove_cookie(&mut self, visitor_id: &VisitorId) -> Result<(), StoreError>;

    fn add_cookie(
        &mut self,
        contact_id: &ContactId,
        visitor_id: &VisitorId,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    fn link_session(
        &mut self,
        session_id: &SessionId,
        contact_id: &ContactId,
        link: LinkKind,
    ) -> Result<(), StoreError>;

    fn set_session_authenticated(
        &mut self,
        session_id: &SessionId,
        authenticated: bool,
    ) -> Result<(), StoreError>;

    fn contact(&mut self, contact_id: &ContactId) -> Result<Option<StoredContact>, StoreError>;

    /// Replaces the contact's fields (Email and Phone identifiers follow them, as with
    /// [`crate::store::Store::replace_contact`]).
    fn replace_contact_fields(
        &mut self,
        contact_id: &ContactId,
        fields: &crate::contacts::ContactFields,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    // Segment and outcome evaluation (`super::segments`): row operations only, each
    // read made when the evaluation first needs it and the writes gathered at the end
    // of the batch.

    /// The definitions' generation: it moves with every change of a definition, so
    /// that every store instance (and process) on the database knows when its index
    /// of them is stale.
    fn definitions_generation(&mut self) -> Result<i64, StoreError>;

    /// Every stored definition: the segments, then the outcomes, each oldest first (by
    /// creation time, then insertion order).
    fn active_definitions(&mut self) -> Result<Vec<StoredDefinition>, StoreError>;

    /// The session's contact and whether it is authenticated, as of now in this
    /// transaction (identity can change both with any event).
    fn session_identity(&mut self, session_id: &SessionId) -> Result<SessionIdentity, StoreError>;

    /// What the session's visit is made of as stored, i.e. as of before the batch (the
    /// summary is written at the end of the batch).
    fn session_visit_facts(
        &mut self,
        session_id: &SessionId,
    ) -> Result<StoredVisitFacts, StoreError>;

    /// The ids of the segments assigned to the session and of the outcomes it achieved.
    fn session_matches(&mut self, session_id: &SessionId) -> Result<SessionMatches, StoreError>;

    /// The fingerprint of the session's last visit-level evaluation.
    fn visit_fingerprint(&mut self, session_id: &SessionId) -> Result<Option<String>, StoreError>;

    fn write_visit_fingerprint(
        &mut self,
        session_id: &SessionId,
        fingerprint: &str,
    ) -> Result<(), StoreError>;

    /// The pattern counters stored under the scope key (a session's, or a customer's),
    /// of every definition and version.
    fn pattern_counts(&mut self, scope_key: &str) -> Result<Vec<PatternCount>, StoreError>;

    /// Inserts the counters, or sets the count of those stored.
    fn write_pattern_counts(&mut self, counts: &[PatternCount]) -> Result<(), StoreError>;

    /// The customer's Customer-scope segment assignments and when each expires.
    fn customer_assignments(
        &mut self,
        customer_key: &str,
    ) -> Result<Vec<AssignmentExpiry>, StoreError>;

    /// The live Customer-scope assignments (not expired at `now_ms`) of either key,
    /// oldest first (by assignment time, then segment id).
    fn live_customer_assignments(
        &mut self,
        customer_key: &str,
        visitor_key: &str,
        now_ms: i64,
    ) -> Result<Vec<CustomerAssignment>, StoreError>;

    /// Inserts the assignments; one that exists is replaced only when it had expired at
    /// `now_ms` (a live one is kept as it is).
    fn write_customer_assignments(
        &mut self,
        assignments: &[CustomerAssignment],
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Inserts the assignments, in order; a session's second assignment of a segment
    /// is ignored.
    fn write_segment_assignments(
        &mut self,
        assignments: &[(SessionId, SegmentAssignment)],
    ) -> Result<(), StoreError>;

    /// Inserts the achievements, in order; a session's second achievement of an outcome
    /// is ignored.
    fn write_outcome_achievements(
        &mut self,
        achievements: &[(SessionId, OutcomeAchievement)],
    ) -> Result<(), StoreError>;

    /// Serialises this transaction's reads and writes of the contact's Customer-scope
    /// counters and assignments with every other transaction's (the per-customer
    /// guarantee above): called before the first read of them in a batch. A backend
    /// whose writer is single does nothing.
    fn lock_customer(&mut self, contact_id: &ContactId) -> Result<(), StoreError>;
}
