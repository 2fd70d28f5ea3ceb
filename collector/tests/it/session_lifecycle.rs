//! Sessions over time, driven by the ManualClock and explicit sweeps.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn session_ends_only_after_the_sweep_past_the_timeout() {
    let app = TestApp::new();
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![pageview(1, T0, "https://shop.example/")],
    ))
    .await
    .ok_json();
    app.clock.advance_ms(TIMEOUT - SECOND);
    assert_eq!(app.sweep(), 0);
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(session.get("endedDate"), None, "{session:#}");

    // Reaching the timeout alone does not end the session; the sweep does.
    app.clock.advance_ms(SECOND);
    assert_eq!(app.only_session_of(VISITOR).await.get("endedDate"), None);
    assert_eq!(app.sweep(), 1);
    let session = app.only_session_of(VISITOR).await;
    // The end is when the visitor was last active.
    assert_eq!(session["endedDate"], json!("2026-11-24T06:15:14.123Z"));
    assert_eq!(session["createdDate"], json!("2026-11-24T06:15:14.123Z"));
    // A second sweep has nothing left to do.
    assert_eq!(app.sweep(), 0);
}

#[tokio::test]
async fn activity_after_the_timeout_starts_a_new_session() {
    let app = TestApp::new();
    app.post_batch(&batch(VISITOR, T0, vec![record(1, "first", T0)]))
        .await
        .ok_json();

    // 19 min 59 s later: the same session.
    app.clock.advance_ms(TIMEOUT - SECOND);
    let now = app.clock.now_ms();
    app.post_batch(&batch(VISITOR, now, vec![record(2, "second", now)]))
        .await
        .ok_json();
    let session = app.only_session_of(VISITOR).await;
    assert_eq!(session["eventCount"], 2);
    assert_eq!(session["durationInSeconds"], 19 * 60 + 59);

    // Exactly 20 minutes after the last event: a new session.
    app.clock.advance_ms(TIMEOUT);
    let now = app.clock.now_ms();
    app.post_batch(&batch(VISITOR, now, vec![record(3, "third", now)]))
        .await
        .ok_json();
    let listing = app
        .get(&format!(
            "/api/v2/journey/sessions?customerCookieId={VISITOR}"
        ))
        .await
        .ok_json();
    let sessions = listing["entities"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{listing:#}");
    assert_eq!(sessions[0]["lastEvent"]["id"], json!(event_id(3)));
    assert_eq!(sessions[0]["eventCount"], 1);
    assert_eq!(sessions[1]["eventCount"], 2);
    assert_ne!(sessions[0]["id"], sessions[1]["id"]);
    assert_ne!(sessions[0]["shortId"], sessions[1]["shortId"]);
}

#[tokio::test]
async fn late_event_lands_in_the_session_of_its_time() {
    let app = TestApp::new();
    let start = T0 - 60 * MINUTE;
    app.post_batch(&batch(VISITOR, T0, vec![record(1, "early", start)]))
        .await
        .ok_json();
    app.post_batch(&batch(VISITOR, T0, vec![record(2, "now", T0)]))
        .await
        .ok_json();
    // Arrives last, but happened 10 minutes before the first session's first event.
    app.post_batch(&batch(
        VISITOR,
        T0,
        vec![record(3, "late", start - 10 * MINUTE)],
    ))
    .await
    .ok_json();
    let listing = app
        .get(&format!(
            "/api/v2/journey/sessions?customerCookieId={VISITOR}"
        ))
        .await
        .ok_json();
    let sessions = listing["entities"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{listing:#}");
    let older = &sessions[1];
    assert_eq!(older["eventCount"], 2);
    assert_eq!(older["createdDate"], json!("2026-11-24T05:05:14.123Z"));
    assert_eq!(older["lastEvent"]["eventName"], "early");
    assert_eq!(older["durationInSeconds"], 600);
}

#[tokio::test]
async fn two_visitors_never_share_a_session() {
    let app = TestApp::new();
    app.post_batch(&batch(VISITOR, T0, vec![record(1, "a", T0)]))
        .await
        .ok_json();
    app.post_batch(&batch(OTHER_VISITOR, T0, vec![record(2, "b", T0)]))
        .await
        .ok_json();
    let first = app.only_session_of(VISITOR).await;
    let second = app.only_session_of(OTHER_VISITOR).await;
    assert_ne!(first["id"], second["id"]);
    assert_eq!(first["customerId"], VISITOR);
    assert_eq!(second["customerId"], OTHER_VISITOR);
}
