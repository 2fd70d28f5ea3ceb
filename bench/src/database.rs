//! Where the collectors under test keep their data: a SQLite file (the default) or a
//! database on a throwaway PostgreSQL cluster (`--postgres`), and what the bench reads
//! back from it: row counts, each acknowledged id, and the server's CPU time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use footpath_pgcluster::Cluster;
use serde_json::Value;

use crate::{visitor, wire_batch, CpuTimes, DEPLOYMENT};

pub enum Database {
    Sqlite(PathBuf),
    Postgres { cluster: Cluster, url: String },
}

impl Database {
    /// A SQLite file in `dir`.
    pub fn sqlite(dir: &Path, name: &str) -> Database {
        Database::Sqlite(dir.join(format!("{name}.sqlite3")))
    }

    /// A fresh PostgreSQL cluster under `dir`, with an empty database `name`. The
    /// cluster stops, and its folder goes, when the value is dropped.
    pub fn postgres(dir: &Path, name: &str) -> anyhow::Result<Database> {
        let cluster = Cluster::start(dir).context("starting a throwaway PostgreSQL cluster")?;
        let url = cluster.create_database(name)?;
        Ok(Database::Postgres { cluster, url })
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Database::Postgres { .. })
    }

    /// The collector's setting that selects this database.
    pub fn config_line(&self) -> String {
        match self {
            Database::Sqlite(path) => format!("database_path = {path:?}"),
            Database::Postgres { url, .. } => format!("database_url = {url:?}"),
        }
    }

    /// The SQLite file, for what only it has (the WAL file's size).
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Database::Sqlite(path) => Some(path),
            Database::Postgres { .. } => None,
        }
    }

    /// Rows in `table` (a name of the bench's own, never input).
    pub fn count(&self, table: &str) -> anyhow::Result<i64> {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match self {
            Database::Sqlite(path) => {
                let reader = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )?;
                Ok(reader.query_row(&sql, [], |row| row.get(0))?)
            }
            Database::Postgres { url, .. } => blocking(|| {
                let mut client = postgres::Client::connect(url, postgres::NoTls)?;
                Ok(client.query_one(&sql, &[])?.get(0))
            }),
        }
    }

    /// How many of `ids` are stored not at all, and how many more than once.
    pub fn missing_and_doubled(&self, ids: &[String]) -> anyhow::Result<(usize, usize)> {
        let tally = |counts: &mut dyn Iterator<Item = anyhow::Result<i64>>| {
            let (mut missing, mut doubled) = (0, 0);
            for count in counts {
                match count? {
                    0 => missing += 1,
                    1 => {}
                    _ => doubled += 1,
                }
            }
            anyhow::Ok((missing, doubled))
        };
        match self {
            Database::Sqlite(path) => {
                let reader = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )?;
                let mut statement = reader.prepare("SELECT COUNT(*) FROM events WHERE id = ?1")?;
                tally(
                    &mut ids
                        .iter()
                        .map(|id| Ok(statement.query_row([id], |row| row.get(0))?)),
                )
            }
            Database::Postgres { url, .. } => blocking(|| {
                let mut client = postgres::Client::connect(url, postgres::NoTls)?;
                // One round trip for all of them: each id with how often it is stored.
                let rows = client.query(
                    "SELECT COUNT(e.id) FROM unnest($1::text[]) AS wanted(id)
                     LEFT JOIN events e ON e.id = wanted.id GROUP BY wanted.id",
                    &[&ids],
                )?;
                tally(&mut rows.iter().map(|row| Ok(row.get(0))))
            }),
        }
    }

    /// CPU ticks the PostgreSQL server has used so far: the postmaster, its live
    /// children (the backends, the WAL writer, the checkpointer…), and the children it
    /// has already reaped (`cutime`/`cstime`). `None` on SQLite.
    pub fn server_ticks(&self) -> Option<u64> {
        let Database::Postgres { cluster, .. } = self else {
            return None;
        };
        let server = cluster.server_pid()?;
        let own = std::fs::read_to_string(format!("/proc/{server}/stat")).ok()?;
        let mut ticks = CpuTimes::ticks_with_children(&own)?;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if CpuTimes::parent(&stat) == Some(server) {
                ticks += CpuTimes::ticks_of_stat(&stat).unwrap_or(0);
            }
        }
        Some(ticks)
    }
}

/// Runs synchronous database code (the `postgres` client starts a runtime of its own,
/// which must not run on one of tokio's worker threads directly).
fn blocking<T>(work: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    tokio::task::block_in_place(work)
}

type Param = Box<dyn postgres::types::ToSql + Sync>;

fn params(values: &[Param]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    values.iter().map(|value| &**value as _).collect()
}

/// Columns the raw baseline writes: those of an event that the bench's batches fill.
const RAW_COLUMNS: &str = "id, session_id, deployment_id, visitor_id, kind, name, time_ms, \
     client_time_ms, received_ms, page_url, page_title, page_referrer, page_lang, \
     attributes_json, traits_json, user_agent, ip_address";
const RAW_COLUMN_COUNT: usize = 17;
/// Batches per transaction, as in the SQLite baseline.
const RAW_BATCHES_PER_TRANSACTION: usize = 50;

/// PostgreSQL's raw batched insert rate of the bench's rows, with no HTTP and none of
/// Footpath's rules: `writers` connections side by side (as many as the collector's
/// ingest writers), each writing transactions of 50 batches as one multi-row INSERT
/// into `event_ids` (the dedupe table) and one into `events` (partitioned by time),
/// through prepared statements, into a database that Footpath's own migrations made.
/// Only the writing is timed. Returns rows per second of wall time.
pub fn raw_postgres_rate(
    url: &str,
    batch_size: usize,
    seconds: u64,
    writers: usize,
) -> anyhow::Result<f64> {
    // The schema, and the month's partitions, exactly as a collector makes them.
    drop(footpath_collector::store::PostgresStore::open(
        url,
        footpath_collector::store::PostgresSettings::default(),
        footpath_collector::store::SessionLimits::default(),
        crate::now_ms(),
    )?);
    let rows_per_transaction = RAW_BATCHES_PER_TRANSACTION * batch_size;
    let events_sql = multi_row_insert(
        "events",
        RAW_COLUMNS,
        RAW_COLUMN_COUNT,
        rows_per_transaction,
    );
    let ids_sql = multi_row_insert(
        "event_ids",
        "id, deployment_id, visitor_id",
        3,
        rows_per_transaction,
    );
    let started = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|writer| {
            let (url, events_sql, ids_sql) = (url.to_owned(), events_sql.clone(), ids_sql.clone());
            std::thread::spawn(move || -> anyhow::Result<(usize, Duration)> {
                let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
                let insert_events = client.prepare(&events_sql)?;
                let insert_ids = client.prepare(&ids_sql)?;
                let (mut rows, mut writing) = (0, Duration::ZERO);
                let mut n = writer;
                while started.elapsed() < Duration::from_secs(seconds) {
                    let mut events: Vec<Param> =
                        Vec::with_capacity(rows_per_transaction * RAW_COLUMN_COUNT);
                    let mut ids: Vec<Param> = Vec::with_capacity(rows_per_transaction * 3);
                    let received = crate::now_ms();
                    for _ in 0..RAW_BATCHES_PER_TRANSACTION {
                        n += writers;
                        let visitor_id = visitor(n);
                        let (batch, _) = wire_batch(&visitor_id, batch_size);
                        for event in batch["events"].as_array().into_iter().flatten() {
                            push_raw_row(&mut events, &mut ids, event, &visitor_id, received);
                        }
                    }
                    let timing = Instant::now();
                    let mut transaction = client.transaction()?;
                    transaction.execute(&insert_ids, &params(&ids))?;
                    rows +=
                        usize::try_from(transaction.execute(&insert_events, &params(&events))?)?;
                    transaction.commit()?;
                    writing += timing.elapsed();
                }
                Ok((rows, writing))
            })
        })
        .collect();
    let mut total_rows = 0;
    let mut longest = Duration::ZERO;
    for thread in threads {
        let (rows, writing) = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a raw writer panicked"))??;
        total_rows += rows;
        longest = longest.max(writing);
    }
    // The writers wrote side by side: the rate is all rows over the longest writer's
    // time spent writing (building the rows is not counted).
    #[allow(clippy::cast_precision_loss)]
    Ok(total_rows as f64 / longest.as_secs_f64())
}

fn multi_row_insert(table: &str, columns: &str, count: usize, rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table} ({columns}) VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        sql.push('(');
        for column in 0..count {
            if column > 0 {
                sql.push(',');
            }
            sql.push('$');
            sql.push_str(&(row * count + column + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

fn push_raw_row(
    events: &mut Vec<Param>,
    ids: &mut Vec<Param>,
    event: &Value,
    visitor_id: &str,
    received: i64,
) {
    let text = |value: &Value| value.as_str().map(str::to_owned);
    let id = text(&event["id"]).unwrap_or_default();
    let time = event["time"].as_i64().unwrap_or(received);
    let page = &event["page"];
    ids.push(Box::new(id.clone()));
    ids.push(Box::new(DEPLOYMENT));
    ids.push(Box::new(visitor_id.to_owned()));
    events.push(Box::new(id));
    events.push(Box::new(format!("raw-{visitor_id}")));
    events.push(Box::new(DEPLOYMENT));
    events.push(Box::new(visitor_id.to_owned()));
    events.push(Box::new(text(&event["kind"]).unwrap_or_default()));
    events.push(Box::new(text(&event["name"]).unwrap_or_default()));
    events.push(Box::new(time));
    events.push(Box::new(time));
    events.push(Box::new(received));
    events.push(Box::new(text(&page["url"])));
    events.push(Box::new(text(&page["title"])));
    events.push(Box::new(text(&page["referrer"])));
    events.push(Box::new(text(&page["lang"])));
    events.push(Box::new(event["attributes"].to_string()));
    events.push(Box::new("{}"));
    events.push(Box::new(None::<String>));
    events.push(Box::new(Some("127.0.0.1")));
}
