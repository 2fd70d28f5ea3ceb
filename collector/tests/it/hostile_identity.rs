//! Hostile requests against identity: what someone who knows a visitor id, or who has an
//! account on the site, can make the collector believe. One table; each case is sent to
//! a fresh collector in which the victim, Kate, is signed in (a token bound to her
//! browser put her visitor cookie on her contact), and another customer, Bob, exists.
//!
//! After every case: the documented status; Kate's and Bob's contacts unchanged (fields,
//! identifiers, modifyDate); the victim's sessions unchanged in number, link, end and
//! authentication; and the attacker's own session linked only as the case allows.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::identity::{token, token_for, unbound_token, with_identity_verification, SECRET};
use crate::openapi::web_event_request;
use crate::support::*;

/// The attacker's own browser.
const ATTACKER: &str = "a77ac4e2-0000-4000-8000-0000000000a1";

enum Attack {
    /// An SDK batch from a visitor id.
    Batch {
        visitor: &'static str,
        events: Vec<Value>,
    },
    /// A Journey API web event.
    WebEvent(Value),
}

struct Case {
    name: &'static str,
    /// The deployment requires verified identity.
    require: bool,
    attack: Attack,
    status: StatusCode,
    /// Whom the attacker's own session may be linked to: `Some("kate")` only where an
    /// unverified claim may link a session (shown to agents as unverified).
    attacker_link: Option<&'static str>,
    /// Whether the attacker's own session ends up authenticated (a valid token of the
    /// attacker's own account is a real proof of who the attacker is).
    attacker_authenticated: bool,
}

fn identify_with(traits: Value) -> Value {
    identify(90, T0, None, traits)
}

fn identify_as(login_id: &str, traits: Value) -> Value {
    identify(90, T0, Some(login_id), traits)
}

fn batch_from(visitor: &'static str, events: Vec<Value>) -> Attack {
    Attack::Batch { visitor, events }
}

/// A token signed by hand, so that its header or encoding can be wrong.
fn raw_token(header: &str, claims: &Value, key: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn kate_claims() -> Value {
    json!({"aud": DEPLOYMENT, "exp": T0 / 1000 + 3600, "sub": "kate", "email": "kate@example.com"})
}

fn web_event(visitor: &str, name: &str, traits: Value) -> Value {
    let traits: serde_json::Map<String, Value> = traits
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, value)| (key.clone(), json!({"dataType": "String", "value": value})))
        .collect();
    json!({"customerCookieId": visitor, "eventName": name,
           "createdDate": footpath_collector::timefmt::format_ms(T0), "traits": traits})
}

fn cases() -> Vec<Case> {
    let ok = |name, require, attack, attacker_link, attacker_authenticated| Case {
        name,
        require,
        attack,
        status: StatusCode::OK,
        attacker_link,
        attacker_authenticated,
    };
    let kate = Some("kate");
    let kates_bound_token = token(json!({"sub": "kate", "email": "kate@example.com"}));
    let bobs_unbound_token = unbound_token(json!({"sub": "bob", "email": "bob@example.com"}));
    let bobs_token_for_his_browser = token_for(
        DEPLOYMENT,
        SECRET,
        json!({"sub": "bob", "email": "bob@example.com", "vid": ATTACKER}),
    );
    let mut spliced = bobs_token_for_his_browser
        .split('.')
        .map(str::to_owned)
        .collect::<Vec<_>>();
    spliced[1] = kates_bound_token.split('.').nth(1).unwrap().to_owned();
    let spliced = spliced.join(".");
    vec![
        // --- Unverified claims (the deployment does not require verification) ---
        ok(
            "a customer's email typed into a form",
            false,
            batch_from(
                ATTACKER,
                vec![identify_with(json!({"email": "kate@example.com"}))],
            ),
            kate,
            false,
        ),
        ok(
            "a customer's email with names to overwrite hers",
            false,
            batch_from(
                ATTACKER,
                vec![identify_as(
                    "kate",
                    json!({"email": "KATE@example.com", "firstName": "Mallory", "lastName": "X"}),
                )],
            ),
            kate,
            false,
        ),
        ok(
            "a customer's E.164 phone with another email to add",
            false,
            batch_from(
                ATTACKER,
                vec![identify_with(
                    json!({"phone": "+442079460018", "email": "mallory@evil.example"}),
                )],
            ),
            kate,
            false,
        ),
        ok(
            "a customer's email with a phone to replace hers",
            false,
            batch_from(
                ATTACKER,
                vec![identify_with(
                    json!({"email": "kate@example.com", "cellPhone": "+12015550199"}),
                )],
            ),
            kate,
            false,
        ),
        ok(
            "Kelvin sign instead of k (Unicode case folding spoof)",
            false,
            batch_from(
                ATTACKER,
                vec![identify_with(json!({"email": "\u{212A}ate@example.com"}))],
            ),
            None,
            false,
        ),
        ok(
            "fullwidth letters of a customer's email",
            false,
            batch_from(
                ATTACKER,
                vec![identify_with(
                    json!({"email": "\u{FF2B}\u{FF21}\u{FF34}\u{FF25}@example.com"}),
                )],
            ),
            None,
            false,
        ),
        ok(
            "another customer's email claimed on the victim's visitor id",
            false,
            batch_from(
                VISITOR,
                vec![identify_with(json!({"email": "bob@example.com"}))],
            ),
            None,
            false,
        ),
        ok(
            "another customer's email riding on a custom event of the victim",
            false,
            batch_from(
                VISITOR,
                vec![
                    json!({"id": event_id(91), "kind": "record", "name": "clicked", "time": T0,
                                            "traits": {"email": "bob@example.com"}}),
                ],
            ),
            None,
            false,
        ),
        ok(
            "own valid token of someone unknown, then a customer's email typed on the same page",
            false,
            batch_from(
                ATTACKER,
                vec![
                    identify(
                        93,
                        T0 - 2 * SECOND,
                        Some("mallory"),
                        json!({
                   "identityToken": token_for(DEPLOYMENT, SECRET, json!({"sub": "mallory", "email": "mallory@evil.example", "vid": ATTACKER}))}),
                    ),
                    identify(94, T0 - SECOND, None, json!({"email": "kate@example.com"})),
                ],
            ),
            kate,
            false,
        ),
        // --- Tokens that must not verify anything ---
        ok(
            "own valid token plus a customer's email as an unsigned trait",
            false,
            batch_from(
                ATTACKER,
                vec![identify_as(
                    "mallory",
                    json!({"email": "kate@example.com",
               "identityToken": token_for(DEPLOYMENT, SECRET, json!({"sub": "mallory", "email": "mallory@evil.example", "vid": ATTACKER}))}),
                )],
            ),
            None,
            true,
        ),
        ok(
            "own valid token whose sub is not the loginId sent",
            false,
            batch_from(
                ATTACKER,
                vec![identify_as(
                    "kate",
                    json!({
               "identityToken": token_for(DEPLOYMENT, SECRET, json!({"sub": "mallory", "email": "kate@example.com", "vid": ATTACKER}))}),
                )],
            ),
            None,
            false,
        ),
        ok(
            "a customer's identity signed with a guessed secret",
            false,
            batch_from(
                ATTACKER,
                vec![identify_as(
                    "kate",
                    json!({"email": "kate@example.com",
               "identityToken": token_for(DEPLOYMENT, "guessed-secret-guessed-secret-0000", json!({"sub": "kate", "email": "kate@example.com"}))}),
                )],
            ),
            None,
            false,
        ),
        ok(
            "a token for another deployment",
            false,
            batch_from(
                ATTACKER,
                vec![identify_as(
                    "kate",
                    json!({
               "identityToken": token_for(OPEN_DEPLOYMENT, SECRET, json!({"sub": "kate", "email": "kate@example.com"}))}),
                )],
            ),
            None,
            false,
        ),
        ok(
            "an expired token of the customer",
            false,
            batch_from(
                ATTACKER,
                vec![identify_as(
                    "kate",
                    json!({
               "identityToken": raw_token(r#"{"alg":"HS256"}"#, &json!({"aud": DEPLOYMENT, "exp": T0 / 1000 - 3600, "sub": "kate", "email": "kate@example.com"}), SECRET)}),
                )],
            ),
            None,
            false,
        ),
        ok(
            "a token valid for a year",
            false,
            batch_from(
                ATTACKER,
                vec![identify_as(
                    "kate",
                    json!({
               "identityToken": raw_token(r#"{"alg":"HS256"}"#, &json!({"aud": DEPLOYMENT, "exp": T0 / 1000 + 366 * 86_400, "sub": "kate", "email": "kate@example.com"}), SECRET)}),
                )],
            ),
            None,
            false,
        ),
        ok(
            "a token without exp",
            false,
            batch_from(
                ATTACKER,
                vec![identify_as(
                    "kate",
                    json!({
               "identityToken": raw_token(r#"{"alg":"HS256"}"#, &json!({"aud": DEPLOYMENT, "sub": "kate", "email": "kate@example.com"}), SECRET)}),
                )],
            ),
            None,
            false,
        ),
        ok(
            "alg none with no signature",
            false,
            batch_from(
                ATTACKER,
                vec![identify_as(
                    "kate",
                    json!({
               "identityToken": format!("{}.",
                   raw_token(r#"{"alg":"none"}"#, &kate_claims(), "").rsplit_once('.').unwrap().0)}),
                )],
            ),
            None,
            false,
        ),
        ok(
            "alg HS384 with the right secret (algorithm confusion)",
            false,
            batch_from(
                ATTACKER,
                vec![identify_as(
                    "kate",
                    json!({
               "identityToken": raw_token(r#"{"alg":"HS384"}"#, &kate_claims(), SECRET)}),
                )],
            ),
            None,
            false,
        ),
        ok(
            "the victim's bound token replayed from another browser",
            false,
            batch_from(
                ATTACKER,
                vec![identify_as(
                    "kate",
                    json!({"identityToken": kates_bound_token.clone()}),
                )],
            ),
            None,
            false,
        ),
        ok(
            "a customer's claims spliced onto the attacker's signature",
            false,
            batch_from(
                ATTACKER,
                vec![identify_as("kate", json!({"identityToken": spliced}))],
            ),
            None,
            false,
        ),
        ok(
            "the old scheme's signature over the attacker's own login",
            false,
            batch_from(
                ATTACKER,
                vec![identify_as(
                    "mallory",
                    json!({"email": "kate@example.com",
               "identitySignature": "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"}),
                )],
            ),
            None,
            false,
        ),
        ok(
            "a token that is a number",
            false,
            batch_from(
                ATTACKER,
                vec![identify_with(
                    json!({"email": "kate@example.com", "identityToken": 12345}),
                )],
            ),
            None,
            false,
        ),
        Case {
            name: "a 5 KB token (trait values are at most 1,024 bytes)",
            require: false,
            attack: batch_from(
                ATTACKER,
                vec![identify_with(
                    json!({"email": "kate@example.com", "identityToken": "e".repeat(5_000)}),
                )],
            ),
            status: StatusCode::BAD_REQUEST,
            attacker_link: None,
            attacker_authenticated: false,
        },
        Case {
            name: "a token that is an object (traits are scalars)",
            require: false,
            attack: batch_from(
                ATTACKER,
                vec![identify_with(json!({"identityToken": {"alg": "none"}}))],
            ),
            status: StatusCode::BAD_REQUEST,
            attacker_link: None,
            attacker_authenticated: false,
        },
        // --- On the victim's visitor id ---
        ok(
            "another customer's own unbound token on the victim's visitor id",
            false,
            batch_from(
                VISITOR,
                vec![identify_as(
                    "bob",
                    json!({"identityToken": bobs_unbound_token.clone()}),
                )],
            ),
            None,
            false,
        ),
        ok(
            "another customer's browser-bound token replayed on the victim's visitor id",
            false,
            batch_from(
                VISITOR,
                vec![identify_as(
                    "bob",
                    json!({"identityToken": bobs_token_for_his_browser.clone()}),
                )],
            ),
            None,
            false,
        ),
        // --- Where verification is required ---
        ok(
            "required: an unverified logout of the victim's browser",
            true,
            batch_from(VISITOR, vec![logout(92, T0)]),
            None,
            false,
        ),
        ok(
            "required: a logout with another customer's valid token",
            true,
            batch_from(
                VISITOR,
                vec![{
                    let mut event = logout(92, T0);
                    event["traits"] = json!({"identityToken": bobs_unbound_token.clone()});
                    event
                }],
            ),
            None,
            false,
        ),
        ok(
            "required: a customer's email typed into a form links nothing",
            true,
            batch_from(
                ATTACKER,
                vec![identify_with(
                    json!({"email": "kate@example.com", "firstName": "Mallory"}),
                )],
            ),
            None,
            false,
        ),
        ok(
            "required: a forged token with the customer's email",
            true,
            batch_from(
                ATTACKER,
                vec![identify_with(json!({"email": "kate@example.com",
               "identityToken": token_for(DEPLOYMENT, "guessed-secret-guessed-secret-0000", json!({"email": "kate@example.com"}))}))],
            ),
            None,
            false,
        ),
        // --- The Journey API's public web events ---
        ok(
            "web event: a customer's email on the victim's visitor id",
            false,
            Attack::WebEvent(web_event(
                VISITOR,
                "identified",
                json!({"email": "bob@example.com"}),
            )),
            None,
            false,
        ),
        ok(
            "web event: the attacker's own token plus a customer's email",
            false,
            Attack::WebEvent(web_event(
                ATTACKER,
                "identified",
                json!({"email": "kate@example.com",
               "identityToken": token_for(DEPLOYMENT, SECRET, json!({"sub": "mallory", "email": "mallory@evil.example"}))}),
            )),
            None,
            true,
        ),
        ok(
            "required: web event logout of the victim without proof",
            true,
            Attack::WebEvent(web_event(VISITOR, "logged_out", json!({}))),
            None,
            false,
        ),
    ]
}

/// What must not change: the two contacts and the victim's sessions.
async fn snapshot(app: &TestApp, kate: &str, bob: &str) -> (Value, Value, Vec<Value>) {
    let sessions = app
        .sessions_of(VISITOR)
        .await
        .into_iter()
        .map(|session| {
            json!({"id": session["id"], "contact": session.get("externalContact").map(|c| c["id"].clone()),
                   "ended": session.get("endedDate"), "authenticated": session["authenticated"]})
        })
        .collect();
    (app.contact(kate).await, app.contact(bob).await, sessions)
}

#[tokio::test]
async fn hostile_identity_requests_change_no_one() {
    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    for case in cases {
        let app = with_identity_verification(case.require);
        let kate = app
            .create_contact(json!({"firstName": "Kate", "workEmail": "kate@example.com", "cellPhone": "+442079460018"}))
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let bob = app
            .create_contact(json!({"firstName": "Bob", "workEmail": "bob@example.com"}))
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        // Kate signs in on her browser with a token bound to it.
        app.post_batch(&batch(
            VISITOR,
            T0,
            vec![identify(
                1,
                T0 - MINUTE,
                Some("kate"),
                json!({"identityToken": token(json!({"sub": "kate", "email": "kate@example.com"}))}),
            )],
        ))
        .await
        .ok_json();
        let before = snapshot(&app, &kate, &bob).await;
        assert_eq!(before.2.len(), 1, "{}: setup", case.name);
        assert_eq!(before.2[0]["contact"], json!(kate), "{}: setup", case.name);

        let response = match case.attack {
            Attack::Batch { visitor, events } => app.post_batch(&batch(visitor, T0, events)).await,
            Attack::WebEvent(body) => app.send(web_event_request(body)).await,
        };
        assert_eq!(
            response.status,
            case.status,
            "{}: {}",
            case.name,
            String::from_utf8_lossy(&response.body)
        );
        let after = snapshot(&app, &kate, &bob).await;
        assert_eq!(after.0, before.0, "{}: Kate's contact changed", case.name);
        assert_eq!(after.1, before.1, "{}: Bob's contact changed", case.name);
        assert_eq!(
            after.2, before.2,
            "{}: the victim's sessions changed",
            case.name
        );

        let attacker_sessions = app.sessions_of(ATTACKER).await;
        if case.status == StatusCode::OK
            && String::from_utf8_lossy(&response.body).contains("customerCookieId")
        {
            // A web event's answer tells nothing about a session the sender did not
            // make: not its size, not that Kate's is authenticated.
            let answer = response.json();
            assert_eq!(
                answer["session"]["eventCount"], 1,
                "{}: {answer:#}",
                case.name
            );
            assert_eq!(
                answer["authenticated"], case.attacker_authenticated,
                "{}",
                case.name
            );
        }
        match attacker_sessions.as_slice() {
            [] => assert!(
                case.attacker_link.is_none(),
                "{}: no attacker session",
                case.name
            ),
            [session] => {
                let linked = session
                    .get("externalContact")
                    .map(|contact| contact["id"].clone());
                let expected = case.attacker_link.map(|_| json!(kate));
                assert_eq!(linked, expected, "{}: attacker's link", case.name);
                assert_eq!(
                    session["authenticated"], case.attacker_authenticated,
                    "{}: attacker authenticated",
                    case.name
                );
            }
            more => panic!("{}: {} attacker sessions", case.name, more.len()),
        }
        if case.status != StatusCode::OK {
            assert!(
                attacker_sessions.is_empty(),
                "{}: a refused batch stored events",
                case.name
            );
        }
    }
}
