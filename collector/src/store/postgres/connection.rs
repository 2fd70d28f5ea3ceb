//! Connections to PostgreSQL: an r2d2 pool of synchronous `postgres` clients, each
//! with the statements it has prepared, and the transaction wrapper every query of the
//! backend goes through (so that every statement is prepared once per connection).

use std::collections::HashMap;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};

use crate::model::StoreError;

impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> StoreError {
        StoreError::Backend(Box::new(error))
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(error: r2d2::Error) -> StoreError {
        StoreError::Backend(Box::new(error))
    }
}

/// One pooled connection and the statements prepared on it, by their SQL text.
pub(super) struct PgConnection {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl PgConnection {
    /// Starts a transaction; `read_only` ones see one snapshot for all their queries
    /// (REPEATABLE READ), write ones run in READ COMMITTED with explicit locks.
    pub(super) fn transaction(&mut self, read_only: bool) -> Result<Tx<'_>, StoreError> {
        let PgConnection { client, statements } = self;
        let transaction = if read_only {
            client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?
        } else {
            client.transaction()?
        };
        Ok(Tx {
            transaction,
            statements,
        })
    }

    pub(super) fn client(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// Makes [`PgConnection`]s for r2d2 from a parsed `postgres://` URL.
#[derive(Debug)]
pub(super) struct Manager {
    config: postgres::Config,
}

impl Manager {
    pub(super) fn new(config: postgres::Config) -> Manager {
        Manager { config }
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConnection;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConnection, postgres::Error> {
        // TLS is not offered: the collector and its database are expected on one
        // private network (see README "Running on PostgreSQL").
        Ok(PgConnection {
            client: self.config.connect(NoTls)?,
            statements: HashMap::new(),
        })
    }

    fn is_valid(&self, connection: &mut PgConnection) -> Result<(), postgres::Error> {
        connection.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, connection: &mut PgConnection) -> bool {
        connection.client.is_closed()
    }
}

/// Parameters of one statement.
pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// An open transaction and its connection's prepared statements.
pub(super) struct Tx<'c> {
    transaction: postgres::Transaction<'c>,
    statements: &'c mut HashMap<String, Statement>,
}

impl Tx<'_> {
    /// The statement for `sql`, prepared on first use on this connection.
    fn statement(&mut self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.transaction.prepare(sql)?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub(super) fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        Ok(self.transaction.execute(&statement, params)?)
    }

    pub(super) fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(sql)?;
        Ok(self.transaction.query(&statement, params)?)
    }

    pub(super) fn query_opt(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        let statement = self.statement(sql)?;
        Ok(self.transaction.query_opt(&statement, params)?)
    }

    pub(super) fn query_one(&mut self, sql: &str, params: Params<'_>) -> Result<Row, StoreError> {
        let statement = self.statement(sql)?;
        Ok(self.transaction.query_one(&statement, params)?)
    }

    /// Runs statements that take no parameters (DDL), unprepared.
    pub(super) fn batch_execute(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.transaction.batch_execute(sql)?)
    }

    pub(super) fn commit(self) -> Result<(), StoreError> {
        Ok(self.transaction.commit()?)
    }

    /// Takes a lock that the transaction holds until it ends (advisory: it guards
    /// what the code agrees it guards, see [`LockSpace`]). Waits for a holder.
    pub(super) fn lock(&mut self, space: LockSpace, key: &str) -> Result<(), StoreError> {
        self.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&(space as i32), &key],
        )?;
        Ok(())
    }

    /// [`Tx::lock`] without waiting: false when another transaction holds it.
    pub(super) fn try_lock(&mut self, space: LockSpace, key: &str) -> Result<bool, StoreError> {
        Ok(self
            .query_one(
                "SELECT pg_try_advisory_xact_lock($1, hashtext($2))",
                &[&(space as i32), &key],
            )?
            .try_get(0)?)
    }
}

/// What an advisory lock guards: its first key, so that the hashes of different kinds
/// of keys never collide. Every lock is transaction-scoped and per key; none is global
/// on the ingest path.
#[derive(Debug, Clone, Copy)]
pub(super) enum LockSpace {
    /// A deployment's visitor (`deployment \n visitor`): the ingest of its batches.
    Visitor = 1,
    /// A deployment's short id (`deployment \n short id`) while a session takes it.
    ShortId = 2,
    /// A contact: its fields, identifiers and links.
    Contact = 3,
    /// Creating the events table's partitions.
    Partitions = 4,
    /// Writing segment and outcome definitions (rare; the limit per kind is counted).
    Definitions = 5,
    /// Writing the usage summary (one key): two collectors never both add a day.
    Usage = 6,
}

/// Whether the transaction lost a race that running it again resolves: a deadlock
/// between two transactions' locks, or a serialisation failure.
pub(super) fn is_retryable(error: &StoreError) -> bool {
    let StoreError::Backend(source) = error else {
        return false;
    };
    source
        .downcast_ref::<postgres::Error>()
        .and_then(postgres::Error::code)
        .is_some_and(|code| {
            *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
        })
}

/// Whether a statement gave up waiting for a lock (`lock_timeout`).
pub(super) fn is_lock_timeout(error: &StoreError) -> bool {
    let StoreError::Backend(source) = error else {
        return false;
    };
    source
        .downcast_ref::<postgres::Error>()
        .and_then(postgres::Error::code)
        .is_some_and(|code| *code == SqlState::LOCK_NOT_AVAILABLE)
}
