//! `/api/v2/externalcontacts/contacts`: the external contacts that identity resolution
//! links sessions to, and each contact's sessions.
//!
//! Every route here sits behind [`super::auth::require_bearer_token`].

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;

use super::pagination::{next_page_uri, uri_with_query, QueryParameters};
use super::AppState;
use crate::contacts::{ContactFields, ContactListing, ExternalContact};
use crate::error::ApiError;
use crate::journey::{EntityListing, Session};
use crate::store::{ContactQuery, SessionFilter};

const CONTACTS_PATH: &str = "/api/v2/externalcontacts/contacts";

/// `POST /api/v2/externalcontacts/contacts`: 201 with the new `Curated` contact.
pub(super) async fn create_contact(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<ExternalContact>), ApiError> {
    let fields = parse_contact_body(&state, &body)?;
    let now_ms = state.clock().now_ms();
    let contact = state
        .with_store_blocking(move |store| store.create_contact(&fields, now_ms))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ExternalContact::from_stored(&contact)),
    ))
}

/// `GET /api/v2/externalcontacts/contacts/{contactId}`: 404 when unknown.
pub(super) async fn get_contact(
    State(state): State<AppState>,
    Path(contact_id): Path<String>,
) -> Result<Json<ExternalContact>, ApiError> {
    let lookup_id = contact_id.clone();
    let contact = state
        .with_store_blocking(move |store| store.contact(&lookup_id))
        .await?
        .ok_or_else(|| contact_not_found(&contact_id))?;
    Ok(Json(ExternalContact::from_stored(&contact)))
}

/// `PUT /api/v2/externalcontacts/contacts/{contactId}`: replaces every writable field
/// (a field left out becomes absent) and moves `modifyDate`.
pub(super) async fn replace_contact(
    State(state): State<AppState>,
    Path(contact_id): Path<String>,
    body: Bytes,
) -> Result<Json<ExternalContact>, ApiError> {
    let fields = parse_contact_body(&state, &body)?;
    let now_ms = state.clock().now_ms();
    let lookup_id = contact_id.clone();
    let contact = state
        .with_store_blocking(move |store| store.replace_contact(&lookup_id, &fields, now_ms))
        .await?
        .ok_or_else(|| contact_not_found(&contact_id))?;
    Ok(Json(ExternalContact::from_stored(&contact)))
}

/// `DELETE /api/v2/externalcontacts/contacts/{contactId}`: 204. The contact's
/// identifiers go with it; its sessions stay, no longer linked to any contact.
pub(super) async fn delete_contact(
    State(state): State<AppState>,
    Path(contact_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let lookup_id = contact_id.clone();
    let deleted = state
        .with_store_blocking(move |store| store.delete_contact(&lookup_id))
        .await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(contact_not_found(&contact_id))
    }
}

/// `GET /api/v2/externalcontacts/contacts?q=&pageSize=&pageNumber=`: contacts oldest
/// first; `q` matches a part of a name, of any email, or of the digits of any phone
/// number, case-insensitively.
pub(super) async fn list_contacts(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<ContactListing>, ApiError> {
    let parameters = QueryParameters::parse(query.as_deref());
    let page_size = parameters.page_size()?;
    let page_number = parameters.page_number()?;
    let text = parameters.text("q");
    let contact_query = ContactQuery {
        text: text.clone(),
        page_number,
        page_size,
    };
    let page = state
        .with_store_blocking(move |store| store.contacts(&contact_query))
        .await?;
    let page_count = page.total.div_ceil(page_size as u64);
    let uri = |number: u64| {
        uri_with_query(
            CONTACTS_PATH,
            &[
                ("q", text.clone()),
                ("pageSize", Some(page_size.to_string())),
                ("pageNumber", Some(number.to_string())),
            ],
        )
    };
    let current = page_number as u64;
    Ok(Json(ContactListing {
        entities: page
            .items
            .iter()
            .map(ExternalContact::from_stored)
            .collect(),
        page_size,
        page_number,
        total: page.total,
        page_count,
        first_uri: uri(1),
        previous_uri: (current > 1).then(|| uri((current - 1).min(page_count.max(1)))),
        next_uri: (current < page_count).then(|| uri(current + 1)),
        last_uri: (page_count >= 1).then(|| uri(page_count)),
    }))
}

/// `GET /api/v2/externalcontacts/contacts/{contactId}/journey/sessions?pageSize=&after=`:
/// the sessions linked to the contact, newest first; 404 for an unknown contact.
pub(super) async fn list_contact_sessions(
    State(state): State<AppState>,
    Path(contact_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<EntityListing<Session>>, ApiError> {
    let parameters = QueryParameters::parse(query.as_deref());
    let page_size = parameters.page_size()?;
    let after = parameters.text("after");
    let lookup_id = contact_id.clone();
    let listing = state
        .with_store_blocking(move |store| {
            if store.contact(&lookup_id)?.is_none() {
                return Ok(None);
            }
            let filter = SessionFilter {
                contact_id: Some(lookup_id),
                ..SessionFilter::default()
            };
            store
                .sessions(&filter, after.as_deref(), page_size)
                .map(Some)
        })
        .await?
        .ok_or_else(|| contact_not_found(&contact_id))?;
    let next_uri = next_page_uri(
        &format!("{CONTACTS_PATH}/{contact_id}/journey/sessions"),
        &[],
        page_size,
        listing.has_more,
        listing.items.last().map(|last| last.id.as_str()),
    );
    Ok(Json(EntityListing {
        entities: listing.items.iter().map(Session::from_stored).collect(),
        next_uri,
    }))
}

fn parse_contact_body(state: &AppState, body: &[u8]) -> Result<ContactFields, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::BadRequest(format!("body: is not valid JSON: {error}")))?;
    ContactFields::from_json(&value, state.config().default_phone_region.as_deref())
        .map_err(ApiError::BadRequest)
}

fn contact_not_found(contact_id: &str) -> ApiError {
    ApiError::NotFound(format!("contact {contact_id} not found"))
}
