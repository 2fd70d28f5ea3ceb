//! The PostgreSQL backend: any number of collectors on one database.
//!
//! - **Client**: the synchronous `postgres` crate (the store traits are synchronous
//!   and called from blocking threads and from this store's own ingest threads, so an
//!   async client would only add a runtime to block on), in an r2d2 pool whose
//!   connections keep the statements they prepared ([`connection`]).
//! - **Ingest**: [`Store::enqueue_ingest`] puts the batch on a bounded queue (full:
//!   [`StoreError::Overloaded`] at once) that `writers` threads drain, each batch in
//!   its own transaction: the visitor's advisory lock, the visitor's waiting ping, the
//!   ingest core ([`crate::ingest::ingest_batch`]) over [`ingest::PostgresIngest`],
//!   commit, answer. A transaction that loses a deadlock is run again. Batches of
//!   different visitors run side by side; PostgreSQL groups their commits' WAL flushes.
//! - **Schema**: `migrations/postgres/`, run by refinery under an advisory lock so
//!   that collectors starting together migrate once; the events table's monthly
//!   partitions are made ahead ([`partitions`]).
//! - **Data rights and usage**: erase, export, retention and usage figures as on
//!   SQLite, under the same visitor and contact locks as ingest ([`privacy`]).
//! - **Segments and outcomes**: definitions ([`definitions`]) and the row operations
//!   of their evaluation on ingest ([`segments`]); the evaluation is the ingest core's.
//! - **Collectors on one database**: desk sign-ins are rows ([`desk`]); what an
//!   open desk must follow (a visitor's new events, a presentation change, a sign-out)
//!   goes to the other collectors by LISTEN/NOTIFY ([`peers`]).

mod connection;
mod contacts;
mod definitions;
// Agents' desk sign-ins (crate::desk::auth).
mod desk;
mod ingest;
mod partitions;
// What collectors on the database tell each other (crate::peers).
mod peers;
mod privacy;
mod rows;
mod segments;

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use footpath_protocol::v1::EventKind;

use self::connection::{is_retryable, LockSpace, Manager, PgConnection, Tx};
use self::contacts::{load_contact, search_contacts, write_contact_fields};
use self::ingest::{visitor_key, PostgresIngest};
use self::rows::{event_from_row, session_from_row, EVENT_SELECT, SESSION_SELECT};
use super::sqlite::{fetch_limit, into_listing, to_count, PendingPing, PendingPings};
use super::{
    ContactPage, ContactQuery, IngestOutcome, IngestQueueSettings, IngestReply, Listing, NewBatch,
    SavedPresentation, SessionFilter, SessionLimits, Store, StoreError, StoredContact, StoredEvent,
    StoredSession,
};
use crate::contacts::{ContactFields, CURATED};
use crate::ingest::IndexCache;
use crate::metrics::{StoreGauges, WriterMetrics};
use crate::segments::{OutcomeAchievement, SegmentAssignment};

/// The schema, one file per version, named as refinery wants (`V<n>__<name>`). Never
/// edit a released migration: add a new file.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "V1__init",
        include_str!("../../../migrations/postgres/V1__init.sql"),
    ),
    (
        "V2__privacy_usage",
        include_str!("../../../migrations/postgres/V2__privacy_usage.sql"),
    ),
    (
        "V3__desk_sign_ins",
        include_str!("../../../migrations/postgres/V3__desk_sign_ins.sql"),
    ),
];

/// Where refinery records the migrations it ran.
const MIGRATION_TABLE: &str = "footpath_schema_history";

/// Times a batch's transaction is run when it loses a deadlock.
const INGEST_ATTEMPTS: usize = 4;
/// Most queued batches a writer stores in one transaction ([`ingest_group`]).
const MAX_BATCHES_PER_COMMIT: usize = 32;

/// How many batches may wait for a writer, and how many writers there are: the
/// PostgreSQL form of [`IngestQueueSettings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostgresSettings {
    pub queue_capacity_batches: usize,
    /// Threads (each with a connection) that store queued batches side by side.
    pub writers: usize,
    /// Connections for everything else (the read API, the desk, the sweep).
    pub read_connections: u32,
}

impl Default for PostgresSettings {
    fn default() -> PostgresSettings {
        PostgresSettings {
            queue_capacity_batches: IngestQueueSettings::default().capacity_batches,
            writers: 4,
            read_connections: 8,
        }
    }
}

/// A batch waiting for a writer thread, with where to send its outcomes.
struct IngestJob {
    batch: NewBatch,
    now_ms: i64,
    timeout_ms: i64,
    reply: tokio::sync::oneshot::Sender<Result<Vec<IngestOutcome>, StoreError>>,
}

/// What every writer needs.
struct Shared {
    pool: r2d2::Pool<Manager>,
    limits: SessionLimits,
    /// This store instance's index of the definitions, rebuilt when the database's
    /// generation moves (another collector may change them).
    index_cache: IndexCache,
    pending_pings: PendingPings,
    writer_metrics: WriterMetrics,
    first_statistics: FirstStatistics,
    /// This store's id among the collectors on the database (see [`crate::peers`]).
    peer_id: String,
    /// What the notifier thread is to tell the other collectors ([`peers`]).
    notifier: SyncSender<crate::peers::PeerMessage>,
}

impl Shared {
    /// Called after each stored batch: see [`FirstStatistics`].
    fn after_stored(&self) {
        if !self.first_statistics.due() {
            return;
        }
        let analyzed = self
            .pool
            .get()
            .map_err(StoreError::from)
            .and_then(|mut connection| self.first_statistics.analyze_if_missing(&mut connection));
        if let Err(error) = analyzed {
            tracing::warn!(%error, "could not give the lookup tables statistics");
        }
    }
}

/// The ingest path's lookup tables, which must have planner statistics early.
const LOOKUP_TABLES: [&str; 3] = ["sessions", "event_ids", "contact_identifiers"];
/// Batches between two looks at whether those tables still lack statistics.
const STATISTICS_CHECK_EVERY: u64 = 500;
/// Rows a table holds before it is worth analyzing.
const STATISTICS_MIN_ROWS: i64 = 1_000;

/// Gives the lookup tables their first statistics sooner than autovacuum would.
///
/// The store's statements are prepared once per connection, and after a few runs
/// PostgreSQL keeps a generic plan. Made while a table is new and has never been
/// analyzed, that plan costs every index alike and can pick one that matches only the
/// deployment, so that a visitor's sessions are found by scanning all of the
/// deployment's (measured on a new database: 1.7 ms instead of 0.02 ms per lookup at
/// 4,000 sessions). Autovacuum analyzes a table only after its first naptime (a
/// minute by default) and enough changes; an ANALYZE also discards the cached plans
/// of every connection, in every collector. So every few hundred batches a writer
/// looks, until each table has been analyzed once, and analyzes those that hold
/// enough rows.
#[derive(Default)]
struct FirstStatistics {
    batches: std::sync::atomic::AtomicU64,
    done: std::sync::atomic::AtomicBool,
}

impl FirstStatistics {
    /// Whether this batch should look (never again once every table has statistics).
    fn due(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        !self.done.load(Relaxed)
            && self
                .batches
                .fetch_add(1, Relaxed)
                .is_multiple_of(STATISTICS_CHECK_EVERY)
    }

    fn analyze_if_missing(&self, connection: &mut PgConnection) -> Result<(), StoreError> {
        let client = connection.client();
        let tables: Vec<(String, i64, bool)> = client
            .query(
                "SELECT relname::text, n_live_tup,
                        last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL
                 FROM pg_stat_user_tables WHERE relname::text = ANY($1::text[])",
                &[&&LOOKUP_TABLES[..]],
            )?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
            .collect::<Result<_, StoreError>>()?;
        if tables.len() == LOOKUP_TABLES.len() && tables.iter().all(|(_, _, analyzed)| *analyzed) {
            self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        for (table, rows, analyzed) in tables {
            // Only the names listed above reach the statement.
            if !analyzed && rows >= STATISTICS_MIN_ROWS && LOOKUP_TABLES.contains(&table.as_str()) {
                client.batch_execute(&format!("ANALYZE {table}"))?;
                tracing::debug!(table, rows, "gave a lookup table its first statistics");
            }
        }
        Ok(())
    }
}

pub struct PostgresStore {
    /// `None` only while the store is being dropped (see its `Drop`).
    shared: Option<Arc<Shared>>,
    /// `None` only while the store is being dropped: the writers then drain the queue
    /// and stop.
    ingest_queue: Option<SyncSender<IngestJob>>,
    writers: Vec<JoinHandle<()>>,
    /// Where the listener of [`Store::listen_to_peers`] connects.
    target: connection::Target,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.ingest_queue = None;
        for writer in self.writers.drain(..) {
            if writer.join().is_err() {
                tracing::error!("a PostgreSQL ingest writer panicked");
            }
        }
        // Closing a `postgres` client runs its own small runtime, which panics inside
        // an async task (the store may be dropped in `main`'s or a test's): the pool
        // and its connections are dropped on a thread of their own.
        if let Some(shared) = self.shared.take() {
            if std::thread::spawn(move || drop(shared)).join().is_err() {
                tracing::error!("closing the PostgreSQL connections panicked");
            }
        }
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user@host:port/database`),
    /// brings its schema up to date, makes the events table's partitions around
    /// `now_ms`, and starts the ingest writers.
    pub fn open(
        url: &str,
        settings: PostgresSettings,
        limits: SessionLimits,
        now_ms: i64,
    ) -> Result<PostgresStore, StoreError> {
        let target = connection::Target::parse(url)?;
        target.probe()?;
        let writers = settings.writers.max(1);
        let pool = r2d2::Pool::builder()
            .max_size(u32::try_from(writers).unwrap_or(u32::MAX) + settings.read_connections.max(1))
            // Connections are opened as they are needed rather than all at start (r2d2
            // keeps `max_size` idle by default), so that many collectors, or many
            // tests, on one server do not use up its `max_connections` while idle.
            .min_idle(Some(1))
            .connection_timeout(std::time::Duration::from_secs(10))
            .build(Manager::new(target.clone()))?;
        migrate(&mut *pool.get()?)?;
        partitions::ensure_around(&mut *pool.get()?, now_ms)?;
        let peer_id = uuid::Uuid::new_v4().to_string();
        let (notifier, notifications) = sync_channel(peers::NOTIFIER_QUEUE);
        peers::start_notifier(target.clone(), peer_id.clone(), notifications)?;
        let shared = Arc::new(Shared {
            pool,
            limits,
            index_cache: IndexCache::default(),
            pending_pings: PendingPings::default(),
            writer_metrics: WriterMetrics::default(),
            first_statistics: FirstStatistics::default(),
            peer_id,
            notifier,
        });
        let (sender, receiver) = sync_channel(settings.queue_capacity_batches.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let mut threads = Vec::with_capacity(writers);
        for number in 0..writers {
            let shared = Arc::clone(&shared);
            let receiver = Arc::clone(&receiver);
            let thread = std::thread::Builder::new()
                .name(format!("footpath-pg-writer-{number}"))
                .spawn(move || run_writer(&shared, &receiver))
                .map_err(|error| StoreError::WriterFailed(format!("cannot start: {error}")))?;
            threads.push(thread);
        }
        Ok(PostgresStore {
            shared: Some(shared),
            ingest_queue: Some(sender),
            writers: threads,
            target,
        })
    }

    fn shared(&self) -> &Shared {
        // Taken only in `Drop`.
        self.shared
            .as_deref()
            .expect("the store's shared state outlives every call")
    }

    fn connection(&self) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        Ok(self.shared().pool.get()?)
    }
}

/// Runs the migrations not yet applied, under an advisory lock held for the session:
/// collectors that start together wait for the first to finish, then find nothing to
/// do.
fn migrate(connection: &mut PgConnection) -> Result<(), StoreError> {
    let migrations = MIGRATIONS
        .iter()
        .map(|(name, sql)| refinery::Migration::unapplied(name, sql))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| StoreError::Schema(error.to_string()))?;
    let client = connection.client();
    client.execute("SELECT pg_advisory_lock(0, 1)", &[])?;
    let result = refinery::Runner::new(&migrations)
        .set_migration_table_name(MIGRATION_TABLE)
        .run(client)
        .map(|_| ())
        .map_err(|error| StoreError::Schema(error.to_string()));
    client.execute("SELECT pg_advisory_unlock(0, 1)", &[])?;
    result
}

/// A writer thread: takes one queued batch at a time until the store drops its sender.
fn run_writer(shared: &Shared, queue: &Mutex<Receiver<IngestJob>>) {
    loop {
        // The lock is held only while waiting for the next job and taking those
        // already queued behind it.
        let mut jobs = Vec::new();
        {
            let receiver = queue.lock().unwrap_or_else(PoisonError::into_inner);
            match receiver.recv() {
                Ok(job) => jobs.push(job),
                Err(_) => return,
            }
            while jobs.len() < MAX_BATCHES_PER_COMMIT {
                match receiver.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        for _ in &jobs {
            shared.writer_metrics.queued_batches.dec();
        }
        let results = ingest_group(shared, &jobs);
        for (job, result) in jobs.into_iter().zip(results) {
            let stored = result.is_ok();
            // A requester that went away still had its batch stored; its retry will be
            // answered "duplicate".
            let _ = job.reply.send(result);
            // After the answer, so that no request waits for it.
            if stored {
                shared.after_stored();
            }
        }
    }
}

/// Stores queued batches together: one transaction with a savepoint per batch and one
/// commit (one WAL flush) for all of them, as the SQLite writer does, instead of a
/// commit per batch.
///
/// Only a group's first batch waits for its visitor's lock; a later batch whose visitor
/// is busy (another writer or collector has it) is left out, so that two writers'
/// groups never wait on each other's visitors. A batch left out, a batch that fails
/// inside the group (rolled back to its savepoint), and every batch of a group whose
/// transaction fails, are then stored alone by [`ingest`], with its retries.
fn ingest_group(
    shared: &Shared,
    jobs: &[IngestJob],
) -> Vec<Result<Vec<IngestOutcome>, StoreError>> {
    let mut grouped: Vec<Option<Vec<IngestOutcome>>> = Vec::new();
    if jobs.len() > 1 {
        match store_group(shared, jobs) {
            Ok(stored) => grouped = stored,
            Err(error) => {
                tracing::debug!(%error, "a group of batches failed; storing them one by one");
            }
        }
    }
    grouped.resize_with(jobs.len(), || None);
    let in_group = grouped.iter().filter(|outcomes| outcomes.is_some()).count();
    if in_group > 0 {
        #[allow(clippy::cast_precision_loss)]
        shared
            .writer_metrics
            .batches_per_commit
            .observe(in_group as f64);
    }
    jobs.iter()
        .zip(grouped)
        .map(|(job, outcomes)| match outcomes {
            Some(outcomes) => {
                notify_stored(shared, &job.batch, &outcomes);
                Ok(outcomes)
            }
            None => {
                let result = ingest(shared, &job.batch, job.now_ms, job.timeout_ms);
                if result.is_ok() {
                    shared.writer_metrics.batches_per_commit.observe(1.0);
                }
                result
            }
        })
        .collect()
}

/// The transaction of [`ingest_group`]: the outcomes of the batches it stored, `None`
/// for those it left out. On an error nothing is stored, and the pings it took are put
/// back for whoever stores those batches next.
fn store_group(
    shared: &Shared,
    jobs: &[IngestJob],
) -> Result<Vec<Option<Vec<IngestOutcome>>>, StoreError> {
    let mut taken: Vec<PendingPing> = Vec::new();
    let result = store_group_taking(shared, jobs, &mut taken);
    if result.is_err() {
        put_back(shared, &taken);
    }
    result
}

fn put_back(shared: &Shared, pings: &[PendingPing]) {
    for (deployment_id, visitor_id, ping_ms, timeout_ms) in pings {
        shared
            .pending_pings
            .record(deployment_id, visitor_id, *ping_ms, *timeout_ms);
    }
}

fn store_group_taking(
    shared: &Shared,
    jobs: &[IngestJob],
    taken: &mut Vec<PendingPing>,
) -> Result<Vec<Option<Vec<IngestOutcome>>>, StoreError> {
    let mut connection = shared.pool.get()?;
    let mut tx = connection.transaction(false)?;
    let mut stored = Vec::with_capacity(jobs.len());
    for (position, job) in jobs.iter().enumerate() {
        let key = visitor_key(&job.batch.deployment_id, &job.batch.visitor_id);
        if position == 0 {
            tx.lock(LockSpace::Visitor, &key)?;
        } else if !tx.try_lock(LockSpace::Visitor, &key)? {
            stored.push(None);
            continue;
        }
        tx.batch_execute("SAVEPOINT footpath_batch")?;
        let pings = shared
            .pending_pings
            .take_for(&[(&job.batch, job.now_ms, job.timeout_ms)]);
        match store_in(
            &mut tx,
            shared,
            &job.batch,
            job.now_ms,
            job.timeout_ms,
            &pings,
        ) {
            Ok(outcomes) => {
                tx.batch_execute("RELEASE SAVEPOINT footpath_batch")?;
                taken.extend(pings);
                stored.push(Some(outcomes));
            }
            Err(error) => {
                put_back(shared, &pings);
                tracing::debug!(%error, "a batch failed inside a group; it is stored alone");
                tx.batch_execute("ROLLBACK TO SAVEPOINT footpath_batch")?;
                stored.push(None);
            }
        }
    }
    tx.commit()?;
    Ok(stored)
}

/// One batch's rows, in a transaction that holds the visitor's lock: alone
/// ([`ingest_once`]) or under its savepoint in a group ([`store_group`]).
fn store_in(
    tx: &mut Tx<'_>,
    shared: &Shared,
    batch: &NewBatch,
    now_ms: i64,
    timeout_ms: i64,
    pings: &[PendingPing],
) -> Result<Vec<IngestOutcome>, StoreError> {
    // The visitor's ping first, so that its events see the session it kept alive.
    for ping in pings {
        write_ping(tx, ping)?;
    }
    let mut rows = PostgresIngest::new(tx, batch);
    let outcomes = crate::ingest::ingest_batch(
        &mut rows,
        batch,
        now_ms,
        timeout_ms,
        &shared.limits,
        &shared.index_cache,
    )?;
    rows.finish()?;
    Ok(outcomes)
}

/// Committed: open desks on the other collectors follow the visitor.
fn notify_stored(shared: &Shared, batch: &NewBatch, outcomes: &[IngestOutcome]) {
    if outcomes.contains(&IngestOutcome::Accepted) {
        peers::send(
            &shared.notifier,
            crate::peers::PeerMessage::SessionChanged {
                deployment_id: batch.deployment_id.clone(),
                visitor_id: batch.visitor_id.clone(),
            },
        );
    }
}

/// Stores one batch in its own transaction, running it again when it loses a deadlock.
fn ingest(
    shared: &Shared,
    batch: &NewBatch,
    now_ms: i64,
    timeout_ms: i64,
) -> Result<Vec<IngestOutcome>, StoreError> {
    let mut connection = shared.pool.get()?;
    let pings = shared
        .pending_pings
        .take_for(&[(batch, now_ms, timeout_ms)]);
    let mut attempt = 1;
    loop {
        match ingest_once(&mut connection, shared, batch, now_ms, timeout_ms, &pings) {
            Err(error) if attempt < INGEST_ATTEMPTS && is_retryable(&error) => attempt += 1,
            result => {
                if let Ok(outcomes) = &result {
                    notify_stored(shared, batch, outcomes);
                }
                return result;
            }
        }
    }
}

fn ingest_once(
    connection: &mut PgConnection,
    shared: &Shared,
    batch: &NewBatch,
    now_ms: i64,
    timeout_ms: i64,
    pings: &[PendingPing],
) -> Result<Vec<IngestOutcome>, StoreError> {
    let mut tx = connection.transaction(false)?;
    tx.lock(
        LockSpace::Visitor,
        &visitor_key(&batch.deployment_id, &batch.visitor_id),
    )?;
    let outcomes = store_in(&mut tx, shared, batch, now_ms, timeout_ms, pings)?;
    tx.commit()?;
    Ok(outcomes)
}

/// Writes one ping (see `Store::record_ping`): the visitor's session live at the
/// ping's time gets it as its last activity, never an earlier one.
fn write_ping(tx: &mut Tx<'_>, ping: &PendingPing) -> Result<(), StoreError> {
    let (deployment_id, visitor_id, ping_ms, timeout_ms) = ping;
    tx.execute(
        "UPDATE sessions SET last_ms = GREATEST(last_ms, $3)
         WHERE id = (SELECT id FROM sessions
                     WHERE deployment_id = $1 AND visitor_id = $2 AND last_ms > $4
                       AND ended_ms IS NULL AND NOT closed
                     ORDER BY last_ms DESC, first_ms DESC LIMIT 1)",
        &[
            deployment_id,
            visitor_id,
            ping_ms,
            &ping_ms.saturating_sub(*timeout_ms),
        ],
    )?;
    Ok(())
}

/// Reads the segments and outcomes a session has, oldest first.
fn attach_assignments(tx: &mut Tx<'_>, session: &mut StoredSession) -> Result<(), StoreError> {
    session.segment_assignments = tx
        .query(
            "SELECT id, segment_id, display_name, color, should_display_to_agent, assigned_ms,
                    trigger_event_id
             FROM session_segment_assignments WHERE session_id = $1 ORDER BY assigned_ms, id",
            &[&session.id],
        )?
        .iter()
        .map(|row| {
            Ok(SegmentAssignment {
                id: row.try_get(0)?,
                segment_id: row.try_get(1)?,
                display_name: row.try_get(2)?,
                color: row.try_get(3)?,
                should_display_to_agent: row.try_get(4)?,
                assigned_ms: row.try_get(5)?,
                trigger_event_id: row.try_get(6)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    session.outcome_achievements = tx
        .query(
            "SELECT id, outcome_id, display_name, version, is_positive, associated_value,
                    achieved_ms, trigger_event_id
             FROM session_outcome_achievements WHERE session_id = $1 ORDER BY achieved_ms, id",
            &[&session.id],
        )?
        .iter()
        .map(|row| {
            Ok(OutcomeAchievement {
                id: row.try_get(0)?,
                outcome_id: row.try_get(1)?,
                display_name: row.try_get(2)?,
                version: u64::try_from(row.try_get::<_, i64>(3)?).unwrap_or(0),
                is_positive: row.try_get(4)?,
                associated_value: row.try_get(5)?,
                achieved_ms: row.try_get(6)?,
                trigger_event_id: row.try_get(7)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(())
}

/// Events of the session up to and including the `(time_ms, id)` position, and the
/// pageviews among them.
fn running_totals(
    tx: &mut Tx<'_>,
    session_id: &str,
    time_ms: i64,
    event_id: &str,
) -> Result<(u64, u64), StoreError> {
    let row = tx.query_one(
        "SELECT COUNT(*), COALESCE(SUM((kind = 'pageview')::int), 0)::bigint FROM events
         WHERE session_id = $1 AND (time_ms, id) <= ($2, $3)",
        &[&session_id, &time_ms, &event_id],
    )?;
    Ok((to_count(row.try_get(0)?)?, to_count(row.try_get(1)?)?))
}

impl Store for PostgresStore {
    fn ingest(
        &self,
        batch: &NewBatch,
        now_ms: i64,
        timeout_ms: i64,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        let outcomes = ingest(self.shared(), batch, now_ms, timeout_ms)?;
        self.shared().after_stored();
        Ok(outcomes)
    }

    fn enqueue_ingest(
        &self,
        batch: NewBatch,
        now_ms: i64,
        timeout_ms: i64,
    ) -> Result<IngestReply, StoreError> {
        let (reply, receiver) = tokio::sync::oneshot::channel();
        let queue = self
            .ingest_queue
            .as_ref()
            .ok_or_else(|| StoreError::WriterFailed("the store is closing".to_owned()))?;
        let metrics = &self.shared().writer_metrics;
        // Counted before it can be taken, so that the gauge never goes below zero.
        metrics.queued_batches.inc();
        let sent = queue.try_send(IngestJob {
            batch,
            now_ms,
            timeout_ms,
            reply,
        });
        if sent.is_err() {
            metrics.queued_batches.dec();
        }
        match sent {
            Ok(()) => Ok(receiver),
            Err(TrySendError::Full(_)) => Err(StoreError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(StoreError::WriterFailed(
                "the writer threads stopped".to_owned(),
            )),
        }
    }

    fn writer_metrics(&self) -> WriterMetrics {
        self.shared().writer_metrics.clone()
    }

    fn gauges(&self, now_ms: i64, timeout_ms: i64) -> Result<StoreGauges, StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(true)?;
        let row = tx.query_one(
            "SELECT (SELECT COUNT(*) FROM sessions WHERE ended_ms IS NULL AND last_ms > $1),
                    pg_database_size(current_database())",
            &[&now_ms.saturating_sub(timeout_ms)],
        )?;
        Ok(StoreGauges {
            live_sessions: to_count(row.try_get(0)?)?,
            database_size_bytes: u64::try_from(row.try_get::<_, i64>(1)?).ok(),
        })
    }

    fn check_ready(&self) -> Result<(), StoreError> {
        if self.writers.iter().any(JoinHandle::is_finished) {
            return Err(StoreError::WriterFailed(
                "a writer thread stopped".to_owned(),
            ));
        }
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(true)?;
        let version: Option<i32> = tx
            .query_one(&format!("SELECT MAX(version) FROM {MIGRATION_TABLE}"), &[])?
            .try_get(0)?;
        let expected = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
        if version != Some(expected) {
            return Err(StoreError::Corrupt(format!(
                "the schema is at version {version:?}, this collector's is {expected}"
            )));
        }
        Ok(())
    }

    fn session(&self, session_id: &str) -> Result<Option<StoredSession>, StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(true)?;
        let Some(row) =
            tx.query_opt(&format!("{SESSION_SELECT} WHERE s.id = $1"), &[&session_id])?
        else {
            return Ok(None);
        };
        let mut session = session_from_row(&row)?;
        attach_assignments(&mut tx, &mut session)?;
        Ok(Some(session))
    }

    fn session_events(
        &self,
        session_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Option<Listing<StoredEvent>>, StoreError> {
        let mut connection = self.connection()?;
        // One snapshot for the running totals and the page.
        let mut tx = connection.transaction(true)?;
        if tx
            .query_opt("SELECT 1 FROM sessions WHERE id = $1", &[&session_id])?
            .is_none()
        {
            return Ok(None);
        }
        let (cursor_time_ms, cursor_id, mut event_count, mut pageview_count) = match after {
            None => (i64::MIN, String::new(), 0, 0),
            Some(after) => {
                let cursor_time_ms: i64 = tx
                    .query_opt(
                        "SELECT time_ms FROM events WHERE id = $1 AND session_id = $2",
                        &[&after, &session_id],
                    )?
                    .ok_or(StoreError::UnknownCursor)?
                    .try_get(0)?;
                let (events, pageviews) =
                    running_totals(&mut tx, session_id, cursor_time_ms, after)?;
                (cursor_time_ms, after.to_owned(), events, pageviews)
            }
        };
        let rows = tx.query(
            &format!(
                "{EVENT_SELECT} WHERE session_id = $1 AND (time_ms, id) > ($2, $3)
                 ORDER BY time_ms, id LIMIT $4"
            ),
            &[
                &session_id,
                &cursor_time_ms,
                &cursor_id,
                &fetch_limit(limit),
            ],
        )?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
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
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(true)?;
        // Newest first: the cursor is the (first_ms, id) of the previous page's last.
        let (cursor_first_ms, cursor_id) = match after {
            None => (i64::MAX, None),
            Some(after) => {
                let first_ms: i64 = tx
                    .query_opt("SELECT first_ms FROM sessions WHERE id = $1", &[&after])?
                    .ok_or(StoreError::UnknownCursor)?
                    .try_get(0)?;
                (first_ms, Some(after))
            }
        };
        let rows = tx.query(
            &format!(
                "{SESSION_SELECT}
                 WHERE ($1::text IS NULL OR s.deployment_id = $1)
                   AND ($2::text IS NULL OR s.visitor_id = $2)
                   AND ($6::text IS NULL OR s.contact_id = $6)
                   AND ($4::text IS NULL AND s.first_ms <= $3 OR (s.first_ms, s.id) < ($3, $4))
                 ORDER BY s.first_ms DESC, s.id DESC
                 LIMIT $5"
            ),
            &[
                &filter.deployment_id,
                &filter.visitor_id,
                &cursor_first_ms,
                &cursor_id,
                &fetch_limit(limit),
                &filter.contact_id,
            ],
        )?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut session = session_from_row(row)?;
            attach_assignments(&mut tx, &mut session)?;
            items.push(session);
        }
        Ok(into_listing(items, limit))
    }

    fn close_idle_sessions(&self, now_ms: i64, timeout_ms: i64) -> Result<usize, StoreError> {
        let mut connection = self.connection()?;
        // The sweep also keeps the events table's partitions ahead of time; months
        // ahead, so a sweep that cannot now (the table's lock is busy) leaves time
        // for the next ones, and must not keep sessions from ending.
        if let Err(error) = partitions::ensure_around(&mut connection, now_ms) {
            tracing::warn!(%error, "could not make the events table's next partitions");
        }
        // Pings first, so that a session they kept alive is not ended; each under its
        // visitor's lock, like a batch.
        let mut waiting = self.shared().pending_pings.len();
        while waiting > 0 {
            let pings = self.shared().pending_pings.take_some(waiting.min(500));
            if pings.is_empty() {
                break;
            }
            waiting = waiting.saturating_sub(pings.len());
            let mut tx = connection.transaction(false)?;
            for ping in &pings {
                tx.lock(LockSpace::Visitor, &visitor_key(&ping.0, &ping.1))?;
                write_ping(&mut tx, ping)?;
            }
            tx.commit()?;
        }
        let mut tx = connection.transaction(false)?;
        let ended = tx.execute(
            "UPDATE sessions SET ended_ms = last_ms WHERE ended_ms IS NULL AND last_ms <= $1",
            &[&now_ms.saturating_sub(timeout_ms)],
        )?;
        tx.commit()?;
        Ok(usize::try_from(ended).unwrap_or(usize::MAX))
    }

    fn create_contact(
        &self,
        fields: &ContactFields,
        now_ms: i64,
    ) -> Result<StoredContact, StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(false)?;
        let id = uuid::Uuid::new_v4().to_string();
        tx.lock(LockSpace::Contact, &id)?;
        tx.execute(
            "INSERT INTO contacts (id, contact_type, create_ms, modify_ms) VALUES ($1, $2, $3, $3)",
            &[&id, &CURATED, &now_ms],
        )?;
        write_contact_fields(&mut tx, &id, fields, now_ms)?;
        let contact = load_contact(&mut tx, &id)?
            .ok_or_else(|| StoreError::Corrupt(format!("contact {id} vanished")))?;
        tx.commit()?;
        Ok(contact)
    }

    fn contact(&self, contact_id: &str) -> Result<Option<StoredContact>, StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(true)?;
        load_contact(&mut tx, contact_id)
    }

    fn contacts(&self, query: &ContactQuery) -> Result<ContactPage, StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(true)?;
        search_contacts(&mut tx, query)
    }

    fn replace_contact(
        &self,
        contact_id: &str,
        fields: &ContactFields,
        now_ms: i64,
    ) -> Result<Option<StoredContact>, StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(false)?;
        tx.lock(LockSpace::Contact, contact_id)?;
        if !write_contact_fields(&mut tx, contact_id, fields, now_ms)? {
            return Ok(None);
        }
        let contact = load_contact(&mut tx, contact_id)?;
        tx.commit()?;
        Ok(contact)
    }

    fn delete_contact(&self, contact_id: &str) -> Result<bool, StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(false)?;
        tx.lock(LockSpace::Contact, contact_id)?;
        // Sessions keep their history but no longer point at a contact that is gone.
        tx.execute(
            "UPDATE sessions SET contact_id = NULL WHERE contact_id = $1",
            &[&contact_id],
        )?;
        let deleted = tx.execute("DELETE FROM contacts WHERE id = $1", &[&contact_id])? > 0;
        tx.commit()?;
        Ok(deleted)
    }

    fn event(&self, event_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(true)?;
        let Some(row) = tx.query_opt(&format!("{EVENT_SELECT} WHERE id = $1"), &[&event_id])?
        else {
            return Ok(None);
        };
        let (session_id, deployment_id, visitor_id, event, authenticated) = event_from_row(&row)?;
        let (total_event_count, total_pageview_count) =
            running_totals(&mut tx, &session_id, event.time_ms, &event.id)?;
        Ok(Some(StoredEvent {
            session_id,
            deployment_id,
            visitor_id,
            event,
            total_event_count,
            total_pageview_count,
            authenticated,
        }))
    }

    fn saved_desk_presentation(&self) -> Result<Option<SavedPresentation>, StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(true)?;
        tx.query_opt(
            "SELECT presentation_json, file_presentation_json, saved_ms
             FROM desk_presentation WHERE id = 1",
            &[],
        )?
        .map(|row| {
            Ok(SavedPresentation {
                presentation_json: row.try_get(0)?,
                file_presentation_json: row.try_get(1)?,
                saved_ms: row.try_get(2)?,
            })
        })
        .transpose()
    }

    fn save_desk_presentation(&self, saved: Option<&SavedPresentation>) -> Result<(), StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(false)?;
        match saved {
            Some(saved) => tx.execute(
                "INSERT INTO desk_presentation
                     (id, presentation_json, file_presentation_json, saved_ms)
                 VALUES (1, $1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET
                     presentation_json = excluded.presentation_json,
                     file_presentation_json = excluded.file_presentation_json,
                     saved_ms = excluded.saved_ms",
                &[
                    &saved.presentation_json,
                    &saved.file_presentation_json,
                    &saved.saved_ms,
                ],
            )?,
            None => tx.execute("DELETE FROM desk_presentation", &[])?,
        };
        tx.commit()
    }

    fn record_ping(
        &self,
        deployment_id: &str,
        visitor_id: &str,
        now_ms: i64,
        timeout_ms: i64,
    ) -> bool {
        self.shared()
            .pending_pings
            .record(deployment_id, visitor_id, now_ms, timeout_ms)
    }

    fn tell_peers(&self, message: &crate::peers::PeerMessage) -> Result<(), StoreError> {
        peers::send(&self.shared().notifier, message.clone());
        Ok(())
    }

    fn listen_to_peers(
        &self,
        deliver: crate::peers::Deliver,
    ) -> Result<Option<crate::peers::PeerListener>, StoreError> {
        peers::listen(self.target.clone(), self.shared().peer_id.clone(), deliver).map(Some)
    }
}
