//! Hostile requests against the agents' desk and the credentials (issue 10): one table,
//! each case with the status (and error code) it must get, and the proof that nothing
//! changed: the desk's presentation is as it was, no desk session was created or
//! ended, and no visitor data was stored.
//!
//! Every attack request comes from the socket address [`ATTACKER`], so that the
//! fixture's own sign-ins (which have no address) never share its sign-in allowance.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Request, StatusCode};
use footpath_collector::config::Config;
use footpath_collector::desk::config::EventDisplay;
use footpath_collector::{router, AppState};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::support::{batch, pageview, test_config, TestApp, T0, TOKEN, VISITOR};

const AGENT_TOKEN: &str = "agent-token-for-hostile-tests-0123456789";
const ATTACKER: &str = "203.0.113.66";
/// The collector's own address as the hostile requests name it.
const HOST: &str = "collector.example:8700";
const OWN_ORIGIN: &str = "http://collector.example:8700";
const CONFIG_PATH: &str = "/api/v2/footpath/desk/config";
const SIGN_IN_LIMIT: u32 = 5;

/// What the fixture does before the attack request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prepare {
    Nothing,
    /// [`SIGN_IN_LIMIT`] wrong sign-ins from [`ATTACKER`], each answered 401.
    SpendSignInAllowance,
    /// The collector restarts over the same database without the agent token.
    RestartWithoutAgentToken,
}

/// What else the case proves besides "nothing changed".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Nothing,
    /// A `Retry-After` header of at least one second.
    RetryAfter,
    /// The error message contains this text.
    MessageHas(&'static str),
    /// The event is stored (the page is real), but the desk shows its URL as text.
    StoredButNotLinkable,
}

struct Fixture {
    app: TestApp,
    /// Signed in with an API token before the attack; must stay signed in.
    api_cookie: String,
    /// Signed in with the agent token before the attack.
    agent_cookie: String,
}

struct Case {
    name: &'static str,
    prepare: Prepare,
    request: fn(&Fixture) -> Request<Body>,
    status: StatusCode,
    /// The JSON error code, or `None` when the answer is a page or a redirect.
    code: Option<&'static str>,
    expect: Expect,
}

fn desk_config(config: &mut Config, with_agent_token: bool) {
    config.desk.sign_in_attempts_per_minute = SIGN_IN_LIMIT;
    if with_agent_token {
        config.desk.agent_tokens = vec![AGENT_TOKEN.to_owned()];
    }
    config.desk.events = vec![EventDisplay {
        name: "cart_added".to_owned(),
        display_name: Some("Added to cart".to_owned()),
        icon: Some("cart".to_owned()),
        attributes: Vec::new(),
    }];
}

fn from_attacker(mut request: Request<Body>) -> Request<Body> {
    let peer: IpAddr = ATTACKER.parse().unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(peer, 40_000)));
    request
}

fn form(token: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .finish()
}

/// A sign-in POST with these extra headers (the `Host` is always [`HOST`]).
fn sign_in_request(token: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::post("/desk/signin")
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    from_attacker(request.body(Body::from(form(token))).unwrap())
}

fn sign_out_request(cookie: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::post("/desk/signout")
        .header(header::HOST, HOST)
        .header(header::COOKIE, cookie);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    from_attacker(request.body(Body::empty()).unwrap())
}

fn request(method: &str, uri: &str, headers: &[(&str, &str)], body: Body) -> Request<Body> {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    from_attacker(request.body(body).unwrap())
}

/// A new presentation that, if it were ever accepted, the checks would see.
fn replacement() -> Body {
    Body::from(json!({"title": "Owned", "events": []}).to_string())
}

fn presentation_with_icon(icon: &str) -> Body {
    Body::from(
        json!({"title": "Owned", "events": [{"name": "cart_added", "icon": icon}]}).to_string(),
    )
}

/// A body that sends a little and then never ends: only a server that reads it would
/// wait for it.
fn endless_body() -> Body {
    let start = futures_util::stream::iter(vec![Ok::<Bytes, std::io::Error>(Bytes::from(
        vec![b'{'; 16 * 1024],
    ))]);
    Body::from_stream(start.chain(futures_util::stream::pending()))
}

fn big_body() -> Body {
    Body::from(vec![b'x'; 8 * 1024 * 1024])
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn batch_body(url: &str) -> Body {
    Body::from(batch(VISITOR, T0, vec![pageview(1, T0 - 1000, url)]).to_string())
}

fn post_batch(url: &str) -> Request<Body> {
    request(
        "POST",
        "/sdk/v1/batch",
        &[
            (header::CONTENT_TYPE.as_str(), "text/plain;charset=UTF-8"),
            (header::ORIGIN.as_str(), crate::support::ORIGIN),
        ],
        batch_body(url),
    )
}

fn cases() -> Vec<Case> {
    use StatusCode as S;
    vec![
        // Sign-in brute force: the attempt past the limit is refused before the token
        // is read.
        Case {
            name: "brute_force_past_the_limit",
            prepare: Prepare::SpendSignInAllowance,
            request: |_| sign_in_request("guess-number-six-0000000000000000000", &[]),
            status: S::TOO_MANY_REQUESTS,
            code: Some("rate.limited"),
            expect: Expect::RetryAfter,
        },
        // The right token from a limited address: refused alike, so a guess cannot be
        // confirmed by the answer.
        Case {
            name: "right_token_while_limited",
            prepare: Prepare::SpendSignInAllowance,
            request: |_| sign_in_request(TOKEN, &[]),
            status: S::TOO_MANY_REQUESTS,
            code: Some("rate.limited"),
            expect: Expect::MessageHas("too many sign-in attempts from this address"),
        },
        // A forged X-Forwarded-For from an untrusted peer does not buy a fresh
        // allowance.
        Case {
            name: "spoofed_forwarded_for_while_limited",
            prepare: Prepare::SpendSignInAllowance,
            request: |_| sign_in_request(TOKEN, &[("x-forwarded-for", "198.51.100.77")]),
            status: S::TOO_MANY_REQUESTS,
            code: Some("rate.limited"),
            expect: Expect::RetryAfter,
        },
        // Login CSRF: another site's page posts a (its own) valid token.
        Case {
            name: "cross_site_sign_in_by_fetch_metadata",
            prepare: Prepare::Nothing,
            request: |_| sign_in_request(TOKEN, &[("sec-fetch-site", "cross-site")]),
            status: S::FORBIDDEN,
            code: Some("origin.not.allowed"),
            expect: Expect::MessageHas("Sec-Fetch-Site: cross-site"),
        },
        // A sibling subdomain (same site, another origin) is another party.
        Case {
            name: "same_site_subdomain_sign_in",
            prepare: Prepare::Nothing,
            request: |_| {
                sign_in_request(
                    TOKEN,
                    &[
                        ("sec-fetch-site", "same-site"),
                        ("origin", "http://blog.collector.example:8700"),
                    ],
                )
            },
            status: S::FORBIDDEN,
            code: Some("origin.not.allowed"),
            expect: Expect::MessageHas("Sec-Fetch-Site: same-site"),
        },
        // An older browser without fetch metadata: the Origin header decides.
        Case {
            name: "cross_site_sign_in_by_origin",
            prepare: Prepare::Nothing,
            request: |_| sign_in_request(TOKEN, &[("origin", "https://attacker.example")]),
            status: S::FORBIDDEN,
            code: Some("origin.not.allowed"),
            expect: Expect::MessageHas(
                "Origin https://attacker.example is not the desk's own origin",
            ),
        },
        // A sandboxed frame or data: page sends `Origin: null`.
        Case {
            name: "sign_in_from_an_opaque_origin",
            prepare: Prepare::Nothing,
            request: |_| sign_in_request(TOKEN, &[("origin", "null")]),
            status: S::FORBIDDEN,
            code: Some("origin.not.allowed"),
            expect: Expect::Nothing,
        },
        // X-Forwarded-Host is believed only from trusted proxies: an attacker cannot
        // name their own site as the collector's.
        Case {
            name: "forged_forwarded_host_on_sign_in",
            prepare: Prepare::Nothing,
            request: |_| {
                sign_in_request(
                    TOKEN,
                    &[
                        ("x-forwarded-host", "attacker.example"),
                        ("origin", "http://attacker.example"),
                    ],
                )
            },
            status: S::FORBIDDEN,
            code: Some("origin.not.allowed"),
            expect: Expect::Nothing,
        },
        // Same host, other scheme: https://collector... is another origin than http.
        Case {
            name: "sign_in_origin_with_another_scheme",
            prepare: Prepare::Nothing,
            request: |_| sign_in_request(TOKEN, &[("origin", "https://collector.example:8700")]),
            status: S::FORBIDDEN,
            code: Some("origin.not.allowed"),
            expect: Expect::Nothing,
        },
        // A cross-site sign-in with a body that never ends is refused at once.
        Case {
            name: "cross_site_sign_in_with_an_endless_body",
            prepare: Prepare::Nothing,
            request: |_| {
                request(
                    "POST",
                    "/desk/signin",
                    &[("host", HOST), ("sec-fetch-site", "cross-site")],
                    endless_body(),
                )
            },
            status: S::FORBIDDEN,
            code: Some("origin.not.allowed"),
            expect: Expect::Nothing,
        },
        // An oversized sign-in form from the desk's own page.
        Case {
            name: "oversized_sign_in_form",
            prepare: Prepare::Nothing,
            request: |_| {
                request(
                    "POST",
                    "/desk/signin",
                    &[("host", HOST), ("origin", OWN_ORIGIN)],
                    Body::from(format!("token={TOKEN}&pad={}", "x".repeat(5000))),
                )
            },
            status: S::PAYLOAD_TOO_LARGE,
            code: Some("payload.too.large"),
            expect: Expect::Nothing,
        },
        // A token in the query string (where logs keep it) is not a sign-in.
        Case {
            name: "token_in_the_query_string",
            prepare: Prepare::Nothing,
            request: |_| {
                request(
                    "POST",
                    &format!("/desk/signin?token={TOKEN}"),
                    &[("host", HOST)],
                    Body::empty(),
                )
            },
            status: S::UNAUTHORIZED,
            code: None,
            expect: Expect::Nothing,
        },
        // Logout CSRF: another site signs the agent out.
        Case {
            name: "cross_site_sign_out_by_fetch_metadata",
            prepare: Prepare::Nothing,
            request: |f| sign_out_request(&f.api_cookie, &[("sec-fetch-site", "cross-site")]),
            status: S::FORBIDDEN,
            code: Some("origin.not.allowed"),
            expect: Expect::MessageHas("sign-out refused"),
        },
        Case {
            name: "cross_site_sign_out_by_origin",
            prepare: Prepare::Nothing,
            request: |f| sign_out_request(&f.api_cookie, &[("origin", "https://attacker.example")]),
            status: S::FORBIDDEN,
            code: Some("origin.not.allowed"),
            expect: Expect::Nothing,
        },
        // A session signed in with a token that was since removed from the
        // configuration (the collector restarted).
        Case {
            name: "removed_token_session_on_the_api",
            prepare: Prepare::RestartWithoutAgentToken,
            request: |f| {
                request(
                    "GET",
                    "/desk/api/sessions",
                    &[("cookie", f.agent_cookie.as_str())],
                    Body::empty(),
                )
            },
            status: S::UNAUTHORIZED,
            code: Some("authentication.required"),
            expect: Expect::Nothing,
        },
        Case {
            name: "removed_token_session_on_the_page",
            prepare: Prepare::RestartWithoutAgentToken,
            request: |f| {
                request(
                    "GET",
                    "/desk/",
                    &[("cookie", f.agent_cookie.as_str())],
                    Body::empty(),
                )
            },
            status: S::SEE_OTHER,
            code: None,
            expect: Expect::Nothing,
        },
        // Wrong token types: an agent token on the admin API...
        Case {
            name: "agent_token_on_the_admin_api",
            prepare: Prepare::Nothing,
            request: |_| {
                request(
                    "PUT",
                    CONFIG_PATH,
                    &[
                        ("authorization", &bearer(AGENT_TOKEN)),
                        ("content-type", "application/json"),
                    ],
                    replacement(),
                )
            },
            status: S::UNAUTHORIZED,
            code: Some("authentication.required"),
            expect: Expect::Nothing,
        },
        // ...a desk session cookie on the admin API...
        Case {
            name: "desk_cookie_on_the_admin_api",
            prepare: Prepare::Nothing,
            request: |f| {
                request(
                    "PUT",
                    CONFIG_PATH,
                    &[
                        ("cookie", f.api_cookie.as_str()),
                        ("content-type", "application/json"),
                    ],
                    replacement(),
                )
            },
            status: S::UNAUTHORIZED,
            code: Some("authentication.required"),
            expect: Expect::Nothing,
        },
        // ...a bearer token on the desk's cookie-only API...
        Case {
            name: "bearer_token_on_the_desk_api",
            prepare: Prepare::Nothing,
            request: |_| {
                request(
                    "GET",
                    "/desk/api/sessions",
                    &[("authorization", &bearer(TOKEN))],
                    Body::empty(),
                )
            },
            status: S::UNAUTHORIZED,
            code: Some("authentication.required"),
            expect: Expect::Nothing,
        },
        // ...and the right token under another scheme.
        Case {
            name: "api_token_as_basic_credentials",
            prepare: Prepare::Nothing,
            request: |_| {
                request(
                    "PUT",
                    CONFIG_PATH,
                    &[
                        ("authorization", &format!("Basic {TOKEN}")),
                        ("content-type", "application/json"),
                    ],
                    replacement(),
                )
            },
            status: S::UNAUTHORIZED,
            code: Some("authentication.required"),
            expect: Expect::Nothing,
        },
        // Unknown icon names are refused, naming the field and the allowed icons.
        Case {
            name: "unknown_icon",
            prepare: Prepare::Nothing,
            request: |_| {
                request(
                    "PUT",
                    CONFIG_PATH,
                    &[
                        ("authorization", &bearer(TOKEN)),
                        ("content-type", "application/json"),
                    ],
                    presentation_with_icon("rocket"),
                )
            },
            status: S::BAD_REQUEST,
            code: Some("bad.request"),
            expect: Expect::MessageHas(
                "events[0].icon: \"rocket\" is not a built-in icon; use one of web, start",
            ),
        },
        // Markup as an icon, for a desk that would draw it.
        Case {
            name: "markup_as_icon",
            prepare: Prepare::Nothing,
            request: |_| {
                request(
                    "PUT",
                    CONFIG_PATH,
                    &[
                        ("authorization", &bearer(TOKEN)),
                        ("content-type", "application/json"),
                    ],
                    presentation_with_icon("<img src=x onerror=alert(1)>"),
                )
            },
            status: S::BAD_REQUEST,
            code: Some("bad.request"),
            expect: Expect::MessageHas("events[0].icon"),
        },
        // A javascript: URL as an icon.
        Case {
            name: "javascript_url_as_icon",
            prepare: Prepare::Nothing,
            request: |_| {
                request(
                    "PUT",
                    CONFIG_PATH,
                    &[
                        ("authorization", &bearer(TOKEN)),
                        ("content-type", "application/json"),
                    ],
                    presentation_with_icon("javascript:alert(1)"),
                )
            },
            status: S::BAD_REQUEST,
            code: Some("bad.request"),
            expect: Expect::MessageHas("is not a built-in icon"),
        },
        // Unauthenticated uploads: refused before the body is read.
        Case {
            name: "unauthenticated_huge_config_body",
            prepare: Prepare::Nothing,
            request: |_| {
                request(
                    "PUT",
                    CONFIG_PATH,
                    &[("content-type", "application/json")],
                    big_body(),
                )
            },
            status: S::UNAUTHORIZED,
            code: Some("authentication.required"),
            expect: Expect::Nothing,
        },
        Case {
            name: "wrong_token_endless_config_body",
            prepare: Prepare::Nothing,
            request: |_| {
                request(
                    "PUT",
                    CONFIG_PATH,
                    &[
                        ("authorization", &bearer(&"x".repeat(40))),
                        ("content-type", "application/json"),
                    ],
                    endless_body(),
                )
            },
            status: S::UNAUTHORIZED,
            code: Some("authentication.required"),
            expect: Expect::Nothing,
        },
        Case {
            name: "unauthenticated_endless_contact_body",
            prepare: Prepare::Nothing,
            request: |_| {
                request(
                    "POST",
                    "/api/v2/externalcontacts/contacts",
                    &[("content-type", "application/json")],
                    endless_body(),
                )
            },
            status: S::UNAUTHORIZED,
            code: Some("authentication.required"),
            expect: Expect::Nothing,
        },
        Case {
            name: "unauthenticated_endless_segment_body",
            prepare: Prepare::Nothing,
            request: |_| {
                request(
                    "POST",
                    "/api/v2/journey/segments",
                    &[("content-type", "application/json")],
                    endless_body(),
                )
            },
            status: S::UNAUTHORIZED,
            code: Some("authentication.required"),
            expect: Expect::Nothing,
        },
        // Path tricks that would reach the admin API if anything normalised them.
        Case {
            name: "dot_dot_segment",
            prepare: Prepare::Nothing,
            request: |_| {
                request(
                    "PUT",
                    "/api/v2/journey/../footpath/desk/config",
                    &[
                        ("authorization", &bearer(TOKEN)),
                        ("content-type", "application/json"),
                    ],
                    replacement(),
                )
            },
            status: S::NOT_FOUND,
            code: Some("not.found"),
            expect: Expect::Nothing,
        },
        Case {
            name: "percent_encoded_dot_dot",
            prepare: Prepare::Nothing,
            request: |_| {
                request(
                    "PUT",
                    "/api/v2/journey/%2e%2e/footpath/desk/config",
                    &[
                        ("authorization", &bearer(TOKEN)),
                        ("content-type", "application/json"),
                    ],
                    replacement(),
                )
            },
            status: S::NOT_FOUND,
            code: Some("not.found"),
            expect: Expect::Nothing,
        },
        Case {
            name: "double_slash",
            prepare: Prepare::Nothing,
            request: |_| {
                request(
                    "PUT",
                    "//api/v2/footpath//desk/config",
                    &[
                        ("authorization", &bearer(TOKEN)),
                        ("content-type", "application/json"),
                    ],
                    replacement(),
                )
            },
            status: S::NOT_FOUND,
            code: Some("not.found"),
            expect: Expect::Nothing,
        },
        Case {
            name: "encoded_slash",
            prepare: Prepare::Nothing,
            request: |_| {
                request(
                    "PUT",
                    "/api/v2/footpath/desk%2Fconfig",
                    &[
                        ("authorization", &bearer(TOKEN)),
                        ("content-type", "application/json"),
                    ],
                    replacement(),
                )
            },
            status: S::NOT_FOUND,
            code: Some("not.found"),
            expect: Expect::Nothing,
        },
        // From the desk's cookie-only area up into the admin API.
        Case {
            name: "desk_path_climbing_to_the_admin_api",
            prepare: Prepare::Nothing,
            request: |f| {
                request(
                    "PUT",
                    "/desk/api/../../api/v2/footpath/desk/config",
                    &[
                        ("cookie", f.api_cookie.as_str()),
                        ("content-type", "application/json"),
                    ],
                    replacement(),
                )
            },
            status: S::NOT_FOUND,
            code: Some("not.found"),
            expect: Expect::Nothing,
        },
        // Page URLs that would run script or leave the site if the desk linked them.
        Case {
            name: "javascript_page_url",
            prepare: Prepare::Nothing,
            request: |_| post_batch("javascript:alert(document.cookie)"),
            status: S::BAD_REQUEST,
            code: Some("bad.request"),
            expect: Expect::MessageHas("page.url: must be an absolute http or https URL"),
        },
        Case {
            name: "data_page_url",
            prepare: Prepare::Nothing,
            request: |_| post_batch("data:text/html,<script>alert(1)</script>"),
            status: S::BAD_REQUEST,
            code: Some("bad.request"),
            expect: Expect::MessageHas("page.url"),
        },
        // A page that says it is on another site: stored, shown as text only.
        Case {
            name: "foreign_origin_page_url",
            prepare: Prepare::Nothing,
            request: |_| post_batch("https://attacker.example/reset-password"),
            status: S::OK,
            code: None,
            expect: Expect::StoredButNotLinkable,
        },
        // A look-alike: the shop's name as credentials of another host.
        Case {
            name: "credentials_lookalike_page_url",
            prepare: Prepare::Nothing,
            request: |_| post_batch("https://shop.example@attacker.example/"),
            status: S::OK,
            code: None,
            expect: Expect::StoredButNotLinkable,
        },
    ]
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// Sends through the router; a request that is not answered within 10 s fails the
/// test instead of hanging it (the endless bodies).
async fn send(state: &AppState, request: Request<Body>) -> Reply {
    let answer = async {
        let response = router(state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    };
    tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .expect("answered without reading the endless body")
}

async fn sign_in(state: &AppState, token: &str) -> String {
    let request = Request::post("/desk/signin")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form(token)))
        .unwrap();
    let reply = send(state, request).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let set_cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn admin_get(state: &AppState, uri: &str) -> Value {
    let request = Request::get(uri)
        .header(header::AUTHORIZATION, bearer(TOKEN))
        .body(Body::empty())
        .unwrap();
    let reply = send(state, request).await;
    assert_eq!(reply.status, StatusCode::OK, "{uri}");
    serde_json::from_slice(&reply.body).unwrap()
}

async fn cookie_status(state: &AppState, cookie: &str) -> StatusCode {
    let request = Request::get("/desk/api/sessions")
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    send(state, request).await.status
}

async fn fixture(prepare: Prepare) -> Fixture {
    let app = TestApp::with_config(|config| desk_config(config, true));
    let api_cookie = sign_in(&app.state, TOKEN).await;
    let agent_cookie = sign_in(&app.state, AGENT_TOKEN).await;
    let app = match prepare {
        Prepare::Nothing => app,
        Prepare::SpendSignInAllowance => {
            for attempt in 0..SIGN_IN_LIMIT {
                let token = format!("wrong-guess-{attempt}-0123456789abcdef0123456789");
                let reply = send(&app.state, sign_in_request(&token, &[])).await;
                assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
            }
            app
        }
        Prepare::RestartWithoutAgentToken => {
            let TestApp { clock, state, dir } = app;
            drop(state);
            let mut config = test_config(dir.path());
            desk_config(&mut config, false);
            let state = AppState::new(config, clock.clone()).unwrap();
            TestApp { clock, state, dir }
        }
    };
    Fixture {
        app,
        api_cookie,
        agent_cookie,
    }
}

#[tokio::test]
async fn hostile_desk_requests_are_refused_and_change_nothing() {
    let cases = cases();
    assert!(cases.len() >= 20, "{} cases", cases.len());
    for case in cases {
        let name = case.name;
        let fixture = fixture(case.prepare).await;
        let state = &fixture.app.state;
        let presentation_before = admin_get(state, CONFIG_PATH).await;
        let sessions_before = state.store().sign_ins().unwrap().len();
        let stored_before = admin_get(state, "/api/v2/journey/sessions").await["entities"]
            .as_array()
            .unwrap()
            .len();

        let reply = send(state, (case.request)(&fixture)).await;
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        assert_eq!(reply.status, case.status, "{name}: {text}");
        let mut message = String::new();
        if let Some(code) = case.code {
            let error: Value = serde_json::from_slice(&reply.body)
                .unwrap_or_else(|_| panic!("{name}: not a JSON error: {text}"));
            assert_eq!(error["status"], json!(case.status.as_u16()), "{name}");
            assert_eq!(error["code"], json!(code), "{name}");
            message = error["message"].as_str().unwrap().to_owned();
            assert!(!message.contains(TOKEN), "{name}: a token in {message}");
        }
        match case.expect {
            Expect::Nothing => {}
            Expect::RetryAfter => {
                let retry_after: u64 = reply.headers[header::RETRY_AFTER]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(retry_after >= 1, "{name}: Retry-After {retry_after}");
            }
            Expect::MessageHas(part) => assert!(message.contains(part), "{name}: {message}"),
            Expect::StoredButNotLinkable => {}
        }

        // Nothing changed: no desk session was started (no cookie handed out) or
        // ended, the presentation is the same, the fixture's agent is still signed
        // in, and no visitor data was stored (unless the case stores by design).
        let set_cookie = reply
            .headers
            .get(header::SET_COOKIE)
            .map(|value| value.to_str().unwrap().to_owned());
        assert!(
            set_cookie
                .as_deref()
                .is_none_or(|cookie| cookie.contains("Max-Age=0")),
            "{name}: {set_cookie:?}"
        );
        assert_eq!(
            state.store().sign_ins().unwrap().len(),
            sessions_before,
            "{name}: desk sessions"
        );
        assert_eq!(
            admin_get(state, CONFIG_PATH).await,
            presentation_before,
            "{name}: the presentation changed"
        );
        assert_eq!(
            cookie_status(state, &fixture.api_cookie).await,
            StatusCode::OK,
            "{name}: the agent was signed out"
        );
        let stored = admin_get(state, "/api/v2/journey/sessions").await["entities"]
            .as_array()
            .unwrap()
            .clone();
        if case.expect == Expect::StoredButNotLinkable {
            assert_eq!(stored.len(), stored_before + 1, "{name}");
            let id = stored[0]["id"].as_str().unwrap();
            let request = Request::get(format!("/desk/api/sessions/{id}"))
                .header(header::COOKIE, &fixture.api_cookie)
                .body(Body::empty())
                .unwrap();
            let reply = send(state, request).await;
            assert_eq!(reply.status, StatusCode::OK, "{name}");
            let card: Value = serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(
                card["session"]["currentPage"]["linkable"],
                json!(false),
                "{name}"
            );
            assert_eq!(
                card["journey"][1]["page"]["linkable"],
                json!(false),
                "{name}"
            );
        } else {
            assert_eq!(stored.len(), stored_before, "{name}: visitor data stored");
        }
        if case.prepare == Prepare::RestartWithoutAgentToken {
            assert_eq!(
                cookie_status(state, &fixture.agent_cookie).await,
                StatusCode::UNAUTHORIZED,
                "{name}: the removed token's session is gone for good"
            );
        }
    }
}

/// Every route that takes a body behind a bearer token refuses a stranger before it
/// reads a byte: a body that never ends still gets its 401 at once.
#[tokio::test]
async fn authenticated_routes_refuse_before_reading_the_body() {
    let app = TestApp::with_config(|config| desk_config(config, true));
    let contact = app
        .create_contact(json!({"firstName": "Ada", "lastName": "Lovelace"}))
        .await;
    let contact_id = contact["id"].as_str().unwrap().to_owned();
    let routes = [
        ("POST", "/api/v2/externalcontacts/contacts".to_owned()),
        (
            "PUT",
            format!("/api/v2/externalcontacts/contacts/{contact_id}"),
        ),
        ("POST", "/api/v2/journey/segments".to_owned()),
        (
            "PATCH",
            "/api/v2/journey/segments/6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b".to_owned(),
        ),
        ("POST", "/api/v2/journey/outcomes".to_owned()),
        (
            "PATCH",
            "/api/v2/journey/outcomes/0d9e8f7a-6b5c-4d3e-9f2a-1b0c9d8e7f6a".to_owned(),
        ),
        ("PUT", CONFIG_PATH.to_owned()),
    ];
    for (method, uri) in &routes {
        for authorization in [
            None,
            Some(bearer(AGENT_TOKEN)),
            Some(bearer(&"x".repeat(40))),
        ] {
            let mut headers = vec![("content-type", "application/json")];
            if let Some(authorization) = &authorization {
                headers.push(("authorization", authorization.as_str()));
            }
            let reply = send(&app.state, request(method, uri, &headers, endless_body())).await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} with {authorization:?}"
            );
        }
    }
    // The contact is as it was, and no definition was created.
    assert_eq!(app.contact(&contact_id).await["firstName"], json!("Ada"));
    for listing in ["/api/v2/journey/segments", "/api/v2/journey/outcomes"] {
        let reply = app.get(listing).await.ok_json();
        assert_eq!(reply["entities"], json!([]), "{listing}");
    }
}

/// A session id has 256 random bits: guessing one is hopeless, but each made-up cookie
/// that the sign-in cache does not know costs a store read. Past `[desk]
/// sign_in_attempts_per_minute` of them, an address's cookies that the cache does not
/// hold are taken as no cookie without a read, until the allowance refills; proved by
/// an agent's real cookie, whose cache entry has expired, counting as none from that
/// address only.
#[tokio::test]
async fn made_up_session_cookies_stop_costing_store_reads_past_the_allowance() {
    let fixture = fixture(Prepare::Nothing).await;
    let state = &fixture.app.state;
    let clock = &fixture.app.clock;
    let list = |cookie: &str| {
        Request::get("/desk/api/sessions")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap()
    };
    for guess in 0..=SIGN_IN_LIMIT {
        let cookie = format!("footpath_desk={guess:064x}");
        let reply = send(state, from_attacker(list(&cookie))).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "guess {guess}");
    }
    // The agent's sign-in, read from the store at sign-in, is no longer cached.
    clock.advance_ms(footpath_collector::desk::auth::CACHE_MS);
    let agent = &fixture.agent_cookie;
    let reply = send(state, from_attacker(list(agent))).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "not looked up from the guessing address"
    );
    // Another address reads it from the store, which caches it for everyone.
    assert_eq!(cookie_status(state, agent).await, StatusCode::OK);
    let reply = send(state, from_attacker(list(agent))).await;
    assert_eq!(reply.status, StatusCode::OK, "cached sign-ins still work");
    // Once the allowance has refilled by one (a minute / the limit) and the cache
    // entry is gone, the address's cookies are looked up again.
    clock.advance_ms(60_000 / i64::from(SIGN_IN_LIMIT));
    let reply = send(state, from_attacker(list(agent))).await;
    assert_eq!(reply.status, StatusCode::OK, "looked up again");
}
