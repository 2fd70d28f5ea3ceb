//! The Footpath collector: receives the browser SDK's event batches, groups events into
//! web sessions and serves the read side of the Journey API.
//!
//! The crate is a library with a thin `main.rs`, so that tests (ours and the workspace's
//! end-to-end tests) build the very same [`router`] and drive it directly.
//!
//! Codemap:
//! - [`config`]: the one configuration struct, filled from TOML, environment and flags.
//! - [`clock`]: the injected time source; sessions expire by it, so tests never sleep.
//! - [`sessions`]: the pure rule that decides which session an event belongs to.
//! - [`validate`]: per-event checks of an incoming batch, turning wire events into
//!   [`store::NewEvent`]s.
//! - [`store`]: the storage trait and its SQLite backend.
//!   **Architecture Invariant:** no SQL outside this module.
//! - [`journey`]: the Journey API's JSON shapes and their construction from stored rows.
//! - `app`: the HTTP router, its handlers and the server loop.
//! - [`error`]: the API error type shared by every handler.

mod app;
pub mod clock;
pub mod config;
pub mod error;
pub mod journey;
pub mod sessions;
pub mod store;
pub mod timefmt;
pub mod validate;

pub use app::{router, serve, AppState};
