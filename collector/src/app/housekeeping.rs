//! Background work that keeps what is stored within what the operator configured:
//! retention (deployments' `retention_days`, see [`crate::privacy`]).
//!
//! Runs on the state's clock, every [`HOUSEKEEPING_INTERVAL`], beside the idle-session
//! sweep; tests call [`AppState::apply_retention`] at a chosen time instead.

use std::time::Duration;

use super::AppState;
use crate::privacy::{self, RetentionRun};
use crate::store::StoreError;

/// How often retention runs. Retention is counted in days, so a few minutes late is
/// nothing; often enough that one run's bounded work keeps up with a busy deployment.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(60);

/// Sessions deleted per transaction: small enough that ingest, which waits for the
/// same writer, is held up for milliseconds only.
pub const RETENTION_SESSIONS_PER_TRANSACTION: usize = 200;

/// Transactions per deployment and run: the rest waits for the next run, so that a
/// first run over years of history does not hold the writer for minutes.
pub const RETENTION_TRANSACTIONS_PER_RUN: usize = 25;

impl AppState {
    /// Deletes, for every deployment with `retention_days`, the sessions whose last
    /// activity is older than that by the state's clock, with all their events: at most
    /// `sessions_per_transaction` whole sessions per transaction (so that no reader
    /// sees part of a session), and at most `max_transactions` per deployment. Returns
    /// what went in all.
    pub fn apply_retention(
        &self,
        sessions_per_transaction: usize,
        max_transactions: usize,
    ) -> Result<RetentionRun, StoreError> {
        let now_ms = self.clock.now_ms();
        let mut total = RetentionRun::default();
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
                total.sessions += run.sessions;
                total.events += run.events;
                if run.sessions < sessions_per_transaction as u64 {
                    break;
                }
            }
        }
        Ok(total)
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
            tokio::task::spawn_blocking(move || {
                state.apply_retention(
                    RETENTION_SESSIONS_PER_TRANSACTION,
                    RETENTION_TRANSACTIONS_PER_RUN,
                )
            })
            .await
        };
        match retention {
            Ok(Ok(run)) if run.sessions == 0 => {}
            Ok(Ok(run)) => tracing::info!(
                sessions = run.sessions,
                events = run.events,
                "deleted sessions past their deployment's retention"
            ),
            Ok(Err(error)) => tracing::error!(error = %error, "retention failed"),
            Err(error) => tracing::error!(error = %error, "retention task failed"),
        }
    }
}
