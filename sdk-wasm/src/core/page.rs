//! The page an event happened on and the browser's context. `host.js` reads the facts
//! and writes them as JSON (`fp_page`, `fpFacts`): the browser's own `JSON.stringify`
//! escapes them, so the module carries no page or context types, no parser for the
//! facts and no encoder for them. What the module decides is which query parameters
//! to read (the site's search parameters, then the campaign ones) and which to drop.

// `push_str("\x01")` rather than `push('\x01')`: pushing a `char` brings in UTF-8
// encoding code that the SDK's wasm module would pay for.
#![allow(clippy::single_char_add_str)]

use footpath_protocol::v1::CAMPAIGN_PARAMETERS;

use super::{Host, Options};

/// `,"page":{…},"context":{…}` for an event on the current page, or on `location`
/// resolved against it; with `title` instead of the document's when one is given.
#[inline]
pub fn page<H: Host>(
    options: &Options,
    location: &str,
    title: Option<String>,
) -> Result<String, String> {
    let mut names = String::new();
    for name in &options.search_query_parameters {
        names.push_str(name);
        names.push_str("\x01");
    }
    for name in CAMPAIGN_PARAMETERS {
        names.push_str(name);
        names.push_str("\x01");
    }
    let mut excluded = String::new();
    for name in &options.excluded_query_parameters {
        excluded.push_str(name);
        excluded.push_str("\x01");
    }
    H::page(
        location,
        &names,
        options.search_query_parameters.len() as u32,
        &excluded,
        options.keep_url_fragment,
        title.as_deref().unwrap_or(""),
        title.is_some(),
    )
    .ok_or_else(|| "location is not a URL".into())
}
