//! The `footpath-collector` binary: reads the configuration, opens the database and
//! serves until Ctrl-C or SIGTERM. Everything else lives in the library.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use footpath_collector::clock::SystemClock;
use footpath_collector::config::{sources, Config, LogFormat};
use footpath_collector::{serve, AppState};
use tracing_subscriber::EnvFilter;

/// Collects web events from the Footpath browser SDK, keeps web sessions and serves
/// the Journey API.
///
/// Settings come from the TOML file given with --config, then from FOOTPATH_*
/// environment variables, then from flags; later sources override earlier ones. Log
/// verbosity follows RUST_LOG (default: info); at info and above, logs carry no
/// visitor's data (ids, addresses, user agents, pages).
#[derive(Parser)]
#[command(name = "footpath-collector", version, after_help = settings_help())]
struct Cli {
    /// TOML configuration file; every setting has a default, so it is optional.
    #[arg(long, env = "FOOTPATH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Bearer token for the read API, at least 32 characters; repeat the flag, or
    /// separate tokens with commas in the environment variable. The older spelling of
    /// `--api-tokens` / FOOTPATH_API_TOKENS; when given, it replaces them.
    #[arg(
        long = "api-token",
        env = "FOOTPATH_API_TOKEN",
        value_name = "TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    api_tokens: Vec<String>,
}

/// The naming rule and every setting's name, after clap's own help.
fn settings_help() -> String {
    let mut help = String::from(
        "Every setting of the configuration file is also an environment variable and a \
         flag: FOOTPATH_ and the name in capitals, or -- and the name with dashes; a key of \
         a table joins with __ or a dot (FOOTPATH_DESK__TITLE, --desk.title). Values are \
         plain text, numbers, true/false, comma-separated lists or inline TOML. Settings:\n",
    );
    for name in sources::SETTING_NAMES {
        help.push_str(&format!(
            "  --{:<40} {}{}\n",
            name.replace('_', "-"),
            sources::ENV_PREFIX,
            name.to_ascii_uppercase()
        ));
    }
    help
}

/// Reads every source of settings: the file, the environment, the flags.
fn load_config() -> anyhow::Result<(Config, Vec<String>)> {
    let (mut overrides, unknown_env) = sources::env_overrides(std::env::vars_os())?;
    let (flags, rest) = sources::flag_overrides(std::env::args_os().collect())?;
    overrides.extend(flags);
    let cli = Cli::parse_from(rest);
    let mut config = Config::from_sources(cli.config.as_deref(), &overrides)?;
    if !cli.api_tokens.is_empty() {
        config.api_tokens = cli.api_tokens;
        config.validate()?;
    }
    Ok((config, unknown_env))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (config, unknown_env) = load_config()?;
    let filter = EnvFilter::try_from_default_env()
        // refinery logs every migration's whole SQL at info; its warnings are enough.
        .unwrap_or_else(|_| EnvFilter::new("info,refinery_core=warn"));
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
    for name in unknown_env {
        tracing::warn!(variable = %name, "not a setting of the collector; ignored");
    }
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
