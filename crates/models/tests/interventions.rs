//! Interventions compose as documented: zero / scale / mean / add / project / subspace patching,
//! selected by position, head and batch row.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
#![cfg(not(target_family = "wasm"))]

use burn::tensor::Tensor;
use interplay_models::device::read_f32;
use interplay_models::hooks::{Act, Action, HookPlan, HookPoint, Selector, mean_over_batch};
use interplay_models::load::load_path;
use interplay_models::{ComputeDevice, Transformer};
use interplay_testkit::*;
use serde_json::Value;

fn model() -> Transformer {
    load_path(&fixtures().join("tiny-llama"), &ComputeDevice::cpu().device)
        .unwrap()
        .model
}

fn read3(t: Tensor<3>) -> Vec<f32> {
    pollster::block_on(read_f32(t)).unwrap()
}

const IDS: [u32; 6] = [3, 17, 42, 8, 55, 17];

#[test]
fn zeroing_every_head_leaves_resid_mid_equal_to_resid_pre() {
    let m = model();
    let tokens = m.tokens(&[IDS.to_vec()]).unwrap();
    let plan = HookPlan::caching([HookPoint::ResidPre(1), HookPoint::ResidMid(1)]).with(
        HookPoint::Z(1),
        Selector::all(),
        Action::Zero,
    );
    let (_, cache) = m.run_with_hooks(tokens.clone(), &plan);
    let pre = read3(cache.r3(HookPoint::ResidPre(1)).unwrap());
    let mid = read3(cache.r3(HookPoint::ResidMid(1)).unwrap());
    assert!(pre.iter().zip(&mid).all(|(a, b)| (a - b).abs() < 1e-6));

    // Scale(0) on one head at one position equals Zero there, and nothing else changes.
    let sel = Selector::head(2).at_positions(vec![4]);
    let a =
        HookPlan::caching([HookPoint::Z(0)]).with(HookPoint::Z(0), sel.clone(), Action::Scale(0.0));
    let b = HookPlan::caching([HookPoint::Z(0)]).with(HookPoint::Z(0), sel, Action::Zero);
    let (la, ca) = m.run_with_hooks(tokens.clone(), &a);
    let (lb, _) = m.run_with_hooks(tokens.clone(), &b);
    assert_eq!(read3(la), read3(lb));
    let (_, clean) = m.run_with_hooks(tokens, &HookPlan::caching([HookPoint::Z(0)]));
    let z = pollster::block_on(read_f32(ca.r4(HookPoint::Z(0)).unwrap())).unwrap();
    let z0 = pollster::block_on(read_f32(clean.r4(HookPoint::Z(0)).unwrap())).unwrap();
    let dh = 8;
    for (i, (x, y)) in z.iter().zip(&z0).enumerate() {
        let (pos, head) = (i / (4 * dh), (i / dh) % 4);
        if pos == 4 && head == 2 {
            assert_eq!(*x, 0.0);
        } else {
            assert_eq!(x, y, "entry {i} changed");
        }
    }
}

#[test]
fn steering_at_resid_pre_0_equals_steering_the_embedding() {
    let m = model();
    let tokens = m.tokens(&[IDS.to_vec()]).unwrap();
    let v: Vec<f32> = (0..32).map(|i| (i as f32 * 0.37).sin()).collect();
    let a = HookPlan::default().with(
        HookPoint::ResidPre(0),
        Selector::position(2),
        Action::Add(v.clone()),
    );
    let b = HookPlan::default().with(HookPoint::Embed, Selector::position(2), Action::Add(v));
    let (la, _) = m.run_with_hooks(tokens.clone(), &a);
    let (lb, _) = m.run_with_hooks(tokens.clone(), &b);
    let (x, y) = (read3(la), read3(lb));
    assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 1e-5));
    assert_ne!(x, read3(m.forward(tokens)), "steering changed the output");
}

#[test]
fn projections_and_subspace_patching() {
    let m = model();
    let tokens = m.tokens(&[IDS.to_vec()]).unwrap();
    let mut e0 = vec![0f32; 32];
    e0[0] = 1.0;
    let plan = HookPlan::caching([HookPoint::ResidPost(1)]).with(
        HookPoint::ResidPost(1),
        Selector::all(),
        Action::ProjectOut(vec![e0.clone()]),
    );
    let (_, c) = m.run_with_hooks(tokens.clone(), &plan);
    let r = read3(c.r3(HookPoint::ResidPost(1)).unwrap());
    assert!(r.chunks(32).all(|row| row[0].abs() < 1e-6));
    let plan = HookPlan::caching([HookPoint::ResidPost(1)]).with(
        HookPoint::ResidPost(1),
        Selector::all(),
        Action::ProjectOnto(vec![e0.clone()]),
    );
    let (_, c) = m.run_with_hooks(tokens.clone(), &plan);
    let r = read3(c.r3(HookPoint::ResidPost(1)).unwrap());
    assert!(
        r.chunks(32)
            .all(|row| row[1..].iter().all(|x| x.abs() < 1e-6))
    );

    // Patching along e0 from another run copies exactly that coordinate.
    let other = m.tokens(&[vec![9, 9, 9, 9, 9, 9]]).unwrap();
    let (_, oc) = m.run_with_hooks(other, &HookPlan::caching([HookPoint::ResidPre(1)]));
    let src = oc.get(HookPoint::ResidPre(1)).unwrap().clone();
    let plan = HookPlan::caching([HookPoint::ResidPre(1)]).with(
        HookPoint::ResidPre(1),
        Selector::all(),
        Action::PatchAlong {
            source: src.clone(),
            direction: e0,
        },
    );
    let (_, c) = m.run_with_hooks(tokens.clone(), &plan);
    let got = read3(c.r3(HookPoint::ResidPre(1)).unwrap());
    let Act::R3(s) = src else { panic!() };
    let s = read3(s);
    let (_, base) = m.run_with_hooks(tokens, &HookPlan::caching([HookPoint::ResidPre(1)]));
    let base = read3(base.r3(HookPoint::ResidPre(1)).unwrap());
    for i in 0..got.len() {
        let want = if i % 32 == 0 { s[i] } else { base[i] };
        assert!((got[i] - want).abs() < 1e-5, "entry {i}");
    }
}

#[test]
fn mean_ablation_over_a_batch_and_batch_row_selection() {
    let m = model();
    let batch = m
        .tokens(&[IDS.to_vec(), vec![1, 2, 3, 4, 5, 6], vec![7, 7, 7, 7, 7, 7]])
        .unwrap();
    let (_, c) = m.run_with_hooks(batch.clone(), &HookPlan::caching([HookPoint::MlpOut(0)]));
    let mean = mean_over_batch(c.get(HookPoint::MlpOut(0)).unwrap());
    assert_eq!(mean.dims(), vec![1, 6, 32]);
    // Only row 1 is ablated; rows 0 and 2 keep their outputs.
    let plan = HookPlan::caching([HookPoint::MlpOut(0)]).with(
        HookPoint::MlpOut(0),
        Selector::all().at_batch(vec![1]),
        Action::Mean(mean.clone()),
    );
    let (_, c2) = m.run_with_hooks(batch, &plan);
    let before = read3(c.r3(HookPoint::MlpOut(0)).unwrap());
    let after = read3(c2.r3(HookPoint::MlpOut(0)).unwrap());
    let Act::R3(mt) = mean else { panic!() };
    let mv = read3(mt);
    let n = 6 * 32;
    assert_eq!(&before[..n], &after[..n]);
    assert_eq!(&before[2 * n..], &after[2 * n..]);
    assert!(
        after[n..2 * n]
            .iter()
            .zip(&mv)
            .all(|(a, b)| (a - b).abs() < 1e-6)
    );
}

#[test]
fn hook_names_round_trip() {
    for s in [
        "hook_embed",
        "hook_pos_embed",
        "blocks.0.hook_resid_pre",
        "blocks.11.attn.hook_pattern",
        "blocks.3.mlp.hook_post",
        "ln_final.hook_normalized",
    ] {
        let h: HookPoint = s.parse().unwrap();
        assert_eq!(h.to_string(), s);
    }
    for bad in [
        "blocks.x.hook_resid_pre",
        "blocks.1.hook_nope",
        "scale4ln1",
        "",
    ] {
        assert!(bad.parse::<HookPoint>().is_err(), "{bad}");
    }
}

/// Every kind of intervention against Hugging Face with the same edit made by PyTorch hooks
/// (tests/fixtures/make_intervention_goldens.py): the logits at every position of every batch
/// row, on both tiny fixtures and every device.
#[test]
fn interventions_match_hugging_face_hooks() {
    let g = golden("interventions");
    let floats = |v: &Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let usizes = |v: &Value| -> Option<Vec<usize>> {
        v.as_array()
            .map(|a| a.iter().map(|x| x.as_u64().unwrap() as usize).collect())
    };
    for dev in devices() {
        for (name, cases) in g["models"].as_object().unwrap() {
            let m = load_path(&fixtures().join(name), &dev.device)
                .unwrap()
                .model;
            for c in cases.as_array().unwrap() {
                let at = format!("{name} on {}: {}", dev.backend.label(), c["name"]);
                let hook: HookPoint = c["hook"].as_str().unwrap().parse().unwrap();
                let prompts: Vec<Vec<u32>> =
                    c["prompts"].as_array().unwrap().iter().map(ids).collect();
                let tokens = m.tokens(&prompts).unwrap();
                let a = &c["action"];
                let action = match a["kind"].as_str().unwrap() {
                    "zero" => Action::Zero,
                    "scale" => Action::Scale(a["factor"].as_f64().unwrap() as f32),
                    "add" => Action::Add(floats(&a["vector"])),
                    "zero_units" => Action::ZeroUnits(usizes(&a["units"]).unwrap()),
                    kind @ ("project_out" | "project_onto") => {
                        let dirs = a["directions"].as_array().unwrap().iter().map(floats);
                        if kind == "project_out" {
                            Action::ProjectOut(dirs.collect())
                        } else {
                            Action::ProjectOnto(dirs.collect())
                        }
                    }
                    "patch_along" => {
                        let other = m.tokens(&[ids(&a["source_prompt"])]).unwrap();
                        let (_, oc) = m.run_with_hooks(other, &HookPlan::caching([hook]));
                        Action::PatchAlong {
                            source: oc.get(hook).unwrap().clone(),
                            direction: floats(&a["direction"]),
                        }
                    }
                    "mean" => {
                        let (_, bc) = m.run_with_hooks(tokens.clone(), &HookPlan::caching([hook]));
                        Action::Mean(mean_over_batch(bc.get(hook).unwrap()))
                    }
                    other => panic!("{at}: unknown action {other}"),
                };
                let mut sel = Selector::all();
                sel.positions = usizes(&c["positions"]);
                sel.heads = usizes(&c["heads"]);
                sel.batch = usizes(&c["batch"]);
                let plan = HookPlan::default().with(hook, sel, action);
                let (logits, _) = m.run_with_hooks(tokens.clone(), &plan);
                let shape: Vec<usize> = usizes(&c["shape"]).unwrap();
                assert_eq!(logits.dims().to_vec(), shape, "{at}: logits shape");
                let got = read3(logits);
                let want: Vec<f64> = c["logits"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect();
                assert_eq!(got.len(), want.len(), "{at}: logits");
                let err = max_rel_err(&got, &want);
                assert!(err < 1e-4, "{at}: logits off Hugging Face by {err:e}");
                // And the intervention did something: the plain run is far from it.
                let plain = read3(m.forward(tokens));
                let moved = plain
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (*a as f64 - b).abs())
                    .fold(0.0, f64::max);
                assert!(
                    moved > 1e-3,
                    "{at}: the intervention changed nothing ({moved:e})"
                );
            }
        }
    }
}
