//! Circuit component reuse (`interplay_lab::reuse`) against Hugging Face + NumPy
//! (`tests/fixtures/make_reuse_goldens.py`) on SmolLM2: each pair's head patching, the IOI
//! attention to the repeated name, the ranking and overlap restated here from HF's grids, and
//! Colored Objects scored with and without the attention intervention; on the CPU, and trimmed on
//! wgpu.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use interplay_lab::reuse::{ReuseResult, ReuseSpec, ReuseTasks, Score, Tasks, check, run};
use interplay_models::ComputeDevice;
use interplay_models::load::load_path;
use interplay_models::patching::no_progress;
use interplay_testkit::{golden, smollm2, wgpu_device};
use serde_json::Value;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

fn heads(v: &Value) -> Vec<[usize; 2]> {
    serde_json::from_value(v.clone()).unwrap()
}

/// The spec a golden case ran.
fn spec_of(g: &Value, tasks: Tasks) -> ReuseSpec {
    let s = &g["spec"];
    ReuseSpec {
        model: "smollm2".into(),
        tasks,
        pairs: s["pairs"].as_u64().unwrap() as usize,
        top_k: s["top_k"].as_u64().unwrap() as usize,
        heads: heads(&s["heads"]),
        control: s["control"].as_bool().unwrap(),
        seed: s["seed"].as_u64().unwrap(),
    }
}

/// HF's recovery grid of one task, restated: mean patched, clean and corrupt metrics over the
/// pairs, then `(patched − corrupt) / (clean − corrupt)`.
fn hf_recovery(pairs: &[Value]) -> Vec<Vec<f64>> {
    let n = pairs.len() as f64;
    let clean = pairs.iter().map(|p| f(&p["clean"])).sum::<f64>() / n;
    let corrupt = pairs.iter().map(|p| f(&p["corrupt"])).sum::<f64>() / n;
    let grid = pairs[0]["patched"].as_array().unwrap();
    (0..grid.len())
        .map(|l| {
            (0..grid[l].as_array().unwrap().len())
                .map(|h| {
                    let m = pairs.iter().map(|p| f(&p["patched"][l][h])).sum::<f64>() / n;
                    (m - corrupt) / (clean - corrupt)
                })
                .collect()
        })
        .collect()
}

/// Heads by value, highest first, ties in (layer, head) order.
fn hf_order(grid: &[Vec<f64>]) -> Vec<(usize, usize)> {
    let mut all: Vec<(usize, usize, f64)> = grid
        .iter()
        .enumerate()
        .flat_map(|(l, r)| r.iter().enumerate().map(move |(h, &x)| (l, h, x)))
        .collect();
    all.sort_by(|a, b| b.2.partial_cmp(&a.2).unwrap());
    all.into_iter().map(|(l, h, _)| (l, h)).collect()
}

/// Each pair's metrics within 1e-3 of HF's (a difference of two logits, as the other SmolLM2
/// patching goldens), the recovery grids and attention close, the top-k overlap HF's, the scores
/// HF's item by item.
fn check_run(what: &str, r: &ReuseResult, g: &Value, tasks: &ReuseTasks) {
    for (name, ours) in [("ioi", &r.ioi), ("colored", &r.colored)] {
        let pairs = g[name].as_array().unwrap();
        let n = pairs.len() as f64;
        let clean = pairs.iter().map(|p| f(&p["clean"])).sum::<f64>() / n;
        let corrupt = pairs.iter().map(|p| f(&p["corrupt"])).sum::<f64>() / n;
        assert!(
            (ours.clean - clean).abs() < 1e-3,
            "{what} {name}: clean {} vs HF {clean}",
            ours.clean
        );
        assert!(
            (ours.corrupt - corrupt).abs() < 1e-3,
            "{what} {name}: corrupt {} vs HF {corrupt}",
            ours.corrupt
        );
        let want = hf_recovery(pairs);
        // Recovery divides by clean − corrupt (IOI ≈ 11, Colored Objects ≈ 1 here).
        let tol = 2e-3 / (clean - corrupt).abs().min(1.0);
        for (l, (a, b)) in ours.grid.iter().zip(&want).enumerate() {
            for (h, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(
                    (x - y).abs() < tol,
                    "{what} {name}: head {l}.{h}: {x} vs HF {y}"
                );
            }
        }
        // The top heads HF's, except where HF's recoveries are within the tolerance.
        let order = hf_order(&want);
        for (i, (e, &(l, h))) in ours.ranked.iter().zip(&order).take(20).enumerate() {
            let gap = (want[e.layer][e.head] - want[l][h]).abs();
            assert!(
                (e.layer, e.head) == (l, h) || gap < 2.0 * tol,
                "{what} {name}: rank {i}: {}.{} where HF has {l}.{h}",
                e.layer,
                e.head
            );
        }
    }
    // Overlap at the spec's k from HF's grids.
    let k = f(&g["spec"]["top_k"]) as usize;
    let a = hf_order(&hf_recovery(g["ioi"].as_array().unwrap()));
    let b = hf_order(&hf_recovery(g["colored"].as_array().unwrap()));
    let shared = a[..k].iter().filter(|x| b[..k].contains(x)).count();
    // A near tie across rank k (within the recovery tolerance) may move one head in or out.
    let tied = |grid: &[Vec<f64>], order: &[(usize, usize)]| {
        let v = |(l, h): (usize, usize)| grid[l][h];
        (v(order[k - 1]) - v(order[k])).abs() < 4e-3
    };
    let (ga, gb) = (
        hf_recovery(g["ioi"].as_array().unwrap()),
        hf_recovery(g["colored"].as_array().unwrap()),
    );
    let slack = if tied(&ga, &a) || tied(&gb, &b) {
        1.0 / k as f64
    } else {
        0.0
    };
    assert!(
        (r.overlap[k - 1] - shared as f64 / k as f64).abs() <= slack + 1e-12,
        "{what}: overlap at {k}: {} vs HF {shared}/{k}",
        r.overlap[k - 1]
    );
    for (l, row) in g["s2_attention"].as_array().unwrap().iter().enumerate() {
        for (h, w) in row.as_array().unwrap().iter().enumerate() {
            let x = r.s2_attention[l][h];
            assert!(
                (x - f(w)).abs() < 1e-4,
                "{what}: S2 attention {l}.{h}: {x} vs HF {w}"
            );
        }
    }
    let check_score = |cond: &str, s: &Score, w: &Value| {
        let items = w["items"].as_array().unwrap();
        assert_eq!(s.total, items.len(), "{what} {cond}: items");
        for (i, (it, c)) in items.iter().zip(&tasks.colored).enumerate() {
            let answered = it["answered"].as_bool().unwrap();
            // An item within rounding of a tie may go either way.
            if hf_margin(it, c.answer).abs() > 1e-3 {
                assert_eq!(s.answered[i], answered, "{what} {cond}: item {i} answered");
            }
        }
        let near = items
            .iter()
            .zip(&tasks.colored)
            .filter(|(it, c)| hf_margin(it, c.answer).abs() <= 1e-3)
            .count();
        assert!(
            s.correct.abs_diff(f(&w["correct"]) as usize) <= near,
            "{what} {cond}: correct {} vs HF {}",
            s.correct,
            w["correct"]
        );
    };
    check_score("base", &r.base, &g["base"]);
    check_score("intervened", &r.intervened, &g["intervened"]);
    match (&r.control, g.get("control")) {
        (Some(c), Some(w)) => {
            assert_eq!(
                r.control_heads,
                heads(&g["control_heads"]),
                "{what}: control heads"
            );
            check_score("control", c, w);
        }
        (None, None) => {}
        _ => panic!("{what}: control run or not, unlike HF"),
    }
}

/// HF's `logit(asked) − max logit(other)` of one scored item.
fn hf_margin(it: &Value, answer: usize) -> f64 {
    let logits: Vec<f64> = it["logits"].as_array().unwrap().iter().map(f).collect();
    let other = (0..logits.len())
        .filter(|&j| j != answer)
        .map(|j| logits[j])
        .fold(f64::NEG_INFINITY, f64::max);
    logits[answer] - other
}

/// Per item, HF's margin and ours within 1e-3.
fn check_margins(what: &str, s: &Score, w: &Value, tasks: &ReuseTasks) {
    for (i, (it, c)) in w["items"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&tasks.colored)
        .enumerate()
    {
        let hf = hf_margin(it, c.answer);
        assert!(
            (s.margins[i] - hf).abs() < 1e-3,
            "{what}: item {i}: margin {} vs HF {hf}",
            s.margins[i]
        );
    }
}

#[test]
fn smollm2_matches_hugging_face_when_fetched() {
    let Some(path) = smollm2() else { return };
    let g = golden("reuse");
    let g = &g["guided"];
    let spec = ReuseSpec::smollm2();
    // The golden ran the guided experiment's spec.
    assert_eq!(spec_of(g, Tasks::Bundled), spec, "golden spec");
    let m = load_path(&path, &ComputeDevice::cpu().device).unwrap();
    let tk = m.tokenizer.as_ref().unwrap();
    let r = pollster::block_on(run(&spec, &m.model, tk, &mut no_progress)).unwrap();
    let tasks = spec.tasks.load().unwrap();
    check_run("cpu", &r, g, &tasks);
    check_margins("cpu base", &r.base, &g["base"], &tasks);
    check_margins("cpu intervened", &r.intervened, &g["intervened"], &tasks);
    // The guided heads are IOI's four heads that attend most from the end to the repeated name.
    let mut top: Vec<[usize; 2]> = r.s2_ranked[..4].iter().map(|e| [e.layer, e.head]).collect();
    top.sort_unstable();
    assert_eq!(
        top, spec.heads,
        "the guided heads are IOI's top S2-attention heads"
    );
}

#[test]
fn smollm2_trimmed_on_wgpu_matches_hugging_face_when_fetched() {
    let Some(path) = smollm2() else { return };
    let Some(dev) = wgpu_device() else { return };
    let g = golden("reuse");
    let g = &g["trimmed"];
    let tasks: ReuseTasks = serde_json::from_value(g["given"].clone()).unwrap();
    let spec = spec_of(g, Tasks::Given(tasks.clone()));
    let m = load_path(&path, &dev.device).unwrap();
    let tk = m.tokenizer.as_ref().unwrap();
    let r = pollster::block_on(run(&spec, &m.model, tk, &mut no_progress)).unwrap();
    check_run("wgpu", &r, g, &tasks);
    check_margins("wgpu intervened", &r.intervened, &g["intervened"], &tasks);
}

#[test]
fn bad_specs_are_messages() {
    let Some(path) = smollm2() else { return };
    let m = load_path(&path, &ComputeDevice::cpu().device).unwrap();
    let tk = m.tokenizer.as_ref().unwrap();
    let err = |spec: ReuseSpec| check(&spec, &m.model, tk).unwrap_err().to_string();
    let base = ReuseSpec::smollm2();
    let e = err(ReuseSpec {
        heads: vec![[30, 0]],
        ..base.clone()
    });
    assert!(
        e.contains("there is no head 30.0: this model has 30 layers of 9 heads"),
        "{e}"
    );
    let e = err(ReuseSpec {
        heads: vec![],
        ..base.clone()
    });
    assert!(e.contains("at least one head"), "{e}");
    let e = err(ReuseSpec {
        pairs: 100,
        ..base.clone()
    });
    assert!(
        e.contains("100 pairs asked for, but there are 16 IOI pairs"),
        "{e}"
    );
    let e = err(ReuseSpec {
        top_k: 0,
        ..base.clone()
    });
    assert!(
        e.contains("top k must be between 1 and the model's 270 heads"),
        "{e}"
    );
    let mut tasks = base.tasks.load().unwrap();
    tasks.colored[0].options[0] = " blue-green".into();
    let e = err(ReuseSpec {
        tasks: Tasks::Given(tasks.clone()),
        ..base.clone()
    });
    assert!(e.contains("a colour") && e.contains("blue-green"), "{e}");
    let mut tasks = base.tasks.load().unwrap();
    tasks.colored[1].options[1] = " teal".into();
    let e = err(ReuseSpec {
        tasks: Tasks::Given(tasks),
        ..base.clone()
    });
    assert!(
        e.contains("does not appear in") || e.contains("teal"),
        "{e}"
    );
    let mut tasks = base.tasks.load().unwrap();
    tasks.colored[2].options[1] = tasks.colored[2].options[0].clone();
    let e = err(ReuseSpec {
        tasks: Tasks::Given(tasks),
        ..base.clone()
    });
    assert!(e.contains("names a colour twice"), "{e}");
    let mut tasks = base.tasks.load().unwrap();
    tasks.ioi[3].wrong = " Paris".into();
    let e = err(ReuseSpec {
        tasks: Tasks::Given(tasks),
        ..base.clone()
    });
    assert!(e.contains("does not appear in its clean prompt"), "{e}");
    let mut tasks = base.tasks.load().unwrap();
    tasks.ioi[0].corrupt = "When Mary went".into();
    let e = err(ReuseSpec {
        tasks: Tasks::Given(tasks),
        ..base
    });
    assert!(e.contains("a pair must have as many"), "{e}");
}
