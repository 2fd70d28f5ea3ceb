//! Installs what the build and the tests need, when it is missing.
//!
//! The machines we target are Debian 12 with rustup's stable toolchain for x86_64 only,
//! where `rustup target add wasm32-unknown-unknown` cannot download anything. There the
//! SDK is built with Debian's Rust (`rustc-web`), its standard library source and
//! `-Zbuild-std` (see ARCHITECTURE.md, "Building the SDK"). Where rustup does have the
//! wasm32 target, that plain path is used instead.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{root, run_checked};

/// How the SDK is compiled on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmToolchain {
    /// rustup's own `wasm32-unknown-unknown` target.
    Rustup,
    /// Debian's `rustc-web` with `-Zbuild-std` and `panic = "immediate-abort"`.
    DebianBuildStd,
}

pub struct Tools {
    pub wasm: WasmToolchain,
    pub chromedriver: PathBuf,
}

const DEBIAN_RUST: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "rust-web-llvm",
    "lld-22",
];
const ALWAYS: &[&str] = &["chromium", "chromium-driver"];

pub fn setup() -> Result<Tools> {
    let wasm = if rustup_has_wasm32() {
        WasmToolchain::Rustup
    } else {
        WasmToolchain::DebianBuildStd
    };
    let mut wanted: Vec<&str> = ALWAYS.to_vec();
    if wasm == WasmToolchain::DebianBuildStd {
        wanted.extend_from_slice(DEBIAN_RUST);
    }
    if !command_works("node") || !command_works("npm") {
        wanted.extend_from_slice(&["nodejs", "npm"]);
    }
    // The identity docs' PHP example is run by a test (Python and Node are run too).
    if !command_works("php") {
        wanted.push("php-cli");
    }
    // The server backend's tests start PostgreSQL clusters of their own
    // (`footpath-pgcluster`), from the server programs of Debian's package.
    if footpath_pgcluster::server_bin_dir().is_none() {
        wanted.push("postgresql");
    }
    // libfuzzer-sys compiles libFuzzer's C++ sources for the fuzz targets.
    if !command_works("c++") {
        wanted.push("g++");
    }
    let missing: Vec<&str> = wanted
        .into_iter()
        .filter(|p| !debian_package_installed(p))
        .collect();
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    install_wasm_bindgen_cli()?;
    install_cargo_fuzz()?;
    install_cargo_deny()?;
    install_js_tools()?;
    Ok(Tools {
        wasm,
        chromedriver: PathBuf::from("/usr/bin/chromedriver"),
    })
}

fn rustup_has_wasm32() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-unknown-unknown")
        })
        .unwrap_or(false)
}

fn debian_package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn apt_install(packages: &[&str]) -> Result<()> {
    eprintln!("xtask: installing Debian packages: {}", packages.join(" "));
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    let apt = |args: &[&str]| {
        let mut command = if is_root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    run_checked(&mut apt(&["update", "-qq"]))
        .context("apt-get update (run as root, or allow passwordless sudo)")?;
    let mut install = apt(&["install", "-y", "-qq"]);
    install.args(packages);
    run_checked(&mut install)
}

/// wasm-bindgen's CLI must be exactly the version of the `wasm-bindgen` crate in
/// Cargo.lock: the two agree on a private format.
fn install_wasm_bindgen_cli() -> Result<()> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).context("reading Cargo.lock")?;
    let version =
        locked_version(&lock, "wasm-bindgen").context("wasm-bindgen is not in Cargo.lock")?;
    let installed = Command::new("wasm-bindgen")
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    if installed == format!("wasm-bindgen {version}") {
        return Ok(());
    }
    eprintln!("xtask: installing wasm-bindgen-cli {version} (found: {installed:?}); this takes a few minutes");
    // Not `--locked`: the registry mirror may lack the newest patch of a dependency.
    run_checked(Command::new("cargo").args(["install", "wasm-bindgen-cli", "--version", &version]))
}

/// cargo-fuzz, which builds and runs the targets in `fuzz/` (see `fuzz.rs`).
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Installs cargo-fuzz at [`CARGO_FUZZ_VERSION`] where `cargo install` puts binaries
/// (`~/.cargo/bin`, beside wasm-bindgen-cli), unless that version is there.
pub fn install_cargo_fuzz() -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let installed = Command::new(&cargo)
        .args(["fuzz", "--version"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    if installed == format!("cargo-fuzz {CARGO_FUZZ_VERSION}") {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} (found: {installed:?}); this takes a minute");
    run_checked(Command::new(&cargo).args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))
}

/// cargo-deny, which checks the licences and sources of every crate in Cargo.lock
/// (see `deny.rs` and `deny.toml`).
pub const CARGO_DENY_VERSION: &str = "0.20.2";

/// Installs cargo-deny at [`CARGO_DENY_VERSION`] beside cargo-fuzz, unless that version
/// is there. It compiles from source: a few minutes on two cores, once per machine.
pub fn install_cargo_deny() -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let installed = Command::new(&cargo)
        .args(["deny", "--version"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    if installed == format!("cargo-deny {CARGO_DENY_VERSION}") {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-deny {CARGO_DENY_VERSION} (found: {installed:?}); this takes a few minutes");
    run_checked(Command::new(&cargo).args([
        "install",
        "cargo-deny",
        "--locked",
        "--version",
        CARGO_DENY_VERSION,
    ]))
}

fn command_works(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// wasm-opt (binaryen) and terser from the npm registry, at the versions pinned in
/// `js/package-lock.json`, with TypeScript's `tsc`, which checks the npm package's
/// declarations. Debian's binaryen is too old: it cannot read the module's
/// target-features section and mangles wasm-bindgen's externref table.
pub fn install_js_tools() -> Result<()> {
    let js = root().join("js");
    let stamp = js.join("node_modules/.package-lock.json");
    let lock = js.join("package-lock.json");
    let fresh = match (std::fs::metadata(&stamp), std::fs::metadata(&lock)) {
        (Ok(stamp), Ok(lock)) => stamp.modified()? >= lock.modified()?,
        _ => false,
    };
    if fresh
        && js.join("node_modules/.bin/wasm-opt").exists()
        && js.join("node_modules/.bin/terser").exists()
        && js.join("node_modules/.bin/tsc").exists()
    {
        return Ok(());
    }
    run_checked(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&js),
    )
}

pub fn locked_version(lock: &str, package: &str) -> Option<String> {
    let needle = format!("name = \"{package}\"\n");
    let start = lock.find(&needle)? + needle.len();
    let line = lock[start..].lines().next()?;
    line.strip_prefix("version = \"")?
        .strip_suffix('"')
        .map(str::to_owned)
}

/// A random bearer token for the demo's agents' API.
pub fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub fn require(path: &str, why: &str) -> Result<()> {
    if !std::path::Path::new(path).exists() {
        bail!("{path} is missing ({why}); run `cargo xtask setup`");
    }
    Ok(())
}
