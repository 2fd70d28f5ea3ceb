//! The Journey API's public ingest: `POST .../webevents` and `GET .../ping`.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use footpath_collector::config::DeploymentPrivacyConfig;
use footpath_collector::timefmt::format_ms;
use serde_json::{json, Value};

use crate::openapi::{web_event_request, web_event_request_to};
use crate::support::*;

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

fn web_event(name: &str, time_ms: i64) -> Value {
    json!({
        "customerCookieId": VISITOR,
        "eventName": name,
        "createdDate": format_ms(time_ms),
    })
}

fn page_view(url: &str, time_ms: i64) -> Value {
    let mut event = web_event("page_viewed", time_ms);
    event["page"] = json!({ "url": url });
    event
}

async fn post(app: &TestApp, body: Value) -> TestResponse {
    app.send(web_event_request(body)).await
}

fn ping_uri(visitor: &str) -> String {
    format!("/api/v2/journey/deployments/{DEPLOYMENT}/customers/{visitor}/ping")
}

async fn ping(app: &TestApp) -> TestResponse {
    app.send(Request::get(ping_uri(VISITOR)).body(Body::empty()).unwrap())
        .await
}

#[tokio::test]
async fn a_web_event_is_recorded_enriched_and_answered() {
    let app = TestApp::new();
    let response = post(
        &app,
        json!({
            "customerCookieId": VISITOR.to_uppercase(),
            "eventName": "page_viewed",
            "page": {
                "url": "https://www.shop.example/products/boots?utm_source=news&utm_campaign=winter&q=red#reviews",
                "title": "Boots", "keywords": "boots,hiking", "lang": "en"
            },
            "userAgentString": CHROME,
            "browser": {"family": "Ignored", "lang": "en-GB"},
            "device": {"screenWidth": 1920, "screenHeight": 1080, "screenDensity": 100},
            "searchQuery": "red",
            "referrerUrl": "https://www.google.com/search?q=hiking+boots",
            "attributes": {"price": {"dataType": "Number", "value": "139.50"}},
            "traits": {"tier": {"dataType": "String", "value": "gold"}},
            "externalId": "customer-17",
            "createdDate": "2026-11-24T06:15:10.000Z",
            "aFieldWeDoNotKnow": [1, 2, 3]
        }),
    )
    .await
    .ok_json();
    let session_id = response["session"]["id"].as_str().unwrap().to_owned();
    let referrer = json!({
        "url": "https://www.google.com/search?q=hiking+boots",
        "domain": "google.com",
        "hostname": "www.google.com",
        "pathname": "/search",
        "queryString": "q=hiking+boots",
        "name": "Google",
        "medium": "search",
        "keywords": "hiking boots",
    });
    assert_eq!(
        response,
        json!({
            "customerId": VISITOR,
            "customerIdType": "cookie",
            "eventName": "page_viewed",
            "page": {
                "url": "https://www.shop.example/products/boots?utm_source=news&utm_campaign=winter&q=red#reviews",
                "title": "Boots",
                "domain": "shop.example",
                "hostname": "www.shop.example",
                "pathname": "/products/boots",
                "queryString": "utm_source=news&utm_campaign=winter&q=red",
                "fragment": "reviews",
                "keywords": "boots,hiking",
                "lang": "en",
            },
            "userAgentString": CHROME,
            "browser": {"family": "Chrome", "version": "120.0.0", "lang": "en-GB"},
            "device": {
                "category": "desktop", "type": "Other", "isMobile": false,
                "osFamily": "Windows", "osVersion": "10",
                "screenWidth": 1920, "screenHeight": 1080, "screenDensity": 100,
            },
            "searchQuery": "red",
            "mktCampaign": {"source": "news", "name": "winter"},
            "referrer": referrer,
            "session": {
                "id": session_id,
                "durationInSeconds": 0,
                "eventCount": 1,
                "pageviewCount": 1,
                "referrer": referrer,
                "createdDate": "2026-11-24T06:15:10.000Z",
            },
            "attributes": {"price": {"dataType": "Number", "value": "139.50"}},
            "traits": {"tier": {"dataType": "String", "value": "gold"}},
            "authenticated": false,
            "externalId": "customer-17",
            "createdDate": "2026-11-24T06:15:10.000Z",
        })
    );

    // The read API shows the same session and event.
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(session["id"], json!(session_id));
    assert_eq!(session["searchTerms"], json!(["red"]));
    assert_eq!(session["ipAddress"], json!("203.0.113.7"));
    let events = app.events_of(&session_id).await;
    assert_eq!(events.len(), 1);
    let id = events[0]["id"].as_str().unwrap();
    let uuid = uuid_version_and_ms(id);
    assert_eq!(
        uuid,
        (7, 1_795_500_910_000),
        "the id is a UUID v7 at createdDate"
    );
    assert_eq!(events[0]["webEvent"]["page"]["title"], json!("Boots"));
}

/// The version and the millisecond timestamp of a UUID v7, read from its text.
fn uuid_version_and_ms(id: &str) -> (u32, i64) {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    let ms = i64::from_str_radix(&hex[..12], 16).unwrap();
    let version = hex[12..13].parse::<u32>().unwrap();
    (version, ms)
}

#[tokio::test]
async fn a_minimal_web_event_uses_the_time_of_receipt() {
    let app = TestApp::new();
    let response = post(
        &app,
        json!({"customerCookieId": VISITOR, "eventName": "video_played"}),
    )
    .await
    .ok_json();
    assert_eq!(response["createdDate"], json!(format_ms(T0)));
    assert_eq!(response["eventName"], json!("video_played"));
    // The User-Agent header stands in for a missing userAgentString.
    assert_eq!(response["userAgentString"], json!(USER_AGENT));
    assert_eq!(response.get("page"), None);
    assert_eq!(response["session"]["pageviewCount"], json!(0));

    // A body that describes the browser, without a user agent string: the description
    // is used, and the caller's own User-Agent is not taken for the visitor's.
    let described = post(
        &app,
        json!({
            "customerCookieId": OTHER_VISITOR,
            "eventName": "video_played",
            "browser": {"family": "Safari", "version": "17.1", "lang": "fr-FR"},
            "device": {"category": "tablet", "type": "iPad", "osFamily": "iOS", "manufacturer": "Apple"},
        }),
    )
    .await
    .ok_json();
    assert_eq!(described.get("userAgentString"), None, "{described:#}");
    assert_eq!(
        described["browser"],
        json!({"family": "Safari", "version": "17.1", "lang": "fr-FR"})
    );
    assert_eq!(
        described["device"],
        json!({"category": "tablet", "type": "iPad", "isMobile": true, "osFamily": "iOS", "manufacturer": "Apple"})
    );
}

#[tokio::test]
async fn web_events_and_sdk_batches_share_the_session_rules() {
    let app = TestApp::new();
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![pageview(1, T0, "https://shop.example/")],
    ))
    .await
    .ok_json();
    let first = app.only_session_of(VISITOR).await;

    app.clock.advance_ms(5 * MINUTE);
    let joined = post(&app, web_event("cart_added", T0 + 5 * MINUTE))
        .await
        .ok_json();
    assert_eq!(joined["session"]["id"], first["id"]);
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(session["eventCount"], json!(2));
    assert_eq!(session["durationInSeconds"], json!(300));
    // The public answer tells the sender nothing about the session it did not send
    // itself: whoever knows a visitor id must not read the visitor's journey back.
    assert_eq!(
        joined["session"],
        json!({"id": first["id"], "eventCount": 1, "pageviewCount": 0, "durationInSeconds": 0,
               "createdDate": "2026-11-24T06:20:14.123Z"})
    );

    app.clock.advance_ms(21 * MINUTE);
    let later = post(
        &app,
        page_view("https://shop.example/again", T0 + 26 * MINUTE),
    )
    .await
    .ok_json();
    assert_ne!(later["session"]["id"], first["id"]);
    assert_eq!(later["session"]["eventCount"], json!(1));
    assert_eq!(app.sessions_of(VISITOR).await.len(), 2);
}

#[tokio::test]
async fn created_date_must_be_recent() {
    let app = TestApp::new();
    let hour = 60 * MINUTE;
    let cases: &[(i64, Option<&str>)] = &[
        (0, None),
        (-hour, None),
        (-hour - 1, Some("createdDate: is more than 1 hour old")),
        (-25 * hour, Some("createdDate: is more than 1 hour old")),
        (60 * SECOND, None),
        (
            60 * SECOND + 1,
            Some("createdDate: is more than 60 seconds in the future"),
        ),
    ];
    for &(offset, expected) in cases {
        let response = post(&app, web_event("clicked", T0 + offset)).await;
        match expected {
            None => {
                let body = response.ok_json();
                assert_eq!(
                    body["createdDate"],
                    json!(format_ms(T0 + offset)),
                    "{offset}"
                );
            }
            Some(message) => {
                assert_eq!(
                    response.assert_error(StatusCode::BAD_REQUEST, "bad.request"),
                    message,
                    "{offset}"
                );
            }
        }
    }
}

#[tokio::test]
async fn invalid_requests_name_the_field() {
    let app = TestApp::new();
    let with = |changes: Value| {
        let mut body = web_event("clicked", T0);
        for (name, value) in changes.as_object().unwrap() {
            body[name] = value.clone();
        }
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (with(json!({"eventName": "add to cart"})), "eventName: may contain only letters, digits and _"),
        (with(json!({"eventName": "x".repeat(65)})), "eventName: is longer than 64 bytes"),
        (with(json!({"customerCookieId": "42"})), "customerCookieId: must be a UUID"),
        (with(json!({"eventName": "page_viewed"})), "page: is required for a pageview"),
        (
            with(json!({"eventName": "page_viewed", "page": {"url": "/relative"}})),
            "page.url: must be an absolute http or https URL",
        ),
        (
            with(json!({"createdDate": "24/11/2026"})),
            "createdDate: must be an ISO-8601 date and time with a time zone, such as 2026-11-24T06:15:14.123Z",
        ),
        (
            with(json!({"attributes": {"bad-name": {"dataType": "String", "value": "x"}}})),
            "attributes.bad-name: may contain only letters, digits and _",
        ),
        (
            with(json!({"traits": {"age": {"dataType": "Number", "value": "old"}}})),
            "traits.age.value: is not a number",
        ),
        (with(json!({"externalId": "x".repeat(1025)})), "externalId: is longer than 1024 bytes"),
    ];
    for (body, expected) in cases {
        let response = post(&app, body.clone()).await;
        assert_eq!(
            response.assert_error(StatusCode::BAD_REQUEST, "bad.request"),
            expected,
            "{body}"
        );
    }
    let mut not_json = web_event_request(json!({}));
    *not_json.body_mut() = Body::from("{oops");
    let message = app
        .send(not_json)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad.request");
    assert!(message.starts_with("body: is not valid JSON"), "{message}");
    assert!(
        app.sessions_of(VISITOR).await.is_empty(),
        "nothing was stored"
    );
}

#[tokio::test]
async fn cors_follows_the_deployment_and_allows_servers() {
    let app = TestApp::new();
    let from = |origin: Option<&str>| {
        let mut request = web_event_request(web_event("clicked", T0));
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert(header::ORIGIN, origin.parse().unwrap());
        }
        request
    };
    let allowed = app.send(from(Some(ORIGIN))).await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(allowed.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(allowed.header("vary"), Some("Origin"));

    let server = app.send(from(None)).await;
    assert_eq!(server.status, StatusCode::OK);
    assert_eq!(server.header("access-control-allow-origin"), None);

    let evil = app.send(from(Some("https://evil.example"))).await;
    let message = evil.assert_error(StatusCode::FORBIDDEN, "origin.not.allowed");
    assert_eq!(
        message,
        "origin https://evil.example may not send events for deployment \"shop\""
    );
    assert_eq!(evil.header("access-control-allow-origin"), None);
    assert_eq!(app.only_session_of(VISITOR).await["eventCount"], json!(2));

    let unknown = app
        .send(web_event_request_to("ghost", web_event("clicked", T0)))
        .await;
    assert_eq!(
        unknown.assert_error(StatusCode::NOT_FOUND, "deployment.not.found"),
        "deploymentId: no deployment \"ghost\" is configured"
    );

    let preflight = |origin: &str| {
        Request::options(format!(
            "/api/v2/journey/deployments/{DEPLOYMENT}/webevents"
        ))
        .header(header::ORIGIN, origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .body(Body::empty())
        .unwrap()
    };
    let ok = app.send(preflight(ORIGIN)).await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    assert_eq!(ok.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(ok.header("access-control-allow-methods"), Some("POST"));
    assert_eq!(
        ok.header("access-control-allow-headers"),
        Some("content-type")
    );
    let refused = app.send(preflight("https://evil.example")).await;
    refused.assert_error(StatusCode::FORBIDDEN, "origin.not.allowed");
    assert_eq!(refused.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn identity_resolution_applies_to_web_events() {
    let app = crate::identity::with_identity_verification(false);
    let ada = app
        .create_contact(json!({"firstName": "Ada", "workEmail": "ada@example.com"}))
        .await;
    let ada_id = ada["id"].as_str().unwrap();

    let anonymous = post(&app, page_view("https://shop.example/", T0))
        .await
        .ok_json();
    let session_id = anonymous["session"]["id"].as_str().unwrap().to_owned();
    let session = app
        .get(&format!("/api/v2/journey/sessions/{session_id}"))
        .await
        .ok_json();
    assert_eq!(session.get("externalContact"), None);

    let mut identified = web_event("identified", T0 + SECOND);
    identified["externalId"] = json!("ada");
    let signed = crate::identity::token(json!({"sub": "ada", "email": "ada@example.com"}));
    identified["traits"] = json!({"email": {"dataType": "String", "value": "ADA@example.com"},
                                  "identityToken": {"dataType": "String", "value": signed}});
    post(&app, identified).await.ok_json();
    let session = app
        .get(&format!("/api/v2/journey/sessions/{session_id}"))
        .await
        .ok_json();
    assert_eq!(
        session["externalContact"]["id"],
        json!(ada_id),
        "{session:#}"
    );
    assert_eq!(
        identifiers(&app.contact(ada_id).await),
        pairs(&[("Email", "ada@example.com"), ("Cookie", VISITOR)])
    );

    // Logged out: the session closes and the cookie leaves the contact.
    post(&app, web_event("logged_out", T0 + 2 * SECOND))
        .await
        .ok_json();
    let next = post(&app, page_view("https://shop.example/", T0 + 3 * SECOND))
        .await
        .ok_json();
    assert_ne!(next["session"]["id"], json!(session_id));
    let next_session = app
        .get(&format!(
            "/api/v2/journey/sessions/{}",
            next["session"]["id"].as_str().unwrap()
        ))
        .await
        .ok_json();
    assert_eq!(
        next_session.get("externalContact"),
        None,
        "{next_session:#}"
    );
    assert_eq!(
        identifiers(&app.contact(ada_id).await),
        pairs(&[("Email", "ada@example.com")])
    );
}

#[tokio::test]
async fn ip_address_is_believed_only_from_trusted_proxies() {
    let claimed = "198.51.100.23";
    let body = || {
        let mut event = web_event("clicked", T0);
        event["ipAddress"] = json!(claimed);
        event
    };
    // From an ordinary client, the claim is ignored.
    let app = TestApp::new();
    post(&app, body()).await.ok_json();
    assert_eq!(
        app.only_session_of(VISITOR).await["ipAddress"],
        json!("203.0.113.7")
    );

    // From a trusted proxy (a site's server), it is the visitor's address; and an
    // excluded address drops the event.
    let app = TestApp::with_config(|config| {
        config.trusted_proxies = vec!["203.0.113.0/24".parse().unwrap()];
    });
    post(&app, body()).await.ok_json();
    assert_eq!(
        app.only_session_of(VISITOR).await["ipAddress"],
        json!(claimed)
    );

    let app = TestApp::with_config(|config| {
        config.trusted_proxies = vec!["203.0.113.7".parse().unwrap()];
        config.deployment_privacy = vec![DeploymentPrivacyConfig {
            deployment_id: DEPLOYMENT.to_owned(),
            ip_exclusions: vec![claimed.parse().unwrap()],
            store_ip_address: true,
            retention_days: None,
            honor_global_privacy_control: true,
        }];
    });
    let dropped = post(&app, body()).await;
    assert_eq!(dropped.status, StatusCode::NO_CONTENT);
    assert!(dropped.body.is_empty());
    assert!(app.sessions_of(VISITOR).await.is_empty());
    let stats = app.get("/api/v2/footpath/stats").await.ok_json();
    assert_eq!(stats["excludedEventsTotal"], json!(1));
}

#[tokio::test]
async fn a_ping_keeps_the_live_session_alive() {
    let app = TestApp::new();
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![pageview(1, T0, "https://shop.example/")],
    ))
    .await
    .ok_json();
    let session_id = app.only_session_of(VISITOR).await["id"].clone();

    app.clock.advance_ms(15 * MINUTE);
    let response = ping(&app).await;
    assert_eq!(
        response.ok_json(),
        json!({"actions": [], "pollIntervalMilliseconds": 10000})
    );
    assert_eq!(response.header("cache-control"), Some("no-store"));
    // The ping is written by the next sweep (or the visitor's next batch), not by the
    // ping itself.
    assert_eq!(
        app.only_session_of(VISITOR).await["durationInSeconds"],
        json!(0)
    );
    assert_eq!(app.sweep(), 0);
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(session["durationInSeconds"], json!(15 * 60), "{session:#}");
    assert_eq!(session["eventCount"], json!(1), "a ping is not an event");

    // 30 minutes after the pageview, but 15 after the ping: still the same session, and
    // the sweep does not end it.
    app.clock.advance_ms(15 * MINUTE);
    assert_eq!(app.sweep(), 0);
    app.post_batch(&batch(
        VISITOR,
        T0 + 30 * MINUTE,
        vec![pageview(2, T0 + 30 * MINUTE, "https://shop.example/later")],
    ))
    .await
    .ok_json();
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(session["id"], session_id);
    assert_eq!(session["eventCount"], json!(2));
}

#[tokio::test]
async fn a_ping_without_a_live_session_does_nothing() {
    let app = TestApp::new();
    // No session at all: nothing is created.
    ping(&app).await.ok_json();
    assert!(app.sessions_of(VISITOR).await.is_empty());

    // An idle session is not revived, even before the sweep ended it.
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![pageview(1, T0, "https://shop.example/")],
    ))
    .await
    .ok_json();
    app.clock.advance_ms(20 * MINUTE);
    ping(&app).await.ok_json();
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(session["durationInSeconds"], json!(0), "{session:#}");
    assert_eq!(app.sweep(), 1);

    // A session that a logout closed is not kept alive either.
    app.post_batch(&batch(
        OTHER_VISITOR,
        T0 + 20 * MINUTE,
        vec![
            pageview(2, T0 + 20 * MINUTE - SECOND, "https://shop.example/"),
            logout(3, T0 + 20 * MINUTE),
        ],
    ))
    .await
    .ok_json();
    app.clock.advance_ms(MINUTE);
    app.send(
        Request::get(ping_uri(OTHER_VISITOR))
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .ok_json();
    let closed = app.only_session_of(OTHER_VISITOR).await;
    assert_eq!(closed["durationInSeconds"], json!(1), "{closed:#}");
}

#[tokio::test]
async fn ping_errors_and_settings() {
    let app = TestApp::with_config(|config| config.ping_poll_interval_milliseconds = 30_000);
    let get = |uri: String, origin: Option<&str>| {
        let mut builder = Request::get(uri);
        if let Some(origin) = origin {
            builder = builder.header(header::ORIGIN, origin);
        }
        builder.body(Body::empty()).unwrap()
    };
    let ok = app.send(get(ping_uri(VISITOR), Some(ORIGIN))).await;
    assert_eq!(ok.ok_json()["pollIntervalMilliseconds"], json!(30_000));
    assert_eq!(ok.header("access-control-allow-origin"), Some(ORIGIN));

    let with_query = format!(
        "{}?dl=https%3A%2F%2Fshop.example%2F&dt=Home&sessionId=abc&sinceLastBeaconMilliseconds=1500&appNamespace=web",
        ping_uri(VISITOR)
    );
    app.send(get(with_query, None)).await.ok_json();

    let bad_beacon = format!("{}?sinceLastBeaconMilliseconds=soon", ping_uri(VISITOR));
    assert_eq!(
        app.send(get(bad_beacon, None))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad.request"),
        "sinceLastBeaconMilliseconds: must be a whole number from 0, not \"soon\""
    );
    assert_eq!(
        app.send(get(ping_uri("not-a-uuid"), None))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad.request"),
        "customerCookieId: must be a UUID"
    );
    let unknown = format!("/api/v2/journey/deployments/ghost/customers/{VISITOR}/ping");
    app.send(get(unknown, None))
        .await
        .assert_error(StatusCode::NOT_FOUND, "deployment.not.found");
    let evil = app
        .send(get(ping_uri(VISITOR), Some("https://evil.example")))
        .await;
    evil.assert_error(StatusCode::FORBIDDEN, "origin.not.allowed");
    assert_eq!(evil.header("access-control-allow-origin"), None);
}

fn session_reference_request(query: &str, origin: Option<&str>) -> Request<Body> {
    let mut request = Request::get(format!("/sdk/v1/session?{query}"))
        .body(Body::empty())
        .unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert(header::ORIGIN, origin.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn the_page_learns_its_live_session_and_nothing_else() {
    let app = TestApp::new();
    let query = format!("deploymentId={DEPLOYMENT}&visitorId={VISITOR}");
    // Nothing stored yet: no session to tell.
    let none = app
        .send(session_reference_request(&query, Some(ORIGIN)))
        .await;
    none.assert_error(StatusCode::NOT_FOUND, "not.found");
    assert_eq!(none.header("access-control-allow-origin"), Some(ORIGIN));

    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![pageview(1, T0, "https://shop.example/")],
    ))
    .await
    .ok_json();
    let session = app.only_session_of(VISITOR).await;
    let found = app
        .send(session_reference_request(&query, Some(ORIGIN)))
        .await;
    assert_eq!(
        found.ok_json(),
        json!({"id": session["id"], "shortId": session["shortId"]})
    );
    assert_eq!(found.header("cache-control"), Some("no-store"));
    assert_eq!(found.header("access-control-allow-origin"), Some(ORIGIN));

    // Another origin may not ask; bad parameters are named.
    app.send(session_reference_request(
        &query,
        Some("https://evil.example"),
    ))
    .await
    .assert_error(StatusCode::FORBIDDEN, "origin.not.allowed");
    let message = app
        .send(session_reference_request(
            &format!("deploymentId={DEPLOYMENT}&visitorId=nope"),
            None,
        ))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad.request");
    assert_eq!(message, "visitorId: must be a UUID");
    app.send(session_reference_request(
        &format!("deploymentId=elsewhere&visitorId={VISITOR}"),
        None,
    ))
    .await
    .assert_error(StatusCode::NOT_FOUND, "deployment.not.found");

    // Once the session is over (20 minutes without activity), there is none to tell.
    app.clock.advance_ms(21 * MINUTE);
    app.send(session_reference_request(&query, None))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not.found");
}
