//! Shared machinery of the end-to-end tests: the collector and the demo shop served
//! in-process on free loopback ports, chromedriver with a headless Chromium, the read
//! API client, and polling with a deadline.

use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use fantoccini::{Client, ClientBuilder, Locator};
use footpath_collector::clock::{Clock, ManualClock, SystemClock};
use footpath_collector::config::{Config, DeploymentConfig, IdentityVerificationConfig};
use footpath_collector::AppState;
use footpath_demo::DemoConfig;
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// At least 32 characters, as the collector requires of every token.
pub const TOKEN: &str = "e2e-read-token-0123456789abcdef0123";
pub const DEPLOYMENT: &str = "demo";
/// The demo deployment's identity secret, shared by the collector and the demo shop's
/// server, which signs identity tokens at sign-in as a real site's server would.
pub const IDENTITY_SECRET: &str = "e2e-identity-secret-0123456789abcdef";
/// How long a test waits for something the browser, the SDK or the collector should do.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The workspace root (the parent of this crate's folder).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The built SDK: `FOOTPATH_SDK_DIR`, or `target/sdk` of the workspace. Fails with a
/// clear message when the SDK has not been built.
pub fn sdk_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("FOOTPATH_SDK_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target").join("sdk"),
    };
    for file in ["footpath.js", "footpath.wasm"] {
        if !dir.join(file).is_file() {
            bail!(
                "the SDK is not built: {} is missing (run `cargo xtask sdk`, or set FOOTPATH_SDK_DIR)",
                dir.join(file).display()
            );
        }
    }
    Ok(dir)
}

/// Polls `probe` every 100 ms until it yields `Some`, or fails after `timeout` with
/// `what` and the probe's last error.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if Instant::now() >= deadline {
            match last_error {
                Some(error) => {
                    bail!("timed out after {timeout:?} waiting for {what}; last error: {error:#}")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Default)]
pub struct EnvOptions {
    /// Give the collector a [`ManualClock`] started at the real current time.
    pub manual_clock: bool,
    /// `ac('init')` options of the demo pages.
    pub init_options: Option<String>,
    /// Changes the collector's configuration before it starts (segments_e2e adds the
    /// demo's segment and outcome definitions).
    pub configure: Option<fn(&mut Config)>,
}

/// The collector and the demo shop, each on its own free port; both stop when dropped.
pub struct Env {
    pub collector_url: String,
    pub demo_url: String,
    pub state: AppState,
    /// Set when started with `manual_clock`.
    pub clock: Option<Arc<ManualClock>>,
    pub http: reqwest::Client,
    /// The running collector: its stop signal and its server task.
    collector: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    config: Config,
    dyn_clock: Arc<dyn Clock>,
    _shutdown: Vec<oneshot::Sender<()>>,
    _database_dir: tempfile::TempDir,
}

/// Serves `state` on `listener` in a task until the returned sender fires.
fn spawn_collector(
    state: AppState,
    listener: tokio::net::TcpListener,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(error) = footpath_collector::serve(state, listener, shutdown).await {
            eprintln!("collector stopped with an error: {error:#}");
        }
    });
    (stop, task)
}

impl Env {
    pub async fn start(options: EnvOptions) -> anyhow::Result<Env> {
        let sdk_dir = sdk_dir()?;
        // Bind both first: the collector must know the demo's exact origin.
        let collector_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let demo_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let collector_url = format!("http://{}", collector_listener.local_addr()?);
        let demo_url = format!("http://{}", demo_listener.local_addr()?);

        let database_dir = tempfile::tempdir()?;
        let mut config = Config {
            listen_addr: collector_listener.local_addr()?,
            database_path: database_dir.path().join("footpath.sqlite3"),
            sdk_dir,
            // Tests end sessions explicitly with `close_idle_sessions`; the background
            // sweep runs once at start and then not within a test.
            sweep_interval_seconds: 3600,
            api_tokens: vec![TOKEN.to_owned()],
            deployments: vec![DeploymentConfig {
                id: DEPLOYMENT.to_owned(),
                allowed_origins: vec![demo_url.clone()],
            }],
            identity_verification: vec![IdentityVerificationConfig {
                deployment_id: DEPLOYMENT.to_owned(),
                identity_secret: Some(IDENTITY_SECRET.to_owned()),
                require_verified_identity: false,
                identity_token_max_lifetime_minutes: 1_440,
            }],
            ..Config::default()
        };
        if let Some(configure) = options.configure {
            configure(&mut config);
        }
        let (clock, dyn_clock): (Option<Arc<ManualClock>>, Arc<dyn Clock>) = if options.manual_clock
        {
            let manual = Arc::new(ManualClock::new(SystemClock.now_ms()));
            (Some(manual.clone()), manual)
        } else {
            (None, Arc::new(SystemClock))
        };
        let state = AppState::new(config.clone(), dyn_clock.clone())?;
        let collector = spawn_collector(state.clone(), collector_listener);

        let (demo_stop, demo_stopped) = oneshot::channel::<()>();
        let demo_config = DemoConfig {
            collector_url: collector_url.clone(),
            deployment_id: DEPLOYMENT.to_owned(),
            init_options: options.init_options,
            identity_secret: Some(IDENTITY_SECRET.to_owned()),
        };
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = demo_stopped.await;
            };
            if let Err(error) = footpath_demo::serve(demo_config, demo_listener, shutdown).await {
                eprintln!("demo stopped with an error: {error}");
            }
        });

        Ok(Env {
            collector_url,
            demo_url,
            state,
            clock,
            http: reqwest::Client::new(),
            collector: Some(collector),
            config,
            dyn_clock,
            _shutdown: vec![demo_stop],
            _database_dir: database_dir,
        })
    }

    /// Stops the collector gracefully (as on SIGTERM) and starts a new one on the same
    /// address and database, as an operator's restart would.
    pub async fn restart_collector(&mut self) -> anyhow::Result<()> {
        let (stop, task) = self
            .collector
            .take()
            .context("the collector is not running")?;
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .context("the collector did not stop within 20 s")??;
        let listener = tokio::net::TcpListener::bind(self.config.listen_addr).await?;
        let state = AppState::new(self.config.clone(), self.dyn_clock.clone())?;
        self.state = state.clone();
        self.collector = Some(spawn_collector(state, listener));
        Ok(())
    }

    /// Stops the collector gracefully; [`Env::start_collector`] brings it back on the
    /// same address and database. In between, the port refuses connections, as a
    /// collector that is down would.
    pub async fn stop_collector(&mut self) -> anyhow::Result<()> {
        let (stop, task) = self
            .collector
            .take()
            .context("the collector is not running")?;
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .context("the collector did not stop within 20 s")??;
        Ok(())
    }

    pub async fn start_collector(&mut self) -> anyhow::Result<()> {
        if self.collector.is_some() {
            bail!("the collector is already running");
        }
        let listener = tokio::net::TcpListener::bind(self.config.listen_addr).await?;
        let state = AppState::new(self.config.clone(), self.dyn_clock.clone())?;
        self.state = state.clone();
        self.collector = Some(spawn_collector(state, listener));
        Ok(())
    }

    pub fn demo(&self, path: &str) -> String {
        format!("{}{}", self.demo_url, path)
    }

    /// A read-API GET (with the bearer token) that must answer 200 with JSON.
    pub async fn api_get(&self, path_and_query: &str) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.collector_url, path_and_query);
        let response = self
            .http
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body = response.text().await?;
        if status != reqwest::StatusCode::OK {
            bail!("GET {url}: {status}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("GET {url}: not JSON: {body}"))
    }

    /// The visitor's sessions, newest first.
    pub async fn sessions_of(&self, visitor_id: &str) -> anyhow::Result<Vec<Value>> {
        let listing = self
            .api_get(&format!(
                "/api/v2/journey/sessions?deploymentId={DEPLOYMENT}&customerCookieId={visitor_id}&pageSize=100"
            ))
            .await?;
        entities(&listing)
    }

    pub async fn session(&self, session_id: &str) -> anyhow::Result<Value> {
        self.api_get(&format!("/api/v2/journey/sessions/{session_id}"))
            .await
    }

    /// Every event of the session, oldest first (following `nextUri`).
    pub async fn events_of(&self, session_id: &str) -> anyhow::Result<Vec<Value>> {
        let mut all = Vec::new();
        let mut next = Some(format!(
            "/api/v2/journey/sessions/{session_id}/events?pageSize=100"
        ));
        while let Some(path) = next {
            let listing = self.api_get(&path).await?;
            all.extend(entities(&listing)?);
            next = listing["nextUri"].as_str().map(str::to_owned);
        }
        Ok(all)
    }
}

fn entities(listing: &Value) -> anyhow::Result<Vec<Value>> {
    listing["entities"]
        .as_array()
        .cloned()
        .ok_or_else(|| anyhow!("a listing without entities: {listing}"))
}

/// The names of events, in listing order.
pub fn event_names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|event| {
            event["webEvent"]["eventName"]
                .as_str()
                .unwrap_or("<none>")
                .to_owned()
        })
        .collect()
}

/// `window.ac.state()` once the SDK has loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct SdkState {
    pub visitor_id: String,
    pub session_id: Option<String>,
    pub queued: u64,
}

/// A chromedriver process and a WebDriver session with a headless Chromium. Call
/// [`Browser::finish`] at the end; if a test panics first, `Drop` still ends the
/// WebDriver session and kills chromedriver's process group.
pub struct Browser {
    pub client: Client,
    driver_url: String,
    session_id: String,
    driver: DriverProcess,
    _profile: tempfile::TempDir,
}

struct DriverProcess {
    child: Child,
    port: u16,
    session_id: Option<String>,
}

impl Drop for DriverProcess {
    fn drop(&mut self) {
        if let Some(session_id) = self.session_id.take() {
            // Quits Chromium; a blocking request since Drop cannot await.
            let _ = delete_session_blocking(self.port, &session_id);
        }
        let pid = self.child.id();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // chromedriver was started as the leader of its own process group: end whatever
        // browser processes of ours are left in that group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn delete_session_blocking(port: u16, session_id: &str) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "DELETE /session/{session_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Browser {
    pub async fn start() -> anyhow::Result<Browser> {
        let chromedriver =
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned());
        let chromium =
            std::env::var("CHROME_BIN").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let port = free_port()?;
        let child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {chromedriver} (set CHROMEDRIVER)"))?;
        let mut driver = DriverProcess {
            child,
            port,
            session_id: None,
        };
        let driver_url = format!("http://127.0.0.1:{port}");

        let http = reqwest::Client::new();
        let status_url = format!("{driver_url}/status");
        wait_until("chromedriver to answer /status", PATIENCE, || async {
            let response = http.get(&status_url).send().await?;
            let status: Value = response.json().await?;
            Ok((status["value"]["ready"] == json!(true)).then_some(()))
        })
        .await?;

        let profile = tempfile::tempdir()?;
        let capabilities = json!({
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let capabilities = match capabilities {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&driver_url)
            .await
            .context("cannot open a WebDriver session")?;
        let session_id = client
            .session_id()
            .await?
            .ok_or_else(|| anyhow!("the WebDriver session has no id"))?;
        driver.session_id = Some(session_id.clone());
        Ok(Browser {
            client,
            driver_url,
            session_id,
            driver,
            _profile: profile,
        })
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("open {url}"))
    }

    /// Runs a Chrome DevTools Protocol command on the current tab, through
    /// chromedriver's `goog/cdp/execute`, and returns its result.
    pub async fn cdp(&self, command: &str, params: Value) -> anyhow::Result<Value> {
        let url = format!(
            "{}/session/{}/goog/cdp/execute",
            self.driver_url, self.session_id
        );
        let response = reqwest::Client::new()
            .post(&url)
            .json(&json!({"cmd": command, "params": params}))
            .send()
            .await
            .with_context(|| format!("CDP {command}"))?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("CDP {command}: {status}: {body}");
        }
        Ok(body["value"].clone())
    }

    /// Waits until the SDK has loaded on the current page and returns its state.
    pub async fn sdk_state(&self) -> anyhow::Result<SdkState> {
        wait_until("the SDK to load (window.ac.loaded and a visitorId)", PATIENCE, || async {
            let state = self
                .client
                .execute(
                    "return (window.ac && window.ac.loaded && window.ac.state) ? window.ac.state() : null;",
                    vec![],
                )
                .await?;
            let Some(visitor_id) = state["visitorId"].as_str() else {
                return Ok(None);
            };
            Ok(Some(SdkState {
                visitor_id: visitor_id.to_owned(),
                session_id: state["sessionId"].as_str().map(str::to_owned),
                queued: state["queued"].as_u64().unwrap_or(0),
            }))
        })
        .await
    }

    /// Waits until the SDK has loaded and started its session, which it does with the
    /// automatic page view at the end of the task that called `init`, and returns its
    /// state.
    pub async fn sdk_state_with_session(&self) -> anyhow::Result<SdkState> {
        wait_until("the SDK's session", PATIENCE, || async {
            let state = self.sdk_state().await?;
            Ok(state.session_id.is_some().then_some(state))
        })
        .await
    }

    pub async fn text_of(&self, css: &str) -> anyhow::Result<String> {
        let element = self.client.find(Locator::Css(css)).await?;
        Ok(element.text().await?)
    }

    /// Waits until the element's text is exactly `expected`.
    pub async fn wait_for_text(&self, css: &str, expected: &str) -> anyhow::Result<()> {
        let last = std::sync::Mutex::new(String::new());
        let last_ref = &last;
        let result = wait_until(
            &format!("{css} to say {expected:?}"),
            PATIENCE,
            || async move {
                let text = self.text_of(css).await?;
                let done = text == expected;
                *last_ref.lock().unwrap() = text;
                Ok(done.then_some(()))
            },
        )
        .await;
        let last = last.into_inner().unwrap();
        result.with_context(|| format!("{css} says {last:?}"))
    }

    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("find {css}"))?
            .click()
            .await
            .with_context(|| format!("click {css}"))?;
        Ok(())
    }

    pub async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let element = self.client.find(Locator::Css(css)).await?;
        element.clear().await?;
        element.send_keys(text).await?;
        Ok(())
    }

    /// Saves a PNG screenshot of the viewport to `target/e2e-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let dir = workspace_root().join("target").join("e2e-screenshots");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// The browser's console messages since the last call (chromedriver's log).
    pub async fn console_log(&self) -> anyhow::Result<Vec<String>> {
        let url = format!("{}/session/{}/se/log", self.driver_url, self.session_id);
        let response: Value = reqwest::Client::new()
            .post(&url)
            .json(&json!({"type": "browser"}))
            .send()
            .await?
            .json()
            .await?;
        let entries = response["value"].as_array().cloned().unwrap_or_default();
        Ok(entries
            .iter()
            .map(|entry| {
                format!(
                    "{} {}",
                    entry["level"].as_str().unwrap_or("?"),
                    entry["message"].as_str().unwrap_or("")
                )
            })
            .collect())
    }

    /// Ends the session, printing the page console to stderr (shown when the test
    /// fails), and passes the test's result through.
    pub async fn finish(mut self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        match self.console_log().await {
            Ok(lines) if lines.is_empty() => eprintln!("browser console: (empty)"),
            Ok(lines) => eprintln!("browser console:\n  {}", lines.join("\n  ")),
            Err(error) => eprintln!("browser console unavailable: {error:#}"),
        }
        self.driver.session_id = None;
        let _ = self.client.clone().close().await;
        drop(self.driver);
        result
    }
}
