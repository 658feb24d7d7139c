//! Attribution patching's estimates against PyTorch autograd on Hugging Face's models
//! (tests/fixtures/make_attribution_goldens.py): every target's estimated patched metric at 1e-4
//! relative (floor 1e-5), on the tiny fixtures on the CPU and wgpu, and on SmolLM2's IOI prompts
//! on the CPU.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
#![cfg(all(not(target_family = "wasm"), feature = "train"))]

use interplay_models::ComputeDevice;
use interplay_models::attribution::attribution_sweep;
use interplay_models::load::load_path;
use interplay_models::patching::PatchTarget;
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
    let g = golden("attribution");
    let want = &g["models"][name];
    let m = load_path(path, &dev.device).expect("loads").model;
    let (clean, corrupt) = (ids(&want["clean"]), ids(&want["corrupt"]));
    let (a, w) = (
        want["answer"].as_u64().unwrap() as u32,
        want["wrong"].as_u64().unwrap() as u32,
    );
    // The estimates are sums of products of differences and gradients: relative to the
    // metric's scale, not to each (possibly tiny) estimate.
    let scale = want["corrupt_metric"].as_f64().unwrap().abs().max(1.0);
    let close = |what: &str, got: f32, want: f64| {
        let e = (got as f64 - want).abs();
        assert!(
            e <= 1e-4 * scale + 1e-5,
            "{name} on {}: {what} = {got}, PyTorch {want}",
            dev.backend
        );
    };
    for (target, key) in TARGETS {
        let rows = want[key].as_array().unwrap();
        let grid =
            pollster::block_on(attribution_sweep(&m, &clean, &corrupt, target, a, w)).unwrap();
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
            for (c, (v, pt)) in got.iter().zip(row).enumerate() {
                close(&format!("{key}[{r}][{c}]"), *v, pt.as_f64().unwrap());
            }
        }
    }
}

#[test]
fn attribution_patching_matches_pytorch_autograd_on_the_tiny_models() {
    for dev in devices() {
        for name in ["tiny-gpt2", "tiny-llama"] {
            for case in ["", "/late", "/same"] {
                check(&format!("{name}{case}"), &fixtures().join(name), &dev);
            }
        }
    }
}

#[test]
fn attribution_patching_matches_pytorch_autograd_on_smollm2() {
    let Some(path) = smollm2() else {
        return;
    };
    check("smollm2", &path, &ComputeDevice::cpu());
}

#[test]
fn ids_outside_the_vocabulary_are_a_message() {
    let m = load_path(&fixtures().join("tiny-gpt2"), &ComputeDevice::cpu().device)
        .expect("loads")
        .model;
    let v = m.config.d_vocab as u32;
    for (clean, answer) in [(vec![1, v, 2], 3), (vec![1, 2, 3], v)] {
        let e = pollster::block_on(attribution_sweep(
            &m,
            &clean,
            &[1, 4, 2],
            PatchTarget::ResidPre,
            answer,
            5,
        ))
        .unwrap_err();
        assert!(e.to_string().contains("outside the vocabulary"), "{e}");
    }
}
