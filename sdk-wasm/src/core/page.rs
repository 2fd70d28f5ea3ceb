//! The page an event happened on and the browser's context. `host.js` reads the facts
//! and writes them as JSON (`fp_page`, `fpFacts`): the browser's own `JSON.stringify`
//! escapes them, so the module carries no page or context types, no parser for the
//! facts and no encoder for them. What the module decides is which query parameters
//! to read (the site's search parameters, then the campaign ones) and which to drop.

use super::text::cat;
use super::{Host, Options};

/// The protocol's `CAMPAIGN_PARAMETERS`, each followed by `\x01` (a test keeps the
/// two equal): one literal rather than a loop at every event.
const CAMPAIGN_NAMES: &str =
    "utm_source\x01utm_medium\x01utm_campaign\x01utm_term\x01utm_content\x01gclid\x01fbclid\x01msclkid\x01dclid\x01ttclid\x01";

/// `,"page":{…},"context":{…}` for an event on the current page, or on `location`
/// resolved against it; with `title` instead of the document's when one is given.
#[inline]
pub fn page<H: Host>(
    options: &Options,
    location: &str,
    title: Option<String>,
) -> Result<String, String> {
    H::page(
        location,
        &cat(&[&options.search_query_parameters, CAMPAIGN_NAMES]),
        options.searched,
        &options.excluded_query_parameters,
        options.keep_url_fragment,
        title.as_deref().unwrap_or(""),
        title.is_some(),
    )
    .ok_or_else(|| "location is not a URL".into())
}

#[cfg(test)]
mod tests {
    use footpath_protocol::v1::CAMPAIGN_PARAMETERS;

    #[test]
    fn the_campaign_names_are_the_protocols() {
        let joined: String = CAMPAIGN_PARAMETERS
            .iter()
            .map(|name| format!("{name}\x01"))
            .collect();
        assert_eq!(super::CAMPAIGN_NAMES, joined);
    }
}
