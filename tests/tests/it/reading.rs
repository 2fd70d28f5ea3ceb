//! A visitor who reads one long page, scrolling now and then, keeps one web session:
//! interaction on the visible page keeps the session alive on both sides, the SDK's
//! (its shared session record) and the collector's (the Journey API's ping), without
//! an event. 25 minutes pass on the collector's manual clock and on the page's
//! `Date.now`, moved together, so that the test does not wait them out.

use serde_json::{json, Value};

use crate::support::{event_names, wait_until, Browser, Env, EnvOptions, PATIENCE};

const MINUTE_MS: i64 = 60_000;
const TIMEOUT_MS: i64 = 20 * MINUTE_MS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_one_page_for_25_minutes_keeps_one_session() -> anyhow::Result<()> {
    let env = Env::start(EnvOptions {
        manual_clock: true,
        ..EnvOptions::default()
    })
    .await?;
    let browser = Browser::start().await?;
    let result = scenario(&env, &browser).await;
    browser.finish(result).await
}

async fn run(browser: &Browser, script: &str) -> anyhow::Result<Value> {
    Ok(browser.client.execute(script, vec![]).await?)
}

async fn scenario(env: &Env, browser: &Browser) -> anyhow::Result<()> {
    let clock = env.clock.clone().expect("a manual clock");
    browser.goto(&env.demo("/")).await?;
    let visitor = browser.sdk_state().await?.visitor_id;
    let visitor = visitor.as_str();
    wait_until("the session with its page view", PATIENCE, || async move {
        let sessions = env.sessions_of(visitor).await?;
        Ok((sessions.len() == 1 && sessions[0]["pageviewCount"] == json!(1)).then_some(()))
    })
    .await?;
    // Read once the page view is stored: the SDK starts its session with the page
    // view, at the end of the task that called `init`, so earlier it may have none.
    let start = browser.sdk_state_with_session().await?;
    // The page's clock follows the collector's; the pings' answers are counted.
    run(
        browser,
        "window.__offset = 0; const realNow = Date.now; Date.now = () => realNow() + __offset; \
         window.__pings = []; const realFetch = fetch; \
         window.fetch = function (url) { \
           const answer = realFetch.apply(this, arguments); \
           if (String(url).includes('/ping?')) answer.then((r) => __pings.push(r.status), () => __pings.push(0)); \
           return answer; \
         };",
    )
    .await?;
    let pings = || async move {
        let pings: Vec<u16> = serde_json::from_value(run(browser, "return __pings;").await?)?;
        anyhow::Ok(pings)
    };
    // A scroll every 4 minutes. The SDK pings when the session's last activity is at
    // least 5 minutes old: at 8, 16 and 24 minutes. After each step the collector's
    // sweep runs, as its background task would: the session is never idle for it.
    for minute in (4..=24).step_by(4) {
        clock.advance_ms(4 * MINUTE_MS);
        run(
            browser,
            "__offset += 4 * 60000; dispatchEvent(new Event('scroll'));",
        )
        .await?;
        let expected = minute / 8;
        wait_until(
            &format!("{expected} pings at minute {minute}"),
            PATIENCE,
            || async move { Ok((pings().await?.len() == expected as usize).then_some(())) },
        )
        .await?;
        let ended = env
            .state
            .store()
            .close_idle_sessions(clock.now_ms(), TIMEOUT_MS)?;
        assert_eq!(ended, 0, "no session ended at minute {minute}");
    }
    assert_eq!(pings().await?, [200, 200, 200], "every ping answered");

    clock.advance_ms(MINUTE_MS);
    run(browser, "__offset += 60000; ac('record', 'still_reading');").await?;
    let sessions: Vec<Value> = wait_until("the event of minute 25", PATIENCE, || async move {
        let sessions = env.sessions_of(visitor).await?;
        let stored =
            sessions.iter().any(|s| s["eventCount"].as_u64() >= Some(2)) || sessions.len() > 1;
        Ok(stored.then_some(sessions))
    })
    .await?;
    assert_eq!(sessions.len(), 1, "one session: {sessions:#?}");
    let session_id = sessions[0]["id"].as_str().expect("id");
    assert_eq!(
        event_names(&env.events_of(session_id).await?),
        ["page_viewed", "still_reading"]
    );
    assert!(
        sessions[0].get("endedDate").is_none(),
        "still going: {:#}",
        sessions[0]
    );
    assert_eq!(
        browser.sdk_state().await?.session_id,
        start.session_id,
        "the SDK's session too"
    );
    Ok(())
}
