//! The collector's configuration: one struct, filled from a TOML file and then
//! overridden by environment variables and command-line flags, every setting under one
//! naming rule (see [`sources`]).
//!
//! Every field has a default, so an empty file is a valid configuration; units are part
//! of the field names.
//!
//! ```toml
//! listen_addr = "127.0.0.1:8700"
//! database_path = "footpath.sqlite3"
//! # Or a database URL, which wins over database_path when set:
//! # "sqlite://PATH" or "postgres://user:password@host:port/database".
//! # database_url = "postgres://footpath@127.0.0.1:5432/footpath"
//! # At least 32 characters each (`openssl rand -hex 16`); shorter tokens are refused
//! # at startup.
//! api_tokens = ["replace-with-32-or-more-random-characters"]
//!
//! default_phone_region = "GB"
//! # How often clients of the Journey API's ping are told to ping again.
//! ping_poll_interval_milliseconds = 10000
//!
//! [[deployments]]
//! id = "demo"
//! allowed_origins = ["http://127.0.0.1:8080"]
//!
//! # Verified identity for a deployment (see `identity`): optional.
//! [[identity_verification]]
//! deployment_id = "demo"
//! identity_secret = "shared-with-the-site's-server"
//! require_verified_identity = true
//!
//! # Enrichment (see `enrich`): optional.
//! geoip_database_path = "/var/lib/GeoIP/GeoLite2-City.mmdb"
//! referrer_list_path = "/etc/footpath/referrers.json"
//! trusted_proxies = ["10.0.0.0/8", "127.0.0.1"]
//!
//! # Limits (defaults shown; see `limits`): 0 turns a rate limit off.
//! max_body_bytes = 65536
//! max_events_per_batch = 100
//! max_attributes_per_event = 50
//! max_name_bytes = 64
//! max_value_bytes = 1024
//! max_json_nesting_levels = 16
//! visitor_rate_limit_events_per_minute = 300
//! client_ip_rate_limit_events_per_minute = 1200
//! header_read_timeout_seconds = 10
//! body_read_timeout_seconds = 10
//! max_concurrent_ingest_requests = 512
//! ingest_queue_capacity_batches = 1024
//! max_batches_per_transaction = 256
//! postgres_writers = 4
//! postgres_read_connections = 8
//! shutdown_grace_seconds = 30
//! max_user_agent_bytes = 512
//! max_page_url_bytes = 4096
//! max_page_text_bytes = 1024
//! max_events_per_session = 2000
//! max_search_terms_per_session = 20
//! visitor_ping_rate_limit_per_minute = 30
//! client_ip_ping_rate_limit_per_minute = 600
//! max_open_connections = 4096
//! max_connections_per_address = 256
//! max_request_head_bytes = 16384
//!
//! # Operations (defaults shown; see README's "Operating Footpath").
//! metrics_require_token = true
//! log_format = "text"
//! shutdown_drain_seconds = 0
//!
//! # Privacy settings of a deployment: optional.
//! [[deployment_privacy]]
//! deployment_id = "demo"
//! ip_exclusions = ["203.0.113.7", "198.51.100.0/24", "2001:db8::/32"]
//! store_ip_address = false
//! honor_global_privacy_control = true
//! retention_days = 90          # absent: keep everything
//! ```
//!
//! The identity and privacy settings of a deployment live in their own tables
//! (`[[identity_verification]]`, `[[deployment_privacy]]`) rather than in
//! `[[deployments]]`: `DeploymentConfig` is built with struct literals by code outside
//! this crate, and a new field there would break it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::enrich::client_ip::IpRange;

pub mod sources;

/// Most entries of a deployment's `ip_exclusions`.
pub const MAX_IP_EXCLUSIONS: usize = 10;

/// Fewest characters of an `api_tokens` or `[desk] agent_tokens` entry. A token is a
/// password that nobody types twice: 32 random hex characters are 128 bits, out of
/// reach of guessing even without the desk's sign-in rate limit.
pub const MIN_TOKEN_CHARS: usize = 32;

/// Checks that every token of `field` has at least [`MIN_TOKEN_CHARS`] characters. The
/// message names the field and the token's position, never the token itself, since
/// startup errors end up in logs.
pub fn check_token_lengths(field: &str, tokens: &[String]) -> Result<(), String> {
    match tokens
        .iter()
        .position(|token| token.chars().count() < MIN_TOKEN_CHARS)
    {
        Some(position) => Err(format!(
            "{field}: token {} of {} is shorter than {MIN_TOKEN_CHARS} characters; every token needs at least {MIN_TOKEN_CHARS} (for example the output of `openssl rand -hex 16`)",
            position + 1,
            tokens.len()
        )),
        None => Ok(()),
    }
}

/// Where the data lives: the store `AppState::new` opens (see `Config::database`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    /// The URL as configured, for the `postgres` client.
    Postgres(String),
}

/// The URL with its password, if any, replaced, for logs and `Debug`.
fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only fails for URLs that cannot have a password, which this one has.
            let _ = parsed.set_password(Some("hidden"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "[unparsable, hidden]".to_owned(),
    }
}

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds to.
    pub listen_addr: SocketAddr,
    /// The SQLite database file; created, with its schema, when missing. Used when
    /// `database_url` is not set.
    pub database_path: PathBuf,
    /// Where the data lives, by scheme: `sqlite://PATH` (the embedded default, as
    /// `database_path`) or `postgres://user:password@host:port/database` (any number
    /// of collectors on one PostgreSQL server). Unset: `database_path`. A password
    /// in it is hidden from `Debug`.
    pub database_url: Option<String>,
    /// Folder whose files are served under `/sdk/` (the SDK's JavaScript and wasm).
    pub sdk_dir: PathBuf,
    /// A session ends after this long without activity.
    pub session_timeout_seconds: u64,
    /// How often the background task looks for idle sessions to end.
    pub sweep_interval_seconds: u64,
    /// Largest accepted batch body; a larger one is answered with 413. The default is
    /// the protocol's `MAX_BODY_BYTES`, the size up to which the SDK records events:
    /// set lower, the largest events the SDK records are refused here.
    pub max_body_bytes: usize,
    /// Most events in one batch; a batch with more is refused as a whole.
    pub max_events_per_batch: usize,
    /// Events whose (clock-corrected) time is older than this are rejected.
    pub max_event_age_hours: u64,
    /// Bearer tokens that grant access to the read API (and sign agents in to the
    /// desk). At least [`MIN_TOKEN_CHARS`] characters each, or the collector does not
    /// start. Secret: never printed.
    pub api_tokens: Vec<String>,
    /// The sites allowed to send events.
    pub deployments: Vec<DeploymentConfig>,
    /// ISO 3166 region (`GB`, `US`) of contact phone numbers written without a leading
    /// `+`. Unset: such numbers are refused, since their country would be a guess.
    pub default_phone_region: Option<String>,
    /// Verified-identity settings, at most one entry per deployment.
    pub identity_verification: Vec<IdentityVerificationConfig>,
    /// A MaxMind-format database in the GeoIP2/GeoLite2 City layout. Unset: events get
    /// no geolocation.
    pub geoip_database_path: Option<PathBuf>,
    /// A JSON file of known referrers in the shape of the embedded list
    /// (`collector/data/referrers/referrers.json`; see
    /// [`crate::enrich::referrer::ReferrerList`]), read at startup: its hosts are added
    /// to the embedded list, and where both know a host the file's entry wins. A file
    /// that cannot be read or used stops the collector at startup. Unset: the embedded
    /// list alone.
    pub referrer_list_path: Option<PathBuf>,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` header is
    /// believed. Empty: the socket's peer is always the client.
    pub trusted_proxies: Vec<IpRange>,
    /// Per-deployment privacy settings, at most one entry per deployment.
    pub deployment_privacy: Vec<DeploymentPrivacyConfig>,
    /// The `pollIntervalMilliseconds` that the Journey API's ping answers: how long a
    /// client waits before it pings again. At least 1000.
    pub ping_poll_interval_milliseconds: u64,
    /// The agents' desk (`[desk]`, see [`crate::desk::config`]): card title, agent
    /// sign-in tokens, and how events and attributes are shown.
    pub desk: crate::desk::DeskConfig,
    /// Segment definitions (`[[segments]]`, see [`crate::segments`]) created at
    /// startup, or updated when changed: each a TOML table with the Journey API's
    /// `JourneySegment` field names (`displayName`, `color`, `scope`,
    /// `journey.patterns`...) and an `id`, a UUID. Removing one from the file does not
    /// delete it: `DELETE /api/v2/journey/segments/{id}` does.
    pub segments: Vec<serde_json::Value>,
    /// Outcome definitions (`[[outcomes]]`), the same way with the `Outcome` fields.
    pub outcomes: Vec<serde_json::Value>,

    // Limits (see `crate::limits`). Each is answered with a JSON error
    // `{status, code, message}`; the per-event ones reject the event, not the batch.
    /// Most attributes (and, separately, traits) on one event; at most the protocol's
    /// 50.
    pub max_attributes_per_event: usize,
    /// Longest event, attribute or trait name; at most the protocol's 64.
    pub max_name_bytes: usize,
    /// Longest string value of an attribute or trait, and of a `loginId`; at most the
    /// protocol's 1024.
    pub max_value_bytes: usize,
    /// Deepest nesting of JSON arrays and objects in a request body (the top-level
    /// object is level 1); deeper bodies are refused with 400 before they are parsed.
    pub max_json_nesting_levels: usize,
    /// Events per minute one visitor (`visitorId`) may send; more is answered 429 with
    /// `Retry-After`. A minute's allowance may come at once. 0: no limit.
    pub visitor_rate_limit_events_per_minute: u32,
    /// Events per minute one client address (after trusted proxies) may send; more is
    /// answered 429 with `Retry-After`. 0: no limit.
    pub client_ip_rate_limit_events_per_minute: u32,
    /// A connection that has not sent a whole request head within this time is closed
    /// (hyper's `header_read_timeout`; no response can be written without a request).
    pub header_read_timeout_seconds: u64,
    /// A request whose body has not fully arrived within this time is answered 408.
    pub body_read_timeout_seconds: u64,
    /// Ingest requests (batches, web events) handled at once; more are answered 503
    /// with `Retry-After` at once, instead of queueing without bound.
    pub max_concurrent_ingest_requests: usize,
    /// Batches that may wait for the database writer; when the queue is full, batches
    /// are answered 503 with `Retry-After`.
    pub ingest_queue_capacity_batches: usize,
    /// Most batches the writer stores in one transaction (one commit, one fsync).
    /// SQLite only: on PostgreSQL each of `postgres_writers` stores at most 32 queued
    /// batches per transaction, a smaller group because its visitors' row locks are
    /// held until the commit while other collectors may want them.
    pub max_batches_per_transaction: usize,
    /// PostgreSQL only: writer threads, each with a connection, that store queued
    /// batches side by side (1 to 64). With `postgres_read_connections`, what one
    /// collector may hold of the server's `max_connections` (100 by default), plus
    /// one for the live desk's notifications and one to listen for them.
    pub postgres_writers: usize,
    /// PostgreSQL only: pooled connections for everything but ingest (the read API,
    /// the desk, the sweep, housekeeping), opened as needed (1 to 256).
    pub postgres_read_connections: usize,
    /// After SIGTERM or Ctrl-C, how long requests in flight may take to finish before
    /// the server stops anyway.
    pub shutdown_grace_seconds: u64,
    /// Longest `User-Agent` (the header, or a web event's `userAgentString`) that is
    /// parsed and stored. A longer one is cut at the last character boundary within
    /// the limit rather than refused: real browsers send fewer than 400 bytes, and
    /// refusing would drop a real visitor's events for what their extensions added.
    pub max_user_agent_bytes: usize,
    /// Longest `page.url` and `page.referrer` of an event; a longer one rejects the
    /// event (`events[i].page.url: is longer than ...`).
    pub max_page_url_bytes: usize,
    /// Longest `page.title`, `page.keywords`, `page.searchQuery` and campaign value of
    /// an event; a longer one rejects the event.
    pub max_page_text_bytes: usize,
    /// Most events one session holds. The next event that would join a full session
    /// closes it (ended at its last activity) and starts a new one, so that nobody can
    /// grow one session (and its card) without bound, nor lock a visitor's own events
    /// (a sign-in, a logout) out of their session by filling it.
    pub max_events_per_session: u64,
    /// Most distinct search terms a session's summary keeps: the first ones, in time
    /// order. Later terms are still stored on their events.
    pub max_search_terms_per_session: usize,
    /// Pings per minute one visitor (`customerCookieId`) may send; more are answered
    /// 429 with `Retry-After`. 0: no limit.
    pub visitor_ping_rate_limit_per_minute: u32,
    /// Pings per minute one client address may send; more are answered 429. 0: no
    /// limit.
    pub client_ip_ping_rate_limit_per_minute: u32,
    /// Connections open at once. A connection accepted past this cap is closed at
    /// once, without a response, until others end.
    pub max_open_connections: usize,
    /// Connections one client address (an IPv6 client by its /64) may hold open at
    /// once, so that one host cannot take every place of `max_open_connections`.
    /// Trusted proxies are exempt: behind one, enforce this at the proxy. 0: no cap.
    pub max_connections_per_address: usize,
    /// Largest request head (request line and headers) hyper reads; a larger one is
    /// answered 431 and the connection closed. At least 8192.
    pub max_request_head_bytes: usize,

    // Operations (see `crate::metrics` and `app/ops.rs`).
    /// Whether `GET /metrics` needs `Authorization: Bearer` with one of `api_tokens`,
    /// like the read API. Its counts show each deployment's traffic, so the default is
    /// yes; set false only where the port is reachable by the monitoring system alone.
    pub metrics_require_token: bool,
    /// How log lines are written to standard output: `"text"` (for people) or
    /// `"json"` (one JSON object per line, for log collectors). Also `--log-format`
    /// and `FOOTPATH_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// After SIGTERM or Ctrl-C, how long the collector goes on accepting requests
    /// while `/readyz` answers 503, so that a load balancer that polls it stops sending
    /// traffic before connections are refused. Then `shutdown_grace_seconds` applies.
    /// 0: stop accepting at once.
    pub shutdown_drain_seconds: u64,
}

/// `log_format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields` (with `message`),
    /// `target`, and `span` / `spans` with the request's `request_id`.
    Json,
}

/// What a deployment's traffic the collector drops or forgets.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentPrivacyConfig {
    /// The `id` of a configured deployment.
    pub deployment_id: String,
    /// Clients (addresses or CIDR ranges, at most [`MAX_IP_EXCLUSIONS`]) whose batches
    /// are dropped: answered `204 No Content`, stored nowhere, and counted in
    /// `excludedEventsTotal` (`GET /api/v2/footpath/stats`). Typically the site
    /// owner's office and contact centre, whose visits would skew reports.
    #[serde(default)]
    pub ip_exclusions: Vec<IpRange>,
    /// When false, the client's IP address is stored nowhere; the geolocation is still
    /// computed from it first.
    #[serde(default = "default_true")]
    pub store_ip_address: bool,
    /// When true, an SDK batch from a browser that sends Global Privacy Control
    /// (`Sec-GPC: 1`) is dropped: answered `204 No Content`, stored nowhere, counted as
    /// refused for `privacy_signal`. The SDK already sends nothing then unless the page
    /// turned `honorGlobalPrivacyControl` off; this makes the deployment's choice hold
    /// whatever its pages say.
    #[serde(default = "default_true")]
    pub honor_global_privacy_control: bool,
    /// How many days of sessions the deployment keeps: a session whose last activity
    /// is older is deleted with all its events by a background task (see
    /// `crate::privacy`). Absent (the default): everything is kept. From 1 to
    /// [`MAX_RETENTION_DAYS`].
    #[serde(default)]
    pub retention_days: Option<u32>,
}

/// A hundred years: more is a typo, not a policy.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

fn default_true() -> bool {
    true
}

impl DeploymentPrivacyConfig {
    /// The settings of a deployment without a `[[deployment_privacy]]` entry.
    pub fn default_for(deployment_id: &str) -> DeploymentPrivacyConfig {
        DeploymentPrivacyConfig {
            deployment_id: deployment_id.to_owned(),
            ip_exclusions: Vec::new(),
            store_ip_address: true,
            honor_global_privacy_control: true,
            retention_days: None,
        }
    }
}

/// How a deployment's identify calls are verified (see the `identity` module, rule 6).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityVerificationConfig {
    /// The `id` of a configured deployment.
    pub deployment_id: String,
    /// The HMAC-SHA256 key shared with the site's server, which signs identity tokens
    /// (see `docs/identity.md`). At least 32 bytes. Secret: never printed.
    #[serde(default)]
    pub identity_secret: Option<String>,
    /// When true, only events with a valid identity token can link a session to a
    /// contact; unverified traits are stored but never link anything, and a logout of a
    /// recognised cookie needs a valid token of the cookie's contact.
    #[serde(default)]
    pub require_verified_identity: bool,
    /// How far in the future an identity token's `exp` may be, in minutes (a token is a
    /// credential: a short life limits what a leaked one is worth). Default 1440 (a day).
    #[serde(default = "default_identity_token_max_lifetime_minutes")]
    pub identity_token_max_lifetime_minutes: u64,
}

/// The shortest identity secret accepted.
pub const MIN_IDENTITY_SECRET_BYTES: usize = 32;
/// The longest life an identity token may be given: 30 days.
pub const MAX_IDENTITY_TOKEN_LIFETIME_MINUTES: u64 = 30 * 1_440;

fn default_identity_token_max_lifetime_minutes() -> u64 {
    1_440
}

impl IdentityVerificationConfig {
    pub fn max_token_lifetime_ms(&self) -> i64 {
        i64::try_from(
            self.identity_token_max_lifetime_minutes
                .saturating_mul(60_000),
        )
        .unwrap_or(i64::MAX)
    }
}

impl std::fmt::Debug for IdentityVerificationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityVerificationConfig")
            .field("deployment_id", &self.deployment_id)
            .field(
                "identity_secret",
                &self.identity_secret.as_ref().map(|_| "[hidden]"),
            )
            .field("require_verified_identity", &self.require_verified_identity)
            .field(
                "identity_token_max_lifetime_minutes",
                &self.identity_token_max_lifetime_minutes,
            )
            .finish()
    }
}

/// One site (or group of sites) that sends events under one deployment id.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    pub id: String,
    /// Exact `Origin` header values (`https://shop.example`) allowed to send batches
    /// for this deployment; `"*"` allows any origin, including requests without one.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

impl DeploymentConfig {
    /// Whether a batch carrying this `Origin` header (or none) may use the deployment.
    pub fn allows_origin(&self, origin: Option<&str>) -> bool {
        self.allowed_origins.iter().any(|allowed| {
            allowed == "*" || origin.is_some_and(|origin| allowed.as_str() == origin)
        })
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 8700)),
            database_path: PathBuf::from("footpath.sqlite3"),
            database_url: None,
            sdk_dir: PathBuf::from("target/sdk"),
            session_timeout_seconds: 20 * 60,
            sweep_interval_seconds: 30,
            max_body_bytes: footpath_protocol::v1::MAX_BODY_BYTES,
            max_events_per_batch: 100,
            max_event_age_hours: 24,
            api_tokens: Vec::new(),
            deployments: Vec::new(),
            default_phone_region: None,
            identity_verification: Vec::new(),
            geoip_database_path: None,
            referrer_list_path: None,
            trusted_proxies: Vec::new(),
            deployment_privacy: Vec::new(),
            ping_poll_interval_milliseconds: 10_000,
            desk: crate::desk::DeskConfig::default(),
            segments: Vec::new(),
            outcomes: Vec::new(),
            max_attributes_per_event: footpath_protocol::v1::MAX_ATTRIBUTES,
            max_name_bytes: footpath_protocol::v1::MAX_NAME_BYTES,
            max_value_bytes: footpath_protocol::v1::MAX_VALUE_BYTES,
            max_json_nesting_levels: 16,
            visitor_rate_limit_events_per_minute: 300,
            client_ip_rate_limit_events_per_minute: 1200,
            header_read_timeout_seconds: 10,
            body_read_timeout_seconds: 10,
            max_concurrent_ingest_requests: 512,
            ingest_queue_capacity_batches: 1024,
            max_batches_per_transaction: 256,
            postgres_writers: 4,
            postgres_read_connections: 8,
            shutdown_grace_seconds: 30,
            max_user_agent_bytes: 512,
            max_page_url_bytes: 4096,
            max_page_text_bytes: 1024,
            max_events_per_session: 2000,
            max_search_terms_per_session: 20,
            visitor_ping_rate_limit_per_minute: 30,
            client_ip_ping_rate_limit_per_minute: 600,
            max_open_connections: 4096,
            max_connections_per_address: 256,
            max_request_head_bytes: 16 * 1024,
            metrics_require_token: true,
            log_format: LogFormat::Text,
            shutdown_drain_seconds: 0,
        }
    }
}

/// The tokens are secrets: `Debug` shows how many there are, never their values, so that
/// logging the configuration at startup is safe.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen_addr", &self.listen_addr)
            .field("database_path", &self.database_path)
            .field(
                "database_url",
                &self.database_url.as_deref().map(without_password),
            )
            .field("sdk_dir", &self.sdk_dir)
            .field("session_timeout_seconds", &self.session_timeout_seconds)
            .field("sweep_interval_seconds", &self.sweep_interval_seconds)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_events_per_batch", &self.max_events_per_batch)
            .field("max_event_age_hours", &self.max_event_age_hours)
            .field(
                "api_tokens",
                &format_args!("[{} hidden]", self.api_tokens.len()),
            )
            .field("deployments", &self.deployments)
            .field("default_phone_region", &self.default_phone_region)
            .field("identity_verification", &self.identity_verification)
            .field("geoip_database_path", &self.geoip_database_path)
            .field("referrer_list_path", &self.referrer_list_path)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("deployment_privacy", &self.deployment_privacy)
            .field(
                "ping_poll_interval_milliseconds",
                &self.ping_poll_interval_milliseconds,
            )
            .field("desk", &self.desk)
            .field("segments", &self.segments.len())
            .field("outcomes", &self.outcomes.len())
            .field("max_attributes_per_event", &self.max_attributes_per_event)
            .field("max_name_bytes", &self.max_name_bytes)
            .field("max_value_bytes", &self.max_value_bytes)
            .field("max_json_nesting_levels", &self.max_json_nesting_levels)
            .field(
                "visitor_rate_limit_events_per_minute",
                &self.visitor_rate_limit_events_per_minute,
            )
            .field(
                "client_ip_rate_limit_events_per_minute",
                &self.client_ip_rate_limit_events_per_minute,
            )
            .field(
                "header_read_timeout_seconds",
                &self.header_read_timeout_seconds,
            )
            .field("body_read_timeout_seconds", &self.body_read_timeout_seconds)
            .field(
                "max_concurrent_ingest_requests",
                &self.max_concurrent_ingest_requests,
            )
            .field(
                "ingest_queue_capacity_batches",
                &self.ingest_queue_capacity_batches,
            )
            .field(
                "max_batches_per_transaction",
                &self.max_batches_per_transaction,
            )
            .field("postgres_writers", &self.postgres_writers)
            .field("postgres_read_connections", &self.postgres_read_connections)
            .field("shutdown_grace_seconds", &self.shutdown_grace_seconds)
            .field("max_user_agent_bytes", &self.max_user_agent_bytes)
            .field("max_page_url_bytes", &self.max_page_url_bytes)
            .field("max_page_text_bytes", &self.max_page_text_bytes)
            .field("max_events_per_session", &self.max_events_per_session)
            .field(
                "max_search_terms_per_session",
                &self.max_search_terms_per_session,
            )
            .field(
                "visitor_ping_rate_limit_per_minute",
                &self.visitor_ping_rate_limit_per_minute,
            )
            .field(
                "client_ip_ping_rate_limit_per_minute",
                &self.client_ip_ping_rate_limit_per_minute,
            )
            .field("max_open_connections", &self.max_open_connections)
            .field(
                "max_connections_per_address",
                &self.max_connections_per_address,
            )
            .field("max_request_head_bytes", &self.max_request_head_bytes)
            .field("metrics_require_token", &self.metrics_require_token)
            .field("log_format", &self.log_format)
            .field("shutdown_drain_seconds", &self.shutdown_drain_seconds)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Parses TOML text; fields left out keep their defaults.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml_str(&text)
    }

    /// Checks what serde cannot: values that would make the server misbehave rather
    /// than fail to start.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: &str| Err(ConfigError::Invalid(message.to_owned()));
        self.database()?;
        if self.session_timeout_seconds == 0 {
            return invalid("session_timeout_seconds must be at least 1");
        }
        if self.sweep_interval_seconds == 0 {
            return invalid("sweep_interval_seconds must be at least 1");
        }
        if self.max_events_per_batch == 0 {
            return invalid("max_events_per_batch must be at least 1");
        }
        if self.ping_poll_interval_milliseconds < 1000 {
            return invalid("ping_poll_interval_milliseconds must be at least 1000");
        }
        self.validate_limits()?;
        self.desk.validate().map_err(ConfigError::Invalid)?;
        self.configured_definitions()?;
        check_token_lengths("api_tokens", &self.api_tokens).map_err(ConfigError::Invalid)?;
        let mut seen = HashSet::new();
        for deployment in &self.deployments {
            if deployment.id.is_empty() {
                return invalid("a deployment has an empty id");
            }
            if !seen.insert(deployment.id.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "deployment {:?} is configured twice",
                    deployment.id
                )));
            }
        }
        if let Some(region) = &self.default_phone_region {
            if region.parse::<phonenumber::country::Id>().is_err() {
                return Err(ConfigError::Invalid(format!(
                    "default_phone_region {region:?} is not an ISO 3166 region such as \"GB\""
                )));
            }
        }
        let mut verified = HashSet::new();
        for identity in &self.identity_verification {
            let id = identity.deployment_id.as_str();
            if self.deployment(id).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "identity_verification names deployment {id:?}, which is not configured"
                )));
            }
            if !verified.insert(id) {
                return Err(ConfigError::Invalid(format!(
                    "identity_verification has deployment {id:?} twice"
                )));
            }
            if identity
                .identity_secret
                .as_deref()
                .is_some_and(|secret| secret.len() < MIN_IDENTITY_SECRET_BYTES)
            {
                // A short HMAC key can be found by brute force from one token.
                return Err(ConfigError::Invalid(format!(
                    "identity_verification of {id:?}: identity_secret must be at least \
                     {MIN_IDENTITY_SECRET_BYTES} bytes (for example 64 random hex digits)"
                )));
            }
            if identity.identity_token_max_lifetime_minutes == 0
                || identity.identity_token_max_lifetime_minutes
                    > MAX_IDENTITY_TOKEN_LIFETIME_MINUTES
            {
                return Err(ConfigError::Invalid(format!(
                    "identity_verification of {id:?}: identity_token_max_lifetime_minutes must be \
                     between 1 and {MAX_IDENTITY_TOKEN_LIFETIME_MINUTES}"
                )));
            }
            if identity.require_verified_identity && identity.identity_secret.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "identity_verification of {id:?}: require_verified_identity needs an identity_secret"
                )));
            }
        }
        let mut private = HashSet::new();
        for privacy in &self.deployment_privacy {
            let id = privacy.deployment_id.as_str();
            if self.deployment(id).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "deployment_privacy names deployment {id:?}, which is not configured"
                )));
            }
            if !private.insert(id) {
                return Err(ConfigError::Invalid(format!(
                    "deployment_privacy has deployment {id:?} twice"
                )));
            }
            if privacy.ip_exclusions.len() > MAX_IP_EXCLUSIONS {
                return Err(ConfigError::Invalid(format!(
                    "deployment_privacy of {id:?}: ip_exclusions has {} entries, more than {MAX_IP_EXCLUSIONS}",
                    privacy.ip_exclusions.len()
                )));
            }
            if let Some(days) = privacy.retention_days {
                if !(1..=MAX_RETENTION_DAYS).contains(&days) {
                    return Err(ConfigError::Invalid(format!(
                        "deployment_privacy of {id:?}: retention_days must be between 1 and {MAX_RETENTION_DAYS}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The database `database_url` names by its scheme, or `database_path` when it is
    /// unset.
    pub fn database(&self) -> Result<Database, ConfigError> {
        let Some(url) = &self.database_url else {
            return Ok(Database::Sqlite(self.database_path.clone()));
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            ConfigError::Invalid("database_url must start with sqlite:// or postgres://".to_owned())
        })?;
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" if rest.is_empty() => Err(ConfigError::Invalid(
                "database_url: sqlite:// needs a file path, e.g. sqlite://footpath.sqlite3"
                    .to_owned(),
            )),
            "sqlite" => Ok(Database::Sqlite(PathBuf::from(rest))),
            "postgres" | "postgresql" => {
                // Checked here, so that a typo fails at startup with the setting's name.
                url.parse::<postgres::Config>()
                    .map_err(|error| ConfigError::Invalid(format!("database_url: {error}")))?;
                Ok(Database::Postgres(url.clone()))
            }
            other => Err(ConfigError::Invalid(format!(
                "database_url: the scheme {other:?} is not supported \
                 (sqlite:// or postgres://)"
            ))),
        }
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        use footpath_protocol::v1::{MAX_ATTRIBUTES, MAX_NAME_BYTES, MAX_VALUE_BYTES};
        // The protocol's limits are what the SDK promises to send; the collector may be
        // stricter, never looser.
        let within = |name: &str, value: usize, lowest: usize, highest: usize| {
            if (lowest..=highest).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::Invalid(format!(
                    "{name} must be from {lowest} to {highest}, not {value}"
                )))
            }
        };
        within(
            "max_attributes_per_event",
            self.max_attributes_per_event,
            0,
            MAX_ATTRIBUTES,
        )?;
        within("max_name_bytes", self.max_name_bytes, 1, MAX_NAME_BYTES)?;
        within("postgres_writers", self.postgres_writers, 1, 64)?;
        within(
            "postgres_read_connections",
            self.postgres_read_connections,
            1,
            256,
        )?;
        within("max_value_bytes", self.max_value_bytes, 1, MAX_VALUE_BYTES)?;
        // A valid batch nests four levels (batch, events, event, attributes or page);
        // context objects add a level or two.
        within(
            "max_json_nesting_levels",
            self.max_json_nesting_levels,
            8,
            128,
        )?;
        let positive = [
            (
                "header_read_timeout_seconds",
                self.header_read_timeout_seconds,
            ),
            ("body_read_timeout_seconds", self.body_read_timeout_seconds),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
            }
        }
        let positive = [
            (
                "max_concurrent_ingest_requests",
                self.max_concurrent_ingest_requests,
            ),
            (
                "ingest_queue_capacity_batches",
                self.ingest_queue_capacity_batches,
            ),
            (
                "max_batches_per_transaction",
                self.max_batches_per_transaction,
            ),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
            }
        }
        // Request-head and field limits: room for what real browsers send, and no
        // more than a body could carry anyway.
        within("max_user_agent_bytes", self.max_user_agent_bytes, 64, 8192)?;
        within("max_page_url_bytes", self.max_page_url_bytes, 256, 65_536)?;
        within("max_page_text_bytes", self.max_page_text_bytes, 64, 65_536)?;
        within(
            "max_search_terms_per_session",
            self.max_search_terms_per_session,
            0,
            1000,
        )?;
        within(
            "max_open_connections",
            self.max_open_connections,
            1,
            1_000_000,
        )?;
        within(
            "max_request_head_bytes",
            self.max_request_head_bytes,
            8192,
            1024 * 1024,
        )?;
        if self.max_events_per_session == 0 {
            return Err(ConfigError::Invalid(
                "max_events_per_session must be at least 1".to_owned(),
            ));
        }
        Ok(())
    }

    /// The privacy settings of a deployment: its `[[deployment_privacy]]` entry, or the
    /// defaults (nothing excluded, IP addresses stored).
    pub fn deployment_privacy(&self, deployment_id: &str) -> DeploymentPrivacyConfig {
        self.deployment_privacy
            .iter()
            .find(|privacy| privacy.deployment_id == deployment_id)
            .cloned()
            .unwrap_or_else(|| DeploymentPrivacyConfig::default_for(deployment_id))
    }

    /// The verified-identity settings of a deployment, if it has any.
    pub fn identity_verification(
        &self,
        deployment_id: &str,
    ) -> Option<&IdentityVerificationConfig> {
        self.identity_verification
            .iter()
            .find(|identity| identity.deployment_id == deployment_id)
    }

    /// The `[[segments]]` and `[[outcomes]]`, parsed: (id, definition) pairs.
    pub fn configured_definitions(
        &self,
    ) -> Result<Vec<(String, crate::segments::Definition)>, ConfigError> {
        use crate::segments::{parse_configured, DefinitionKind};
        let mut definitions = parse_configured(DefinitionKind::Segment, &self.segments, "segments")
            .map_err(ConfigError::Invalid)?;
        definitions.extend(
            parse_configured(DefinitionKind::Outcome, &self.outcomes, "outcomes")
                .map_err(ConfigError::Invalid)?,
        );
        Ok(definitions)
    }

    pub fn session_timeout_ms(&self) -> i64 {
        seconds_to_ms(self.session_timeout_seconds)
    }

    pub fn max_event_age_ms(&self) -> i64 {
        seconds_to_ms(self.max_event_age_hours.saturating_mul(3600))
    }

    pub fn deployment(&self, id: &str) -> Option<&DeploymentConfig> {
        self.deployments
            .iter()
            .find(|deployment| deployment.id == id)
    }
}

fn seconds_to_ms(seconds: u64) -> i64 {
    i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_selects_the_store_by_its_scheme() {
        let check = |url: Option<&str>, expected: Result<Database, &str>| {
            let config = Config {
                database_path: PathBuf::from("from-path.sqlite3"),
                database_url: url.map(str::to_owned),
                ..Config::default()
            };
            let found = config.database().map_err(|error| error.to_string());
            match (&found, &expected) {
                (Ok(found), Ok(expected)) => assert_eq!(found, expected, "{url:?}"),
                (Err(found), Err(expected)) => {
                    assert!(found.contains(expected), "{url:?}: {found}");
                }
                _ => panic!("{url:?}: {found:?}, expected {expected:?}"),
            }
        };
        let sqlite = |path: &str| Ok(Database::Sqlite(PathBuf::from(path)));
        let postgres = |url: &str| Ok(Database::Postgres(url.to_owned()));
        check(None, sqlite("from-path.sqlite3"));
        check(
            Some("sqlite://footpath.sqlite3"),
            sqlite("footpath.sqlite3"),
        );
        check(
            Some("sqlite:///var/lib/footpath/db.sqlite3"),
            sqlite("/var/lib/footpath/db.sqlite3"),
        );
        check(
            Some("postgres://footpath@127.0.0.1:5432/footpath"),
            postgres("postgres://footpath@127.0.0.1:5432/footpath"),
        );
        check(
            Some("postgresql://u:p@db.internal/footpath"),
            postgres("postgresql://u:p@db.internal/footpath"),
        );
        check(Some("sqlite://"), Err("needs a file path"));
        check(
            Some("mysql://root@localhost/footpath"),
            Err("the scheme \"mysql\" is not supported"),
        );
        check(
            Some("footpath.sqlite3"),
            Err("must start with sqlite:// or postgres://"),
        );
        check(Some("postgres://u@h:notaport/db"), Err("database_url: "));
    }

    #[test]
    fn a_database_urls_password_is_hidden_from_debug() {
        let config = Config {
            database_url: Some("postgres://footpath:s3cret-pw@db.internal/footpath".to_owned()),
            ..Config::default()
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret-pw"), "{debug}");
        assert!(
            debug.contains("postgres://footpath:hidden@db.internal/footpath"),
            "{debug}"
        );
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = Config::from_toml_str("").unwrap();
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:8700");
        assert_eq!(config.session_timeout_ms(), 1_200_000);
        assert_eq!(config.max_body_bytes, 65_536);
        assert_eq!(config.max_event_age_ms(), 86_400_000);
        assert_eq!(config.ping_poll_interval_milliseconds, 10_000);
    }

    #[test]
    fn ping_interval() {
        let config = Config::from_toml_str("ping_poll_interval_milliseconds = 30000").unwrap();
        assert_eq!(config.ping_poll_interval_milliseconds, 30_000);
        assert!(matches!(
            Config::from_toml_str("ping_poll_interval_milliseconds = 999"),
            Err(ConfigError::Invalid(message))
                if message == "ping_poll_interval_milliseconds must be at least 1000"
        ));
    }

    #[test]
    fn parses_deployments_and_hides_tokens() {
        let config = Config::from_toml_str(
            r#"
            api_tokens = ["s3cret-0123456789abcdef0123456789"]
            session_timeout_seconds = 60
            [[deployments]]
            id = "shop"
            allowed_origins = ["https://shop.example"]
            "#,
        )
        .unwrap();
        assert_eq!(config.session_timeout_seconds, 60);
        let shop = config.deployment("shop").unwrap();
        assert!(shop.allows_origin(Some("https://shop.example")));
        assert!(!shop.allows_origin(Some("https://evil.example")));
        assert!(!shop.allows_origin(None));
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("1 hidden"), "{debug}");
    }

    #[test]
    fn short_tokens_are_refused_without_being_echoed() {
        let long = "a".repeat(MIN_TOKEN_CHARS);
        let short = "hunter2-is-not-a-token-0123456"; // 30 characters
        let error = Config::from_toml_str(&format!("api_tokens = [\"{long}\", \"{short}\"]"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "invalid configuration: api_tokens: token 2 of 2 is shorter than 32 characters; every token needs at least 32 (for example the output of `openssl rand -hex 16`)"
        );
        assert!(!error.contains(short), "{error}");
        assert!(Config::from_toml_str("api_tokens = [\"\"]").is_err());
        assert!(Config::from_toml_str(&format!("api_tokens = [\"{long}\"]")).is_ok());
        // Characters, not bytes: 31 two-byte characters are still too short.
        let accented = "é".repeat(MIN_TOKEN_CHARS - 1);
        assert!(Config::from_toml_str(&format!("api_tokens = [\"{accented}\"]")).is_err());
    }

    #[test]
    fn identity_settings_parse_and_hide_the_secret() {
        let config = Config::from_toml_str(
            r#"
            default_phone_region = "GB"
            [[deployments]]
            id = "shop"
            [[identity_verification]]
            deployment_id = "shop"
            identity_secret = "hmac-s3cret-hmac-s3cret-hmac-s3cret"
            require_verified_identity = true
            "#,
        )
        .unwrap();
        assert_eq!(config.default_phone_region.as_deref(), Some("GB"));
        let identity = config.identity_verification("shop").unwrap();
        assert_eq!(
            identity.identity_secret.as_deref(),
            Some("hmac-s3cret-hmac-s3cret-hmac-s3cret")
        );
        assert!(identity.require_verified_identity);
        assert!(config.identity_verification("other").is_none());
        let debug = format!("{config:?}");
        assert!(!debug.contains("hmac-s3cret"), "{debug}");
        assert_eq!(identity.identity_token_max_lifetime_minutes, 1_440);
        assert!(debug.contains("[hidden]"), "{debug}");

        let defaults = Config::from_toml_str("").unwrap();
        assert_eq!(defaults.default_phone_region, None);
        assert!(defaults.identity_verification.is_empty());

        let invalid = |text: &str| match Config::from_toml_str(text) {
            Err(ConfigError::Invalid(message)) => message,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(
            invalid("default_phone_region = \"Narnia\""),
            "default_phone_region \"Narnia\" is not an ISO 3166 region such as \"GB\""
        );
        assert_eq!(
            invalid("[[identity_verification]]\ndeployment_id = \"ghost\"\n"),
            "identity_verification names deployment \"ghost\", which is not configured"
        );
        assert_eq!(
            invalid(
                "[[deployments]]\nid = \"a\"\n[[identity_verification]]\ndeployment_id = \"a\"\nrequire_verified_identity = true\n"
            ),
            "identity_verification of \"a\": require_verified_identity needs an identity_secret"
        );
        // A short key can be brute-forced from one token; the message never echoes it.
        let short = invalid(
            "[[deployments]]\nid = \"a\"\n[[identity_verification]]\ndeployment_id = \"a\"\nidentity_secret = \"0123456789abcdef0123456789abcde\"\n",
        );
        assert!(
            short.contains("at least 32 bytes") && !short.contains("0123"),
            "{short}"
        );
        let forever = invalid(
            "[[deployments]]\nid = \"a\"\n[[identity_verification]]\ndeployment_id = \"a\"\nidentity_secret = \"0123456789abcdef0123456789abcdef\"\nidentity_token_max_lifetime_minutes = 100000\n",
        );
        assert!(forever.contains("between 1 and 43200"), "{forever}");
    }

    #[test]
    fn enrichment_and_privacy_settings() {
        let config = Config::from_toml_str(
            r#"
            geoip_database_path = "/data/GeoLite2-City.mmdb"
            referrer_list_path = "/etc/footpath/referrers.json"
            trusted_proxies = ["10.0.0.0/8", "127.0.0.1", "2001:db8::/32"]
            [[deployments]]
            id = "demo"
            [[deployments]]
            id = "other"
            [[deployment_privacy]]
            deployment_id = "demo"
            ip_exclusions = ["203.0.113.7", "198.51.100.0/24", "2001:db8:abcd::/48"]
            store_ip_address = false
            retention_days = 30
            "#,
        )
        .unwrap();
        assert_eq!(
            config.geoip_database_path.as_deref(),
            Some(Path::new("/data/GeoLite2-City.mmdb"))
        );
        assert_eq!(
            config.referrer_list_path.as_deref(),
            Some(Path::new("/etc/footpath/referrers.json"))
        );
        let proxies: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(proxies, ["10.0.0.0/8", "127.0.0.1/32", "2001:db8::/32"]);
        let demo = config.deployment_privacy("demo");
        assert!(!demo.store_ip_address);
        assert_eq!(demo.retention_days, Some(30));
        assert_eq!(config.deployment_privacy("other").retention_days, None);
        let exclusions: Vec<String> = demo.ip_exclusions.iter().map(ToString::to_string).collect();
        assert_eq!(
            exclusions,
            ["203.0.113.7/32", "198.51.100.0/24", "2001:db8:abcd::/48"]
        );
        assert_eq!(
            config.deployment_privacy("other"),
            DeploymentPrivacyConfig::default_for("other")
        );
        assert!(config.deployment_privacy("other").store_ip_address);

        let defaults = Config::from_toml_str("").unwrap();
        assert_eq!(defaults.geoip_database_path, None);
        assert_eq!(defaults.referrer_list_path, None);
        assert!(defaults.trusted_proxies.is_empty());
        assert!(defaults.deployment_privacy.is_empty());

        let invalid = |text: &str| match Config::from_toml_str(text) {
            Err(ConfigError::Invalid(message)) => message,
            other => panic!("{text}: {other:?}"),
        };
        let eleven: Vec<String> = (1..=11).map(|n| format!("\"203.0.113.{n}\"")).collect();
        assert_eq!(
            invalid(&format!(
                "[[deployments]]\nid = \"demo\"\n[[deployment_privacy]]\ndeployment_id = \"demo\"\nip_exclusions = [{}]\n",
                eleven.join(", ")
            )),
            "deployment_privacy of \"demo\": ip_exclusions has 11 entries, more than 10"
        );
        let ten = &eleven[..10];
        assert!(Config::from_toml_str(&format!(
            "[[deployments]]\nid = \"demo\"\n[[deployment_privacy]]\ndeployment_id = \"demo\"\nip_exclusions = [{}]\n",
            ten.join(", ")
        ))
        .is_ok());
        assert_eq!(
            invalid("[[deployment_privacy]]\ndeployment_id = \"ghost\"\n"),
            "deployment_privacy names deployment \"ghost\", which is not configured"
        );
        for (days, valid) in [("0", false), ("1", true), ("36500", true), ("36501", false)] {
            let text = format!(
                "[[deployments]]\nid = \"demo\"\n[[deployment_privacy]]\ndeployment_id = \"demo\"\nretention_days = {days}\n"
            );
            match Config::from_toml_str(&text) {
                Ok(_) => assert!(valid, "{days}"),
                Err(error) => {
                    assert!(!valid, "{days}: {error}");
                    assert_eq!(
                        error.to_string(),
                        ConfigError::Invalid(
                            "deployment_privacy of \"demo\": retention_days must be between 1 and 36500"
                                .to_owned()
                        )
                        .to_string()
                    );
                }
            }
        }
        // A malformed range is a parse error that names it.
        let error = Config::from_toml_str("trusted_proxies = [\"10.0.0.0/99\"]")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"10.0.0.0/99\" is neither an IP address nor a CIDR range"),
            "{error}"
        );
    }

    #[test]
    fn star_allows_any_origin() {
        let any = DeploymentConfig {
            id: "any".into(),
            allowed_origins: vec!["*".into()],
        };
        assert!(any.allows_origin(Some("https://x.example")));
        assert!(any.allows_origin(None));
    }

    #[test]
    fn rejects_unknown_fields_and_duplicates() {
        assert!(Config::from_toml_str("session_timeout_minutes = 3").is_err());
        let twice = "[[deployments]]\nid = \"a\"\n[[deployments]]\nid = \"a\"\n";
        assert!(matches!(
            Config::from_toml_str(twice),
            Err(ConfigError::Invalid(_))
        ));
    }
}
