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

/// `|got − want| ≤ 1e-4 · |want| + floor`: relative per value, with a floor for values near 0
/// (KL divergences of a few 1e-6, logit differences that cross zero).
fn close(what: &str, got: f32, want: f64, floor: f64) {
    let e = (got as f64 - want).abs();
    assert!(
        e <= 1e-4 * want.abs() + floor,
        "{what}: {got} vs Hugging Face {want} (off by {e:e})"
    );
}

fn heads(v: &serde_json::Value) -> Vec<(usize, usize)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h[0].as_u64().unwrap() as usize,
                h[1].as_u64().unwrap() as usize,
            )
        })
        .collect()
}

/// Head ablation in every mode and path patching against Hugging Face forward hooks
/// (tests/fixtures/make_ablation_goldens.py) on the tiny fixtures and SmolLM2's IOI prompts, on
/// the CPU and wgpu.
#[test]
fn ablation_and_path_patching_match_hugging_face_hooks() {
    use interplay_lab::ablation::path_patch_receivers;
    use interplay_lab::inspect::{Inspect, Inspection};
    use interplay_lab::{PatchingSpec, Prompt, TokenRef};
    use interplay_testkit::{golden, ids};
    let g = golden("ablation");
    let smollm2 = interplay_testkit::smollm2();
    let mut engine_path_cases = 0;
    // Of those, cases with several receiver heads and several inputs (the panel's usual ask).
    let mut engine_products = 0;
    for dev in interplay_testkit::devices() {
        let mut models = std::collections::HashMap::new();
        for case in g["cases"].as_array().unwrap() {
            let name = case["model"].as_str().unwrap();
            let path = match name {
                "smollm2" => match &smollm2 {
                    Some(p) => p.clone(),
                    None => continue,
                },
                _ => interplay_testkit::fixtures().join(name),
            };
            let loaded = models
                .entry(name.to_string())
                .or_insert_with(|| load_path(&path, &dev.device).unwrap());
            let m = &loaded.model;
            let (answer, wrong) = (
                case["answer"].as_u64().unwrap() as u32,
                case["wrong"].as_u64().unwrap() as u32,
            );
            // The same question as the engine (the page's and the CLI's way in) takes it.
            let spec = |clean: &serde_json::Value, corrupt: Vec<u32>| PatchingSpec {
                model: name.to_string(),
                clean: Prompt::Ids(ids(clean)),
                corrupt: Prompt::Ids(corrupt),
                answer: TokenRef::Id(answer),
                wrong: TokenRef::Id(wrong),
                target: PatchTarget::ResidPre,
            };
            let engine = |q: Inspect| {
                let q: Inspect = serde_json::from_str(&serde_json::to_string(&q).unwrap()).unwrap();
                match pollster::block_on(q.run(loaded)).unwrap() {
                    Inspection::Scores { clean, changed } => (clean, changed),
                    other => panic!("scores, not {other:?}"),
                }
            };
            let want = &case["expect"];
            let w = |k: &str| want[k].as_f64().unwrap();
            let at = format!("{name} {} on {}", case["kind"], dev.backend.label());
            if case["kind"] == "ablate" {
                let kind = match case["mode"].as_str().unwrap() {
                    "zero" => AblationKind::Zero,
                    "mean" => AblationKind::Mean,
                    _ => AblationKind::Resample,
                };
                let prompt = ids(&case["ids"]);
                let reference = match &case["reference_ids"] {
                    serde_json::Value::Null => prompt.clone(),
                    r => ids(r),
                };
                let direct = pollster::block_on(ablate_heads(
                    m,
                    &prompt,
                    &reference,
                    &heads(&case["heads"]),
                    kind,
                    answer,
                    wrong,
                ))
                .unwrap();
                let asked = engine(Inspect::Ablate {
                    spec: spec(&case["ids"], reference.clone()),
                    heads: heads(&case["heads"]),
                    kind,
                });
                for (how, (clean, ablated)) in [("", direct), (", engine", asked)] {
                    let at = format!("{at} {kind:?}{how}");
                    close(
                        &format!("{at} clean"),
                        clean.logit_diff,
                        w("clean_metric"),
                        1e-5,
                    );
                    close(
                        &format!("{at} metric"),
                        ablated.logit_diff,
                        w("metric"),
                        1e-5,
                    );
                    close(&format!("{at} p"), ablated.probability, w("p_answer"), 1e-6);
                    close(&format!("{at} kl"), ablated.kl, w("kl"), 2e-6);
                }
            } else {
                let receivers: Vec<_> = case["receivers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        let input = match r[2].as_str().unwrap() {
                            "q" => ReceiverInput::Q,
                            "k" => ReceiverInput::K,
                            _ => ReceiverInput::V,
                        };
                        let head = (
                            r[0].as_u64().unwrap() as usize,
                            r[1].as_u64().unwrap() as usize,
                        );
                        (head, input)
                    })
                    .collect();
                let s = pollster::block_on(path_patch_receivers(
                    m,
                    &ids(&case["clean_ids"]),
                    &ids(&case["corrupt_ids"]),
                    &heads(&case["senders"]),
                    &receivers,
                    answer,
                    wrong,
                ))
                .unwrap();
                close(
                    &format!("{at} clean"),
                    s.clean.logit_diff,
                    w("clean_metric"),
                    1e-5,
                );
                close(
                    &format!("{at} corrupt"),
                    s.corrupt.logit_diff,
                    w("corrupt_metric"),
                    1e-5,
                );
                close(
                    &format!("{at} patched"),
                    s.patched.logit_diff,
                    w("patched_metric"),
                    1e-5,
                );
                // The engine asks for every listed receiver head × every listed input: where
                // the case is such a product, the engine's answer is checked too.
                let mut heads_r: Vec<_> = receivers.iter().map(|r| r.0).collect();
                let mut inputs: Vec<_> = receivers.iter().map(|r| r.1).collect();
                heads_r.sort_unstable();
                heads_r.dedup();
                inputs.sort_unstable_by_key(|i| format!("{i:?}"));
                inputs.dedup();
                if heads_r.len() * inputs.len() == receivers.len() {
                    engine_products += usize::from(heads_r.len() > 1 && inputs.len() > 1);
                    let (clean, patched) = engine(Inspect::PathPatch {
                        spec: spec(&case["clean_ids"], ids(&case["corrupt_ids"])),
                        senders: heads(&case["senders"]),
                        receivers: heads_r,
                        inputs,
                    });
                    close(
                        &format!("{at} clean, engine"),
                        clean.logit_diff,
                        w("clean_metric"),
                        1e-5,
                    );
                    close(
                        &format!("{at} patched, engine"),
                        patched.logit_diff,
                        w("patched_metric"),
                        1e-5,
                    );
                    engine_path_cases += 1;
                }
            }
        }
    }
    assert!(
        engine_path_cases > 0 && engine_products > 0,
        "no path-patching case ({engine_path_cases}), or none with several receiver heads and \
         inputs ({engine_products}), went through the engine"
    );
}
