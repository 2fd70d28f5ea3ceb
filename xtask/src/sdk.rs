//! Building, measuring and browser-testing the SDK.
//!
//! Output, in `target/sdk/` (served by the collector under `/sdk/`):
//! - `footpath.js`: wasm-bindgen's glue and `js/loader.js`, in one function scope;
//! - `footpath.wasm`: the module after wasm-bindgen and `wasm-opt -Oz`;
//! - a `.gz` and a `.br` beside each, served precompressed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::root;
use crate::run_checked;
use crate::setup::{require, Tools, WasmToolchain};

/// The whole SDK, as a page downloads it, must stay under this many gzip bytes.
pub const GZIP_BUDGET_BYTES: usize = 20_000;

const TARGET: &str = "wasm32-unknown-unknown";

pub fn out_dir() -> PathBuf {
    root().join("target/sdk")
}

/// A cargo for the wasm32 target. With Debian's toolchain the environment that
/// rustup's cargo gave us (RUSTUP_TOOLCHAIN, RUSTC, CARGO_*) is removed, so that
/// Debian's cargo uses Debian's rustc throughout.
fn wasm_cargo(tools: &Tools) -> Command {
    let mut command;
    match tools.wasm {
        WasmToolchain::Rustup => {
            command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        }
        WasmToolchain::DebianBuildStd => {
            command = Command::new("/usr/bin/cargo");
            for (key, _) in std::env::vars_os() {
                let key = key.to_string_lossy().into_owned();
                let inherited = key.starts_with("CARGO_") && key != "CARGO_HOME";
                if inherited || matches!(key.as_str(), "RUSTUP_TOOLCHAIN" | "RUSTC" | "RUSTDOC" | "CARGO" | "RUSTC_WRAPPER" | "RUSTC_WORKSPACE_WRAPPER") {
                    command.env_remove(&key);
                }
            }
            let path = std::env::var("PATH").unwrap_or_default();
            command
                .env("PATH", format!("/usr/bin:{path}"))
                .env("RUSTC", "/usr/bin/rustc")
                .env("RUSTC_BOOTSTRAP", "1");
        }
    }
    command.current_dir(root());
    command
}

fn build_std_args(tools: &Tools, testing: bool) -> Vec<&'static str> {
    match (tools.wasm, testing) {
        (WasmToolchain::Rustup, _) => vec![],
        (WasmToolchain::DebianBuildStd, false) => vec![
            "-Zbuild-std=std,panic_abort",
            "-Zpanic-immediate-abort",
            "--config",
            "profile.wasm-release.panic=\"immediate-abort\"",
            // No file names or Debug formatting in the module: nothing would show them.
            "--config",
            "target.wasm32-unknown-unknown.rustflags=[\"-Zlocation-detail=none\",\"-Zfmt-debug=none\"]",
        ],
        (WasmToolchain::DebianBuildStd, true) => vec!["-Zbuild-std=std,panic_abort", "-Zpanic-abort-tests"],
    }
}

pub fn build(tools: &Tools) -> Result<()> {
    if tools.wasm == WasmToolchain::DebianBuildStd {
        require("/usr/lib/rustlib/src/rust/library", "Debian's rust-web-src")?;
    }
    let mut cargo = wasm_cargo(tools);
    cargo
        .args(["build", "-p", "footpath-sdk", "--profile", "wasm-release", "--target", TARGET])
        .args(build_std_args(tools, false))
        .arg("--target-dir")
        .arg(root().join("target/wasm"));
    run_checked(&mut cargo)?;

    let built = root().join("target/wasm").join(TARGET).join("wasm-release/footpath_sdk.wasm");
    let bindgen_dir = root().join("target/sdk-bindgen");
    run_checked(
        Command::new("wasm-bindgen")
            .args(["--target", "no-modules", "--no-typescript", "--out-name", "footpath", "--out-dir"])
            .arg(&bindgen_dir)
            .arg(&built),
    )?;

    let out = out_dir();
    std::fs::create_dir_all(&out)?;
    let tools_bin = root().join("js/node_modules/.bin");
    run_checked(
        Command::new(tools_bin.join("wasm-opt"))
            .args(["-Oz", "--strip-debug", "--strip-producers", "--strip-target-features"])
            .arg(bindgen_dir.join("footpath_bg.wasm"))
            .arg("-o")
            .arg(out.join("footpath.wasm")),
    )?;

    let glue = std::fs::read_to_string(bindgen_dir.join("footpath.js"))?;
    let loader = std::fs::read_to_string(root().join("js/loader.js"))?;
    let script = format!("(function(){{\n{glue}\n{loader}\n}})();\n");
    let readable = bindgen_dir.join("footpath.full.js");
    std::fs::write(&readable, script)?;
    run_checked(
        Command::new(tools_bin.join("terser"))
            .arg(&readable)
            .args(["--compress", "--mangle", "--output"])
            .arg(out.join("footpath.js")),
    )?;

    for name in ["footpath.js", "footpath.wasm"] {
        compress(&out.join(name))?;
    }
    Ok(())
}

fn compress(path: &Path) -> Result<()> {
    let data = std::fs::read(path)?;
    std::fs::write(with_suffix(path, ".gz"), gzip(&data))?;
    std::fs::write(with_suffix(path, ".br"), brotli(&data))?;
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams { quality: 11, lgwin: 22, ..Default::default() };
    brotli::BrotliCompress(&mut &data[..], &mut out, &params).expect("writing to memory");
    out
}

/// Prints what a page downloads for the SDK and returns the gzip total. The budget
/// itself is enforced by the end-to-end size test and by `cargo xtask size`.
pub fn report(twiggy: bool) -> Result<usize> {
    let out = out_dir();
    let snippet = std::fs::read(root().join("js/snippet.min.js"))?;
    let mut rows = vec![("snippet (inline, js/snippet.min.js)".to_owned(), snippet)];
    for name in ["footpath.js", "footpath.wasm"] {
        let path = out.join(name);
        let data = std::fs::read(&path).with_context(|| format!("{} is missing: run `cargo xtask sdk`", path.display()))?;
        rows.push((name.to_owned(), data));
    }
    println!("{:<38} {:>9} {:>9} {:>9}", "what a page downloads", "raw", "gzip", "brotli");
    let (mut raw, mut gz, mut br) = (0, 0, 0);
    for (name, data) in &rows {
        let (g, b) = (gzip(data).len(), brotli(data).len());
        println!("{name:<38} {:>9} {g:>9} {b:>9}", data.len());
        raw += data.len();
        gz += g;
        br += b;
    }
    println!("{:<38} {raw:>9} {gz:>9} {br:>9}", "total");
    println!("gzip budget: {GZIP_BUDGET_BYTES} bytes ({} left)", GZIP_BUDGET_BYTES as i64 - gz as i64);
    if twiggy {
        let wasm = root().join("target/sdk-bindgen/footpath_bg.wasm");
        run_checked(Command::new("twiggy").args(["top", "-n", "25"]).arg(&wasm))
            .context("twiggy (cargo install twiggy)")?;
    }
    Ok(gz)
}

/// `cargo xtask size`: the report, failing when the SDK is over its budget.
pub fn check_budget(twiggy: bool) -> Result<()> {
    let gz = report(twiggy)?;
    if gz > GZIP_BUDGET_BYTES {
        bail!("the SDK is {gz} bytes gzip, over the budget of {GZIP_BUDGET_BYTES}");
    }
    Ok(())
}

/// The SDK's `wasm_bindgen_test`s, in headless Chromium through chromedriver.
pub fn test_in_browser(tools: &Tools) -> Result<()> {
    require(&tools.chromedriver.to_string_lossy(), "Debian's chromium-driver")?;
    let mut cargo = wasm_cargo(tools);
    cargo
        .args(["test", "-p", "footpath-sdk", "--test", "browser", "--target", TARGET])
        .args(build_std_args(tools, true))
        .arg("--target-dir")
        .arg(root().join("target/wasm"))
        .current_dir(root().join("sdk-wasm"))
        .env("CHROMEDRIVER", &tools.chromedriver)
        .env("WASM_BINDGEN_TEST_TIMEOUT", "60");
    run_checked(&mut cargo).context("the SDK's browser tests")?;
    if !root().join("target/sdk/footpath.wasm").exists() {
        bail!("target/sdk/footpath.wasm is missing after the build");
    }
    Ok(())
}
