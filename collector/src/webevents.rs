//! The Journey API's `WebEventRequest`: one web event posted to
//! `POST /api/v2/journey/deployments/{deploymentId}/webevents`, by a browser or by a
//! site's server.
//!
//! A request is parsed here into what the SDK would have sent (a wire [`Event`]), so
//! that it then goes through the very same checks ([`crate::validate`]), enrichment,
//! identity resolution and session rule as the SDK's batches. What differs:
//!
//! - **Time.** `createdDate` is an ISO-8601 date with a time zone; the event happened
//!   then, on the server's clock (there is no `sentAt` to correct a device clock by).
//!   It may be at most [`MAX_CREATED_DATE_AGE_MS`] old and at most
//!   [`MAX_CREATED_DATE_AHEAD_MS`] ahead of the collector's clock. Left out, it is the
//!   time the collector received the request.
//! - **Id.** The request has no event id, so a retried request is stored twice: the
//!   collector gives each event a new UUID version 7 whose timestamp is `createdDate`.
//! - **Kind.** `page_viewed` is a pageview (it needs a `page` with an absolute http(s)
//!   URL), `identified` an identify and `logged_out` a logout, with the SDK's meaning
//!   for identity resolution; any other name is a custom event.
//! - **Request fields that the SDK does not send.** `referrerUrl` and `searchQuery`
//!   belong to the page (they are ignored without one); UTM and click-id parameters are
//!   read from `page.url`; `externalId` is the site's customer id (the SDK's
//!   `loginId`); `browser.lang` and the `device` screen size go where the SDK's context
//!   would put them. `userAgentString` replaces the `User-Agent` header (a server
//!   calling on a visitor's behalf sends its own); the browser and device that the
//!   collector parses from it win over `browser` and `device`, which are used only
//!   when there is no user agent to parse. The header stands in for a missing
//!   `userAgentString` only when the body names no `browser.family` either.
//! - **IP address.** `ipAddress` is believed only from a trusted proxy (the socket
//!   peer is in `trusted_proxies`): a server-side integration that reports its
//!   visitors' addresses must call from such an address. From anyone else it is
//!   ignored, and the client address is found as for batches
//!   ([`crate::enrich::client_ip`]).
//!
//! Unknown fields are ignored, `null` counts as absent, and every error names the
//! field (`createdDate: is more than 1 hour old`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use footpath_protocol::v1::{
    AttributeValue, Context, Event, EventKind, Map, Number, Page, CAMPAIGN_PARAMETERS, IDENTIFIED,
    LOGGED_OUT, PAGE_VIEWED,
};
use serde_json::Value;

use crate::enrich::user_agent::{DeviceCategory, UserAgentInfo};
use crate::model::EventFieldError;
use crate::validate::canonical_uuid;

/// How old `createdDate` may be.
pub const MAX_CREATED_DATE_AGE_MS: i64 = 60 * 60 * 1000;
/// How far `createdDate` may lie ahead of the collector's clock: a little slack for
/// clocks that are not quite in step.
pub const MAX_CREATED_DATE_AHEAD_MS: i64 = 60 * 1000;

/// The longest text accepted in a free-text field (user agent, URL, title...).
const MAX_TEXT_BYTES: usize = 4096;

/// A parsed `WebEventRequest`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebEventRequest {
    /// `customerCookieId` in canonical UUID form.
    pub customer_cookie_id: String,
    pub event_name: String,
    pub page: Option<RequestPage>,
    pub user_agent_string: Option<String>,
    pub browser: RequestBrowser,
    pub device: RequestDevice,
    pub search_query: Option<String>,
    pub ip_address: Option<IpAddr>,
    pub referrer_url: Option<String>,
    pub attributes: BTreeMap<String, AttributeValue>,
    pub traits: BTreeMap<String, AttributeValue>,
    pub external_id: Option<String>,
    /// `createdDate` in milliseconds since the epoch.
    pub created_ms: Option<i64>,
}

/// `RequestPage`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestPage {
    pub url: String,
    pub title: Option<String>,
    pub keywords: Option<String>,
    pub lang: Option<String>,
}

/// `WebEventBrowser` as a request carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestBrowser {
    pub family: Option<String>,
    pub version: Option<String>,
    pub lang: Option<String>,
}

/// `WebEventDevice` as a request carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDevice {
    pub category: Option<DeviceCategory>,
    pub device_type: Option<String>,
    pub is_mobile: Option<bool>,
    pub screen_height: Option<u32>,
    pub screen_width: Option<u32>,
    pub screen_density: Option<u32>,
    pub os_family: Option<String>,
    pub os_version: Option<String>,
    pub manufacturer: Option<String>,
}

type Object = serde_json::Map<String, Value>;

impl WebEventRequest {
    /// Parses a request body. The error names the offending field.
    pub fn parse(body: &Value) -> Result<WebEventRequest, String> {
        let Value::Object(object) = body else {
            return Err("body: must be a JSON object".to_owned());
        };
        let customer_cookie_id = match text(object, "", "customerCookieId")? {
            Some(id) => {
                canonical_uuid(&id).ok_or_else(|| "customerCookieId: must be a UUID".to_owned())?
            }
            None => return Err("customerCookieId: is required".to_owned()),
        };
        // The name's characters are checked with the SDK's rule in `validate`.
        let event_name =
            text(object, "", "eventName")?.ok_or_else(|| "eventName: is required".to_owned())?;
        let page = match object_field(object, "", "page")? {
            None => None,
            Some(page) => Some(RequestPage {
                url: text(page, "page.", "url")?
                    .ok_or_else(|| "page.url: is required".to_owned())?,
                title: text(page, "page.", "title")?,
                keywords: text(page, "page.", "keywords")?,
                lang: text(page, "page.", "lang")?,
            }),
        };
        let browser = match object_field(object, "", "browser")? {
            None => RequestBrowser::default(),
            Some(browser) => RequestBrowser {
                family: short_text(browser, "browser.", "family")?,
                version: short_text(browser, "browser.", "version")?,
                lang: text(browser, "browser.", "lang")?,
            },
        };
        let device = match object_field(object, "", "device")? {
            None => RequestDevice::default(),
            Some(device) => RequestDevice {
                category: match text(device, "device.", "category")? {
                    None => None,
                    Some(category) => Some(parse_device_category(&category).ok_or_else(|| {
                        "device.category: must be desktop, mobile, tablet or other".to_owned()
                    })?),
                },
                device_type: short_text(device, "device.", "type")?,
                is_mobile: boolean(device, "device.", "isMobile")?,
                screen_height: whole_number(device, "device.", "screenHeight")?,
                screen_width: whole_number(device, "device.", "screenWidth")?,
                screen_density: whole_number(device, "device.", "screenDensity")?,
                os_family: short_text(device, "device.", "osFamily")?,
                os_version: short_text(device, "device.", "osVersion")?,
                manufacturer: short_text(device, "device.", "manufacturer")?,
            },
        };
        let ip_address = match text(object, "", "ipAddress")? {
            None => None,
            Some(address) => Some(
                address
                    .parse::<IpAddr>()
                    .map_err(|_| "ipAddress: is not an IP address".to_owned())?,
            ),
        };
        let created_ms = match text(object, "", "createdDate")? {
            None => None,
            Some(date) => Some(crate::timefmt::parse_ms(&date).ok_or_else(|| {
                "createdDate: must be an ISO-8601 date and time with a time zone, \
                 such as 2026-11-24T06:15:14.123Z"
                    .to_owned()
            })?),
        };
        Ok(WebEventRequest {
            customer_cookie_id,
            event_name,
            page,
            user_agent_string: text(object, "", "userAgentString")?,
            browser,
            device,
            search_query: text(object, "", "searchQuery")?,
            ip_address,
            referrer_url: text(object, "", "referrerUrl")?,
            attributes: custom_attributes(object, "attributes")?,
            traits: custom_attributes(object, "traits")?,
            external_id: text(object, "", "externalId")?,
            created_ms,
        })
    }

    /// The SDK's kind for the event's name (see the module documentation).
    pub fn kind(&self) -> EventKind {
        match self.event_name.as_str() {
            PAGE_VIEWED => EventKind::Pageview,
            IDENTIFIED => EventKind::Identify,
            LOGGED_OUT => EventKind::Logout,
            _ => EventKind::Record,
        }
    }

    /// The event as the SDK would have sent it, with this id and time.
    pub fn to_wire_event(&self, id: &str, time_ms: i64) -> Event {
        let page = self.page.as_ref().map(|page| Page {
            url: page.url.clone(),
            title: page.title.clone().unwrap_or_default(),
            referrer: self.referrer_url.clone().unwrap_or_default(),
            lang: page.lang.clone().unwrap_or_default(),
            keywords: page.keywords.clone().unwrap_or_default(),
            search_query: self.search_query.clone(),
            campaign: campaign_parameters(&page.url),
        });
        let context = Context {
            browser_lang: self.browser.lang.clone().unwrap_or_default(),
            screen_width: self.device.screen_width.unwrap_or(0),
            screen_height: self.device.screen_height.unwrap_or(0),
            screen_density: self.device.screen_density.unwrap_or(0),
            viewport_width: 0,
            viewport_height: 0,
        };
        let to_map = |attributes: &BTreeMap<String, AttributeValue>| -> Map<AttributeValue> {
            attributes
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect()
        };
        Event {
            id: id.to_owned(),
            kind: self.kind(),
            name: self.event_name.clone(),
            time: time_ms,
            session_id: None,
            page,
            context: (context != Context::default()).then_some(context),
            login_id: self.external_id.clone(),
            attributes: to_map(&self.attributes),
            traits: to_map(&self.traits),
        }
    }

    /// The browser and device as the request describes them, for when there is no user
    /// agent string to parse; `None` when the request names no browser family either.
    pub fn described_user_agent(&self) -> Option<UserAgentInfo> {
        let family = self.browser.family.clone()?;
        let category = self.device.category.unwrap_or(DeviceCategory::Other);
        Some(UserAgentInfo {
            browser_family: family,
            browser_version: self.browser.version.clone(),
            os_family: self
                .device
                .os_family
                .clone()
                .unwrap_or_else(|| "Other".to_owned()),
            os_version: self.device.os_version.clone(),
            device_category: category,
            device_type: self
                .device
                .device_type
                .clone()
                .unwrap_or_else(|| "Other".to_owned()),
            manufacturer: self.device.manufacturer.clone(),
            is_mobile: self.device.is_mobile.unwrap_or(matches!(
                category,
                DeviceCategory::Mobile | DeviceCategory::Tablet
            )),
        })
    }
}

/// Checks `createdDate` against the collector's clock.
pub fn check_created_date(created_ms: i64, now_ms: i64) -> Result<(), String> {
    if created_ms < now_ms.saturating_sub(MAX_CREATED_DATE_AGE_MS) {
        return Err("createdDate: is more than 1 hour old".to_owned());
    }
    if created_ms > now_ms.saturating_add(MAX_CREATED_DATE_AHEAD_MS) {
        return Err("createdDate: is more than 60 seconds in the future".to_owned());
    }
    Ok(())
}

/// A new UUID version 7 whose timestamp is `time_ms` (clamped to the epoch).
pub fn event_id_at(time_ms: i64) -> String {
    let ms = u64::try_from(time_ms).unwrap_or(0);
    let timestamp = uuid::Timestamp::from_unix(
        uuid::NoContext,
        ms / 1000,
        u32::try_from(ms % 1000).unwrap_or(0) * 1_000_000,
    );
    uuid::Uuid::new_v7(timestamp).hyphenated().to_string()
}

/// Words an event's validation error ([`crate::validate::validate_event`],
/// [`crate::limits::EventLimits::check_event`]) with the request's field name
/// (`eventName: ...` where the SDK's batch answer says `events[0].name: ...`).
pub fn request_field_error(error: &EventFieldError) -> String {
    let renamed = [
        ("name", "eventName"),
        ("time", "createdDate"),
        ("loginId", "externalId"),
        ("page.referrer", "referrerUrl"),
        ("page.searchQuery", "searchQuery"),
        ("context.browserLang", "browser.lang"),
    ];
    let field = renamed
        .iter()
        .find(|(from, _)| *from == error.path)
        .map_or(error.path.as_str(), |(_, to)| to);
    format!("{field}: {}", error.reason)
}

/// The UTM and click-id parameters of a URL, as the SDK lifts them out of the page URL.
fn campaign_parameters(url: &str) -> Map<String> {
    let Ok(url) = url::Url::parse(url) else {
        return Map::new();
    };
    let mut campaign = Map::new();
    for (name, value) in url.query_pairs() {
        if CAMPAIGN_PARAMETERS.contains(&name.as_ref())
            && !value.is_empty()
            && campaign.get(&name).is_none()
        {
            campaign.insert(name.into_owned(), value.into_owned());
        }
    }
    campaign
}

fn parse_device_category(text: &str) -> Option<DeviceCategory> {
    match text.to_ascii_lowercase().as_str() {
        "desktop" => Some(DeviceCategory::Desktop),
        "mobile" => Some(DeviceCategory::Mobile),
        "tablet" => Some(DeviceCategory::Tablet),
        "other" => Some(DeviceCategory::Other),
        _ => None,
    }
}

/// A string field; `null` and empty (after trimming) strings count as absent.
/// Longest browser or device description (`browser.family`, `device.osVersion`...):
/// they are stored with every event, in place of a parsed user agent.
pub const MAX_DESCRIPTION_BYTES: usize = 128;

/// [`text`] of at most [`MAX_DESCRIPTION_BYTES`].
fn short_text(object: &Object, prefix: &str, name: &str) -> Result<Option<String>, String> {
    let value = text(object, prefix, name)?;
    if value
        .as_ref()
        .is_some_and(|value| value.len() > MAX_DESCRIPTION_BYTES)
    {
        return Err(format!(
            "{prefix}{name}: is longer than {MAX_DESCRIPTION_BYTES} bytes"
        ));
    }
    Ok(value)
}

fn text(object: &Object, prefix: &str, name: &str) -> Result<Option<String>, String> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.len() > MAX_TEXT_BYTES => Err(format!(
            "{prefix}{name}: is longer than {MAX_TEXT_BYTES} bytes"
        )),
        Some(Value::String(text)) => {
            let text = text.trim();
            Ok((!text.is_empty()).then(|| text.to_owned()))
        }
        Some(_) => Err(format!("{prefix}{name}: must be a string")),
    }
}

fn boolean(object: &Object, prefix: &str, name: &str) -> Result<Option<bool>, String> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(_) => Err(format!("{prefix}{name}: must be true or false")),
    }
}

fn whole_number(object: &Object, prefix: &str, name: &str) -> Result<Option<u32>, String> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .and_then(|number| u32::try_from(number).ok())
            .map(Some)
            .ok_or_else(|| format!("{prefix}{name}: must be a whole number from 0")),
    }
}

fn object_field<'a>(
    object: &'a Object,
    prefix: &str,
    name: &str,
) -> Result<Option<&'a Object>, String> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(inner)) => Ok(Some(inner)),
        Some(_) => Err(format!("{prefix}{name}: must be an object")),
    }
}

/// `attributes` or `traits`: `{"name": {"dataType": "String", "value": "text"}}`.
/// `dataType` is `String`, `Number`, `Integer` or `Boolean` (any case); the value is
/// text as in the Journey API, or a JSON value of the type. Without a `dataType` the
/// JSON type of the value decides.
fn custom_attributes(
    object: &Object,
    field: &str,
) -> Result<BTreeMap<String, AttributeValue>, String> {
    let Some(attributes) = object_field(object, "", field)? else {
        return Ok(BTreeMap::new());
    };
    let mut parsed = BTreeMap::new();
    for (name, attribute) in attributes {
        let path = format!("{field}.{name}");
        let Value::Object(attribute) = attribute else {
            return Err(format!("{path}: must be an object with dataType and value"));
        };
        let data_type = match attribute.get("dataType") {
            None | Some(Value::Null) => None,
            Some(Value::String(data_type)) => Some(data_type.to_ascii_lowercase()),
            Some(_) => return Err(format!("{path}.dataType: must be a string")),
        };
        let value = attribute.get("value").unwrap_or(&Value::Null);
        let bad_value = |expected: &str| format!("{path}.value: is not {expected}");
        let value = match (data_type.as_deref(), value) {
            (_, Value::Null) => return Err(format!("{path}.value: is required")),
            (None | Some("string"), Value::String(text)) => AttributeValue::String(text.clone()),
            (Some("string"), other) => AttributeValue::String(other.to_string()),
            (None | Some("number"), Value::Number(number)) => AttributeValue::Number(
                Number::parse(&number.to_string()).ok_or_else(|| bad_value("a number"))?,
            ),
            (Some("number"), Value::String(text)) => AttributeValue::Number(
                Number::parse(text.trim()).ok_or_else(|| bad_value("a number"))?,
            ),
            (Some("integer"), Value::Number(number)) if number.is_i64() || number.is_u64() => {
                AttributeValue::Number(
                    Number::parse(&number.to_string()).ok_or_else(|| bad_value("an integer"))?,
                )
            }
            (Some("integer"), Value::String(text))
                if text
                    .trim()
                    .trim_start_matches('-')
                    .bytes()
                    .all(|b| b.is_ascii_digit()) =>
            {
                AttributeValue::Number(
                    Number::parse(text.trim()).ok_or_else(|| bad_value("an integer"))?,
                )
            }
            (None | Some("boolean"), Value::Bool(value)) => AttributeValue::Bool(*value),
            (Some("boolean"), Value::String(text)) => match text.trim() {
                "true" => AttributeValue::Bool(true),
                "false" => AttributeValue::Bool(false),
                _ => return Err(bad_value("true or false")),
            },
            (Some("number"), _) => return Err(bad_value("a number")),
            (Some("integer"), _) => return Err(bad_value("an integer")),
            (Some("boolean"), _) => return Err(bad_value("true or false")),
            (None, _) => return Err(bad_value("a string, number or boolean")),
            (Some(_), _) => {
                return Err(format!(
                    "{path}.dataType: must be String, Number, Integer or Boolean"
                ))
            }
        };
        parsed.insert(name.clone(), value);
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const COOKIE: &str = "0b7e0c2a-5b9e-4a57-9f3e-1c2d3e4f5a6b";

    fn parse(extra: Value) -> Result<WebEventRequest, String> {
        let mut body = json!({"customerCookieId": COOKIE, "eventName": "cart_added"});
        for (name, value) in extra.as_object().unwrap() {
            body[name] = value.clone();
        }
        WebEventRequest::parse(&body)
    }

    #[test]
    fn a_full_request() {
        let request = parse(json!({
            "customerCookieId": COOKIE.to_uppercase(),
            "eventName": "page_viewed",
            "page": {"url": "https://shop.example/a?utm_source=news&gclid=g1&q=x",
                     "title": "A", "keywords": "k", "lang": "en"},
            "userAgentString": "UA",
            "browser": {"family": "Firefox", "version": "120.0", "lang": "en-GB"},
            "device": {"category": "Mobile", "type": "iPhone", "isMobile": true,
                       "screenHeight": 800, "screenWidth": 400, "screenDensity": 300,
                       "osFamily": "iOS", "osVersion": "17", "manufacturer": "Apple"},
            "searchQuery": "boots",
            "ipAddress": "203.0.113.9",
            "referrerUrl": "https://www.google.com/",
            "attributes": {"price": {"dataType": "Number", "value": "9.50"},
                           "n": {"dataType": "Integer", "value": 3},
                           "ok": {"dataType": "Boolean", "value": "true"},
                           "s": {"dataType": "String", "value": "x"},
                           "inferred": {"value": false}},
            "traits": {"email": {"dataType": "String", "value": "ada@example.com"}},
            "externalId": "user-1",
            "createdDate": "2026-11-24T06:15:14.123Z",
            "someFieldFromTheFuture": {"ignored": true},
            "sessionId": null,
        }))
        .unwrap();
        assert_eq!(request.customer_cookie_id, COOKIE);
        assert_eq!(request.kind(), EventKind::Pageview);
        assert_eq!(request.ip_address, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(request.created_ms, Some(1_795_500_914_123));
        assert_eq!(request.device.category, Some(DeviceCategory::Mobile));
        let event = request.to_wire_event("id-1", 42);
        let page = event.page.as_ref().unwrap();
        assert_eq!(page.referrer, "https://www.google.com/");
        assert_eq!(page.search_query.as_deref(), Some("boots"));
        let campaign: Vec<(&str, &str)> = page
            .campaign
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(campaign, [("utm_source", "news"), ("gclid", "g1")]);
        let context = event.context.as_ref().unwrap();
        assert_eq!(
            (
                context.browser_lang.as_str(),
                context.screen_width,
                context.screen_height,
                context.screen_density
            ),
            ("en-GB", 400, 800, 300)
        );
        assert_eq!(event.login_id.as_deref(), Some("user-1"));
        let attributes: Vec<(String, &str, String)> = event
            .attributes
            .iter()
            .map(|(name, value)| (name.clone(), value.data_type(), value.to_text()))
            .collect();
        assert_eq!(
            attributes,
            [
                ("inferred".to_owned(), "Boolean", "false".to_owned()),
                ("n".to_owned(), "Number", "3".to_owned()),
                ("ok".to_owned(), "Boolean", "true".to_owned()),
                ("price".to_owned(), "Number", "9.50".to_owned()),
                ("s".to_owned(), "String", "x".to_owned()),
            ]
        );
        let described = request.described_user_agent().unwrap();
        assert_eq!(described.browser_family, "Firefox");
        assert_eq!(described.os_family, "iOS");
        assert!(described.is_mobile);
    }

    #[test]
    fn a_minimal_request() {
        let request = parse(json!({})).unwrap();
        assert_eq!(request.kind(), EventKind::Record);
        assert_eq!(request.created_ms, None);
        assert_eq!(request.described_user_agent(), None);
        let event = request.to_wire_event("id-1", 42);
        assert_eq!(event.page, None);
        assert_eq!(event.context, None);
        assert!(event.attributes.is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        let check = |extra: Value, expected: &str| {
            assert_eq!(parse(extra.clone()).unwrap_err(), expected, "{extra}");
        };
        check(
            json!({"customerCookieId": "nope"}),
            "customerCookieId: must be a UUID",
        );
        check(
            json!({"customerCookieId": null}),
            "customerCookieId: is required",
        );
        check(json!({"eventName": ""}), "eventName: is required");
        check(json!({"eventName": 7}), "eventName: must be a string");
        check(
            json!({"page": "https://a.example/"}),
            "page: must be an object",
        );
        check(json!({"page": {"title": "t"}}), "page.url: is required");
        check(
            json!({"createdDate": "2026-11-24 06:15"}),
            "createdDate: must be an ISO-8601 date and time with a time zone, such as 2026-11-24T06:15:14.123Z",
        );
        check(
            json!({"ipAddress": "localhost"}),
            "ipAddress: is not an IP address",
        );
        check(
            json!({"device": {"category": "fridge"}}),
            "device.category: must be desktop, mobile, tablet or other",
        );
        check(
            json!({"device": {"screenWidth": -1}}),
            "device.screenWidth: must be a whole number from 0",
        );
        check(
            json!({"device": {"isMobile": "yes"}}),
            "device.isMobile: must be true or false",
        );
        check(
            json!({"attributes": {"price": {"dataType": "Number", "value": "cheap"}}}),
            "attributes.price.value: is not a number",
        );
        check(
            json!({"attributes": {"n": {"dataType": "Integer", "value": "1.5"}}}),
            "attributes.n.value: is not an integer",
        );
        check(
            json!({"traits": {"vip": {"dataType": "Boolean", "value": "maybe"}}}),
            "traits.vip.value: is not true or false",
        );
        check(
            json!({"traits": {"vip": {"dataType": "Date", "value": "x"}}}),
            "traits.vip.dataType: must be String, Number, Integer or Boolean",
        );
        check(
            json!({"traits": {"vip": {"dataType": "String"}}}),
            "traits.vip.value: is required",
        );
        check(
            json!({"attributes": {"color": "red"}}),
            "attributes.color: must be an object with dataType and value",
        );
        assert_eq!(
            WebEventRequest::parse(&json!([])).unwrap_err(),
            "body: must be a JSON object"
        );
    }

    #[test]
    fn created_date_window() {
        let now = 1_795_500_914_123;
        let check = |offset: i64, expected: Result<(), &str>| {
            assert_eq!(
                check_created_date(now + offset, now),
                expected.map_err(str::to_owned),
                "{offset}"
            );
        };
        check(0, Ok(()));
        check(-MAX_CREATED_DATE_AGE_MS, Ok(()));
        check(
            -MAX_CREATED_DATE_AGE_MS - 1,
            Err("createdDate: is more than 1 hour old"),
        );
        check(MAX_CREATED_DATE_AHEAD_MS, Ok(()));
        check(
            MAX_CREATED_DATE_AHEAD_MS + 1,
            Err("createdDate: is more than 60 seconds in the future"),
        );
    }

    #[test]
    fn event_ids_are_uuid_v7_at_the_created_date() {
        let id = event_id_at(1_795_500_914_123);
        let uuid = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        let (seconds, nanos) = uuid.get_timestamp().unwrap().to_unix();
        assert_eq!((seconds, nanos / 1_000_000), (1_795_500_914, 123));
        assert_ne!(event_id_at(1_795_500_914_123), id, "ids are unique");
    }

    #[test]
    fn validation_errors_are_renamed_to_request_fields() {
        // `from` is how the SDK's batch answer words the same error.
        let check = |from: &str, to: &str| {
            let (path, reason) = from
                .strip_prefix("events[0].")
                .and_then(|rest| rest.split_once(": "))
                .unwrap();
            let error = EventFieldError::new(0, path, reason);
            assert_eq!(error.to_string(), from);
            assert_eq!(request_field_error(&error), to);
        };
        check(
            "events[0].name: may contain only letters, digits and _",
            "eventName: may contain only letters, digits and _",
        );
        check("events[0].page.url: is empty", "page.url: is empty");
        check(
            "events[0].page: is required for a pageview",
            "page: is required for a pageview",
        );
        check(
            "events[0].attributes.bad-name: may contain only letters, digits and _",
            "attributes.bad-name: may contain only letters, digits and _",
        );
        check(
            "events[0].loginId: is longer than 1024 bytes",
            "externalId: is longer than 1024 bytes",
        );
        check(
            "events[0].time: is more than 24 hours old",
            "createdDate: is more than 24 hours old",
        );
    }
}
