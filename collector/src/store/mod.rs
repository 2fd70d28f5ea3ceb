//! Storage of events and sessions.
//!
//! **Architecture Invariant:** no SQL outside this module. Handlers talk to the
//! [`Store`] trait only, and the router's state holds an `Arc<dyn Store>`, so that a
//! server backend (PostgreSQL, chosen by the database URL's scheme, with its own
//! `migrations/postgres/` folder) can be added without touching the HTTP layer.
//!
//! The methods are synchronous: SQLite is an in-process library, and the handlers call
//! them through `tokio::task::spawn_blocking`.

mod sqlite;

use std::collections::BTreeMap;

use footpath_protocol::v1::{AttributeValue, Context, EventKind, Page};

pub use sqlite::SqliteStore;

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
    /// The client's IP address, from the socket.
    pub ip_address: Option<String>,
}

/// The validated events of one batch, all from one visitor of one deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBatch {
    pub deployment_id: String,
    /// The visitor's UUID in lowercase hyphenated form.
    pub visitor_id: String,
    pub events: Vec<NewEvent>,
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
    /// was last active.
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
}

/// Optional filters of a session listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    pub deployment_id: Option<String>,
    pub visitor_id: Option<String>,
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
    #[error("could not find a free short id for a new session")]
    ShortIdsExhausted,
}

pub trait Store: Send + Sync {
    /// Stores a batch's events in one transaction, assigns each new event to a session
    /// (creating or extending sessions) and returns one outcome per event, in order.
    /// When this returns, the transaction is committed.
    fn ingest(
        &self,
        batch: &NewBatch,
        now_ms: i64,
        timeout_ms: i64,
    ) -> Result<Vec<IngestOutcome>, StoreError>;

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

    /// Ends every open session whose last event is at least `timeout_ms` before
    /// `now_ms`, and returns how many were ended.
    fn close_idle_sessions(&self, now_ms: i64, timeout_ms: i64) -> Result<usize, StoreError>;
}
