//! The transformer core against Hugging Face `transformers` (golden values made by
//! tests/fixtures/make_goldens.py): logits, every TransformerLens hook, patching grids; on the CPU
//! device and on wgpu (lavapipe natively).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
#![cfg(not(target_family = "wasm"))]

use interplay_models::device::read_f32;
use interplay_models::hooks::{Act, HookPlan, HookPoint};
use interplay_models::load::{load_gguf, load_path};
use interplay_models::patching::{PatchTarget, no_progress, patch_sweep, patch_sweep_naive};
use interplay_models::{ComputeDevice, Transformer};
use interplay_testkit::*;

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    pollster::block_on(f)
}

fn load(name: &str, dev: &ComputeDevice) -> Transformer {
    load_path(&fixtures().join(name), &dev.device)
        .expect("fixture loads")
        .model
}

fn check_logits(model: &Transformer, name: &str, label: &str) {
    let g = golden(name);
    let ids = ids(&g["prompt"]);
    let logits = model.forward(model.tokens(std::slice::from_ref(&ids)).unwrap());
    let got = block(read_f32(logits)).unwrap();
    let (shape, want) = tensor(&g["logits"]);
    let err = max_rel_err(&got, &want);
    assert!(err < 1e-4, "{label}: logits differ from HF by {err:e}");

    // The shortcuts that skip the unembedding where it is not read give HF's numbers too.
    let v = *shape.last().unwrap();
    let last_row = &want[want.len() - v..];
    let tokens = || model.tokens(std::slice::from_ref(&ids)).unwrap();
    let last = block(read_f32(model.last_logits(tokens()).unwrap())).unwrap();
    let err = max_rel_err(&last, last_row);
    assert!(err < 1e-4, "{label}: last_logits differ from HF by {err:e}");
    let (resid, _, _) = model
        .extend_residual(tokens(), None, &HookPlan::default())
        .unwrap();
    let [_, p, d] = resid.dims();
    let rows = block(read_f32(model.logits_rows(resid.clone().reshape([p, d])))).unwrap();
    let err = max_rel_err(&rows, &want);
    assert!(err < 1e-4, "{label}: logits_rows differ from HF by {err:e}");
    let picked = [3u32, 0, (v - 1) as u32];
    let ids_t = burn::tensor::Tensor::<1, burn::tensor::Int>::from_data(
        burn::tensor::TensorData::new(picked.map(|i| i as i32).to_vec(), [3]),
        &model.device(),
    );
    let some = block(read_f32(model.logits_of(resid.reshape([p, d]), ids_t))).unwrap();
    let want_some: Vec<f64> = (0..p)
        .flat_map(|r| picked.map(|c| want[r * v + c as usize]))
        .collect();
    let err = max_rel_err(&some, &want_some);
    assert!(err < 1e-4, "{label}: logits_of differ from HF by {err:e}");
}

fn read_act(a: &Act) -> Vec<f32> {
    match a {
        Act::R3(t) => block(read_f32(t.clone())).unwrap(),
        Act::R4(t) => block(read_f32(t.clone())).unwrap(),
    }
}

fn check_hooks(model: &Transformer, name: &str, label: &str) {
    let g = golden(name);
    let hooks = g["hooks"].as_object().unwrap();
    let points: Vec<HookPoint> = hooks.keys().map(|k| k.parse().expect(k)).collect();
    let plan = HookPlan::caching(points.iter().copied());
    let (_, cache) = model.run_with_hooks(model.tokens(&[ids(&g["prompt"])]).unwrap(), &plan);
    for (k, v) in hooks {
        let hp: HookPoint = k.parse().unwrap();
        assert_eq!(hp.to_string(), *k, "hook names round-trip");
        let act = cache
            .get(hp)
            .unwrap_or_else(|| panic!("{label}: {k} not cached"));
        let (shape, want) = tensor(v);
        assert_eq!(act.dims(), shape, "{label}: {k} shape");
        let err = max_rel_err(&read_act(act), &want);
        assert!(err < 1e-4, "{label}: {k} differs from HF by {err:e}");
        // Alone, the hook runs only the blocks it needs, and gets the same values.
        let alone = model
            .activations(
                model.tokens(&[ids(&g["prompt"])]).unwrap(),
                None,
                &HookPlan::caching([hp]),
            )
            .unwrap();
        let act = alone
            .get(hp)
            .unwrap_or_else(|| panic!("{label}: {k} not cached alone"));
        let err = max_rel_err(&read_act(act), &want);
        assert!(err < 1e-4, "{label}: {k} alone differs from HF by {err:e}");
    }
}

#[test]
fn gpt2_matches_hf_on_every_device() {
    for dev in devices() {
        let m = load("tiny-gpt2", &dev);
        check_logits(&m, "tiny-gpt2", &format!("gpt2/{}", dev.backend));
        check_hooks(&m, "tiny-gpt2", &format!("gpt2/{}", dev.backend));
    }
}

#[test]
fn llama_matches_hf_on_every_device() {
    for dev in devices() {
        let m = load("tiny-llama", &dev);
        check_logits(&m, "tiny-llama", &format!("llama/{}", dev.backend));
        check_hooks(&m, "tiny-llama", &format!("llama/{}", dev.backend));
    }
}

#[test]
fn llama_gguf_matches_hf() {
    let dev = ComputeDevice::cpu();
    let bytes = std::fs::read(fixtures().join("tiny-llama/model.gguf")).unwrap();
    let m = load_gguf(&bytes, &dev.device).expect("gguf loads").model;
    check_logits(&m, "tiny-llama", "llama/gguf");
}

fn check_grids(name: &str, dev: &ComputeDevice) {
    let g = golden(name);
    let p = &g["patching"];
    let m = load(name, dev);
    let (clean, corrupt) = (ids(&p["clean"]), ids(&p["corrupt"]));
    let (a, w) = (
        p["answer"].as_u64().unwrap() as u32,
        p["wrong"].as_u64().unwrap() as u32,
    );
    for (target, key) in [
        (PatchTarget::ResidPre, "resid_pre"),
        (PatchTarget::AttnOut, "attn_out"),
        (PatchTarget::HeadOut, "head_out"),
    ] {
        let grid = block(patch_sweep(
            &m,
            &clean,
            &corrupt,
            target,
            a,
            w,
            &mut no_progress,
        ))
        .unwrap();
        assert!((grid.clean_metric as f64 - p["clean_metric"].as_f64().unwrap()).abs() < 1e-4);
        assert!((grid.corrupt_metric as f64 - p["corrupt_metric"].as_f64().unwrap()).abs() < 1e-4);
        let want = p[key].as_array().unwrap();
        assert_eq!(grid.grid.len(), want.len(), "{name}/{key} rows");
        for (l, (row, wrow)) in grid.grid.iter().zip(want).enumerate() {
            for (c, (v, wv)) in row.iter().zip(wrow.as_array().unwrap()).enumerate() {
                let wv = wv.as_f64().unwrap();
                assert!(
                    (*v as f64 - wv).abs() < 1e-3,
                    "{name}/{key}/{}: grid[{l}][{c}] = {v}, HF {wv}",
                    dev.backend
                );
            }
        }
    }
}

#[test]
fn patching_grids_match_hf() {
    for dev in devices() {
        check_grids("tiny-gpt2", &dev);
        check_grids("tiny-llama", &dev);
    }
}

#[test]
fn fast_sweep_equals_naive_sweep_for_every_target() {
    let dev = ComputeDevice::cpu();
    for name in ["tiny-gpt2", "tiny-llama"] {
        let g = golden(name);
        let p = &g["patching"];
        let m = load(name, &dev);
        let (clean, corrupt) = (ids(&p["clean"]), ids(&p["corrupt"]));
        // The golden pair differs from position 1; a pair that first differs at position 4
        // (the fast sweep skips the positions before it) and two equal prompts (it runs no
        // variant at all) must agree with the naive sweep too.
        let mut late = clean.clone();
        late[4] = 58;
        for (clean, corrupt) in [(&clean, &corrupt), (&clean, &late), (&clean, &clean)] {
            for target in [
                PatchTarget::ResidPre,
                PatchTarget::ResidMid,
                PatchTarget::ResidPost,
                PatchTarget::AttnOut,
                PatchTarget::MlpOut,
                PatchTarget::HeadOut,
                PatchTarget::HeadOutPos,
            ] {
                let fast = block(patch_sweep(
                    &m,
                    clean,
                    corrupt,
                    target,
                    30,
                    58,
                    &mut no_progress,
                ))
                .unwrap();
                let slow = block(patch_sweep_naive(&m, clean, corrupt, target, 30, 58)).unwrap();
                assert_eq!(fast.patched.len(), slow.patched.len());
                for (r1, r2) in fast.patched.iter().zip(&slow.patched) {
                    assert_eq!(r1.len(), r2.len());
                    for (x, y) in r1.iter().zip(r2) {
                        assert!((x - y).abs() < 1e-4, "{name} {target:?}: {x} vs {y}");
                    }
                }
            }
        }
    }
}

/// The intervention sweep (each variant entering at its layer, only positions `from..` run)
/// equals one full forward per variant: heads, attention and MLP outputs zeroed or scaled, at
/// every position and at the last one, variants given out of layer order.
#[test]
fn intervention_sweep_equals_a_full_run_per_variant() {
    use interplay_models::budget::block_bytes;
    use interplay_models::hooks::{Action, Intervention, Selector};
    use interplay_models::patching::{Variant, intervention_sweep, intervention_sweep_within};
    let dev = ComputeDevice::cpu();
    for name in ["tiny-gpt2", "tiny-llama"] {
        let g = golden(name);
        let m = load(name, &dev);
        let prompt = ids(&g["patching"]["clean"]);
        let p = prompt.len();
        let read = [30u32, 58, 7];
        for from in [0, p - 1] {
            let at = if from == 0 {
                Selector::all()
            } else {
                Selector::position(p - 1)
            };
            let n = m.config.n_layers;
            let mut variants = Vec::new();
            // A mean at the layer's first head: every position's value, over absolute positions.
            let mean = |l: usize| {
                let plan = HookPlan::caching([HookPoint::Z(l)]);
                let (_, cache) =
                    m.run_with_hooks(m.tokens(std::slice::from_ref(&prompt)).unwrap(), &plan);
                cache.get(HookPoint::Z(l)).unwrap().clone()
            };
            for l in (0..n).rev() {
                let one = |hook, selector: Selector, action| Variant {
                    layer: l,
                    interventions: vec![Intervention {
                        hook,
                        selector,
                        action,
                    }],
                };
                variants.push(one(HookPoint::AttnOut(l), at.clone(), Action::Zero));
                variants.push(one(HookPoint::MlpOut(l), at.clone(), Action::Scale(0.5)));
                variants.push(one(
                    HookPoint::Z(l),
                    at.clone().at_heads(vec![1]),
                    Action::Zero,
                ));
                // Head 0 given the mean over the prompt of head 1 of the layer below's output
                // (any activation of the right shape will do).
                variants.push(one(
                    HookPoint::Z(l),
                    at.clone().at_heads(vec![0]),
                    Action::Mean(mean(l.saturating_sub(1))),
                ));
            }
            let got = block(intervention_sweep(
                &m,
                &prompt,
                &variants,
                from,
                &read,
                &mut no_progress,
            ))
            .unwrap();
            let full = |plan: &HookPlan| -> Vec<f32> {
                let (logits, _) =
                    m.run_with_hooks(m.tokens(std::slice::from_ref(&prompt)).unwrap(), plan);
                let all = block(read_f32(logits)).unwrap();
                let v = m.config.d_vocab;
                read.iter()
                    .map(|&t| all[(p - 1) * v + t as usize])
                    .collect()
            };
            let close = |a: &[f32], b: &[f32], what: &str| {
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() < 1e-4,
                        "{name} from {from} {what}: {x} vs {y}"
                    );
                }
            };
            close(&got.clean, &full(&HookPlan::default()), "clean");
            assert_eq!(got.variants.len(), variants.len());
            for (i, v) in variants.iter().enumerate() {
                let mut plan = HookPlan::default();
                plan.interventions.extend(v.interventions.iter().cloned());
                close(&got.variants[i], &full(&plan), &format!("variant {i}"));
            }
            // Batches of 1, 2 and 5 rows (a layer's variants split over batches, batches that
            // start past layer 0) give the same numbers.
            let one = block_bytes(&m.config, 1, p - from, p);
            for rows in [1, 2, 5] {
                let split = block(intervention_sweep_within(
                    &m,
                    &prompt,
                    &variants,
                    from,
                    &read,
                    rows * one,
                    &mut no_progress,
                ))
                .unwrap();
                for (i, (a, b)) in split.variants.iter().zip(&got.variants).enumerate() {
                    close(a, b, &format!("{rows} rows: variant {i}"));
                }
            }
            // An intervention the sweep would skip is refused.
            if from > 0 {
                let all = [Variant {
                    layer: 0,
                    interventions: vec![Intervention {
                        hook: HookPoint::AttnOut(0),
                        selector: Selector::all(),
                        action: Action::Zero,
                    }],
                }];
                let e = block(intervention_sweep(
                    &m,
                    &prompt,
                    &all,
                    from,
                    &read,
                    &mut no_progress,
                ))
                .unwrap_err()
                .to_string();
                assert!(e.contains("selects positions outside"), "{e}");
            }
            let elsewhere = [Variant {
                layer: 0,
                interventions: vec![Intervention {
                    hook: HookPoint::MlpOut(1),
                    selector: at.clone(),
                    action: Action::Zero,
                }],
            }];
            let e = block(intervention_sweep(
                &m,
                &prompt,
                &elsewhere,
                from,
                &read,
                &mut no_progress,
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains("only touch hooks inside its own layer"), "{e}");
        }
    }
}
