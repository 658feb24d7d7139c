//! Clamping during training against PyTorch (tests/fixtures/make_clamp_goldens.py: the same
//! initial weights, batches and AdamW written out in plain PyTorch, its forward checked against
//! Hugging Face's GPT2LMHeadModel): the initial model's logits, and the loss of the first 50
//! training steps with no clamp and with each kind of clamp, on the CPU and wgpu.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
#![cfg(all(feature = "train", not(target_family = "wasm")))]

use interplay_lab::bundled::{Bundled, induction_batch_of};
use interplay_lab::clamp::{Clamp, ClampSpec};
use interplay_models::TransformerConfig;
use interplay_models::device::read_f32;
use interplay_models::patching::no_progress;
use interplay_models::train::{Rng, init_gpt2};
use interplay_models::weights::{Source, build_transformer};
use interplay_testkit::*;
use serde_json::Value;

fn spec(g: &Value) -> ClampSpec {
    let c = &g["config"];
    let n = |k: &str| c[k].as_u64().unwrap() as usize;
    ClampSpec {
        steps: n("steps"),
        batch: n("batch"),
        context: n("n_ctx"),
        lr: c["lr"].as_f64().unwrap(),
        warmup: n("warmup"),
        seed: c["seed"].as_u64().unwrap(),
        clamps: Vec::new(),
    }
}

/// The initial weights and the first batch are PyTorch's: its logits on the first row.
#[test]
fn initial_model_and_first_batch_match_pytorch() {
    let g = golden("clamp");
    let s = spec(&g);
    let mut rng = Rng::new(s.seed ^ 0xDA7A);
    let batch = induction_batch_of(&mut rng, s.batch, s.context);
    assert_eq!(batch.inputs[0], ids(&g["first_row"]), "the same data");
    let config = TransformerConfig {
        n_ctx: s.context,
        ..Bundled::Induction.config()
    };
    let want: Vec<f64> = g["initial_logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    for dev in devices() {
        let weights = init_gpt2(&config, true, s.seed).unwrap();
        let m =
            build_transformer(config.clone(), weights, Source::HuggingFace, &dev.device).unwrap();
        let logits = m.forward(m.tokens(&batch.inputs[..1]).unwrap());
        let got = pollster::block_on(read_f32(logits)).unwrap();
        let err = max_rel_err(&got, &want);
        assert!(
            err < 1e-4,
            "{:?}: initial logits off by {err:e}",
            dev.backend
        );
    }
}

/// Fifty steps of training, unclamped and under each clamp, give PyTorch's losses (on wgpu —
/// lavapipe, a CPU rasteriser, ~5× slower — 20 steps of the two clamps that replace a value).
#[test]
fn the_first_50_steps_match_pytorch_under_every_clamp() {
    let g = golden("clamp");
    let s = spec(&g);
    for dev in devices() {
        let cpu = dev.backend == interplay_models::device::Backend::Cpu;
        let n = if cpu {
            g["golden_steps"].as_u64().unwrap() as usize
        } else {
            20
        };
        for case in g["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            if !cpu && !matches!(name, "prev0" | "mean-l0h1") {
                continue;
            }
            let clamps: Vec<Clamp> = serde_json::from_value(case["clamps"].clone()).unwrap();
            let want: Vec<f64> = case["losses"]
                .as_array()
                .unwrap()
                .iter()
                .take(n)
                .map(|v| v.as_f64().unwrap())
                .collect();
            let got = pollster::block_on(s.first_losses(&clamps, &dev.device, n)).unwrap();
            assert_eq!(got.len(), n);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(&a, &b)| ((a as f64 - b) / b).abs())
                .fold(0.0f64, f64::max);
            eprintln!(
                "{:?} {name}: worst relative loss error {worst:e}",
                dev.backend
            );
            assert!(
                worst < 1e-4,
                "{:?} {name}: losses off by {worst:e} relative",
                dev.backend
            );
        }
    }
}

/// Odd contexts and every kind of clamp at once run to the end (the head detectors' sequence is
/// one position shorter than the training context then).
#[test]
fn odd_contexts_and_combined_clamps_run() {
    let spec = ClampSpec {
        steps: 3,
        batch: 32,
        context: 9,
        lr: 1e-3,
        warmup: 1,
        seed: 2,
        clamps: serde_json::from_str(
            r#"[{"layer":0,"clamp":"mean"},{"layer":0,"head":0,"clamp":"previous-token"},
                {"layer":1,"head":0,"clamp":"zero"}]"#,
        )
        .unwrap(),
    };
    let dev = interplay_models::device::ComputeDevice::cpu();
    let out = pollster::block_on(spec.run(&dev.device, &mut |_, _| {}, &mut no_progress)).unwrap();
    assert_eq!(out.runs.len(), 2);
    assert!(
        out.runs
            .iter()
            .all(|r| r.loss.len() == 3 && r.phase_change.is_none())
    );
    assert!(
        (out.runs[1].previous[0][0] - 1.0).abs() < 1e-6,
        "the clamp held in the detectors"
    );
}
