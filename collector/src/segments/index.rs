//! The in-memory index of the active definitions, and the values that criteria test.
//!
//! The index is built from the stored definitions whenever they change (the store keeps
//! a generation number that every change moves) and is shared until the next change.
//! It answers, for one event, which journey patterns might match it, without looking
//! at the others:
//! - patterns with an `eventName` are filed under that name, patterns without one
//!   under "pageview";
//! - a pattern with a criterion on `attributes.<name>.value` is filed under that
//!   attribute name too (such a criterion never matches an event without the
//!   attribute), and is only a candidate for events that carry it.
//!
//! So the work per event grows with the patterns of its own name and attributes, not
//! with every definition of the collector. Definitions without journey patterns
//! (context only) are listed apart: they are evaluated when the visit changes (see
//! `store::segments_sql`), not per event.

use std::collections::{BTreeMap, HashMap};

use footpath_protocol::v1::{AttributeValue, Context, EventKind, Page};

use super::definition::{attribute_of_key, Definition, Details, Scope};
use super::StoredDefinition;
use crate::enrich::geo::Geolocation;
use crate::enrich::referrer::ReferrerInfo;
use crate::enrich::user_agent::UserAgentInfo;
use crate::journey;
use crate::store::NewEvent;

/// One journey pattern of one definition: `definitions[definition].journey[pattern]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PatternRef {
    pub definition: usize,
    pub pattern: usize,
}

/// Where a pattern is filed: the kind of events it looks at, and an attribute they must
/// carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Selector {
    Pageviews,
    Named(String),
}

#[derive(Debug, Default)]
pub struct Index {
    /// Changes whenever a definition is created, changed or deleted.
    pub generation: i64,
    /// The active definitions.
    pub definitions: Vec<StoredDefinition>,
    /// Patterns without an attribute criterion, by the events they look at.
    by_selector: HashMap<Selector, Vec<PatternRef>>,
    /// Patterns with an attribute criterion, by the events they look at and the
    /// attribute's name.
    by_selector_and_attribute: HashMap<(Selector, String), Vec<PatternRef>>,
    /// Definitions without journey patterns.
    pub context_only: Vec<usize>,
    /// Active Customer-scope segments, by id.
    pub customer_segments: HashMap<String, usize>,
}

impl Index {
    /// Indexes the active ones of `definitions`.
    pub fn build(generation: i64, definitions: Vec<StoredDefinition>) -> Index {
        let mut index = Index {
            generation,
            ..Index::default()
        };
        for stored in definitions
            .into_iter()
            .filter(|stored| stored.definition.is_active)
        {
            let position = index.definitions.len();
            let definition = &stored.definition;
            if definition.journey.is_empty() {
                index.context_only.push(position);
            }
            if let Details::Segment {
                scope: Scope::Customer,
                ..
            } = definition.details
            {
                index.customer_segments.insert(stored.id.clone(), position);
            }
            for (pattern_index, pattern) in definition.journey.iter().enumerate() {
                let reference = PatternRef {
                    definition: position,
                    pattern: pattern_index,
                };
                let selector = match &pattern.event_name {
                    Some(name) => Selector::Named(name.clone()),
                    None => Selector::Pageviews,
                };
                let attribute = pattern
                    .criteria
                    .iter()
                    .find_map(|criterion| attribute_of_key(&criterion.key));
                match attribute {
                    Some(attribute) => index
                        .by_selector_and_attribute
                        .entry((selector, attribute.to_owned()))
                        .or_default()
                        .push(reference),
                    None => index
                        .by_selector
                        .entry(selector)
                        .or_default()
                        .push(reference),
                }
            }
            index.definitions.push(stored);
        }
        index
    }

    /// Whether no event can match anything.
    pub fn is_empty(&self) -> bool {
        self.definitions.is_empty()
    }

    /// The journey patterns that might match `event`: those filed under its name (or
    /// "pageview"), and those filed under its name and one of its attributes.
    pub fn candidates(&self, event: &NewEvent) -> Vec<PatternRef> {
        let mut selectors = vec![Selector::Named(event.name.clone())];
        if event.kind == EventKind::Pageview {
            selectors.push(Selector::Pageviews);
        }
        let mut found = Vec::new();
        for selector in selectors {
            if let Some(references) = self.by_selector.get(&selector) {
                found.extend_from_slice(references);
            }
            if self.by_selector_and_attribute.is_empty() {
                continue;
            }
            for attribute in event.attributes.keys() {
                if let Some(references) = self
                    .by_selector_and_attribute
                    .get(&(selector.clone(), attribute.clone()))
                {
                    found.extend_from_slice(references);
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }

    pub fn definition(&self, reference: PatternRef) -> &StoredDefinition {
        &self.definitions[reference.definition]
    }
}

/// Whether every criterion of the pattern matches the event.
pub fn pattern_matches(definition: &Definition, pattern: usize, event: &EventValues) -> bool {
    definition.journey[pattern]
        .criteria
        .iter()
        .all(|criterion| criterion.matches(event.get(&criterion.key).as_deref()))
}

/// Whether every context criterion of the definition matches the visit.
pub fn context_matches(definition: &Definition, visit: &Visit) -> bool {
    definition
        .context_criteria()
        .all(|criterion| criterion.matches(visit.get(&criterion.key)))
}

/// The values of one event that journey criteria test.
pub struct EventValues<'a> {
    event: &'a NewEvent,
    page: Option<journey::JourneyPage>,
}

impl<'a> EventValues<'a> {
    pub fn new(event: &'a NewEvent) -> EventValues<'a> {
        EventValues {
            event,
            page: event.page.as_ref().map(journey::journey_page),
        }
    }

    /// The value of a journey criterion's key; `None` when the event has none (empty
    /// texts count as none).
    pub fn get(&self, key: &str) -> Option<String> {
        if let Some(name) = attribute_of_key(key) {
            return self.event.attributes.get(name).map(AttributeValue::to_text);
        }
        let page = self.page.as_ref();
        let value = match key {
            "page.url" => page.map(|page| page.url.clone()),
            "page.title" => page.and_then(|page| page.title.clone()),
            "page.domain" => page.and_then(|page| page.domain.clone()),
            "page.hostname" => page.and_then(|page| page.hostname.clone()),
            "page.pathname" => page.and_then(|page| page.pathname.clone()),
            "page.queryString" => page.and_then(|page| page.query_string.clone()),
            "page.fragment" => page.and_then(|page| page.fragment.clone()),
            "page.keywords" => page.and_then(|page| page.keywords.clone()),
            "page.lang" => page.and_then(|page| page.lang.clone()),
            "searchQuery" => self
                .event
                .page
                .as_ref()
                .and_then(|page| page.search_query.clone()),
            _ => None,
        };
        value.filter(|value| !value.is_empty())
    }

    /// The attribute as a number of the given kind, for an outcome's associated value.
    pub fn attribute(&self, name: &str) -> Option<String> {
        self.event.attributes.get(name).map(AttributeValue::to_text)
    }
}

/// What is known about the visit (the session) that context criteria test: one text
/// per key of [`super::definition::VISIT_KEYS`] that has a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visit {
    values: BTreeMap<&'static str, String>,
}

/// The session's data that a [`Visit`] is made of.
#[derive(Debug, Clone, Default)]
pub struct VisitSources {
    /// The parsed user agent of the session's first event that has one.
    pub user_agent: Option<UserAgentInfo>,
    /// The context of the session's latest event that has one.
    pub context: Option<Context>,
    pub geolocation: Option<Geolocation>,
    /// The session's first pageview, and its stored referrer classification.
    pub landing_page: Option<Page>,
    pub landing_referrer: Option<ReferrerInfo>,
    pub authenticated: bool,
}

impl Visit {
    pub fn new(sources: &VisitSources) -> Visit {
        let mut values: BTreeMap<&'static str, String> = BTreeMap::new();
        let mut put = |key: &'static str, value: Option<String>| {
            if let Some(value) = value.filter(|value| !value.is_empty()) {
                values.insert(key, value);
            }
        };
        if let Some(ua) = &sources.user_agent {
            let category = serde_json::to_value(ua.device_category)
                .ok()
                .and_then(|value| value.as_str().map(str::to_owned));
            put("device.category", category);
            put("device.type", Some(ua.device_type.clone()));
            put("device.isMobile", Some(ua.is_mobile.to_string()));
            put("device.osFamily", Some(ua.os_family.clone()));
            put("device.osVersion", ua.os_version.clone());
            put("device.manufacturer", ua.manufacturer.clone());
            put("browser.family", Some(ua.browser_family.clone()));
            put("browser.version", ua.browser_version.clone());
        }
        put(
            "browser.lang",
            sources
                .context
                .as_ref()
                .map(|context| context.browser_lang.clone()),
        );
        if let Some(geo) = &sources.geolocation {
            put("geolocation.country", geo.country.clone());
            put("geolocation.countryName", geo.country_name.clone());
            put("geolocation.region", geo.region.clone());
            put("geolocation.regionName", geo.region_name.clone());
            put("geolocation.locality", geo.locality.clone());
            put("geolocation.postalCode", geo.postal_code.clone());
        }
        if let Some(page) = &sources.landing_page {
            if let Some(referrer) = journey::referrer(page, sources.landing_referrer.as_ref()) {
                let medium = referrer
                    .medium
                    .as_ref()
                    .and_then(|medium| serde_json::to_value(medium).ok())
                    .and_then(|value| value.as_str().map(str::to_owned));
                put("referrer.medium", medium);
                put("referrer.name", referrer.name.clone());
                put("referrer.hostname", referrer.hostname.clone());
                put("referrer.domain", referrer.domain.clone());
                put("referrer.url", Some(referrer.url.clone()));
            }
            if let Some(campaign) = journey::campaign(page) {
                put("mktCampaign.source", campaign.source);
                put("mktCampaign.medium", campaign.medium);
                put("mktCampaign.name", campaign.name);
                put("mktCampaign.term", campaign.term);
                put("mktCampaign.content", campaign.content);
            }
        }
        put("authenticated", Some(sources.authenticated.to_string()));
        put("customerIdType", Some("cookie".to_owned()));
        Visit { values }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// A text that changes whenever a value changes.
    pub fn fingerprint(&self) -> String {
        self.values
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join("\u{1f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segments::definition::{parse, DefinitionKind};
    use serde_json::json;

    fn stored(id: &str, body: serde_json::Value) -> StoredDefinition {
        StoredDefinition {
            id: id.to_owned(),
            version: 1,
            definition: parse(DefinitionKind::Segment, &body).unwrap(),
            created_ms: 0,
            modified_ms: 0,
        }
    }

    fn event(kind: EventKind, name: &str, attributes: &[&str]) -> NewEvent {
        NewEvent {
            id: "e".into(),
            kind,
            name: name.into(),
            time_ms: 0,
            client_time_ms: 0,
            received_ms: 0,
            page: None,
            context: None,
            login_id: None,
            attributes: attributes
                .iter()
                .map(|name| ((*name).to_owned(), AttributeValue::String("x".into())))
                .collect(),
            traits: BTreeMap::new(),
            user_agent: None,
            ip_address: None,
            user_agent_info: None,
            geolocation: None,
            referrer_info: None,
            identity_verified: false,
        }
    }

    #[test]
    fn candidates_come_from_the_event_name_and_attributes_only() {
        let mut definitions = vec![
            stored(
                "pages",
                json!({"displayName": "p", "color": "#000000",
                "journey": {"patterns": [{"count": 3}]}}),
            ),
            stored(
                "orders",
                json!({"displayName": "o", "color": "#000000",
                "journey": {"patterns": [{"eventName": "order_completed"}]}}),
            ),
            stored(
                "big-orders",
                json!({"displayName": "b", "color": "#000000",
                "journey": {"patterns": [{"eventName": "order_completed", "criteria": [
                    {"key": "attributes.value.value", "operator": "greaterThan", "values": ["100"]}]}]}}),
            ),
            stored(
                "mobile",
                json!({"displayName": "m", "color": "#000000",
                "context": {"patterns": [{"criteria": [
                    {"key": "device.category", "operator": "equal", "values": ["mobile"]}]}]}}),
            ),
            stored(
                "inactive",
                json!({"displayName": "i", "color": "#000000", "isActive": false,
                "journey": {"patterns": [{"count": 1}]}}),
            ),
        ];
        // Many unrelated definitions do not change what an event looks at.
        for n in 0..300 {
            definitions.push(stored(
                &format!("other-{n}"),
                json!({"displayName": "x", "color": "#000000",
                "journey": {"patterns": [{"eventName": format!("event_{n}")}]}}),
            ));
        }
        let index = Index::build(7, definitions);
        let ids = |event: &NewEvent| -> Vec<String> {
            index
                .candidates(event)
                .into_iter()
                .map(|reference| index.definition(reference).id.clone())
                .collect()
        };
        assert_eq!(
            ids(&event(EventKind::Pageview, "page_viewed", &[])),
            ["pages"]
        );
        assert_eq!(
            ids(&event(EventKind::Record, "order_completed", &[])),
            ["orders"]
        );
        assert_eq!(
            ids(&event(EventKind::Record, "order_completed", &["value"])),
            ["orders", "big-orders"]
        );
        assert_eq!(
            ids(&event(EventKind::Record, "cart_added", &["value"])),
            Vec::<String>::new()
        );
        assert_eq!(
            ids(&event(EventKind::Record, "event_42", &[])),
            ["other-42"]
        );
        assert_eq!(index.context_only.len(), 1);
        assert_eq!(index.definitions.len(), 304, "the inactive one is left out");
    }
}
