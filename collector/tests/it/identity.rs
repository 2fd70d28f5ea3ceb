//! Identity resolution during ingest: linking sessions to external contacts.

use serde_json::{json, Value};

use footpath_collector::config::IdentityVerificationConfig;
use footpath_collector::identity::sign_identity_token;

use crate::support::*;

pub const SECRET: &str = "site-secret-for-tests-0123456789abcdef";

/// An identity token for the test deployment and `VISITOR` (`vid`), valid for an hour
/// from `T0`, with the given claims added.
pub fn token(claims: Value) -> String {
    token_for(DEPLOYMENT, SECRET, with_visitor(claims))
}

/// The same, valid for an hour from `now_ms`.
pub fn token_valid_at(now_ms: i64, claims: Value) -> String {
    sign(DEPLOYMENT, SECRET, now_ms, with_visitor(claims))
}

/// A token bound to no visitor: it verifies a session, and moves no cookie.
pub fn unbound_token(claims: Value) -> String {
    token_for(DEPLOYMENT, SECRET, claims)
}

pub fn token_for(deployment: &str, secret: &str, claims: Value) -> String {
    sign(deployment, secret, T0, claims)
}

fn with_visitor(mut claims: Value) -> Value {
    claims["vid"] = json!(VISITOR);
    claims
}

fn sign(deployment: &str, secret: &str, now_ms: i64, claims: Value) -> String {
    let mut all = json!({"aud": deployment, "exp": now_ms / 1000 + 3600});
    all.as_object_mut()
        .unwrap()
        .extend(claims.as_object().unwrap().clone());
    sign_identity_token(secret, all.as_object().unwrap())
}

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

pub fn with_identity_verification(require_verified_identity: bool) -> TestApp {
    TestApp::with_config(|config| {
        config.identity_verification = vec![identity_verification(require_verified_identity)]
    })
}

/// The test deployment's identity settings, signed with [`SECRET`].
pub fn identity_verification(require_verified_identity: bool) -> IdentityVerificationConfig {
    IdentityVerificationConfig {
        deployment_id: DEPLOYMENT.to_owned(),
        identity_secret: Some(SECRET.to_owned()),
        require_verified_identity,
        identity_token_max_lifetime_minutes: 1_440,
    }
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
async fn an_unverified_email_links_the_session_only_and_a_token_links_the_cookie() {
    let app = with_identity_verification(false);
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
                json!({"email": "ANN@example.COM", "firstName": "Mallory"}),
            ),
        ],
    ))
    .await
    .ok_json();
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(linked_contact(&session), Some(ann.as_str()));
    assert_eq!(session["authenticated"], false);
    // A claim puts nothing on the contact: no cookie, no field.
    let contact = app.contact(&ann).await;
    assert_eq!(
        identifiers(&contact),
        pairs(&[("Email", "ann@example.com")])
    );
    assert_eq!(contact["firstName"], "Ann");
    assert_eq!(contact["modifyDate"], contact["createDate"]);

    // So a later visit with no traits is not recognised.
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
    assert_eq!(sessions[0].get("externalContact"), None);

    // A verified identity puts the cookie on the contact ...
    let signed = token_valid_at(now, json!({"sub": "user-42", "email": "ann@example.com"}));
    app.post_batch(&batch(
        VISITOR,
        now,
        vec![identify(
            4,
            now,
            Some("user-42"),
            json!({"identityToken": signed}),
        )],
    ))
    .await
    .ok_json();
    let contact = app.contact(&ann).await;
    assert_eq!(
        identifiers(&contact),
        pairs(&[("Email", "ann@example.com"), ("Cookie", VISITOR)])
    );
    assert_eq!(
        contact["identifiers"][1]["dateCreated"],
        "2026-11-24T06:55:14.123Z"
    );
    // ... and the next visit is linked by the cookie alone, from its first event on.
    app.clock.advance_ms(2 * TIMEOUT);
    let now = app.clock.now_ms();
    app.post_batch(&batch(
        VISITOR,
        now,
        vec![pageview(5, now, "https://shop.example/")],
    ))
    .await
    .ok_json();
    let sessions = app.sessions_of(VISITOR).await;
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions[0]["eventCount"], 1);
    assert_eq!(linked_contact(&sessions[0]), Some(ann.as_str()));

    // Another visitor is not affected.
    app.post_batch(&batch(OTHER_VISITOR, now, vec![record(6, "browsed", now)]))
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
    // Claims link sessions only: no cookie was put on the contact.
    assert_eq!(
        identifiers(&app.contact(&carla).await),
        pairs(&[("Phone", "+442079460018")])
    );
}

#[tokio::test]
async fn a_verified_identify_as_someone_else_moves_the_cookie_and_the_session_follows() {
    let app = with_identity_verification(false);
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
    let as_ann = token(json!({"sub": "ann", "email": "ann@example.com"}));
    let as_bob = token(json!({"sub": "bob", "email": "bob@example.com"}));
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![identify(
            1,
            T0 - 4 * SECOND,
            Some("ann"),
            json!({"identityToken": as_ann}),
        )],
    ))
    .await
    .ok_json();
    assert_eq!(
        linked_contact(&app.only_session_of(VISITOR).await),
        Some(ann.as_str())
    );

    // Traits that name Bob do not move the cookie: not unverified ones on an identify,
    // and not verified ones on a custom event (only an identify moves a cookie). The
    // cookie's contact wins and Bob's email is not written onto Ann.
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![
            identify(2, T0 - 3 * SECOND, Some("bob"), json!({"email": "bob@example.com"})),
            json!({"id": event_id(3), "kind": "record", "name": "clicked", "time": T0 - 2 * SECOND,
                   "loginId": "bob", "traits": {"email": "bob@example.com", "identityToken": as_bob}}),
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
            4,
            T0 - SECOND,
            Some("bob"),
            json!({"identityToken": as_bob}),
        )],
    ))
    .await
    .ok_json();
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(session["eventCount"], 4);
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
async fn signed_claims_update_the_contact_and_unsigned_traits_never_do() {
    let app = with_identity_verification(false);
    let ann = contact_with(
        &app,
        json!({"firstName": "Ann", "lastName": "Lee", "workEmail": "ann@work.example"}),
    )
    .await;
    app.clock.advance_ms(MINUTE);
    let now = app.clock.now_ms();
    // Unverified traits of a visitor who types Ann's email: linked, nothing written.
    app.post_batch(&batch(
        OTHER_VISITOR,
        now,
        vec![identify(
            1,
            now,
            None,
            json!({"email": "ann@work.example", "firstName": "Mallory", "cellPhone": "+12015550199"}),
        )],
    ))
    .await
    .ok_json();
    let contact = app.contact(&ann).await;
    assert_eq!(contact["firstName"], "Ann");
    assert_eq!(contact.get("cellPhone"), None);
    assert_eq!(contact["modifyDate"], contact["createDate"]);

    // The site's signed claims do update it; unsigned traits beside them do not.
    let claims = token(json!({"sub": "ann", "email": "ann@work.example",
                              "given_name": "Annabel", "family_name": "Lee-Smith",
                              "phone_number": "+12015550123"}));
    app.post_batch(&batch(
        VISITOR,
        now,
        vec![identify(
            2,
            now,
            Some("ann"),
            json!({"identityToken": claims, "firstName": "Unsigned", "plan": "gold"}),
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

    // A token whose identifiers match nobody writes onto nobody, not even onto the
    // contact the cookie is on: the site vouched for a user, not for Ann.
    app.clock.advance_ms(MINUTE);
    let now = app.clock.now_ms();
    let claims = token(json!({"sub": "ann", "email": "someone@else.example", "given_name": "Eve"}));
    app.post_batch(&batch(
        VISITOR,
        now,
        vec![identify(
            3,
            now,
            Some("ann"),
            json!({"identityToken": claims}),
        )],
    ))
    .await
    .ok_json();
    assert_eq!(app.contact(&ann).await["firstName"], "Annabel");

    // A new signed email beside a signed identifier of the contact becomes
    // personalEmail and an identifier.
    let claims = token(json!({"sub": "ann", "email": "Annabel@Home.example",
                              "phone_number": "+12015550123", "given_name": "Bel"}));
    app.post_batch(&batch(
        VISITOR,
        now,
        vec![identify(
            4,
            now,
            Some("ann"),
            json!({"identityToken": claims}),
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
async fn a_valid_token_sets_authenticated_and_is_not_stored() {
    let app = with_identity_verification(false);
    let ann = contact_with(&app, json!({"workEmail": "ann@example.com"})).await;
    let signed = token(json!({"sub": "user-42", "email": "ann@example.com"}));
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![
            pageview(1, T0 - 3 * SECOND, "https://shop.example/"),
            identify(
                2,
                T0 - 2 * SECOND,
                Some("user-42"),
                json!({"email": "ann@example.com", "identityToken": signed}),
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

    // Without a token the deployment (which does not require one) still links the
    // session, unverified. A token without a sub works when the event has no loginId.
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
    app.post_batch(&batch(
        third_visitor,
        T0,
        vec![identify(
            5,
            T0,
            None,
            json!({"identityToken": unbound_token(json!({"email": "ann@example.com"}))}),
        )],
    ))
    .await
    .ok_json();
    let third = app.only_session_of(third_visitor).await;
    assert_eq!(third["authenticated"], true);
    assert_eq!(linked_contact(&third), Some(ann.as_str()));
    // A token bound to no visitor verifies the session, and puts no cookie on Ann.
    assert!(!identifiers(&app.contact(&ann).await)
        .iter()
        .any(|(_, value)| value == third_visitor));
}

#[tokio::test]
async fn required_verification_ignores_unsigned_and_wrongly_signed_identify() {
    let app = with_identity_verification(true);
    let ann = contact_with(
        &app,
        json!({"firstName": "Ann", "workEmail": "ann@example.com"}),
    )
    .await;
    let forged = token_for(
        DEPLOYMENT,
        "not-the-secret-but-just-as-long-0000",
        json!({"sub": "user-42", "email": "ann@example.com"}),
    );
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
                json!({"email": "ann@example.com", "identityToken": forged}),
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

    let signed = token(json!({"sub": "user-42", "email": "ann@example.com"}));
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![identify(
            4,
            T0,
            Some("user-42"),
            json!({"identityToken": signed}),
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

    // A logout without proof changes nothing where proof is required: the session stays
    // open and linked, the cookie stays. With the contact's token it signs out.
    app.post_batch(&batch(VISITOR, T0, vec![logout(5, T0 + SECOND)]))
        .await
        .ok_json();
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(session.get("endedDate"), None);
    assert_eq!(
        identifiers(&app.contact(&ann).await),
        pairs(&[("Email", "ann@example.com"), ("Cookie", VISITOR)])
    );
    let mut signed_logout = logout(6, T0 + 2 * SECOND);
    signed_logout["traits"] =
        json!({"identityToken": unbound_token(json!({"email": "ann@example.com"}))});
    app.post_batch(&batch(VISITOR, T0, vec![signed_logout]))
        .await
        .ok_json();
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(session["endedDate"], "2026-11-24T06:15:16.123Z");
    assert_eq!(
        identifiers(&app.contact(&ann).await),
        pairs(&[("Email", "ann@example.com")])
    );
}

#[tokio::test]
async fn a_contacts_sessions_are_listed_newest_first_in_pages() {
    let app = with_identity_verification(false);
    let ann = contact_with(&app, json!({"workEmail": "ann@example.com"})).await;
    let mut expected_ids = Vec::new();
    for n in 0..3_u32 {
        let now = app.clock.now_ms();
        let events = if n == 0 {
            let signed = token(json!({"email": "ann@example.com"}));
            vec![identify(n, now, None, json!({"identityToken": signed}))]
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

#[tokio::test]
async fn someone_elses_token_on_a_recognised_browser_does_not_authenticate_it() {
    let app = with_identity_verification(false);
    let ann = contact_with(&app, json!({"workEmail": "ann@example.com"})).await;
    contact_with(&app, json!({"workEmail": "bob@example.com"})).await;
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![identify(
            1,
            T0,
            None,
            json!({"identityToken": token(json!({"email": "ann@example.com"}))}),
        )],
    ))
    .await
    .ok_json();
    // Ann's next visit: recognised by the cookie, not (yet) authenticated.
    app.clock.advance_ms(2 * TIMEOUT);
    let now = app.clock.now_ms();
    app.post_batch(&batch(
        VISITOR,
        now,
        vec![pageview(2, now, "https://shop.example/")],
    ))
    .await
    .ok_json();
    // Bob, who knows Ann's visitor id, sends his own valid (unbound) token with it.
    let bobs = unbound_token(json!({"sub": "bob", "email": "bob@example.com"}));
    app.post_batch(&batch(
        VISITOR,
        now,
        vec![identify(
            3,
            now + SECOND,
            Some("bob"),
            json!({"identityToken": bobs}),
        )],
    ))
    .await
    .ok_json();
    let session = &app.sessions_of(VISITOR).await[0];
    assert_eq!(linked_contact(session), Some(ann.as_str()));
    assert_eq!(
        session["authenticated"], false,
        "Bob's token proves nothing about Ann: {session:#}"
    );
}

/// A look-alike address signed for one customer must not become another's identifier:
/// identifiers are kept with ASCII folding only, like the look-ups.
#[tokio::test]
async fn a_signed_look_alike_email_does_not_take_over_another_customers_address() {
    let app = with_identity_verification(false);
    // Mallory is a known customer (older contact, found by her phone).
    let mallory = contact_with(
        &app,
        json!({"firstName": "Mallory", "cellPhone": "+442079460999"}),
    )
    .await;
    app.clock.advance_ms(SECOND);
    let kate = contact_with(
        &app,
        json!({"firstName": "Kate", "workEmail": "kate@example.com"}),
    )
    .await;
    // The site let Mallory register "\u{212A}ate@example.com" (a Kelvin sign, so not the
    // same string as kate@example.com) and signs it.
    let attacker = "a77ac4e2-0000-4000-8000-0000000000a1";
    let own = token_for(
        DEPLOYMENT,
        SECRET,
        json!({"sub": "mallory", "phone_number": "+442079460999",
               "email": "\u{212A}ate@example.com", "vid": attacker}),
    );
    app.post_batch(&batch(
        attacker,
        T0,
        vec![identify(
            1,
            T0 - SECOND,
            Some("mallory"),
            json!({"identityToken": own}),
        )],
    ))
    .await
    .ok_json();
    let identifiers_of_mallory = identifiers(&app.contact(&mallory).await);
    assert!(
        identifiers_of_mallory
            .contains(&("Email".to_owned(), "\u{212A}ate@example.com".to_owned())),
        "{identifiers_of_mallory:?}"
    );
    assert!(!identifiers_of_mallory.contains(&("Email".to_owned(), "kate@example.com".to_owned())));
    // Kate signs in on her own browser: she is Kate, and her cookie goes on her contact.
    let kates = token(json!({"sub": "kate", "email": "kate@example.com"}));
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![identify(
            2,
            T0 - SECOND,
            Some("kate"),
            json!({"identityToken": kates}),
        )],
    ))
    .await
    .ok_json();
    assert_eq!(
        linked_contact(&app.only_session_of(VISITOR).await),
        Some(kate.as_str())
    );
    assert!(
        identifiers(&app.contact(&kate).await).contains(&("Cookie".to_owned(), VISITOR.to_owned()))
    );
}

/// A token not bound to the visitor, replayed with another visitor's id, cannot take
/// that visitor's session over from the customer it is linked to.
#[tokio::test]
async fn a_replayed_unbound_token_does_not_take_over_a_linked_session() {
    let app = with_identity_verification(false);
    let kate = contact_with(
        &app,
        json!({"firstName": "Kate", "workEmail": "kate@example.com"}),
    )
    .await;
    contact_with(
        &app,
        json!({"firstName": "Bob", "workEmail": "bob@example.com"}),
    )
    .await;
    // Kate's site does not bind its tokens.
    let kates = unbound_token(json!({"sub": "kate", "email": "kate@example.com"}));
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![identify(
            1,
            T0 - 2 * SECOND,
            Some("kate"),
            json!({"identityToken": kates}),
        )],
    ))
    .await
    .ok_json();
    // Bob, knowing Kate's visitor id, replays his own unbound token on it.
    let bobs = unbound_token(json!({"sub": "bob", "email": "bob@example.com"}));
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![identify(
            2,
            T0 - SECOND,
            Some("bob"),
            json!({"identityToken": bobs}),
        )],
    ))
    .await
    .ok_json();
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(linked_contact(&session), Some(kate.as_str()));
    assert_eq!(
        session["authenticated"], true,
        "Kate's own proof still stands"
    );
}

/// A deployment without an identity secret can verify nothing: a token sent to it is a
/// failed proof, and claims nothing (no fallback to the traits beside it).
#[tokio::test]
async fn a_token_sent_to_a_deployment_without_a_secret_claims_nothing() {
    let app = TestApp::new();
    contact_with(&app, json!({"workEmail": "ann@example.com"})).await;
    let signed = token(json!({"email": "ann@example.com"}));
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![identify(
            1,
            T0,
            None,
            json!({"email": "ann@example.com", "identityToken": signed}),
        )],
    ))
    .await
    .ok_json();
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(linked_contact(&session), None, "{session:#}");
    assert_eq!(session["authenticated"], false);
}

/// Whoever fills a visitor's session (a visitor id is all it takes) cannot lock the
/// customer's own sign-in out: the full session is closed and the sign-in starts a new,
/// verified one.
#[tokio::test]
async fn a_full_session_does_not_lock_the_customers_sign_in_out() {
    let app = TestApp::with_config(|config| {
        config.max_events_per_session = 5;
        config.identity_verification = vec![identity_verification(false)];
    });
    let kate = contact_with(&app, json!({"workEmail": "kate@example.com"})).await;
    let junk: Vec<Value> = (1..=5)
        .map(|n| record(n, "junk", T0 - 10 * SECOND))
        .collect();
    app.post_batch(&batch(VISITOR, T0, junk)).await.ok_json();
    let signed = token(json!({"sub": "kate", "email": "kate@example.com"}));
    let answer = app
        .post_batch(&batch(
            VISITOR,
            T0,
            vec![identify(
                6,
                T0 - SECOND,
                Some("kate"),
                json!({"identityToken": signed}),
            )],
        ))
        .await
        .ok_json();
    assert_eq!(answer["accepted"], 1, "{answer:#}");
    let sessions = app.sessions_of(VISITOR).await;
    assert_eq!(sessions.len(), 2, "{sessions:#?}");
    assert_eq!(linked_contact(&sessions[0]), Some(kate.as_str()));
    assert_eq!(sessions[0]["authenticated"], true);
    assert_eq!(sessions[1]["eventCount"], 5);
    assert!(
        sessions[1]["endedDate"].is_string(),
        "the full session is closed"
    );
}
