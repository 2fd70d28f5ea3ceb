//! Storage of events and sessions.
//!
//! **Architecture Invariant:** no SQL outside this module. Handlers talk to the
//! [`Store`] trait only, and the router's state holds an `Arc<dyn Store>`: the
//! embedded [`SqliteStore`] or the server backend [`PostgresStore`], chosen by the
//! database URL's scheme (`Config::database`), each with its own migrations folder.
//!
//! The product's rules are not here: ingest runs [`crate::ingest::ingest_batch`] over
//! the backend's implementation of [`crate::ingest::IngestTransaction`] (SQLite's is
//! `sqlite_ingest.rs`, PostgreSQL's `postgres/`), so that a backend is row operations
//! and read queries, segment and outcome evaluation included
//! (`crate::ingest::segments`).
//!
//! The methods are synchronous: SQLite is an in-process library, PostgreSQL is reached
//! with the synchronous `postgres` client, and the handlers call them through
//! `tokio::task::spawn_blocking` (see ARCHITECTURE.md, `ingest/`, for why the ingest
//! interface is synchronous too).

mod contacts_sql;
// Agents' desk sign-ins (crate::desk::auth).
mod desk_sql;
// The PostgreSQL backend, for several collectors on one database.
mod postgres;
// Data rights and retention: erasing, exporting, deleting by age (crate::privacy).
mod privacy_sql;
// Usage figures per deployment and day (crate::usage).
mod usage_sql;
// Segments and outcomes: definitions, and the rows of their evaluation on ingest
// (crate::segments, crate::ingest::segments).
mod segments_sql;
mod sqlite;
mod sqlite_ingest;

// The domain types used to live here; they are re-exported so that their old paths
// keep working.
pub use crate::model::{
    ContactPage, ContactQuery, IdentifierKind, IngestOutcome, LastEvent, Listing, NewBatch,
    NewEvent, SessionFilter, StoreError, StoredContact, StoredEvent, StoredIdentifier,
    StoredSession,
};

pub use postgres::{PostgresSettings, PostgresStore};
pub use sqlite::{IngestQueueSettings, SessionLimits, SqliteStore};

use crate::contacts::ContactFields;

/// The answer to a queued ingest (see [`Store::enqueue_ingest`]): one outcome per event
/// once the transaction that holds the batch has committed.
pub type IngestReply = tokio::sync::oneshot::Receiver<Result<Vec<IngestOutcome>, StoreError>>;

/// The desk presentation as saved through the admin API (see
/// `desk::config::startup_presentation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedPresentation {
    /// The `Presentation` put through the API, as JSON.
    pub presentation_json: String,
    /// The file's `[desk]` presentation when it was put, as JSON.
    pub file_presentation_json: String,
    pub saved_ms: i64,
}

/// Every store also keeps segment and outcome definitions
/// ([`crate::segments::DefinitionStore`]), and erases, exports and deletes by age
/// ([`crate::privacy::PrivacyStore`]), keeps usage figures
/// ([`crate::usage::UsageStore`]) and the desk's sign-ins
/// ([`crate::desk::auth::SignInStore`]).
pub trait Store:
    crate::segments::DefinitionStore
    + crate::privacy::PrivacyStore
    + crate::usage::UsageStore
    + crate::desk::auth::SignInStore
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

    /// The desk presentation last saved through the admin API, if any. The store keeps
    /// the JSON texts as given; `desk::config` decides what they mean.
    fn saved_desk_presentation(&self) -> Result<Option<SavedPresentation>, StoreError>;

    /// Saves the desk presentation (replacing the one saved before), or forgets it
    /// (`None`).
    fn save_desk_presentation(&self, saved: Option<&SavedPresentation>) -> Result<(), StoreError>;

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

    /// Tells the other collectors on this database about a change their desks must
    /// see (see [`crate::peers`]), without waiting for it to be sent. Ingest tells
    /// them itself about the batches it stores. The default does nothing: a backend
    /// that only one collector opens at a time (SQLite) has nobody to tell.
    fn tell_peers(&self, message: &crate::peers::PeerMessage) -> Result<(), StoreError> {
        let _ = message;
        Ok(())
    }

    /// Starts passing what the other collectors on this database tell (their
    /// visitors' new events among them) to `deliver`, until the returned listener is
    /// dropped. `None`: this backend has no other collectors (the default).
    fn listen_to_peers(
        &self,
        deliver: crate::peers::Deliver,
    ) -> Result<Option<crate::peers::PeerListener>, StoreError> {
        let _ = deliver;
        Ok(None)
    }
}
