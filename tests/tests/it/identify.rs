//! The demo's sign-in and sign-out.

use serde_json::{json, Value};

use crate::support::{wait_until, Browser, Env, EnvOptions, PATIENCE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_identifies_and_sign_out_starts_a_new_client_session() -> anyhow::Result<()> {
    let env = Env::start(EnvOptions::default()).await?;
    let browser = Browser::start().await?;
    let result = scenario(&env, &browser).await;
    browser.finish(result).await
}

async fn scenario(env: &Env, browser: &Browser) -> anyhow::Result<()> {
    browser.goto(&env.demo("/signin")).await?;
    let before = browser.sdk_state_with_session().await?;
    let client_session = before
        .session_id
        .clone()
        .expect("the SDK has a client session after the pageview");
    browser.type_into("#email", "ada@example.com").await?;
    browser.type_into("#name", "Ada Lovelace").await?;
    browser.click("#signin-button").await?;
    // Set by the identify callback once the collector accepted the event.
    browser
        .wait_for_text("#signed-in-as", "Signed in as ada@example.com")
        .await?;

    let visitor = before.visitor_id.as_str();
    let identified: Value = wait_until("an identified event", PATIENCE, || async move {
        for session in env.sessions_of(visitor).await? {
            let id = session["id"].as_str().unwrap_or_default();
            for event in env.events_of(id).await? {
                if event["webEvent"]["eventName"] == json!("identified") {
                    return Ok(Some(event));
                }
            }
        }
        Ok(None)
    })
    .await?;
    let traits = &identified["webEvent"]["traits"];
    assert_eq!(
        traits["email"]["value"],
        json!("ada@example.com"),
        "{identified:#}"
    );
    assert_eq!(
        traits["email"]["dataType"],
        json!("String"),
        "{identified:#}"
    );
    assert_eq!(
        traits["displayName"]["value"],
        json!("Ada Lovelace"),
        "{identified:#}"
    );

    browser.click("#signout-button").await?;
    browser
        .wait_for_text("#signed-in-as", "Not signed in")
        .await?;
    browser.goto(&env.demo("/")).await?;
    let after = browser.sdk_state_with_session().await?;
    let new_session = after
        .session_id
        .clone()
        .expect("a client session on the home page");
    assert_ne!(
        new_session, client_session,
        "signing out must start a new client session (before: {before:?}, after: {after:?})"
    );
    Ok(())
}
