//! What every ingest route shares, in the order a request meets it: CORS (the
//! `Origin` a response may be read by, and the preflight's answer), the body (content
//! type, size and deadline, then a place among the concurrent ingest requests and the
//! JSON nesting pre-scan), the store's answer after the commit, and the response with
//! its metrics and CORS headers. `batch.rs` (the SDK) and `webevents.rs` (the Journey
//! API) each add only what their request format needs.

use axum::body::Body;
use axum::http::{header, request, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::batch::{check_content_type, check_media_type, read_body};
use super::AppState;
use crate::error::ApiError;
use crate::limits::check_json_depth;
use crate::metrics::{IngestEndpoint, RefusalReason};
use crate::model::{IngestOutcome, NewBatch};

/// A request body that may be parsed, and the place among the
/// `max_concurrent_ingest_requests` its request holds until it is answered.
pub(super) struct IngestBody {
    pub bytes: axum::body::Bytes,
    pub _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Reads an ingest request's body: a content type the collector reads, within the
/// size limit and the deadline; only then a place among the concurrent ingest requests
/// (so that slow senders cannot hold them), and the nesting pre-scan before any parse.
/// Whether a route reads gzip bodies: the SDK's batches may be compressed (see
/// `compressed.rs`); other routes take plain bodies only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gzip {
    Accepted,
    Refused,
}

pub(super) async fn read_ingest_body(
    state: &AppState,
    parts: &request::Parts,
    body: Body,
    gzip: Gzip,
) -> Result<IngestBody, ApiError> {
    let config = state.config();
    let bytes = match gzip {
        Gzip::Accepted => {
            let encoding = super::compressed::declared_encoding(&parts.headers)?;
            check_media_type(&parts.headers)?;
            let bytes = read_body(body, config).await?;
            // A gzip body (the SDK compresses where the browser can) is inflated within
            // the bounds of `compressed`; what follows reads the plain JSON.
            super::compressed::decode_body(bytes, encoding, config.max_body_bytes)?
        }
        Gzip::Refused => {
            check_content_type(&parts.headers)?;
            read_body(body, config).await?
        }
    };
    // Held until the answer: the body is in, what is left is work for the collector.
    let permit = state.ingest_permit()?;
    check_json_depth(&bytes, config.max_json_nesting_levels)
        .map_err(|too_deep| too_deep.into_api_error())?;
    Ok(IngestBody {
        bytes,
        _permit: permit,
    })
}

/// Queues the batch for the group-committing writer and waits for the commit: an
/// "accepted" answer means the event is on disk and the sender may forget it.
pub(super) async fn store_and_wait(
    state: &AppState,
    batch: NewBatch,
    now_ms: i64,
) -> Result<Vec<IngestOutcome>, ApiError> {
    let timeout_ms = state.config().session_timeout_ms();
    let reply = state.store().enqueue_ingest(batch, now_ms, timeout_ms)?;
    let outcomes = reply.await.map_err(|_| {
        ApiError::Internal("the ingest writer dropped a batch unanswered".to_owned())
    })??;
    Ok(outcomes)
}

/// The response of an ingest route: its JSON answer (`Some`), or 204 for traffic the
/// deployment excludes (`None`), or the error, with the events it refused counted;
/// CORS headers for `cors_origin` either way. The latency is observed for answers only.
pub(super) fn ingest_response<T: serde::Serialize>(
    state: &AppState,
    endpoint: IngestEndpoint,
    started: std::time::Instant,
    result: Result<Option<T>, ApiError>,
    uncounted_events: Option<u64>,
    cors_origin: Option<HeaderValue>,
) -> Response {
    let mut response = match result {
        Ok(Some(answer)) => {
            state.metrics().observe_ingest(endpoint, started.elapsed());
            Json(answer).into_response()
        }
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => {
            count_refused_request(state, &error, uncounted_events);
            error.into_response()
        }
    };
    add_cors_headers(response.headers_mut(), cors_origin);
    response
}

/// The answer to a CORS preflight from `origin` (already allowed): 204, POST with a
/// `Content-Type`, cached for a day.
pub(super) fn preflight_response(origin: HeaderValue) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let response_headers = response.headers_mut();
    add_cors_headers(response_headers, Some(origin));
    response_headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    response_headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    response_headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    response
}

/// Counts the events of a request refused as a whole, once they were read (`events`
/// is `None` before that, and once ingest counted them itself).
pub(super) fn count_refused_request(state: &AppState, error: &ApiError, events: Option<u64>) {
    if let (Some(events), Some(reason)) = (events, RefusalReason::of_error(error)) {
        state.metrics().count_refused(reason, events);
    }
}

/// The request's `Origin`, if at least one deployment accepts it. A deployment that
/// allows `"*"` accepts every origin.
pub(super) fn origin_allowed_by_any_deployment(
    state: &AppState,
    headers: &HeaderMap,
) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    state
        .config()
        .deployments
        .iter()
        .any(|deployment| deployment.allows_origin(Some(text)))
        .then(|| origin.clone())
}

pub(super) fn add_cors_headers(headers: &mut HeaderMap, origin: Option<HeaderValue>) {
    // The answer depends on the Origin either way, so caches must key on it.
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        // Without this, a page on another origin reads `Retry-After` as null and the
        // SDK cannot honour it on 429 and 503.
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Retry-After"),
        );
    }
}
