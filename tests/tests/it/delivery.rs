//! Delivery guarantees of the browser SDK: events survive a collector that is down, a
//! browser that is offline, the page they were recorded on, and other open tabs of the
//! same site, and arrive exactly once; `record`/`identify` callbacks are called
//! exactly once. (The queue bound is tested in the SDK's browser test.)
//!
//! The collector stores one copy of each event id whatever it is sent, so "exactly
//! once" here means: every event is stored, none twice — and the SDK kept each event's
//! id through retries and reloads. Whether tabs send the same events twice is
//! observed at the wire, in the pages.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use fantoccini::wd::WindowHandle;
use serde_json::{json, Value};

use crate::support::{event_names, wait_until, Browser, Env, EnvOptions, PATIENCE};

/// Retries back off to tens of seconds while the collector is down.
const DELIVERY_PATIENCE: Duration = Duration::from_secs(90);

/// How many times each event name is stored for the visitor, over all their sessions.
async fn stored_names(env: &Env, visitor: &str) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for session in env.sessions_of(visitor).await? {
        let id = session["id"].as_str().context("a session without id")?;
        for name in event_names(&env.events_of(id).await?) {
            *counts.entry(name).or_default() += 1;
        }
    }
    Ok(counts)
}

/// Waits until every expected event name is stored, then checks that each is stored
/// exactly as many times as expected and that nothing else is.
async fn expect_stored(env: &Env, visitor: &str, expected: &[(&str, usize)]) -> anyhow::Result<()> {
    let expected: BTreeMap<String, usize> = expected
        .iter()
        .map(|(name, n)| ((*name).to_owned(), *n))
        .collect();
    let start = Instant::now();
    loop {
        let stored = stored_names(env, visitor).await?;
        if expected
            .iter()
            .all(|(name, n)| stored.get(name).is_some_and(|m| m >= n))
        {
            assert_eq!(stored, expected, "every event exactly once");
            return Ok(());
        }
        if start.elapsed() > DELIVERY_PATIENCE {
            bail!("events not delivered within {DELIVERY_PATIENCE:?}: stored {stored:?}, expected {expected:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn run(browser: &Browser, script: &str) -> anyhow::Result<Value> {
    browser
        .client
        .execute(script, vec![])
        .await
        .with_context(|| format!("run {script}"))
}

async fn record(browser: &Browser, name: &str) -> anyhow::Result<()> {
    browser
        .client
        .execute("ac('record', arguments[0]);", vec![json!(name)])
        .await?;
    Ok(())
}

/// Waits until the current page's SDK holds `n` unsent events.
async fn wait_queued(browser: &Browser, n: u64) -> anyhow::Result<()> {
    let last = std::sync::Mutex::new(0);
    let last_ref = &last;
    let result = wait_until(&format!("{n} queued events"), PATIENCE, || async move {
        let queued = browser.sdk_state().await?.queued;
        *last_ref.lock().unwrap() = queued;
        Ok((queued == n).then_some(()))
    })
    .await;
    let last = *last.lock().unwrap();
    result.with_context(|| format!("the page holds {last} events"))
}

/// Loads the first page while the collector is up, so that the browser has the SDK in
/// its cache (`max-age=300`) for pages loaded while the collector is down; waits for
/// its page view. Returns the visitor id.
async fn first_page(env: &Env, browser: &Browser) -> anyhow::Result<String> {
    browser.goto(&env.demo("/")).await?;
    let visitor = browser.sdk_state().await?.visitor_id;
    expect_stored(env, &visitor, &[("page_viewed", 1)]).await?;
    Ok(visitor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_recorded_while_the_collector_is_down_arrive_once_it_is_back() -> anyhow::Result<()>
{
    let mut env = Env::start(EnvOptions::default()).await?;
    let browser = Browser::start().await?;
    let result = collector_down(&mut env, &browser).await;
    browser.finish(result).await
}

async fn collector_down(env: &mut Env, browser: &Browser) -> anyhow::Result<()> {
    let visitor = first_page(env, browser).await?;
    env.stop_collector().await?;
    for (i, path) in ["/products", "/signin", "/checkout"]
        .into_iter()
        .enumerate()
    {
        browser.goto(&env.demo(path)).await?;
        browser.sdk_state().await?;
        record(browser, &format!("down_{i}")).await?;
        // Each page adopts the stored events of the pages before it: a page view and
        // an event per page.
        wait_queued(browser, 2 * (i as u64 + 1)).await?;
    }
    env.start_collector().await?;
    expect_stored(
        env,
        &visitor,
        &[
            ("page_viewed", 4),
            ("down_0", 1),
            ("down_1", 1),
            ("down_2", 1),
        ],
    )
    .await?;
    wait_queued(browser, 0).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_recorded_offline_arrive_when_the_browser_is_back_online() -> anyhow::Result<()> {
    let env = Env::start(EnvOptions::default()).await?;
    let browser = Browser::start().await?;
    let result = offline(&env, &browser).await;
    browser.finish(result).await
}

fn network_conditions(offline: bool) -> Value {
    json!({"offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
}

async fn offline(env: &Env, browser: &Browser) -> anyhow::Result<()> {
    let visitor = first_page(env, browser).await?;
    browser.cdp("Network.enable", json!({})).await?;
    browser
        .cdp("Network.emulateNetworkConditions", network_conditions(true))
        .await?;
    assert_eq!(
        run(browser, "return navigator.onLine;").await?,
        json!(false)
    );
    // A fetch that fails shows that the page really is offline.
    let fetched = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1]; fetch(arguments[0]).then(() => done('fetched'), () => done('failed'));",
            vec![json!(format!("{}/healthz", env.collector_url))],
        )
        .await?;
    assert_eq!(fetched, json!("failed"));
    for name in ["offline_a", "offline_b", "offline_c"] {
        record(browser, name).await?;
    }
    wait_queued(browser, 3).await?;
    browser
        .cdp(
            "Network.emulateNetworkConditions",
            network_conditions(false),
        )
        .await?;
    expect_stored(
        env,
        &visitor,
        &[
            ("page_viewed", 1),
            ("offline_a", 1),
            ("offline_b", 1),
            ("offline_c", 1),
        ],
    )
    .await?;
    wait_queued(browser, 0).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_recorded_just_before_leaving_the_site_is_delivered() -> anyhow::Result<()> {
    let env = Env::start(EnvOptions::default()).await?;
    let browser = Browser::start().await?;
    let result = leaving(&env, &browser).await;
    browser.finish(result).await
}

async fn leaving(env: &Env, browser: &Browser) -> anyhow::Result<()> {
    let visitor = first_page(env, browser).await?;
    // Queued with a send due in a second, then the page goes at once, to a page that
    // is not the site's, so that no next page sends it: only the beacon can.
    run(
        browser,
        "ac('record', 'left_in_a_hurry'); location.href = 'about:blank';",
    )
    .await?;
    expect_stored(env, &visitor, &[("page_viewed", 1), ("left_in_a_hurry", 1)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_recorded_in_the_same_task_as_a_navigation_is_sent_by_the_next_page(
) -> anyhow::Result<()> {
    let env = Env::start(EnvOptions::default()).await?;
    let browser = Browser::start().await?;
    let result = same_task_navigation(&env, &browser).await;
    browser.finish(result).await
}

/// The SDK saves its queue once per task, at the end of it: an event recorded in the
/// task that navigates must still be saved, and the next page must send it. This page
/// can send nothing (its requests hang and the browser refuses its beacons), so only
/// the saved queue can deliver the event.
async fn same_task_navigation(env: &Env, browser: &Browser) -> anyhow::Result<()> {
    let visitor = first_page(env, browser).await?;
    run(
        browser,
        "navigator.sendBeacon = () => false; \
         window.fetch = () => new Promise(() => {}); \
         ac('record', 'recorded_while_leaving'); \
         location.href = '/products';",
    )
    .await?;
    expect_stored(
        env,
        &visitor,
        &[("page_viewed", 2), ("recorded_while_leaving", 1)],
    )
    .await
}

/// Records, in the page, the ids of the events in every request body it sends
/// (fetch and beacon), in `window.__wire`.
const WIRE_LOG: &str = r#"
window.__wire = [];
const log = (body) => {
  for (const m of String(body).matchAll(/\{"id":"([0-9a-f-]{36})","kind"/g)) window.__wire.push(m[1]);
};
const realFetch = window.fetch;
window.fetch = function (url, init) {
  if (init && init.body) log(init.body);
  return realFetch.apply(this, arguments);
};
const realBeacon = navigator.sendBeacon.bind(navigator);
navigator.sendBeacon = (url, body) => {
  log(body);
  return realBeacon(url, body);
};
"#;

async fn open_tab(browser: &Browser) -> anyhow::Result<WindowHandle> {
    let tab = browser.client.new_window(true).await?.handle;
    browser.client.switch_to_window(tab.clone()).await?;
    Ok(tab)
}

async fn wire(browser: &Browser, tab: &WindowHandle) -> anyhow::Result<Vec<String>> {
    browser.client.switch_to_window(tab.clone()).await?;
    let ids = run(browser, "return window.__wire;").await?;
    Ok(serde_json::from_value(ids)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_do_not_send_the_same_stored_events() -> anyhow::Result<()> {
    let mut env = Env::start(EnvOptions::default()).await?;
    let browser = Browser::start().await?;
    let result = two_tabs(&mut env, &browser).await;
    browser.finish(result).await
}

async fn two_tabs(env: &mut Env, browser: &Browser) -> anyhow::Result<()> {
    let visitor = first_page(env, browser).await?;
    env.stop_collector().await?;
    browser.goto(&env.demo("/products")).await?;
    browser.sdk_state().await?;
    for i in 1..=5 {
        record(browser, &format!("stored_{i}")).await?;
    }
    wait_queued(browser, 6).await?;
    // The page is gone; its six events wait in localStorage.
    browser.goto("about:blank").await?;

    // Tab B adopts them; tab C, opened next, must not: B is alive and holds them.
    let tab_b = open_tab(browser).await?;
    browser.goto(&env.demo("/signin")).await?;
    browser.sdk_state().await?;
    run(browser, WIRE_LOG).await?;
    wait_queued(browser, 7).await?;
    let tab_c = open_tab(browser).await?;
    browser.goto(&env.demo("/checkout")).await?;
    browser.sdk_state().await?;
    run(browser, WIRE_LOG).await?;
    wait_queued(browser, 1)
        .await
        .context("tab C took tab B's events")?;

    env.start_collector().await?;
    let stored = [
        ("page_viewed", 4),
        ("stored_1", 1),
        ("stored_2", 1),
        ("stored_3", 1),
        ("stored_4", 1),
        ("stored_5", 1),
    ];
    expect_stored(env, &visitor, &stored).await?;
    let b = wire(browser, &tab_b).await?;
    let c = wire(browser, &tab_c).await?;
    assert!(b.len() >= 7, "tab B sent its events: {b:?}");
    let both: Vec<&String> = b.iter().filter(|id| c.contains(id)).collect();
    assert!(
        both.is_empty(),
        "sent by both tabs: {both:?}\nB: {b:?}\nC: {c:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_called_exactly_once() -> anyhow::Result<()> {
    // The collector rejects events with more than two attributes; the SDK allows 50.
    let mut env = Env::start(EnvOptions {
        configure: Some(|config| config.max_attributes_per_event = 2),
        ..EnvOptions::default()
    })
    .await?;
    let browser = Browser::start().await?;
    let result = callbacks(&mut env, &browser).await;
    browser.finish(result).await
}

/// The page's callback calls so far: label → what each call said.
async fn answers(browser: &Browser) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    Ok(serde_json::from_value(
        run(browser, "return window.__answers;").await?,
    )?)
}

async fn wait_answer(browser: &Browser, label: &str) -> anyhow::Result<()> {
    wait_until(
        &format!("the {label} callback"),
        DELIVERY_PATIENCE,
        || async move { Ok(answers(browser).await?.contains_key(label).then_some(())) },
    )
    .await
}

async fn callbacks(env: &mut Env, browser: &Browser) -> anyhow::Result<()> {
    let visitor = first_page(env, browser).await?;
    run(
        browser,
        r#"
        window.__answers = {};
        window.__answer = (label) => (error, result) =>
          (window.__answers[label] = window.__answers[label] || []).push(error ? 'error: ' + error.message : 'ok: ' + result.id);
        window.__failed = 0;
        const realFetch = window.fetch;
        window.fetch = function () {
          return realFetch.apply(this, arguments).catch((e) => { window.__failed++; throw e; });
        };
        ac('record', 'accepted_one', { a: 1 }, __answer('accepted'));
        ac('record', 'rejected_one', { a: 1, b: 2, c: 3 }, __answer('rejected'));
        ac('record', 'bad name', __answer('refused'));
        ac('identify', 'ada', { plan: 'pro' }, __answer('identified'));
        "#,
    )
    .await?;
    // Refused at the call: answered at once.
    assert_eq!(
        answers(browser).await?.get("refused").map(Vec::len),
        Some(1)
    );
    for label in ["accepted", "rejected", "identified"] {
        wait_answer(browser, label).await?;
    }

    // A send that fails, then succeeds.
    env.stop_collector().await?;
    run(
        browser,
        "ac('record', 'after_retry', {}, __answer('retried'));",
    )
    .await?;
    wait_until("a failed send", PATIENCE, || async move {
        Ok((run(browser, "return window.__failed;").await? != json!(0)).then_some(()))
    })
    .await?;
    env.start_collector().await?;
    wait_answer(browser, "retried").await?;
    // Sends keep the order of events: once the last one is answered, no earlier
    // callback can still be called.
    run(browser, "ac('record', 'last_one', {}, __answer('last'));").await?;
    wait_answer(browser, "last").await?;

    let answers = answers(browser).await?;
    for (label, calls) in &answers {
        assert_eq!(calls.len(), 1, "{label} called {calls:?}");
    }
    assert!(answers["accepted"][0].starts_with("ok: "), "{answers:?}");
    assert!(answers["identified"][0].starts_with("ok: "), "{answers:?}");
    assert!(answers["retried"][0].starts_with("ok: "), "{answers:?}");
    assert!(answers["rejected"][0].contains("attributes"), "{answers:?}");
    assert!(answers["refused"][0].contains("bad name"), "{answers:?}");
    assert_eq!(answers.len(), 6, "{answers:?}");
    expect_stored(
        env,
        &visitor,
        &[
            ("page_viewed", 1),
            ("accepted_one", 1),
            ("identified", 1),
            ("after_retry", 1),
            ("last_one", 1),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_with_the_sdk_stay_in_the_back_forward_cache() -> anyhow::Result<()> {
    let env = Env::start(EnvOptions::default()).await?;
    let browser = Browser::start().await?;
    let result = back_forward_cache(&env, &browser).await;
    browser.finish(result).await
}

/// A page with the SDK can be kept in the back/forward cache: no `unload` handler, and
/// the Web Locks go on `pagehide` (some Chrome versions keep no page holding one; the
/// Chromium these tests run keeps it either way, so this does not prove the release).
async fn back_forward_cache(env: &Env, browser: &Browser) -> anyhow::Result<()> {
    first_page(env, browser).await?;
    wait_queued(browser, 0).await?;
    run(browser, "window.__still_here = true;").await?;
    browser.goto(&env.demo("/products")).await?;
    browser.sdk_state().await?;
    browser.client.back().await?;
    browser.sdk_state().await?;
    let restored = run(
        browser,
        "return [window.__still_here === true, JSON.stringify(performance.getEntriesByType('navigation')[0].notRestoredReasons)];",
    )
    .await?;
    assert_eq!(
        restored[0],
        json!(true),
        "the page was not restored from the cache: {restored}"
    );
    Ok(())
}
