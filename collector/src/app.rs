//! The HTTP side: application state, the router, and the server loop.
//!
//! API Boundary: the paths served here are public contracts. `/sdk/v1/batch` is spoken
//! by every deployed copy of the SDK, and `/api/v2/journey/...` follows the Journey API
//! (`shared/reference/journey-api.md`) so that existing integrations can point at us.

mod auth;
mod batch;
mod contacts;
mod read;
mod webevents;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
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
use crate::config::Config;
use crate::enrich::geo::GeoIpDatabase;
use crate::enrich::user_agent;
use crate::error::ApiError;
use crate::store::{SqliteStore, Store};

/// Everything a handler needs. Cheap to clone: every field is shared.
#[derive(Clone)]
pub struct AppState {
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
    /// Open when `geoip_database_path` is configured.
    geoip: Option<Arc<GeoIpDatabase>>,
    /// Events dropped by deployments' IP exclusions since startup.
    excluded_events: Arc<AtomicU64>,
    /// The agents' desk: sign-ins, live channel, presentation settings.
    desk: Arc<crate::desk::Desk>,
}

impl AppState {
    /// Checks the configuration, opens (or creates and migrates) the SQLite database at
    /// `config.database_path`, and opens the GeoIP database when one is configured.
    pub fn new(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
        config.validate()?;
        let store = SqliteStore::open(&config.database_path)?;
        AppState::with_store(config, clock, Arc::new(store))
    }

    /// State over any store: the seam where another backend plugs in. Fails when the
    /// configured GeoIP database cannot be read, or the user-agent rules do not load.
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
        let desk = Arc::new(crate::desk::Desk::new(&config, clock.now_ms()));
        Ok(AppState {
            config: Arc::new(config),
            clock,
            store,
            geoip,
            excluded_events: Arc::new(AtomicU64::new(0)),
            desk,
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

    fn geoip(&self) -> Option<&GeoIpDatabase> {
        self.geoip.as_deref()
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
/// | `POST /sdk/v1/batch` (204: dropped by the deployment's IP exclusions) | 200, 204, 400, 403, 404, 413, 415, 500 |
/// | `OPTIONS /sdk/v1/batch` (CORS preflight) | 204, 403 |
/// | `GET /sdk/{*file}` (the SDK's files) | 200, 304, 404 |
/// | `GET /healthz` | 200 |
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
/// | `POST /api/v2/journey/deployments/{deploymentId}/webevents` (public; 204: dropped by IP exclusions) | 200, 204, 400, 403, 404, 413, 415, 500 |
/// | `OPTIONS /api/v2/journey/deployments/{deploymentId}/webevents` (CORS preflight) | 204, 403, 404 |
/// | `GET /api/v2/journey/deployments/{deploymentId}/customers/{customerCookieId}/ping` (public) | 200, 400, 403, 404 |
/// | `GET /api/v2/footpath/openapi.json` (public: the OpenAPI document of all of this) | 200 |
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
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_bearer_token,
        ));

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
        .route(
            crate::openapi::OPENAPI_PATH,
            get(crate::openapi::serve_document),
        )
        .nest_service("/sdk", sdk_files)
        .route("/healthz", get(|| async { "ok" }))
        .merge(read_api)
        .merge(crate::desk::router(state.clone()))
        .fallback(|| async { ApiError::NotFound("no such resource".to_owned()) })
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, then lets requests in
/// flight finish. The socket address of each client reaches the handlers (events
/// record the client's IP). A background task ends idle sessions every
/// `sweep_interval_seconds`, by the state's clock.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let sweeper = tokio::spawn(sweep_idle_sessions(state.clone()));
    let service = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await;
    sweeper.abort();
    tracing::info!(
        excluded_events_total = state.excluded_events_total(),
        "server stopped"
    );
    result?;
    Ok(())
}

async fn sweep_idle_sessions(state: AppState) {
    let period = Duration::from_secs(state.config.sweep_interval_seconds.max(1));
    let mut interval = tokio::time::interval(period);
    // After a stall (a suspended laptop), one sweep catches up on everything.
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
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
