//! `cargo xtask <command>`: the project's build automation.
//!
//! - `setup`: installs what this machine lacks (Debian packages, wasm-bindgen-cli,
//!   cargo-fuzz, cargo-deny).
//! - `sdk`:   builds the browser SDK into `target/sdk/` and prints its sizes.
//! - `size`:  prints raw, gzip and brotli sizes of everything a page downloads.
//! - `run`:   README command 1: collector, demo site and agents' API, with URLs
//!   (`--postgres`: on a throwaway PostgreSQL cluster instead of SQLite).
//! - `test`:  README command 2: every test (native, Node, the npm package's types and
//!   contents, wasm in Chromium, end-to-end), then a short run of each fuzz target,
//!   and the licence, ban and source check of every crate (`cargo deny`, by
//!   `deny.toml`).
//! - `fuzz`:  longer runs of the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer).
//! - `deny`:  the dependency check of `test` alone.
//! - `package`: the npm package checks of `test` alone (`js/`: Node tests of its entry,
//!   `tsc --noEmit` over the typed example, `npm pack --dry-run`).
//! - `postgres`: a PostgreSQL server of one's own in `target/postgres/`, in the
//!   foreground until Ctrl-C (for trying the server backend by hand).
//!
//! Every step checks before it acts, so a second run reuses what is installed and built.

mod deny;
mod fuzz;
mod package;
mod postgres;
mod sdk;
mod setup;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("setup") => setup::setup().map(|_| ()),
        Some("sdk") => setup::setup()
            .and_then(|tools| sdk::build(&tools))
            .and_then(|_| sdk::report(false))
            .map(|_| ()),
        Some("size") => sdk::check_budget(args.iter().any(|a| a == "--twiggy")),
        Some("run") => run(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("fuzz") => fuzz::command(&args[1..]),
        Some("postgres") => setup::setup().and_then(|_| postgres::command(&args[1..])),
        Some("package") => setup::install_js_tools().and_then(|()| {
            let mut tally = Tally::default();
            let outcome = package::check(&mut tally);
            println!("{} passed, {} failed", tally.passed, tally.failed);
            outcome
        }),
        Some("deny") => {
            setup::install_cargo_deny().and_then(|()| deny::check(&mut Tally::default()))
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <setup|sdk|size [--twiggy]|run [--postgres]|test [--no-wasm] [--no-e2e] [--no-fuzz]\
                 |fuzz [--seconds N] [target] [--replay FILE]|deny|package|postgres [--port N]>"
            );
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Passed and failed test counts, summed over every runner's `test result:` lines.
#[derive(Default, Clone, Copy)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
}

/// Runs a test command, copying its output through and counting the `test result:`
/// lines of cargo's and wasm-bindgen's runners and the `# pass N` / `# fail N` lines of
/// Node's (TAP); fails unless the command succeeds.
pub fn run_tests(command: &mut Command, tally: &mut Tally) -> Result<()> {
    use std::io::{BufRead, BufReader};
    eprintln!("$ {}", describe(command));
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {}", describe(command)))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        let node_count = |prefix: &str| line.strip_prefix(prefix)?.trim().parse::<u64>().ok();
        tally.passed += node_count("# pass ").unwrap_or(0);
        tally.failed += node_count("# fail ").unwrap_or(0);
        if let Some(rest) = line.trim().strip_prefix("test result: ") {
            let count = |word: &str| {
                rest.split(';')
                    .find_map(|part| {
                        part.trim()
                            .strip_suffix(word)?
                            .trim()
                            .rsplit(' ')
                            .next()?
                            .parse::<u64>()
                            .ok()
                    })
                    .unwrap_or(0)
            };
            tally.passed += count(" passed");
            tally.failed += count(" failed");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{} failed ({status})", describe(command));
    }
    Ok(())
}

/// Runs a command, echoing it, and fails unless it succeeds.
pub fn run_checked(command: &mut Command) -> Result<()> {
    eprintln!("$ {}", describe(command));
    let status = command
        .status()
        .with_context(|| format!("could not start {}", describe(command)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(command));
    }
    Ok(())
}

fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// The cargo that invoked us (rustup's), for the native parts of the workspace.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root());
    command
}

fn test(args: &[String]) -> Result<()> {
    let with_wasm = !args.iter().any(|a| a == "--no-wasm");
    let with_e2e = !args.iter().any(|a| a == "--no-e2e");
    let with_fuzz = !args.iter().any(|a| a == "--no-fuzz");
    let tools = setup::setup()?;
    sdk::build(&tools)?;
    sdk::report(false)?;
    // Native unit and integration tests of every crate, the SDK's core included.
    let mut tally = Tally::default();
    let mut native = cargo();
    native.args(["test", "--workspace", "--exclude", "footpath-e2e"]);
    let outcome = run_tests(&mut native, &mut tally);
    // The pure parts of the SDK's `host.js`, with Node's built-in test runner, against
    // vectors the Rust encoder wrote (`sdk-wasm/tests/queue_vectors.rs`).
    let outcome = outcome.and_then(|_| {
        let mut node = Command::new("node");
        node.args(["--test", "--test-reporter=tap", "sdk-wasm/tests/"])
            .current_dir(root());
        run_tests(&mut node, &mut tally).context("the SDK's host.js tests (Node)")
    });
    // The npm package in `js/`: its ESM entry, its TypeScript declarations, its contents.
    let outcome = outcome.and_then(|_| package::check(&mut tally));
    let outcome = outcome.and_then(|_| {
        if with_wasm {
            sdk::test_in_browser(&tools, &mut tally)
        } else {
            Ok(())
        }
    });
    let outcome = outcome.and_then(|_| {
        if !with_e2e {
            return Ok(());
        }
        let mut e2e = cargo();
        e2e.args([
            "test",
            "-p",
            "footpath-e2e",
            "--test",
            "it",
            "--",
            "--test-threads=1",
        ])
        .env("FOOTPATH_SDK_DIR", root().join("target/sdk"))
        .env("CHROMEDRIVER", &tools.chromedriver)
        .env("FOOTPATH_SNIPPET", root().join("js/snippet.min.js"));
        run_tests(&mut e2e, &mut tally)
    });
    // Each fuzz target for a few seconds (FOOTPATH_FUZZ_SECONDS), counted as one test.
    let outcome = outcome.and_then(|_| {
        if with_fuzz {
            fuzz::smoke(&mut tally)
        } else {
            Ok(())
        }
    });
    // The licences, bans and sources of every crate (deny.toml), one test per check. It
    // takes seconds and runs whatever the tests above found: a licence that came in
    // with a dependency is reported even when a test fails.
    let dependencies = deny::check(&mut tally);
    let outcome = outcome.and(dependencies);
    // One plain closing line over every runner, for people and for CI.
    println!("{} passed, {} failed", tally.passed, tally.failed);
    outcome
}

/// README command 1: builds everything, then runs the collector (embedded database,
/// or with `--postgres` a throwaway PostgreSQL cluster in `target/demo/`, gone when
/// this command ends), the demo site on a second origin, and prints where to open
/// them.
fn run(args: &[String]) -> Result<()> {
    let on_postgres = match args {
        [] => false,
        [flag] if flag == "--postgres" => true,
        _ => bail!("usage: cargo xtask run [--postgres]"),
    };
    let tools = setup::setup()?;
    sdk::build(&tools)?;
    run_checked(cargo().args(["build", "-p", "footpath-collector", "-p", "footpath-demo"]))?;
    let data = root().join("target/demo");
    std::fs::create_dir_all(&data)?;
    let token = setup::random_token()?;
    // The demo shop's server signs identity tokens at sign-in (docs/identity.md) with a
    // secret it shares with the collector; like the token, a new one at each start.
    let identity_secret = setup::random_token()?;
    let config_path = data.join("footpath.toml");
    let example =
        std::fs::read_to_string(root().join("footpath.toml")).context("reading footpath.toml")?;
    std::fs::write(
        &config_path,
        format!(
            "{example}\n# Added by `cargo xtask run`: the demo shop signs sign-ins with this secret.\n\
             [[identity_verification]]\ndeployment_id = \"demo\"\nidentity_secret = \"{identity_secret}\"\n"
        ),
    )?;
    let collector_url = "http://127.0.0.1:8700";
    let demo_url = "http://127.0.0.1:8701";
    // Kept until the collector stops; Ctrl-C ends this command before `Drop` runs,
    // so the cluster's watcher stops it then.
    let cluster = if on_postgres {
        let cluster = footpath_pgcluster::Cluster::start(&data)?;
        cluster.stop_when_process_ends()?;
        Some(cluster)
    } else {
        None
    };
    let database = match &cluster {
        Some(cluster) => cluster.create_database("footpath")?,
        None => format!("sqlite://{}", data.join("footpath.sqlite3").display()),
    };
    // Where `cargo build` put them: CARGO_TARGET_DIR when set (a shared target folder).
    let binaries = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("debug");
    let mut collector = Command::new(binaries.join("footpath-collector"))
        .current_dir(root())
        .arg("--config")
        .arg(&config_path)
        .env("FOOTPATH_API_TOKEN", &token)
        .env("FOOTPATH_DATABASE_URL", &database)
        .env("FOOTPATH_SDK_DIR", root().join("target/sdk"))
        .spawn()
        .context("starting the collector")?;
    let mut demo = Command::new(binaries.join("footpath-demo"))
        .current_dir(root())
        .args([
            "--listen",
            "127.0.0.1:8701",
            "--collector-url",
            collector_url,
            "--deployment-id",
            "demo",
        ])
        .env("FOOTPATH_DEMO_IDENTITY_SECRET", &identity_secret)
        .spawn()
        .context("starting the demo site")?;
    println!();
    println!("Footpath is running (Ctrl-C stops it):");
    println!("  demo website      {demo_url}/");
    println!("  help centre       {demo_url}/support  (a page written for the Journey SDK: plugins, forms)");
    println!("  collector         {collector_url}/healthz");
    println!("  agents' desk      {collector_url}/desk/  (sign in with the access token {token})");
    println!("  agents' API       {collector_url}/api/v2/journey/sessions  (Authorization: Bearer {token})");
    println!("  example           curl -H 'Authorization: Bearer {token}' {collector_url}/api/v2/journey/sessions");
    println!("  database          {database}");
    println!();
    let status = collector.wait()?;
    let _ = demo.kill();
    if !status.success() {
        bail!("the collector stopped: {status}");
    }
    Ok(())
}
