//! Data rights, retention and usage figures on PostgreSQL: not written yet. Each call
//! answers [`StoreError::NotSupported`], so that an erase or an export on this backend
//! fails loudly rather than pretending to have erased anything.

use super::PostgresStore;
use crate::privacy::{DataSubject, ErasureReport, PrivacyStore, RetentionRun, SubjectSessions};
use crate::store::StoreError;
use crate::usage::{Day, UsageCount, UsageStore};

impl PrivacyStore for PostgresStore {
    fn subject_sessions(
        &self,
        _subject: &DataSubject,
    ) -> Result<Option<SubjectSessions>, StoreError> {
        Err(StoreError::NotSupported(
            "export of a contact's or visitor's data",
        ))
    }

    fn erase_subject(&self, _subject: &DataSubject) -> Result<Option<ErasureReport>, StoreError> {
        Err(StoreError::NotSupported(
            "erasure of a contact's or visitor's data",
        ))
    }

    fn delete_sessions_before(
        &self,
        _deployment_id: &str,
        _before_ms: i64,
        _max_sessions: usize,
    ) -> Result<RetentionRun, StoreError> {
        Err(StoreError::NotSupported("retention"))
    }
}

impl UsageStore for PostgresStore {
    fn summarise_usage(&self, _today: Day) -> Result<u64, StoreError> {
        Err(StoreError::NotSupported("usage figures"))
    }

    fn usage_summarised_until(&self) -> Result<Option<Day>, StoreError> {
        Err(StoreError::NotSupported("usage figures"))
    }

    fn add_usage_counts(&self, _counts: &[UsageCount]) -> Result<(), StoreError> {
        Err(StoreError::NotSupported("usage figures"))
    }

    fn usage_counts(
        &self,
        _deployment_id: Option<&str>,
        _from: Day,
        _to: Day,
    ) -> Result<Vec<UsageCount>, StoreError> {
        Err(StoreError::NotSupported("usage figures"))
    }
}
