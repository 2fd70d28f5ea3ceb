//! Storage of events and sessions.
//!
//! **Architecture Invariant:** no SQL outside this module. Handlers talk to the
//! [`Store`] trait only, and the router's state holds an `Arc<dyn Store>`, so that a
//! server backend (PostgreSQL, chosen by the database URL's scheme, with its own
//! `migrations/postgres/` folder) can be added without touching the HTTP layer.
//!
//! The methods are synchronous: SQLite is an in-process library, and the handlers call
//! them through `tokio::task::spawn_blocking`.

mod contacts_sql;
// Data rights and retention: erasing, exporting, deleting by age (crate::privacy).
mod privacy_sql;
// Usage figures per deployment and day (crate::usage).
mod usage_sql;
// Segments and outcomes: definitions and their evaluation on ingest (crate::segments).
mod segments_sql;
mod sqlite;

use std::collections::BTreeMap;

use footpath_protocol::v1::{AttributeValue, Context, EventKind, Page};

use crate::contacts::ContactFields;
use crate::enrich::geo::Geolocation;
use crate::enrich::referrer::ReferrerInfo;
use crate::enrich::user_agent::UserAgentInfo;

pub use sqlite::{IngestQueueSettings, SessionLimits, SqliteStore};

/// The answer to a queued ingest (see [`Store::enqueue_ingest`]): one outcome per event
/// once the transaction that holds the batch has committed.
pub type IngestReply = tokio::sync::oneshot::Receiver<Result<Vec<IngestOutcome>, StoreError>>;

/// One validated event, ready to be stored. Times are milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The event's UUID in lowercase hyphenated form.
    pub id: String,
    pub kind: EventKind,
    pub name: String,
    /// The device time corrected by the device's clock skew; events are ordered and
    /// sessions are cut by this time.
    pub time_ms: i64,
    /// The device time as sent.
    pub client_time_ms: i64,
    /// When the collector received the batch.
    pub received_ms: i64,
    pub page: Option<Page>,
    pub context: Option<Context>,
    pub login_id: Option<String>,
    pub attributes: BTreeMap<String, AttributeValue>,
    pub traits: BTreeMap<String, AttributeValue>,
    /// The `User-Agent` header of the request that carried the event.
    pub user_agent: Option<String>,
    /// The client's IP address (see `enrich::client_ip`); `None` when the deployment
    /// does not store IP addresses.
    pub ip_address: Option<String>,
    /// The parsed `user_agent`.
    pub user_agent_info: Option<UserAgentInfo>,
    /// Where the client's IP address is, when a GeoIP database is configured.
    pub geolocation: Option<Geolocation>,
    /// The classification of the page's referrer, when it has one.
    pub referrer_info: Option<ReferrerInfo>,
    /// Whether the event carried a valid identity token (the token itself is taken out
    /// of the traits and never stored). Stored with the event.
    pub identity_verified: bool,
    /// What the event's token proved; set with `identity_verified` on the ingest path
    /// only (the claims are not stored as such, so events read back have `Absent`).
    pub identity_proof: crate::identity::IdentityProof,
}

/// The validated events of one batch, all from one visitor of one deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBatch {
    pub deployment_id: String,
    /// The visitor's UUID in lowercase hyphenated form.
    pub visitor_id: String,
    pub events: Vec<NewEvent>,
    /// The deployment trusts traits for identity resolution only on events whose
    /// identity signature is valid.
    pub require_verified_identity: bool,
}

/// What happened to one event of an ingested batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Stored now.
    Accepted,
    /// An event with this id was stored before (a retried batch); not stored again.
    Duplicate,
}

/// An event as read back, with its session and its place in the session.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub session_id: String,
    pub deployment_id: String,
    pub visitor_id: String,
    pub event: NewEvent,
    /// Events of the session up to and including this one, in time order.
    pub total_event_count: u64,
    /// Pageviews of the session up to and including this event.
    pub total_pageview_count: u64,
    /// Whether the session was authenticated once this event was stored.
    pub authenticated: bool,
}

/// The latest event of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastEvent {
    pub id: String,
    pub name: String,
    pub time_ms: i64,
}

/// A session as read back. Every field is maintained when events are ingested (or by
/// the idle sweep, for `ended_ms`), so reading computes nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSession {
    /// A UUID version 7.
    pub id: String,
    /// A 6-digit number, unique among the deployment's sessions of the last 24 hours.
    pub short_id: String,
    pub deployment_id: String,
    pub visitor_id: String,
    pub first_ms: i64,
    pub last_ms: i64,
    /// Set by [`Store::close_idle_sessions`]; equal to `last_ms`, the time the visitor
    /// was last active. Or set by a logout, to the logout's time.
    pub ended_ms: Option<i64>,
    pub event_count: u64,
    pub pageview_count: u64,
    /// The page of the pageview with the greatest time.
    pub last_page: Option<Page>,
    /// The event with the greatest time.
    pub last_event: Option<LastEvent>,
    /// Distinct non-empty site-search terms, in time order.
    pub search_terms: Vec<String>,
    /// The page of the session's earliest pageview: its referrer and campaign are the
    /// session's.
    pub landing_page: Option<Page>,
    /// The context of the latest event that had one.
    pub context: Option<Context>,
    /// User agent and IP address of the latest event.
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
    /// The parsed user agent and the geolocation of the session's earliest event that
    /// has them.
    pub user_agent_info: Option<UserAgentInfo>,
    pub geolocation: Option<Geolocation>,
    /// The stored referrer classification of the landing page.
    pub landing_referrer: Option<ReferrerInfo>,
    /// The external contact identity resolution linked the session to.
    pub contact_id: Option<String>,
    /// How that link was made (a token, a recognised cookie, or unverified traits).
    pub contact_link: Option<crate::identity::LinkKind>,
    /// Whether an event of the session carried a valid identity token.
    pub authenticated: bool,
    /// Segments assigned and outcomes achieved in the session, oldest first (see
    /// `crate::segments`).
    pub segment_assignments: Vec<crate::segments::SegmentAssignment>,
    pub outcome_achievements: Vec<crate::segments::OutcomeAchievement>,
}

/// Optional filters of a session listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    pub deployment_id: Option<String>,
    pub visitor_id: Option<String>,
    /// Only the sessions linked to this external contact.
    pub contact_id: Option<String>,
}

/// The kinds of contact identifiers the collector maintains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IdentifierKind {
    /// One of the contact's emails, lowercased.
    Email,
    /// One of the contact's phone numbers, in E.164.
    Phone,
    /// A visitor id that identity resolution linked to the contact.
    Cookie,
}

impl IdentifierKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Email => "Email",
            IdentifierKind::Phone => "Phone",
            IdentifierKind::Cookie => "Cookie",
        }
    }

    pub fn parse(text: &str) -> Option<IdentifierKind> {
        [
            IdentifierKind::Email,
            IdentifierKind::Phone,
            IdentifierKind::Cookie,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIdentifier {
    pub kind: IdentifierKind,
    pub value: String,
    pub created_ms: i64,
}

/// An external contact as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredContact {
    /// A UUID version 4.
    pub id: String,
    /// `Curated` for contacts created through the API (the only way to create one).
    pub contact_type: String,
    pub fields: ContactFields,
    /// Emails and phones (maintained from `fields`), then cookies; each group oldest
    /// first.
    pub identifiers: Vec<StoredIdentifier>,
    pub create_ms: i64,
    pub modify_ms: i64,
}

/// A page-numbered contact search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactQuery {
    /// Matches, case-insensitively, a part of a name, of any email, or of the digits
    /// of any phone number.
    pub text: Option<String>,
    /// From 1.
    pub page_number: usize,
    pub page_size: usize,
}

/// One page of contacts, oldest first, and how many match in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactPage {
    pub items: Vec<StoredContact>,
    pub total: u64,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing<T> {
    pub items: Vec<T>,
    /// Whether items follow the last one of this page.
    pub has_more: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("stored JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("stored value is invalid: {0}")]
    Corrupt(String),
    /// A pagination cursor that names no item of the listing: a client error.
    #[error("unknown cursor")]
    UnknownCursor,
    /// The ingest queue is full: the caller should shed the request (503) rather than
    /// wait.
    #[error("the ingest queue is full")]
    Overloaded,
    /// The shared transaction of a group of batches failed to commit, or the writer
    /// stopped; nothing of the batch was stored.
    #[error("the ingest transaction failed: {0}")]
    WriterFailed(String),
}

/// Every store also keeps segment and outcome definitions
/// ([`crate::segments::DefinitionStore`]), and erases, exports and deletes by age
/// ([`crate::privacy::PrivacyStore`]), and keeps usage figures
/// ([`crate::usage::UsageStore`]).
pub trait Store:
    crate::segments::DefinitionStore
    + crate::privacy::PrivacyStore
    + crate::usage::UsageStore
    + Send
    + Sync
{
    /// Stores a batch's events in one transaction, assigns each new event to a session
    /// (creating or extending sessions) and returns one outcome per event, in order.
    /// When this returns, the transaction is committed.
    fn ingest(
        &self,
        batch: &NewBatch,
        now_ms: i64,
        timeout_ms: i64,
    ) -> Result<Vec<IngestOutcome>, StoreError>;

    /// Queues a batch for ingest without blocking, and returns where its outcomes will
    /// arrive once committed. A backend with a group-committing writer stores many
    /// queued batches in one transaction; each batch still gets its own outcome (or
    /// error). Fails at once with [`StoreError::Overloaded`] when the queue is full.
    ///
    /// The default stores the batch synchronously, in the caller's thread.
    fn enqueue_ingest(
        &self,
        batch: NewBatch,
        now_ms: i64,
        timeout_ms: i64,
    ) -> Result<IngestReply, StoreError> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        // The receiver is still held here, so the send cannot fail.
        let _ = sender.send(self.ingest(&batch, now_ms, timeout_ms));
        Ok(receiver)
    }

    /// The writer's queue depth and batches-per-commit handles, which the operator's
    /// metrics register (see `crate::metrics`). The default is a pair that never
    /// moves, for a backend without a queued writer.
    fn writer_metrics(&self) -> crate::metrics::WriterMetrics {
        crate::metrics::WriterMetrics::default()
    }

    /// What `GET /metrics` reads when scraped: the sessions neither ended nor idle for
    /// `timeout_ms` at `now_ms`, and the database's size on disk. Cheap: one indexed
    /// count and file sizes.
    fn gauges(
        &self,
        now_ms: i64,
        timeout_ms: i64,
    ) -> Result<crate::metrics::StoreGauges, StoreError>;

    /// `GET /readyz`'s question: the database answers a query, its schema is the one
    /// this collector migrates to, and the ingest writer runs.
    fn check_ready(&self) -> Result<(), StoreError>;

    fn session(&self, session_id: &str) -> Result<Option<StoredSession>, StoreError>;

    /// A session's events, oldest first, after the event whose id is `after`. `None`
    /// when the session does not exist.
    fn session_events(
        &self,
        session_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Option<Listing<StoredEvent>>, StoreError>;

    /// Sessions newest first (by creation time), after the session whose id is `after`.
    fn sessions(
        &self,
        filter: &SessionFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Listing<StoredSession>, StoreError>;

    /// Writes the pings recorded so far ([`Store::record_ping`]), then ends every open
    /// session whose last activity is at least `timeout_ms` before `now_ms`, and
    /// returns how many were ended.
    fn close_idle_sessions(&self, now_ms: i64, timeout_ms: i64) -> Result<usize, StoreError>;

    /// Creates a `Curated` contact with the identifiers of its emails and phones.
    fn create_contact(
        &self,
        fields: &ContactFields,
        now_ms: i64,
    ) -> Result<StoredContact, StoreError>;

    fn contact(&self, contact_id: &str) -> Result<Option<StoredContact>, StoreError>;

    fn contacts(&self, query: &ContactQuery) -> Result<ContactPage, StoreError>;

    /// Replaces every writable field; Email and Phone identifiers follow, Cookie
    /// identifiers stay. `None` when the contact does not exist.
    fn replace_contact(
        &self,
        contact_id: &str,
        fields: &ContactFields,
        now_ms: i64,
    ) -> Result<Option<StoredContact>, StoreError>;

    /// Deletes the contact and its identifiers, and unlinks its sessions (which keep
    /// their events). Returns whether the contact existed.
    fn delete_contact(&self, contact_id: &str) -> Result<bool, StoreError>;

    /// One event with its session and its place in the session; `None` when no event
    /// has this id.
    fn event(&self, event_id: &str) -> Result<Option<StoredEvent>, StoreError>;

    /// Keeps the visitor's live session alive without an event (a ping): the latest
    /// session of the visitor that is neither ended nor closed by a logout, and whose
    /// last activity is less than `timeout_ms` before `now_ms`, is to get `now_ms` as
    /// its last activity. Nothing is created. The ping is only recorded here, in
    /// memory, without waiting for the database: it is written with the visitor's next
    /// batch, or by the next [`Store::close_idle_sessions`] (before it ends anything),
    /// whichever comes first, so that pings never take the writer for a commit of their
    /// own. Returns false when too many pings are waiting and this one was dropped.
    fn record_ping(
        &self,
        deployment_id: &str,
        visitor_id: &str,
        now_ms: i64,
        timeout_ms: i64,
    ) -> bool;
}
