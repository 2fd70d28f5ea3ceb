//! Consent in a real browser against the real collector: a page that starts the SDK
//! with `consent: 'pending'` stores and sends nothing until the visitor answers; a
//! grant delivers what the page held, once; a denial removes Footpath's cookie and
//! stored queue, and the next page stays untracked.
//!
//! Absence can only be observed by waiting: the tests wait `QUIET` (longer than a
//! tracked page takes to send its page view here) before they look.

use std::time::Duration;

use anyhow::{ensure, Context as _};
use serde_json::{json, Value};

use crate::support::{event_names, wait_until, Browser, Env, EnvOptions, DEPLOYMENT, PATIENCE};

const QUIET: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_leaves_the_page_before_consent_and_held_events_arrive_once_after(
) -> anyhow::Result<()> {
    let env = Env::start(EnvOptions {
        init_options: Some("{consent: 'pending'}".to_owned()),
        ..EnvOptions::default()
    })
    .await?;
    let browser = Browser::start().await?;
    let result = consent_flow(&env, &browser).await;
    browser.finish(result).await
}

/// Footpath's cookies, storage keys and requests to the collector's ingest routes, as
/// the page sees them.
async fn footprint(browser: &Browser) -> anyhow::Result<Value> {
    Ok(browser
        .client
        .execute(
            "return {
                cookies: document.cookie.split(';').map(c => c.trim()).filter(c => c.startsWith('_footpath')),
                storage: Object.keys(localStorage).concat(Object.keys(sessionStorage))
                    .filter(k => k.startsWith('_footpath')),
                requests: performance.getEntriesByType('resource')
                    .filter(e => e.name.includes('/sdk/v1/')).length,
            };",
            vec![],
        )
        .await?)
}

async fn all_sessions(env: &Env) -> anyhow::Result<usize> {
    let listing = env
        .api_get(&format!(
            "/api/v2/journey/sessions?deploymentId={DEPLOYMENT}&pageSize=100"
        ))
        .await?;
    Ok(listing["entities"].as_array().map_or(0, Vec::len))
}

async fn consent_flow(env: &Env, browser: &Browser) -> anyhow::Result<()> {
    browser.goto(&env.demo("/")).await?;
    wait_until("the SDK to load", PATIENCE, || async {
        let loaded = browser
            .client
            .execute("return !!(window.ac && window.ac.loaded);", vec![])
            .await?;
        Ok((loaded == json!(true)).then_some(()))
    })
    .await?;
    browser
        .client
        .execute("ac('record', 'held_until_consent');", vec![])
        .await?;
    tokio::time::sleep(QUIET).await;
    let before = footprint(browser).await?;
    ensure!(
        before == json!({"cookies": [], "storage": [], "requests": 0}),
        "before consent the page stored or sent something: {before}"
    );
    ensure!(
        all_sessions(env).await? == 0,
        "the collector got a session before consent"
    );

    // The visitor accepts: the held page view and event arrive, each once.
    browser
        .client
        .execute("ac('consent', 'granted');", vec![])
        .await?;
    let visitor = browser.sdk_state().await?.visitor_id;
    let session_id = wait_until("the held events", PATIENCE, || async {
        let sessions = env.sessions_of(&visitor).await?;
        let Some(id) = sessions.first().and_then(|s| s["id"].as_str()) else {
            return Ok(None);
        };
        let names = event_names(&env.events_of(id).await?);
        Ok((names.len() >= 2).then(|| id.to_owned()))
    })
    .await?;
    tokio::time::sleep(QUIET).await;
    let mut names = event_names(&env.events_of(&session_id).await?);
    names.sort();
    ensure!(
        names == ["held_until_consent", "page_viewed"],
        "every held event exactly once: {names:?}"
    );
    let granted = footprint(browser).await?;
    let cookies = granted["cookies"].to_string();
    ensure!(
        cookies.contains(&visitor) && cookies.contains("_footpath_consent=granted"),
        "after the grant the visitor cookie is set and the answer remembered: {granted}"
    );

    // The visitor changes their mind: Footpath's cookie and storage go, the answer
    // stays (it holds no identifier), and the next page sends nothing.
    browser
        .client
        .execute("ac('consent', 'denied');", vec![])
        .await?;
    let denied = footprint(browser).await?;
    ensure!(
        denied["cookies"] == json!(["_footpath_consent=denied"]) && denied["storage"] == json!([]),
        "after the denial only the answer is left: {denied}"
    );
    browser.goto(&env.demo("/products")).await?;
    browser
        .client
        .execute("ac('record', 'after_denial');", vec![])
        .await
        .context("the page still takes calls")?;
    tokio::time::sleep(QUIET).await;
    let later = footprint(browser).await?;
    ensure!(
        later == json!({"cookies": ["_footpath_consent=denied"], "storage": [], "requests": 0}),
        "a later page of a visitor who declined stays untracked: {later}"
    );
    ensure!(all_sessions(env).await? == 1, "no session after the denial");
    let mut names = event_names(&env.events_of(&session_id).await?);
    names.sort();
    ensure!(
        names == ["held_until_consent", "page_viewed"],
        "nothing more arrived: {names:?}"
    );
    Ok(())
}
