//! What an operator watches: the collector's metrics, served at `GET /metrics` in the
//! Prometheus text format (version 0.0.4).
//!
//! Each collector ([`crate::AppState`]) owns one [`Metrics`]: a `prometheus-client`
//! registry and handles to what is in it. There is no global registry, so collectors
//! that share a process (the integration tests) count apart.
//!
//! The ingest path only touches atomics: every counter that ingest moves is created
//! when the collector starts and kept as a handle (an `Arc` of an atomic), the refusal
//! reasons are a fixed enum that indexes an array of those handles, and a batch adds
//! its counts once per outcome, not once per event. The two histograms that ingest
//! feeds (`ingest_duration_seconds` once per request, `ingest_batches_per_commit` once
//! per commit) take the histogram's short lock, never per event. Gauges that cost a
//! query or a file lookup (live sessions, database size) are read when scraped.
//!
//! The metrics (all prefixed `footpath_`):
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `http_requests_total{route, status}` | counter | requests answered, by the route's template (`/sdk/v1/batch`, `/api/v2/journey/sessions/{session_id}`, `other` for unknown paths) and status class (`2xx`...`5xx`) |
//! | `events_accepted_total` | counter | events stored (SDK batches and web events) |
//! | `events_duplicate_total` | counter | events not stored again: their id was already stored (a retried batch) |
//! | `events_refused_total{reason}` | counter | events not stored, by [`RefusalReason`] |
//! | `ingest_duration_seconds{endpoint}` | histogram | from the request's arrival to its answer, for ingest requests whose events went to the database (`batch`, `webevent`) |
//! | `ingest_queue_batches` | gauge | batches waiting for the database writer |
//! | `ingest_batches_per_commit` | histogram | batches stored by each commit of the writer (group commit) |
//! | `live_sessions` | gauge | sessions neither ended nor idle for the session timeout |
//! | `desk_streams_open` | gauge | agents' desks connected to the live stream |
//! | `database_size_bytes` | gauge | the database file and its write-ahead log |

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::error::ApiError;

/// The `Content-Type` of `GET /metrics`.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Why events were not stored: a small fixed set, so that the label never carries what
/// a visitor sent. Events are counted once the collector has read the request that
/// carries them (an SDK batch once its JSON is parsed, a web event once its body is
/// JSON); a request refused before that (too large, too slow, not JSON, no ingest
/// place free) shows only in `http_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// The event, or the request around it, is malformed (a validation error, a bad
    /// `visitorId`, a batch over `max_events_per_batch`).
    Invalid,
    /// The event is over a size limit (names, values, page fields).
    TooLarge,
    /// The visitor's or the client address's rate limit (429).
    RateLimited,
    /// The request's `Origin` may not send for the deployment (403).
    OriginNotAllowed,
    /// The request names no configured deployment (404).
    UnknownDeployment,
    /// Dropped by the deployment's `ip_exclusions` (answered 204).
    IpExcluded,
    /// Dropped because the browser sent Global Privacy Control (`Sec-GPC: 1`) and the
    /// deployment honours it (answered 204).
    PrivacySignal,
    /// The writer's queue was full (503).
    Overloaded,
    /// The store failed (500).
    Failed,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 9] = [
        RefusalReason::Invalid,
        RefusalReason::TooLarge,
        RefusalReason::RateLimited,
        RefusalReason::OriginNotAllowed,
        RefusalReason::UnknownDeployment,
        RefusalReason::IpExcluded,
        RefusalReason::PrivacySignal,
        RefusalReason::Overloaded,
        RefusalReason::Failed,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Invalid => "invalid",
            RefusalReason::TooLarge => "too_large",
            RefusalReason::RateLimited => "rate_limited",
            RefusalReason::OriginNotAllowed => "origin_not_allowed",
            RefusalReason::UnknownDeployment => "unknown_deployment",
            RefusalReason::IpExcluded => "ip_excluded",
            RefusalReason::PrivacySignal => "privacy_signal",
            RefusalReason::Overloaded => "overloaded",
            RefusalReason::Failed => "failed",
        }
    }

    /// The reason a whole request's events were refused for, by the error it is
    /// answered with. `None` for [`ApiError::AllEventsRejected`], whose events were
    /// counted one by one, and for errors that ingest does not answer after reading.
    pub fn of_error(error: &ApiError) -> Option<RefusalReason> {
        match error {
            ApiError::AllEventsRejected { .. } => None,
            ApiError::BadRequest(_)
            | ApiError::UnsupportedMediaType(_)
            | ApiError::RequestTimeout(_) => Some(RefusalReason::Invalid),
            ApiError::PayloadTooLarge(_) => Some(RefusalReason::TooLarge),
            ApiError::RateLimited { .. } => Some(RefusalReason::RateLimited),
            ApiError::OriginNotAllowed(_) => Some(RefusalReason::OriginNotAllowed),
            ApiError::DeploymentNotFound(_) => Some(RefusalReason::UnknownDeployment),
            ApiError::Unavailable { .. } => Some(RefusalReason::Overloaded),
            ApiError::Internal(_) => Some(RefusalReason::Failed),
            ApiError::Unauthorized | ApiError::NotFound(_) => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl EncodeLabelValue for RefusalReason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// Counts of refused events by reason, kept on the stack while a request is handled and
/// added to the counters once.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RefusalCounts([u64; RefusalReason::ALL.len()]);

impl RefusalCounts {
    pub fn add(&mut self, reason: RefusalReason, events: u64) {
        self.0[reason.index()] += events;
    }

    /// The events refused for `reason` (the usage counts take them per deployment).
    pub fn get(&self, reason: RefusalReason) -> u64 {
        self.0[reason.index()]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusalLabels {
    reason: RefusalReason,
}

/// The ingest endpoints whose latency is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IngestEndpoint {
    /// `POST /sdk/v1/batch`.
    Batch,
    /// `POST /api/v2/journey/deployments/{deploymentId}/webevents`.
    WebEvent,
}

impl EncodeLabelValue for IngestEndpoint {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            IngestEndpoint::Batch => "batch",
            IngestEndpoint::WebEvent => "webevent",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct IngestLabels {
    endpoint: IngestEndpoint,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HttpLabels {
    /// The route's template, never the path as sent: bounded, and free of ids.
    route: String,
    status: &'static str,
}

/// What a group-committing store writer reports: made by the store, registered by
/// [`Metrics::new`]. Both are shared handles, cheap to clone.
#[derive(Debug, Clone)]
pub struct WriterMetrics {
    /// Batches waiting for the writer.
    pub queued_batches: Gauge,
    /// Batches per commit.
    pub batches_per_commit: Histogram,
}

impl Default for WriterMetrics {
    fn default() -> WriterMetrics {
        WriterMetrics {
            queued_batches: Gauge::default(),
            // Up to `max_batches_per_transaction`'s default of 256.
            batches_per_commit: Histogram::new([
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0,
            ]),
        }
    }
}

/// From 1 ms (a commit's fsync) to 10 s (a slow client's body, a stalled disk).
fn latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// What the store tells at scrape time (see [`crate::store::Store::gauges`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreGauges {
    pub live_sessions: u64,
    /// `None` when the store has no file to measure (an in-memory database).
    pub database_size_bytes: Option<u64>,
}

/// The collector's metrics: see the module documentation.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    events_accepted: Counter,
    events_duplicate: Counter,
    events_refused: [Counter; RefusalReason::ALL.len()],
    ingest_duration_batch: Histogram,
    ingest_duration_web_event: Histogram,
    live_sessions: Gauge,
    desk_streams_open: Gauge,
    database_size_bytes: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with every metric in it, the store's writer metrics included.
    pub fn new(writer: WriterMetrics) -> Metrics {
        let mut registry = Registry::with_prefix("footpath");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template and status class",
            http_requests.clone(),
        );
        let events_accepted = Counter::default();
        registry.register("events_accepted", "Events stored", events_accepted.clone());
        let events_duplicate = Counter::default();
        registry.register(
            "events_duplicate",
            "Events whose id was already stored (retries), not stored again",
            events_duplicate.clone(),
        );
        let refused = Family::<RefusalLabels, Counter>::default();
        let events_refused =
            RefusalReason::ALL.map(|reason| refused.get_or_create_owned(&RefusalLabels { reason }));
        registry.register("events_refused", "Events not stored, by reason", refused);
        let ingest_duration =
            Family::<IngestLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        let ingest_duration_batch = ingest_duration.get_or_create_owned(&IngestLabels {
            endpoint: IngestEndpoint::Batch,
        });
        let ingest_duration_web_event = ingest_duration.get_or_create_owned(&IngestLabels {
            endpoint: IngestEndpoint::WebEvent,
        });
        registry.register_with_unit(
            "ingest_duration",
            "Time from an ingest request's arrival to its answer, once its events were committed",
            Unit::Seconds,
            ingest_duration,
        );
        registry.register(
            "ingest_queue_batches",
            "Batches waiting for the database writer",
            writer.queued_batches,
        );
        registry.register(
            "ingest_batches_per_commit",
            "Batches stored by each commit of the database writer",
            writer.batches_per_commit,
        );
        let live_sessions = Gauge::default();
        registry.register(
            "live_sessions",
            "Sessions neither ended nor idle for the session timeout",
            live_sessions.clone(),
        );
        let desk_streams_open = Gauge::default();
        registry.register(
            "desk_streams_open",
            "Agents' desks connected to the live stream",
            desk_streams_open.clone(),
        );
        let database_size_bytes = Gauge::default();
        registry.register_with_unit(
            "database_size",
            "Size of the database file and its write-ahead log",
            Unit::Bytes,
            database_size_bytes.clone(),
        );
        Metrics {
            registry,
            http_requests,
            events_accepted,
            events_duplicate,
            events_refused,
            ingest_duration_batch,
            ingest_duration_web_event,
            live_sessions,
            desk_streams_open,
            database_size_bytes,
        }
    }

    /// Counts one answered request. `route` is the matched route's template, or
    /// `other`.
    pub fn count_request(&self, route: &str, status: u16) {
        let status = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        let labels = HttpLabels {
            route: route.to_owned(),
            status,
        };
        self.http_requests.get_or_create(&labels).inc();
    }

    /// Adds the outcomes of one ingest request.
    pub fn count_events(&self, accepted: u64, duplicates: u64, refused: &RefusalCounts) {
        if accepted > 0 {
            self.events_accepted.inc_by(accepted);
        }
        if duplicates > 0 {
            self.events_duplicate.inc_by(duplicates);
        }
        for (counter, &events) in self.events_refused.iter().zip(&refused.0) {
            if events > 0 {
                counter.inc_by(events);
            }
        }
    }

    /// Counts `events` refused for one reason.
    pub fn count_refused(&self, reason: RefusalReason, events: u64) {
        if events > 0 {
            self.events_refused[reason.index()].inc_by(events);
        }
    }

    /// Records how long an ingest request took, from its arrival to its answer.
    pub fn observe_ingest(&self, endpoint: IngestEndpoint, elapsed: std::time::Duration) {
        let histogram = match endpoint {
            IngestEndpoint::Batch => &self.ingest_duration_batch,
            IngestEndpoint::WebEvent => &self.ingest_duration_web_event,
        };
        histogram.observe(elapsed.as_secs_f64());
    }

    /// The text of `GET /metrics`, with the scrape-time gauges set first.
    pub fn render(&self, store: StoreGauges, desk_streams_open: usize) -> String {
        self.live_sessions
            .set(i64::try_from(store.live_sessions).unwrap_or(i64::MAX));
        self.desk_streams_open
            .set(i64::try_from(desk_streams_open).unwrap_or(i64::MAX));
        if let Some(bytes) = store.database_size_bytes {
            self.database_size_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        let mut text = String::with_capacity(8 * 1024);
        if prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry).is_err()
        {
            // Writing into a String does not fail; an encoder error would leave a
            // partial text, which a scraper must not read as complete.
            text.clear();
            let _ = writeln!(text, "# the metrics could not be encoded");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_reasons_index_their_own_counters() {
        for (position, reason) in RefusalReason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), position, "{reason:?}");
        }
    }

    #[test]
    fn counters_end_in_total_and_units_are_in_names() {
        let metrics = Metrics::new(WriterMetrics::default());
        let mut refused = RefusalCounts::default();
        refused.add(RefusalReason::TooLarge, 2);
        metrics.count_events(3, 1, &refused);
        metrics.count_request("/sdk/v1/batch", 200);
        metrics.observe_ingest(IngestEndpoint::Batch, std::time::Duration::from_millis(3));
        let text = metrics.render(
            StoreGauges {
                live_sessions: 4,
                database_size_bytes: Some(8192),
            },
            1,
        );
        for line in [
            "footpath_events_accepted_total 3",
            "footpath_events_duplicate_total 1",
            "footpath_events_refused_total{reason=\"too_large\"} 2",
            "footpath_events_refused_total{reason=\"rate_limited\"} 0",
            "footpath_http_requests_total{route=\"/sdk/v1/batch\",status=\"2xx\"} 1",
            "footpath_ingest_duration_seconds_count{endpoint=\"batch\"} 1",
            "footpath_ingest_duration_seconds_count{endpoint=\"webevent\"} 0",
            "footpath_live_sessions 4",
            "footpath_desk_streams_open 1",
            "footpath_database_size_bytes 8192",
            "footpath_ingest_queue_batches 0",
            "footpath_ingest_batches_per_commit_count 0",
        ] {
            assert!(
                text.lines().any(|candidate| candidate == line),
                "no line {line:?} in\n{text}"
            );
        }
    }
}
