//! What an operator's tools talk to: `GET /metrics` (see [`crate::metrics`]),
//! `GET /readyz`, and the per-request middleware that gives every request an id and
//! counts it.
//!
//! - `/metrics` needs the read API's bearer token unless `metrics_require_token` is
//!   false: its counts show how much traffic each deployment sends, which is the
//!   deployments' business, not the public's.
//! - `/readyz` answers 200 `{"status":"ready"}` when the database answers, is at this
//!   collector's schema version and the ingest writer runs, and the collector is not
//!   shutting down; otherwise 503 with the error shape (`code` `service.unavailable`)
//!   and a fixed message that says which (the cause, which may name files, is logged).
//!   `/healthz` stays a plain liveness answer.
//! - Request ids: a request's `X-Request-Id` is kept when it is 1 to
//!   [`MAX_REQUEST_ID_BYTES`] of visible ASCII (so that it cannot forge log lines or
//!   grow them), and replaced by a fresh UUID otherwise; the response carries the id
//!   back, and the request's tracing span (`request`, with `method`, `route` and
//!   `request_id`) carries it into every log line written while it is handled.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::AppState;
use crate::store::StoreError;

/// The request id header, in requests and responses.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest `X-Request-Id` kept as sent.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// Whether a client's `X-Request-Id` may be kept: 1 to [`MAX_REQUEST_ID_BYTES`] bytes,
/// each visible ASCII (`!` to `~`).
pub fn is_acceptable_request_id(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_BYTES
        && value.iter().all(|byte| (b'!'..=b'~').contains(byte))
}

/// Outermost middleware: settles the request's id (see the module documentation), so
/// that the trace span and every handler see it in the request's headers.
pub(super) async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .filter(|value| is_acceptable_request_id(value.as_bytes()))
        .cloned()
        .unwrap_or_else(|| {
            let fresh = uuid::Uuid::new_v4().to_string();
            HeaderValue::from_str(&fresh).unwrap_or(HeaderValue::from_static("unknown"))
        });
    request.headers_mut().insert(REQUEST_ID_HEADER, id.clone());
    let mut response = next.run(request).await;
    response.headers_mut().insert(REQUEST_ID_HEADER, id);
    response
}

/// The tracing span of one request: its method, its route's template (never the path
/// as sent, which may hold visitor ids and page URLs), and its id. At INFO, so that
/// every line logged at the default level while the request is handled names it.
pub(super) fn request_span(request: &Request) -> tracing::Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        route = route_of(request),
        request_id,
    )
}

/// The route as metrics and logs name it: the matched route's template; `/sdk/{*file}`
/// for the SDK's files (a nested service, which axum gives no matched path); `other`
/// when nothing matched.
fn route_of(request: &Request) -> &str {
    match request.extensions().get::<MatchedPath>() {
        Some(path) if !path.as_str().contains("{*") => path.as_str(),
        _ if request.uri().path().starts_with("/sdk/") => "/sdk/{*file}",
        _ => "other",
    }
}

/// Counts every answered request by route template and status class.
pub(super) async fn count_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = route_of(&request).to_owned();
    let response = next.run(request).await;
    state
        .metrics
        .count_request(&route, response.status().as_u16());
    response
}

/// `GET /metrics`: the Prometheus text format. The gauges that cost a query are read
/// now, on the blocking pool; if the store cannot answer, they keep their last values
/// and the failure is logged (the counters are still worth serving).
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let now_ms = state.clock.now_ms();
    let timeout_ms = state.config.session_timeout_ms();
    let gauges = state
        .with_store_blocking(move |store| store.gauges(now_ms, timeout_ms))
        .await;
    let gauges = gauges.unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot read the store's gauges for /metrics");
        crate::metrics::StoreGauges::default()
    });
    let text = state.metrics.render(gauges, state.desk.open_streams());
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        text,
    )
        .into_response()
}

/// How long `/readyz` waits for the store before it calls the database unreachable.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /readyz`: see the module documentation.
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_shutting_down() {
        return not_ready("the collector is shutting down");
    }
    let store = std::sync::Arc::clone(&state.store);
    let check = tokio::task::spawn_blocking(move || store.check_ready());
    let reason = match tokio::time::timeout(READY_CHECK_TIMEOUT, check).await {
        Ok(Ok(Ok(()))) => None,
        Ok(Ok(Err(error))) => {
            tracing::warn!(%error, "not ready");
            Some(match error {
                StoreError::WriterFailed(_) => "the ingest writer has stopped",
                StoreError::Corrupt(_) | StoreError::Schema(_) => {
                    "the database is not at this collector's schema version"
                }
                _ => "the database does not answer",
            })
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "the readiness check failed");
            Some("the database does not answer")
        }
        Err(_) => {
            tracing::warn!(
                timeout_seconds = READY_CHECK_TIMEOUT.as_secs(),
                "the readiness check timed out"
            );
            Some("the database does not answer")
        }
    };
    match reason {
        None => (
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
            Json(serde_json::json!({"status": "ready"})),
        )
            .into_response(),
        Some(reason) => not_ready(reason),
    }
}

/// 503 in the error shape of every other answer (`crate::error::ApiError`), without
/// `Retry-After`: readiness is polled, not retried.
fn not_ready(reason: &str) -> Response {
    let status = StatusCode::SERVICE_UNAVAILABLE;
    (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(serde_json::json!({
            "status": status.as_u16(),
            "code": "service.unavailable",
            "message": format!("not ready: {reason}"),
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_kept_or_replaced() {
        let cases: &[(&[u8], bool)] = &[
            (b"abc-123", true),
            (b"Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1", true),
            (&[b'a'; MAX_REQUEST_ID_BYTES], true),
            (&[b'a'; MAX_REQUEST_ID_BYTES + 1], false),
            (b"", false),
            (b"has space", false),
            (b"line\nbreak", false),
            (b"tab\there", false),
            ("caf\u{e9}".as_bytes(), false),
            (b"\x7f", false),
        ];
        for &(value, kept) in cases {
            assert_eq!(
                is_acceptable_request_id(value),
                kept,
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn requests_without_a_matched_route_are_named_by_their_place() {
        let request = |path: &str| Request::get(path).body(axum::body::Body::empty()).unwrap();
        assert_eq!(route_of(&request("/sdk/footpath.js")), "/sdk/{*file}");
        assert_eq!(route_of(&request("/nothing/here")), "other");
    }
}
