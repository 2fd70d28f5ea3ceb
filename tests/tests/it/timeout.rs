//! Activity after the session timeout lands in a new session.

use serde_json::{json, Value};

use crate::support::{event_names, wait_until, Browser, Env, EnvOptions, PATIENCE};

const MINUTE_MS: i64 = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_after_the_timeout_starts_a_new_session() -> anyhow::Result<()> {
    let env = Env::start(EnvOptions {
        manual_clock: true,
        ..EnvOptions::default()
    })
    .await?;
    let browser = Browser::start().await?;
    let result = scenario(&env, &browser).await;
    browser.finish(result).await
}

async fn scenario(env: &Env, browser: &Browser) -> anyhow::Result<()> {
    let clock = env.clock.clone().expect("a manual clock");

    browser.goto(&env.demo("/")).await?;
    let visitor = browser.sdk_state().await?.visitor_id;
    let visitor = visitor.as_str();
    wait_until(
        "the first session with its pageview",
        PATIENCE,
        || async move {
            let sessions = env.sessions_of(visitor).await?;
            Ok((sessions.len() == 1 && sessions[0]["pageviewCount"] == json!(1)).then_some(()))
        },
    )
    .await?;

    clock.advance_ms(21 * MINUTE_MS);
    browser.goto(&env.demo("/products")).await?;
    browser.sdk_state().await?;
    let sessions: Vec<Value> = wait_until("a second session", PATIENCE, || async move {
        let sessions = env.sessions_of(visitor).await?;
        Ok(
            (sessions.len() >= 2 && sessions[0]["pageviewCount"].as_u64() >= Some(1))
                .then_some(sessions),
        )
    })
    .await?;

    assert_eq!(sessions.len(), 2, "{sessions:#?}");
    // Newest first.
    let (second, first) = (&sessions[0], &sessions[1]);
    assert_eq!(first["pageviewCount"], json!(1), "{first:#}");
    assert_eq!(second["pageviewCount"], json!(1), "{second:#}");
    assert_eq!(first["lastPage"]["pathname"], json!("/"), "{first:#}");
    assert_eq!(
        second["lastPage"]["pathname"],
        json!("/products"),
        "{second:#}"
    );
    let first_id = first["id"].as_str().expect("id").to_owned();
    let second_id = second["id"].as_str().expect("id").to_owned();
    assert_eq!(
        event_names(&env.events_of(&first_id).await?),
        ["page_viewed"]
    );
    assert_eq!(
        event_names(&env.events_of(&second_id).await?),
        ["page_viewed"]
    );
    assert!(
        first.get("endedDate").is_none(),
        "not ended before the sweep: {first:#}"
    );

    let ended = env
        .state
        .store()
        .close_idle_sessions(clock.now_ms(), 20 * MINUTE_MS)?;
    assert_eq!(ended, 1, "exactly the first session is idle");
    let first = env.session(&first_id).await?;
    let second = env.session(&second_id).await?;
    assert!(
        first["endedDate"].is_string(),
        "the first session has ended: {first:#}"
    );
    assert!(
        second.get("endedDate").is_none(),
        "the second session goes on: {second:#}"
    );
    Ok(())
}
