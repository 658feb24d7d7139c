//! The static site: Trunk's page module, the engine's modules (single-threaded, gradients and
//! threaded), the externalised loader and the service worker stamped with the build.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::{run, tool_path};

pub fn build_site(root: &Path) -> Result<()> {
    run(Command::new("trunk")
        .args(["build", "--release"])
        .env("PATH", tool_path(root))
        .env("TRUNK_SKIP_VERSION_CHECK", "true"))?;
    externalise_loader(&root.join("dist"))?;
    build_engine(root, &root.join("dist"), Engine::Plain)?;
    build_engine(root, &root.join("dist"), Engine::Gradients)?;
    build_threads(root, &root.join("dist"))?;
    stamp_service_worker(&root.join("dist"))
}

/// Where cargo puts builds (the shared `CARGO_TARGET_DIR` when set).
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// The engine's module (`dist/engine/engine-<hash>.js` and its wasm): the crate's
/// `interplay-engine` bin with its default features (WebGPU and the CPU). The page's module
/// (Trunk's `interplay-web` bin, built without default features, so no CubeCL) is the UI alone. The page learns the glue's name, hashed so that no cache pairs a page with another
/// build's engine, from the `<meta name="interplay-engine">` added to `index.html`.
///
/// The gradients engine (`dist/gradients/`, `<meta name="interplay-gradients">`) is the same bin
/// with `--features gradients` (Burn's autodiff): loaded only when a job needs gradients, so the
/// engine every page loads stays without autodiff.
fn build_engine(root: &Path, dist: &Path, engine: Engine) -> Result<()> {
    let mut cargo = Command::new("cargo");
    cargo.args([
        "build",
        "--release",
        "--offline",
        "--target",
        "wasm32-unknown-unknown",
        "-p",
        "interplay-web",
        "--bin",
        "interplay-engine",
    ]);
    let (dir, meta) = match engine {
        Engine::Plain => ("engine", "interplay-engine"),
        Engine::Gradients => {
            cargo.args(["--features", "gradients"]);
            ("gradients", "interplay-gradients")
        }
    };
    run(&mut cargo)?;
    let wasm = target_dir(root).join("wasm32-unknown-unknown/release/interplay-engine.wasm");
    let bytes = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let name = format!("engine-{:016x}", fnv1a(&bytes));
    let out = dist.join(dir);
    bindgen(root, &wasm, &out, &name)?;
    // The optimisation Trunk gives the page's module (`data-wasm-opt="1"`).
    let module = out.join(format!("{name}_bg.wasm"));
    run(Command::new("wasm-opt")
        .env("PATH", tool_path(root))
        .arg("-O1")
        .arg(&module)
        .arg("-o")
        .arg(&module))?;
    let index = dist.join("index.html");
    let html = std::fs::read_to_string(&index)?;
    let meta = format!("<meta name=\"{meta}\" content=\"{dir}/{name}.js\" />");
    let html = html.replacen("</head>", &format!("{meta}\n</head>"), 1);
    std::fs::write(index, html)?;
    Ok(())
}

/// Which engine module [`build_engine`] builds.
#[derive(Clone, Copy)]
enum Engine {
    /// WebGPU and the CPU: what every page loads.
    Plain,
    /// The same with Burn's autodiff.
    Gradients,
}

/// FNV-1a, 64 bits: no dependency, and collisions do not matter for naming builds.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn eat(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a::new();
    h.eat(bytes);
    h.0
}

/// The threaded engine (`dist/threads/engine.js` and its wasm), which `engine.js` loads in place
/// of the engine's module where the page is cross-origin isolated: the same bin with
/// `--features threads` (Burn's CPU kernels on a rayon pool of Web Workers) and without WebGPU
/// (wgpu's browser types are not thread-safe; WebGPU runs use the engine's module), built with atomics
/// and shared memory. The standard library must be rebuilt for that (`-Z build-std` from the
/// toolchain's rust-src; `RUSTC_BOOTSTRAP=1` lets the pinned stable toolchain take the flag, as
/// for fuzzing). Its own target folder: other flags, so nothing is shared with the page's build.
fn build_threads(root: &Path, dist: &Path) -> Result<()> {
    let target = target_dir(root).join("threads");
    // RUSTFLAGS replaces .cargo/config.toml's (SIMD kept). Shared memory may grow to 4 GiB, as
    // the page's own memory may (rustc's default maximum with atomics is 1 GiB: too small for
    // SmolLM2's weights and a sweep's caches).
    let rustflags = "-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128 \
                     -C link-arg=--max-memory=4294967296";
    // The module imports one shared memory, and exports what wasm-bindgen's thread start needs
    // (rustc 1.95 no longer adds these for `+atomics` on wasm32-unknown-unknown). Given to the
    // final link only (`cargo rustc`), so they do not rebuild every dependency.
    let link = [
        "--shared-memory",
        "--import-memory",
        "--export=__wasm_init_tls",
        "--export=__tls_size",
        "--export=__tls_align",
        "--export=__tls_base",
    ];
    run(Command::new("cargo")
        .args([
            "rustc",
            "--release",
            "-p",
            "interplay-web",
            "--bin",
            "interplay-engine",
        ])
        .args(["--no-default-features", "--features", "threads"])
        .args([
            "--target",
            "wasm32-unknown-unknown",
            "-Z",
            "build-std=panic_abort,std",
        ])
        .arg("--")
        .args(
            link.iter()
                .flat_map(|a| ["-C".to_string(), format!("link-arg={a}")]),
        )
        .env("RUSTC_BOOTSTRAP", "1")
        .env("RUSTFLAGS", rustflags)
        .env("CARGO_TARGET_DIR", &target))?;
    let out = dist.join("threads");
    let wasm = target.join("wasm32-unknown-unknown/release/interplay-engine.wasm");
    bindgen(root, &wasm, &out, "engine")?;
    quiet_pool_workers(&out)
}

/// `wasm` through wasm-bindgen (ES module glue) into a fresh `out`, as `name.js` and
/// `name_bg.wasm`.
fn bindgen(root: &Path, wasm: &Path, out: &Path, name: &str) -> Result<()> {
    if out.exists() {
        std::fs::remove_dir_all(out)?;
    }
    run(Command::new("wasm-bindgen")
        .env("PATH", tool_path(root))
        .args([
            "--target",
            "web",
            "--no-typescript",
            "--out-name",
            name,
            "--out-dir",
        ])
        .arg(out)
        .arg(wasm))
}

/// wasm-bindgen-rayon's pool workers start the module with wasm-bindgen's old positional
/// arguments, which log a deprecation warning per worker: pass the one object it now takes.
fn quiet_pool_workers(out: &Path) -> Result<()> {
    let snippets = out.join("snippets");
    for dir in std::fs::read_dir(&snippets).with_context(|| format!("{}", snippets.display()))? {
        let file = dir?.path().join("src/workerHelpers.no-bundler.js");
        if let Ok(js) = std::fs::read_to_string(&file) {
            let old = "pkg.default(data.module, data.memory)";
            let new = "pkg.default({ module_or_path: data.module, memory: data.memory })";
            std::fs::write(&file, js.replace(old, new))?;
        }
    }
    Ok(())
}

/// Name the service worker's cache after the build — a hash of every other file of the site (path
/// and bytes) — and list the files it caches at install (all but the fetched `models/` and the
/// threaded and gradients engines, which are cached when first used). A build
/// that changes any file (a retrained bundled model, new code) changes `sw.js`, so the browser
/// installs the new worker, which deletes the old cache on activation.
pub fn stamp_service_worker(dist: &Path) -> Result<()> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let p = entry?.path();
            if p.is_dir() {
                walk(&p, out)?;
            } else {
                out.push(p);
            }
        }
        Ok(())
    }
    let sw = dist.join("sw.js");
    let text = std::fs::read_to_string(&sw).with_context(|| format!("reading {}", sw.display()))?;
    let mut files = Vec::new();
    walk(dist, &mut files)?;
    files.retain(|p| p != &sw);
    files.sort();
    let mut h = Fnv1a::new();
    for f in &files {
        h.eat(
            f.strip_prefix(dist)
                .unwrap_or(f)
                .to_string_lossy()
                .as_bytes(),
        );
        h.eat(&std::fs::read(f)?);
    }
    let precache: Vec<String> = files
        .iter()
        .filter_map(|f| f.strip_prefix(dist).ok())
        .map(|f| f.to_string_lossy().replace('\\', "/"))
        // The threaded engine (20+ MB) only where the page is isolated: cached when first used.
        // So is the gradients engine (13+ MB), loaded only for attribution patching.
        .filter(|f| {
            !f.starts_with("models/") && !f.starts_with("threads/") && !f.starts_with("gradients/")
        })
        .map(|f| format!("\"{}\"", f.replace('"', "\\\"")))
        .collect();
    let mut stamped = text.clone();
    for (start, value) in [
        ("const BUILD = ", format!("\"{:016x}\"", h.0)),
        ("const PRECACHE = ", format!("[{}]", precache.join(", "))),
    ] {
        let line = stamped
            .lines()
            .find(|l| l.starts_with(start))
            .with_context(|| format!("sw.js has no `{start}...;` line"))?
            .to_string();
        stamped = stamped.replacen(&line, &format!("{start}{value};"), 1);
    }
    std::fs::write(&sw, stamped)?;
    Ok(())
}

/// Trunk inlines its wasm loader as a `<script type="module">`. The page's Content-Security-Policy
/// allows only scripts from its own origin (no 'unsafe-inline'), so the loader moves to a file.
fn externalise_loader(dist: &Path) -> Result<()> {
    let index = dist.join("index.html");
    let html = std::fs::read_to_string(&index)?;
    let open = "<script type=\"module\">";
    let Some(start) = html.find(open) else {
        return Ok(()); // already external
    };
    let body_start = start + open.len();
    let end = html[body_start..]
        .find("</script>")
        .map(|e| body_start + e)
        .context("unterminated loader script in dist/index.html")?;
    std::fs::write(dist.join("boot.js"), &html[body_start..end])?;
    let html = format!(
        "{}<script type=\"module\" src=\"./boot.js\"></script>{}",
        &html[..start],
        &html[end + "</script>".len()..]
    );
    std::fs::write(index, html)?;
    Ok(())
}
