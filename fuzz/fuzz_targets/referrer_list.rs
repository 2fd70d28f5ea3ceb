//! Referrer lists: the file an operator may give the collector at startup
//! (`referrer_list_path`), read by `ReferrerList::parse`.
//!
//! Input: the file's text.
//!
//! Invariants: reading any text never panics and is deterministic; a list that loads
//! classifies any referrer without panicking.

#![no_main]

use footpath_collector::enrich::referrer::{ReferrerCache, ReferrerList};
use footpath_protocol::v1::Page;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let first = ReferrerList::parse(input);
    let second = ReferrerList::parse(input);
    assert_eq!(first.as_ref().map(ReferrerList::len), second.as_ref().map(ReferrerList::len));
    if let Ok(list) = first {
        let page = Page {
            url: "https://shop.example/".to_owned(),
            referrer: "https://www.google.com/search?q=boots".to_owned(),
            ..Page::default()
        };
        let _ = ReferrerCache::new(&list).classify(&page, None);
    }
});
