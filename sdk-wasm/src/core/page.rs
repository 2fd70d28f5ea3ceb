//! The page an event happened on and the browser's context, from the facts `host.js`
//! gathers (`fp_page`): one `\x01`-joined text, parsed here so that the field order
//! and the search and campaign parameters are tested without a browser.

// `push_str("\x01")` rather than `push('\x01')`: pushing a `char` brings in UTF-8
// encoding code that the SDK's wasm module would pay for.
#![allow(clippy::single_char_add_str)]

use footpath_protocol::v1::{Context, Map, Page, CAMPAIGN_PARAMETERS};

use super::text::{digits, split};
use super::{Host, Options};

/// Field `i` of what `fp_page` gave, or ''.
fn field(fields: &[&str], i: usize) -> String {
    fields
        .get(i)
        .map_or(String::new(), |text| (*text).to_owned())
}

fn number(fields: &[&str], i: usize) -> u32 {
    fields.get(i).and_then(|text| digits(text)).unwrap_or(0)
}

/// The page an event happened on (the current one, or `location` resolved against it)
/// and the browser's context.
#[inline]
pub fn page<H: Host>(
    options: &Options,
    location: &str,
    title: Option<String>,
) -> Result<(Page, Context), String> {
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
    let Some(text) = H::page(location, &names, &excluded, options.keep_url_fragment) else {
        return Err("location is not a URL".into());
    };
    let fields = split(&text, 1);
    let searched = options.search_query_parameters.len();
    let mut search_query = None;
    for i in 0..searched {
        let value = field(&fields, 11 + i);
        if search_query.is_none() && !value.is_empty() {
            search_query = Some(value);
        }
    }
    let mut campaign = Map::new();
    for (i, name) in CAMPAIGN_PARAMETERS.iter().enumerate() {
        let value = field(&fields, 11 + searched + i);
        if !value.is_empty() {
            campaign.insert((*name).to_owned(), value);
        }
    }
    let page = Page {
        url: field(&fields, 0),
        title: title.unwrap_or_else(|| field(&fields, 1)),
        referrer: field(&fields, 2),
        lang: field(&fields, 3),
        keywords: field(&fields, 4),
        search_query,
        campaign,
    };
    let context = Context {
        browser_lang: field(&fields, 5),
        screen_width: number(&fields, 6),
        screen_height: number(&fields, 7),
        screen_density: number(&fields, 8),
        viewport_width: number(&fields, 9),
        viewport_height: number(&fields, 10),
    };
    Ok((page, context))
}
