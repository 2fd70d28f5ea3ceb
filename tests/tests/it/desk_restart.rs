//! The desk survives a collector restart: its live stream reconnects by itself, the
//! agent stays signed in (sign-ins are kept in the database), and sessions that
//! arrive afterwards appear without a reload.

use serde_json::json;

use crate::desk::{eval, seed_visit, sign_in, wait_for_element, wait_for_text_containing};
use crate::support::{Browser, Env, EnvOptions};

const BEFORE: &str = "5b0c7d9e-1f2a-4b3c-8d4e-000000000001";
const DURING: &str = "5b0c7d9e-1f2a-4b3c-8d4e-000000000002";
const AFTER: &str = "5b0c7d9e-1f2a-4b3c-8d4e-000000000003";

fn item(visitor: &str) -> String {
    format!(".session-item[data-customer-id=\"{visitor}\"]")
}

#[tokio::test]
async fn the_desk_reconnects_by_itself_after_the_collector_restarts() -> anyhow::Result<()> {
    let mut env = Env::start(EnvOptions::default()).await?;
    let agent = Browser::start().await?;
    let result = restart_under_an_open_desk(&mut env, &agent).await;
    agent.finish(result).await
}

async fn restart_under_an_open_desk(env: &mut Env, agent: &Browser) -> anyhow::Result<()> {
    sign_in(env, agent).await?;
    seed_visit(env, BEFORE, "/", "Before the restart", None).await?;
    wait_for_element(agent, &item(BEFORE)).await?;
    eval(agent, "window.__loadedOnce = true").await?;

    // A graceful stop must not wait for the open desk's stream, and a new collector
    // takes the same address and database.
    env.restart_collector().await?;
    seed_visit(env, DURING, "/products", "While reconnecting", None).await?;
    wait_for_element(agent, &item(DURING)).await?;
    wait_for_text_containing(agent, "#connection", "Live").await?;

    // Once reconnected, a new visit arrives through the live stream (well within the
    // desk's 30 s fallback refresh).
    seed_visit(env, AFTER, "/checkout", "After the restart", None).await?;
    wait_for_element(agent, &item(AFTER)).await?;

    assert_eq!(
        eval(agent, "window.__loadedOnce === true").await?,
        json!(true),
        "the desk page was not reloaded"
    );
    assert_eq!(
        eval(agent, "performance.getEntriesByType('navigation').length").await?,
        json!(1)
    );
    assert_eq!(
        eval(agent, "location.pathname").await?,
        json!("/desk/"),
        "still signed in"
    );
    Ok(())
}
