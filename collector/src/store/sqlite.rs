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
//!
//! Commits do not checkpoint: a [`Checkpointer`] thread on its own connection copies
//! the WAL into the database file every few milliseconds, and the writer steps in
//! only when the WAL grows past a cap ([`WAL_CAP_FRAMES`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{
    sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError,
};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use footpath_protocol::v1::{AttributeValue, Context, EventKind, Map, Number, Page};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use rusqlite_migration::{Migrations, M};

use super::contacts_sql;
use super::segments_sql;
use super::sqlite_ingest::SqliteIngest;
use super::{
    ContactPage, ContactQuery, IngestOutcome, IngestReply, LastEvent, Listing, NewBatch, NewEvent,
    SavedPresentation, SessionFilter, Store, StoreError, StoredContact, StoredEvent, StoredSession,
};
use crate::contacts::ContactFields;
use crate::ingest::IndexCache;
pub use crate::ingest::SessionLimits;
use crate::metrics::{StoreGauges, WriterMetrics};

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        StoreError::Backend(Box::new(error))
    }
}

impl From<rusqlite_migration::Error> for StoreError {
    fn from(error: rusqlite_migration::Error) -> StoreError {
        StoreError::Schema(error.to_string())
    }
}

/// The schema, one file per version. Never edit a released migration: add a new file.
const MIGRATION_LIST: &[M<'static>] = &[
    M::up(include_str!("../../migrations/sqlite/0001_init.sql")),
    M::up(include_str!("../../migrations/sqlite/0002_contacts.sql")),
    M::up(include_str!("../../migrations/sqlite/0003_enrichment.sql")),
    M::up(include_str!("../../migrations/sqlite/0004_segments.sql")),
    M::up(include_str!(
        "../../migrations/sqlite/0005_match_storage.sql"
    )),
    M::up(include_str!(
        "../../migrations/sqlite/0006_contact_link.sql"
    )),
    M::up(include_str!(
        "../../migrations/sqlite/0007_email_identifiers_ascii.sql"
    )),
    M::up(include_str!(
        "../../migrations/sqlite/0008_desk_presentation.sql"
    )),
    // Data rights and retention (src/privacy.rs), usage (src/usage.rs).
    M::up(include_str!("../../migrations/sqlite/0009_retention.sql")),
    M::up(include_str!("../../migrations/sqlite/0010_usage.sql")),
    // Desk sign-ins, out of the file beside the database (src/desk/auth.rs).
    M::up(include_str!(
        "../../migrations/sqlite/0011_desk_sign_ins.sql"
    )),
];
const MIGRATIONS: Migrations<'static> = Migrations::from_slice(MIGRATION_LIST);

/// How long a connection waits for a lock held by another connection (or process)
/// before giving up with "database is busy".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the checkpointer copies what the WAL holds into the database file.
/// Short, so that what is left for the writer to copy when the WAL is over its cap
/// (see [`WAL_CAP_FRAMES`]) is short too.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(25);

/// WAL length (in frames, one page each) past which the ingest writer checkpoints
/// itself between two transactions. The checkpointer's passive checkpoints run while
/// the writer keeps appending, so under sustained load they may never catch up with
/// the end of the WAL, and SQLite starts the WAL over only once everything in it is in
/// the database file: this cap (64 MiB with 4 KiB pages) bounds its growth.
const WAL_CAP_FRAMES: i64 = 16_384;

/// Prepared statements kept per connection; ingest, identity and segments use more
/// than rusqlite's default of 16, which would prepare some of them again per event.
const STATEMENT_CACHE_CAPACITY: usize = 128;

/// Pings waiting to be written (see [`PendingPings`]); past this, pings are dropped
/// until the next sweep writes them (about 150 bytes each).
const MAX_PENDING_PINGS: usize = 100_000;

/// Pings the sweep writes per transaction, releasing the writer in between so that
/// batches are not held up behind a long run of them.
const PINGS_PER_TRANSACTION: usize = 500;

/// Pings recorded but not written yet: per deployment and visitor, the latest ping's
/// time and the session timeout it was made under. A ping is written with the next
/// batch of its visitor (before that batch's events choose their session) or by the
/// next sweep, whichever comes first; so a ping never takes the writer for a commit of
/// its own, and a flood of pings costs the writer at most one indexed update per
/// visitor per sweep.
#[derive(Debug, Default)]
pub(super) struct PendingPings {
    inner: Mutex<PendingPingsInner>,
}

#[derive(Debug, Default)]
struct PendingPingsInner {
    /// deployment → visitor → (ping time, session timeout).
    by_deployment: HashMap<String, HashMap<String, (i64, i64)>>,
    len: usize,
}

/// One ping to write: deployment, visitor, ping time, session timeout.
pub(super) type PendingPing = (String, String, i64, i64);

impl PendingPings {
    fn lock(&self) -> MutexGuard<'_, PendingPingsInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// False when the table is full and the ping was dropped.
    pub(super) fn record(
        &self,
        deployment_id: &str,
        visitor_id: &str,
        now_ms: i64,
        timeout_ms: i64,
    ) -> bool {
        let mut inner = self.lock();
        let full = inner.len >= MAX_PENDING_PINGS;
        let visitors = match inner.by_deployment.get_mut(deployment_id) {
            Some(visitors) => visitors,
            None if full => return false,
            None => inner
                .by_deployment
                .entry(deployment_id.to_owned())
                .or_default(),
        };
        if let Some(pending) = visitors.get_mut(visitor_id) {
            pending.0 = pending.0.max(now_ms);
            pending.1 = timeout_ms;
            return true;
        }
        if full {
            return false;
        }
        visitors.insert(visitor_id.to_owned(), (now_ms, timeout_ms));
        inner.len += 1;
        true
    }

    /// Takes the pings of the visitors of these batches.
    pub(super) fn take_for(&self, batches: &[(&NewBatch, i64, i64)]) -> Vec<PendingPing> {
        let mut inner = self.lock();
        if inner.len == 0 {
            return Vec::new();
        }
        let mut taken = Vec::new();
        for (batch, _, _) in batches {
            let Some(visitors) = inner.by_deployment.get_mut(&batch.deployment_id) else {
                continue;
            };
            if let Some((ping_ms, timeout_ms)) = visitors.remove(&batch.visitor_id) {
                taken.push((
                    batch.deployment_id.clone(),
                    batch.visitor_id.clone(),
                    ping_ms,
                    timeout_ms,
                ));
            }
        }
        inner.len -= taken.len();
        taken
    }

    /// Takes at most `limit` pings, whichever.
    pub(super) fn take_some(&self, limit: usize) -> Vec<PendingPing> {
        let mut inner = self.lock();
        let mut taken = Vec::new();
        for (deployment_id, visitors) in &mut inner.by_deployment {
            let visitor_ids: Vec<String> =
                visitors.keys().take(limit - taken.len()).cloned().collect();
            for visitor_id in visitor_ids {
                if let Some((ping_ms, timeout_ms)) = visitors.remove(&visitor_id) {
                    taken.push((deployment_id.clone(), visitor_id, ping_ms, timeout_ms));
                }
            }
            if taken.len() >= limit {
                break;
            }
        }
        inner
            .by_deployment
            .retain(|_, visitors| !visitors.is_empty());
        inner.len -= taken.len();
        taken
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len
    }
}

/// Writes one ping: the visitor's session that was live at the ping's time (neither
/// ended nor closed, last activity less than the timeout before it) gets the ping's
/// time as its last activity, never an earlier one.
fn write_ping(transaction: &Transaction<'_>, ping: &PendingPing) -> Result<(), StoreError> {
    let (deployment_id, visitor_id, ping_ms, timeout_ms) = ping;
    transaction
        .prepare_cached(
            "UPDATE sessions SET last_ms = MAX(last_ms, ?3)
             WHERE id = (SELECT id FROM sessions
                         WHERE deployment_id = ?1 AND visitor_id = ?2 AND last_ms > ?4
                           AND ended_ms IS NULL AND closed = 0
                         ORDER BY last_ms DESC, first_ms DESC LIMIT 1)",
        )?
        .execute(params![
            deployment_id,
            visitor_id,
            ping_ms,
            ping_ms.saturating_sub(*timeout_ms)
        ])?;
    Ok(())
}

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
    checkpointer: Checkpointer,
    limits: SessionLimits,
    pending_pings: Arc<PendingPings>,
    /// The index of the active segments and outcomes, rebuilt when the database's
    /// definitions generation moves.
    index_cache: Arc<IndexCache>,
    /// The database file, measured for the operator's metrics.
    path: PathBuf,
    /// The writer's queue depth and batches per commit, for the operator's metrics.
    writer_metrics: WriterMetrics,
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
        self.checkpointer.stop();
    }
}

/// Checkpoints on a connection and thread of their own: with `wal_autocheckpoint=0`
/// on the writer, copying WAL pages into the database file (and its fsync) no longer
/// happens inside a commit, which stalled every request waiting for that commit.
/// When the WAL grows past [`WAL_CAP_FRAMES`] anyway, `wal_over_cap` asks the ingest
/// writer to checkpoint between two transactions.
struct Checkpointer {
    /// Dropped to stop the thread.
    stop: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    wal_over_cap: Arc<AtomicBool>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let connection = Connection::open(path)?;
        configure(&connection)?;
        let (stop, stopped) = sync_channel(1);
        let wal_over_cap = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("footpath-checkpointer".to_owned())
            .spawn({
                let wal_over_cap = Arc::clone(&wal_over_cap);
                move || run_checkpointer(&connection, &stopped, &wal_over_cap)
            })
            .map_err(|error| StoreError::WriterFailed(format!("cannot start: {error}")))?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
            wal_over_cap,
        })
    }

    fn stop(&mut self) {
        self.stop = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the checkpointer thread panicked");
            }
        }
    }
}

fn run_checkpointer(connection: &Connection, stopped: &Receiver<()>, wal_over_cap: &AtomicBool) {
    loop {
        match stopped.recv_timeout(CHECKPOINT_INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        match checkpoint(connection) {
            Ok(wal_frames) => wal_over_cap.store(wal_frames > WAL_CAP_FRAMES, Ordering::Relaxed),
            Err(error) => tracing::warn!(%error, "WAL checkpoint failed"),
        }
    }
}

/// A passive checkpoint (it neither waits for nor blocks the writer or readers);
/// returns the frames the WAL holds.
fn checkpoint(connection: &Connection) -> Result<i64, StoreError> {
    // The row is (busy, frames in the WAL, frames copied into the database).
    Ok(connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))?)
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
        SqliteStore::open_with(
            path,
            IngestQueueSettings::default(),
            SessionLimits::default(),
        )
    }

    /// [`SqliteStore::open`] with the ingest queue's settings and the session limits.
    pub fn open_with(
        path: impl AsRef<Path>,
        queue: IngestQueueSettings,
        limits: SessionLimits,
    ) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref();
        let mut writer = Connection::open(path)?;
        configure_writer(&writer)?;
        MIGRATIONS.to_latest(&mut writer)?;
        let checkpointer = Checkpointer::start(path)?;

        let reader = Connection::open(path)?;
        configure(&reader)?;
        reader.pragma_update(None, "query_only", true)?;
        let writer = Arc::new(Mutex::new(writer));
        let (sender, receiver) = sync_channel(queue.capacity_batches.max(1));
        let pending_pings = Arc::new(PendingPings::default());
        let index_cache = Arc::new(IndexCache::default());
        let writer_metrics = WriterMetrics::default();
        let writer_thread = std::thread::Builder::new()
            .name("footpath-ingest-writer".to_owned())
            .spawn({
                let writer = Arc::clone(&writer);
                let max_batches = queue.max_batches_per_transaction.max(1);
                let wal_over_cap = Arc::clone(&checkpointer.wal_over_cap);
                let pending_pings = Arc::clone(&pending_pings);
                let index_cache = Arc::clone(&index_cache);
                let writer_metrics = writer_metrics.clone();
                move || {
                    let group_settings = GroupSettings {
                        wal_over_cap: &wal_over_cap,
                        limits: &limits,
                        index_cache: &index_cache,
                        pending_pings: &pending_pings,
                        metrics: &writer_metrics,
                    };
                    run_ingest_writer(&writer, &receiver, max_batches, &group_settings);
                }
            })
            .map_err(|error| StoreError::WriterFailed(format!("cannot start: {error}")))?;
        Ok(SqliteStore {
            writer,
            reader: Mutex::new(reader),
            ingest_queue: Some(sender),
            writer_thread: Some(writer_thread),
            checkpointer,
            limits,
            pending_pings,
            index_cache,
            path: path.to_owned(),
            writer_metrics,
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
        let settings = GroupSettings {
            wal_over_cap: &self.checkpointer.wal_over_cap,
            limits: &self.limits,
            index_cache: &self.index_cache,
            pending_pings: &self.pending_pings,
            metrics: &self.writer_metrics,
        };
        ingest_group(&mut connection, &jobs, &settings)
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

    /// A read-only connection of its own, for a long scan (the daily usage summary)
    /// that must not hold up the read API's connection.
    pub(super) fn open_scan_reader(&self) -> Result<Connection, StoreError> {
        let connection = Connection::open(&self.path)?;
        configure(&connection)?;
        connection.pragma_update(None, "query_only", true)?;
        Ok(connection)
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
    settings: &GroupSettings<'_>,
) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        while jobs.len() < max_batches {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        settings
            .metrics
            .queued_batches
            .dec_by(i64::try_from(jobs.len()).unwrap_or(i64::MAX));
        let group: Vec<(&NewBatch, i64, i64)> = jobs
            .iter()
            .map(|job| (&job.batch, job.now_ms, job.timeout_ms))
            .collect();
        let results = ingest_group(&mut lock_connection(connection), &group, settings);
        for (job, result) in jobs.into_iter().zip(results) {
            // A requester that went away (a closed connection) still had its batch
            // stored; its retry will be answered "duplicate".
            let _ = job.reply.send(result);
        }
    }
}

/// What every group of batches is stored with.
struct GroupSettings<'a> {
    wal_over_cap: &'a AtomicBool,
    limits: &'a SessionLimits,
    index_cache: &'a IndexCache,
    pending_pings: &'a PendingPings,
    metrics: &'a WriterMetrics,
}

/// One transaction for every batch of the group, a savepoint per batch. Nothing is
/// reported as stored before the commit succeeds. The pings of the group's visitors
/// are written first, so that their events see the sessions the pings kept alive.
fn ingest_group(
    connection: &mut Connection,
    jobs: &[(&NewBatch, i64, i64)],
    settings: &GroupSettings<'_>,
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
    for ping in settings.pending_pings.take_for(jobs) {
        // A ping is best effort: one that cannot be written is not worth a batch.
        if let Err(error) = write_ping(&transaction, &ping) {
            tracing::warn!(%error, "could not write a ping");
        }
    }
    let mut results = Vec::with_capacity(jobs.len());
    for &(batch, now_ms, timeout_ms) in jobs {
        results.push(ingest_in_savepoint(
            &transaction,
            batch,
            now_ms,
            timeout_ms,
            settings,
        ));
    }
    if let Err(error) = transaction.commit() {
        return everyone_failed(&error);
    }
    settings
        .metrics
        .batches_per_commit
        .observe(jobs.len() as f64);
    if settings.wal_over_cap.swap(false, Ordering::Relaxed) {
        // Between two transactions nothing is appended while this runs, so it copies
        // the rest of the WAL and the next transaction starts the WAL over.
        if let Err(error) = checkpoint(connection) {
            tracing::warn!(%error, "WAL checkpoint failed");
        }
    }
    results
}

fn ingest_in_savepoint(
    transaction: &Transaction<'_>,
    batch: &NewBatch,
    now_ms: i64,
    timeout_ms: i64,
    settings: &GroupSettings<'_>,
) -> Result<Vec<IngestOutcome>, StoreError> {
    // Plain SQL savepoints rather than rusqlite's `Savepoint`, so that the per-batch
    // code keeps working on the `Transaction`.
    transaction
        .prepare_cached("SAVEPOINT ingest_batch")?
        .execute([])?;
    match ingest_in_transaction(
        transaction,
        batch,
        (now_ms, timeout_ms),
        settings.limits,
        settings.index_cache,
    ) {
        Ok(outcomes) => {
            transaction
                .prepare_cached("RELEASE ingest_batch")?
                .execute([])?;
            Ok(outcomes)
        }
        Err(error) => {
            transaction.execute_batch("ROLLBACK TO ingest_batch; RELEASE ingest_batch")?;
            Err(error)
        }
    }
}

/// The write connection's settings: WAL, durable commits, checkpoints left to the
/// [`Checkpointer`].
fn configure_writer(writer: &Connection) -> Result<(), StoreError> {
    configure(writer)?;
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
    // Checkpoints are the checkpointer's (see `Checkpointer`), not the commits'.
    writer.pragma_update(None, "wal_autocheckpoint", 0)?;
    // Once the WAL starts over, its file is cut back to the cap. (A bigger page
    // cache than SQLite's 2 MiB was tried: it saved no CPU per event and cost its
    // size in memory.)
    writer.pragma_update(None, "journal_size_limit", WAL_CAP_FRAMES * 4096)?;
    writer.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

fn configure(connection: &Connection) -> Result<(), StoreError> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.pragma_update(None, "foreign_keys", true)?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    Ok(())
}

/// Stores one batch inside the caller's transaction: the ingest core
/// ([`crate::ingest::ingest_batch`]) over SQLite's row operations. The caller commits
/// (or rolls back to its savepoint).
fn ingest_in_transaction(
    transaction: &Transaction<'_>,
    batch: &NewBatch,
    (now_ms, timeout_ms): (i64, i64),
    limits: &SessionLimits,
    index_cache: &IndexCache,
) -> Result<Vec<IngestOutcome>, StoreError> {
    let mut rows = SqliteIngest::new(transaction);
    crate::ingest::ingest_batch(&mut rows, batch, now_ms, timeout_ms, limits, index_cache)
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
        let outcomes = ingest_in_transaction(
            &transaction,
            batch,
            (now_ms, timeout_ms),
            &self.limits,
            &self.index_cache,
        )?;
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
        // Counted before it can be taken, so that the gauge never goes below zero.
        self.writer_metrics.queued_batches.inc();
        let sent = queue.try_send(job);
        if sent.is_err() {
            self.writer_metrics.queued_batches.dec();
        }
        match sent {
            Ok(()) => Ok(receiver),
            Err(TrySendError::Full(_)) => Err(StoreError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(StoreError::WriterFailed(
                "the writer thread stopped".to_owned(),
            )),
        }
    }

    fn writer_metrics(&self) -> WriterMetrics {
        self.writer_metrics.clone()
    }

    fn gauges(&self, now_ms: i64, timeout_ms: i64) -> Result<StoreGauges, StoreError> {
        // Served by the partial index on open sessions' last_ms; the open sessions are
        // at most those of the last timeout and sweep interval.
        let live_sessions: i64 = self
            .reader()
            .prepare_cached(
                "SELECT COUNT(*) FROM sessions WHERE ended_ms IS NULL AND last_ms > ?1",
            )?
            .query_row([now_ms.saturating_sub(timeout_ms)], |row| row.get(0))?;
        let file_size = |path: &Path| std::fs::metadata(path).map(|metadata| metadata.len());
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let database_size_bytes = file_size(&self.path)
            .ok()
            .map(|bytes| bytes + file_size(Path::new(&wal)).unwrap_or(0));
        Ok(StoreGauges {
            live_sessions: to_count(live_sessions)?,
            database_size_bytes,
        })
    }

    fn check_ready(&self) -> Result<(), StoreError> {
        if self
            .writer_thread
            .as_ref()
            .is_none_or(JoinHandle::is_finished)
        {
            return Err(StoreError::WriterFailed(
                "the writer thread stopped".to_owned(),
            ));
        }
        // rusqlite_migration keeps the schema's version in user_version.
        let version: i64 = self
            .reader()
            .query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if usize::try_from(version).ok() != Some(MIGRATION_LIST.len()) {
            return Err(StoreError::Corrupt(format!(
                "the schema is at version {version}, this collector's is {}",
                MIGRATION_LIST.len()
            )));
        }
        Ok(())
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
        // Pings first, so that a session they kept alive is not ended. At most what was
        // waiting when the sweep began, so that a flood cannot keep the sweep going.
        let mut waiting = self.pending_pings.len();
        while waiting > 0 {
            let pings = self
                .pending_pings
                .take_some(waiting.min(PINGS_PER_TRANSACTION));
            if pings.is_empty() {
                break;
            }
            waiting = waiting.saturating_sub(pings.len());
            let mut connection = self.writer();
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for ping in &pings {
                write_ping(&transaction, ping)?;
            }
            transaction.commit()?;
        }
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

    fn saved_desk_presentation(&self) -> Result<Option<SavedPresentation>, StoreError> {
        let connection = self.reader();
        let saved = connection
            .prepare_cached(
                "SELECT presentation_json, file_presentation_json, saved_ms
                 FROM desk_presentation WHERE id = 1",
            )?
            .query_row([], |row| {
                Ok(SavedPresentation {
                    presentation_json: row.get(0)?,
                    file_presentation_json: row.get(1)?,
                    saved_ms: row.get(2)?,
                })
            })
            .optional()?;
        Ok(saved)
    }

    fn save_desk_presentation(&self, saved: Option<&SavedPresentation>) -> Result<(), StoreError> {
        let connection = self.writer();
        match saved {
            Some(saved) => connection.execute(
                "INSERT INTO desk_presentation
                     (id, presentation_json, file_presentation_json, saved_ms)
                 VALUES (1, ?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET
                     presentation_json = excluded.presentation_json,
                     file_presentation_json = excluded.file_presentation_json,
                     saved_ms = excluded.saved_ms",
                rusqlite::params![
                    saved.presentation_json,
                    saved.file_presentation_json,
                    saved.saved_ms
                ],
            )?,
            None => connection.execute("DELETE FROM desk_presentation", [])?,
        };
        Ok(())
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

    fn record_ping(
        &self,
        deployment_id: &str,
        visitor_id: &str,
        now_ms: i64,
        timeout_ms: i64,
    ) -> bool {
        self.pending_pings
            .record(deployment_id, visitor_id, now_ms, timeout_ms)
    }
}

/// Asks for one row more than the page holds, to learn whether another page follows.
pub(super) fn fetch_limit(limit: usize) -> i64 {
    i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX)
}

pub(super) fn into_listing<T>(mut items: Vec<T>, limit: usize) -> Listing<T> {
    let has_more = items.len() > limit;
    items.truncate(limit);
    Listing { items, has_more }
}

pub(super) fn to_count(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative count {value}")))
}

pub(super) fn insert_event(
    transaction: &Transaction<'_>,
    batch: &NewBatch,
    session_id: &str,
    event: &NewEvent,
    authenticated: bool,
    json: &EventJson,
) -> Result<(), StoreError> {
    let page = event.page.as_ref();
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
            json.campaign,
            json.context,
            event.login_id,
            json.attributes,
            json.traits,
            event.user_agent,
            event.ip_address,
            authenticated,
            event.identity_verified,
            json.user_agent,
            json.geolocation,
            json.referrer,
        ])?;
    Ok(())
}

/// The JSON columns of an event row, serialised once for the row and the summary.
pub(super) struct EventJson {
    pub(super) campaign: Option<String>,
    pub(super) context: Option<String>,
    pub(super) attributes: String,
    pub(super) traits: String,
    pub(super) user_agent: Option<String>,
    pub(super) geolocation: Option<String>,
    pub(super) referrer: Option<String>,
}

impl EventJson {
    pub(super) fn new(event: &NewEvent) -> Result<EventJson, StoreError> {
        let campaign = match &event.page {
            Some(page) if !page.campaign.is_empty() => Some(serde_json::to_string(&page.campaign)?),
            _ => None,
        };
        Ok(EventJson {
            campaign,
            context: to_json(event.context.as_ref())?,
            attributes: attributes_to_json(&event.attributes),
            traits: attributes_to_json(&event.traits),
            user_agent: to_json(event.user_agent_info.as_ref())?,
            geolocation: to_json(event.geolocation.as_ref())?,
            referrer: to_json(event.referrer_info.as_ref())?,
        })
    }
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
        identity_proof: Default::default(),
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
    s.user_agent_json, s.geolocation_json, fp.referrer_json, s.contact_link
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
        contact_link: row
            .get::<_, Option<String>>(35)?
            .as_deref()
            .and_then(crate::identity::LinkKind::parse),
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

pub(super) fn to_json<T: serde::Serialize>(
    value: Option<&T>,
) -> Result<Option<String>, StoreError> {
    Ok(value.map(serde_json::to_string).transpose()?)
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(
    json: Option<String>,
) -> Result<Option<T>, StoreError> {
    Ok(json.map(|json| serde_json::from_str(&json)).transpose()?)
}

fn context_from_json(json: Option<String>) -> Result<Option<Context>, StoreError> {
    Ok(json.map(|json| serde_json::from_str(&json)).transpose()?)
}

pub(super) fn parse_kind(kind: &str) -> Result<EventKind, StoreError> {
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

/// [`StoredAttribute`] borrowed from the event, to write it without copies.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct StoredAttributeRef<'a> {
    data_type: &'a str,
    value: &'a str,
}

fn attributes_to_json(attributes: &BTreeMap<String, AttributeValue>) -> String {
    // Serialising a map of strings cannot fail.
    serde_json::to_string(&StoredAttributes(attributes)).unwrap_or_else(|_| "{}".to_owned())
}

/// Attributes serialised as stored, borrowing from the event; the map is sorted by
/// name, as the stored JSON always was.
struct StoredAttributes<'a>(&'a BTreeMap<String, AttributeValue>);

impl serde::Serialize for StoredAttributes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, value)| {
            let text = match value {
                AttributeValue::Bool(true) => "true",
                AttributeValue::Bool(false) => "false",
                AttributeValue::Number(number) => number.as_str(),
                AttributeValue::String(text) => text.as_str(),
            };
            let stored = StoredAttributeRef {
                data_type: value.data_type(),
                value: text,
            };
            (name, stored)
        }))
    }
}

pub(super) fn attributes_from_json(
    json: &str,
) -> Result<BTreeMap<String, AttributeValue>, StoreError> {
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
    use crate::sessions::{self, SessionSpan};

    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    const MINUTE: i64 = 60_000;
    const TIMEOUT: i64 = 20 * MINUTE;
    const T0: i64 = 1_795_500_000_000;
    const VISITOR: &str = "0b7e0c2a-5b9e-4a57-9f3e-000000000001";

    fn open_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("test.sqlite3")).unwrap();
        (dir, store)
    }

    fn event(number: usize, kind: EventKind, time_ms: i64) -> NewEvent {
        NewEvent {
            id: format!("00000000-0000-7000-8000-{number:012}"),
            kind,
            name: "page_viewed".to_owned(),
            time_ms,
            client_time_ms: time_ms,
            received_ms: time_ms,
            page: None,
            context: None,
            login_id: None,
            attributes: BTreeMap::new(),
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
            deployment_id: "test".to_owned(),
            visitor_id: VISITOR.to_owned(),
            events,
            require_verified_identity: false,
        }
    }

    /// Events of one visitor with every kind of thing a summary takes in: pageviews and
    /// other events, search terms (repeated, empty, absent), contexts, user agents and
    /// geolocations on some events only, and a gap that makes two sessions. Some share
    /// a time, so that ids break ties.
    fn varied_events() -> Vec<NewEvent> {
        let terms = [
            None,
            Some("shoes"),
            Some(""),
            Some("bags"),
            Some("shoes"),
            Some("hats"),
        ];
        let user_agent = crate::enrich::user_agent::parse_user_agent(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
             (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        );
        assert!(user_agent.is_some());
        (0..40)
            .map(|number| {
                let gap = if number >= 30 { 45 * MINUTE } else { 0 };
                let time_ms = T0 + gap + i64::try_from(number / 2).unwrap() * MINUTE / 2;
                let kind = if number % 3 == 2 {
                    EventKind::Record
                } else {
                    EventKind::Pageview
                };
                let mut event = event(number, kind, time_ms);
                event.page = Some(Page {
                    url: format!("https://shop.example/{number}"),
                    title: String::new(),
                    referrer: String::new(),
                    lang: String::new(),
                    keywords: String::new(),
                    search_query: terms[number % terms.len()].map(str::to_owned),
                    campaign: Map::new(),
                });
                if number % 4 == 1 {
                    event.context = Some(Context {
                        browser_lang: "en".to_owned(),
                        screen_width: u32::try_from(number).unwrap(),
                        screen_height: 800,
                        screen_density: 200,
                        viewport_width: 1000,
                        viewport_height: 700,
                    });
                }
                if number % 5 == 3 {
                    event.user_agent_info.clone_from(&user_agent);
                }
                if number % 7 == 4 {
                    event.geolocation = Some(crate::enrich::geo::Geolocation {
                        country: Some(format!("C{number}")),
                        ..Default::default()
                    });
                }
                event
            })
            .collect()
    }

    /// The summary columns of every session, by session id.
    fn summaries(connection: &Connection) -> Vec<Vec<Option<String>>> {
        let mut statement = connection
            .prepare(
                "SELECT id, CAST(event_count AS TEXT), CAST(pageview_count AS TEXT),
                        last_event_id, last_pageview_id, landing_pageview_id,
                        context_event_id, search_terms_json, user_agent_json,
                        geolocation_json
                 FROM sessions ORDER BY id",
            )
            .unwrap();
        let rows = statement
            .query_map([], |row| {
                (0..10)
                    .map(|index| row.get::<_, Option<String>>(index))
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap();
        rows.collect::<Result<Vec<_>, _>>().unwrap()
    }

    #[test]
    fn incremental_summaries_equal_a_full_recompute_over_shuffled_events() {
        for seed in 0..12_u64 {
            let (_dir, store) = open_store();
            let mut events = varied_events();
            // Seed 0 keeps time order: only the incremental path.
            if seed > 0 {
                events.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            }
            let mut sizes = (1..=7).cycle().skip(usize::try_from(seed).unwrap());
            let mut remaining = events.as_slice();
            while !remaining.is_empty() {
                let size = sizes.next().unwrap().min(remaining.len());
                let (now, later) = remaining.split_at(size);
                let outcomes = store
                    .ingest(&batch(now.to_vec()), T0 + 100 * MINUTE, TIMEOUT)
                    .unwrap();
                assert!(outcomes
                    .iter()
                    .all(|outcome| *outcome == IngestOutcome::Accepted));
                remaining = later;
            }
            let mut connection = store.writer();
            let incremental = summaries(&connection);
            assert!(incremental.len() >= 2, "seed {seed}: {incremental:?}");
            let transaction = connection.transaction().unwrap();
            for session in &incremental {
                let session_id = crate::model::SessionId::new(session[0].clone().unwrap());
                crate::ingest::recompute_summary(
                    &mut SqliteIngest::new(&transaction),
                    &session_id,
                    20,
                )
                .unwrap();
            }
            let recomputed = summaries(&transaction);
            assert_eq!(incremental, recomputed, "seed {seed}");
            let counted: i64 = transaction
                .query_row("SELECT SUM(event_count) FROM sessions", [], |row| {
                    row.get(0)
                })
                .unwrap();
            assert_eq!(counted, 40, "seed {seed}");
        }
    }

    /// What the rule gives, event by event as the store used to query it: the session
    /// number of each event (numbered by creation) and each session's span. A logout
    /// closes its session to later events.
    fn replay(
        existing: &[SessionSpan],
        events: &[(EventKind, i64)],
    ) -> (Vec<usize>, Vec<SessionSpan>) {
        let mut spans = existing.to_vec();
        let mut closed = vec![false; spans.len()];
        let mut assigned = Vec::new();
        for &(kind, time_ms) in events {
            let open: Vec<usize> = (0..spans.len()).filter(|&index| !closed[index]).collect();
            let open_spans: Vec<SessionSpan> = open.iter().map(|&index| spans[index]).collect();
            let index = match sessions::choose_session(&open_spans, time_ms, TIMEOUT) {
                Some(position) => {
                    let index = open[position];
                    spans[index].include(time_ms);
                    index
                }
                None => {
                    spans.push(SessionSpan::starting_at(time_ms));
                    closed.push(false);
                    spans.len() - 1
                }
            };
            if kind == EventKind::Logout {
                closed[index] = true;
            }
            assigned.push(index);
        }
        (assigned, spans)
    }

    #[test]
    fn one_batch_with_late_events_lands_each_where_the_rule_says() {
        let m = |minutes: i64| T0 + minutes * MINUTE;
        // A first batch makes two sessions: [0, 10] and [50, 50].
        let first = [
            (EventKind::Pageview, m(0)),
            (EventKind::Pageview, m(10)),
            (EventKind::Pageview, m(50)),
        ];
        // Then one batch out of order: late events into either session, one between
        // them that joins the latest, one that bridges, a new session far ahead, a
        // logout, and events after the logout that must start a new session.
        let second = [
            (EventKind::Pageview, m(100)),
            (EventKind::Record, m(5)),
            (EventKind::Pageview, m(35)),
            (EventKind::Pageview, m(-15)),
            (EventKind::Record, m(29)),
            (EventKind::Pageview, m(101)),
            (EventKind::Logout, m(102)),
            (EventKind::Pageview, m(103)),
            (EventKind::Pageview, m(60)),
            (EventKind::Pageview, m(104)),
        ];
        let (_dir, store) = open_store();
        let mut number = 0;
        let mut stored_ids = Vec::new();
        for events in [&first[..], &second[..]] {
            let batch = batch(
                events
                    .iter()
                    .map(|&(kind, time_ms)| {
                        number += 1;
                        event(number, kind, time_ms)
                    })
                    .collect(),
            );
            stored_ids.extend(batch.events.iter().map(|event| event.id.clone()));
            store.ingest(&batch, m(110), TIMEOUT).unwrap();
        }
        let all: Vec<(EventKind, i64)> = first.iter().chain(&second).copied().collect();
        let (expected, expected_spans) = replay(&[], &all);

        let connection = store.reader();
        let session_of = |id: &str| -> String {
            connection
                .query_row("SELECT session_id FROM events WHERE id = ?1", [id], |row| {
                    row.get(0)
                })
                .unwrap()
        };
        // Number the stored sessions by first appearance, as `replay` numbers them.
        let mut numbering: Vec<String> = Vec::new();
        let mut stored = Vec::new();
        for id in &stored_ids {
            let session_id = session_of(id);
            let index = match numbering.iter().position(|known| *known == session_id) {
                Some(index) => index,
                None => {
                    numbering.push(session_id);
                    numbering.len() - 1
                }
            };
            stored.push(index);
        }
        assert_eq!(stored, expected);
        for (session_id, span) in numbering.iter().zip(&expected_spans) {
            let (first_ms, last_ms): (i64, i64) = connection
                .query_row(
                    "SELECT first_ms, last_ms FROM sessions WHERE id = ?1",
                    [session_id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .unwrap();
            assert_eq!(SessionSpan { first_ms, last_ms }, *span, "{session_id}");
        }
        // The logout's session ended at the logout and is closed.
        let logout_session = session_of(&stored_ids[3 + 6]);
        let (ended_ms, closed): (Option<i64>, bool) = connection
            .query_row(
                "SELECT ended_ms, closed FROM sessions WHERE id = ?1",
                [&logout_session],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((ended_ms, closed), (Some(m(102)), true));
        // Sanity: the case does exercise several sessions, late events and the logout.
        assert!(expected_spans.len() >= 4, "{expected_spans:?}");
    }

    #[test]
    fn over_the_wal_cap_the_writer_checkpoints_so_that_the_wal_starts_over() {
        // A writer connection alone, without the checkpointer thread, so that only the
        // writer checkpoints.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.sqlite3");
        let mut connection = Connection::open(&path).unwrap();
        configure_writer(&connection).unwrap();
        MIGRATIONS.to_latest(&mut connection).unwrap();
        let mut number = 0;
        let mut store_batch = |connection: &mut Connection, over_cap: bool| {
            let events = (0..20)
                .map(|_| {
                    number += 1;
                    event(
                        number,
                        EventKind::Pageview,
                        T0 + i64::try_from(number).unwrap(),
                    )
                })
                .collect();
            let flag = AtomicBool::new(over_cap);
            let settings = GroupSettings {
                wal_over_cap: &flag,
                limits: &SessionLimits::default(),
                index_cache: &IndexCache::default(),
                pending_pings: &PendingPings::default(),
                metrics: &WriterMetrics::default(),
            };
            let results = ingest_group(connection, &[(&batch(events), T0, TIMEOUT)], &settings);
            assert!(results.iter().all(Result::is_ok));
            assert!(
                !flag.load(Ordering::Relaxed),
                "the request to checkpoint is taken"
            );
        };
        // One WAL frame is a 24-byte header and a page, after a 32-byte file header.
        let page_size: u64 = connection
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .unwrap();
        let wal_frames = || {
            let length = std::fs::metadata(path.with_extension("sqlite3-wal"))
                .unwrap()
                .len();
            i64::try_from((length - 32) / (24 + page_size)).unwrap()
        };
        for _ in 0..10 {
            store_batch(&mut connection, false);
        }
        // Nothing checkpointed yet: the WAL has only grown.
        let frames_before = wal_frames();
        assert!(frames_before > 20, "{frames_before}");
        // Over the cap, the writer copies the WAL into the database after its commit...
        store_batch(&mut connection, true);
        // ...so the next transaction writes the WAL from its start again.
        store_batch(&mut connection, false);
        let frames_now = checkpoint(&connection).unwrap();
        assert!(
            frames_now < frames_before / 2,
            "{frames_now} frames in the WAL, {frames_before} before"
        );
    }

    #[test]
    fn migrations_are_valid() {
        MIGRATIONS.validate().unwrap();
    }

    #[test]
    fn email_identifiers_are_recomputed_with_ascii_folding() {
        let mut connection = Connection::open_in_memory().unwrap();
        MIGRATIONS.to_version(&mut connection, 6).unwrap();
        connection
            .execute_batch(
                "INSERT INTO contacts (id, contact_type, work_email, personal_email, create_ms, modify_ms)
                     VALUES ('mallory', 'Curated', '\u{212A}ate@Example.com', 'Mal@Example.com', 1, 2),
                            ('kate', 'Curated', 'kate@example.com', NULL, 3, 4);
                 -- As the old code kept them: Unicode-lowercased.
                 INSERT INTO contact_identifiers (contact_id, type, value, created_ms)
                     VALUES ('mallory', 'Email', 'kate@example.com', 5),
                            ('mallory', 'Email', 'mal@example.com', 6),
                            ('mallory', 'Cookie', 'c00c1e', 7),
                            ('kate', 'Email', 'kate@example.com', 8);",
            )
            .unwrap();
        MIGRATIONS.to_latest(&mut connection).unwrap();
        let rows: Vec<(String, String, String, i64)> = connection
            .prepare("SELECT contact_id, type, value, created_ms FROM contact_identifiers ORDER BY contact_id, type, value")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let row = |contact: &str, kind: &str, value: &str, created: i64| {
            (
                contact.to_owned(),
                kind.to_owned(),
                value.to_owned(),
                created,
            )
        };
        assert_eq!(
            rows,
            [
                row("kate", "Email", "kate@example.com", 8),
                row("mallory", "Cookie", "c00c1e", 7),
                row("mallory", "Email", "mal@example.com", 6),
                row("mallory", "Email", "\u{212A}ate@example.com", 2),
            ]
        );
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
