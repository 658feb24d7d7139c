//! Head ablation and path patching behave as their definitions say.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use interplay_lab::ablation::{AblationKind, ReceiverInput, ablate_heads, path_patch};
use interplay_models::load::load_path;
use interplay_models::patching::{PatchTarget, no_progress, patch_sweep};
use interplay_models::{ComputeDevice, Transformer};

fn load(name: &str) -> Transformer {
    let p = std::path::PathBuf::from(format!(
        "{}/../../tests/fixtures",
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
    ))
    .join(name);
    load_path(&p, &ComputeDevice::cpu().device).unwrap().model
}

const CLEAN: [u32; 8] = [5, 30, 12, 77, 30, 41, 9, 66];
const CORRUPT: [u32; 8] = [5, 58, 12, 77, 58, 41, 9, 66];

#[test]
fn resample_ablating_one_head_equals_patching_it_from_the_corrupted_run() {
    for name in ["tiny-gpt2", "tiny-llama"] {
        let m = load(name);
        // head_out patching puts clean z into the corrupted run; the reverse direction is
        // resample ablation of the clean run. Check the reverse against a sweep with swapped roles.
        let grid = pollster::block_on(patch_sweep(
            &m,
            &CORRUPT,
            &CLEAN,
            PatchTarget::HeadOut,
            30,
            58,
            &mut no_progress,
        ))
        .unwrap();
        let (clean, ablated) = pollster::block_on(ablate_heads(
            &m,
            &CLEAN,
            &CORRUPT,
            &[(1, 2)],
            AblationKind::Resample,
            30,
            58,
        ))
        .unwrap();
        assert!((clean.logit_diff - grid.corrupt_metric).abs() < 1e-4);
        assert!(
            (ablated.logit_diff - grid.patched[1][2]).abs() < 1e-4,
            "{name}"
        );
        assert!(clean.kl.abs() < 1e-6 && ablated.kl >= 0.0);
        let (_, zero) = pollster::block_on(ablate_heads(
            &m,
            &CLEAN,
            &CORRUPT,
            &[(0, 0), (1, 3)],
            AblationKind::Zero,
            30,
            58,
        ))
        .unwrap();
        let (_, mean) = pollster::block_on(ablate_heads(
            &m,
            &CLEAN,
            &CORRUPT,
            &[(0, 0), (1, 3)],
            AblationKind::Mean,
            30,
            58,
        ))
        .unwrap();
        assert!(zero.kl > 0.0 && mean.kl > 0.0);
        assert!(
            pollster::block_on(ablate_heads(
                &m,
                &CLEAN,
                &CORRUPT,
                &[(5, 0)],
                AblationKind::Zero,
                30,
                58
            ))
            .is_err()
        );
    }
}

#[test]
fn path_patching_through_every_input_of_every_later_head() {
    // Senders in layer 0 reaching all of layer 1's q, k, v: the only other route from layer 0 to
    // the output is direct (and through the MLPs), which path patching keeps clean, so the result
    // differs from the clean run but is a pure layer-1-input effect.
    let m = load("tiny-llama");
    let all_l1: Vec<(usize, usize)> = (0..4).map(|h| (1, h)).collect();
    let (clean, pp) = pollster::block_on(path_patch(
        &m,
        &CLEAN,
        &CORRUPT,
        &[(0, 1)],
        &all_l1,
        &[ReceiverInput::Q, ReceiverInput::K, ReceiverInput::V],
        30,
        58,
    ))
    .unwrap();
    assert!(pp.kl > 0.0, "the path carries an effect");
    assert!(clean.kl.abs() < 1e-6);
    // Receivers' values only: a different, smaller set of paths.
    let (_, v_only) = pollster::block_on(path_patch(
        &m,
        &CLEAN,
        &CORRUPT,
        &[(0, 1)],
        &all_l1,
        &[ReceiverInput::V],
        30,
        58,
    ))
    .unwrap();
    assert!(v_only.logit_diff.is_finite());
    // Receivers must come after senders.
    assert!(
        pollster::block_on(path_patch(
            &m,
            &CLEAN,
            &CORRUPT,
            &[(1, 0)],
            &[(0, 1)],
            &[ReceiverInput::Q],
            30,
            58
        ))
        .is_err()
    );
}
