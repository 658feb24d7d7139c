//! Shared helpers: fixture paths, golden JSON, tolerant comparison, devices.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
#![allow(dead_code)]

use std::path::PathBuf;

use interplay_models::ComputeDevice;
use serde_json::Value;

pub fn fixtures() -> PathBuf {
    PathBuf::from(format!(
        "{}/../../tests/fixtures",
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
    ))
}

pub fn golden(name: &str) -> Value {
    let p = fixtures().join(name).join("golden.json");
    serde_json::from_slice(&std::fs::read(&p).expect("golden.json")).expect("valid JSON")
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

/// Largest |got − want| / max(1, |want|); infinities must match exactly.
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

/// The devices to test on: the CPU always; wgpu (lavapipe natively) when an adapter exists.
/// `INTERPLAY_REQUIRE_WGPU=1` turns a missing adapter into a failure (CI sets it).
pub fn devices() -> Vec<ComputeDevice> {
    let mut v = vec![ComputeDevice::cpu()];
    match pollster::block_on(ComputeDevice::wgpu()) {
        Ok(d) => v.push(d),
        Err(e) => {
            assert!(
                std::env::var("INTERPLAY_REQUIRE_WGPU").is_err(),
                "wgpu required but unavailable: {e}"
            );
            eprintln!("SKIP wgpu: {e}");
        }
    }
    v
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}
