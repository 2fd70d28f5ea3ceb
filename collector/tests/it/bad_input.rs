//! The bad input catalogue: malformed and hostile requests, each answered with its
//! documented status and error code, none storing anything, and the collector still
//! serving a valid batch afterwards.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// One catalogue entry: what is sent, and the status and error code expected (`None`
/// for a response without a JSON error body, such as 405).
struct Case {
    name: &'static str,
    request: Request<Body>,
    status: StatusCode,
    code: Option<&'static str>,
}

fn valid_event() -> Value {
    record(1, "clicked", T0)
}

fn valid_batch() -> Value {
    batch(VISITOR, T0, vec![valid_event()])
}

/// The valid batch with one field of the batch replaced (or removed, for `Null`).
fn batch_with(field: &str, value: Value) -> String {
    let mut body = valid_batch();
    if value.is_null() {
        body.as_object_mut().unwrap().remove(field);
    } else {
        body[field] = value;
    }
    body.to_string()
}

/// The valid batch whose one event has a field replaced.
fn event_with(field: &str, value: Value) -> String {
    let mut event = valid_event();
    event[field] = value;
    batch(VISITOR, T0, vec![event]).to_string()
}

fn post(body: impl Into<Body>) -> Request<Body> {
    batch_request(body, "text/plain;charset=UTF-8", Some(ORIGIN))
}

fn bad(name: &'static str, request: Request<Body>) -> Case {
    Case {
        name,
        request,
        status: StatusCode::BAD_REQUEST,
        code: Some("bad.request"),
    }
}

fn case(
    name: &'static str,
    request: Request<Body>,
    status: StatusCode,
    code: &'static str,
) -> Case {
    Case {
        name,
        request,
        status,
        code: Some(code),
    }
}

fn method(method: Method) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri("/sdk/v1/batch")
        .header(header::CONTENT_TYPE, "text/plain")
        .header(header::ORIGIN, ORIGIN)
        .body(Body::from(valid_batch().to_string()))
        .unwrap()
}

fn catalogue() -> Vec<Case> {
    let many_attributes: serde_json::Map<String, Value> =
        (0..51).map(|n| (format!("a{n}"), json!(n))).collect();
    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!({ "x": deep });
    }
    let mut duplicate_content_type = post(valid_batch().to_string());
    duplicate_content_type
        .headers_mut()
        .append(header::CONTENT_TYPE, "application/xml".parse().unwrap());
    let mut invalid_utf8_in_string = valid_batch().to_string().into_bytes();
    let position = invalid_utf8_in_string
        .windows(7)
        .position(|window| window == b"clicked")
        .unwrap();
    invalid_utf8_in_string[position] = 0xff;
    let mut webevent_unknown = Request::post("/api/v2/journey/deployments/ghost/webevents")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    webevent_unknown
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            CLIENT_IP, 1,
        ))));
    let webevent_deep = Request::post(format!(
        "/api/v2/journey/deployments/{DEPLOYMENT}/webevents"
    ))
    .header(header::CONTENT_TYPE, "application/json")
    .body(Body::from(format!(
        "{}{}",
        "[".repeat(1000),
        "]".repeat(1000)
    )))
    .unwrap();

    vec![
        // Headers and methods.
        case("no Content-Type", batch_request(valid_batch().to_string(), "", Some(ORIGIN)).map(|b| b), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported.media.type"),
        case("application/xml", batch_request(valid_batch().to_string(), "application/xml", Some(ORIGIN)), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported.media.type"),
        case("multipart/form-data", batch_request(valid_batch().to_string(), "multipart/form-data; boundary=x", Some(ORIGIN)), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported.media.type"),
        case("text/html", batch_request(valid_batch().to_string(), "text/html", Some(ORIGIN)), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported.media.type"),
        case("Content-Type twice", duplicate_content_type, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported.media.type"),
        Case { name: "GET", request: method(Method::GET), status: StatusCode::METHOD_NOT_ALLOWED, code: None },
        Case { name: "PUT", request: method(Method::PUT), status: StatusCode::METHOD_NOT_ALLOWED, code: None },
        Case { name: "DELETE", request: method(Method::DELETE), status: StatusCode::METHOD_NOT_ALLOWED, code: None },
        Case { name: "PATCH", request: method(Method::PATCH), status: StatusCode::METHOD_NOT_ALLOWED, code: None },
        case("body over 64 KiB", post(" ".repeat(70_000)), StatusCode::PAYLOAD_TOO_LARGE, "payload.too.large"),
        // Not JSON, or not a batch.
        bad("empty body", post("")),
        bad("plain text", post("hello")),
        bad("truncated JSON", post(valid_batch().to_string()[..40].to_owned())),
        bad("a JSON array", post("[]")),
        bad("JSON null", post("null")),
        bad("a JSON string", post("\"batch\"")),
        bad("trailing garbage", post(format!("{} x", valid_batch()))),
        bad("two documents", post(format!("{0}{0}", valid_batch()))),
        bad("invalid UTF-8 bytes", post(vec![0xff, 0xfe, 0x00, 0x7b])),
        bad("invalid UTF-8 inside a string", post(invalid_utf8_in_string)),
        bad("byte order mark", post(format!("\u{feff}{}", valid_batch()))),
        bad("duplicate keys", post(valid_batch().to_string().replacen("{", "{\"v\":1,", 1))),
        bad("nesting 40 deep", post(event_with("context", deep))),
        bad("nesting 30 000 deep", post(format!("{}{}", "[".repeat(30_000), "]".repeat(30_000)))),
        // Wrong types and values in the envelope.
        bad("v as a string", post(batch_with("v", json!("1")))),
        bad("v = 2", post(batch_with("v", json!(2)))),
        bad("v negative", post(batch_with("v", json!(-1)))),
        bad("deploymentId a number", post(batch_with("deploymentId", json!(7)))),
        bad("visitorId not a UUID", post(batch_with("visitorId", json!("me")))),
        bad("visitorId missing", post(batch_with("visitorId", Value::Null))),
        bad("events not an array", post(batch_with("events", json!({"0": valid_event()})))),
        bad("events missing", post(batch_with("events", Value::Null))),
        bad("sentAt a string", post(batch_with("sentAt", json!("now")))),
        bad("sentAt 1e400", post(valid_batch().to_string().replace(&T0.to_string(), "1e400"))),
        bad("sentAt past i64", post(batch_with("sentAt", json!(18_446_744_073_709_551_615_u64)))),
        bad("sentAt a fraction", post(batch_with("sentAt", json!(1.5)))),
        bad("101 events", post(batch(VISITOR, T0, (1..=101).map(|n| record(n, "x", T0)).collect()).to_string())),
        // Wrong events (the only event is rejected, so the batch is refused whole).
        bad("event id not a UUID", post(event_with("id", json!("42")))),
        bad("event id a number", post(event_with("id", json!(42)))),
        bad("event kind unknown", post(event_with("kind", json!("delete")))),
        bad("event name with a space", post(event_with("name", json!("two words")))),
        bad("event name of 65 bytes", post(event_with("name", json!("n".repeat(65))))),
        bad("event name empty", post(event_with("name", json!("")))),
        bad("event time huge", post(event_with("time", json!(1e30)))),
        bad("event time after sentAt", post(event_with("time", json!(T0 + 10 * MINUTE)))),
        bad("event time two days old", post(event_with("time", json!(T0 - 48 * 60 * MINUTE)))),
        bad("51 attributes", post(event_with("attributes", Value::Object(many_attributes)))),
        bad("attribute value of 1025 bytes", post(event_with("attributes", json!({"a": "x".repeat(1025)})))),
        bad("attribute value an object", post(event_with("attributes", json!({"a": {"b": 1}})))),
        bad("attribute name with a dot", post(event_with("attributes", json!({"a.b": 1})))),
        bad("loginId of 1025 bytes", post(event_with("loginId", json!("x".repeat(1025))))),
        bad("pageview without a page", post(batch(VISITOR, T0, vec![json!({"id": event_id(1), "kind": "pageview", "name": "page_viewed", "time": T0})]).to_string())),
        bad("pageview with a javascript: URL", post(batch(VISITOR, T0, vec![pageview(1, T0, "javascript:alert(1)")]).to_string())),
        // Who may send.
        case("unknown deployment", post(batch_with("deploymentId", json!("ghost"))), StatusCode::NOT_FOUND, "deployment.not.found"),
        case("disallowed origin", batch_request(valid_batch().to_string(), "text/plain", Some("https://evil.example")), StatusCode::FORBIDDEN, "origin.not.allowed"),
        case("no Origin", batch_request(valid_batch().to_string(), "text/plain", None), StatusCode::FORBIDDEN, "origin.not.allowed"),
        case("web event for an unknown deployment", webevent_unknown, StatusCode::NOT_FOUND, "deployment.not.found"),
        bad("web event nested 1000 deep", webevent_deep),
    ]
}

fn stored_events(app: &TestApp) -> u64 {
    app.state
        .store()
        .sessions(&Default::default(), None, 1000)
        .unwrap()
        .items
        .iter()
        .map(|session| session.event_count)
        .sum()
}

#[tokio::test]
async fn every_bad_request_gets_its_documented_error_and_stores_nothing() {
    let app = TestApp::new();
    let cases = catalogue();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let before = stored_events(&app);
        // Responses are checked against the OpenAPI document by `send`.
        let response = app.send(case.request).await;
        let body = String::from_utf8_lossy(&response.body).into_owned();
        let code = response
            .headers
            .get(header::CONTENT_TYPE)
            .filter(|value| value.as_bytes().starts_with(b"application/json"))
            .map(|_| response.json()["code"].as_str().unwrap_or("").to_owned());
        if response.status != case.status || code.as_deref() != case.code {
            failures.push(format!(
                "{}: expected {} {:?}, got {} {body}",
                case.name, case.status, case.code, response.status
            ));
        }
        if stored_events(&app) != before {
            failures.push(format!("{}: stored something", case.name));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    // Still serving.
    let response = app.post_batch(&valid_batch()).await.ok_json();
    assert_eq!(response["accepted"], 1, "{response}");
    assert_eq!(stored_events(&app), 1);
}

/// Lies and tricks below HTTP semantics, over a real socket: hyper's parser and the
/// body reader see them, not a test double.
#[tokio::test]
async fn content_length_lies_and_broken_framing_are_refused_and_the_server_survives() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.body_read_timeout_seconds = 1;
    let state = footpath_collector::AppState::new(
        config,
        std::sync::Arc::new(footpath_collector::clock::ManualClock::new(T0)),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(footpath_collector::serve(state.clone(), listener, async {
        let _ = stopped.await;
    }));
    let body = valid_batch().to_string();
    let head = |extra: &str| {
        format!(
            "POST /sdk/v1/batch HTTP/1.1\r\nHost: x\r\nOrigin: {ORIGIN}\r\n\
             Content-Type: text/plain\r\n{extra}Connection: close\r\n\r\n"
        )
    };
    let cases: Vec<(&str, String, &str)> = vec![
        // Claims more than it sends, then waits: the body times out.
        (
            "Content-Length larger than the body",
            format!(
                "{}{body}",
                head(&format!("Content-Length: {}\r\n", body.len() + 100))
            ),
            "HTTP/1.1 408",
        ),
        // Claims less: the batch is cut short and is not JSON.
        (
            "Content-Length smaller than the body",
            format!(
                "{}{body}",
                head(&format!("Content-Length: {}\r\n", body.len() - 10))
            ),
            "HTTP/1.1 400",
        ),
        (
            "two different Content-Lengths",
            format!(
                "{}{body}",
                head(&format!(
                    "Content-Length: {}\r\nContent-Length: 5\r\n",
                    body.len()
                ))
            ),
            "HTTP/1.1 400",
        ),
        (
            "Content-Length not a number",
            format!("{}{body}", head("Content-Length: lots\r\n")),
            "HTTP/1.1 400",
        ),
        // RFC 9112 §6.3: Transfer-Encoding wins over Content-Length (hyper drops the
        // latter and closes the connection afterwards), so this well-formed chunked
        // body is stored; no smuggled second request is possible.
        (
            "chunked and Content-Length both",
            format!(
                "{}{:x}\r\n{body}\r\n0\r\n\r\n",
                head(&format!(
                    "Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
                    body.len()
                )),
                body.len()
            ),
            "HTTP/1.1 200",
        ),
        (
            "a header without a colon",
            format!("{}{body}", head("Nonsense\r\n")),
            "HTTP/1.1 400",
        ),
    ];
    for (name, request, expected) in cases {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.read_to_end(&mut response),
        )
        .await
        .unwrap_or_else(|_| panic!("{name}: no answer"));
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with(expected), "{name}: {text}");
    }
    // Only the chunked batch was stored, and a valid batch still goes through.
    assert!(state.store().event(&event_id(1)).unwrap().is_some());
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!(
                "{}{body}",
                head(&format!("Content-Length: {}\r\n", body.len()))
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
