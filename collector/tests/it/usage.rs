//! Usage per deployment and UTC day: what `GET /api/v2/footpath/usage` reports after
//! the housekeeping runs, across midnight, an erase and retention.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::identity::{identity_verification, token_valid_at};
use crate::support::*;

const DAY: i64 = 24 * 60 * MINUTE;
/// 2026-11-24T00:00:00Z, the start of the tests' first day.
const DAY_ONE: i64 = T0 - (6 * 60 + 15) * MINUTE - 14_123;
const THIRD_VISITOR: &str = "1c2d3e4f-0000-4000-8000-0000000000c3";

fn usage_app() -> TestApp {
    TestApp::with_config(|config| {
        config.identity_verification = vec![identity_verification(false)];
        config.visitor_rate_limit_events_per_minute = 3;
        // Late events of an offline device (two days old) are accepted.
        config.max_event_age_hours = 72;
        config.deployment_privacy = vec![footpath_collector::config::DeploymentPrivacyConfig {
            retention_days: Some(1),
            ..footpath_collector::config::DeploymentPrivacyConfig::default_for(DEPLOYMENT)
        }];
    })
}

async fn post_now(app: &TestApp, visitor: &str, events: Vec<Value>) -> TestResponse {
    app.post_batch(&batch(visitor, app.clock.now_ms(), events))
        .await
}

/// The figures of one day of the shop, as served.
async fn shop_day(app: &TestApp, day: &str) -> Option<Value> {
    let report = app
        .get(&format!("/api/v2/footpath/usage?from={day}&to={day}"))
        .await
        .ok_json();
    let days = report["days"].as_array().unwrap();
    assert!(days.len() <= 1, "{report:#}");
    days.first().cloned()
}

#[tokio::test]
async fn usage_counts_accepted_and_refused_events_and_sessions_per_day() {
    let app = usage_app();
    let ada = app
        .create_contact(json!({"firstName": "Ada", "workEmail": "ada@example.com"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = app.clock.now_ms();
    let signed = token_valid_at(now, json!({"sub": "ada", "email": "ada@example.com"}));
    let mut bad = record(3, "Bad Name", now);
    bad["time"] = json!(now);
    let response = post_now(
        &app,
        VISITOR,
        vec![
            pageview(1, now, "https://shop.example/"),
            identify(2, now, Some("ada"), json!({"identityToken": signed})),
            bad,
        ],
    )
    .await
    .ok_json();
    assert_eq!(
        (response["accepted"].as_u64(), response["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    // Four events at once, over the visitor's three a minute: refused as a whole.
    let flood: Vec<Value> = (10..14).map(|n| record(n, "clicked", now)).collect();
    let refused = post_now(&app, THIRD_VISITOR, flood).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    // A session across midnight: one event each side.
    app.clock.set_ms(DAY_ONE + DAY - 10 * SECOND);
    post_now(
        &app,
        OTHER_VISITOR,
        vec![record(20, "cart_added", app.clock.now_ms())],
    )
    .await
    .ok_json();

    // Before housekeeping: nothing yet.
    assert_eq!(shop_day(&app, "2026-11-24").await, None);
    app.state.run_housekeeping().unwrap();
    // Refusals are stored at once; accepted events wait for the day to end.
    assert_eq!(
        shop_day(&app, "2026-11-24").await.unwrap(),
        json!({
            "deploymentId": DEPLOYMENT, "day": "2026-11-24", "complete": false,
            "eventsAccepted": {}, "eventsRefused": {"invalid": 1, "rate_limited": 4},
            "newSessions": 0, "totalSessions": 0, "identifiedSessions": 0,
        })
    );

    app.clock.set_ms(DAY_ONE + DAY + 10 * SECOND);
    post_now(
        &app,
        OTHER_VISITOR,
        vec![pageview(21, app.clock.now_ms(), "https://shop.example/")],
    )
    .await
    .ok_json();
    assert_eq!(app.sessions_of(OTHER_VISITOR).await.len(), 1);
    app.state.run_housekeeping().unwrap();
    let day_one = json!({
        "deploymentId": DEPLOYMENT, "day": "2026-11-24", "complete": true,
        "eventsAccepted": {"identify": 1, "pageview": 1, "record": 1},
        "eventsRefused": {"invalid": 1, "rate_limited": 4},
        "newSessions": 2, "totalSessions": 2, "identifiedSessions": 1,
    });
    assert_eq!(shop_day(&app, "2026-11-24").await.unwrap(), day_one);
    let report = app
        .get("/api/v2/footpath/usage?from=2026-11-20")
        .await
        .ok_json();
    assert_eq!(report["to"], "2026-11-25");
    assert_eq!(report["summarisedUntil"], "2026-11-25");
    // A second run changes nothing.
    app.state.run_housekeeping().unwrap();
    assert_eq!(shop_day(&app, "2026-11-24").await.unwrap(), day_one);

    // Ada is erased, and a day later her session is past retention: the figures of
    // the days stay as they were.
    app.send_json(
        "POST",
        &format!("/api/v2/footpath/privacy/contacts/{ada}/erase"),
        None,
    )
    .await
    .ok_json();
    app.clock.set_ms(DAY_ONE + 3 * DAY);
    let deleted = app.state.run_housekeeping().unwrap();
    assert_eq!(deleted.sessions, 2);
    assert_eq!(shop_day(&app, "2026-11-24").await.unwrap(), day_one);
    // The session across midnight counts on its second day too, as new on its first.
    assert_eq!(
        shop_day(&app, "2026-11-25").await.unwrap(),
        json!({
            "deploymentId": DEPLOYMENT, "day": "2026-11-25", "complete": true,
            "eventsAccepted": {"pageview": 1}, "eventsRefused": {},
            "newSessions": 0, "totalSessions": 1, "identifiedSessions": 0,
        })
    );
    // One deployment's figures only.
    let other = app
        .get(&format!(
            "/api/v2/footpath/usage?from=2026-11-24&to=2026-11-25&deploymentId={OPEN_DEPLOYMENT}"
        ))
        .await
        .ok_json();
    assert_eq!(other["days"], json!([]));
}

/// Retention waits for the figures: a session with an event received today (a late
/// event of an old visit) is not deleted before today is summarised.
#[tokio::test]
async fn retention_keeps_what_the_figures_still_need() {
    let app = usage_app();
    app.clock.set_ms(DAY_ONE + 3 * DAY);
    let now = app.clock.now_ms();
    // Recorded two days ago on a device that was offline, sent now.
    let late = batch(VISITOR, now, vec![record(1, "cart_added", now - 2 * DAY)]);
    app.post_batch(&late).await.ok_json();
    let session = app.only_session_of(VISITOR).await;
    let run = app.state.run_housekeeping().unwrap();
    // The session is two days old, past retention, but was received today: kept until
    // tomorrow's summary counts it.
    assert_eq!(
        session["createdDate"],
        footpath_collector::timefmt::format_ms(now - 2 * DAY)
    );
    assert_eq!(run.sessions, 0, "{session:#}");
    app.clock.advance_ms(2 * DAY);
    let run = app.state.run_housekeeping().unwrap();
    assert_eq!(run.sessions, 1);
    let day = footpath_collector::usage::format_day(footpath_collector::usage::utc_day(now));
    assert_eq!(
        shop_day(&app, &day).await.unwrap()["eventsAccepted"],
        json!({"record": 1})
    );
}

#[tokio::test]
async fn usage_ranges_are_checked_and_need_a_token() {
    let app = usage_app();
    let table: &[(&str, StatusCode)] = &[
        ("", StatusCode::OK),
        ("?from=2026-11-24&to=2026-11-24", StatusCode::OK),
        ("?from=2025-11-24&to=2026-11-24", StatusCode::OK),
        ("?from=2025-11-23&to=2026-11-24", StatusCode::BAD_REQUEST),
        ("?from=2026-11-25&to=2026-11-24", StatusCode::BAD_REQUEST),
        ("?from=2026-02-30", StatusCode::BAD_REQUEST),
        ("?to=tomorrow", StatusCode::BAD_REQUEST),
        ("?from=2026-11-24T00:00:00Z", StatusCode::BAD_REQUEST),
    ];
    for (query, expected) in table {
        let response = app.get(&format!("/api/v2/footpath/usage{query}")).await;
        assert_eq!(response.status, *expected, "{query}");
    }
    let long_id = format!("/api/v2/footpath/usage?deploymentId={}", "d".repeat(129));
    app.get(&long_id)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad.request");
    let anonymous = app
        .send(
            Request::get("/api/v2/footpath/usage")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    anonymous.assert_error(StatusCode::UNAUTHORIZED, "authentication.required");
}

const AGENT_TOKEN: &str = "agent-token-0123456789abcdef0123456789";

async fn desk_sign_in(app: &TestApp, token: &str) -> String {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .finish();
    let request = Request::post("/desk/signin")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let response = footpath_collector::router(app.state.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap();
    set_cookie.split(';').next().unwrap().trim().to_owned()
}

/// (status, Location, CSP, body) of a desk page.
async fn desk_page(
    app: &TestApp,
    uri: &str,
    cookie: Option<&str>,
) -> (StatusCode, Option<String>, Option<String>, String) {
    let mut request = Request::get(uri);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = footpath_collector::router(app.state.clone())
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let header_text = |name: header::HeaderName| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    let location = header_text(header::LOCATION);
    let csp = header_text(header::CONTENT_SECURITY_POLICY);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        location,
        csp,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn the_desk_usage_page_is_for_administrators_and_escapes_what_it_shows() {
    let app = TestApp::with_config(|config| {
        config.desk.agent_tokens = vec![AGENT_TOKEN.to_owned()];
    });
    let now = app.clock.now_ms();
    app.post_batch(&batch(
        VISITOR,
        now,
        vec![pageview(1, now, "https://shop.example/")],
    ))
    .await
    .ok_json();
    app.clock.advance_ms(DAY);
    app.state.run_housekeeping().unwrap();

    let (status, location, _, body) = desk_page(&app, "/desk/usage", None).await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/desk/signin"))
    );
    assert!(!body.contains("Page views"));

    let agent = desk_sign_in(&app, AGENT_TOKEN).await;
    let (status, _, _, body) = desk_page(&app, "/desk/usage", Some(&agent)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!body.contains("<table"), "{body}");

    let admin = desk_sign_in(&app, TOKEN).await;
    let (status, _, csp, body) = desk_page(
        &app,
        "/desk/usage?from=2026-11-24&to=2026-11-25",
        Some(&admin),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(csp.unwrap().contains("script-src 'self'"));
    assert!(
        body.contains("<tr><td>shop</td><td>2026-11-24</td><td>1</td><td>0</td><td>0</td><td>0</td><td></td><td></td><td>1</td><td>1</td><td>0</td></tr>"),
        "{body}"
    );
    assert!(!body.contains("<script"), "{body}");

    // What a request sends comes back escaped.
    let (status, _, _, body) = desk_page(
        &app,
        "/desk/usage?from=%3Cscript%3Ealert(1)%3C/script%3E",
        Some(&admin),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{body}"
    );
    assert!(!body.contains("<script>"), "{body}");
}

/// A whole batch refused once it named a configured deployment counts in that
/// deployment's usage under the reason `/metrics` gives it: another site's page (the
/// origin check), a malformed visitor id and a batch over the size limit included.
#[tokio::test]
async fn whole_batches_refused_for_a_known_deployment_count_in_its_usage() {
    let app = usage_app();
    let now = app.clock.now_ms();
    let events = |first: u32, count: u32| -> Vec<Value> {
        (first..first + count)
            .map(|n| record(n, "clicked", now))
            .collect()
    };
    // Two events from another site's page.
    let foreign = Request::post("/sdk/v1/batch")
        .header(header::CONTENT_TYPE, "text/plain;charset=UTF-8")
        .header(header::ORIGIN, "https://elsewhere.example")
        .body(Body::from(batch(VISITOR, now, events(1, 2)).to_string()))
        .unwrap();
    let response = app.send(foreign).await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    // One event under a visitor id that is not a UUID.
    let response = app
        .post_batch(&batch("not-a-uuid", now, events(3, 1)))
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    // 101 events: over `max_events_per_batch`.
    let response = app
        .post_batch(&batch(OTHER_VISITOR, now, events(10, 101)))
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    // A deployment nobody configured counts nowhere but in /metrics.
    let mut unknown = batch(VISITOR, now, events(200, 5));
    unknown["deploymentId"] = json!("nobody-configured-this");
    let response = app.post_batch(&unknown).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);

    app.state.run_housekeeping().unwrap();
    let today = footpath_collector::usage::format_day(footpath_collector::usage::utc_day(now));
    let day = shop_day(&app, &today).await.unwrap();
    assert_eq!(
        day["eventsRefused"],
        json!({"origin_not_allowed": 2, "invalid": 102}),
        "{day:#}"
    );
    let report = app
        .get(&format!("/api/v2/footpath/usage?from={today}&to={today}"))
        .await
        .ok_json();
    assert_eq!(report["days"].as_array().unwrap().len(), 1, "{report:#}");
}
