//! Delivery guarantees: an acknowledged event is durable and stored exactly once.
//!
//! - `kill -9` under load: a client records every acknowledged event id while the real
//!   binary is killed mid-stream; after a restart on the same database, every
//!   acknowledged id is stored exactly once (the longer run is
//!   `cargo run -p footpath-bench --release -- crash --events 100000`).
//! - SIGTERM: requests in flight are answered 200 and committed, the process exits 0.
//! - Replays: one batch sent five times concurrently is stored once and acknowledged
//!   five times.
//! - Group commit: a batch that fails inside the shared transaction is rolled back
//!   alone (savepoints); its neighbours are stored.
//! - Clock skew: event times are corrected by `server now - sentAt`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use footpath_collector::store::{NewBatch, SqliteStore, Store};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// A config file for the real binary: the test deployment, no rate limits (the load
/// comes from one address), and the given database.
fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("collector.toml");
    let text = format!(
        "database_path = {:?}\nsdk_dir = {:?}\nvisitor_rate_limit_events_per_minute = 0\n\
         client_ip_rate_limit_events_per_minute = 0\nshutdown_grace_seconds = 10\n\
         [[deployments]]\nid = \"{DEPLOYMENT}\"\nallowed_origins = [\"{ORIGIN}\"]\n",
        dir.join("crash.sqlite3"),
        dir.join("sdk"),
    );
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Starts the collector binary and waits until it accepts connections.
pub(crate) async fn spawn_collector(config: &Path, address: SocketAddr) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_footpath-collector"))
        .arg("--config")
        .arg(config)
        .arg("--listen-addr")
        .arg(address.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(address).await.is_err() {
        assert!(Instant::now() < deadline, "the collector did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}

fn now_ms() -> i64 {
    footpath_collector::clock::Clock::now_ms(&footpath_collector::clock::SystemClock)
}

/// A batch of `count` fresh events with UUID v7 ids; returns the body and the ids.
pub(crate) fn fresh_batch(visitor: &str, count: usize) -> (String, Vec<String>) {
    let now = now_ms();
    let ids: Vec<String> = (0..count)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let events: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "kind": "record", "name": "crash_probe", "time": now}))
        .collect();
    let body = json!({"v": 1, "deploymentId": DEPLOYMENT, "visitorId": visitor,
                      "sentAt": now, "events": events});
    (body.to_string(), ids)
}

/// Posts a batch over a fresh connection; returns the status and body, or `None` when
/// the connection failed (the collector is down).
pub(crate) async fn post_raw(address: SocketAddr, body: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    let request = format!(
        "POST /sdk/v1/batch HTTP/1.1\r\nHost: {address}\r\nOrigin: {ORIGIN}\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// Every id that the response says was accepted or is a duplicate (both mean stored).
pub(crate) fn acknowledged_ids(body: &str) -> Vec<String> {
    let json: Value = serde_json::from_str(body).unwrap();
    json["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|result| result["status"] == "accepted" || result["status"] == "duplicate")
        .map(|result| result["id"].as_str().unwrap().to_owned())
        .collect()
}

/// How many rows each id has, read from the database file opened read-only.
fn stored_counts(database: &Path, ids: &[String]) -> Vec<i64> {
    let connection =
        rusqlite::Connection::open_with_flags(database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut statement = connection
        .prepare("SELECT COUNT(*) FROM events WHERE id = ?1")
        .unwrap();
    ids.iter()
        .map(|id| statement.query_row([id], |row| row.get(0)).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_kill_9_exactly_once() {
    const TARGET_ACKNOWLEDGED: usize = 3_000;
    const CLIENTS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let address = free_port();
    let mut collector = spawn_collector(&config, address).await;

    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let acknowledged = Arc::clone(&acknowledged);
        let stop = Arc::clone(&stop);
        clients.push(tokio::spawn(async move {
            let visitor = format!("00000000-0000-4000-8000-{client:012}");
            let started = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::SeqCst)
                && started.elapsed() < Duration::from_secs(60)
            {
                let (body, _) = fresh_batch(&visitor, 20);
                match post_raw(address, &body).await {
                    Some((200, response)) => acknowledged
                        .lock()
                        .unwrap()
                        .extend(acknowledged_ids(&response)),
                    // Killed mid-request, or not yet restarted: not acknowledged.
                    _ => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().unwrap().len() < TARGET_ACKNOWLEDGED {
        assert!(Instant::now() < deadline, "too slow to acknowledge events");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SIGKILL while the clients are still sending: some requests are in flight.
    collector.kill().unwrap();
    collector.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let distinct: HashSet<&String> = acknowledged.iter().collect();
    assert_eq!(distinct.len(), acknowledged.len(), "ids are fresh");

    // Restart on the same database: it opens (WAL recovery) and serves.
    let mut collector = spawn_collector(&config, address).await;
    let (body, ids) = fresh_batch("00000000-0000-4000-8000-0000000000ff", 1);
    let (status, _) = post_raw(address, &body).await.unwrap();
    assert_eq!(status, 200);
    collector.kill().unwrap();
    collector.wait().unwrap();

    let counts = stored_counts(&dir.path().join("crash.sqlite3"), &acknowledged);
    let missing = counts.iter().filter(|count| **count == 0).count();
    let doubled = counts.iter().filter(|count| **count > 1).count();
    eprintln!(
        "kill -9: {} acknowledged events checked, {missing} missing, {doubled} doubled",
        acknowledged.len()
    );
    assert!(acknowledged.len() >= TARGET_ACKNOWLEDGED);
    assert_eq!((missing, doubled), (0, 0));
    assert_eq!(stored_counts(&dir.path().join("crash.sqlite3"), &ids), [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let address = free_port();
    let collector = spawn_collector(&config, address).await;

    // Three requests whose bodies are half sent when SIGTERM arrives. Each connection
    // first completes one request, so that the server has surely accepted it (a
    // connection still in the kernel's backlog is reset when the listener closes, and
    // was never acknowledged anyway).
    let mut in_flight = Vec::new();
    let mut expected_ids = Vec::new();
    for n in 0..3 {
        let visitor = format!("00000000-0000-4000-8000-00000000010{n}");
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let head = |length: usize| {
            format!(
                "POST /sdk/v1/batch HTTP/1.1\r\nHost: {address}\r\nOrigin: {ORIGIN}\r\n\
                 Content-Type: text/plain\r\nContent-Length: {length}\r\n\r\n"
            )
        };
        let (warm_up, ids) = fresh_batch(&visitor, 1);
        expected_ids.extend(ids);
        stream
            .write_all(head(warm_up.len()).as_bytes())
            .await
            .unwrap();
        stream.write_all(warm_up.as_bytes()).await.unwrap();
        let mut buffer = vec![0; 4096];
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));

        let (body, ids) = fresh_batch(&visitor, 5);
        expected_ids.extend(ids);
        let (first, rest) = body.split_at(body.len() / 2);
        stream.write_all(head(body.len()).as_bytes()).await.unwrap();
        stream.write_all(first.as_bytes()).await.unwrap();
        in_flight.push((stream, rest.to_owned()));
    }
    // Let the server read the heads, so that the requests are in flight.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(collector.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // New connections are no longer accepted...
    assert!(post_raw(address, &fresh_batch(VISITOR, 1).0)
        .await
        .is_none());
    // ...but the requests in flight finish, and are acknowledged.
    for (mut stream, rest) in in_flight {
        stream.write_all(rest.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("\"accepted\":5"), "{text}");
    }
    let output = tokio::task::spawn_blocking(move || collector.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(output.status.success(), "{:?}", output.status);
    let counts = stored_counts(&dir.path().join("crash.sqlite3"), &expected_ids);
    assert_eq!(counts, vec![1; expected_ids.len()]);
}

#[tokio::test]
async fn a_batch_replayed_five_times_at_once_is_stored_once() {
    let app = TestApp::new();
    let events: Vec<Value> = (1..=10).map(|n| record(n, "replayed", T0)).collect();
    let body = batch(VISITOR, T0, events);
    let responses = tokio::join!(
        app.post_batch(&body),
        app.post_batch(&body),
        app.post_batch(&body),
        app.post_batch(&body),
        app.post_batch(&body),
    );
    let responses = [
        responses.0,
        responses.1,
        responses.2,
        responses.3,
        responses.4,
    ];
    let (mut accepted, mut duplicates) = (0, 0);
    for response in &responses {
        let json = response.ok_json();
        accepted += json["accepted"].as_u64().unwrap();
        duplicates += json["duplicates"].as_u64().unwrap();
        assert_eq!(json["rejected"], 0);
    }
    // Acknowledged five times (every event accepted or duplicate in every answer),
    // stored once.
    assert_eq!((accepted, duplicates), (10, 40));
    let session = app.only_session_of(VISITOR).await;
    let events = app.events_of(session["id"].as_str().unwrap()).await;
    assert_eq!(events.len(), 10);
}

fn new_batch(visitor: &str, first: u32, count: u32) -> NewBatch {
    let events = (first..first + count)
        .map(|n| footpath_collector::store::NewEvent {
            id: event_id(n),
            kind: footpath_protocol::v1::EventKind::Record,
            name: "grouped".to_owned(),
            time_ms: T0,
            client_time_ms: T0,
            received_ms: T0,
            page: None,
            context: None,
            login_id: None,
            attributes: Default::default(),
            traits: Default::default(),
            user_agent: None,
            ip_address: None,
            user_agent_info: None,
            geolocation: None,
            referrer_info: None,
            identity_verified: false,
            identity_proof: Default::default(),
        })
        .collect();
    NewBatch {
        deployment_id: DEPLOYMENT.to_owned(),
        visitor_id: visitor.to_owned(),
        events,
        require_verified_identity: false,
    }
}

#[test]
fn a_failing_batch_in_a_group_is_rolled_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("group.sqlite3");
    let store = SqliteStore::open(&path).unwrap();
    // A trigger makes every insert of the poisoned visitor fail, half-way through its
    // batch (after its session was created).
    let poison = "99999999-0000-4000-8000-000000000000";
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(&format!(
            "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.visitor_id = '{poison}'
             BEGIN SELECT RAISE(ABORT, 'poisoned'); END;"
        ))
        .unwrap();
    let batches = [
        new_batch(VISITOR, 1, 3),
        new_batch(poison, 10, 3),
        new_batch(OTHER_VISITOR, 20, 3),
    ];
    let results = store.ingest_many(&batches, T0, TIMEOUT);
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(results[1].is_err(), "{results:?}");
    let sessions_of = |visitor: &str| {
        let filter = footpath_collector::store::SessionFilter {
            visitor_id: Some(visitor.to_owned()),
            ..Default::default()
        };
        store.sessions(&filter, None, 10).unwrap().items
    };
    assert_eq!(sessions_of(VISITOR)[0].event_count, 3);
    assert_eq!(sessions_of(OTHER_VISITOR)[0].event_count, 3);
    // Nothing of the failed batch, not even its session.
    assert!(sessions_of(poison).is_empty());
    assert!(store.event(&event_id(10)).unwrap().is_none());
}

#[tokio::test]
async fn queued_batches_share_one_writer_and_keep_per_batch_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("q.sqlite3")).unwrap());
    let mut replies = Vec::new();
    for n in 0..50 {
        // Every batch repeats the first event of the one before: one duplicate each.
        let mut batch = new_batch(VISITOR, 100 + n * 4, 4);
        if n > 0 {
            batch.events.insert(
                0,
                new_batch(VISITOR, 100 + (n - 1) * 4, 1).events[0].clone(),
            );
        }
        replies.push(store.enqueue_ingest(batch, T0, TIMEOUT).unwrap());
    }
    for (n, reply) in replies.into_iter().enumerate() {
        let outcomes = reply.await.unwrap().unwrap();
        let duplicates = outcomes
            .iter()
            .filter(|outcome| **outcome == footpath_collector::store::IngestOutcome::Duplicate)
            .count();
        assert_eq!(
            (outcomes.len(), duplicates),
            (4 + usize::from(n > 0), usize::from(n > 0))
        );
    }
    let session = store.sessions(&Default::default(), None, 10).unwrap().items;
    assert_eq!(session[0].event_count, 200);
}

#[tokio::test]
async fn event_times_are_corrected_by_the_device_clock_skew() {
    let app = TestApp::new();
    // The device's clock is an hour behind the server's: it sends sentAt = T0 - 1 h,
    // and an event it timed 5 seconds before sending.
    let device_now = T0 - 60 * MINUTE;
    let body = batch(
        VISITOR,
        device_now,
        vec![record(1, "skewed", device_now - 5 * SECOND)],
    );
    assert_eq!(app.post_batch(&body).await.status, StatusCode::OK);
    let stored = app.state.store().event(&event_id(1)).unwrap().unwrap();
    assert_eq!(stored.event.time_ms, T0 - 5 * SECOND);
    assert_eq!(stored.event.client_time_ms, device_now - 5 * SECOND);
    assert_eq!(stored.event.received_ms, T0);
}
