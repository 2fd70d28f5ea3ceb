//! The read side of the Journey API: sessions and their events.
//!
//! Every route here sits behind [`super::auth::require_bearer_token`].

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::Json;

use super::AppState;
use crate::error::ApiError;
use crate::journey::{EntityListing, Event, Session};
use crate::store::SessionFilter;
use crate::validate::canonical_uuid;

const DEFAULT_PAGE_SIZE: usize = 25;
const MAX_PAGE_SIZE: usize = 100;

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
    let next_uri = match listing.items.last() {
        Some(last) if listing.has_more => Some(uri_with_query(
            "/api/v2/journey/sessions",
            &[
                ("deploymentId", filter.deployment_id.clone()),
                ("customerCookieId", filter.visitor_id.clone()),
                ("pageSize", Some(page_size.to_string())),
                ("after", Some(last.id.clone())),
            ],
        )),
        _ => None,
    };
    Ok(Json(EntityListing {
        entities: listing.items.iter().map(Session::from_stored).collect(),
        next_uri,
    }))
}

fn session_not_found(session_id: &str) -> ApiError {
    ApiError::NotFound(format!("session {session_id} not found"))
}

/// Query parameters, decoded by hand so that a bad value gets an error message that
/// names the parameter. Unknown parameters are ignored; of repeated ones the last wins.
pub(super) struct QueryParameters(HashMap<String, String>);

impl QueryParameters {
    pub(super) fn parse(query: Option<&str>) -> QueryParameters {
        let pairs = url::form_urlencoded::parse(query.unwrap_or("").as_bytes());
        QueryParameters(pairs.into_owned().collect())
    }

    /// A parameter's value; an empty value counts as absent.
    pub(super) fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).filter(|value| !value.is_empty()).cloned()
    }

    pub(super) fn page_size(&self) -> Result<usize, ApiError> {
        let Some(text) = self.text("pageSize") else {
            return Ok(DEFAULT_PAGE_SIZE);
        };
        match text.parse::<usize>() {
            Ok(size) if (1..=MAX_PAGE_SIZE).contains(&size) => Ok(size),
            _ => Err(ApiError::BadRequest(format!(
                "pageSize: must be a whole number from 1 to {MAX_PAGE_SIZE}, not {text:?}"
            ))),
        }
    }
}

pub(super) fn uri_with_query(path: &str, parameters: &[(&str, Option<String>)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in parameters {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    format!("{path}?{}", query.finish())
}

/// `GET /api/v2/footpath/stats`: the collector's counters since startup (a Footpath
/// extension, behind the same bearer token as the read API).
pub(super) async fn stats(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "excludedEventsTotal": state.excluded_events_total() }))
}
