//! Bearer-token authentication of the read API.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use crate::desk::auth::{bearer_token, is_known_token};
use crate::error::ApiError;

/// Lets the request through only with `Authorization: Bearer <token>` naming one of
/// the configured `api_tokens`. With no tokens configured, the read API is closed.
pub(super) async fn require_bearer_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    // The desk's parsing and check of the same header: one of each in the crate.
    match bearer_token(request.headers()) {
        Some(token) if is_known_token(&state.config.api_tokens, token) => {
            Ok(next.run(request).await)
        }
        _ => Err(ApiError::Unauthorized),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_matching() {
        let tokens = vec!["alpha-token".to_owned(), "beta-token".to_owned()];
        assert!(is_known_token(&tokens, "alpha-token"));
        assert!(is_known_token(&tokens, "beta-token"));
        assert!(!is_known_token(&tokens, "alpha-tokeN"));
        assert!(!is_known_token(&tokens, "alpha"));
        assert!(!is_known_token(&tokens, ""));
        assert!(!is_known_token(&[], "alpha-token"));
    }
}
