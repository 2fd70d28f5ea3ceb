//! The test harness: an app over a fresh database, and request helpers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Request, StatusCode};
use footpath_collector::clock::ManualClock;
use footpath_collector::config::{Config, DeploymentConfig};
use footpath_collector::{router, AppState};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// 2026-11-24T06:15:14.123Z, the server's time when a test starts.
pub const T0: i64 = 1_795_500_914_123;
pub const SECOND: i64 = 1_000;
pub const MINUTE: i64 = 60 * SECOND;
pub const TIMEOUT: i64 = 20 * MINUTE;

/// At least 32 characters, as the collector requires of every token.
pub const TOKEN: &str = "read-token-for-tests-0123456789abcdef";
/// A second configured API token.
pub const SECOND_TOKEN: &str = "second-token-for-tests-0123456789abcdef";
pub const DEPLOYMENT: &str = "shop";
/// A deployment that accepts any origin.
pub const OPEN_DEPLOYMENT: &str = "open";
pub const ORIGIN: &str = "https://shop.example";
pub const VISITOR: &str = "0b7e0c2a-5b9e-4a57-9f3e-1c2d3e4f5a6b";
pub const OTHER_VISITOR: &str = "5d3c1b2a-0000-4000-8000-00000000beef";
pub const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0";
pub const CLIENT_IP: [u8; 4] = [203, 0, 113, 7];

pub struct TestApp {
    pub clock: Arc<ManualClock>,
    pub state: AppState,
    pub dir: tempfile::TempDir,
}

pub fn test_config(dir: &std::path::Path) -> Config {
    Config {
        database_path: dir.join("test.sqlite3"),
        sdk_dir: dir.join("sdk"),
        api_tokens: vec![TOKEN.to_owned(), SECOND_TOKEN.to_owned()],
        deployments: vec![
            DeploymentConfig {
                id: DEPLOYMENT.to_owned(),
                allowed_origins: vec![ORIGIN.to_owned(), "https://www.shop.example".to_owned()],
            },
            DeploymentConfig {
                id: OPEN_DEPLOYMENT.to_owned(),
                allowed_origins: vec!["*".to_owned()],
            },
        ],
        ..Config::default()
    }
}

impl TestApp {
    pub fn new() -> TestApp {
        TestApp::with_config(|_| {})
    }

    pub fn with_config(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sdk")).unwrap();
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let clock = Arc::new(ManualClock::new(T0));
        let state = AppState::new(config, clock.clone()).unwrap();
        TestApp { clock, state, dir }
    }

    /// Sends a request through the router. Every response is checked against the
    /// OpenAPI document (see [`crate::openapi::check_response`]).
    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let method = request.method().clone();
        let uri = request.uri().to_string();
        let response = router(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        crate::openapi::check_response(&method, &uri, status, &headers, &body);
        TestResponse {
            status,
            headers,
            body,
        }
    }

    /// Posts a batch the way the SDK does: `text/plain`, from the shop's origin, with
    /// the browser's user agent and a client socket address.
    pub async fn post_batch(&self, batch: &Value) -> TestResponse {
        self.send(batch_request(
            batch.to_string(),
            "text/plain;charset=UTF-8",
            Some(ORIGIN),
        ))
        .await
    }

    /// A read-API GET with a valid token.
    pub async fn get(&self, uri: &str) -> TestResponse {
        let request = Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        self.send(request).await
    }

    /// The one session of `visitor`, as JSON, asserting that there is exactly one.
    pub async fn only_session_of(&self, visitor: &str) -> Value {
        let listing = self
            .get(&format!(
                "/api/v2/journey/sessions?customerCookieId={visitor}"
            ))
            .await
            .ok_json();
        let sessions = listing["entities"].as_array().unwrap();
        assert_eq!(sessions.len(), 1, "{listing:#}");
        sessions[0].clone()
    }

    /// Ends idle sessions as of the clock's current time, as the background sweep does.
    pub fn sweep(&self) -> usize {
        self.state
            .store()
            .close_idle_sessions(self.clock.now_ms(), TIMEOUT)
            .unwrap()
    }
}

pub fn batch_request(
    body: impl Into<Body>,
    content_type: &str,
    origin: Option<&str>,
) -> Request<Body> {
    let mut builder = Request::post("/sdk/v1/batch")
        .header(header::CONTENT_TYPE, content_type)
        .header(header::USER_AGENT, USER_AGENT);
    if let Some(origin) = origin {
        builder = builder.header(header::ORIGIN, origin);
    }
    let mut request = builder.body(body.into()).unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((CLIENT_IP, 51_000))));
    request
}

/// A batch request like [`batch_request`] (text/plain, the shop's origin), from the
/// socket peer `peer`, with these `X-Forwarded-For` headers and user agent.
pub fn batch_request_with(
    peer: &str,
    forwarded_for: &[&str],
    user_agent: &str,
    batch: Value,
) -> Request<Body> {
    let mut builder = Request::post("/sdk/v1/batch")
        .header(header::CONTENT_TYPE, "text/plain;charset=UTF-8")
        .header(header::USER_AGENT, user_agent)
        .header(header::ORIGIN, ORIGIN);
    for value in forwarded_for {
        builder = builder.header("x-forwarded-for", *value);
    }
    let mut request = builder.body(Body::from(batch.to_string())).unwrap();
    let peer: std::net::IpAddr = peer.parse().unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(peer, 51_000)));
    request
}

/// [`batch_request_with`] and the tests' user agent.
pub fn batch_request_from(peer: &str, forwarded_for: &[&str], batch: Value) -> Request<Body> {
    batch_request_with(peer, forwarded_for, USER_AGENT, batch)
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "body is not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The JSON body, asserting status 200 first.
    pub fn ok_json(&self) -> Value {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        self.json()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }

    /// Asserts an error response: status, JSON `{status, code, message}`, and returns
    /// the message.
    pub fn assert_error(&self, status: StatusCode, code: &str) -> String {
        let body = self.json();
        assert_eq!(self.status, status, "{body:#}");
        assert_eq!(body["status"], json!(status.as_u16()), "{body:#}");
        assert_eq!(body["code"], json!(code), "{body:#}");
        body["message"].as_str().unwrap().to_owned()
    }
}

/// A valid UUID v7-shaped event id, distinct per `n`.
pub fn event_id(n: u32) -> String {
    format!("0194f1a0-0000-7000-8000-{n:012}")
}

pub fn batch(visitor: &str, sent_at: i64, events: Vec<Value>) -> Value {
    json!({
        "v": 1,
        "deploymentId": DEPLOYMENT,
        "visitorId": visitor,
        "sentAt": sent_at,
        "events": events,
    })
}

pub fn pageview(n: u32, time: i64, url: &str) -> Value {
    json!({
        "id": event_id(n),
        "kind": "pageview",
        "name": "page_viewed",
        "time": time,
        "page": { "url": url },
    })
}

pub fn record(n: u32, name: &str, time: i64) -> Value {
    json!({ "id": event_id(n), "kind": "record", "name": name, "time": time })
}

/// Paths of every `null` in a JSON document.
pub fn null_paths(value: &Value, path: &str) -> Vec<String> {
    match value {
        Value::Null => vec![path.to_owned()],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .flat_map(|(index, item)| null_paths(item, &format!("{path}[{index}]")))
            .collect(),
        Value::Object(fields) => fields
            .iter()
            .flat_map(|(name, item)| null_paths(item, &format!("{path}.{name}")))
            .collect(),
        _ => Vec::new(),
    }
}

impl TestApp {
    /// A request with a valid token and, when given, a JSON body.
    pub async fn send_json(&self, method: &str, uri: &str, body: Option<&Value>) -> TestResponse {
        let builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
        let request = match body {
            Some(body) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        }
        .unwrap();
        self.send(request).await
    }

    /// Creates a contact, asserting 201, and returns it.
    pub async fn create_contact(&self, body: Value) -> Value {
        let response = self
            .send_json("POST", "/api/v2/externalcontacts/contacts", Some(&body))
            .await;
        assert_eq!(
            response.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        response.json()
    }

    pub async fn contact(&self, id: &str) -> Value {
        self.get(&format!("/api/v2/externalcontacts/contacts/{id}"))
            .await
            .ok_json()
    }

    /// Every session of `visitor`, newest first.
    pub async fn sessions_of(&self, visitor: &str) -> Vec<Value> {
        let listing = self
            .get(&format!(
                "/api/v2/journey/sessions?customerCookieId={visitor}"
            ))
            .await
            .ok_json();
        listing["entities"].as_array().unwrap().clone()
    }

    /// The events of a session, oldest first.
    pub async fn events_of(&self, session_id: &str) -> Vec<Value> {
        let listing = self
            .get(&format!("/api/v2/journey/sessions/{session_id}/events"))
            .await
            .ok_json();
        listing["entities"].as_array().unwrap().clone()
    }
}

/// `ac('identify', loginId, traits)` as the SDK sends it.
pub fn identify(n: u32, time: i64, login_id: Option<&str>, traits: Value) -> Value {
    let mut event = json!({
        "id": event_id(n),
        "kind": "identify",
        "name": "identified",
        "time": time,
        "traits": traits,
    });
    if let Some(login_id) = login_id {
        event["loginId"] = json!(login_id);
    }
    event
}

/// `ac('identify', null)`: the SDK's logout.
pub fn logout(n: u32, time: i64) -> Value {
    json!({ "id": event_id(n), "kind": "logout", "name": "logged_out", "time": time })
}

/// The identifiers of a contact as `(type, value)` pairs, in the listed order.
pub fn identifiers(contact: &Value) -> Vec<(String, String)> {
    contact["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|identifier| {
            (
                identifier["type"].as_str().unwrap().to_owned(),
                identifier["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `(type, value)` pairs, for comparing with [`identifiers`].
pub fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(kind, value)| (kind.to_string(), value.to_string()))
        .collect()
}

/// A signed-in desk's live stream (`cookie` from a sign-in), after its `ready` event.
pub async fn open_desk_stream(state: &AppState, cookie: &str) -> Body {
    let request = Request::get("/desk/api/stream")
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let mut body = response.into_body();
    assert!(next_stream_event(&mut body)
        .await
        .starts_with("event: ready\n"));
    body
}

/// The next event of a desk's stream (axum writes each in one frame).
pub async fn next_stream_event(body: &mut Body) -> String {
    let frame = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame())
        .await
        .expect("an event within 5 s")
        .unwrap()
        .unwrap();
    String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
}
