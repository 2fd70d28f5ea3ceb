//! The agents' desk: who may see it, what it sends to agents' browsers, the headers
//! that protect it, and its live stream.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Request, StatusCode};
use footpath_collector::config::Config;
use footpath_collector::desk::config::{AttributeDisplay, EventDisplay};
use footpath_collector::router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::support::{
    batch, identify, next_stream_event, open_desk_stream, pageview, record, TestApp, MINUTE,
    OTHER_VISITOR, SECOND, T0, TOKEN, VISITOR,
};

const AGENT_TOKEN: &str = "agent-token-0123456789abcdef0123456789";
const THIRD_VISITOR: &str = "1c2d3e4f-0000-4000-8000-0000000000c3";

/// The desk's own requests go straight to the router, so that these tests do not
/// depend on helpers that check the Journey API's documented shapes.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text());
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }
}

async fn send(app: &TestApp, request: Request<Body>) -> Reply {
    let response = router(app.state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(app: &TestApp, uri: &str, cookie: Option<&str>) -> Reply {
    let mut request = Request::get(uri);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    send(app, request.body(Body::empty()).unwrap()).await
}

async fn sign_in_with(app: &TestApp, token: &str) -> Reply {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .finish();
    let request = Request::post("/desk/signin")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    send(app, request).await
}

/// Signs in and returns the `Cookie` header value to send afterwards.
async fn sign_in(app: &TestApp) -> String {
    let reply = sign_in_with(app, TOKEN).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let set_cookie = reply.header("set-cookie").expect("a session cookie");
    set_cookie.split(';').next().unwrap().trim().to_owned()
}

fn desk_app() -> TestApp {
    TestApp::with_config(|config: &mut Config| {
        let dir = config.database_path.parent().unwrap().to_owned();
        *config = desk_app_config(&dir);
    })
}

#[tokio::test]
async fn everything_but_the_sign_in_page_and_assets_refuses_strangers() {
    let app = desk_app();
    let page = get(&app, "/desk/", None).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.header("location"), Some("/desk/signin"));
    assert!(!page.text().contains("desk.js"));

    let forged = "footpath_desk=0000000000000000000000000000000000000000000000000000000000000000";
    for uri in [
        "/desk/api/sessions",
        "/desk/api/sessions/anything",
        "/desk/api/stream",
    ] {
        for cookie in [None, Some(forged)] {
            let reply = get(&app, uri, cookie).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{uri} {cookie:?}");
        }
        // The read API's bearer token is not a desk session.
        let request = Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            send(&app, request).await.status,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
    }
    assert_eq!(
        get(&app, "/desk/", Some(forged)).await.status,
        StatusCode::SEE_OTHER
    );

    // The admin API wants the bearer token; a desk session is not enough.
    let cookie = sign_in(&app).await;
    let config = get(&app, "/api/v2/footpath/desk/config", Some(&cookie)).await;
    assert_eq!(config.status, StatusCode::UNAUTHORIZED);

    // Public: the sign-in page and the static assets, which hold no data.
    assert_eq!(get(&app, "/desk/signin", None).await.status, StatusCode::OK);
    let script = get(&app, "/desk/assets/desk.js", None).await;
    assert_eq!(script.status, StatusCode::OK);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(
        !script.text().contains("innerHTML ="),
        "the desk never assigns markup"
    );
    assert_eq!(
        get(&app, "/desk/assets/secrets.txt", None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_and_wrong_tokens_are_refused() {
    let app = desk_app();
    for wrong in ["", "nope", &format!("{TOKEN}x"), &TOKEN[..TOKEN.len() - 1]] {
        let reply = sign_in_with(&app, wrong).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
        assert_eq!(reply.header("set-cookie"), None, "{wrong:?}");
        assert!(reply.text().contains("role=\"alert\""), "the form says why");
    }

    for token in [TOKEN, AGENT_TOKEN] {
        let reply = sign_in_with(&app, token).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER);
        assert_eq!(reply.header("location"), Some("/desk/"));
        let cookie = reply.header("set-cookie").unwrap();
        let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
        assert!(attributes.contains(&"HttpOnly"), "{cookie}");
        assert!(attributes.contains(&"SameSite=Strict"), "{cookie}");
        assert!(attributes.contains(&"Path=/desk"), "{cookie}");
        assert!(attributes.contains(&"Max-Age=28800"), "{cookie}");
        let value = attributes[0].strip_prefix("footpath_desk=").unwrap();
        assert_eq!(value.len(), 64, "256 random bits: {cookie}");
        assert!(!value.contains(token));
    }

    let cookie = sign_in(&app).await;
    let page = get(&app, "/desk/", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("/desk/assets/desk.js"));
    assert_eq!(
        get(&app, "/desk/api/sessions", Some(&cookie)).await.status,
        StatusCode::OK
    );

    // Signing out ends the session on the server, whatever the browser keeps.
    let request = Request::post("/desk/signout")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let reply = send(&app, request).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(reply.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        get(&app, "/desk/api/sessions", Some(&cookie)).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Sessions expire by the server's clock.
    let cookie = sign_in(&app).await;
    app.clock.advance_ms(8 * 60 * MINUTE - SECOND);
    assert_eq!(
        get(&app, "/desk/api/sessions", Some(&cookie)).await.status,
        StatusCode::OK
    );
    app.clock.advance_ms(SECOND);
    assert_eq!(
        get(&app, "/desk/api/sessions", Some(&cookie)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&app, "/desk/", Some(&cookie)).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn every_desk_response_carries_the_content_security_policy() {
    let app = desk_app();
    let cookie = sign_in(&app).await;
    for (uri, cookie) in [
        ("/desk/", Some(cookie.as_str())),
        ("/desk/signin", None),
        ("/desk/assets/desk.css", None),
        ("/desk/api/sessions", Some(cookie.as_str())),
        ("/desk/api/sessions", None),
    ] {
        let reply = get(&app, uri, cookie).await;
        assert_eq!(
            reply.header("content-security-policy"),
            Some("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
            "{uri}"
        );
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{uri}"
        );
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{uri}");
        // Nothing of the desk's URLs leaves for other origins, while its own form
        // posts keep their real Origin (no-referrer would make it `null`).
        assert_eq!(
            reply.header("referrer-policy"),
            Some("same-origin"),
            "{uri}"
        );
    }
    let api = get(&app, "/desk/api/sessions", Some(&cookie)).await;
    assert_eq!(api.header("cache-control"), Some("no-store"));
    // No inline script or style in the pages.
    for uri in ["/desk/", "/desk/signin"] {
        let html = get(&app, uri, Some(&cookie)).await.text();
        let html = html.to_lowercase();
        for script in html.match_indices("<script") {
            let tag = &html[script.0..html[script.0..].find('>').unwrap() + script.0];
            assert!(tag.contains(" src="), "{uri}: inline script {tag}");
        }
        assert!(!html.contains("<style"), "{uri}");
        assert!(!html.contains(" style="), "{uri}");
        assert!(!html.contains(" onclick="), "{uri}");
    }
}

#[tokio::test]
async fn cards_apply_the_configuration_and_hidden_attributes_never_leave_the_server() {
    let app = desk_app();
    let response = app
        .post_batch(&batch(
            VISITOR,
            T0,
            vec![
                {
                    let mut search =
                        pageview(1, T0 - 3000, "https://shop.example/products?q=boots");
                    search["page"]["searchQuery"] = json!("boots");
                    search
                },
                record(2, "cart_added", T0 - 2000),
                record(3, "form_submitted", T0 - 1000),
            ],
        ))
        .await;
    assert_eq!(response.status, StatusCode::OK);
    // `record` sends no attributes: add them with a second batch.
    let mut cart = record(4, "cart_added", T0 - 500);
    cart["attributes"] = json!({
        "sku": "BOOT-1",
        "price": 139.5,
        "quantity": 2,
        "productName": "Ridge <b>boots</b>",
    });
    assert_eq!(
        app.post_batch(&batch(VISITOR, T0, vec![cart])).await.status,
        StatusCode::OK
    );

    let cookie = sign_in(&app).await;
    let list = get(&app, "/desk/api/sessions", Some(&cookie)).await.json();
    assert_eq!(list["title"], json!("Web Visit"));
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{list:#}");
    let summary = &sessions[0];
    assert_eq!(summary["customerName"], json!("Unknown"));
    assert_eq!(summary["live"], json!(true));
    assert_eq!(summary["type"], json!("web"));
    assert_eq!(summary["customerId"], json!(VISITOR));
    assert_eq!(
        summary["currentPage"]["url"],
        json!("https://shop.example/products?q=boots")
    );

    let id = summary["id"].as_str().unwrap();
    let reply = get(&app, &format!("/desk/api/sessions/{id}"), Some(&cookie)).await;
    let text = reply.text();
    assert!(
        !text.contains("price"),
        "a hidden attribute reached the desk: {text}"
    );
    assert!(
        !text.contains("139.5"),
        "a hidden value reached the desk: {text}"
    );
    let card = reply.json();
    assert_eq!(card["title"], json!("Web Visit"));
    assert_eq!(card["searches"], json!(["boots"]));
    assert_eq!(card["segments"], json!([]));
    assert_eq!(card["outcomes"], json!([]));
    assert_eq!(card["info"]["shortId"], summary["shortId"]);
    assert_eq!(card["info"]["authenticated"], json!(false));
    // An unknown visitor: nothing to say about how they were identified.
    assert_eq!(card["info"].get("identifiedBy"), None, "{card:#}");
    let kinds: Vec<&str> = card["journey"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["session_start", "search", "custom", "form", "custom"],
        "{card:#}"
    );
    let cart = &card["journey"][4];
    assert_eq!(cart["name"], json!("cart_added"));
    assert_eq!(cart["displayName"], json!("Added to cart"));
    assert_eq!(cart["icon"], json!("cart"));
    // Configured attributes first, by order; the others with their raw names, by name.
    assert_eq!(
        cart["attributes"],
        json!([
            {"name": "sku", "label": "Product code", "value": "BOOT-1"},
            {"name": "productName", "label": "productName", "value": "Ridge <b>boots</b>"},
            {"name": "quantity", "label": "quantity", "value": "2"},
        ])
    );
    assert_eq!(card["journey"][3]["displayName"], json!("Form submitted"));
    assert_eq!(card["journey"][1]["displayName"], json!("Searched"));
    assert_eq!(card["journey"][1]["searchQuery"], json!("boots"));

    assert_eq!(
        get(&app, "/desk/api/sessions/no-such-session", Some(&cookie))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // The admin API changes the presentation at runtime.
    let admin = |method: &str, body: Option<Value>| {
        let mut request = Request::builder()
            .method(method)
            .uri("/api/v2/footpath/desk/config")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        request
            .body(body.map_or_else(Body::empty, |body| Body::from(body.to_string())))
            .unwrap()
    };
    let current = send(&app, admin("GET", None)).await.json();
    assert_eq!(current["events"][0]["displayName"], json!("Added to cart"));
    assert_eq!(current["events"][0]["attributes"][1]["hidden"], json!(true));
    let replaced = json!({
        "title": "Shop visit",
        "events": [{"name": "cart_added", "displayName": "Basket", "attributes": [{"name": "quantity", "hidden": true}]}],
    });
    assert_eq!(
        send(&app, admin("PUT", Some(replaced.clone())))
            .await
            .json()["title"],
        json!("Shop visit")
    );
    let card = get(&app, &format!("/desk/api/sessions/{id}"), Some(&cookie))
        .await
        .json();
    assert_eq!(card["title"], json!("Shop visit"));
    assert_eq!(card["journey"][4]["displayName"], json!("Basket"));
    let names: Vec<&str> = card["journey"][4]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attribute| attribute["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["price", "productName", "sku"]);
    let invalid = send(&app, admin("PUT", Some(json!({"title": ""})))).await;
    assert_eq!(
        invalid.status,
        StatusCode::BAD_REQUEST,
        "{}",
        invalid.text()
    );
    assert!(
        invalid.text().contains("title: must not be empty"),
        "{}",
        invalid.text()
    );
    let unknown = send(
        &app,
        admin("PUT", Some(json!({"title": "x", "colour": "red"}))),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_list_filters_and_searches_by_name_email_phone_and_short_id() {
    let app = TestApp::with_config(|config| config.default_phone_region = Some("GB".to_owned()));
    let contact = app
        .create_contact(json!({
            "firstName": "Ada",
            "lastName": "Lovelace",
            "workEmail": "ada@example.com",
            "cellPhone": {"display": "020 7946 0018"},
        }))
        .await;
    assert!(contact["id"].is_string(), "{contact:#}");
    let other = OTHER_VISITOR;
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![
            pageview(1, T0 - 2000, "https://shop.example/"),
            identify(
                2,
                T0 - 1000,
                Some("ada@example.com"),
                json!({"email": "ada@example.com"}),
            ),
        ],
    ))
    .await;
    app.clock.advance_ms(SECOND);
    app.post_batch(&batch(
        other,
        T0 + SECOND,
        vec![pageview(3, T0 + 500, "https://shop.example/other")],
    ))
    .await;

    let cookie = sign_in(&app).await;
    let list = |query: &'static str| {
        let cookie = cookie.clone();
        let app = &app;
        async move {
            let reply = get(app, &format!("/desk/api/sessions{query}"), Some(&cookie)).await;
            let list = reply.json();
            list["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|session| session["customerName"].as_str().unwrap().to_owned())
                .collect::<Vec<String>>()
        }
    };
    // Most recently active first.
    assert_eq!(list("").await, ["Unknown", "Ada Lovelace"]);
    assert_eq!(list("?q=lovelace").await, ["Ada Lovelace"]);
    assert_eq!(list("?q=ADA%40EXAMPLE").await, ["Ada Lovelace"]);
    assert_eq!(list("?q=7946%200018").await, ["Ada Lovelace"]);
    assert!(list("?q=nobody").await.is_empty());
    let all = get(&app, "/desk/api/sessions", Some(&cookie)).await.json();
    let short_id = all["sessions"][1]["shortId"].as_str().unwrap().to_owned();
    let reply = get(
        &app,
        &format!("/desk/api/sessions?q={short_id}"),
        Some(&cookie),
    )
    .await
    .json();
    assert_eq!(
        reply["sessions"][0]["customerName"],
        json!("Ada Lovelace"),
        "{reply:#}"
    );

    assert_eq!(list("?status=active").await.len(), 2);
    assert!(list("?status=ended").await.is_empty());
    app.clock.advance_ms(21 * MINUTE);
    app.sweep();
    assert_eq!(list("?status=ended").await.len(), 2);
    assert!(list("?status=active").await.is_empty());
    let bad = get(&app, "/desk/api/sessions?status=sleeping", Some(&cookie)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_stream_announces_each_committed_batch() {
    let app = desk_app();
    let cookie = sign_in(&app).await;
    let mut body = open_desk_stream(&app.state, &cookie).await;

    // A duplicate-only batch changes nothing and announces nothing; a new event does.
    let events = vec![pageview(1, T0 - 1000, "https://shop.example/")];
    app.post_batch(&batch(VISITOR, T0, events.clone())).await;
    let announced = next_stream_event(&mut body).await;
    assert!(announced.starts_with("event: visitor\n"), "{announced}");
    assert!(
        announced.contains(&format!("\"customerId\":\"{VISITOR}\"")),
        "{announced}"
    );
    app.post_batch(&batch(VISITOR, T0, events)).await;
    app.post_batch(&batch(
        OTHER_VISITOR,
        T0,
        vec![record(2, "cart_added", T0 - 500)],
    ))
    .await;
    let announced = next_stream_event(&mut body).await;
    assert!(
        announced.contains(&format!("\"customerId\":\"{OTHER_VISITOR}\"")),
        "{announced}"
    );
}

#[test]
fn the_demo_configuration_configures_the_desk() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../footpath.toml");
    let config = Config::from_file(&path).unwrap();
    let presentation = config.desk.presentation();
    assert_eq!(presentation.title, "Web Visit");
    let order = presentation.event("order_completed").unwrap();
    assert!(order
        .attributes
        .iter()
        .any(|attribute| attribute.name == "orderId" && attribute.hidden));
}

#[tokio::test]
async fn a_session_ends_when_its_token_leaves_the_configuration() {
    let app = desk_app();
    let agent_cookie = {
        let reply = sign_in_with(&app, AGENT_TOKEN).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
        let set_cookie = reply.header("set-cookie").unwrap();
        set_cookie.split(';').next().unwrap().trim().to_owned()
    };
    let api_cookie = sign_in(&app).await;
    for cookie in [&agent_cookie, &api_cookie] {
        assert_eq!(
            get(&app, "/desk/api/sessions", Some(cookie)).await.status,
            StatusCode::OK
        );
    }
    // The store keeps hashes only: neither the tokens nor the cookies' session ids.
    let saved = format!("{:?}", app.state.store().sign_ins().unwrap());
    for secret in [
        AGENT_TOKEN,
        TOKEN,
        cookie_value(&agent_cookie),
        cookie_value(&api_cookie),
    ] {
        assert!(!saved.contains(secret), "kept in clear: {saved}");
    }
    assert!(saved.contains(&sha256_hex(AGENT_TOKEN)), "{saved}");
    assert!(
        saved.contains(&sha256_hex(cookie_value(&agent_cookie))),
        "{saved}"
    );

    // The operator removes the agent token and restarts the collector over the same
    // database folder.
    let TestApp { clock, state, dir } = app;
    drop(state);
    let config = crate::support::test_config(dir.path());
    assert!(config.desk.agent_tokens.is_empty());
    let state = footpath_collector::AppState::new(config, clock.clone()).unwrap();
    let app = TestApp { clock, state, dir };
    assert_eq!(
        app.state.store().sign_ins().unwrap().len(),
        1,
        "deleted at load"
    );
    assert_eq!(
        get(&app, "/desk/api/sessions", Some(&agent_cookie))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let page = get(&app, "/desk/", Some(&agent_cookie)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.header("location"), Some("/desk/signin"));
    // The session signed in with a token that is still configured lives on.
    assert_eq!(
        get(&app, "/desk/api/sessions", Some(&api_cookie))
            .await
            .status,
        StatusCode::OK
    );
    let saved = app.state.store().sign_ins().unwrap();
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert_eq!(saved[0].token_sha256, sha256_hex(TOKEN));
}

/// The session id of a `footpath_desk=...` cookie header.
fn cookie_value(cookie: &str) -> &str {
    cookie.strip_prefix("footpath_desk=").unwrap()
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[tokio::test]
async fn page_urls_are_links_only_on_the_deployments_own_origins() {
    let app = desk_app();
    let cases = [
        (VISITOR, "https://shop.example/products/boots", true),
        (
            OTHER_VISITOR,
            "https://shop.example.evil.example/login",
            false,
        ),
        (THIRD_VISITOR, "http://shop.example/cart", false),
    ];
    for (n, (visitor, url, _)) in cases.iter().enumerate() {
        let n = u32::try_from(n).unwrap() + 1;
        let response = app
            .post_batch(&batch(visitor, T0, vec![pageview(n, T0 - 1000, url)]))
            .await;
        assert_eq!(response.status, StatusCode::OK);
    }
    let cookie = sign_in(&app).await;
    let list = get(&app, "/desk/api/sessions", Some(&cookie)).await.json();
    for (visitor, url, linkable) in cases {
        let summary = list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|summary| summary["customerId"] == json!(visitor))
            .unwrap();
        assert_eq!(summary["currentPage"]["url"], json!(url));
        assert_eq!(summary["currentPage"]["linkable"], json!(linkable), "{url}");
        let id = summary["id"].as_str().unwrap();
        let card = get(&app, &format!("/desk/api/sessions/{id}"), Some(&cookie))
            .await
            .json();
        assert_eq!(card["session"]["currentPage"]["linkable"], json!(linkable));
        assert_eq!(card["journey"][1]["page"]["linkable"], json!(linkable));
    }
    // A deployment that accepts any origin vouches for none of its pages.
    let mut open = batch(
        VISITOR,
        T0,
        vec![pageview(9, T0 - 500, "https://shop.example/")],
    );
    open["deploymentId"] = json!(crate::support::OPEN_DEPLOYMENT);
    open["visitorId"] = json!("7a1b2c3d-0000-4000-8000-0000000000aa");
    assert_eq!(app.post_batch(&open).await.status, StatusCode::OK);
    let list = get(&app, "/desk/api/sessions", Some(&cookie)).await.json();
    let summary = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|summary| summary["customerId"] == json!("7a1b2c3d-0000-4000-8000-0000000000aa"))
        .unwrap();
    assert_eq!(summary["currentPage"]["linkable"], json!(false));

    // The browser code draws a link only where the server says so.
    let script = get(&app, "/desk/assets/desk.js", None).await.text();
    assert!(
        script.contains("page.linkable === true"),
        "desk.js checks linkable"
    );
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_client_address_even_for_the_right_token() {
    let app = TestApp::with_config(|config| {
        config.desk.sign_in_attempts_per_minute = 3;
        config.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    });
    let attempt = |token: &str, peer: &str, forwarded_for: Option<&str>| {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .finish();
        let mut request = Request::post("/desk/signin")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(forwarded_for) = forwarded_for {
            request = request.header("x-forwarded-for", forwarded_for);
        }
        let mut request = request.body(Body::from(body)).unwrap();
        let peer: std::net::IpAddr = peer.parse().unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(
                peer, 50_000,
            )));
        request
    };
    for _ in 0..3 {
        let reply = send(&app, attempt("wrong", "203.0.113.5", None)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    // The right token from the limited address: refused like a wrong one.
    let reply = send(&app, attempt(TOKEN, "203.0.113.5", None)).await;
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        reply.text()
    );
    assert_eq!(reply.header("retry-after"), Some("20"));
    assert_eq!(reply.header("set-cookie"), None);
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["code"], json!("rate.limited"));
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("too many sign-in attempts from this address"),
        "{body:#}"
    );
    assert_eq!(app.state.store().sign_ins().unwrap().len(), 0);

    // Another address is not limited; behind a trusted proxy the forwarded client
    // counts, so two clients of one proxy do not share an allowance.
    assert_eq!(
        send(&app, attempt(TOKEN, "203.0.113.6", None)).await.status,
        StatusCode::SEE_OTHER
    );
    for _ in 0..3 {
        let reply = send(&app, attempt("wrong", "10.0.0.1", Some("198.51.100.1"))).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        send(&app, attempt("wrong", "10.0.0.1", Some("198.51.100.1")))
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send(&app, attempt(TOKEN, "10.0.0.1", Some("198.51.100.2")))
            .await
            .status,
        StatusCode::SEE_OTHER
    );

    // The allowance refills by the server's clock: one attempt per 20 s.
    app.clock.advance_ms(20 * SECOND);
    assert_eq!(
        send(&app, attempt(TOKEN, "203.0.113.5", None)).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        send(&app, attempt(TOKEN, "203.0.113.5", None)).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn sign_in_and_sign_out_from_the_desk_page_pass_the_cross_site_check() {
    let app = desk_app();
    // What a browser sends when the sign-in form of the desk's own page is submitted.
    let body = format!("token={TOKEN}");
    let request = Request::post("/desk/signin")
        .header(header::HOST, "collector.example:8700")
        .header(header::ORIGIN, "http://collector.example:8700")
        .header("sec-fetch-site", "same-origin")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.clone()))
        .unwrap();
    let reply = send(&app, request).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let cookie = reply
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    // The same form posted by another site's page.
    let request = Request::post("/desk/signin")
        .header(header::HOST, "collector.example:8700")
        .header(header::ORIGIN, "https://attacker.example")
        .header("sec-fetch-site", "cross-site")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let reply = send(&app, request).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let error: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(error["code"], json!("origin.not.allowed"));
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("sign-in refused: the browser says the request came from another site"),
        "{error:#}"
    );
    assert_eq!(app.state.store().sign_ins().unwrap().len(), 1);

    let sign_out = |origin: &str, site: &str| {
        Request::post("/desk/signout")
            .header(header::HOST, "collector.example:8700")
            .header(header::ORIGIN, origin)
            .header("sec-fetch-site", site)
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap()
    };
    let refused = send(&app, sign_out("https://attacker.example", "cross-site")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        get(&app, "/desk/api/sessions", Some(&cookie)).await.status,
        StatusCode::OK,
        "still signed in"
    );
    let signed_out = send(
        &app,
        sign_out("http://collector.example:8700", "same-origin"),
    )
    .await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    assert_eq!(
        get(&app, "/desk/api/sessions", Some(&cookie)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// Agents see how a customer was identified: an unverified claim is told apart from a
/// verified sign-in and from a recognised browser.
#[tokio::test]
async fn cards_say_whether_the_customer_was_identified_by_a_claim_or_a_proof() {
    let app = crate::identity::with_identity_verification(false);
    app.create_contact(json!({"firstName": "Ann", "workEmail": "ann@example.com"}))
        .await;
    let claimed = "0b7e0c2a-5b9e-4a57-9f3e-0000000c1a1d";
    app.post_batch(&batch(
        claimed,
        T0,
        vec![identify(1, T0, None, json!({"email": "ann@example.com"}))],
    ))
    .await
    .ok_json();
    let signed = crate::identity::token(json!({"email": "ann@example.com"}));
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![identify(
            2,
            T0 - 60_000,
            None,
            json!({"identityToken": signed}),
        )],
    ))
    .await
    .ok_json();
    // The verified sign-in put VISITOR's cookie on Ann: the next visit is recognised.
    app.clock.advance_ms(2 * crate::support::TIMEOUT);
    let now = app.clock.now_ms();
    app.post_batch(&batch(
        VISITOR,
        now,
        vec![pageview(3, now, "https://shop.example/")],
    ))
    .await
    .ok_json();

    let cookie = sign_in(&app).await;
    let identified_by = |visitor: &'static str, index: usize| {
        let app = &app;
        let cookie = cookie.clone();
        async move {
            let session = &app.sessions_of(visitor).await[index];
            let id = session["id"].as_str().unwrap().to_owned();
            let card = get(app, &format!("/desk/api/sessions/{id}"), Some(&cookie))
                .await
                .json();
            assert_eq!(card["session"]["customerName"], json!("Ann"), "{card:#}");
            card["info"]["identifiedBy"].clone()
        }
    };
    assert_eq!(
        identified_by(claimed, 0).await,
        json!("Unverified (typed in the page)")
    );
    assert_eq!(identified_by(VISITOR, 1).await, json!("Verified sign-in"));
    assert_eq!(identified_by(VISITOR, 0).await, json!("Recognised browser"));
}

/// Visitors choose what their events carry: a card stays within its byte budget, long
/// values are cut, and the card says how many events it left out.
#[tokio::test]
async fn a_card_stays_within_its_size_budget() {
    let app = desk_app();
    let big: serde_json::Map<String, Value> = (0..40)
        .map(|n| (format!("field{n:02}"), json!("x".repeat(1_000))))
        .collect();
    // One event a batch: a batch body is at most 64 KiB.
    for n in 0..250_u32 {
        let mut event = record(n + 1, "stuffed", T0 - 60_000 + i64::from(n));
        event["attributes"] = Value::Object(big.clone());
        let answer = app.post_batch(&batch(VISITOR, T0, vec![event])).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
    }
    let cookie = sign_in(&app).await;
    let id = app.only_session_of(VISITOR).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = get(&app, &format!("/desk/api/sessions/{id}"), Some(&cookie)).await;
    let bytes = reply.body.len();
    let card = reply.json();
    let budget = footpath_collector::desk::cards::CARD_JOURNEY_BUDGET_BYTES;
    assert!(bytes < budget + 64 * 1024, "a card of {bytes} bytes");
    let shown = card["journey"].as_array().unwrap().len() - 1; // less the start marker
    let omitted = card["journeyOmitted"].as_u64().unwrap() as usize;
    assert!(omitted > 0 && shown > 0, "shown {shown}, omitted {omitted}");
    assert_eq!(shown + omitted, 250);
    let value = card["journey"][1]["attributes"][0]["value"]
        .as_str()
        .unwrap();
    assert_eq!(value.chars().count(), 257, "256 characters and an ellipsis");
    assert!(value.ends_with('…'));
}

/// A presentation put through the admin API reaches open desks at once, is saved in
/// the database so that it outlives a restart, and gives way to the file once the
/// file's `[desk]` section is edited after it (the most recent change wins).
#[tokio::test]
async fn a_presentation_put_through_the_api_is_pushed_and_outlives_a_restart() {
    let app = desk_app();
    let cookie = sign_in(&app).await;
    let mut body = open_desk_stream(&app.state, &cookie).await;

    let put = |title: &str| {
        Request::put("/api/v2/footpath/desk/config")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"title": title, "events": [{"name": "cart_added", "displayName": "Basket"}]})
                    .to_string(),
            ))
            .unwrap()
    };
    let title_of = |app: &TestApp| {
        let app_state = app.state.clone();
        let cookie = cookie.clone();
        async move {
            let request = Request::get("/desk/api/sessions")
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap();
            let response = router(app_state).oneshot(request).await.unwrap();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<Value>(&bytes).unwrap()["title"].clone()
        }
    };
    assert_eq!(title_of(&app).await, json!("Web Visit"));
    let reply = send(&app, put("Shop visit")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let pushed = next_stream_event(&mut body).await;
    assert!(pushed.starts_with("event: presentation\n"), "{pushed}");
    assert_eq!(title_of(&app).await, json!("Shop visit"));
    // A refused change is neither applied nor announced.
    let refused = send(&app, put("")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let reply = send(&app, put("Second visit")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let pushed = next_stream_event(&mut body).await;
    assert!(pushed.starts_with("event: presentation\n"), "{pushed}");
    drop(body);

    // Restarted over the same database with the same file: the API's change stays.
    let restart = |app: TestApp, adjust: &dyn Fn(&mut Config)| {
        let TestApp { clock, state, dir } = app;
        drop(state);
        let mut config = desk_app_config(dir.path());
        adjust(&mut config);
        let state = footpath_collector::AppState::new(config, clock.clone()).unwrap();
        TestApp { clock, state, dir }
    };
    let app = restart(app, &|_| {});
    assert_eq!(title_of(&app).await, json!("Second visit"));
    let config = send(
        &app,
        Request::get("/api/v2/footpath/desk/config")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .json();
    assert_eq!(config["events"][0]["displayName"], json!("Basket"));

    // The file is edited after the API's change: the file wins, and keeps winning
    // when it is edited back (the API's change is forgotten, not shadowed).
    let app = restart(app, &|config| config.desk.title = "Edited file".to_owned());
    assert_eq!(title_of(&app).await, json!("Edited file"));
    let app = restart(app, &|_| {});
    assert_eq!(title_of(&app).await, json!("Web Visit"));
}

/// `desk_app`'s configuration over an existing folder (for restarts).
fn desk_app_config(dir: &std::path::Path) -> Config {
    let mut config = crate::support::test_config(dir);
    config.desk.agent_tokens = vec![AGENT_TOKEN.to_owned()];
    config.desk.events = vec![EventDisplay {
        name: "cart_added".to_owned(),
        display_name: Some("Added to cart".to_owned()),
        icon: Some("cart".to_owned()),
        attributes: vec![
            AttributeDisplay {
                name: "sku".to_owned(),
                label: Some("Product code".to_owned()),
                order: Some(1),
                hidden: false,
            },
            AttributeDisplay {
                name: "price".to_owned(),
                label: None,
                order: None,
                hidden: true,
            },
        ],
    }];
    config
}

/// A browser's refused sign-in (`Accept: text/html`, as a form submission sends) gets
/// the sign-in page with a sentence saying what to do, with the refusal's status and
/// `Retry-After`; API clients keep the JSON error.
#[tokio::test]
async fn a_browser_sees_why_its_sign_in_was_refused() {
    let app = TestApp::with_config(|config| config.desk.sign_in_attempts_per_minute = 1);
    let attempt = |accept: Option<&str>, extra: Option<(&str, &str)>| {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", "wrong-token-0123456789abcdef0123456789")
            .finish();
        let mut request = Request::post("/desk/signin")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        request.body(Body::from(body)).unwrap()
    };
    const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    // Cross-site: refused before the allowance is spent.
    let reply = send(
        &app,
        attempt(Some(BROWSER), Some(("sec-fetch-site", "cross-site"))),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(
        reply
            .text()
            .contains("did not come from the desk's own page"),
        "{}",
        reply.text()
    );
    assert!(!reply.text().contains("origin.not.allowed"));
    // The one attempt of the minute: a wrong token.
    let reply = send(&app, attempt(Some(BROWSER), None)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.text().contains("That token is not valid"));
    // Past the allowance.
    let reply = send(&app, attempt(Some(BROWSER), None)).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.header("retry-after"), Some("60"));
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let page = reply.text();
    assert!(
        page.contains("<form method=\"post\" action=\"/desk/signin\">"),
        "{page}"
    );
    assert!(
        page.contains("role=\"alert\">Too many sign-in attempts from your network."),
        "{page}"
    );
    assert!(!page.contains("rate.limited"), "{page}");
    // An API client still gets JSON.
    let reply = send(&app, attempt(Some("application/json"), None)).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["code"], json!("rate.limited"));
}
