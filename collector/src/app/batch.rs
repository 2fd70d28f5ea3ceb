//! `POST /sdk/v1/batch`: the SDK's event batches, and the CORS preflight for it.
//!
//! The SDK sends batches as `text/plain` so that browsers send them without a
//! preflight (and so that `navigator.sendBeacon` can send them). CORS is therefore
//! enforced here, per deployment: the `Origin` must be one the deployment allows, and
//! only then does the response say `Access-Control-Allow-Origin`, which lets the SDK
//! read the per-event results.
//!
//! A batch from an address that the deployment excludes (`ip_exclusions` of its
//! `[[deployment_privacy]]`) is answered `204 No Content` once its envelope is valid:
//! nothing of it is stored, and its events are counted in `excludedEventsTotal`. The
//! SDK treats any 2xx as delivered, so it does not retry; a 204 rather than a 200 with
//! every event "rejected" keeps it from reporting errors to the site's developers for
//! what is a deliberate setting.
//!
//! Limits (see `crate::limits` and the `Config` fields named in each): an `Origin` or
//! `X-Forwarded-For` over its size limit is refused (400) and a `User-Agent` over
//! `max_user_agent_bytes` is cut before it is parsed; the body must arrive within
//! `body_read_timeout_seconds` (408) and fit in `max_body_bytes` (413); only then is a
//! place among the `max_concurrent_ingest_requests` taken (503 when none is free, as
//! when the writer's queue is full), so that slow senders cannot hold them; JSON nested
//! deeper than `max_json_nesting_levels` is refused (400) before it is parsed; a batch
//! has at most `max_events_per_batch` events (400); the visitor's and the client
//! address's events-per-minute limits answer 429. Each event is then checked against
//! the per-event size limits (names, values, page fields) on its own. An event that
//! would join a session already holding `max_events_per_session` events starts a new
//! session (the full one is closed).
//!
//! A 200 means committed: the handler answers only after the writer's transaction that
//! holds the batch has committed (`Store::enqueue_ingest`).

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, request, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use footpath_protocol::v1::{
    AttributeValue, Batch, BatchResponse, EventResult, EventStatus, VERSION,
};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::pipeline::{
    ingest_response, origin_allowed_by_any_deployment, preflight_response, read_ingest_body,
    store_and_wait, Gzip,
};
use super::AppState;
use crate::config::IdentityVerificationConfig;
use crate::enrich::client_ip::{client_ip, in_any};
use crate::enrich::referrer::ReferrerCache;
use crate::enrich::user_agent::parse_user_agent;
use crate::error::ApiError;
use crate::identity::{
    verify_identity_token, IdentityProof, TokenCheck, TokenContext, IDENTITY_TOKEN_TRAIT,
    LEGACY_SIGNATURE_TRAIT,
};
use crate::limits::{bounded_user_agent, check_request_headers, EventLimits};
use crate::metrics::{IngestEndpoint, RefusalCounts, RefusalReason};
use crate::store::{IngestOutcome, NewBatch, NewEvent};
use crate::validate::{canonical_uuid, validate_event_with_cache, BatchContext};

pub(super) async fn receive_batch(State(state): State<AppState>, request: Request) -> Response {
    let started = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    // Before the body names the deployment, errors are readable by any origin that some
    // deployment allows; afterwards, only by the deployment's own origins.
    let mut cors_origin = origin_allowed_by_any_deployment(&state, &parts.headers);
    let mut uncounted_events = None;
    let result = ingest_batch(
        &state,
        &parts,
        body,
        &mut cors_origin,
        &mut uncounted_events,
    )
    .await;
    ingest_response(
        &state,
        IngestEndpoint::Batch,
        started,
        result,
        uncounted_events,
        cors_origin,
    )
}

/// Answers the preflight a browser sends when the page's code posts the batch as
/// `application/json` (the SDK itself does not need one).
pub(super) async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match origin_allowed_by_any_deployment(&state, &headers) {
        Some(origin) => preflight_response(origin),
        None => ApiError::OriginNotAllowed("origin is not allowed to send batches".to_owned())
            .into_response(),
    }
}

/// `uncounted_events` is set to the batch's event count once the batch is read, and
/// back to `None` once its events are counted in the metrics; the caller counts
/// what is left by the error it answers. `None`: dropped by the deployment's IP
/// exclusions.
async fn ingest_batch(
    state: &AppState,
    parts: &request::Parts,
    body: Body,
    cors_origin: &mut Option<HeaderValue>,
    uncounted_events: &mut Option<u64>,
) -> Result<Option<BatchResponse>, ApiError> {
    let config = state.config();
    check_request_headers(&parts.headers)?;
    let body = read_ingest_body(state, parts, body, Gzip::Accepted).await?;
    let batch: Batch = serde_json::from_slice(&body.bytes)
        .map_err(|error| ApiError::BadRequest(format!("invalid batch: {error}")))?;
    *uncounted_events = Some(u64::try_from(batch.events.len()).unwrap_or(u64::MAX));
    if batch.v != VERSION {
        return Err(ApiError::BadRequest(format!(
            "v: must be {VERSION}, not {}",
            batch.v
        )));
    }
    let deployment = config.deployment(&batch.deployment_id).ok_or_else(|| {
        ApiError::DeploymentNotFound(format!(
            "deploymentId: no deployment {:?} is configured",
            batch.deployment_id
        ))
    })?;

    // From here the request names a configured deployment: whatever refuses the whole
    // batch is counted in that deployment's usage too (by the reason `/metrics` gives
    // it), so that a site sees what it lost. Before this point there is no deployment
    // to count against, only `/metrics`.
    let events_in_batch = u64::try_from(batch.events.len()).unwrap_or(u64::MAX);
    let refuse = |error: ApiError| {
        if let Some(reason) = RefusalReason::of_error(&error) {
            state.count_refused_for(&deployment.id, reason, events_in_batch);
        }
        error
    };

    let origin = parts.headers.get(header::ORIGIN);
    let origin_text = origin.and_then(|origin| origin.to_str().ok());
    if !deployment.allows_origin(origin_text) {
        *cors_origin = None;
        let message = match origin_text {
            Some(origin) => format!(
                "origin {origin} may not send events for deployment {:?}",
                deployment.id
            ),
            None => format!(
                "a request without an Origin header may not send events for deployment {:?}",
                deployment.id
            ),
        };
        return Err(refuse(ApiError::OriginNotAllowed(message)));
    }
    *cors_origin = origin.cloned();

    let visitor_id = canonical_uuid(&batch.visitor_id)
        .ok_or_else(|| refuse(ApiError::BadRequest("visitorId: must be a UUID".to_owned())))?;
    if batch.events.len() > config.max_events_per_batch {
        return Err(refuse(ApiError::BadRequest(format!(
            "events: has {} events, more than the limit of {}",
            batch.events.len(),
            config.max_events_per_batch
        ))));
    }

    // Request-level enrichment, once for all the batch's events.
    let client_address = client_ip(
        socket_peer(parts),
        &forwarded_for(parts),
        &config.trusted_proxies,
    );
    // Excluded traffic is dropped before the rate limits, so that it neither spends a
    // visitor's allowance nor gets a 429 that the SDK would retry.
    let privacy = config.deployment_privacy(&deployment.id);
    if client_address.is_some_and(|address| in_any(&privacy.ip_exclusions, address)) {
        let events = u64::try_from(batch.events.len()).unwrap_or(u64::MAX);
        state.count_excluded_events(events);
        state
            .metrics()
            .count_refused(RefusalReason::IpExcluded, events);
        state.count_refused_for(&deployment.id, RefusalReason::IpExcluded, events);
        *uncounted_events = None;
        tracing::debug!(deployment = %deployment.id, events, "batch dropped by IP exclusion");
        return Ok(None);
    }
    // Global Privacy Control, when the deployment honours it: dropped like excluded
    // traffic, before the rate limits, and not an error the SDK would retry.
    if privacy.honor_global_privacy_control && sends_global_privacy_control(&parts.headers) {
        let events = u64::try_from(batch.events.len()).unwrap_or(u64::MAX);
        state
            .metrics()
            .count_refused(RefusalReason::PrivacySignal, events);
        state.count_refused_for(&deployment.id, RefusalReason::PrivacySignal, events);
        *uncounted_events = None;
        tracing::debug!(deployment = %deployment.id, events, "batch dropped by Global Privacy Control");
        return Ok(None);
    }
    state
        .rate_limits()
        .check(&visitor_id, client_address, batch.events.len())
        .map_err(refuse)?;
    let user_agent =
        bounded_user_agent(&parts.headers, config.max_user_agent_bytes).map(str::to_owned);
    let user_agent_info = user_agent.as_deref().and_then(parse_user_agent);
    // Located before the address is possibly forgotten, so that a deployment that
    // does not store addresses still gets locations.
    let geolocation = client_address
        .and_then(|address| state.geoip().and_then(|database| database.lookup(address)));
    let context = BatchContext {
        sent_at_ms: batch.sent_at,
        now_ms: state.clock().now_ms(),
        max_event_age_ms: config.max_event_age_ms(),
        user_agent,
        ip_address: client_address
            .filter(|_| privacy.store_ip_address)
            .map(|address| address.to_string()),
        user_agent_info,
        geolocation,
    };
    let event_limits = EventLimits::from_config(config);
    let identity_settings = config.identity_verification(&deployment.id);
    let tokens = token_context(
        identity_settings,
        &deployment.id,
        &visitor_id,
        context.now_ms,
    );
    // One pass: valid events move into the batch to store; `rejections` keeps, per
    // event of the request, its error or `None`, for the response.
    let mut valid_events = Vec::with_capacity(batch.events.len());
    let mut referrers = ReferrerCache::new(state.referrer_list());
    let mut refused = RefusalCounts::default();
    let rejections: Vec<Option<String>> = batch
        .events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let checked = match event_limits.check_event(index, event) {
                Err(error) => Err((RefusalReason::TooLarge, error)),
                Ok(()) => validate_event_with_cache(index, event, &context, &mut referrers)
                    .map_err(|error| (RefusalReason::Invalid, error)),
            };
            match checked {
                Ok(event) => {
                    valid_events.push(take_identity_token(event, tokens));
                    None
                }
                Err((reason, error)) => {
                    refused.add(reason, 1);
                    Some(error.to_string())
                }
            }
        })
        .collect();

    let outcomes = if valid_events.is_empty() {
        Vec::new()
    } else {
        let new_batch = NewBatch {
            deployment_id: deployment.id.clone(),
            visitor_id,
            events: valid_events,
            require_verified_identity: identity_settings
                .is_some_and(|settings| settings.require_verified_identity),
        };
        // The response waits for the commit.
        store_and_wait(state, new_batch, context.now_ms)
            .await
            .map_err(refuse)?
    };

    crate::desk::publish_ingested(state, &deployment.id, &batch.visitor_id, &outcomes);
    let mut outcomes = outcomes.into_iter();
    let mut response = BatchResponse {
        accepted: 0,
        duplicates: 0,
        rejected: 0,
        results: Vec::with_capacity(batch.events.len()),
    };
    for (event, rejection) in batch.events.iter().zip(rejections) {
        let (status, error) = match rejection {
            Some(error) => (EventStatus::Rejected, Some(error)),
            None => match outcomes.next() {
                Some(IngestOutcome::Accepted) => (EventStatus::Accepted, None),
                Some(IngestOutcome::Duplicate) => (EventStatus::Duplicate, None),
                None => {
                    return Err(ApiError::Internal(
                        "store returned fewer outcomes than events".to_owned(),
                    ))
                }
            },
        };
        match status {
            EventStatus::Accepted => response.accepted += 1,
            EventStatus::Duplicate => response.duplicates += 1,
            EventStatus::Rejected => response.rejected += 1,
        }
        response.results.push(EventResult {
            id: event.id.clone(),
            status,
            error,
        });
    }
    state.metrics().count_events(
        u64::from(response.accepted),
        u64::from(response.duplicates),
        &refused,
    );
    state.count_all_refused_for(&deployment.id, &refused);
    *uncounted_events = None;
    tracing::debug!(
        deployment = %deployment.id,
        accepted = response.accepted,
        duplicates = response.duplicates,
        rejected = response.rejected,
        "batch received"
    );

    let everything_rejected =
        !response.results.is_empty() && response.results.len() == response.rejected as usize;
    if everything_rejected {
        let message = response.results[0].error.clone().unwrap_or_default();
        return Err(ApiError::AllEventsRejected {
            message,
            results: response.results,
        });
    }
    Ok(Some(response))
}

/// The socket address of the client (or of the proxy in front of it), when the server
/// recorded one.
pub(super) fn socket_peer(parts: &request::Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
}

/// The values of every `X-Forwarded-For` header, in order.
pub(super) fn forwarded_for(parts: &request::Parts) -> Vec<&str> {
    parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect()
}

/// What the events of one request are checked against when they carry an identity
/// token.
pub(super) fn token_context<'a>(
    settings: Option<&'a IdentityVerificationConfig>,
    deployment_id: &'a str,
    visitor_id: &'a str,
    now_ms: i64,
) -> TokenContext<'a> {
    TokenContext {
        secret: settings.and_then(|settings| settings.identity_secret.as_deref()),
        deployment_id,
        visitor_id,
        login_id: None,
        now_ms,
        max_lifetime_ms: settings.map_or(0, IdentityVerificationConfig::max_token_lifetime_ms),
    }
}

/// Takes the `identityToken` trait (and the old scheme's `identitySignature`) out of
/// the event — they are credentials, never stored — and records what the token proved.
pub(super) fn take_identity_token(mut event: NewEvent, context: TokenContext<'_>) -> NewEvent {
    let token = match event.traits.remove(IDENTITY_TOKEN_TRAIT) {
        Some(AttributeValue::String(token)) => Some(token),
        // A token that is not a string is a wrong token, not a missing one.
        Some(_) => Some(String::new()),
        None => None,
    };
    let legacy = event.traits.remove(LEGACY_SIGNATURE_TRAIT).is_some();
    let check = verify_identity_token(
        TokenContext {
            login_id: event.login_id.as_deref(),
            ..context
        },
        token.as_deref(),
    );
    event.identity_proof = match check {
        TokenCheck::Valid(identity) => IdentityProof::Valid(identity),
        TokenCheck::Invalid(reason) => {
            tracing::debug!(event = %event.id, reason, "identity token is not valid");
            IdentityProof::Invalid
        }
        // A signature of the old scheme proves nothing any more, and a token sent to a
        // deployment without a secret can prove nothing: neither falls back to an
        // unverified claim.
        TokenCheck::Missing if legacy => IdentityProof::Invalid,
        TokenCheck::NoSecret if legacy || token.is_some() => IdentityProof::Invalid,
        TokenCheck::Missing | TokenCheck::NoSecret => IdentityProof::Absent,
    };
    event.identity_verified = event.identity_proof.verified().is_some();
    event
}

/// `text/plain` (what the SDK sends, in any charset) or `application/json`, not
/// encoded: for the routes that do not decompress (a batch may be gzip, see
/// `compressed.rs`), a body that a proxy might decode while the collector does not
/// would be read differently by each.
pub(super) fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    for encoding in headers.get_all(header::CONTENT_ENCODING) {
        if !encoding.as_bytes().eq_ignore_ascii_case(b"identity") {
            return Err(ApiError::UnsupportedMediaType(
                "Content-Encoding is not supported: send the body unencoded".to_owned(),
            ));
        }
    }
    check_media_type(headers)
}

/// `text/plain` (in any charset) or `application/json`, given once.
pub(super) fn check_media_type(headers: &HeaderMap) -> Result<(), ApiError> {
    // Two Content-Types are a request that proxies and the collector could read
    // differently: refuse rather than pick one.
    if headers.get_all(header::CONTENT_TYPE).iter().count() > 1 {
        return Err(ApiError::UnsupportedMediaType(
            "Content-Type must be given once".to_owned(),
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "text/plain" || essence == "application/json" {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be text/plain or application/json, not {content_type:?}"
        )))
    }
}

/// Reads the whole body, refusing more than `max_body_bytes` (413) and a body that
/// takes longer than `body_read_timeout_seconds` to arrive (408: by this timeout, or by
/// the router's deadline on every body, see `app/deadline.rs`).
pub(super) async fn read_body(
    body: Body,
    config: &crate::config::Config,
) -> Result<axum::body::Bytes, ApiError> {
    let limit = config.max_body_bytes;
    let timeout = std::time::Duration::from_secs(config.body_read_timeout_seconds);
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| {
            ApiError::RequestTimeout(format!(
                "the request body did not arrive within {} seconds",
                config.body_read_timeout_seconds
            ))
        })?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge(limit))
        }
        Err(error) if super::deadline::is_deadline_elapsed(error.as_ref()) => {
            Err(ApiError::RequestTimeout(format!(
                "the request body did not arrive within {} seconds",
                config.body_read_timeout_seconds
            )))
        }
        Err(error) => Err(ApiError::BadRequest(format!(
            "could not read the request body: {error}"
        ))),
    }
}

/// Whether the request carries Global Privacy Control: `Sec-GPC: 1` (the only value
/// the specification defines).
fn sends_global_privacy_control(headers: &HeaderMap) -> bool {
    headers
        .get("sec-gpc")
        .is_some_and(|value| value.as_bytes().trim_ascii() == b"1")
}
