//! Hostile requests against the public ingest side's limits, as one table: oversized
//! headers and fields, what one session may accumulate, ping floods, slow bodies,
//! connection floods, malformed bodies and path tricks. Each case is answered with
//! its documented status and error code, and afterwards the database holds exactly
//! what it should (counted directly), plus any check of its own.
//!
//! Cases that need load or sockets (floods, slow bodies) run the real server on a
//! loopback port, briefly, and assert what normal traffic was answered, never a time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use footpath_collector::config::Config;
use footpath_collector::store::{IngestQueueSettings, SessionLimits, SqliteStore};
use footpath_collector::{serve, AppState};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// How a case is sent. (A table of a few dozen: the size of a variant does not matter.)
#[allow(clippy::large_enum_variant)]
enum Send {
    /// One request through the router.
    Router(Request<Body>),
    /// Raw bytes over a socket to the real server.
    Raw(Vec<u8>),
    /// `pings` pings through the router, concurrently with `batches` batches (one
    /// event each); from one visitor, or from one address with a new visitor each.
    PingFlood {
        pings: usize,
        batches: u32,
        distinct_visitors: bool,
    },
    /// `connections` requests whose bodies send one byte and stall, then a normal
    /// batch, on the real server.
    SlowBodies { connections: usize },
    /// `idle` connections that send nothing, then one more, on the real server; then
    /// the idle ones close and a normal batch must get through.
    ConnectionFlood { idle: usize },
}

/// What the answer must be.
enum Expect {
    /// Status and, for a JSON error, its code.
    Status(StatusCode, Option<&'static str>),
    /// The connection closed without a response.
    Closed,
}

struct Case {
    /// The attack the case stands for, in one line.
    name: &'static str,
    config: fn(&mut Config),
    /// Batches sent first through the router, each answered 200.
    setup: Vec<Value>,
    send: Send,
    expect: Expect,
    /// (events, sessions) in the database afterwards, the setup's included.
    stored: (i64, i64),
    /// A further check of the database.
    check: Option<fn(&rusqlite::Connection)>,
}

fn defaults(_: &mut Config) {}

fn case(name: &'static str, send: Send, status: StatusCode, code: &'static str) -> Case {
    Case {
        name,
        config: defaults,
        setup: Vec::new(),
        send,
        expect: Expect::Status(status, Some(code)),
        stored: (0, 0),
        check: None,
    }
}

fn bad(name: &'static str, send: Send) -> Case {
    case(name, send, StatusCode::BAD_REQUEST, "bad.request")
}

fn with_peer(mut request: Request<Body>) -> Request<Body> {
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((CLIENT_IP, 51_000))));
    request
}

/// A batch request (text/plain, the shop's origin, the tests' user agent) with extra
/// headers.
fn batch_with_headers(body: impl Into<Body>, headers: &[(&str, &str)]) -> Send {
    let mut request = batch_request(body, "text/plain;charset=UTF-8", Some(ORIGIN));
    for (name, value) in headers {
        request.headers_mut().append(
            header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    Send::Router(request)
}

fn post(body: impl Into<Body>) -> Send {
    Send::Router(batch_request(
        body,
        "text/plain;charset=UTF-8",
        Some(ORIGIN),
    ))
}

fn one_event_batch() -> Value {
    batch(VISITOR, T0, vec![record(1, "clicked", T0)])
}

/// A batch with one pageview whose page has `page` merged in.
fn page_batch(page: Value) -> String {
    let mut event = pageview(1, T0, "https://shop.example/");
    for (key, value) in page.as_object().unwrap() {
        event["page"][key] = value.clone();
    }
    batch(VISITOR, T0, vec![event]).to_string()
}

fn web_event(body: Value) -> Send {
    web_event_with(body, &[])
}

fn web_event_with(body: Value, headers: &[(&str, &str)]) -> Send {
    let mut builder = Request::post(format!(
        "/api/v2/journey/deployments/{DEPLOYMENT}/webevents"
    ))
    .header(header::CONTENT_TYPE, "application/json")
    .header(header::USER_AGENT, USER_AGENT);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    Send::Router(with_peer(
        builder.body(Body::from(body.to_string())).unwrap(),
    ))
}

fn web_page_view(page: Value) -> Value {
    json!({"customerCookieId": VISITOR, "eventName": "page_viewed", "page": page})
}

fn ping_request(visitor: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::get(format!(
        "/api/v2/journey/deployments/{DEPLOYMENT}/customers/{visitor}/ping"
    ));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    with_peer(builder.body(Body::empty()).unwrap())
}

fn raw_batch(extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /sdk/v1/batch HTTP/1.1\r\nHost: collector\r\nOrigin: {ORIGIN}\r\n\
         Content-Type: text/plain\r\n{extra_headers}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn records(visitor: &str, first: u32, count: u32) -> Value {
    batch(
        visitor,
        T0,
        (first..first + count)
            .map(|n| record(n, "clicked", T0))
            .collect(),
    )
}

fn count(db: &rusqlite::Connection, table: &str) -> i64 {
    db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
        row.get(0)
    })
    .unwrap()
}

#[rustfmt::skip]
fn table() -> Vec<Case> {
    let one = one_event_batch().to_string();
    let long_url = format!("https://shop.example/{}", "a".repeat(4096));
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let forwarded_hops: Vec<String> = (0..120).map(|n| format!("10.0.{}.{}", n / 250, n % 250)).collect();
    let forwarded_hops = forwarded_hops.join(", ");
    let search_terms: Vec<Value> = (0..60)
        .map(|n| {
            let mut event = pageview(n, T0, &format!("https://shop.example/search?q=term{n}"));
            event["page"]["searchQuery"] = json!(format!("term{n}"));
            event
        })
        .collect();
    let campaign: serde_json::Map<String, Value> =
        (0..11).map(|n| (format!("utm_x{n}"), json!("v"))).collect();
    let chunked_over_limit = {
        let mut request = b"POST /sdk/v1/batch HTTP/1.1\r\nHost: collector\r\nOrigin: https://shop.example\r\n\
            Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
        for _ in 0..20 {
            request.extend_from_slice(format!("1000\r\n{}\r\n", " ".repeat(4096)).as_bytes());
        }
        request.extend_from_slice(b"0\r\n\r\n");
        request
    };
    // A gzip member header and deflate bytes: what a compressed batch starts with.
    let gzip_json = [&[0x1f_u8, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03][..], &[0xab; 64][..]].concat();
    let gzip_bomb = {
        use std::io::Write as _;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![0_u8; 32 << 20]).unwrap();
        encoder.finish().unwrap()
    };

    vec![
        // --- Headers ---
        // A 100 KB User-Agent, parsed by regexes and stored on every row: cut, not refused.
        Case {
            check: Some(|db| {
                let length: i64 = db.query_row("SELECT length(user_agent) FROM events", [], |row| row.get(0)).unwrap();
                assert_eq!(length, 512);
            }),
            stored: (1, 1),
            ..case("100 KB User-Agent", batch_with_headers_replacing_ua(&one, &"Mozilla/5.0 ".repeat(8_000)), StatusCode::OK, "")
        },
        // A web event's userAgentString of multi-byte characters: cut at a character boundary.
        Case {
            check: Some(|db| {
                let agent: String = db.query_row("SELECT user_agent FROM events", [], |row| row.get(0)).unwrap();
                assert!(agent.len() <= 512 && agent.len() >= 510, "{}", agent.len());
                assert!(agent.chars().all(|c| c == 'é'));
            }),
            stored: (1, 1),
            ..case("multi-byte userAgentString", web_event(json!({"customerCookieId": VISITOR, "eventName": "clicked", "userAgentString": "é".repeat(2_000)})), StatusCode::OK, "")
        },
        // An X-Forwarded-For of 120 hops, parsed on every batch.
        bad("X-Forwarded-For of 120 hops", batch_with_headers(one.clone(), &[("x-forwarded-for", &forwarded_hops)])),
        // The same budget spent over many X-Forwarded-For headers.
        bad("60 X-Forwarded-For headers", batch_with_headers(one.clone(), &vec![("x-forwarded-for", "203.0.113.200, 10.0.0.1"); 60])),
        // A 1 KB Origin, compared with every deployment's and echoed in errors.
        bad("1 KB Origin", Send::Router({
            let mut request = batch_request(one.clone(), "text/plain", None);
            request.headers_mut().insert(header::ORIGIN, format!("https://{}.example", "o".repeat(1000)).parse().unwrap());
            request
        })),
        // Two Origins, which a proxy and the collector could read differently.
        bad("Origin twice", batch_with_headers(one.clone(), &[("origin", "https://evil.example")])),
        // A request head larger than max_request_head_bytes: hyper answers 431.
        Case {
            expect: Expect::Status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, None),
            ..case("20 KB of headers", Send::Raw(raw_batch(&format!("X-Padding: {}\r\n", "p".repeat(20_000)), &one)), StatusCode::OK, "")
        },
        // An oversized X-Forwarded-For on the ping endpoint.
        bad("ping with a 2 KB X-Forwarded-For", Send::Router(ping_request(VISITOR, &[("x-forwarded-for", &"1".repeat(2048))]))),

        // --- Page fields ---
        // A 4 KB page URL, stored on every row and shown on cards.
        bad("page.url over 4096 bytes", post(page_batch(json!({"url": long_url})))),
        // A referrer over the URL limit.
        bad("page.referrer over 4096 bytes", post(page_batch(json!({"referrer": long_url})))),
        // A page title over the text limit.
        bad("page.title over 1024 bytes", post(page_batch(json!({"title": "t".repeat(1025)})))),
        // Meta keywords over the text limit.
        bad("page.keywords over 1024 bytes", post(page_batch(json!({"keywords": "k,".repeat(600)})))),
        // A search term over the text limit, kept in the session summary.
        bad("page.searchQuery over 1024 bytes", post(page_batch(json!({"searchQuery": "q".repeat(1025)})))),
        // A language tag of 100 bytes.
        bad("page.lang of 100 bytes", post(page_batch(json!({"lang": "x".repeat(100)})))),
        // Eleven campaign parameters where the protocol knows ten.
        bad("11 campaign entries", post(page_batch(json!({"campaign": campaign})))),
        // A browser language of 100 bytes.
        bad("context.browserLang of 100 bytes", post(batch(VISITOR, T0, vec![{
            let mut event = record(1, "clicked", T0);
            event["context"] = json!({"browserLang": "x".repeat(100)});
            event
        }]).to_string())),
        // One oversized event among valid ones: only it is rejected.
        Case {
            stored: (1, 1),
            ..case("oversized title next to a valid event", post(batch(VISITOR, T0, vec![
                record(1, "clicked", T0),
                {
                    let mut event = pageview(2, T0, "https://shop.example/");
                    event["page"]["title"] = json!("t".repeat(5000));
                    event
                },
            ]).to_string()), StatusCode::OK, "")
        },
        // A web event's title over the limit, named by the web event's field.
        bad("web event page.title over 1024 bytes", web_event(web_page_view(json!({"url": "https://shop.example/", "title": "t".repeat(1025)})))),
        // A web event's referrerUrl over the limit.
        bad("web event referrerUrl over 4096 bytes", web_event({
            let mut body = web_page_view(json!({"url": "https://shop.example/"}));
            body["referrerUrl"] = json!(long_url);
            body
        })),
        // A web event's browser description of 200 bytes, stored instead of a parsed agent.
        bad("web event browser.family of 200 bytes", web_event(json!({"customerCookieId": VISITOR, "eventName": "clicked", "browser": {"family": "f".repeat(200)}}))),

        // --- What a session accumulates ---
        // Sixty distinct search terms in one session: the summary keeps the first 20.
        Case {
            stored: (60, 1),
            check: Some(|db| {
                let json: String = db.query_row("SELECT search_terms_json FROM sessions", [], |row| row.get(0)).unwrap();
                let terms: Vec<String> = serde_json::from_str(&json).unwrap();
                let expected: Vec<String> = (0..20).map(|n| format!("term{n}")).collect();
                assert_eq!(terms, expected);
            }),
            ..case("60 search terms in one session", post(batch(VISITOR, T0, search_terms).to_string()), StatusCode::OK, "")
        },
        // Events past max_events_per_session: the full session is closed at its last
        // activity and holds no more; they start a new session (a card stays bounded,
        // and filling a visitor's session cannot lock the visitor's own events out).
        Case {
            config: |config| config.max_events_per_session = 5,
            setup: vec![records(VISITOR, 1, 5)],
            stored: (8, 2),
            check: Some(|db| {
                let counts: Vec<(i64, bool)> = db
                    .prepare("SELECT event_count, closed FROM sessions ORDER BY first_ms, event_count DESC")
                    .unwrap()
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                assert_eq!(counts, [(5, true), (3, false)]);
            }),
            ..case("events past the per-session bound", post(records(VISITOR, 10, 3).to_string()), StatusCode::OK, "")
        },
        // The same through the web event endpoint.
        Case {
            config: |config| config.max_events_per_session = 5,
            setup: vec![records(VISITOR, 1, 5)],
            stored: (6, 2),
            ..case("web event past the per-session bound", web_event(json!({"customerCookieId": VISITOR, "eventName": "clicked"})), StatusCode::OK, "")
        },

        // --- Pings ---
        // 200 pings from one visitor while batches are sent: pings past 30 a minute get
        // 429, every batch is stored.
        Case {
            stored: (10, 2),
            ..case("ping flood from one visitor", Send::PingFlood { pings: 200, batches: 10, distinct_visitors: false }, StatusCode::TOO_MANY_REQUESTS, "rate.limited")
        },
        // 80 pings from one address with a new visitor id each: past 50 a minute, 429.
        Case {
            config: |config| config.client_ip_ping_rate_limit_per_minute = 50,
            stored: (4, 2),
            ..case("ping flood from one address, rotating visitors", Send::PingFlood { pings: 80, batches: 4, distinct_visitors: true }, StatusCode::TOO_MANY_REQUESTS, "rate.limited")
        },
        // A ping for a visitor id that is not a UUID.
        bad("ping for a non-UUID visitor", Send::Router(ping_request("x%27%20OR%201%3D1", &[]))),

        // --- Slow clients and connection floods ---
        // Bodies that send one byte and stall, on more connections than ingest permits.
        Case {
            config: |config| {
                config.max_concurrent_ingest_requests = 2;
                config.body_read_timeout_seconds = 1;
            },
            stored: (1, 1),
            ..case("slow bodies on 4 connections, 2 ingest permits", Send::SlowBodies { connections: 4 }, StatusCode::REQUEST_TIMEOUT, "request.timeout")
        },
        // Idle connections up to the cap, and one more.
        Case {
            config: |config| config.max_open_connections = 4,
            expect: Expect::Closed,
            stored: (1, 1),
            ..case("a connection past max_open_connections", Send::ConnectionFlood { idle: 4 }, StatusCode::OK, "")
        },
        // A chunked body that grows past max_body_bytes.
        case("chunked body over 64 KiB", Send::Raw(chunked_over_limit), StatusCode::PAYLOAD_TOO_LARGE, "payload.too.large"),

        // --- Malformed bodies ---
        // Bytes that are not UTF-8.
        bad("invalid UTF-8", post(vec![b'{', 0xc3, 0x28, b'}'])),
        // A batch cut in the middle.
        bad("truncated JSON", post(one[..one.len() / 2].to_owned())),
        // Events given as an object.
        bad("events of the wrong type", post(json!({"v": 1, "deploymentId": DEPLOYMENT, "visitorId": VISITOR, "sentAt": T0, "events": {"a": 1}}).to_string())),
        // visitorId given twice, which parsers resolve differently.
        bad("duplicate keys", post(one.replacen('{', &format!("{{\"visitorId\":\"{OTHER_VISITOR}\","), 1))),
        // A byte order mark before the JSON.
        bad("byte order mark", post(format!("\u{feff}{one}"))),
        // A raw NUL byte between tokens.
        bad("NUL byte", post(one.replacen(',', ",\u{0}", 1))),
        // A web event nested 200 levels deep.
        bad("web event nested 200 deep", web_event(json!({"customerCookieId": VISITOR, "eventName": "clicked", "x": deep}))),
        // sentAt beyond any integer.
        bad("sentAt out of range", post(one.replace(&T0.to_string(), "99999999999999999999999"))),
        // A web event's screen width beyond u32.
        bad("web event screenWidth out of range", web_event(json!({"customerCookieId": VISITOR, "eventName": "clicked", "device": {"screenWidth": 1_u64 << 40}}))),
        // A form post instead of JSON.
        case("wrong Content-Type", Send::Router(batch_request(one.clone(), "application/x-www-form-urlencoded", Some(ORIGIN))), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported.media.type"),
        // A plain body that claims to be gzip: read as gzip, which it is not.
        bad("Content-Encoding gzip over plain JSON", batch_with_headers(one.clone(), &[("content-encoding", "gzip")])),
        // gzip's header, then bytes that do not inflate.
        bad("gzip body that does not inflate", batch_with_headers(gzip_json.clone(), &[("content-encoding", "gzip")])),
        bad("gzip magic bytes that do not inflate", batch_with_headers(gzip_json, &[])),
        // An encoding the collector does not read.
        case("Content-Encoding br", batch_with_headers(one.clone(), &[("content-encoding", "br")]), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported.media.type"),
        // A decompression bomb: 32 MiB of zeros in about 32 KB, declared or by its magic
        // bytes (as the SDK's beacons send); refused before it is inflated past the limit.
        case("gzip bomb with Content-Encoding", batch_with_headers(gzip_bomb.clone(), &[("content-encoding", "gzip")]), StatusCode::PAYLOAD_TOO_LARGE, "payload.too.large"),
        case("gzip bomb by magic bytes", batch_with_headers(gzip_bomb, &[]), StatusCode::PAYLOAD_TOO_LARGE, "payload.too.large"),

        // --- Paths and identities ---
        // A trailing slash on the batch path: not the batch route (the SDK files' folder
        // answers 405 to a POST).
        Case { expect: Expect::Status(StatusCode::METHOD_NOT_ALLOWED, None), ..case("batch path with a trailing slash", Send::Router(with_peer(Request::post("/sdk/v1/batch/").header(header::CONTENT_TYPE, "text/plain").header(header::ORIGIN, ORIGIN).body(Body::from(one.clone())).unwrap())), StatusCode::OK, "") },
        // Dot segments into the batch path: paths are not normalised, so this is no route.
        Case { expect: Expect::Status(StatusCode::METHOD_NOT_ALLOWED, None), ..case("batch path with dot segments", Send::Raw(String::from_utf8(raw_batch("", &one)).unwrap().replacen("/sdk/v1/batch", "/sdk/x/../v1/batch", 1).into_bytes()), StatusCode::OK, "") },
        // An encoded slash in the deployment id, to reach another deployment's route.
        case("deployment id with an encoded slash", Send::Router(with_peer(Request::post("/api/v2/journey/deployments/shop%2F..%2Fopen/webevents").header(header::CONTENT_TYPE, "application/json").body(Body::from(json!({"customerCookieId": VISITOR, "eventName": "clicked"}).to_string())).unwrap())), StatusCode::NOT_FOUND, "deployment.not.found"),
        // A batch for a deployment that does not exist.
        case("unknown deployment", post(one.replace("\"shop\"", "\"ghost\"")), StatusCode::NOT_FOUND, "deployment.not.found"),
        // A visitor id that is not a UUID (SQL text in it).
        bad("visitor id not a UUID", post(one.replace(VISITOR, "x' OR '1'='1"))),
    ]
}

/// The tests' batch request with its User-Agent replaced.
fn batch_with_headers_replacing_ua(body: &str, user_agent: &str) -> Send {
    let mut request = batch_request(body.to_owned(), "text/plain", Some(ORIGIN));
    request
        .headers_mut()
        .insert(header::USER_AGENT, user_agent.parse().unwrap());
    Send::Router(request)
}

/// Starts the real server on a loopback port; the returned sender stops it.
async fn start_server(state: AppState) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(state, listener, async {
        let _ = stopped.await;
    }));
    (address, stop)
}

/// Sends raw bytes and reads until the server closes; `None` when the connection
/// closed or reset without a response.
async fn exchange(address: SocketAddr, request: &[u8]) -> Option<String> {
    let mut stream = TcpStream::connect(address).await.ok()?;
    // The server may close before reading everything (a refused connection).
    let _ = stream.write_all(request).await;
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("the server answers or closes");
    if response.is_empty() {
        let _ = read;
        return None;
    }
    Some(String::from_utf8_lossy(&response).into_owned())
}

/// The status and JSON error code of a raw response.
fn parse_raw(response: &str) -> (StatusCode, Option<String>) {
    let status: u16 = response
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {response}"));
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    let code = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|body| body["code"].as_str().map(str::to_owned));
    (StatusCode::from_u16(status).unwrap(), code)
}

async fn send_via_router(app: &TestApp, request: Request<Body>) -> (StatusCode, Option<String>) {
    let response = app.send(request).await;
    let code = response
        .headers
        .get(header::CONTENT_TYPE)
        .filter(|value| value.as_bytes().starts_with(b"application/json"))
        .and_then(|_| response.json()["code"].as_str().map(str::to_owned));
    (response.status, code)
}

/// Runs one case and returns what was answered (`None`: closed without a response).
async fn run(app: &TestApp, send: Send) -> Option<(StatusCode, Option<String>)> {
    match send {
        Send::Router(request) => Some(send_via_router(app, request).await),
        Send::Raw(bytes) => {
            let (address, stop) = start_server(app.state.clone()).await;
            let answer = exchange(address, &bytes).await.map(|raw| parse_raw(&raw));
            let _ = stop.send(());
            answer
        }
        Send::PingFlood {
            pings,
            batches,
            distinct_visitors,
        } => Some(ping_flood(app, pings, batches, distinct_visitors).await),
        Send::SlowBodies { connections } => Some(slow_bodies(app, connections).await),
        Send::ConnectionFlood { idle } => connection_flood(app, idle).await,
    }
}

/// Pings and batches at once; every batch must be stored. Answers the status that
/// pings past the limit got (and checks that exactly the limit got 200).
async fn ping_flood(
    app: &TestApp,
    pings: usize,
    batches: u32,
    distinct_visitors: bool,
) -> (StatusCode, Option<String>) {
    // With a new visitor each, the address's limit applies, and the first ping below
    // (from the same address) took one of its places.
    let limit = if distinct_visitors {
        app.state.config().client_ip_ping_rate_limit_per_minute as usize - 1
    } else {
        app.state.config().visitor_ping_rate_limit_per_minute as usize
    };
    // Another connection holds the database's write lock for the first pings: they are
    // answered anyway, since a ping never waits for the writer.
    let blocker = rusqlite::Connection::open(app.dir.path().join("test.sqlite3")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let early = tokio::time::timeout(
        Duration::from_secs(3),
        send_via_router(app, ping_request(OTHER_VISITOR, &[])),
    )
    .await
    .expect("a ping is answered while the writer is busy");
    assert_eq!(early.0, StatusCode::OK);
    blocker.execute_batch("ROLLBACK").unwrap();

    let mut tasks = Vec::new();
    let mut sent_batches = 0_u32;
    for n in 0..pings {
        let state = app.state.clone();
        let visitor = if distinct_visitors {
            format!("9a9a9a9a-0000-4000-8000-{n:012}")
        } else {
            VISITOR.to_owned()
        };
        tasks.push(tokio::spawn(async move {
            use tower::ServiceExt;
            let response = footpath_collector::router(state)
                .oneshot(ping_request(&visitor, &[]))
                .await
                .unwrap();
            let status = response.status();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            let code = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|body| body["code"].as_str().map(str::to_owned));
            (true, status, code)
        }));
        if n % (pings / batches as usize).max(1) == 0 {
            let state = app.state.clone();
            sent_batches += 1;
            let number = 1000 + sent_batches;
            // Half the batches from the pinging visitor itself.
            let visitor = [VISITOR, OTHER_VISITOR][usize::try_from(sent_batches % 2).unwrap()];
            tasks.push(tokio::spawn(async move {
                use tower::ServiceExt;
                let body = batch(visitor, T0, vec![record(number, "clicked", T0)]).to_string();
                let response = footpath_collector::router(state)
                    .oneshot(batch_request(body, "text/plain", Some(ORIGIN)))
                    .await
                    .unwrap();
                (false, response.status(), None)
            }));
        }
    }
    let mut ok_pings = 0;
    let mut refused = None;
    let mut batch_statuses = Vec::new();
    for task in tasks {
        let (is_ping, status, code) = task.await.unwrap();
        if !is_ping {
            batch_statuses.push(status);
        } else if status == StatusCode::OK {
            ok_pings += 1;
        } else {
            refused.get_or_insert((status, code));
        }
    }
    let sent_batches = batch_statuses.len();
    assert_eq!(sent_batches, batches as usize);
    assert!(
        batch_statuses
            .iter()
            .all(|status| *status == StatusCode::OK),
        "{batch_statuses:?}"
    );
    assert_eq!(ok_pings, limit, "pings within the limit are answered 200");
    // One more, through the checked path: the 429 matches the OpenAPI document.
    let visitor = if distinct_visitors {
        "9a9a9a9a-0000-4000-8000-ffffffffffff"
    } else {
        VISITOR
    };
    let last = send_via_router(app, ping_request(visitor, &[])).await;
    assert_eq!(refused.as_ref(), Some(&last));
    last
}

/// Slow bodies on `connections` connections, then a normal batch that must be
/// answered 200 while they stall; answers what the slow ones got.
async fn slow_bodies(app: &TestApp, connections: usize) -> (StatusCode, Option<String>) {
    let (address, stop) = start_server(app.state.clone()).await;
    let mut slow = Vec::new();
    for _ in 0..connections {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(
                format!(
                    "POST /sdk/v1/batch HTTP/1.1\r\nHost: c\r\nOrigin: {ORIGIN}\r\n\
                     Content-Type: text/plain\r\nContent-Length: 300\r\nConnection: close\r\n\r\n{{"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        slow.push(stream);
    }
    let body = one_event_batch().to_string();
    let normal = exchange(address, &raw_batch("", &body))
        .await
        .expect("the normal batch is answered");
    assert_eq!(parse_raw(&normal).0, StatusCode::OK, "{normal}");
    let mut answers = Vec::new();
    for mut stream in slow {
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
            .await
            .expect("the slow request is answered once its deadline passes")
            .unwrap();
        answers.push(parse_raw(&String::from_utf8_lossy(&response)));
    }
    let _ = stop.send(());
    assert!(
        answers.windows(2).all(|pair| pair[0] == pair[1]),
        "{answers:?}"
    );
    answers.remove(0)
}

/// `idle` idle connections fill the cap; the next one is closed without a response;
/// once the idle ones close, a normal batch is answered 200.
async fn connection_flood(app: &TestApp, idle: usize) -> Option<(StatusCode, Option<String>)> {
    let (address, stop) = start_server(app.state.clone()).await;
    let mut idle_connections = Vec::new();
    for _ in 0..idle {
        idle_connections.push(TcpStream::connect(address).await.unwrap());
    }
    let body = one_event_batch().to_string();
    let past_the_cap = exchange(address, &raw_batch("", &body))
        .await
        .map(|raw| parse_raw(&raw));
    drop(idle_connections);
    // The server notices the closed connections as it reads them: retry briefly.
    let mut recovered = None;
    for _ in 0..100 {
        if let Some(raw) = exchange(address, &raw_batch("", &body)).await {
            recovered = Some(parse_raw(&raw).0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(recovered, Some(StatusCode::OK), "normal traffic recovers");
    let _ = stop.send(());
    past_the_cap
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_their_documented_answer_and_store_only_what_they_should() {
    let cases = table();
    assert!(cases.len() >= 25, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let app = TestApp::with_config(case.config);
        for setup in &case.setup {
            app.post_batch(setup).await.ok_json();
        }
        let answer = run(&app, case.send).await;
        let matches = match (&case.expect, &answer) {
            (Expect::Closed, None) => true,
            (Expect::Status(status, code), Some((got, got_code))) => {
                let code = code.filter(|code| !code.is_empty());
                got == status && (code.is_none() || got_code.as_deref() == code)
            }
            _ => false,
        };
        if !matches {
            let expected = match case.expect {
                Expect::Closed => "closed without a response".to_owned(),
                Expect::Status(status, code) => format!("{status} {code:?}"),
            };
            failures.push(format!(
                "{}: expected {expected}, got {answer:?}",
                case.name
            ));
        }
        let db = rusqlite::Connection::open(app.dir.path().join("test.sqlite3")).unwrap();
        let stored = (count(&db, "events"), count(&db, "sessions"));
        if stored != case.stored {
            failures.push(format!(
                "{}: stored (events, sessions) {stored:?}, expected {:?}",
                case.name, case.stored
            ));
        } else if let Some(check) = case.check {
            check(&db);
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// A ping is written with the visitor's next batch, before its events choose their
/// session: no sweep needed to keep the session.
#[tokio::test]
async fn a_ping_is_written_with_the_visitors_next_batch() {
    let app = TestApp::new();
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![pageview(1, T0, "https://shop.example/")],
    ))
    .await
    .ok_json();
    app.clock.advance_ms(15 * MINUTE);
    assert_eq!(
        app.send(ping_request(VISITOR, &[])).await.status,
        StatusCode::OK
    );
    app.clock.advance_ms(15 * MINUTE);
    let later = T0 + 30 * MINUTE;
    app.post_batch(&batch(
        VISITOR,
        later,
        vec![pageview(2, later, "https://shop.example/b")],
    ))
    .await
    .ok_json();
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(session["eventCount"], json!(2), "{session:#}");
}

/// The short-id space of a deployment filled by sessions of the last 24 hours (here
/// directly in the table, over a space of 100 ids): new sessions are still created, and
/// their ids are unique among the sessions of the last hour.
#[tokio::test]
async fn short_ids_never_run_out() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sdk")).unwrap();
    let config = test_config(dir.path());
    let limits = SessionLimits {
        short_id_space: (100_000, 100_099),
        ..SessionLimits::default()
    };
    let store = SqliteStore::open_with(
        &config.database_path,
        IngestQueueSettings::default(),
        limits,
    )
    .unwrap();
    let clock = Arc::new(footpath_collector::clock::ManualClock::new(T0));
    let state = AppState::with_store(config.clone(), clock.clone(), Arc::new(store)).unwrap();
    let app = TestApp { clock, state, dir };
    {
        let db = rusqlite::Connection::open(&config.database_path).unwrap();
        for n in 0..100 {
            db.execute(
                "INSERT INTO sessions (id, short_id, deployment_id, visitor_id, first_ms, last_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                rusqlite::params![
                    format!("00000000-0000-7000-8000-{n:012}"),
                    (100_000 + n).to_string(),
                    DEPLOYMENT,
                    format!("11111111-0000-4000-8000-{n:012}"),
                    T0 - 2 * 60 * MINUTE,
                ],
            )
            .unwrap();
        }
    }
    let mut short_ids = std::collections::BTreeSet::new();
    for n in 0..30_u32 {
        let visitor = format!("22222222-0000-4000-8000-{n:012}");
        let response = app
            .post_batch(&batch(&visitor, T0, vec![record(n + 1, "clicked", T0)]))
            .await;
        assert_eq!(response.status, StatusCode::OK, "session {n}");
        let session = app.only_session_of(&visitor).await;
        let short_id = session["shortId"].as_str().unwrap().to_owned();
        let number: u32 = short_id.parse().unwrap();
        assert!((100_000..=100_099).contains(&number), "{short_id}");
        assert!(short_ids.insert(short_id.clone()), "{short_id} given twice");
    }
}

/// One host cannot take every connection: past `max_connections_per_address` its new
/// connections are closed without an answer, while another address is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    let app = TestApp::with_config(|config| config.max_connections_per_address = 2);
    let (address, stop) = start_server(app.state.clone()).await;
    let idle = [
        TcpStream::connect(address).await.unwrap(),
        TcpStream::connect(address).await.unwrap(),
    ];
    let body = one_event_batch().to_string();
    assert_eq!(
        exchange(address, &raw_batch("", &body)).await,
        None,
        "a third from 127.0.0.1"
    );

    // 127.0.0.2 is another address on the loopback interface.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(address).await.unwrap();
    other.write_all(&raw_batch("", &body)).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), other.read_to_end(&mut response))
        .await
        .expect("the server answers")
        .unwrap();
    assert_eq!(
        parse_raw(&String::from_utf8_lossy(&response)).0,
        StatusCode::OK
    );

    // Once the first address's connections close, it is served again.
    drop(idle);
    let mut recovered = None;
    for _ in 0..100 {
        if let Some(raw) = exchange(address, &raw_batch("", &body)).await {
            recovered = Some(parse_raw(&raw).0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(recovered, Some(StatusCode::OK));
    let _ = stop.send(());
}
