//! The checks of the npm package in `js/` (`footpath-sdk`), run by `cargo xtask test`:
//! its ESM entry against a fake page with Node's test runner, its declarations by
//! compiling the typed example with `tsc --noEmit`, and what `npm pack` would ship.
//! Nothing is published.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{root, run_checked, run_tests, Tally};

/// Every file the package ships, and nothing else: the build tools in `node_modules`,
/// the loader (which only works appended to the wasm glue), the tests and the typed
/// example stay out.
const SHIPPED: &[&str] = &[
    "LICENSE",
    "README.md",
    "index.d.mts",
    "index.mjs",
    "package.json",
    "snippet.js",
    "snippet.min.js",
];

/// Runs the three checks; each of `tsc` and `npm pack` counts as one test, printed as
/// `test package::<check> ... ok`, and the Node tests count one each. All three run
/// even when one fails, so that one run shows every problem.
pub fn check(tally: &mut Tally) -> Result<()> {
    let js = root().join("js");
    let mut failed = Vec::new();

    let mut node = Command::new("node");
    node.args(["--test", "--test-reporter=tap", "js/tests/"])
        .current_dir(root());
    if let Err(error) = run_tests(&mut node, tally) {
        eprintln!("xtask: {error:#}");
        failed.push("the ESM entry's tests (node --test js/tests/)");
    }

    // The example imports the package by its own name, so the compiler resolves it
    // through package.json's `exports` as a site's bundler would.
    let mut tsc = Command::new(js.join("node_modules/.bin/tsc"));
    tsc.args(["--noEmit", "--pretty", "false", "-p", "examples"])
        .current_dir(&js);
    count(tally, "types", run_checked(&mut tsc), &mut failed);

    count(tally, "pack", pack_contents(), &mut failed);

    if !failed.is_empty() {
        bail!("the npm package in js/ failed: {}", failed.join(", "));
    }
    Ok(())
}

fn count(tally: &mut Tally, check: &'static str, outcome: Result<()>, failed: &mut Vec<&str>) {
    match outcome {
        Ok(()) => {
            println!("test package::{check} ... ok");
            tally.passed += 1;
        }
        Err(error) => {
            eprintln!("xtask: {error:#}");
            println!("test package::{check} ... FAILED");
            tally.failed += 1;
            failed.push(check);
        }
    }
}

/// `npm pack --dry-run` lists exactly [`SHIPPED`], and the licence shipped is the
/// repository's.
fn pack_contents() -> Result<()> {
    let js = root().join("js");
    let mut command = Command::new("npm");
    command
        .args(["pack", "--dry-run", "--json", "--ignore-scripts"])
        .current_dir(&js);
    eprintln!("$ npm pack --dry-run --json --ignore-scripts (in js/)");
    let output = command.output().context("could not start npm")?;
    if !output.status.success() {
        bail!(
            "npm pack --dry-run failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let listing: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("npm pack --json printed no JSON")?;
    let mut files: Vec<&str> = listing[0]["files"]
        .as_array()
        .context("npm pack --json listed no files")?
        .iter()
        .filter_map(|file| file["path"].as_str())
        .collect();
    files.sort_unstable();
    println!("npm pack would ship: {}", files.join(" "));
    if files != SHIPPED {
        bail!(
            "npm pack would ship {files:?}, expected exactly {SHIPPED:?} (see `files` in js/package.json)"
        );
    }
    let licence = std::fs::read(root().join("LICENSE")).context("reading LICENSE")?;
    if std::fs::read(js.join("LICENSE")).context("reading js/LICENSE")? != licence {
        bail!("js/LICENSE differs from LICENSE: copy it again");
    }
    Ok(())
}
