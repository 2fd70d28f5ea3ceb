//! Data rights: erasing and exporting a contact's or a visitor's data, seen from the
//! outside (the Journey API, the desk, the export), and who may do either.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::identity::{identity_verification, token_valid_at, with_identity_verification};
use crate::support::*;

/// Everything personal the visit below sends, each of which must be gone after an
/// erase, from every answer.
const PERSONAL: &[&str] = &[
    VISITOR,
    "ada@example.com",
    "Ada",
    "Lovelace",
    "user-42",
    "203.0.113.7",
    "TestBrowser",
    "X11",
    "reset-token-9f8e",
    "/account/",
    "blue boots",
    "Ada's account",
    "newsletter-ada",
    "search.example",
    "en-GB",
    "ORD-77",
    "+442079460018",
];

fn erase_visitor_uri(deployment: &str, visitor: &str) -> String {
    format!("/api/v2/footpath/privacy/deployments/{deployment}/visitors/{visitor}/erase")
}

fn export_visitor_uri(deployment: &str, visitor: &str) -> String {
    format!("/api/v2/footpath/privacy/deployments/{deployment}/visitors/{visitor}/export")
}

fn erase_contact_uri(contact: &str) -> String {
    format!("/api/v2/footpath/privacy/contacts/{contact}/erase")
}

fn export_contact_uri(contact: &str) -> String {
    format!("/api/v2/footpath/privacy/contacts/{contact}/export")
}

/// Ada's contact, and two sessions of her cookie: an anonymous one, then one in which
/// she signs in with a token bound to the cookie (which links the cookie to her). A
/// stranger's session alongside. Returns Ada's contact id.
async fn ada_visits(app: &TestApp) -> String {
    let ada = app
        .create_contact(json!({
            "firstName": "Ada", "lastName": "Lovelace", "workEmail": "ada@example.com",
            "cellPhone": "+442079460018"
        }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = app.clock.now_ms();
    app.post_batch(&batch(
        VISITOR,
        now,
        vec![pageview(1, now - SECOND, "https://shop.example/")],
    ))
    .await
    .ok_json();
    app.clock.advance_ms(2 * TIMEOUT);
    let now = app.clock.now_ms();
    let mut landing = pageview(
        2,
        now - 3 * SECOND,
        "https://shop.example/account/reset-token-9f8e?utm_source=newsletter-ada",
    );
    landing["page"]["title"] = json!("Ada's account");
    landing["page"]["referrer"] = json!("https://search.example/?q=ada@example.com");
    landing["page"]["lang"] = json!("en-GB");
    landing["context"] = json!({"browserLang": "en-GB", "screenWidth": 1280, "screenHeight": 800});
    let mut search = pageview(
        3,
        now - 2 * SECOND,
        "https://shop.example/search?q=blue+boots",
    );
    search["page"]["searchQuery"] = json!("blue boots");
    let mut order = record(4, "order_completed", now - SECOND);
    order["attributes"] = json!({"orderId": "ORD-77", "email": "ada@example.com"});
    let signed = token_valid_at(now, json!({"sub": "user-42", "email": "ada@example.com"}));
    app.post_batch(&batch(
        VISITOR,
        now,
        vec![
            landing,
            search,
            order,
            identify(
                5,
                now,
                Some("user-42"),
                json!({"identityToken": signed, "firstName": "Ada"}),
            ),
        ],
    ))
    .await
    .ok_json();
    app.post_batch(&batch(
        OTHER_VISITOR,
        now,
        vec![pageview(6, now, "https://shop.example/other?x=1")],
    ))
    .await
    .ok_json();
    ada
}

fn privacy_app() -> TestApp {
    with_identity_verification(false)
}

/// Every session in the collector with its events, as the Journey API shows them.
async fn everything(app: &TestApp) -> Vec<(Value, Vec<Value>)> {
    let listing = app
        .get("/api/v2/journey/sessions?pageSize=100")
        .await
        .ok_json();
    let mut all = Vec::new();
    for session in listing["entities"].as_array().unwrap() {
        let id = session["id"].as_str().unwrap();
        all.push((session.clone(), app.events_of(id).await));
    }
    all
}

/// The personal values that occur in `value`'s JSON text.
fn personal_in(value: &Value) -> Vec<&'static str> {
    let text = value.to_string();
    PERSONAL
        .iter()
        .copied()
        .filter(|personal| text.contains(personal))
        .collect()
}

/// (sessions, events, pageviews) over the whole collector.
fn counts(all: &[(Value, Vec<Value>)]) -> (usize, u64, u64) {
    let events = all
        .iter()
        .map(|(session, _)| session["eventCount"].as_u64().unwrap())
        .sum();
    let pageviews = all
        .iter()
        .map(|(session, _)| session["pageviewCount"].as_u64().unwrap())
        .sum();
    (all.len(), events, pageviews)
}

async fn post(app: &TestApp, uri: &str) -> TestResponse {
    app.send_json("POST", uri, None).await
}

/// A Customer-scope segment that every page view earns.
async fn define_customer_segment(app: &TestApp) {
    crate::segments::define(
        app,
        "segments",
        json!({"displayName": "Browsers", "color": "#1f77b4", "scope": "Customer",
               "journey": {"patterns": [{"eventName": "page_viewed", "count": 1}]}}),
    )
    .await;
}

#[tokio::test]
async fn an_export_holds_everything_stored_about_the_contact() {
    let app = privacy_app();
    define_customer_segment(&app).await;
    let ada = ada_visits(&app).await;
    let export = app.get(&export_contact_uri(&ada)).await.ok_json();
    assert_eq!(export["contact"]["id"], json!(ada));
    assert_eq!(export["contact"]["firstName"], "Ada");
    let sessions = export["sessions"].as_array().unwrap();
    // Both sessions of her cookie, the anonymous one too; not the stranger's.
    assert_eq!(sessions.len(), 2, "{export:#}");
    // Web events, with the segment events in their place beside them.
    let web_events = |session: &Value| -> Vec<Value> {
        session["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|exported| exported["event"]["eventType"] == "WebEvent")
            .cloned()
            .collect()
    };
    assert_eq!(web_events(&sessions[0]).len(), 4);
    assert_eq!(web_events(&sessions[1]).len(), 1);
    assert!(
        sessions[1]["events"].as_array().unwrap().len() > 1,
        "{export:#}"
    );
    let text = export.to_string();
    for expected in [
        VISITOR,
        "user-42",
        "203.0.113.7",
        "TestBrowser",
        "reset-token-9f8e",
        "ORD-77",
        "blue boots",
    ] {
        assert!(
            text.contains(expected),
            "{expected} missing from {export:#}"
        );
    }
    assert!(!text.contains(OTHER_VISITOR));
    let identify = &web_events(&sessions[0])[3];
    assert_eq!(identify["loginId"], "user-42");
    // The Customer-scope segment her cookie earned.
    let segments: Vec<&str> = export["customerSegments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|segment| segment["displayName"].as_str().unwrap())
        .collect();
    assert!(!segments.is_empty(), "{export:#}");
    assert!(
        segments.iter().all(|name| *name == "Browsers"),
        "{export:#}"
    );

    // The visitor's own export names the contact its cookie is linked to.
    let visitor = app
        .get(&export_visitor_uri(DEPLOYMENT, VISITOR))
        .await
        .ok_json();
    assert_eq!(visitor["visitor"]["customerCookieId"], VISITOR);
    assert_eq!(visitor["visitor"]["externalContactId"], json!(ada));
    assert_eq!(visitor["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(visitor.get("contact"), None);
}

/// The privacy tests' collector, on SQLite and on a fresh PostgreSQL database.
fn privacy_apps() -> [(&'static str, TestApp); 2] {
    [
        ("sqlite", privacy_app()),
        (
            "postgres",
            TestApp::with_config(|config| {
                config.identity_verification = vec![identity_verification(false)];
                config.database_url = Some(crate::postgres::fresh_database());
            }),
        ),
    ]
}

/// Every page of an export, from `uri` on, following `nextUri`.
async fn export_pages(app: &TestApp, uri: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut next = Some(uri.to_owned());
    while let Some(uri) = next {
        let page = app.get(&uri).await.ok_json();
        next = page["nextUri"].as_str().map(str::to_owned);
        pages.push(page);
        assert!(
            pages.len() <= 100,
            "an export that does not end: {pages:#?}"
        );
    }
    pages
}

/// The sessions of an export's pages, with the parts of a session that goes on from
/// one page to the next joined again.
fn joined_sessions(pages: &[Value]) -> Vec<Value> {
    let mut sessions: Vec<Value> = Vec::new();
    for page in pages {
        for session in page["sessions"].as_array().unwrap() {
            match sessions.last_mut() {
                Some(last) if last["session"]["id"] == session["session"]["id"] => {
                    let events = session["events"].as_array().unwrap().clone();
                    last["events"].as_array_mut().unwrap().extend(events);
                }
                _ => sessions.push(session.clone()),
            }
        }
    }
    sessions
}

/// A page's stored events (its web events; segment and outcome events come with them).
fn web_events_in(page: &Value) -> usize {
    page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|session| session["events"].as_array().unwrap())
        .filter(|exported| exported["event"]["eventType"] == "WebEvent")
        .count()
}

#[tokio::test]
async fn an_export_comes_in_pages_of_at_most_page_size_events_that_lose_nothing() {
    for (backend, app) in privacy_apps() {
        define_customer_segment(&app).await;
        let ada = ada_visits(&app).await;
        // One page, without `nextUri`: five events are far below the bounds.
        let whole = app.get(&export_contact_uri(&ada)).await.ok_json();
        assert_eq!(whole.get("nextUri"), None, "{backend}: {whole:#}");
        assert_eq!(web_events_in(&whole), 5, "{backend}");
        for page_size in [1, 2, 3, 5] {
            let first = format!("{}?pageSize={page_size}", export_contact_uri(&ada));
            let pages = export_pages(&app, &first).await;
            assert_eq!(
                pages.len(),
                5usize.div_ceil(page_size),
                "{backend}, pageSize {page_size}: {pages:#?}"
            );
            for page in &pages {
                let events = web_events_in(page);
                assert!(
                    (1..=page_size).contains(&events),
                    "{backend}, pageSize {page_size}: {events} events in {page:#}"
                );
                // Every page names whom it is about.
                assert_eq!(page["contact"], whole["contact"], "{backend}");
                assert_eq!(page["customerSegments"], whole["customerSegments"]);
            }
            assert_eq!(
                json!(joined_sessions(&pages)),
                whole["sessions"],
                "{backend}, pageSize {page_size}: the pages hold the whole export"
            );
        }
        // A cursor whose event is none of its session's is refused, not read from the
        // session's start.
        let next = app
            .get(&format!("{}?pageSize=1", export_contact_uri(&ada)))
            .await
            .ok_json()["nextUri"]
            .as_str()
            .unwrap()
            .to_owned();
        let (kept, _event) = next.rsplit_once('.').unwrap();
        let tampered = format!("{kept}.{}", event_id(999));
        app.get(&tampered)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad.request");
        // A visitor's export pages the same way.
        let pages = export_pages(
            &app,
            &format!("{}?pageSize=2", export_visitor_uri(DEPLOYMENT, VISITOR)),
        )
        .await;
        assert_eq!(pages.len(), 3, "{backend}");
        assert!(pages
            .iter()
            .all(|page| page["visitor"]["customerCookieId"] == VISITOR));
    }
}

/// Events of about 55 KB each: a page stops before the one that would take it past
/// `MAX_EXPORT_PAGE_BYTES`, and the next page goes on from there.
#[tokio::test]
async fn an_export_page_stays_within_its_byte_bound() {
    use footpath_collector::privacy::MAX_EXPORT_PAGE_BYTES;
    let app = privacy_app();
    let mut attributes = serde_json::Map::new();
    for n in 0..50 {
        attributes.insert(format!("field_{n}"), json!("x".repeat(1000)));
    }
    let events = 45;
    for n in 1..=events {
        let now = app.clock.now_ms();
        let mut big = record(n, "form_completed", now);
        big["attributes"] = Value::Object(attributes.clone());
        app.post_batch(&batch(VISITOR, now, vec![big]))
            .await
            .ok_json();
        app.clock.advance_ms(SECOND);
    }
    let uri = export_visitor_uri(DEPLOYMENT, VISITOR);
    let mut pages = Vec::new();
    let mut next = Some(uri.clone());
    while let Some(uri) = next {
        let response = app.get(&uri).await;
        assert!(
            response.body.len() <= MAX_EXPORT_PAGE_BYTES + 4096,
            "a page of {} bytes",
            response.body.len()
        );
        let page = response.ok_json();
        next = page["nextUri"].as_str().map(str::to_owned);
        pages.push(page);
    }
    assert!(pages.len() >= 2, "{} pages", pages.len());
    let sessions = joined_sessions(&pages);
    assert_eq!(sessions.len(), 1);
    let ids: Vec<&str> = sessions[0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|exported| exported["event"]["id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (1..=events).map(event_id).collect();
    assert_eq!(ids, expected, "every event once, in order");
}

#[tokio::test]
async fn erasing_a_contact_leaves_shells_that_count_and_name_nobody() {
    let app = privacy_app();
    let ada = ada_visits(&app).await;
    let before = everything(&app).await;
    assert!(!personal_in(&json!(before)).is_empty());

    let erased = post(&app, &erase_contact_uri(&ada)).await.ok_json();
    assert_eq!(
        erased,
        json!({"sessionsErased": 2, "eventsErased": 5, "cookieLinksRemoved": 1, "contactDeleted": true})
    );

    // Counts stay; nothing personal is left in any session or event.
    let after = everything(&app).await;
    assert_eq!(counts(&after), counts(&before));
    let shells: Vec<&(Value, Vec<Value>)> = after
        .iter()
        .filter(|(session, _)| session["customerId"] != OTHER_VISITOR)
        .collect();
    assert_eq!(shells.len(), 2);
    for (session, events) in &shells {
        assert_eq!(personal_in(session), Vec::<&str>::new(), "{session:#}");
        assert_eq!(
            personal_in(&json!(events)),
            Vec::<&str>::new(),
            "{:#}",
            json!(events)
        );
        assert_eq!(session.get("externalContact"), None);
        assert!(
            session.get("endedDate").is_some(),
            "a shell is ended: {session:#}"
        );
        for event in events.iter() {
            let web_event = &event["webEvent"];
            assert_eq!(web_event["attributes"], json!({}));
            assert_eq!(web_event["traits"], json!({}));
            if let Some(page) = web_event.get("page") {
                assert_eq!(page["url"], "https://shop.example/", "{event:#}");
            }
        }
    }
    // The two shells are not linked to each other by a common visitor id.
    assert_ne!(shells[0].0["customerId"], shells[1].0["customerId"]);
    // The stranger's session is untouched.
    let stranger = app.only_session_of(OTHER_VISITOR).await;
    assert_eq!(
        stranger["lastPage"]["url"],
        "https://shop.example/other?x=1"
    );

    // The contact, its identifiers and its cookie are gone everywhere.
    app.get(&format!("/api/v2/externalcontacts/contacts/{ada}"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not.found");
    let search = app
        .get("/api/v2/externalcontacts/contacts?q=ada")
        .await
        .ok_json();
    assert_eq!(search["total"], 0);
    assert!(app.sessions_of(VISITOR).await.is_empty());
    app.get(&export_contact_uri(&ada))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not.found");
    app.get(&export_visitor_uri(DEPLOYMENT, VISITOR))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not.found");

    // A second erase finds nothing and changes nothing.
    post(&app, &erase_contact_uri(&ada))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not.found");
    assert_eq!(everything(&app).await, after);

    // The same cookie coming back is a new visitor: a new session, no link.
    let now = app.clock.now_ms();
    app.post_batch(&batch(VISITOR, now, vec![record(7, "came_back", now)]))
        .await
        .ok_json();
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(session["eventCount"], 1);
    assert_eq!(session.get("externalContact"), None);
}

#[tokio::test]
async fn erasing_a_visitor_keeps_the_contact_but_not_the_cookie_link() {
    let app = privacy_app();
    let ada = ada_visits(&app).await;
    let before = everything(&app).await;

    let erased = post(&app, &erase_visitor_uri(DEPLOYMENT, VISITOR))
        .await
        .ok_json();
    assert_eq!(
        erased,
        json!({"sessionsErased": 2, "eventsErased": 5, "cookieLinksRemoved": 1, "contactDeleted": false})
    );
    let after = everything(&app).await;
    assert_eq!(counts(&after), counts(&before));
    for (session, events) in &after {
        if session["customerId"] == OTHER_VISITOR {
            continue;
        }
        // The contact's own record stays; nothing of the visit names it or the visitor.
        let personal = personal_in(&json!([session, events]));
        assert_eq!(
            personal,
            Vec::<&str>::new(),
            "{session:#} {:#}",
            json!(events)
        );
    }
    let contact = app.contact(&ada).await;
    assert_eq!(
        identifiers(&contact),
        pairs(&[("Email", "ada@example.com"), ("Phone", "+442079460018")])
    );
    let contact_sessions = app
        .get(&format!(
            "/api/v2/externalcontacts/contacts/{ada}/journey/sessions"
        ))
        .await
        .ok_json();
    assert_eq!(contact_sessions["entities"], json!([]));
    // The uppercase spelling of the same cookie is the same cookie: nothing left.
    post(
        &app,
        &erase_visitor_uri(DEPLOYMENT, &VISITOR.to_uppercase()),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not.found");
    assert_eq!(everything(&app).await, after);
}

/// What the desk shows of an erased session: a card with nothing personal in it.
#[tokio::test]
async fn the_desk_shows_nothing_personal_after_an_erase() {
    let app = privacy_app();
    let ada = ada_visits(&app).await;
    post(&app, &erase_contact_uri(&ada)).await.ok_json();
    let cookie = desk_sign_in(&app).await;
    let listing = desk_get(&app, "/desk/api/sessions", &cookie).await;
    let cards = listing.to_string();
    assert!(cards.contains(OTHER_VISITOR), "{listing:#}");
    let mut checked = 0;
    for session in everything(&app).await {
        let id = session.0["id"].as_str().unwrap();
        if session.0["customerId"] == OTHER_VISITOR {
            continue;
        }
        let card = desk_get(&app, &format!("/desk/api/sessions/{id}"), &cookie).await;
        assert_eq!(personal_in(&card), Vec::<&str>::new(), "{card:#}");
        checked += 1;
    }
    assert_eq!(checked, 2);
    // The stranger's card has the same browser and address; nothing of Ada's is left.
    for personal in [
        VISITOR,
        "ada@example.com",
        "Lovelace",
        "user-42",
        "reset-token-9f8e",
    ] {
        assert!(!cards.contains(personal), "{personal} in {listing:#}");
    }
}

/// An open desk hears of an erase and reloads what it shows; an erase that finds
/// nothing announces nothing.
#[tokio::test]
async fn open_desks_reload_after_an_erase() {
    let app = privacy_app();
    let ada = ada_visits(&app).await;
    let cookie = desk_sign_in(&app).await;
    let mut stream = open_desk_stream(&app.state, &cookie).await;

    let nobody = "00000000-0000-4000-8000-00000000dead";
    post(&app, &erase_visitor_uri(DEPLOYMENT, nobody))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not.found");
    // The next thing the desk hears is the stranger's new event, not the erase that
    // found nothing.
    app.post_batch(&batch(
        OTHER_VISITOR,
        T0,
        vec![record(90, "cart_added", T0 - 500)],
    ))
    .await;
    let announced = next_stream_event(&mut stream).await;
    assert!(announced.starts_with("event: visitor\n"), "{announced}");
    post(&app, &erase_contact_uri(&ada)).await.ok_json();
    let announced = next_stream_event(&mut stream).await;
    assert!(announced.starts_with("event: resync\n"), "{announced}");
    assert!(!announced.contains(&ada), "{announced}");
}

async fn desk_sign_in(app: &TestApp) -> String {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", TOKEN)
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

async fn desk_get(app: &TestApp, uri: &str, cookie: &str) -> Value {
    let request = Request::get(uri)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let response = footpath_collector::router(app.state.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{uri}");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

/// Ids that are not ids are 400, unknown ones 404; nothing without a configured token
/// erases or exports anything, or learns whether an id is known.
#[tokio::test]
async fn bad_ids_unknown_ids_and_strangers() {
    let app = privacy_app();
    let ada = ada_visits(&app).await;
    let unknown = "7f3c1b2a-0000-4000-8000-000000000000";
    let table: &[(&str, String, StatusCode)] = &[
        (
            "POST",
            erase_contact_uri("not-a-uuid"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            export_contact_uri("not-a-uuid"),
            StatusCode::BAD_REQUEST,
        ),
        ("POST", erase_contact_uri(unknown), StatusCode::NOT_FOUND),
        ("GET", export_contact_uri(unknown), StatusCode::NOT_FOUND),
        (
            "POST",
            erase_visitor_uri(DEPLOYMENT, "x"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            export_visitor_uri(DEPLOYMENT, "x"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            erase_visitor_uri(DEPLOYMENT, unknown),
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            export_visitor_uri(DEPLOYMENT, unknown),
            StatusCode::NOT_FOUND,
        ),
        // The stranger's sessions are the shop's, not another deployment's.
        (
            "POST",
            erase_visitor_uri(OPEN_DEPLOYMENT, OTHER_VISITOR),
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            erase_visitor_uri(&"d".repeat(129), VISITOR),
            StatusCode::BAD_REQUEST,
        ),
        // An export's page size and cursor are checked before anything is read.
        (
            "GET",
            format!("{}?pageSize=0", export_contact_uri(&ada)),
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            format!("{}?pageSize=1001", export_contact_uri(&ada)),
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            format!("{}?after=not-a-cursor", export_contact_uri(&ada)),
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            format!("{}?after=12.{unknown}.", export_contact_uri(&ada)),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (method, uri, expected) in table {
        let response = app.send_json(method, uri, None).await;
        assert_eq!(response.status, *expected, "{method} {uri}");
    }

    let targets = [
        ("POST", erase_contact_uri(&ada)),
        ("GET", export_contact_uri(&ada)),
        ("POST", erase_visitor_uri(DEPLOYMENT, VISITOR)),
        ("GET", export_visitor_uri(DEPLOYMENT, VISITOR)),
        ("POST", erase_contact_uri(unknown)),
    ];
    let desk_cookie = desk_sign_in(&app).await;
    let strangers: [(&str, Option<String>); 5] = [
        ("no token", None),
        (
            "a wrong token",
            Some("Bearer wrong-token-0123456789abcdef0123456789".to_owned()),
        ),
        ("a token's prefix", Some(format!("Bearer {}", &TOKEN[..20]))),
        ("a basic scheme", Some(format!("Basic {TOKEN}"))),
        ("a desk session", None),
    ];
    for (method, uri) in &targets {
        for (who, authorization) in &strangers {
            let mut request = Request::builder().method(*method).uri(uri);
            if let Some(authorization) = authorization {
                request = request.header(header::AUTHORIZATION, authorization);
            }
            if *who == "a desk session" {
                request = request.header(header::COOKIE, &desk_cookie);
            }
            let response = app.send(request.body(Body::empty()).unwrap()).await;
            // The same answer whether the id is known or not.
            response.assert_error(StatusCode::UNAUTHORIZED, "authentication.required");
            assert_eq!(response.header("www-authenticate"), Some("Bearer"), "{who}");
        }
    }
    // None of that erased anything.
    assert_eq!(app.contact(&ada).await["firstName"], "Ada");
    assert_eq!(app.sessions_of(VISITOR).await.len(), 2);
    // The second configured token works like the first.
    let request = Request::get(export_contact_uri(&ada))
        .header(header::AUTHORIZATION, format!("Bearer {SECOND_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(request).await.status, StatusCode::OK);
}

const DAY: i64 = 24 * 60 * MINUTE;

fn retention_app(days: u32) -> TestApp {
    TestApp::with_config(|config| {
        config.deployment_privacy = vec![footpath_collector::config::DeploymentPrivacyConfig {
            retention_days: Some(days),
            ..footpath_collector::config::DeploymentPrivacyConfig::default_for(DEPLOYMENT)
        }];
    })
}

/// A session of `visitor` in `deployment` now: a pageview and a custom event.
async fn visit(app: &TestApp, deployment: &str, visitor: &str, first_event: u32) {
    let now = app.clock.now_ms();
    let mut body = batch(
        visitor,
        now,
        vec![
            pageview(first_event, now - SECOND, "https://shop.example/"),
            record(first_event + 1, "cart_added", now),
        ],
    );
    body["deploymentId"] = json!(deployment);
    app.post_batch(&body).await.ok_json();
}

/// Every session of a deployment is whole: as many events as its card counts.
async fn assert_whole(app: &TestApp) -> usize {
    let all = everything(app).await;
    for (session, events) in &all {
        assert_eq!(
            session["eventCount"].as_u64().unwrap(),
            events
                .iter()
                .filter(|event| event["eventType"] == "WebEvent")
                .count() as u64,
            "{session:#}"
        );
    }
    all.len()
}

#[tokio::test]
async fn retention_deletes_whole_sessions_past_the_deployments_days_only() {
    let app = retention_app(2);
    // A segment, so that sessions have matches and visit evaluations to go with them.
    crate::segments::define(
        &app,
        "segments",
        json!({"displayName": "Viewers", "color": "#1f77b4",
               "journey": {"patterns": [{"eventName": "page_viewed", "count": 1}]}}),
    )
    .await;
    visit(&app, DEPLOYMENT, VISITOR, 1).await;
    visit(&app, OPEN_DEPLOYMENT, VISITOR, 3).await;
    let listing = app
        .get(&format!(
            "/api/v2/journey/sessions?deploymentId={DEPLOYMENT}&customerCookieId={VISITOR}"
        ))
        .await
        .ok_json();
    let old = &listing["entities"][0];
    assert_eq!(
        old["segmentAssignments"].as_array().unwrap().len(),
        1,
        "{old:#}"
    );
    let old_id = old["id"].as_str().unwrap().to_owned();
    app.clock.advance_ms(DAY);
    visit(&app, DEPLOYMENT, OTHER_VISITOR, 5).await;
    assert_eq!(assert_whole(&app).await, 3);

    // Two days after its last event, less a second: kept.
    app.clock.set_ms(T0 + 2 * DAY - 2 * SECOND);
    let kept = app.state.apply_retention(200, 10).unwrap();
    assert_eq!((kept.sessions, kept.events), (0, 0));
    app.clock.set_ms(T0 + 2 * DAY + SECOND);
    let run = app.state.apply_retention(200, 10).unwrap();
    assert_eq!((run.sessions, run.events), (1, 2));
    app.get(&format!("/api/v2/journey/sessions/{old_id}"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not.found");
    app.get(&format!("/api/v2/journey/sessions/{old_id}/events"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not.found");
    // The other deployment keeps everything; the newer session stays.
    assert_eq!(assert_whole(&app).await, 2);
    let left: Vec<Value> = everything(&app).await.into_iter().map(|(s, _)| s).collect();
    assert!(left.iter().any(|s| s["customerId"] == OTHER_VISITOR));
    assert!(left.iter().any(|s| s["customerId"] == VISITOR));
    // A second run finds nothing.
    let again = app.state.apply_retention(200, 10).unwrap();
    assert_eq!((again.sessions, again.events), (0, 0));
    // The visitor's next event starts a new session, as for a new visitor.
    visit(&app, DEPLOYMENT, VISITOR, 7).await;
    assert_eq!(app.sessions_of(VISITOR).await.len(), 2);
}

#[tokio::test]
async fn retention_works_in_bounded_chunks_of_whole_sessions() {
    let app = retention_app(1);
    let visitors = [
        "00000000-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000002",
        "00000000-0000-4000-8000-000000000003",
    ];
    for (n, visitor) in visitors.iter().enumerate() {
        visit(&app, DEPLOYMENT, visitor, 10 * n as u32 + 1).await;
        app.clock.advance_ms(MINUTE);
    }
    app.clock.advance_ms(2 * DAY);
    // One session per transaction, two transactions: one old session is left, whole.
    let run = app.state.apply_retention(1, 2).unwrap();
    assert_eq!((run.sessions, run.events), (2, 4));
    assert_eq!(assert_whole(&app).await, 1);
    // The oldest went first.
    assert_eq!(app.sessions_of(visitors[2]).await.len(), 1);
    let run = app.state.apply_retention(1, 2).unwrap();
    assert_eq!((run.sessions, run.events), (1, 2));
    assert_eq!(assert_whole(&app).await, 0);
}

/// Ada's values that nobody else's rows share (the stranger has the same address and
/// browser).
const ADA_ONLY: &[&str] = &[
    VISITOR,
    "ada@example.com",
    "Lovelace",
    "user-42",
    "reset-token-9f8e",
    "blue boots",
    "ORD-77",
    "newsletter-ada",
    "442079460018",
];

/// Below the API: no table holds any of Ada's values after her erase, and once the
/// write-ahead log is checkpointed, neither do the bytes of the database file (the
/// erase overwrites what it removes instead of leaving it in free space).
#[tokio::test]
async fn after_an_erase_the_database_file_holds_nothing_of_the_contact() {
    let app = privacy_app();
    // Its assignments are kept under keys that name the cookie and the contact.
    define_customer_segment(&app).await;
    let ada = ada_visits(&app).await;
    let path = app.dir.path().join("test.sqlite3");
    let connection = rusqlite::Connection::open(&path).unwrap();
    let found = |connection: &rusqlite::Connection| -> Vec<String> {
        let tables: Vec<String> = connection
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut found = Vec::new();
        for table in tables {
            let mut statement = connection
                .prepare(&format!("SELECT * FROM \"{table}\""))
                .unwrap();
            let columns = statement.column_count();
            let mut rows = statement.query([]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                for index in 0..columns {
                    let text = match row.get_ref(index).unwrap() {
                        rusqlite::types::ValueRef::Text(bytes)
                        | rusqlite::types::ValueRef::Blob(bytes) => {
                            String::from_utf8_lossy(bytes).into_owned()
                        }
                        _ => continue,
                    };
                    for personal in ADA_ONLY {
                        if text.contains(personal) {
                            found.push(format!("{table}: {personal}"));
                        }
                    }
                }
            }
        }
        found.sort();
        found.dedup();
        found
    };
    assert!(
        !found(&connection).is_empty(),
        "the check sees Ada before the erase"
    );
    post(&app, &erase_contact_uri(&ada)).await.ok_json();
    assert_eq!(found(&connection), Vec::<String>::new());

    // The collector is stopped first: its own checkpointer, which runs every few
    // milliseconds, would otherwise now and then hold the checkpoint lock (which
    // SQLite reports at once as busy instead of waiting for it).
    let TestApp {
        state, dir: _dir, ..
    } = app;
    drop(state);
    connection
        .busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    let checkpointed = (0..20).any(|_| {
        connection
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                row.get::<_, i64>(0)
            })
            .unwrap()
            == 0
    });
    assert!(checkpointed, "the checkpoint was blocked");
    let bytes = std::fs::read(&path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let left: Vec<&&str> = ADA_ONLY
        .iter()
        .filter(|personal| text.contains(**personal))
        .collect();
    assert_eq!(left, Vec::<&&str>::new());
}
