//! The browser underneath: clock, randomness, storage, cookie and page facts, through
//! the string-and-number functions of `host.js`.

use footpath_protocol::v1::{Context, Page, CAMPAIGN_PARAMETERS};

use super::{cat, fp_cookie, fp_load, fp_now, fp_page, fp_random, fp_save, fp_signals};
use crate::core::{
    is_uuid, push_u64, uuid_v4, Consent, Options, Platform, Signals, CONSENT_COOKIE, OPT_OUT_COOKIE,
};

/// The first-party cookie that holds the visitor id.
pub const VISITOR_COOKIE: &str = "_footpath_vid";

pub struct Browser;

impl Platform for Browser {
    fn now_ms(&self) -> i64 {
        fp_now() as i64
    }

    fn fill_random(&self, buf: &mut [u8]) {
        let mut random = 0;
        for (i, b) in buf.iter_mut().enumerate() {
            if i % 4 == 0 {
                random = fp_random();
            }
            *b = (random >> (8 * (i % 4))) as u8;
        }
    }

    fn load(&self, key: &str) -> Option<String> {
        fp_load(key)
    }

    fn save(&self, key: &str, value: &str) {
        fp_save(key, value);
    }

    fn remove(&self, key: &str) {
        fp_save(key, "");
    }
}

/// `text` cut at every `separator` byte (an ASCII one, so the pieces stay UTF-8).
pub fn split(text: &str, separator: u8) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, &b) in text.as_bytes().iter().enumerate() {
        if b == separator {
            pieces.push(&text[start..i]);
            start = i + 1;
        }
    }
    pieces.push(&text[start..]);
    pieces
}

/// Field `i` of what `fp_page` gave, or ''.
fn field(fields: &[&str], i: usize) -> String {
    fields
        .get(i)
        .map_or(String::new(), |text| (*text).to_owned())
}

fn number(fields: &[&str], i: usize) -> u32 {
    fields.get(i).and_then(|text| digits(text)).unwrap_or(0)
}

/// A decimal number of at most 9 digits and nothing else.
pub fn digits(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().fold(0, |n, b| n * 10 + (b - b'0') as u32))
}

/// Reads the visitor cookie (once per page, at init), or makes a new id for it. The
/// cookie is (re)written, renewing its lifetime, only once consent is granted.
pub fn visitor_id() -> String {
    let values = fp_cookie(VISITOR_COOKIE, "");
    let mut id = None;
    for value in split(&values, 1) {
        if is_uuid(value) {
            id = Some(value.to_owned());
            break;
        }
    }
    id.unwrap_or_else(new_visitor_id)
}

pub fn new_visitor_id() -> String {
    let mut random = [0u8; 16];
    Browser.fill_random(&mut random);
    uuid_v4(random)
}

/// Sets first-party cookie `name` for the visitor's lifetime, or removes it when
/// `value` is empty.
pub fn set_cookie(options: &Options, name: &str, value: &str) {
    let mut cookie = cat(&[name, "=", value, "; Max-Age="]);
    let days = if value.is_empty() {
        0
    } else {
        options.cookie_expiry_days
    };
    push_u64(&mut cookie, days as u64 * 86_400);
    cookie.push_str("; Path=/; SameSite=Lax");
    if let Some(domain) = &options.cookie_domain {
        cookie.push_str("; Domain=");
        cookie.push_str(domain);
    }
    // `host.js` adds `Secure` on https pages.
    fp_cookie("", &cookie);
}

/// The values of the cookies called `name`.
pub fn cookie(name: &str) -> String {
    fp_cookie(name, "")
}

/// What decides whether this visitor may be tracked, as the page stands now: the
/// remembered answers in their cookies and the browser's privacy signals.
pub fn signals(options: &Options) -> Signals {
    let browser = fp_signals();
    let consent = cookie(CONSENT_COOKIE);
    Signals {
        site: options.consent,
        remembered: split(&consent, 1).into_iter().find_map(Consent::parse),
        opted_out: !cookie(OPT_OUT_COOKIE).is_empty(),
        privacy_control: options.honor_global_privacy_control && browser & 1 != 0,
        do_not_track: options.honor_do_not_track && browser & 2 != 0,
    }
}

/// The page an event happened on (the current one, or `location` resolved against it)
/// and the browser's context.
pub fn page(
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
    let Some(text) = fp_page(location, &names, &excluded, options.keep_url_fragment) else {
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
    let mut campaign = footpath_protocol::v1::Map::new();
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
