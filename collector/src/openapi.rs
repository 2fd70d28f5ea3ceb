//! The OpenAPI document of the collector's HTTP API.
//!
//! The document is `collector/openapi.json`, an OpenAPI 3.1 file written by hand and
//! compiled in; it is served at [`OPENAPI_PATH`] without credentials. Its schemas are
//! JSON Schema (2020-12), and they are strict: objects list every field the collector
//! writes (`additionalProperties: false` on responses), dates match the Journey API's
//! `2026-11-24T06:15:14.123Z` form, and no field is nullable (absent values are left
//! out). The collector's integration tests validate every JSON response they receive
//! against the operation's schema, so the document and the handlers cannot drift apart
//! unnoticed.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api/v2/footpath/openapi.json";

/// The document's text.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// The document, parsed.
pub fn document() -> serde_json::Value {
    // The file is checked by this module's tests, so it always parses.
    serde_json::from_str(OPENAPI_JSON).unwrap_or_default()
}

/// `GET /api/v2/footpath/openapi.json`: readable from any origin, so that API tools in
/// a browser can load it.
pub(crate) async fn serve_document() -> Response {
    let mut response = OPENAPI_JSON.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_parses_and_is_openapi_3_1() {
        let document: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert!(
            document["openapi"].as_str().unwrap().starts_with("3.1."),
            "{}",
            document["openapi"]
        );
        assert_eq!(
            document["paths"].as_object().map(|paths| paths.is_empty()),
            Some(false)
        );
    }

    /// Every `$ref` points at a schema that exists.
    #[test]
    fn every_reference_resolves() {
        fn walk(value: &serde_json::Value, document: &serde_json::Value, path: &str) {
            match value {
                serde_json::Value::Object(fields) => {
                    if let Some(target) = fields.get("$ref").and_then(|target| target.as_str()) {
                        let pointer = target.strip_prefix('#').unwrap_or_else(|| {
                            panic!("{path}: only local references are used, not {target}")
                        });
                        assert!(
                            document.pointer(pointer).is_some(),
                            "{path}: {target} is missing"
                        );
                    }
                    for (name, inner) in fields {
                        walk(inner, document, &format!("{path}/{name}"));
                    }
                }
                serde_json::Value::Array(items) => {
                    for (index, inner) in items.iter().enumerate() {
                        walk(inner, document, &format!("{path}/{index}"));
                    }
                }
                _ => {}
            }
        }
        let document = document();
        walk(&document, &document, "");
    }
}
