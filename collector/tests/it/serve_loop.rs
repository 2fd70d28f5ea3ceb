//! The real server on a loopback port: client IPs from the socket, the background
//! sweep driven by the injected clock, and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use footpath_collector::clock::ManualClock;
use footpath_collector::{serve, AppState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// A minimal HTTP/1.1 exchange, so that the test needs no HTTP client crate.
async fn http(address: std::net::SocketAddr, request: String) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn serve_records_client_ip_sweeps_by_the_clock_and_shuts_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.sweep_interval_seconds = 1;
    let clock = Arc::new(ManualClock::new(T0));
    let state = AppState::new(config, clock.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(state.clone(), listener, async {
        let _ = stopped.await;
    }));

    let body = batch(VISITOR, T0, vec![record(1, "hello", T0)]).to_string();
    let response = http(
        address,
        format!(
            "POST /sdk/v1/batch HTTP/1.1\r\nHost: {address}\r\nOrigin: {ORIGIN}\r\n\
             Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let session_id = state
        .store()
        .sessions(&Default::default(), None, 10)
        .unwrap()
        .items[0]
        .id
        .clone();
    let session = state.store().session(&session_id).unwrap().unwrap();
    assert_eq!(session.ip_address.as_deref(), Some("127.0.0.1"));
    assert_eq!(session.ended_ms, None);

    // Move the injected clock past the timeout; the background sweep (every second)
    // must end the session without the test calling it.
    clock.advance_ms(TIMEOUT);
    let mut ended = None;
    for _ in 0..50 {
        ended = state
            .store()
            .session(&session_id)
            .unwrap()
            .unwrap()
            .ended_ms;
        if ended.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ended, Some(T0));

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops after the shutdown signal")
        .unwrap()
        .unwrap();
}
