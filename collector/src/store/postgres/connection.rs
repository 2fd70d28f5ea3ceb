//! Connections to PostgreSQL: an r2d2 pool of synchronous `postgres` clients, each
//! with the statements it has prepared, and the transaction wrapper every query of the
//! backend goes through (so that every statement is prepared once per connection).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use postgres::config::SslMode;
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::model::StoreError;

/// Where and how every connection of the store goes: the parsed URL, and TLS when the
/// URL asks for it.
///
/// `sslmode=require`, `verify-ca` and `verify-full` all mean TLS with the server's
/// certificate checked against `sslrootcert` (a PEM file of CA certificates) or, without
/// it, the system's roots, and its name against the URL's host: unlike libpq's
/// `require`, never an unchecked certificate, which anyone on the path could present.
/// Other modes (`disable`, `allow`, `prefer`, PostgreSQL's default) connect without TLS,
/// for a database on the collectors' own private network.
#[derive(Clone)]
pub(super) struct Target {
    config: postgres::Config,
    tls: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No password in logs.
        f.debug_struct("Target")
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Target {
    pub(super) fn parse(url: &str) -> Result<Target, StoreError> {
        let invalid =
            |why: String| StoreError::Backend(format!("invalid PostgreSQL URL: {why}").into());
        let (url, root_file) = libpq_tls_options(url).map_err(invalid)?;
        let config: postgres::Config = url
            .parse()
            .map_err(|error: postgres::Error| invalid(error.to_string()))?;
        let tls = match (config.get_ssl_mode(), root_file) {
            (SslMode::Require, root_file) => Some(tls_connector(root_file.as_deref())?),
            (_, None) => None,
            (_, Some(_)) => {
                return Err(invalid(
                    "sslrootcert needs sslmode=require, verify-ca or verify-full".to_owned(),
                ))
            }
        };
        Ok(Target { config, tls })
    }

    /// Connects once and lets go: a wrong address, password or certificate then fails
    /// the store's opening at once, with its cause (the pool would retry for its
    /// timeout, then say only that it timed out). On a thread of its own, since the
    /// synchronous client runs a runtime of its own, which cannot start, or be
    /// dropped, inside the caller's.
    pub(super) fn probe(&self) -> Result<(), StoreError> {
        let target = self.clone();
        let probed = std::thread::spawn(move || target.connect().map(drop))
            .join()
            .map_err(|_| StoreError::Backend("connecting to PostgreSQL panicked".into()))?;
        probed.map_err(|error| {
            let mut message = format!("cannot connect to PostgreSQL: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            StoreError::Backend(message.into())
        })
    }

    pub(super) fn connect(&self) -> Result<Client, postgres::Error> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        }
    }
}

/// The URL without what the `postgres` crate does not know of libpq's TLS options: the
/// `sslrootcert` file (returned), and `verify-ca` / `verify-full`, which become
/// `require` (the same here: see [`Target`]). A URL without them is kept as it is.
fn libpq_tls_options(url: &str) -> Result<(String, Option<PathBuf>), String> {
    let Ok(mut parsed) = url::Url::parse(url) else {
        // A key-value string or a multi-host URL: the `postgres` crate reads it.
        return Ok((url.to_owned(), None));
    };
    let mut root_file = None;
    let mut changed = false;
    let mut kept = Vec::new();
    for (key, value) in parsed.query_pairs() {
        match (&*key, &*value) {
            ("sslrootcert", path) => {
                if path.is_empty() {
                    return Err("sslrootcert is empty".to_owned());
                }
                root_file = Some(PathBuf::from(path));
                changed = true;
            }
            ("sslmode", "verify-ca" | "verify-full") => {
                kept.push((key.into_owned(), "require".to_owned()));
                changed = true;
            }
            _ => kept.push((key.into_owned(), value.into_owned())),
        }
    }
    if !changed {
        return Ok((url.to_owned(), None));
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((parsed.into(), root_file))
}

/// rustls on ring, trusting the certificates of `root_file` or the system's roots.
fn tls_connector(root_file: Option<&Path>) -> Result<MakeRustlsConnect, StoreError> {
    let tls_error = |why: String| StoreError::Backend(format!("PostgreSQL TLS: {why}").into());
    let mut roots = rustls::RootCertStore::empty();
    match root_file {
        Some(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|error| tls_error(format!("sslrootcert {}: {error}", path.display())))?;
            for certificate in certificates {
                let certificate = certificate.map_err(|error| {
                    tls_error(format!("sslrootcert {}: {error}", path.display()))
                })?;
                roots.add(certificate).map_err(|error| {
                    tls_error(format!("sslrootcert {}: {error}", path.display()))
                })?;
            }
            if roots.is_empty() {
                return Err(tls_error(format!(
                    "sslrootcert {}: no certificate in it",
                    path.display()
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(tls_error(
                    "no system root certificates (install ca-certificates, or name the \
                     server's CA with sslrootcert)"
                        .to_owned(),
                ));
            }
        }
    }
    // ring, although rustls 0.23.48 deprecates its provider for lacking post-quantum
    // key exchange: aws-lc-rs, which has it, is a long native build; for a database on
    // the operator's own network, today's key exchange is what libpq offers too.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| tls_error(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

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
    target: Target,
}

impl Manager {
    pub(super) fn new(target: Target) -> Manager {
        Manager { target }
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConnection;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConnection, postgres::Error> {
        Ok(PgConnection {
            client: self.target.connect()?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_tls_options_are_read_and_the_rest_kept() {
        // (URL, what `libpq_tls_options` gives: the URL for the `postgres` crate and
        // the `sslrootcert` file, or the refusal).
        type Expected<'a> = Result<(&'a str, Option<&'a str>), &'a str>;
        let cases: [(&str, Expected); 7] = [
            // Untouched, byte for byte, when there is nothing to take out.
            (
                "postgres://u:p%40ss@db:5432/footpath",
                Ok(("postgres://u:p%40ss@db:5432/footpath", None)),
            ),
            (
                "postgres://u@db/footpath?sslmode=require&application_name=fp",
                Ok((
                    "postgres://u@db/footpath?sslmode=require&application_name=fp",
                    None,
                )),
            ),
            (
                "postgres://u@db/footpath?sslmode=verify-full&sslrootcert=/etc/ca.pem",
                Ok((
                    "postgres://u@db/footpath?sslmode=require",
                    Some("/etc/ca.pem"),
                )),
            ),
            (
                "postgresql://u@db/footpath?sslrootcert=ca.pem&sslmode=verify-ca&connect_timeout=5",
                Ok((
                    "postgresql://u@db/footpath?sslmode=require&connect_timeout=5",
                    Some("ca.pem"),
                )),
            ),
            (
                "postgres://u@db/footpath?sslrootcert=ca.pem",
                Ok(("postgres://u@db/footpath", Some("ca.pem"))),
            ),
            (
                "host=db user=u sslmode=require",
                Ok(("host=db user=u sslmode=require", None)),
            ),
            (
                "postgres://u@db/footpath?sslrootcert=",
                Err("sslrootcert is empty"),
            ),
        ];
        for (url, expected) in cases {
            let got = libpq_tls_options(url);
            let got = got
                .as_ref()
                .map(|(url, file)| (url.as_str(), file.as_deref().and_then(Path::to_str)))
                .map_err(String::as_str);
            assert_eq!(got, expected, "{url}");
        }
    }

    #[test]
    fn tls_is_used_only_when_asked_for_and_a_root_file_needs_it() {
        assert!(Target::parse("postgres://u@127.0.0.1/db")
            .unwrap()
            .tls
            .is_none());
        assert!(Target::parse("postgres://u@127.0.0.1/db?sslmode=prefer")
            .unwrap()
            .tls
            .is_none());
        let refused = |url: &str| Target::parse(url).unwrap_err().to_string();
        assert!(
            refused("postgres://u@127.0.0.1/db?sslmode=prefer&sslrootcert=/ca.pem")
                .contains("sslrootcert needs sslmode=require"),
        );
        assert!(
            refused("postgres://u@127.0.0.1/db?sslmode=require&sslrootcert=/no/such/ca.pem")
                .contains("sslrootcert /no/such/ca.pem")
        );
        let empty = std::env::temp_dir().join(format!("footpath-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let message = refused(&format!(
            "postgres://u@127.0.0.1/db?sslmode=require&sslrootcert={}",
            empty.display()
        ));
        std::fs::remove_file(&empty).unwrap();
        assert!(message.contains("no certificate in it"), "{message}");
        assert!(refused("postgres://u@127.0.0.1/db?sslmode=sometimes")
            .contains("invalid PostgreSQL URL"));
    }
}
