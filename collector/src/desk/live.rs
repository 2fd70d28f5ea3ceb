//! Live updates: ingest publishes "this visitor's session changed" after its
//! transaction commits, and every open desk receives it as a server-sent event.
//!
//! The message names only the visitor (its cookie id, which the desk's list and cards
//! already show), so that publishing costs nothing and the stream leaks nothing: the
//! browser fetches what changed through the same authenticated API as before.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast;

use super::Desk;
use crate::AppState;

/// Messages a slow desk may fall behind by before it is told to reload everything.
const CHANNEL_CAPACITY: usize = 1024;
/// How often an idle stream checks that its agent is still signed in.
const SIGN_IN_CHECK: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionChanged {
    pub deployment_id: String,
    pub visitor_id: String,
}

/// What the channel carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveMessage {
    /// A visitor's session changed, on this collector or another one.
    Changed(SessionChanged),
    /// Changes may have been missed (the connection to the other collectors was
    /// lost): every desk reloads what it shows.
    Resync,
}

pub fn channel() -> broadcast::Sender<LiveMessage> {
    broadcast::channel(CHANNEL_CAPACITY).0
}

/// The stream of one signed-in desk: `ready` first (the desk then reloads what it
/// shows, which also covers what it missed while disconnected), then `visitor` per
/// change, `presentation` when the presentation was changed through the admin API
/// (the desk reloads what it shows), or `resync` when it fell behind. It ends when the agent's sign-in does, and
/// when the collector begins to shut down ([`Desk::close_streams`]): an open desk must
/// not hold a graceful shutdown for its whole grace period. The browser's EventSource
/// then reconnects by itself to the next collector.
pub fn stream(
    state: AppState,
    desk: Arc<Desk>,
    agent_session: String,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = desk.live.subscribe();
    let closing = desk.closing.subscribe();
    let mut presentation = desk.presentation_version.subscribe();
    presentation.mark_unchanged();
    let ready = stream::once(async { Ok(Event::default().event("ready").data("{}")) });
    let changes = stream::unfold(
        (receiver, closing, presentation),
        move |(mut receiver, mut closing, mut presentation)| {
            let state = state.clone();
            let desk = Arc::clone(&desk);
            let agent_session = agent_session.clone();
            async move {
                loop {
                    if *closing.borrow_and_update() {
                        return None;
                    }
                    let received = tokio::select! {
                        received = receiver.recv() => Some(received),
                        () = tokio::time::sleep(SIGN_IN_CHECK) => None,
                        _ = closing.changed() => return None,
                        changed = presentation.changed() => {
                            if changed.is_err() {
                                return None;
                            }
                                    if !still_signed_in(&desk, &state, &agent_session).await {
                                return None;
                            }
                            let event = Event::default().event("presentation").data("{}");
                            return Some((Ok(event), (receiver, closing, presentation)));
                        }
                    };
                    if !still_signed_in(&desk, &state, &agent_session).await {
                        return None;
                    }
                    let event = match received {
                        None => continue,
                        Some(Ok(LiveMessage::Changed(change))) => Event::default()
                            .event("visitor")
                            .json_data(serde_json::json!({
                                "customerId": change.visitor_id,
                                "deploymentId": change.deployment_id,
                            }))
                            .unwrap_or_else(|_| Event::default().event("resync").data("{}")),
                        Some(Ok(LiveMessage::Resync))
                        | Some(Err(broadcast::error::RecvError::Lagged(_))) => {
                            Event::default().event("resync").data("{}")
                        }
                        Some(Err(broadcast::error::RecvError::Closed)) => return None,
                    };
                    return Some((Ok(event), (receiver, closing, presentation)));
                }
            }
        },
    );
    Sse::new(ready.chain(changes)).keep_alive(KeepAlive::default())
}

/// Whether the stream's agent is still signed in. A store that cannot tell ends the
/// stream too: the browser reconnects, and is refused or let in by a fresh check.
async fn still_signed_in(desk: &Desk, state: &AppState, agent_session: &str) -> bool {
    desk.agents
        .is_valid(agent_session, state.clock().now_ms())
        .await
        .unwrap_or_else(|error| {
            tracing::warn!(%error, "could not check a desk stream's sign-in");
            false
        })
}
