//! Test helpers every crate's tests share, written once: where the fixtures are, golden JSON,
//! tolerant comparison, and the two gates CI turns into failures — a wgpu adapter
//! (`INTERPLAY_REQUIRE_WGPU=1`: lavapipe natively) and the fetched SmolLM2 (`CI` set: setup
//! fetches it). A dev-dependency only; nothing here ships.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};

use interplay_models::ComputeDevice;
use serde_json::Value;

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `tests/fixtures/`.
pub fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

/// A JSON file, parsed.
pub fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `tests/fixtures/{name}/golden.json`.
pub fn golden(name: &str) -> Value {
    read_json(&fixtures().join(name).join("golden.json"))
}

/// (shape, values) of a golden tensor; masked entries (null) become -inf.
pub fn tensor(v: &Value) -> (Vec<usize>, Vec<f64>) {
    let shape = v["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|x| x.as_u64().expect("dim") as usize)
        .collect();
    let data = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NEG_INFINITY))
        .collect();
    (shape, data)
}

/// Largest |got − want| / max(1, |want|); infinities must match exactly; lengths must agree.
pub fn max_rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "length");
    got.iter()
        .zip(want)
        .map(|(&g, &w)| {
            if w.is_infinite() {
                if (g as f64) == w { 0.0 } else { f64::INFINITY }
            } else {
                (g as f64 - w).abs() / w.abs().max(1.0)
            }
        })
        .fold(0.0, f64::max)
}

/// Token ids from a JSON array.
pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// The wgpu device (lavapipe natively), or `None` with a note where there is none.
/// `INTERPLAY_REQUIRE_WGPU=1` (CI) turns a missing adapter into a failure.
pub fn wgpu_device() -> Option<ComputeDevice> {
    match pollster::block_on(ComputeDevice::wgpu()) {
        Ok(d) => Some(d),
        Err(e) => {
            assert!(
                std::env::var("INTERPLAY_REQUIRE_WGPU").is_err(),
                "INTERPLAY_REQUIRE_WGPU is set but no wgpu adapter came up: {e}"
            );
            eprintln!("SKIP wgpu: {e}");
            None
        }
    }
}

/// The devices to test on: the CPU always, and wgpu where an adapter exists ([`wgpu_device`]).
pub fn devices() -> Vec<ComputeDevice> {
    std::iter::once(ComputeDevice::cpu())
        .chain(wgpu_device())
        .collect()
}

/// SmolLM2's file, or `None` with a note when it has not been fetched. Under CI (`CI` set) a
/// missing SmolLM2 is a failure: setup fetches it.
pub fn smollm2() -> Option<PathBuf> {
    let path = interplay_models::registry::smollm2_path(&root());
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").is_err(),
        "SmolLM2 missing in CI: `cargo xtask setup` fetches it"
    );
    eprintln!(
        "SKIP: {} missing (run `cargo xtask fetch-models`)",
        path.display()
    );
    None
}

/// The logits of every greedy decoding step (`[d_vocab]` each), fed as `generate` feeds them:
/// the prompt in one run, then each of `tokens` with the key/value cache, reading the last
/// position.
pub fn decoding_logits(
    m: &interplay_models::Transformer,
    prompt: &[u32],
    tokens: &[u32],
) -> Vec<Vec<f32>> {
    let d = m.config.d_model;
    let plan = interplay_models::HookPlan::default();
    let mut cache = None;
    let mut input = prompt.to_vec();
    let mut out = Vec::new();
    for &t in tokens {
        let p = input.len();
        let (resid, _, kv) = m
            .extend_residual(m.tokens(&[input]).unwrap(), cache.as_ref(), &plan)
            .unwrap();
        let row = resid.narrow(1, p - 1, 1).reshape([1, d]);
        out.push(
            pollster::block_on(interplay_models::device::read_f32(m.logits_rows(row))).unwrap(),
        );
        cache = Some(kv);
        input = vec![t];
    }
    out
}
