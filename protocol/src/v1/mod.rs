//! Version 1 of the SDK → collector batch format.
//!
//! A browser sends `POST {collector}/sdk/v1/batch` with a JSON body of type [`Batch`]
//! and `Content-Type: text/plain`, a "simple" request that needs no CORS preflight and
//! that `navigator.sendBeacon` can send too. The collector answers with a
//! [`BatchResponse`] holding one [`EventResult`] per event, so that one bad event does
//! not reject its valid neighbours.
//!
//! Field names are camelCase on the wire. Times are milliseconds since the Unix epoch
//! as measured by the sending device; `sentAt` lets the collector correct for a device
//! whose clock is wrong.

mod encode;
mod map;
mod validate;

pub use encode::{encode_batch, push_attributes, push_i64, push_key, push_str, push_u64};
pub use map::Map;
pub use validate::{
    validate_attribute_name, validate_event_name, NameError, MAX_ATTRIBUTES, MAX_NAME_BYTES,
    MAX_VALUE_BYTES,
};

/// The value of [`Batch::v`] for this version.
pub const VERSION: u32 = 1;

/// Path of the ingest endpoint, relative to the collector's base URL.
pub const BATCH_PATH: &str = "/sdk/v1/batch";

/// The largest batch body, in bytes as sent, that a collector accepts by default (its
/// `max_body_bytes`). Compression does not raise what the SDK may count on: a beacon,
/// and a browser without `CompressionStream`, send the body as it is.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The largest event the SDK records, as the text of a batch of one with `sentAt` 0
/// (see `Tracked::text` in the SDK). A bigger one could never be sent, so it is refused
/// when it is recorded rather than retried in vain. The margin is for the `sentAt` the
/// sender writes in place of the 0 (13 digits until the year 2286).
pub const MAX_EVENT_BYTES: usize = MAX_BODY_BYTES - 16;

/// Event names the SDK gives to the events it records by itself.
pub const PAGE_VIEWED: &str = "page_viewed";
pub const IDENTIFIED: &str = "identified";
pub const LOGGED_OUT: &str = "logged_out";

/// Search and campaign query parameters the SDK lifts out of the page URL.
pub const CAMPAIGN_PARAMETERS: [&str; 10] = [
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "gclid",
    "fbclid",
    "msclkid",
    "dclid",
    "ttclid",
];

/// One request body: the events one page had queued for one visitor.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct Batch {
    /// Always [`VERSION`].
    pub v: u32,
    pub deployment_id: String,
    /// The visitor's id from the first-party cookie: a UUID.
    pub visitor_id: String,
    /// Device time at which the batch was sent.
    pub sent_at: i64,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub enum EventKind {
    /// `ac('pageview')`, named [`PAGE_VIEWED`].
    Pageview,
    /// `ac('record', name, ...)`: a custom event.
    Record,
    /// `ac('identify', loginId, traits)`, named [`IDENTIFIED`].
    Identify,
    /// `ac('identify', null)`, named [`LOGGED_OUT`]: the visitor's identity is cleared.
    Logout,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Pageview => "pageview",
            EventKind::Record => "record",
            EventKind::Identify => "identify",
            EventKind::Logout => "logout",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct Event {
    /// Client-generated, time-ordered id (UUID version 7 layout). It stays the same
    /// through every retry, so that the collector stores the event once.
    pub id: String,
    pub kind: EventKind,
    pub name: String,
    /// Device time of the event.
    pub time: i64,
    /// The session the SDK believes it is in. Advisory: the collector's rule decides.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub session_id: Option<String>,
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub page: Option<Page>,
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub context: Option<Context>,
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub login_id: Option<String>,
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Map::is_empty")
    )]
    pub attributes: Map<AttributeValue>,
    /// The visitor's traits as known when the event was recorded.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Map::is_empty")
    )]
    pub traits: Map<AttributeValue>,
}

/// The page an event happened on.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase", default))]
pub struct Page {
    /// Without the deployment's excluded query parameters, and without the fragment
    /// unless `keepUrlFragment` is set.
    pub url: String,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "String::is_empty"))]
    pub title: String,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "String::is_empty"))]
    pub referrer: String,
    /// `<html lang>`.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "String::is_empty"))]
    pub lang: String,
    /// `<meta name="keywords">`.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "String::is_empty"))]
    pub keywords: String,
    /// The site-search term, from the first `searchQueryParameters` entry present.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub search_query: Option<String>,
    /// UTM and click-id parameters found in the URL (see [`CAMPAIGN_PARAMETERS`]).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Map::is_empty"))]
    pub campaign: Map<String>,
}

/// What the browser tells about itself.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase", default))]
pub struct Context {
    /// `navigator.language`.
    pub browser_lang: String,
    pub screen_width: u32,
    pub screen_height: u32,
    /// `devicePixelRatio` × 100, rounded: 2.0 is 200.
    pub screen_density: u32,
    pub viewport_width: u32,
    pub viewport_height: u32,
}

/// An attribute or trait value: a flat string, number or boolean.
///
/// Deserialising is hand-written (see `attribute_value_serde`): serde's `untagged` would
/// buffer every value and try each variant in turn, formatting an error message for each
/// miss, which showed up as a large share of the collector's per-event CPU.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(untagged))]
pub enum AttributeValue {
    Bool(bool),
    Number(Number),
    String(String),
}

impl AttributeValue {
    /// The type name the Journey API uses in `CustomEventAttribute.dataType`.
    pub fn data_type(&self) -> &'static str {
        match self {
            AttributeValue::Bool(_) => "Boolean",
            AttributeValue::Number(_) => "Number",
            AttributeValue::String(_) => "String",
        }
    }

    /// The value as the Journey API shows it: always text.
    pub fn to_text(&self) -> String {
        match self {
            AttributeValue::Bool(b) => if *b { "true" } else { "false" }.to_owned(),
            AttributeValue::Number(n) => n.as_str().to_owned(),
            AttributeValue::String(s) => s.clone(),
        }
    }
}

/// A finite JSON number kept as its text. The SDK gets the text from JavaScript's own
/// number formatting, which keeps float formatting code out of the wasm module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number(String);

impl Number {
    /// Accepts text in the JSON number grammar only.
    pub fn parse(text: &str) -> Option<Number> {
        if is_json_number(text) {
            Some(Number(text.to_owned()))
        } else {
            None
        }
    }

    /// A finite number with JavaScript's own text for it (`'' + n`), which is always in
    /// the JSON number grammar: the SDK's module needs no grammar check (the collector
    /// checks what it receives anyway).
    pub fn from_js(value: f64, text: String) -> Option<Number> {
        value.is_finite().then_some(Number(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_json_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < bytes.len() && bytes[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if bytes.first() == Some(&b'-') {
        i += 1;
    }
    if bytes.get(i) == Some(&b'0') {
        i += 1;
    } else if !digits(&mut i) {
        return false;
    }
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == bytes.len()
}

#[cfg(feature = "serde")]
mod number_serde {
    use super::Number;

    impl serde::Serialize for Number {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            if let Ok(i) = self.0.parse::<i64>() {
                serializer.serialize_i64(i)
            } else {
                let f: f64 = self.0.parse().map_err(serde::ser::Error::custom)?;
                serializer.serialize_f64(f)
            }
        }
    }

    impl<'de> serde::Deserialize<'de> for Number {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl serde::de::Visitor<'_> for Visitor {
                type Value = Number;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a finite number")
                }
                fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Number, E> {
                    Ok(Number(v.to_string()))
                }
                fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Number, E> {
                    Ok(Number(v.to_string()))
                }
                fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Number, E> {
                    if v.is_finite() {
                        Ok(Number(v.to_string()))
                    } else {
                        Err(E::custom("number is not finite"))
                    }
                }
            }
            deserializer.deserialize_any(Visitor)
        }
    }
}

#[cfg(feature = "serde")]
mod attribute_value_serde {
    use super::{AttributeValue, Number};
    use serde::de::{Error, Unexpected};

    /// Every refusal carries "did not match any variant", the text serde's `untagged`
    /// derive used before, so that clients matching on it keep working.
    fn refuse<E: Error>(unexpected: Unexpected<'_>) -> E {
        E::custom(format_args!(
            "attribute value did not match any variant: expected a string, number or boolean, found {unexpected}"
        ))
    }

    impl<'de> serde::Deserialize<'de> for AttributeValue {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = AttributeValue;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a string, number or boolean")
                }
                fn visit_bool<E: Error>(self, v: bool) -> Result<AttributeValue, E> {
                    Ok(AttributeValue::Bool(v))
                }
                fn visit_i64<E: Error>(self, v: i64) -> Result<AttributeValue, E> {
                    Ok(AttributeValue::Number(Number(v.to_string())))
                }
                fn visit_u64<E: Error>(self, v: u64) -> Result<AttributeValue, E> {
                    Ok(AttributeValue::Number(Number(v.to_string())))
                }
                fn visit_f64<E: Error>(self, v: f64) -> Result<AttributeValue, E> {
                    // Same text as `Number`'s own deserialiser produces.
                    if v.is_finite() {
                        Ok(AttributeValue::Number(Number(v.to_string())))
                    } else {
                        Err(refuse(Unexpected::Other("a non-finite number")))
                    }
                }
                fn visit_str<E: Error>(self, v: &str) -> Result<AttributeValue, E> {
                    Ok(AttributeValue::String(v.to_owned()))
                }
                fn visit_string<E: Error>(self, v: String) -> Result<AttributeValue, E> {
                    Ok(AttributeValue::String(v))
                }
                fn visit_unit<E: Error>(self) -> Result<AttributeValue, E> {
                    Err(refuse(Unexpected::Other("null")))
                }
                fn visit_none<E: Error>(self) -> Result<AttributeValue, E> {
                    Err(refuse(Unexpected::Other("null")))
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    _seq: A,
                ) -> Result<AttributeValue, A::Error> {
                    Err(refuse(Unexpected::Other("an array")))
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    _map: A,
                ) -> Result<AttributeValue, A::Error> {
                    Err(refuse(Unexpected::Other("an object")))
                }
            }
            deserializer.deserialize_any(Visitor)
        }
    }
}

/// The collector's answer to a batch.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct BatchResponse {
    /// Events stored by this request.
    pub accepted: u32,
    /// Events that had been stored before (a retry): acknowledged, not stored again.
    pub duplicates: u32,
    /// Events refused; each has an `error` in `results`.
    pub rejected: u32,
    /// One entry per event of the batch, in the batch's order.
    pub results: Vec<EventResult>,
}

#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct EventResult {
    pub id: String,
    pub status: EventStatus,
    /// Why the event was rejected, naming the field.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub enum EventStatus {
    Accepted,
    Duplicate,
    Rejected,
}

#[cfg(test)]
mod tests;
