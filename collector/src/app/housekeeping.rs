//! Background work that keeps what is stored within what the operator configured,
//! and the usage figures up to date: each run stores the refusals counted in memory,
//! summarises the days that ended ([`crate::usage`]), then applies deployments'
//! `retention_days` ([`crate::privacy`]), in that order, so that retention never
//! deletes what a summary still needs.
//!
//! Runs on the state's clock, every [`HOUSEKEEPING_INTERVAL`], beside the idle-session
//! sweep; tests call [`AppState::run_housekeeping`] (or its parts) at a chosen time.

use std::time::Duration;

use super::AppState;
use crate::metrics::{RefusalCounts, RefusalReason};
use crate::privacy::{self, RetentionPolicy, RetentionRun};
use crate::store::StoreError;
use crate::usage;

/// How often retention runs. Retention is counted in days, so a few minutes late is
/// nothing; often enough that one run's bounded work keeps up with a busy deployment.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(60);

/// Sessions deleted per transaction: small enough that ingest, which waits for the
/// same writer, is held up for milliseconds only.
pub const RETENTION_SESSIONS_PER_TRANSACTION: usize = 200;

/// Transactions per deployment and run: the rest waits for the next run, so that a
/// first run over years of history does not hold the writer for minutes.
pub const RETENTION_TRANSACTIONS_PER_RUN: usize = 25;

/// Whole partitions (PostgreSQL's months) dropped per run: one month of a busy
/// deployment is the most one transaction of retention should take on.
pub const RETENTION_PARTITIONS_PER_RUN: usize = 1;

/// How far collectors' clocks may disagree, for [`RetentionPolicy::settled_before_ms`]:
/// another collector may accept an event as old as its own clock allows.
const CLOCK_DISAGREEMENT_MS: i64 = 60 * 60 * 1000;

impl AppState {
    /// Counts events of a configured deployment refused for `reason`, for its usage.
    pub(super) fn count_refused_for(
        &self,
        deployment_id: &str,
        reason: RefusalReason,
        events: u64,
    ) {
        self.refusal_tally
            .add(deployment_id, self.clock.now_ms(), reason, events);
    }

    pub(super) fn count_all_refused_for(&self, deployment_id: &str, refused: &RefusalCounts) {
        self.refusal_tally
            .add_all(deployment_id, self.clock.now_ms(), refused);
    }

    /// Stores the refusals counted in memory; on failure they are kept for the next
    /// try.
    pub fn store_refusals(&self) -> Result<(), StoreError> {
        let counts = self.refusal_tally.take();
        self.store.add_usage_counts(&counts).inspect_err(|_| {
            self.refusal_tally.restore(&counts);
        })
    }

    /// Summarises the UTC days that ended by the state's clock and are not summarised
    /// yet; returns how many.
    pub fn summarise_usage(&self) -> Result<u64, StoreError> {
        self.store
            .summarise_usage(usage::utc_day(self.clock.now_ms()))
    }

    /// One housekeeping run: refusals stored, days summarised, retention applied with
    /// the background task's bounds.
    pub fn run_housekeeping(&self) -> Result<RetentionRun, StoreError> {
        self.store_refusals()?;
        self.apply_retention(
            RETENTION_SESSIONS_PER_TRANSACTION,
            RETENTION_TRANSACTIONS_PER_RUN,
        )
    }

    /// Deletes, for every deployment with `retention_days`, the sessions whose last
    /// activity is older than that by the state's clock, with all their events: first
    /// whole partitions where the store has them and every session in one is past its
    /// deployment's retention (at most [`RETENTION_PARTITIONS_PER_RUN`]; PostgreSQL's
    /// months), then row by row: at most `sessions_per_transaction` whole sessions per
    /// transaction (so that no reader sees part of a session), and at most
    /// `max_transactions` per deployment. Returns what went in all.
    pub fn apply_retention(
        &self,
        sessions_per_transaction: usize,
        max_transactions: usize,
    ) -> Result<RetentionRun, StoreError> {
        // The figures first: retention keeps what a summary still needs, so a summary
        // that is behind would hold it up.
        self.summarise_usage()?;
        let now_ms = self.clock.now_ms();
        let mut total = self.store.drop_expired_partitions(
            &self.retention_policy(now_ms),
            RETENTION_PARTITIONS_PER_RUN,
        )?;
        for deployment in &self.config.deployments {
            let retention_days = self
                .config
                .deployment_privacy(&deployment.id)
                .retention_days;
            let Some(before_ms) = privacy::retention_cutoff_ms(now_ms, retention_days) else {
                continue;
            };
            for _ in 0..max_transactions {
                let run = self.store.delete_sessions_before(
                    &deployment.id,
                    before_ms,
                    sessions_per_transaction,
                )?;
                total += run;
                if run.sessions < sessions_per_transaction as u64 {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// Every deployment's retention at `now_ms`, for dropping whole partitions.
    fn retention_policy(&self, now_ms: i64) -> RetentionPolicy {
        let cutoffs_ms = self
            .config
            .deployments
            .iter()
            .filter_map(|deployment| {
                let days = self
                    .config
                    .deployment_privacy(&deployment.id)
                    .retention_days;
                privacy::retention_cutoff_ms(now_ms, days)
                    .map(|cutoff_ms| (deployment.id.clone(), cutoff_ms))
            })
            .collect();
        // Validation refuses events older than the maximum age (crate::validate), and an
        // event joins a session only within the timeout of its last activity.
        let settled_before_ms = now_ms
            .saturating_sub(self.config.max_event_age_ms())
            .saturating_sub(self.config.session_timeout_ms())
            .saturating_sub(CLOCK_DISAGREEMENT_MS);
        RetentionPolicy {
            cutoffs_ms,
            settled_before_ms,
        }
    }
}

/// The background loop [`super::serve`] spawns.
pub(super) async fn run(state: AppState) {
    let mut interval = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let retention = {
            let state = state.clone();
            tokio::task::spawn_blocking(move || state.run_housekeeping()).await
        };
        match retention {
            Ok(Ok(run)) if run.sessions == 0 => {}
            Ok(Ok(run)) => tracing::info!(
                sessions = run.sessions,
                events = run.events,
                "deleted sessions past their deployment's retention"
            ),
            Ok(Err(error)) => tracing::error!(error = %error, "housekeeping failed"),
            Err(error) => tracing::error!(error = %error, "housekeeping task failed"),
        }
    }
}

/// Stores the refusals counted since the last run: at shutdown, once requests are
/// done, so that a clean stop loses none.
pub(super) async fn flush_refusals(state: &AppState) {
    let state = state.clone();
    match tokio::task::spawn_blocking(move || state.store_refusals()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(error = %error, "cannot store the refusal counts"),
        Err(error) => tracing::error!(error = %error, "the refusal counts task failed"),
    }
}
