//! What collectors on one PostgreSQL database tell each other ([`crate::peers`]),
//! through the database's LISTEN/NOTIFY: no other server to run.
//!
//! **Sending** is by one notifier thread per store, off the ingest path: writers hand
//! it a message after their transaction committed, and it sends what has gathered in
//! one transaction of its own, with `synchronous_commit` off (a notification needs no
//! durability). Not inside the ingest transactions: PostgreSQL serialises the commits
//! of every transaction that notifies (one lock on the notification queue, held until
//! the commit is flushed), which would undo the group commit that lets many batches
//! flush at once. The cost is that a crash between a batch's commit and its
//! notification loses the live update (not the data): open desks reload what they show
//! when they reconnect.
//!
//! **Listening** is by one thread per listener with a connection of its own (not from
//! the pool: it is held for good), which reconnects when the connection is lost and
//! then delivers [`PeerMessage::Resync`], since notifications sent meanwhile are gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;

use super::connection::Target;

use crate::model::StoreError;
use crate::peers::{self, Deliver, PeerListener, PeerMessage, CHANNEL};

/// Messages that may wait for the notifier; past it, more are dropped (the desks
/// catch up when they reload).
pub(super) const NOTIFIER_QUEUE: usize = 16_384;
/// Most messages taken from the queue for one transaction.
const NOTIFY_BATCH: usize = 1_000;
/// How long a wait for notifications lasts before the listener checks whether it is
/// to stop.
const LISTEN_WAIT: Duration = Duration::from_millis(250);
/// Pause before connecting again after a failure.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// Hands `message` to the notifier without waiting; dropped when its queue is full.
pub(super) fn send(queue: &SyncSender<PeerMessage>, message: PeerMessage) {
    match queue.try_send(message) {
        Ok(()) | Err(TrySendError::Disconnected(_)) => {}
        Err(TrySendError::Full(_)) => {
            tracing::debug!(
                "the notifier is behind; a live update for other collectors is dropped"
            );
        }
    }
}

/// Starts the notifier thread of the store whose id is `from`; it stops once every
/// sender of `queue` is gone.
pub(super) fn start_notifier(
    target: Target,
    from: String,
    queue: Receiver<PeerMessage>,
) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("footpath-pg-notifier".to_owned())
        .spawn(move || run_notifier(&target, &from, &queue))
        .map(|_| ())
        .map_err(|error| StoreError::WriterFailed(format!("cannot start the notifier: {error}")))
}

fn run_notifier(target: &Target, from: &str, queue: &Receiver<PeerMessage>) {
    let mut client: Option<Client> = None;
    loop {
        let Ok(first) = queue.recv() else { return };
        // Busy visitors send many batches a second: each is announced once per
        // transaction (PostgreSQL would fold equal notifications of one transaction
        // too, but only after they crossed the network).
        let mut payloads = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(message) = next {
            taken += 1;
            if let Some(payload) = peers::encode(from, &message) {
                if seen.insert(payload.clone()) {
                    payloads.push(payload);
                }
            }
            next = if taken < NOTIFY_BATCH {
                queue.try_recv().ok()
            } else {
                None
            };
        }
        if payloads.is_empty() {
            continue;
        }
        // One attempt on a fresh connection after a failure; a message that fails
        // twice is dropped rather than holding up the ones behind it.
        for _ in 0..2 {
            if client.as_ref().is_none_or(Client::is_closed) {
                client = connect(target, "SET synchronous_commit TO off")
                    .map_err(|error| tracing::warn!(%error, "the notifier cannot connect"))
                    .ok();
            }
            let Some(connected) = client.as_mut() else {
                std::thread::sleep(RECONNECT_PAUSE);
                continue;
            };
            let sent = connected.execute(
                "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload",
                &[&CHANNEL, &payloads],
            );
            match sent {
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "could not notify the other collectors");
                    client = None;
                }
            }
        }
    }
}

fn connect(target: &Target, setup: &str) -> Result<Client, postgres::Error> {
    let mut client = target.connect()?;
    client.batch_execute(setup)?;
    Ok(client)
}

/// Starts listening for what other collectors send: `deliver` gets every message
/// whose sender is not `own_id`. Returns once the first connection listens, so that
/// nothing sent after this returns is missed.
pub(super) fn listen(
    target: Target,
    own_id: String,
    deliver: Deliver,
) -> Result<PeerListener, StoreError> {
    let (listener, stop) = PeerListener::new();
    let (ready, is_ready) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("footpath-pg-listener".to_owned())
        .spawn(move || run_listener(&target, &own_id, &deliver, &stop, Some(ready)))
        .map_err(|error| StoreError::WriterFailed(format!("cannot start the listener: {error}")))?;
    match is_ready.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(())) => Ok(listener),
        Ok(Err(error)) => Err(StoreError::Backend(Box::new(error))),
        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => Err(
            StoreError::WriterFailed("the listener did not start".to_owned()),
        ),
    }
}

fn run_listener(
    target: &Target,
    own_id: &str,
    deliver: &Deliver,
    stop: &AtomicBool,
    mut ready: Option<SyncSender<Result<(), postgres::Error>>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let mut client = match connect(target, &format!("LISTEN {CHANNEL}")) {
            Ok(client) => client,
            Err(error) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(error));
                    return;
                }
                tracing::warn!(%error, "cannot listen to the other collectors; trying again");
                std::thread::sleep(RECONNECT_PAUSE);
                continue;
            }
        };
        match ready.take() {
            Some(ready) => {
                let _ = ready.send(Ok(()));
            }
            // Listening again after a lost connection: what was sent meanwhile is gone.
            None => {
                tracing::info!("listening to the other collectors again");
                deliver(PeerMessage::Resync);
            }
        }
        while !stop.load(Ordering::Relaxed) {
            let next = client.notifications().timeout_iter(LISTEN_WAIT).next();
            match next {
                Ok(Some(notification)) => match peers::decode(notification.payload()) {
                    Some((from, message)) if from != own_id => deliver(message),
                    Some(_) => {}
                    None => tracing::debug!("ignoring a notification this collector cannot read"),
                },
                // Nothing within the wait, or the connection is gone.
                Ok(None) if !client.is_closed() => {}
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "lost the connection that listens to the other collectors");
                    break;
                }
            }
        }
    }
}
