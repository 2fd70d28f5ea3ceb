//! The `footpath-collector` binary: reads the configuration, opens the database and
//! serves until Ctrl-C or SIGTERM. Everything else lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use footpath_collector::clock::SystemClock;
use footpath_collector::config::{Config, LogFormat};
use footpath_collector::{serve, AppState};
use tracing_subscriber::EnvFilter;

/// Collects web events from the Footpath browser SDK, keeps web sessions and serves
/// the Journey API.
///
/// Settings come from the TOML file given with --config (deployments can only be
/// configured there), then from FOOTPATH_* environment variables, then from flags;
/// later sources override earlier ones. Log verbosity follows RUST_LOG (default: info);
/// at info and above, logs carry no visitor's data (ids, addresses, user agents, pages).
#[derive(Parser)]
#[command(name = "footpath-collector", version)]
struct Cli {
    /// TOML configuration file; every setting has a default, so it is optional.
    #[arg(long, env = "FOOTPATH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:8700].
    #[arg(long, env = "FOOTPATH_LISTEN_ADDR", value_name = "ADDR")]
    listen_addr: Option<SocketAddr>,

    /// SQLite database file, created if missing [default: footpath.sqlite3].
    #[arg(long, env = "FOOTPATH_DATABASE_PATH", value_name = "FILE")]
    database_path: Option<PathBuf>,

    /// Folder whose files are served under /sdk/ [default: target/sdk].
    #[arg(long, env = "FOOTPATH_SDK_DIR", value_name = "DIR")]
    sdk_dir: Option<PathBuf>,

    /// A session ends after this many seconds without activity [default: 1200].
    #[arg(long, env = "FOOTPATH_SESSION_TIMEOUT_SECONDS", value_name = "SECONDS")]
    session_timeout_seconds: Option<u64>,

    /// MaxMind-format (GeoIP2/GeoLite2 City) database file for geolocation
    /// [default: none, no geolocation].
    #[arg(long, env = "FOOTPATH_GEOIP_DATABASE_PATH", value_name = "FILE")]
    geoip_database_path: Option<PathBuf>,

    /// JSON file of known referrers, added to the embedded list (same shape as
    /// collector/data/referrers/referrers.json) [default: none, the embedded list].
    #[arg(long, env = "FOOTPATH_REFERRER_LIST_PATH", value_name = "FILE")]
    referrer_list_path: Option<PathBuf>,

    /// Bearer token for the read API, at least 32 characters; repeat the flag, or
    /// separate tokens with commas in the environment variable. Replaces the tokens of
    /// the configuration file.
    #[arg(
        long = "api-token",
        env = "FOOTPATH_API_TOKEN",
        value_name = "TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    api_tokens: Vec<String>,

    /// How log lines are written: text, or json (one object per line, with the
    /// request's `request_id`) [default: text].
    #[arg(long, env = "FOOTPATH_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<LogFormat>,
}

impl Cli {
    fn into_config(self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(listen_addr) = self.listen_addr {
            config.listen_addr = listen_addr;
        }
        if let Some(database_path) = self.database_path {
            config.database_path = database_path;
        }
        if let Some(sdk_dir) = self.sdk_dir {
            config.sdk_dir = sdk_dir;
        }
        if let Some(seconds) = self.session_timeout_seconds {
            config.session_timeout_seconds = seconds;
        }
        if let Some(path) = self.geoip_database_path {
            config.geoip_database_path = Some(path);
        }
        if let Some(path) = self.referrer_list_path {
            config.referrer_list_path = Some(path);
        }
        if !self.api_tokens.is_empty() {
            config.api_tokens = self.api_tokens;
        }
        if let Some(log_format) = self.log_format {
            config.log_format = log_format;
        }
        config.validate()?;
        Ok(config)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Cli::parse().into_config()?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        // Spans as well as events: the request span's `request_id` is in every line
        // logged while a request is handled.
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(filter)
            .init(),
    }
    tracing::info!(?config, "starting");
    if config.deployments.is_empty() {
        tracing::warn!("no deployments are configured: every batch will be refused");
    }

    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen_addr))?;
    let address = listener.local_addr()?;
    // Opening the database, the GeoIP file or the referrer list may fail; each error
    // names its file.
    let state = AppState::new(config, Arc::new(SystemClock)).context("cannot start")?;
    tracing::info!("listening on http://{address}");
    serve(state, listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on Ctrl-C, or on SIGTERM (what service managers and containers send).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
