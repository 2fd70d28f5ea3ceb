//! `sdk`: what the browser SDK costs the page that embeds it, measured as a site would
//! see it. A headless Chromium (through chromedriver, as the end-to-end tests drive it)
//! opens a cross-origin isolated page (COOP + COEP, so that `performance.now()` has its
//! 5 µs resolution) served by the bench itself, whose snippet loads the SDK from the
//! release collector on loopback. The page then calls `ac('record', name, {two
//! attributes})` `--calls` times, timed per 100 calls with a macrotask yield
//! (`setTimeout(0)`) between batches, and the bench waits until the collector has
//! stored them.
//!
//! Printed: `record` median and p99 (µs per call, over the batches of 100), the first
//! batch of a fresh page, the main thread's busy time per call including the work the
//! SDK deferred (Chrome DevTools Protocol `Performance.getMetrics` `TaskDuration`, from
//! before the calls until the queue is empty), events stored of those recorded,
//! requests per 100 events and request body bytes per event (counted in the page by
//! wrapping `fetch` and `sendBeacon`), ready time (script insertion to the `ready`
//! event) and the JavaScript heap after the calls. Then the same loop with a refused
//! call (`ac('record', 'bad name')`, which logs a `console.error` each time), to show
//! that a page misusing the SDK in a loop is slowed, not frozen.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde_json::{json, Value};

use crate::{free_address, start_collector, API_TOKEN};

const DEPLOYMENT: &str = "sdkbench";
const EVENT_NAME: &str = "bench_recorded";
/// How long the bench waits for anything the browser or the collector should do.
const PATIENCE: Duration = Duration::from_secs(300);

/// The page: it counts what the SDK sends (installed before the snippet), notes when
/// the snippet inserts the script and when the SDK says `ready`, then runs the snippet.
/// `COLLECTOR` is replaced with the collector's URL.
const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SDK bench</title>
<script>
window.__wire = { requests: 0, beacons: 0, bytes: 0, waited: 0 };
(function () {
  const size = (body) => body == null ? 0 : typeof body == 'string' ? new TextEncoder().encode(body).length
    : body.size !== undefined ? body.size : body.byteLength || 0;
  const realFetch = window.fetch;
  window.fetch = function (url, init) {
    if (String(url).indexOf('/sdk/v1/batch') < 0) return realFetch.apply(this, arguments);
    const wire = window.__wire;
    wire.requests++;
    wire.bytes += size(init && init.body);
    const sent = performance.now();
    const done = () => { wire.waited += performance.now() - sent; };
    const answer = realFetch.apply(this, arguments);
    answer.then(done, done);
    return answer;
  };
  const realBeacon = navigator.sendBeacon.bind(navigator);
  navigator.sendBeacon = function (url, body) {
    window.__wire.beacons++;
    window.__wire.bytes += size(body);
    return realBeacon(url, body);
  };
})();
window.__inserted = performance.now();
(function (w, d, tag, src, name) {
  w._footpathSdk = name;
  w[name] = w[name] || function () { (w[name].q = w[name].q || []).push(arguments); };
  w[name].l = +new Date();
  var script = d.createElement(tag);
  var first = d.getElementsByTagName(tag)[0];
  script.async = 1;
  script.src = src;
  first.parentNode.insertBefore(script, first);
})(window, document, 'script', 'COLLECTOR/sdk/footpath.js', 'ac');
ac('on', 'ready', function () { window.__ready = performance.now() - window.__inserted; });
ac('init', 'sdkbench', { collectorUrl: 'COLLECTOR' });
</script></head><body><p>SDK bench</p></body></html>
"#;

/// Runs `calls` calls of `call` (a JavaScript expression using `b`, the batch, and
/// `i`, the call within it) in batches of 100, each timed, with a macrotask between
/// batches; leaves the µs per call of each batch in `window.__batches` and sets
/// `window.__done`.
fn loop_script(calls: usize, call: &str) -> String {
    format!(
        "window.__batches = []; window.__done = false;
        (async () => {{
          for (let b = 0; b < {batches}; b++) {{
            const start = performance.now();
            for (let i = 0; i < 100; i++) {call};
            window.__batches.push((performance.now() - start) * 1000 / 100);
            await new Promise((resolve) => setTimeout(resolve, 0));
          }}
          window.__done = true;
        }})();",
        batches = calls / 100
    )
}

/// Serves [`PAGE`] at `/` with the headers that make it cross-origin isolated.
async fn serve_page(collector: String) -> anyhow::Result<SocketAddr> {
    use axum::http::header::{HeaderName, CONTENT_TYPE};
    let page = PAGE.replace("COLLECTOR", &collector);
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move {
                (
                    [
                        (CONTENT_TYPE, "text/html; charset=utf-8"),
                        (
                            HeaderName::from_static("cross-origin-opener-policy"),
                            "same-origin",
                        ),
                        (
                            HeaderName::from_static("cross-origin-embedder-policy"),
                            "require-corp",
                        ),
                    ],
                    page,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("the bench page's server stopped: {error}");
        }
    });
    Ok(address)
}

fn write_config(
    dir: &Path,
    database: &Path,
    sdk_dir: &Path,
    origin: &str,
) -> anyhow::Result<PathBuf> {
    let path = dir.join("sdk-bench.toml");
    // One visitor sends 10,000 events within seconds: the per-visitor and per-address
    // rate limits (which would refuse most of them, by design) are off, so that what is
    // measured is the SDK and a collector that accepts everything it is sent.
    let text = format!(
        "database_path = {database:?}\nsdk_dir = {sdk_dir:?}\n\
         visitor_rate_limit_events_per_minute = 0\nclient_ip_rate_limit_events_per_minute = 0\n\
         max_events_per_session = 100000\n\
         api_tokens = [\"{API_TOKEN}\"]\n\
         [[deployments]]\nid = \"{DEPLOYMENT}\"\nallowed_origins = [\"{origin}\"]\n"
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

/// chromedriver and its Chromium, ended (the whole process group) on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let pid = self.child.id();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

async fn start_browser(profile: &Path) -> anyhow::Result<(Driver, Client, String)> {
    use std::os::unix::process::CommandExt;
    let chromedriver =
        std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned());
    let chromium = std::env::var("CHROME_BIN").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    let port = free_address()?.port();
    let child = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {chromedriver} (set CHROMEDRIVER)"))?;
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = async {
            let status: Value = http
                .get(format!("{}/status", driver.url))
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(status["value"]["ready"] == json!(true))
        };
        if ready.await.unwrap_or(false) {
            break;
        }
        if Instant::now() > deadline {
            bail!("chromedriver did not answer /status");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/session", driver.url))
        .json(&json!({"capabilities": {"alwaysMatch": capabilities}}))
        .send()
        .await
        .context("cannot open a WebDriver session")?
        .json()
        .await?;
    let session = created["value"]["sessionId"]
        .as_str()
        .ok_or_else(|| anyhow!("no WebDriver session: {created}"))?
        .to_owned();
    let client = Client {
        http,
        session_url: format!("{}/session/{session}", driver.url),
    };
    Ok((driver, client, session))
}

/// A WebDriver session spoken to in plain HTTP (W3C WebDriver): the three commands the
/// bench needs. fantoccini, which the end-to-end tests use as a dev-dependency, would
/// bring an MPL-2.0 crate (`webdriver`) into a binary of the workspace.
struct Client {
    http: reqwest::Client,
    session_url: String,
}

impl Client {
    async fn command(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}/{path}", self.session_url))
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let answer: Value = response.json().await?;
        if !status.is_success() {
            bail!("WebDriver {path}: {status}: {answer}");
        }
        Ok(answer["value"].clone())
    }

    async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.command("url", json!({ "url": url })).await.map(drop)
    }

    async fn execute(&self, script: &str) -> anyhow::Result<Value> {
        self.command("execute/sync", json!({ "script": script, "args": [] }))
            .await
    }

    async fn close(&self) {
        let _ = self.http.delete(&self.session_url).send().await;
    }
}

/// One Chrome DevTools Protocol command on the current tab, through chromedriver.
async fn cdp(
    driver: &Driver,
    session: &str,
    command: &str,
    params: Value,
) -> anyhow::Result<Value> {
    let response = reqwest::Client::new()
        .post(format!("{}/session/{session}/goog/cdp/execute", driver.url))
        .json(&json!({"cmd": command, "params": params}))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("CDP {command}: {status}: {body}");
    }
    Ok(body["value"].clone())
}

/// `Performance.getMetrics` as name → value.
async fn metric(driver: &Driver, session: &str, name: &str) -> anyhow::Result<f64> {
    let metrics = cdp(driver, session, "Performance.getMetrics", json!({})).await?;
    metrics["metrics"]
        .as_array()
        .and_then(|list| list.iter().find(|m| m["name"] == json!(name)))
        .and_then(|m| m["value"].as_f64())
        .ok_or_else(|| anyhow!("no metric {name}: {metrics}"))
}

async fn eval(client: &Client, script: &str) -> anyhow::Result<Value> {
    client
        .execute(script)
        .await
        .with_context(|| format!("run {script}"))
}

/// Polls `script` every 100 ms until it returns something other than `null`/`false`.
async fn wait_for(client: &Client, what: &str, script: &str) -> anyhow::Result<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let value = eval(client, script).await?;
        if !value.is_null() && value != json!(false) {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs [`loop_script`] and returns the µs per call of each batch, in order.
async fn timed_loop(client: &Client, calls: usize, call: &str) -> anyhow::Result<Vec<f64>> {
    eval(client, &loop_script(calls, call)).await?;
    wait_for(client, "the calls to finish", "return window.__done;").await?;
    let batches = eval(client, "return window.__batches;").await?;
    Ok(serde_json::from_value(batches)?)
}

fn percentile(values: &[f64], fraction: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}

fn stored(database: &Path) -> anyhow::Result<i64> {
    let reader = rusqlite::Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    Ok(reader.query_row(
        "SELECT COUNT(*) FROM events WHERE name = ?1",
        [EVENT_NAME],
        |row| row.get(0),
    )?)
}

pub async fn sdk(calls: usize, sdk_dir: PathBuf, profile: bool) -> anyhow::Result<()> {
    if calls == 0 || !calls.is_multiple_of(100) {
        bail!("--calls must be a positive multiple of 100");
    }
    for file in ["footpath.js", "footpath.wasm"] {
        if !sdk_dir.join(file).is_file() {
            bail!(
                "{} is missing: run `cargo xtask sdk` first",
                sdk_dir.join(file).display()
            );
        }
    }
    let dir = tempfile::tempdir()?;
    let database = dir.path().join("sdk-bench.sqlite3");
    let collector_address = free_address()?;
    let collector_url = format!("http://{collector_address}");
    let page_address = serve_page(collector_url.clone()).await?;
    let page_url = format!("http://{page_address}");
    let config = write_config(dir.path(), &database, &sdk_dir, &page_url)?;
    let mut collector = start_collector(&config, collector_address).await?;
    let browser_profile = tempfile::tempdir()?;
    let (driver, client, session) = start_browser(browser_profile.path()).await?;
    let outcome = measure(
        &driver, &client, &session, &page_url, &database, calls, profile,
    )
    .await;
    client.close().await;
    drop(driver);
    collector.kill()?;
    collector.wait()?;
    outcome
}

async fn measure(
    driver: &Driver,
    client: &Client,
    session: &str,
    page_url: &str,
    database: &Path,
    calls: usize,
    profile: bool,
) -> anyhow::Result<()> {
    client.goto(page_url).await?;
    let ready = wait_for(
        client,
        "the SDK's ready event",
        "return window.__ready || null;",
    )
    .await?;
    let isolated = eval(client, "return window.crossOriginIsolated;").await?;
    if isolated != json!(true) {
        bail!("the page is not cross-origin isolated: timings would be 100 µs coarse");
    }
    // The page view is sent before the calls begin, so that the wire counts are the
    // calls' own.
    wait_for(
        client,
        "the page view to be sent",
        "return ac.state().queued === 0;",
    )
    .await?;
    eval(
        client,
        "window.__wire = { requests: 0, beacons: 0, bytes: 0, waited: 0 };",
    )
    .await?;
    cdp(driver, session, "Performance.enable", json!({})).await?;
    let busy_before = metric(driver, session, "TaskDuration").await?;

    if profile {
        cdp(driver, session, "Profiler.enable", json!({})).await?;
        cdp(
            driver,
            session,
            "Profiler.setSamplingInterval",
            json!({"interval": 100}),
        )
        .await?;
        cdp(driver, session, "Profiler.start", json!({})).await?;
    }
    let started = Instant::now();
    let call = format!("ac('record', '{EVENT_NAME}', {{ batch: b, index: i }})");
    let batches = timed_loop(client, calls, &call).await?;
    let calls_seconds = started.elapsed().as_secs_f64();
    let heap = metric(driver, session, "JSHeapUsedSize").await?;
    if profile {
        let stopped = cdp(driver, session, "Profiler.stop", json!({})).await?;
        print_profile(&stopped["profile"]);
    }

    // Delivered: stored by the collector. Waits until every call's event is stored, or
    // until nothing has moved for 30 s (events dropped by the SDK never come).
    let mut last = (stored(database)?, Instant::now());
    loop {
        let count = stored(database)?;
        if count >= i64::try_from(calls)? {
            break;
        }
        if count != last.0 {
            last = (count, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let delivered = stored(database)?;
    let drained_seconds = started.elapsed().as_secs_f64();
    // The queue is empty once every verdict is in: the deferred work is done.
    wait_for(
        client,
        "the SDK's queue to empty",
        "return ac.state().queued === 0;",
    )
    .await?;
    let busy_after = metric(driver, session, "TaskDuration").await?;
    let wire = eval(client, "return window.__wire;").await?;
    let requests =
        wire["requests"].as_f64().unwrap_or(0.0) + wire["beacons"].as_f64().unwrap_or(0.0);
    let bytes = wire["bytes"].as_f64().unwrap_or(0.0);

    #[allow(clippy::cast_precision_loss)]
    let per_event = |value: f64| value / delivered.max(1) as f64;
    #[allow(clippy::cast_precision_loss)]
    let calls_f = calls as f64;
    println!("calls: {calls} x ac('record', '{EVENT_NAME}', {{ batch, index }}), batches of 100, setTimeout(0) between");
    println!(
        "record median:               {:.1} µs per call",
        percentile(&batches, 0.5)
    );
    println!(
        "record p99:                  {:.1} µs per call",
        percentile(&batches, 0.99)
    );
    println!("first 100 calls:             {:.1} µs per call", batches[0]);
    println!(
        "main thread incl. deferred:  {:.1} µs per call (TaskDuration over {drained_seconds:.1} s)",
        (busy_after - busy_before) * 1e6 / calls_f
    );
    println!("calls took:                  {calls_seconds:.1} s (with the yields)");
    println!("events delivered:            {delivered} of {calls}");
    println!(
        "requests per 100 events:     {:.2} ({} fetch, {} beacon)",
        per_event(requests) * 100.0,
        wire["requests"],
        wire["beacons"]
    );
    println!(
        "request round trip:          {:.1} ms on average (fetch to answer headers)",
        wire["waited"].as_f64().unwrap_or(0.0) / wire["requests"].as_f64().unwrap_or(0.0).max(1.0)
    );
    println!(
        "wire bytes per event:        {:.1} (request bodies)",
        per_event(bytes)
    );
    println!(
        "ready time:                  {:.1} ms (script insertion to ready)",
        ready.as_f64().unwrap_or(f64::NAN)
    );
    #[allow(clippy::cast_precision_loss)]
    let heap_mib = heap / 1_048_576.0;
    println!("JS heap after the calls:     {heap_mib:.1} MiB");

    // A page that gets the call wrong in a loop: every call is refused and logged.
    let refused = timed_loop(client, calls, "ac('record', 'bad name')").await?;
    println!(
        "refused record (console.error each): median {:.1} µs, p99 {:.1} µs per call",
        percentile(&refused, 0.5),
        percentile(&refused, 0.99)
    );
    Ok(())
}

/// The functions the main thread spent its samples in during the calls (self time),
/// from a `Profiler.stop` profile; wasm functions show by name when the SDK was built
/// with its name section (`FOOTPATH_SDK_KEEP_NAMES=1 cargo xtask sdk`).
fn print_profile(profile: &Value) {
    use std::collections::HashMap;
    let mut names = HashMap::new();
    for node in profile["nodes"].as_array().into_iter().flatten() {
        let frame = &node["callFrame"];
        let url = frame["url"].as_str().unwrap_or("");
        let file = url.rsplit('/').next().unwrap_or("");
        names.insert(
            node["id"].as_i64().unwrap_or(-1),
            format!("{} {file}", frame["functionName"].as_str().unwrap_or("?")),
        );
    }
    let samples = profile["samples"].as_array().cloned().unwrap_or_default();
    let deltas = profile["timeDeltas"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut self_us: HashMap<&str, f64> = HashMap::new();
    let mut total = 0.0;
    // A sample's time is the delta to the next sample.
    for (i, sample) in samples.iter().enumerate() {
        let delta = deltas.get(i + 1).and_then(Value::as_f64).unwrap_or(0.0);
        let name = names
            .get(&sample.as_i64().unwrap_or(-1))
            .map_or("?", String::as_str);
        *self_us.entry(name).or_default() += delta;
        total += delta;
    }
    let mut rows: Vec<_> = self_us.into_iter().collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!(
        "profile during the calls (self time, top 25 of {:.0} ms):",
        total / 1000.0
    );
    for (name, us) in rows.iter().take(25) {
        println!(
            "  {:>9.1} ms {:>5.1}%  {name}",
            us / 1000.0,
            us * 100.0 / total.max(1.0)
        );
    }
}
