//! The read API: authentication, listings, pagination and JSON shapes.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn read_api_needs_a_valid_bearer_token() {
    let app = TestApp::new();
    let with_authorization = |value: Option<&str>| {
        let mut builder = Request::get("/api/v2/journey/sessions");
        if let Some(value) = value {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        builder.body(Body::empty()).unwrap()
    };
    for refused in [
        None,
        Some("Bearer wrong-token"),
        Some("Bearer "),
        Some(TOKEN),
        Some("Basic cmVhZDp0b2tlbg=="),
    ] {
        let response = app.send(with_authorization(refused)).await;
        response.assert_error(StatusCode::UNAUTHORIZED, "authentication.required");
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer"),
            "{refused:?}"
        );
    }
    for accepted in [format!("Bearer {TOKEN}"), format!("bearer {SECOND_TOKEN}")] {
        let response = app.send(with_authorization(Some(&accepted))).await;
        assert_eq!(response.status, StatusCode::OK, "{accepted}");
    }
    // Every read route is protected, including unknown sessions.
    let response = app
        .send(
            Request::get("/api/v2/journey/sessions/whatever/events")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_session_is_404() {
    let app = TestApp::new();
    let message = app
        .get("/api/v2/journey/sessions/0194f1a0-0000-7000-8000-00000000dead")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not.found");
    assert!(
        message.contains("0194f1a0-0000-7000-8000-00000000dead"),
        "{message}"
    );
    app.get("/api/v2/journey/sessions/nope/events")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not.found");
}

/// Five events sent out of order; the listing is in time order with running totals.
#[tokio::test]
async fn events_are_listed_oldest_first_with_running_totals_and_pages() {
    let app = TestApp::new();
    let events = vec![
        record(3, "third", T0 - 3 * SECOND),
        pageview(1, T0 - 5 * SECOND, "https://shop.example/"),
        record(5, "fifth", T0 - SECOND),
        pageview(4, T0 - 2 * SECOND, "https://shop.example/cart"),
        record(2, "second", T0 - 4 * SECOND),
    ];
    app.post_batch(&batch(VISITOR, T0, events)).await.ok_json();
    let session_id = app.only_session_of(VISITOR).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut seen = Vec::new();
    let mut uri = format!("/api/v2/journey/sessions/{session_id}/events?pageSize=2");
    let mut page_sizes = Vec::new();
    loop {
        let page = app.get(&uri).await.ok_json();
        let entities = page["entities"].as_array().unwrap();
        page_sizes.push(entities.len());
        for entity in entities {
            let web_event = &entity["webEvent"];
            seen.push((
                web_event["eventName"].as_str().unwrap().to_owned(),
                web_event["totalEventCount"].as_u64().unwrap(),
                web_event["totalPageviewCount"].as_u64().unwrap(),
            ));
        }
        match page.get("nextUri") {
            Some(next) => uri = next.as_str().unwrap().to_owned(),
            None => break,
        }
    }
    assert_eq!(page_sizes, vec![2, 2, 1]);
    let expected = [
        ("page_viewed", 1, 1),
        ("second", 2, 1),
        ("third", 3, 1),
        ("page_viewed", 4, 2),
        ("fifth", 5, 2),
    ];
    let expected: Vec<(String, u64, u64)> = expected
        .iter()
        .map(|&(name, events, pageviews)| (name.to_owned(), events, pageviews))
        .collect();
    assert_eq!(seen, expected);

    // The first page's nextUri carries the page size and the last event's id.
    let first = app
        .get(&format!(
            "/api/v2/journey/sessions/{session_id}/events?pageSize=2"
        ))
        .await
        .ok_json();
    assert_eq!(
        first["nextUri"],
        json!(format!(
            "/api/v2/journey/sessions/{session_id}/events?pageSize=2&after={}",
            event_id(2)
        ))
    );
    // Exactly one page's worth: no nextUri.
    let all = app
        .get(&format!(
            "/api/v2/journey/sessions/{session_id}/events?pageSize=5"
        ))
        .await
        .ok_json();
    assert_eq!(all["entities"].as_array().unwrap().len(), 5);
    assert_eq!(all.get("nextUri"), None);
}

#[tokio::test]
async fn bad_query_values_are_400_naming_the_parameter() {
    let app = TestApp::new();
    app.post_batch(&batch(VISITOR, T0, vec![record(1, "a", T0)]))
        .await
        .ok_json();
    let session_id = app.only_session_of(VISITOR).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let check = |uri: String, parameter: &'static str| {
        let app = &app;
        async move {
            let message = app
                .get(&uri)
                .await
                .assert_error(StatusCode::BAD_REQUEST, "bad.request");
            assert!(
                message.starts_with(&format!("{parameter}:")),
                "{uri}: {message}"
            );
        }
    };
    let events = format!("/api/v2/journey/sessions/{session_id}/events");
    check(format!("{events}?pageSize=0"), "pageSize").await;
    check(format!("{events}?pageSize=101"), "pageSize").await;
    check(format!("{events}?pageSize=ten"), "pageSize").await;
    check(format!("{events}?after=unknown-cursor"), "after").await;
    check(
        "/api/v2/journey/sessions?pageSize=-1".to_owned(),
        "pageSize",
    )
    .await;
    check(
        "/api/v2/journey/sessions?customerCookieId=bob".to_owned(),
        "customerCookieId",
    )
    .await;
    check("/api/v2/journey/sessions?after=nope".to_owned(), "after").await;
}

#[tokio::test]
async fn sessions_are_listed_newest_first_with_filters_and_pages() {
    let app = TestApp::new();
    // Three sessions of VISITOR, 30 minutes apart, and one of another visitor.
    for (n, minutes_ago) in [(1, 90), (2, 60), (3, 30)] {
        let time = T0 - minutes_ago * MINUTE;
        app.post_batch(&batch(VISITOR, T0, vec![record(n, "visit", time)]))
            .await
            .ok_json();
    }
    app.post_batch(&batch(OTHER_VISITOR, T0, vec![record(9, "other", T0)]))
        .await
        .ok_json();

    let all = app.get("/api/v2/journey/sessions").await.ok_json();
    assert_eq!(all["entities"].as_array().unwrap().len(), 4);

    let created = |listing: &Value| -> Vec<String> {
        listing["entities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|session| session["lastEvent"]["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let first_page = app
        .get(&format!(
            "/api/v2/journey/sessions?deploymentId={DEPLOYMENT}&customerCookieId={VISITOR}&pageSize=2"
        ))
        .await
        .ok_json();
    assert_eq!(created(&first_page), vec![event_id(3), event_id(2)]);
    let next = first_page["nextUri"].as_str().unwrap();
    assert!(
        next.contains(&format!("customerCookieId={VISITOR}")),
        "{next}"
    );
    let second_page = app.get(next).await.ok_json();
    assert_eq!(created(&second_page), vec![event_id(1)]);
    assert_eq!(second_page.get("nextUri"), None);

    let other_deployment = app
        .get(&format!(
            "/api/v2/journey/sessions?deploymentId={OPEN_DEPLOYMENT}"
        ))
        .await
        .ok_json();
    assert_eq!(other_deployment, json!({ "entities": [] }));
}

#[tokio::test]
async fn session_json_has_no_nulls() {
    let app = TestApp::new();
    // A bare custom event: no page, no context, nothing optional.
    app.send(batch_request(
        batch(VISITOR, T0, vec![record(1, "bare", T0)]).to_string(),
        "text/plain",
        Some(ORIGIN),
    ))
    .await
    .ok_json();
    // And a pageview with empty optional strings.
    let mut sparse = pageview(2, T0, "https://shop.example");
    sparse["page"]["title"] = json!("");
    sparse["page"]["referrer"] = json!("");
    sparse["context"] = json!({ "browserLang": "" });
    app.post_batch(&batch(OTHER_VISITOR, T0, vec![sparse]))
        .await
        .ok_json();

    for visitor in [VISITOR, OTHER_VISITOR] {
        let session = app.only_session_of(visitor).await;
        let id = session["id"].as_str().unwrap();
        let single = app
            .get(&format!("/api/v2/journey/sessions/{id}"))
            .await
            .ok_json();
        assert_eq!(null_paths(&single, "$"), Vec::<String>::new(), "{single:#}");
        let events = app
            .get(&format!("/api/v2/journey/sessions/{id}/events"))
            .await
            .ok_json();
        assert_eq!(null_paths(&events, "$"), Vec::<String>::new(), "{events:#}");
    }
    let bare = app.only_session_of(VISITOR).await;
    for absent in [
        "lastPage",
        "referrer",
        "mktCampaign",
        "geolocation",
        "endedDate",
    ] {
        assert_eq!(bare.get(absent), None, "{absent} in {bare:#}");
    }
    // Without a context, browser and device carry only what the User-Agent header says.
    assert_eq!(
        bare["browser"],
        json!({ "family": "Other", "isMobile": false })
    );
    assert_eq!(
        bare["device"],
        json!({ "category": "desktop", "type": "Other", "isMobile": false, "osFamily": "Linux" })
    );
    let sparse = app.only_session_of(OTHER_VISITOR).await;
    assert_eq!(
        sparse["lastPage"],
        json!({
            "url": "https://shop.example",
            "domain": "shop.example",
            "hostname": "shop.example",
            "pathname": "/"
        })
    );
    // An empty browserLang adds nothing to what the User-Agent header says.
    assert_eq!(
        sparse["browser"],
        json!({ "family": "Other", "isMobile": false })
    );
    let listing = app.get("/api/v2/journey/sessions").await.ok_json();
    assert_eq!(null_paths(&listing, "$"), Vec::<String>::new());
}
