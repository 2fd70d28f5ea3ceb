//! Segments and outcomes end to end: the collector starts with the demo's definitions
//! (the `[[segments]]` and `[[outcomes]]` of `footpath.toml`); a visitor searches twice
//! on the demo shop and checks out; the session shows "Searched twice" and "Order
//! completed" through the API, and the agent's desk card shows both on the journey map
//! (the segment in its color, the positive outcome green) and in its sections.

use anyhow::{bail, Context as _};
use footpath_collector::config::Config;
use serde_json::{json, Value};

use crate::support::{wait_until, workspace_root, Browser, Env, EnvOptions, PATIENCE, TOKEN};

/// The ids `footpath.toml` gives the demo's definitions.
const SEARCHED_TWICE: &str = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";
const ORDER_COMPLETED: &str = "0d9e8f7a-6b5c-4d3e-9f2a-1b0c9d8e7f6a";

/// The demo configuration's definitions, as `cargo xtask run` starts with them.
fn demo_definitions(config: &mut Config) {
    let demo =
        Config::from_file(&workspace_root().join("footpath.toml")).expect("footpath.toml parses");
    config.segments = demo.segments;
    config.outcomes = demo.outcomes;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_searches_and_an_order_show_on_the_session_and_the_desk() -> anyhow::Result<()> {
    let env = Env::start(EnvOptions {
        configure: Some(demo_definitions),
        ..EnvOptions::default()
    })
    .await?;
    let visitor = Browser::start().await?;
    let agent = match Browser::start().await {
        Ok(agent) => agent,
        Err(error) => return visitor.finish(Err(error)).await,
    };
    let result = search_twice_and_order(&env, &visitor, &agent).await;
    eprintln!("agent's browser:");
    let result = agent.finish(result).await;
    eprintln!("visitor's browser:");
    visitor.finish(result).await
}

async fn eval(browser: &Browser, expression: &str) -> anyhow::Result<Value> {
    Ok(browser
        .client
        .execute(&format!("return ({expression});"), vec![])
        .await?)
}

async fn wait_for_element(browser: &Browser, css: &str) -> anyhow::Result<()> {
    wait_until(&format!("an element {css}"), PATIENCE, || async {
        let found = eval(
            browser,
            &format!("document.querySelector({}) !== null", json!(css)),
        )
        .await?;
        Ok((found == json!(true)).then_some(()))
    })
    .await
}

async fn wait_for_text_containing(browser: &Browser, css: &str, part: &str) -> anyhow::Result<()> {
    wait_until(&format!("{css} to contain {part:?}"), PATIENCE, || async {
        let text = browser.text_of(css).await.unwrap_or_default();
        Ok(text.contains(part).then_some(()))
    })
    .await
}

fn ids(session: &Value, list: &str, field: &str) -> Vec<String> {
    session[list]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item[field]["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn search_twice_and_order(
    env: &Env,
    visitor: &Browser,
    agent: &Browser,
) -> anyhow::Result<()> {
    // The definitions came from the configuration file.
    let segment = env
        .api_get(&format!("/api/v2/journey/segments/{SEARCHED_TWICE}"))
        .await?;
    assert_eq!(segment["displayName"], json!("Searched twice"));
    assert_eq!(segment["color"], json!("#1f77b4"));
    let outcome = env
        .api_get(&format!("/api/v2/journey/outcomes/{ORDER_COMPLETED}"))
        .await?;
    assert_eq!(
        outcome["associatedValueField"],
        json!({"dataType": "Number", "name": "value"})
    );

    // Two searches, then the cart and the order.
    visitor.goto(&env.demo("/")).await?;
    let visitor_id = visitor.sdk_state().await?.visitor_id;
    visitor.type_into("#home-search", "boots").await?;
    visitor
        .click("form[role=search] button[type=submit]")
        .await?;
    visitor
        .wait_for_text("#search-summary", "1 result(s) for \"boots\"")
        .await?;
    visitor.type_into("#search", "tent").await?;
    visitor.click("#search-button").await?;
    visitor
        .wait_for_text("#search-summary", "1 result(s) for \"tent\"")
        .await?;
    visitor.click("a.product-link").await?;
    visitor
        .wait_for_text("#product-name", "Summit two-person tent")
        .await?;
    visitor.click("#add-to-cart").await?;
    visitor
        .wait_for_text("#cart-message", "Added to your cart.")
        .await?;
    visitor.goto(&env.demo("/checkout")).await?;
    visitor.sdk_state().await?;
    visitor.click("#place-order").await?;
    wait_until("the order to be confirmed", PATIENCE, || async {
        let text = visitor.text_of("#order-message").await?;
        Ok(text.starts_with("Thank you!").then_some(()))
    })
    .await?;

    // The session, through the API.
    let session = wait_until(
        "the session to show the segment and the outcome",
        PATIENCE,
        || async {
            let sessions = env.sessions_of(&visitor_id).await?;
            let Some(session) = sessions.first() else {
                return Ok(None);
            };
            let done = ids(session, "segmentAssignments", "segment") == [SEARCHED_TWICE]
                && ids(session, "outcomeAchievements", "outcome") == [ORDER_COMPLETED];
            Ok(done.then(|| session.clone()))
        },
    )
    .await?;
    let session_id = session["id"].as_str().context("a session id")?.to_owned();
    let events = env.events_of(&session_id).await?;
    let assigned: Vec<&Value> = events
        .iter()
        .filter(|event| event["eventType"] == "SegmentAssignment")
        .collect();
    assert_eq!(assigned.len(), 1, "{events:#?}");
    assert_eq!(
        assigned[0]["segmentAssignmentEvent"]["segment"]["id"],
        json!(SEARCHED_TWICE)
    );
    let achieved: Vec<&Value> = events
        .iter()
        .filter(|event| event["eventType"] == "OutcomeAchieved")
        .collect();
    assert_eq!(achieved.len(), 1, "{events:#?}");
    let achieved = &achieved[0]["outcomeAchievedEvent"];
    assert_eq!(achieved["outcome"]["displayName"], json!("Order completed"));
    assert_eq!(
        achieved["associatedValue"].as_f64(),
        Some(249.0),
        "{achieved}"
    );
    // Each follows the event that completed it: the second search, the order.
    let position = |id: &Value| {
        events
            .iter()
            .position(|event| event["id"] == *id)
            .unwrap_or(usize::MAX)
    };
    let segment_at = position(&assigned[0]["id"]);
    assert_eq!(
        events[segment_at - 1]["webEvent"]["searchQuery"],
        json!("tent")
    );
    let outcome_at = events
        .iter()
        .position(|event| event["eventType"] == "OutcomeAchieved")
        .unwrap_or(0);
    assert_eq!(
        events[outcome_at - 1]["webEvent"]["eventName"],
        json!("order_completed")
    );

    // The agent's desk.
    agent.goto(&format!("{}/desk/", env.collector_url)).await?;
    agent.type_into("#token", TOKEN).await?;
    agent.click("#signin-button").await?;
    wait_until("the desk after sign-in", PATIENCE, || async {
        Ok((agent.client.current_url().await?.path() == "/desk/").then_some(()))
    })
    .await?;
    let item = format!(".session-item[data-customer-id=\"{visitor_id}\"]");
    wait_for_element(agent, &item).await?;
    agent.click(&item).await?;
    wait_for_text_containing(agent, "#card-segments", "Searched twice").await?;
    wait_for_text_containing(agent, "#card-outcomes", "Order completed").await?;
    let chip_color = eval(
        agent,
        "document.querySelector('#card-segments .chip-segment').getAttribute('data-color')",
    )
    .await?;
    assert_eq!(chip_color, json!("#1f77b4"));
    let outcome_chip = eval(
        agent,
        "document.querySelector('#card-outcomes .chip-outcome').getAttribute('data-positive')",
    )
    .await?;
    assert_eq!(outcome_chip, json!("true"));
    let outcome_value = agent.text_of("#card-outcomes .chip-value").await?;
    assert_eq!(outcome_value, "249");

    // The journey map: the segment in its color after the second search, the outcome
    // green after the order.
    let segment_item = ".journey-event[data-kind=\"segment\"]";
    let outcome_item = ".journey-event[data-kind=\"outcome\"]";
    wait_for_element(agent, segment_item).await?;
    wait_for_element(agent, outcome_item).await?;
    let segment_color = eval(
        agent,
        &format!("getComputedStyle(document.querySelector('{segment_item} svg')).color"),
    )
    .await?;
    assert_eq!(segment_color, json!("rgb(31, 119, 180)"), "#1f77b4");
    let outcome_color = eval(
        agent,
        &format!("getComputedStyle(document.querySelector('{outcome_item} svg')).color"),
    )
    .await?;
    assert_eq!(outcome_color, json!("rgb(26, 127, 55)"), "the desk's green");
    let segment_label = eval(
        agent,
        &format!("document.querySelector('{segment_item} .journey-label').textContent"),
    )
    .await?;
    assert_eq!(segment_label, json!("Searched twice"));
    let kinds = eval(
        agent,
        "Array.from(document.querySelectorAll('.journey-event')).map(function (li) { return li.getAttribute('data-kind'); })",
    )
    .await?;
    let kinds: Vec<String> = serde_json::from_value(kinds)?;
    let segment_index = kinds.iter().position(|kind| kind == "segment").unwrap_or(0);
    let outcome_index = kinds.iter().position(|kind| kind == "outcome").unwrap_or(0);
    if kinds.get(segment_index.wrapping_sub(1)).map(String::as_str) != Some("search")
        || outcome_index <= segment_index
    {
        bail!("the journey map's order is wrong: {kinds:?}");
    }
    let png = agent.client.screenshot().await?;
    let dir = workspace_root().join("target").join("e2e-screenshots");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("desk-segments.png"), png)?;
    Ok(())
}
