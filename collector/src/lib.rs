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
//! - [`enrich`]: server-side enrichment: user agent → browser and device, referrer →
//!   name, medium and search terms, client IP (through trusted proxies) →
//!   geolocation; the vendored data files live in `collector/data/`.
//! - [`contacts`]: external contacts: emails and E.164 phone numbers as parsed types,
//!   request parsing and the `ExternalContact` / `ContactListing` JSON shapes.
//! - [`identity`]: identity resolution, the pure rules that link a session to a
//!   contact (cookie first, then traits; the latest identity wins; logout unlinks;
//!   verified identity by HMAC). The store applies them inside the ingest transaction.
//! - [`store`]: the storage trait and its SQLite backend.
//!   **Architecture Invariant:** no SQL outside this module.
//! - [`journey`]: the Journey API's JSON shapes and their construction from stored rows.
//! - `app`: the HTTP router, its handlers and the server loop.
//! - [`error`]: the API error type shared by every handler.

mod app;
pub mod clock;
pub mod config;
pub mod contacts;
pub mod enrich;
pub mod error;
pub mod identity;
pub mod journey;
pub mod sessions;
pub mod store;
pub mod timefmt;
pub mod validate;

pub use app::{router, serve, AppState};
