//! Subspace patching (DAS) against PyTorch (tests/fixtures/make_das_goldens.py: the same prompt
//! pairs, initial direction, batches and Adam written out in plain PyTorch on the bundled
//! `ioi-3l`, its forward checked against Hugging Face's GPT2LMHeadModel): the logits patched
//! along the initial direction, the first 30 training steps (losses and the direction after
//! them) on the CPU and wgpu, and the guided run's held-out effects and row-space shares.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
#![cfg(all(feature = "train", not(target_family = "wasm")))]

use interplay_lab::subspace::{
    Counterfactual, SubspaceSpec, initial_direction, pairs, patched_logits,
};
use interplay_models::hooks::HookPoint;
use interplay_models::load::load_path;
use interplay_models::patching::no_progress;
use interplay_models::{ComputeDevice, LoadedModel};
use interplay_testkit::*;
use serde_json::Value;

fn load(dev: &ComputeDevice) -> LoadedModel {
    load_path(&root().join("public/bundled/ioi-3l"), &dev.device).expect("loads")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn hook(case: &Value) -> HookPoint {
    case["hook"].as_str().unwrap().parse().unwrap()
}

fn spec(case: &Value, steps: usize) -> SubspaceSpec {
    SubspaceSpec {
        hooks: vec![hook(case)],
        steps,
        batch: case["batch"].as_u64().unwrap() as usize,
        lr: case["lr"].as_f64().unwrap(),
        seed: case["seed"].as_u64().unwrap(),
        counterfactual: Counterfactual::Repeat,
        ..SubspaceSpec::guided()
    }
}

/// The first held-out pair is PyTorch's, and patching it along the initial direction gives
/// PyTorch's logits.
#[test]
fn patching_along_the_initial_direction_matches_pytorch() {
    let g = golden("das");
    let first = &pairs(true, Counterfactual::Repeat, 20)[0][0];
    for case in g["cases"].as_array().unwrap() {
        let p = &case["first_test_pair"];
        assert_eq!(first.base, ids(&p["base"]), "the same base prompt");
        assert_eq!(first.source, ids(&p["source"]), "the same source prompt");
        let d = case["d"].as_u64().unwrap() as usize;
        let v = initial_direction(case["seed"].as_u64().unwrap(), d);
        let head = floats(&case["initial_v_head"]);
        assert!(max_rel_err(&v[..head.len()], &head) < 1e-5, "initial v");
        let want = floats(&case["initial_patched_logits"]);
        for dev in devices() {
            let m = load(&dev);
            let got = pollster::block_on(patched_logits(&m.model, first, hook(case), &v)).unwrap();
            let err = max_rel_err(&got, &want);
            assert!(
                err < 1e-4,
                "{:?} {}: off by {err:e}",
                dev.backend,
                case["hook"]
            );
        }
    }
}

/// Thirty Adam steps give PyTorch's losses and direction (on wgpu — lavapipe — ten).
#[test]
fn the_first_30_steps_match_pytorch() {
    let g = golden("das");
    for dev in devices() {
        let cpu = dev.backend == interplay_models::device::Backend::Cpu;
        let n = if cpu {
            g["golden_steps"].as_u64().unwrap() as usize
        } else {
            10
        };
        let m = load(&dev);
        for case in g["cases"].as_array().unwrap() {
            let s = spec(case, 200);
            let (loss, v) = pollster::block_on(s.first_steps(&m, hook(case), n)).unwrap();
            let want = floats(&case["losses"]);
            let err = max_rel_err(&loss, &want[..n]);
            assert!(
                err < 1e-4,
                "{:?} {}: losses off by {err:e}",
                dev.backend,
                case["hook"]
            );
            if cpu {
                let want = floats(&case["v_after_golden"]);
                let worst = v
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (*a as f64 - b).abs())
                    .fold(0.0, f64::max);
                assert!(worst < 1e-4, "{}: v off by {worst:e}", case["hook"]);
            }
        }
    }
}

/// The guided spec (200 steps at each hook) on the CPU: the held-out effects PyTorch measured
/// with its own direction, and where each direction lies.
#[test]
fn the_guided_run_gives_pytorchs_effects() {
    let g = golden("das");
    let dev = devices().remove(0);
    let m = load(&dev);
    let guided = SubspaceSpec::guided();
    let out = pollster::block_on(guided.run(&m, &mut no_progress)).unwrap();
    let close = |got: f32, want: &Value, tol: f64, what: &str| {
        let want = want.as_f64().unwrap();
        assert!(
            (got as f64 - want).abs() <= tol,
            "{what}: {got} against PyTorch's {want}"
        );
    };
    for case in g["cases"].as_array().unwrap() {
        let e = &case["eval"];
        let d = out
            .directions
            .iter()
            .find(|d| d.hook == hook(case))
            .expect("the guided spec learns at the golden's hooks");
        assert_eq!(d.loss.len(), e["losses"].as_array().unwrap().len());
        close(out.unpatched.logit_diff, &e["ld_none"], 1e-3, "unpatched");
        close(d.full.logit_diff, &e["ld_full"], 1e-3, "full patch");
        close(
            d.full.flipped,
            &e["flipped_full"],
            1e-3,
            "flipped by the full patch",
        );
        // 200 steps of Adam in f32 drift apart a little.
        close(d.along.logit_diff, &e["ld_v"], 2e-2, "along v");
        close(d.along.flipped, &e["flipped_v"], 1.5e-2, "flipped along v");
        close(d.row_share, &e["row_share"], 1e-2, "row share");
        close(
            d.row.expect("a row part").logit_diff,
            &e["ld_row"],
            2e-2,
            "along the read part",
        );
        assert_eq!(d.null_dim as u64, e["null_dim"].as_u64().unwrap());
        close(d.from_null, &e["from_null"], 2e-2, "from null");
        let null = d.null.expect("a null part");
        // Patching along a direction no weight reads changes nothing.
        if d.null_dim > 1 {
            close(null.logit_diff, &e["ld_none"], 1e-3, "null part alone");
        }
    }
}

/// The SmolLM2 golden (tests/fixtures/make_das_smollm2_goldens.py: HF's model from the same GGUF,
/// the last position recomputed from the hook's layer against the prefix's keys/values).
fn smollm2_golden() -> Value {
    read_json(&fixtures().join("das").join("smollm2.json"))
}

fn smollm2_spec(case: &Value) -> SubspaceSpec {
    SubspaceSpec {
        names: case["names"].as_u64().unwrap() as usize,
        counterfactual: Counterfactual::Order,
        ..spec(case, 400)
    }
}

/// On SmolLM2 the text pairs are PyTorch's, patching the first held-out pair along the initial
/// direction gives its logits (CPU and wgpu), and the first steps give its losses and direction
/// (CPU).
#[test]
fn smollm2_patching_and_first_steps_match_pytorch_when_fetched() {
    let Some(path) = smollm2() else { return };
    let g = smollm2_golden();
    let n = g["golden_steps"].as_u64().unwrap() as usize;
    for dev in devices() {
        let cpu = dev.backend == interplay_models::device::Backend::Cpu;
        let m = load_path(&path, &dev.device).expect("loads");
        for case in g["cases"].as_array().unwrap() {
            let s = smollm2_spec(case);
            let test = s.pairs_on(&m, true).unwrap();
            let train = s.pairs_on(&m, false).unwrap();
            let sizes: Vec<u64> = train.iter().map(|t| t.len() as u64).collect();
            let want_sizes: Vec<u64> = case["train_sizes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect();
            assert_eq!(sizes, want_sizes, "train pairs a template");
            let first = &test[0][0];
            let p = &case["first_test_pair"];
            assert_eq!(first.base, ids(&p["base"]), "the same base prompt");
            assert_eq!(first.source, ids(&p["source"]), "the same source prompt");
            assert_eq!(first.io as u64, p["io"].as_u64().unwrap());
            assert_eq!(first.subject as u64, p["subject"].as_u64().unwrap());
            let d = case["d"].as_u64().unwrap() as usize;
            let v = initial_direction(case["seed"].as_u64().unwrap(), d);
            let got = pollster::block_on(patched_logits(&m.model, first, hook(case), &v)).unwrap();
            let checked: Vec<f32> = case["checked_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| got[i.as_u64().unwrap() as usize])
                .collect();
            let err = max_rel_err(&checked, &floats(&case["initial_patched_logits"]));
            assert!(
                err < 1e-4,
                "{:?} {}: logits off by {err:e}",
                dev.backend,
                case["hook"]
            );
            let top = got
                .iter()
                .map(|&x| x as f64)
                .fold(f64::NEG_INFINITY, f64::max);
            let lse = top
                + got
                    .iter()
                    .map(|&x| (x as f64 - top).exp())
                    .sum::<f64>()
                    .ln();
            let want = case["initial_patched_logsumexp"].as_f64().unwrap();
            assert!(
                (lse - want).abs() / want.abs() < 1e-4,
                "logsumexp {lse} vs {want}"
            );
            // On lavapipe caching the 224 training prompts takes minutes: the patch alone there.
            if !cpu {
                continue;
            }
            let (loss, v) = pollster::block_on(s.first_steps(&m, hook(case), n)).unwrap();
            let err = max_rel_err(&loss, &floats(&case["losses"])[..n]);
            assert!(err < 1e-4, "{}: losses off by {err:e}", case["hook"]);
            let want = floats(&case["v_after_golden"]);
            let worst = v
                .iter()
                .zip(&want)
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0.0, f64::max);
            assert!(worst < 1e-4, "{}: v off by {worst:e}", case["hook"]);
        }
    }
}

/// The SmolLM2 guide quotes PyTorch's run of the guided spec (the golden's "guided" part; this
/// project's `interplay run` of `SubspaceSpec::smollm2()` printed the same numbers).
#[test]
fn the_smollm2_guide_quotes_pytorchs_guided_run() {
    let g = &smollm2_golden()["guided"];
    let s = SubspaceSpec::smollm2();
    assert_eq!(g["names"].as_u64().unwrap() as usize, s.names);
    assert_eq!(g["steps"].as_u64().unwrap() as usize, s.steps);
    assert_eq!(g["batch"].as_u64().unwrap() as usize, s.batch);
    assert_eq!(g["lr"].as_f64().unwrap(), s.lr);
    assert_eq!(g["seed"].as_u64().unwrap(), s.seed);
    let text = interplay_lab::guides::text(interplay_lab::LabKind::Circuits, "subspace-smollm2")
        .expect("the guide has its text");
    let d = g["directions"].as_array().unwrap();
    let (mlp, resid) = (&d[0], &d[1]);
    let num = |x: &Value| format!("{:.2}", x.as_f64().unwrap()).replace('-', "−");
    let pct = |x: &Value| format!("{:.0} %", 100.0 * x.as_f64().unwrap());
    let quoted = [
        format!("{} held-out pairs", g["test_pairs"]),
        format!("IO − S is\n{} on average", num(&mlp["ld_none"])),
        format!("({},\nno pair flipped)", num(&mlp["ld_full"])),
        format!(
            "{:.1} % of the pairs ({})",
            100.0 * mlp["flipped_v"].as_f64().unwrap(),
            num(&mlp["ld_v"])
        ),
        format!("none ({})", num(&mlp["ld_row"])),
        format!("nothing ({}, as it must)", num(&mlp["ld_null"])),
        format!("{} of the patched", pct(&mlp["from_null"])),
        format!(
            "flips {}\n({})",
            pct(&resid["flipped_full"]),
            num(&resid["ld_full"])
        ),
        format!(
            "one direction {} ({})",
            pct(&resid["flipped_v"]),
            num(&resid["ld_v"])
        ),
    ];
    let flat = text.replace('\n', " ");
    for q in quoted {
        assert!(
            flat.contains(&q.replace('\n', " ")),
            "the guide quotes “{q}”"
        );
    }
}
