//! Segment and outcome definitions on PostgreSQL. Writes are rare and take one
//! advisory lock ([`LockSpace::Definitions`]), so that the per-kind limit is counted
//! right when several collectors write (or load their files' definitions) at once;
//! each write moves the generation row, which every collector's index follows.

use super::connection::{LockSpace, Tx};
use super::rows::{definition_from_row, DEFINITION_SELECT};
use super::PostgresStore;
use crate::model::StoreError;
use crate::segments::{
    Definition, DefinitionKind, DefinitionStore, DefinitionWrite, StoredDefinition,
    MAX_DEFINITIONS_PER_KIND,
};

fn count_of_kind(tx: &mut Tx<'_>, kind: DefinitionKind) -> Result<usize, StoreError> {
    let count: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM journey_definitions WHERE kind = $1",
            &[&kind.as_str()],
        )?
        .try_get(0)?;
    Ok(usize::try_from(count).unwrap_or(usize::MAX))
}

fn bump_generation(tx: &mut Tx<'_>) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE journey_definitions_generation SET generation = generation + 1",
        &[],
    )?;
    Ok(())
}

fn insert_definition(
    tx: &mut Tx<'_>,
    id: &str,
    definition: &Definition,
    now_ms: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO journey_definitions
             (id, kind, definition_json, version, created_ms, modified_ms)
         VALUES ($1, $2, $3, 1, $4, $4)",
        &[
            &id,
            &definition.kind().as_str(),
            &definition.to_json().to_string(),
            &now_ms,
        ],
    )?;
    bump_generation(tx)
}

fn replace_definition(
    tx: &mut Tx<'_>,
    id: &str,
    definition: &Definition,
    now_ms: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE journey_definitions
         SET definition_json = $2, version = version + 1, modified_ms = $3
         WHERE id = $1",
        &[&id, &definition.to_json().to_string(), &now_ms],
    )?;
    bump_generation(tx)
}

fn load_definition(
    tx: &mut Tx<'_>,
    kind: DefinitionKind,
    id: &str,
) -> Result<Option<StoredDefinition>, StoreError> {
    tx.query_opt(
        &format!("{DEFINITION_SELECT} WHERE kind = $1 AND id = $2"),
        &[&kind.as_str(), &id],
    )?
    .map(|row| definition_from_row(kind, &row))
    .transpose()
}

fn vanished(kind: DefinitionKind, id: &str) -> StoreError {
    StoreError::Corrupt(format!("{} {id} vanished", kind.as_str()))
}

impl DefinitionStore for PostgresStore {
    fn create_definition(
        &self,
        definition: &Definition,
        now_ms: i64,
    ) -> Result<DefinitionWrite, StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(false)?;
        tx.lock(LockSpace::Definitions, "")?;
        let kind = definition.kind();
        if count_of_kind(&mut tx, kind)? >= MAX_DEFINITIONS_PER_KIND {
            return Ok(DefinitionWrite::LimitReached);
        }
        let id = uuid::Uuid::new_v4().to_string();
        insert_definition(&mut tx, &id, definition, now_ms)?;
        let stored = load_definition(&mut tx, kind, &id)?.ok_or_else(|| vanished(kind, &id))?;
        tx.commit()?;
        Ok(DefinitionWrite::Written(stored))
    }

    fn definition(
        &self,
        kind: DefinitionKind,
        id: &str,
    ) -> Result<Option<StoredDefinition>, StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(true)?;
        load_definition(&mut tx, kind, id)
    }

    fn definitions(
        &self,
        kind: DefinitionKind,
        page_number: usize,
        page_size: usize,
    ) -> Result<(Vec<StoredDefinition>, u64), StoreError> {
        let mut connection = self.connection()?;
        // The page and the total from one snapshot.
        let mut tx = connection.transaction(true)?;
        let total = count_of_kind(&mut tx, kind)?;
        let offset = page_number.saturating_sub(1).saturating_mul(page_size);
        let rows = tx.query(
            &format!(
                "{DEFINITION_SELECT} WHERE kind = $1 ORDER BY created_ms, position
                 LIMIT $2 OFFSET $3"
            ),
            &[
                &kind.as_str(),
                &i64::try_from(page_size).unwrap_or(i64::MAX),
                &i64::try_from(offset).unwrap_or(i64::MAX),
            ],
        )?;
        let items = rows
            .iter()
            .map(|row| definition_from_row(kind, row))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((items, u64::try_from(total).unwrap_or(u64::MAX)))
    }

    fn update_definition(
        &self,
        id: &str,
        definition: &Definition,
        base_version: u64,
        now_ms: i64,
    ) -> Result<DefinitionWrite, StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(false)?;
        tx.lock(LockSpace::Definitions, "")?;
        let kind = definition.kind();
        let Some(current) = load_definition(&mut tx, kind, id)? else {
            return Ok(DefinitionWrite::NotFound);
        };
        if current.version != base_version {
            return Ok(DefinitionWrite::VersionChanged {
                current: current.version,
            });
        }
        replace_definition(&mut tx, id, definition, now_ms)?;
        let stored = load_definition(&mut tx, kind, id)?.ok_or_else(|| vanished(kind, id))?;
        tx.commit()?;
        Ok(DefinitionWrite::Written(stored))
    }

    fn delete_definition(&self, kind: DefinitionKind, id: &str) -> Result<bool, StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(false)?;
        tx.lock(LockSpace::Definitions, "")?;
        let deleted = tx.execute(
            "DELETE FROM journey_definitions WHERE kind = $1 AND id = $2",
            &[&kind.as_str(), &id],
        )? > 0;
        if deleted {
            bump_generation(&mut tx)?;
        }
        tx.commit()?;
        Ok(deleted)
    }

    fn load_configured_definitions(
        &self,
        definitions: &[(String, Definition)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(false)?;
        tx.lock(LockSpace::Definitions, "")?;
        for (id, definition) in definitions {
            let kind = definition.kind();
            let existing = tx.query_opt(
                "SELECT kind, definition_json FROM journey_definitions WHERE id = $1",
                &[id],
            )?;
            match existing {
                None => {
                    if count_of_kind(&mut tx, kind)? >= MAX_DEFINITIONS_PER_KIND {
                        return Err(StoreError::Corrupt(format!(
                            "the configured {} {id} would make more than {MAX_DEFINITIONS_PER_KIND}",
                            kind.as_str()
                        )));
                    }
                    insert_definition(&mut tx, id, definition, now_ms)?;
                }
                Some(row) => {
                    let stored_kind: String = row.try_get(0)?;
                    if stored_kind != kind.as_str() {
                        return Err(StoreError::Corrupt(format!(
                            "the configured {} {id} has the id of a stored {stored_kind}",
                            kind.as_str()
                        )));
                    }
                    let stored: serde_json::Value =
                        serde_json::from_str(row.try_get::<_, &str>(1)?)?;
                    if stored != definition.to_json() {
                        replace_definition(&mut tx, id, definition, now_ms)?;
                    }
                }
            }
        }
        tx.commit()
    }
}
