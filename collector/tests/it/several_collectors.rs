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
