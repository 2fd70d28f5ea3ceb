//! `GET /api/v2/footpath/usage?from=&to=&deploymentId=`: usage per deployment and UTC
//! day (see [`crate::usage`] for how each figure is kept). Behind
//! [`super::auth::require_bearer_token`]; the desk's usage page reads the same figures.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::Json;
use serde::Serialize;

use super::pagination::QueryParameters;
use super::AppState;
use crate::error::ApiError;
use crate::usage::{self, Day};

/// Deployment ids are configured by the operator and short.
const MAX_DEPLOYMENT_ID_BYTES: usize = 128;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    pub from: String,
    pub to: String,
    /// The first day whose accepted events and sessions are not summarised yet (it
    /// has refusals only, so far); absent before the first summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summarised_until: Option<String>,
    /// The days that have figures, by deployment, then day.
    pub days: Vec<UsageDayReport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageDayReport {
    pub deployment_id: String,
    pub day: String,
    /// Whether the day is over and summarised: its figures no longer change.
    pub complete: bool,
    /// By event kind: `pageview`, `record` (custom events), `identify`, `logout`.
    pub events_accepted: BTreeMap<String, u64>,
    /// By refusal reason, as in `/metrics`' `events_refused_total`.
    pub events_refused: BTreeMap<String, u64>,
    pub new_sessions: u64,
    pub total_sessions: u64,
    pub identified_sessions: u64,
}

/// The figures of a range, as the API and the desk serve them.
pub(crate) async fn usage_report(
    state: &AppState,
    query: Option<&str>,
) -> Result<UsageReport, ApiError> {
    let parameters = QueryParameters::parse(query);
    let today = usage::utc_day(state.clock().now_ms());
    let (from, to) = usage::parse_range(
        parameters.text("from").as_deref(),
        parameters.text("to").as_deref(),
        today,
    )
    .map_err(ApiError::BadRequest)?;
    let deployment_id = parameters.text("deploymentId");
    if deployment_id
        .as_ref()
        .is_some_and(|id| id.len() > MAX_DEPLOYMENT_ID_BYTES)
    {
        return Err(ApiError::BadRequest(format!(
            "deploymentId: at most {MAX_DEPLOYMENT_ID_BYTES} bytes"
        )));
    }
    let (counts, summarised_until) = state
        .with_store_blocking(move |store| {
            Ok((
                store.usage_counts(deployment_id.as_deref(), from, to)?,
                store.usage_summarised_until()?,
            ))
        })
        .await?;
    let is_complete = |day: Day| summarised_until.is_some_and(|until| day < until);
    Ok(UsageReport {
        from: usage::format_day(from),
        to: usage::format_day(to),
        summarised_until: summarised_until.map(usage::format_day),
        days: usage::usage_days(&counts)
            .into_iter()
            .map(|((deployment_id, day), figures)| UsageDayReport {
                deployment_id,
                day: usage::format_day(day),
                complete: is_complete(day),
                events_accepted: figures.events_accepted,
                events_refused: figures.events_refused,
                new_sessions: figures.new_sessions,
                total_sessions: figures.total_sessions,
                identified_sessions: figures.identified_sessions,
            })
            .collect(),
    })
}

/// `GET /api/v2/footpath/usage`: `from` and `to` are UTC days (`YYYY-MM-DD`, both
/// included, at most [`usage::MAX_RANGE_DAYS`] apart; `to` defaults to today and
/// `from` to 29 days before `to`); `deploymentId` keeps one deployment.
pub(super) async fn get_usage(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<UsageReport>, ApiError> {
    Ok(Json(usage_report(&state, query.as_deref()).await?))
}
