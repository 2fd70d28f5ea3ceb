//! Server-side enrichment end to end: user agent, referrer, client IP through trusted
//! proxies, per-deployment IP exclusions and the choice not to store IP addresses.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use footpath_collector::config::DeploymentPrivacyConfig;
use serde_json::{json, Value};

use crate::mmdb::write_test_city_database;
use crate::support::*;

const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36";

fn landing_from_google() -> Value {
    json!({
        "id": event_id(1),
        "kind": "pageview",
        "name": "page_viewed",
        "time": T0 - 10 * SECOND,
        "page": {
            "url": "https://www.shop.example/shoes",
            "referrer": "https://www.google.com/search?q=red+shoes&hl=en"
        },
        "context": {
            "browserLang": "en-GB",
            "screenWidth": 1920,
            "screenHeight": 1080,
            "screenDensity": 125,
            "viewportWidth": 1536,
            "viewportHeight": 730
        }
    })
}

fn next_page_on_the_site() -> Value {
    json!({
        "id": event_id(2),
        "kind": "pageview",
        "name": "page_viewed",
        "time": T0 - 5 * SECOND,
        "page": {
            "url": "https://www.shop.example/shoes/red",
            "referrer": "https://www.shop.example/shoes"
        }
    })
}

#[tokio::test]
async fn chrome_from_google_search_is_enriched_on_the_session_and_the_events() {
    let app = TestApp::new();
    let request = batch_request_with(
        "203.0.113.7",
        &[],
        CHROME_WINDOWS,
        batch(
            VISITOR,
            T0,
            vec![landing_from_google(), next_page_on_the_site()],
        ),
    );
    app.send(request).await.ok_json();

    let session = app.only_session_of(VISITOR).await;
    let browser = json!({
        "family": "Chrome",
        "version": "120.0.6099",
        "isMobile": false,
        "lang": "en-GB",
        "viewWidth": 1536,
        "viewHeight": 730
    });
    let device = json!({
        "category": "desktop",
        "type": "Other",
        "isMobile": false,
        "osFamily": "Windows",
        "osVersion": "10",
        "screenWidth": 1920,
        "screenHeight": 1080,
        "screenDensity": 125
    });
    let google = json!({
        "url": "https://www.google.com/search?q=red+shoes&hl=en",
        "domain": "google.com",
        "hostname": "www.google.com",
        "pathname": "/search",
        "queryString": "q=red+shoes&hl=en",
        "name": "Google",
        "medium": "search",
        "keywords": "red shoes"
    });
    assert_eq!(session["browser"], browser, "{session:#}");
    assert_eq!(session["device"], device, "{session:#}");
    assert_eq!(session["referrer"], google, "{session:#}");
    assert_eq!(session["ipAddress"], "203.0.113.7");
    assert_eq!(
        session.get("geolocation"),
        None,
        "no GeoIP database is configured"
    );

    let events = app.events_of(session["id"].as_str().unwrap()).await;
    let landing = &events[0]["webEvent"];
    assert_eq!(landing["browser"], browser);
    assert_eq!(landing["device"], device);
    assert_eq!(landing["referrer"], google);
    assert_eq!(landing["page"]["domain"], "shop.example");
    // The second page has no context (no screen data), and came from the site itself.
    let next = &events[1]["webEvent"];
    assert_eq!(
        next["browser"],
        json!({ "family": "Chrome", "version": "120.0.6099", "isMobile": false })
    );
    assert_eq!(next["device"]["osFamily"], "Windows");
    assert_eq!(next["device"].get("screenWidth"), None);
    assert_eq!(
        next["referrer"],
        json!({
            "url": "https://www.shop.example/shoes",
            "domain": "shop.example",
            "hostname": "www.shop.example",
            "pathname": "/shoes",
            "medium": "internal"
        })
    );
}

#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let app = TestApp::with_config(|config| {
        config.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    });
    // (socket peer, X-Forwarded-For, visitor, the stored address)
    let table = [
        (
            "10.0.0.2",
            "198.51.100.1, 81.2.69.142",
            VISITOR,
            "81.2.69.142",
        ),
        ("198.51.100.9", "81.2.69.142", OTHER_VISITOR, "198.51.100.9"),
    ];
    for (n, (peer, forwarded_for, visitor, expected)) in table.into_iter().enumerate() {
        let event = pageview(n as u32 + 1, T0, "https://shop.example/");
        let request = batch_request_from(peer, &[forwarded_for], batch(visitor, T0, vec![event]));
        app.send(request).await.ok_json();
        let session = app.only_session_of(visitor).await;
        assert_eq!(session["ipAddress"], expected, "{peer} {forwarded_for}");
    }
}

fn exclude(config: &mut footpath_collector::config::Config, ranges: &[&str]) {
    config.deployment_privacy = vec![DeploymentPrivacyConfig {
        ip_exclusions: ranges.iter().map(|range| range.parse().unwrap()).collect(),
        ..DeploymentPrivacyConfig::default_for(DEPLOYMENT)
    }];
}

async fn excluded_events_total(app: &TestApp) -> Value {
    app.get("/api/v2/footpath/stats").await.ok_json()
}

#[tokio::test]
async fn excluded_addresses_are_dropped_and_counted() {
    let app = TestApp::with_config(|config| {
        config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        exclude(
            config,
            &["81.2.69.142", "198.51.100.0/24", "2001:db8:abcd::/48"],
        );
    });
    assert_eq!(
        excluded_events_total(&app).await,
        json!({ "excludedEventsTotal": 0 })
    );

    // (socket peer, X-Forwarded-For): a single address, an IPv4 range, and an IPv6
    // range behind a trusted proxy.
    let excluded = [
        ("81.2.69.142", None),
        ("198.51.100.200", None),
        ("127.0.0.1", Some("2001:db8:abcd:1::5")),
    ];
    for (n, (peer, forwarded_for)) in excluded.into_iter().enumerate() {
        let n = n as u32;
        let events = vec![
            pageview(10 * n + 1, T0, "https://shop.example/"),
            record(10 * n + 2, "product_added", T0),
        ];
        let request =
            batch_request_from(peer, forwarded_for.as_slice(), batch(VISITOR, T0, events));
        let response = app.send(request).await;
        assert_eq!(response.status, StatusCode::NO_CONTENT, "{peer}");
        assert!(response.body.is_empty());
        // The site's origin may still read the answer.
        assert_eq!(response.header("access-control-allow-origin"), Some(ORIGIN));
    }
    assert!(
        app.sessions_of(VISITOR).await.is_empty(),
        "nothing is stored"
    );
    assert_eq!(
        excluded_events_total(&app).await,
        json!({ "excludedEventsTotal": 6 })
    );
    assert_eq!(app.state.excluded_events_total(), 6);

    // Neighbouring addresses are not excluded.
    for (n, peer) in ["81.2.69.143", "198.51.101.1"].into_iter().enumerate() {
        let event = pageview(100 + n as u32, T0, "https://shop.example/");
        let request = batch_request_from(peer, &[], batch(OTHER_VISITOR, T0, vec![event]));
        assert_eq!(app.send(request).await.ok_json()["accepted"], 1, "{peer}");
    }
    assert_eq!(
        excluded_events_total(&app).await,
        json!({ "excludedEventsTotal": 6 })
    );

    // The exclusions are the deployment's own: the open deployment takes the address.
    let mut open = batch(
        VISITOR,
        T0,
        vec![pageview(200, T0, "https://shop.example/")],
    );
    open["deploymentId"] = json!(OPEN_DEPLOYMENT);
    let response = app.send(batch_request_from("81.2.69.142", &[], open)).await;
    assert_eq!(response.ok_json()["accepted"], 1);

    // The stats route is an admin route.
    let anonymous = Request::get("/api/v2/footpath/stats")
        .body(Body::empty())
        .unwrap();
    app.send(anonymous)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "authentication.required");
}

#[tokio::test]
async fn without_stored_addresses_no_ip_is_stored_but_the_location_is() {
    let dir = tempfile::tempdir().unwrap();
    let geoip = write_test_city_database(dir.path());
    let app = TestApp::with_config(|config| {
        config.geoip_database_path = Some(geoip);
        config.deployment_privacy = vec![DeploymentPrivacyConfig {
            store_ip_address: false,
            ..DeploymentPrivacyConfig::default_for(DEPLOYMENT)
        }];
    });
    let events = vec![
        pageview(1, T0, "https://shop.example/"),
        record(2, "product_added", T0),
    ];
    let request = batch_request_from("81.2.69.142", &[], batch(VISITOR, T0, events));
    app.send(request).await.ok_json();

    let session = app.only_session_of(VISITOR).await;
    let id = session["id"].as_str().unwrap();
    let single = app
        .get(&format!("/api/v2/journey/sessions/{id}"))
        .await
        .ok_json();
    let listing = app
        .get(&format!("/api/v2/journey/sessions/{id}/events"))
        .await
        .ok_json();
    for json in [&session, &single, &listing] {
        let text = json.to_string();
        assert!(!text.contains("ipAddress"), "{json:#}");
        assert!(!text.contains("81.2.69.142"), "{json:#}");
    }
    assert_eq!(session["geolocation"]["locality"], "London", "{session:#}");
    assert_eq!(
        listing["entities"][1]["webEvent"]["geolocation"]["country"],
        "GB"
    );

    // Nor is it anywhere in the database files.
    let mut found = Vec::new();
    for entry in std::fs::read_dir(app.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            if bytes.windows(11).any(|window| window == b"81.2.69.142") {
                found.push(path);
            }
        }
    }
    assert_eq!(found, Vec::<std::path::PathBuf>::new());
}

#[tokio::test]
async fn excluded_traffic_spends_no_rate_allowance() {
    // A visitor allowed 2 events a minute sends 3 batches of 2 from an excluded
    // office address: each is dropped (204), none is rate limited (429, which the
    // SDK would retry), and the visitor's allowance is intact afterwards.
    let app = TestApp::with_config(|config| {
        config.visitor_rate_limit_events_per_minute = 2;
        exclude(config, &["81.2.69.142"]);
    });
    for n in 0..3u32 {
        let events = vec![
            pageview(10 * n + 1, T0, "https://shop.example/"),
            record(10 * n + 2, "product_added", T0),
        ];
        let response = app
            .send(batch_request_from(
                "81.2.69.142",
                &[],
                batch(VISITOR, T0, events),
            ))
            .await;
        assert_eq!(response.status, StatusCode::NO_CONTENT, "batch {n}");
    }
    let events = vec![
        pageview(101, T0, "https://shop.example/"),
        record(102, "product_added", T0),
    ];
    let response = app
        .send(batch_request_from(
            "81.2.69.143",
            &[],
            batch(VISITOR, T0, events),
        ))
        .await;
    assert_eq!(response.ok_json()["accepted"], 2);
}

/// A page view of the shop whose referrer is `referrer`.
fn pageview_from(n: u32, referrer: &str) -> Value {
    json!({
        "id": event_id(n),
        "kind": "pageview",
        "name": "page_viewed",
        "time": T0 - 10 * SECOND,
        "page": { "url": "https://www.shop.example/shoes", "referrer": referrer }
    })
}

/// The name, medium and search terms of the referrer that `app` stores for a visitor's
/// first page view (event `n`) from `referrer`, read back through the Journey API.
async fn stored_referrer(app: &TestApp, visitor: &str, n: u32, referrer: &str) -> Value {
    let request = batch_request_from(
        "203.0.113.7",
        &[],
        batch(visitor, T0, vec![pageview_from(n, referrer)]),
    );
    let response = app.send(request).await.ok_json();
    assert_eq!(response["accepted"], 1, "{response:#}");
    let session = app.only_session_of(visitor).await;
    let stored = &session["referrer"];
    json!({
        "name": stored["name"],
        "medium": stored["medium"],
        "keywords": stored["keywords"],
    })
}

#[tokio::test]
async fn the_embedded_referrer_list_names_search_social_and_email_referrers() {
    let app = TestApp::new();
    // (referrer, name, medium, search terms)
    let table = [
        (
            "https://www.google.co.uk/search?q=red+shoes",
            json!("Google"),
            "search",
            json!("red shoes"),
        ),
        (
            "https://www.bing.com/search?q=running%20shoes",
            json!("Bing"),
            "search",
            json!("running shoes"),
        ),
        (
            "https://l.facebook.com/l.php?u=x",
            json!("Facebook"),
            "social",
            Value::Null,
        ),
        (
            "https://mail.google.com/mail/u/0/",
            json!("Gmail"),
            "email",
            Value::Null,
        ),
        (
            "https://search.example/?k=boots",
            Value::Null,
            "unknown",
            Value::Null,
        ),
    ];
    for (n, (referrer, name, medium, keywords)) in (1..).zip(table) {
        let visitor = format!("0190a1b2-c3d4-7e5f-8a9b-{n:012}");
        assert_eq!(
            stored_referrer(&app, &visitor, n, referrer).await,
            json!({ "name": name, "medium": medium, "keywords": keywords }),
            "{referrer}"
        );
    }
}

/// An operator's fuller list, given at startup, adds hosts that the embedded list
/// lacks, for the SDK's batches and for the Journey API's web events alike.
#[tokio::test]
async fn a_referrer_list_file_adds_hosts_to_the_embedded_list() {
    let list_dir = tempfile::tempdir().unwrap();
    let path = list_dir.path().join("referrers.json");
    std::fs::write(
        &path,
        r#"{ "search": { "Example Search": { "domains": ["search.example"], "parameters": ["k"] } } }"#,
    )
    .unwrap();
    let app = TestApp::with_config(|config| config.referrer_list_path = Some(path));
    assert_eq!(
        stored_referrer(&app, VISITOR, 1, "https://search.example/?k=boots").await,
        json!({ "name": "Example Search", "medium": "search", "keywords": "boots" })
    );
    // The embedded list still counts.
    assert_eq!(
        stored_referrer(
            &app,
            OTHER_VISITOR,
            2,
            "https://www.bing.com/search?q=boots"
        )
        .await,
        json!({ "name": "Bing", "medium": "search", "keywords": "boots" })
    );

    let visitor = "0190a1b2-c3d4-7e5f-8a9b-00000000000e";
    let response = app
        .send(crate::openapi::web_event_request(json!({
            "customerCookieId": visitor,
            "eventName": "page_viewed",
            "page": { "url": "https://www.shop.example/shoes" },
            "referrerUrl": "https://www.search.example/?k=trail+shoes",
        })))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{:?}", response.body);
    let session = app.only_session_of(visitor).await;
    assert_eq!(session["referrer"]["name"], "Example Search", "{session:#}");
    assert_eq!(session["referrer"]["keywords"], "trail shoes");
}

#[test]
fn a_malformed_referrer_list_file_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("referrers.json");
    std::fs::write(
        &path,
        r#"{ "social": { "Example": { "domains": "social.example" } } }"#,
    )
    .unwrap();
    let result = footpath_collector::AppState::new(
        footpath_collector::config::Config {
            referrer_list_path: Some(path.clone()),
            ..test_config(dir.path())
        },
        std::sync::Arc::new(footpath_collector::clock::ManualClock::new(T0)),
    );
    let error = result
        .err()
        .expect("a malformed referrer list must stop the collector")
        .to_string();
    let expected_start = format!("cannot load the referrer list {}: ", path.display());
    assert!(error.starts_with(&expected_start), "{error}");
    assert!(
        error.contains("invalid type: string \"social.example\", expected a sequence"),
        "{error}"
    );
}

/// A browser that sends Global Privacy Control (`Sec-GPC: 1`) is not tracked by a
/// deployment that honours it (the default): its batch is answered 204 and stored
/// nowhere, whatever the page's SDK options said. A deployment that turned it off
/// stores the batch like any other.
#[tokio::test]
async fn global_privacy_control_is_honoured_unless_the_deployment_says_otherwise() {
    let gpc_batch = |n: u32, value: &str| {
        let mut request = batch_request_from(
            "198.51.100.20",
            &[],
            batch(
                VISITOR,
                T0,
                vec![pageview(n, T0 - 1000, "https://shop.example/")],
            ),
        );
        request
            .headers_mut()
            .insert("sec-gpc", axum::http::HeaderValue::from_str(value).unwrap());
        request
    };
    let honouring = TestApp::new();
    let reply = honouring.send(gpc_batch(1, "1")).await;
    assert_eq!(
        reply.status,
        StatusCode::NO_CONTENT,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(
        honouring.sessions_of(VISITOR).await.is_empty(),
        "nothing stored"
    );
    // Any other value is not the signal.
    let reply = honouring.send(gpc_batch(2, "0")).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(honouring.sessions_of(VISITOR).await.len(), 1);
    let metrics = honouring
        .send(
            Request::get("/metrics")
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(
        metrics.contains("footpath_events_refused_total{reason=\"privacy_signal\"} 1"),
        "{metrics}"
    );

    let ignoring = TestApp::with_config(|config| {
        config.deployment_privacy = vec![footpath_collector::config::DeploymentPrivacyConfig {
            honor_global_privacy_control: false,
            ..footpath_collector::config::DeploymentPrivacyConfig::default_for(DEPLOYMENT)
        }];
    });
    let reply = ignoring.send(gpc_batch(1, "1")).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(ignoring.sessions_of(VISITOR).await.len(), 1);
}
