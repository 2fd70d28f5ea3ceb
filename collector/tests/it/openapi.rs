//! The OpenAPI document (`collector/openapi.json`) against what the collector answers.
//!
//! [`check_response`] runs on every response that [`crate::support::TestApp::send`]
//! sees, in every test of this binary: the route and status must be documented, and a
//! JSON body must validate against the operation's schema (OpenAPI 3.1 schemas are JSON
//! Schema 2020-12, checked with the `jsonschema` crate; `$ref`s resolve to the
//! document's components, which are put into the root schema). Besides the schemas,
//! every body is checked for the Journey API's conventions: no `null` anywhere, and
//! every `...Date` field an ISO-8601 UTC date with milliseconds and a `Z`.
//!
//! The tests below produce one response of each shape on purpose, and count, so that
//! the check is known to have run (and known to be able to fail).

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use footpath_collector::openapi::{document, OPENAPI_PATH};
use serde_json::{json, Value};

use crate::support::*;

struct Spec {
    document: Value,
    /// Compiled validators by schema pointer.
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec {
        document: document(),
        validators: Mutex::new(HashMap::new()),
    })
}

thread_local! {
    /// How many JSON bodies were validated against a schema on this thread. Each
    /// `#[tokio::test]` runs on a thread of its own, with the router in the same task.
    static VALIDATED_BODIES: Cell<usize> = const { Cell::new(0) };
}

/// A validator for the schema at `pointer` (a JSON pointer into the document), with
/// the document's components in its root so that `#/components/...` refs resolve.
fn validator(pointer: &str) -> Arc<jsonschema::Validator> {
    let spec = spec();
    let mut validators = spec.validators.lock().unwrap();
    if let Some(validator) = validators.get(pointer) {
        return validator.clone();
    }
    let schema = spec
        .document
        .pointer(pointer)
        .unwrap_or_else(|| panic!("no schema at {pointer}"));
    // The schema itself (typically a `$ref` to a component) under a root that holds the
    // components, so that every `#/components/...` reference resolves.
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": spec.document["components"],
        "allOf": [schema],
    });
    let validator = Arc::new(
        jsonschema::draft202012::new(&root)
            .unwrap_or_else(|error| panic!("the schema at {pointer} does not compile: {error}")),
    );
    validators.insert(pointer.to_owned(), validator.clone());
    validator
}

/// Validates `instance` against the schema at `pointer`, panicking with every error.
pub fn assert_valid(pointer: &str, instance: &Value, what: &str) {
    let validator = validator(pointer);
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match {pointer}:\n  {}\n{instance:#}",
        errors.join("\n  ")
    );
    VALIDATED_BODIES.with(|count| count.set(count.get() + 1));
}

/// The document's path template that `path` matches, preferring the one with the most
/// literal segments (`/a/b` over `/a/{x}`).
fn path_template(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').collect();
    spec().document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|template| {
            let template_segments: Vec<&str> = template.split('/').collect();
            if template_segments.len() != segments.len() {
                return None;
            }
            let mut literal = 0;
            for (expected, actual) in template_segments.iter().zip(&segments) {
                if expected.starts_with('{') && expected.ends_with('}') {
                    if actual.is_empty() {
                        return None;
                    }
                } else if expected == actual {
                    literal += 1;
                } else {
                    return None;
                }
            }
            Some((literal, template.clone()))
        })
        .max()
        .map(|(_, template)| template)
}

/// Follows a `$ref` to `#/components/responses/...`, returning the pointer of the
/// response object.
fn resolve_response(pointer: String) -> String {
    match spec()
        .document
        .pointer(&pointer)
        .and_then(|r| r["$ref"].as_str())
    {
        Some(target) => target.trim_start_matches('#').to_owned(),
        None => pointer,
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

/// The checks described in the module documentation, for one response.
pub fn check_response(
    method: &Method,
    uri: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) {
    let path = uri.split('?').next().unwrap_or(uri);
    let what = format!("{method} {uri} → {status}");
    let body_json: Option<Value> = is_json(headers).then(|| {
        serde_json::from_slice(body).unwrap_or_else(|error| {
            panic!("{what}: a JSON content type with a body that is not JSON ({error})")
        })
    });
    // The OpenAPI document is not Journey data: its schemas have `...Date` fields.
    if let Some(json) = body_json.as_ref().filter(|_| path != OPENAPI_PATH) {
        assert_conventions(json, &what);
    }
    let Some(template) = path_template(path) else {
        // Not a documented route: the fallback's 404 (or a route another module
        // serves). An error must still be the documented error shape.
        if let (Some(json), true) = (
            &body_json,
            status.is_client_error() || status.is_server_error(),
        ) {
            assert_valid("/components/schemas/Error", json, &what);
        }
        return;
    };
    let escaped = template.replace('~', "~0").replace('/', "~1");
    let operation = format!("/paths/{escaped}/{}", method.as_str().to_ascii_lowercase());
    if spec().document.pointer(&operation).is_none() {
        assert_eq!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{what}: the operation is not documented ({operation})"
        );
        return;
    }
    let response = resolve_response(format!("{operation}/responses/{}", status.as_u16()));
    assert!(
        spec().document.pointer(&response).is_some(),
        "{what}: status {} is not documented for {operation}",
        status.as_u16()
    );
    let json_schema = format!("{response}/content/application~1json/schema");
    match (&body_json, spec().document.pointer(&json_schema).is_some()) {
        (Some(json), true) => assert_valid(&json_schema, json, &what),
        (Some(json), false) => panic!("{what}: undocumented JSON body {json}"),
        (None, true) => panic!(
            "{what}: documented as JSON, but the body is {:?} ({:?})",
            headers.get(header::CONTENT_TYPE),
            String::from_utf8_lossy(body)
        ),
        (None, false) => {}
    }
}

/// No `null` anywhere; every string field whose name ends in `Date` or is
/// `dateCreated` is ISO-8601 UTC with milliseconds and a `Z`.
fn assert_conventions(value: &Value, what: &str) {
    let nulls = null_paths(value, "$");
    assert!(nulls.is_empty(), "{what}: nulls at {nulls:?}\n{value:#}");
    fn dates(value: &Value, path: &str, found: &mut Vec<(String, String)>) {
        match value {
            Value::Object(fields) => {
                for (name, inner) in fields {
                    let inner_path = format!("{path}.{name}");
                    if name.ends_with("Date") || name == "dateCreated" {
                        found.push((inner_path.clone(), inner.to_string()));
                    }
                    dates(inner, &inner_path, found);
                }
            }
            Value::Array(items) => {
                for (index, inner) in items.iter().enumerate() {
                    dates(inner, &format!("{path}[{index}]"), found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    dates(value, "$", &mut found);
    for (path, date) in found {
        assert!(
            is_journey_date(&date),
            "{what}: {path} is {date}, not a UTC date with milliseconds"
        );
    }
}

/// `"2026-11-24T06:15:14.123Z"`, quotes included (the JSON text of the value).
fn is_journey_date(json_text: &str) -> bool {
    let Some(text) = json_text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
    else {
        return false;
    };
    let bytes = text.as_bytes();
    let digit = |index: usize| bytes.get(index).is_some_and(u8::is_ascii_digit);
    let shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    bytes.len() == shape.len()
        && shape.bytes().enumerate().all(|(index, expected)| {
            if expected == b'd' {
                digit(index)
            } else {
                bytes[index] == expected
            }
        })
        && footpath_collector::timefmt::parse_ms(text).is_some()
}

#[test]
fn journey_dates() {
    assert!(is_journey_date("\"2026-11-24T06:15:14.123Z\""));
    assert!(!is_journey_date("\"2026-11-24T06:15:14Z\""));
    assert!(!is_journey_date("\"2026-11-24T06:15:14.123+00:00\""));
    assert!(!is_journey_date("\"2026-13-24T06:15:14.123Z\""));
    assert!(!is_journey_date("1795500914123"));
}

/// The checks can fail: a wrong shape, a null, an undocumented status.
#[test]
fn the_checks_catch_drift() {
    let json_headers = {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        headers
    };
    let check = |method: Method, uri: &str, status: StatusCode, body: Value| {
        let headers = json_headers.clone();
        let bytes = body.to_string().into_bytes();
        std::panic::catch_unwind(move || check_response(&method, uri, status, &headers, &bytes))
            .err()
            .map(|panic| {
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "non-string panic".to_owned())
            })
    };
    let ping = json!({"actions": [], "pollIntervalMilliseconds": 10000});
    let uri = "/api/v2/journey/deployments/shop/customers/x/ping";
    assert_eq!(check(Method::GET, uri, StatusCode::OK, ping.clone()), None);
    let extra = json!({"actions": [], "pollIntervalMilliseconds": 10000, "debug": true});
    assert!(check(Method::GET, uri, StatusCode::OK, extra)
        .unwrap()
        .contains("does not match"));
    let null = json!({"actions": [], "pollIntervalMilliseconds": null});
    assert!(check(Method::GET, uri, StatusCode::OK, null)
        .unwrap()
        .contains("nulls at"));
    let teapot = check(Method::GET, uri, StatusCode::IM_A_TEAPOT, ping);
    assert!(teapot.unwrap().contains("is not documented"));
    let bad_date = json!({"id": "s", "eventName": "x", "createdDate": "2026-11-24T06:15:14Z"});
    let message = check(
        Method::GET,
        "/api/v2/journey/sessions/s",
        StatusCode::OK,
        json!({"lastEvent": bad_date}),
    )
    .unwrap();
    assert!(
        message.contains("not a UTC date with milliseconds"),
        "{message}"
    );
    let error = json!({"status": 404, "code": "not.found", "message": "no such resource"});
    assert_eq!(
        check(Method::GET, "/nowhere", StatusCode::NOT_FOUND, error),
        None
    );
    let not_an_error = json!({"status": 404, "message": "no such resource"});
    assert!(check(Method::GET, "/nowhere", StatusCode::NOT_FOUND, not_an_error).is_some());
}

/// Every route the router serves is in the document, and every documented operation
/// answers (here: not with the fallback's "no such resource").
#[tokio::test]
async fn the_document_is_served_and_lists_every_route() {
    let app = TestApp::new();
    let response = app
        .send(Request::get(OPENAPI_PATH).body(Body::empty()).unwrap())
        .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let served = response.json();
    assert_eq!(served, document());
    let mut operations: Vec<String> = Vec::new();
    for (path, item) in served["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete", "options"] {
            if item.get(method).is_some() {
                operations.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    operations.sort();
    assert_eq!(
        operations,
        [
            "DELETE /api/v2/externalcontacts/contacts/{contactId}",
            "DELETE /api/v2/journey/outcomes/{outcomeId}",
            "DELETE /api/v2/journey/segments/{segmentId}",
            "GET /api/v2/externalcontacts/contacts",
            "GET /api/v2/externalcontacts/contacts/{contactId}",
            "GET /api/v2/externalcontacts/contacts/{contactId}/journey/sessions",
            "GET /api/v2/footpath/openapi.json",
            "GET /api/v2/footpath/privacy/contacts/{contactId}/export",
            "GET /api/v2/footpath/privacy/deployments/{deploymentId}/visitors/{customerCookieId}/export",
            "GET /api/v2/footpath/stats",
            "GET /api/v2/footpath/usage",
            "GET /api/v2/journey/deployments/{deploymentId}/customers/{customerCookieId}/ping",
            "GET /api/v2/journey/outcomes",
            "GET /api/v2/journey/outcomes/{outcomeId}",
            "GET /api/v2/journey/segments",
            "GET /api/v2/journey/segments/{segmentId}",
            "GET /api/v2/journey/sessions",
            "GET /api/v2/journey/sessions/{sessionId}",
            "GET /api/v2/journey/sessions/{sessionId}/events",
            "GET /healthz",
            "GET /metrics",
            "GET /readyz",
            "GET /sdk/v1/session",
            "GET /sdk/{file}",
            "OPTIONS /api/v2/journey/deployments/{deploymentId}/webevents",
            "OPTIONS /sdk/v1/batch",
            "PATCH /api/v2/journey/outcomes/{outcomeId}",
            "PATCH /api/v2/journey/segments/{segmentId}",
            "POST /api/v2/externalcontacts/contacts",
            "POST /api/v2/footpath/privacy/contacts/{contactId}/erase",
            "POST /api/v2/footpath/privacy/deployments/{deploymentId}/visitors/{customerCookieId}/erase",
            "POST /api/v2/journey/deployments/{deploymentId}/webevents",
            "POST /api/v2/journey/outcomes",
            "POST /api/v2/journey/segments",
            "POST /sdk/v1/batch",
            "PUT /api/v2/externalcontacts/contacts/{contactId}",
        ]
    );
    // Each documented operation reaches a handler: with path parameters filled in and
    // no body, none falls through to the router's "no such resource".
    for operation in &operations {
        let (method, template) = operation.split_once(' ').unwrap();
        let uri = template
            .replace("{deploymentId}", DEPLOYMENT)
            .replace("{customerCookieId}", VISITOR)
            .replace("{file}", "footpath.js")
            .replace(['{', '}'], "");
        let request = Request::builder()
            .method(method)
            .uri(&uri)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::ORIGIN, ORIGIN)
            .body(Body::empty())
            .unwrap();
        let response = app.send(request).await;
        let fell_through = response.status == StatusCode::NOT_FOUND
            && response.body.as_ref()
                == br#"{"status":404,"code":"not.found","message":"no such resource"}"#;
        assert!(!fell_through, "{operation} ({uri}) is not routed");
    }
}

/// One response of every shape, each validated by `TestApp::send`; the count proves
/// the validation ran.
#[tokio::test]
async fn every_response_shape_validates() {
    let app = TestApp::new();
    let before = VALIDATED_BODIES.with(Cell::get);
    let ada = app
        .create_contact(json!({
            "firstName": "Ada", "lastName": "Lovelace", "workEmail": "ada@example.com",
            "cellPhone": "+442079460018", "homePhone": {"e164": "+12015550123"}
        }))
        .await;
    let ada_id = ada["id"].as_str().unwrap();
    // A batch with a rejected event, the campaign, referrer, search and identity.
    let mut landing = pageview(
        1,
        T0 - 3 * SECOND,
        "https://shop.example/?utm_source=news&gclid=g1",
    );
    landing["page"]["referrer"] = json!("https://www.google.com/search?q=boots");
    landing["page"]["title"] = json!("Home");
    landing["context"] = json!({"browserLang": "en-GB", "screenWidth": 1280, "screenHeight": 800,
                                "screenDensity": 200, "viewportWidth": 1200, "viewportHeight": 700});
    let mut search = pageview(2, T0 - 2 * SECOND, "https://shop.example/products?q=boots");
    search["page"]["searchQuery"] = json!("boots");
    let batch_response = app
        .post_batch(&batch(
            VISITOR,
            T0,
            vec![
                landing,
                search,
                record(3, "bad name", T0 - SECOND),
                identify(4, T0, Some("ada"), json!({"email": "ada@example.com"})),
            ],
        ))
        .await
        .ok_json();
    assert_eq!(batch_response["rejected"], 1);
    let session = app.only_session_of(VISITOR).await;
    let session_id = session["id"].as_str().unwrap();
    assert_eq!(session["externalContact"]["id"], json!(ada_id));
    app.get(&format!("/api/v2/journey/sessions/{session_id}"))
        .await
        .ok_json();
    app.get(&format!(
        "/api/v2/journey/sessions/{session_id}/events?pageSize=1"
    ))
    .await
    .ok_json();
    app.get("/api/v2/journey/sessions?pageSize=1")
        .await
        .ok_json();
    app.get(&format!(
        "/api/v2/externalcontacts/contacts/{ada_id}/journey/sessions"
    ))
    .await
    .ok_json();
    app.get("/api/v2/externalcontacts/contacts?q=ada&pageSize=1")
        .await
        .ok_json();
    app.contact(ada_id).await;
    app.get("/api/v2/footpath/stats").await.ok_json();
    let web_event = app
        .send(web_event_request(json!({
            "customerCookieId": VISITOR,
            "eventName": "page_viewed",
            "page": {"url": "https://shop.example/basket#pay", "title": "Basket"},
            "attributes": {"items": {"dataType": "Integer", "value": "2"}},
            "createdDate": footpath_collector::timefmt::format_ms(T0 + SECOND),
        })))
        .await
        .ok_json();
    assert_eq!(web_event["session"]["id"], json!(session_id));
    app.send(
        Request::get(format!(
            "/api/v2/journey/deployments/{DEPLOYMENT}/customers/{VISITOR}/ping"
        ))
        .body(Body::empty())
        .unwrap(),
    )
    .await
    .ok_json();
    // Error bodies: 400, 401, 403, 404 (route, session, deployment), 415.
    let errors = [
        app.get("/api/v2/journey/sessions?pageSize=0").await,
        app.send(
            Request::get("/api/v2/footpath/stats")
                .body(Body::empty())
                .unwrap(),
        )
        .await,
        app.send(batch_request(
            batch(VISITOR, T0, vec![]).to_string(),
            "text/plain",
            Some("https://evil.example"),
        ))
        .await,
        app.get("/api/v2/nowhere").await,
        app.get("/api/v2/journey/sessions/missing").await,
        app.send(web_event_request_to("ghost", json!({}))).await,
        app.send(batch_request("{}", "image/png", Some(ORIGIN)))
            .await,
    ];
    let statuses: Vec<u16> = errors
        .iter()
        .map(|response| response.status.as_u16())
        .collect();
    assert_eq!(statuses, [400, 401, 403, 404, 404, 404, 415]);
    // Every JSON body above: 12 successes and 7 errors.
    assert_eq!(VALIDATED_BODIES.with(Cell::get) - before, 19);
}

/// `POST .../webevents` of the test deployment, as a site's server sends it (JSON, no
/// `Origin`), from the tests' client address.
pub fn web_event_request(body: Value) -> Request<Body> {
    web_event_request_to(DEPLOYMENT, body)
}

pub fn web_event_request_to(deployment: &str, body: Value) -> Request<Body> {
    let mut request = Request::post(format!(
        "/api/v2/journey/deployments/{deployment}/webevents"
    ))
    .header(header::CONTENT_TYPE, "application/json")
    .header(header::USER_AGENT, USER_AGENT)
    .body(Body::from(body.to_string()))
    .unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            CLIENT_IP, 51_000,
        ))));
    request
}
