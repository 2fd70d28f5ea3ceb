//! The row operations of segment and outcome evaluation on PostgreSQL (the
//! evaluation itself is `crate::ingest::segments`). Each write is one statement
//! whatever the number of rows: the rows go as arrays and are `unnest`ed, so that one
//! prepared statement per table serves every batch.

use footpath_protocol::v1::{Map, Page};

use super::super::sqlite::from_json;
use super::connection::Tx;
use super::rows::{definition_from_row, DEFINITION_SELECT};
use crate::ingest::store::{
    AssignmentExpiry, CustomerAssignment, LandingPage, PatternCount, SessionIdentity,
    SessionMatches, StoredVisitFacts,
};
use crate::model::{ContactId, SessionId, StoreError};
use crate::segments::{DefinitionKind, OutcomeAchievement, SegmentAssignment, StoredDefinition};

fn to_integer(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn generation(tx: &mut Tx<'_>) -> Result<i64, StoreError> {
    Ok(tx
        .query_one(
            "SELECT generation FROM journey_definitions_generation WHERE one = 1",
            &[],
        )?
        .try_get(0)?)
}

/// Every definition: the segments, then the outcomes, each oldest first.
pub(super) fn all_definitions(tx: &mut Tx<'_>) -> Result<Vec<StoredDefinition>, StoreError> {
    let mut definitions = Vec::new();
    for kind in [DefinitionKind::Segment, DefinitionKind::Outcome] {
        let rows = tx.query(
            &format!("{DEFINITION_SELECT} WHERE kind = $1 ORDER BY created_ms, position"),
            &[&kind.as_str()],
        )?;
        for row in &rows {
            definitions.push(definition_from_row(kind, row)?);
        }
    }
    Ok(definitions)
}

pub(super) fn session_identity(
    tx: &mut Tx<'_>,
    session_id: &SessionId,
) -> Result<SessionIdentity, StoreError> {
    let row = tx
        .query_opt(
            "SELECT contact_id, authenticated FROM sessions WHERE id = $1",
            &[&session_id.as_str()],
        )?
        .ok_or_else(|| StoreError::Corrupt(format!("session {session_id} vanished")))?;
    Ok(SessionIdentity {
        contact_id: row.try_get::<_, Option<String>>(0)?.map(ContactId::new),
        authenticated: row.try_get(1)?,
    })
}

/// The session's summary columns, with its landing pageview and the event its context
/// comes from (both of earlier batches: the summary is written at a batch's end).
pub(super) fn session_visit_facts(
    tx: &mut Tx<'_>,
    session_id: &SessionId,
) -> Result<StoredVisitFacts, StoreError> {
    // The events are found through the session's index (the events table's primary
    // key holds the partition key, which the session does not keep).
    let row = tx
        .query_opt(
            "SELECT s.user_agent_json, s.geolocation_json,
                    lp.page_url, lp.page_referrer, lp.campaign_json, lp.referrer_json,
                    lp.time_ms, ce.context_json
             FROM sessions s
             LEFT JOIN events lp ON lp.session_id = s.id AND lp.id = s.landing_pageview_id
             LEFT JOIN events ce ON ce.session_id = s.id AND ce.id = s.context_event_id
             WHERE s.id = $1",
            &[&session_id.as_str()],
        )?
        .ok_or_else(|| StoreError::Corrupt(format!("session {session_id} vanished")))?;
    let landing = match row.try_get::<_, Option<String>>(2)? {
        Some(url) => {
            let campaign: Map<String> = match row.try_get::<_, Option<&str>>(4)? {
                Some(json) => serde_json::from_str(json)?,
                None => Map::new(),
            };
            Some(LandingPage {
                page: Page {
                    url,
                    referrer: row.try_get::<_, Option<String>>(3)?.unwrap_or_default(),
                    campaign,
                    ..Page::default()
                },
                referrer: from_json(row.try_get(5)?)?,
                time_ms: row.try_get(6)?,
            })
        }
        None => None,
    };
    Ok(StoredVisitFacts {
        user_agent: from_json(row.try_get(0)?)?,
        geolocation: from_json(row.try_get(1)?)?,
        context: from_json(row.try_get(7)?)?,
        landing,
    })
}

pub(super) fn session_matches(
    tx: &mut Tx<'_>,
    session_id: &SessionId,
) -> Result<SessionMatches, StoreError> {
    let mut ids = |sql: &str| -> Result<Vec<String>, StoreError> {
        tx.query(sql, &[&session_id.as_str()])?
            .iter()
            .map(|row| Ok(row.try_get(0)?))
            .collect()
    };
    Ok(SessionMatches {
        segment_ids: ids(
            "SELECT segment_id FROM session_segment_assignments WHERE session_id = $1",
        )?,
        outcome_ids: ids(
            "SELECT outcome_id FROM session_outcome_achievements WHERE session_id = $1",
        )?,
    })
}

pub(super) fn visit_fingerprint(
    tx: &mut Tx<'_>,
    session_id: &SessionId,
) -> Result<Option<String>, StoreError> {
    tx.query_opt(
        "SELECT fingerprint FROM session_visit_evaluations WHERE session_id = $1",
        &[&session_id.as_str()],
    )?
    .map(|row| Ok(row.try_get(0)?))
    .transpose()
}

pub(super) fn write_visit_fingerprint(
    tx: &mut Tx<'_>,
    session_id: &SessionId,
    fingerprint: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO session_visit_evaluations (session_id, fingerprint) VALUES ($1, $2)
         ON CONFLICT (session_id) DO UPDATE SET fingerprint = excluded.fingerprint",
        &[&session_id.as_str(), &fingerprint],
    )?;
    Ok(())
}

pub(super) fn pattern_counts(
    tx: &mut Tx<'_>,
    scope_key: &str,
) -> Result<Vec<PatternCount>, StoreError> {
    tx.query(
        "SELECT definition_id, version, pattern_index, count FROM journey_pattern_counts
         WHERE scope_key = $1",
        &[&scope_key],
    )?
    .iter()
    .map(|row| {
        Ok(PatternCount {
            scope_key: scope_key.to_owned(),
            definition_id: row.try_get(0)?,
            version: u64::try_from(row.try_get::<_, i64>(1)?).unwrap_or(0),
            pattern_index: usize::try_from(row.try_get::<_, i32>(2)?).unwrap_or(usize::MAX),
            count: u64::try_from(row.try_get::<_, i64>(3)?).unwrap_or(0),
        })
    })
    .collect()
}

pub(super) fn write_pattern_counts(
    tx: &mut Tx<'_>,
    counts: &[PatternCount],
) -> Result<(), StoreError> {
    let scope_keys: Vec<&str> = counts
        .iter()
        .map(|count| count.scope_key.as_str())
        .collect();
    let definition_ids: Vec<&str> = counts
        .iter()
        .map(|count| count.definition_id.as_str())
        .collect();
    let versions: Vec<i64> = counts
        .iter()
        .map(|count| to_integer(count.version))
        .collect();
    let patterns: Vec<i32> = counts
        .iter()
        .map(|count| i32::try_from(count.pattern_index).unwrap_or(i32::MAX))
        .collect();
    let values: Vec<i64> = counts.iter().map(|count| to_integer(count.count)).collect();
    tx.execute(
        "INSERT INTO journey_pattern_counts (scope_key, definition_id, version, pattern_index, count)
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::integer[], $5::bigint[])
         ON CONFLICT (scope_key, definition_id, version, pattern_index)
         DO UPDATE SET count = excluded.count",
        &[&scope_keys, &definition_ids, &versions, &patterns, &values],
    )?;
    Ok(())
}

pub(super) fn customer_assignments(
    tx: &mut Tx<'_>,
    customer_key: &str,
) -> Result<Vec<AssignmentExpiry>, StoreError> {
    tx.query(
        "SELECT segment_id, expires_ms FROM customer_segment_assignments
         WHERE customer_key = $1",
        &[&customer_key],
    )?
    .iter()
    .map(|row| {
        Ok(AssignmentExpiry {
            segment_id: row.try_get(0)?,
            expires_ms: row.try_get(1)?,
        })
    })
    .collect()
}

pub(super) fn live_customer_assignments(
    tx: &mut Tx<'_>,
    customer_key: &str,
    visitor_key: &str,
    now_ms: i64,
) -> Result<Vec<CustomerAssignment>, StoreError> {
    tx.query(
        "SELECT customer_key, segment_id, display_name, color, should_display_to_agent,
                assigned_ms, expires_ms
         FROM customer_segment_assignments
         WHERE customer_key IN ($1, $2) AND (expires_ms IS NULL OR expires_ms > $3)
         ORDER BY assigned_ms, segment_id",
        &[&customer_key, &visitor_key, &now_ms],
    )?
    .iter()
    .map(|row| {
        Ok(CustomerAssignment {
            customer_key: row.try_get(0)?,
            segment_id: row.try_get(1)?,
            display_name: row.try_get(2)?,
            color: row.try_get(3)?,
            should_display_to_agent: row.try_get(4)?,
            assigned_ms: row.try_get(5)?,
            expires_ms: row.try_get(6)?,
        })
    })
    .collect()
}

pub(super) fn write_customer_assignments(
    tx: &mut Tx<'_>,
    assignments: &[CustomerAssignment],
    now_ms: i64,
) -> Result<(), StoreError> {
    // One statement cannot change a row twice: of the rows of one customer and
    // segment, the last is the one that stays when they are inserted in order.
    let mut rows: Vec<&CustomerAssignment> = Vec::with_capacity(assignments.len());
    for assignment in assignments {
        rows.retain(|row| {
            (&row.customer_key, &row.segment_id)
                != (&assignment.customer_key, &assignment.segment_id)
        });
        rows.push(assignment);
    }
    let text = |field: fn(&CustomerAssignment) -> &str| -> Vec<&str> {
        rows.iter().map(|row| field(row)).collect()
    };
    let customer_keys = text(|row| &row.customer_key);
    let segment_ids = text(|row| &row.segment_id);
    let display_names = text(|row| &row.display_name);
    let colors = text(|row| &row.color);
    let displayed: Vec<bool> = rows.iter().map(|row| row.should_display_to_agent).collect();
    let assigned: Vec<i64> = rows.iter().map(|row| row.assigned_ms).collect();
    let expires: Vec<Option<i64>> = rows.iter().map(|row| row.expires_ms).collect();
    // A live assignment is kept as it is; an expired one is made anew.
    tx.execute(
        "INSERT INTO customer_segment_assignments (
            customer_key, segment_id, display_name, color,
            should_display_to_agent, assigned_ms, expires_ms
         )
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                              $5::boolean[], $6::bigint[], $7::bigint[])
         ON CONFLICT (customer_key, segment_id) DO UPDATE SET
            display_name = excluded.display_name, color = excluded.color,
            should_display_to_agent = excluded.should_display_to_agent,
            assigned_ms = excluded.assigned_ms, expires_ms = excluded.expires_ms
         WHERE customer_segment_assignments.expires_ms IS NOT NULL
           AND customer_segment_assignments.expires_ms <= $8",
        &[
            &customer_keys,
            &segment_ids,
            &display_names,
            &colors,
            &displayed,
            &assigned,
            &expires,
            &now_ms,
        ],
    )?;
    Ok(())
}

/// `deployment_id` and `visitor_id` are the sessions' (the batch's visitor's).
pub(super) fn write_segment_assignments(
    tx: &mut Tx<'_>,
    (deployment_id, visitor_id): (&str, &str),
    assignments: &[(SessionId, SegmentAssignment)],
) -> Result<(), StoreError> {
    let text = |field: fn(&(SessionId, SegmentAssignment)) -> &str| -> Vec<&str> {
        assignments.iter().map(field).collect()
    };
    let session_ids = text(|(session_id, _)| session_id.as_str());
    let segment_ids = text(|(_, row)| &row.segment_id);
    let ids = text(|(_, row)| &row.id);
    let display_names = text(|(_, row)| &row.display_name);
    let colors = text(|(_, row)| &row.color);
    let trigger_ids = text(|(_, row)| &row.trigger_event_id);
    let displayed: Vec<bool> = assignments
        .iter()
        .map(|(_, row)| row.should_display_to_agent)
        .collect();
    let assigned: Vec<i64> = assignments.iter().map(|(_, row)| row.assigned_ms).collect();
    tx.execute(
        "INSERT INTO session_segment_assignments (
            session_id, segment_id, deployment_id, visitor_id, id, display_name, color,
            should_display_to_agent, assigned_ms, trigger_event_id
         )
         SELECT session_id, segment_id, $9::text, $10::text, id, display_name, color,
                should_display_to_agent, assigned_ms, trigger_event_id
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::boolean[], $7::bigint[], $8::text[])
              AS rows (session_id, segment_id, id, display_name, color,
                       should_display_to_agent, assigned_ms, trigger_event_id)
         ON CONFLICT (session_id, segment_id) DO NOTHING",
        &[
            &session_ids,
            &segment_ids,
            &ids,
            &display_names,
            &colors,
            &displayed,
            &assigned,
            &trigger_ids,
            &deployment_id,
            &visitor_id,
        ],
    )?;
    Ok(())
}

/// `deployment_id` and `visitor_id` are the sessions' (the batch's visitor's).
pub(super) fn write_outcome_achievements(
    tx: &mut Tx<'_>,
    (deployment_id, visitor_id): (&str, &str),
    achievements: &[(SessionId, OutcomeAchievement)],
) -> Result<(), StoreError> {
    let text = |field: fn(&(SessionId, OutcomeAchievement)) -> &str| -> Vec<&str> {
        achievements.iter().map(field).collect()
    };
    let session_ids = text(|(session_id, _)| session_id.as_str());
    let outcome_ids = text(|(_, row)| &row.outcome_id);
    let ids = text(|(_, row)| &row.id);
    let display_names = text(|(_, row)| &row.display_name);
    let trigger_ids = text(|(_, row)| &row.trigger_event_id);
    let versions: Vec<i64> = achievements
        .iter()
        .map(|(_, row)| to_integer(row.version))
        .collect();
    let positive: Vec<bool> = achievements
        .iter()
        .map(|(_, row)| row.is_positive)
        .collect();
    let values: Vec<Option<&str>> = achievements
        .iter()
        .map(|(_, row)| row.associated_value.as_deref())
        .collect();
    let achieved: Vec<i64> = achievements
        .iter()
        .map(|(_, row)| row.achieved_ms)
        .collect();
    tx.execute(
        "INSERT INTO session_outcome_achievements (
            session_id, outcome_id, deployment_id, visitor_id, id, display_name, version,
            is_positive, associated_value, achieved_ms, trigger_event_id
         )
         SELECT session_id, outcome_id, $10::text, $11::text, id, display_name, version, is_positive,
                associated_value, achieved_ms, trigger_event_id
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                     $6::boolean[], $7::text[], $8::bigint[], $9::text[])
              AS rows (session_id, outcome_id, id, display_name, version, is_positive,
                       associated_value, achieved_ms, trigger_event_id)
         ON CONFLICT (session_id, outcome_id) DO NOTHING",
        &[
            &session_ids,
            &outcome_ids,
            &ids,
            &display_names,
            &versions,
            &positive,
            &values,
            &achieved,
            &trigger_ids,
            &deployment_id,
            &visitor_id,
        ],
    )?;
    Ok(())
}
