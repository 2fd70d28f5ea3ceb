//! A visit of three pages with one search and one custom event.

use serde_json::{json, Value};

use crate::support::{event_names, wait_until, Browser, Env, EnvOptions, PATIENCE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pages_a_search_and_a_custom_event_make_one_session() -> anyhow::Result<()> {
    let env = Env::start(EnvOptions::default()).await?;
    let browser = Browser::start().await?;
    let result = scenario(&env, &browser).await;
    browser.finish(result).await
}

async fn scenario(env: &Env, browser: &Browser) -> anyhow::Result<()> {
    browser.goto(&env.demo("/")).await?;
    let home = browser.sdk_state().await?;

    // The search, through the home page's form.
    browser.type_into("#home-search", "boots").await?;
    browser
        .click("form[role=search] button[type=submit]")
        .await?;
    browser
        .wait_for_text("#search-summary", "1 result(s) for \"boots\"")
        .await?;
    let products = browser.sdk_state().await?;
    assert_eq!(
        products.visitor_id, home.visitor_id,
        "the visitor id survives navigation"
    );
    let current = browser.client.current_url().await?;
    assert_eq!(current.path(), "/products");
    assert_eq!(current.query(), Some("q=boots"));
    browser.screenshot("products-search").await?;

    browser.click("a.product-link").await?;
    browser
        .wait_for_text("#product-name", "Ridge hiking boots")
        .await?;
    let product = browser.sdk_state().await?;
    assert_eq!(product.visitor_id, home.visitor_id);
    browser.click("#add-to-cart").await?;
    // Set by the record callback once the collector accepted the event.
    browser
        .wait_for_text("#cart-message", "Added to your cart.")
        .await?;
    browser.screenshot("product-added-to-cart").await?;

    let visitor = home.visitor_id.as_str();
    // The pageviews of the first two pages left by beacon; wait until all four events
    // are stored, then check exact values.
    let session: Value = wait_until("the session to hold 4 events", PATIENCE, || async move {
        let sessions = env.sessions_of(visitor).await?;
        Ok(sessions
            .first()
            .filter(|session| session["eventCount"].as_u64().unwrap_or(0) >= 4)
            .cloned())
    })
    .await?;

    let sessions = env.sessions_of(visitor).await?;
    assert_eq!(
        sessions.len(),
        1,
        "exactly one session for the visitor: {sessions:#?}"
    );
    let session_id = session["id"].as_str().expect("session id").to_owned();
    let session = env.session(&session_id).await?;
    assert_eq!(session["customerId"], json!(visitor));
    assert_eq!(session["pageviewCount"], json!(3), "{session:#}");
    assert_eq!(session["eventCount"], json!(4), "{session:#}");
    assert_eq!(session["searchTerms"], json!(["boots"]), "{session:#}");
    assert_eq!(
        session["lastPage"]["pathname"],
        json!("/product"),
        "{session:#}"
    );
    assert_eq!(
        session["lastEvent"]["eventName"],
        json!("cart_added"),
        "{session:#}"
    );

    let events = env.events_of(&session_id).await?;
    assert_eq!(
        event_names(&events),
        ["page_viewed", "page_viewed", "page_viewed", "cart_added"],
        "{events:#?}"
    );
    let pathnames: Vec<&Value> = events
        .iter()
        .map(|event| &event["webEvent"]["page"]["pathname"])
        .collect();
    assert_eq!(
        pathnames,
        [
            &json!("/"),
            &json!("/products"),
            &json!("/product"),
            &json!("/product")
        ]
    );
    assert_eq!(events[1]["webEvent"]["searchQuery"], json!("boots"));
    let cart = &events[3]["webEvent"];
    assert_eq!(
        cart["attributes"],
        json!({
            "sku": {"dataType": "String", "value": "BOOT-1"},
            "price": {"dataType": "Number", "value": "139"},
            "quantity": {"dataType": "Number", "value": "1"},
            "productName": {"dataType": "String", "value": "Ridge hiking boots"},
        }),
        "{cart:#}"
    );
    assert_eq!(cart["totalEventCount"], json!(4));
    assert_eq!(cart["totalPageviewCount"], json!(3));
    for event in &events {
        assert_eq!(event["session"]["id"], json!(session_id));
        assert_eq!(event["customerId"], json!(visitor));
    }
    // The shop uses no plugin, form tracking or session reference: its pages fetched
    // the SDK and nothing of the plugin module.
    let sdk_files = browser
        .client
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes('/sdk/footpath'));",
            vec![],
        )
        .await?;
    let sdk_files: Vec<String> = serde_json::from_value(sdk_files)?;
    assert!(
        sdk_files
            .iter()
            .any(|name| name.ends_with("/sdk/footpath.wasm")),
        "{sdk_files:?}"
    );
    assert!(
        !sdk_files
            .iter()
            .any(|name| name.contains("footpath-plugins")),
        "{sdk_files:?}"
    );
    Ok(())
}

/// A link carrying the SDK's internal field separator (\x01, here `%01`) in a query
/// value must not shift the page's other facts: the search term loses the character,
/// and the campaign after it stays in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crafted_query_value_does_not_shift_the_page_facts() -> anyhow::Result<()> {
    let env = Env::start(EnvOptions::default()).await?;
    let browser = Browser::start().await?;
    let result = crafted_link(&env, &browser).await;
    browser.finish(result).await
}

async fn crafted_link(env: &Env, browser: &Browser) -> anyhow::Result<()> {
    browser
        .goto(&env.demo("/products?q=a%01b&utm_source=news&utm_medium=email"))
        .await?;
    let visitor = browser.sdk_state().await?.visitor_id;
    let session = wait_until("the page view to be stored", PATIENCE, || async {
        Ok(env.sessions_of(&visitor).await?.into_iter().next())
    })
    .await?;
    assert_eq!(session["searchTerms"], json!(["ab"]));
    assert_eq!(session["mktCampaign"]["source"], json!("news"));
    assert_eq!(session["mktCampaign"]["medium"], json!("email"));
    assert_eq!(
        session["lastPage"]["title"],
        json!("Products — Trailhead Outfitters")
    );
    Ok(())
}
