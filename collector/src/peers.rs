//! What collectors on one database tell each other, so that an agent's desk on one
//! collector follows what visitors send to another.
//!
//! A collector's desk keeps some state in memory: the live channel its open streams
//! read, the presentation it shows, a short cache of sign-ins. On SQLite there is one
//! collector per database, and that is all. On PostgreSQL several collectors share the
//! database, and each change that an open desk must see is also sent as a
//! [`PeerMessage`] on the database's notification channel [`CHANNEL`]: ingest sends
//! [`PeerMessage::SessionChanged`] inside the batch's transaction (PostgreSQL delivers
//! a notification only when, and if, its transaction commits), the desk sends the
//! others when they happen. Every collector listens on one connection of its own
//! ([`crate::store::Store::listen_to_peers`]) and passes what the others sent to its
//! desk; what it sent itself it skips, by the sender's id in the payload, since it
//! already published it locally.
//!
//! The payload is JSON, at most [`MAX_PAYLOAD_BYTES`] (PostgreSQL refuses 8000 bytes
//! or more). A message that would not fit is not sent; the desks then learn of the
//! change at their next reload, as after [`PeerMessage::Resync`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The PostgreSQL notification channel every collector listens on.
pub const CHANNEL: &str = "footpath_collectors";

/// PostgreSQL's limit on a notification's payload is 8000 bytes, exclusive.
pub const MAX_PAYLOAD_BYTES: usize = 7999;

/// A change that the desks of every collector must see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum PeerMessage {
    /// At least one event of the visitor was newly stored (see
    /// `desk::publish_ingested`).
    #[serde(rename_all = "camelCase")]
    SessionChanged {
        deployment_id: String,
        visitor_id: String,
    },
    /// The desk's presentation was replaced through the admin API: read it again from
    /// the store.
    PresentationChanged,
    /// An agent signed out: forget the cached sign-in with this hash of its id.
    #[serde(rename_all = "camelCase")]
    DeskSignedOut { session_sha256: String },
    /// A data subject was erased: every desk reloads what it shows, so that no agent
    /// keeps seeing what is gone (the message names nobody).
    Erased,
    /// Messages may have been missed (the listening connection was lost and is back):
    /// reload everything. Made by the listener itself, never sent.
    Resync,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The sending collector's id: random, made when its store was opened.
    from: String,
    #[serde(flatten)]
    message: PeerMessage,
}

/// The payload of `message` sent by the collector `from`; `None` when it would not
/// fit in a notification.
pub fn encode(from: &str, message: &PeerMessage) -> Option<String> {
    let envelope = Envelope {
        from: from.to_owned(),
        message: message.clone(),
    };
    serde_json::to_string(&envelope)
        .ok()
        .filter(|payload| payload.len() <= MAX_PAYLOAD_BYTES)
}

/// The sender and the message of a payload; `None` for one this collector cannot
/// read (sent by a newer collector, say), which it then ignores.
pub fn decode(payload: &str) -> Option<(String, PeerMessage)> {
    let envelope: Envelope = serde_json::from_str(payload).ok()?;
    Some((envelope.from, envelope.message))
}

/// What is done with each message another collector sent.
pub type Deliver = Box<dyn Fn(PeerMessage) + Send + 'static>;

/// A running listener (see [`crate::store::Store::listen_to_peers`]); dropping it
/// stops it within a second.
#[derive(Debug)]
pub struct PeerListener {
    stop: Arc<AtomicBool>,
}

impl PeerListener {
    /// The listener's handle, and the flag its loop checks between two waits.
    pub fn new() -> (PeerListener, Arc<AtomicBool>) {
        let stop = Arc::new(AtomicBool::new(false));
        (
            PeerListener {
                stop: Arc::clone(&stop),
            },
            stop,
        )
    }
}

impl Drop for PeerListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_oversized_ones_are_not_sent() {
        let cases = [
            PeerMessage::SessionChanged {
                deployment_id: "shop".to_owned(),
                visitor_id: "0b7e0c2a-5b9e-4a57-9f3e-1c2d3e4f5a6b".to_owned(),
            },
            PeerMessage::PresentationChanged,
            PeerMessage::DeskSignedOut {
                session_sha256: "ab".repeat(32),
            },
            PeerMessage::Erased,
        ];
        for message in cases {
            let payload = encode("collector-a", &message).unwrap();
            assert_eq!(
                decode(&payload),
                Some(("collector-a".to_owned(), message)),
                "{payload}"
            );
        }
        let huge = PeerMessage::SessionChanged {
            deployment_id: "d".repeat(MAX_PAYLOAD_BYTES),
            visitor_id: String::new(),
        };
        assert_eq!(encode("collector-a", &huge), None);
        assert_eq!(
            encode(
                "a",
                &PeerMessage::SessionChanged {
                    deployment_id: "shop".to_owned(),
                    visitor_id: "v".to_owned()
                }
            )
            .unwrap(),
            r#"{"from":"a","kind":"sessionChanged","deploymentId":"shop","visitorId":"v"}"#
        );
        assert_eq!(decode("{\"from\":\"a\",\"kind\":\"fromTheFuture\"}"), None);
        assert_eq!(decode("not json"), None);
    }
}
