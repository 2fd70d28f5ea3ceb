//! `POST /sdk/v1/batch`: acceptance, rejection, deduplication and what gets stored.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};

use crate::support::*;

const HOUR: i64 = 60 * MINUTE;

/// A pageview with every page and context field, and a custom event with attributes,
/// sent by a device whose clock is one hour behind the server's.
fn full_batch() -> Value {
    let device_now = T0 - HOUR;
    batch(
        VISITOR,
        device_now,
        vec![
            json!({
                "id": event_id(1),
                "kind": "pageview",
                "name": "page_viewed",
                "time": device_now - 5 * SECOND,
                "page": {
                    "url": "https://www.shop.example/shoes/red?utm_source=news&color=red#reviews",
                    "title": "Red shoes",
                    "referrer": "https://search.example/results?q=red+shoes",
                    "lang": "en-GB",
                    "keywords": "shoes, red",
                    "searchQuery": "red shoes",
                    "campaign": {
                        "utm_source": "news",
                        "utm_medium": "email",
                        "utm_campaign": "spring",
                        "gclid": "abc123"
                    }
                },
                "context": {
                    "browserLang": "en-GB",
                    "screenWidth": 1920,
                    "screenHeight": 1080,
                    "screenDensity": 200,
                    "viewportWidth": 1280,
                    "viewportHeight": 720
                }
            }),
            json!({
                "id": event_id(2),
                "kind": "record",
                "name": "product_added",
                "time": device_now - 2 * SECOND,
                "attributes": { "price": 59.9, "sku": "RS-42", "gift": false },
                "traits": { "plan": "gold" }
            }),
        ],
    )
}

#[tokio::test]
async fn valid_batch_is_stored_and_readable_with_exact_values() {
    let app = TestApp::new();
    let response = app.post_batch(&full_batch()).await;
    assert_eq!(
        response.ok_json(),
        json!({
            "accepted": 2, "duplicates": 0, "rejected": 0,
            "results": [
                { "id": event_id(1), "status": "accepted" },
                { "id": event_id(2), "status": "accepted" }
            ]
        })
    );
    assert_eq!(response.header("access-control-allow-origin"), Some(ORIGIN));
    // The SDK reads Retry-After across origins only when it is exposed.
    assert_eq!(
        response.header("access-control-expose-headers"),
        Some("Retry-After")
    );
    assert_eq!(response.header("vary"), Some("Origin"));

    let listed = app.only_session_of(VISITOR).await;
    let session_id = listed["id"].as_str().unwrap().to_owned();
    let short_id = listed["shortId"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&session_id).is_ok(), "{session_id}");
    assert_eq!(
        uuid::Uuid::parse_str(&session_id)
            .unwrap()
            .get_version_num(),
        7
    );
    assert!(
        short_id.len() == 6 && short_id.bytes().all(|b| b.is_ascii_digit()),
        "{short_id}"
    );

    let session = app
        .get(&format!("/api/v2/journey/sessions/{session_id}"))
        .await
        .ok_json();
    // Times are the device times corrected by the hour the device is behind.
    assert_eq!(
        session,
        json!({
            "id": session_id,
            "customerId": VISITOR,
            "customerIdType": "cookie",
            "type": "web",
            "shortId": short_id,
            "createdDate": "2026-11-24T06:15:09.123Z",
            "durationInSeconds": 3,
            "eventCount": 2,
            "pageviewCount": 1,
            "lastPage": {
                "url": "https://www.shop.example/shoes/red?utm_source=news&color=red#reviews",
                "title": "Red shoes",
                "domain": "shop.example",
                "hostname": "www.shop.example",
                "pathname": "/shoes/red",
                "queryString": "utm_source=news&color=red",
                "fragment": "reviews",
                "keywords": "shoes, red",
                "lang": "en-GB"
            },
            "lastEvent": {
                "id": event_id(2),
                "eventName": "product_added",
                "createdDate": "2026-11-24T06:15:12.123Z"
            },
            "searchTerms": ["red shoes"],
            "referrer": {
                "url": "https://search.example/results?q=red+shoes",
                "domain": "search.example",
                "hostname": "search.example",
                "pathname": "/results",
                "queryString": "q=red+shoes",
                // An unknown host, but the landing page carries a gclid.
                "medium": "paid"
            },
            "mktCampaign": {
                "source": "news",
                "medium": "email",
                "name": "spring",
                "clickId": "abc123",
                "network": "Google Ads"
            },
            "userAgentString": USER_AGENT,
            "ipAddress": "203.0.113.7",
            // The test user agent is unknown to uap-core ("Other") but names Linux.
            "browser": {
                "family": "Other", "isMobile": false,
                "lang": "en-GB", "viewWidth": 1280, "viewHeight": 720
            },
            "device": {
                "category": "desktop", "type": "Other", "isMobile": false, "osFamily": "Linux",
                "screenWidth": 1920, "screenHeight": 1080, "screenDensity": 200
            },
            "authenticated": false,
            "segmentAssignments": [],
            "outcomeAchievements": []
        })
    );
    assert_eq!(listed, session, "the listing shows the same session card");

    let events = app
        .get(&format!("/api/v2/journey/sessions/{session_id}/events"))
        .await
        .ok_json();
    assert_eq!(events["entities"].as_array().unwrap().len(), 2);
    assert_eq!(events.get("nextUri"), None);
    assert_eq!(
        events["entities"][1],
        json!({
            "id": event_id(2),
            "customerId": VISITOR,
            "customerIdType": "cookie",
            "session": { "id": session_id, "type": "web" },
            "eventType": "WebEvent",
            "createdDate": "2026-11-24T06:15:12.123Z",
            "webEvent": {
                "eventName": "product_added",
                "totalEventCount": 2,
                "totalPageviewCount": 1,
                "attributes": {
                    "gift": { "dataType": "Boolean", "value": "false" },
                    "price": { "dataType": "Number", "value": "59.9" },
                    "sku": { "dataType": "String", "value": "RS-42" }
                },
                "traits": { "plan": { "dataType": "String", "value": "gold" } },
                "userAgentString": USER_AGENT,
                "ipAddress": "203.0.113.7",
                "browser": { "family": "Other", "isMobile": false },
                "device": {
                    "category": "desktop", "type": "Other", "isMobile": false,
                    "osFamily": "Linux"
                },
                "authenticated": false
            }
        })
    );
    let first = &events["entities"][0]["webEvent"];
    assert_eq!(first["eventName"], "page_viewed");
    assert_eq!(first["searchQuery"], "red shoes");
    assert_eq!(first["page"]["pathname"], "/shoes/red");
    assert_eq!(first["mktCampaign"]["network"], "Google Ads");
    assert_eq!(first["totalEventCount"], 1);
    assert_eq!(first["totalPageviewCount"], 1);
}

#[tokio::test]
async fn retried_batch_is_reported_duplicate_and_stored_once() {
    let app = TestApp::new();
    app.post_batch(&full_batch()).await.ok_json();
    let retry = app.post_batch(&full_batch()).await.ok_json();
    assert_eq!(
        retry,
        json!({
            "accepted": 0, "duplicates": 2, "rejected": 0,
            "results": [
                { "id": event_id(1), "status": "duplicate" },
                { "id": event_id(2), "status": "duplicate" }
            ]
        })
    );
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(session["eventCount"], 2);
    assert_eq!(session["pageviewCount"], 1);
    let events = app
        .get(&format!(
            "/api/v2/journey/sessions/{}/events",
            session["id"].as_str().unwrap()
        ))
        .await
        .ok_json();
    assert_eq!(events["entities"].as_array().unwrap().len(), 2);
}

/// The batch's text, gzip-compressed as the SDK's `CompressionStream` does.
fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn gzip_batches_are_stored_by_header_or_by_magic_bytes() {
    // The SDK's beacons cannot set Content-Encoding: the collector knows gzip by its
    // first bytes; other senders may say it.
    for (visitor, declared) in [(VISITOR, false), (OTHER_VISITOR, true)] {
        let app = TestApp::new();
        let mut request = batch_request(
            gzip(&batch(visitor, T0, vec![record(1, "clicked", T0)]).to_string()),
            "text/plain;charset=UTF-8",
            Some(ORIGIN),
        );
        if declared {
            request
                .headers_mut()
                .insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        }
        let body = app.send(request).await.ok_json();
        assert_eq!(body["accepted"], 1, "declared {declared}: {body}");
        assert_eq!(app.only_session_of(visitor).await["eventCount"], 1);
    }
}

#[tokio::test]
async fn the_same_event_twice_in_one_batch_is_stored_once() {
    let app = TestApp::new();
    let event = record(1, "clicked", T0);
    let response = app
        .post_batch(&batch(VISITOR, T0, vec![event.clone(), event]))
        .await;
    let body = response.ok_json();
    assert_eq!(
        (body["accepted"].clone(), body["duplicates"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(app.only_session_of(VISITOR).await["eventCount"], 1);
}

#[tokio::test]
async fn malformed_json_is_400_with_serde_message() {
    let app = TestApp::new();
    let response = app
        .send(batch_request("{\"v\": 1, oops", "text/plain", Some(ORIGIN)))
        .await;
    let message = response.assert_error(StatusCode::BAD_REQUEST, "bad.request");
    assert!(message.contains("line 1 column"), "{message}");
    // Errors reach an allowed origin too, so that the SDK can read them.
    assert_eq!(response.header("access-control-allow-origin"), Some(ORIGIN));

    let missing_field = json!({ "v": 1, "deploymentId": DEPLOYMENT, "sentAt": T0, "events": [] });
    let response = app.post_batch(&missing_field).await;
    let message = response.assert_error(StatusCode::BAD_REQUEST, "bad.request");
    assert!(message.contains("missing field `visitorId`"), "{message}");
}

#[tokio::test]
async fn batch_level_checks_name_the_field() {
    let app = TestApp::new();
    let mut wrong_version = batch(VISITOR, T0, vec![]);
    wrong_version["v"] = json!(2);
    let message = app
        .post_batch(&wrong_version)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad.request");
    assert_eq!(message, "v: must be 1, not 2");

    let message = app
        .post_batch(&batch("not-a-uuid", T0, vec![record(1, "a", T0)]))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad.request");
    assert_eq!(message, "visitorId: must be a UUID");

    let too_many: Vec<Value> = (0..101).map(|n| record(n, "clicked", T0)).collect();
    let message = app
        .post_batch(&batch(VISITOR, T0, too_many))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad.request");
    assert_eq!(
        message,
        "events: has 101 events, more than the limit of 100"
    );
    assert_no_sessions(&app).await;
}

#[tokio::test]
async fn empty_batch_is_fine() {
    let app = TestApp::new();
    let body = app.post_batch(&batch(VISITOR, T0, vec![])).await.ok_json();
    assert_eq!(
        body,
        json!({ "accepted": 0, "duplicates": 0, "rejected": 0, "results": [] })
    );
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let app = TestApp::new();
    let body = batch(VISITOR, T0, vec![record(1, "a", T0)]).to_string();
    let response = app
        .send(batch_request(
            body.clone(),
            "application/x-www-form-urlencoded",
            Some(ORIGIN),
        ))
        .await;
    response.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported.media.type");
    // application/json is accepted as well as text/plain.
    let response = app
        .send(batch_request(body, "application/json", Some(ORIGIN)))
        .await;
    assert_eq!(response.ok_json()["accepted"], 1);
}

#[tokio::test]
async fn unknown_deployment_is_404() {
    let app = TestApp::new();
    let mut unknown = batch(VISITOR, T0, vec![record(1, "a", T0)]);
    unknown["deploymentId"] = json!("nope");
    let message = app
        .post_batch(&unknown)
        .await
        .assert_error(StatusCode::NOT_FOUND, "deployment.not.found");
    assert!(message.contains("\"nope\""), "{message}");
}

#[tokio::test]
async fn disallowed_origin_is_403_and_nothing_is_stored() {
    let app = TestApp::new();
    let body = batch(VISITOR, T0, vec![record(1, "a", T0)]).to_string();
    for origin in [Some("https://evil.example"), None] {
        let response = app
            .send(batch_request(body.clone(), "text/plain", origin))
            .await;
        response.assert_error(StatusCode::FORBIDDEN, "origin.not.allowed");
        assert_eq!(response.header("access-control-allow-origin"), None);
    }
    assert_no_sessions(&app).await;

    // The other allowed origin of the deployment gets its own origin back.
    let response = app
        .send(batch_request(
            body,
            "text/plain",
            Some("https://www.shop.example"),
        ))
        .await;
    assert_eq!(response.ok_json()["accepted"], 1);
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some("https://www.shop.example")
    );
}

#[tokio::test]
async fn star_deployment_accepts_any_origin_or_none() {
    let app = TestApp::new();
    let mut open = batch(VISITOR, T0, vec![record(1, "a", T0)]);
    open["deploymentId"] = json!(OPEN_DEPLOYMENT);
    let response = app
        .send(batch_request(open.to_string(), "text/plain", None))
        .await;
    assert_eq!(response.ok_json()["accepted"], 1);
    open["events"] = json!([record(2, "b", T0)]);
    let response = app
        .send(batch_request(
            open.to_string(),
            "text/plain",
            Some("https://anyone.example"),
        ))
        .await;
    assert_eq!(response.ok_json()["accepted"], 1);
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some("https://anyone.example")
    );
}

#[tokio::test]
async fn preflight_is_answered_for_allowed_origins_only() {
    let app = TestApp::new();
    let preflight = |origin: &str| {
        Request::options("/sdk/v1/batch")
            .header(header::ORIGIN, origin)
            .header("access-control-request-method", "POST")
            .body(Body::empty())
            .unwrap()
    };
    let response = app.send(preflight(ORIGIN)).await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    assert_eq!(response.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(
        response.header("access-control-allow-methods"),
        Some("POST")
    );
    assert_eq!(
        response.header("access-control-allow-headers"),
        Some("content-type")
    );
    assert_eq!(response.header("access-control-max-age"), Some("86400"));
    assert_eq!(response.header("vary"), Some("Origin"));

    let app = TestApp::with_config(|config| config.deployments.truncate(1));
    let response = app.send(preflight("https://evil.example")).await;
    response.assert_error(StatusCode::FORBIDDEN, "origin.not.allowed");
    assert_eq!(response.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let app = TestApp::with_config(|config| config.max_body_bytes = 1_000);
    let padding = "x".repeat(1_000);
    let response = app
        .post_batch(&batch(VISITOR, T0, vec![record(1, &padding, T0)]))
        .await;
    response.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload.too.large");
    assert_no_sessions(&app).await;
}

#[tokio::test]
async fn too_old_event_is_rejected_while_its_neighbour_is_accepted() {
    let app = TestApp::new();
    let response = app
        .post_batch(&batch(
            VISITOR,
            T0,
            vec![
                record(1, "stale", T0 - 25 * HOUR),
                record(2, "fresh", T0 - SECOND),
            ],
        ))
        .await;
    assert_eq!(
        response.ok_json(),
        json!({
            "accepted": 1, "duplicates": 0, "rejected": 1,
            "results": [
                {
                    "id": event_id(1),
                    "status": "rejected",
                    "error": "events[0].time: is more than 24 hours old"
                },
                { "id": event_id(2), "status": "accepted" }
            ]
        })
    );
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(session["eventCount"], 1);
    assert_eq!(session["lastEvent"]["eventName"], "fresh");
}

#[tokio::test]
async fn event_from_the_future_is_rejected() {
    let app = TestApp::new();
    let body = app
        .post_batch(&batch(
            VISITOR,
            T0,
            vec![record(1, "later", T0 + 61 * SECOND), record(2, "now", T0)],
        ))
        .await
        .ok_json();
    assert_eq!(body["results"][0]["status"], "rejected");
    assert_eq!(
        body["results"][0]["error"],
        "events[0].time: is more than a minute after the batch's sentAt"
    );
    assert_eq!(body["results"][1]["status"], "accepted");
}

#[tokio::test]
async fn every_event_bad_is_400_with_results() {
    let app = TestApp::new();
    let response = app
        .post_batch(&batch(
            VISITOR,
            T0,
            vec![
                record(1, "order completed", T0),
                pageview(2, T0, "not a url"),
            ],
        ))
        .await;
    let body = response.json();
    assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body:#}");
    assert_eq!(
        body,
        json!({
            "status": 400,
            "code": "bad.request",
            "message": "events[0].name: may contain only letters, digits and _",
            "results": [
                {
                    "id": event_id(1),
                    "status": "rejected",
                    "error": "events[0].name: may contain only letters, digits and _"
                },
                {
                    "id": event_id(2),
                    "status": "rejected",
                    "error": "events[1].page.url: must be an absolute http or https URL"
                }
            ]
        })
    );
    assert_no_sessions(&app).await;
}

#[tokio::test]
async fn bad_event_names_are_rejected_per_event() {
    let app = TestApp::new();
    let long_name = "a".repeat(65);
    let mut wrong_kind_name = record(4, "viewed", T0);
    wrong_kind_name["kind"] = json!("pageview");
    wrong_kind_name["page"] = json!({ "url": "https://shop.example/" });
    let body = app
        .post_batch(&batch(
            VISITOR,
            T0,
            vec![
                record(1, "order_completed", T0),
                record(2, "", T0),
                record(3, &long_name, T0),
                wrong_kind_name,
                record(5, "naïve", T0),
            ],
        ))
        .await
        .ok_json();
    let errors: Vec<Value> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result.get("error").cloned().unwrap_or(Value::Null))
        .collect();
    assert_eq!(
        errors,
        vec![
            Value::Null,
            json!("events[1].name: is empty"),
            json!("events[2].name: is longer than 64 bytes"),
            json!("events[3].name: must be \"page_viewed\" for an event of kind pageview"),
            json!("events[4].name: may contain only letters, digits and _"),
        ]
    );
    assert_eq!(
        (body["accepted"].clone(), body["rejected"].clone()),
        (json!(1), json!(4))
    );
}

async fn assert_no_sessions(app: &TestApp) {
    let listing = app.get("/api/v2/journey/sessions").await.ok_json();
    assert_eq!(listing, json!({ "entities": [] }));
}
