//! The public ingest side of the Journey API, for existing Journey integrations:
//!
//! - `POST /api/v2/journey/deployments/{deploymentId}/webevents` records one web event
//!   (a `WebEventRequest`, see [`crate::webevents`]) and answers `200` with a
//!   `WebEventResponse`: the event as stored, with the server's enrichment and the
//!   session it landed in. An event from an address that the deployment excludes is
//!   answered `204 No Content` and stored nowhere, as for batches.
//! - `GET /api/v2/journey/deployments/{deploymentId}/customers/{customerCookieId}/ping`
//!   keeps the visitor's live session alive without an event and answers a
//!   `DeploymentPing`. Pings are rate limited per visitor and per client address
//!   (`visitor_ping_rate_limit_per_minute`, `client_ip_ping_rate_limit_per_minute`:
//!   429 with `Retry-After`) and are only recorded in memory
//!   ([`crate::store::Store::record_ping`]): they never wait for the database nor take
//!   its writer for a commit of their own, so a flood of pings cannot delay batches.
//!
//! The web event takes its place among the `max_concurrent_ingest_requests` only once
//! its body has arrived, as batches do.
//!
//! Both are public, like the SDK's batch endpoint. CORS is per deployment: a request
//! with an `Origin` must come from one of the deployment's `allowed_origins` (else
//! `403`), and only then does the response carry `Access-Control-Allow-Origin`. A
//! request without an `Origin` is not from a browser (a site's server calls the
//! endpoint for its visitors) and is let through.

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, request, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::batch::{forwarded_for, socket_peer, take_identity_token, token_context};
use super::pagination::QueryParameters;
use super::pipeline::{
    add_cors_headers, ingest_response, origin_allowed_by_any_deployment, preflight_response,
    read_ingest_body, store_and_wait, Gzip,
};
use super::AppState;
use crate::config::DeploymentConfig;
use crate::enrich::client_ip::{client_ip, in_any};
use crate::enrich::referrer::ReferrerCache;
use crate::enrich::user_agent::parse_user_agent;
use crate::error::ApiError;
use crate::journey::{DeploymentPing, WebEventResponse};
use crate::limits::{
    bounded_user_agent, check_request_headers, truncate_at_char_boundary, EventLimits,
};
use crate::metrics::{IngestEndpoint, RefusalCounts, RefusalReason};
use crate::store::{IngestOutcome, NewBatch};
use crate::validate::{canonical_uuid, validate_event_with_cache, BatchContext};
use crate::webevents::{check_created_date, event_id_at, request_field_error, WebEventRequest};

/// `POST .../webevents`.
pub(super) async fn receive_web_event(
    State(state): State<AppState>,
    Path(deployment_id): Path<String>,
    request: Request,
) -> Response {
    let started = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let mut cors_origin = None;
    let mut uncounted_events = None;
    let result = record_web_event(
        &state,
        &deployment_id,
        &parts,
        body,
        &mut cors_origin,
        &mut uncounted_events,
    )
    .await;
    ingest_response(
        &state,
        IngestEndpoint::WebEvent,
        started,
        result,
        uncounted_events,
        cors_origin,
    )
}

/// `OPTIONS .../webevents`: the preflight a browser sends before posting
/// `application/json`.
pub(super) async fn web_event_preflight(
    State(state): State<AppState>,
    Path(deployment_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut cors_origin = None;
    let result = check_deployment_and_origin(&state, &deployment_id, &headers, &mut cors_origin);
    let mut response = match (result, cors_origin.clone()) {
        (Ok(_), Some(origin)) => return preflight_response(origin),
        (Ok(_), None) => {
            ApiError::OriginNotAllowed("a preflight request needs an Origin header".to_owned())
                .into_response()
        }
        (Err(error), _) => error.into_response(),
    };
    add_cors_headers(response.headers_mut(), cors_origin);
    response
}

/// `GET .../customers/{customerCookieId}/ping?dl=&dt=&sessionId=&sinceLastBeaconMilliseconds=&appNamespace=`
///
/// Moves the last activity of the visitor's live session (see
/// [`crate::store::Store::record_ping`]) to now, so that a visitor who reads a long
/// page without clicking keeps their session. It never creates a session or an event,
/// and a visitor without a live session is left alone. The move is written with the
/// visitor's next event or by the next sweep (within `sweep_interval_seconds`), not
/// before the answer; the answer is the same whether the visitor has a live session
/// or not, so it tells the sender nothing about the session. `dl` (page URL), `dt`
/// (page title), `sessionId` and `appNamespace` are accepted and not used: the session
/// is the collector's own, found by the cookie.
pub(super) async fn ping(
    State(state): State<AppState>,
    Path((deployment_id, customer_cookie_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    let (parts, _body) = request.into_parts();
    let mut cors_origin = None;
    let result = keep_alive(
        &state,
        &deployment_id,
        &customer_cookie_id,
        &parts,
        query.as_deref(),
        &mut cors_origin,
    );
    let mut response = match result {
        Ok(ping) => Json(ping).into_response(),
        Err(error) => error.into_response(),
    };
    // Every ping must reach the collector.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    add_cors_headers(response.headers_mut(), cors_origin);
    response
}

/// The deployment, when it exists and the request's `Origin` (if any) may use it.
/// Sets `cors_origin` to the origin as soon as the response may be read by it.
fn check_deployment_and_origin<'a>(
    state: &'a AppState,
    deployment_id: &str,
    headers: &HeaderMap,
    cors_origin: &mut Option<HeaderValue>,
) -> Result<&'a DeploymentConfig, ApiError> {
    let Some(deployment) = state.config().deployment(deployment_id) else {
        // Readable by any origin that some deployment allows, as for batches.
        *cors_origin = origin_allowed_by_any_deployment(state, headers);
        return Err(ApiError::DeploymentNotFound(format!(
            "deploymentId: no deployment {deployment_id:?} is configured"
        )));
    };
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(deployment);
    };
    let origin_text = origin.to_str().unwrap_or("");
    if !deployment.allows_origin(Some(origin_text)) {
        return Err(ApiError::OriginNotAllowed(format!(
            "origin {origin_text} may not send events for deployment {:?}",
            deployment.id
        )));
    }
    *cors_origin = Some(origin.clone());
    Ok(deployment)
}

/// Validates, enriches, resolves and stores one web event. `None`: dropped by the
/// deployment's IP exclusions. `uncounted_events` is `Some(1)` from when the body is
/// read as JSON until the event is counted in the metrics (as for batches).
async fn record_web_event(
    state: &AppState,
    deployment_id: &str,
    parts: &request::Parts,
    body: Body,
    cors_origin: &mut Option<HeaderValue>,
    uncounted_events: &mut Option<u64>,
) -> Result<Option<WebEventResponse>, ApiError> {
    let config = state.config();
    check_request_headers(&parts.headers)?;
    let deployment =
        check_deployment_and_origin(state, deployment_id, &parts.headers, cors_origin)?;
    let body = read_ingest_body(state, parts, body, Gzip::Refused).await?;
    let json: serde_json::Value = serde_json::from_slice(&body.bytes)
        .map_err(|error| ApiError::BadRequest(format!("body: is not valid JSON: {error}")))?;
    *uncounted_events = Some(1);
    let request = WebEventRequest::parse(&json).map_err(ApiError::BadRequest)?;

    let now_ms = state.clock().now_ms();
    let time_ms = request.created_ms.unwrap_or(now_ms);
    check_created_date(time_ms, now_ms).map_err(ApiError::BadRequest)?;

    // `ipAddress` is believed only from a trusted proxy: anyone else could claim any
    // address, and with it someone else's geolocation or an IP exclusion.
    let peer = socket_peer(parts);
    let peer_is_trusted = peer.is_some_and(|peer| in_any(&config.trusted_proxies, peer));
    let client_address = match request.ip_address {
        Some(address) if peer_is_trusted => Some(address.to_canonical()),
        _ => client_ip(peer, &forwarded_for(parts), &config.trusted_proxies),
    };
    // Exclusion first, as for SDK batches: excluded traffic spends no rate allowance.
    let privacy = config.deployment_privacy(&deployment.id);
    if client_address.is_some_and(|address| in_any(&privacy.ip_exclusions, address)) {
        state.count_excluded_events(1);
        state.metrics().count_refused(RefusalReason::IpExcluded, 1);
        state.count_refused_for(&deployment.id, RefusalReason::IpExcluded, 1);
        *uncounted_events = None;
        tracing::debug!(deployment = %deployment.id, "web event dropped by IP exclusion");
        return Ok(None);
    }
    state
        .rate_limits()
        .check(&request.customer_cookie_id, client_address, 1)
        .inspect_err(|_| state.count_refused_for(&deployment.id, RefusalReason::RateLimited, 1))?;

    // The request's own `User-Agent` stands in only when the body says nothing about
    // the browser: a site's server calling for a visitor sends its own.
    let described = request.described_user_agent();
    let max_user_agent_bytes = config.max_user_agent_bytes;
    let user_agent = match &request.user_agent_string {
        Some(text) => Some(truncate_at_char_boundary(text, max_user_agent_bytes).to_owned()),
        None if described.is_none() => {
            bounded_user_agent(&parts.headers, max_user_agent_bytes).map(str::to_owned)
        }
        None => None,
    };
    let user_agent_info = user_agent
        .as_deref()
        .and_then(parse_user_agent)
        .or(described);
    let geolocation = client_address
        .and_then(|address| state.geoip().and_then(|database| database.lookup(address)));
    let context = BatchContext {
        // The event's time is on the server's clock: nothing to correct.
        sent_at_ms: now_ms,
        now_ms,
        max_event_age_ms: config.max_event_age_ms(),
        user_agent,
        ip_address: client_address
            .filter(|_| privacy.store_ip_address)
            .map(|address| address.to_string()),
        user_agent_info,
        geolocation,
    };
    let event_id = event_id_at(time_ms);
    let wire_event = request.to_wire_event(&event_id, time_ms);
    let event = match EventLimits::from_config(config).check_event(0, &wire_event) {
        Err(error) => {
            state.metrics().count_refused(RefusalReason::TooLarge, 1);
            state.count_refused_for(&deployment.id, RefusalReason::TooLarge, 1);
            *uncounted_events = None;
            Err(error)
        }
        Ok(()) => {
            let mut referrers = ReferrerCache::new(state.referrer_list());
            validate_event_with_cache(0, &wire_event, &context, &mut referrers)
        }
    }
    .map_err(|error| ApiError::BadRequest(request_field_error(&error)))?;
    let identity_settings = config.identity_verification(&deployment.id);
    let tokens = token_context(
        identity_settings,
        &deployment.id,
        &request.customer_cookie_id,
        now_ms,
    );
    let event = take_identity_token(event, tokens);
    let new_batch = NewBatch {
        deployment_id: deployment.id.clone(),
        visitor_id: request.customer_cookie_id.clone(),
        events: vec![event],
        require_verified_identity: identity_settings
            .is_some_and(|settings| settings.require_verified_identity),
    };
    // The same group-committing writer as the SDK's batches: the answer waits for the
    // commit, and many concurrent web events share one transaction.
    let outcomes = store_and_wait(state, new_batch, now_ms).await?;
    let refused = RefusalCounts::default();
    let (mut accepted, mut duplicates) = (0, 0);
    for outcome in &outcomes {
        match outcome {
            IngestOutcome::Accepted => accepted += 1,
            IngestOutcome::Duplicate => duplicates += 1,
        }
    }
    state.metrics().count_events(accepted, duplicates, &refused);
    *uncounted_events = None;
    let stored = state
        .with_store_blocking(move |store| store.event(&event_id))
        .await?;
    // Agents' desks follow web events as they follow the SDK's batches.
    crate::desk::publish_ingested(
        state,
        &deployment.id,
        &request.customer_cookie_id,
        &outcomes,
    );
    let Some(stored) = stored else {
        return Err(ApiError::Internal(
            "a stored web event could not be read back".to_owned(),
        ));
    };
    tracing::debug!(
        deployment = %deployment.id,
        event = %stored.event.id,
        session = %stored.session_id,
        "web event received"
    );
    Ok(Some(WebEventResponse::from_stored(&stored)))
}

fn keep_alive(
    state: &AppState,
    deployment_id: &str,
    customer_cookie_id: &str,
    parts: &request::Parts,
    query: Option<&str>,
    cors_origin: &mut Option<HeaderValue>,
) -> Result<DeploymentPing, ApiError> {
    let config = state.config();
    check_request_headers(&parts.headers)?;
    let deployment =
        check_deployment_and_origin(state, deployment_id, &parts.headers, cors_origin)?;
    let visitor_id = canonical_uuid(customer_cookie_id)
        .ok_or_else(|| ApiError::BadRequest("customerCookieId: must be a UUID".to_owned()))?;
    let parameters = QueryParameters::parse(query);
    if let Some(text) = parameters.text("sinceLastBeaconMilliseconds") {
        if text.parse::<u64>().is_err() {
            return Err(ApiError::BadRequest(format!(
                "sinceLastBeaconMilliseconds: must be a whole number from 0, not {text:?}"
            )));
        }
    }
    let client_address = client_ip(
        socket_peer(parts),
        &forwarded_for(parts),
        &config.trusted_proxies,
    );
    state
        .ping_rate_limits()
        .check(&visitor_id, client_address, 1)?;
    let now_ms = state.clock().now_ms();
    let timeout_ms = config.session_timeout_ms();
    let recorded = state
        .store()
        .record_ping(&deployment.id, &visitor_id, now_ms, timeout_ms);
    if !recorded {
        tracing::debug!(deployment = %deployment.id, "ping dropped: too many pings waiting");
    }
    Ok(DeploymentPing {
        actions: Vec::new(),
        poll_interval_milliseconds: i64::try_from(config.ping_poll_interval_milliseconds)
            .unwrap_or(i64::MAX),
    })
}

/// The web session as the collector knows it, for the page (`ac('session', callback)`
/// in the SDK's plugin module): its id and the short id an agent can ask the visitor
/// for.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SessionReference {
    id: String,
    short_id: String,
}

/// `GET /sdk/v1/session?deploymentId=&visitorId=`: the visitor's live session, or 404
/// when there is none (nothing stored yet, or ended). Public like the batch endpoint,
/// with the same per-deployment CORS rule, and rate limited like pings (per visitor
/// and per client address): whoever knows a visitor id could already send events as
/// that visitor, and learns here no more than the session that those events would
/// land in.
pub(super) async fn session_reference(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    let (parts, _body) = request.into_parts();
    let mut cors_origin = None;
    let result = find_session_reference(&state, &parts, query.as_deref(), &mut cors_origin).await;
    let mut response = match result {
        Ok(reference) => Json(reference).into_response(),
        Err(error) => error.into_response(),
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    add_cors_headers(response.headers_mut(), cors_origin);
    response
}

async fn find_session_reference(
    state: &AppState,
    parts: &request::Parts,
    query: Option<&str>,
    cors_origin: &mut Option<HeaderValue>,
) -> Result<SessionReference, ApiError> {
    check_request_headers(&parts.headers)?;
    let parameters = QueryParameters::parse(query);
    let deployment_id = parameters
        .text("deploymentId")
        .ok_or_else(|| ApiError::BadRequest("deploymentId: is needed".to_owned()))?;
    let deployment =
        check_deployment_and_origin(state, &deployment_id, &parts.headers, cors_origin)?;
    let visitor_id = parameters
        .text("visitorId")
        .and_then(|text| canonical_uuid(&text))
        .ok_or_else(|| ApiError::BadRequest("visitorId: must be a UUID".to_owned()))?;
    let client_address = client_ip(
        socket_peer(parts),
        &forwarded_for(parts),
        &state.config().trusted_proxies,
    );
    state
        .ping_rate_limits()
        .check(&visitor_id, client_address, 1)?;
    let filter = crate::model::SessionFilter {
        deployment_id: Some(deployment.id.clone()),
        visitor_id: Some(visitor_id),
        contact_id: None,
    };
    let newest = state
        .with_store_blocking(move |store| store.sessions(&filter, None, 1))
        .await?;
    let now_ms = state.clock().now_ms();
    let timeout_ms = state.config().session_timeout_ms();
    newest
        .items
        .into_iter()
        .next()
        .filter(|session| crate::desk::cards::is_live(session, now_ms, timeout_ms))
        .map(|session| SessionReference {
            id: session.id,
            short_id: session.short_id,
        })
        .ok_or_else(|| ApiError::NotFound("the visitor has no live session".to_owned()))
}
