//! The dependency check of `cargo xtask test`: `cargo deny check` of licences, bans and
//! sources over every crate of the main workspace's Cargo.lock, by the rules of
//! `deny.toml` at the root (which also says what it does not cover: the separate
//! `fuzz/` workspace, and data that no crate declares).

use anyhow::{bail, Result};

use crate::{cargo, run_checked, Tally};

/// The checks, each counted as one test.
const CHECKS: &[&str] = &["licenses", "bans", "sources"];

/// Runs each check, printing a `test deny::<check> ... ok` line and counting it as one
/// passed or failed test; fails when any check found a violation.
///
/// cargo-deny reads `cargo metadata`, which needs every crate of Cargo.lock on disk,
/// including those of other platforms that no build here downloads: `cargo fetch`
/// brings them from the crates registry first (nothing when they are there). The
/// checks then run with `--frozen`: cargo-deny fetches nothing, neither crates nor
/// an advisory database.
pub fn check(tally: &mut Tally) -> Result<()> {
    run_checked(cargo().args(["fetch", "--locked"]))?;
    let mut failed = Vec::new();
    for check in CHECKS {
        let mut command = cargo();
        command.args(["deny", "--frozen", "--color", "never", "check", check]);
        let passed = run_checked(&mut command).is_ok();
        if passed {
            println!("test deny::{check} ... ok");
            tally.passed += 1;
        } else {
            println!("test deny::{check} ... FAILED");
            tally.failed += 1;
            failed.push(*check);
        }
    }
    if !failed.is_empty() {
        bail!("cargo deny found violations of deny.toml: {}", failed.join(", "));
    }
    Ok(())
}
