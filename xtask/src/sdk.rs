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
pub const GZIP_BUDGET_BYTES: usize = 14_444;

/// The plugin module (its script and wasm), which a page downloads only when it uses
/// `load`, `forms:track` or `session`, must stay under this many gzip bytes.
pub const PLUGINS_GZIP_BUDGET_BYTES: usize = 13_998;

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
                if inherited
                    || matches!(
                        key.as_str(),
                        "RUSTUP_TOOLCHAIN"
                            | "RUSTC"
                            | "RUSTDOC"
                            | "CARGO"
                            | "RUSTC_WRAPPER"
                            | "RUSTC_WORKSPACE_WRAPPER"
                    )
                {
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
        .args([
            "build",
            "-p",
            "footpath-sdk",
            "-p",
            "footpath-plugins",
            "--profile",
            "wasm-release",
            "--target",
            TARGET,
        ])
        .args(build_std_args(tools, false))
        .arg("--target-dir")
        .arg(root().join("target/wasm"));
    run_checked(&mut cargo)?;

    let built = root()
        .join("target/wasm")
        .join(TARGET)
        .join("wasm-release/footpath_sdk.wasm");
    let bindgen_dir = root().join("target/sdk-bindgen");
    run_checked(
        Command::new("wasm-bindgen")
            // `--target web`: `no-modules` refuses the module's JS snippet (`host.js`).
            .args([
                "--target",
                "web",
                "--no-typescript",
                "--out-name",
                "footpath",
                "--out-dir",
            ])
            .arg(&bindgen_dir)
            .arg(&built),
    )?;

    let out = out_dir();
    std::fs::create_dir_all(&out)?;
    let tools_bin = root().join("js/node_modules/.bin");
    // Import and export names shrink to a letter or two (wasm-bindgen's carry hashes
    // and type names, over 2 KB in all); the glue is renamed to match below.
    // `--low-memory-unused`: Rust puts the stack first, growing down from 1 MiB, so the
    // lowest kilobyte is reached only by a stack about to overflow; binaryen may then
    // fold small constant addresses into loads and stores (about 150 B gzip).
    // `--flatten --rereloop` twice and `--converge`: binaryen rebuilds the control flow
    // of the large inlined command path and shrinks it again (about 100 B gzip; once,
    // 40 B). A run of its own: `--converge` repeats every pass, the renaming too, which
    // would print a second, meaningless list of renames.
    let shrunk = bindgen_dir.join("footpath_opt.wasm");
    let mut shrink = Command::new(tools_bin.join("wasm-opt"));
    shrink
        .args([
            "-Oz",
            "--flatten",
            "--rereloop",
            "-Oz",
            "--flatten",
            "--rereloop",
        ])
        .args(["-Oz", "--converge", "--low-memory-unused"])
        .args(if keep_names() { &["-g"][..] } else { &[] })
        .arg(bindgen_dir.join("footpath_bg.wasm"))
        .arg("-o")
        .arg(&shrunk);
    run_checked(&mut shrink)?;
    let mut wasm_opt = Command::new(tools_bin.join("wasm-opt"));
    wasm_opt
        .arg("--minify-imports-and-exports-and-modules")
        .args(["--strip-producers", "--strip-target-features"])
        .args(if keep_names() {
            ["-g"]
        } else {
            ["--strip-debug"]
        })
        .arg(&shrunk)
        .arg("-o")
        .arg(out.join("footpath.wasm"));
    eprintln!("$ {wasm_opt:?}");
    let optimised = wasm_opt.output().context("could not start wasm-opt")?;
    if !optimised.status.success() {
        bail!(
            "wasm-opt failed: {}",
            String::from_utf8_lossy(&optimised.stderr)
        );
    }
    let renames = Renames::parse(&String::from_utf8_lossy(&optimised.stdout))?;

    let glue = std::fs::read_to_string(bindgen_dir.join("footpath.js"))?;
    let glue = classic_script(&glue, &bindgen_dir, &renames)?;
    let loader = std::fs::read_to_string(root().join("js/loader.js"))?;
    let script = format!("(function(){{\n{glue}\n{loader}\n}})();\n");
    let readable = bindgen_dir.join("footpath.full.js");
    std::fs::write(&readable, script)?;
    let mut terser = Command::new(tools_bin.join("terser"));
    // Arrow functions and method shorthand where nothing uses `this` or `new` on them
    // (the glue and host never do; terser keeps functions that read `arguments`) and
    // ES2020 output: about 30 B. Not `pure_getters`: `fp_ac` reads the page's
    // objects, whose getters may throw, for 8 B more.
    terser.arg(&readable).args([
        "--ecma",
        "2020",
        "--compress",
        "passes=3,ecma=2020,unsafe_arrows=true,unsafe_methods=true",
    ]);
    if !keep_names() {
        terser.arg("--mangle");
    }
    run_checked(terser.arg("--output").arg(out.join("footpath.js")))?;

    for name in ["footpath.js", "footpath.wasm"] {
        compress(&out.join(name))?;
    }
    build_plugins(&bindgen_dir, &out)
}

/// The plugin module (`sdk-plugins`): wasm-bindgen's ES module glue, which the loader
/// imports with `import()` and starts with the wasm's URL, minified as a module, and
/// the wasm after `wasm-opt -Oz`. As in the core SDK, import and export names shrink
/// to a letter or two and the glue is renamed to match ([`plugin_glue`]).
fn build_plugins(bindgen_dir: &Path, out: &Path) -> Result<()> {
    let built = root()
        .join("target/wasm")
        .join(TARGET)
        .join("wasm-release/footpath_plugins.wasm");
    run_checked(
        Command::new("wasm-bindgen")
            .args([
                "--target",
                "web",
                "--no-typescript",
                "--out-name",
                "footpath-plugins",
                "--out-dir",
            ])
            .arg(bindgen_dir)
            .arg(&built),
    )?;
    let tools_bin = root().join("js/node_modules/.bin");
    let mut wasm_opt = Command::new(tools_bin.join("wasm-opt"));
    wasm_opt
        // `--low-memory-unused`: as for the core SDK above. `--flatten --rereloop`
        // and a second `-Oz`: binaryen rebuilds the control flow of the large
        // inlined functions and shrinks it again (measured: 185 B gzip less); a
        // second round and `--code-folding` (identical tails of branches merged),
        // 30-40 B more on the module of the fourth round (BENCHMARKS.md).
        .args([
            "-Oz",
            "--flatten",
            "--rereloop",
            "-Oz",
            "--flatten",
            "--rereloop",
            "-Oz",
            "--code-folding",
            "-Oz",
            "--low-memory-unused",
            "--minify-imports-and-exports-and-modules",
            "--strip-producers",
            "--strip-target-features",
        ])
        .args(if keep_names() {
            ["-g"]
        } else {
            ["--strip-debug"]
        })
        .arg(bindgen_dir.join("footpath-plugins_bg.wasm"))
        .arg("-o")
        .arg(out.join("footpath-plugins.wasm"));
    eprintln!("$ {wasm_opt:?}");
    let optimised = wasm_opt.output().context("could not start wasm-opt")?;
    if !optimised.status.success() {
        bail!(
            "wasm-opt failed: {}",
            String::from_utf8_lossy(&optimised.stderr)
        );
    }
    let renames = Renames::parse(&String::from_utf8_lossy(&optimised.stdout))?;
    let glue = std::fs::read_to_string(bindgen_dir.join("footpath-plugins.js"))?;
    let readable = bindgen_dir.join("footpath-plugins.full.js");
    std::fs::write(&readable, plugin_glue(&glue, bindgen_dir, &renames)?)?;
    let mut terser = Command::new(tools_bin.join("terser"));
    // As for the core SDK: arrow functions where nothing uses `this` (neither the glue
    // nor `dom.js` does, nor constructs one with `new`) and ES2020 output, which every
    // browser that runs the loader's `import()` reads (39 B gzip).
    terser.arg(&readable).args([
        "--module",
        "--ecma",
        "2020",
        "--compress",
        "passes=3,ecma=2020,unsafe_arrows=true,unsafe_methods=true",
    ]);
    if !keep_names() {
        terser.arg("--mangle");
    }
    run_checked(terser.arg("--output").arg(out.join("footpath-plugins.js")))?;
    for name in ["footpath-plugins.js", "footpath-plugins.wasm"] {
        compress(&out.join(name))?;
    }
    Ok(())
}

/// The plugin module's glue, still an ES module (the loader `import()`s it and calls
/// its default export with `{ module_or_path }`, then its `run`), with the imports
/// object and the uses of the exports renamed to match the minified wasm. Fails on
/// anything it does not recognise rather than emit a broken module.
fn plugin_glue(glue: &str, bindgen_dir: &Path, renames: &Renames) -> Result<String> {
    let inlined = inline_snippets(glue, bindgen_dir)?;
    let (body, direct) = rename_imports(
        inlined.body,
        "./footpath-plugins_bg.js",
        &inlined.snippets,
        renames,
    )?;
    let mut body = replace_once(
        &body,
        "\"./footpath-plugins_bg.js\": import0,",
        &if direct.is_empty() {
            "a: import0,".to_owned()
        } else {
            format!("a: Object.assign(import0, {{ {} }}),", direct.join(", "))
        },
        "imports",
    )?;
    body.insert_str(0, &inlined.code);
    let body = rename_exports(body, renames);
    // The glue's own `__wbg_init` and `initSync` handle inputs and servers the loader
    // never meets (a `Response`, a `Module`, no `application/wasm`); this start from
    // the wasm's bytes, as the core SDK's, lets terser drop them.
    require_start_functions(&body, "the plugin module's start")?;
    replace_once(
        &body,
        "export { initSync, __wbg_init as default };",
        "export default function (options) {\n\
        \x20   return fetch(options.module_or_path)\n\
        \x20       .then((response) => {\n\
        \x20           if (!response.ok) throw new Error(response.status + ' ' + response.url);\n\
        \x20           return response.arrayBuffer();\n\
        \x20       })\n\
        \x20       .then((bytes) => WebAssembly.instantiate(bytes, __wbg_get_imports()))\n\
        \x20       .then((wasm) => __wbg_finalize_init(wasm.instance, wasm.module));\n\
        }",
        "the glue's exports",
    )
}

/// `FOOTPATH_SDK_KEEP_NAMES=1`: the module keeps its functions' names and the script
/// its own, for profiles (`footpath-bench sdk --profile`) and twiggy; never for a
/// release.
fn keep_names() -> bool {
    std::env::var_os("FOOTPATH_SDK_KEEP_NAMES").is_some()
}

/// What `wasm-opt --minify-imports-and-exports-and-modules` renamed, from the JSON it
/// prints: imports as (module, name, new name), all now from module `a`; exports as
/// (name, new name).
struct Renames {
    imports: Vec<(String, String, String)>,
    exports: Vec<(String, String)>,
}

impl Renames {
    fn parse(json: &str) -> Result<Renames> {
        let mut renames = Renames {
            imports: Vec::new(),
            exports: Vec::new(),
        };
        let mut section = "";
        for line in json.lines() {
            let line = line.trim();
            if line.starts_with("\"imports\"") || line.starts_with("\"exports\"") {
                section = if line.starts_with("\"imports\"") {
                    "imports"
                } else {
                    "exports"
                };
                continue;
            }
            if !line.starts_with('[') {
                continue;
            }
            // `["a", "b", "c"],`: the strings sit between every other quote.
            let strings: Vec<String> = line
                .split('"')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect();
            match (section, strings.as_slice()) {
                ("imports", [module, name, new]) => {
                    renames
                        .imports
                        .push((module.clone(), name.clone(), new.clone()))
                }
                ("exports", [name, new]) => renames.exports.push((name.clone(), new.clone())),
                _ => bail!("unexpected line in wasm-opt's renames: {line}"),
            }
        }
        if renames.imports.is_empty() || renames.exports.is_empty() {
            bail!("wasm-opt printed no renames:\n{json}");
        }
        Ok(renames)
    }
}

/// `text` with the one occurrence of `from` replaced, or an error naming `what`.
fn replace_once(text: &str, from: &str, to: &str, what: &str) -> Result<String> {
    if text.matches(from).count() != 1 {
        bail!("the glue does not have exactly one `{from}` ({what})");
    }
    Ok(text.replacen(from, to, 1))
}

/// Every export renamed as wasm-opt minified it, longest names first so that no name
/// is renamed inside a longer one.
fn rename_exports(mut body: String, renames: &Renames) -> String {
    let mut exports = renames.exports.clone();
    exports.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    for (name, new) in &exports {
        body = rename_export(&body, name, new);
    }
    body
}

/// Both modules start from the wasm's bytes with the glue's import list and its
/// finishing step; `who` needs them.
fn require_start_functions(body: &str, who: &str) -> Result<()> {
    for used in [
        "function __wbg_get_imports(",
        "function __wbg_finalize_init(instance, module)",
    ] {
        if !body.contains(used) {
            bail!("{who} calls the glue's `{used}`, which this wasm-bindgen does not define");
        }
    }
    Ok(())
}

/// `wasm.name` becomes `wasm.new` wherever `name` is the whole property name.
fn rename_export(text: &str, name: &str, new: &str) -> String {
    let from = format!("wasm.{name}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&from) {
        let after = &rest[at + from.len()..];
        let whole = !after.starts_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$');
        out.push_str(&rest[..at]);
        out.push_str(if whole { "wasm." } else { &from });
        if whole {
            out.push_str(new);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// A glue with its JS snippets (`#[wasm_bindgen(module = ...)]`) inlined.
struct Inlined {
    /// The snippets' code, their `export` keywords gone.
    code: String,
    /// Each snippet's path and the functions it exports.
    snippets: Vec<(String, Vec<String>)>,
    /// The glue without its imports of the snippets and the imports object's entries
    /// for them.
    body: String,
}

fn inline_snippets(glue: &str, bindgen_dir: &Path) -> Result<Inlined> {
    let mut snippets: Vec<(String, Vec<String>)> = Vec::new();
    let mut code = String::new();
    let mut body = String::new();
    for line in glue.lines() {
        if let Some(rest) = line.strip_prefix("import ") {
            let path = rest
                .split(['\'', '"'])
                .nth(1)
                .filter(|path| path.starts_with("./snippets/") && path.ends_with(".js"))
                .with_context(|| format!("unexpected import in the glue: {line}"))?;
            if !snippets.iter().any(|(p, _)| p == path) {
                let text = std::fs::read_to_string(bindgen_dir.join(path))
                    .with_context(|| format!("the glue's snippet {path}"))?;
                let mut names = Vec::new();
                for snippet_line in text.lines() {
                    if let Some(function) = snippet_line.strip_prefix("export function ") {
                        let name: String = function
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        names.push(name);
                        code.push_str(&snippet_line["export ".len()..]);
                    } else if snippet_line.starts_with("export")
                        || snippet_line.starts_with("import")
                    {
                        bail!("{path}: only `export function` is supported: {snippet_line}");
                    } else {
                        code.push_str(snippet_line);
                    }
                    code.push('\n');
                }
                snippets.push((path.to_owned(), names));
            }
            // `import { a, b } from ...`: the functions are in scope already;
            // `import * as x from ...`: the module's imports are merged below.
            continue;
        }
        // The imports object's entries for the snippets.
        let trimmed = line.trim_start();
        if trimmed.starts_with("\"./snippets/") && trimmed.contains("\": import") {
            continue;
        }
        body.push_str(line);
        body.push('\n');
    }
    Ok(Inlined {
        code,
        snippets,
        body,
    })
}

/// The glue's imports (from `bg_module`) renamed to match the minified module, and
/// the snippets' functions the module imports, as `new: name` entries for the
/// imports object (the module imports everything from `a` now).
fn rename_imports(
    mut body: String,
    bg_module: &str,
    snippets: &[(String, Vec<String>)],
    renames: &Renames,
) -> Result<(String, Vec<String>)> {
    let mut direct = Vec::new();
    for (module, name, new) in &renames.imports {
        if module == bg_module {
            body = replace_once(
                &body,
                &format!("        {name}: function"),
                &format!("        {new}: function"),
                "import",
            )?;
        } else if snippets
            .iter()
            .any(|(path, names)| path == module && names.contains(name))
        {
            direct.push(format!("{new}: {name}"));
        } else {
            bail!("the module imports {module} {name}, which the glue does not provide");
        }
    }
    Ok((body, direct))
}

/// Turns wasm-bindgen's ES-module glue (`--target web`) into statements for one function
/// scope, so that the SDK loads as a classic async script and adds no globals: the JS
/// snippets it imports (`sdk-wasm/src/web/host.js`) are inlined, the imports object
/// is renamed to match the minified module (`renames`), and `export` keywords go. Fails
/// on anything it does not recognise rather than emit a broken script.
fn classic_script(glue: &str, bindgen_dir: &Path, renames: &Renames) -> Result<String> {
    let inlined = inline_snippets(glue, bindgen_dir)?;
    let mut code = inlined.code;
    let mut body = String::new();
    for line in inlined.body.lines() {
        // The glue's `export {...}`: the loader starts the module itself.
        if line.starts_with("export {") {
            continue;
        }
        body.push_str(
            &line
                .strip_prefix("export ")
                .unwrap_or(line)
                .replace("import.meta.url", "location.href"),
        );
        body.push('\n');
    }
    let (mut body, direct) = rename_imports(body, "./footpath_bg.js", &inlined.snippets, renames)?;
    code.push_str(&format!(
        "const __fp_direct = {{ {} }};\n",
        direct.join(", ")
    ));
    body = replace_once(
        &body,
        "\"./footpath_bg.js\": import0,",
        "a: Object.assign(import0, __fp_direct),",
        "imports",
    )?;
    let body = rename_exports(body, renames);
    require_start_functions(&body, "js/loader.js")?;
    if body.contains("import.meta")
        || body
            .lines()
            .any(|line| line.starts_with("export") || line.starts_with("import "))
    {
        bail!("the glue still has module syntax after inlining");
    }
    code.push_str(&body);
    Ok(code)
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
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        lgwin: 22,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &data[..], &mut out, &params).expect("writing to memory");
    out
}

/// Gzip sizes of what a page downloads.
pub struct Sizes {
    /// The snippet, the SDK's script and its wasm: every page.
    pub core: usize,
    /// The plugin module's script and wasm: pages that use plugins, forms or sessions.
    pub plugins: usize,
}

/// Prints what a page downloads for the SDK, and for its plugin module, and returns
/// the gzip totals. The budgets themselves are enforced by the end-to-end size test
/// and by `cargo xtask size`.
pub fn report(twiggy: bool) -> Result<Sizes> {
    let out = out_dir();
    let read = |name: &str| {
        let path = out.join(name);
        std::fs::read(&path)
            .with_context(|| format!("{} is missing: run `cargo xtask sdk`", path.display()))
    };
    let snippet = std::fs::read(root().join("js/snippet.min.js"))?;
    let mut core = vec![("snippet (inline, js/snippet.min.js)".to_owned(), snippet)];
    for name in ["footpath.js", "footpath.wasm"] {
        core.push((name.to_owned(), read(name)?));
    }
    let mut plugins = Vec::new();
    for name in ["footpath-plugins.js", "footpath-plugins.wasm"] {
        plugins.push((name.to_owned(), read(name)?));
    }
    let table = |title: &str, rows: &[(String, Vec<u8>)]| {
        println!("{title:<38} {:>9} {:>9} {:>9}", "raw", "gzip", "brotli");
        let (mut raw, mut gz, mut br) = (0, 0, 0);
        for (name, data) in rows {
            let (g, b) = (gzip(data).len(), brotli(data).len());
            println!("{name:<38} {:>9} {g:>9} {b:>9}", data.len());
            raw += data.len();
            gz += g;
            br += b;
        }
        println!("{:<38} {raw:>9} {gz:>9} {br:>9}", "total");
        gz
    };
    let core = table("what a page downloads", &core);
    println!(
        "gzip budget: {GZIP_BUDGET_BYTES} bytes ({} left)",
        GZIP_BUDGET_BYTES as i64 - core as i64
    );
    println!();
    let plugins = table("plugin module (only when used)", &plugins);
    println!(
        "gzip budget: {PLUGINS_GZIP_BUDGET_BYTES} bytes ({} left); a page that uses plugins downloads {} bytes gzip in all",
        PLUGINS_GZIP_BUDGET_BYTES as i64 - plugins as i64,
        core + plugins
    );
    if twiggy {
        for wasm in ["footpath_bg.wasm", "footpath-plugins_bg.wasm"] {
            let wasm = root().join("target/sdk-bindgen").join(wasm);
            run_checked(Command::new("twiggy").args(["top", "-n", "25"]).arg(&wasm))
                .context("twiggy (cargo install twiggy)")?;
        }
    }
    Ok(Sizes { core, plugins })
}

/// `cargo xtask size`: the report, failing when the SDK or its plugin module is over
/// its budget.
pub fn check_budget(twiggy: bool) -> Result<()> {
    let sizes = report(twiggy)?;
    if sizes.core > GZIP_BUDGET_BYTES {
        bail!(
            "the SDK is {} bytes gzip, over the budget of {GZIP_BUDGET_BYTES}",
            sizes.core
        );
    }
    if sizes.plugins > PLUGINS_GZIP_BUDGET_BYTES {
        bail!(
            "the plugin module is {} bytes gzip, over the budget of {PLUGINS_GZIP_BUDGET_BYTES}",
            sizes.plugins
        );
    }
    Ok(())
}

/// The SDK's `wasm_bindgen_test`s, in headless Chromium through chromedriver.
pub fn test_in_browser(tools: &Tools, tally: &mut crate::Tally) -> Result<()> {
    require(
        &tools.chromedriver.to_string_lossy(),
        "Debian's chromium-driver",
    )?;
    let mut cargo = wasm_cargo(tools);
    cargo
        .args([
            "test",
            "-p",
            "footpath-sdk",
            "--test",
            "browser",
            // One page each: consent is decided at `init`, once per page.
            "--test",
            "consent",
            "--test",
            "consent_later",
            "--test",
            "consent_gpc",
            "--target",
            TARGET,
        ])
        .args(build_std_args(tools, true))
        .arg("--target-dir")
        .arg(root().join("target/wasm"))
        .current_dir(root().join("sdk-wasm"))
        .env("CHROMEDRIVER", &tools.chromedriver)
        .env("WASM_BINDGEN_TEST_TIMEOUT", "60");
    crate::run_tests(&mut cargo, tally).context("the SDK's browser tests")?;
    if !root().join("target/sdk/footpath.wasm").exists() {
        bail!("target/sdk/footpath.wasm is missing after the build");
    }
    Ok(())
}
