//! Data rights and retention: the rules of erasing and exporting one person's data, and
//! of deleting what is older than a deployment keeps. The SQL that applies them is
//! `store/privacy_sql.rs`; the routes are `app/privacy.rs`.
//!
//! # What an erase removes
//!
//! A *data subject* is a contact (an external contact and every visitor cookie linked
//! to it) or one visitor cookie of one deployment. Erasing one:
//!
//! - deletes the contact record with all its identifiers (emails, phones, cookie
//!   links); for a visitor, deletes the cookie's link to a contact;
//! - turns each of the subject's sessions into a *shell*: its visitor id is replaced by
//!   a fresh random UUID (one per session, so the shells of one person are not linked
//!   to each other), its contact, search terms, parsed user agent and geolocation are
//!   cleared (the kind of link that had been made, such as `Verified`, stays without
//!   the contact: the usage figures count identified sessions by it), and it is ended
//!   and closed (no later event joins it);
//! - keeps each event of those sessions as a shell too, with [`ERASED_EVENT_FIELDS`]
//!   cleared and the page URL cut to its origin ([`erased_page_url`]);
//! - deletes the sessions' segment assignments (a segment is a profile of the person),
//!   the session's and the customer's pattern counters and customer-scope segments;
//!   keeps their outcome achievements (a conversion is counted like the events are)
//!   without their associated value.
//!
//! What remains is what counts need and what names nobody: per session its id, short
//! id, deployment, times, event and pageview counts, whether it was authenticated and
//! by which kind of link it had been identified; per
//! event its id, kind, name, times, and its page's origin. Events are kept so that the
//! counts of sessions and events, and the usage figures, do not change.
//!
//! A cookie link names a visitor id without its deployment (identity resolution keeps
//! it so), so a visitor's erase in one deployment removes the link of that id
//! wherever it was made; ids are random UUIDs, so the same id is the same browser.
//!
//! An erase does not stop a browser that still holds the cookie from sending new
//! events: that is the SDK's consent and opt-out (new data starts new sessions).
//!
//! # Retention
//!
//! A deployment with `retention_days` loses each session, whole, once its last activity
//! is older than that ([`retention_cutoff_ms`]) and the usage figures hold every day it
//! received an event on. On SQLite that is always row by row, oldest sessions first, in
//! bounded chunks ([`PrivacyStore::delete_sessions_before`]). On PostgreSQL, whose
//! events table is partitioned by month, a month whose every session is past its
//! deployment's retention is first dropped whole
//! ([`PrivacyStore::drop_expired_partitions`], by a [`RetentionPolicy`] of every
//! deployment at once); what is left past retention (months shared with a deployment
//! that keeps longer or keeps everything, the days of a month not yet all past it)
//! goes row by row as on SQLite.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::store::StoreError;

/// Erasure, export and retention: part of every [`crate::store::Store`]. Each write
/// runs in one transaction, so that readers see a subject either untouched or fully
/// erased, and a session either whole or gone.
pub trait PrivacyStore {
    /// The subject's sessions and cookie link; `None` when nothing is stored under the
    /// subject's id (for a contact: no contact record; for a visitor: no session of
    /// the deployment and no cookie link).
    fn subject_sessions(
        &self,
        subject: &DataSubject,
    ) -> Result<Option<SubjectSessions>, StoreError>;

    /// Erases the subject (see the module documentation); `None` when nothing is
    /// stored under its id, which is also the answer to a second erase.
    fn erase_subject(&self, subject: &DataSubject) -> Result<Option<ErasureReport>, StoreError>;

    /// Deletes at most `max_sessions` sessions of the deployment whose last activity is
    /// before `before_ms`, each with all its events and matches, in one transaction.
    /// Returns how many sessions and events went; fewer sessions than `max_sessions`
    /// means none is left to delete.
    fn delete_sessions_before(
        &self,
        deployment_id: &str,
        before_ms: i64,
        max_sessions: usize,
    ) -> Result<RetentionRun, StoreError>;

    /// Where events are stored in partitions by time (PostgreSQL's monthly ones),
    /// deletes at most `max_partitions` whole partitions whose every session is past
    /// retention by `policy`, with those sessions and everything that points at their
    /// events, each partition in one transaction. Returns what went in all. Backends
    /// without partitions (SQLite) delete nothing here: [`Self::delete_sessions_before`]
    /// does all of retention there, and it still deletes what no partition could take.
    fn drop_expired_partitions(
        &self,
        policy: &RetentionPolicy,
        max_partitions: usize,
    ) -> Result<RetentionRun, StoreError> {
        let _ = (policy, max_partitions);
        Ok(RetentionRun::default())
    }
}

/// Retention as it applies to every deployment at once, for
/// [`PrivacyStore::drop_expired_partitions`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// The deployments that have `retention_days`, each with the time before which
    /// its sessions go ([`retention_cutoff_ms`]). A deployment missing here keeps
    /// everything.
    pub cutoffs_ms: BTreeMap<String, i64>,
    /// No event stored from now on can have a time before this, nor join a session
    /// whose last activity is before it: the oldest time an event is accepted with,
    /// less the session timeout (and a margin for collectors' clocks). A partition
    /// that ends before it gets no new rows, so dropping it races no ingest.
    pub settled_before_ms: i64,
}

impl std::ops::AddAssign for RetentionRun {
    fn add_assign(&mut self, other: RetentionRun) {
        self.sessions += other.sessions;
        self.events += other.events;
    }
}

/// What one chunk of retention deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionRun {
    pub sessions: u64,
    pub events: u64,
}

/// An export page holds at most this many stored events (`pageSize`, the default),
/// each with the segment and outcome events it completed; a subject with more is
/// exported in several pages, each naming the next (`nextUri`).
pub const MAX_EXPORT_PAGE_EVENTS: usize = 1000;

/// An export page stops before the event that would take its sessions and events past
/// this many bytes of JSON (the bound of a desk card's journey too). A page holds one
/// event at least, so that every page moves on: an event is at most the body limit,
/// 64 KiB by default.
pub const MAX_EXPORT_PAGE_BYTES: usize = 2 * 1024 * 1024;

/// Whose data an erase or export is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSubject {
    /// An external contact, with every visitor cookie linked to it.
    Contact { contact_id: String },
    /// One visitor cookie of one deployment.
    Visitor {
        deployment_id: String,
        visitor_id: String,
    },
}

/// What an erase changed. Counts of rows, for the answer and the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErasureReport {
    /// Sessions turned into shells.
    pub sessions: u64,
    /// Events turned into shells.
    pub events: u64,
    /// Links from a visitor cookie to a contact that were removed.
    pub cookie_links: u64,
    /// Whether a contact record was deleted.
    pub contact_deleted: bool,
}

/// What the store holds about a subject, for an export: the sessions (newest first),
/// and, for a visitor, the contact its cookie is linked to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectSessions {
    /// Newest first: by `first_ms`, then by id, both descending. The export's pages
    /// continue from a session's place in this order.
    pub sessions: Vec<SessionKey>,
    pub linked_contact_id: Option<String>,
    /// The customer-scope segments the subject holds (as the contact, or as one of
    /// its cookies), oldest first.
    pub customer_segments: Vec<StoredCustomerSegment>,
}

/// A subject's session and where it sorts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKey {
    pub id: String,
    /// The session's first event time; an event that arrives late with an earlier
    /// time moves it back, never forward.
    pub first_ms: i64,
}

/// A customer-scope segment assigned to a contact or a cookie (see `crate::segments`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCustomerSegment {
    pub segment_id: String,
    pub display_name: String,
    pub assigned_ms: i64,
    /// `None`: it never expires.
    pub expires_ms: Option<i64>,
}

/// The event columns an erase sets to NULL (or, for the JSON maps, to `{}`): what the
/// visitor typed or was shown, and what identifies the device or the place. Kept in
/// one list so that the SQL and the documentation cannot drift apart.
pub const ERASED_EVENT_FIELDS: &[&str] = &[
    "page_title",
    "page_referrer",
    "page_lang",
    "page_keywords",
    "page_search_query",
    "campaign_json",
    "context_json",
    "login_id",
    "user_agent",
    "ip_address",
    "user_agent_json",
    "geolocation_json",
    "referrer_json",
];

/// The event columns of JSON maps an erase empties (`{}`): custom attributes and
/// identify traits.
pub const EMPTIED_EVENT_MAPS: &[&str] = &["attributes_json", "traits_json"];

/// What remains of a page URL after an erase: its origin (`https://shop.example/`).
/// A path can name a person (`/account/ada`, a reset token, an order number) as much
/// as a query string can, so only the site is kept. `None` (the event keeps no page)
/// when the URL does not parse or has no host.
pub fn erased_page_url(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    let port = parsed
        .port()
        .map(|port| format!(":{port}"))
        .unwrap_or_default();
    Some(format!("{}://{host}{port}/", parsed.scheme()))
}

/// The visitor id a session shell gets: random, so that it links to nothing.
pub fn shell_visitor_id() -> String {
    Uuid::new_v4().to_string()
}

/// The customer keys of segment evaluation (`ingest/segments.rs`) that belong to a
/// subject with these visitor cookies.
pub fn customer_keys(contact_id: Option<&str>, visitors: &[(String, String)]) -> Vec<String> {
    let mut keys: Vec<String> = contact_id
        .map(|id| format!("contact:{id}"))
        .into_iter()
        .collect();
    keys.extend(
        visitors
            .iter()
            .map(|(deployment_id, visitor_id)| format!("visitor:{deployment_id}:{visitor_id}")),
    );
    keys.sort();
    keys.dedup();
    keys
}

pub const MILLISECONDS_PER_DAY: i64 = 24 * 60 * 60 * 1000;

/// The time before which a deployment that keeps `retention_days` days deletes
/// sessions: a session goes once its last activity is older than that. `None` keeps
/// everything (no retention configured).
pub fn retention_cutoff_ms(now_ms: i64, retention_days: Option<u32>) -> Option<i64> {
    retention_days.map(|days| now_ms.saturating_sub(i64::from(days) * MILLISECONDS_PER_DAY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_urls_keep_their_origin_only() {
        let check = |url: &str, expected: Option<&str>| {
            assert_eq!(erased_page_url(url).as_deref(), expected, "{url}");
        };
        check("https://shop.example/", Some("https://shop.example/"));
        check(
            "https://shop.example/account/ada?email=ada@example.com#x",
            Some("https://shop.example/"),
        );
        check(
            "http://localhost:8080/reset/secret-token",
            Some("http://localhost:8080/"),
        );
        check(
            "https://user:pw@shop.example/",
            Some("https://shop.example/"),
        );
        check("https://shop.example:443/a", Some("https://shop.example/"));
        check("not a url", None);
        check("mailto:ada@example.com", None);
        check("", None);
    }

    #[test]
    fn customer_keys_name_the_contact_and_each_cookie_once() {
        let visitors = vec![
            ("shop".to_owned(), "v1".to_owned()),
            ("shop".to_owned(), "v1".to_owned()),
            ("blog".to_owned(), "v2".to_owned()),
        ];
        assert_eq!(
            customer_keys(Some("c1"), &visitors),
            ["contact:c1", "visitor:blog:v2", "visitor:shop:v1"]
        );
        assert_eq!(customer_keys(None, &[]), Vec::<String>::new());
    }

    #[test]
    fn retention_cutoffs() {
        let table: &[(i64, Option<u32>, Option<i64>)] = &[
            (10 * MILLISECONDS_PER_DAY, None, None),
            (
                10 * MILLISECONDS_PER_DAY,
                Some(0),
                Some(10 * MILLISECONDS_PER_DAY),
            ),
            (
                10 * MILLISECONDS_PER_DAY,
                Some(3),
                Some(7 * MILLISECONDS_PER_DAY),
            ),
            (i64::MIN + 1, Some(u32::MAX), Some(i64::MIN)),
        ];
        for &(now_ms, days, expected) in table {
            assert_eq!(
                retention_cutoff_ms(now_ms, days),
                expected,
                "{now_ms} {days:?}"
            );
        }
    }

    #[test]
    fn shells_get_distinct_random_visitor_ids() {
        let first = shell_visitor_id();
        assert_ne!(first, shell_visitor_id());
        assert_eq!(Uuid::parse_str(&first).unwrap().get_version_num(), 4);
    }
}
