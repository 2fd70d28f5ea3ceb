//! `/api/v2/journey/segments` and `/api/v2/journey/outcomes`: segment and outcome
//! definitions (see `crate::segments`), and a session's events listing, in which the
//! segment-assigned and outcome-achieved events follow the event that completed the
//! match.
//!
//! Every route here sits behind [`super::auth::require_bearer_token`].
//!
//! | route | status codes |
//! |---|---|
//! | `GET /api/v2/journey/{segments,outcomes}?pageSize=&pageNumber=` | 200, 400, 401 |
//! | `POST /api/v2/journey/{segments,outcomes}` | 201, 400, 401 |
//! | `GET /api/v2/journey/{segments,outcomes}/{id}` | 200, 401, 404 |
//! | `PATCH /api/v2/journey/{segments,outcomes}/{id}` (the fields sent replace the stored ones; `version`, when sent, must be the current one) | 200, 400, 401, 404 |
//! | `DELETE /api/v2/journey/{segments,outcomes}/{id}` | 204, 401, 404 |

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::pagination::{next_page_uri, uri_with_query, QueryParameters};
use super::AppState;
use crate::error::ApiError;
use crate::journey::{EntityListing, Event, TimelineMatch};
use crate::segments::definition::{self, DefinitionKind};
use crate::segments::{DefinitionWrite, StoredDefinition, MAX_DEFINITIONS_PER_KIND};
use crate::store::StoredSession;

fn collection_path(kind: DefinitionKind) -> &'static str {
    match kind {
        DefinitionKind::Segment => "/api/v2/journey/segments",
        DefinitionKind::Outcome => "/api/v2/journey/outcomes",
    }
}

fn plural(kind: DefinitionKind) -> &'static str {
    match kind {
        DefinitionKind::Segment => "segments",
        DefinitionKind::Outcome => "outcomes",
    }
}

fn not_found(kind: DefinitionKind, id: &str) -> ApiError {
    ApiError::NotFound(format!("{} {id} not found", kind.as_str()))
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|error| ApiError::BadRequest(format!("body: is not valid JSON: {error}")))
}

async fn list(
    state: AppState,
    kind: DefinitionKind,
    query: Option<String>,
) -> Result<Json<Value>, ApiError> {
    let parameters = QueryParameters::parse(query.as_deref());
    let page_size = parameters.page_size()?;
    let page_number = parameters.page_number()?;
    let (items, total) = state
        .with_store_blocking(move |store| store.definitions(kind, page_number, page_size))
        .await?;
    let page_count = total.div_ceil(page_size as u64).max(1);
    let page_uri = |number: usize| {
        uri_with_query(
            collection_path(kind),
            &[
                ("pageSize", Some(page_size.to_string())),
                ("pageNumber", Some(number.to_string())),
            ],
        )
    };
    let mut listing = json!({
        "entities": items.iter().map(StoredDefinition::to_json).collect::<Vec<_>>(),
        "pageSize": page_size,
        "pageNumber": page_number,
        "total": total,
        "pageCount": page_count,
    });
    if (page_number as u64) < page_count {
        listing["nextUri"] = json!(page_uri(page_number + 1));
    }
    if page_number > 1 {
        listing["previousUri"] = json!(page_uri(page_number - 1));
    }
    Ok(Json(listing))
}

async fn create(
    state: AppState,
    kind: DefinitionKind,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = parse_body(&body)?;
    let definition = definition::parse(kind, &body).map_err(ApiError::BadRequest)?;
    let now_ms = state.clock().now_ms();
    let written = state
        .with_store_blocking(move |store| store.create_definition(&definition, now_ms))
        .await?;
    match written {
        DefinitionWrite::Written(stored) => Ok((StatusCode::CREATED, Json(stored.to_json()))),
        DefinitionWrite::LimitReached => Err(ApiError::BadRequest(format!(
            "{}: the collector has {MAX_DEFINITIONS_PER_KIND} already, the most it keeps",
            plural(kind)
        ))),
        DefinitionWrite::NotFound | DefinitionWrite::VersionChanged { .. } => Err(
            ApiError::Internal("creating a definition reported an update's outcome".into()),
        ),
    }
}

async fn get_one(
    state: AppState,
    kind: DefinitionKind,
    id: String,
) -> Result<Json<Value>, ApiError> {
    let lookup_id = id.clone();
    let stored = state
        .with_store_blocking(move |store| store.definition(kind, &lookup_id))
        .await?
        .ok_or_else(|| not_found(kind, &id))?;
    Ok(Json(stored.to_json()))
}

async fn patch(
    state: AppState,
    kind: DefinitionKind,
    id: String,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = parse_body(&body)?;
    let Some(changes) = body.as_object() else {
        return Err(ApiError::BadRequest(format!(
            "body: the changes to {} must be a JSON object",
            kind.with_article()
        )));
    };
    let lookup_id = id.clone();
    let current = state
        .with_store_blocking(move |store| store.definition(kind, &lookup_id))
        .await?
        .ok_or_else(|| not_found(kind, &id))?;
    if let Some(version) = changes.get("version") {
        if version.as_u64() != Some(current.version) {
            return Err(ApiError::BadRequest(format!(
                "version: the {} is at version {}, not {version}",
                kind.as_str(),
                current.version
            )));
        }
    }
    let mut merged = current.definition.to_json();
    for (name, value) in changes {
        merged[name] = value.clone();
    }
    let definition = definition::parse(kind, &merged).map_err(ApiError::BadRequest)?;
    let now_ms = state.clock().now_ms();
    let base_version = current.version;
    let lookup_id = id.clone();
    let written = state
        .with_store_blocking(move |store| {
            store.update_definition(&lookup_id, &definition, base_version, now_ms)
        })
        .await?;
    match written {
        DefinitionWrite::Written(stored) => Ok(Json(stored.to_json())),
        DefinitionWrite::NotFound => Err(not_found(kind, &id)),
        DefinitionWrite::VersionChanged { current } => Err(ApiError::BadRequest(format!(
            "version: the {} changed meanwhile (now version {current}); read it and try again",
            kind.as_str()
        ))),
        DefinitionWrite::LimitReached => Err(ApiError::Internal(
            "updating a definition reported the limit".into(),
        )),
    }
}

async fn delete(state: AppState, kind: DefinitionKind, id: String) -> Result<StatusCode, ApiError> {
    let lookup_id = id.clone();
    let deleted = state
        .with_store_blocking(move |store| store.delete_definition(kind, &lookup_id))
        .await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(kind, &id))
    }
}

/// `GET /api/v2/journey/segments`.
pub(super) async fn list_segments(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    list(state, DefinitionKind::Segment, query).await
}

/// `POST /api/v2/journey/segments`: 201 with the new `JourneySegment`.
pub(super) async fn create_segment(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    create(state, DefinitionKind::Segment, body).await
}

pub(super) async fn get_segment(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    get_one(state, DefinitionKind::Segment, id).await
}

pub(super) async fn patch_segment(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    patch(state, DefinitionKind::Segment, id, body).await
}

pub(super) async fn delete_segment(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete(state, DefinitionKind::Segment, id).await
}

/// `GET /api/v2/journey/outcomes`.
pub(super) async fn list_outcomes(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    list(state, DefinitionKind::Outcome, query).await
}

/// `POST /api/v2/journey/outcomes`: 201 with the new `Outcome`.
pub(super) async fn create_outcome(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    create(state, DefinitionKind::Outcome, body).await
}

pub(super) async fn get_outcome(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    get_one(state, DefinitionKind::Outcome, id).await
}

pub(super) async fn patch_outcome(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    patch(state, DefinitionKind::Outcome, id, body).await
}

pub(super) async fn delete_outcome(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete(state, DefinitionKind::Outcome, id).await
}

/// The session's segment-assigned and outcome-achieved events, each with the id of the
/// event after which it comes, in timeline order ([`crate::journey::timeline_matches`],
/// which the desk's journey map follows too).
pub fn session_markers(session: &StoredSession) -> Vec<(String, Event)> {
    crate::journey::timeline_matches(&session.segment_assignments, &session.outcome_achievements)
        .into_iter()
        .map(|found| {
            let event = match found {
                TimelineMatch::Segment(assignment) => Event::segment_assigned(session, assignment),
                TimelineMatch::Outcome(achievement) => {
                    Event::outcome_achieved(session, achievement)
                }
            };
            (found.trigger_event_id().to_owned(), event)
        })
        .collect()
}

/// `GET /api/v2/journey/sessions/{sessionId}/events?pageSize=&after=`: the session's
/// events, oldest first, each followed by the segment-assigned and outcome-achieved
/// events it caused. `after` is the opaque cursor from `nextUri` (the id of the last
/// entity of the previous page).
pub(super) async fn list_session_events(
    state: AppState,
    session_id: String,
    query: Option<String>,
) -> Result<Json<EntityListing<Event>>, ApiError> {
    let parameters = QueryParameters::parse(query.as_deref());
    let page_size = parameters.page_size()?;
    let after = parameters.text("after");
    let lookup_id = session_id.clone();
    let found = state
        .with_store_blocking(move |store| {
            let Some(session) = store.session(&lookup_id)? else {
                return Ok(None);
            };
            let markers = session_markers(&session);
            // A cursor that names a marker continues after it: from its event, without
            // the markers up to and including it.
            let (events_after, skip_through) = match &after {
                Some(after) => match markers.iter().position(|(_, event)| event.id == *after) {
                    Some(position) => (Some(markers[position].0.clone()), Some(position)),
                    None => (Some(after.clone()), None),
                },
                None => (None, None),
            };
            let Some(listing) =
                store.session_events(&lookup_id, events_after.as_deref(), page_size)?
            else {
                return Ok(None);
            };
            let mut entities: Vec<Event> = Vec::new();
            let markers_of = |event_id: &str, skip_through: Option<usize>| -> Vec<Event> {
                markers
                    .iter()
                    .enumerate()
                    .filter(|(position, (trigger, _))| {
                        trigger == event_id && skip_through.is_none_or(|skip| *position > skip)
                    })
                    .map(|(_, (_, event))| event.clone())
                    .collect()
            };
            if let Some(cursor_event) = &events_after {
                entities.extend(markers_of(cursor_event, skip_through));
            }
            for stored in &listing.items {
                entities.push(Event::from_stored(stored));
                entities.extend(markers_of(&stored.event.id, None));
            }
            let has_more = listing.has_more || entities.len() > page_size;
            entities.truncate(page_size);
            Ok(Some((entities, has_more)))
        })
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("session {session_id} not found")))?;
    let (entities, has_more) = found;
    let next_uri = next_page_uri(
        &format!("/api/v2/journey/sessions/{session_id}/events"),
        &[],
        page_size,
        has_more,
        entities.last().map(|last| last.id.as_str()),
    );
    Ok(Json(EntityListing { entities, next_uri }))
}
