//! Rows read from PostgreSQL into the domain model: the column lists of the read
//! queries and the functions that read them in the same order. The JSON columns hold
//! the texts SQLite holds, through the same functions (`store::sqlite`).

use footpath_protocol::v1::{Map, Page};
use postgres::Row;

use super::super::sqlite::{attributes_from_json, from_json, parse_kind, to_count};
use crate::contacts::{ContactFields, PhoneNumber};
use crate::model::{
    IdentifierKind, LastEvent, NewEvent, StoreError, StoredContact, StoredIdentifier, StoredSession,
};
use crate::segments::{definition, DefinitionKind, StoredDefinition};

/// The columns of an event row, in the order [`event_from_row`] reads them.
pub(super) const EVENT_SELECT: &str = "SELECT id, session_id, deployment_id, visitor_id, kind,
    name, time_ms, client_time_ms, received_ms,
    page_url, page_title, page_referrer, page_lang, page_keywords, page_search_query,
    campaign_json, context_json, login_id, attributes_json, traits_json, user_agent, ip_address,
    authenticated, identity_verified, user_agent_json, geolocation_json, referrer_json
    FROM events";

/// Session id, deployment id, visitor id, the event, and whether the session was
/// authenticated once the event was stored.
pub(super) type EventRow = (String, String, String, NewEvent, bool);

pub(super) fn event_from_row(row: &Row) -> Result<EventRow, StoreError> {
    let kind: String = row.try_get(4)?;
    let event = NewEvent {
        id: row.try_get(0)?,
        kind: parse_kind(&kind)?,
        name: row.try_get(5)?,
        time_ms: row.try_get(6)?,
        client_time_ms: row.try_get(7)?,
        received_ms: row.try_get(8)?,
        page: page_from_row(row, 9)?,
        context: from_json(row.try_get(16)?)?,
        login_id: row.try_get(17)?,
        attributes: attributes_from_json(row.try_get::<_, &str>(18)?)?,
        traits: attributes_from_json(row.try_get::<_, &str>(19)?)?,
        user_agent: row.try_get(20)?,
        ip_address: row.try_get(21)?,
        identity_verified: row.try_get(23)?,
        identity_proof: Default::default(),
        user_agent_info: from_json(row.try_get(24)?)?,
        geolocation: from_json(row.try_get(25)?)?,
        referrer_info: from_json(row.try_get(26)?)?,
    };
    Ok((
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        event,
        row.try_get(22)?,
    ))
}

/// A session with the events its card points at, in the order [`session_from_row`]
/// reads them. Page columns come in groups of seven, as [`page_from_row`] reads them.
pub(super) const SESSION_SELECT: &str = "SELECT
    s.id, s.short_id, s.deployment_id, s.visitor_id, s.first_ms, s.last_ms, s.ended_ms,
    s.event_count, s.pageview_count, s.search_terms_json,
    le.id, le.name, le.time_ms, le.user_agent, le.ip_address,
    lp.page_url, lp.page_title, lp.page_referrer, lp.page_lang, lp.page_keywords,
    lp.page_search_query, lp.campaign_json,
    fp.page_url, fp.page_title, fp.page_referrer, fp.page_lang, fp.page_keywords,
    fp.page_search_query, fp.campaign_json,
    ce.context_json,
    s.contact_id, s.authenticated,
    s.user_agent_json, s.geolocation_json, fp.referrer_json, s.contact_link
    FROM sessions s
    LEFT JOIN events le ON le.id = s.last_event_id AND le.session_id = s.id
    LEFT JOIN events lp ON lp.id = s.last_pageview_id AND lp.session_id = s.id
    LEFT JOIN events fp ON fp.id = s.landing_pageview_id AND fp.session_id = s.id
    LEFT JOIN events ce ON ce.id = s.context_event_id AND ce.session_id = s.id";

pub(super) fn session_from_row(row: &Row) -> Result<StoredSession, StoreError> {
    let last_event = match row.try_get::<_, Option<String>>(10)? {
        Some(id) => Some(LastEvent {
            id,
            name: row.try_get(11)?,
            time_ms: row.try_get(12)?,
        }),
        None => None,
    };
    Ok(StoredSession {
        id: row.try_get(0)?,
        short_id: row.try_get(1)?,
        deployment_id: row.try_get(2)?,
        visitor_id: row.try_get(3)?,
        first_ms: row.try_get(4)?,
        last_ms: row.try_get(5)?,
        ended_ms: row.try_get(6)?,
        event_count: to_count(row.try_get(7)?)?,
        pageview_count: to_count(row.try_get(8)?)?,
        search_terms: serde_json::from_str(row.try_get::<_, &str>(9)?)?,
        last_event,
        user_agent: row.try_get(13)?,
        ip_address: row.try_get(14)?,
        last_page: page_from_row(row, 15)?,
        landing_page: page_from_row(row, 22)?,
        context: from_json(row.try_get(29)?)?,
        contact_id: row.try_get(30)?,
        authenticated: row.try_get(31)?,
        user_agent_info: from_json(row.try_get(32)?)?,
        geolocation: from_json(row.try_get(33)?)?,
        landing_referrer: from_json(row.try_get(34)?)?,
        contact_link: row
            .try_get::<_, Option<&str>>(35)?
            .and_then(crate::identity::LinkKind::parse),
        // Filled by `attach_assignments`.
        segment_assignments: Vec::new(),
        outcome_achievements: Vec::new(),
    })
}

/// Reads the seven page columns starting at `start`; a NULL url means no page.
fn page_from_row(row: &Row, start: usize) -> Result<Option<Page>, StoreError> {
    let Some(url) = row.try_get::<_, Option<String>>(start)? else {
        return Ok(None);
    };
    let text = |offset: usize| -> Result<String, StoreError> {
        Ok(row
            .try_get::<_, Option<String>>(start + offset)?
            .unwrap_or_default())
    };
    let campaign = match row.try_get::<_, Option<&str>>(start + 6)? {
        Some(json) => serde_json::from_str(json)?,
        None => Map::new(),
    };
    Ok(Some(Page {
        url,
        title: text(1)?,
        referrer: text(2)?,
        lang: text(3)?,
        keywords: text(4)?,
        search_query: row.try_get(start + 5)?,
        campaign,
    }))
}

/// The columns of a contact row, in the order [`contact_from_row`] reads them.
pub(super) const CONTACT_SELECT: &str = "SELECT id, contact_type, first_name, middle_name,
    last_name, salutation, title, work_email, personal_email, other_email,
    work_phone_json, cell_phone_json, home_phone_json, other_phone_json,
    create_ms, modify_ms
    FROM contacts";

pub(super) fn contact_from_row(row: &Row) -> Result<StoredContact, StoreError> {
    let phone = |index: usize| -> Result<Option<PhoneNumber>, StoreError> {
        from_json(row.try_get(index)?)
    };
    Ok(StoredContact {
        id: row.try_get(0)?,
        contact_type: row.try_get(1)?,
        fields: ContactFields {
            first_name: row.try_get(2)?,
            middle_name: row.try_get(3)?,
            last_name: row.try_get(4)?,
            salutation: row.try_get(5)?,
            title: row.try_get(6)?,
            work_email: row.try_get(7)?,
            personal_email: row.try_get(8)?,
            other_email: row.try_get(9)?,
            work_phone: phone(10)?,
            cell_phone: phone(11)?,
            home_phone: phone(12)?,
            other_phone: phone(13)?,
        },
        identifiers: Vec::new(),
        create_ms: row.try_get(14)?,
        modify_ms: row.try_get(15)?,
    })
}

pub(super) fn identifier_from_row(row: &Row) -> Result<StoredIdentifier, StoreError> {
    let kind: &str = row.try_get(0)?;
    Ok(StoredIdentifier {
        kind: IdentifierKind::parse(kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown identifier type {kind:?}")))?,
        value: row.try_get(1)?,
        created_ms: row.try_get(2)?,
    })
}

/// The columns [`definition_from_row`] reads.
pub(super) const DEFINITION_SELECT: &str =
    "SELECT id, definition_json, version, created_ms, modified_ms FROM journey_definitions";

pub(super) fn definition_from_row(
    kind: DefinitionKind,
    row: &Row,
) -> Result<StoredDefinition, StoreError> {
    let id: String = row.try_get(0)?;
    let value: serde_json::Value = serde_json::from_str(row.try_get::<_, &str>(1)?)?;
    let definition = definition::parse(kind, &value)
        .map_err(|problem| StoreError::Corrupt(format!("{} {id}: {problem}", kind.as_str())))?;
    Ok(StoredDefinition {
        id,
        version: u64::try_from(row.try_get::<_, i64>(2)?).unwrap_or(0),
        definition,
        created_ms: row.try_get(3)?,
        modified_ms: row.try_get(4)?,
    })
}
