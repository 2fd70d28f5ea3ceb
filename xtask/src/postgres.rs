//! `cargo xtask postgres [--port N]`: a PostgreSQL server of one's own, for trying the
//! server backend by hand. Its cluster lives in `target/postgres/` and is kept between
//! runs (delete the folder to start afresh); the server runs in the foreground on
//! 127.0.0.1 (port 5433 unless `--port` says otherwise) until Ctrl-C, which stops it
//! cleanly. Tests do not use this: each starts a throwaway cluster of its own.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use footpath_pgcluster::Cluster;

use crate::root;

pub fn command(args: &[String]) -> Result<()> {
    let port = match args {
        [] => 5433,
        [flag, port] if flag == "--port" => port
            .parse()
            .with_context(|| format!("--port {port:?} is not a port number"))?,
        _ => bail!("usage: cargo xtask postgres [--port N]"),
    };
    let cluster = Cluster::init(&root().join("target/postgres"), port)?;
    let mut server = cluster
        .foreground_command()
        .spawn()
        .context("starting postgres")?;
    if let Err(error) = cluster.wait_until_ready(Duration::from_secs(30)) {
        let _ = server.kill();
        return Err(error.into());
    }
    let url = cluster.create_database("footpath")?;
    println!("PostgreSQL is running (Ctrl-C stops it):");
    println!("  database   {url}");
    println!("  psql       psql {url}");
    let status = server.wait()?;
    println!("postgres stopped ({status})");
    Ok(())
}
