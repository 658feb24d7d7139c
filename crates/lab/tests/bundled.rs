//! The Circuits lab's bundled models (public/bundled/) against Hugging Face `GPT2LMHeadModel`
//! (goldens by tests/fixtures/make_goldens.py --bundled): logits, attention patterns and
//! residual streams, and the guided experiments' patching grids, on the CPU and on wgpu; plus
//! what their model cards claim (IOI accuracy on held-out names, induction on the repeat).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use interplay_lab::bundled::{Bundled, ioi_test_prompts};
use interplay_lab::circuits::head_scores;
use interplay_lab::{PatchingSpec, Prompt};
use interplay_models::device::read_f32;
use interplay_models::load::{LoadedModel, load_path};
use interplay_models::patching::{PatchTarget, no_progress};
use interplay_models::{ComputeDevice, HookPlan, HookPoint};
use pollster::block_on;
use serde_json::Value;

use interplay_testkit::{devices, root};

fn golden(b: Bundled) -> Value {
    let p = root().join(format!("tests/fixtures/bundled/{}.json", b.id()));
    serde_json::from_slice(&std::fs::read(p).expect("golden")).expect("json")
}

fn load(b: Bundled, dev: &ComputeDevice) -> LoadedModel {
    load_path(
        &root().join(format!("public/bundled/{}", b.id())),
        &dev.device,
    )
    .expect("loads")
}

fn floats(v: &Value) -> Vec<f64> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NEG_INFINITY))
        .collect()
}

fn max_rel(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(&g, &w)| {
            if w.is_infinite() {
                if g as f64 == w { 0.0 } else { f64::INFINITY }
            } else {
                (g as f64 - w).abs() / w.abs().max(1.0)
            }
        })
        .fold(0.0, f64::max)
}

fn spec(b: Bundled) -> PatchingSpec {
    match b {
        Bundled::Induction => PatchingSpec::induction_bundled(),
        Bundled::Ioi => PatchingSpec::ioi_bundled(),
        Bundled::Icl | Bundled::IclWord => {
            panic!("the in-context models are checked by tests/neurofeedback.rs")
        }
    }
}

/// The Circuits lab's bundled models (icl-3l belongs to the Neurofeedback lab).
const CIRCUITS: [Bundled; 2] = [Bundled::Induction, Bundled::Ioi];

#[test]
fn bundled_models_match_hugging_face() {
    for dev in devices() {
        for b in CIRCUITS {
            let g = golden(b);
            let m = load(b, &dev);
            let s = spec(b);
            let r = s.resolve(m.tokenizer.as_ref()).expect("resolves");
            // The committed tokenizer gives the ids Python's `tokenizers` gave.
            let ids = |k: &str| -> Vec<u32> {
                g[k].as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect()
            };
            assert_eq!(r.clean, ids("clean"), "{}", b.id());
            assert_eq!(r.corrupt, ids("corrupt"));
            assert_eq!(r.answer as u64, g["answer"].as_u64().unwrap());
            // Logits at every position, and the hooks the views read.
            let n_layers = m.model.config.n_layers;
            let plan = HookPlan::caching(
                (0..n_layers).flat_map(|l| [HookPoint::ResidPre(l), HookPoint::Pattern(l)]),
            );
            let tokens = m.model.tokens(std::slice::from_ref(&r.clean)).unwrap();
            let (logits, cache) = m.model.run_with_hooks(tokens, &plan);
            let got = block_on(read_f32(logits)).unwrap();
            let err = max_rel(&got, &floats(&g["logits"]));
            assert!(
                err < 1e-4,
                "{} logits on {}: rel err {err}",
                b.id(),
                dev.backend
            );
            for l in 0..n_layers {
                for hp in [HookPoint::ResidPre(l), HookPoint::Pattern(l)] {
                    let got = match hp {
                        HookPoint::Pattern(_) => block_on(read_f32(cache.r4(hp).unwrap())),
                        _ => block_on(read_f32(cache.r3(hp).unwrap())),
                    }
                    .unwrap();
                    let err = max_rel(&got, &floats(&g["hooks"][hp.to_string()]));
                    assert!(err < 1e-4, "{} {hp} on {}: {err}", b.id(), dev.backend);
                }
            }
            // The guided experiment's sweeps, through the spec (as the page and CLI run it).
            for (target, key) in [
                (PatchTarget::ResidPre, "resid_pre"),
                (PatchTarget::AttnOut, "attn_out"),
                (PatchTarget::HeadOut, "head_out"),
                (PatchTarget::HeadOutPos, "head_out_pos"),
            ] {
                let s = PatchingSpec { target, ..spec(b) };
                let grid = block_on(s.run(&m, &mut no_progress)).expect("sweep");
                let want = g[key].as_array().unwrap();
                assert_eq!(grid.grid.len(), want.len());
                for (l, (row, wrow)) in grid.grid.iter().zip(want).enumerate() {
                    for (c, (v, w)) in row.iter().zip(wrow.as_array().unwrap()).enumerate() {
                        let w = w.as_f64().unwrap();
                        assert!(
                            (*v as f64 - w).abs() < 1e-3,
                            "{} {key}[{l}][{c}] = {v}, HF {w} on {}",
                            b.id(),
                            dev.backend
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn ioi_model_names_the_indirect_object_on_held_out_pairs() {
    let dev = ComputeDevice::cpu();
    let m = load(Bundled::Ioi, &dev);
    let prompts = ioi_test_prompts();
    let mut right = 0;
    let mut diffs = Vec::new();
    for p in &prompts {
        let logits = m
            .model
            .forward(m.model.tokens(std::slice::from_ref(&p.ids)).unwrap());
        let [_, n, v] = logits.dims();
        let last = block_on(read_f32(logits)).unwrap()[(n - 1) * v..].to_vec();
        right += (last[p.answer as usize] > last[p.subject as usize]) as usize;
        diffs.push(last[p.answer as usize] - last[p.subject as usize]);
    }
    let acc = right as f64 / prompts.len() as f64;
    // The model card reports this number; the model must solve the task.
    assert!(acc > 0.9, "IOI accuracy on held-out pairs {acc}");
    // Hugging Face on the held-out set restated in Python (make_ioi_heldout_golden.py): the same
    // prompts, each logit difference, the same accuracy, and the model card's (train.json) too.
    let g = interplay_testkit::read_json(
        &interplay_testkit::fixtures().join("bundled/ioi-3l-heldout.json"),
    );
    let want = g["prompts"].as_array().unwrap();
    assert_eq!(prompts.len(), want.len(), "held-out prompts");
    for ((p, w), d) in prompts.iter().zip(want).zip(&diffs) {
        assert_eq!(p.text, w["text"].as_str().unwrap());
        let hf = w["logit_diff"].as_f64().unwrap();
        assert!(
            (*d as f64 - hf).abs() <= 1e-4 * hf.abs() + 1e-5,
            "{}: logit difference {d} vs HF {hf}",
            p.text
        );
        assert_eq!(p.ids, interplay_testkit::ids(&w["ids"]), "{}", p.text);
        assert_eq!(p.answer as u64, w["answer"].as_u64().unwrap());
        assert_eq!(p.subject as u64, w["subject"].as_u64().unwrap());
    }
    assert!(
        (acc - g["accuracy"].as_f64().unwrap()).abs() < 1e-12,
        "{acc} vs HF"
    );
    let card = g["train_json_test_accuracy"].as_f64().unwrap();
    assert!(
        (acc - card).abs() < 1e-6,
        "{acc} vs the model card's {card}"
    );
    // The word-level tokenizer splits punctuation, so the guided prompt needs no spaces before it.
    let t = m.tokenizer.as_ref().unwrap();
    assert_eq!(
        t.encode("store, Tom").unwrap(),
        t.encode("store , Tom").unwrap()
    );
    assert!(matches!(PatchingSpec::ioi_bundled().clean, Prompt::Text(_)));

    // The guided sweep's finding: the name moves from the repeated name to the last position.
    let spec = PatchingSpec::ioi_bundled();
    let grid = block_on(spec.run(&m, &mut no_progress)).expect("sweep");
    let ids = spec.resolve(Some(t)).expect("resolves").clean;
    let cols: Vec<String> = (0..ids.len()).map(|i| format!("{i}")).collect();
    let f = interplay_lab::findings::circuits("ioi-bundled", &spec, &grid, &cols).expect("finding");
    assert_eq!(f.agrees, Some(true), "{}", f.shows);
    assert!(
        f.shows.contains("(position 9) in layers 0–1") && f.shows.contains("from layer 2 on"),
        "{}",
        f.shows
    );
}

#[test]
fn induction_model_has_induction_heads() {
    let dev = ComputeDevice::cpu();
    let m = load(Bundled::Induction, &dev);
    let s = block_on(head_scores(&m.model, 20, 1)).unwrap();
    // The repeat is predicted (the first half is random), by layer 1 attending to the token
    // after the current one's earlier copy: induction.
    let best = |m: &Vec<Vec<f32>>, l: usize| m[l].iter().copied().fold(0.0, f32::max);
    let total = |m: &Vec<Vec<f32>>, l: usize| m[l].iter().sum::<f32>();
    eprintln!(
        "loss {} → {}; induction {:?}; previous {:?}; duplicate {:?}",
        s.loss_first, s.loss_second, s.induction, s.previous, s.duplicate
    );
    assert!(
        s.loss_second < 0.1 * s.loss_first,
        "loss {} → {}",
        s.loss_first,
        s.loss_second
    );
    // Four layer-1 heads share the work (the model card says so), none of layer 0's does it.
    assert!(total(&s.induction, 1) > 0.8, "induction {:?}", s.induction);
    assert!(
        best(&s.induction, 1) > 5.0 * best(&s.induction, 0),
        "induction {:?}",
        s.induction
    );
}
