use clap::Parser;
use footpath_demo::DemoConfig;

/// The Footpath demo shop.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8701")]
    listen: std::net::SocketAddr,
    /// Base URL of the collector that serves the SDK and takes the events.
    #[arg(long, default_value = "http://127.0.0.1:8700")]
    collector_url: String,
    /// The deployment id pages pass to `ac('init')`.
    #[arg(long, default_value = "demo")]
    deployment_id: String,
    /// The deployment's identity secret (the collector's `identity_secret`); with it
    /// the shop signs identity tokens at sign-in.
    #[arg(long, env = "FOOTPATH_DEMO_IDENTITY_SECRET", hide_env_values = true)]
    identity_secret: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("demo shop on http://{}/", listener.local_addr()?);
    let config = DemoConfig {
        collector_url: args.collector_url,
        deployment_id: args.deployment_id,
        init_options: None,
        identity_secret: args.identity_secret,
    };
    footpath_demo::serve(config, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
