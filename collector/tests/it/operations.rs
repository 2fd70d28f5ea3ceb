//! What an operator watches: `/metrics` (its values move by exactly what was sent, and
//! the text is the Prometheus format), `/readyz` (ready, not ready while shutting down
//! or on a database at another schema version), request ids, and JSON logs from the
//! real binary (with the request id, and no visitor's data at the default level).

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use footpath_collector::clock::ManualClock;
use footpath_collector::{serve, AppState};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// One scrape: every sample by its series (`name{label="value",...}`, labels sorted),
/// after checking that the text is the Prometheus text format (version 0.0.4).
type Samples = BTreeMap<String, f64>;

/// A small parser of the exposition format, strict where the format is: every sample
/// belongs to a family declared by `# TYPE` before it, names and labels are well formed,
/// values are numbers; counters end in `_total`; a histogram's buckets never decrease
/// and its `+Inf` bucket equals its `_count`.
fn parse_prometheus_text(text: &str) -> Samples {
    fn is_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    fn parse_value(text: &str) -> Option<f64> {
        match text {
            "+Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            "NaN" => Some(f64::NAN),
            _ => text.parse().ok(),
        }
    }
    /// `{a="x",b="y"}` → sorted pairs, with `\\`, `\"` and `\n` unescaped.
    fn parse_labels(text: &str, line: &str) -> Vec<(String, String)> {
        let mut labels = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (name, after) = rest
                .split_once("=\"")
                .unwrap_or_else(|| panic!("bad labels in {line:?}"));
            assert!(is_name(name), "bad label name {name:?} in {line:?}");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, escaped @ ('\\' | '"'))) => value.push(escaped),
                        other => panic!("bad escape {other:?} in {line:?}"),
                    },
                    Some((index, '"')) => break index,
                    Some((_, c)) => value.push(c),
                    None => panic!("unterminated label value in {line:?}"),
                }
            };
            labels.push((name.to_owned(), value));
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
        labels.sort();
        labels
    }

    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Samples::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(is_name(name), "bad metric name in {line:?}");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "unknown type in {line:?}"
                    );
                    if kind == "counter" {
                        assert!(name.ends_with("_total"), "counter without _total: {line:?}");
                    }
                    assert!(
                        types.insert(name.to_owned(), kind.to_owned()).is_none(),
                        "{name} declared twice"
                    );
                }
                (Some("HELP"), Some(name), _) => assert!(is_name(name), "{line:?}"),
                _ => {}
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("a sample without a value: {line:?}"));
        let value = parse_value(value).unwrap_or_else(|| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                (name, parse_labels(labels, line))
            }
            None => (series, Vec::new()),
        };
        assert!(is_name(name), "bad metric name in {line:?}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|kind| kind == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample {line:?} before (or without) its # TYPE"
        );
        let key = if labels.is_empty() {
            name.to_owned()
        } else {
            let labels: Vec<String> = labels
                .iter()
                .map(|(label, value)| format!("{label}={value:?}"))
                .collect();
            format!("{name}{{{}}}", labels.join(","))
        };
        assert!(samples.insert(key.clone(), value).is_none(), "{key} twice");
    }
    // Histograms: cumulative buckets, `+Inf` equal to `_count`.
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let mut by_series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        let prefix = format!("{family}_bucket{{");
        for (key, value) in samples.range(prefix.clone()..) {
            let Some(labels) = key.strip_prefix(&prefix) else {
                break;
            };
            let labels = labels.trim_end_matches('}');
            let mut others = Vec::new();
            let mut bound = None;
            for pair in labels.split(',') {
                match pair.strip_prefix("le=") {
                    Some(le) => bound = parse_value(le.trim_matches('"')),
                    None => others.push(pair),
                }
            }
            by_series
                .entry(others.join(","))
                .or_default()
                .push((bound.expect("a bucket without le"), *value));
        }
        assert!(!by_series.is_empty(), "{family} has no buckets");
        for (labels, mut buckets) in by_series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                buckets.windows(2).all(|pair| pair[0].1 <= pair[1].1),
                "{family}{{{labels}}}: buckets decrease"
            );
            let count_key = if labels.is_empty() {
                format!("{family}_count")
            } else {
                format!("{family}_count{{{labels}}}")
            };
            let last = buckets.last().unwrap();
            assert_eq!(
                last.0,
                f64::INFINITY,
                "{family}{{{labels}}}: no +Inf bucket"
            );
            assert_eq!(Some(&last.1), samples.get(&count_key), "{count_key}");
        }
    }
    samples
}

async fn scrape(app: &TestApp) -> Samples {
    let response = app.get("/metrics").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse_prometheus_text(std::str::from_utf8(&response.body).unwrap())
}

/// How much each series moved between two scrapes (series absent before count from 0).
fn moved(before: &Samples, after: &Samples, series: &str) -> f64 {
    let value = |samples: &Samples| samples.get(series).copied().unwrap_or(0.0);
    assert!(after.contains_key(series), "no series {series}");
    value(after) - value(before)
}

#[test]
fn the_parser_refuses_what_is_not_the_format() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n";
    assert_eq!(parse_prometheus_text(good)["a_total{x=\"1\"}"], 2.0);
    for bad in [
        "a_total 1\n",                              // no # TYPE
        "# TYPE a counter\na 1\n",                  // counter without _total
        "# TYPE a_total counter\na_total one\n",    // not a number
        "# TYPE a_total counter\na_total{x=1} 1\n", // unquoted label
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
    ] {
        let result = std::panic::catch_unwind(|| parse_prometheus_text(bad));
        assert!(result.is_err(), "accepted {bad:?}");
    }
}

#[tokio::test]
async fn metrics_move_by_exactly_the_events_sent() {
    let app = TestApp::new();
    let before = scrape(&app).await;
    for reason in [
        "invalid",
        "too_large",
        "rate_limited",
        "origin_not_allowed",
        "unknown_deployment",
        "ip_excluded",
        "privacy_signal",
        "overloaded",
        "failed",
    ] {
        let series = format!("footpath_events_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(
            before.get(&series),
            Some(&0.0),
            "{series} is not served at 0"
        );
    }

    // Two events accepted.
    let first = batch(
        VISITOR,
        T0,
        vec![record(1, "hello", T0), record(2, "again", T0)],
    );
    assert_eq!(app.post_batch(&first).await.ok_json()["accepted"], 2);
    // The same two again: duplicates.
    assert_eq!(app.post_batch(&first).await.ok_json()["duplicates"], 2);
    // One accepted, one invalid (empty name), one over the name size limit.
    let long_name = "n".repeat(65);
    let mixed = batch(
        VISITOR,
        T0,
        vec![
            record(3, "fine", T0),
            record(4, "", T0),
            record(5, &long_name, T0),
        ],
    );
    let answer = app.post_batch(&mixed).await.ok_json();
    assert_eq!(
        (answer["accepted"].clone(), answer["rejected"].clone()),
        (json!(1), json!(2))
    );
    // A batch of three from an origin the deployment does not allow: refused whole.
    let foreign = batch(
        VISITOR,
        T0,
        vec![record(6, "x", T0), record(7, "y", T0), record(8, "z", T0)],
    );
    let response = app
        .send(batch_request(
            foreign.to_string(),
            "text/plain",
            Some("https://elsewhere.example"),
        ))
        .await;
    response.assert_error(StatusCode::FORBIDDEN, "origin.not.allowed");
    // One of the SDK's files, missing.
    let missing = app
        .send(Request::get("/sdk/none.js").body(Body::empty()).unwrap())
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let after = scrape(&app).await;
    let expected = [
        ("footpath_events_accepted_total", 3.0),
        ("footpath_events_duplicate_total", 2.0),
        ("footpath_events_refused_total{reason=\"invalid\"}", 1.0),
        ("footpath_events_refused_total{reason=\"too_large\"}", 1.0),
        (
            "footpath_events_refused_total{reason=\"origin_not_allowed\"}",
            3.0,
        ),
        (
            "footpath_events_refused_total{reason=\"unknown_deployment\"}",
            0.0,
        ),
        (
            "footpath_http_requests_total{route=\"/sdk/v1/batch\",status=\"2xx\"}",
            3.0,
        ),
        (
            "footpath_http_requests_total{route=\"/sdk/v1/batch\",status=\"4xx\"}",
            1.0,
        ),
        // The first scrape is counted once it was answered.
        (
            "footpath_http_requests_total{route=\"/metrics\",status=\"2xx\"}",
            1.0,
        ),
        (
            "footpath_http_requests_total{route=\"/sdk/{*file}\",status=\"4xx\"}",
            1.0,
        ),
        // The three batches that reached the database, one commit each.
        (
            "footpath_ingest_duration_seconds_count{endpoint=\"batch\"}",
            3.0,
        ),
        (
            "footpath_ingest_duration_seconds_count{endpoint=\"webevent\"}",
            0.0,
        ),
        ("footpath_ingest_batches_per_commit_count", 3.0),
        ("footpath_ingest_batches_per_commit_sum", 3.0),
    ];
    for (series, change) in expected {
        assert_eq!(moved(&before, &after, series), change, "{series}");
    }
    assert_eq!(after["footpath_ingest_queue_batches"], 0.0);
    assert_eq!(after["footpath_live_sessions"], 1.0);
    assert_eq!(after["footpath_desk_streams_open"], 0.0);
    assert!(after["footpath_database_size_bytes"] > 0.0);

    // The session ends by the clock: no longer live.
    app.clock.advance_ms(TIMEOUT);
    assert_eq!(scrape(&app).await["footpath_live_sessions"], 0.0);
}

#[tokio::test]
async fn web_events_and_unknown_deployments_are_counted_too() {
    let app = TestApp::new();
    let before = scrape(&app).await;
    let body = json!({
        "customerCookieId": VISITOR,
        "eventName": "called_us",
        "createdDate": footpath_collector::timefmt::format_ms(T0),
    });
    let response = app.send(crate::openapi::web_event_request(body)).await;
    assert_eq!(response.status, StatusCode::OK, "{:?}", response.body);
    let mut unknown = batch(
        OTHER_VISITOR,
        T0,
        vec![record(1, "x", T0), record(2, "y", T0)],
    );
    unknown["deploymentId"] = json!("nobody");
    app.post_batch(&unknown)
        .await
        .assert_error(StatusCode::NOT_FOUND, "deployment.not.found");

    let after = scrape(&app).await;
    for (series, change) in [
        ("footpath_events_accepted_total", 1.0),
        ("footpath_events_refused_total{reason=\"unknown_deployment\"}", 2.0),
        ("footpath_ingest_duration_seconds_count{endpoint=\"webevent\"}", 1.0),
        (
            "footpath_http_requests_total{route=\"/api/v2/journey/deployments/{deployment_id}/webevents\",status=\"2xx\"}",
            1.0,
        ),
    ] {
        assert_eq!(moved(&before, &after, series), change, "{series}");
    }
}

#[tokio::test]
async fn metrics_need_the_token_unless_configured_otherwise() {
    let app = TestApp::new();
    let anonymous = app
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    anonymous.assert_error(StatusCode::UNAUTHORIZED, "authentication.required");

    let open = TestApp::with_config(|config| config.metrics_require_token = false);
    let response = open
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(response.status, StatusCode::OK);
    let samples = parse_prometheus_text(std::str::from_utf8(&response.body).unwrap());
    assert!(samples.contains_key("footpath_events_accepted_total"));
}

#[tokio::test]
async fn request_ids_are_echoed_when_sane_and_replaced_otherwise() {
    let app = TestApp::new();
    let send_with = |value: HeaderValue| {
        let request = Request::get("/healthz")
            .header("x-request-id", value)
            .body(Body::empty())
            .unwrap();
        app.send(request)
    };
    let kept = send_with(HeaderValue::from_static("trace-4bf92f3577b34da6")).await;
    assert_eq!(kept.header("x-request-id"), Some("trace-4bf92f3577b34da6"));

    let oversized = "a".repeat(129);
    let non_ascii = HeaderValue::from_bytes("caf\u{e9}".as_bytes()).unwrap();
    for value in [
        HeaderValue::from_str(&oversized).unwrap(),
        non_ascii,
        HeaderValue::from_static("has space"),
    ] {
        let response = send_with(value.clone()).await;
        let id = response.headers.get("x-request-id").expect("an id");
        assert_ne!(id, &value);
        let id = id.to_str().unwrap();
        assert!(
            uuid::Uuid::parse_str(id).is_ok(),
            "{id} is not a fresh UUID"
        );
    }

    // Without one, each request gets its own.
    let first = app
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    let second = app
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_ne!(first.header("x-request-id"), second.header("x-request-id"));
}

#[tokio::test]
async fn readyz_is_200_when_the_database_answers_at_its_schema_version() {
    let app = TestApp::new();
    let response = app
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(response.ok_json(), json!({"status": "ready"}));

    // Another program moves the schema to a version this collector does not know.
    let connection = rusqlite::Connection::open(app.dir.path().join("test.sqlite3")).unwrap();
    connection.pragma_update(None, "user_version", 99).unwrap();
    let response = app
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    let message = response.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service.unavailable");
    assert_eq!(
        message,
        "not ready: the database is not at this collector's schema version"
    );
    // Liveness is another question.
    let health = app
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(health.status, StatusCode::OK);
}

async fn http_get(address: SocketAddr, path: &str) -> (StatusCode, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = StatusCode::from_u16(response[9..12].parse().unwrap()).unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

#[tokio::test]
async fn readyz_is_503_from_the_shutdown_signal_on_while_requests_are_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    // Long enough that the drain is still going when the test asks; the test ends
    // the server itself.
    config.shutdown_drain_seconds = 600;
    let state = AppState::new(config, Arc::new(ManualClock::new(T0))).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(state.clone(), listener, async {
        let _ = stopped.await;
    }));

    let (status, body) = http_get(address, "/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"status":"ready"}"#)
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !state.is_shutting_down() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the server takes the shutdown signal");
    let (status, body) = http_get(address, "/readyz").await;
    let headers = axum::http::HeaderMap::from_iter([(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )]);
    crate::openapi::check_response(&Method::GET, "/readyz", status, &headers, body.as_bytes());
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["message"], "not ready: the collector is shutting down");
    // Everything else is still served during the drain.
    let (status, body) = http_get(address, "/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    server.abort();
}

/// The real binary with `--log-format json` at the default level: every line is a JSON
/// object, a line logged while a request was handled carries its request id, and
/// nothing of the visitor (id, address, user agent, page) is in any line.
#[tokio::test]
async fn json_logs_carry_request_ids_and_no_visitor_data() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sdk")).unwrap();
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "database_path = {:?}\nsdk_dir = {:?}\napi_tokens = [\"{TOKEN}\"]\n\
             [[deployments]]\nid = \"{DEPLOYMENT}\"\nallowed_origins = [\"{ORIGIN}\"]\n",
            dir.path().join("logs.sqlite3"),
            dir.path().join("sdk"),
        ),
    )
    .unwrap();
    let address = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_footpath-collector"))
        .arg("--config")
        .arg(&config)
        .arg("--listen-addr")
        .arg(address.to_string())
        .arg("--log-format")
        .arg("json")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let stdout = child.stdout.take().unwrap();
    let (lines_sender, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_sender.send(line).is_err() {
                break;
            }
        }
    });
    // Generous: the debug build compiles the user-agent rules at startup, and the
    // machine may be busy with other builds.
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(address).await.is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the collector exited ({status}): {}",
                stderr.join().unwrap()
            );
        }
        assert!(Instant::now() < deadline, "the collector did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A visitor's batch, with its page and browser.
    let visitor = "7f0c2a55-1d0e-4a57-9f3e-00000000abcd";
    let page = "https://shop.example/private/order-77";
    let body = batch(visitor, now_ms(), vec![pageview(1, now_ms(), page)]).to_string();
    let raw = format!(
        "POST /sdk/v1/batch HTTP/1.1\r\nHost: {address}\r\nOrigin: {ORIGIN}\r\n\
         User-Agent: {USER_AGENT}\r\nX-Request-Id: batch-request-1\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let response = raw_exchange(address, &raw).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("x-request-id: batch-request-1"),
        "{response}"
    );
    // A refused desk sign-in is logged at info, inside its request.
    let form = "token=wrong";
    let raw = format!(
        "POST /desk/signin HTTP/1.1\r\nHost: {address}\r\nX-Request-Id: sign-in-42\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{form}",
        form.len()
    );
    let response = raw_exchange(address, &raw).await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");

    let mut seen = Vec::new();
    let mut found = None;
    while found.is_none() {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no log line with the request id in {seen:#?}"));
        let json: Value = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("a log line that is not JSON ({error}): {line}"));
        if json["span"]["request_id"] == "sign-in-42" {
            found = Some(json);
        }
        seen.push(line);
    }
    let found = found.unwrap();
    assert_eq!(found["level"], "INFO");
    assert_eq!(found["fields"]["message"], "desk sign-in refused");
    assert_eq!(found["span"]["route"], "/desk/signin");
    assert_eq!(found["span"]["method"], "POST");

    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    seen.extend(lines.try_iter());
    for line in &seen {
        serde_json::from_str::<Value>(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        for secret in [visitor, page, USER_AGENT, "order-77"] {
            assert!(!line.contains(secret), "{secret:?} logged: {line}");
        }
    }
}

async fn raw_exchange(address: SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

fn now_ms() -> i64 {
    footpath_collector::clock::Clock::now_ms(&footpath_collector::clock::SystemClock)
}

#[tokio::test]
async fn open_desk_streams_are_counted_while_open() {
    use tower::ServiceExt as _;
    let app = TestApp::new();
    let form = format!("token={TOKEN}");
    let signed_in = app
        .send(
            Request::post("/desk/signin")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form))
                .unwrap(),
        )
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    let cookie = signed_in
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let open_stream = || {
        let request = Request::get("/desk/api/stream")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap();
        footpath_collector::router(app.state.clone()).oneshot(request)
    };
    let first = open_stream().await.unwrap();
    let second = open_stream().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(scrape(&app).await["footpath_desk_streams_open"], 2.0);
    drop(first);
    assert_eq!(scrape(&app).await["footpath_desk_streams_open"], 1.0);
    drop(second);
    assert_eq!(scrape(&app).await["footpath_desk_streams_open"], 0.0);
}

/// Starts the real binary with `args` and `envs` (and no configuration file, no
/// inherited `FOOTPATH_*` or `RUST_LOG`), and waits until it listens on the returned
/// address, or returns what it printed when it exited first.
async fn start_binary(
    args: &[String],
    envs: &[(&str, String)],
) -> Result<
    (
        std::process::Child,
        SocketAddr,
        std::sync::mpsc::Receiver<String>,
    ),
    String,
> {
    // The free port is found by binding and letting go; a test running alongside may
    // take it before the collector binds it. Then the collector says so and exits, and
    // another port is tried.
    let mut attempts = 0;
    loop {
        attempts += 1;
        match start_binary_once(args, envs).await {
            Err(printed) if printed.contains("cannot listen on") && attempts < 5 => continue,
            result => return result,
        }
    }
}

async fn start_binary_once(
    args: &[String],
    envs: &[(&str, String)],
) -> Result<
    (
        std::process::Child,
        SocketAddr,
        std::sync::mpsc::Receiver<String>,
    ),
    String,
> {
    let address = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_footpath-collector"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FOOTPATH_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .args(["--listen-addr".to_owned(), address.to_string()])
        .args(args)
        .envs(envs.iter().map(|(name, value)| (*name, value)))
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_sender, lines) = std::sync::mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let sender = lines_sender.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(address).await.is_err() {
        if child.try_wait().unwrap().is_some() {
            // Both pipes close at exit; collect everything that was printed.
            drop(lines_sender);
            return Err(lines.iter().collect::<Vec<_>>().join("\n"));
        }
        assert!(Instant::now() < deadline, "the collector did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((child, address, lines))
}

fn stop_binary(mut child: std::process::Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

/// Every setting can come from an environment variable or a flag under one naming rule
/// (`collector/src/config/sources.rs`): a collector configured without any file takes
/// its database, deployments, limits, tokens and metrics setting from them, tells what
/// it ignored, and refuses a value a setting cannot take, naming where it came from.
#[tokio::test]
async fn settings_come_from_the_environment_and_flags_without_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sdk")).unwrap();
    let envs = [
        (
            "FOOTPATH_DATABASE_PATH",
            dir.path().join("env.sqlite3").display().to_string(),
        ),
        (
            "FOOTPATH_SDK_DIR",
            dir.path().join("sdk").display().to_string(),
        ),
        (
            "FOOTPATH_DEPLOYMENTS",
            format!("[{{ id = \"{DEPLOYMENT}\", allowed_origins = [\"{ORIGIN}\"] }}]"),
        ),
        ("FOOTPATH_MAX_BODY_BYTES", "2048".to_owned()),
        // Overridden by the flag below: flags win.
        ("FOOTPATH_METRICS_REQUIRE_TOKEN", "true".to_owned()),
        ("FOOTPATH_SESION_TIMEOUT_SECONDS", "60".to_owned()),
    ];
    let args = [
        "--api-tokens".to_owned(),
        TOKEN.to_owned(),
        "--metrics-require-token=false".to_owned(),
        "--desk.title".to_owned(),
        "Flag Visit".to_owned(),
    ];
    let (child, address, lines) = start_binary(&args, &envs).await.unwrap();

    let now = now_ms();
    let send = |body: String| async move {
        let raw = format!(
            "POST /sdk/v1/batch HTTP/1.1\r\nHost: {address}\r\nOrigin: {ORIGIN}\r\n\
             User-Agent: {USER_AGENT}\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        raw_exchange(address, &raw).await
    };
    let visitor = "7f0c2a55-1d0e-4a57-9f3e-00000000beef";
    let small = batch(
        visitor,
        now,
        vec![pageview(1, now, "https://shop.example/")],
    )
    .to_string();
    let response = send(small).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let long_page = format!("https://shop.example/{}", "a".repeat(2100));
    let large = batch(visitor, now, vec![pageview(2, now, &long_page)]).to_string();
    assert!(large.len() > 2048);
    let response = send(large).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    let (status, _) = http_get(address, "/metrics").await;
    assert_eq!(status, StatusCode::OK, "--metrics-require-token=false");
    let read = format!(
        "GET /api/v2/journey/sessions HTTP/1.1\r\nHost: {address}\r\n\
         Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    let response = raw_exchange(address, &read).await;
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "the flag's token: {response}"
    );
    stop_binary(child);
    let printed: Vec<String> = lines.try_iter().collect();
    assert!(
        printed
            .iter()
            .any(|line| line.contains("FOOTPATH_SESION_TIMEOUT_SECONDS")
                && line.contains("not a setting")),
        "{printed:#?}"
    );
    assert!(
        printed.iter().any(|line| line.contains("Flag Visit")),
        "the desk title in the logged configuration: {printed:#?}"
    );

    for (envs, args, expected) in [
        (
            vec![("FOOTPATH_SESSION_TIMEOUT_SECONDS", "soon".to_owned())],
            vec![],
            "FOOTPATH_SESSION_TIMEOUT_SECONDS: invalid type: string \"soon\"",
        ),
        (
            vec![],
            vec!["--max-body-bytes".to_owned(), "-1".to_owned()],
            "--max-body-bytes: invalid type: string \"-1\"",
        ),
        (
            vec![],
            vec!["--no-such-setting".to_owned()],
            "--no-such-setting",
        ),
    ] {
        match start_binary(&args, &envs).await {
            Ok((child, ..)) => {
                stop_binary(child);
                panic!("started with {envs:?} {args:?}");
            }
            Err(printed) => assert!(printed.contains(expected), "{expected}: {printed}"),
        }
    }
}
