//! `footpath-bench`: measurements of the collector that are too slow or too noisy for
//! tests. Build in release; each subcommand starts the release collector binary that
//! sits next to this one in `target/release`.
//!
//! - `ingest`: sustained durable events per second over loopback (closed loop,
//!   `--concurrency` connections posting `--batch`-event batches for `--seconds`),
//!   p50/p99 latency, the collector's peak RSS, a raw baseline of the same rows
//!   stored straight through `SqliteStore` without HTTP, and p99 at half the peak rate
//!   (open loop, fixed schedule, latency measured from the scheduled send time).
//! - `crash`: the kill -9 proof at scale: clients record every acknowledged event id,
//!   the collector is killed with SIGKILL once `--events` are acknowledged, restarted
//!   on the same database, and every acknowledged id is checked to be stored exactly
//!   once (the database opened read-only).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use footpath_collector::store::{NewBatch, SqliteStore};
use footpath_collector::validate::{validate_event, BatchContext};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};

const DEPLOYMENT: &str = "bench";
const ORIGIN: &str = "http://bench.localhost";
const VISITORS: usize = 10_000;

#[derive(Parser)]
#[command(name = "footpath-bench")]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Throughput and latency of `POST /sdk/v1/batch` over loopback.
    Ingest {
        /// Length of the closed-loop (peak) phase; the half-rate phase lasts half as long.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Connections, each with one request in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Events per batch.
        #[arg(long, default_value_t = 20)]
        batch: usize,
    },
    /// kill -9 under load, restart, and check every acknowledged event id.
    Crash {
        /// Acknowledged events before the kill.
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Bench::Ingest {
            seconds,
            concurrency,
            batch,
        } => runtime.block_on(ingest(seconds, concurrency, batch)),
        Bench::Crash {
            events,
            concurrency,
        } => runtime.block_on(crash(events, concurrency)),
    }
}

/// The release collector next to this binary.
fn collector_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .context("no folder")?
        .join("footpath-collector");
    if !path.exists() {
        bail!(
            "{} is missing: run `cargo build --release -p footpath-collector` first",
            path.display()
        );
    }
    Ok(path)
}

fn write_config(dir: &Path, database: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("bench.toml");
    // The load comes from one address and a few thousand visitors: rate limits off,
    // and room for every connection.
    let text = format!(
        "database_path = {database:?}\nsdk_dir = {:?}\n\
         visitor_rate_limit_events_per_minute = 0\nclient_ip_rate_limit_events_per_minute = 0\n\
         max_concurrent_ingest_requests = 4096\n\
         [[deployments]]\nid = \"{DEPLOYMENT}\"\nallowed_origins = [\"{ORIGIN}\"]\n",
        dir.join("sdk")
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

async fn start_collector(config: &Path, address: SocketAddr) -> anyhow::Result<Child> {
    let child = Command::new(collector_binary()?)
        .arg("--config")
        .arg(config)
        .arg("--listen-addr")
        .arg(address.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(address).await.is_err() {
        if Instant::now() > deadline {
            bail!("the collector did not start");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(child)
}

fn free_address() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn now_ms() -> i64 {
    footpath_collector::clock::Clock::now_ms(&footpath_collector::clock::SystemClock)
}

fn visitor(n: usize) -> String {
    format!("0b7e0c2a-5b9e-4a57-9f3e-{:012x}", n % VISITORS)
}

/// A realistic batch: page views with URL, title and referrer, and a few attributes,
/// with fresh UUID v7 ids. Returns the JSON and the ids.
fn wire_batch(visitor_id: &str, events: usize) -> (Value, Vec<String>) {
    let now = now_ms();
    let ids: Vec<String> = (0..events)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let events: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            json!({
                "id": id,
                "kind": "pageview",
                "name": "page_viewed",
                "time": now - 1000 + i64::try_from(n).unwrap_or(0),
                "page": {
                    "url": format!("https://shop.example/products/{n}?utm_source=news&utm_medium=email"),
                    "title": "Trail running shoes - Shop Example",
                    "referrer": "https://www.google.com/search?q=trail+shoes",
                    "lang": "en-GB",
                },
                "attributes": {
                    "category": "shoes",
                    "price": 89.95,
                    "in_stock": true,
                    "variant": "blue-42",
                },
            })
        })
        .collect();
    let batch = json!({
        "v": 1,
        "deploymentId": DEPLOYMENT,
        "visitorId": visitor_id,
        "sentAt": now,
        "events": events,
    });
    (batch, ids)
}

/// One HTTP/1.1 keep-alive connection.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    address: SocketAddr,
}

impl Connection {
    async fn open(address: SocketAddr) -> anyhow::Result<Connection> {
        let stream = tokio::net::TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { sender, address })
    }

    /// Posts a batch; returns the status and the body.
    async fn post(&mut self, body: Bytes) -> anyhow::Result<(u16, Bytes)> {
        self.sender.ready().await?;
        let request = hyper::Request::post("/sdk/v1/batch")
            .header("host", self.address.to_string())
            .header("origin", ORIGIN)
            .header("content-type", "text/plain;charset=UTF-8")
            .body(Full::new(body))?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// Ids that the response acknowledges (accepted, or duplicate: stored before).
fn acknowledged(body: &[u8]) -> anyhow::Result<Vec<String>> {
    let json: Value = serde_json::from_slice(body)?;
    Ok(json["results"]
        .as_array()
        .context("no results")?
        .iter()
        .filter(|result| result["status"] == "accepted" || result["status"] == "duplicate")
        .filter_map(|result| result["id"].as_str().map(str::to_owned))
        .collect())
}

fn percentile(sorted_micros: &[u64], fraction: f64) -> f64 {
    if sorted_micros.is_empty() {
        return f64::NAN;
    }
    let last = sorted_micros.len() - 1;
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((last as f64) * fraction).round() as usize;
    sorted_micros[index.min(last)] as f64 / 1000.0
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The same rows stored straight through the store: batches validated as the handler
/// does, then `SqliteStore::ingest_many` with 50 batches per transaction.
fn raw_baseline(dir: &Path, batch_size: usize, seconds: u64) -> anyhow::Result<f64> {
    let store = SqliteStore::open(dir.join("raw.sqlite3"))?;
    let timeout_ms = 20 * 60 * 1000;
    let started = Instant::now();
    let mut storing = Duration::ZERO;
    let mut rows = 0_usize;
    let mut n = 0_usize;
    while started.elapsed() < Duration::from_secs(seconds) {
        let now = now_ms();
        let batches: Vec<NewBatch> = (0..50)
            .map(|_| {
                n += 1;
                let (wire, _) = wire_batch(&visitor(n), batch_size);
                let wire: footpath_protocol::v1::Batch = serde_json::from_value(wire)?;
                let context = BatchContext {
                    sent_at_ms: wire.sent_at,
                    now_ms: now,
                    max_event_age_ms: 24 * 3_600_000,
                    user_agent: None,
                    ip_address: Some("127.0.0.1".to_owned()),
                    user_agent_info: None,
                    geolocation: None,
                };
                let events = wire
                    .events
                    .iter()
                    .enumerate()
                    .map(|(index, event)| validate_event(index, event, &context))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(anyhow::Error::msg)?;
                Ok(NewBatch {
                    deployment_id: DEPLOYMENT.to_owned(),
                    visitor_id: wire.visitor_id,
                    events,
                    require_verified_identity: false,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        // Only the storage is timed, not building the batches.
        let writing = Instant::now();
        for result in store.ingest_many(&batches, now, timeout_ms) {
            rows += result?.len();
        }
        storing += writing.elapsed();
    }
    #[allow(clippy::cast_precision_loss)]
    Ok(rows as f64 / storing.as_secs_f64())
}

struct Phase {
    events_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: usize,
    errors: u64,
}

/// Closed loop: every connection posts its next batch as soon as the last is answered.
async fn closed_loop(
    address: SocketAddr,
    concurrency: usize,
    batch_size: usize,
    duration: Duration,
) -> anyhow::Result<Phase> {
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let errors = Arc::clone(&errors);
        workers.push(tokio::spawn(async move {
            let mut connection = Connection::open(address).await?;
            let mut latencies = Vec::new();
            let mut events = 0_usize;
            let mut n = worker;
            while started.elapsed() < duration {
                n += concurrency;
                let (batch, _) = wire_batch(&visitor(n), batch_size);
                let body = Bytes::from(batch.to_string());
                let sent = Instant::now();
                let (status, body) = connection.post(body).await?;
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                if status == 200 {
                    latencies.push(micros);
                    events += acknowledged(&body)?.len();
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok((latencies, events))
        }));
    }
    let mut latencies = Vec::new();
    let mut events = 0;
    for worker in workers {
        let (worker_latencies, worker_events) = worker.await??;
        latencies.extend(worker_latencies);
        events += worker_events;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    #[allow(clippy::cast_precision_loss)]
    Ok(Phase {
        events_per_second: events as f64 / elapsed,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        requests: latencies.len(),
        errors: errors.load(Ordering::Relaxed),
    })
}

/// Open loop at a fixed rate: batch k is due at `k / rate`; its latency counts from
/// that due time, so a stalled server is charged for the requests it delayed.
async fn open_loop(
    address: SocketAddr,
    concurrency: usize,
    batch_size: usize,
    events_per_second: f64,
    duration: Duration,
) -> anyhow::Result<Phase> {
    #[allow(clippy::cast_precision_loss)]
    let batches_per_second = events_per_second / batch_size as f64;
    #[allow(clippy::cast_precision_loss)]
    let interval_per_worker = Duration::from_secs_f64(concurrency as f64 / batches_per_second);
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now() + Duration::from_millis(100);
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let errors = Arc::clone(&errors);
        workers.push(tokio::spawn(async move {
            let mut connection = Connection::open(address).await?;
            let mut latencies = Vec::new();
            let mut events = 0_usize;
            #[allow(clippy::cast_precision_loss)]
            let offset = interval_per_worker.mul_f64(worker as f64 / concurrency as f64);
            let mut due = started + offset;
            let mut n = worker;
            while due < started + duration {
                tokio::time::sleep_until(due.into()).await;
                n += concurrency;
                let (batch, _) = wire_batch(&visitor(n), batch_size);
                let (status, body) = connection.post(Bytes::from(batch.to_string())).await?;
                let micros = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
                if status == 200 {
                    latencies.push(micros);
                    events += acknowledged(&body)?.len();
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                due += interval_per_worker;
            }
            anyhow::Ok((latencies, events))
        }));
    }
    let mut latencies = Vec::new();
    let mut events = 0;
    for worker in workers {
        let (worker_latencies, worker_events) = worker.await??;
        latencies.extend(worker_latencies);
        events += worker_events;
    }
    latencies.sort_unstable();
    #[allow(clippy::cast_precision_loss)]
    Ok(Phase {
        events_per_second: events as f64 / duration.as_secs_f64(),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        requests: latencies.len(),
        errors: errors.load(Ordering::Relaxed),
    })
}

async fn ingest(seconds: u64, concurrency: usize, batch_size: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    println!(
        "raw baseline: SqliteStore::ingest_many, 50 batches of {batch_size} per transaction, 5 s"
    );
    let baseline = tokio::task::block_in_place(|| raw_baseline(dir.path(), batch_size, 5))?;
    println!("  {baseline:.0} rows/s");

    let database = dir.path().join("bench.sqlite3");
    let config = write_config(dir.path(), &database)?;
    let address = free_address()?;
    let mut collector = start_collector(&config, address).await?;
    println!("peak: closed loop, {concurrency} connections, batches of {batch_size}, {seconds} s");
    let peak = closed_loop(
        address,
        concurrency,
        batch_size,
        Duration::from_secs(seconds),
    )
    .await?;
    println!(
        "  {:.0} events/s acknowledged ({} requests, {} errors), p50 {:.2} ms, p99 {:.2} ms",
        peak.events_per_second, peak.requests, peak.errors, peak.p50_ms, peak.p99_ms
    );
    let half_rate = peak.events_per_second / 2.0;
    let half_seconds = (seconds / 2).max(1);
    println!(
        "half: open loop at {half_rate:.0} events/s, {concurrency} connections, {half_seconds} s"
    );
    let half = open_loop(
        address,
        concurrency,
        batch_size,
        half_rate,
        Duration::from_secs(half_seconds),
    )
    .await?;
    println!(
        "  {:.0} events/s acknowledged ({} requests, {} errors), p50 {:.2} ms, p99 {:.2} ms",
        half.events_per_second, half.requests, half.errors, half.p50_ms, half.p99_ms
    );
    let rss = peak_rss_kib(collector.id());
    collector.kill()?;
    collector.wait()?;
    let stored: i64 = rusqlite::Connection::open_with_flags(
        &database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?
    .query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0))?;
    println!(
        "collector peak RSS (VmHWM): {} MiB; events stored: {stored}",
        rss.map_or_else(
            || "?".to_owned(),
            |kib| format!("{:.1}", kib as f64 / 1024.0)
        )
    );
    println!(
        "| {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {} | {:.0} |",
        peak.events_per_second,
        peak.p50_ms,
        peak.p99_ms,
        half.events_per_second,
        half.p99_ms,
        rss.map_or_else(
            || "?".to_owned(),
            |kib| format!("{:.1} MiB", kib as f64 / 1024.0)
        ),
        baseline
    );
    Ok(())
}

async fn crash(target: usize, concurrency: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let database = dir.path().join("crash.sqlite3");
    let config = write_config(dir.path(), &database)?;
    let address = free_address()?;
    let mut collector = start_collector(&config, address).await?;

    let acknowledged_ids = Arc::new(Mutex::new(Vec::<String>::with_capacity(target + 10_000)));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut clients = Vec::new();
    for worker in 0..concurrency {
        let acknowledged_ids = Arc::clone(&acknowledged_ids);
        let stop = Arc::clone(&stop);
        clients.push(tokio::spawn(async move {
            let mut connection = Connection::open(address).await.ok();
            let mut n = worker;
            // Bounded: stops when told, or after ten minutes whatever happens.
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(600) {
                let Some(open) = connection.as_mut() else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    connection = Connection::open(address).await.ok();
                    continue;
                };
                n += concurrency;
                let (batch, _) = wire_batch(&visitor(n), 20);
                match open.post(Bytes::from(batch.to_string())).await {
                    Ok((200, body)) => {
                        if let Ok(ids) = acknowledged(&body) {
                            acknowledged_ids
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .extend(ids);
                        }
                    }
                    Ok(_) => {}
                    // The collector died under this request: not acknowledged.
                    Err(_) => connection = None,
                }
            }
        }));
    }
    loop {
        let count = acknowledged_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        if count >= target {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {count} events acknowledged in ten minutes");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // SIGKILL with requests in flight.
    collector.kill()?;
    collector.wait()?;
    let killed_after = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await?;
    }
    let ids = acknowledged_ids
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    println!(
        "killed the collector (SIGKILL) after {:.1} s with {} events acknowledged",
        killed_after.as_secs_f64(),
        ids.len()
    );

    // Restart on the same database: recovery, then a batch to show it serves.
    let mut collector = start_collector(&config, address).await?;
    let mut connection = Connection::open(address).await?;
    let (batch, _) = wire_batch(&visitor(0), 1);
    let (status, _) = connection.post(Bytes::from(batch.to_string())).await?;
    println!("restarted on the same database; a new batch got {status}");
    collector.kill()?;
    collector.wait()?;

    let reader = rusqlite::Connection::open_with_flags(
        &database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mut statement = reader.prepare("SELECT COUNT(*) FROM events WHERE id = ?1")?;
    let (mut missing, mut doubled) = (0_usize, 0_usize);
    for id in &ids {
        let count: i64 = statement.query_row([id], |row| row.get(0))?;
        match count {
            0 => missing += 1,
            1 => {}
            _ => doubled += 1,
        }
    }
    let stored: i64 = reader.query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0))?;
    println!(
        "checked {} acknowledged ids: {missing} missing, {doubled} stored more than once \
         ({stored} rows in all: acknowledged, plus batches committed while their answer was lost)",
        ids.len()
    );
    if missing > 0 || doubled > 0 || status != 200 {
        bail!("the durability proof failed");
    }
    println!("ok: every acknowledged event is stored exactly once");
    Ok(())
}
