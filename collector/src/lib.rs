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
//!   [`model::NewEvent`]s; a refused event is a [`model::EventFieldError`].
//! - [`enrich`]: server-side enrichment: user agent → browser and device, referrer →
//!   name, medium and search terms, client IP (through trusted proxies) →
//!   geolocation; the vendored data files live in `collector/data/`.
//! - [`contacts`]: external contacts: emails and E.164 phone numbers as parsed types,
//!   request parsing and the `ExternalContact` / `ContactListing` JSON shapes.
//! - [`identity`]: identity resolution, the pure rules that link a session to a
//!   contact (cookie first, then traits; the latest identity wins; logout unlinks;
//!   verified identity by HMAC). [`ingest`] applies them inside the ingest transaction.
//! - [`limits`]: what one request, visitor or client address may send: the JSON
//!   nesting pre-scan, per-event size limits, and the per-visitor and per-address
//!   rate limits (keyed `governor` limiters on the injected clock).
//! - [`model`]: the domain types every module shares (events, sessions, contacts, id
//!   newtypes, the backend-neutral `StoreError`), apart from storage.
//! - [`ingest`]: the ingest core: dedupe, session planning, summaries, short ids and
//!   identity orchestration as plain Rust over the row operations of one transaction
//!   (`IngestTransaction`). **Architecture Invariant:** no product rule lives in a
//!   backend.
//! - [`store`]: the storage trait and its SQLite backend (group-committing writer
//!   thread: one transaction, one savepoint per batch, answers after the commit), which
//!   implements `IngestTransaction`.
//!   **Architecture Invariant:** no SQL outside this module.
//! - [`journey`]: the Journey API's JSON shapes and their construction from stored rows.
//! - [`webevents`]: the Journey API's `WebEventRequest` (one web event posted by a
//!   browser or a site's server), parsed into the SDK's wire event so that it takes the
//!   same validation, enrichment, identity and session path; its `createdDate` window
//!   and the `ipAddress` rule (believed only from trusted proxies).
//! - [`openapi`]: the OpenAPI 3.1 document of every route (`collector/openapi.json`,
//!   written by hand), served at `/api/v2/footpath/openapi.json`.
//!   **API Boundary:** a change of a route or a JSON shape changes this document too;
//!   the integration tests validate every response they see against it.
//! - `app`: the HTTP router, its handlers and the server loop: `app/batch.rs` (SDK
//!   batches), `app/webevents.rs` (the Journey API's public webevents and ping),
//!   `app/read.rs` and `app/contacts.rs` (the bearer-token read and admin API).
//! - [`error`]: the API error type shared by every handler.
//! - [`metrics`]: the operator's metrics (`GET /metrics`, Prometheus text), counted
//!   on atomics by ingest; `app/ops.rs` serves them, `/readyz`, and request ids.
//! - [`desk`]: the agents' desk (`/desk/`): live session cards, sign-in, SSE.
//! - [`peers`]: what collectors on one database tell each other (PostgreSQL's
//!   LISTEN/NOTIFY), so that every desk is live whichever collector a visitor reached.
//! - [`privacy`]: data rights and retention: what erasing a contact or a visitor
//!   removes and keeps, exports, and deleting sessions by age (the SQL is
//!   `store/privacy_sql.rs`, the routes `app/privacy.rs`).
//! - [`usage`]: usage per deployment and UTC day (events accepted by kind and
//!   refused by reason, sessions), summarised from stored rows by a daily job; the
//!   SQL is `store/usage_sql.rs`, the route `app/usage.rs`.
//! - [`segments`]: segment and outcome definitions, their criteria, and the index
//!   that makes evaluating them cheap (the evaluation is `ingest/segments.rs`, the
//!   SQL `store/segments_sql.rs` and `store/postgres/`, the routes `app/segments.rs`).

mod app;
pub mod clock;
pub mod config;
pub mod contacts;
pub mod desk;
pub mod enrich;
pub mod error;
pub mod identity;
pub mod ingest;
pub mod journey;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod peers;
pub mod privacy;
pub mod segments;
pub mod sessions;
pub mod store;
pub mod timefmt;
pub mod usage;
pub mod validate;
pub mod webevents;

pub use app::{router, serve, AppState};
