//! The Journey API's JSON shapes (see `shared/reference/journey-api.md`) and their
//! construction from stored sessions and events.
//!
//! Field names are camelCase, dates are ISO-8601 UTC with milliseconds, and absent
//! values are left out rather than written as `null`: every optional field carries
//! `skip_serializing_if`, and empty strings from the SDK count as absent.

use std::collections::BTreeMap;

use footpath_protocol::v1::{AttributeValue, Context, EventKind, Page};
use serde::Serialize;

use crate::enrich::referrer::{self as referrer_rules, Medium, ReferrerInfo};
use crate::enrich::registrable_domain;
use crate::enrich::user_agent::{DeviceCategory, UserAgentInfo};
use crate::segments::{OutcomeAchievement, SegmentAssignment};
use crate::store::{StoredEvent, StoredSession};

/// `JourneyGeolocation`: stored in this shape, so it is shown as stored.
pub use crate::enrich::geo::Geolocation as JourneyGeolocation;
use crate::timefmt::format_ms;

/// Our sessions are always web sessions of a visitor known by a cookie.
const SESSION_TYPE: &str = "web";
const CUSTOMER_ID_TYPE: &str = "cookie";
const EVENT_TYPE: &str = "WebEvent";

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: String,
    /// The visitor's cookie id.
    pub customer_id: String,
    pub customer_id_type: String,
    #[serde(rename = "type")]
    pub session_type: String,
    pub short_id: String,
    pub created_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_date: Option<String>,
    pub duration_in_seconds: i64,
    pub event_count: u64,
    pub pageview_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_page: Option<JourneyPage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_event: Option<SessionLastEvent>,
    pub search_terms: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer: Option<Referrer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mkt_campaign: Option<JourneyCampaign>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent_string: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser: Option<Browser>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geolocation: Option<JourneyGeolocation>,
    /// The external contact identity resolution linked the session to; absent for an
    /// unknown visitor (shown to agents as "Unknown").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_contact: Option<EntityRef>,
    /// Whether an event of the session carried a valid identity signature.
    pub authenticated: bool,
    /// The segments assigned and outcomes achieved during the session, oldest first
    /// (see `crate::segments`).
    pub segment_assignments: Vec<SessionSegmentAssignment>,
    pub outcome_achievements: Vec<SessionOutcomeAchievement>,
}

/// `SessionSegmentAssignment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSegmentAssignment {
    pub segment: EntityRef,
    pub assigned_date: String,
}

/// `OutcomeAchievement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionOutcomeAchievement {
    pub outcome: EntityRef,
    pub achieved_date: String,
}

/// `SegmentAssignmentEvent`: the body of an event of type `SegmentAssignment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentAssignmentEvent {
    pub segment: EntityRef,
}

/// `OutcomeAchievedEvent`: the body of an event of type `OutcomeAchieved`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeAchievedEvent {
    pub outcome: OutcomeAchievedEventOutcome,
    /// The outcome's associated value, taken from the achieving event's attribute that
    /// `associatedValueField` names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub associated_value: Option<f64>,
}

/// `OutcomeAchievedEventOutcome`: the outcome as it was when achieved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeAchievedEventOutcome {
    pub id: String,
    pub display_name: String,
    pub version: u64,
}

/// `AddressableEntityRef`: `{"id"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntityRef {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionLastEvent {
    pub id: String,
    pub event_name: String,
    pub created_date: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JourneyPage {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pathname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_string: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fragment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keywords: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Referrer {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pathname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_string: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fragment: Option<String>,
    /// Who sent the visitor (`Google`, `Facebook`); absent when unknown or internal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub medium: Option<Medium>,
    /// The search terms, when a search engine's URL carries them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keywords: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JourneyCampaign {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub click_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Browser {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_mobile: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view_width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view_height: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<DeviceCategory>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_mobile: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_family: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub screen_width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub screen_height: Option<u32>,
    /// `devicePixelRatio` × 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub screen_density: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: String,
    pub customer_id: String,
    pub customer_id_type: String,
    pub session: EventSession,
    /// `WebEvent`, `SegmentAssignment` or `OutcomeAchieved`; the matching one of the
    /// three bodies below is present.
    pub event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_event: Option<WebEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment_assignment_event: Option<SegmentAssignmentEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome_achieved_event: Option<OutcomeAchievedEvent>,
    /// The event's time, corrected for the device's clock error.
    pub created_date: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSession {
    pub id: String,
    #[serde(rename = "type")]
    pub session_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebEvent {
    pub event_name: String,
    pub total_event_count: u64,
    pub total_pageview_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<JourneyPage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer: Option<Referrer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mkt_campaign: Option<JourneyCampaign>,
    pub attributes: BTreeMap<String, CustomEventAttribute>,
    pub traits: BTreeMap<String, CustomEventAttribute>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent_string: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser: Option<Browser>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geolocation: Option<JourneyGeolocation>,
    pub authenticated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomEventAttribute {
    pub data_type: String,
    pub value: String,
}

/// `{ "entities": [...], "nextUri": "..." }`; `nextUri` only when another page follows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityListing<T> {
    pub entities: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_uri: Option<String>,
}

/// `WebEventResponse`: what `POST .../webevents` answers, the event as stored, with
/// the server's enrichment, and the id of the session it landed in. The endpoint is
/// public, so the response tells the sender nothing it did not send: the session part
/// describes this event alone, and `authenticated` says whether this event's own
/// identity token was valid.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebEventResponse {
    /// The visitor's cookie id.
    pub customer_id: String,
    pub customer_id_type: String,
    pub event_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<JourneyPage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent_string: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser: Option<WebEventBrowser>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geolocation: Option<JourneyGeolocation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mkt_campaign: Option<JourneyCampaign>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer: Option<Referrer>,
    pub session: WebEventResponseSession,
    pub attributes: BTreeMap<String, CustomEventAttribute>,
    pub traits: BTreeMap<String, CustomEventAttribute>,
    pub authenticated: bool,
    /// The site's customer id (the SDK's `loginId`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub created_date: String,
}

/// `WebEventBrowser`: the browser part of a web event request or response.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebEventBrowser {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
}

/// `WebEventResponseSession`: the session a web event landed in, as of that event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebEventResponseSession {
    pub id: String,
    pub duration_in_seconds: i64,
    pub event_count: u64,
    pub pageview_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer: Option<Referrer>,
    pub created_date: String,
}

/// `DeploymentPing`: what the ping answers. The collector serves no web actions, so
/// `actions` is always empty.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentPing {
    pub actions: Vec<serde_json::Value>,
    /// When the client should ping again; `-1` tells it to stop.
    pub poll_interval_milliseconds: i64,
}

impl WebEventResponse {
    /// The response for `stored`: the event as received, and the id of the session it
    /// joined. Nothing else of the session is told (see the `session` field).
    pub fn from_stored(stored: &StoredEvent) -> WebEventResponse {
        let event = web_event(stored);
        WebEventResponse {
            customer_id: stored.visitor_id.clone(),
            customer_id_type: CUSTOMER_ID_TYPE.to_owned(),
            event_name: event.event_name,
            page: event.page,
            user_agent_string: event.user_agent_string,
            browser: event
                .browser
                .map(|browser| WebEventBrowser {
                    family: browser.family,
                    version: browser.version,
                    lang: browser.lang,
                })
                .filter(|browser| *browser != WebEventBrowser::default()),
            device: event.device,
            search_query: event.search_query,
            geolocation: event.geolocation,
            mkt_campaign: event.mkt_campaign,
            referrer: event.referrer.clone(),
            // Only what the sender sent: the session's own figures, its referrer and
            // whether it is authenticated are for credentialed readers (whoever knows a
            // visitor id can post here, see SECURITY.md).
            session: WebEventResponseSession {
                id: stored.session_id.clone(),
                duration_in_seconds: 0,
                event_count: 1,
                pageview_count: u64::from(stored.event.kind == EventKind::Pageview),
                referrer: event.referrer,
                created_date: format_ms(stored.event.time_ms),
            },
            attributes: event.attributes,
            traits: event.traits,
            authenticated: stored.event.identity_verified,
            external_id: non_empty(stored.event.login_id.as_deref()),
            created_date: format_ms(stored.event.time_ms),
        }
    }
}

impl Session {
    pub fn from_stored(session: &StoredSession) -> Session {
        let landing_page = session.landing_page.as_ref();
        Session {
            id: session.id.clone(),
            customer_id: session.visitor_id.clone(),
            customer_id_type: CUSTOMER_ID_TYPE.to_owned(),
            session_type: SESSION_TYPE.to_owned(),
            short_id: session.short_id.clone(),
            created_date: format_ms(session.first_ms),
            ended_date: session.ended_ms.map(format_ms),
            duration_in_seconds: (session.last_ms - session.first_ms) / 1000,
            event_count: session.event_count,
            pageview_count: session.pageview_count,
            last_page: session.last_page.as_ref().map(journey_page),
            last_event: session.last_event.as_ref().map(|event| SessionLastEvent {
                id: event.id.clone(),
                event_name: event.name.clone(),
                created_date: format_ms(event.time_ms),
            }),
            search_terms: session.search_terms.clone(),
            referrer: landing_page
                .and_then(|page| referrer(page, session.landing_referrer.as_ref())),
            mkt_campaign: landing_page.and_then(campaign),
            user_agent_string: non_empty(session.user_agent.as_deref()),
            ip_address: non_empty(session.ip_address.as_deref()),
            browser: browser(session.context.as_ref(), session.user_agent_info.as_ref()),
            device: device(session.context.as_ref(), session.user_agent_info.as_ref()),
            geolocation: session.geolocation.clone(),
            external_contact: session
                .contact_id
                .as_ref()
                .map(|id| EntityRef { id: id.clone() }),
            authenticated: session.authenticated,
            segment_assignments: session
                .segment_assignments
                .iter()
                .map(|assignment| SessionSegmentAssignment {
                    segment: EntityRef {
                        id: assignment.segment_id.clone(),
                    },
                    assigned_date: format_ms(assignment.assigned_ms),
                })
                .collect(),
            outcome_achievements: session
                .outcome_achievements
                .iter()
                .map(|achievement| SessionOutcomeAchievement {
                    outcome: EntityRef {
                        id: achievement.outcome_id.clone(),
                    },
                    achieved_date: format_ms(achievement.achieved_ms),
                })
                .collect(),
        }
    }
}

impl Event {
    pub fn from_stored(stored: &StoredEvent) -> Event {
        Event {
            id: stored.event.id.clone(),
            customer_id: stored.visitor_id.clone(),
            customer_id_type: CUSTOMER_ID_TYPE.to_owned(),
            session: EventSession {
                id: stored.session_id.clone(),
                session_type: SESSION_TYPE.to_owned(),
            },
            event_type: EVENT_TYPE.to_owned(),
            web_event: Some(web_event(stored)),
            segment_assignment_event: None,
            outcome_achieved_event: None,
            created_date: format_ms(stored.event.time_ms),
        }
    }

    /// The `SegmentAssignment` event of an assignment to `session`.
    pub fn segment_assigned(session: &StoredSession, assignment: &SegmentAssignment) -> Event {
        Event {
            id: assignment.id.clone(),
            customer_id: session.visitor_id.clone(),
            customer_id_type: CUSTOMER_ID_TYPE.to_owned(),
            session: EventSession {
                id: session.id.clone(),
                session_type: SESSION_TYPE.to_owned(),
            },
            event_type: "SegmentAssignment".to_owned(),
            web_event: None,
            segment_assignment_event: Some(SegmentAssignmentEvent {
                segment: EntityRef {
                    id: assignment.segment_id.clone(),
                },
            }),
            outcome_achieved_event: None,
            created_date: format_ms(assignment.assigned_ms),
        }
    }

    /// The `OutcomeAchieved` event of an achievement in `session`.
    pub fn outcome_achieved(session: &StoredSession, achievement: &OutcomeAchievement) -> Event {
        Event {
            id: achievement.id.clone(),
            customer_id: session.visitor_id.clone(),
            customer_id_type: CUSTOMER_ID_TYPE.to_owned(),
            session: EventSession {
                id: session.id.clone(),
                session_type: SESSION_TYPE.to_owned(),
            },
            event_type: "OutcomeAchieved".to_owned(),
            web_event: None,
            segment_assignment_event: None,
            outcome_achieved_event: Some(OutcomeAchievedEvent {
                outcome: OutcomeAchievedEventOutcome {
                    id: achievement.outcome_id.clone(),
                    display_name: achievement.display_name.clone(),
                    version: achievement.version,
                },
                associated_value: achievement
                    .associated_value
                    .as_deref()
                    .and_then(crate::segments::criteria::number),
            }),
            created_date: format_ms(achievement.achieved_ms),
        }
    }
}

/// The `WebEvent` body of a stored event.
fn web_event(stored: &StoredEvent) -> WebEvent {
    let event = &stored.event;
    let page = event.page.as_ref();
    WebEvent {
        event_name: event.name.clone(),
        total_event_count: stored.total_event_count,
        total_pageview_count: stored.total_pageview_count,
        page: page.map(journey_page),
        referrer: page.and_then(|page| referrer(page, event.referrer_info.as_ref())),
        mkt_campaign: page.and_then(campaign),
        attributes: custom_attributes(&event.attributes),
        traits: custom_attributes(&event.traits),
        search_query: non_empty(page.and_then(|page| page.search_query.as_deref())),
        user_agent_string: non_empty(event.user_agent.as_deref()),
        ip_address: non_empty(event.ip_address.as_deref()),
        browser: browser(event.context.as_ref(), event.user_agent_info.as_ref()),
        device: device(event.context.as_ref(), event.user_agent_info.as_ref()),
        geolocation: event.geolocation.clone(),
        authenticated: stored.authenticated,
    }
}

fn non_empty(text: Option<&str>) -> Option<String> {
    text.filter(|text| !text.is_empty()).map(str::to_owned)
}

fn non_zero(value: u32) -> Option<u32> {
    (value != 0).then_some(value)
}

/// The parts of a URL that pages and referrers show.
#[derive(Debug, Default, PartialEq)]
struct UrlParts {
    domain: Option<String>,
    hostname: Option<String>,
    pathname: Option<String>,
    query_string: Option<String>,
    fragment: Option<String>,
}

/// Splits an absolute URL; an unparsable one (possible for non-pageview events, whose
/// URL is not checked) yields no parts rather than an error. `domain` is the
/// registrable domain (see [`registrable_domain`]).
fn url_parts(text: &str) -> UrlParts {
    let Ok(url) = url::Url::parse(text) else {
        return UrlParts::default();
    };
    let hostname = url.host_str().map(str::to_owned);
    let domain = hostname.as_deref().map(registrable_domain);
    UrlParts {
        domain,
        hostname,
        pathname: non_empty(Some(url.path())),
        query_string: non_empty(url.query()),
        fragment: non_empty(url.fragment()),
    }
}

pub fn journey_page(page: &Page) -> JourneyPage {
    let parts = url_parts(&page.url);
    JourneyPage {
        url: page.url.clone(),
        title: non_empty(Some(&page.title)),
        domain: parts.domain,
        hostname: parts.hostname,
        pathname: parts.pathname,
        query_string: parts.query_string,
        fragment: parts.fragment,
        keywords: non_empty(Some(&page.keywords)),
        lang: non_empty(Some(&page.lang)),
    }
}

/// The page's referrer, when the browser reported one, with its stored classification
/// (or, for events stored before referrers were classified, one computed now).
pub fn referrer(page: &Page, stored: Option<&ReferrerInfo>) -> Option<Referrer> {
    if page.referrer.is_empty() {
        return None;
    }
    let parts = url_parts(&page.referrer);
    let info = stored.cloned().or_else(|| referrer_rules::classify(page));
    let (name, medium, keywords) = match info {
        Some(info) => (info.name, Some(info.medium), info.keywords),
        None => (None, None, None),
    };
    Some(Referrer {
        url: page.referrer.clone(),
        domain: parts.domain,
        hostname: parts.hostname,
        pathname: parts.pathname,
        query_string: parts.query_string,
        fragment: parts.fragment,
        name,
        medium,
        keywords,
    })
}

/// Click-id parameters and the advertising network that sets each, in the order they
/// are looked for.
const CLICK_IDS: [(&str, &str); 5] = [
    ("gclid", "Google Ads"),
    ("fbclid", "Facebook"),
    ("msclkid", "Microsoft Advertising"),
    ("dclid", "Google Display & Video 360"),
    ("ttclid", "TikTok"),
];

/// The page's UTM parameters and click id, when it had any.
pub fn campaign(page: &Page) -> Option<JourneyCampaign> {
    let get = |name: &str| non_empty(page.campaign.get(name).map(String::as_str));
    let click = CLICK_IDS
        .iter()
        .find_map(|&(parameter, network)| get(parameter).map(|click_id| (click_id, network)));
    let campaign = JourneyCampaign {
        source: get("utm_source"),
        medium: get("utm_medium"),
        name: get("utm_campaign"),
        term: get("utm_term"),
        content: get("utm_content"),
        click_id: click.as_ref().map(|(click_id, _)| click_id.clone()),
        network: click.map(|(_, network)| network.to_owned()),
    };
    (campaign != JourneyCampaign::default()).then_some(campaign)
}

/// The browser from the parsed user agent (family, version) and the SDK's context
/// (language, viewport).
fn browser(context: Option<&Context>, user_agent: Option<&UserAgentInfo>) -> Option<Browser> {
    let browser = Browser {
        family: user_agent.map(|ua| ua.browser_family.clone()),
        version: user_agent.and_then(|ua| ua.browser_version.clone()),
        is_mobile: user_agent.map(|ua| ua.is_mobile),
        lang: context.and_then(|context| non_empty(Some(&context.browser_lang))),
        view_width: context.and_then(|context| non_zero(context.viewport_width)),
        view_height: context.and_then(|context| non_zero(context.viewport_height)),
    };
    (browser != Browser::default()).then_some(browser)
}

/// The device from the parsed user agent (category, OS, maker) and the SDK's context
/// (screen).
fn device(context: Option<&Context>, user_agent: Option<&UserAgentInfo>) -> Option<Device> {
    let device = Device {
        category: user_agent.map(|ua| ua.device_category),
        device_type: user_agent.map(|ua| ua.device_type.clone()),
        is_mobile: user_agent.map(|ua| ua.is_mobile),
        os_family: user_agent.map(|ua| ua.os_family.clone()),
        os_version: user_agent.and_then(|ua| ua.os_version.clone()),
        manufacturer: user_agent.and_then(|ua| ua.manufacturer.clone()),
        screen_width: context.and_then(|context| non_zero(context.screen_width)),
        screen_height: context.and_then(|context| non_zero(context.screen_height)),
        screen_density: context.and_then(|context| non_zero(context.screen_density)),
    };
    (device != Device::default()).then_some(device)
}

fn custom_attributes(
    attributes: &BTreeMap<String, AttributeValue>,
) -> BTreeMap<String, CustomEventAttribute> {
    attributes
        .iter()
        .map(|(name, value)| {
            let attribute = CustomEventAttribute {
                data_type: value.data_type().to_owned(),
                value: value.to_text(),
            };
            (name.clone(), attribute)
        })
        .collect()
}

/// A segment assignment or an outcome achievement where a session's timeline shows
/// it: right after the event that completed it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimelineMatch<'a> {
    Segment(&'a SegmentAssignment),
    Outcome(&'a OutcomeAchievement),
}

impl TimelineMatch<'_> {
    /// The event after which the match is shown.
    pub fn trigger_event_id(&self) -> &str {
        match self {
            TimelineMatch::Segment(assignment) => &assignment.trigger_event_id,
            TimelineMatch::Outcome(achievement) => &achievement.trigger_event_id,
        }
    }
}

/// A session's matches in the order its timeline shows them, for the Journey API's
/// event list and the desk's journey map alike: by the time they were made, segments
/// before outcomes at the same time, and otherwise in the order they were made.
pub fn timeline_matches<'a>(
    segments: &'a [SegmentAssignment],
    outcomes: &'a [OutcomeAchievement],
) -> Vec<TimelineMatch<'a>> {
    let mut matches: Vec<(i64, u8, TimelineMatch<'a>)> = segments
        .iter()
        .map(|assignment| {
            (
                assignment.assigned_ms,
                0,
                TimelineMatch::Segment(assignment),
            )
        })
        .chain(outcomes.iter().map(|achievement| {
            (
                achievement.achieved_ms,
                1,
                TimelineMatch::Outcome(achievement),
            )
        }))
        .collect();
    // Stable: matches of the same time and kind keep the order they were made in.
    matches.sort_by_key(|(time_ms, kind, _)| (*time_ms, *kind));
    matches.into_iter().map(|(_, _, found)| found).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_matches_are_ordered_by_time_then_segments_first() {
        let segment = |id: &str, time_ms: i64, trigger: &str| SegmentAssignment {
            id: id.to_owned(),
            segment_id: format!("def-{id}"),
            display_name: id.to_owned(),
            color: "#000000".to_owned(),
            should_display_to_agent: true,
            assigned_ms: time_ms,
            trigger_event_id: trigger.to_owned(),
        };
        let outcome = |id: &str, time_ms: i64, trigger: &str| OutcomeAchievement {
            id: id.to_owned(),
            outcome_id: format!("def-{id}"),
            display_name: id.to_owned(),
            version: 1,
            is_positive: true,
            associated_value: None,
            achieved_ms: time_ms,
            trigger_event_id: trigger.to_owned(),
        };
        let segments = [
            segment("s-late", 30, "e3"),
            segment("s1", 10, "e1"),
            segment("s2", 10, "e1"),
        ];
        let outcomes = [outcome("o-first", 5, "e0"), outcome("o1", 10, "e1")];
        let matches = timeline_matches(&segments, &outcomes);
        let order: Vec<(&str, &str)> = matches
            .iter()
            .map(|found| {
                let id = match found {
                    TimelineMatch::Segment(assignment) => assignment.id.as_str(),
                    TimelineMatch::Outcome(achievement) => achievement.id.as_str(),
                };
                (id, found.trigger_event_id())
            })
            .collect();
        assert_eq!(
            order,
            [
                ("o-first", "e0"),
                ("s1", "e1"),
                ("s2", "e1"),
                ("o1", "e1"),
                ("s-late", "e3")
            ]
        );
    }

    #[test]
    fn page_parts() {
        let page = Page {
            url: "https://www.shop.example/a/b?q=shoes&x=1#top".into(),
            title: "Shoes".into(),
            ..Page::default()
        };
        let journey = journey_page(&page);
        assert_eq!(
            journey,
            JourneyPage {
                url: page.url.clone(),
                title: Some("Shoes".into()),
                domain: Some("shop.example".into()),
                hostname: Some("www.shop.example".into()),
                pathname: Some("/a/b".into()),
                query_string: Some("q=shoes&x=1".into()),
                fragment: Some("top".into()),
                keywords: None,
                lang: None,
            }
        );
    }

    #[test]
    fn page_parts_table() {
        // (url, domain, hostname, pathname, queryString, fragment)
        type Parts<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
        );
        let table: &[(&str, Parts<'_>)] = &[
            (
                "https://www.example.co.uk/basket?step=2#pay",
                (
                    Some("example.co.uk"),
                    Some("www.example.co.uk"),
                    Some("/basket"),
                    Some("step=2"),
                    Some("pay"),
                ),
            ),
            (
                "https://shop.example.co.uk/",
                (
                    Some("example.co.uk"),
                    Some("shop.example.co.uk"),
                    Some("/"),
                    None,
                    None,
                ),
            ),
            (
                "https://a.b.example.com.au/x/y",
                (
                    Some("example.com.au"),
                    Some("a.b.example.com.au"),
                    Some("/x/y"),
                    None,
                    None,
                ),
            ),
            (
                "https://someone.github.io/page",
                (
                    Some("someone.github.io"),
                    Some("someone.github.io"),
                    Some("/page"),
                    None,
                    None,
                ),
            ),
            (
                "http://WWW.Example.COM:8080/A%20B?q=%C3%A9",
                (
                    Some("example.com"),
                    Some("www.example.com"),
                    Some("/A%20B"),
                    Some("q=%C3%A9"),
                    None,
                ),
            ),
            (
                "http://127.0.0.1:8080/demo",
                (
                    Some("127.0.0.1"),
                    Some("127.0.0.1"),
                    Some("/demo"),
                    None,
                    None,
                ),
            ),
            (
                "http://localhost/",
                (Some("localhost"), Some("localhost"), Some("/"), None, None),
            ),
            // Unparsable URLs (possible on custom events) have no parts.
            ("not a url", (None, None, None, None, None)),
        ];
        for (url, (domain, hostname, pathname, query_string, fragment)) in table {
            let page = journey_page(&Page {
                url: (*url).to_owned(),
                ..Page::default()
            });
            let found = (
                page.domain.as_deref(),
                page.hostname.as_deref(),
                page.pathname.as_deref(),
                page.query_string.as_deref(),
                page.fragment.as_deref(),
            );
            assert_eq!(
                found,
                (*domain, *hostname, *pathname, *query_string, *fragment),
                "{url}"
            );
        }
    }

    #[test]
    fn referrer_uses_the_stored_classification_or_classifies_now() {
        let page = Page {
            url: "https://www.example.co.uk/".into(),
            referrer: "https://www.bing.com/search?q=boots".into(),
            ..Page::default()
        };
        let computed = referrer(&page, None).unwrap();
        assert_eq!(
            computed,
            Referrer {
                url: page.referrer.clone(),
                domain: Some("bing.com".into()),
                hostname: Some("www.bing.com".into()),
                pathname: Some("/search".into()),
                query_string: Some("q=boots".into()),
                fragment: None,
                name: Some("Bing".into()),
                medium: Some(Medium::Search),
                keywords: Some("boots".into()),
            }
        );
        // What was stored at ingest wins over today's lists.
        let stored = ReferrerInfo {
            name: Some("Old name".into()),
            medium: Medium::Unknown,
            keywords: None,
        };
        let shown = referrer(&page, Some(&stored)).unwrap();
        assert_eq!(shown.name.as_deref(), Some("Old name"));
        assert_eq!(shown.medium, Some(Medium::Unknown));
        assert_eq!(shown.keywords, None);
    }

    #[test]
    fn campaign_from_utm_and_click_ids() {
        let check = |pairs: &[(&str, &str)], expected: Option<JourneyCampaign>| {
            let page = Page {
                url: "https://a.example/".into(),
                campaign: pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Page::default()
            };
            assert_eq!(campaign(&page), expected, "{pairs:?}");
        };
        check(&[], None);
        check(
            &[
                ("utm_source", "news"),
                ("utm_medium", "email"),
                ("gclid", "abc"),
            ],
            Some(JourneyCampaign {
                source: Some("news".into()),
                medium: Some("email".into()),
                click_id: Some("abc".into()),
                network: Some("Google Ads".into()),
                ..JourneyCampaign::default()
            }),
        );
        check(
            &[("msclkid", "m1")],
            Some(JourneyCampaign {
                click_id: Some("m1".into()),
                network: Some("Microsoft Advertising".into()),
                ..JourneyCampaign::default()
            }),
        );
        check(
            &[
                ("utm_source", "google"),
                ("utm_medium", "cpc"),
                ("utm_campaign", "winter_sale"),
                ("utm_term", "red shoes"),
                ("utm_content", "ad_a"),
            ],
            Some(JourneyCampaign {
                source: Some("google".into()),
                medium: Some("cpc".into()),
                name: Some("winter_sale".into()),
                term: Some("red shoes".into()),
                content: Some("ad_a".into()),
                ..JourneyCampaign::default()
            }),
        );
        // The first click id in CLICK_IDS order wins; empty values count as absent.
        check(
            &[("fbclid", "f1"), ("gclid", "g1")],
            Some(JourneyCampaign {
                click_id: Some("g1".into()),
                network: Some("Google Ads".into()),
                ..JourneyCampaign::default()
            }),
        );
        for (parameter, network) in CLICK_IDS {
            check(
                &[(parameter, "id-1")],
                Some(JourneyCampaign {
                    click_id: Some("id-1".into()),
                    network: Some(network.into()),
                    ..JourneyCampaign::default()
                }),
            );
        }
        check(&[("gclid", ""), ("utm_source", "")], None);
        check(&[("color", "red")], None);
    }
}
