//! Segments and outcomes: evaluation on ingest (every key and operator, counts,
//! scopes and expiry), what sessions, their events and the desk card show, and how
//! changing or deleting a definition affects only what comes after.
//!
//! Every response goes through `TestApp::send`, so each is also validated against the
//! OpenAPI document.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};

use crate::mmdb::write_test_city_database;
use crate::support::*;

const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
const WINDOWS_CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const LONDON_IP: &str = "81.2.69.142";
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// POSTs a definition, asserting 201, and returns it.
pub async fn define(app: &TestApp, collection: &str, body: Value) -> Value {
    let response = app
        .send_json(
            "POST",
            &format!("/api/v2/journey/{collection}"),
            Some(&body),
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    response.json()
}

fn segment(name: &str, journey: Value) -> Value {
    json!({"displayName": name, "color": "#1f77b4", "journey": {"patterns": [journey]}})
}

fn searched_twice() -> Value {
    json!({
        "displayName": "Searched twice",
        "color": "#1f77b4",
        "scope": "Session",
        "shouldDisplayToAgent": true,
        "journey": {"patterns": [{
            "streamType": "Web",
            "count": 2,
            "criteria": [{"key": "searchQuery", "operator": "notEqual", "values": [""], "shouldIgnoreCase": false}],
        }]},
    })
}

fn order_completed() -> Value {
    json!({
        "displayName": "Order completed",
        "isPositive": true,
        "journey": {"patterns": [{"eventName": "order_completed", "count": 1}]},
        "associatedValueField": {"dataType": "Number", "name": "value"},
    })
}

fn search(n: u32, time: i64, term: &str) -> Value {
    let mut event = pageview(n, time, &format!("https://shop.example/products?q={term}"));
    event["page"]["searchQuery"] = json!(term);
    event
}

fn order(n: u32, time: i64, value: Value) -> Value {
    let mut event = record(n, "order_completed", time);
    event["attributes"] = json!({"value": value, "orderId": format!("ORD-{n}")});
    event
}

/// Posts events for `visitor` (accepted), from the default client.
async fn post(app: &TestApp, visitor: &str, events: Vec<Value>) {
    let response = app
        .post_batch(&batch(visitor, app.clock.now_ms(), events))
        .await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
}

/// Ids in a session's `segmentAssignments` (or `outcomeAchievements`).
fn assigned(session: &Value, list: &str, field: &str) -> Vec<String> {
    session[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[field]["id"].as_str().unwrap().to_owned())
        .collect()
}

fn segment_ids(session: &Value) -> Vec<String> {
    assigned(session, "segmentAssignments", "segment")
}

fn outcome_ids(session: &Value) -> Vec<String> {
    assigned(session, "outcomeAchievements", "outcome")
}

fn id(definition: &Value) -> String {
    definition["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn searched_twice_and_order_completed() {
    let app = TestApp::new();
    let segment = define(&app, "segments", searched_twice()).await;
    let outcome = define(&app, "outcomes", order_completed()).await;
    assert_eq!(segment["version"], json!(1));
    assert_eq!(segment["scope"], json!("Session"));
    assert_eq!(outcome["isPositive"], json!(true));

    post(&app, VISITOR, vec![search(1, T0 - 5 * SECOND, "boots")]).await;
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(
        segment_ids(&session),
        Vec::<String>::new(),
        "one search is not two"
    );

    post(
        &app,
        VISITOR,
        vec![
            pageview(2, T0 - 4 * SECOND, "https://shop.example/"),
            search(3, T0 - 3 * SECOND, "tent"),
            search(4, T0 - 2 * SECOND, "jacket"),
            order(5, T0 - SECOND, json!(139.5)),
            order(6, T0, json!(20)),
        ],
    )
    .await;
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(segment_ids(&session), [id(&segment)], "assigned once");
    assert_eq!(
        outcome_ids(&session),
        [id(&outcome)],
        "achieved once per session"
    );
    assert_eq!(
        session["segmentAssignments"][0]["assignedDate"],
        json!(footpath_collector::timefmt::format_ms(T0 - 3 * SECOND))
    );

    // The journey: each match follows the event that completed it.
    let session_id = session["id"].as_str().unwrap();
    let events = app.events_of(session_id).await;
    let types: Vec<String> = events
        .iter()
        .map(|event| {
            let name = event["webEvent"]["eventName"].as_str().unwrap_or("");
            format!("{}:{name}", event["eventType"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        types,
        [
            "WebEvent:page_viewed",
            "WebEvent:page_viewed",
            "WebEvent:page_viewed",
            "SegmentAssignment:",
            "WebEvent:page_viewed",
            "WebEvent:order_completed",
            "OutcomeAchieved:",
            "WebEvent:order_completed",
        ]
    );
    assert_eq!(
        events[3]["segmentAssignmentEvent"],
        json!({"segment": {"id": id(&segment)}})
    );
    assert_eq!(
        events[6]["outcomeAchievedEvent"],
        json!({
            "outcome": {"id": id(&outcome), "displayName": "Order completed", "version": 1},
            "associatedValue": 139.5,
        })
    );
    assert_eq!(events[6]["session"]["id"], json!(session_id));

    // Paging one entity at a time gives the same sequence, markers included.
    let mut paged = Vec::new();
    let mut next = Some(format!(
        "/api/v2/journey/sessions/{session_id}/events?pageSize=1"
    ));
    while let Some(uri) = next {
        let listing = app.get(&uri).await.ok_json();
        let entities = listing["entities"].as_array().unwrap();
        assert!(entities.len() <= 1, "{listing:#}");
        paged.extend(entities.iter().cloned());
        next = listing["nextUri"].as_str().map(str::to_owned);
    }
    assert_eq!(paged, events);
    let mut paged = Vec::new();
    let mut next = Some(format!(
        "/api/v2/journey/sessions/{session_id}/events?pageSize=3"
    ));
    while let Some(uri) = next {
        let listing = app.get(&uri).await.ok_json();
        paged.extend(listing["entities"].as_array().unwrap().iter().cloned());
        next = listing["nextUri"].as_str().map(str::to_owned);
    }
    assert_eq!(paged, events);
}

/// Every journey key and operator, with case folding and numbers given as text: one
/// segment per row, each looking at its own `probe_<n>` event, all in one session.
#[tokio::test]
async fn journey_criteria_on_every_event_key() {
    // (criterion, expected match) against one event: page, search, attributes below.
    let rows: Vec<(Value, bool)> = vec![
        (
            json!({"key": "page.url", "operator": "startsWith", "values": ["https://www.shop.example/cart"]}),
            true,
        ),
        (
            json!({"key": "page.url", "operator": "startsWith", "values": ["https://www.shop.example/CART"]}),
            false,
        ),
        (
            json!({"key": "page.url", "operator": "startsWith", "values": ["https://www.shop.example/CART"], "shouldIgnoreCase": true}),
            true,
        ),
        (
            json!({"key": "page.title", "operator": "containsAny", "values": ["Basket", "Cart"]}),
            true,
        ),
        (
            json!({"key": "page.title", "operator": "notContainsAny", "values": ["Basket"]}),
            false,
        ),
        (
            json!({"key": "page.hostname", "operator": "equal", "values": ["www.shop.example"]}),
            true,
        ),
        (
            json!({"key": "page.domain", "operator": "equal", "values": ["shop.example"]}),
            true,
        ),
        (
            json!({"key": "page.pathname", "operator": "equal", "values": ["/cart"]}),
            true,
        ),
        (
            json!({"key": "page.pathname", "operator": "notEqual", "values": ["/cart"]}),
            false,
        ),
        (
            json!({"key": "page.queryString", "operator": "containsAll", "values": ["step=2", "coupon"]}),
            true,
        ),
        (
            json!({"key": "page.queryString", "operator": "notContainsAll", "values": ["step=2", "gift"]}),
            true,
        ),
        (
            json!({"key": "page.fragment", "operator": "equal", "values": ["pay"]}),
            true,
        ),
        (
            json!({"key": "page.keywords", "operator": "containsAll", "values": ["WINTER", "boots"], "shouldIgnoreCase": true}),
            true,
        ),
        (
            json!({"key": "page.keywords", "operator": "containsAll", "values": ["WINTER", "boots"]}),
            false,
        ),
        (
            json!({"key": "page.lang", "operator": "equal", "values": ["de"]}),
            true,
        ),
        (
            json!({"key": "searchQuery", "operator": "equal", "values": ["MORTGAGE"], "shouldIgnoreCase": true}),
            true,
        ),
        (
            json!({"key": "searchQuery", "operator": "endsWith", "values": ["gage"]}),
            true,
        ),
        (
            json!({"key": "attributes.price.value", "operator": "greaterThan", "values": ["100"]}),
            true,
        ),
        (
            json!({"key": "attributes.price.value", "operator": "greaterThanOrEqual", "values": ["139.50"]}),
            true,
        ),
        (
            json!({"key": "attributes.price.value", "operator": "lessThan", "values": ["100"]}),
            false,
        ),
        (
            json!({"key": "attributes.price.value", "operator": "lessThanOrEqual", "values": ["139.4"]}),
            false,
        ),
        // A number sent as text compares as a number.
        (
            json!({"key": "attributes.quantity.value", "operator": "equal", "values": ["2.0"]}),
            true,
        ),
        (
            json!({"key": "attributes.quantity.value", "operator": "lessThan", "values": ["10"]}),
            true,
        ),
        (
            json!({"key": "attributes.sku.value", "operator": "endsWith", "values": ["-1"]}),
            true,
        ),
        (
            json!({"key": "attributes.sku.value", "operator": "startsWith", "values": ["boot"]}),
            false,
        ),
        (
            json!({"key": "attributes.member.value", "operator": "equal", "values": ["true"]}),
            true,
        ),
        // A missing attribute matches no operator, negative ones included.
        (
            json!({"key": "attributes.missing.value", "operator": "notEqual", "values": ["x"]}),
            false,
        ),
    ];
    let app = TestApp::new();
    let mut ids = Vec::new();
    let mut events = Vec::new();
    for (n, (criterion, _)) in rows.iter().enumerate() {
        let name = format!("probe_{n}");
        let definition = define(
            &app,
            "segments",
            segment(&name, json!({"eventName": name, "criteria": [criterion]})),
        )
        .await;
        ids.push(id(&definition));
        let mut event = record(n as u32 + 1, &name, T0 - 60 * SECOND + n as i64);
        event["page"] = json!({
            "url": "https://www.shop.example/cart?step=2&coupon=X#pay",
            "title": "Your Basket",
            "keywords": "winter boots, sale",
            "lang": "de",
            "searchQuery": "mortgage",
        });
        event["attributes"] =
            json!({"price": 139.5, "quantity": "2", "sku": "BOOT-1", "member": true});
        events.push(event);
    }
    // Another event name matches nothing, whatever its values.
    let mut other = record(99, "something_else", T0 - SECOND);
    other["attributes"] = json!({"price": 139.5});
    events.push(other);
    post(&app, VISITOR, events).await;
    let session = app.only_session_of(VISITOR).await;
    let found = segment_ids(&session);
    for (n, (criterion, expected)) in rows.iter().enumerate() {
        assert_eq!(found.contains(&ids[n]), *expected, "row {n}: {criterion}");
    }
}

/// Every visit key: context-only segments, two visitors who differ in everything.
#[tokio::test]
async fn context_criteria_on_every_visit_key() {
    // (criterion, matches the London iPhone visit, matches the desktop visit)
    let rows: Vec<(Value, bool, bool)> = vec![
        (
            json!({"key": "device.category", "operator": "equal", "values": ["mobile"]}),
            true,
            false,
        ),
        (
            json!({"key": "device.category", "operator": "equal", "values": ["MOBILE"]}),
            false,
            false,
        ),
        (
            json!({"key": "device.category", "operator": "equal", "values": ["MOBILE"], "shouldIgnoreCase": true}),
            true,
            false,
        ),
        (
            json!({"key": "device.type", "operator": "equal", "values": ["iPhone"]}),
            true,
            false,
        ),
        (
            json!({"key": "device.osFamily", "operator": "startsWith", "values": ["win"], "shouldIgnoreCase": true}),
            false,
            true,
        ),
        (
            json!({"key": "device.osFamily", "operator": "equal", "values": ["iOS"]}),
            true,
            false,
        ),
        (
            json!({"key": "browser.family", "operator": "containsAny", "values": ["Chrome", "Firefox"]}),
            false,
            true,
        ),
        (
            json!({"key": "browser.lang", "operator": "startsWith", "values": ["de"]}),
            false,
            true,
        ),
        (
            json!({"key": "browser.lang", "operator": "endsWith", "values": ["GB"]}),
            true,
            false,
        ),
        (
            json!({"key": "geolocation.country", "operator": "equal", "values": ["GB"]}),
            true,
            false,
        ),
        (
            json!({"key": "geolocation.countryName", "operator": "equal", "values": ["united kingdom"], "shouldIgnoreCase": true}),
            true,
            false,
        ),
        (
            json!({"key": "geolocation.region", "operator": "equal", "values": ["ENG"]}),
            true,
            false,
        ),
        (
            json!({"key": "geolocation.locality", "operator": "notEqual", "values": ["Paris"]}),
            true,
            false,
        ),
        (
            json!({"key": "referrer.medium", "operator": "equal", "values": ["search"]}),
            true,
            false,
        ),
        (
            json!({"key": "referrer.hostname", "operator": "endsWith", "values": ["google.com"]}),
            true,
            false,
        ),
        (
            json!({"key": "referrer.url", "operator": "containsAll", "values": ["google", "q="]}),
            true,
            false,
        ),
        (
            json!({"key": "mktCampaign.source", "operator": "equal", "values": ["news"]}),
            true,
            false,
        ),
        (
            json!({"key": "mktCampaign.medium", "operator": "notContainsAny", "values": ["cpc"]}),
            true,
            false,
        ),
        (
            json!({"key": "mktCampaign.name", "operator": "containsAll", "values": ["spring"], "shouldIgnoreCase": true}),
            true,
            false,
        ),
        (
            json!({"key": "authenticated", "operator": "equal", "values": ["false"]}),
            true,
            true,
        ),
    ];
    let app = TestApp::with_config(|config| {
        config.geoip_database_path = Some(write_test_city_database(
            config.database_path.parent().unwrap(),
        ));
    });
    let mut ids = Vec::new();
    for (n, (criterion, _, _)) in rows.iter().enumerate() {
        let mut criterion = criterion.clone();
        criterion["entityType"] = json!("visit");
        let definition = define(
            &app,
            "segments",
            json!({"displayName": format!("visit {n}"), "color": "#ff7f0e",
                   "context": {"patterns": [{"criteria": [criterion]}]}}),
        )
        .await;
        ids.push(id(&definition));
    }
    let mut mobile_page = pageview(1, T0 - 2 * SECOND, "https://shop.example/?utm_source=news");
    mobile_page["page"]["referrer"] = json!("https://www.google.com/search?q=boots");
    mobile_page["page"]["campaign"] =
        json!({"utm_source": "news", "utm_medium": "newsletter", "utm_campaign": "Spring_Sale"});
    mobile_page["context"] = json!({"browserLang": "en-GB"});
    let request = batch_request_with(
        LONDON_IP,
        &[],
        IPHONE,
        batch(VISITOR, T0, vec![mobile_page]),
    );
    assert_eq!(app.send(request).await.status, StatusCode::OK);
    let mut desktop_page = pageview(2, T0 - SECOND, "https://shop.example/");
    desktop_page["context"] = json!({"browserLang": "de-DE"});
    let request = batch_request_with(
        "203.0.113.9",
        &[],
        WINDOWS_CHROME,
        batch(OTHER_VISITOR, T0, vec![desktop_page]),
    );
    assert_eq!(app.send(request).await.status, StatusCode::OK);

    let mobile = segment_ids(&app.only_session_of(VISITOR).await);
    let desktop = segment_ids(&app.only_session_of(OTHER_VISITOR).await);
    for (n, (criterion, on_mobile, on_desktop)) in rows.iter().enumerate() {
        assert_eq!(
            mobile.contains(&ids[n]),
            *on_mobile,
            "mobile, row {n}: {criterion}"
        );
        assert_eq!(
            desktop.contains(&ids[n]),
            *on_desktop,
            "desktop, row {n}: {criterion}"
        );
    }
}

/// Context and journey patterns are ANDed: a search by a mobile visitor from the UK.
#[tokio::test]
async fn context_and_journey_patterns_combine() {
    let app = TestApp::with_config(|config| {
        config.geoip_database_path = Some(write_test_city_database(
            config.database_path.parent().unwrap(),
        ));
    });
    let both = define(
        &app,
        "segments",
        json!({
            "displayName": "UK mobile mortgage searchers", "color": "#2ca02c",
            "context": {"patterns": [
                {"criteria": [{"key": "device.category", "operator": "equal", "values": ["mobile"]}]},
                {"criteria": [{"key": "geolocation.country", "operator": "equal", "values": ["GB"]}]},
            ]},
            "journey": {"patterns": [
                {"criteria": [{"key": "searchQuery", "operator": "containsAny", "values": ["mortgage"]}]},
                {"eventName": "calculator_used"},
            ]},
        }),
    )
    .await;
    let send = |visitor: &'static str, peer: &'static str, ua: &'static str, events: Vec<Value>| {
        batch_request_with(peer, &[], ua, batch(visitor, T0, events))
    };
    // The desktop visitor does everything; the mobile one too, in two batches.
    let everything = |base: u32| {
        vec![
            search(base, T0 - 3 * SECOND, "mortgage"),
            record(base + 1, "calculator_used", T0 - 2 * SECOND),
        ]
    };
    app.send(send(
        OTHER_VISITOR,
        LONDON_IP,
        WINDOWS_CHROME,
        everything(10),
    ))
    .await;
    app.send(send(
        VISITOR,
        LONDON_IP,
        IPHONE,
        vec![search(1, T0 - 3 * SECOND, "mortgage")],
    ))
    .await;
    assert_eq!(
        segment_ids(&app.only_session_of(VISITOR).await),
        Vec::<String>::new(),
        "one of two patterns"
    );
    app.send(send(
        VISITOR,
        LONDON_IP,
        IPHONE,
        vec![record(2, "calculator_used", T0 - 2 * SECOND)],
    ))
    .await;
    assert_eq!(
        segment_ids(&app.only_session_of(VISITOR).await),
        [id(&both)]
    );
    assert_eq!(
        segment_ids(&app.only_session_of(OTHER_VISITOR).await),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn outcome_values_and_polarity() {
    let app = TestApp::new();
    let integer = define(
        &app,
        "outcomes",
        json!({"displayName": "Items", "journey": {"patterns": [{"eventName": "order_completed"}]},
               "associatedValueField": {"dataType": "Integer", "name": "items"}}),
    )
    .await;
    let abandoned = define(
        &app,
        "outcomes",
        json!({"displayName": "Cart abandoned", "isPositive": false,
               "journey": {"patterns": [{"eventName": "cart_abandoned"}]}}),
    )
    .await;
    let mut first = record(1, "order_completed", T0 - 2 * SECOND);
    first["attributes"] = json!({"items": "2.5"});
    post(
        &app,
        VISITOR,
        vec![first, record(2, "cart_abandoned", T0 - SECOND)],
    )
    .await;
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(outcome_ids(&session), [id(&integer), id(&abandoned)]);
    let events = app.events_of(session["id"].as_str().unwrap()).await;
    let achieved: Vec<&Value> = events
        .iter()
        .filter(|event| event["eventType"] == "OutcomeAchieved")
        .collect();
    // 2.5 is not an Integer: achieved, without a value.
    assert_eq!(
        achieved[0]["outcomeAchievedEvent"]["associatedValue"],
        Value::Null
    );
    assert_eq!(
        achieved[1]["outcomeAchievedEvent"]["outcome"]["displayName"],
        json!("Cart abandoned")
    );

    let mut other = record(3, "order_completed", T0);
    other["attributes"] = json!({"items": 3});
    post(&app, OTHER_VISITOR, vec![other]).await;
    let session = app.only_session_of(OTHER_VISITOR).await;
    let events = app.events_of(session["id"].as_str().unwrap()).await;
    assert_eq!(
        events[1]["outcomeAchievedEvent"]["associatedValue"],
        json!(3.0)
    );
}

/// Session scope ends with the session; Customer scope is carried into the visitor's
/// next sessions until it expires, then can be earned again.
#[tokio::test]
async fn scopes_and_expiry() {
    let app = TestApp::new();
    let per_session = define(
        &app,
        "segments",
        segment("Viewed a page", json!({"count": 1})),
    )
    .await;
    let mut loyal = segment("Ordered", json!({"eventName": "order_completed"}));
    loyal["scope"] = json!("Customer");
    loyal["assignmentExpirationDays"] = json!(1);
    let loyal = define(&app, "segments", loyal).await;
    let mut forever = segment(
        "Searched once",
        json!({"criteria": [{"key": "searchQuery", "operator": "notEqual", "values": [""]}]}),
    );
    forever["scope"] = json!("Customer");
    let forever = define(&app, "segments", forever).await;

    post(
        &app,
        VISITOR,
        vec![
            search(1, T0 - 2 * SECOND, "tent"),
            order(2, T0 - SECOND, json!(10)),
        ],
    )
    .await;
    let first = app.only_session_of(VISITOR).await;
    assert_eq!(
        segment_ids(&first),
        [id(&per_session), id(&forever), id(&loyal)]
    );

    // Two hours later, a new session: the Customer-scope segments come along, the
    // Session-scope one must be earned again (a custom event does not).
    app.clock.advance_ms(2 * HOUR);
    post(
        &app,
        VISITOR,
        vec![record(3, "cart_added", app.clock.now_ms())],
    )
    .await;
    let sessions = app.sessions_of(VISITOR).await;
    assert_eq!(sessions.len(), 2);
    assert_eq!(segment_ids(&sessions[0]), [id(&forever), id(&loyal)]);
    // The carried assignment shows in the new session's journey too.
    let events = app.events_of(sessions[0]["id"].as_str().unwrap()).await;
    assert_eq!(
        events
            .iter()
            .filter(|event| event["eventType"] == "SegmentAssignment")
            .count(),
        2
    );

    // Two days later the one-day assignment has expired; the other never does.
    app.clock.advance_ms(2 * DAY);
    post(
        &app,
        VISITOR,
        vec![record(4, "cart_added", app.clock.now_ms())],
    )
    .await;
    let sessions = app.sessions_of(VISITOR).await;
    assert_eq!(segment_ids(&sessions[0]), [id(&forever)]);
    // Earned again, it is assigned again.
    post(&app, VISITOR, vec![order(5, app.clock.now_ms(), json!(5))]).await;
    let sessions = app.sessions_of(VISITOR).await;
    assert_eq!(sessions.len(), 3);
    assert_eq!(segment_ids(&sessions[0]), [id(&forever), id(&loyal)]);
    // Another visitor has none of it.
    post(
        &app,
        OTHER_VISITOR,
        vec![record(6, "cart_added", app.clock.now_ms())],
    )
    .await;
    assert_eq!(
        segment_ids(&app.only_session_of(OTHER_VISITOR).await),
        Vec::<String>::new()
    );
}

/// A customer is their contact when the session is linked to one: a Customer-scope
/// segment earned on one device comes along on another once the visitor identifies.
#[tokio::test]
async fn customer_scope_follows_the_contact() {
    let app = TestApp::new();
    app.create_contact(json!({"firstName": "Ada", "workEmail": "ada@example.com"}))
        .await;
    let mut vip = segment(
        "Big spender",
        json!({"eventName": "order_completed", "criteria": [
        {"key": "attributes.value.value", "operator": "greaterThanOrEqual", "values": ["1000"]}]}),
    );
    vip["scope"] = json!("Customer");
    let vip = define(&app, "segments", vip).await;
    post(
        &app,
        VISITOR,
        vec![
            identify(
                1,
                T0 - 3 * SECOND,
                None,
                json!({"email": "ada@example.com"}),
            ),
            order(2, T0 - 2 * SECOND, json!(1500)),
        ],
    )
    .await;
    assert_eq!(segment_ids(&app.only_session_of(VISITOR).await), [id(&vip)]);
    // A second device: nothing until the visitor identifies.
    post(
        &app,
        OTHER_VISITOR,
        vec![record(3, "cart_added", T0 - SECOND)],
    )
    .await;
    assert_eq!(
        segment_ids(&app.only_session_of(OTHER_VISITOR).await),
        Vec::<String>::new()
    );
    post(
        &app,
        OTHER_VISITOR,
        vec![identify(4, T0, None, json!({"email": "ada@example.com"}))],
    )
    .await;
    assert_eq!(
        segment_ids(&app.only_session_of(OTHER_VISITOR).await),
        [id(&vip)]
    );
}

/// Changing or deleting a definition affects only what comes after: past assignments
/// keep the name and color they had, counts start afresh under the new version.
#[tokio::test]
async fn patch_and_delete_affect_only_future_evaluation() {
    let app = TestApp::new();
    let searched = define(&app, "segments", searched_twice()).await;
    let uri = format!("/api/v2/journey/segments/{}", id(&searched));
    post(
        &app,
        VISITOR,
        vec![
            search(1, T0 - 3 * SECOND, "a"),
            search(2, T0 - 2 * SECOND, "b"),
        ],
    )
    .await;
    let first = app.only_session_of(VISITOR).await;
    assert_eq!(segment_ids(&first), [id(&searched)]);

    app.clock.advance_ms(MINUTE);
    let patched = app
        .send_json("PATCH", &uri, Some(&json!({"displayName": "Searched three times", "color": "#d62728",
            "journey": {"patterns": [{"count": 3, "criteria": [{"key": "searchQuery", "operator": "notEqual", "values": [""]}]}]},
            "version": 1})))
        .await
        .ok_json();
    assert_eq!(patched["version"], json!(2));
    assert_eq!(patched["displayName"], json!("Searched three times"));
    assert_eq!(patched["createdDate"], searched["createdDate"]);
    assert_ne!(patched["modifiedDate"], searched["modifiedDate"]);
    assert_eq!(app.get(&uri).await.ok_json(), patched);

    // The past stays as it was.
    let stored = app
        .state
        .store()
        .session(first["id"].as_str().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(stored.segment_assignments[0].display_name, "Searched twice");
    assert_eq!(stored.segment_assignments[0].color, "#1f77b4");

    // Under version 2, the count starts afresh and is three.
    post(
        &app,
        OTHER_VISITOR,
        vec![search(3, T0, "a"), search(4, T0 + SECOND, "b")],
    )
    .await;
    assert_eq!(
        segment_ids(&app.only_session_of(OTHER_VISITOR).await),
        Vec::<String>::new()
    );
    post(&app, OTHER_VISITOR, vec![search(5, T0 + 2 * SECOND, "c")]).await;
    let session = app.only_session_of(OTHER_VISITOR).await;
    assert_eq!(segment_ids(&session), [id(&searched)]);
    let stored = app
        .state
        .store()
        .session(session["id"].as_str().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.segment_assignments[0].display_name,
        "Searched three times"
    );

    // A stale version is refused, naming the field.
    let stale = app
        .send_json(
            "PATCH",
            &uri,
            Some(&json!({"displayName": "x", "version": 1})),
        )
        .await;
    let message = stale.assert_error(StatusCode::BAD_REQUEST, "bad.request");
    assert!(message.starts_with("version: "), "{message}");
    let invalid = app
        .send_json("PATCH", &uri, Some(&json!({"scope": "Forever"})))
        .await;
    let message = invalid.assert_error(StatusCode::BAD_REQUEST, "bad.request");
    assert!(message.starts_with("scope: "), "{message}");

    // Deleted: no new assignments; old ones stay.
    let deleted = app.send_json("DELETE", &uri, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.get(&uri)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not.found");
    app.send_json("DELETE", &uri, None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not.found");
    let third = "7a1b2c3d-0000-4000-8000-000000000003";
    post(
        &app,
        third,
        vec![
            search(6, T0, "a"),
            search(7, T0 + SECOND, "b"),
            search(8, T0 + 2 * SECOND, "c"),
        ],
    )
    .await;
    assert_eq!(
        segment_ids(&app.only_session_of(third).await),
        Vec::<String>::new()
    );
    assert_eq!(
        segment_ids(&app.only_session_of(OTHER_VISITOR).await),
        [id(&searched)]
    );

    // An inactive definition is not evaluated.
    let inactive = define(&app, "outcomes", {
        let mut body = order_completed();
        body["isActive"] = json!(false);
        body
    })
    .await;
    assert_eq!(inactive["isActive"], json!(false));
    post(&app, third, vec![order(9, T0 + 3 * SECOND, json!(1))]).await;
    assert_eq!(
        outcome_ids(&app.only_session_of(third).await),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn listing_paging_and_validation_errors_name_the_field() {
    let app = TestApp::new();
    for n in 0..3 {
        app.clock.advance_ms(SECOND);
        define(
            &app,
            "segments",
            segment(&format!("s{n}"), json!({"count": n + 1})),
        )
        .await;
    }
    let first = app
        .get("/api/v2/journey/segments?pageSize=2")
        .await
        .ok_json();
    assert_eq!(first["total"], json!(3));
    assert_eq!(first["pageCount"], json!(2));
    assert_eq!(first["entities"].as_array().unwrap().len(), 2);
    assert_eq!(first["entities"][0]["displayName"], json!("s0"));
    let next = first["nextUri"].as_str().unwrap();
    let second = app.get(next).await.ok_json();
    assert_eq!(second["entities"].as_array().unwrap().len(), 1);
    assert_eq!(second["entities"][0]["displayName"], json!("s2"));
    assert!(second.get("nextUri").is_none());
    assert!(second["previousUri"].is_string());
    let outcomes = app.get("/api/v2/journey/outcomes").await.ok_json();
    assert_eq!(outcomes["entities"], json!([]));
    assert_eq!(outcomes["total"], json!(0));
    app.get("/api/v2/journey/segments?pageNumber=0")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad.request");

    let table: Vec<(&str, Value, &str)> = vec![
        (
            "segments",
            json!({"color": "#000000", "journey": {"patterns": [{}]}}),
            "displayName: is required",
        ),
        (
            "segments",
            json!({"displayName": "x", "journey": {"patterns": [{}]}}),
            "color: is required",
        ),
        (
            "segments",
            json!({"displayName": "x", "color": "#000000"}),
            "journey.patterns: a segment needs at least one",
        ),
        (
            "segments",
            json!({"displayName": "x", "color": "#000000", "journey": {"patterns": [{"criteria": [
            {"key": "page.url", "operator": "matches", "values": ["x"]}]}]}}),
            "journey.patterns[0].criteria[0].operator: ",
        ),
        (
            "segments",
            json!({"displayName": "x", "color": "#000000", "context": {"patterns": [{"criteria": [
            {"key": "device.colour", "operator": "equal", "values": ["x"]}]}]}}),
            "context.patterns[0].criteria[0].key: ",
        ),
        (
            "outcomes",
            json!({"displayName": "x", "journey": {"patterns": [{"eventName": "a"}]},
            "associatedValueField": {"dataType": "Text", "name": "value"}}),
            "associatedValueField.dataType: ",
        ),
        (
            "outcomes",
            json!({"displayName": "x", "journey": {"patterns": [{"eventName": "a", "count": "two"}]}}),
            "journey.patterns[0].count: ",
        ),
        ("outcomes", json!([1]), "body: "),
    ];
    for (collection, body, expected) in table {
        let response = app
            .send_json(
                "POST",
                &format!("/api/v2/journey/{collection}"),
                Some(&body),
            )
            .await;
        let message = response.assert_error(StatusCode::BAD_REQUEST, "bad.request");
        assert!(
            message.starts_with(expected),
            "{message:?} should start with {expected:?}"
        );
    }
    let not_json = Request::post("/api/v2/journey/segments")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::from("{"))
        .unwrap();
    let message = app
        .send(not_json)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad.request");
    assert!(message.starts_with("body: is not valid JSON"), "{message}");
    // The routes need the token.
    let anonymous = Request::get("/api/v2/journey/outcomes")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(anonymous).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn at_most_500_segments_and_500_outcomes() {
    let app = TestApp::new();
    let store = app.state.store();
    let definition = footpath_collector::segments::definition::parse(
        footpath_collector::segments::DefinitionKind::Segment,
        &segment("many", json!({"eventName": "x"})),
    )
    .unwrap();
    for _ in 0..499 {
        store.create_definition(&definition, T0).unwrap();
    }
    define(
        &app,
        "segments",
        segment("the 500th", json!({"eventName": "x"})),
    )
    .await;
    let refused = app
        .send_json(
            "POST",
            "/api/v2/journey/segments",
            Some(&segment("the 501st", json!({"eventName": "x"}))),
        )
        .await;
    let message = refused.assert_error(StatusCode::BAD_REQUEST, "bad.request");
    assert!(message.starts_with("segments: "), "{message}");
    assert!(message.contains("500"), "{message}");
    // The limit is per kind: outcomes still fit.
    define(&app, "outcomes", order_completed()).await;
    // And one deleted makes room again.
    let page = app
        .get("/api/v2/journey/segments?pageSize=1")
        .await
        .ok_json();
    assert_eq!(page["total"], json!(500));
    let first = id(&page["entities"][0]);
    let deleted = app
        .send_json("DELETE", &format!("/api/v2/journey/segments/{first}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    define(
        &app,
        "segments",
        segment("room again", json!({"eventName": "x"})),
    )
    .await;
}

/// `[[segments]]` and `[[outcomes]]` of the configuration file: created at startup,
/// updated (new version) when changed, left alone when unchanged.
#[tokio::test]
async fn definitions_from_the_configuration_file() {
    let toml = |name: &str| {
        format!(
            r##"
            [[segments]]
            id = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
            displayName = "{name}"
            color = "#1f77b4"
            scope = "Session"
            [[segments.journey.patterns]]
            streamType = "Web"
            count = 2
            [[segments.journey.patterns.criteria]]
            key = "searchQuery"
            operator = "notEqual"
            values = [""]

            [[outcomes]]
            id = "0d9e8f7a-6b5c-4d3e-9f2a-1b0c9d8e7f6a"
            displayName = "Order completed"
            isPositive = true
            associatedValueField = {{ dataType = "Number", name = "value" }}
            [[outcomes.journey.patterns]]
            eventName = "order_completed"
            "##
        )
    };
    let parsed =
        footpath_collector::config::Config::from_toml_str(&toml("Searched twice")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let start = |config: &footpath_collector::config::Config| {
        let mut config = config.clone();
        config.database_path = dir.path().join("config.sqlite3");
        config.api_tokens = vec![TOKEN.to_owned()];
        footpath_collector::AppState::new(
            config,
            std::sync::Arc::new(footpath_collector::clock::ManualClock::new(T0)),
        )
        .unwrap()
    };
    let state = start(&parsed);
    let segment = state
        .store()
        .definition(
            footpath_collector::segments::DefinitionKind::Segment,
            "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b",
        )
        .unwrap()
        .unwrap();
    assert_eq!(segment.version, 1);
    assert_eq!(segment.definition.journey[0].count, 2);
    drop(state);
    let state = start(&parsed);
    let again = state
        .store()
        .definition(
            footpath_collector::segments::DefinitionKind::Segment,
            "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b",
        )
        .unwrap()
        .unwrap();
    assert_eq!(again.version, 1, "unchanged: same version");
    drop(state);
    let changed =
        footpath_collector::config::Config::from_toml_str(&toml("Searched at least twice"))
            .unwrap();
    let state = start(&changed);
    let changed = state
        .store()
        .definition(
            footpath_collector::segments::DefinitionKind::Segment,
            "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b",
        )
        .unwrap()
        .unwrap();
    assert_eq!(changed.version, 2);
    assert_eq!(changed.definition.display_name, "Searched at least twice");
    drop(state);

    // Errors name the entry and the field.
    let invalid = |text: &str| {
        footpath_collector::config::Config::from_toml_str(text)
            .unwrap_err()
            .to_string()
    };
    let message = invalid(&toml("x").replace("count = 2", "count = 0"));
    assert!(
        message.contains("segments[0].journey.patterns[0].count: "),
        "{message}"
    );
    let message =
        invalid(&toml("x").replace("id = \"0d9e8f7a-6b5c-4d3e-9f2a-1b0c9d8e7f6a\"\n", ""));
    assert!(message.contains("outcomes[0].id: is required"), "{message}");
}

/// The demo configuration ships "Searched twice" and "Order completed".
#[test]
fn the_demo_configuration_defines_them() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../footpath.toml");
    let config = footpath_collector::config::Config::from_file(&path).unwrap();
    let definitions = config.configured_definitions().unwrap();
    let names: Vec<&str> = definitions
        .iter()
        .map(|(_, definition)| definition.display_name.as_str())
        .collect();
    assert!(names.contains(&"Searched twice"), "{names:?}");
    assert!(names.contains(&"Order completed"), "{names:?}");
}

/// The desk card: "Segments matched" (only those shown to agents, in their color),
/// "Outcomes achieved" (with polarity and value), and both on the journey map.
#[tokio::test]
async fn the_desk_card_shows_segments_and_outcomes() {
    let app = TestApp::new();
    let shown = define(&app, "segments", searched_twice()).await;
    let mut hidden = segment("Internal scoring", json!({"count": 1}));
    hidden["shouldDisplayToAgent"] = json!(false);
    define(&app, "segments", hidden).await;
    let outcome = define(&app, "outcomes", order_completed()).await;
    post(
        &app,
        VISITOR,
        vec![
            search(1, T0 - 3 * SECOND, "a"),
            search(2, T0 - 2 * SECOND, "b"),
            order(3, T0 - SECOND, json!(139.5)),
        ],
    )
    .await;
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(
        segment_ids(&session).len(),
        2,
        "the API lists every segment"
    );

    let signin = Request::post("/desk/signin")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={TOKEN}")))
        .unwrap();
    let reply = app.send(signin).await;
    let cookie = reply
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let request = Request::get(format!(
        "/desk/api/sessions/{}",
        session["id"].as_str().unwrap()
    ))
    .header(header::COOKIE, cookie)
    .body(Body::empty())
    .unwrap();
    let card = app.send(request).await.ok_json();
    assert_eq!(
        card["segments"],
        json!([{"id": id(&shown), "displayName": "Searched twice", "color": "#1f77b4"}])
    );
    assert_eq!(
        card["outcomes"],
        json!([{"id": id(&outcome), "displayName": "Order completed", "positive": true, "value": "139.5"}])
    );
    let kinds: Vec<String> = card["journey"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "session_start",
            "search",
            "search",
            "segment",
            "custom",
            "outcome"
        ]
    );
    let segment_item = &card["journey"][3];
    assert_eq!(segment_item["color"], json!("#1f77b4"));
    assert_eq!(segment_item["displayName"], json!("Searched twice"));
    assert_eq!(card["journey"][5]["positive"], json!(true));
}
