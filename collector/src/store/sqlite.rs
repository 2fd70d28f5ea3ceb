//! The embedded SQLite backend.
//!
//! One writer connection behind a mutex serialises write transactions (SQLite allows
//! one writer at a time anyway); a separate read connection serves the read API, and
//! thanks to WAL mode it reads a consistent snapshot without waiting for the writer.
//!
//! Ingest is group-committed: requests put their batch on a bounded queue
//! ([`Store::enqueue_ingest`]) and one writer thread drains it, storing up to
//! `max_batches_per_transaction` queued batches in one transaction, each inside its own
//! savepoint (a batch that fails is rolled back alone, its neighbours are kept), then
//! commits once (one fsync for all of them, with synchronous=FULL) and only then
//! answers every waiting request. A full queue is refused at once
//! ([`StoreError::Overloaded`]) instead of growing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use footpath_protocol::v1::{AttributeValue, Context, EventKind, Map, Number, Page};
use rand::Rng;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use rusqlite_migration::{Migrations, M};

use super::contacts_sql;
use super::segments_sql;
use super::{
    ContactPage, ContactQuery, IngestOutcome, IngestReply, LastEvent, Listing, NewBatch, NewEvent,
    SessionFilter, Store, StoreError, StoredContact, StoredEvent, StoredSession,
};
use crate::contacts::ContactFields;
use crate::sessions::{self, SessionSpan};

/// The schema, one file per version. Never edit a released migration: add a new file.
const MIGRATION_LIST: &[M<'static>] = &[
    M::up(include_str!("../../migrations/sqlite/0001_init.sql")),
    M::up(include_str!("../../migrations/sqlite/0002_contacts.sql")),
    M::up(include_str!("../../migrations/sqlite/0003_enrichment.sql")),
    M::up(include_str!("../../migrations/sqlite/0004_segments.sql")),
];
const MIGRATIONS: Migrations<'static> = Migrations::from_slice(MIGRATION_LIST);

/// How long a connection waits for a lock held by another connection (or process)
/// before giving up with "database is busy".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Short ids must be unique among the sessions of this period.
const SHORT_ID_UNIQUE_FOR_MS: i64 = 24 * 60 * 60 * 1000;

/// How the group-committing writer queues and groups batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestQueueSettings {
    /// Batches that may wait for the writer; one more is refused as overload.
    pub capacity_batches: usize,
    /// Most batches stored in one transaction.
    pub max_batches_per_transaction: usize,
}

impl Default for IngestQueueSettings {
    fn default() -> IngestQueueSettings {
        IngestQueueSettings {
            capacity_batches: 1024,
            max_batches_per_transaction: 256,
        }
    }
}

/// A batch waiting for the writer thread, with where to send its outcomes.
struct IngestJob {
    batch: NewBatch,
    now_ms: i64,
    timeout_ms: i64,
    reply: tokio::sync::oneshot::Sender<Result<Vec<IngestOutcome>, StoreError>>,
}

pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    reader: Mutex<Connection>,
    /// `None` only while the store is being dropped: dropping the sender lets the
    /// writer thread drain what is queued and stop.
    ingest_queue: Option<SyncSender<IngestJob>>,
    writer_thread: Option<JoinHandle<()>>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.ingest_queue = None;
        if let Some(thread) = self.writer_thread.take() {
            // Every queued batch is committed and answered before the thread ends.
            if thread.join().is_err() {
                tracing::error!("the ingest writer thread panicked");
            }
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (or creates) the database file and brings its schema up to date. The path
    /// must be a file: the read connection is a second connection to it.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, IngestQueueSettings::default())
    }

    /// [`SqliteStore::open`] with the ingest queue's settings.
    pub fn open_with(
        path: impl AsRef<Path>,
        queue: IngestQueueSettings,
    ) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref();
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        // WAL lets the read connection work while a batch is being written. With
        // synchronous=FULL a committed batch survives a power cut, which is what the
        // SDK relies on when it drops events that the collector acknowledged.
        let journal_mode: String =
            writer.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "journal_mode is {journal_mode}, WAL is required"
            )));
        }
        writer.pragma_update(None, "synchronous", "FULL")?;
        MIGRATIONS.to_latest(&mut writer)?;

        let reader = Connection::open(path)?;
        configure(&reader)?;
        reader.pragma_update(None, "query_only", true)?;
        let writer = Arc::new(Mutex::new(writer));
        let (sender, receiver) = sync_channel(queue.capacity_batches.max(1));
        let writer_thread = std::thread::Builder::new()
            .name("footpath-ingest-writer".to_owned())
            .spawn({
                let writer = Arc::clone(&writer);
                let max_batches = queue.max_batches_per_transaction.max(1);
                move || run_ingest_writer(&writer, &receiver, max_batches)
            })
            .map_err(|error| StoreError::WriterFailed(format!("cannot start: {error}")))?;
        Ok(SqliteStore {
            writer,
            reader: Mutex::new(reader),
            ingest_queue: Some(sender),
            writer_thread: Some(writer_thread),
        })
    }

    /// Stores batches in one transaction, each in its own savepoint, on the caller's
    /// thread: what the writer thread does with each group it takes off the queue.
    /// Returns one result per batch; a batch's error leaves the others stored. Public
    /// so that benchmarks can measure the storage path without HTTP or the queue.
    pub fn ingest_many(
        &self,
        batches: &[NewBatch],
        now_ms: i64,
        timeout_ms: i64,
    ) -> Vec<Result<Vec<IngestOutcome>, StoreError>> {
        let mut connection = self.writer();
        let jobs: Vec<(&NewBatch, i64, i64)> = batches
            .iter()
            .map(|batch| (batch, now_ms, timeout_ms))
            .collect();
        ingest_group(&mut connection, &jobs)
    }

    // A panic while holding a connection leaves no half-done work behind (an open
    // transaction rolls back when dropped), so a poisoned lock is safe to reuse.
    // pub(super): segments_sql implements the definitions' storage on these too.
    pub(super) fn writer(&self) -> MutexGuard<'_, Connection> {
        lock_connection(&self.writer)
    }

    pub(super) fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn lock_connection(connection: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    connection.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer thread: takes the first waiting batch, then whatever else is queued (up
/// to `max_batches`), stores them in one transaction, and answers each. Ends when the
/// store drops its sender and the queue is empty.
fn run_ingest_writer(
    connection: &Mutex<Connection>,
    queue: &Receiver<IngestJob>,
    max_batches: usize,
) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        while jobs.len() < max_batches {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let group: Vec<(&NewBatch, i64, i64)> = jobs
            .iter()
            .map(|job| (&job.batch, job.now_ms, job.timeout_ms))
            .collect();
        let results = ingest_group(&mut lock_connection(connection), &group);
        for (job, result) in jobs.into_iter().zip(results) {
            // A requester that went away (a closed connection) still had its batch
            // stored; its retry will be answered "duplicate".
            let _ = job.reply.send(result);
        }
    }
}

/// One transaction for every batch of the group, a savepoint per batch. Nothing is
/// reported as stored before the commit succeeds.
fn ingest_group(
    connection: &mut Connection,
    jobs: &[(&NewBatch, i64, i64)],
) -> Vec<Result<Vec<IngestOutcome>, StoreError>> {
    let everyone_failed = |error: &dyn std::fmt::Display| {
        let message = error.to_string();
        jobs.iter()
            .map(|_| Err(StoreError::WriterFailed(message.clone())))
            .collect()
    };
    // IMMEDIATE takes the write lock up front, so the transaction cannot fail half-way
    // for lack of it after having read the sessions it is about to change.
    let transaction = match connection.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(transaction) => transaction,
        Err(error) => return everyone_failed(&error),
    };
    let mut results = Vec::with_capacity(jobs.len());
    for &(batch, now_ms, timeout_ms) in jobs {
        results.push(ingest_in_savepoint(&transaction, batch, now_ms, timeout_ms));
    }
    if let Err(error) = transaction.commit() {
        return everyone_failed(&error);
    }
    results
}

fn ingest_in_savepoint(
    transaction: &Transaction<'_>,
    batch: &NewBatch,
    now_ms: i64,
    timeout_ms: i64,
) -> Result<Vec<IngestOutcome>, StoreError> {
    // Plain SQL savepoints rather than rusqlite's `Savepoint`, so that the per-batch
    // code keeps working on the `Transaction`.
    transaction.execute_batch("SAVEPOINT ingest_batch")?;
    match ingest_in_transaction(transaction, batch, now_ms, timeout_ms) {
        Ok(outcomes) => {
            transaction.execute_batch("RELEASE ingest_batch")?;
            Ok(outcomes)
        }
        Err(error) => {
            transaction.execute_batch("ROLLBACK TO ingest_batch; RELEASE ingest_batch")?;
            Err(error)
        }
    }
}

fn configure(connection: &Connection) -> Result<(), StoreError> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

/// Stores one batch inside the caller's transaction: dedupe by event id, sessions,
/// identity, session summaries. The caller commits (or rolls back to its savepoint).
fn ingest_in_transaction(
    transaction: &Transaction<'_>,
    batch: &NewBatch,
    now_ms: i64,
    timeout_ms: i64,
) -> Result<Vec<IngestOutcome>, StoreError> {
    let mut outcomes = Vec::with_capacity(batch.events.len());
    let mut touched_sessions = BTreeSet::new();
    for event in &batch.events {
        let already_stored = transaction
            .prepare_cached("SELECT 1 FROM events WHERE id = ?1")?
            .exists([&event.id])?;
        if already_stored {
            outcomes.push(IngestOutcome::Duplicate);
            continue;
        }
        let session_id = assign_session(transaction, batch, event.time_ms, now_ms, timeout_ms)?;
        // Identity is resolved per event, in order, in this same transaction: a
        // batch that identifies and then logs out must see each step.
        let authenticated =
            contacts_sql::resolve_identity(transaction, batch, &session_id, event, now_ms)?;
        insert_event(transaction, batch, &session_id, event, authenticated)?;
        // Segments and outcomes are evaluated in this same transaction, so that an event
        // is never stored without its assignments, or the other way round.
        segments_sql::evaluate_in_tx(transaction, batch, &session_id, event, now_ms)?;
        touched_sessions.insert(session_id);
        outcomes.push(IngestOutcome::Accepted);
    }
    for session_id in &touched_sessions {
        refresh_session_summary(transaction, session_id)?;
    }
    Ok(outcomes)
}

impl Store for SqliteStore {
    fn ingest(
        &self,
        batch: &NewBatch,
        now_ms: i64,
        timeout_ms: i64,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        let mut connection = self.writer();
        // IMMEDIATE takes the write lock up front, so the transaction cannot fail
        // half-way for lack of it after having read the sessions it is about to change.
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let outcomes = ingest_in_transaction(&transaction, batch, now_ms, timeout_ms)?;
        transaction.commit()?;
        Ok(outcomes)
    }

    fn enqueue_ingest(
        &self,
        batch: NewBatch,
        now_ms: i64,
        timeout_ms: i64,
    ) -> Result<IngestReply, StoreError> {
        let (reply, receiver) = tokio::sync::oneshot::channel();
        let job = IngestJob {
            batch,
            now_ms,
            timeout_ms,
            reply,
        };
        let queue = self
            .ingest_queue
            .as_ref()
            .ok_or_else(|| StoreError::WriterFailed("the store is closing".to_owned()))?;
        match queue.try_send(job) {
            Ok(()) => Ok(receiver),
            Err(TrySendError::Full(_)) => Err(StoreError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(StoreError::WriterFailed(
                "the writer thread stopped".to_owned(),
            )),
        }
    }

    fn session(&self, session_id: &str) -> Result<Option<StoredSession>, StoreError> {
        let connection = self.reader();
        let mut statement =
            connection.prepare_cached(&format!("{SESSION_SELECT} WHERE s.id = ?1"))?;
        let mut rows = statement.query([session_id])?;
        match rows.next()? {
            Some(row) => {
                let mut session = session_from_row(row)?;
                segments_sql::attach_assignments(&connection, &mut session)?;
                Ok(Some(session))
            }
            None => Ok(None),
        }
    }

    fn session_events(
        &self,
        session_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Option<Listing<StoredEvent>>, StoreError> {
        let mut connection = self.reader();
        // One read transaction, so that the running totals and the page come from the
        // same snapshot.
        let transaction = connection.transaction()?;
        let session_exists = transaction
            .prepare_cached("SELECT 1 FROM sessions WHERE id = ?1")?
            .exists([session_id])?;
        if !session_exists {
            return Ok(None);
        }
        // The cursor is the (time, id) position of the last event of the previous page;
        // the totals count every event up to it.
        let (cursor_time_ms, cursor_id, mut event_count, mut pageview_count) = match after {
            None => (i64::MIN, String::new(), 0_u64, 0_u64),
            Some(after) => {
                let cursor_time_ms: i64 = transaction
                    .prepare_cached("SELECT time_ms FROM events WHERE id = ?1 AND session_id = ?2")?
                    .query_row(params![after, session_id], |row| row.get(0))
                    .optional()?
                    .ok_or(StoreError::UnknownCursor)?;
                let (events, pageviews): (i64, i64) = transaction
                    .prepare_cached(
                        "SELECT COUNT(*), COALESCE(SUM(kind = 'pageview'), 0) FROM events
                         WHERE session_id = ?1 AND (time_ms, id) <= (?2, ?3)",
                    )?
                    .query_row(params![session_id, cursor_time_ms, after], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })?;
                (
                    cursor_time_ms,
                    after.to_owned(),
                    to_count(events)?,
                    to_count(pageviews)?,
                )
            }
        };
        let mut statement = transaction.prepare_cached(&format!(
            "{EVENT_SELECT} WHERE session_id = ?1 AND (time_ms, id) > (?2, ?3)
             ORDER BY time_ms, id LIMIT ?4"
        ))?;
        let mut rows = statement.query(params![
            session_id,
            cursor_time_ms,
            cursor_id,
            fetch_limit(limit)
        ])?;
        let mut items = Vec::new();
        while let Some(row) = rows.next()? {
            let (session_id, deployment_id, visitor_id, event, authenticated) =
                event_from_row(row)?;
            event_count += 1;
            if event.kind == EventKind::Pageview {
                pageview_count += 1;
            }
            items.push(StoredEvent {
                session_id,
                deployment_id,
                visitor_id,
                event,
                total_event_count: event_count,
                total_pageview_count: pageview_count,
                authenticated,
            });
        }
        Ok(Some(into_listing(items, limit)))
    }

    fn sessions(
        &self,
        filter: &SessionFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Listing<StoredSession>, StoreError> {
        let mut connection = self.reader();
        let transaction = connection.transaction()?;
        // Newest first: the cursor is the (first_ms, id) position of the last session of
        // the previous page, and the next page continues below it.
        let (cursor_first_ms, cursor_id) = match after {
            None => (i64::MAX, None),
            Some(after) => {
                let first_ms: i64 = transaction
                    .prepare_cached("SELECT first_ms FROM sessions WHERE id = ?1")?
                    .query_row([after], |row| row.get(0))
                    .optional()?
                    .ok_or(StoreError::UnknownCursor)?;
                (first_ms, Some(after))
            }
        };
        let mut statement = transaction.prepare_cached(&format!(
            "{SESSION_SELECT}
             WHERE (?1 IS NULL OR s.deployment_id = ?1)
               AND (?2 IS NULL OR s.visitor_id = ?2)
               AND (?6 IS NULL OR s.contact_id = ?6)
               AND (?4 IS NULL AND s.first_ms <= ?3 OR (s.first_ms, s.id) < (?3, ?4))
             ORDER BY s.first_ms DESC, s.id DESC
             LIMIT ?5"
        ))?;
        let mut rows = statement.query(params![
            filter.deployment_id,
            filter.visitor_id,
            cursor_first_ms,
            cursor_id,
            fetch_limit(limit),
            filter.contact_id,
        ])?;
        let mut items = Vec::new();
        while let Some(row) = rows.next()? {
            let mut session = session_from_row(row)?;
            segments_sql::attach_assignments(&transaction, &mut session)?;
            items.push(session);
        }
        Ok(into_listing(items, limit))
    }

    fn close_idle_sessions(&self, now_ms: i64, timeout_ms: i64) -> Result<usize, StoreError> {
        let connection = self.writer();
        // `last_ms <= now - timeout` is `sessions::is_idle` written so that the partial
        // index on open sessions' last_ms can be used.
        let ended = connection
            .prepare_cached(
                "UPDATE sessions SET ended_ms = last_ms
                 WHERE ended_ms IS NULL AND last_ms <= ?1",
            )?
            .execute([now_ms.saturating_sub(timeout_ms)])?;
        Ok(ended)
    }

    fn create_contact(
        &self,
        fields: &ContactFields,
        now_ms: i64,
    ) -> Result<StoredContact, StoreError> {
        let mut connection = self.writer();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id = contacts_sql::insert_contact(&transaction, fields, now_ms)?;
        let contact = contacts_sql::load_contact(&transaction, &id)?
            .ok_or_else(|| StoreError::Corrupt(format!("contact {id} vanished")))?;
        transaction.commit()?;
        Ok(contact)
    }

    fn contact(&self, contact_id: &str) -> Result<Option<StoredContact>, StoreError> {
        let mut connection = self.reader();
        let transaction = connection.transaction()?;
        contacts_sql::load_contact(&transaction, contact_id)
    }

    fn contacts(&self, query: &ContactQuery) -> Result<ContactPage, StoreError> {
        let mut connection = self.reader();
        // The count and the page from one snapshot.
        let transaction = connection.transaction()?;
        contacts_sql::search_contacts(&transaction, query)
    }

    fn replace_contact(
        &self,
        contact_id: &str,
        fields: &ContactFields,
        now_ms: i64,
    ) -> Result<Option<StoredContact>, StoreError> {
        let mut connection = self.writer();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !contacts_sql::update_contact(&transaction, contact_id, fields, now_ms)? {
            return Ok(None);
        }
        let contact = contacts_sql::load_contact(&transaction, contact_id)?;
        transaction.commit()?;
        Ok(contact)
    }

    fn delete_contact(&self, contact_id: &str) -> Result<bool, StoreError> {
        let mut connection = self.writer();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let deleted = contacts_sql::delete_contact(&transaction, contact_id)?;
        transaction.commit()?;
        Ok(deleted)
    }

    fn event(&self, event_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let mut connection = self.reader();
        // The event and its running totals from one snapshot.
        let transaction = connection.transaction()?;
        let row = {
            let mut statement =
                transaction.prepare_cached(&format!("{EVENT_SELECT} WHERE id = ?1"))?;
            let mut rows = statement.query([event_id])?;
            match rows.next()? {
                Some(row) => event_from_row(row)?,
                None => return Ok(None),
            }
        };
        let (session_id, deployment_id, visitor_id, event, authenticated) = row;
        let (events, pageviews): (i64, i64) = transaction
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(kind = 'pageview'), 0) FROM events
                 WHERE session_id = ?1 AND (time_ms, id) <= (?2, ?3)",
            )?
            .query_row(params![session_id, event.time_ms, event.id], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
        Ok(Some(StoredEvent {
            session_id,
            deployment_id,
            visitor_id,
            event,
            total_event_count: to_count(events)?,
            total_pageview_count: to_count(pageviews)?,
            authenticated,
        }))
    }

    fn touch_live_session(
        &self,
        deployment_id: &str,
        visitor_id: &str,
        now_ms: i64,
        timeout_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let mut connection = self.writer();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // "Live" is `!sessions::is_idle(last_ms, now_ms, timeout_ms)`, written so that
        // the index on (deployment_id, visitor_id, last_ms) can be used.
        let session_id: Option<String> = transaction
            .prepare_cached(
                "SELECT id FROM sessions
                 WHERE deployment_id = ?1 AND visitor_id = ?2 AND last_ms > ?3
                   AND ended_ms IS NULL AND closed = 0
                 ORDER BY last_ms DESC, first_ms DESC LIMIT 1",
            )?
            .query_row(
                params![deployment_id, visitor_id, now_ms.saturating_sub(timeout_ms)],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(session_id) = &session_id {
            // Never moves the last activity back (an event may carry a later time).
            transaction
                .prepare_cached("UPDATE sessions SET last_ms = MAX(last_ms, ?2) WHERE id = ?1")?
                .execute(params![session_id, now_ms])?;
        }
        transaction.commit()?;
        Ok(session_id)
    }
}

/// Asks for one row more than the page holds, to learn whether another page follows.
fn fetch_limit(limit: usize) -> i64 {
    i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX)
}

fn into_listing<T>(mut items: Vec<T>, limit: usize) -> Listing<T> {
    let has_more = items.len() > limit;
    items.truncate(limit);
    Listing { items, has_more }
}

fn to_count(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative count {value}")))
}

/// Finds the session the event joins, per [`sessions::choose_session`], and updates its
/// span; or creates a new session. Returns the session id.
fn assign_session(
    transaction: &Transaction<'_>,
    batch: &NewBatch,
    time_ms: i64,
    now_ms: i64,
    timeout_ms: i64,
) -> Result<String, StoreError> {
    let mut candidates: Vec<(String, SessionSpan, Option<i64>)> = Vec::new();
    {
        let mut statement = transaction.prepare_cached(
            // A session that a logout closed takes no more events, whatever their time.
            "SELECT id, first_ms, last_ms, ended_ms FROM sessions
             WHERE deployment_id = ?1 AND visitor_id = ?2 AND last_ms > ?3 AND first_ms < ?4
               AND closed = 0",
        )?;
        let mut rows = statement.query(params![
            batch.deployment_id,
            batch.visitor_id,
            sessions::candidate_last_ms_after(time_ms, timeout_ms),
            time_ms.saturating_add(timeout_ms),
        ])?;
        while let Some(row) = rows.next()? {
            let span = SessionSpan {
                first_ms: row.get(1)?,
                last_ms: row.get(2)?,
            };
            candidates.push((row.get(0)?, span, row.get(3)?));
        }
    }
    let spans: Vec<SessionSpan> = candidates.iter().map(|(_, span, _)| *span).collect();
    if let Some(index) = sessions::choose_session(&spans, time_ms, timeout_ms) {
        let (session_id, mut span, ended_ms) = candidates.swap_remove(index);
        span.include(time_ms);
        // A late event can land in a session that the sweep already ended. If it moves
        // the session's last activity, the end moves with it, or the session reopens
        // when the new last activity is within the timeout.
        let ended_ms = ended_ms.and_then(|_| {
            sessions::is_idle(span.last_ms, now_ms, timeout_ms).then_some(span.last_ms)
        });
        transaction
            .prepare_cached(
                "UPDATE sessions SET first_ms = ?2, last_ms = ?3, ended_ms = ?4 WHERE id = ?1",
            )?
            .execute(params![session_id, span.first_ms, span.last_ms, ended_ms])?;
        return Ok(session_id);
    }
    let session_id = uuid::Uuid::now_v7().to_string();
    let short_id = allocate_short_id(transaction, &batch.deployment_id, now_ms)?;
    transaction
        .prepare_cached(
            "INSERT INTO sessions (id, short_id, deployment_id, visitor_id, first_ms, last_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        )?
        .execute(params![
            session_id,
            short_id,
            batch.deployment_id,
            batch.visitor_id,
            time_ms
        ])?;
    Ok(session_id)
}

/// A random 6-digit number not used by the deployment's sessions of the last 24 hours.
/// With 900 000 numbers, a deployment needs tens of thousands of sessions a day before
/// retries become common.
fn allocate_short_id(
    transaction: &Transaction<'_>,
    deployment_id: &str,
    now_ms: i64,
) -> Result<String, StoreError> {
    let mut taken = transaction.prepare_cached(
        "SELECT 1 FROM sessions WHERE deployment_id = ?1 AND short_id = ?2 AND last_ms >= ?3",
    )?;
    let mut random = rand::rng();
    for _ in 0..100 {
        let short_id = random.random_range(100_000..=999_999_u32).to_string();
        let since_ms = now_ms.saturating_sub(SHORT_ID_UNIQUE_FOR_MS);
        if !taken.exists(params![deployment_id, short_id, since_ms])? {
            return Ok(short_id);
        }
    }
    Err(StoreError::ShortIdsExhausted)
}

fn insert_event(
    transaction: &Transaction<'_>,
    batch: &NewBatch,
    session_id: &str,
    event: &NewEvent,
    authenticated: bool,
) -> Result<(), StoreError> {
    let page = event.page.as_ref();
    let campaign_json = match page {
        Some(page) if !page.campaign.is_empty() => Some(serde_json::to_string(&page.campaign)?),
        _ => None,
    };
    let context_json = event
        .context
        .as_ref()
        .map(serde_json::to_string)
        .transpose()?;
    transaction
        .prepare_cached(
            "INSERT INTO events (
                id, session_id, deployment_id, visitor_id, kind, name,
                time_ms, client_time_ms, received_ms,
                page_url, page_title, page_referrer, page_lang, page_keywords, page_search_query,
                campaign_json, context_json, login_id, attributes_json, traits_json,
                user_agent, ip_address, authenticated, identity_verified,
                user_agent_json, geolocation_json, referrer_json
            ) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                      ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)",
        )?
        .execute(params![
            event.id,
            session_id,
            batch.deployment_id,
            batch.visitor_id,
            event.kind.as_str(),
            event.name,
            event.time_ms,
            event.client_time_ms,
            event.received_ms,
            page.map(|page| &page.url),
            page.map(|page| &page.title),
            page.map(|page| &page.referrer),
            page.map(|page| &page.lang),
            page.map(|page| &page.keywords),
            page.and_then(|page| page.search_query.as_ref()),
            campaign_json,
            context_json,
            event.login_id,
            attributes_to_json(&event.attributes),
            attributes_to_json(&event.traits),
            event.user_agent,
            event.ip_address,
            authenticated,
            event.identity_verified,
            to_json(event.user_agent_info.as_ref())?,
            to_json(event.geolocation.as_ref())?,
            to_json(event.referrer_info.as_ref())?,
        ])?;
    Ok(())
}

/// Recomputes what a session card shows from the session's events. Doing it from the
/// events rather than incrementally keeps late events (which can change the first
/// pageview or the order of search terms) simple and correct.
fn refresh_session_summary(
    transaction: &Transaction<'_>,
    session_id: &str,
) -> Result<(), StoreError> {
    let mut search_terms: Vec<String> = Vec::new();
    {
        let mut statement = transaction.prepare_cached(
            "SELECT page_search_query FROM events
             WHERE session_id = ?1 AND page_search_query <> ''
             ORDER BY time_ms, id",
        )?;
        let mut rows = statement.query([session_id])?;
        while let Some(row) = rows.next()? {
            let term: String = row.get(0)?;
            if !search_terms.contains(&term) {
                search_terms.push(term);
            }
        }
    }
    transaction
        .prepare_cached(
            "UPDATE sessions SET
                event_count = (SELECT COUNT(*) FROM events WHERE session_id = ?1),
                pageview_count = (SELECT COUNT(*) FROM events
                                  WHERE session_id = ?1 AND kind = 'pageview'),
                last_event_id = (SELECT id FROM events WHERE session_id = ?1
                                 ORDER BY time_ms DESC, id DESC LIMIT 1),
                last_pageview_id = (SELECT id FROM events
                                    WHERE session_id = ?1 AND kind = 'pageview'
                                    ORDER BY time_ms DESC, id DESC LIMIT 1),
                landing_pageview_id = (SELECT id FROM events
                                       WHERE session_id = ?1 AND kind = 'pageview'
                                       ORDER BY time_ms, id LIMIT 1),
                context_event_id = (SELECT id FROM events
                                    WHERE session_id = ?1 AND context_json IS NOT NULL
                                    ORDER BY time_ms DESC, id DESC LIMIT 1),
                search_terms_json = ?2,
                user_agent_json = (SELECT user_agent_json FROM events
                                   WHERE session_id = ?1 AND user_agent_json IS NOT NULL
                                   ORDER BY time_ms, id LIMIT 1),
                geolocation_json = (SELECT geolocation_json FROM events
                                    WHERE session_id = ?1 AND geolocation_json IS NOT NULL
                                    ORDER BY time_ms, id LIMIT 1)
             WHERE id = ?1",
        )?
        .execute(params![session_id, serde_json::to_string(&search_terms)?])?;
    Ok(())
}

/// The columns of an event row, in the order [`event_from_row`] reads them.
const EVENT_SELECT: &str = "SELECT id, session_id, deployment_id, visitor_id, kind, name,
    time_ms, client_time_ms, received_ms,
    page_url, page_title, page_referrer, page_lang, page_keywords, page_search_query,
    campaign_json, context_json, login_id, attributes_json, traits_json, user_agent, ip_address,
    authenticated, identity_verified, user_agent_json, geolocation_json, referrer_json
    FROM events";

/// An event row: session id, deployment id, visitor id, the event, and whether the
/// session was authenticated once the event was stored.
type EventRow = (String, String, String, NewEvent, bool);

fn event_from_row(row: &Row<'_>) -> Result<EventRow, StoreError> {
    let kind: String = row.get(4)?;
    let event = NewEvent {
        id: row.get(0)?,
        kind: parse_kind(&kind)?,
        name: row.get(5)?,
        time_ms: row.get(6)?,
        client_time_ms: row.get(7)?,
        received_ms: row.get(8)?,
        page: page_from_row(row, 9)?,
        context: context_from_json(row.get(16)?)?,
        login_id: row.get(17)?,
        attributes: attributes_from_json(&row.get::<_, String>(18)?)?,
        traits: attributes_from_json(&row.get::<_, String>(19)?)?,
        user_agent: row.get(20)?,
        ip_address: row.get(21)?,
        identity_verified: row.get(23)?,
        user_agent_info: from_json(row.get(24)?)?,
        geolocation: from_json(row.get(25)?)?,
        referrer_info: from_json(row.get(26)?)?,
    };
    Ok((row.get(1)?, row.get(2)?, row.get(3)?, event, row.get(22)?))
}

/// A session with the events its card points at, in the order [`session_from_row`]
/// reads them. Page columns come in groups of seven, as [`page_from_row`] reads them.
const SESSION_SELECT: &str = "SELECT
    s.id, s.short_id, s.deployment_id, s.visitor_id, s.first_ms, s.last_ms, s.ended_ms,
    s.event_count, s.pageview_count, s.search_terms_json,
    le.id, le.name, le.time_ms, le.user_agent, le.ip_address,
    lp.page_url, lp.page_title, lp.page_referrer, lp.page_lang, lp.page_keywords,
    lp.page_search_query, lp.campaign_json,
    fp.page_url, fp.page_title, fp.page_referrer, fp.page_lang, fp.page_keywords,
    fp.page_search_query, fp.campaign_json,
    ce.context_json,
    s.contact_id, s.authenticated,
    s.user_agent_json, s.geolocation_json, fp.referrer_json
    FROM sessions s
    LEFT JOIN events le ON le.id = s.last_event_id
    LEFT JOIN events lp ON lp.id = s.last_pageview_id
    LEFT JOIN events fp ON fp.id = s.landing_pageview_id
    LEFT JOIN events ce ON ce.id = s.context_event_id";

fn session_from_row(row: &Row<'_>) -> Result<StoredSession, StoreError> {
    let last_event_id: Option<String> = row.get(10)?;
    let last_event = match last_event_id {
        Some(id) => Some(LastEvent {
            id,
            name: row.get(11)?,
            time_ms: row.get(12)?,
        }),
        None => None,
    };
    Ok(StoredSession {
        id: row.get(0)?,
        short_id: row.get(1)?,
        deployment_id: row.get(2)?,
        visitor_id: row.get(3)?,
        first_ms: row.get(4)?,
        last_ms: row.get(5)?,
        ended_ms: row.get(6)?,
        event_count: to_count(row.get(7)?)?,
        pageview_count: to_count(row.get(8)?)?,
        search_terms: serde_json::from_str(&row.get::<_, String>(9)?)?,
        last_event,
        user_agent: row.get(13)?,
        ip_address: row.get(14)?,
        last_page: page_from_row(row, 15)?,
        landing_page: page_from_row(row, 22)?,
        context: context_from_json(row.get(29)?)?,
        contact_id: row.get(30)?,
        authenticated: row.get(31)?,
        user_agent_info: from_json(row.get(32)?)?,
        geolocation: from_json(row.get(33)?)?,
        landing_referrer: from_json(row.get(34)?)?,
        // Filled by segments_sql::attach_assignments.
        segment_assignments: Vec::new(),
        outcome_achievements: Vec::new(),
    })
}

/// Reads the seven page columns starting at `start`; a NULL url means no page.
fn page_from_row(row: &Row<'_>, start: usize) -> Result<Option<Page>, StoreError> {
    let Some(url) = row.get::<_, Option<String>>(start)? else {
        return Ok(None);
    };
    let text = |offset: usize| -> Result<String, StoreError> {
        Ok(row
            .get::<_, Option<String>>(start + offset)?
            .unwrap_or_default())
    };
    let campaign = match row.get::<_, Option<String>>(start + 6)? {
        Some(json) => serde_json::from_str(&json)?,
        None => Map::new(),
    };
    Ok(Some(Page {
        url,
        title: text(1)?,
        referrer: text(2)?,
        lang: text(3)?,
        keywords: text(4)?,
        search_query: row.get(start + 5)?,
        campaign,
    }))
}

fn to_json<T: serde::Serialize>(value: Option<&T>) -> Result<Option<String>, StoreError> {
    Ok(value.map(serde_json::to_string).transpose()?)
}

fn from_json<T: serde::de::DeserializeOwned>(
    json: Option<String>,
) -> Result<Option<T>, StoreError> {
    Ok(json.map(|json| serde_json::from_str(&json)).transpose()?)
}

fn context_from_json(json: Option<String>) -> Result<Option<Context>, StoreError> {
    Ok(json.map(|json| serde_json::from_str(&json)).transpose()?)
}

fn parse_kind(kind: &str) -> Result<EventKind, StoreError> {
    [
        EventKind::Pageview,
        EventKind::Record,
        EventKind::Identify,
        EventKind::Logout,
    ]
    .into_iter()
    .find(|candidate| candidate.as_str() == kind)
    .ok_or_else(|| StoreError::Corrupt(format!("unknown event kind {kind:?}")))
}

/// Attributes are stored as `{"name": {"dataType": "Number", "value": "1.50"}}`: the
/// value keeps its original text (JSON numbers would turn `1.50` into `1.5`), and the
/// shape is the Journey API's.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredAttribute {
    data_type: String,
    value: String,
}

fn attributes_to_json(attributes: &BTreeMap<String, AttributeValue>) -> String {
    let stored: BTreeMap<&str, StoredAttribute> = attributes
        .iter()
        .map(|(name, value)| {
            let stored = StoredAttribute {
                data_type: value.data_type().to_owned(),
                value: value.to_text(),
            };
            (name.as_str(), stored)
        })
        .collect();
    // Serialising a map of strings cannot fail.
    serde_json::to_string(&stored).unwrap_or_else(|_| "{}".to_owned())
}

fn attributes_from_json(json: &str) -> Result<BTreeMap<String, AttributeValue>, StoreError> {
    let stored: BTreeMap<String, StoredAttribute> = serde_json::from_str(json)?;
    stored
        .into_iter()
        .map(|(name, attribute)| {
            let value = match attribute.data_type.as_str() {
                "Boolean" => AttributeValue::Bool(attribute.value == "true"),
                "Number" => {
                    AttributeValue::Number(Number::parse(&attribute.value).ok_or_else(|| {
                        StoreError::Corrupt(format!("attribute {name} is not a number"))
                    })?)
                }
                _ => AttributeValue::String(attribute.value),
            };
            Ok((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        MIGRATIONS.validate().unwrap();
    }

    #[test]
    fn attributes_keep_their_text_and_type() {
        let mut attributes = BTreeMap::new();
        attributes.insert(
            "price".to_owned(),
            AttributeValue::Number(Number::parse("1.50").unwrap()),
        );
        attributes.insert("member".to_owned(), AttributeValue::Bool(true));
        attributes.insert("tier".to_owned(), AttributeValue::String("gold".to_owned()));
        let json = attributes_to_json(&attributes);
        assert_eq!(
            json,
            r#"{"member":{"dataType":"Boolean","value":"true"},"price":{"dataType":"Number","value":"1.50"},"tier":{"dataType":"String","value":"gold"}}"#
        );
        assert_eq!(attributes_from_json(&json).unwrap(), attributes);
    }
}
