//! Two collectors on one PostgreSQL database, as behind a load balancer without sticky
//! sessions: the visitor's browser reaches them through a small round-robin proxy
//! (each request to the next collector), and the agent's desk is open on one of them.
//! The visit must still be one session with every event stored once, and the desk
//! must follow it live, also when the event went to the other collector.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use footpath_collector::clock::{Clock, SystemClock};
use footpath_collector::config::{Config, DeploymentConfig};
use footpath_collector::AppState;
use footpath_demo::DemoConfig;
use footpath_pgcluster::Cluster;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::desk::{eval, wait_for_element, wait_for_text_containing};
use crate::support::{event_names, sdk_dir, wait_until, Browser, DEPLOYMENT, PATIENCE, TOKEN};

/// How fast a card must follow an accepted event, whichever collector took it.
const LIVE_BUDGET: Duration = Duration::from_secs(1);

/// One request the proxy passed on: to which collector (0 or 1), what, and for a
/// batch its body (inflated when the SDK gzipped it).
#[derive(Debug, Clone)]
struct Forwarded {
    collector: usize,
    method: String,
    path: String,
    /// The collector's answer.
    status: u16,
    batch_body: Option<String>,
}

/// A round-robin HTTP proxy in front of the collectors: each request goes to the next
/// one, whatever connection it came on.
#[derive(Clone)]
struct Proxy {
    upstreams: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Forwarded>>>,
    http: reqwest::Client,
}

/// Headers that belong to one connection, not to the request or response.
const HOP_BY_HOP: [&str; 5] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
];

fn end_to_end_headers(headers: &HeaderMap) -> HeaderMap {
    let mut kept = headers.clone();
    for name in HOP_BY_HOP {
        kept.remove(HeaderName::from_static(name));
    }
    kept
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    match forward_checked(&proxy, request).await {
        Ok(response) => response,
        Err(error) => (StatusCode::BAD_GATEWAY, format!("{error:#}")).into_response(),
    }
}

async fn forward_checked(proxy: &Proxy, request: Request) -> anyhow::Result<Response> {
    let collector = proxy.next.fetch_add(1, Ordering::SeqCst) % proxy.upstreams.len();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await?;
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .to_owned();
    let batch_body =
        (parts.method == "POST" && path.starts_with("/sdk/v1/batch")).then(|| inflated(&body));
    let upstream = proxy
        .http
        .request(
            parts.method.clone(),
            format!("{}{path}", proxy.upstreams[collector]),
        )
        .headers(end_to_end_headers(&parts.headers))
        .body(body)
        .send()
        .await
        .with_context(|| format!("{} {path} to collector {collector}", parts.method))?;
    let status = upstream.status();
    proxy.log.lock().unwrap().push(Forwarded {
        collector,
        method: parts.method.to_string(),
        path: path.clone(),
        status: status.as_u16(),
        batch_body,
    });
    let headers = end_to_end_headers(upstream.headers());
    let body = upstream.bytes().await?;
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

fn inflated(body: &Bytes) -> String {
    use std::io::Read;
    if body.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .is_ok()
        {
            return text;
        }
    }
    String::from_utf8_lossy(body).into_owned()
}

/// The database, both collectors, the proxy and the demo shop (whose pages load the
/// SDK from the proxy); everything stops when dropped.
struct TwoCollectors {
    collector_urls: Vec<String>,
    demo_url: String,
    proxy: Proxy,
    http: reqwest::Client,
    _states: Vec<AppState>,
    _stops: Vec<oneshot::Sender<()>>,
    // Last: the collectors' connections close before the server stops.
    _cluster: Cluster,
}

impl TwoCollectors {
    async fn start() -> anyhow::Result<TwoCollectors> {
        let cluster = tokio::task::spawn_blocking(|| {
            let cluster = Cluster::start(Path::new(env!("CARGO_TARGET_TMPDIR")))?;
            let url = cluster.create_database("footpath")?;
            anyhow::Ok((cluster, url))
        })
        .await?
        .context("a throwaway PostgreSQL cluster (`cargo xtask setup` installs PostgreSQL)")?;
        let (cluster, database_url) = cluster;

        let proxy_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let demo_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let proxy_url = format!("http://{}", proxy_listener.local_addr()?);
        let demo_url = format!("http://{}", demo_listener.local_addr()?);
        let sdk_dir = sdk_dir()?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);

        let mut collector_urls = Vec::new();
        let mut states = Vec::new();
        let mut stops = Vec::new();
        for _ in 0..2 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            collector_urls.push(format!("http://{}", listener.local_addr()?));
            // The same configuration on both, as an operator would deploy it.
            let config = Config {
                listen_addr: listener.local_addr()?,
                database_url: Some(database_url.clone()),
                sdk_dir: sdk_dir.clone(),
                sweep_interval_seconds: 3600,
                api_tokens: vec![TOKEN.to_owned()],
                deployments: vec![DeploymentConfig {
                    id: DEPLOYMENT.to_owned(),
                    allowed_origins: vec![demo_url.clone()],
                }],
                ..Config::default()
            };
            let state = AppState::new(config, Arc::clone(&clock))?;
            let (stop, stopped) = oneshot::channel::<()>();
            let served = state.clone();
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.await;
                };
                if let Err(error) = footpath_collector::serve(served, listener, shutdown).await {
                    eprintln!("collector stopped with an error: {error:#}");
                }
            });
            states.push(state);
            stops.push(stop);
        }

        let proxy = Proxy {
            upstreams: Arc::new(collector_urls.clone()),
            next: Arc::new(AtomicUsize::new(0)),
            log: Arc::default(),
            http: reqwest::Client::new(),
        };
        let (proxy_stop, proxy_stopped) = oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        tokio::spawn(async move {
            let _ = axum::serve(proxy_listener, app)
                .with_graceful_shutdown(async move {
                    let _ = proxy_stopped.await;
                })
                .await;
        });
        stops.push(proxy_stop);

        let (demo_stop, demo_stopped) = oneshot::channel::<()>();
        let demo_config = DemoConfig {
            collector_url: proxy_url,
            deployment_id: DEPLOYMENT.to_owned(),
            init_options: None,
            identity_secret: None,
        };
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = demo_stopped.await;
            };
            if let Err(error) = footpath_demo::serve(demo_config, demo_listener, shutdown).await {
                eprintln!("demo stopped with an error: {error}");
            }
        });
        stops.push(demo_stop);

        Ok(TwoCollectors {
            collector_urls,
            demo_url,
            proxy,
            http: reqwest::Client::new(),
            _states: states,
            _stops: stops,
            _cluster: cluster,
        })
    }

    /// A read-API GET on collector `number` that must answer 200 with JSON.
    async fn api_get(&self, number: usize, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.collector_urls[number]);
        let response = self.http.get(&url).bearer_auth(TOKEN).send().await?;
        let status = response.status();
        let body = response.text().await?;
        if status != reqwest::StatusCode::OK {
            bail!("GET {url}: {status}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    fn forwarded(&self) -> Vec<Forwarded> {
        self.proxy.log.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visit_spread_over_two_collectors_is_one_session_followed_live() -> anyhow::Result<()> {
    let env = TwoCollectors::start().await?;
    let visitor = Browser::start().await?;
    let agent = match Browser::start().await {
        Ok(agent) => agent,
        Err(error) => return visitor.finish(Err(error)).await,
    };
    let result = spread_visit(&env, &visitor, &agent).await;
    eprintln!("agent's browser:");
    let result = agent.finish(result).await;
    eprintln!("visitor's browser:");
    visitor.finish(result).await
}

/// The agent's desk is on collector 1; the visitor goes through the proxy.
const DESK: usize = 1;
const OTHER: usize = 0;

async fn spread_visit(
    env: &TwoCollectors,
    visitor: &Browser,
    agent: &Browser,
) -> anyhow::Result<()> {
    let desk_url = &env.collector_urls[DESK];
    agent.goto(&format!("{desk_url}/desk/")).await?;
    agent.type_into("#token", TOKEN).await?;
    agent.click("#signin-button").await?;
    wait_until("the desk after sign-in", PATIENCE, || async {
        Ok((agent.client.current_url().await?.path() == "/desk/").then_some(()))
    })
    .await?;
    agent.wait_for_text("#connection", "Live").await?;

    // The visit: home page, a search, a product page.
    visitor.goto(&format!("{}/", env.demo_url)).await?;
    let visitor_id = visitor.sdk_state().await?.visitor_id;
    let item = format!(".session-item[data-customer-id=\"{visitor_id}\"]");
    wait_for_element(agent, &item)
        .await
        .with_context(|| format!("through the proxy: {:#?}", env.forwarded()))?;
    agent.click(&item).await?;
    visitor.type_into("#home-search", "boots").await?;
    visitor
        .click("form[role=search] button[type=submit]")
        .await?;
    visitor
        .wait_for_text("#search-summary", "1 result(s) for \"boots\"")
        .await?;
    visitor.click("a.product-link").await?;
    visitor
        .wait_for_text("#product-name", "Ridge hiking boots")
        .await?;
    wait_for_text_containing(agent, "#card-page-url", "/product?sku=BOOT-1").await?;

    // The cart event goes to the collector the desk is not on: the desk learns of it
    // through the database's notifications only.
    let batches_before = env.forwarded().len();
    env.proxy.next.store(OTHER, Ordering::SeqCst);
    agent
        .client
        .execute(
            "window.__cartSeenAt = null;
             new MutationObserver(function (_, observer) {
               if (document.querySelector('.journey-event[data-event-name=\"cart_added\"]')) {
                 window.__cartSeenAt = Date.now();
                 observer.disconnect();
               }
             }).observe(document.body, {subtree: true, childList: true});",
            vec![],
        )
        .await?;
    visitor
        .client
        .execute(
            "window.__cartAcceptedAt = null;
             var message = document.getElementById('cart-message');
             new MutationObserver(function (_, observer) {
               if (message.textContent === 'Added to your cart.') {
                 window.__cartAcceptedAt = Date.now();
                 observer.disconnect();
               }
             }).observe(message, {subtree: true, childList: true, characterData: true});",
            vec![],
        )
        .await?;
    visitor.click("#add-to-cart").await?;
    visitor
        .wait_for_text("#cart-message", "Added to your cart.")
        .await?;
    let (accepted_at, seen_at) =
        wait_until("both timestamps of the cart event", PATIENCE, || async {
            let accepted = eval(visitor, "window.__cartAcceptedAt").await?;
            let seen = eval(agent, "window.__cartSeenAt").await?;
            Ok(match (accepted.as_i64(), seen.as_i64()) {
                (Some(accepted), Some(seen)) => Some((accepted, seen)),
                _ => None,
            })
        })
        .await?;
    let cart_batches: Vec<Forwarded> = env.forwarded()[batches_before..]
        .iter()
        .filter(|forwarded| {
            forwarded
                .batch_body
                .as_deref()
                .is_some_and(|body| body.contains("cart_added"))
        })
        .cloned()
        .collect();
    assert_eq!(cart_batches.len(), 1, "{cart_batches:#?}");
    assert_eq!(
        cart_batches[0].collector, OTHER,
        "the cart event went to the desk's own collector: {cart_batches:#?}"
    );
    let latency_ms = seen_at - accepted_at;
    eprintln!(
        "the desk on collector {DESK} showed cart_added, stored by collector {OTHER}, {latency_ms} ms after the visitor's browser had the answer"
    );
    assert!(
        latency_ms < LIVE_BUDGET.as_millis() as i64,
        "the card took {latency_ms} ms to show the event"
    );
    // Still the page that was loaded at sign-in: live, not reloaded.
    assert_eq!(
        eval(agent, "performance.getEntriesByType('navigation').length").await?,
        json!(1)
    );

    // Both collectors took some of the visitor's batches.
    let forwarded = env.forwarded();
    let batches_to = |collector: usize| {
        forwarded
            .iter()
            .filter(|f| f.collector == collector && f.batch_body.is_some())
            .count()
    };
    eprintln!(
        "batches through the proxy: {} to collector 0, {} to collector 1 ({} requests in all)",
        batches_to(0),
        batches_to(1),
        forwarded.len()
    );
    assert!(batches_to(0) >= 1 && batches_to(1) >= 1, "{forwarded:#?}");
    let failed: Vec<String> = forwarded
        .iter()
        .filter(|f| f.status >= 400)
        .map(|f| {
            format!(
                "{} {} to collector {}: {}",
                f.method, f.path, f.collector, f.status
            )
        })
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");

    // One session, each event once, the same through either collector.
    let sessions = env
        .api_get(
            OTHER,
            &format!(
                "/api/v2/journey/sessions?deploymentId={DEPLOYMENT}&customerCookieId={visitor_id}"
            ),
        )
        .await?;
    let sessions = sessions["entities"].as_array().cloned().unwrap_or_default();
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    let session_id = sessions[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v2/journey/sessions/{session_id}/events?pageSize=100");
    let events = env.api_get(DESK, &path).await?;
    let events = events["entities"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        events,
        env.api_get(OTHER, &path).await?["entities"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    );
    let mut ids: Vec<&str> = events
        .iter()
        .map(|event| event["id"].as_str().unwrap())
        .collect();
    let names = event_names(&events);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), events.len(), "an event stored twice: {names:?}");
    let count = |name: &str| names.iter().filter(|n| n.as_str() == name).count();
    assert_eq!(count("cart_added"), 1, "{names:?}");
    assert_eq!(sessions[0]["eventCount"], json!(events.len()), "{names:?}");
    eprintln!("the visit's events, in one session: {names:?}");
    Ok(())
}
