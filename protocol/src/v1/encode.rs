//! A JSON encoder for [`Batch`] that needs neither serde nor `core::fmt`.
//!
//! The SDK runs in the visitor's browser, where every kilobyte of wasm is paid for on
//! every page load; formatting machinery alone would cost more than this whole file.
//! The round-trip tests decode its output with the serde derives of this crate.

// `push_str(",")` rather than `push(',')`: pushing a `char` brings in UTF-8
// encoding code that the SDK's wasm module would pay for.
#![allow(clippy::single_char_add_str)]

use super::{AttributeValue, Batch, Context, Event, Map, Page};

/// Encodes a batch as the JSON body of a `POST` to [`super::BATCH_PATH`].
pub fn encode_batch(batch: &Batch) -> String {
    let mut out = String::with_capacity(256 + batch.events.len() * 256);
    out.push_str("{\"v\":");
    push_u64(&mut out, batch.v as u64);
    push_key(&mut out, "deploymentId");
    push_str(&mut out, &batch.deployment_id);
    push_key(&mut out, "visitorId");
    push_str(&mut out, &batch.visitor_id);
    push_key(&mut out, "sentAt");
    push_i64(&mut out, batch.sent_at);
    out.push_str(",\"events\":[");
    for (i, event) in batch.events.iter().enumerate() {
        if i > 0 {
            out.push_str(",");
        }
        push_event(&mut out, event);
    }
    out.push_str("]}");
    out
}

fn push_event(out: &mut String, event: &Event) {
    out.push_str("{\"id\":");
    push_str(out, &event.id);
    push_key(out, "kind");
    push_str(out, event.kind.as_str());
    push_key(out, "name");
    push_str(out, &event.name);
    push_key(out, "time");
    push_i64(out, event.time);
    if let Some(session_id) = &event.session_id {
        push_key(out, "sessionId");
        push_str(out, session_id);
    }
    if let Some(page) = &event.page {
        push_key(out, "page");
        push_page(out, page);
    }
    if let Some(context) = &event.context {
        push_key(out, "context");
        push_context(out, context);
    }
    if let Some(login_id) = &event.login_id {
        push_key(out, "loginId");
        push_str(out, login_id);
    }
    push_attributes(out, "attributes", &event.attributes);
    push_attributes(out, "traits", &event.traits);
    out.push_str("}");
}

fn push_page(out: &mut String, page: &Page) {
    out.push_str("{\"url\":");
    push_str(out, &page.url);
    for (key, value) in [
        ("title", &page.title),
        ("referrer", &page.referrer),
        ("lang", &page.lang),
        ("keywords", &page.keywords),
    ] {
        if !value.is_empty() {
            push_key(out, key);
            push_str(out, value);
        }
    }
    if let Some(search_query) = &page.search_query {
        push_key(out, "searchQuery");
        push_str(out, search_query);
    }
    if !page.campaign.is_empty() {
        push_key(out, "campaign");
        out.push_str("{");
        for (i, (key, value)) in page.campaign.iter().enumerate() {
            if i > 0 {
                out.push_str(",");
            }
            push_str(out, key);
            out.push_str(":");
            push_str(out, value);
        }
        out.push_str("}");
    }
    out.push_str("}");
}

fn push_context(out: &mut String, context: &Context) {
    out.push_str("{\"browserLang\":");
    push_str(out, &context.browser_lang);
    for (key, value) in [
        ("screenWidth", context.screen_width),
        ("screenHeight", context.screen_height),
        ("screenDensity", context.screen_density),
        ("viewportWidth", context.viewport_width),
        ("viewportHeight", context.viewport_height),
    ] {
        push_key(out, key);
        push_u64(out, value as u64);
    }
    out.push_str("}");
}

/// `,"key":{…}` for a non-empty map of attributes or traits, nothing for an empty one.
pub fn push_attributes(out: &mut String, key: &str, map: &Map<AttributeValue>) {
    if map.is_empty() {
        return;
    }
    push_key(out, key);
    out.push_str("{");
    for (i, (name, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push_str(",");
        }
        push_str(out, name);
        out.push_str(":");
        match value {
            AttributeValue::Bool(true) => out.push_str("true"),
            AttributeValue::Bool(false) => out.push_str("false"),
            AttributeValue::Number(n) => out.push_str(n.as_str()),
            AttributeValue::String(s) => push_str(out, s),
        }
    }
    out.push_str("}");
}

/// `,"key":` — every key this encoder writes is a plain ASCII literal.
pub fn push_key(out: &mut String, key: &str) {
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":");
}

/// `value` as a JSON string.
pub fn push_str(out: &mut String, value: &str) {
    out.push_str("\"");
    // By byte, copying the runs between escapes: pushing `char`s would bring UTF-8
    // encoding into the SDK's module. Every cut is before an ASCII byte or a whole
    // U+2028/U+2029, so the runs are whole characters.
    let bytes = value.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        // U+2028 and U+2029, which older JavaScript parsers refuse inside strings.
        let separator = b == 0xe2
            && bytes.get(i + 1) == Some(&0x80)
            && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9));
        if b >= 0x20 && b != b'"' && b != b'\\' && !separator {
            i += 1;
            continue;
        }
        out.push_str(&value[start..i]);
        let code = match b {
            b'"' | b'\\' => {
                out.push_str("\\");
                out.push_str(&value[i..i + 1]);
                i += 1;
                start = i;
                continue;
            }
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            _ => "",
        };
        if code.is_empty() {
            // Other control characters, and the separators.
            let code = if separator {
                0x2028 + (bytes[i + 2] - 0xa8) as usize
            } else {
                b as usize
            };
            out.push_str("\\u");
            for shift in [12, 8, 4, 0] {
                push_digit(out, (code >> shift) & 0xf);
            }
        } else {
            out.push_str(code);
        }
        i += if separator { 3 } else { 1 };
        start = i;
    }
    out.push_str(&value[start..]);
    out.push_str("\"");
}

/// One hexadecimal (or decimal) digit.
fn push_digit(out: &mut String, digit: usize) {
    out.push_str(&"0123456789abcdef"[digit..digit + 1]);
}

/// Decimal digits of `value`, for texts besides the JSON that must stay free of
/// `core::fmt` too (the SDK's session record and cookie lifetimes).
pub fn push_i64(out: &mut String, value: i64) {
    if value < 0 {
        out.push_str("-");
    }
    push_u64(out, value.unsigned_abs());
}

/// Decimal digits of `value`; see [`push_i64`].
pub fn push_u64(out: &mut String, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for &d in &digits[start..] {
        push_digit(out, (d - b'0') as usize);
    }
}
