//! `/sdk/{*file}` and `/healthz`.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};

use crate::support::*;

fn get(uri: &str, accept_encoding: Option<&str>) -> Request<Body> {
    let mut builder = Request::get(uri);
    if let Some(encoding) = accept_encoding {
        builder = builder.header(header::ACCEPT_ENCODING, encoding);
    }
    builder.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn sdk_files_are_served_cross_origin_with_caching() {
    let app = TestApp::new();
    let sdk = app.dir.path().join("sdk");
    std::fs::write(sdk.join("footpath_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(sdk.join("footpath.js"), "export {};").unwrap();
    std::fs::write(sdk.join("footpath.js.gz"), b"pretend-gzip").unwrap();

    let wasm = app.send(get("/sdk/footpath_bg.wasm", None)).await;
    assert_eq!(wasm.status, StatusCode::OK);
    assert_eq!(wasm.header("content-type"), Some("application/wasm"));
    assert_eq!(wasm.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(wasm.header("access-control-allow-origin"), Some("*"));
    // Without it, a cross-origin isolated page could not run the snippet's script.
    assert_eq!(
        wasm.header("cross-origin-resource-policy"),
        Some("cross-origin")
    );
    assert_eq!(&wasm.body[..], b"\0asm\x01\0\0\0");

    let plain = app.send(get("/sdk/footpath.js", None)).await;
    assert_eq!(&plain.body[..], b"export {};");
    assert_eq!(plain.header("content-encoding"), None);

    let gzipped = app.send(get("/sdk/footpath.js", Some("gzip"))).await;
    assert_eq!(gzipped.header("content-encoding"), Some("gzip"));
    assert_eq!(&gzipped.body[..], b"pretend-gzip");
    assert!(
        gzipped
            .header("content-type")
            .unwrap()
            .starts_with("text/javascript"),
        "{:?}",
        gzipped.header("content-type")
    );

    let missing = app.send(get("/sdk/missing.js", None)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn healthz_says_ok() {
    let app = TestApp::new();
    let response = app.send(get("/healthz", None)).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(&response.body[..], b"ok");
}

#[tokio::test]
async fn unknown_routes_are_json_404() {
    let app = TestApp::new();
    app.send(get("/nothing/here", None))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not.found");
}
