//! Several collectors on one PostgreSQL database: what an agent signed in through
//! one of them sees through another. Each collector here is a whole `AppState` (its
//! own store, pool, desk and listener), as a process of its own would have.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Request, StatusCode};
use footpath_collector::router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::postgres::{cluster, fresh_database};
use crate::support::{batch, pageview, TestApp, OTHER_VISITOR, T0, TOKEN, VISITOR};

/// What the issue asks of a live desk: a change on one collector shown by another
/// within a second.
const LIVE_WITHIN: Duration = Duration::from_secs(1);

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

async fn send(app: &TestApp, request: Request<Body>) -> Reply {
    let response = router(app.state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

async fn desk_get(app: &TestApp, uri: &str, cookie: &str) -> Reply {
    let request = Request::get(uri)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    send(app, request).await
}

/// Signs in on `app` and returns the `Cookie` header value to send afterwards.
async fn sign_in(app: &TestApp) -> String {
    let body = format!("token={TOKEN}");
    let request = Request::post("/desk/signin")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let reply = send(app, request).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let set_cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    set_cookie.split(';').next().unwrap().trim().to_owned()
}

/// The desk's live stream on `app`, past its `ready` event.
async fn open_stream(app: &TestApp, cookie: &str) -> Body {
    let request = Request::get("/desk/api/stream")
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let response = router(app.state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let ready = next_event(&mut body, Duration::from_secs(5)).await;
    assert!(ready.starts_with("event: ready\n"), "{ready}");
    body
}

/// The next event of a stream (axum writes each in one frame), within `within`;
/// keep-alive comments are skipped.
async fn next_event(body: &mut Body, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .unwrap_or_else(|_| panic!("no event within {within:?}"))
            .unwrap()
            .unwrap();
        let text = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
        if !text.starts_with(':') {
            return text;
        }
    }
}

/// Whether a stream has no event ready: what the collector sent has all been read.
async fn nothing_more(body: &mut Body) -> bool {
    tokio::time::timeout(Duration::from_millis(300), body.frame())
        .await
        .is_err()
}

fn collector(url: &str) -> TestApp {
    TestApp::with_config(|config| config.database_url = Some(url.to_owned()))
}

#[tokio::test]
async fn an_agent_on_one_collector_follows_visitors_of_another() {
    let url = fresh_database();
    let (a, b) = (collector(&url), collector(&url));

    // Signed in through A, the cookie opens the desk on B.
    let cookie = sign_in(&a).await;
    assert_eq!(
        desk_get(&b, "/desk/api/sessions", &cookie).await.status,
        StatusCode::OK
    );
    let mut on_a = open_stream(&a, &cookie).await;
    let mut on_b = open_stream(&b, &cookie).await;

    // A visitor's batch to A reaches the desk on B within a second, and the desk on
    // A once (its own change is not delivered again through the database).
    let sent = Instant::now();
    a.post_batch(&batch(
        VISITOR,
        T0,
        vec![pageview(1, T0 - 1000, "https://shop.example/")],
    ))
    .await
    .ok_json();
    let announced = next_event(&mut on_b, LIVE_WITHIN).await;
    let latency = sent.elapsed();
    assert!(announced.starts_with("event: visitor\n"), "{announced}");
    assert!(announced.contains(VISITOR), "{announced}");
    assert!(latency < LIVE_WITHIN, "{latency:?}");
    eprintln!("a batch on collector A reached the desk on collector B in {latency:?}");
    let on_a_first = next_event(&mut on_a, LIVE_WITHIN).await;
    assert!(on_a_first.contains(VISITOR), "{on_a_first}");
    assert!(
        nothing_more(&mut on_a).await,
        "A announced its own change twice"
    );

    // And the other way round; B's desk lists what A stored.
    b.post_batch(&batch(
        OTHER_VISITOR,
        T0,
        vec![pageview(2, T0 - 500, "https://shop.example/cart")],
    ))
    .await
    .ok_json();
    let announced = next_event(&mut on_a, LIVE_WITHIN).await;
    assert!(announced.contains(OTHER_VISITOR), "{announced}");
    let listed = desk_get(&b, "/desk/api/sessions", &cookie).await;
    let listed: Value = serde_json::from_slice(&listed.body).unwrap();
    let visitors: Vec<&str> = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|session| session["customerId"].as_str().unwrap())
        .collect();
    assert_eq!(visitors, [OTHER_VISITOR, VISITOR]);
    assert!(next_event(&mut on_b, LIVE_WITHIN)
        .await
        .contains(OTHER_VISITOR));

    // A presentation change through A reaches the desk on B, which then shows it.
    let request = Request::put("/api/v2/footpath/desk/config")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"title": "Shop visit"}).to_string()))
        .unwrap();
    assert_eq!(send(&a, request).await.status, StatusCode::OK);
    let announced = next_event(&mut on_b, LIVE_WITHIN).await;
    assert!(
        announced.starts_with("event: presentation\n"),
        "{announced}"
    );
    let listed = desk_get(&b, "/desk/api/sessions", &cookie).await;
    let listed: Value = serde_json::from_slice(&listed.body).unwrap();
    assert_eq!(listed["title"], json!("Shop visit"));

    // Signing out through B ends the session on A at once (A had it cached).
    let request = Request::post("/desk/signout")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&b, request).await.status, StatusCode::SEE_OTHER);
    let deadline = Instant::now() + LIVE_WITHIN;
    loop {
        let status = desk_get(&a, "/desk/api/sessions", &cookie).await.status;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A still lets the agent in: {status}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop((a, b));
}

#[tokio::test]
async fn a_collector_that_lost_its_listening_connection_tells_its_desks_to_reload() {
    let url = fresh_database();
    let (a, b) = (collector(&url), collector(&url));
    let cookie = sign_in(&b).await;
    let mut on_b = open_stream(&b, &cookie).await;

    // The server ends every listening connection (a restart, a network cut): what
    // other collectors send meanwhile is lost, so B's desks are told to reload.
    let database = url.rsplit('/').next().unwrap();
    cluster()
        .psql(
            database,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .unwrap();
    let announced = next_event(&mut on_b, Duration::from_secs(5)).await;
    assert!(announced.starts_with("event: resync\n"), "{announced}");

    // Listening again, B follows A as before.
    a.post_batch(&batch(
        VISITOR,
        T0,
        vec![pageview(1, T0 - 1000, "https://shop.example/")],
    ))
    .await
    .ok_json();
    let announced = next_event(&mut on_b, LIVE_WITHIN).await;
    assert!(announced.contains(VISITOR), "{announced}");
    drop((a, b));
}

/// The configuration of the collector processes of [`kill_9_of_one_of_two_collectors`].
fn write_postgres_config(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    use crate::support::{DEPLOYMENT, ORIGIN};
    let path = dir.join("collector.toml");
    let text = format!(
        "database_url = {url:?}\nsdk_dir = {:?}\nvisitor_rate_limit_events_per_minute = 0\n\
         client_ip_rate_limit_events_per_minute = 0\n\
         [[deployments]]\nid = \"{DEPLOYMENT}\"\nallowed_origins = [\"{ORIGIN}\"]\n",
        dir.join("sdk"),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// How many rows of `events` each id has, and how many sessions each visitor has.
fn stored_in_postgres(url: &str, ids: &[String], visitors: &[String]) -> (Vec<i64>, Vec<i64>) {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let mut count_each = |sql: &str, keys: &[String]| -> Vec<i64> {
        let rows = client.query(sql, &[&keys]).unwrap();
        let found: std::collections::HashMap<String, i64> =
            rows.iter().map(|row| (row.get(0), row.get(1))).collect();
        keys.iter()
            .map(|key| found.get(key).copied().unwrap_or(0))
            .collect()
    };
    let events = count_each(
        "SELECT id, COUNT(*) FROM events WHERE id = ANY($1) GROUP BY id",
        ids,
    );
    let sessions = count_each(
        "SELECT visitor_id, COUNT(*) FROM sessions WHERE visitor_id = ANY($1) GROUP BY visitor_id",
        visitors,
    );
    (events, sessions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_of_two_collectors_loses_and_doubles_nothing() {
    use crate::durability::{acknowledged_ids, free_port, fresh_batch, post_raw, spawn_collector};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    /// Acknowledged events before the kill, and after it (by the survivor alone).
    const BEFORE_KILL: usize = 3_000;
    const AFTER_KILL: usize = 1_500;
    const CLIENTS: usize = 8;

    let url = fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let config = write_postgres_config(dir.path(), &url);
    let addresses = [free_port(), free_port()];
    let mut doomed = spawn_collector(&config, addresses[0]).await;
    let mut survivor = spawn_collector(&config, addresses[1]).await;

    // Each client is one visitor whose batches a balancer without sticky sessions
    // spreads over both collectors, request by request. A request that gets no answer
    // (its collector died under it) is sent again, the same events, to the other
    // collector, as the SDK resends an event until it has a verdict.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let resent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let visitors: Vec<String> = (0..CLIENTS)
        .map(|client| format!("00000000-0000-4000-8000-{:012}", 500 + client))
        .collect();
    let mut clients = Vec::new();
    for (client, visitor) in visitors.iter().cloned().enumerate() {
        let (acknowledged, resent, stop) = (
            Arc::clone(&acknowledged),
            Arc::clone(&resent),
            Arc::clone(&stop),
        );
        clients.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut turn = client;
            let mut pending: Option<String> = None;
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) {
                let body = pending
                    .take()
                    .unwrap_or_else(|| fresh_batch(&visitor, 20).0);
                turn += 1;
                match post_raw(addresses[turn % 2], &body).await {
                    Some((200, response)) => acknowledged
                        .lock()
                        .unwrap()
                        .extend(acknowledged_ids(&response)),
                    _ => {
                        resent.fetch_add(1, Ordering::Relaxed);
                        pending = Some(body);
                    }
                }
            }
        }));
    }
    let wait_for = |count: usize| {
        let acknowledged = Arc::clone(&acknowledged);
        async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            while acknowledged.lock().unwrap().len() < count {
                assert!(Instant::now() < deadline, "too slow to acknowledge events");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_for(BEFORE_KILL).await;
    // SIGKILL while both collectors have requests in flight.
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let at_kill = acknowledged.lock().unwrap().len();
    wait_for(at_kill + AFTER_KILL).await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    survivor.kill().unwrap();
    survivor.wait().unwrap();

    let acknowledged = acknowledged.lock().unwrap().clone();
    let distinct: std::collections::HashSet<&String> = acknowledged.iter().collect();
    let (events, sessions) = tokio::task::spawn_blocking({
        let (url, ids, visitors) = (url.clone(), acknowledged.clone(), visitors.clone());
        move || stored_in_postgres(&url, &ids, &visitors)
    })
    .await
    .unwrap();
    let missing = events.iter().filter(|count| **count == 0).count();
    let doubled = events.iter().filter(|count| **count > 1).count();
    eprintln!(
        "kill -9 of one of two collectors: {} acknowledged ({} distinct; {at_kill} before the \
         kill), {} requests sent again after no answer; {missing} missing, {doubled} stored \
         more than once; sessions per visitor {sessions:?}",
        acknowledged.len(),
        distinct.len(),
        resent.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(acknowledged.len() >= BEFORE_KILL + AFTER_KILL);
    assert_eq!((missing, doubled), (0, 0));
    // Each visitor's batches went to both collectors, before and after the kill, and
    // still made one session.
    assert_eq!(sessions, vec![1; CLIENTS]);
}
