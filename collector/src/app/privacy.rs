//! `/api/v2/footpath/privacy/...`: erasing and exporting one person's data (see
//! [`crate::privacy`] for what an erase removes and keeps).
//!
//! Every route here sits behind [`super::auth::require_bearer_token`]: nobody without
//! an API token can learn whether an id is known, let alone read or erase its data.

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;

use super::AppState;
use crate::contacts::ExternalContact;
use crate::error::ApiError;
use crate::journey::{EntityRef, Event, Session};
use crate::privacy::{DataSubject, ErasureReport};
use crate::timefmt::format_ms;
use crate::validate::canonical_uuid;

/// Events read per store call while an export is assembled.
const EXPORT_EVENTS_PER_READ: usize = 500;

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
    /// Newest first.
    pub sessions: Vec<ExportedSession>,
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

/// `GET /api/v2/footpath/privacy/contacts/{contactId}/export`
pub(super) async fn export_contact(
    State(state): State<AppState>,
    Path(contact_id): Path<String>,
) -> Result<Json<PersonalDataExport>, ApiError> {
    export(state, contact_subject(&contact_id)?).await
}

/// `GET /api/v2/footpath/privacy/deployments/{deploymentId}/visitors/{customerCookieId}/export`
pub(super) async fn export_visitor(
    State(state): State<AppState>,
    Path((deployment_id, visitor_id)): Path<(String, String)>,
) -> Result<Json<PersonalDataExport>, ApiError> {
    export(state, visitor_subject(&deployment_id, &visitor_id)?).await
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
            let mut sessions = Vec::with_capacity(found.session_ids.len());
            for session_id in &found.session_ids {
                if let Some(session) = export_session(store, session_id)? {
                    sessions.push(session);
                }
            }
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
                sessions,
            }))
        })
        .await?
        .ok_or_else(|| not_found(&subject))?;
    Ok(Json(export))
}

/// A session with all its events; `None` when it went in the meantime (retention).
fn export_session(
    store: &dyn crate::store::Store,
    session_id: &str,
) -> Result<Option<ExportedSession>, crate::store::StoreError> {
    let Some(session) = store.session(session_id)? else {
        return Ok(None);
    };
    let markers = super::segments::session_markers(&session);
    let mut events = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let Some(page) =
            store.session_events(session_id, after.as_deref(), EXPORT_EVENTS_PER_READ)?
        else {
            return Ok(None);
        };
        for stored in &page.items {
            events.push(ExportedEvent {
                event: Event::from_stored(stored),
                login_id: stored.event.login_id.clone(),
            });
            for (trigger, marker) in &markers {
                if *trigger == stored.event.id {
                    events.push(ExportedEvent {
                        event: marker.clone(),
                        login_id: None,
                    });
                }
            }
        }
        match page.items.last() {
            Some(last) if page.has_more => after = Some(last.event.id.clone()),
            _ => break,
        }
    }
    Ok(Some(ExportedSession {
        session: Session::from_stored(&session),
        events,
    }))
}
