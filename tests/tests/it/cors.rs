//! The collector's HTTP edge, through the real server: CORS on ingest and the SDK
//! files' precompressed variants.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::header;
use serde_json::{json, Value};

use crate::support::{sdk_dir, Env, EnvOptions, DEPLOYMENT};

/// A UUID-shaped id (version 4 layout), unique enough within a test run.
fn test_uuid(salt: u64) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mixed = nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (mixed >> 32) as u32,
        (mixed >> 16) as u16,
        (mixed & 0xfff) as u16,
        (salt & 0xfff) as u16,
        (mixed ^ salt) & 0xffff_ffff_ffff
    )
}

fn batch(visitor_id: &str) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    json!({
        "v": 1,
        "deploymentId": DEPLOYMENT,
        "visitorId": visitor_id,
        "sentAt": now,
        "events": [{
            "id": test_uuid(7),
            "kind": "pageview",
            "name": "page_viewed",
            "time": now - 10,
            "page": {"url": "https://elsewhere.example/"},
        }],
    })
}

async fn post_batch(env: &Env, origin: &str, body: &Value) -> anyhow::Result<reqwest::Response> {
    Ok(env
        .http
        .post(format!("{}/sdk/v1/batch", env.collector_url))
        .header(header::ORIGIN, origin)
        .header(header::CONTENT_TYPE, "text/plain;charset=UTF-8")
        .body(body.to_string())
        .send()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_from_a_foreign_origin_is_refused_and_not_stored() -> anyhow::Result<()> {
    let env = Env::start(EnvOptions::default()).await?;
    let visitor = test_uuid(1);
    let body = batch(&visitor);

    let refused = post_batch(&env, "http://evil.example", &body).await?;
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
    assert!(
        refused
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none(),
        "a refused origin is not told it may read the answer: {:?}",
        refused.headers()
    );
    assert_eq!(
        env.sessions_of(&visitor).await?,
        Vec::<Value>::new(),
        "nothing stored"
    );

    // The very same batch from the demo's origin is valid and stored: the 403 above was
    // about the origin, not about the batch.
    let accepted = post_batch(&env, &env.demo_url, &body).await?;
    assert_eq!(accepted.status(), reqwest::StatusCode::OK);
    assert_eq!(
        accepted
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|v| v.to_str().unwrap()),
        Some(env.demo_url.as_str())
    );
    let answer: Value = accepted.json().await?;
    assert_eq!(answer["accepted"], json!(1), "{answer:#}");
    let sessions = env.sessions_of(&visitor).await?;
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    assert_eq!(sessions[0]["pageviewCount"], json!(1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wasm_file_is_served_brotli_compressed_as_application_wasm() -> anyhow::Result<()> {
    let env = Env::start(EnvOptions::default()).await?;
    let response = env
        .http
        .get(format!("{}/sdk/footpath.wasm", env.collector_url))
        .header(header::ACCEPT_ENCODING, "br")
        .send()
        .await?;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let headers = response.headers().clone();
    let value =
        |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        value(header::CONTENT_TYPE).as_deref(),
        Some("application/wasm"),
        "{headers:?}"
    );
    assert_eq!(
        value(header::CONTENT_ENCODING).as_deref(),
        Some("br"),
        "{headers:?}"
    );
    // reqwest is built without brotli support, so the body arrives as sent.
    let body = response.bytes().await?;
    let expected = std::fs::read(sdk_dir()?.join("footpath.wasm.br"))?;
    assert_eq!(body.len(), expected.len());
    assert!(
        body.as_ref() == expected.as_slice(),
        "the body is footpath.wasm.br"
    );
    Ok(())
}
