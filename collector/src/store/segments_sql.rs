//! SQL of segments and outcomes (see `crate::segments` for the rules): the
//! definitions' storage, and their evaluation inside the ingest transaction.
//!
//! Evaluation is one call per stored event, [`evaluate_in_tx`], made by the ingest
//! code in the transaction that stores the event: the event, its pattern counters,
//! and any assignment or achievement it completes commit or roll back together.
//!
//! Per event it costs: one lookup of the definitions' generation (to know whether the
//! cached index is current), and, only when some definition could care, the session's
//! facts, the candidate patterns of the event's name and attributes (see
//! `segments::index`), one counter upsert per matching pattern and one counter read
//! per definition whose pattern matched. Context-only definitions and carried
//! Customer-scope segments are evaluated only when the visit's fingerprint changes.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use footpath_protocol::v1::{EventKind, Map, Page};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::sqlite::SqliteStore;
use super::{NewBatch, NewEvent, StoreError, StoredSession};
use crate::segments::definition::{self, ValueType};
use crate::segments::index::{
    context_matches, pattern_matches, EventValues, Index, Visit, VisitSources,
};
use crate::segments::{
    criteria, Definition, DefinitionKind, DefinitionStore, DefinitionWrite, Details,
    OutcomeAchievement, Scope, SegmentAssignment, StoredDefinition, MAX_DEFINITIONS_PER_KIND,
};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The index of each database file's definitions, by the file's path. Every change of
/// a definition moves the database's generation, which tells [`current_index`] to
/// rebuild.
static INDEXES: LazyLock<Mutex<HashMap<String, Arc<Index>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The index of the active definitions, rebuilt when they changed.
fn current_index(connection: &Connection) -> Result<Arc<Index>, StoreError> {
    let generation: i64 = connection
        .prepare_cached("SELECT generation FROM journey_definitions_generation WHERE one = 1")?
        .query_row([], |row| row.get(0))?;
    let path = connection
        .path()
        .filter(|path| !path.is_empty())
        .map(str::to_owned);
    if let Some(path) = &path {
        let indexes = INDEXES.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(index) = indexes
            .get(path)
            .filter(|index| index.generation == generation)
        {
            return Ok(Arc::clone(index));
        }
    }
    let mut definitions = load_definitions(connection, DefinitionKind::Segment)?;
    definitions.extend(load_definitions(connection, DefinitionKind::Outcome)?);
    let index = Arc::new(Index::build(generation, definitions));
    if let Some(path) = path {
        INDEXES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path, Arc::clone(&index));
    }
    Ok(index)
}

fn bump_generation(transaction: &Transaction<'_>) -> Result<(), StoreError> {
    transaction
        .prepare_cached("UPDATE journey_definitions_generation SET generation = generation + 1")?
        .execute([])?;
    Ok(())
}

fn load_definitions(
    connection: &Connection,
    kind: DefinitionKind,
) -> Result<Vec<StoredDefinition>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT id, definition_json, version, created_ms, modified_ms FROM journey_definitions
         WHERE kind = ?1 ORDER BY created_ms, rowid",
    )?;
    let mut rows = statement.query([kind.as_str()])?;
    let mut definitions = Vec::new();
    while let Some(row) = rows.next()? {
        definitions.push(definition_from_row(kind, row)?);
    }
    Ok(definitions)
}

fn definition_from_row(
    kind: DefinitionKind,
    row: &rusqlite::Row<'_>,
) -> Result<StoredDefinition, StoreError> {
    let id: String = row.get(0)?;
    let json: String = row.get(1)?;
    let value: serde_json::Value = serde_json::from_str(&json)?;
    let definition = definition::parse(kind, &value)
        .map_err(|problem| StoreError::Corrupt(format!("{} {id}: {problem}", kind.as_str())))?;
    let version: i64 = row.get(2)?;
    Ok(StoredDefinition {
        id,
        version: u64::try_from(version).unwrap_or(0),
        definition,
        created_ms: row.get(3)?,
        modified_ms: row.get(4)?,
    })
}

/// What the session is and who its customer is.
struct SessionFacts {
    deployment_id: String,
    visitor_id: String,
    contact_id: Option<String>,
    sources: VisitSources,
}

impl SessionFacts {
    /// The customer of Customer-scope segments: the contact when the session is linked
    /// to one, else the visitor cookie.
    fn customer_key(&self) -> String {
        match &self.contact_id {
            Some(contact_id) => format!("contact:{contact_id}"),
            None => self.visitor_key(),
        }
    }

    fn visitor_key(&self) -> String {
        format!("visitor:{}:{}", self.deployment_id, self.visitor_id)
    }
}

/// The session's facts and visit, as of `event` (stored in this transaction). The
/// session's summary columns are refreshed at the end of each batch, so the current
/// event's own values complete them: the earliest user agent and geolocation, the
/// latest context, the earliest pageview.
fn session_facts(
    transaction: &Transaction<'_>,
    session_id: &str,
    event: &NewEvent,
) -> Result<SessionFacts, StoreError> {
    let mut statement = transaction.prepare_cached(
        "SELECT s.deployment_id, s.visitor_id, s.contact_id, s.authenticated,
                s.user_agent_json, s.geolocation_json,
                lp.page_url, lp.page_referrer, lp.campaign_json, lp.referrer_json, lp.time_ms,
                ce.context_json
         FROM sessions s
         LEFT JOIN events lp ON lp.id = s.landing_pageview_id
         LEFT JOIN events ce ON ce.id = s.context_event_id
         WHERE s.id = ?1",
    )?;
    let mut rows = statement.query([session_id])?;
    let row = rows
        .next()?
        .ok_or_else(|| StoreError::Corrupt(format!("session {session_id} vanished")))?;
    let from_json = |index: usize| -> Result<Option<serde_json::Value>, StoreError> {
        Ok(row
            .get::<_, Option<String>>(index)?
            .map(|json| serde_json::from_str(&json))
            .transpose()?)
    };
    let user_agent = match from_json(4)? {
        Some(value) => Some(serde_json::from_value(value)?),
        None => event.user_agent_info.clone(),
    };
    let geolocation = match from_json(5)? {
        Some(value) => Some(serde_json::from_value(value)?),
        None => event.geolocation.clone(),
    };
    let context = match (&event.context, from_json(11)?) {
        (Some(context), _) => Some(context.clone()),
        (None, Some(value)) => Some(serde_json::from_value(value)?),
        (None, None) => None,
    };
    let stored_landing = match row.get::<_, Option<String>>(6)? {
        Some(url) => {
            let campaign: Map<String> = match row.get::<_, Option<String>>(8)? {
                Some(json) => serde_json::from_str(&json)?,
                None => Map::new(),
            };
            let page = Page {
                url,
                referrer: row.get::<_, Option<String>>(7)?.unwrap_or_default(),
                campaign,
                ..Page::default()
            };
            let referrer = match from_json(9)? {
                Some(value) => Some(serde_json::from_value(value)?),
                None => None,
            };
            let time_ms: i64 = row.get(10)?;
            Some((page, referrer, time_ms))
        }
        None => None,
    };
    let event_is_earlier_pageview = event.kind == EventKind::Pageview
        && event.page.is_some()
        && stored_landing
            .as_ref()
            .is_none_or(|(_, _, time_ms)| event.time_ms < *time_ms);
    let (landing_page, landing_referrer) = if event_is_earlier_pageview {
        (event.page.clone(), event.referrer_info.clone())
    } else {
        match stored_landing {
            Some((page, referrer, _)) => (Some(page), referrer),
            None => (None, None),
        }
    };
    Ok(SessionFacts {
        deployment_id: row.get(0)?,
        visitor_id: row.get(1)?,
        contact_id: row.get(2)?,
        sources: VisitSources {
            user_agent,
            context,
            geolocation,
            landing_page,
            landing_referrer,
            authenticated: row.get(3)?,
        },
    })
}

/// Evaluates the active segments and outcomes against `event`, which was just stored
/// in `session_id` by this same transaction.
pub(super) fn evaluate_in_tx(
    transaction: &Transaction<'_>,
    _batch: &NewBatch,
    session_id: &str,
    event: &NewEvent,
    now_ms: i64,
) -> Result<(), StoreError> {
    let index = current_index(transaction)?;
    if index.is_empty() {
        return Ok(());
    }
    let candidates = index.candidates(event);
    let visit_level = !index.context_only.is_empty() || !index.customer_segments.is_empty();
    if candidates.is_empty() && !visit_level {
        return Ok(());
    }
    let facts = session_facts(transaction, session_id, event)?;
    let values = EventValues::new(event);
    let mut visit: Option<Visit> = None;
    let matcher = Matcher {
        transaction,
        index: &index,
        session_id,
        facts: &facts,
        event,
        values: &values,
        now_ms,
    };

    if visit_level {
        let current = Visit::new(&facts.sources);
        let fingerprint = format!(
            "{}|{}|{}",
            index.generation,
            facts.customer_key(),
            current.fingerprint()
        );
        let previous: Option<String> = transaction
            .prepare_cached(
                "SELECT fingerprint FROM session_visit_evaluations WHERE session_id = ?1",
            )?
            .query_row([session_id], |row| row.get(0))
            .optional()?;
        if previous.as_deref() != Some(fingerprint.as_str()) {
            matcher.carry_customer_segments()?;
            for &position in &index.context_only {
                if context_matches(&index.definitions[position].definition, &current) {
                    matcher.record_match(position)?;
                }
            }
            transaction
                .prepare_cached(
                    "INSERT INTO session_visit_evaluations (session_id, fingerprint) VALUES (?1, ?2)
                     ON CONFLICT (session_id) DO UPDATE SET fingerprint = excluded.fingerprint",
                )?
                .execute(params![session_id, fingerprint])?;
        }
        visit = Some(current);
    }

    let mut matched_definitions: Vec<usize> = Vec::new();
    for reference in candidates {
        let stored = index.definition(reference);
        if !pattern_matches(&stored.definition, reference.pattern, &values) {
            continue;
        }
        transaction
            .prepare_cached(
                "INSERT INTO journey_pattern_counts (scope_key, definition_id, version, pattern_index, count)
                 VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT (scope_key, definition_id, version, pattern_index)
                 DO UPDATE SET count = count + 1",
            )?
            .execute(params![
                matcher.scope_key(&stored.definition),
                stored.id,
                stored.version as i64,
                reference.pattern as i64
            ])?;
        if matched_definitions.last() != Some(&reference.definition) {
            matched_definitions.push(reference.definition);
        }
    }
    for position in matched_definitions {
        let stored = &index.definitions[position];
        if !matcher.counts_reached(stored)? {
            continue;
        }
        if stored.definition.context_criteria().next().is_some() {
            let visit = visit.get_or_insert_with(|| Visit::new(&facts.sources));
            if !context_matches(&stored.definition, visit) {
                continue;
            }
        }
        matcher.record_match(position)?;
    }
    Ok(())
}

/// What recording a match needs.
struct Matcher<'a> {
    transaction: &'a Transaction<'a>,
    index: &'a Index,
    session_id: &'a str,
    facts: &'a SessionFacts,
    event: &'a NewEvent,
    values: &'a EventValues<'a>,
    now_ms: i64,
}

impl Matcher<'_> {
    /// Where the definition's pattern counts are kept: the session, or for a
    /// Customer-scope segment, the customer.
    fn scope_key(&self, definition: &Definition) -> String {
        match definition.details {
            Details::Segment {
                scope: Scope::Customer,
                ..
            } => self.facts.customer_key(),
            _ => format!("session:{}", self.session_id),
        }
    }

    /// Whether every journey pattern of the definition reached its count.
    fn counts_reached(&self, stored: &StoredDefinition) -> Result<bool, StoreError> {
        let scope_key = self.scope_key(&stored.definition);
        let mut statement = self.transaction.prepare_cached(
            "SELECT count FROM journey_pattern_counts
             WHERE scope_key = ?1 AND definition_id = ?2 AND version = ?3 AND pattern_index = ?4",
        )?;
        for (pattern_index, pattern) in stored.definition.journey.iter().enumerate() {
            let count: Option<i64> = statement
                .query_row(
                    params![
                        scope_key,
                        stored.id,
                        stored.version as i64,
                        pattern_index as i64
                    ],
                    |row| row.get(0),
                )
                .optional()?;
            if u64::try_from(count.unwrap_or(0)).unwrap_or(0) < pattern.count {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Records that the definition at `position` matched: assigns the segment (to the
    /// session, and for Customer scope to the customer) or achieves the outcome, once.
    fn record_match(&self, position: usize) -> Result<(), StoreError> {
        let stored = &self.index.definitions[position];
        match &stored.definition.details {
            Details::Segment {
                color,
                scope,
                should_display_to_agent,
                assignment_expiration_days,
            } => {
                if *scope == Scope::Customer {
                    let expires_ms = assignment_expiration_days.map(|days| {
                        self.event
                            .time_ms
                            .saturating_add((days as i64).saturating_mul(DAY_MS))
                    });
                    // A live assignment is kept as it is; an expired one is made anew.
                    self.transaction
                        .prepare_cached(
                            "INSERT INTO customer_segment_assignments (
                                customer_key, segment_id, display_name, color,
                                should_display_to_agent, assigned_ms, expires_ms
                             ) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                             ON CONFLICT (customer_key, segment_id) DO UPDATE SET
                                display_name = excluded.display_name, color = excluded.color,
                                should_display_to_agent = excluded.should_display_to_agent,
                                assigned_ms = excluded.assigned_ms, expires_ms = excluded.expires_ms
                             WHERE expires_ms IS NOT NULL AND expires_ms <= ?8",
                        )?
                        .execute(params![
                            self.facts.customer_key(),
                            stored.id,
                            stored.definition.display_name,
                            color,
                            should_display_to_agent,
                            self.event.time_ms,
                            expires_ms,
                            self.now_ms
                        ])?;
                }
                self.assign_to_session(
                    &stored.id,
                    &stored.definition.display_name,
                    color,
                    *should_display_to_agent,
                )
            }
            Details::Outcome {
                is_positive,
                associated_value_field,
            } => {
                let associated_value = associated_value_field.as_ref().and_then(|field| {
                    let text = self.values.attribute(&field.name)?;
                    let number = criteria::number(&text)?;
                    match field.data_type {
                        ValueType::Number => Some(text.trim().to_owned()),
                        ValueType::Integer => {
                            (number.fract() == 0.0).then(|| format!("{}", number as i64))
                        }
                    }
                });
                self.transaction
                    .prepare_cached(
                        "INSERT INTO session_outcome_achievements (
                            id, session_id, outcome_id, display_name, version, is_positive,
                            associated_value, achieved_ms, trigger_event_id
                         ) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                         ON CONFLICT (session_id, outcome_id) DO NOTHING",
                    )?
                    .execute(params![
                        uuid::Uuid::now_v7().to_string(),
                        self.session_id,
                        stored.id,
                        stored.definition.display_name,
                        stored.version as i64,
                        is_positive,
                        associated_value,
                        self.event.time_ms,
                        self.event.id
                    ])?;
                Ok(())
            }
        }
    }

    fn assign_to_session(
        &self,
        segment_id: &str,
        display_name: &str,
        color: &str,
        should_display_to_agent: bool,
    ) -> Result<(), StoreError> {
        self.transaction
            .prepare_cached(
                "INSERT INTO session_segment_assignments (
                    id, session_id, segment_id, display_name, color, should_display_to_agent,
                    assigned_ms, trigger_event_id
                 ) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (session_id, segment_id) DO NOTHING",
            )?
            .execute(params![
                uuid::Uuid::now_v7().to_string(),
                self.session_id,
                segment_id,
                display_name,
                color,
                should_display_to_agent,
                self.event.time_ms,
                self.event.id
            ])?;
        Ok(())
    }

    /// Gives the session the customer's live Customer-scope segments (by contact and by
    /// visitor cookie) that are still defined and active.
    fn carry_customer_segments(&self) -> Result<(), StoreError> {
        if self.index.customer_segments.is_empty() {
            return Ok(());
        }
        let carried: Vec<(String, String, String, bool)> = {
            let mut statement = self.transaction.prepare_cached(
                "SELECT segment_id, display_name, color, should_display_to_agent
                 FROM customer_segment_assignments
                 WHERE customer_key IN (?1, ?2) AND (expires_ms IS NULL OR expires_ms > ?3)
                 ORDER BY assigned_ms, segment_id",
            )?;
            let rows = statement.query_map(
                params![
                    self.facts.customer_key(),
                    self.facts.visitor_key(),
                    self.now_ms
                ],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )?;
            rows.collect::<Result<_, _>>()?
        };
        for (segment_id, display_name, color, should_display_to_agent) in carried {
            if self.index.customer_segments.contains_key(&segment_id) {
                self.assign_to_session(
                    &segment_id,
                    &display_name,
                    &color,
                    should_display_to_agent,
                )?;
            }
        }
        Ok(())
    }
}

/// Fills the session's segment assignments and outcome achievements, oldest first.
pub(super) fn attach_assignments(
    connection: &Connection,
    session: &mut StoredSession,
) -> Result<(), StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT id, segment_id, display_name, color, should_display_to_agent, assigned_ms,
                trigger_event_id
         FROM session_segment_assignments WHERE session_id = ?1 ORDER BY assigned_ms, rowid",
    )?;
    session.segment_assignments = statement
        .query_map([&session.id], |row| {
            Ok(SegmentAssignment {
                id: row.get(0)?,
                segment_id: row.get(1)?,
                display_name: row.get(2)?,
                color: row.get(3)?,
                should_display_to_agent: row.get(4)?,
                assigned_ms: row.get(5)?,
                trigger_event_id: row.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut statement = connection.prepare_cached(
        "SELECT id, outcome_id, display_name, version, is_positive, associated_value,
                achieved_ms, trigger_event_id
         FROM session_outcome_achievements WHERE session_id = ?1 ORDER BY achieved_ms, rowid",
    )?;
    session.outcome_achievements = statement
        .query_map([&session.id], |row| {
            let version: i64 = row.get(3)?;
            Ok(OutcomeAchievement {
                id: row.get(0)?,
                outcome_id: row.get(1)?,
                display_name: row.get(2)?,
                version: u64::try_from(version).unwrap_or(0),
                is_positive: row.get(4)?,
                associated_value: row.get(5)?,
                achieved_ms: row.get(6)?,
                trigger_event_id: row.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(())
}

fn count_of_kind(connection: &Connection, kind: DefinitionKind) -> Result<usize, StoreError> {
    let count: i64 = connection
        .prepare_cached("SELECT COUNT(*) FROM journey_definitions WHERE kind = ?1")?
        .query_row([kind.as_str()], |row| row.get(0))?;
    Ok(usize::try_from(count).unwrap_or(usize::MAX))
}

fn insert_definition(
    transaction: &Transaction<'_>,
    id: &str,
    definition: &Definition,
    now_ms: i64,
) -> Result<(), StoreError> {
    transaction
        .prepare_cached(
            "INSERT INTO journey_definitions (id, kind, definition_json, version, created_ms, modified_ms)
             VALUES (?1, ?2, ?3, 1, ?4, ?4)",
        )?
        .execute(params![
            id,
            definition.kind().as_str(),
            definition.to_json().to_string(),
            now_ms
        ])?;
    bump_generation(transaction)
}

fn load_definition(
    connection: &Connection,
    kind: DefinitionKind,
    id: &str,
) -> Result<Option<StoredDefinition>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT id, definition_json, version, created_ms, modified_ms FROM journey_definitions
         WHERE kind = ?1 AND id = ?2",
    )?;
    let mut rows = statement.query(params![kind.as_str(), id])?;
    match rows.next()? {
        Some(row) => Ok(Some(definition_from_row(kind, row)?)),
        None => Ok(None),
    }
}

impl DefinitionStore for SqliteStore {
    fn create_definition(
        &self,
        definition: &Definition,
        now_ms: i64,
    ) -> Result<DefinitionWrite, StoreError> {
        let mut connection = self.writer();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let kind = definition.kind();
        if count_of_kind(&transaction, kind)? >= MAX_DEFINITIONS_PER_KIND {
            return Ok(DefinitionWrite::LimitReached);
        }
        let id = uuid::Uuid::new_v4().to_string();
        insert_definition(&transaction, &id, definition, now_ms)?;
        let stored = load_definition(&transaction, kind, &id)?
            .ok_or_else(|| StoreError::Corrupt(format!("{} {id} vanished", kind.as_str())))?;
        transaction.commit()?;
        Ok(DefinitionWrite::Written(stored))
    }

    fn definition(
        &self,
        kind: DefinitionKind,
        id: &str,
    ) -> Result<Option<StoredDefinition>, StoreError> {
        load_definition(&self.reader(), kind, id)
    }

    fn definitions(
        &self,
        kind: DefinitionKind,
        page_number: usize,
        page_size: usize,
    ) -> Result<(Vec<StoredDefinition>, u64), StoreError> {
        let mut connection = self.reader();
        // The page and the total from one snapshot.
        let transaction = connection.transaction()?;
        let total = count_of_kind(&transaction, kind)?;
        let offset = page_number.saturating_sub(1).saturating_mul(page_size);
        let mut statement = transaction.prepare_cached(
            "SELECT id, definition_json, version, created_ms, modified_ms FROM journey_definitions
             WHERE kind = ?1 ORDER BY created_ms, rowid LIMIT ?2 OFFSET ?3",
        )?;
        let mut rows = statement.query(params![
            kind.as_str(),
            i64::try_from(page_size).unwrap_or(i64::MAX),
            i64::try_from(offset).unwrap_or(i64::MAX)
        ])?;
        let mut items = Vec::new();
        while let Some(row) = rows.next()? {
            items.push(definition_from_row(kind, row)?);
        }
        Ok((items, total as u64))
    }

    fn update_definition(
        &self,
        id: &str,
        definition: &Definition,
        base_version: u64,
        now_ms: i64,
    ) -> Result<DefinitionWrite, StoreError> {
        let mut connection = self.writer();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let kind = definition.kind();
        let Some(current) = load_definition(&transaction, kind, id)? else {
            return Ok(DefinitionWrite::NotFound);
        };
        if current.version != base_version {
            return Ok(DefinitionWrite::VersionChanged {
                current: current.version,
            });
        }
        transaction
            .prepare_cached(
                "UPDATE journey_definitions
                 SET definition_json = ?2, version = version + 1, modified_ms = ?3
                 WHERE id = ?1",
            )?
            .execute(params![id, definition.to_json().to_string(), now_ms])?;
        bump_generation(&transaction)?;
        let stored = load_definition(&transaction, kind, id)?
            .ok_or_else(|| StoreError::Corrupt(format!("{} {id} vanished", kind.as_str())))?;
        transaction.commit()?;
        Ok(DefinitionWrite::Written(stored))
    }

    fn delete_definition(&self, kind: DefinitionKind, id: &str) -> Result<bool, StoreError> {
        let mut connection = self.writer();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let deleted = transaction
            .prepare_cached("DELETE FROM journey_definitions WHERE kind = ?1 AND id = ?2")?
            .execute(params![kind.as_str(), id])?
            > 0;
        if deleted {
            bump_generation(&transaction)?;
        }
        transaction.commit()?;
        Ok(deleted)
    }

    fn load_configured_definitions(
        &self,
        definitions: &[(String, Definition)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut connection = self.writer();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (id, definition) in definitions {
            let kind = definition.kind();
            let existing: Option<(String, String)> = transaction
                .prepare_cached(
                    "SELECT kind, definition_json FROM journey_definitions WHERE id = ?1",
                )?
                .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            match existing {
                None => {
                    if count_of_kind(&transaction, kind)? >= MAX_DEFINITIONS_PER_KIND {
                        return Err(StoreError::Corrupt(format!(
                            "the configured {} {id} would make more than {MAX_DEFINITIONS_PER_KIND}",
                            kind.as_str()
                        )));
                    }
                    insert_definition(&transaction, id, definition, now_ms)?;
                }
                Some((stored_kind, _)) if stored_kind != kind.as_str() => {
                    return Err(StoreError::Corrupt(format!(
                        "the configured {} {id} has the id of a stored {stored_kind}",
                        kind.as_str()
                    )));
                }
                Some((_, json)) => {
                    let stored: serde_json::Value = serde_json::from_str(&json)?;
                    if stored != definition.to_json() {
                        transaction
                            .prepare_cached(
                                "UPDATE journey_definitions
                                 SET definition_json = ?2, version = version + 1, modified_ms = ?3
                                 WHERE id = ?1",
                            )?
                            .execute(params![id, definition.to_json().to_string(), now_ms])?;
                        bump_generation(&transaction)?;
                    }
                }
            }
        }
        transaction.commit()?;
        Ok(())
    }
}
