//! Identity resolution during ingest: linking sessions to external contacts.

use serde_json::{json, Value};

use footpath_collector::config::IdentityVerificationConfig;
use footpath_collector::identity::sign_identity;

use crate::support::*;

const SECRET: &str = "site-secret-for-tests";

fn contact_sessions_uri(contact_id: &str) -> String {
    format!("/api/v2/externalcontacts/contacts/{contact_id}/journey/sessions")
}

async fn contact_with(app: &TestApp, body: Value) -> String {
    app.create_contact(body).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn linked_contact(session: &Value) -> Option<&str> {
    session
        .get("externalContact")
        .map(|contact| contact["id"].as_str().unwrap())
}

fn with_identity_verification(require_verified_identity: bool) -> TestApp {
    TestApp::with_config(|config| {
        config.identity_verification = vec![IdentityVerificationConfig {
            deployment_id: DEPLOYMENT.to_owned(),
            identity_secret: Some(SECRET.to_owned()),
            require_verified_identity,
        }]
    })
}

#[tokio::test]
async fn anonymous_visitor_stays_unlinked_and_no_contact_is_created() {
    let app = TestApp::new();
    let ann = contact_with(&app, json!({"workEmail": "ann@example.com"})).await;
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![
            pageview(1, T0 - SECOND, "https://shop.example/"),
            // Traits that match nobody link to nobody, and create nobody.
            identify(
                2,
                T0,
                Some("user-9"),
                json!({"email": "stranger@example.com"}),
            ),
        ],
    ))
    .await
    .ok_json();
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(session.get("externalContact"), None, "{session:#}");
    assert_eq!(session["authenticated"], false);
    let listing = app.get("/api/v2/externalcontacts/contacts").await.ok_json();
    assert_eq!(listing["total"], 1);
    assert_eq!(
        identifiers(&app.contact(&ann).await),
        pairs(&[("Email", "ann@example.com")])
    );
}

#[tokio::test]
async fn identify_by_email_links_the_session_and_the_cookie_links_later_visits() {
    let app = TestApp::new();
    let ann = contact_with(
        &app,
        json!({"firstName": "Ann", "workEmail": "Ann@Example.com"}),
    )
    .await;
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![
            pageview(1, T0 - 2 * SECOND, "https://shop.example/"),
            identify(
                2,
                T0 - SECOND,
                Some("user-42"),
                json!({"email": "ANN@example.COM"}),
            ),
        ],
    ))
    .await
    .ok_json();
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(linked_contact(&session), Some(ann.as_str()));
    assert_eq!(session["authenticated"], false);
    let contact = app.contact(&ann).await;
    assert_eq!(
        identifiers(&contact),
        pairs(&[("Email", "ann@example.com"), ("Cookie", VISITOR)])
    );
    assert_eq!(
        contact["identifiers"][1]["dateCreated"],
        "2026-11-24T06:15:14.123Z"
    );
    // The email was already the contact's: nothing else changed.
    assert_eq!(contact.get("personalEmail"), None);
    assert_eq!(contact["modifyDate"], contact["createDate"]);

    // A later visit with no traits at all is linked by the cookie alone, from its
    // first event on.
    app.clock.advance_ms(2 * TIMEOUT);
    let now = app.clock.now_ms();
    app.post_batch(&batch(
        VISITOR,
        now,
        vec![pageview(3, now, "https://shop.example/again")],
    ))
    .await
    .ok_json();
    let sessions = app.sessions_of(VISITOR).await;
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["eventCount"], 1);
    assert_eq!(linked_contact(&sessions[0]), Some(ann.as_str()));

    // Another visitor is not affected.
    app.post_batch(&batch(OTHER_VISITOR, now, vec![record(4, "browsed", now)]))
        .await
        .ok_json();
    assert_eq!(
        app.only_session_of(OTHER_VISITOR)
            .await
            .get("externalContact"),
        None
    );
}

#[tokio::test]
async fn phone_traits_match_only_in_valid_e164() {
    let app = TestApp::with_config(|config| config.default_phone_region = Some("GB".to_owned()));
    let carla = contact_with(&app, json!({"cellPhone": "020 7946 0018"})).await;
    let tries = [
        ("cellPhone", "020 7946 0018", None),
        ("phone", "+44 20 7946 0018", None),
        ("mobilePhone", "442079460018", None),
        ("phone", "+442079460019", None),
        ("phone", "+442079460018", Some(carla.as_str())),
    ];
    for (index, (name, value, expected)) in tries.into_iter().enumerate() {
        let visitor = format!("0b7e0c2a-5b9e-4a57-9f3e-00000000000{index}");
        let mut traits = serde_json::Map::new();
        traits.insert(name.to_owned(), json!(value));
        app.post_batch(&batch(
            &visitor,
            T0,
            vec![identify(10 + index as u32, T0, None, Value::Object(traits))],
        ))
        .await
        .ok_json();
        let session = app.only_session_of(&visitor).await;
        assert_eq!(linked_contact(&session), expected, "{name}={value}");
    }
    assert_eq!(
        identifiers(&app.contact(&carla).await),
        pairs(&[
            ("Phone", "+442079460018"),
            ("Cookie", "0b7e0c2a-5b9e-4a57-9f3e-000000000004")
        ])
    );
}

#[tokio::test]
async fn identifying_as_someone_else_moves_the_cookie_and_the_session_follows() {
    let app = TestApp::new();
    let ann = contact_with(
        &app,
        json!({"firstName": "Ann", "workEmail": "ann@example.com"}),
    )
    .await;
    let bob = contact_with(
        &app,
        json!({"firstName": "Bob", "workEmail": "bob@example.com"}),
    )
    .await;
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![identify(
            1,
            T0 - 3 * SECOND,
            Some("ann"),
            json!({"email": "ann@example.com"}),
        )],
    ))
    .await
    .ok_json();
    assert_eq!(
        linked_contact(&app.only_session_of(VISITOR).await),
        Some(ann.as_str())
    );

    // A custom event whose traits name Bob does not move the cookie: only an identify
    // does. The cookie's contact wins and Bob's email is not written onto Ann.
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![
            json!({"id": event_id(2), "kind": "record", "name": "clicked", "time": T0 - 2 * SECOND,
                   "traits": {"email": "bob@example.com"}}),
        ],
    ))
    .await
    .ok_json();
    assert_eq!(
        linked_contact(&app.only_session_of(VISITOR).await),
        Some(ann.as_str())
    );
    assert_eq!(app.contact(&ann).await.get("personalEmail"), None);

    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![identify(
            3,
            T0 - SECOND,
            Some("bob"),
            json!({"email": "bob@example.com"}),
        )],
    ))
    .await
    .ok_json();
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(session["eventCount"], 3);
    assert_eq!(linked_contact(&session), Some(bob.as_str()));
    assert_eq!(
        identifiers(&app.contact(&ann).await),
        pairs(&[("Email", "ann@example.com")])
    );
    assert_eq!(
        identifiers(&app.contact(&bob).await),
        pairs(&[("Email", "bob@example.com"), ("Cookie", VISITOR)])
    );
    // The session is listed under Bob, no longer under Ann.
    let bobs = app.get(&contact_sessions_uri(&bob)).await.ok_json();
    assert_eq!(bobs["entities"][0]["id"], session["id"]);
    let anns = app.get(&contact_sessions_uri(&ann)).await.ok_json();
    assert_eq!(anns["entities"], json!([]));
}

#[tokio::test]
async fn newer_traits_overwrite_the_linked_contacts_fields() {
    let app = TestApp::new();
    let ann = contact_with(
        &app,
        json!({"firstName": "Ann", "lastName": "Lee", "workEmail": "ann@work.example"}),
    )
    .await;
    app.clock.advance_ms(MINUTE);
    let now = app.clock.now_ms();
    app.post_batch(&batch(
        VISITOR,
        now,
        vec![identify(
            1,
            now,
            Some("ann"),
            json!({
                "email": "ann@work.example",
                "givenName": "Annabel",
                "familyName": "Lee-Smith",
                "cellPhone": "+12015550123",
                "plan": "gold"
            }),
        )],
    ))
    .await
    .ok_json();
    let contact = app.contact(&ann).await;
    assert_eq!(contact["firstName"], "Annabel");
    assert_eq!(contact["lastName"], "Lee-Smith");
    assert_eq!(contact["cellPhone"]["e164"], "+12015550123");
    assert_eq!(contact["cellPhone"]["display"], "+1 201-555-0123");
    // The email matched the work email, so it is not copied to personalEmail.
    assert_eq!(contact.get("personalEmail"), None);
    assert_eq!(contact["modifyDate"], "2026-11-24T06:16:14.123Z");
    assert_eq!(contact["createDate"], "2026-11-24T06:15:14.123Z");

    // The cookie is linked now; a new email overwrites personalEmail and becomes an
    // identifier; firstName/lastName win over givenName/familyName.
    app.clock.advance_ms(MINUTE);
    let now = app.clock.now_ms();
    app.post_batch(&batch(
        VISITOR,
        now,
        vec![identify(
            2,
            now,
            Some("ann"),
            json!({"email": "Annabel@Home.example", "firstName": "Bel", "givenName": "Ignored"}),
        )],
    ))
    .await
    .ok_json();
    let contact = app.contact(&ann).await;
    assert_eq!(contact["firstName"], "Bel");
    assert_eq!(contact["personalEmail"], "Annabel@Home.example");
    assert_eq!(contact["modifyDate"], "2026-11-24T06:17:14.123Z");
    // Emails, phones, then cookies; each group oldest first.
    assert_eq!(
        identifiers(&contact),
        pairs(&[
            ("Email", "ann@work.example"),
            ("Email", "annabel@home.example"),
            ("Phone", "+12015550123"),
            ("Cookie", VISITOR),
        ])
    );
}

#[tokio::test]
async fn logout_closes_the_session_and_the_next_event_starts_an_unlinked_one() {
    let app = TestApp::new();
    let ann = contact_with(&app, json!({"workEmail": "ann@example.com"})).await;
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![
            pageview(1, T0 - 30 * SECOND, "https://shop.example/"),
            identify(
                2,
                T0 - 20 * SECOND,
                Some("ann"),
                json!({"email": "ann@example.com"}),
            ),
            logout(3, T0 - 10 * SECOND),
        ],
    ))
    .await
    .ok_json();
    assert_eq!(
        identifiers(&app.contact(&ann).await),
        pairs(&[("Email", "ann@example.com")])
    );

    // Five seconds later, well within the session timeout, on the same computer.
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![pageview(4, T0 - 5 * SECOND, "https://shop.example/")],
    ))
    .await
    .ok_json();
    let sessions = app.sessions_of(VISITOR).await;
    assert_eq!(sessions.len(), 2, "{sessions:#?}");
    let (next, identified) = (&sessions[0], &sessions[1]);
    assert_eq!(identified["eventCount"], 3);
    assert_eq!(identified["endedDate"], "2026-11-24T06:15:04.123Z");
    assert_eq!(identified["lastEvent"]["eventName"], "logged_out");
    assert_eq!(linked_contact(identified), Some(ann.as_str()));
    assert_eq!(next["eventCount"], 1);
    assert_eq!(next["createdDate"], "2026-11-24T06:15:09.123Z");
    assert_eq!(next.get("externalContact"), None);
    assert_eq!(next.get("endedDate"), None);

    // The sweep leaves the logout's end time alone.
    app.clock.advance_ms(2 * TIMEOUT);
    assert_eq!(app.sweep(), 1);
    let sessions = app.sessions_of(VISITOR).await;
    assert_eq!(sessions[1]["endedDate"], "2026-11-24T06:15:04.123Z");
    assert_eq!(sessions[0]["endedDate"], "2026-11-24T06:15:09.123Z");
}

#[tokio::test]
async fn signed_identify_sets_authenticated_and_the_signature_is_not_stored() {
    let app = with_identity_verification(false);
    let ann = contact_with(&app, json!({"workEmail": "ann@example.com"})).await;
    let signature = sign_identity(SECRET, "user-42");
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![
            pageview(1, T0 - 3 * SECOND, "https://shop.example/"),
            identify(
                2,
                T0 - 2 * SECOND,
                Some("user-42"),
                json!({"email": "ann@example.com", "identitySignature": signature}),
            ),
            record(3, "viewed_cart", T0 - SECOND),
        ],
    ))
    .await
    .ok_json();
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(linked_contact(&session), Some(ann.as_str()));
    assert_eq!(session["authenticated"], true);
    let events = app.events_of(session["id"].as_str().unwrap()).await;
    let authenticated: Vec<&Value> = events
        .iter()
        .map(|event| &event["webEvent"]["authenticated"])
        .collect();
    assert_eq!(authenticated, [&json!(false), &json!(true), &json!(true)]);
    assert_eq!(
        events[1]["webEvent"]["traits"],
        json!({"email": {"dataType": "String", "value": "ann@example.com"}})
    );

    // Without a signature the deployment (which does not require one) still links, but
    // the session is not authenticated. A signature over the email works without a
    // loginId.
    app.post_batch(&batch(
        OTHER_VISITOR,
        T0,
        vec![identify(4, T0, None, json!({"email": "ann@example.com"}))],
    ))
    .await
    .ok_json();
    let unsigned = app.only_session_of(OTHER_VISITOR).await;
    assert_eq!(linked_contact(&unsigned), Some(ann.as_str()));
    assert_eq!(unsigned["authenticated"], false);

    let third_visitor = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    let email_signature = sign_identity(SECRET, "ann@example.com");
    app.post_batch(&batch(
        third_visitor,
        T0,
        vec![identify(
            5,
            T0,
            None,
            json!({"email": "ann@example.com", "identitySignature": email_signature}),
        )],
    ))
    .await
    .ok_json();
    assert_eq!(
        app.only_session_of(third_visitor).await["authenticated"],
        true
    );
}

#[tokio::test]
async fn required_verification_ignores_unsigned_and_wrongly_signed_identify() {
    let app = with_identity_verification(true);
    let ann = contact_with(
        &app,
        json!({"firstName": "Ann", "workEmail": "ann@example.com"}),
    )
    .await;
    let forged = sign_identity("not-the-secret", "user-42");
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![
            identify(
                1,
                T0 - 3 * SECOND,
                Some("user-42"),
                json!({"email": "ann@example.com", "firstName": "Mallory"}),
            ),
            identify(
                2,
                T0 - 2 * SECOND,
                Some("user-42"),
                json!({"email": "ann@example.com", "identitySignature": forged}),
            ),
            pageview(3, T0 - SECOND, "https://shop.example/"),
        ],
    ))
    .await
    .ok_json();
    let session = app.only_session_of(VISITOR).await;
    // Stored, but linked to nobody and changing nobody.
    assert_eq!(session["eventCount"], 3);
    assert_eq!(session.get("externalContact"), None);
    assert_eq!(session["authenticated"], false);
    let contact = app.contact(&ann).await;
    assert_eq!(contact["firstName"], "Ann");
    assert_eq!(
        identifiers(&contact),
        pairs(&[("Email", "ann@example.com")])
    );
    let events = app.events_of(session["id"].as_str().unwrap()).await;
    assert_eq!(
        events[1]["webEvent"]["traits"],
        json!({"email": {"dataType": "String", "value": "ann@example.com"}})
    );

    let signature = sign_identity(SECRET, "user-42");
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![identify(
            4,
            T0,
            Some("user-42"),
            json!({"email": "ann@example.com", "identitySignature": signature}),
        )],
    ))
    .await
    .ok_json();
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(linked_contact(&session), Some(ann.as_str()));
    assert_eq!(session["authenticated"], true);
    assert_eq!(
        identifiers(&app.contact(&ann).await),
        pairs(&[("Email", "ann@example.com"), ("Cookie", VISITOR)])
    );
}

#[tokio::test]
async fn a_contacts_sessions_are_listed_newest_first_in_pages() {
    let app = TestApp::new();
    let ann = contact_with(&app, json!({"workEmail": "ann@example.com"})).await;
    let mut expected_ids = Vec::new();
    for n in 0..3_u32 {
        let now = app.clock.now_ms();
        let events = if n == 0 {
            vec![identify(n, now, None, json!({"email": "ann@example.com"}))]
        } else {
            vec![pageview(n, now, "https://shop.example/")]
        };
        app.post_batch(&batch(VISITOR, now, events)).await.ok_json();
        expected_ids.push(app.sessions_of(VISITOR).await[0]["id"].clone());
        app.clock.advance_ms(TIMEOUT);
    }
    // Someone else's session is not listed.
    let now = app.clock.now_ms();
    app.post_batch(&batch(OTHER_VISITOR, now, vec![record(9, "x", now)]))
        .await
        .ok_json();
    expected_ids.reverse();

    let first = app
        .get(&format!("{}?pageSize=2", contact_sessions_uri(&ann)))
        .await
        .ok_json();
    let ids = |listing: &Value| -> Vec<Value> {
        listing["entities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|session| session["id"].clone())
            .collect()
    };
    assert_eq!(ids(&first), expected_ids[..2]);
    assert_eq!(
        first["nextUri"],
        json!(format!(
            "{}?pageSize=2&after={}",
            contact_sessions_uri(&ann),
            expected_ids[1].as_str().unwrap()
        ))
    );
    for session in first["entities"].as_array().unwrap() {
        assert_eq!(linked_contact(session), Some(ann.as_str()));
    }
    let second = app.get(first["nextUri"].as_str().unwrap()).await.ok_json();
    assert_eq!(ids(&second), expected_ids[2..]);
    assert_eq!(second.get("nextUri"), None);

    app.get(&contact_sessions_uri("no-such-contact"))
        .await
        .assert_error(axum::http::StatusCode::NOT_FOUND, "not.found");

    // Deleting the contact keeps the sessions but drops their link.
    app.send_json(
        "DELETE",
        &format!("/api/v2/externalcontacts/contacts/{ann}"),
        None,
    )
    .await;
    let sessions = app.sessions_of(VISITOR).await;
    assert_eq!(sessions.len(), 3);
    assert!(sessions
        .iter()
        .all(|session| session.get("externalContact").is_none()));
    app.get(&contact_sessions_uri(&ann))
        .await
        .assert_error(axum::http::StatusCode::NOT_FOUND, "not.found");
}
