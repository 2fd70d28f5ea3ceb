//! What the fuzz targets share: a batch context as the batch handler builds it, and the
//! invariants of the page, referrer and campaign parts that the Journey API shows.
//!
//! Each target in `fuzz_targets/` drives the collector's own functions (never a copy of
//! them) and asserts, beyond "does not panic", what must hold for every input.

use footpath_collector::config::Config;
use footpath_collector::enrich::referrer::{self, Medium, ReferrerInfo};
use footpath_collector::journey;
use footpath_collector::validate::BatchContext;
use footpath_protocol::v1::{Page, CAMPAIGN_PARAMETERS};

/// The server's clock in every target: a fixed time, so that a crash replays.
pub const NOW_MS: i64 = 1_795_500_000_000;

/// The context the batch handler builds for a batch sent at `sent_at_ms`, with the
/// default configuration and no request-level enrichment.
pub fn batch_context(config: &Config, sent_at_ms: i64) -> BatchContext {
    BatchContext {
        sent_at_ms,
        now_ms: NOW_MS,
        max_event_age_ms: config.max_event_age_ms(),
        user_agent: None,
        ip_address: None,
        user_agent_info: None,
        geolocation: None,
    }
}

/// The registrable domain shown for `hostname` is a suffix of it (after the trailing
/// dots are dropped and letters lowered), and not empty when the hostname is not.
pub fn check_domain_of(hostname: &str, domain: &str) {
    let host = hostname.trim_end_matches('.').to_ascii_lowercase();
    assert!(
        host.ends_with(domain),
        "domain {domain:?} is not a suffix of host {hostname:?}"
    );
    assert_eq!(
        domain.is_empty(),
        host.is_empty(),
        "domain {domain:?} of host {hostname:?}"
    );
}

/// Builds the page, referrer and campaign as the Journey API shows them, and checks
/// that they agree with the page they came from.
pub fn check_page_parts(page: &Page) {
    let shown = journey::journey_page(page);
    assert_eq!(shown.url, page.url);
    match (&shown.hostname, &shown.domain) {
        (Some(hostname), Some(domain)) => check_domain_of(hostname, domain),
        (None, None) => {}
        (hostname, domain) => panic!("hostname {hostname:?} with domain {domain:?}"),
    }
    for part in [&shown.pathname, &shown.query_string, &shown.fragment] {
        assert!(
            part.as_ref().is_none_or(|text| !text.is_empty()),
            "empty part shown: {shown:?}"
        );
    }

    let stored = referrer::classify(page);
    if let Some(info) = &stored {
        check_referrer_info(info);
    }
    match journey::referrer(page, stored.as_ref()) {
        Some(shown) => {
            assert_eq!(shown.url, page.referrer);
            assert_eq!(shown.medium, stored.as_ref().map(|info| info.medium));
            if let (Some(hostname), Some(domain)) = (&shown.hostname, &shown.domain) {
                check_domain_of(hostname, domain);
            }
        }
        None => assert!(
            page.referrer.is_empty(),
            "a referrer {:?} is not shown",
            page.referrer
        ),
    }

    // The campaign is shown exactly when the page carries a non-empty campaign value.
    let carried = CAMPAIGN_PARAMETERS.iter().any(|name| {
        page.campaign
            .get(name)
            .is_some_and(|value| !value.is_empty())
    });
    assert_eq!(
        journey::campaign(page).is_some(),
        carried,
        "campaign of {page:?}"
    );
}

/// A referrer's classification: internal referrers have neither a name nor search
/// terms; search terms are trimmed and not empty.
pub fn check_referrer_info(info: &ReferrerInfo) {
    if info.medium == Medium::Internal {
        assert_eq!((&info.name, &info.keywords), (&None, &None), "{info:?}");
    }
    if let Some(keywords) = &info.keywords {
        assert!(
            !keywords.is_empty() && keywords.trim() == keywords,
            "keywords {keywords:?}"
        );
    }
    if let Some(name) = &info.name {
        assert!(!name.is_empty(), "{info:?}");
    }
}
