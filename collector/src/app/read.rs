//! The read side of the Journey API: sessions and their events.
//!
//! Every route here sits behind [`super::auth::require_bearer_token`].

use axum::extract::{Path, RawQuery, State};
use axum::Json;

use super::pagination::{next_page_uri, QueryParameters};
use super::AppState;
use crate::error::ApiError;
use crate::journey::{EntityListing, Event, Session};
use crate::store::SessionFilter;
use crate::validate::canonical_uuid;

/// `GET /api/v2/journey/sessions/{sessionId}`: one session card; 404 when unknown.
pub(super) async fn get_session(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    let lookup_id = session_id.clone();
    let session = state
        .with_store_blocking(move |store| store.session(&lookup_id))
        .await?
        .ok_or_else(|| session_not_found(&session_id))?;
    Ok(Json(Session::from_stored(&session)))
}

/// `GET /api/v2/journey/sessions/{sessionId}/events?pageSize=&after=`: the session's
/// events, oldest first, with the segment-assigned and outcome-achieved events merged
/// in (see [`super::segments::list_session_events`]).
pub(super) async fn list_session_events(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<EntityListing<Event>>, ApiError> {
    super::segments::list_session_events(state, session_id, query).await
}

/// `GET /api/v2/journey/sessions?deploymentId=&customerCookieId=&pageSize=&after=`
///
/// A Footpath extension to the Journey API, which lists sessions only per external
/// contact: every session, newest first (by `createdDate`), optionally only those of
/// one deployment and/or one visitor cookie. The response is a `SessionListing`
/// (`{"entities": [Session], "nextUri"}`); `after` is the opaque cursor from `nextUri`.
pub(super) async fn list_sessions(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<EntityListing<Session>>, ApiError> {
    let parameters = QueryParameters::parse(query.as_deref());
    let page_size = parameters.page_size()?;
    let after = parameters.text("after");
    let visitor_id =
        match parameters.text("customerCookieId") {
            Some(text) => Some(canonical_uuid(&text).ok_or_else(|| {
                ApiError::BadRequest("customerCookieId: must be a UUID".to_owned())
            })?),
            None => None,
        };
    let filter = SessionFilter {
        deployment_id: parameters.text("deploymentId"),
        visitor_id,
        contact_id: None,
    };
    let lookup_filter = filter.clone();
    let lookup_after = after.clone();
    let listing = state
        .with_store_blocking(move |store| {
            store.sessions(&lookup_filter, lookup_after.as_deref(), page_size)
        })
        .await?;
    let next_uri = next_page_uri(
        "/api/v2/journey/sessions",
        &[
            ("deploymentId", filter.deployment_id.clone()),
            ("customerCookieId", filter.visitor_id.clone()),
        ],
        page_size,
        listing.has_more,
        listing.items.last().map(|last| last.id.as_str()),
    );
    Ok(Json(EntityListing {
        entities: listing.items.iter().map(Session::from_stored).collect(),
        next_uri,
    }))
}

fn session_not_found(session_id: &str) -> ApiError {
    ApiError::NotFound(format!("session {session_id} not found"))
}

/// `GET /api/v2/footpath/stats`: the collector's counters since startup (a Footpath
/// extension, behind the same bearer token as the read API).
pub(super) async fn stats(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "excludedEventsTotal": state.excluded_events_total() }))
}
