//! Segments (who a visitor is) and outcomes (what a visit achieved): their
//! definitions, the criteria they test, and the index that makes evaluating them on
//! ingest cheap.
//!
//! Codemap:
//! - [`definition`]: the `JourneySegment` / `Outcome` shapes, parsed with errors that
//!   name the field, and written back.
//! - [`criteria`]: the twelve operators and how a value is tested.
//! - [`index`]: the in-memory index of the active definitions (by event name,
//!   criterion key and, for `equal` / `containsAny` / `containsAll`, value), and the
//!   visit and event values that criteria read.
//! - `ingest::segments`: the evaluation on ingest, inside the batch's transaction (so
//!   an event is never stored without its assignments, or the other way round), over
//!   the store's row operations; each backend's tables and SQL are in `store/`
//!   (`segments_sql.rs`, `postgres/segments.rs` and `postgres/definitions.rs`).
//! - `app::segments`: the `/api/v2/journey/segments` and `/outcomes` routes, and the
//!   merge of segment-assigned / outcome-achieved events into a session's events.
//!
//! Rules:
//! - Definitions are global to the collector (the Journey API's shapes have no
//!   deployment): they apply to every deployment, and the limit of
//!   [`MAX_DEFINITIONS_PER_KIND`] segments and as many outcomes is per collector.
//! - A definition matches when every context criterion (of every context pattern)
//!   matches the visit AND every journey pattern has matched `count` events within the
//!   scope (the session; for Customer-scope segments, the customer). Patterns and
//!   criteria are all ANDed.
//! - Journey-pattern definitions are checked when one of their patterns matches an
//!   event; context-only definitions when the visit changes (device, location,
//!   referrer, campaign, authentication) or the definitions change.
//! - Counts are kept per (scope, definition, version, pattern), so changing a
//!   definition starts its counts afresh; changing or deleting a definition never
//!   touches past assignments, which keep the name, color and version they had.
//! - A segment is assigned at most once per session, an outcome achieved at most once
//!   per session.
//! - Customer scope: the customer is the linked contact when the session has one,
//!   otherwise the visitor cookie (per deployment). The assignment is kept for
//!   `assignmentExpirationDays` from when it was made (no expiry when absent), and is
//!   carried into each new session of the customer while it lasts. Counts toward a
//!   Customer-scope segment are kept per customer, across sessions.

pub mod criteria;
pub mod definition;
pub mod index;

pub use definition::{Definition, DefinitionKind, Details, Scope};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::model::StoreError;
use crate::timefmt::format_ms;

/// Most segments per collector, and most outcomes.
pub const MAX_DEFINITIONS_PER_KIND: usize = 500;

/// A definition as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDefinition {
    /// A UUID.
    pub id: String,
    /// 1 when created; each change adds one.
    pub version: u64,
    pub definition: Definition,
    pub created_ms: i64,
    pub modified_ms: i64,
}

impl StoredDefinition {
    /// `JourneySegment` or `Outcome`.
    pub fn to_json(&self) -> Value {
        let mut value = self.definition.to_json();
        value["id"] = json!(self.id);
        value["version"] = json!(self.version);
        value["createdDate"] = json!(format_ms(self.created_ms));
        value["modifiedDate"] = json!(format_ms(self.modified_ms));
        value
    }
}

/// A segment assigned to a session, with what the segment looked like then.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentAssignment {
    /// The id of the `SegmentAssignment` event in the session's events.
    pub id: String,
    pub segment_id: String,
    pub display_name: String,
    pub color: String,
    pub should_display_to_agent: bool,
    pub assigned_ms: i64,
    /// The event that completed the match; the assignment event follows it.
    pub trigger_event_id: String,
}

/// An outcome achieved in a session, with what the outcome looked like then.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeAchievement {
    /// The id of the `OutcomeAchieved` event in the session's events.
    pub id: String,
    pub outcome_id: String,
    pub display_name: String,
    pub version: u64,
    pub is_positive: bool,
    /// The associated value taken from the achieving event, as its text.
    pub associated_value: Option<String>,
    pub achieved_ms: i64,
    pub trigger_event_id: String,
}

/// What a write of a definition did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefinitionWrite {
    Written(StoredDefinition),
    /// There are [`MAX_DEFINITIONS_PER_KIND`] definitions of the kind already.
    LimitReached,
    NotFound,
    /// The definition changed since the version the change was based on.
    VersionChanged {
        current: u64,
    },
}

/// Storage of definitions: part of every [`crate::store::Store`].
pub trait DefinitionStore {
    /// Creates a definition with a new id, unless the limit is reached.
    fn create_definition(
        &self,
        definition: &Definition,
        now_ms: i64,
    ) -> Result<DefinitionWrite, StoreError>;

    fn definition(
        &self,
        kind: DefinitionKind,
        id: &str,
    ) -> Result<Option<StoredDefinition>, StoreError>;

    /// One page (from 1) of the kind's definitions, oldest first, and how many there
    /// are.
    fn definitions(
        &self,
        kind: DefinitionKind,
        page_number: usize,
        page_size: usize,
    ) -> Result<(Vec<StoredDefinition>, u64), StoreError>;

    /// Replaces a definition if it is still at `base_version`; the version goes up by
    /// one.
    fn update_definition(
        &self,
        id: &str,
        definition: &Definition,
        base_version: u64,
        now_ms: i64,
    ) -> Result<DefinitionWrite, StoreError>;

    /// Returns whether the definition existed. Past assignments stay.
    fn delete_definition(&self, kind: DefinitionKind, id: &str) -> Result<bool, StoreError>;

    /// Creates or updates the configuration file's definitions, by id (an unchanged
    /// one keeps its version). Fails when the limit would be exceeded.
    fn load_configured_definitions(
        &self,
        definitions: &[(String, Definition)],
        now_ms: i64,
    ) -> Result<(), StoreError>;
}

/// Parses the configuration file's `[[segments]]` or `[[outcomes]]` entries (`field`
/// names the list in messages): each is the definition's JSON shape plus a required
/// `id`, a UUID, so that the definition keeps its identity across restarts.
pub fn parse_configured(
    kind: DefinitionKind,
    entries: &[Value],
    field: &str,
) -> Result<Vec<(String, Definition)>, String> {
    if entries.len() > MAX_DEFINITIONS_PER_KIND {
        return Err(format!(
            "{field}: at most {MAX_DEFINITIONS_PER_KIND} entries, not {}",
            entries.len()
        ));
    }
    let mut parsed: Vec<(String, Definition)> = Vec::with_capacity(entries.len());
    for (position, entry) in entries.iter().enumerate() {
        let path = format!("{field}[{position}]");
        let id = entry
            .get("id")
            .and_then(Value::as_str)
            .and_then(crate::validate::canonical_uuid)
            .ok_or_else(|| format!("{path}.id: is required, a UUID"))?;
        if parsed.iter().any(|(seen, _)| *seen == id) {
            return Err(format!("{path}.id: {id} is configured twice"));
        }
        let definition =
            definition::parse(kind, entry).map_err(|problem| format!("{path}.{problem}"))?;
        parsed.push((id, definition));
    }
    Ok(parsed)
}
