//! Promises of the plugin surface that the help centre (`journey_page.rs`) does not
//! show: `autotrackUrlChange`'s `onUrlChange(url)` hook, which takes the place of the
//! automatic page view of a History API navigation, and `load`'s `loadedCallback`,
//! called once the plugin runs (again on a second `load`), never for a load the SDK
//! refuses, which is reported to `on('error')` instead of thrown into the page.
//!
//! What the page's functions received is read back from window arrays; what was
//! recorded, from the collector's read API and from the request bodies the page sent.

use anyhow::{ensure, Context as _};
use serde_json::{json, Value};

use crate::desk::eval;
use crate::journey_page::{count, events_when, SPY};
use crate::support::{event_names, wait_until, Browser, Env, EnvOptions, PATIENCE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_url_change_hook_replaces_the_automatic_page_view() -> anyhow::Result<()> {
    let env = Env::start(EnvOptions::default()).await?;
    let browser = Browser::start().await?;
    let result = url_change_hook(&env, &browser).await;
    browser.finish(result).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loaded_callback_runs_once_the_plugin_runs_and_never_for_a_refused_load(
) -> anyhow::Result<()> {
    let env = Env::start(EnvOptions::default()).await?;
    let browser = Browser::start().await?;
    let result = loaded_callback(&env, &browser).await;
    browser.finish(result).await
}

/// Runs `script` in the page and waits until the array `window[name]` holds at least
/// `length` entries; returns it.
async fn wait_for_array(browser: &Browser, name: &str, length: usize) -> anyhow::Result<Value> {
    let last = std::sync::Mutex::new(Value::Null);
    wait_until(
        &format!("window.{name} to hold {length}"),
        PATIENCE,
        || async {
            let array = eval(browser, &format!("window.{name}")).await?;
            let done = array.as_array().is_some_and(|items| items.len() >= length);
            *last.lock().unwrap() = array.clone();
            Ok(done.then_some(array))
        },
    )
    .await
    .with_context(|| format!("window.{name} is {}", last.lock().unwrap()))
}

/// The `(kind, page URL)` of every event in the bodies the spy kept, in sending order.
async fn sent_events(browser: &Browser) -> anyhow::Result<Vec<(String, String)>> {
    let bodies = eval(browser, "window.__bodies").await?;
    let mut sent = Vec::new();
    for body in bodies.as_array().context("the spy's bodies")? {
        let body = body.as_str().context("a body as text")?;
        let batch: Value = serde_json::from_str(body)
            .with_context(|| format!("a body that is not a batch: {body}"))?;
        for event in batch["events"].as_array().context("a batch's events")? {
            sent.push((
                event["kind"].as_str().unwrap_or_default().to_owned(),
                event["page"]["url"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    Ok(sent)
}

/// The path of every stored page view, in order.
fn page_view_paths(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|event| event["webEvent"]["eventName"] == json!("page_viewed"))
        .filter_map(|event| event["webEvent"]["page"]["pathname"].as_str())
        .map(str::to_owned)
        .collect()
}

async fn url_change_hook(env: &Env, browser: &Browser) -> anyhow::Result<()> {
    browser
        .cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": SPY }),
        )
        .await?;
    browser.goto(&env.demo("/")).await?;
    let visitor_id = browser.sdk_state().await?.visitor_id;
    events_when(env, &visitor_id, "the page view on load", |events| {
        count(events, "page_viewed") == 1
    })
    .await?;

    // The hook only notes what it is given. The loaded callback says the history
    // methods are wrapped, so that the navigations below are seen.
    browser
        .client
        .execute(
            "window.__urls = [];
             window.__loaded = [];
             ac('load', 'autotrackUrlChange', {
               onUrlChange: function (url) { window.__urls.push(url); }
             }, function () { window.__loaded.push('autotrackUrlChange'); });",
            vec![],
        )
        .await?;
    wait_for_array(browser, "__loaded", 1).await?;
    // Two pushes, then back to the first: three URL changes, the last by `popstate`.
    browser
        .client
        .execute(
            "history.pushState({}, '', '/spa/first?step=1');
             history.pushState({}, '', '/spa/second');
             history.back();",
            vec![],
        )
        .await?;
    let urls = wait_for_array(browser, "__urls", 3).await?;
    let first = env.demo("/spa/first?step=1");
    let second = env.demo("/spa/second");
    assert_eq!(
        urls,
        json!([first, second, first]),
        "what the hook received"
    );

    // A page view of those navigations would have been queued when the hook was
    // called, so before this event: once it is stored, so would that page view be.
    browser
        .client
        .execute("ac('record', 'hook_checked');", vec![])
        .await?;
    let events = events_when(env, &visitor_id, "the event after the hook", |events| {
        count(events, "hook_checked") == 1
    })
    .await?;
    assert_eq!(
        page_view_paths(&events),
        ["/"],
        "only the page view on load: {:?}",
        event_names(&events)
    );
    let checked = events
        .iter()
        .find(|event| event["webEvent"]["eventName"] == json!("hook_checked"))
        .context("hook_checked")?;
    // The SDK saw the page at its new URL; only the page view was left to the hook.
    assert_eq!(checked["webEvent"]["page"]["pathname"], json!("/spa/first"));
    let sent = sent_events(browser).await?;
    let page_views: Vec<&str> = sent
        .iter()
        .filter(|(kind, _)| kind == "pageview")
        .map(|(_, url)| url.as_str())
        .collect();
    assert_eq!(page_views, [env.demo("/")], "page views sent: {sent:?}");

    // Without a hook, the same navigation records a page view, found the same way: the
    // checks above would see one.
    browser.goto(&env.demo("/products")).await?;
    browser
        .client
        .execute(
            "window.__loaded = [];
             ac('load', 'autotrackUrlChange', {}, function () { window.__loaded.push('plain'); });",
            vec![],
        )
        .await?;
    wait_for_array(browser, "__loaded", 1).await?;
    browser
        .client
        .execute(
            "history.pushState({}, '', '/spa/third');
             setTimeout(function () { ac('record', 'plain_checked'); }, 0);",
            vec![],
        )
        .await?;
    let events = events_when(
        env,
        &visitor_id,
        "the event after the navigation",
        |events| count(events, "plain_checked") == 1,
    )
    .await?;
    assert_eq!(
        page_view_paths(&events),
        ["/", "/products", "/spa/third"],
        "{:?}",
        event_names(&events)
    );
    Ok(())
}

async fn loaded_callback(env: &Env, browser: &Browser) -> anyhow::Result<()> {
    browser.goto(&env.demo("/")).await?;
    let visitor_id = browser.sdk_state().await?.visitor_id;
    // Each call is made inside try/catch, so that a throw into the page is seen. The
    // first callback clicks the button at once: if the plugin were not running yet,
    // that click would record nothing. The refused loads pass callbacks that must not
    // be called. The last load of the click plugin again only calls its callback: the
    // plugin is not set up a second time, or each click would count twice.
    browser
        .client
        .execute(
            "document.body.insertAdjacentHTML('beforeend', '<button id=\"plugin-button\">Try</button>');
             window.__calls = [];
             window.__errors = [];
             window.__thrown = [];
             ac('on', 'error', function (event) { window.__errors.push(event.message); });
             function attempt(args) {
               try { ac.apply(null, args); } catch (e) { window.__thrown.push(String(e)); }
             }
             attempt(['load', 'autotrackClick',
               { clickEvents: [{ selector: '#plugin-button', eventName: 'plugin_button_clicked' }] },
               function () {
                 window.__calls.push('click loaded');
                 document.getElementById('plugin-button').click();
               }]);
             attempt(['load', 'autotrackScrollDepth',
               { scrollDepthEvents: [{ percentage: 150, eventName: 'scrolled_far' }] },
               function () { window.__calls.push('refused options'); }]);
             attempt(['load', 'autotrackIdle',
               { idleEvents: [{ idleAfter: 60, eventName: 'went_idle' }] },
               'not a function']);
             attempt(['load', 'autotrackClick',
               { clickEvents: [{ selector: '#plugin-button', eventName: 'plugin_button_clicked' }] },
               function () { window.__calls.push('click loaded again'); }]);",
            vec![],
        )
        .await?;
    let calls = wait_for_array(browser, "__calls", 2).await?;
    let errors = wait_for_array(browser, "__errors", 2).await?;
    // The plugin module runs the calls in order, and reports a refusal before it takes
    // the next call: by now a callback of a refused load would have been called.
    assert_eq!(
        calls,
        json!(["click loaded", "click loaded again"]),
        "the callbacks called"
    );
    assert_eq!(
        errors,
        json!([
            "[footpath] ac('load'): scrollDepthEvents[0].percentage: must be above 0, at most 100",
            "[footpath] ac('load'): loadedCallback must be a function",
        ])
    );
    assert_eq!(eval(browser, "window.__thrown").await?, json!([]));

    // One click more, by the visitor: two clicks, each recorded once.
    browser.click("#plugin-button").await?;
    browser
        .client
        .execute("ac('record', 'clicks_checked');", vec![])
        .await?;
    let events = events_when(env, &visitor_id, "the clicks", |events| {
        count(events, "clicks_checked") == 1
    })
    .await?;
    ensure!(
        count(&events, "plugin_button_clicked") == 2,
        "two clicks, each once: {:?}",
        event_names(&events)
    );
    ensure!(
        count(&events, "scrolled_far") == 0 && count(&events, "went_idle") == 0,
        "refused plugins recorded: {:?}",
        event_names(&events)
    );
    Ok(())
}
