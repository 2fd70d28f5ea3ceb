//! `footpath-sign-identity`: prints an identity token (docs/identity.md), as a site's
//! server would sign one, for trying verified identity by hand and for scripts.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::Parser;
use serde_json::{json, Map};

/// Prints an identity token for one user of one deployment. The secret is read from the
/// environment (FOOTPATH_IDENTITY_SECRET), never from the command line, where other
/// users of the machine could read it.
#[derive(Parser)]
#[command(name = "footpath-sign-identity", version)]
struct Args {
    /// The deployment id (the token's `aud`).
    #[arg(long)]
    deployment: String,
    /// The site's user id; must equal the `loginId` the page passes to `identify`.
    #[arg(long)]
    sub: Option<String>,
    /// The user's email.
    #[arg(long)]
    email: Option<String>,
    /// The user's phone number in E.164, such as +442079460018.
    #[arg(long)]
    phone_number: Option<String>,
    #[arg(long)]
    given_name: Option<String>,
    #[arg(long)]
    family_name: Option<String>,
    /// Binds the token to one browser: the visitor's `_footpath_vid` cookie.
    #[arg(long)]
    vid: Option<String>,
    /// Minutes until the token expires.
    #[arg(long, default_value_t = 60)]
    expires_in_minutes: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let secret = std::env::var("FOOTPATH_IDENTITY_SECRET")
        .context("set FOOTPATH_IDENTITY_SECRET to the deployment's identity_secret")?;
    if secret.len() < footpath_collector::config::MIN_IDENTITY_SECRET_BYTES {
        bail!(
            "FOOTPATH_IDENTITY_SECRET is shorter than {} bytes; the collector would refuse it",
            footpath_collector::config::MIN_IDENTITY_SECRET_BYTES
        );
    }
    if args.sub.is_none() && args.email.is_none() && args.phone_number.is_none() {
        bail!("give at least one of --sub, --email, --phone-number");
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut claims = Map::new();
    claims.insert("aud".into(), json!(args.deployment));
    claims.insert("exp".into(), json!(now + args.expires_in_minutes * 60));
    let optional = [
        ("sub", args.sub),
        ("email", args.email),
        ("phone_number", args.phone_number),
        ("given_name", args.given_name),
        ("family_name", args.family_name),
        ("vid", args.vid),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            claims.insert(name.into(), json!(value));
        }
    }
    println!(
        "{}",
        footpath_collector::identity::sign_identity_token(&secret, &claims)
    );
    Ok(())
}
