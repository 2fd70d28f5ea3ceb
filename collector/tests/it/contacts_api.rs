//! `/api/v2/externalcontacts/contacts`: create, read, replace, delete, search, pages,
//! validation errors and authentication.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};

use crate::support::*;

const CONTACTS: &str = "/api/v2/externalcontacts/contacts";

/// An app whose national phone numbers are British.
fn british_app() -> TestApp {
    TestApp::with_config(|config| config.default_phone_region = Some("GB".to_owned()))
}

#[tokio::test]
async fn contact_create_read_replace_delete_with_exact_json() {
    let app = british_app();
    let created = app
        .create_contact(json!({
            "firstName": "Ann",
            "lastName": "Lee",
            "salutation": "Ms",
            "workEmail": "Ann.Lee@Example.com",
            "cellPhone": { "display": "020 7946 0018" },
            "id": "client-chosen-ids-are-ignored",
            "identifiers": [{ "type": "Cookie", "value": "ignored too" }],
            "somethingElse": true
        }))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_ne!(id, "client-chosen-ids-are-ignored");
    let expected = json!({
        "id": id,
        "firstName": "Ann",
        "lastName": "Lee",
        "salutation": "Ms",
        "workEmail": "Ann.Lee@Example.com",
        "cellPhone": {
            "e164": "+442079460018",
            "display": "+44 20 7946 0018",
            "countryCode": "GB",
            "userInput": "020 7946 0018"
        },
        "identifiers": [
            { "type": "Email", "value": "ann.lee@example.com", "dateCreated": "2026-11-24T06:15:14.123Z" },
            { "type": "Phone", "value": "+442079460018", "dateCreated": "2026-11-24T06:15:14.123Z" }
        ],
        "type": "Curated",
        "createDate": "2026-11-24T06:15:14.123Z",
        "modifyDate": "2026-11-24T06:15:14.123Z"
    });
    assert_eq!(created, expected);
    assert_eq!(app.contact(&id).await, expected);

    // A full replace one minute later: left-out fields go, the kept email keeps its
    // identifier's date, the new phone gets a new one.
    app.clock.advance_ms(MINUTE);
    let replaced = app
        .send_json(
            "PUT",
            &format!("{CONTACTS}/{id}"),
            Some(&json!({
                "firstName": "Anna",
                "workEmail": "ann.lee@example.com",
                "homePhone": { "e164": "+12015550123" }
            })),
        )
        .await
        .ok_json();
    let expected = json!({
        "id": id,
        "firstName": "Anna",
        "workEmail": "ann.lee@example.com",
        "homePhone": {
            "e164": "+12015550123",
            "display": "+1 201-555-0123",
            "countryCode": "US",
            "userInput": "+12015550123"
        },
        "identifiers": [
            { "type": "Email", "value": "ann.lee@example.com", "dateCreated": "2026-11-24T06:15:14.123Z" },
            { "type": "Phone", "value": "+12015550123", "dateCreated": "2026-11-24T06:16:14.123Z" }
        ],
        "type": "Curated",
        "createDate": "2026-11-24T06:15:14.123Z",
        "modifyDate": "2026-11-24T06:16:14.123Z"
    });
    assert_eq!(replaced, expected);
    assert_eq!(app.contact(&id).await, expected);
    assert_eq!(null_paths(&replaced, "$"), Vec::<String>::new());

    let deleted = app
        .send_json("DELETE", &format!("{CONTACTS}/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.body.is_empty());
    let message = app
        .get(&format!("{CONTACTS}/{id}"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not.found");
    assert_eq!(message, format!("contact {id} not found"));
    app.send_json("DELETE", &format!("{CONTACTS}/{id}"), None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not.found");
    app.send_json(
        "PUT",
        &format!("{CONTACTS}/{id}"),
        Some(&json!({"firstName": "Ghost"})),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not.found");
}

#[tokio::test]
async fn bad_contact_bodies_are_400_naming_the_field() {
    let app = british_app();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"cellPhone": {"userInput": "call me maybe"}}),
            "cellPhone: not a valid phone number",
        ),
        (
            json!({"workPhone": "+1 123"}),
            "workPhone: not a valid phone number",
        ),
        (
            json!({"homePhone": {"e164": 4420}}),
            "homePhone.e164: must be a string",
        ),
        (
            json!({"personalEmail": "ann.example.com"}),
            "personalEmail: not a valid email address",
        ),
        (
            json!({"otherEmail": "a@b@c"}),
            "otherEmail: not a valid email address",
        ),
        (json!({"firstName": ["Ann"]}), "firstName: must be a string"),
        (
            json!(["not", "an", "object"]),
            "body: must be a JSON object",
        ),
    ];
    for (body, expected) in cases {
        let message = app
            .send_json("POST", CONTACTS, Some(&body))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad.request");
        assert_eq!(message, expected, "{body}");
    }
    let response = app
        .send(
            Request::post(CONTACTS)
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::from("{not json"))
                .unwrap(),
        )
        .await;
    let message = response.assert_error(StatusCode::BAD_REQUEST, "bad.request");
    assert!(message.starts_with("body: is not valid JSON"), "{message}");

    // Without a default region a national number cannot be placed in a country.
    let no_region = TestApp::new();
    let message = no_region
        .send_json(
            "POST",
            CONTACTS,
            Some(&json!({"cellPhone": {"display": "020 7946 0018"}})),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad.request");
    assert_eq!(message, "cellPhone: not a valid phone number");

    // A PUT that fails validation changes nothing.
    let contact = app.create_contact(json!({"firstName": "Ann"})).await;
    let id = contact["id"].as_str().unwrap();
    let message = app
        .send_json(
            "PUT",
            &format!("{CONTACTS}/{id}"),
            Some(&json!({"firstName": "Bob", "workEmail": "nope"})),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad.request");
    assert_eq!(message, "workEmail: not a valid email address");
    assert_eq!(app.contact(id).await, contact);

    for (query, expected) in [
        (
            "pageSize=0",
            "pageSize: must be a whole number from 1 to 100, not \"0\"",
        ),
        (
            "pageSize=101",
            "pageSize: must be a whole number from 1 to 100, not \"101\"",
        ),
        (
            "pageNumber=0",
            "pageNumber: must be a whole number from 1, not \"0\"",
        ),
        (
            "pageNumber=x",
            "pageNumber: must be a whole number from 1, not \"x\"",
        ),
    ] {
        let message = app
            .get(&format!("{CONTACTS}?{query}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad.request");
        assert_eq!(message, expected, "{query}");
    }
}

#[tokio::test]
async fn contact_routes_need_a_bearer_token() {
    let app = TestApp::new();
    let contact = app.create_contact(json!({"firstName": "Ann"})).await;
    let id = contact["id"].as_str().unwrap();
    let routes = [
        ("GET", CONTACTS.to_owned()),
        ("POST", CONTACTS.to_owned()),
        ("GET", format!("{CONTACTS}/{id}")),
        ("PUT", format!("{CONTACTS}/{id}")),
        ("DELETE", format!("{CONTACTS}/{id}")),
        ("GET", format!("{CONTACTS}/{id}/journey/sessions")),
    ];
    for (method, uri) in routes {
        for authorization in [None, Some("Bearer wrong-token")] {
            let mut builder = Request::builder().method(method).uri(&uri);
            if let Some(value) = authorization {
                builder = builder.header("authorization", value);
            }
            let response = app
                .send(builder.body(Body::from(r#"{"firstName":"Eve"}"#)).unwrap())
                .await;
            response.assert_error(StatusCode::UNAUTHORIZED, "authentication.required");
            assert_eq!(response.header("www-authenticate"), Some("Bearer"));
        }
    }
    // Nothing was changed by the refused requests.
    assert_eq!(app.contact(id).await, contact);
    let listing = app.get(CONTACTS).await.ok_json();
    assert_eq!(listing["total"], 1);
}

async fn names(app: &TestApp, uri: &str) -> (Vec<String>, Value) {
    let listing = app.get(uri).await.ok_json();
    let names = listing["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|contact| contact["firstName"].as_str().unwrap().to_owned())
        .collect();
    (names, listing)
}

#[tokio::test]
async fn contacts_are_searched_by_name_email_and_phone_digits() {
    let app = british_app();
    for body in [
        json!({"firstName": "Ann", "lastName": "Lee", "workEmail": "ann@work.example"}),
        json!({"firstName": "Bob", "lastName": "Annesley", "personalEmail": "bob@home.example"}),
        json!({"firstName": "Carla", "lastName": "Ruiz", "otherEmail": "CARLA@Shop.Example",
               "cellPhone": "020 7946 0018"}),
        json!({"firstName": "Dan", "lastName": "Okafor", "homePhone": {"e164": "+12015550123"}}),
    ] {
        app.create_contact(body).await;
        app.clock.advance_ms(SECOND);
    }
    let cases: &[(&str, &[&str])] = &[
        ("ann", &["Ann", "Bob"]),
        ("ANN%20LEE", &["Ann"]),
        ("okafor", &["Dan"]),
        ("shop.example", &["Carla"]),
        ("carla%40shop", &["Carla"]),
        ("home.EXAMPLE", &["Bob"]),
        ("7946%200018", &["Carla"]),
        ("%2B44%2020%207946", &["Carla"]),
        ("555-0123", &["Dan"]),
        ("zzz", &[]),
        ("", &["Ann", "Bob", "Carla", "Dan"]),
    ];
    for (query, expected) in cases {
        let (found, listing) = names(&app, &format!("{CONTACTS}?q={query}")).await;
        assert_eq!(found, *expected, "q={query}");
        assert_eq!(listing["total"], json!(expected.len()), "q={query}");
    }
}

#[tokio::test]
async fn contact_listing_pages_with_uris() {
    let app = TestApp::new();
    for name in ["A1", "A2", "A3", "A4", "A5"] {
        app.create_contact(json!({"firstName": name, "lastName": "Smith"}))
            .await;
        app.clock.advance_ms(SECOND);
    }
    let (found, first) = names(&app, &format!("{CONTACTS}?q=smith&pageSize=2")).await;
    assert_eq!(found, ["A1", "A2"]);
    let page = |n: u32| format!("{CONTACTS}?q=smith&pageSize=2&pageNumber={n}");
    let without_entities = |mut listing: Value| {
        listing.as_object_mut().unwrap().remove("entities");
        listing
    };
    assert_eq!(
        without_entities(first),
        json!({
            "pageSize": 2, "pageNumber": 1, "total": 5, "pageCount": 3,
            "firstUri": page(1), "nextUri": page(2), "lastUri": page(3)
        })
    );
    let (found, second) = names(&app, &page(2)).await;
    assert_eq!(found, ["A3", "A4"]);
    assert_eq!(
        without_entities(second),
        json!({
            "pageSize": 2, "pageNumber": 2, "total": 5, "pageCount": 3,
            "firstUri": page(1), "previousUri": page(1), "nextUri": page(3), "lastUri": page(3)
        })
    );
    let (found, third) = names(&app, &page(3)).await;
    assert_eq!(found, ["A5"]);
    assert_eq!(third.get("nextUri"), None);
    assert_eq!(third["previousUri"], json!(page(2)));
    let (found, beyond) = names(&app, &page(7)).await;
    assert_eq!(found, Vec::<String>::new());
    assert_eq!(beyond["previousUri"], json!(page(3)));

    // Defaults: page 1 of 25.
    let listing = app.get(CONTACTS).await.ok_json();
    assert_eq!(listing["pageSize"], 25);
    assert_eq!(listing["pageNumber"], 1);
    assert_eq!(listing["pageCount"], 1);
    assert_eq!(listing["entities"].as_array().unwrap().len(), 5);
    assert_eq!(listing.get("nextUri"), None);
    assert_eq!(listing.get("previousUri"), None);
    assert_eq!(
        listing["lastUri"],
        json!(format!("{CONTACTS}?pageSize=25&pageNumber=1"))
    );

    // No match: no pages, so no last page either.
    let empty = app.get(&format!("{CONTACTS}?q=nobody")).await.ok_json();
    assert_eq!(
        without_entities(empty),
        json!({
            "pageSize": 25, "pageNumber": 1, "total": 0, "pageCount": 0,
            "firstUri": format!("{CONTACTS}?q=nobody&pageSize=25&pageNumber=1")
        })
    );
}
