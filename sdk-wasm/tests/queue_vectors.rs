//! Test vectors shared by the Rust encoder and `host.js`: the send queue's event texts,
//! and the page facts `host.js` writes as JSON into each event (`fpFacts`).
//!
//! The module hands `host.js` each event as the text of a batch of one; `host.js` reads
//! its id and head from the text and merges runs of them into one request body
//! (`fpId`, `fpHead`, `fpBody`), without a JSON parser. `vectors/queue.json` holds such
//! texts, written by the real encoder, and the body the encoder itself writes for all
//! of them in one batch. This test keeps the file equal to what the encoder writes
//! (`FOOTPATH_UPDATE_VECTORS=1` rewrites it); `host.test.mjs` (Node's test runner, in
//! `cargo xtask test`) checks that `host.js` merges the texts into exactly that body.
#![cfg(not(target_arch = "wasm32"))]

use footpath_protocol::v1::{
    encode_batch, AttributeValue, Batch, Context, Event, EventKind, Map, Number, Page, VERSION,
};

const SENT_AT: i64 = 1_795_500_914_999;

fn events() -> Vec<Event> {
    let mut attributes = Map::new();
    // Quotes, a deployment-id-like text and non-ASCII, which the queue must not misread.
    attributes.insert(
        "note".to_owned(),
        AttributeValue::String("say \"hi\"\n,\"sentAt\":1 — café".to_owned()),
    );
    attributes.insert(
        "price".to_owned(),
        AttributeValue::Number(Number::parse("12.5").unwrap()),
    );
    attributes.insert("in_stock".to_owned(), AttributeValue::Bool(true));
    let mut traits = Map::new();
    traits.insert(
        "email".to_owned(),
        AttributeValue::String("ada@example.com".to_owned()),
    );
    let page = Page {
        url: "https://shop.example/p?q=shoes".to_owned(),
        title: "Shoes – Shop".to_owned(),
        referrer: String::new(),
        lang: "en".to_owned(),
        keywords: String::new(),
        search_query: Some("shoes".to_owned()),
        campaign: Map::new(),
    };
    let context = Context {
        browser_lang: "en-GB".to_owned(),
        screen_width: 1280,
        screen_height: 800,
        screen_density: 200,
        viewport_width: 1200,
        viewport_height: 700,
    };
    let event = |n: u8, kind, name: &str| Event {
        id: format!("0193a5c0-0000-7000-8000-00000000000{n}"),
        kind,
        name: name.to_owned(),
        time: 1_795_500_914_000 + i64::from(n),
        session_id: Some("5d3c1b2a-0000-4000-8000-00000000beef".to_owned()),
        page: Some(page.clone()),
        context: Some(context.clone()),
        login_id: None,
        attributes: Map::new(),
        traits: Map::new(),
    };
    let mut recorded = event(1, EventKind::Record, "order_completed");
    recorded.attributes = attributes;
    let mut identified = event(2, EventKind::Identify, "identified");
    identified.login_id = Some("ada".to_owned());
    identified.traits = traits;
    let plain = event(3, EventKind::Pageview, "page_viewed");
    vec![recorded, identified, plain]
}

fn batch(sent_at: i64, events: Vec<Event>) -> Batch {
    Batch {
        v: VERSION,
        deployment_id: "demo\"sentAt".to_owned(),
        visitor_id: "0b7e0c2a-5b9e-4a57-9f3e-1c2d3e4f5a6b".to_owned(),
        sent_at,
        events,
    }
}

/// A JSON string literal (the vectors file is written without serde, which the SDK
/// crate does not depend on).
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn vectors() -> String {
    let events = events();
    let entries: Vec<String> = events
        .iter()
        .map(|event| quoted(&encode_batch(&batch(0, vec![event.clone()]))))
        .collect();
    let ids: Vec<String> = events.iter().map(|event| quoted(&event.id)).collect();
    format!(
        "{{\n  \"sentAt\": {SENT_AT},\n  \"ids\": [{}],\n  \"entries\": [\n    {}\n  ],\n  \"body\": {}\n}}\n",
        ids.join(", "),
        entries.join(",\n    "),
        quoted(&encode_batch(&batch(SENT_AT, events))),
    )
}

#[test]
fn the_queue_vectors_are_what_the_encoder_writes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/queue.json");
    let expected = vectors();
    if std::env::var_os("FOOTPATH_UPDATE_VECTORS").is_some() {
        std::fs::write(path, &expected).unwrap();
    }
    let stored = std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(
        stored, expected,
        "{path} is not what the encoder writes: rerun with FOOTPATH_UPDATE_VECTORS=1 and check host.test.mjs"
    );
}

/// The facts of a page as `fp_page` gathers them (url, title, referrer, lang, keywords,
/// navigator.language, screen width, height, density, viewport width, height), the
/// query parameters it read (the first `searched` for the search term), and what the
/// Rust encoder writes for the page and context they make, which `fpFacts` must write.
struct Facts {
    fields: [&'static str; 11],
    names: &'static [&'static str],
    values: &'static [&'static str],
    searched: usize,
}

const FACTS: [Facts; 3] = [
    Facts {
        fields: [
            "https://shop.example/p?q=shoes&utm_source=news&gclid=x1",
            "Say \"hi\" \\ to\nthe café",
            "https://search.example/",
            "en",
            "shoes, boots",
            "en-GB",
            "1280",
            "800",
            "200",
            "1200",
            "700",
        ],
        names: &["q", "utm_source", "utm_medium", "gclid", ""],
        values: &["shoes", "news", "", "x1", ""],
        searched: 1,
    },
    Facts {
        fields: [
            "https://shop.example/",
            "",
            "",
            "",
            "",
            "fr",
            "1.5",
            "",
            "-1",
            "1234567890",
            "0",
        ],
        names: &["q", "utm_source", ""],
        values: &["", "", ""],
        searched: 1,
    },
    Facts {
        fields: [
            "https://shop.example/?term=b",
            "T",
            "",
            "",
            "",
            "de",
            "1",
            "2",
            "3",
            "4",
            "5",
        ],
        names: &["s", "term", "utm_source", ""],
        values: &["", "b", "c", ""],
        searched: 2,
    },
];

/// What the SDK's Rust parser made of the facts before `host.js` wrote them itself.
fn page_and_context(facts: &Facts) -> (Page, Context) {
    let number = |text: &str| -> u32 {
        if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
            0
        } else {
            text.parse().unwrap()
        }
    };
    let f = facts.fields;
    let mut campaign = Map::new();
    for (name, value) in facts.names.iter().zip(facts.values).skip(facts.searched) {
        if !value.is_empty() {
            campaign.insert((*name).to_owned(), (*value).to_owned());
        }
    }
    let page = Page {
        url: f[0].to_owned(),
        title: f[1].to_owned(),
        referrer: f[2].to_owned(),
        lang: f[3].to_owned(),
        keywords: f[4].to_owned(),
        search_query: facts.values[..facts.searched]
            .iter()
            .find(|value| !value.is_empty())
            .map(|value| (*value).to_owned()),
        campaign,
    };
    let context = Context {
        browser_lang: f[5].to_owned(),
        screen_width: number(f[6]),
        screen_height: number(f[7]),
        screen_density: number(f[8]),
        viewport_width: number(f[9]),
        viewport_height: number(f[10]),
    };
    (page, context)
}

/// `,"page":{…},"context":{…}` as the encoder writes it: the difference between an
/// event with them and the same event without.
fn facts_json(facts: &Facts) -> String {
    let (page, context) = page_and_context(facts);
    let bare = events().pop().unwrap();
    let with = Event {
        page: Some(page),
        context: Some(context),
        ..bare.clone()
    };
    let without = Event {
        page: None,
        context: None,
        ..bare
    };
    let long = encode_batch(&batch(0, vec![with]));
    let short = encode_batch(&batch(0, vec![without]));
    let cut = short.len() - 3;
    assert_eq!(long[..cut], short[..cut]);
    long[cut..long.len() - 3].to_owned()
}

fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| quoted(item)).collect();
    format!("[{}]", quoted.join(", "))
}

fn facts_vectors() -> String {
    let cases: Vec<String> = FACTS
        .iter()
        .map(|facts| {
            format!(
                "    {{\n      \"fields\": {},\n      \"names\": {},\n      \"values\": {},\n      \"searched\": {},\n      \"json\": {}\n    }}",
                list(&facts.fields),
                list(facts.names),
                list(facts.values),
                facts.searched,
                quoted(&facts_json(facts)),
            )
        })
        .collect();
    format!("[\n{}\n]\n", cases.join(",\n"))
}

#[test]
fn the_facts_vectors_are_what_the_encoder_writes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/facts.json");
    let expected = facts_vectors();
    if std::env::var_os("FOOTPATH_UPDATE_VECTORS").is_some() {
        std::fs::write(path, &expected).unwrap();
    }
    let stored = std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(
        stored, expected,
        "{path} is not what the encoder writes: rerun with FOOTPATH_UPDATE_VECTORS=1 and check host.test.mjs"
    );
}

/// Names, one per rule of `validate_event_name`, which `host.js` checks for every event,
/// attribute and trait name (`fpNameProblem`).
const NAMES: [&str; 9] = [
    "order_completed",
    "A1_b2",
    "",
    "bad-name",
    "café",
    "has space",
    // 64 bytes, the most; 65; and 68 bytes of 34 characters, whose length is checked
    // before its characters.
    "a_name_of_exactly_sixty_four_bytes_which_is_the_longest_allowed_",
    "a_name_of_exactly_sixty_five_bytes_which_is_one_more_than_allowed",
    "éééééééééééééééééééééééééééééééééé",
];

/// Attributes as the page passes them (a JSON object, read by the Node test) and as
/// the Rust encoder writes them, which `fpObject(fpMembers(...))` must write too.
fn attribute_vector() -> (String, String) {
    let mut map = Map::new();
    map.insert(
        "note".to_owned(),
        AttributeValue::String("say \"hi\"\n\\ — café".to_owned()),
    );
    map.insert(
        "price".to_owned(),
        AttributeValue::Number(Number::parse("12.5").unwrap()),
    );
    map.insert(
        "count".to_owned(),
        AttributeValue::Number(Number::parse("3").unwrap()),
    );
    map.insert("gift".to_owned(), AttributeValue::Bool(false));
    let mut json = String::new();
    footpath_protocol::v1::push_attributes(&mut json, "attributes", &map);
    // The page's object: the same members, as JSON text (`,"attributes":` and all).
    (json[",\"attributes\":".len()..].to_owned(), json)
}

fn names_vectors() -> String {
    use footpath_protocol::v1::{validate_event_name, CAMPAIGN_PARAMETERS};
    let cases: Vec<String> = NAMES
        .iter()
        .map(|name| {
            let reason = validate_event_name(name).err().map_or("", |e| e.reason());
            format!("[{}, {}]", quoted(name), quoted(reason))
        })
        .collect();
    let (given, json) = attribute_vector();
    format!(
        "{{\n  \"campaign\": {},\n  \"names\": [\n    {}\n  ],\n  \"attributes\": {},\n  \"json\": {}\n}}\n",
        list(&CAMPAIGN_PARAMETERS),
        cases.join(",\n    "),
        quoted(&given),
        quoted(&json),
    )
}

#[test]
fn the_names_vectors_are_the_protocols() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/names.json");
    let expected = names_vectors();
    if std::env::var_os("FOOTPATH_UPDATE_VECTORS").is_some() {
        std::fs::write(path, &expected).unwrap();
    }
    let stored = std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(
        stored, expected,
        "{path} is not what the protocol says: rerun with FOOTPATH_UPDATE_VECTORS=1 and check commands.test.mjs"
    );
}
