//! What the desk's browser code receives: session summaries for the list, and whole
//! session cards. Both are built here from stored rows, with the presentation
//! settings applied, so that hidden attributes are removed before anything is sent.
//!
//! The JSON is the desk's own (camelCase, times in milliseconds since the epoch), not
//! a Journey API shape: it is read by `desk.js` only.

use std::collections::BTreeMap;

use footpath_protocol::v1::{AttributeValue, EventKind};
use serde::Serialize;

use super::config::Presentation;
use crate::identity::LinkKind;
use crate::journey::{self, JourneyPage};
use crate::store::{StoredContact, StoredEvent, StoredSession};

/// A session as one line of the list, and the head of its card.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub id: String,
    pub short_id: String,
    /// Always `web`.
    #[serde(rename = "type")]
    pub session_type: &'static str,
    /// The visitor's cookie id, which live updates name.
    pub customer_id: String,
    /// The linked contact's "firstName lastName", else "Unknown".
    pub customer_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    /// Neither ended nor idle for longer than the session timeout.
    pub live: bool,
    pub created_ms: i64,
    pub last_active_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_page: Option<PageRef>,
    pub event_count: u64,
    pub pageview_count: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageRef {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Whether the desk may show the URL as a link (see [`is_linkable`]); otherwise
    /// it shows it as text only.
    pub linkable: bool,
}

/// Whether an agent may be offered `url` as a link: an `http`/`https` URL without
/// credentials whose origin is exactly one of the deployment's `allowed_origins`. The
/// page URL is whatever the visitor's browser (or anyone posting events) said, so a
/// link elsewhere (`javascript:`, `data:`, a look-alike site) would be a trap set for
/// agents. `"*"` allows any origin to send events and so vouches for none.
pub fn is_linkable(url: &str, allowed_origins: &[String]) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    if !matches!(parsed.scheme(), "http" | "https")
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return false;
    }
    let origin = parsed.origin();
    allowed_origins
        .iter()
        .filter(|allowed| allowed.as_str() != "*")
        .filter_map(|allowed| url::Url::parse(allowed).ok())
        .any(|allowed| allowed.origin() == origin)
}

/// The whole card of one session.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionCard {
    pub title: String,
    pub now_ms: i64,
    pub session: SessionSummary,
    pub info: SessionInfo,
    pub searches: Vec<String>,
    /// "Segments matched": the session's segments that agents may see, oldest first.
    pub segments: Vec<CardSegment>,
    /// "Outcomes achieved", oldest first.
    pub outcomes: Vec<CardOutcome>,
    /// The journey map, oldest first, between a session-start and (once ended) a
    /// session-end marker.
    pub journey: Vec<JourneyItem>,
    /// Events left out of the journey map because the card reached
    /// [`CARD_JOURNEY_BUDGET_BYTES`]; 0 (and absent) when none were.
    #[serde(skip_serializing_if = "is_zero")]
    pub journey_omitted: usize,
}

/// The most bytes of JSON a card's journey map may take: visitors choose what their
/// events carry, and a card is built in memory and sent to an agent's browser.
pub const CARD_JOURNEY_BUDGET_BYTES: usize = 2 * 1024 * 1024;
/// The most characters of one attribute value a card shows; the rest is cut (with an
/// ellipsis) and stays on the server.
pub const MAX_SHOWN_VALUE_CHARS: usize = 256;

fn is_zero(count: &usize) -> bool {
    *count == 0
}

/// A segment of the card's "Segments matched", as it was when assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CardSegment {
    pub id: String,
    pub display_name: String,
    /// `#rrggbb`, validated when the segment was defined.
    pub color: String,
}

/// An outcome of the card's "Outcomes achieved", as it was when achieved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CardOutcome {
    pub id: String,
    pub display_name: String,
    /// Shown green when positive, red when negative.
    pub positive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// "Session information" of the card; each value is ready to show.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer_medium: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    pub short_id: String,
    pub authenticated: bool,
    /// How the customer was identified, for agents to weigh what the card says: a
    /// verified sign-in, a recognised browser, or traits typed into the page (a claim).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identified_by: Option<&'static str>,
}

/// The kinds of journey-map items; each has its own icon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    SessionStart,
    Pageview,
    /// A pageview whose URL carries a site-search query.
    Search,
    Custom,
    /// A custom event about a form (`form_submitted`, `signup_form_abandoned`).
    Form,
    Identify,
    Logout,
    Segment,
    Outcome,
    SessionEnd,
}

impl ItemKind {
    fn default_display_name(self, event_name: &str) -> String {
        let text = match self {
            ItemKind::SessionStart => "Session started",
            ItemKind::Pageview => "Page viewed",
            ItemKind::Search => "Searched",
            ItemKind::Identify => "Identified",
            ItemKind::Logout => "Signed out",
            ItemKind::Segment => "Segment matched",
            ItemKind::Outcome => "Outcome achieved",
            ItemKind::SessionEnd => "Session ended",
            // What the SDK's form tracking records reads as what happened.
            ItemKind::Form if event_name == "form_submitted" => "Form submitted",
            ItemKind::Form if event_name == "form_abandoned" => "Form abandoned",
            // Other unconfigured custom events keep their raw name.
            ItemKind::Custom | ItemKind::Form => event_name,
        };
        text.to_owned()
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JourneyItem {
    /// The event's id; the markers' ids are `start` and `end`.
    pub id: String,
    pub kind: ItemKind,
    /// The event name as recorded.
    pub name: String,
    pub display_name: String,
    /// The configured icon, if any; otherwise the kind's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    pub time_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<PageRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_query: Option<String>,
    /// Attributes (and, for identify events, traits) that agents may see, in display
    /// order.
    pub attributes: Vec<ShownAttribute>,
    /// A segment item's color (`#rrggbb`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// An outcome item's polarity: green when positive, red when negative.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub positive: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShownAttribute {
    pub name: String,
    pub label: String,
    pub value: String,
}

/// Whether the session counts as live at `now_ms`.
pub fn is_live(session: &StoredSession, now_ms: i64, timeout_ms: i64) -> bool {
    session.ended_ms.is_none() && now_ms - session.last_ms < timeout_ms
}

/// "firstName lastName" of the contact, or "Unknown" when there is none (or it has no
/// name).
pub fn customer_name(contact: Option<&StoredContact>) -> String {
    let name = contact
        .map(|contact| {
            [&contact.fields.first_name, &contact.fields.last_name]
                .into_iter()
                .flatten()
                .map(|part| part.trim())
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    if name.is_empty() {
        "Unknown".to_owned()
    } else {
        name
    }
}

/// The session's line in the list; `allowed_origins` are its deployment's (for
/// [`is_linkable`]).
pub fn summary(
    session: &StoredSession,
    contact: Option<&StoredContact>,
    now_ms: i64,
    timeout_ms: i64,
    allowed_origins: &[String],
) -> SessionSummary {
    SessionSummary {
        id: session.id.clone(),
        short_id: session.short_id.clone(),
        session_type: "web",
        customer_id: session.visitor_id.clone(),
        customer_name: customer_name(contact),
        contact_id: session.contact_id.clone(),
        live: is_live(session, now_ms, timeout_ms),
        created_ms: session.first_ms,
        last_active_ms: session.last_ms,
        ended_ms: session.ended_ms,
        current_page: session
            .last_page
            .as_ref()
            .map(|page| page_ref(&journey::journey_page(page), allowed_origins)),
        event_count: session.event_count,
        pageview_count: session.pageview_count,
    }
}

/// Whether the session matches a search: a case-insensitive part of the customer's
/// name or of any of the contact's emails, digits of any of its phone numbers, or the
/// start of the short id.
pub fn matches_search(
    summary: &SessionSummary,
    contact: Option<&StoredContact>,
    query: &str,
) -> bool {
    let query = query.trim().to_lowercase();
    if query.is_empty() {
        return true;
    }
    if summary.short_id.starts_with(&query) {
        return true;
    }
    let Some(contact) = contact else {
        return false;
    };
    if summary.customer_name.to_lowercase().contains(&query)
        || contact
            .fields
            .emails()
            .any(|email| email.to_lowercase().contains(&query))
    {
        return true;
    }
    let query_digits: String = query.chars().filter(char::is_ascii_digit).collect();
    !query_digits.is_empty()
        && contact.fields.phones().any(|phone| {
            let digits: String = phone.e164.chars().filter(char::is_ascii_digit).collect();
            digits.contains(&query_digits)
        })
}

#[allow(clippy::too_many_arguments)]
pub fn card(
    title: &str,
    presentation: &Presentation,
    session: &StoredSession,
    contact: Option<&StoredContact>,
    events: &[StoredEvent],
    now_ms: i64,
    timeout_ms: i64,
    allowed_origins: &[String],
) -> SessionCard {
    let journey_session = journey::Session::from_stored(session);
    let mut journey_items = Vec::with_capacity(events.len() + 2);
    journey_items.push(marker(ItemKind::SessionStart, "start", session.first_ms));
    let mut journey_bytes = 0;
    let mut journey_omitted = 0;
    // In the order the Journey API lists them too.
    let matches =
        journey::timeline_matches(&session.segment_assignments, &session.outcome_achievements);
    for event in events {
        let item = journey_item(presentation, event, allowed_origins);
        let item_bytes = serde_json::to_vec(&item).map_or(usize::MAX, |json| json.len());
        if journey_omitted > 0 || journey_bytes + item_bytes > CARD_JOURNEY_BUDGET_BYTES {
            journey_omitted += 1;
            continue;
        }
        journey_bytes += item_bytes;
        journey_items.push(item);
        // The segments and outcomes this event completed follow it.
        journey_items.extend(
            matches
                .iter()
                .filter(|found| found.trigger_event_id() == event.event.id)
                .filter_map(match_item),
        );
    }
    if let Some(ended_ms) = session.ended_ms {
        journey_items.push(marker(ItemKind::SessionEnd, "end", ended_ms));
    }
    SessionCard {
        title: title.to_owned(),
        now_ms,
        session: summary(session, contact, now_ms, timeout_ms, allowed_origins),
        info: SessionInfo {
            identified_by: session
                .contact_id
                .as_ref()
                .and(session.contact_link)
                .map(identified_by),
            ..session_info(&journey_session)
        },
        searches: session.search_terms.clone(),
        segments: session
            .segment_assignments
            .iter()
            .filter(|assignment| assignment.should_display_to_agent)
            .map(|assignment| CardSegment {
                id: assignment.segment_id.clone(),
                display_name: assignment.display_name.clone(),
                color: assignment.color.clone(),
            })
            .collect(),
        outcomes: session
            .outcome_achievements
            .iter()
            .map(|achievement| CardOutcome {
                id: achievement.outcome_id.clone(),
                display_name: achievement.display_name.clone(),
                positive: achievement.is_positive,
                value: achievement.associated_value.clone(),
            })
            .collect(),
        journey: journey_items,
        journey_omitted,
    }
}

fn marker(kind: ItemKind, id: &str, time_ms: i64) -> JourneyItem {
    JourneyItem {
        id: id.to_owned(),
        kind,
        name: id.to_owned(),
        display_name: kind.default_display_name(id),
        icon: None,
        time_ms,
        page: None,
        search_query: None,
        attributes: Vec::new(),
        color: None,
        positive: None,
    }
}

/// The journey-map items of the segments (those agents may see) and outcomes that the
/// event `event_id` completed, segments first.
/// A segment or outcome as a journey-map item; `None` for a segment its definition
/// hides from agents.
fn match_item(found: &journey::TimelineMatch<'_>) -> Option<JourneyItem> {
    match *found {
        journey::TimelineMatch::Segment(assignment) => {
            assignment.should_display_to_agent.then(|| JourneyItem {
                id: assignment.id.clone(),
                kind: ItemKind::Segment,
                name: "segment_assigned".to_owned(),
                display_name: assignment.display_name.clone(),
                icon: None,
                time_ms: assignment.assigned_ms,
                page: None,
                search_query: None,
                attributes: vec![ShownAttribute {
                    name: "segment".to_owned(),
                    label: ItemKind::Segment.default_display_name(""),
                    value: assignment.display_name.clone(),
                }],
                color: Some(assignment.color.clone()),
                positive: None,
            })
        }
        journey::TimelineMatch::Outcome(achievement) => {
            let mut attributes = vec![ShownAttribute {
                name: "outcome".to_owned(),
                label: ItemKind::Outcome.default_display_name(""),
                value: achievement.display_name.clone(),
            }];
            if let Some(value) = &achievement.associated_value {
                attributes.push(ShownAttribute {
                    name: "value".to_owned(),
                    label: "Value".to_owned(),
                    value: value.clone(),
                });
            }
            Some(JourneyItem {
                id: achievement.id.clone(),
                kind: ItemKind::Outcome,
                name: "outcome_achieved".to_owned(),
                display_name: achievement.display_name.clone(),
                icon: None,
                time_ms: achievement.achieved_ms,
                page: None,
                search_query: None,
                attributes,
                color: None,
                positive: Some(achievement.is_positive),
            })
        }
    }
}

fn page_ref(page: &JourneyPage, allowed_origins: &[String]) -> PageRef {
    PageRef {
        url: page.url.clone(),
        title: page.title.clone(),
        linkable: is_linkable(&page.url, allowed_origins),
    }
}

pub fn item_kind(event: &StoredEvent) -> ItemKind {
    let event = &event.event;
    match event.kind {
        EventKind::Pageview => {
            let searched = event
                .page
                .as_ref()
                .and_then(|page| page.search_query.as_deref())
                .is_some_and(|query| !query.is_empty());
            if searched {
                ItemKind::Search
            } else {
                ItemKind::Pageview
            }
        }
        EventKind::Identify => ItemKind::Identify,
        EventKind::Logout => ItemKind::Logout,
        EventKind::Record => {
            if event
                .name
                .split('_')
                .any(|word| word.eq_ignore_ascii_case("form"))
            {
                ItemKind::Form
            } else {
                ItemKind::Custom
            }
        }
    }
}

fn journey_item(
    presentation: &Presentation,
    stored: &StoredEvent,
    allowed_origins: &[String],
) -> JourneyItem {
    let event = &stored.event;
    let kind = item_kind(stored);
    let display = presentation.event(&event.name);
    // Identify events carry what they say in their traits; other events in their
    // attributes.
    let mut values: BTreeMap<&str, &AttributeValue> = event
        .attributes
        .iter()
        .map(|(name, value)| (name.as_str(), value))
        .collect();
    if matches!(kind, ItemKind::Identify | ItemKind::Logout) {
        values.extend(
            event
                .traits
                .iter()
                .map(|(name, value)| (name.as_str(), value)),
        );
    }
    let mut attributes: Vec<(bool, i64, usize, ShownAttribute)> = Vec::new();
    for (name, value) in values {
        let configured = display.and_then(|display| {
            display
                .attributes
                .iter()
                .enumerate()
                .find(|(_, attribute)| attribute.name == name)
        });
        if configured.is_some_and(|(_, attribute)| attribute.hidden) {
            continue;
        }
        let label = configured
            .and_then(|(_, attribute)| attribute.label.clone())
            .unwrap_or_else(|| name.to_owned());
        let order = configured
            .and_then(|(_, attribute)| attribute.order)
            .unwrap_or(i64::MAX);
        let position = configured.map_or(usize::MAX, |(position, _)| position);
        attributes.push((
            configured.is_none(),
            order,
            position,
            ShownAttribute {
                name: name.to_owned(),
                label,
                value: attribute_text(value),
            },
        ));
    }
    // Configured first (by order, then as listed), then the rest by name (the map's
    // order, which the stable sort keeps).
    attributes.sort_by_key(|(unconfigured, order, position, _)| (*unconfigured, *order, *position));
    let page = event.page.as_ref().map(journey::journey_page);
    JourneyItem {
        id: event.id.clone(),
        kind,
        name: event.name.clone(),
        display_name: display
            .and_then(|display| display.display_name.clone())
            .unwrap_or_else(|| kind.default_display_name(&event.name)),
        icon: display.and_then(|display| display.icon.clone()),
        time_ms: event.time_ms,
        search_query: event
            .page
            .as_ref()
            .and_then(|page| page.search_query.clone())
            .filter(|query| !query.is_empty()),
        page: page.as_ref().map(|page| page_ref(page, allowed_origins)),
        attributes: attributes
            .into_iter()
            .map(|(_, _, _, attribute)| attribute)
            .collect(),
        color: None,
        positive: None,
    }
}

fn attribute_text(value: &AttributeValue) -> String {
    match value {
        AttributeValue::Bool(flag) => flag.to_string(),
        AttributeValue::Number(number) => number.as_str().to_owned(),
        AttributeValue::String(text) => match text.char_indices().nth(MAX_SHOWN_VALUE_CHARS) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.clone(),
        },
    }
}

/// Serde's name of an enumeration value (`"desktop"`, `"search"`).
fn serde_name<T: Serialize>(value: &T) -> Option<String> {
    serde_json::to_value(value)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
}

fn joined<'a>(parts: impl IntoIterator<Item = Option<&'a str>>, separator: &str) -> Option<String> {
    let parts: Vec<&str> = parts
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(separator))
}

fn session_info(session: &journey::Session) -> SessionInfo {
    let browser = session
        .browser
        .as_ref()
        .and_then(|browser| joined([browser.family.as_deref(), browser.version.as_deref()], " "));
    let device = session.device.as_ref();
    let os = device.and_then(|device| {
        joined(
            [device.os_family.as_deref(), device.os_version.as_deref()],
            " ",
        )
    });
    let device_text = device.and_then(|device| {
        let category = device.category.as_ref().and_then(serde_name);
        joined(
            [
                category.as_deref(),
                device.manufacturer.as_deref(),
                device.device_type.as_deref(),
            ],
            ", ",
        )
    });
    let location = session.geolocation.as_ref().and_then(|geo| {
        joined(
            [
                geo.locality.as_deref(),
                geo.region_name.as_deref(),
                geo.country_name.as_deref().or(geo.country.as_deref()),
            ],
            ", ",
        )
    });
    let referrer = session.referrer.as_ref();
    let campaign = session.mkt_campaign.as_ref().and_then(|campaign| {
        joined(
            [
                campaign.name.as_deref(),
                campaign.source.as_deref(),
                campaign.medium.as_deref(),
            ],
            " / ",
        )
    });
    SessionInfo {
        browser,
        os,
        device: device_text,
        location,
        referrer: referrer.map(|referrer| referrer.url.clone()),
        referrer_medium: referrer.and_then(|referrer| {
            let medium = referrer.medium.as_ref().and_then(serde_name);
            match (&referrer.name, medium) {
                (Some(name), Some(medium)) => Some(format!("{medium} ({name})")),
                (None, medium) => medium,
                (Some(name), None) => Some(name.clone()),
            }
        }),
        campaign,
        short_id: session.short_id.clone(),
        authenticated: session.authenticated,
        identified_by: None,
    }
}

fn identified_by(link: LinkKind) -> &'static str {
    match link {
        LinkKind::Verified => "Verified sign-in",
        LinkKind::Cookie => "Recognised browser",
        LinkKind::Unverified => "Unverified (typed in the page)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_tracking_events_read_as_what_happened() {
        let table = [
            (ItemKind::Form, "form_submitted", "Form submitted"),
            (ItemKind::Form, "form_abandoned", "Form abandoned"),
            // Other form events, and custom events, keep their names.
            (
                ItemKind::Form,
                "signup_form_abandoned",
                "signup_form_abandoned",
            ),
            (ItemKind::Custom, "cart_added", "cart_added"),
            (ItemKind::Pageview, "page_viewed", "Page viewed"),
        ];
        for (kind, name, shown) in table {
            assert_eq!(kind.default_display_name(name), shown, "{name}");
        }
    }

    #[test]
    fn only_pages_of_the_deployments_own_origins_are_links() {
        let allowed = vec![
            "https://shop.example".to_owned(),
            "http://127.0.0.1:8080".to_owned(),
            "*".to_owned(),
        ];
        let table: &[(&str, bool)] = &[
            ("https://shop.example/", true),
            ("https://shop.example/products?q=boots#top", true),
            ("HTTPS://SHOP.EXAMPLE:443/cart", true),
            ("http://127.0.0.1:8080/", true),
            // Another scheme, port or host is another origin.
            ("http://shop.example/", false),
            ("https://shop.example:8443/", false),
            ("https://www.shop.example/", false),
            ("https://shop.example.evil.example/", false),
            ("https://shop.example@evil.example/", false),
            ("https://agent:secret@shop.example/", false),
            ("http://127.0.0.1:8081/", false),
            // Never a link, whatever the list says.
            ("javascript:alert(document.cookie)", false),
            ("JavaScript://shop.example/%0aalert(1)", false),
            ("data:text/html,<script>alert(1)</script>", false),
            ("file:///etc/passwd", false),
            ("/relative/path", false),
            ("", false),
        ];
        for (url, expected) in table {
            assert_eq!(is_linkable(url, &allowed), *expected, "{url}");
        }
        // "*" alone vouches for nothing.
        assert!(!is_linkable("https://shop.example/", &["*".to_owned()]));
        assert!(!is_linkable("https://shop.example/", &[]));
    }
}
