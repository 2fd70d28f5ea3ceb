//! `footpath-bench`: measurements of the collector that are too slow or too noisy for
//! tests. Build in release; each subcommand starts the release collector binary that
//! sits next to this one in `target/release`.
//!
//! - `ingest`: sustained durable events per second over loopback (closed loop,
//!   `--concurrency` connections posting `--batch`-event batches for `--seconds`),
//!   p50/p99 latency, the collector's peak RSS, a raw baseline of the same rows
//!   stored straight through `SqliteStore` without HTTP, and p99 at half the peak rate
//!   (open loop, fixed schedule, latency measured from the scheduled send time).
//!   With `--definitions N`, N active segments and N active outcomes are created
//!   through the Journey API first (see [`definitions`]), the same ones in the raw
//!   baseline's database, and the run ends with how many assignments and achievements
//!   it produced.
//!   With `--postgres`, the collectors store into a throwaway PostgreSQL cluster
//!   instead, `--collectors N` runs N of them on it with the connections spread over
//!   them, the raw baseline is PostgreSQL's own batched insert rate of the same rows,
//!   and the server's CPU time per event is printed beside the collectors'.
//! - `crash`: the kill -9 proof at scale: clients record every acknowledged event id,
//!   the collector is killed with SIGKILL once `--events` are acknowledged, restarted
//!   on the same database, and every acknowledged id is checked to be stored exactly
//!   once (the database opened read-only).
//! - `sdk`: what the browser SDK's `record` costs a page, in headless Chromium against
//!   the release collector (see [`sdk`]).

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

mod database;
mod sdk;

use database::Database;

const DEPLOYMENT: &str = "bench";
const ORIGIN: &str = "http://bench.localhost";
const VISITORS: usize = 10_000;
/// The read and admin API's bearer token in the bench's configuration.
/// At least 32 characters, as the collector requires of every token.
const API_TOKEN: &str = "bench-token-0123456789abcdef0123456789";
/// With `--definitions`, a browser User-Agent per visitor (even: desktop, odd: mobile)
/// so that visits have a `device.category` for context criteria to test.
const DESKTOP_USER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
     (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const MOBILE_USER_AGENT: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) \
     AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
/// One journey definition in this many is written to match the bench's events (the
/// others test values the events never have); context-only ones each match half the
/// visits. See [`definitions`].
const MATCH_EVERY: usize = 10;

/// `--match-every`, when given: one definition in this many matches, context-only
/// ones included. Set once in `main`, before any definition is made.
static MATCH_EVERY_GIVEN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

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
        /// Create this many active segments and as many active outcomes (at most 500
        /// each) through the API before the run. Given at all (0 included), the
        /// requests also carry a browser User-Agent (desktop or mobile by visitor), so
        /// that `--definitions 0` and `--definitions N` differ only in the definitions.
        #[arg(long, value_parser = clap::value_parser!(u16).range(0..=500))]
        definitions: Option<u16>,
        /// One definition in N matches the events, context-only ones included (a
        /// matching one tests the visit's device category, the others a category no
        /// visit has). Without it: one journey definition in 10 matches, and every
        /// context-only one matches half the visits.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        match_every: Option<u64>,
        #[command(flatten)]
        deployment: Deployment,
    },
    /// kill -9 under load, restart, and check every acknowledged event id.
    Crash {
        /// Acknowledged events before the kill.
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[command(flatten)]
        deployment: Deployment,
    },
    /// The browser SDK's `record` in a cross-origin isolated page in headless Chromium.
    Sdk {
        /// `record` calls, in batches of 100.
        #[arg(long, default_value_t = 10_000)]
        calls: usize,
        /// The built SDK (`cargo xtask sdk`).
        #[arg(long, default_value = "target/sdk")]
        sdk_dir: PathBuf,
        /// Also print where the main thread's time went during the calls (CDP
        /// `Profiler`, self time by function).
        #[arg(long)]
        profile: bool,
    },
}

/// What the collectors under test run on.
#[derive(clap::Args, Clone, Copy)]
struct Deployment {
    /// Store into a throwaway PostgreSQL cluster (Debian's `postgresql`) instead of
    /// SQLite.
    #[arg(long)]
    postgres: bool,
    /// Collector processes on the one database, each load connection sent to one of
    /// them in turn (more than one needs `--postgres`: SQLite is one process's).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8))]
    collectors: u8,
}

impl Deployment {
    fn database(self, dir: &Path, name: &str) -> anyhow::Result<Database> {
        if self.postgres {
            Database::postgres(dir, name)
        } else if self.collectors > 1 {
            bail!(
                "--collectors above 1 needs --postgres: a SQLite database belongs to one collector"
            )
        } else {
            Ok(Database::sqlite(dir, name))
        }
    }
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
            definitions,
            match_every,
            deployment,
        } => {
            if let Some(every) = match_every {
                MATCH_EVERY_GIVEN
                    .set(usize::try_from(every).unwrap_or(usize::MAX))
                    .expect("set once");
            }
            runtime.block_on(ingest(
                seconds,
                concurrency,
                batch,
                definitions.map(usize::from),
                deployment,
            ))
        }
        Bench::Crash {
            events,
            concurrency,
            deployment,
        } => runtime.block_on(crash(events, concurrency, deployment)),
        Bench::Sdk {
            calls,
            sdk_dir,
            profile,
        } => runtime.block_on(sdk::sdk(calls, sdk_dir, profile)),
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

fn write_config(dir: &Path, database: &Database) -> anyhow::Result<PathBuf> {
    let path = dir.join("bench.toml");
    // The load comes from one address and a few thousand visitors: rate limits off,
    // and room for every connection.
    let text = format!(
        "{}\nsdk_dir = {:?}\n\
         visitor_rate_limit_events_per_minute = 0\nclient_ip_rate_limit_events_per_minute = 0\n\
         max_concurrent_ingest_requests = 4096\n\
         api_tokens = [\"{API_TOKEN}\"]\n\
         [[deployments]]\nid = \"{DEPLOYMENT}\"\nallowed_origins = [\"{ORIGIN}\"]\n",
        database.config_line(),
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

/// The same batch as [`wire_batch`], written straight into its JSON text: the load
/// generator shares the two cores with the collector, so building a `serde_json::Value`
/// tree per request would take CPU from the server being measured. A test checks that
/// both forms decode to the same batch.
fn wire_batch_text(visitor_id: &str, events: usize) -> String {
    use std::fmt::Write as _;
    let now = now_ms();
    let mut text = String::with_capacity(200 + events * 420);
    let _ = write!(
        text,
        r#"{{"v":1,"deploymentId":"{DEPLOYMENT}","visitorId":"{visitor_id}","sentAt":{now},"events":["#
    );
    for n in 0..events {
        if n > 0 {
            text.push(',');
        }
        let id = uuid::Uuid::now_v7();
        let time = now - 1000 + i64::try_from(n).unwrap_or(0);
        let _ = write!(
            text,
            r#"{{"id":"{id}","kind":"pageview","name":"page_viewed","time":{time},"page":{{"url":"https://shop.example/products/{n}?utm_source=news&utm_medium=email","title":"Trail running shoes - Shop Example","referrer":"https://www.google.com/search?q=trail+shoes","lang":"en-GB"}},"attributes":{{"category":"shoes","price":89.95,"in_stock":true,"variant":"blue-42"}}}}"#
        );
    }
    text.push_str("]}");
    text
}

/// How many events of a batch response were acknowledged (accepted or duplicate),
/// read without building a `Value` tree (see [`wire_batch_text`]).
fn acknowledged_count(body: &[u8]) -> anyhow::Result<usize> {
    #[derive(serde::Deserialize)]
    struct Response<'a> {
        #[serde(borrow)]
        results: Vec<Verdict<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Verdict<'a> {
        #[serde(borrow)]
        status: std::borrow::Cow<'a, str>,
    }
    let response: Response<'_> = serde_json::from_slice(body)?;
    Ok(response
        .results
        .iter()
        .filter(|verdict| verdict.status == "accepted" || verdict.status == "duplicate")
        .count())
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
        self.post_as(body, None).await
    }

    /// Posts a batch, with a User-Agent when given.
    async fn post_as(
        &mut self,
        body: Bytes,
        user_agent: Option<&str>,
    ) -> anyhow::Result<(u16, Bytes)> {
        self.sender.ready().await?;
        let mut request = hyper::Request::post("/sdk/v1/batch")
            .header("host", self.address.to_string())
            .header("origin", ORIGIN)
            .header("content-type", "text/plain;charset=UTF-8");
        if let Some(user_agent) = user_agent {
            request = request.header("user-agent", user_agent);
        }
        let response = self
            .sender
            .send_request(request.body(Full::new(body))?)
            .await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// A request to the read/admin API, with the bench's bearer token; returns the
    /// status and the body as JSON (`null` when empty).
    async fn api(
        &mut self,
        method: hyper::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        self.sender.ready().await?;
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.address.to_string())
            .header("authorization", format!("Bearer {API_TOKEN}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(Value::to_string).unwrap_or_default(),
            )))?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .with_context(|| format!("{path}: {}", String::from_utf8_lossy(&body)))?
        };
        Ok((status, json))
    }
}

/// The User-Agent of visitor `n` when the run sends one.
fn user_agent(n: usize, send: bool) -> Option<&'static str> {
    match (send, (n % VISITORS) % 2) {
        (false, _) => None,
        (true, 0) => Some(DESKTOP_USER_AGENT),
        (true, _) => Some(MOBILE_USER_AGENT),
    }
}

/// `count` segments (`Segment`) or outcomes (`Outcome`) for the bench's events, in the
/// Journey API's shapes. By position `i`:
/// - `i % 4` is 0 or 1 (half): a journey pattern on the bench's event name
///   (`page_viewed`) with one `attributes.<name>.value` criterion on an attribute the
///   bench's events carry (`category`, `variant`, `price`, `in_stock` in turn);
/// - `i % 4 == 2` (a quarter): a pageview journey pattern, `page.url` `containsAny`;
/// - `i % 4 == 3` (a quarter): context only, `device.category` `equal` `desktop`
///   (`i % 8 == 3`) or `mobile` (`i % 8 == 7`): each matches half the visits. With
///   `--match-every N`, only those among the matching ones (below) do; the others test
///   `console-<i>`, which no visit has.
///
/// Journey patterns need 1 to 3 events (`count = 1 + i % 3`). One journey definition
/// in [`MATCH_EVERY`] (the first four of every 40), or with `--match-every N` one in N
/// (the last four of every 4·N), tests values the events have (`category equal shoes`,
/// `page.url containsAny /products/`, ...); the others test values they never have,
/// so they cost the candidate test but no counter. Segments alternate Session and
/// Customer scope by eights; outcomes alternate positive and negative, and every other
/// one takes its value from `price`.
fn definitions(kind: &str, count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| {
            let match_every = MATCH_EVERY_GIVEN.get().copied();
            let every = match_every.unwrap_or(MATCH_EVERY);
            // With `--match-every`, the last group of four in each N matches, so that
            // an N above `count / 4` makes none match.
            let matching = match match_every {
                Some(every) => (i / 4) % every == every - 1,
                None => (i / 4) % MATCH_EVERY == 0,
            };
            let pattern_count = 1 + i % 3;
            let mut body = match i % 4 {
                0 | 1 => {
                    // Every attribute in turn, among the matching ones too.
                    let turn = ((i / 4) / every * 2 + (i / 4) * 2 + i % 4) % 4;
                    let (attribute, operator, hit, miss) = match turn {
                        0 => ("category", "equal", "shoes", format!("bags-{i}")),
                        1 => ("variant", "startsWith", "blue", format!("red-{i}")),
                        2 => ("price", "greaterThan", "50", format!("{}", 1000 + i)),
                        _ => ("in_stock", "equal", "true", format!("maybe-{i}")),
                    };
                    let value = if matching { hit.to_owned() } else { miss };
                    json!({"journey": {"patterns": [{
                        "streamType": "Web",
                        "eventName": "page_viewed",
                        "count": pattern_count,
                        "criteria": [{
                            "key": format!("attributes.{attribute}.value"),
                            "operator": operator,
                            "values": [value],
                        }],
                    }]}})
                }
                2 => {
                    let values = if matching {
                        json!(["/checkout/", "/products/"])
                    } else {
                        json!([format!("/checkout/{i}"), format!("/basket/{i}")])
                    };
                    json!({"journey": {"patterns": [{
                        "streamType": "Web",
                        "count": pattern_count,
                        "criteria": [{
                            "key": "page.url",
                            "operator": "containsAny",
                            "values": values,
                            "shouldIgnoreCase": true,
                        }],
                    }]}})
                }
                _ => {
                    let category = if match_every.is_some() && !matching {
                        format!("console-{i}")
                    } else if i % 8 == 3 {
                        "desktop".to_owned()
                    } else {
                        "mobile".to_owned()
                    };
                    json!({"context": {"patterns": [{"criteria": [{
                        "key": "device.category",
                        "operator": "equal",
                        "values": [category],
                        "entityType": "visit",
                    }]}]}})
                }
            };
            body["displayName"] = json!(format!("bench {kind} {i}"));
            body["isActive"] = json!(true);
            if kind == "Segment" {
                body["color"] = json!("#1f77b4");
                body["shouldDisplayToAgent"] = json!(true);
                // Session and Customer scope in turn, among the matching ones too.
                if (i / 8) % 2 == 0 {
                    body["scope"] = json!("Session");
                } else {
                    body["scope"] = json!("Customer");
                    body["assignmentExpirationDays"] = json!(30);
                }
            } else {
                body["isPositive"] = json!(i % 2 == 0);
                if i % 2 == 0 {
                    body["associatedValueField"] = json!({"dataType": "Number", "name": "price"});
                }
            }
            body
        })
        .collect()
}

/// Creates `count` segments and `count` outcomes through the API.
async fn create_definitions(address: SocketAddr, count: usize) -> anyhow::Result<()> {
    let mut connection = Connection::open(address).await?;
    for (kind, path) in [
        ("Segment", "/api/v2/journey/segments"),
        ("Outcome", "/api/v2/journey/outcomes"),
    ] {
        for body in definitions(kind, count) {
            let (status, answer) = connection
                .api(hyper::Method::POST, path, Some(&body))
                .await?;
            if status != 201 {
                bail!("POST {path} answered {status}: {answer}");
            }
        }
        let (status, listing) = connection
            .api(hyper::Method::GET, &format!("{path}?pageSize=1"), None)
            .await?;
        let active = listing["total"].as_u64();
        println!(
            "  {path}: {count} created (listing answered {status}, total {})",
            active.map_or_else(|| "?".to_owned(), |total| total.to_string())
        );
    }
    Ok(())
}

/// The same definitions in the raw baseline's store, straight through the store.
fn create_raw_definitions(store: &SqliteStore, count: usize) -> anyhow::Result<()> {
    use footpath_collector::segments::definition::{parse, DefinitionKind};
    use footpath_collector::segments::{DefinitionStore as _, DefinitionWrite};
    for (kind, label) in [
        (DefinitionKind::Segment, "Segment"),
        (DefinitionKind::Outcome, "Outcome"),
    ] {
        for body in definitions(label, count) {
            let definition = parse(kind, &body).map_err(|problem| anyhow::anyhow!("{problem}"))?;
            match store.create_definition(&definition, now_ms())? {
                DefinitionWrite::Written(_) => {}
                other => bail!("creating a raw {label}: {other:?}"),
            }
        }
    }
    Ok(())
}

/// A few sessions as the API shows them, for a look at their assignments.
async fn show_sessions(address: SocketAddr) -> anyhow::Result<()> {
    let mut connection = Connection::open(address).await?;
    let (status, listing) = connection
        .api(
            hyper::Method::GET,
            &format!("/api/v2/journey/sessions?deploymentId={DEPLOYMENT}&pageSize=4"),
            None,
        )
        .await?;
    let sessions = listing["entities"].as_array().cloned().unwrap_or_default();
    println!("a few sessions (GET /api/v2/journey/sessions answered {status}):");
    for session in sessions {
        let length = |field: &str| session[field].as_array().map_or(0, Vec::len);
        println!(
            "  {} device {} events {} segmentAssignments {} outcomeAchievements {}",
            session["id"].as_str().unwrap_or("?"),
            session["device"]["category"].as_str().unwrap_or("-"),
            session["eventCount"],
            length("segmentAssignments"),
            length("outcomeAchievements"),
        );
    }
    Ok(())
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

/// CPU time the collector used, in clock ticks, in all and in its ingest writer thread:
/// per event, a figure that the other work on a shared machine disturbs much less than
/// events per second.
struct CpuTimes {
    process_ticks: u64,
    writer_ticks: u64,
}

impl CpuTimes {
    /// utime + stime of a `/proc/.../stat` file (fields 14 and 15, after the command
    /// name in parentheses).
    fn ticks(stat_path: &Path) -> Option<u64> {
        CpuTimes::ticks_of_stat(&std::fs::read_to_string(stat_path).ok()?)
    }

    /// The fields of a `/proc/.../stat` text after the command name (which may hold
    /// spaces and parentheses), so that field 3 (state) is the first.
    fn fields(stat: &str) -> Option<Vec<&str>> {
        Some(stat[stat.rfind(')')? + 2..].split_whitespace().collect())
    }

    fn field(fields: &[&str], number: usize) -> Option<u64> {
        fields.get(number - 3)?.parse().ok()
    }

    /// utime + stime (fields 14 and 15).
    fn ticks_of_stat(stat: &str) -> Option<u64> {
        let fields = CpuTimes::fields(stat)?;
        Some(CpuTimes::field(&fields, 14)? + CpuTimes::field(&fields, 15)?)
    }

    /// utime + stime + cutime + cstime (fields 14 to 17): with the children the process
    /// has waited for.
    fn ticks_with_children(stat: &str) -> Option<u64> {
        let fields = CpuTimes::fields(stat)?;
        (14..=17)
            .map(|number| CpuTimes::field(&fields, number))
            .sum()
    }

    /// The parent's process id (field 4).
    fn parent(stat: &str) -> Option<u32> {
        u32::try_from(CpuTimes::field(&CpuTimes::fields(stat)?, 4)?).ok()
    }

    /// The collectors' CPU times, added up; the writer threads are SQLite's one
    /// `footpath-ingest` thread or PostgreSQL's `footpath-pg-writer-N` threads.
    fn of(collectors: &[Child]) -> CpuTimes {
        let mut times = CpuTimes {
            process_ticks: 0,
            writer_ticks: 0,
        };
        for collector in collectors {
            let process = Path::new("/proc").join(collector.id().to_string());
            times.writer_ticks += std::fs::read_dir(process.join("task"))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|task| {
                    std::fs::read_to_string(task.path().join("comm")).is_ok_and(|name| {
                        let name = name.trim();
                        name == "footpath-ingest" || name.starts_with("footpath-pg-wri")
                    })
                })
                .filter_map(|task| CpuTimes::ticks(&task.path().join("stat")))
                .sum::<u64>();
            times.process_ticks += CpuTimes::ticks(&process.join("stat")).unwrap_or(0);
        }
        times
    }

    /// Prints microseconds of CPU per event since `before` (clock ticks are 10 ms).
    fn report_since(&self, before: &CpuTimes, events: u64) {
        let micros = |ticks: u64| ticks.saturating_mul(10_000);
        let per_event = |ticks: u64| {
            #[allow(clippy::cast_precision_loss)]
            let value = micros(ticks) as f64 / events.max(1) as f64;
            value
        };
        println!(
            "  collector CPU {:.1} µs/event, of which the ingest writer threads {:.1} µs/event",
            per_event(self.process_ticks.saturating_sub(before.process_ticks)),
            per_event(self.writer_ticks.saturating_sub(before.writer_ticks)),
        );
    }

    /// Prints the database server's CPU per event between two readings of
    /// [`Database::server_ticks`].
    fn report_server(before: Option<u64>, after: Option<u64>, events: u64) {
        if let (Some(before), Some(after)) = (before, after) {
            #[allow(clippy::cast_precision_loss)]
            let per_event =
                after.saturating_sub(before).saturating_mul(10_000) as f64 / events.max(1) as f64;
            println!("  PostgreSQL server CPU {per_event:.1} µs/event");
        }
    }
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
fn raw_baseline(
    dir: &Path,
    batch_size: usize,
    seconds: u64,
    definitions: Option<usize>,
) -> anyhow::Result<f64> {
    let store = SqliteStore::open(dir.join("raw.sqlite3"))?;
    create_raw_definitions(&store, definitions.unwrap_or(0))?;
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
                let user_agent = user_agent(n, definitions.is_some());
                let context = BatchContext {
                    sent_at_ms: wire.sent_at,
                    now_ms: now,
                    max_event_age_ms: 24 * 3_600_000,
                    user_agent: user_agent.map(str::to_owned),
                    ip_address: Some("127.0.0.1".to_owned()),
                    user_agent_info: user_agent
                        .and_then(footpath_collector::enrich::user_agent::parse_user_agent),
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
    addresses: &[SocketAddr],
    concurrency: usize,
    batch_size: usize,
    duration: Duration,
    send_user_agent: bool,
) -> anyhow::Result<Phase> {
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let errors = Arc::clone(&errors);
        let address = addresses[worker % addresses.len()];
        workers.push(tokio::spawn(async move {
            let mut connection = Connection::open(address).await?;
            let mut latencies = Vec::new();
            let mut events = 0_usize;
            let mut n = worker;
            while started.elapsed() < duration {
                n += concurrency;
                let body = Bytes::from(wire_batch_text(&visitor(n), batch_size));
                let sent = Instant::now();
                let (status, body) = connection
                    .post_as(body, user_agent(n, send_user_agent))
                    .await?;
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                if status == 200 {
                    latencies.push(micros);
                    events += acknowledged_count(&body)?;
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
    addresses: &[SocketAddr],
    concurrency: usize,
    batch_size: usize,
    events_per_second: f64,
    duration: Duration,
    send_user_agent: bool,
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
        let address = addresses[worker % addresses.len()];
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
                let (status, body) = connection
                    .post_as(
                        Bytes::from(wire_batch_text(&visitor(n), batch_size)),
                        user_agent(n, send_user_agent),
                    )
                    .await?;
                let micros = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
                if status == 200 {
                    latencies.push(micros);
                    events += acknowledged_count(&body)?;
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

/// The collectors of a run, on one database, each on its own loopback address.
async fn start_collectors(
    config: &Path,
    deployment: Deployment,
) -> anyhow::Result<(Vec<Child>, Vec<SocketAddr>)> {
    let mut collectors = Vec::new();
    let mut addresses = Vec::new();
    for _ in 0..deployment.collectors {
        let address = free_address()?;
        collectors.push(start_collector(config, address).await?);
        addresses.push(address);
    }
    Ok((collectors, addresses))
}

async fn ingest(
    seconds: u64,
    concurrency: usize,
    batch_size: usize,
    definitions: Option<usize>,
    deployment: Deployment,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let send_user_agent = definitions.is_some();
    let definition_count = definitions.unwrap_or(0);
    let database = deployment.database(dir.path(), "bench")?;
    let baseline = if let Database::Postgres { cluster, .. } = &database {
        let writers = footpath_collector::store::PostgresSettings::default().writers;
        println!(
            "raw baseline: PostgreSQL, {writers} connections, transactions of 50 batches of \
             {batch_size} as multi-row INSERTs into event_ids and events, 5 s"
        );
        let url = cluster.create_database("raw")?;
        tokio::task::block_in_place(|| database::raw_postgres_rate(&url, batch_size, 5, writers))?
    } else {
        println!(
            "raw baseline: SqliteStore::ingest_many, 50 batches of {batch_size} per transaction, 5 s{}",
            match definitions {
                Some(count) => format!(", {count} segments and {count} outcomes, User-Agent sent"),
                None => String::new(),
            }
        );
        tokio::task::block_in_place(|| raw_baseline(dir.path(), batch_size, 5, definitions))?
    };
    println!("  {baseline:.0} rows/s");

    let config = write_config(dir.path(), &database)?;
    let (mut collectors, addresses) = start_collectors(&config, deployment).await?;
    println!(
        "{} collector(s) on {}",
        collectors.len(),
        if database.is_postgres() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    if let Some(count) = definitions {
        println!(
            "definitions: {count} segments and {count} outcomes through the API \
             ({}; User-Agent sent)",
            match MATCH_EVERY_GIVEN.get() {
                Some(every) => format!("one definition in {every} matches the events"),
                None => format!(
                    "one journey definition in {MATCH_EVERY} matches the events, \
                     each context-only one half the visits"
                ),
            }
        );
        let creating = Instant::now();
        create_definitions(addresses[0], count).await?;
        println!("  in {:.1} s", creating.elapsed().as_secs_f64());
    }
    println!("peak: closed loop, {concurrency} connections, batches of {batch_size}, {seconds} s");
    let cpu_before = CpuTimes::of(&collectors);
    let server_before = database.server_ticks();
    let peak = closed_loop(
        &addresses,
        concurrency,
        batch_size,
        Duration::from_secs(seconds),
        send_user_agent,
    )
    .await?;
    println!(
        "  {:.0} events/s acknowledged ({} requests, {} errors), p50 {:.2} ms, p99 {:.2} ms",
        peak.events_per_second, peak.requests, peak.errors, peak.p50_ms, peak.p99_ms
    );
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let peak_events = (peak.events_per_second * Duration::from_secs(seconds).as_secs_f64()) as u64;
    CpuTimes::of(&collectors).report_since(&cpu_before, peak_events);
    CpuTimes::report_server(server_before, database.server_ticks(), peak_events);
    if database.is_postgres() {
        println!(
            "  Footpath reached {:.0} % of the raw insert rate",
            peak.events_per_second / baseline * 100.0
        );
    }
    let half_rate = peak.events_per_second / 2.0;
    let half_seconds = (seconds / 2).max(1);
    println!(
        "half: open loop at {half_rate:.0} events/s, {concurrency} connections, {half_seconds} s"
    );
    let half = open_loop(
        &addresses,
        concurrency,
        batch_size,
        half_rate,
        Duration::from_secs(half_seconds),
        send_user_agent,
    )
    .await?;
    println!(
        "  {:.0} events/s acknowledged ({} requests, {} errors), p50 {:.2} ms, p99 {:.2} ms",
        half.events_per_second, half.requests, half.errors, half.p50_ms, half.p99_ms
    );
    let rss: Option<u64> = collectors
        .iter()
        .map(|collector| peak_rss_kib(collector.id()))
        .max()
        .flatten();
    // The SQLite collector checkpoints off the commit path and caps the WAL: its size
    // shows whether the cap holds.
    if let Some(path) = database.sqlite_path() {
        let wal_mib = std::fs::metadata(path.with_extension("sqlite3-wal"))
            .map(|metadata| {
                #[allow(clippy::cast_precision_loss)]
                let mib = metadata.len() as f64 / 1_048_576.0;
                format!("{mib:.1} MiB")
            })
            .unwrap_or_else(|_| "none".to_owned());
        println!("WAL file at the end of the run: {wal_mib}");
    }
    if definition_count > 0 {
        show_sessions(addresses[0]).await?;
    }
    for collector in &mut collectors {
        collector.kill()?;
        collector.wait()?;
    }
    let stored = database.count("events")?;
    let sessions = database.count("sessions")?;
    println!(
        "collector peak RSS (VmHWM, largest collector): {} MiB; events stored: {stored}; sessions: {sessions}",
        rss.map_or_else(
            || "?".to_owned(),
            |kib| format!("{:.1}", kib as f64 / 1024.0)
        )
    );
    let (assignments, achievements) = if definitions.is_some() {
        let assignments = database.count("session_segment_assignments")?;
        let achievements = database.count("session_outcome_achievements")?;
        println!(
            "produced over both phases: {assignments} segment assignments, {achievements} outcome \
             achievements, {} customer assignments, {} pattern counters",
            database.count("customer_segment_assignments")?,
            database.count("journey_pattern_counts")?,
        );
        #[allow(clippy::cast_precision_loss)]
        let per_session = |rows: i64| rows as f64 / sessions.max(1) as f64;
        println!(
            "  per session ({sessions} sessions): {:.1} segment assignments + {:.1} outcome \
             achievements = {:.1}",
            per_session(assignments),
            per_session(achievements),
            per_session(assignments + achievements),
        );
        (assignments.to_string(), achievements.to_string())
    } else {
        ("-".to_owned(), "-".to_owned())
    };
    println!(
        "| {definition_count} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {} | {:.0} | {assignments} | {achievements} |",
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

/// kill -9 under load. On SQLite the one collector is killed, restarted on the same
/// file, and must serve again. With `--postgres` and several collectors, the first is
/// killed while the others go on: a connection whose collector died moves to the next
/// one, as behind a load balancer. Either way every acknowledged id is then looked up.
async fn crash(target: usize, concurrency: usize, deployment: Deployment) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let database = deployment.database(dir.path(), "crash")?;
    let config = write_config(dir.path(), &database)?;
    let (mut collectors, addresses) = start_collectors(&config, deployment).await?;
    let addresses: Arc<[SocketAddr]> = addresses.into();

    let acknowledged_ids = Arc::new(Mutex::new(Vec::<String>::with_capacity(target + 10_000)));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut clients = Vec::new();
    for worker in 0..concurrency {
        let acknowledged_ids = Arc::clone(&acknowledged_ids);
        let stop = Arc::clone(&stop);
        let addresses = Arc::clone(&addresses);
        clients.push(tokio::spawn(async move {
            let mut target_collector = worker % addresses.len();
            let mut connection = Connection::open(addresses[target_collector]).await.ok();
            let mut n = worker;
            // Bounded: stops when told, or after ten minutes whatever happens.
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(600) {
                let Some(open) = connection.as_mut() else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    connection = Connection::open(addresses[target_collector]).await.ok();
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
                    // The collector died under this request: not acknowledged. With
                    // several, try the next one.
                    Err(_) => {
                        connection = None;
                        target_collector = (target_collector + 1) % addresses.len();
                    }
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
    collectors[0].kill()?;
    collectors[0].wait()?;
    let killed_after = started.elapsed();
    let acknowledged_at_kill = acknowledged_ids
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .len();
    if collectors.len() > 1 {
        // The others keep taking the whole load for a moment.
        let until = acknowledged_at_kill + target / 4;
        while acknowledged_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
            < until
        {
            if started.elapsed() > Duration::from_secs(600) {
                bail!("the remaining collectors stopped acknowledging");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await?;
    }
    let ids = acknowledged_ids
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    println!(
        "killed collector 1 of {} (SIGKILL) after {:.1} s with {acknowledged_at_kill} events \
         acknowledged; {} acknowledged in all",
        collectors.len(),
        killed_after.as_secs_f64(),
        ids.len()
    );

    // Restart the killed one on the same database: recovery, then a batch to show it
    // serves.
    collectors[0] = start_collector(&config, addresses[0]).await?;
    let mut connection = Connection::open(addresses[0]).await?;
    let (batch, _) = wire_batch(&visitor(0), 1);
    let (status, _) = connection.post(Bytes::from(batch.to_string())).await?;
    println!("restarted the killed collector on the same database; a new batch got {status}");
    for collector in &mut collectors {
        collector.kill()?;
        collector.wait()?;
    }

    let (missing, doubled) = database.missing_and_doubled(&ids)?;
    let stored = database.count("events")?;
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

#[cfg(test)]
mod tests {
    use super::{acknowledged, acknowledged_count, wire_batch, wire_batch_text};
    use serde_json::Value;

    /// Ids and times differ between two calls; everything else must not.
    fn normalised(mut batch: Value) -> Value {
        let sent_at = batch["sentAt"].as_i64().unwrap();
        batch["sentAt"] = 0.into();
        for event in batch["events"].as_array_mut().unwrap() {
            assert_eq!(event["id"].as_str().unwrap().len(), 36);
            event["id"] = "".into();
            event["time"] = (event["time"].as_i64().unwrap() - sent_at).into();
        }
        batch
    }

    #[test]
    fn the_text_batch_is_the_value_batch() {
        let text: Value = serde_json::from_str(&wire_batch_text("visitor", 3)).unwrap();
        let (value, _) = wire_batch("visitor", 3);
        assert_eq!(normalised(text), normalised(value));
        // And the collector's own types read it.
        let text = wire_batch_text("visitor", 2);
        let batch: footpath_protocol::v1::Batch = serde_json::from_str(&text).unwrap();
        assert_eq!(batch.events.len(), 2);
    }

    #[test]
    fn acknowledged_counts_match() {
        let body = br#"{"accepted":1,"duplicates":1,"rejected":1,"results":[
            {"id":"a","status":"accepted"},{"id":"b","status":"duplicate"},
            {"id":"c","status":"rejected","error":"x"}]}"#;
        assert_eq!(acknowledged_count(body).unwrap(), 2);
        assert_eq!(acknowledged(body).unwrap(), ["a", "b"]);
    }
}
