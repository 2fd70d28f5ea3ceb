//! The configurable limits, each with its status, JSON error and (for 429 and 503)
//! `Retry-After`; and that nothing of a refused request is stored.

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

fn stored_events(app: &TestApp) -> u64 {
    app.state
        .store()
        .sessions(&Default::default(), None, 1000)
        .unwrap()
        .items
        .iter()
        .map(|session| session.event_count)
        .sum()
}

fn records(first: u32, count: u32) -> Vec<Value> {
    (first..first + count)
        .map(|n| record(n, "clicked", T0))
        .collect()
}

#[tokio::test]
async fn per_event_size_limits_follow_the_configuration() {
    let app = TestApp::with_config(|config| {
        config.max_attributes_per_event = 2;
        config.max_name_bytes = 10;
        config.max_value_bytes = 8;
    });
    let mut three_attributes = record(1, "clicked", T0);
    three_attributes["attributes"] = json!({"a": 1, "b": 2, "c": 3});
    let long_name = record(2, "a_rather_long_name", T0);
    let mut long_value = record(3, "clicked", T0);
    long_value["attributes"] = json!({"color": "ultraviolet"});
    let mut long_trait_name = record(4, "clicked", T0);
    long_trait_name["traits"] = json!({"loyalty_tier": "gold"});
    let fine = record(5, "clicked", T0);
    let response = app
        .post_batch(&batch(
            VISITOR,
            T0,
            vec![
                three_attributes,
                long_name,
                long_value,
                long_trait_name,
                fine,
            ],
        ))
        .await
        .ok_json();
    let errors: Vec<&str> = response["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["error"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        errors,
        [
            "events[0].attributes: has more than 2 entries",
            "events[1].name: is longer than 10 bytes",
            "events[2].attributes.color: is longer than 8 bytes",
            "events[3].traits: name is longer than 10 bytes",
            "",
        ]
    );
    assert_eq!(response["accepted"], 1);
    assert_eq!(stored_events(&app), 1);
}

#[tokio::test]
async fn deep_json_is_refused_before_parsing_with_the_limit_named() {
    let app = TestApp::new();
    let mut event = record(1, "clicked", T0);
    let mut deep = json!("bottom");
    for _ in 0..20 {
        deep = json!([deep]);
    }
    event["context"] = json!({"nested": deep});
    let response = app.post_batch(&batch(VISITOR, T0, vec![event])).await;
    let message = response.assert_error(StatusCode::BAD_REQUEST, "bad.request");
    assert_eq!(
        message,
        "request body nests JSON deeper than the limit of 16 levels"
    );
    // A body far deeper than serde's own recursion limit gets the same answer.
    let hostile = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    let response = app
        .send(batch_request(hostile, "text/plain", Some(ORIGIN)))
        .await;
    response.assert_error(StatusCode::BAD_REQUEST, "bad.request");
    assert_eq!(stored_events(&app), 0);
}

#[tokio::test]
async fn a_visitor_over_its_rate_limit_gets_429_with_retry_after_until_time_passes() {
    let app = TestApp::with_config(|config| config.visitor_rate_limit_events_per_minute = 30);
    assert_eq!(
        app.post_batch(&batch(VISITOR, T0, records(1, 20)))
            .await
            .status,
        StatusCode::OK
    );
    let refused = app.post_batch(&batch(VISITOR, T0, records(21, 20))).await;
    let message = refused.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate.limited");
    assert!(
        message.contains("more than 30 events per minute"),
        "{message}"
    );
    // 10 events are left; 20 need 10 more, at one per 2 s: 20 s.
    assert_eq!(refused.header("retry-after"), Some("20"));
    // Another visitor is not affected.
    assert_eq!(
        app.post_batch(&batch(OTHER_VISITOR, T0, records(41, 20)))
            .await
            .status,
        StatusCode::OK
    );
    // The injected clock refills the allowance: no sleeping.
    app.clock.advance_ms(20 * SECOND);
    let response = app
        .post_batch(&batch(VISITOR, T0 + 20 * SECOND, records(21, 20)))
        .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(stored_events(&app), 60);
}

#[tokio::test]
async fn a_client_address_over_its_rate_limit_gets_429() {
    let app = TestApp::with_config(|config| {
        config.visitor_rate_limit_events_per_minute = 0;
        config.client_ip_rate_limit_events_per_minute = 50;
    });
    for (n, visitor) in [VISITOR, OTHER_VISITOR].into_iter().enumerate() {
        let first = u32::try_from(n).unwrap() * 20 + 1;
        let response = app
            .post_batch(&batch(visitor, T0, records(first, 20)))
            .await;
        assert_eq!(response.status, StatusCode::OK);
    }
    let third = "6e6e6e6e-0000-4000-8000-000000000003";
    let refused = app.post_batch(&batch(third, T0, records(41, 20))).await;
    let message = refused.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate.limited");
    assert!(message.starts_with("the client address"), "{message}");
    assert!(refused.header("retry-after").is_some());
    // The same visitor from another address is fine.
    let from_elsewhere = app
        .send(batch_request_from(
            "198.51.100.9",
            &[],
            batch(third, T0, records(41, 20)),
        ))
        .await;
    assert_eq!(from_elsewhere.status, StatusCode::OK);
}

/// One host is commonly given a whole IPv6 /64: it is limited as one address, or it
/// could take a new address for every request.
#[tokio::test]
async fn an_ipv6_client_is_limited_by_its_64_network() {
    let app = TestApp::with_config(|config| {
        config.visitor_rate_limit_events_per_minute = 0;
        config.client_ip_rate_limit_events_per_minute = 50;
    });
    let visitors = [
        "6e6e6e6e-0000-4000-8000-000000000001",
        "6e6e6e6e-0000-4000-8000-000000000002",
        "6e6e6e6e-0000-4000-8000-000000000003",
    ];
    let peers = ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"];
    let mut statuses = Vec::new();
    for (n, (visitor, peer)) in visitors.into_iter().zip(peers).enumerate() {
        let first = u32::try_from(n).unwrap() * 20 + 1;
        let response = app
            .send(batch_request_from(
                peer,
                &[],
                batch(visitor, T0, records(first, 20)),
            ))
            .await;
        statuses.push(response.status);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // Another /64 has its own allowance.
    let elsewhere = app
        .send(batch_request_from(
            "2001:db8:1:3::1",
            &[],
            batch(visitors[2], T0, records(41, 20)),
        ))
        .await;
    assert_eq!(elsewhere.status, StatusCode::OK);
}

/// A request body that sends `first` and then never ends (until `release` fires).
fn stalled_body(first: String) -> (Body, tokio::sync::oneshot::Sender<()>) {
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let stream = futures_util::stream::unfold(
        (Some(first), Some(released)),
        |(first, released)| async move {
            if let Some(first) = first {
                return Some((Ok::<_, std::io::Error>(first), (None, released)));
            }
            if let Some(released) = released {
                let _ = released.await;
            }
            None
        },
    );
    (Body::from_stream(stream), release)
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let app = TestApp::with_config(|config| config.body_read_timeout_seconds = 1);
    let (body, _release) = stalled_body("{\"v\":1,".to_owned());
    let response = app
        .send(batch_request(body, "text/plain", Some(ORIGIN)))
        .await;
    let message = response.assert_error(StatusCode::REQUEST_TIMEOUT, "request.timeout");
    assert_eq!(message, "the request body did not arrive within 1 seconds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_requests_over_the_concurrency_cap_are_shed_with_503() {
    let app = TestApp::with_config(|config| config.max_concurrent_ingest_requests = 1);
    // A body that has not arrived holds no place among the ingest requests: the
    // permit is taken once the body is in.
    let (slow_body, release_slow) = stalled_body("{\"v\":1,".to_owned());
    let slow = {
        let state = app.state.clone();
        tokio::spawn(async move {
            use tower::ServiceExt;
            footpath_collector::router(state)
                .oneshot(batch_request(slow_body, "text/plain", Some(ORIGIN)))
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        app.post_batch(&batch(VISITOR, T0, records(1, 1)))
            .await
            .status,
        StatusCode::OK
    );

    // A request waiting for its commit holds the only place: another connection
    // holds the database's write lock, so the writer stalls.
    let blocker = rusqlite::Connection::open(app.dir.path().join("test.sqlite3")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let holder = {
        let state = app.state.clone();
        tokio::spawn(async move {
            use tower::ServiceExt;
            let body = batch(OTHER_VISITOR, T0, records(10, 1)).to_string();
            footpath_collector::router(state)
                .oneshot(batch_request(body, "text/plain", Some(ORIGIN)))
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shed = app.post_batch(&batch(VISITOR, T0, records(2, 1))).await;
    let message = shed.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service.unavailable");
    assert!(message.contains("more than 1 ingest requests"), "{message}");
    assert_eq!(shed.header("retry-after"), Some("1"));
    blocker.execute_batch("ROLLBACK").unwrap();
    // The held request is committed and answered, and its permit is returned.
    assert_eq!(holder.await.unwrap(), StatusCode::OK);
    assert_eq!(
        app.post_batch(&batch(VISITOR, T0, records(2, 1)))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(stored_events(&app), 3);
    // The slow body, cut short, is refused without ever having taken the place.
    release_slow.send(()).unwrap();
    assert_eq!(slow.await.unwrap(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_ingest_queue_sheds_batches_with_503() {
    let app = TestApp::with_config(|config| config.ingest_queue_capacity_batches = 1);
    // Another connection holds the write lock, so the writer thread stalls on its
    // first group and the queue behind it fills.
    let blocker = rusqlite::Connection::open(app.dir.path().join("test.sqlite3")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut requests = Vec::new();
    for n in 0..8_u32 {
        let state = app.state.clone();
        let visitor = format!("7a7a7a7a-0000-4000-8000-{n:012}");
        requests.push(tokio::spawn(async move {
            use tower::ServiceExt;
            let body = batch(&visitor, T0, vec![record(100 + n, "queued", T0)]);
            let response = footpath_collector::router(state)
                .oneshot(batch_request(body.to_string(), "text/plain", Some(ORIGIN)))
                .await
                .unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            crate::openapi::check_response(
                &axum::http::Method::POST,
                "/sdk/v1/batch",
                status,
                &headers,
                &bytes,
            );
            (status, headers.get("retry-after").cloned())
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    blocker.execute_batch("ROLLBACK").unwrap();
    let mut ok = 0;
    let mut shed = 0;
    for request in requests {
        match request.await.unwrap() {
            (StatusCode::OK, _) => ok += 1,
            (StatusCode::SERVICE_UNAVAILABLE, retry_after) => {
                assert_eq!(retry_after.unwrap(), "1");
                shed += 1;
            }
            (other, _) => panic!("unexpected {other}"),
        }
    }
    assert!(ok >= 1 && shed >= 1, "ok {ok}, shed {shed}");
    assert_eq!(stored_events(&app), ok);
}

#[test]
fn limits_are_validated() {
    use footpath_collector::config::Config;
    let invalid = |text: &str| Config::from_toml_str(text).unwrap_err().to_string();
    assert_eq!(
        invalid("max_attributes_per_event = 51"),
        "invalid configuration: max_attributes_per_event must be from 0 to 50, not 51"
    );
    assert_eq!(
        invalid("max_json_nesting_levels = 2"),
        "invalid configuration: max_json_nesting_levels must be from 8 to 128, not 2"
    );
    assert_eq!(
        invalid("ingest_queue_capacity_batches = 0"),
        "invalid configuration: ingest_queue_capacity_batches must be at least 1"
    );
    assert_eq!(
        invalid("max_request_head_bytes = 4096"),
        "invalid configuration: max_request_head_bytes must be from 8192 to 1048576, not 4096"
    );
    assert_eq!(
        invalid("max_user_agent_bytes = 10"),
        "invalid configuration: max_user_agent_bytes must be from 64 to 8192, not 10"
    );
    assert_eq!(
        invalid("max_events_per_session = 0"),
        "invalid configuration: max_events_per_session must be at least 1"
    );
    assert_eq!(
        invalid("max_open_connections = 0"),
        "invalid configuration: max_open_connections must be from 1 to 1000000, not 0"
    );
    assert_eq!(
        invalid("postgres_writers = 0"),
        "invalid configuration: postgres_writers must be from 1 to 64, not 0"
    );
    assert_eq!(
        invalid("postgres_read_connections = 1000"),
        "invalid configuration: postgres_read_connections must be from 1 to 256, not 1000"
    );
    let defaults = Config::from_toml_str("").unwrap();
    assert_eq!(defaults.postgres_writers, 4);
    assert_eq!(defaults.postgres_read_connections, 8);
    assert_eq!(defaults.max_user_agent_bytes, 512);
    assert_eq!(defaults.max_page_url_bytes, 4096);
    assert_eq!(defaults.max_page_text_bytes, 1024);
    assert_eq!(defaults.max_events_per_session, 2000);
    assert_eq!(defaults.max_search_terms_per_session, 20);
    assert_eq!(defaults.visitor_ping_rate_limit_per_minute, 30);
    assert_eq!(defaults.client_ip_ping_rate_limit_per_minute, 600);
    assert_eq!(defaults.max_open_connections, 4096);
    assert_eq!(defaults.max_request_head_bytes, 16 * 1024);
    assert_eq!(defaults.visitor_rate_limit_events_per_minute, 300);
    assert_eq!(defaults.client_ip_rate_limit_events_per_minute, 1200);
    assert_eq!(defaults.max_body_bytes, 64 * 1024);
    assert_eq!(defaults.max_events_per_batch, 100);
}

/// Routes that read their body with axum's extractors (contacts, segments, the desk's
/// configuration) get the same whole-body deadline: a stalled body ends the request
/// instead of holding it, and nothing is created.
#[tokio::test]
async fn a_stalled_body_on_an_authenticated_route_is_cut_at_the_deadline() {
    use tower::ServiceExt;
    let app = TestApp::with_config(|config| config.body_read_timeout_seconds = 1);
    let (body, _release) = stalled_body("{\"firstName\":".to_owned());
    let request = axum::http::Request::post("/api/v2/externalcontacts/contacts")
        .header(axum::http::header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap();
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        footpath_collector::router(app.state.clone()).oneshot(request),
    )
    .await
    .expect("the request ends at the body deadline")
    .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let listing = app.get("/api/v2/externalcontacts/contacts").await.ok_json();
    assert_eq!(listing["entities"], json!([]), "{listing:#}");
}
