//! The SQL of the agents' desk sign-ins on SQLite ([`crate::desk::auth::SignInStore`]).

use rusqlite::{params, OptionalExtension};

use super::sqlite::SqliteStore;
use super::StoreError;
use crate::desk::auth::{SignInStore, StoredSignIn};

impl SignInStore for SqliteStore {
    fn save_sign_in(&self, sign_in: &StoredSignIn, now_ms: i64) -> Result<(), StoreError> {
        let mut connection = self.writer();
        let transaction = connection.transaction()?;
        // Expired sign-ins go as new ones come, so the table stays as small as the
        // number of agents signed in.
        transaction
            .prepare_cached("DELETE FROM desk_sign_ins WHERE expires_ms <= ?1")?
            .execute([now_ms])?;
        transaction
            .prepare_cached(
                "INSERT INTO desk_sign_ins (session_sha256, token_sha256, expires_ms)
                 VALUES (?1, ?2, ?3)",
            )?
            .execute(params![
                sign_in.session_sha256,
                sign_in.token_sha256,
                sign_in.expires_ms
            ])?;
        transaction.commit()?;
        Ok(())
    }

    fn sign_in(&self, session_sha256: &str) -> Result<Option<StoredSignIn>, StoreError> {
        let connection = self.reader();
        let found = connection
            .prepare_cached(
                "SELECT session_sha256, token_sha256, expires_ms FROM desk_sign_ins
                 WHERE session_sha256 = ?1",
            )?
            .query_row([session_sha256], |row| {
                Ok(StoredSignIn {
                    session_sha256: row.get(0)?,
                    token_sha256: row.get(1)?,
                    expires_ms: row.get(2)?,
                })
            })
            .optional()?;
        Ok(found)
    }

    fn delete_sign_in(&self, session_sha256: &str) -> Result<bool, StoreError> {
        let connection = self.writer();
        let deleted = connection
            .prepare_cached("DELETE FROM desk_sign_ins WHERE session_sha256 = ?1")?
            .execute([session_sha256])?;
        Ok(deleted > 0)
    }

    fn delete_sign_ins_except(
        &self,
        token_sha256s: &[String],
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let mut connection = self.writer();
        let transaction = connection.transaction()?;
        let doomed: Vec<String> = {
            let mut statement = transaction.prepare_cached(
                "SELECT session_sha256, token_sha256, expires_ms FROM desk_sign_ins",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })?;
            let mut doomed = Vec::new();
            for row in rows {
                let (session, token, expires_ms) = row?;
                if expires_ms <= now_ms || !token_sha256s.contains(&token) {
                    doomed.push(session);
                }
            }
            doomed
        };
        for session in &doomed {
            transaction
                .prepare_cached("DELETE FROM desk_sign_ins WHERE session_sha256 = ?1")?
                .execute([session])?;
        }
        transaction.commit()?;
        Ok(doomed.len())
    }

    fn sign_ins(&self) -> Result<Vec<StoredSignIn>, StoreError> {
        let connection = self.reader();
        let mut statement = connection.prepare_cached(
            "SELECT session_sha256, token_sha256, expires_ms FROM desk_sign_ins
             ORDER BY session_sha256",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(StoredSignIn {
                session_sha256: row.get(0)?,
                token_sha256: row.get(1)?,
                expires_ms: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
