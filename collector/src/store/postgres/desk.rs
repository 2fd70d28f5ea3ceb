//! The agents' desk sign-ins on PostgreSQL ([`crate::desk::auth::SignInStore`]):
//! one table that every collector on the database reads, so that a sign-in through
//! one collector is valid on all of them.

use super::connection::Tx;
use super::PostgresStore;
use crate::desk::auth::{SignInStore, StoredSignIn};
use crate::model::StoreError;

const SIGN_IN_SELECT: &str = "SELECT session_sha256, token_sha256, expires_ms FROM desk_sign_ins";

fn sign_ins_where(
    tx: &mut Tx<'_>,
    condition: &str,
    params: super::connection::Params<'_>,
) -> Result<Vec<StoredSignIn>, StoreError> {
    tx.query(&format!("{SIGN_IN_SELECT} {condition}"), params)?
        .iter()
        .map(|row| {
            Ok(StoredSignIn {
                session_sha256: row.try_get(0)?,
                token_sha256: row.try_get(1)?,
                expires_ms: row.try_get(2)?,
            })
        })
        .collect()
}

impl SignInStore for PostgresStore {
    fn save_sign_in(&self, sign_in: &StoredSignIn, now_ms: i64) -> Result<(), StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(false)?;
        // Expired sign-ins go as new ones come, so the table stays as small as the
        // number of agents signed in.
        tx.execute(
            "DELETE FROM desk_sign_ins WHERE expires_ms <= $1",
            &[&now_ms],
        )?;
        tx.execute(
            "INSERT INTO desk_sign_ins (session_sha256, token_sha256, expires_ms)
             VALUES ($1, $2, $3)",
            &[
                &sign_in.session_sha256,
                &sign_in.token_sha256,
                &sign_in.expires_ms,
            ],
        )?;
        tx.commit()
    }

    fn sign_in(&self, session_sha256: &str) -> Result<Option<StoredSignIn>, StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(true)?;
        Ok(sign_ins_where(&mut tx, "WHERE session_sha256 = $1", &[&session_sha256])?.pop())
    }

    fn delete_sign_in(&self, session_sha256: &str) -> Result<bool, StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(false)?;
        let deleted = tx.execute(
            "DELETE FROM desk_sign_ins WHERE session_sha256 = $1",
            &[&session_sha256],
        )?;
        tx.commit()?;
        Ok(deleted > 0)
    }

    fn delete_sign_ins_except(
        &self,
        token_sha256s: &[String],
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(false)?;
        let deleted = tx.execute(
            "DELETE FROM desk_sign_ins
             WHERE expires_ms <= $1 OR NOT (token_sha256 = ANY($2))",
            &[&now_ms, &token_sha256s],
        )?;
        tx.commit()?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    fn sign_ins(&self) -> Result<Vec<StoredSignIn>, StoreError> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction(true)?;
        sign_ins_where(&mut tx, "ORDER BY session_sha256", &[])
    }
}
