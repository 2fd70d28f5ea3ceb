//! SQL of segments and outcomes (see `crate::segments` for the rules, and
//! `crate::ingest::segments` for their evaluation on ingest): the definitions'
//! storage, the row operations of evaluation that SQLite's ingest transaction
//! implements (`super::sqlite_ingest`), and what a session shows of its matches.
//! Nothing here decides anything.

use footpath_protocol::v1::{Map, Page};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::sqlite::{from_json, SqliteStore};
use super::{StoreError, StoredSession};
use crate::ingest::store::{
    AssignmentExpiry, CustomerAssignment, LandingPage, PatternCount, SessionIdentity,
    SessionMatches, StoredVisitFacts,
};
use crate::model::{ContactId, SessionId};
use crate::segments::definition;
use crate::segments::{
    Definition, DefinitionKind, DefinitionStore, DefinitionWrite, OutcomeAchievement,
    SegmentAssignment, StoredDefinition, MAX_DEFINITIONS_PER_KIND,
};

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

/// The definitions' generation.
pub(super) fn generation(connection: &Connection) -> Result<i64, StoreError> {
    Ok(connection
        .prepare_cached("SELECT generation FROM journey_definitions_generation WHERE one = 1")?
        .query_row([], |row| row.get(0))?)
}

/// Every definition: the segments, then the outcomes, each oldest first.
pub(super) fn all_definitions(
    connection: &Connection,
) -> Result<Vec<StoredDefinition>, StoreError> {
    let mut definitions = load_definitions(connection, DefinitionKind::Segment)?;
    definitions.extend(load_definitions(connection, DefinitionKind::Outcome)?);
    Ok(definitions)
}

pub(super) fn session_identity(
    connection: &Connection,
    session_id: &SessionId,
) -> Result<SessionIdentity, StoreError> {
    connection
        .prepare_cached("SELECT contact_id, authenticated FROM sessions WHERE id = ?1")?
        .query_row([session_id.as_str()], |row| {
            Ok(SessionIdentity {
                contact_id: row.get::<_, Option<String>>(0)?.map(ContactId::new),
                authenticated: row.get(1)?,
            })
        })
        .optional()?
        .ok_or_else(|| StoreError::Corrupt(format!("session {session_id} vanished")))
}

/// The session's summary columns, with its landing pageview and the event its context
/// comes from.
pub(super) fn session_visit_facts(
    connection: &Connection,
    session_id: &SessionId,
) -> Result<StoredVisitFacts, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT s.user_agent_json, s.geolocation_json,
                lp.page_url, lp.page_referrer, lp.campaign_json, lp.referrer_json, lp.time_ms,
                ce.context_json
         FROM sessions s
         LEFT JOIN events lp ON lp.id = s.landing_pageview_id
         LEFT JOIN events ce ON ce.id = s.context_event_id
         WHERE s.id = ?1",
    )?;
    let mut rows = statement.query([session_id.as_str()])?;
    let row = rows
        .next()?
        .ok_or_else(|| StoreError::Corrupt(format!("session {session_id} vanished")))?;
    let landing = match row.get::<_, Option<String>>(2)? {
        Some(url) => {
            let campaign: Map<String> = match row.get::<_, Option<String>>(4)? {
                Some(json) => serde_json::from_str(&json)?,
                None => Map::new(),
            };
            Some(LandingPage {
                page: Page {
                    url,
                    referrer: row.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    campaign,
                    ..Page::default()
                },
                referrer: from_json(row.get(5)?)?,
                time_ms: row.get(6)?,
            })
        }
        None => None,
    };
    Ok(StoredVisitFacts {
        user_agent: from_json(row.get(0)?)?,
        geolocation: from_json(row.get(1)?)?,
        context: from_json(row.get(7)?)?,
        landing,
    })
}

pub(super) fn session_matches(
    connection: &Connection,
    session_id: &SessionId,
) -> Result<SessionMatches, StoreError> {
    let ids = |sql: &str| -> Result<Vec<String>, StoreError> {
        let mut statement = connection.prepare_cached(sql)?;
        let rows = statement.query_map([session_id.as_str()], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    Ok(SessionMatches {
        segment_ids: ids(
            "SELECT segment_id FROM session_segment_assignments WHERE session_id = ?1",
        )?,
        outcome_ids: ids(
            "SELECT outcome_id FROM session_outcome_achievements WHERE session_id = ?1",
        )?,
    })
}

pub(super) fn visit_fingerprint(
    connection: &Connection,
    session_id: &SessionId,
) -> Result<Option<String>, StoreError> {
    Ok(connection
        .prepare_cached("SELECT fingerprint FROM session_visit_evaluations WHERE session_id = ?1")?
        .query_row([session_id.as_str()], |row| row.get(0))
        .optional()?)
}

pub(super) fn write_visit_fingerprint(
    connection: &Connection,
    session_id: &SessionId,
    fingerprint: &str,
) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO session_visit_evaluations (session_id, fingerprint) VALUES (?1, ?2)
             ON CONFLICT (session_id) DO UPDATE SET fingerprint = excluded.fingerprint",
        )?
        .execute(params![session_id.as_str(), fingerprint])?;
    Ok(())
}

pub(super) fn pattern_counts(
    connection: &Connection,
    scope_key: &str,
) -> Result<Vec<PatternCount>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT definition_id, version, pattern_index, count FROM journey_pattern_counts
         WHERE scope_key = ?1",
    )?;
    let rows = statement.query_map([scope_key], |row| {
        Ok(PatternCount {
            scope_key: scope_key.to_owned(),
            definition_id: row.get(0)?,
            version: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
            pattern_index: usize::try_from(row.get::<_, i64>(2)?).unwrap_or(usize::MAX),
            count: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn write_pattern_counts(
    connection: &Connection,
    counts: &[PatternCount],
) -> Result<(), StoreError> {
    let values = counts.iter().flat_map(|count| {
        [
            Value::Text(count.scope_key.clone()),
            Value::Text(count.definition_id.clone()),
            Value::Integer(to_integer(count.version)),
            Value::Integer(i64::try_from(count.pattern_index).unwrap_or(i64::MAX)),
            Value::Integer(to_integer(count.count)),
        ]
    });
    insert_rows(
        connection,
        "INSERT INTO journey_pattern_counts (scope_key, definition_id, version, pattern_index, count)
         VALUES",
        "ON CONFLICT (scope_key, definition_id, version, pattern_index)
         DO UPDATE SET count = excluded.count",
        5,
        values.collect(),
        &[],
    )
}

pub(super) fn customer_assignments(
    connection: &Connection,
    customer_key: &str,
) -> Result<Vec<AssignmentExpiry>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT segment_id, expires_ms FROM customer_segment_assignments
         WHERE customer_key = ?1",
    )?;
    let rows = statement.query_map([customer_key], |row| {
        Ok(AssignmentExpiry {
            segment_id: row.get(0)?,
            expires_ms: row.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn live_customer_assignments(
    connection: &Connection,
    customer_key: &str,
    visitor_key: &str,
    now_ms: i64,
) -> Result<Vec<CustomerAssignment>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT customer_key, segment_id, display_name, color, should_display_to_agent,
                assigned_ms, expires_ms
         FROM customer_segment_assignments
         WHERE customer_key IN (?1, ?2) AND (expires_ms IS NULL OR expires_ms > ?3)
         ORDER BY assigned_ms, segment_id",
    )?;
    let rows = statement.query_map(params![customer_key, visitor_key, now_ms], |row| {
        Ok(CustomerAssignment {
            customer_key: row.get(0)?,
            segment_id: row.get(1)?,
            display_name: row.get(2)?,
            color: row.get(3)?,
            should_display_to_agent: row.get(4)?,
            assigned_ms: row.get(5)?,
            expires_ms: row.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn write_customer_assignments(
    connection: &Connection,
    assignments: &[CustomerAssignment],
    now_ms: i64,
) -> Result<(), StoreError> {
    let values = assignments.iter().flat_map(|assignment| {
        [
            Value::Text(assignment.customer_key.clone()),
            Value::Text(assignment.segment_id.clone()),
            Value::Text(assignment.display_name.clone()),
            Value::Text(assignment.color.clone()),
            Value::Integer(i64::from(assignment.should_display_to_agent)),
            Value::Integer(assignment.assigned_ms),
            assignment.expires_ms.map_or(Value::Null, Value::Integer),
        ]
    });
    // A live assignment is kept as it is; an expired one is made anew.
    insert_rows(
        connection,
        "INSERT INTO customer_segment_assignments (
            customer_key, segment_id, display_name, color,
            should_display_to_agent, assigned_ms, expires_ms
         ) VALUES",
        "ON CONFLICT (customer_key, segment_id) DO UPDATE SET
            display_name = excluded.display_name, color = excluded.color,
            should_display_to_agent = excluded.should_display_to_agent,
            assigned_ms = excluded.assigned_ms, expires_ms = excluded.expires_ms
         WHERE expires_ms IS NOT NULL AND expires_ms <= ?",
        7,
        values.collect(),
        &[Value::Integer(now_ms)],
    )
}

pub(super) fn write_segment_assignments(
    connection: &Connection,
    assignments: &[(SessionId, SegmentAssignment)],
) -> Result<(), StoreError> {
    let values = assignments.iter().flat_map(|(session_id, assignment)| {
        [
            Value::Text(assignment.id.clone()),
            Value::Text(session_id.as_str().to_owned()),
            Value::Text(assignment.segment_id.clone()),
            Value::Text(assignment.display_name.clone()),
            Value::Text(assignment.color.clone()),
            Value::Integer(i64::from(assignment.should_display_to_agent)),
            Value::Integer(assignment.assigned_ms),
            Value::Text(assignment.trigger_event_id.clone()),
        ]
    });
    insert_rows(
        connection,
        "INSERT INTO session_segment_assignments (
            id, session_id, segment_id, display_name, color, should_display_to_agent,
            assigned_ms, trigger_event_id
         ) VALUES",
        "ON CONFLICT (session_id, segment_id) DO NOTHING",
        8,
        values.collect(),
        &[],
    )
}

pub(super) fn write_outcome_achievements(
    connection: &Connection,
    achievements: &[(SessionId, OutcomeAchievement)],
) -> Result<(), StoreError> {
    let values = achievements.iter().flat_map(|(session_id, achievement)| {
        [
            Value::Text(achievement.id.clone()),
            Value::Text(session_id.as_str().to_owned()),
            Value::Text(achievement.outcome_id.clone()),
            Value::Text(achievement.display_name.clone()),
            Value::Integer(to_integer(achievement.version)),
            Value::Integer(i64::from(achievement.is_positive)),
            achievement
                .associated_value
                .clone()
                .map_or(Value::Null, Value::Text),
            Value::Integer(achievement.achieved_ms),
            Value::Text(achievement.trigger_event_id.clone()),
        ]
    });
    insert_rows(
        connection,
        "INSERT INTO session_outcome_achievements (
            id, session_id, outcome_id, display_name, version, is_positive,
            associated_value, achieved_ms, trigger_event_id
         ) VALUES",
        "ON CONFLICT (session_id, outcome_id) DO NOTHING",
        9,
        values.collect(),
        &[],
    )
}

fn to_integer(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Inserts rows of `columns` values each, in their order, with a few multi-row
/// statements rather than one statement each: in chunks of 64, 16, 4 and 1 rows, so
/// that few statements are prepared (and cached) for any number of rows. `head` is
/// `INSERT INTO table (columns) VALUES`; `tail` follows the rows (`ON CONFLICT ...`),
/// with `?` placeholders bound to `trailing`.
fn insert_rows(
    connection: &Connection,
    head: &str,
    tail: &str,
    columns: usize,
    values: Vec<Value>,
    trailing: &[Value],
) -> Result<(), StoreError> {
    debug_assert_eq!(values.len() % columns, 0);
    let mut rows = values.len() / columns;
    let mut start = 0;
    while rows > 0 {
        let chunk = [64, 16, 4, 1]
            .into_iter()
            .find(|size| *size <= rows)
            .unwrap_or(1);
        let row = format!("({})", vec!["?"; columns].join(", "));
        let sql = format!("{head} {} {tail}", vec![row; chunk].join(", "));
        let end = start + chunk * columns;
        let parameters = values[start..end].iter().chain(trailing);
        connection
            .prepare_cached(&sql)?
            .execute(rusqlite::params_from_iter(parameters))?;
        start = end;
        rows -= chunk;
    }
    Ok(())
}

/// Fills the session's segment assignments and outcome achievements, oldest first.
pub(super) fn attach_assignments(
    connection: &Connection,
    session: &mut StoredSession,
) -> Result<(), StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT id, segment_id, display_name, color, should_display_to_agent, assigned_ms,
                trigger_event_id
         FROM session_segment_assignments WHERE session_id = ?1 ORDER BY assigned_ms, id",
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
         FROM session_outcome_achievements WHERE session_id = ?1 ORDER BY achieved_ms, id",
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

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite_migration::{Migrations, M};

    /// The rebuild of the match tables keeps their rows, and the conflict targets of the
    /// ingest statements still exist.
    #[test]
    fn match_storage_migration_keeps_the_rows() {
        let migrations = Migrations::new(vec![
            M::up(include_str!("../../migrations/sqlite/0001_init.sql")),
            M::up(include_str!("../../migrations/sqlite/0002_contacts.sql")),
            M::up(include_str!("../../migrations/sqlite/0003_enrichment.sql")),
            M::up(include_str!("../../migrations/sqlite/0004_segments.sql")),
            M::up(include_str!(
                "../../migrations/sqlite/0005_match_storage.sql"
            )),
        ]);
        let mut connection = Connection::open_in_memory().unwrap();
        connection
            .pragma_update(None, "foreign_keys", true)
            .unwrap();
        migrations.to_version(&mut connection, 4).unwrap();
        connection
            .execute_batch(
                "INSERT INTO sessions (id, short_id, deployment_id, visitor_id, first_ms, last_ms)
                 VALUES ('s1', '123456', 'd', 'v', 1, 9);
                 INSERT INTO session_segment_assignments (id, session_id, segment_id,
                    display_name, color, should_display_to_agent, assigned_ms, trigger_event_id)
                 VALUES ('a2', 's1', 'seg-b', 'B', '#fff', 1, 5, 'e1'),
                        ('a1', 's1', 'seg-a', 'A', '#000', 0, 5, 'e1');
                 INSERT INTO session_outcome_achievements (id, session_id, outcome_id,
                    display_name, version, is_positive, associated_value, achieved_ms,
                    trigger_event_id)
                 VALUES ('o1', 's1', 'out-a', 'O', 2, 1, '9.5', 7, 'e2');",
            )
            .unwrap();
        migrations.to_latest(&mut connection).unwrap();
        let segments: Vec<(String, String, String, i64)> = connection
            .prepare(
                "SELECT id, segment_id, display_name, assigned_ms
                 FROM session_segment_assignments WHERE session_id = 's1'
                 ORDER BY assigned_ms, id",
            )
            .unwrap()
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            segments,
            vec![
                ("a1".to_owned(), "seg-a".to_owned(), "A".to_owned(), 5),
                ("a2".to_owned(), "seg-b".to_owned(), "B".to_owned(), 5),
            ]
        );
        let outcome: (String, String, i64, Option<String>) = connection
            .query_row(
                "SELECT id, outcome_id, version, associated_value
                 FROM session_outcome_achievements WHERE session_id = 's1'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            outcome,
            (
                "o1".to_owned(),
                "out-a".to_owned(),
                2,
                Some("9.5".to_owned())
            )
        );
        let without_rowid = |table: &str| -> bool {
            connection
                .query_row(&format!("SELECT rowid FROM {table}"), [], |_| Ok(()))
                .is_err()
        };
        assert!(without_rowid("session_segment_assignments"));
        assert!(without_rowid("session_outcome_achievements"));
        // Matching the same segment again is still a conflict on (session, segment).
        let inserted = connection
            .execute(
                "INSERT INTO session_segment_assignments (id, session_id, segment_id,
                    display_name, color, should_display_to_agent, assigned_ms, trigger_event_id)
                 VALUES ('a3', 's1', 'seg-a', 'A', '#000', 0, 9, 'e3')
                 ON CONFLICT (session_id, segment_id) DO NOTHING",
                [],
            )
            .unwrap();
        assert_eq!(inserted, 0);
    }
}
