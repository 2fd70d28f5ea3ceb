//! Checks of the events of an incoming batch.
//!
//! Each event is checked on its own, so that one bad event is rejected while its valid
//! neighbours are stored. Error messages name the offending field with its path in the
//! batch (`events[2].name: may contain only letters, digits and _`), because the same
//! text reaches the SDK's developer console.

use std::collections::BTreeMap;

use footpath_protocol::v1::{
    validate_attribute_name, validate_event_name, AttributeValue, Event, EventKind, Map, Page,
    IDENTIFIED, LOGGED_OUT, MAX_ATTRIBUTES, MAX_VALUE_BYTES, PAGE_VIEWED,
};

use crate::enrich::geo::Geolocation;
use crate::enrich::referrer::ReferrerCache;
use crate::enrich::user_agent::UserAgentInfo;
use crate::model::{EventFieldError, NewEvent};

/// How far an event's device time may lie after the batch's `sentAt`: a little slack
/// for the time between building and sending the batch, no more.
pub const MAX_TIME_AFTER_SENT_AT_MS: i64 = 60_000;

/// What the checks of one event need to know about its batch and the server.
#[derive(Debug, Clone)]
pub struct BatchContext {
    /// The batch's `sentAt`, in device time.
    pub sent_at_ms: i64,
    /// The server's time when the batch arrived.
    pub now_ms: i64,
    pub max_event_age_ms: i64,
    pub user_agent: Option<String>,
    /// The client's address as it may be stored: `None` when the deployment does not
    /// store IP addresses.
    pub ip_address: Option<String>,
    /// Parsed once per request, and stored with each event.
    pub user_agent_info: Option<UserAgentInfo>,
    /// Looked up once per request, and stored with each event.
    pub geolocation: Option<Geolocation>,
}

impl BatchContext {
    /// The device's clock error, added to device times to put them on the server's
    /// clock. The transmission delay is ignored: it is small next to real clock errors.
    pub fn skew_correction_ms(&self) -> i64 {
        self.now_ms.saturating_sub(self.sent_at_ms)
    }
}

/// The canonical (lowercase, hyphenated) form of a UUID, or `None` if `text` is not one.
pub fn canonical_uuid(text: &str) -> Option<String> {
    uuid::Uuid::try_parse(text)
        .ok()
        .map(|uuid| uuid.hyphenated().to_string())
}

/// Checks the event at `index` of its batch and turns it into what the store keeps.
pub fn validate_event(
    index: usize,
    event: &Event,
    batch: &BatchContext,
) -> Result<NewEvent, EventFieldError> {
    validate_event_with_cache(index, event, batch, &mut ReferrerCache::default())
}

/// [`validate_event`] for an event of a batch whose events share `referrers`, so that
/// a referrer the batch repeats is parsed and looked up once.
pub fn validate_event_with_cache(
    index: usize,
    event: &Event,
    batch: &BatchContext,
    referrers: &mut ReferrerCache,
) -> Result<NewEvent, EventFieldError> {
    let field = |name: &str, reason: &str| EventFieldError::new(index, name, reason);

    let id = canonical_uuid(&event.id).ok_or_else(|| field("id", "must be a UUID"))?;

    let expected_name = match event.kind {
        EventKind::Record => None,
        EventKind::Pageview => Some(PAGE_VIEWED),
        EventKind::Identify => Some(IDENTIFIED),
        EventKind::Logout => Some(LOGGED_OUT),
    };
    match expected_name {
        None => validate_event_name(&event.name).map_err(|error| field("name", error.reason()))?,
        Some(expected) if event.name != expected => {
            let reason = format!(
                "must be \"{expected}\" for an event of kind {}",
                event.kind.as_str()
            );
            return Err(field("name", &reason));
        }
        Some(_) => {}
    }

    // A pageview's URL, parsed once for both the check and the referrer's medium.
    let mut page_url = None;
    if event.kind == EventKind::Pageview {
        let page = event
            .page
            .as_ref()
            .ok_or_else(|| field("page", "is required for a pageview"))?;
        page_url = Some(validate_page_url(page).map_err(|reason| field("page.url", reason))?);
    }

    validate_attributes(&event.attributes)
        .map_err(|(name, reason)| field(&format!("attributes{name}"), &reason))?;
    validate_attributes(&event.traits)
        .map_err(|(name, reason)| field(&format!("traits{name}"), &reason))?;
    if let Some(login_id) = &event.login_id {
        if login_id.len() > MAX_VALUE_BYTES {
            return Err(field("loginId", "is longer than 1024 bytes"));
        }
    }

    if event.time > batch.sent_at_ms.saturating_add(MAX_TIME_AFTER_SENT_AT_MS) {
        return Err(field(
            "time",
            "is more than a minute after the batch's sentAt",
        ));
    }
    let time_ms = event.time.saturating_add(batch.skew_correction_ms());
    if time_ms < batch.now_ms.saturating_sub(batch.max_event_age_ms) {
        let hours = batch.max_event_age_ms / 3_600_000;
        return Err(field("time", &format!("is more than {hours} hours old")));
    }

    Ok(NewEvent {
        id,
        kind: event.kind,
        name: event.name.clone(),
        time_ms,
        client_time_ms: event.time,
        received_ms: batch.now_ms,
        page: event.page.clone(),
        context: event.context.clone(),
        login_id: event.login_id.clone(),
        attributes: sorted(&event.attributes),
        traits: sorted(&event.traits),
        user_agent: batch.user_agent.clone(),
        ip_address: batch.ip_address.clone(),
        user_agent_info: batch.user_agent_info.clone(),
        geolocation: batch.geolocation.clone(),
        // The referrer depends on the event's page, so it is classified per event (with
        // what the batch's other events share taken from `referrers`).
        referrer_info: event
            .page
            .as_ref()
            .and_then(|page| referrers.classify(page, page_url.as_ref())),
        // Decided by the batch handler, which knows the deployment's identity secret.
        identity_verified: false,
        identity_proof: Default::default(),
    })
}

fn validate_page_url(page: &Page) -> Result<url::Url, &'static str> {
    if page.url.is_empty() {
        return Err("is empty");
    }
    match url::Url::parse(&page.url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(url),
        _ => Err("must be an absolute http or https URL"),
    }
}

/// On failure returns the offending part of the field name (`.color`, or empty for the
/// whole map) and the reason.
fn validate_attributes(attributes: &Map<AttributeValue>) -> Result<(), (String, String)> {
    if attributes.len() > MAX_ATTRIBUTES {
        let reason = format!("has more than {MAX_ATTRIBUTES} entries");
        return Err((String::new(), reason));
    }
    for (name, value) in attributes.iter() {
        validate_attribute_name(name)
            .map_err(|error| (format!(".{name}"), error.reason().to_owned()))?;
        if let AttributeValue::String(text) = value {
            if text.len() > MAX_VALUE_BYTES {
                let reason = format!("is longer than {MAX_VALUE_BYTES} bytes");
                return Err((format!(".{name}"), reason));
            }
        }
    }
    Ok(())
}

/// Attributes by name, so that the API lists them in a stable order.
fn sorted(attributes: &Map<AttributeValue>) -> BTreeMap<String, AttributeValue> {
    attributes
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use footpath_protocol::v1::Number;

    const NOW: i64 = 1_795_500_000_000;
    const HOUR: i64 = 3_600_000;

    fn batch_context(sent_at_ms: i64) -> BatchContext {
        BatchContext {
            sent_at_ms,
            now_ms: NOW,
            max_event_age_ms: 24 * HOUR,
            user_agent: Some("UA".into()),
            ip_address: Some("127.0.0.1".into()),
            user_agent_info: None,
            geolocation: None,
        }
    }

    fn record(name: &str) -> Event {
        Event {
            id: "0190b7a0-0000-7000-8000-000000000001".into(),
            kind: EventKind::Record,
            name: name.into(),
            time: NOW,
            session_id: None,
            page: None,
            context: None,
            login_id: None,
            attributes: Map::new(),
            traits: Map::new(),
        }
    }

    fn pageview(url: &str) -> Event {
        Event {
            kind: EventKind::Pageview,
            name: PAGE_VIEWED.into(),
            page: Some(Page {
                url: url.into(),
                ..Page::default()
            }),
            ..record("x")
        }
    }

    /// Checks an event against the expected error, or `None` for "accepted".
    fn check(event: Event, expected_error: Option<&str>) {
        let result = validate_event(3, &event, &batch_context(NOW));
        assert_eq!(
            result.err().map(|error| error.to_string()).as_deref(),
            expected_error,
            "{event:?}"
        );
    }

    #[test]
    fn names_ids_and_pages() {
        check(record("order_completed"), None);
        check(
            record("order completed"),
            Some("events[3].name: may contain only letters, digits and _"),
        );
        check(record(""), Some("events[3].name: is empty"));
        check(
            record(&"a".repeat(65)),
            Some("events[3].name: is longer than 64 bytes"),
        );
        check(
            Event {
                id: "nope".into(),
                ..record("ok")
            },
            Some("events[3].id: must be a UUID"),
        );
        check(pageview("https://shop.example/a?b=c"), None);
        check(pageview(""), Some("events[3].page.url: is empty"));
        check(
            pageview("/relative"),
            Some("events[3].page.url: must be an absolute http or https URL"),
        );
        check(
            pageview("ftp://shop.example/"),
            Some("events[3].page.url: must be an absolute http or https URL"),
        );
        check(
            Event {
                page: None,
                ..pageview("https://a.example/")
            },
            Some("events[3].page: is required for a pageview"),
        );
        check(
            Event {
                name: "viewed".into(),
                ..pageview("https://a.example/")
            },
            Some("events[3].name: must be \"page_viewed\" for an event of kind pageview"),
        );
        check(
            Event {
                kind: EventKind::Identify,
                ..record("identified")
            },
            None,
        );
        check(
            Event {
                kind: EventKind::Logout,
                ..record("identified")
            },
            Some("events[3].name: must be \"logged_out\" for an event of kind logout"),
        );
    }

    #[test]
    fn attributes() {
        let with = |name: &str, value: AttributeValue| {
            let mut event = record("ok");
            event.attributes.insert(name.into(), value);
            event
        };
        check(
            with(
                "price",
                AttributeValue::Number(Number::parse("9.5").unwrap()),
            ),
            None,
        );
        check(
            with("bad-name", AttributeValue::Bool(true)),
            Some("events[3].attributes.bad-name: may contain only letters, digits and _"),
        );
        check(
            with("long", AttributeValue::String("x".repeat(1025))),
            Some("events[3].attributes.long: is longer than 1024 bytes"),
        );
        let mut many = record("ok");
        for i in 0..=MAX_ATTRIBUTES {
            many.traits
                .insert(format!("t{i}"), AttributeValue::Bool(true));
        }
        check(many, Some("events[3].traits: has more than 50 entries"));
    }

    #[test]
    fn times_are_corrected_by_the_clock_skew() {
        // The device's clock is 2 hours behind: its "now" is NOW - 2h.
        let device_now = NOW - 2 * HOUR;
        let event = Event {
            time: device_now - 1_000,
            ..record("ok")
        };
        let stored = validate_event(0, &event, &batch_context(device_now)).unwrap();
        assert_eq!(stored.time_ms, NOW - 1_000);
        assert_eq!(stored.client_time_ms, device_now - 1_000);
        assert_eq!(stored.received_ms, NOW);

        let old = Event {
            time: device_now - 25 * HOUR,
            ..record("ok")
        };
        assert_eq!(
            validate_event(0, &old, &batch_context(device_now))
                .unwrap_err()
                .to_string(),
            "events[0].time: is more than 24 hours old"
        );
        let future = Event {
            time: NOW + 60_001,
            ..record("ok")
        };
        assert_eq!(
            validate_event(0, &future, &batch_context(NOW))
                .unwrap_err()
                .to_string(),
            "events[0].time: is more than a minute after the batch's sentAt"
        );
        let just_in_time = Event {
            time: NOW + 60_000,
            ..record("ok")
        };
        assert!(validate_event(0, &just_in_time, &batch_context(NOW)).is_ok());
    }
}
