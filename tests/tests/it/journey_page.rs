//! A page written for the Journey SDK, with only its script URL pointing at Footpath:
//! the demo's help centre (`www-demo/site/support.html`). Its snippet names the global
//! through `_genesysJourneySdk`, `init` passes `region`, the page records its own page
//! view, loads URL-change tracking and tracks its contact form; it also uses the click,
//! in-viewport and scroll-depth plugins and asks for the session's reference. Checked:
//! one page view on load and one per `pushState` navigation, each plugin's event, the
//! submitted form with its fields and never its secrets (in the stored events and in
//! the request bodies), the abandoned form, and the agent's card showing the form.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use fantoccini::Locator;
use serde_json::{json, Value};

use crate::desk::{eval, sign_in, wait_for_element, wait_for_text_containing};
use crate::support::{event_names, wait_until, Browser, Env, EnvOptions, PATIENCE};

/// Typed into the contact form's fields that must never leave the page.
const PASSWORD: &str = "hunter2-Secret-731";
const CARD: &str = "4111111111111111";
const NOTES: &str = "internal-note-5521";
/// The value of the form's hidden input.
const HIDDEN: &str = "help-centre";

/// Installed before any script of each page: keeps the body of every request the page
/// makes (with `CompressionStream` removed, so that the SDK sends plain text that can
/// be searched).
pub(crate) const SPY: &str = "
    delete window.CompressionStream;
    window.__bodies = [];
    var originalFetch = window.fetch;
    window.fetch = function (url, init) {
      if (init && typeof init.body === 'string') window.__bodies.push(init.body);
      return originalFetch.apply(this, arguments);
    };
    var originalBeacon = Navigator.prototype.sendBeacon;
    Navigator.prototype.sendBeacon = function (url, body) {
      if (typeof body === 'string') window.__bodies.push(body);
      return originalBeacon.apply(this, arguments);
    };
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journey_sdk_page_works_with_only_its_script_url_changed() -> anyhow::Result<()> {
    let env = Env::start(EnvOptions::default()).await?;
    let visitor = Browser::start().await?;
    let agent = match Browser::start().await {
        Ok(agent) => agent,
        Err(error) => return visitor.finish(Err(error)).await,
    };
    let result = help_centre(&env, &visitor, &agent).await;
    eprintln!("agent's browser:");
    let result = agent.finish(result).await;
    eprintln!("visitor's browser:");
    visitor.finish(result).await
}

/// The visitor's events so far, once `done` says they are all there.
pub(crate) async fn events_when(
    env: &Env,
    visitor_id: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> anyhow::Result<Vec<Value>> {
    let seen = std::sync::Mutex::new(Vec::new());
    wait_until(what, PATIENCE, || async {
        let sessions = env.sessions_of(visitor_id).await?;
        let mut events = Vec::new();
        for session in &sessions {
            let id = session["id"].as_str().context("session id")?;
            events.extend(env.events_of(id).await?);
        }
        *seen.lock().unwrap() = event_names(&events);
        Ok(done(&events).then_some(events))
    })
    .await
    .with_context(|| format!("the events stored: {:?}", seen.lock().unwrap()))
}

pub(crate) fn count(events: &[Value], name: &str) -> usize {
    event_names(events).iter().filter(|n| *n == name).count()
}

fn attributes(event: &Value) -> BTreeMap<String, String> {
    event["webEvent"]["attributes"]
        .as_object()
        .map(|attributes| {
            attributes
                .iter()
                .map(|(key, value)| {
                    (
                        key.clone(),
                        value["value"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn help_centre(env: &Env, visitor: &Browser, agent: &Browser) -> anyhow::Result<()> {
    visitor
        .cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": SPY }),
        )
        .await?;
    visitor.goto(&env.demo("/support")).await?;
    let visitor_id = visitor.sdk_state().await?.visitor_id;

    // One page view on load: the page's own `ac('pageview')` took the automatic one's
    // place. The plugins' module loaded and the session's reference arrived.
    events_when(env, &visitor_id, "the page view on load", |events| {
        count(events, "page_viewed") >= 1
    })
    .await?;
    let sessions = env.sessions_of(&visitor_id).await?;
    ensure!(sessions.len() == 1, "one session: {sessions:#?}");
    let short_id = sessions[0]["shortId"]
        .as_str()
        .context("shortId")?
        .to_owned();
    let shown = format!("{} {}", &short_id[..3], &short_id[3..]);
    visitor.wait_for_text("#reference", &shown).await?;

    // A click the page tracks by selector.
    visitor.click("#callback-button").await?;
    // Scrolled to the end: both depths, and the offer came into view.
    visitor
        .client
        .execute(
            "window.scrollTo(0, document.documentElement.scrollHeight);",
            vec![],
        )
        .await?;
    // Seen before scrolling back: a scroll there and back within one frame shows the
    // page's end to no one, and the browser reports only where it ended.
    events_when(
        env,
        &visitor_id,
        "the scroll depths and the offer",
        |events| {
            ["scrolled_half", "scrolled_all", "returns_offer_seen"]
                .iter()
                .all(|name| count(events, name) >= 1)
        },
    )
    .await?;
    // Two single-page navigations.
    visitor
        .client
        .execute("window.scrollTo(0, 0);", vec![])
        .await?;
    visitor.click("#faq-link").await?;
    visitor.click("#contact-link").await?;
    let events = events_when(
        env,
        &visitor_id,
        "three page views and the plugins' events",
        |events| {
            count(events, "page_viewed") >= 3
                && [
                    "callback_requested",
                    "scrolled_half",
                    "scrolled_all",
                    "returns_offer_seen",
                ]
                .iter()
                .all(|name| count(events, name) >= 1)
        },
    )
    .await?;
    let pages: Vec<&str> = events
        .iter()
        .filter(|event| event["webEvent"]["eventName"] == json!("page_viewed"))
        .filter_map(|event| event["webEvent"]["page"]["pathname"].as_str())
        .collect();
    assert_eq!(pages, ["/support", "/support/faq", "/support/contact"]);
    let callback = events
        .iter()
        .find(|event| event["webEvent"]["eventName"] == json!("callback_requested"))
        .context("callback_requested")?;
    assert_eq!(attributes(callback)["place"], "help centre");
    for name in [
        "callback_requested",
        "scrolled_half",
        "scrolled_all",
        "returns_offer_seen",
    ] {
        assert_eq!(
            count(&events, name),
            1,
            "{name} once: {:?}",
            event_names(&events)
        );
    }

    // The contact form, with secrets in it, submitted.
    visitor.type_into("#contact-name", "Ada Lovelace").await?;
    visitor
        .type_into("#contact-email", "ada@example.com")
        .await?;
    visitor.type_into("#contact-password", PASSWORD).await?;
    visitor.type_into("#contact-card", CARD).await?;
    visitor
        .type_into("#contact-message", "Where is my order?")
        .await?;
    visitor.type_into("#contact-notes", NOTES).await?;
    // Two checked boxes of one name, and the radio button chosen.
    visitor.click("#reach-phone").await?;
    visitor.click("#urgency-high").await?;
    visitor.click("#contact-send").await?;
    visitor
        .wait_for_text("#contact-sent", "Thank you, we will answer soon.")
        .await?;
    let events = events_when(env, &visitor_id, "the submitted form", |events| {
        count(events, "form_submitted") == 1
    })
    .await?;
    let submitted = events
        .iter()
        .find(|event| event["webEvent"]["eventName"] == json!("form_submitted"))
        .context("form_submitted")?;
    let expected: BTreeMap<String, String> = [
        ("formName", "contact"),
        ("channel", "web"),
        ("name", "Ada Lovelace"),
        ("email", "ada@example.com"),
        ("topic", "order"),
        ("reach", "email,phone"),
        ("urgency", "high"),
        ("message", "Where is my order?"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect();
    assert_eq!(attributes(submitted), expected, "{submitted:#}");
    // The email field became a trait, through an identify event.
    let identify = events
        .iter()
        .find(|event| {
            event["webEvent"]["eventName"] == json!("identify")
                || event["webEvent"]["traits"]["email"].is_object()
        })
        .with_context(|| format!("the form's identify: {:?}", event_names(&events)))?;
    assert_eq!(
        identify["webEvent"]["traits"]["email"]["value"],
        json!("ada@example.com")
    );

    // A plugin with a wrong option is reported to the page's error handlers, with the
    // option's path, and does not run; nothing is thrown into the page.
    visitor
        .client
        .execute(
            "window.__errors = [];
             ac('on', 'error', function (event) { window.__errors.push(event.message); });
             ac('load', 'autotrackClick', { clickEvents: [{ selector: 'a', eventName: 'bad-name' }] });
             ac('load', 'autotrackFly', {});",
            vec![],
        )
        .await?;
    let errors = wait_until("the plugin errors", PATIENCE, || async {
        let errors = eval(visitor, "window.__errors").await?;
        Ok((errors.as_array().map_or(0, Vec::len) >= 2).then_some(errors))
    })
    .await?;
    assert_eq!(
        errors,
        json!([
            "[footpath] ac('load'): clickEvents[0].eventName: may contain only letters, digits and _",
            "[footpath] ac('load'): unknown plugin 'autotrackFly': autotrackClick, autotrackIdle, autotrackInViewport, autotrackScrollDepth or autotrackUrlChange",
        ])
    );

    // An idle visitor, once the page asks (a second without interaction).
    visitor
        .client
        .execute(
            "ac('load', 'autotrackIdle', { idleEvents: [{ idleAfter: 1, eventName: 'went_idle' }] });",
            vec![],
        )
        .await?;
    events_when(env, &visitor_id, "the idle event", |events| {
        count(events, "went_idle") >= 1
    })
    .await?;

    // The bodies the page sent so far: the secrets are in none of them.
    let bodies = eval(visitor, "window.__bodies").await?;
    let bodies = bodies.as_array().context("the spy's bodies")?;
    ensure!(!bodies.is_empty(), "the spy saw the requests");
    let sent: String = bodies.iter().filter_map(Value::as_str).collect();
    ensure!(sent.contains("Ada Lovelace"), "the spy sees what is sent");
    for secret in [PASSWORD, CARD, NOTES, HIDDEN] {
        ensure!(!sent.contains(secret), "{secret} left the page: {sent}");
    }

    // Started again, then left for another page: abandoned, with what was typed.
    visitor.type_into("#contact-name", "Ada King").await?;
    visitor.type_into("#contact-password", PASSWORD).await?;
    visitor.goto(&env.demo("/")).await?;
    let events = events_when(env, &visitor_id, "the abandoned form", |events| {
        count(events, "form_abandoned") == 1
    })
    .await?;
    let abandoned = events
        .iter()
        .find(|event| event["webEvent"]["eventName"] == json!("form_abandoned"))
        .context("form_abandoned")?;
    assert_eq!(attributes(abandoned)["name"], "Ada King", "{abandoned:#}");
    let stored = serde_json::to_string(&events)?;
    for secret in [PASSWORD, CARD, NOTES, HIDDEN] {
        ensure!(!stored.contains(secret), "{secret} was stored");
    }

    // The agent's card shows the form, with its fields in the tooltip.
    sign_in(env, agent).await?;
    let item = format!(".session-item[data-customer-id=\"{visitor_id}\"]");
    wait_for_element(agent, &item).await?;
    agent
        .client
        .find(Locator::Css(&item))
        .await?
        .click()
        .await?;
    let form = ".journey-event[data-event-name=\"form_submitted\"]";
    wait_for_element(agent, form).await?;
    wait_for_text_containing(agent, "#card-page-url", "/").await?;
    let tooltip = eval(
        agent,
        &format!("document.querySelector('{form} .tooltip').textContent"),
    )
    .await?;
    let tooltip = tooltip.as_str().unwrap_or_default().to_owned();
    ensure!(tooltip.starts_with("Form submitted"), "{tooltip}");
    ensure!(
        tooltip.contains("Ada Lovelace") && tooltip.contains("Where is my order?"),
        "{tooltip}"
    );
    ensure!(
        eval(
            agent,
            "document.querySelector('.journey-event[data-event-name=\"form_abandoned\"] .tooltip').textContent.indexOf('Form abandoned') === 0"
        )
        .await?
            == json!(true),
        "the abandoned form reads as such"
    );
    // Nothing more arrives later: still one page view per page.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events = events_when(env, &visitor_id, "the events", |_| true).await?;
    assert_eq!(
        count(&events, "page_viewed"),
        4,
        "{:?}",
        event_names(&events)
    );
    Ok(())
}
