//! The agents' desk: what a contact-center agent opens to see, live, who is on the
//! website and what they are doing, one card per web session.
//!
//! Codemap:
//! - [`config`]: the `[desk]` settings and the runtime-replaceable [`config::Presentation`]
//!   (card title, per-event display names, icons and attribute labels/order/hiding).
//! - [`auth`]: agents' sign-in (a token), server-side sessions, the cookie.
//! - [`guard`]: the cross-site check of sign-in and sign-out, and the sign-in rate
//!   limit per client address.
//! - [`cards`]: the list's session summaries and the session cards, built from stored
//!   rows with the presentation applied (hidden attributes are dropped here).
//! - [`live`]: the broadcast channel that ingest publishes to, and the SSE stream.
//! - `collector/desk/`: the browser side (HTML, CSS, JS), compiled in; no build step,
//!   no CDN, nothing fetched from anywhere but the collector.
//!
//! | route | status codes |
//! |---|---|
//! | `GET /desk`, `GET /desk/` (the desk; signed out: 303 to the sign-in page) | 200, 303 |
//! | `GET /desk/signin`, `POST /desk/signin` (form field `token`; 403 cross-site, 429 with `Retry-After` past `sign_in_attempts_per_minute`; refusals are the sign-in page with the reason for `Accept: text/html`, JSON otherwise) | 200, 303, 401, 403, 408, 413, 429 |
//! | `POST /desk/signout` (403 cross-site) | 303, 403 |
//! | `GET /desk/assets/{desk.css,desk.js}` | 200, 404 |
//! | `GET /desk/api/sessions?status=all\|active\|ended&q=` | 200, 400, 401 |
//! | `GET /desk/api/sessions/{sessionId}` | 200, 401, 404 |
//! | `GET /desk/api/stream` (`text/event-stream`) | 200, 401 |
//! | `GET /desk/usage?from=&to=` (HTML; signed in with an API token; agents 403, signed out 303) | 200, 303, 400, 403 |
//! | `GET`/`PUT /api/v2/footpath/desk/config` (bearer `api_tokens`, checked before the body is read; a change is saved in the database and pushed to open desks) | 200, 400, 401 |
//!
//! Every desk response carries a Content-Security-Policy that allows scripts, styles
//! and connections from the collector only and no framing, and `nosniff`. The browser
//! code builds the DOM with `textContent` only: everything a visitor sent is untrusted.
//!
//! **API Boundary:** the desk is wired into the collector at three points only:
//! `app::router` merges [`router`], the batch handler calls [`publish_ingested`]
//! after its transaction commits, and `AppState` passes what other collectors on the
//! database tell ([`crate::peers`]) to [`Desk::receive_from_peer`]. The desk's own
//! state (the live channel, the presentation in effect, a short cache of sign-ins) is
//! a [`Desk`] held by `AppState`, so every clone of one collector's state shares it;
//! what must agree across collectors is in the store (sign-ins, the presentation saved
//! through the API) or sent between them (live changes).

pub mod auth;
pub mod cards;
pub mod config;
pub mod guard;
pub mod live;
// The administrators' usage page.
mod usage;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::broadcast;
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;

pub use config::{DeskConfig, Presentation};

use crate::error::ApiError;
use crate::store::{IngestOutcome, SessionFilter, Store, StoreError, StoredContact};
use crate::AppState;

const INDEX_HTML: &str = include_str!("../../desk/index.html");
const SIGNIN_HTML: &str = include_str!("../../desk/signin.html");
const DESK_CSS: &str = include_str!("../../desk/desk.css");
const DESK_JS: &str = include_str!("../../desk/desk.js");

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Most sessions the list considers (the newest by start time); it shows them most
/// recently active first.
const LIST_LIMIT: usize = 300;
/// Most events a card's journey map shows.
const JOURNEY_LIMIT: usize = 2_000;
const PAGE_SIZE: usize = 100;
/// Largest sign-in form body: one token field, with room to spare.
const MAX_SIGN_IN_BODY_BYTES: usize = 4096;

/// The desk's shared state for one collector.
pub struct Desk {
    presentation: RwLock<Presentation>,
    /// The file's `[desk]` presentation, saved beside an API change so that a later
    /// start can tell whether the file was edited since (see
    /// [`config::startup_presentation`]).
    file_presentation: Presentation,
    /// Held while a change is saved and applied, so that the stored and the shown
    /// presentation are the same one when two changes race.
    presentation_change: tokio::sync::Mutex<()>,
    /// Bumped on every change through the API: open desks reload what they show.
    presentation_version: tokio::sync::watch::Sender<u64>,
    agents: auth::AgentSessions,
    sign_in_limiter: guard::SignInLimiter,
    unknown_cookie_limiter: guard::UnknownCookieLimiter,
    /// `[desk] public_origin`, parsed: the only origin sign-in and sign-out accept.
    public_origin: Option<url::Origin>,
    live: broadcast::Sender<live::LiveMessage>,
    /// Set once, when the collector begins to shut down: ends every live stream.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Desk {
    /// The desk of a collector, showing `presentation` (see
    /// [`Desk::startup_presentation`]), with the sign-ins of `store` (those whose
    /// token is no longer configured are deleted here). Blocks on the store.
    pub(crate) fn new(
        config: &crate::config::Config,
        clock: Arc<dyn crate::clock::Clock>,
        presentation: Presentation,
        store: Arc<dyn Store>,
    ) -> Result<Desk, StoreError> {
        let tokens = config.api_tokens.iter().chain(&config.desk.agent_tokens);
        let agents = auth::AgentSessions::load(store, clock.now_ms(), tokens)?;
        Ok(Desk {
            presentation: RwLock::new(presentation),
            file_presentation: config.desk.presentation(),
            presentation_change: tokio::sync::Mutex::new(()),
            presentation_version: tokio::sync::watch::Sender::new(0),
            agents,
            sign_in_limiter: guard::SignInLimiter::new(
                config.desk.sign_in_attempts_per_minute,
                Arc::clone(&clock),
            ),
            unknown_cookie_limiter: guard::UnknownCookieLimiter::new(
                config.desk.sign_in_attempts_per_minute,
                clock,
            ),
            public_origin: config
                .desk
                .public_origin
                .as_deref()
                .and_then(|origin| config::public_origin(origin).ok()),
            live: live::channel(),
            closing: tokio::sync::watch::Sender::new(false),
        })
    }

    /// What another collector on the database told (see [`crate::peers`]). Called
    /// on the store's listening thread, never on an async task: it may block on the
    /// store.
    pub(crate) fn receive_from_peer(&self, store: &dyn Store, message: crate::peers::PeerMessage) {
        use crate::peers::PeerMessage;
        match message {
            PeerMessage::SessionChanged {
                deployment_id,
                visitor_id,
            } => {
                // The same form as the collector's own messages (see `publish_ingested`).
                let visitor_id = crate::validate::canonical_uuid(&visitor_id).unwrap_or(visitor_id);
                // An error only means that no desk is open.
                let _ = self
                    .live
                    .send(live::LiveMessage::Changed(live::SessionChanged {
                        deployment_id,
                        visitor_id,
                    }));
            }
            PeerMessage::PresentationChanged => {
                if self.reload_presentation(store) {
                    self.presentation_version
                        .send_modify(|version| *version += 1);
                }
            }
            PeerMessage::DeskSignedOut { session_sha256 } => self.agents.forget(&session_sha256),
            PeerMessage::Erased => self.announce_erased(),
            PeerMessage::Resync => {
                self.agents.forget_all();
                // Open desks reload everything on `resync`, the presentation included.
                self.reload_presentation(store);
                let _ = self.live.send(live::LiveMessage::Resync);
            }
        }
    }

    /// Shows the presentation saved in the store (another collector replaced it), or
    /// this collector's file's when none is saved; whether it could be read.
    fn reload_presentation(&self, store: &dyn Store) -> bool {
        let saved = match store.saved_desk_presentation() {
            Ok(saved) => saved,
            Err(error) => {
                tracing::warn!(%error, "could not read the desk presentation another collector saved");
                return false;
            }
        };
        let presentation = match saved {
            None => self.file_presentation.clone(),
            Some(saved) => match serde_json::from_str::<Presentation>(&saved.presentation_json) {
                Ok(presentation) => presentation,
                Err(error) => {
                    tracing::warn!(%error, "the saved desk presentation cannot be used");
                    return false;
                }
            },
        };
        *self
            .presentation
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = presentation;
        true
    }

    /// The presentation to start with: the file's, or the one saved through the API
    /// when it is the more recent change. A saved one that no longer applies is
    /// forgotten here, so that it cannot come back when the file is reverted.
    pub(crate) fn startup_presentation(
        config: &crate::config::Config,
        store: &dyn Store,
    ) -> Result<Presentation, StoreError> {
        use config::StartupPresentation;
        let file = config.desk.presentation();
        let saved = store.saved_desk_presentation()?;
        Ok(match config::startup_presentation(&file, saved.as_ref()) {
            StartupPresentation::File => file,
            StartupPresentation::Saved(presentation) => {
                tracing::info!("desk presentation: the one saved through the API");
                presentation
            }
            StartupPresentation::FileEditedSinceSaved => {
                tracing::info!(
                    "desk presentation: the file's, edited since the one saved through the API"
                );
                store.save_desk_presentation(None)?;
                file
            }
            StartupPresentation::SavedUnusable(reason) => {
                tracing::warn!(%reason, "desk presentation: the saved one cannot be used; the file's");
                store.save_desk_presentation(None)?;
                file
            }
        })
    }

    /// Forgets the sign-in rate limits of addresses that are quiet again; called by
    /// the collector's periodic sweep.
    pub fn forget_idle_sign_in_limits(&self) {
        self.sign_in_limiter.forget_idle_addresses();
        self.unknown_cookie_limiter.forget_idle_addresses();
    }

    /// How many live streams are open (each holds one receiver of the channel).
    pub fn open_streams(&self) -> usize {
        self.live.receiver_count()
    }

    /// A data subject was erased, here or on another collector: every open desk
    /// reloads what it shows (the erased sessions' cards go, or lose what was
    /// personal), as after missed changes.
    pub(crate) fn announce_erased(&self) {
        // An error only means that no desk is open.
        let _ = self.live.send(live::LiveMessage::Resync);
    }

    /// Ends every open live stream; called when the collector stops accepting.
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    fn presentation(&self) -> Presentation {
        self.presentation
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Called by ingest once a batch is committed: tells every open desk that the
/// visitor's session changed, when at least one event was newly stored.
pub fn publish_ingested(
    state: &AppState,
    deployment_id: &str,
    visitor_id: &str,
    outcomes: &[IngestOutcome],
) {
    if !outcomes.contains(&IngestOutcome::Accepted) {
        return;
    }
    let visitor_id =
        crate::validate::canonical_uuid(visitor_id).unwrap_or_else(|| visitor_id.to_owned());
    // An error only means that no desk is open.
    let _ = state
        .desk()
        .live
        .send(live::LiveMessage::Changed(live::SessionChanged {
            deployment_id: deployment_id.to_owned(),
            visitor_id,
        }));
}

#[derive(Clone)]
struct DeskState {
    app: AppState,
    desk: Arc<Desk>,
}

impl DeskState {
    /// The signed-in agent's session id, if the request carries a valid one.
    async fn agent_session(&self, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
        let Some(id) = auth::session_cookie(headers) else {
            return Ok(None);
        };
        let valid = self
            .desk
            .agents
            .is_valid(&id, self.app.clock().now_ms())
            .await?;
        Ok(valid.then_some(id))
    }

    async fn require_agent(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        self.agent_session(headers)
            .await?
            .ok_or(ApiError::Unauthorized)
    }

    /// Refuses sign-in and sign-out requests that another site made (see [`guard`]).
    fn require_same_origin(
        &self,
        action: &str,
        headers: &HeaderMap,
        peer: Option<std::net::IpAddr>,
    ) -> Result<(), ApiError> {
        guard::check_same_origin(
            action,
            headers,
            peer,
            &self.app.config().trusted_proxies,
            self.desk.public_origin.as_ref(),
        )
    }

    /// The allowed origins of a deployment: the pages the desk may link to.
    fn allowed_origins(&self, deployment_id: &str) -> &[String] {
        self.app
            .config()
            .deployment(deployment_id)
            .map_or(&[], |deployment| deployment.allowed_origins.as_slice())
    }

    fn timeout_ms(&self) -> i64 {
        self.app.config().session_timeout_ms()
    }
}

/// The desk's routes, ready to merge into the collector's router.
pub fn router<S>(state: AppState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let desk = Arc::clone(state.desk());
    let headers = ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        // `same-origin`, not `no-referrer`: no desk URL leaves for another origin,
        // but the desk's own form posts keep a real `Origin` header (under
        // `no-referrer` browsers send `Origin: null`, which the cross-site check of
        // sign-in and sign-out must refuse).
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    Router::new()
        .route("/desk", get(|| async { Redirect::to("/desk/") }))
        .route("/desk/", get(index))
        .route("/desk/signin", get(signin_page).post(signin))
        .route("/desk/signout", post(signout))
        .route("/desk/assets/{file}", get(asset))
        .route("/desk/api/sessions", get(list_sessions))
        .route("/desk/api/sessions/{session_id}", get(session_card))
        .route("/desk/api/stream", get(stream))
        .route("/desk/usage", get(usage::usage_page))
        .route_layer(middleware::from_fn_with_state(
            DeskState {
                app: state.clone(),
                desk: Arc::clone(&desk),
            },
            screen_session_cookie,
        ))
        .merge(
            // The token is checked by a route layer, before any extractor reads the
            // body: a stranger's upload is refused at its first byte.
            Router::new()
                .route(
                    "/api/v2/footpath/desk/config",
                    get(get_presentation).put(put_presentation),
                )
                .route_layer(middleware::from_fn_with_state(state.clone(), require_admin)),
        )
        .layer(headers)
        .with_state(DeskState { app: state, desk })
}

/// Before every desk route: a session cookie that names no stored sign-in is taken
/// out of the request, and counted against its client address
/// ([`guard::UnknownCookieLimiter`]); past the address's allowance, a cookie that the
/// sign-in cache does not hold is taken out without a store read. Handlers then see
/// only cookies of stored sign-ins, which the cache answers for.
async fn screen_session_cookie(
    State(state): State<DeskState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(id) = auth::session_cookie(request.headers()) {
        let now_ms = state.app.clock().now_ms();
        if !state.desk.agents.is_cached(&id, now_ms) {
            let client = guard::client_address(
                request.headers(),
                guard::socket_peer(request.extensions()),
                &state.app.config().trusted_proxies,
            );
            let limiter = &state.desk.unknown_cookie_limiter;
            let stored =
                limiter.may_look_up(client) && state.desk.agents.is_stored(&id, now_ms).await?;
            if !stored {
                if limiter.may_look_up(client) {
                    limiter.found_nothing(client);
                }
                // The desk reads no other cookie.
                request.headers_mut().remove(header::COOKIE);
            }
        }
    }
    Ok(next.run(request).await)
}

async fn index(State(state): State<DeskState>, headers: HeaderMap) -> Response {
    match state.agent_session(&headers).await {
        Ok(Some(_)) => Html(INDEX_HTML).into_response(),
        Ok(None) => Redirect::to("/desk/signin").into_response(),
        Err(error) => error.into_response(),
    }
}

async fn signin_page(State(state): State<DeskState>, headers: HeaderMap) -> Response {
    match state.agent_session(&headers).await {
        Ok(Some(_)) => Redirect::to("/desk/").into_response(),
        Ok(None) => Html(SIGNIN_HTML).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Lets `GET`/`PUT /api/v2/footpath/desk/config` through only with a bearer token of
/// `api_tokens` (agents' desk tokens do not administer the desk).
async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match auth::bearer_token(request.headers()) {
        Some(token) if auth::is_known_token(&state.config().api_tokens, token) => {
            Ok(next.run(request).await)
        }
        _ => Err(ApiError::Unauthorized),
    }
}

/// Reads a small body within `body_read_timeout_seconds`: 413 past `limit` bytes, 408
/// when it does not arrive in time.
async fn read_small_body(
    body: Body,
    limit: usize,
    timeout_seconds: u64,
) -> Result<Bytes, ApiError> {
    let read = Limited::new(body, limit).collect();
    match tokio::time::timeout(Duration::from_secs(timeout_seconds), read).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge(limit))
        }
        Ok(Err(error)) => Err(ApiError::BadRequest(format!(
            "the request body could not be read: {error}"
        ))),
        Err(_) => Err(ApiError::RequestTimeout(format!(
            "the request body did not arrive within {timeout_seconds} s"
        ))),
    }
}

/// `POST /desk/signin` with the form field `token`: a valid token gets the session
/// cookie and a redirect to the desk; a wrong one gets the form again with 401.
///
/// In this order, each before the body is read: a cross-site request is refused
/// (403), then the attempt is counted against the client address's allowance (429
/// once it is spent, whatever the token). Cross-site requests are refused first so
/// that another site cannot spend the allowance of the agents' address.
///
/// A refusal is JSON like every other error, except for a browser's form submission
/// (`Accept: text/html`): it gets the sign-in page again, with the same status and
/// headers (`Retry-After`) and a sentence that says what to do, instead of raw JSON.
async fn signin(State(state): State<DeskState>, request: Request) -> Response {
    let wants_html = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|accept| accept.contains("text/html"));
    match signin_checked(state, request).await {
        Ok(response) => response,
        Err(error) if wants_html => signin_refused_page(error),
        Err(error) => error.into_response(),
    }
}

/// The sign-in page with the reason of a refusal: what the agent can do about it.
fn signin_refused_page(error: ApiError) -> Response {
    let sentence = match &error {
        ApiError::RateLimited { .. } => {
            "Too many sign-in attempts from your network. Wait a minute, then try again."
        }
        ApiError::OriginNotAllowed(_) => {
            "This sign-in did not come from the desk's own page. Open the desk's address \
             directly and sign in there."
        }
        ApiError::PayloadTooLarge(_) => "That is not an access token. Check it and try again.",
        ApiError::RequestTimeout(_) => "The sign-in took too long to arrive. Try again.",
        _ => "The sign-in failed. Try again in a moment.",
    };
    let (mut parts, _) = error.into_response().into_parts();
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    // The sentences are fixed text: nothing of the request is echoed into the page.
    let page = SIGNIN_HTML.replace(
        "<p id=\"signin-error\" class=\"error\" hidden>That token is not valid. Check it and try again.</p>",
        &format!("<p id=\"signin-error\" class=\"error\" role=\"alert\">{sentence}</p>"),
    );
    (parts, Html(page)).into_response()
}

async fn signin_checked(state: DeskState, request: Request) -> Result<Response, ApiError> {
    let config = state.app.config();
    let (parts, body) = request.into_parts();
    let peer = guard::socket_peer(&parts.extensions);
    state.require_same_origin("sign-in", &parts.headers, peer)?;
    let client = guard::client_address(&parts.headers, peer, &config.trusted_proxies);
    state.desk.sign_in_limiter.take(client)?;
    let body = read_small_body(
        body,
        MAX_SIGN_IN_BODY_BYTES,
        config.body_read_timeout_seconds,
    )
    .await?;
    let token = url::form_urlencoded::parse(&body)
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_default();
    let known = !token.is_empty()
        && auth::is_known_token(
            config.api_tokens.iter().chain(&config.desk.agent_tokens),
            &token,
        );
    if !known {
        tracing::info!("desk sign-in refused");
        let page = SIGNIN_HTML.replace(
            "<p id=\"signin-error\" class=\"error\" hidden>",
            "<p id=\"signin-error\" class=\"error\" role=\"alert\">",
        );
        return Ok((StatusCode::UNAUTHORIZED, Html(page)).into_response());
    }
    let now_ms = state.app.clock().now_ms();
    let lifetime_seconds = config.desk.sign_in_minutes.saturating_mul(60);
    let expires_ms = now_ms
        .saturating_add(i64::try_from(lifetime_seconds.saturating_mul(1000)).unwrap_or(i64::MAX));
    let id = state.desk.agents.create(&token, now_ms, expires_ms).await?;
    tracing::info!("desk sign-in");
    let cookie = auth::session_cookie_header(&id, lifetime_seconds, config.desk.secure_cookie);
    let mut response = Redirect::to("/desk/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `POST /desk/signout`: ends the session on the server and clears the cookie. Refused
/// (403) when another site sent it, so that no page can sign an agent out.
async fn signout(State(state): State<DeskState>, request: Request) -> Result<Response, ApiError> {
    let peer = guard::socket_peer(request.extensions());
    let headers = request.headers();
    state.require_same_origin("sign-out", headers, peer)?;
    if let Some(id) = auth::session_cookie(headers) {
        state
            .desk
            .agents
            .remove(&id, state.app.clock().now_ms())
            .await?;
    }
    let cookie = auth::cleared_cookie_header(state.app.config().desk.secure_cookie);
    let mut response = Redirect::to("/desk/signin").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// The desk's CSS and JS: public, since they hold no data (the sign-in page needs the
/// CSS before anyone is signed in).
async fn asset(Path(file): Path<String>) -> Response {
    let (content_type, body) = match file.as_str() {
        "desk.css" => ("text/css; charset=utf-8", DESK_CSS),
        "desk.js" => ("text/javascript; charset=utf-8", DESK_JS),
        _ => return ApiError::NotFound("no such file".to_owned()).into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn with_store<T, F>(state: &AppState, operation: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
{
    let store = Arc::clone(state.store());
    Ok(tokio::task::spawn_blocking(move || operation(store.as_ref())).await??)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusFilter {
    All,
    Active,
    Ended,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionList {
    title: String,
    now_ms: i64,
    sessions: Vec<cards::SessionSummary>,
}

/// `GET /desk/api/sessions?status=&q=`: the newest sessions, most recently active
/// first, optionally only live (`active`) or ended ones, and only those matching `q`.
async fn list_sessions(
    State(state): State<DeskState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<SessionList>, ApiError> {
    state.require_agent(&headers).await?;
    let parameters: HashMap<String, String> =
        url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let status = match parameters.get("status").map(String::as_str) {
        None | Some("" | "all") => StatusFilter::All,
        Some("active") => StatusFilter::Active,
        Some("ended") => StatusFilter::Ended,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "status: must be all, active or ended, not {other:?}"
            )))
        }
    };
    let search = parameters.get("q").cloned().unwrap_or_default();
    let (sessions, contacts) = with_store(&state.app, |store| {
        let mut sessions = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store.sessions(&SessionFilter::default(), after.as_deref(), PAGE_SIZE)?;
            after = page.items.last().map(|session| session.id.clone());
            sessions.extend(page.items);
            if !page.has_more || sessions.len() >= LIST_LIMIT {
                break;
            }
        }
        let contacts = contacts_of(
            store,
            sessions.iter().filter_map(|s| s.contact_id.as_deref()),
        )?;
        Ok((sessions, contacts))
    })
    .await?;
    let now_ms = state.app.clock().now_ms();
    let timeout_ms = state.timeout_ms();
    let mut summaries: Vec<cards::SessionSummary> = sessions
        .iter()
        .filter_map(|session| {
            let contact = session.contact_id.as_ref().and_then(|id| contacts.get(id));
            let summary = cards::summary(
                session,
                contact,
                now_ms,
                timeout_ms,
                state.allowed_origins(&session.deployment_id),
            );
            let wanted = match status {
                StatusFilter::All => true,
                StatusFilter::Active => summary.live,
                StatusFilter::Ended => !summary.live,
            };
            (wanted && cards::matches_search(&summary, contact, &search)).then_some(summary)
        })
        .collect();
    summaries.sort_by_key(|summary| std::cmp::Reverse(summary.last_active_ms));
    Ok(Json(SessionList {
        title: state.desk.presentation().title,
        now_ms,
        sessions: summaries,
    }))
}

fn contacts_of<'a>(
    store: &dyn Store,
    ids: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, StoredContact>, StoreError> {
    let mut contacts = HashMap::new();
    for id in ids {
        if !contacts.contains_key(id) {
            if let Some(contact) = store.contact(id)? {
                contacts.insert(id.to_owned(), contact);
            }
        }
    }
    Ok(contacts)
}

/// `GET /desk/api/sessions/{sessionId}`: the whole card.
async fn session_card(
    State(state): State<DeskState>,
    headers: HeaderMap,
    Path(session_id): Path<String>,
) -> Result<Json<cards::SessionCard>, ApiError> {
    state.require_agent(&headers).await?;
    let lookup_id = session_id.clone();
    let found = with_store(&state.app, move |store| {
        let Some(session) = store.session(&lookup_id)? else {
            return Ok(None);
        };
        let mut events = Vec::new();
        let mut after: Option<String> = None;
        while events.len() < JOURNEY_LIMIT {
            let Some(page) = store.session_events(&lookup_id, after.as_deref(), PAGE_SIZE)? else {
                break;
            };
            after = page.items.last().map(|event| event.event.id.clone());
            events.extend(page.items);
            if !page.has_more {
                break;
            }
        }
        let contact = match &session.contact_id {
            Some(id) => store.contact(id)?,
            None => None,
        };
        Ok(Some((session, events, contact)))
    })
    .await?;
    let Some((session, events, contact)) = found else {
        return Err(ApiError::NotFound(format!(
            "session {session_id} not found"
        )));
    };
    let presentation = state.desk.presentation();
    Ok(Json(cards::card(
        &presentation.title,
        &presentation,
        &session,
        contact.as_ref(),
        &events,
        state.app.clock().now_ms(),
        state.timeout_ms(),
        state.allowed_origins(&session.deployment_id),
    )))
}

/// `GET /desk/api/stream`: see [`live::stream`].
async fn stream(State(state): State<DeskState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let agent_session = state.require_agent(&headers).await?;
    Ok(live::stream(state.app.clone(), Arc::clone(&state.desk), agent_session).into_response())
}

/// `GET /api/v2/footpath/desk/config`: the presentation settings in effect.
async fn get_presentation(State(state): State<DeskState>) -> Json<Presentation> {
    Json(state.desk.presentation())
}

/// `PUT /api/v2/footpath/desk/config`: replaces the presentation settings. The change
/// is saved in the database, so it outlives a restart, until the file's `[desk]`
/// section is edited (the most recent change wins; see
/// [`config::startup_presentation`]). Open desks are told at once and reload.
async fn put_presentation(
    State(state): State<DeskState>,
    body: Bytes,
) -> Result<Json<Presentation>, ApiError> {
    let presentation: Presentation = serde_json::from_slice(&body)
        .map_err(|error| ApiError::BadRequest(format!("invalid desk configuration: {error}")))?;
    presentation.validate().map_err(ApiError::BadRequest)?;
    let saved = crate::store::SavedPresentation {
        presentation_json: serde_json::to_string(&presentation)
            .map_err(|error| ApiError::Internal(error.to_string()))?,
        file_presentation_json: serde_json::to_string(&state.desk.file_presentation)
            .map_err(|error| ApiError::Internal(error.to_string()))?,
        saved_ms: state.app.clock().now_ms(),
    };
    let _change = state.desk.presentation_change.lock().await;
    with_store(&state.app, move |store| {
        store.save_desk_presentation(Some(&saved))?;
        // The other collectors on the database read it again and tell their desks.
        store.tell_peers(&crate::peers::PeerMessage::PresentationChanged)
    })
    .await?;
    *state
        .desk
        .presentation
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = presentation.clone();
    state
        .desk
        .presentation_version
        .send_modify(|version| *version += 1);
    tracing::info!(
        events = presentation.events.len(),
        "desk presentation replaced"
    );
    Ok(Json(presentation))
}
