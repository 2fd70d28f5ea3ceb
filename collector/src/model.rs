//! The domain model: the types that ingest, the read API, the desk and every store
//! share, apart from any storage.
//!
//! **Architecture Invariant:** this module depends on no backend (no SQL, no
//! `rusqlite`), so that `store/` is one consumer of it among others rather than the
//! place every module imports its types from.

use std::collections::BTreeMap;

use footpath_protocol::v1::{AttributeValue, Context, EventKind, Page};

use crate::contacts::ContactFields;
use crate::enrich::geo::Geolocation;
use crate::enrich::referrer::ReferrerInfo;
use crate::enrich::user_agent::UserAgentInfo;

/// Declares an id newtype over its text, so that a session id cannot be passed where a
/// visitor id is wanted. The text is the id as stored and as the API shows it.
macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn new(text: impl Into<String>) -> $name {
                $name(text.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_newtype!(
    /// A deployment (one site's configuration) as the SDK names it.
    DeploymentId
);
id_newtype!(
    /// A visitor's UUID (the SDK's first-party cookie), lowercase hyphenated.
    VisitorId
);
id_newtype!(
    /// A web session's UUID version 7.
    SessionId
);
id_newtype!(
    /// An external contact's UUID version 4.
    ContactId
);

/// One validated event, ready to be stored. Times are milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The event's UUID in lowercase hyphenated form.
    pub id: String,
    pub kind: EventKind,
    pub name: String,
    /// The device time corrected by the device's clock skew; events are ordered and
    /// sessions are cut by this time.
    pub time_ms: i64,
    /// The device time as sent.
    pub client_time_ms: i64,
    /// When the collector received the batch.
    pub received_ms: i64,
    pub page: Option<Page>,
    pub context: Option<Context>,
    pub login_id: Option<String>,
    pub attributes: BTreeMap<String, AttributeValue>,
    pub traits: BTreeMap<String, AttributeValue>,
    /// The `User-Agent` header of the request that carried the event.
    pub user_agent: Option<String>,
    /// The client's IP address (see `enrich::client_ip`); `None` when the deployment
    /// does not store IP addresses.
    pub ip_address: Option<String>,
    /// The parsed `user_agent`.
    pub user_agent_info: Option<UserAgentInfo>,
    /// Where the client's IP address is, when a GeoIP database is configured.
    pub geolocation: Option<Geolocation>,
    /// The classification of the page's referrer, when it has one.
    pub referrer_info: Option<ReferrerInfo>,
    /// Whether the event carried a valid identity token (the token itself is taken out
    /// of the traits and never stored). Stored with the event.
    pub identity_verified: bool,
    /// What the event's token proved; set with `identity_verified` on the ingest path
    /// only (the claims are not stored as such, so events read back have `Absent`).
    pub identity_proof: crate::identity::IdentityProof,
}

/// The validated events of one batch, all from one visitor of one deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBatch {
    pub deployment_id: String,
    /// The visitor's UUID in lowercase hyphenated form.
    pub visitor_id: String,
    pub events: Vec<NewEvent>,
    /// The deployment trusts traits for identity resolution only on events whose
    /// identity signature is valid.
    pub require_verified_identity: bool,
}

/// What happened to one event of an ingested batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Stored now.
    Accepted,
    /// An event with this id was stored before (a retried batch); not stored again.
    Duplicate,
}

/// An event as read back, with its session and its place in the session.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub session_id: String,
    pub deployment_id: String,
    pub visitor_id: String,
    pub event: NewEvent,
    /// Events of the session up to and including this one, in time order.
    pub total_event_count: u64,
    /// Pageviews of the session up to and including this event.
    pub total_pageview_count: u64,
    /// Whether the session was authenticated once this event was stored.
    pub authenticated: bool,
}

/// The latest event of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastEvent {
    pub id: String,
    pub name: String,
    pub time_ms: i64,
}

/// A session as read back. Every field is maintained when events are ingested (or by
/// the idle sweep, for `ended_ms`), so reading computes nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSession {
    /// A UUID version 7.
    pub id: String,
    /// A 6-digit number, unique among the deployment's sessions of the last 24 hours.
    pub short_id: String,
    pub deployment_id: String,
    pub visitor_id: String,
    pub first_ms: i64,
    pub last_ms: i64,
    /// Set by [`crate::store::Store::close_idle_sessions`]; equal to `last_ms`, the time the visitor
    /// was last active. Or set by a logout, to the logout's time.
    pub ended_ms: Option<i64>,
    pub event_count: u64,
    pub pageview_count: u64,
    /// The page of the pageview with the greatest time.
    pub last_page: Option<Page>,
    /// The event with the greatest time.
    pub last_event: Option<LastEvent>,
    /// Distinct non-empty site-search terms, in time order.
    pub search_terms: Vec<String>,
    /// The page of the session's earliest pageview: its referrer and campaign are the
    /// session's.
    pub landing_page: Option<Page>,
    /// The context of the latest event that had one.
    pub context: Option<Context>,
    /// User agent and IP address of the latest event.
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
    /// The parsed user agent and the geolocation of the session's earliest event that
    /// has them.
    pub user_agent_info: Option<UserAgentInfo>,
    pub geolocation: Option<Geolocation>,
    /// The stored referrer classification of the landing page.
    pub landing_referrer: Option<ReferrerInfo>,
    /// The external contact identity resolution linked the session to.
    pub contact_id: Option<String>,
    /// How that link was made (a token, a recognised cookie, or unverified traits).
    pub contact_link: Option<crate::identity::LinkKind>,
    /// Whether an event of the session carried a valid identity token.
    pub authenticated: bool,
    /// Segments assigned and outcomes achieved in the session, oldest first (see
    /// `crate::segments`).
    pub segment_assignments: Vec<crate::segments::SegmentAssignment>,
    pub outcome_achievements: Vec<crate::segments::OutcomeAchievement>,
}

/// Optional filters of a session listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    pub deployment_id: Option<String>,
    pub visitor_id: Option<String>,
    /// Only the sessions linked to this external contact.
    pub contact_id: Option<String>,
}

/// The kinds of contact identifiers the collector maintains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IdentifierKind {
    /// One of the contact's emails, lowercased.
    Email,
    /// One of the contact's phone numbers, in E.164.
    Phone,
    /// A visitor id that identity resolution linked to the contact.
    Cookie,
}

impl IdentifierKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Email => "Email",
            IdentifierKind::Phone => "Phone",
            IdentifierKind::Cookie => "Cookie",
        }
    }

    pub fn parse(text: &str) -> Option<IdentifierKind> {
        [
            IdentifierKind::Email,
            IdentifierKind::Phone,
            IdentifierKind::Cookie,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIdentifier {
    pub kind: IdentifierKind,
    pub value: String,
    pub created_ms: i64,
}

/// An external contact as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredContact {
    /// A UUID version 4.
    pub id: String,
    /// `Curated` for contacts created through the API (the only way to create one).
    pub contact_type: String,
    pub fields: ContactFields,
    /// Emails and phones (maintained from `fields`), then cookies; each group oldest
    /// first.
    pub identifiers: Vec<StoredIdentifier>,
    pub create_ms: i64,
    pub modify_ms: i64,
}

/// A page-numbered contact search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactQuery {
    /// Matches, case-insensitively, a part of a name, of any email, or of the digits
    /// of any phone number.
    pub text: Option<String>,
    /// From 1.
    pub page_number: usize,
    pub page_size: usize,
}

/// One page of contacts, oldest first, and how many match in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactPage {
    pub items: Vec<StoredContact>,
    pub total: u64,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing<T> {
    pub items: Vec<T>,
    /// Whether items follow the last one of this page.
    pub has_more: bool,
}

/// What every store's operations fail with. Backend-neutral: no variant carries a
/// backend's type.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed: a query, a connection, a lock. The source is the backend's
    /// own error, boxed so that this type names no backend (each backend converts its
    /// errors with a `From` impl of its own).
    #[error("database error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database's schema could not be brought to this collector's version.
    #[error("database migration failed: {0}")]
    Schema(String),
    #[error("stored JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("stored value is invalid: {0}")]
    Corrupt(String),
    /// A pagination cursor that names no item of the listing: a client error.
    #[error("unknown cursor")]
    UnknownCursor,
    /// The ingest queue is full: the caller should shed the request (503) rather than
    /// wait.
    #[error("the ingest queue is full")]
    Overloaded,
    /// The shared transaction of a group of batches failed to commit, or the writer
    /// stopped; nothing of the batch was stored.
    #[error("the ingest transaction failed: {0}")]
    WriterFailed(String),
}

/// Why an event of a request was refused: the field (a path within the event, such as
/// `page.url` or `attributes.price`) and the reason. Displayed as the SDK's batch
/// answer words it (`events[2].page.url: is longer than 4096 bytes`); the Journey
/// API's webevents route names its own request fields from the same path instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFieldError {
    /// The event's position in its batch.
    pub index: usize,
    pub path: String,
    pub reason: String,
}

impl EventFieldError {
    pub fn new(
        index: usize,
        path: impl Into<String>,
        reason: impl Into<String>,
    ) -> EventFieldError {
        EventFieldError {
            index,
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for EventFieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "events[{}].{}: {}", self.index, self.path, self.reason)
    }
}

impl std::error::Error for EventFieldError {}
