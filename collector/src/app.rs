//! The HTTP side: application state, the router, and the server loop.
//!
//! API Boundary: the paths served here are public contracts. `/sdk/v1/batch` is spoken
//! by every deployed copy of the SDK, and `/api/v2/journey/...` follows the Journey API
//! (`shared/reference/journey-api.md`) so that existing integrations can point at us.

mod auth;
mod batch;
mod compressed;
mod contacts;
mod deadline;
// Retention and usage counts, in the background (crate::privacy).
mod housekeeping;
mod ops;
mod pagination;
mod pipeline;
// Erasing and exporting one person's data (crate::privacy).
mod privacy;
mod read;
// Usage per deployment and day (crate::usage); the desk's usage page reads it too.
pub(crate) mod usage;
mod webevents;
// Segment and outcome definitions (crate::segments).
mod segments;

use crate::limits::ConnectionsPerAddress;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue};
use axum::routing::{get, post};
use axum::{middleware, Router};
use footpath_protocol::v1::BATCH_PATH;
use tower::ServiceBuilder;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::clock::Clock;
use crate::config::{Config, Database};
use crate::enrich::geo::GeoIpDatabase;
use crate::enrich::referrer::ReferrerList;
use crate::enrich::user_agent;
use crate::error::ApiError;
use crate::limits::RateLimits;
use crate::metrics::Metrics;
use crate::store::{
    IngestQueueSettings, PostgresSettings, PostgresStore, SessionLimits, SqliteStore, Store,
};

/// Everything a handler needs. Cheap to clone: every field is shared.
#[derive(Clone)]
pub struct AppState {
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
    /// Open when `geoip_database_path` is configured.
    geoip: Option<Arc<GeoIpDatabase>>,
    /// The embedded referrer list with `referrer_list_path`'s file added, when one is
    /// configured; `None`: the embedded list alone.
    referrer_list: Option<Arc<ReferrerList>>,
    /// Events dropped by deployments' IP exclusions since startup.
    excluded_events: Arc<AtomicU64>,
    /// The agents' desk: sign-ins, live channel, presentation settings.
    desk: Arc<crate::desk::Desk>,
    /// Events-per-minute limits per visitor and per client address.
    rate_limits: Arc<RateLimits>,
    /// Pings-per-minute limits per visitor and per client address.
    ping_rate_limits: Arc<RateLimits>,
    /// One permit per ingest request in flight (`max_concurrent_ingest_requests`).
    ingest_permits: Arc<tokio::sync::Semaphore>,
    /// What `GET /metrics` serves (see [`crate::metrics`]).
    metrics: Arc<Metrics>,
    /// Set by [`serve`] once its shutdown signal has come: `/readyz` answers 503.
    shutting_down: Arc<AtomicBool>,
    /// Refused events per deployment and day, until housekeeping stores them.
    refusal_tally: Arc<crate::usage::RefusalTally>,
    /// Passes what the other collectors on the database tell to the desk, while any
    /// clone of the state lives; `None` on a backend of one collector (SQLite).
    _peer_listener: Option<Arc<crate::peers::PeerListener>>,
}

impl AppState {
    /// Checks the configuration, opens (or creates and migrates) the database that
    /// `config.database()` names (SQLite or PostgreSQL), and opens the GeoIP database
    /// when one is configured.
    pub fn new(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
        config.validate()?;
        let queue = IngestQueueSettings {
            capacity_batches: config.ingest_queue_capacity_batches,
            max_batches_per_transaction: config.max_batches_per_transaction,
        };
        let limits = SessionLimits {
            max_events_per_session: config.max_events_per_session,
            max_search_terms_per_session: config.max_search_terms_per_session,
            ..SessionLimits::default()
        };
        match config.database()? {
            Database::Sqlite(path) => {
                let store = SqliteStore::open_with(&path, queue, limits)?;
                AppState::with_store(config, clock, Arc::new(store))
            }
            Database::Postgres(url) => {
                let settings = PostgresSettings {
                    queue_capacity_batches: config.ingest_queue_capacity_batches,
                    writers: config.postgres_writers,
                    read_connections: u32::try_from(config.postgres_read_connections)
                        .unwrap_or(u32::MAX),
                };
                // The `postgres` client blocks on a small runtime of its own, which
                // cannot start inside the caller's async task (`main` is one): the
                // store is opened and first used (definitions, desk presentation) on
                // a plain thread. Later calls come from blocking threads.
                std::thread::scope(|scope| {
                    scope
                        .spawn(move || {
                            let now_ms = clock.now_ms();
                            let store = PostgresStore::open(&url, settings, limits, now_ms)?;
                            AppState::with_store(config, clock, Arc::new(store))
                        })
                        .join()
                })
                .map_err(|_| anyhow::anyhow!("opening the PostgreSQL store panicked"))?
            }
        }
    }

    /// State over any store: the seam where another backend plugs in. Fails when the
    /// configured GeoIP database or referrer list cannot be read, or the user-agent
    /// rules do not load.
    pub fn with_store(
        config: Config,
        clock: Arc<dyn Clock>,
        store: Arc<dyn Store>,
    ) -> anyhow::Result<AppState> {
        user_agent::check_rules().map_err(anyhow::Error::msg)?;
        let geoip = match &config.geoip_database_path {
            Some(path) => {
                let database = GeoIpDatabase::open(path)?;
                tracing::info!(
                    path = %path.display(),
                    database_type = database.database_type(),
                    "opened the GeoIP database"
                );
                Some(Arc::new(database))
            }
            None => None,
        };
        let referrer_list = match &config.referrer_list_path {
            Some(path) => {
                let list = ReferrerList::embedded_with_file(path)?;
                tracing::info!(
                    path = %path.display(),
                    known_hosts = list.len(),
                    "loaded the referrer list"
                );
                Some(Arc::new(list))
            }
            None => None,
        };
        // The configuration file's `[[segments]]` and `[[outcomes]]`, created or updated
        // by id (see crate::segments).
        store.load_configured_definitions(&config.configured_definitions()?, clock.now_ms())?;
        let presentation = crate::desk::Desk::startup_presentation(&config, store.as_ref())?;
        let desk = Arc::new(crate::desk::Desk::new(
            &config,
            Arc::clone(&clock),
            presentation,
            Arc::clone(&store),
        )?);
        // The listener holds neither the desk nor the store, so that dropping the
        // state still closes the store.
        let peer_listener = {
            let desk = Arc::downgrade(&desk);
            let weak_store = Arc::downgrade(&store);
            store.listen_to_peers(Box::new(move |message| {
                if let (Some(desk), Some(store)) = (desk.upgrade(), weak_store.upgrade()) {
                    desk.receive_from_peer(store.as_ref(), message);
                }
            }))?
        };
        let rate_limits = Arc::new(RateLimits::new(&config, Arc::clone(&clock)));
        let ping_rate_limits = Arc::new(RateLimits::for_pings(&config, Arc::clone(&clock)));
        let ingest_permits = Arc::new(tokio::sync::Semaphore::new(
            config.max_concurrent_ingest_requests,
        ));
        let metrics = Arc::new(Metrics::new(store.writer_metrics()));
        Ok(AppState {
            config: Arc::new(config),
            clock,
            store,
            geoip,
            referrer_list,
            excluded_events: Arc::new(AtomicU64::new(0)),
            desk,
            rate_limits,
            ping_rate_limits,
            ingest_permits,
            metrics,
            shutting_down: Arc::new(AtomicBool::new(false)),
            refusal_tally: Arc::default(),
            _peer_listener: peer_listener.map(Arc::new),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The agents' desk of this collector, shared by every clone of the state.
    pub fn desk(&self) -> &Arc<crate::desk::Desk> {
        &self.desk
    }

    /// How many events deployments' IP exclusions dropped since startup.
    pub fn excluded_events_total(&self) -> u64 {
        self.excluded_events.load(Ordering::Relaxed)
    }

    fn count_excluded_events(&self, events: u64) {
        self.excluded_events.fetch_add(events, Ordering::Relaxed);
    }

    /// The collector's metrics, which ingest counts into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether [`serve`] has had its shutdown signal (`/readyz` then answers 503).
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    fn rate_limits(&self) -> &RateLimits {
        &self.rate_limits
    }

    fn ping_rate_limits(&self) -> &RateLimits {
        &self.ping_rate_limits
    }

    /// A place among the ingest requests in flight, or 503 when all are taken: taken
    /// once the body has fully arrived (so that slow clients hold connections, which
    /// `max_open_connections` caps, but never this), then held through validation and
    /// the commit, rather than queued without bound.
    fn ingest_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.ingest_permits)
            .try_acquire_owned()
            .map_err(|_| ApiError::Unavailable {
                message: format!(
                    "more than {} ingest requests are in flight; retry shortly",
                    self.config.max_concurrent_ingest_requests
                ),
                retry_after_seconds: 1,
            })
    }

    fn geoip(&self) -> Option<&GeoIpDatabase> {
        self.geoip.as_deref()
    }

    /// The referrers that events are classified by.
    pub fn referrer_list(&self) -> &ReferrerList {
        self.referrer_list
            .as_deref()
            .unwrap_or_else(|| ReferrerList::embedded())
    }

    /// The store, for tests and tools that drive it directly (such as calling
    /// [`Store::close_idle_sessions`] at a chosen time).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Runs a store operation on the blocking thread pool, since store calls do
    /// synchronous disk IO.
    async fn with_store_blocking<T, F>(&self, operation: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        let result = tokio::task::spawn_blocking(move || operation(store.as_ref())).await?;
        Ok(result?)
    }
}

/// The whole HTTP API:
///
/// | route | status codes |
/// |---|---|
/// | `POST /sdk/v1/batch` (204: dropped by the deployment's IP exclusions; 429, 503 with `Retry-After`) | 200, 204, 400, 403, 404, 408, 413, 415, 429, 500, 503 |
/// | `OPTIONS /sdk/v1/batch` (CORS preflight) | 204, 403 |
/// | `GET /sdk/v1/session?deploymentId=&visitorId=` (the visitor's live session: `{id, shortId}`; 429 with `Retry-After`) | 200, 400, 403, 404, 429 |
/// | `GET /sdk/{*file}` (the SDK's files) | 200, 304, 404 |
/// | `GET /healthz` (liveness) | 200 |
/// | `GET /readyz` (readiness: database reachable and migrated, not shutting down) | 200, 503 |
/// | `GET /metrics` (Prometheus text; bearer token unless `metrics_require_token = false`) | 200, 401 |
/// | `GET /api/v2/journey/sessions` (Footpath extension) | 200, 400, 401 |
/// | `GET /api/v2/journey/sessions/{sessionId}` | 200, 401, 404 |
/// | `GET /api/v2/journey/sessions/{sessionId}/events` | 200, 400, 401, 404 |
/// | `POST /api/v2/externalcontacts/contacts` | 201, 400, 401 |
/// | `GET /api/v2/externalcontacts/contacts` (search `q`, `pageSize`, `pageNumber`) | 200, 400, 401 |
/// | `GET /api/v2/externalcontacts/contacts/{contactId}` | 200, 401, 404 |
/// | `PUT /api/v2/externalcontacts/contacts/{contactId}` | 200, 400, 401, 404 |
/// | `DELETE /api/v2/externalcontacts/contacts/{contactId}` | 204, 401, 404 |
/// | `GET /api/v2/externalcontacts/contacts/{contactId}/journey/sessions` | 200, 400, 401, 404 |
/// | `GET /api/v2/footpath/stats` (Footpath extension: `{"excludedEventsTotal"}`) | 200, 401 |
/// | `GET /api/v2/footpath/usage` (`from`, `to`, `deploymentId`; see `crate::usage`) | 200, 400, 401 |
/// | `POST /api/v2/footpath/privacy/contacts/{contactId}/erase`, `.../deployments/{deploymentId}/visitors/{customerCookieId}/erase` (see `crate::privacy`) | 200, 400, 401, 404 |
/// | `GET /api/v2/footpath/privacy/contacts/{contactId}/export`, `.../deployments/{deploymentId}/visitors/{customerCookieId}/export` (`pageSize`, `after`: pages of at most 1,000 events and 2 MiB, see `crate::privacy`) | 200, 400, 401, 404 |
/// | `GET`/`POST /api/v2/journey/{segments,outcomes}`, `GET`/`PATCH`/`DELETE .../{id}` (see `app/segments.rs`) | 200, 201, 204, 400, 401, 404 |
/// | `POST /api/v2/journey/deployments/{deploymentId}/webevents` (public; 204: dropped by IP exclusions) | 200, 204, 400, 403, 404, 408, 413, 415, 429, 500, 503 |
/// | `OPTIONS /api/v2/journey/deployments/{deploymentId}/webevents` (CORS preflight) | 204, 403, 404 |
/// | `GET /api/v2/journey/deployments/{deploymentId}/customers/{customerCookieId}/ping` (public; 429 with `Retry-After`) | 200, 400, 403, 404, 429 |
/// | `GET /api/v2/footpath/openapi.json` (public: the OpenAPI document of all of this) | 200 |
///
/// Every request that may carry a body must have sent all of it within
/// `body_read_timeout_seconds` of its head (see `app/deadline.rs`).
///
/// The OpenAPI document (`collector/openapi.json`, see [`crate::openapi`]) describes
/// every route, and the integration tests check every response they see against it.
pub fn router(state: AppState) -> Router {
    // The browser loads the SDK's wasm with `fetch` from the site's origin, so the
    // files must be readable cross-origin. They are versioned by deployment, not by
    // name, hence the short cache lifetime.
    let sdk_files = ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        ))
        // A cross-origin isolated page (`Cross-Origin-Embedder-Policy: require-corp`)
        // loads the snippet's `<script>` without CORS: it runs only with this header.
        .layer(SetResponseHeaderLayer::overriding(
            header::HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("cross-origin"),
        ))
        .service(
            ServeDir::new(&state.config.sdk_dir)
                .precompressed_gzip()
                .precompressed_br(),
        );

    let read_api = Router::new()
        .route("/api/v2/journey/sessions", get(read::list_sessions))
        .route(
            "/api/v2/journey/sessions/{session_id}",
            get(read::get_session),
        )
        .route(
            "/api/v2/journey/sessions/{session_id}/events",
            get(read::list_session_events),
        )
        .route(
            "/api/v2/externalcontacts/contacts",
            get(contacts::list_contacts).post(contacts::create_contact),
        )
        .route(
            "/api/v2/externalcontacts/contacts/{contact_id}",
            get(contacts::get_contact)
                .put(contacts::replace_contact)
                .delete(contacts::delete_contact),
        )
        .route(
            "/api/v2/externalcontacts/contacts/{contact_id}/journey/sessions",
            get(contacts::list_contact_sessions),
        )
        .route("/api/v2/footpath/stats", get(read::stats))
        .route("/api/v2/footpath/usage", get(usage::get_usage))
        // Data rights (app/privacy.rs).
        .route(
            "/api/v2/footpath/privacy/contacts/{contact_id}/erase",
            post(privacy::erase_contact),
        )
        .route(
            "/api/v2/footpath/privacy/contacts/{contact_id}/export",
            get(privacy::export_contact),
        )
        .route(
            "/api/v2/footpath/privacy/deployments/{deployment_id}/visitors/{customer_cookie_id}/erase",
            post(privacy::erase_visitor),
        )
        .route(
            "/api/v2/footpath/privacy/deployments/{deployment_id}/visitors/{customer_cookie_id}/export",
            get(privacy::export_visitor),
        )
        // Segment and outcome definitions (app/segments.rs).
        .route(
            "/api/v2/journey/segments",
            get(segments::list_segments).post(segments::create_segment),
        )
        .route(
            "/api/v2/journey/segments/{segment_id}",
            get(segments::get_segment)
                .patch(segments::patch_segment)
                .delete(segments::delete_segment),
        )
        .route(
            "/api/v2/journey/outcomes",
            get(segments::list_outcomes).post(segments::create_outcome),
        )
        .route(
            "/api/v2/journey/outcomes/{outcome_id}",
            get(segments::get_outcome)
                .patch(segments::patch_outcome)
                .delete(segments::delete_outcome),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_bearer_token,
        ));

    let mut metrics = Router::new().route("/metrics", get(ops::metrics));
    if state.config.metrics_require_token {
        metrics = metrics.route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_bearer_token,
        ));
    }

    Router::new()
        .route(
            BATCH_PATH,
            post(batch::receive_batch).options(batch::preflight),
        )
        .route(
            "/api/v2/journey/deployments/{deployment_id}/webevents",
            post(webevents::receive_web_event).options(webevents::web_event_preflight),
        )
        .route(
            "/api/v2/journey/deployments/{deployment_id}/customers/{customer_cookie_id}/ping",
            get(webevents::ping),
        )
        .route("/sdk/v1/session", get(webevents::session_reference))
        .route(
            crate::openapi::OPENAPI_PATH,
            get(crate::openapi::serve_document),
        )
        .nest_service("/sdk", sdk_files)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ops::readyz))
        .merge(metrics)
        .merge(read_api)
        .merge(crate::desk::router(state.clone()))
        .fallback(|| async { ApiError::NotFound("no such resource".to_owned()) })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            deadline::body_deadline,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            ops::count_requests,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(ops::request_span))
        // Outermost, so that the span above and every handler see the settled id.
        .layer(middleware::from_fn(ops::request_id))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes; from then on `/readyz`
/// answers 503, the server goes on accepting for `shutdown_drain_seconds` (so that a
/// load balancer polling `/readyz` moves traffic away first), then stops accepting and
/// lets requests in flight finish (for at most `shutdown_grace_seconds`); a batch that
/// was acknowledged is committed before its answer is sent, so stopping loses nothing
/// that a client was told is stored. The socket address of each client reaches the
/// handlers (events record the client's IP). A background task ends idle sessions
/// every `sweep_interval_seconds`, by the state's clock; another applies deployments'
/// retention (`app/housekeeping.rs`).
///
/// The loop is hyper's own HTTP/1 connection builder rather than `axum::serve`, for
/// `header_read_timeout`: a client that trickles its request head is disconnected
/// after `header_read_timeout_seconds`; and for `max_buf_size`: a request head larger
/// than `max_request_head_bytes` is answered 431. At most `max_open_connections` are
/// open at once: a connection accepted past the cap is closed at once (the client sees
/// the connection reset or closed, and retries), so that idle or slow connections
/// cannot take every file descriptor, and those already open keep being served.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt as _;

    let sweeper = tokio::spawn(sweep_idle_sessions(state.clone()));
    let housekeeper = tokio::spawn(housekeeping::run(state.clone()));
    let app = router(state.clone());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(
            state.config.header_read_timeout_seconds,
        ))
        .max_buf_size(state.config.max_request_head_bytes);
    let open_connections = Arc::new(tokio::sync::Semaphore::new(
        state.config.max_open_connections,
    ));
    let connections_per_address = Arc::new(ConnectionsPerAddress::default());
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    let stop_accepting = {
        let shutting_down = Arc::clone(&state.shutting_down);
        let drain = Duration::from_secs(state.config.shutdown_drain_seconds);
        async move {
            shutdown.await;
            shutting_down.store(true, Ordering::Relaxed);
            if !drain.is_zero() {
                tracing::info!(
                    drain_seconds = drain.as_secs(),
                    "not ready; still accepting while load balancers move traffic away"
                );
                tokio::time::sleep(drain).await;
            }
        }
    };
    let mut shutdown = std::pin::pin!(stop_accepting);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(open_connection) = Arc::clone(&open_connections).try_acquire_owned() else {
            tracing::debug!(
                %peer,
                max_open_connections = state.config.max_open_connections,
                "too many open connections; closing a new one"
            );
            drop(stream);
            continue;
        };
        // One host must not take every place: each address holds at most its share
        // (trusted proxies, which speak for many clients, are exempt).
        let per_address = state.config.max_connections_per_address;
        let address_place = if per_address == 0
            || crate::enrich::client_ip::in_any(&state.config.trusted_proxies, peer.ip())
        {
            None
        } else {
            match ConnectionsPerAddress::take(&connections_per_address, peer.ip(), per_address) {
                Some(place) => Some(place),
                None => {
                    tracing::debug!(
                        max_connections_per_address = per_address,
                        "too many open connections from one address; closing a new one"
                    );
                    drop(stream);
                    continue;
                }
            }
        };
        // Responses are small and written at once; waiting for more (Nagle) would only
        // add latency.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: axum::http::Request<_>| {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        let connection = connections.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(open_connection);
            drop(address_place);
        });
    }
    drop(listener);
    state.desk.close_streams();
    tracing::info!(
        connections = connections.count(),
        "stopped accepting; finishing requests in flight"
    );
    let grace = Duration::from_secs(state.config.shutdown_grace_seconds);
    if tokio::time::timeout(grace, connections.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_seconds = grace.as_secs(),
            "connections still open after the grace period; stopping anyway"
        );
    }
    sweeper.abort();
    housekeeper.abort();
    housekeeping::flush_refusals(&state).await;
    tracing::info!(
        excluded_events_total = state.excluded_events_total(),
        "server stopped"
    );
    Ok(())
}

async fn sweep_idle_sessions(state: AppState) {
    let period = Duration::from_secs(state.config.sweep_interval_seconds.max(1));
    let mut interval = tokio::time::interval(period);
    // After a stall (a suspended laptop), one sweep catches up on everything.
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        state.rate_limits.forget_idle_keys();
        state.desk.forget_idle_sign_in_limits();
        state.ping_rate_limits.forget_idle_keys();
        let now_ms = state.clock.now_ms();
        let timeout_ms = state.config.session_timeout_ms();
        let swept = state
            .with_store_blocking(move |store| store.close_idle_sessions(now_ms, timeout_ms))
            .await;
        match swept {
            Ok(0) => {}
            Ok(ended) => tracing::info!(ended, "ended idle sessions"),
            Err(error) => tracing::error!(error = %error, "idle session sweep failed"),
        }
    }
}
