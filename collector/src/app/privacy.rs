//! `/api/v2/footpath/privacy/...`: erasing and exporting one person's data (see
//! [`crate::privacy`] for what an erase removes and keeps).
//!
//! Every route here sits behind [`super::auth::require_bearer_token`]: nobody without
//! an API token can learn whether an id is known, let alone read or erase its data.

use axum::extract::{Path, RawQuery, State};
use axum::http::Uri;
use axum::Json;
use serde::Serialize;

use super::pagination::{uri_with_query, QueryParameters};
use super::AppState;
use crate::contacts::ExternalContact;
use crate::error::ApiError;
use crate::journey::{EntityRef, Event, Session};
use crate::privacy::{
    DataSubject, ErasureReport, SessionKey, MAX_EXPORT_PAGE_BYTES, MAX_EXPORT_PAGE_EVENTS,
};
use crate::store::{Store, StoreError};
use crate::timefmt::format_ms;
use crate::validate::canonical_uuid;

/// Events read per store call while an export is assembled.
const EXPORT_EVENTS_PER_READ: usize = 500;

/// Event ids are UUIDs; a cursor whose event id is longer is none of ours.
const MAX_CURSOR_EVENT_ID_BYTES: usize = 128;

/// Deployment ids are configured by the operator and short; a longer path segment is
/// no deployment's.
const MAX_DEPLOYMENT_ID_BYTES: usize = 128;

/// The answer to an erase.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Erasure {
    /// Sessions that are now shells without personal data.
    pub sessions_erased: u64,
    /// Events that are now shells without personal data.
    pub events_erased: u64,
    /// Links from a visitor cookie to a contact that were removed.
    pub cookie_links_removed: u64,
    /// Whether a contact record (with its identifiers) was deleted.
    pub contact_deleted: bool,
}

impl From<ErasureReport> for Erasure {
    fn from(report: ErasureReport) -> Erasure {
        Erasure {
            sessions_erased: report.sessions,
            events_erased: report.events,
            cookie_links_removed: report.cookie_links,
            contact_deleted: report.contact_deleted,
        }
    }
}

/// Everything stored about a contact or a visitor.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonalDataExport {
    pub exported_date: String,
    /// The contact record (a contact's export).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<ExternalContact>,
    /// The visitor (a visitor's export).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitor: Option<ExportedVisitor>,
    /// The customer-scope segments the contact or cookie holds, oldest first.
    pub customer_segments: Vec<ExportedCustomerSegment>,
    /// Newest first. A session whose events go on in the next page is there again,
    /// with the rest of its events.
    pub sessions: Vec<ExportedSession>,
    /// The next page, when the export goes on (see [`MAX_EXPORT_PAGE_EVENTS`] and
    /// [`MAX_EXPORT_PAGE_BYTES`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_uri: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedCustomerSegment {
    pub segment: EntityRef,
    pub display_name: String,
    pub assigned_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_date: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedVisitor {
    pub deployment_id: String,
    pub customer_cookie_id: String,
    /// The contact that identity resolution linked the cookie to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_contact_id: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedSession {
    pub session: Session,
    /// Oldest first, with the session's segment and outcome events in place.
    pub events: Vec<ExportedEvent>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedEvent {
    pub event: Event,
    /// The login id an identify call sent (not part of the Journey API's event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_id: Option<String>,
}

/// `POST /api/v2/footpath/privacy/contacts/{contactId}/erase`
pub(super) async fn erase_contact(
    State(state): State<AppState>,
    Path(contact_id): Path<String>,
) -> Result<Json<Erasure>, ApiError> {
    erase(state, contact_subject(&contact_id)?).await
}

/// `POST /api/v2/footpath/privacy/deployments/{deploymentId}/visitors/{customerCookieId}/erase`
pub(super) async fn erase_visitor(
    State(state): State<AppState>,
    Path((deployment_id, visitor_id)): Path<(String, String)>,
) -> Result<Json<Erasure>, ApiError> {
    erase(state, visitor_subject(&deployment_id, &visitor_id)?).await
}

/// `GET /api/v2/footpath/privacy/contacts/{contactId}/export?pageSize=&after=`
pub(super) async fn export_contact(
    State(state): State<AppState>,
    Path(contact_id): Path<String>,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Result<Json<PersonalDataExport>, ApiError> {
    let page = ExportPageRequest::parse(uri.path(), query.as_deref())?;
    export(state, contact_subject(&contact_id)?, page).await
}

/// `GET /api/v2/footpath/privacy/deployments/{deploymentId}/visitors/{customerCookieId}/export?pageSize=&after=`
pub(super) async fn export_visitor(
    State(state): State<AppState>,
    Path((deployment_id, visitor_id)): Path<(String, String)>,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Result<Json<PersonalDataExport>, ApiError> {
    let page = ExportPageRequest::parse(uri.path(), query.as_deref())?;
    export(state, visitor_subject(&deployment_id, &visitor_id)?, page).await
}

/// Where an export page starts: in the session `session`, after its event
/// `after_event` (from its first event when `None`); then the sessions that follow it
/// in [`crate::privacy::SubjectSessions::sessions`]' order. As text (`after`):
/// `{first_ms}.{session id}` or `{first_ms}.{session id}.{event id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ExportCursor {
    session: SessionKey,
    after_event: Option<String>,
}

impl ExportCursor {
    fn parse(text: &str) -> Option<ExportCursor> {
        let mut parts = text.splitn(3, '.');
        let first_ms = parts.next()?.parse::<i64>().ok()?;
        let id = canonical_uuid(parts.next()?)?;
        let after_event = match parts.next() {
            None => None,
            Some(event) if !event.is_empty() && event.len() <= MAX_CURSOR_EVENT_ID_BYTES => {
                Some(event.to_owned())
            }
            Some(_) => return None,
        };
        Some(ExportCursor {
            session: SessionKey { id, first_ms },
            after_event,
        })
    }

    fn text(&self) -> String {
        let mut text = format!("{}.{}", self.session.first_ms, self.session.id);
        if let Some(event) = &self.after_event {
            text.push('.');
            text.push_str(event);
        }
        text
    }
}

/// An export request's page: its size, where it starts, and the path its `nextUri`
/// repeats.
struct ExportPageRequest {
    path: String,
    page_size: usize,
    cursor: Option<ExportCursor>,
}

impl ExportPageRequest {
    fn parse(path: &str, query: Option<&str>) -> Result<ExportPageRequest, ApiError> {
        let parameters = QueryParameters::parse(query);
        let page_size = match parameters.text("pageSize") {
            None => MAX_EXPORT_PAGE_EVENTS,
            Some(text) => match text.parse::<usize>() {
                Ok(size) if (1..=MAX_EXPORT_PAGE_EVENTS).contains(&size) => size,
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "pageSize: must be a whole number from 1 to {MAX_EXPORT_PAGE_EVENTS}, not {text:?}"
                    )))
                }
            },
        };
        let cursor = match parameters.text("after") {
            None => None,
            Some(text) => Some(ExportCursor::parse(&text).ok_or_else(|| {
                ApiError::BadRequest("after: must be the cursor of an export's nextUri".to_owned())
            })?),
        };
        Ok(ExportPageRequest {
            path: path.to_owned(),
            page_size,
            cursor,
        })
    }
}

fn contact_subject(contact_id: &str) -> Result<DataSubject, ApiError> {
    let contact_id = canonical_uuid(contact_id)
        .ok_or_else(|| ApiError::BadRequest("contactId: must be a UUID".to_owned()))?;
    Ok(DataSubject::Contact { contact_id })
}

fn visitor_subject(deployment_id: &str, visitor_id: &str) -> Result<DataSubject, ApiError> {
    if deployment_id.is_empty() || deployment_id.len() > MAX_DEPLOYMENT_ID_BYTES {
        return Err(ApiError::BadRequest(format!(
            "deploymentId: must be 1 to {MAX_DEPLOYMENT_ID_BYTES} bytes"
        )));
    }
    let visitor_id = canonical_uuid(visitor_id)
        .ok_or_else(|| ApiError::BadRequest("customerCookieId: must be a UUID".to_owned()))?;
    Ok(DataSubject::Visitor {
        deployment_id: deployment_id.to_owned(),
        visitor_id,
    })
}

fn not_found(subject: &DataSubject) -> ApiError {
    ApiError::NotFound(match subject {
        DataSubject::Contact { contact_id } => {
            format!("nothing is stored about contact {contact_id}")
        }
        DataSubject::Visitor {
            deployment_id,
            visitor_id,
        } => format!("nothing is stored about visitor {visitor_id} of deployment {deployment_id}"),
    })
}

async fn erase(state: AppState, subject: DataSubject) -> Result<Json<Erasure>, ApiError> {
    let lookup = subject.clone();
    let report = state
        .with_store_blocking(move |store| {
            let report = store.erase_subject(&lookup)?;
            if report.is_some() {
                // The desks of the other collectors on the database reload too. The
                // erasure is committed: a lost notification must not undo it.
                if let Err(error) = store.tell_peers(&crate::peers::PeerMessage::Erased) {
                    tracing::warn!(%error, "could not tell the other collectors of an erasure");
                }
            }
            Ok(report)
        })
        .await?
        .ok_or_else(|| not_found(&subject))?;
    state.desk().announce_erased();
    // Counts only: at INFO, logs name no visitor or contact.
    tracing::info!(
        subject = match subject {
            DataSubject::Contact { .. } => "contact",
            DataSubject::Visitor { .. } => "visitor",
        },
        sessions = report.sessions,
        events = report.events,
        cookie_links = report.cookie_links,
        contact_deleted = report.contact_deleted,
        "erased a data subject"
    );
    Ok(Json(Erasure::from(report)))
}

async fn export(
    state: AppState,
    subject: DataSubject,
    request: ExportPageRequest,
) -> Result<Json<PersonalDataExport>, ApiError> {
    let now_ms = state.clock().now_ms();
    let lookup = subject.clone();
    let export = state
        .with_store_blocking(move |store| {
            let Some(found) = store.subject_sessions(&lookup)? else {
                return Ok(None);
            };
            let (contact, visitor) = match &lookup {
                DataSubject::Contact { contact_id } => {
                    // Erased between the two reads: as if it had never been there.
                    let Some(contact) = store.contact(contact_id)? else {
                        return Ok(None);
                    };
                    (Some(ExternalContact::from_stored(&contact)), None)
                }
                DataSubject::Visitor {
                    deployment_id,
                    visitor_id,
                } => (
                    None,
                    Some(ExportedVisitor {
                        deployment_id: deployment_id.clone(),
                        customer_cookie_id: visitor_id.clone(),
                        external_contact_id: found.linked_contact_id.clone(),
                    }),
                ),
            };
            let mut page = ExportPage::new(request.page_size, MAX_EXPORT_PAGE_BYTES);
            let next = page.fill(store, &found.sessions, request.cursor.as_ref())?;
            let next_uri = next.map(|cursor| {
                uri_with_query(
                    &request.path,
                    &[
                        ("pageSize", Some(request.page_size.to_string())),
                        ("after", Some(cursor.text())),
                    ],
                )
            });
            let customer_segments = found
                .customer_segments
                .iter()
                .map(|segment| ExportedCustomerSegment {
                    segment: EntityRef {
                        id: segment.segment_id.clone(),
                    },
                    display_name: segment.display_name.clone(),
                    assigned_date: format_ms(segment.assigned_ms),
                    expires_date: segment.expires_ms.map(format_ms),
                })
                .collect();
            Ok(Some(PersonalDataExport {
                exported_date: format_ms(now_ms),
                contact,
                visitor,
                customer_segments,
                sessions: page.sessions,
                next_uri,
            }))
        })
        .await?
        .ok_or_else(|| not_found(&subject))?;
    Ok(Json(export))
}

/// The sessions and events of one export page, filled up to its bounds.
struct ExportPage {
    sessions: Vec<ExportedSession>,
    /// Stored events taken (with their segment and outcome events).
    events: usize,
    /// JSON bytes of the sessions and events taken.
    bytes: usize,
    max_events: usize,
    max_bytes: usize,
}

impl ExportPage {
    fn new(max_events: usize, max_bytes: usize) -> ExportPage {
        ExportPage {
            sessions: Vec::new(),
            events: 0,
            bytes: 0,
            max_events,
            max_bytes,
        }
    }

    /// Whether `bytes` more fit. The first event always does, so that a page moves on.
    fn fits(&self, bytes: usize) -> bool {
        self.events == 0 || (self.events < self.max_events && self.bytes + bytes <= self.max_bytes)
    }

    /// Takes the subject's sessions (`keys`, newest first) from `cursor` on, until
    /// the page is full; returns where the next page starts, `None` when nothing is
    /// left.
    fn fill(
        &mut self,
        store: &dyn Store,
        keys: &[SessionKey],
        cursor: Option<&ExportCursor>,
    ) -> Result<Option<ExportCursor>, StoreError> {
        // The cursor's session first, by id (its `first_ms` may have moved back
        // since); then, without it, every session after it in the order.
        let mut todo: Vec<(&SessionKey, Option<&str>)> = Vec::new();
        let position = match cursor {
            None => 0,
            Some(cursor) => {
                if let Some(key) = keys.iter().find(|key| key.id == cursor.session.id) {
                    todo.push((key, cursor.after_event.as_deref()));
                }
                let at = (cursor.session.first_ms, cursor.session.id.as_str());
                keys.iter()
                    .position(|key| (key.first_ms, key.id.as_str()) < at)
                    .unwrap_or(keys.len())
            }
        };
        let cursor_id = cursor.map(|cursor| cursor.session.id.as_str());
        todo.extend(
            keys[position..]
                .iter()
                .filter(|key| Some(key.id.as_str()) != cursor_id)
                .map(|key| (key, None)),
        );
        for (key, after) in todo {
            if let Some(next) = self.take_session(store, key, after)? {
                return Ok(Some(next));
            }
        }
        Ok(None)
    }

    /// Takes the session's events after `after`; the cursor of the first event that
    /// did not fit, if one did not. A session gone in the meantime (retention) is
    /// left out.
    fn take_session(
        &mut self,
        store: &dyn Store,
        key: &SessionKey,
        after: Option<&str>,
    ) -> Result<Option<ExportCursor>, StoreError> {
        let Some(session) = store.session(&key.id)? else {
            return Ok(None);
        };
        let markers = super::segments::session_markers(&session);
        let mut exported = ExportedSession {
            session: Session::from_stored(&session),
            events: Vec::new(),
        };
        let session_bytes = json_len(&exported.session);
        let stop_here = |last: Option<&str>| ExportCursor {
            session: key.clone(),
            after_event: last.map(str::to_owned),
        };
        let mut last_taken: Option<String> = after.map(str::to_owned);
        let mut next = None;
        'reading: loop {
            let Some(read) =
                store.session_events(&key.id, last_taken.as_deref(), EXPORT_EVENTS_PER_READ)?
            else {
                return Ok(None);
            };
            for stored in &read.items {
                // The event with the segment and outcome events it completed: they
                // stay on one page, since the cursor names stored events only.
                let mut unit = vec![ExportedEvent {
                    event: Event::from_stored(stored),
                    login_id: stored.event.login_id.clone(),
                }];
                for (trigger, marker) in &markers {
                    if *trigger == stored.event.id {
                        unit.push(ExportedEvent {
                            event: marker.clone(),
                            login_id: None,
                        });
                    }
                }
                let mut bytes: usize = unit.iter().map(json_len).sum();
                if exported.events.is_empty() {
                    bytes += session_bytes;
                }
                if !self.fits(bytes) {
                    next = Some(stop_here(last_taken.as_deref()));
                    break 'reading;
                }
                self.events += 1;
                self.bytes += bytes;
                exported.events.extend(unit);
                last_taken = Some(stored.event.id.clone());
            }
            if !read.has_more || read.items.is_empty() {
                break;
            }
        }
        // A session shows on a page with one of its events at least, or, with none
        // stored, whole.
        if !exported.events.is_empty() || (next.is_none() && after.is_none()) {
            if exported.events.is_empty() {
                self.bytes += session_bytes;
            }
            self.sessions.push(exported);
        }
        Ok(next)
    }
}

/// The length of `value`'s JSON, as the page will carry it.
fn json_len<T: Serialize>(value: &T) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Serialising these types cannot fail (no maps with non-string keys).
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: &str = "0194f1a0-0000-7000-8000-000000000001";

    #[test]
    fn export_cursors_read_back_what_they_write_and_nothing_else() {
        let check = |text: &str, expected: Option<(i64, Option<&str>)>| {
            let parsed = ExportCursor::parse(text);
            let got = parsed.as_ref().map(|cursor| {
                assert_eq!(cursor.session.id, SESSION, "{text}");
                (cursor.session.first_ms, cursor.after_event.as_deref())
            });
            assert_eq!(got, expected, "{text}");
            if let Some(cursor) = parsed {
                assert_eq!(ExportCursor::parse(&cursor.text()), Some(cursor), "{text}");
            }
        };
        check(
            &format!("1795500000000.{SESSION}"),
            Some((1_795_500_000_000, None)),
        );
        check(&format!("-5.{SESSION}.e-1"), Some((-5, Some("e-1"))));
        // An event id may hold a dot: the cursor splits at the first two only.
        check(&format!("7.{SESSION}.a.b"), Some((7, Some("a.b"))));
        // Upper-case ids are read as the canonical ones.
        check(&format!("7.{}", SESSION.to_uppercase()), Some((7, None)));
        for bad in [
            String::new(),
            "7".to_owned(),
            format!("x.{SESSION}"),
            "7.not-a-uuid".to_owned(),
            format!("7.{SESSION}."),
            format!("7.{SESSION}.{}", "e".repeat(129)),
        ] {
            check(&bad, None);
        }
    }
}
