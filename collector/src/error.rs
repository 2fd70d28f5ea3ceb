//! The one error type of the HTTP API.
//!
//! Every variant becomes JSON `{"status", "code", "message"}` with the matching HTTP
//! status, as the Journey API does. Server-side failures keep their cause out of the
//! body (it may name tables, paths or internals) and log it instead.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use footpath_protocol::v1::EventResult;
use serde::Serialize;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `bad.request`: the request is malformed; the message names the field or
    /// query parameter.
    #[error("{0}")]
    BadRequest(String),
    /// 400 `bad.request`: a non-empty batch in which every event was rejected. The
    /// message is the first event's error, and the body also carries every event's
    /// result.
    #[error("{message}")]
    AllEventsRejected {
        message: String,
        results: Vec<EventResult>,
    },
    /// 401 `authentication.required`: the read API needs `Authorization: Bearer <token>`
    /// with a configured token. The response carries `WWW-Authenticate: Bearer`.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// 403 `origin.not.allowed`: the batch's `Origin` is not allowed for its deployment.
    #[error("{0}")]
    OriginNotAllowed(String),
    /// 404 `not.found`: no such session (or route).
    #[error("{0}")]
    NotFound(String),
    /// 404 `deployment.not.found`: the batch names a deployment that is not configured.
    #[error("{0}")]
    DeploymentNotFound(String),
    /// 413 `payload.too.large`: the body exceeds `max_body_bytes`.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 415 `unsupported.media.type`: the batch is neither `text/plain` nor
    /// `application/json`, or has a `Content-Encoding` (bodies are read unencoded).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 408 `request.timeout`: the body did not arrive within `body_read_timeout_seconds`
    /// of the request head.
    #[error("{0}")]
    RequestTimeout(String),
    /// 429 `rate.limited`: the visitor or the client address sent more events (or
    /// pings) than its rate limit allows. The response carries `Retry-After` (whole
    /// seconds).
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_seconds: u64,
    },
    /// 503 `service.unavailable`: too many requests in flight, or the ingest queue is
    /// full; the request was shed once its body had arrived, before any other work. The response carries
    /// `Retry-After` (whole seconds).
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_seconds: u64,
    },
    /// 500 `internal.server.error`: the store failed or a task panicked. The body says
    /// only "internal error"; the cause is logged.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::AllEventsRejected { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::OriginNotAllowed(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::DeploymentNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) | ApiError::AllEventsRejected { .. } => "bad.request",
            ApiError::Unauthorized => "authentication.required",
            ApiError::OriginNotAllowed(_) => "origin.not.allowed",
            ApiError::NotFound(_) => "not.found",
            ApiError::DeploymentNotFound(_) => "deployment.not.found",
            ApiError::PayloadTooLarge(_) => "payload.too.large",
            ApiError::UnsupportedMediaType(_) => "unsupported.media.type",
            ApiError::RequestTimeout(_) => "request.timeout",
            ApiError::RateLimited { .. } => "rate.limited",
            ApiError::Unavailable { .. } => "service.unavailable",
            ApiError::Internal(_) => "internal.server.error",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::UnknownCursor => {
                ApiError::BadRequest("after: is not a cursor of this listing".to_owned())
            }
            StoreError::Overloaded => ApiError::Unavailable {
                message: "the collector is busy storing other events; retry shortly".to_owned(),
                retry_after_seconds: 1,
            },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(error: tokio::task::JoinError) -> ApiError {
        ApiError::Internal(format!("store task failed: {error}"))
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    status: u16,
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<&'a [EventResult]>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(cause = %cause, "request failed");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let results = match &self {
            ApiError::AllEventsRejected { results, .. } => Some(results.as_slice()),
            _ => None,
        };
        let body = ErrorBody {
            status: status.as_u16(),
            code: self.code(),
            message: &message,
            results,
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::RateLimited {
            retry_after_seconds,
            ..
        }
        | ApiError::Unavailable {
            retry_after_seconds,
            ..
        } = &self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
        }
        if matches!(self, ApiError::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
