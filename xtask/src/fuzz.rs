//! The fuzz targets in `fuzz/` (cargo-fuzz and libFuzzer): a short smoke run of each
//! in `cargo xtask test`, and `cargo xtask fuzz [--seconds N] [target]` for longer runs.
//!
//! cargo-fuzz passes nightly-only flags to rustc (`-Zsanitizer=address` and the
//! sanitizer-coverage passes). rustup's stable toolchain accepts them with
//! `RUSTC_BOOTSTRAP=1`, and its x86_64 Linux standard library ships the AddressSanitizer
//! runtime, so no nightly toolchain is needed. The build has its own workspace, lock
//! file and target directory (`fuzz/target`); new corpus entries go to
//! `fuzz/corpus/<target>/`, crashes to `fuzz/artifacts/<target>/` (both gitignored),
//! and the committed seeds in `fuzz/seeds/<target>/` are read on every run.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::{root, run_checked, Tally};

/// Seconds per target in `cargo xtask test`, unless `FOOTPATH_FUZZ_SECONDS` says
/// otherwise.
pub const SMOKE_SECONDS: u64 = 10;
/// Seconds per target in `cargo xtask fuzz` without `--seconds`.
pub const LONG_RUN_SECONDS: u64 = 300;
/// libFuzzer reports an input that runs longer than this as a hang (a crash).
const INPUT_TIMEOUT_SECONDS: u64 = 10;

fn fuzz_dir() -> PathBuf {
    root().join("fuzz")
}

/// The targets, from the file names in `fuzz/fuzz_targets/`, in name order.
pub fn targets() -> Result<Vec<String>> {
    let dir = fuzz_dir().join("fuzz_targets");
    let mut targets = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|extension| extension == "rs") {
            if let Some(stem) = path.file_stem() {
                targets.push(stem.to_string_lossy().into_owned());
            }
        }
    }
    targets.sort();
    Ok(targets)
}

/// `cargo fuzz` on rustup's stable toolchain (see the module documentation).
fn cargo_fuzz(subcommand: &str) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .current_dir(root())
        .args(["fuzz", subcommand])
        .args(["--fuzz-dir", "fuzz", "--target-dir", "fuzz/target"])
        .env("RUSTC_BOOTSTRAP", "1")
        .stdin(Stdio::null());
    command
}

/// Builds every target (the first build compiles the collector with the sanitizer and
/// coverage instrumentation; later builds are incremental).
pub fn build() -> Result<()> {
    run_checked(&mut cargo_fuzz("build"))
        .context("building the fuzz targets (`cargo xtask setup` installs cargo-fuzz)")
}

/// What libFuzzer reported at the end of one run.
#[derive(Default)]
struct RunStats {
    executions: Option<u64>,
    executions_per_second: Option<u64>,
    new_units: Option<u64>,
    seconds: Option<u64>,
    crash_input: Option<String>,
}

impl RunStats {
    fn read_line(&mut self, line: &str) {
        let number = |text: &str| text.trim().parse::<u64>().ok();
        if let Some(value) = line.strip_prefix("stat::number_of_executed_units:") {
            self.executions = number(value);
        } else if let Some(value) = line.strip_prefix("stat::average_exec_per_sec:") {
            self.executions_per_second = number(value);
        } else if let Some(value) = line.strip_prefix("stat::new_units_added:") {
            self.new_units = number(value);
        } else if let Some(rest) = line.strip_prefix("Done ") {
            // "Done 56942 runs in 11 second(s)"
            self.seconds = rest
                .split(" in ")
                .nth(1)
                .and_then(|text| number(text.split(' ').next()?));
        } else if let Some((_, path)) = line.split_once("Test unit written to ") {
            // libFuzzer's own line comes first; cargo-fuzz repeats it in a summary.
            if self.crash_input.is_none() {
                self.crash_input = path.split_whitespace().next().map(str::to_owned);
            }
        }
    }

    fn summary(&self) -> String {
        let show =
            |value: Option<u64>| value.map_or_else(|| "?".to_owned(), |value| value.to_string());
        format!(
            "{} executions in {} s, {} exec/s, {} new corpus entries",
            show(self.executions),
            show(self.seconds),
            show(self.executions_per_second),
            show(self.new_units)
        )
    }
}

/// Runs one target for `seconds` from its corpus and seeds. libFuzzer's output goes
/// to `fuzz/artifacts/<target>/last-run.log`; its last lines are shown on failure.
fn run_target(target: &str, seconds: u64) -> Result<RunStats> {
    let corpus = fuzz_dir().join("corpus").join(target);
    let artifacts = fuzz_dir().join("artifacts").join(target);
    let seeds = fuzz_dir().join("seeds").join(target);
    std::fs::create_dir_all(&corpus)?;
    std::fs::create_dir_all(&artifacts)?;
    // The binary that `build` made, run directly rather than through `cargo fuzz run`,
    // so that every target runs the same build even while the collector is edited.
    let mut command = Command::new(binary(target)?);
    command
        .current_dir(root())
        .env("ASAN_OPTIONS", "detect_odr_violation=0")
        .stdin(Stdio::null())
        .args([
            format!("-artifact_prefix={}/", artifacts.display()),
            format!("-max_total_time={seconds}"),
            format!("-timeout={INPUT_TIMEOUT_SECONDS}"),
            "-print_final_stats=1".to_owned(),
        ])
        .arg(&corpus);
    if seeds.is_dir() {
        command.arg(&seeds);
    }
    let log_path = artifacts.join("last-run.log");
    eprintln!(
        "$ {} (output in {})",
        crate::describe(&command),
        relative(&log_path).display()
    );
    let log = std::fs::File::create(&log_path)?;
    let status = command
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("could not start cargo fuzz run {target}"))?;

    let mut stats = RunStats::default();
    let mut tail = std::collections::VecDeque::new();
    for line in BufReader::new(std::fs::File::open(&log_path)?).lines() {
        let line = line?;
        stats.read_line(&line);
        if tail.len() == 40 {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    if !status.success() {
        let mut err = std::io::stderr().lock();
        for line in &tail {
            writeln!(err, "    {line}")?;
        }
        let found = match &stats.crash_input {
            Some(path) => format!("; failing input: {path}; replay it with `cargo xtask fuzz {target} --replay {path}`"),
            None => String::new(),
        };
        bail!("fuzz target {target} failed ({status}){found}");
    }
    Ok(stats)
}

/// Where `cargo fuzz build` puts a target: `fuzz/target/<host triple>/release/`.
fn binary(target: &str) -> Result<PathBuf> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(rustc)
        .arg("-vV")
        .output()
        .context("running rustc -vV")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let host = text
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .context("rustc -vV names no host")?;
    let path = fuzz_dir()
        .join("target")
        .join(host.trim())
        .join("release")
        .join(target);
    if !path.is_file() {
        bail!(
            "{} is missing: the fuzz build did not make it",
            path.display()
        );
    }
    Ok(path)
}

fn relative(path: &Path) -> &Path {
    path.strip_prefix(root()).unwrap_or(path)
}

/// `cargo xtask test`'s step: each target for a few seconds (`FOOTPATH_FUZZ_SECONDS`,
/// default [`SMOKE_SECONDS`]), each counted as one passed or failed test.
pub fn smoke(tally: &mut Tally) -> Result<()> {
    let seconds = match std::env::var("FOOTPATH_FUZZ_SECONDS") {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .context("FOOTPATH_FUZZ_SECONDS must be a whole number of seconds")?,
        Err(_) => SMOKE_SECONDS,
    };
    build()?;
    let targets = targets()?;
    let mut failed = Vec::new();
    for target in &targets {
        match run_target(target, seconds) {
            Ok(stats) => {
                println!("test fuzz::{target} ... ok ({})", stats.summary());
                tally.passed += 1;
            }
            Err(error) => {
                println!("test fuzz::{target} ... FAILED");
                eprintln!("xtask: {error:#}");
                tally.failed += 1;
                failed.push(target.as_str());
            }
        }
    }
    if !failed.is_empty() {
        bail!("fuzz targets failed: {}", failed.join(", "));
    }
    Ok(())
}

/// `cargo xtask fuzz [--seconds N] [target] [--replay FILE]`: longer runs of every
/// target (or one), with a closing table, or a replay of one input.
pub fn command(args: &[String]) -> Result<()> {
    let mut seconds = LONG_RUN_SECONDS;
    let mut chosen = None;
    let mut replay = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().context("--seconds needs a value")?;
                seconds = value
                    .parse()
                    .with_context(|| format!("--seconds {value}: not a whole number"))?;
            }
            "--replay" => replay = Some(args.next().context("--replay needs a file")?.clone()),
            other if other.starts_with('-') => bail!("unknown option {other}"),
            target => chosen = Some(target.to_owned()),
        }
    }
    crate::setup::install_cargo_fuzz()?;
    let known = targets()?;
    if let Some(target) = &chosen {
        if !known.contains(target) {
            bail!(
                "no fuzz target {target:?}; the targets are: {}",
                known.join(", ")
            );
        }
    }
    if let Some(input) = replay {
        let target = chosen.context("--replay needs the target's name")?;
        // libFuzzer runs the input once and prints the panic with its backtrace.
        let mut command = cargo_fuzz("run");
        command.arg(&target).arg(&input).env("RUST_BACKTRACE", "1");
        return run_checked(&mut command);
    }
    build()?;
    let targets = chosen.map_or(known, |target| vec![target]);
    let mut results = Vec::new();
    for target in &targets {
        let outcome = run_target(target, seconds);
        match &outcome {
            Ok(stats) => println!("fuzz {target}: ok, {}", stats.summary()),
            Err(error) => println!("fuzz {target}: FAILED: {error:#}"),
        }
        results.push((target, outcome));
    }
    println!();
    println!(
        "{:<14} {:>8} {:>14} {:>10} {:>12}  result",
        "target", "seconds", "executions", "exec/s", "new entries"
    );
    for (target, outcome) in &results {
        let show =
            |value: Option<u64>| value.map_or_else(|| "?".to_owned(), |value| value.to_string());
        match outcome {
            Ok(stats) => println!(
                "{target:<14} {:>8} {:>14} {:>10} {:>12}  ok",
                show(stats.seconds),
                show(stats.executions),
                show(stats.executions_per_second),
                show(stats.new_units)
            ),
            Err(_) => println!(
                "{target:<14} {:>8} {:>14} {:>10} {:>12}  FAILED",
                "", "", "", ""
            ),
        }
    }
    let failed = results
        .iter()
        .filter(|(_, outcome)| outcome.is_err())
        .count();
    if failed > 0 {
        bail!("{failed} fuzz target(s) failed; see fuzz/artifacts/<target>/last-run.log");
    }
    Ok(())
}
