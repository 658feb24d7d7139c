//! Recall vs reasoning (`interplay_lab::recall`) against Hugging Face
//! (`tests/fixtures/make_recall_goldens.py`) on SmolLM2: every discovery question's margin as the
//! model is and with each component ablated (mean ablation at the last position with every head,
//! zero ablation at every position), the selectivities, the circuits HF's ranking picks and their
//! scores on the test questions; on the CPU, and trimmed on wgpu.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use interplay_lab::recall::{
    Ablation, Circuit, Component, Part, RecallResult, RecallSpec, RecallTasks, Scope, Score, Tasks,
    check, run,
};
use interplay_models::ComputeDevice;
use interplay_models::load::load_path;
use interplay_models::patching::no_progress;
use interplay_testkit::{golden, smollm2, wgpu_device};
use serde_json::Value;

/// Margins are differences of two logits: within 1e-3 of HF's, as the other SmolLM2 goldens.
const MARGIN: f64 = 1e-3;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

/// The spec a golden case ran.
fn spec_of(g: &Value, tasks: Tasks) -> RecallSpec {
    let s = &g["spec"];
    RecallSpec {
        model: "smollm2".into(),
        tasks,
        ablation: serde_json::from_value(s["ablation"].clone()).unwrap(),
        scope: serde_json::from_value(s["scope"].clone()).unwrap(),
        heads: s["heads"].as_bool().unwrap(),
        top_k: s["top_k"].as_u64().unwrap() as usize,
        control: s["control"].as_bool().unwrap(),
        seed: s["seed"].as_u64().unwrap(),
    }
}

/// HF's `[layer, "attn" | "mlp" | "head", head]`.
fn component(v: &Value) -> Component {
    let layer = v[0].as_u64().unwrap() as usize;
    let part = match v[1].as_str().unwrap() {
        "attn" => Part::Attn,
        "mlp" => Part::Mlp,
        _ => Part::Head(v[2].as_u64().unwrap() as usize),
    };
    Component { layer, part }
}

fn check_score(what: &str, s: &Score, w: &Value) {
    let margins = w["margins"].as_array().unwrap();
    assert_eq!(s.total, margins.len(), "{what}: questions");
    for (i, (x, y)) in s.margins.iter().zip(margins).enumerate() {
        assert!(
            (x - f(y)).abs() < MARGIN,
            "{what}: question {i}: margin {x} vs HF {y}"
        );
    }
    // A question within rounding of a tie may go either way.
    let near = margins.iter().filter(|m| f(m).abs() <= MARGIN).count();
    assert!(
        s.correct.abs_diff(f(&w["correct"]) as usize) <= near,
        "{what}: correct {} vs HF {}",
        s.correct,
        w["correct"]
    );
}

fn check_run(what: &str, r: &RecallResult, g: &Value) {
    check_score(&format!("{what} recall"), &r.recall, &g["base"]["recall"]);
    check_score(
        &format!("{what} reasoning"),
        &r.reasoning,
        &g["base"]["reasoning"],
    );
    let sel: Vec<f64> = g["selectivity"].as_array().unwrap().iter().map(f).collect();
    assert_eq!(r.effects.len(), sel.len(), "{what}: components");
    // A selectivity is a difference of two mean margins over the base margin (≈ 1–6 here).
    let tol = 2e-3 / r.recall.margin.abs().min(r.reasoning.margin.abs()).min(1.0);
    for (j, e) in r.effects.iter().enumerate() {
        let c = e.component;
        check_score(
            &format!("{what} {c} recall"),
            &e.recall,
            &g["effects"]["recall"][j],
        );
        check_score(
            &format!("{what} {c} reasoning"),
            &e.reasoning,
            &g["effects"]["reasoning"][j],
        );
        assert!(
            (e.selectivity - sel[j]).abs() < tol,
            "{what} {c}: selectivity {} vs HF {}",
            e.selectivity,
            sel[j]
        );
    }
    let index = |c: Component| r.effects.iter().position(|e| e.component == c).unwrap();
    let circuits: [(&str, &Circuit); 3] = [
        ("test", &r.test),
        ("recall_circuit", &r.recall_circuit),
        ("reasoning_circuit", &r.reasoning_circuit),
    ];
    for (name, c) in circuits
        .into_iter()
        .chain(r.control.as_ref().map(|c| ("control", c)))
    {
        let w = &g["circuits"][name];
        let want: Vec<Component> = w["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(component)
            .collect();
        assert_eq!(c.components.len(), want.len(), "{what} {name}");
        let same = c.components == want;
        if name == "test" || name == "control" {
            assert!(same, "{what} {name}: {:?} vs HF {want:?}", c.components);
        }
        if same {
            check_score(&format!("{what} {name} recall"), &c.recall, &w["recall"]);
            check_score(
                &format!("{what} {name} reasoning"),
                &c.reasoning,
                &w["reasoning"],
            );
        } else {
            // The ranking HF's up to near ties of selectivity.
            for (a, b) in c.components.iter().zip(&want) {
                assert!(
                    (sel[index(*a)] - sel[index(*b)]).abs() < 2.0 * tol,
                    "{what} {name}: {a} where HF has {b}"
                );
            }
        }
    }
    assert_eq!(
        r.control.is_some(),
        g["circuits"].get("control").is_some(),
        "{what}: control"
    );
}

#[test]
fn smollm2_matches_hugging_face_when_fetched() {
    let Some(path) = smollm2() else { return };
    let golden = golden("recall");
    let m = load_path(&path, &ComputeDevice::cpu().device).unwrap();
    let tk = m.tokenizer.as_ref().unwrap();
    let g = &golden["guided"];
    let spec = RecallSpec::smollm2();
    // The golden ran the guided experiment's spec.
    assert_eq!(spec_of(g, Tasks::Bundled), spec, "golden spec");
    let r = pollster::block_on(run(&spec, &m.model, tk, &mut no_progress)).unwrap();
    check_run("cpu guided", &r, g);
    let g = &golden["all_zero"];
    let spec = spec_of(g, Tasks::Bundled);
    assert_eq!((spec.ablation, spec.scope), (Ablation::Zero, Scope::All));
    let r = pollster::block_on(run(&spec, &m.model, tk, &mut no_progress)).unwrap();
    check_run("cpu all positions", &r, g);
}

#[test]
fn smollm2_trimmed_on_wgpu_matches_hugging_face_when_fetched() {
    let Some(path) = smollm2() else { return };
    let Some(dev) = wgpu_device() else { return };
    let g = golden("recall");
    let g = &g["trimmed"];
    let tasks: RecallTasks = serde_json::from_value(g["given"].clone()).unwrap();
    let spec = spec_of(g, Tasks::Given(tasks));
    let m = load_path(&path, &dev.device).unwrap();
    let tk = m.tokenizer.as_ref().unwrap();
    let r = pollster::block_on(run(&spec, &m.model, tk, &mut no_progress)).unwrap();
    check_run("wgpu trimmed", &r, g);
}

#[test]
fn bad_specs_are_messages() {
    let Some(path) = smollm2() else { return };
    let m = load_path(&path, &ComputeDevice::cpu().device).unwrap();
    let tk = m.tokenizer.as_ref().unwrap();
    let err = |spec: RecallSpec| check(&spec, &m.model, tk).unwrap_err().to_string();
    let base = RecallSpec::smollm2();
    let e = err(RecallSpec {
        top_k: 0,
        ..base.clone()
    });
    assert!(
        e.contains("top k must be between 1 and 165, half of the 330 components ablated"),
        "{e}"
    );
    let mut t = base.tasks.load().unwrap();
    t.reasoning.truncate(1);
    let e = err(RecallSpec {
        tasks: Tasks::Given(t.clone()),
        ..base.clone()
    });
    assert!(
        e.contains("the reasoning task needs at least two questions"),
        "{e}"
    );
    let mut t = base.tasks.load().unwrap();
    t.recall[0].options = vec![" Paris".into(), " Paris".into()];
    let e = err(RecallSpec {
        tasks: Tasks::Given(t.clone()),
        ..base.clone()
    });
    assert!(e.contains("begin with the same token"), "{e}");
    t.recall[0].options = vec![" Paris".into()];
    let e = err(RecallSpec {
        tasks: Tasks::Given(t),
        ..base
    });
    assert!(e.contains("needs at least two options"), "{e}");
}
