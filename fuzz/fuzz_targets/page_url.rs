//! Page URLs and their parts: the Journey API's `webevents` request (`page.url`,
//! `referrerUrl`, `searchQuery`), the campaign parameters read from the URL's query
//! string, the pageview's URL check in `validate_event`, and the page, referrer and
//! campaign parts that the Journey API shows.
//!
//! Input: the page URL, optionally followed by a line feed, the referrer URL, another
//! line feed and the site-search term.
//!
//! Invariants: an accepted pageview has an http(s) URL with a host, which the API
//! shows with a hostname and a registrable domain that is a suffix of it; every
//! campaign parameter read from the URL is a known one with a non-empty value; the
//! campaign is shown exactly when there is one.

#![no_main]

use footpath_collector::config::Config;
use footpath_collector::journey;
use footpath_collector::validate::validate_event;
use footpath_collector::webevents::WebEventRequest;
use footpath_fuzz::{batch_context, check_page_parts, NOW_MS};
use footpath_protocol::v1::{CAMPAIGN_PARAMETERS, PAGE_VIEWED};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

const VISITOR: &str = "0190b7a0-0000-4000-8000-000000000001";
const EVENT_ID: &str = "0190b7a0-0000-7000-8000-000000000001";

fuzz_target!(|input: &str| {
    let mut lines = input.splitn(3, '\n');
    let url = lines.next().unwrap_or_default();
    let referrer = lines.next();
    let search_query = lines.next();
    let body = json!({
        "customerCookieId": VISITOR,
        "eventName": PAGE_VIEWED,
        "page": { "url": url, "title": "Fuzzed" },
        "referrerUrl": referrer,
        "searchQuery": search_query,
    });
    let Ok(request) = WebEventRequest::parse(&body) else {
        return;
    };
    let event = request.to_wire_event(EVENT_ID, NOW_MS);
    let page = event
        .page
        .as_ref()
        .expect("a request with a page gives an event with a page");
    // The request's text fields are trimmed.
    assert_eq!(page.url, url.trim());
    for (name, value) in page.campaign.iter() {
        assert!(
            CAMPAIGN_PARAMETERS.contains(&name.as_str()),
            "unknown campaign parameter {name:?}"
        );
        assert!(!value.is_empty(), "empty campaign value for {name:?}");
    }
    check_page_parts(page);

    let config = Config::default();
    let Ok(stored) = validate_event(0, &event, &batch_context(&config, NOW_MS)) else {
        return;
    };
    let page = stored
        .page
        .as_ref()
        .expect("an accepted pageview has a page");
    let shown = journey::journey_page(page);
    assert!(
        shown.hostname.is_some(),
        "accepted pageview without a hostname: {url:?}"
    );
    assert!(
        shown
            .pathname
            .as_deref()
            .is_some_and(|path| path.starts_with('/')),
        "{shown:?}"
    );
});
