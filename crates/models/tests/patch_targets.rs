//! Every activation-patching target's raw patched metric against Hugging Face hooks
//! (tests/fixtures/make_patching_goldens.py): each value at 1e-4 relative (floor 1e-5), on the
//! tiny fixtures on the CPU and wgpu, and on SmolLM2's IOI prompts on the CPU (SmolLM2 on wgpu
//! is checked on its logits and logit difference in `smollm2.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
#![cfg(not(target_family = "wasm"))]

use interplay_models::ComputeDevice;
use interplay_models::load::load_path;
use interplay_models::patching::{PatchTarget, no_progress, patch_sweep};
use interplay_testkit::*;

const TARGETS: [(PatchTarget, &str); 7] = [
    (PatchTarget::ResidPre, "resid_pre"),
    (PatchTarget::ResidMid, "resid_mid"),
    (PatchTarget::ResidPost, "resid_post"),
    (PatchTarget::AttnOut, "attn_out"),
    (PatchTarget::MlpOut, "mlp_out"),
    (PatchTarget::HeadOut, "head_out"),
    (PatchTarget::HeadOutPos, "head_out_pos"),
];

fn check(name: &str, path: &std::path::Path, dev: &ComputeDevice) {
    let g = golden("patching");
    let want = &g["models"][name];
    let m = load_path(path, &dev.device).expect("loads").model;
    let (clean, corrupt) = (ids(&want["clean"]), ids(&want["corrupt"]));
    let (a, w) = (
        want["answer"].as_u64().unwrap() as u32,
        want["wrong"].as_u64().unwrap() as u32,
    );
    let close = |what: &str, got: f32, want: f64| {
        let e = (got as f64 - want).abs();
        assert!(
            e <= 1e-4 * want.abs() + 1e-5,
            "{name} on {}: {what} = {got}, HF {want}",
            dev.backend
        );
    };
    let mut checked = 0;
    for (target, key) in TARGETS {
        let Some(rows) = want[key].as_array() else {
            continue;
        };
        let grid = pollster::block_on(patch_sweep(
            &m,
            &clean,
            &corrupt,
            target,
            a,
            w,
            &mut no_progress,
        ))
        .unwrap();
        close(
            "clean metric",
            grid.clean_metric,
            want["clean_metric"].as_f64().unwrap(),
        );
        close(
            "corrupt metric",
            grid.corrupt_metric,
            want["corrupt_metric"].as_f64().unwrap(),
        );
        assert_eq!(grid.patched.len(), rows.len(), "{name}/{key}: rows");
        for (r, (got, row)) in grid.patched.iter().zip(rows).enumerate() {
            let row = row.as_array().unwrap();
            assert_eq!(got.len(), row.len(), "{name}/{key}[{r}]: columns");
            for (c, (v, hf)) in got.iter().zip(row).enumerate() {
                close(&format!("{key}[{r}][{c}]"), *v, hf.as_f64().unwrap());
            }
        }
        checked += 1;
    }
    assert!(checked >= 6, "{name}: {checked} targets in the golden");
}

#[test]
fn every_patch_target_matches_hugging_face_on_the_tiny_models() {
    for dev in devices() {
        for name in ["tiny-gpt2", "tiny-llama"] {
            // The golden pair; a pair first differing at position 4 (the sweep reuses the
            // prefix's cache before it); equal prompts (nothing to patch).
            for case in ["", "/late", "/same"] {
                check(&format!("{name}{case}"), &fixtures().join(name), &dev);
            }
        }
    }
}

#[test]
fn every_patch_target_matches_hugging_face_on_smollm2() {
    let Some(path) = smollm2() else {
        return;
    };
    check("smollm2", &path, &ComputeDevice::cpu());
}
