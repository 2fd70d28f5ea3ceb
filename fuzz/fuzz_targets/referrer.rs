//! Referrer URLs → name, medium and search terms (the collector's own referrer list and
//! the collector's rules for internal, paid and email traffic), and the referrer parts
//! the Journey API shows.
//!
//! Input: the referrer URL, optionally followed by a line feed and the page URL (the
//! page's campaign parameters are read from it as the SDK does). Without a page URL
//! the page is `https://www.shop.example/`.
//!
//! Invariants: a referrer is classified exactly when it is an absolute URL with a
//! host; a referrer on the page's own registrable domain is internal, with neither
//! name nor search terms; search terms are trimmed and not empty; the shown parts
//! agree with the classification.

#![no_main]

use footpath_collector::enrich::referrer::{classify, Medium};
use footpath_collector::enrich::registrable_domain;
use footpath_fuzz::{check_page_parts, check_referrer_info};
use footpath_protocol::v1::{Map, Page, CAMPAIGN_PARAMETERS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let (referrer, page_url) = input
        .split_once('\n')
        .unwrap_or((input, "https://www.shop.example/"));
    let campaign: Map<String> = match url::Url::parse(page_url) {
        Ok(url) => url
            .query_pairs()
            .filter(|(name, value)| {
                CAMPAIGN_PARAMETERS.contains(&name.as_ref()) && !value.is_empty()
            })
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect(),
        Err(_) => Map::new(),
    };
    let page = Page {
        url: page_url.to_owned(),
        referrer: referrer.to_owned(),
        campaign,
        ..Page::default()
    };
    let info = classify(&page);
    let parsed = url::Url::parse(referrer.trim()).ok();
    let referrer_host = parsed
        .as_ref()
        .and_then(|url| url.host_str().map(str::to_owned));
    assert_eq!(info.is_some(), referrer_host.is_some(), "{referrer:?}");
    if let (Some(info), Some(referrer_host)) = (&info, &referrer_host) {
        check_referrer_info(info);
        let page_host = url::Url::parse(page_url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned));
        let same_site = page_host.is_some_and(|page_host| {
            registrable_domain(&page_host)
                == registrable_domain(&referrer_host.to_ascii_lowercase())
        });
        assert_eq!(
            info.medium == Medium::Internal,
            same_site,
            "{info:?} for {page:?}"
        );
    }
    check_page_parts(&page);
});
