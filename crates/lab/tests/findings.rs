//! The Circuits lab's guided findings against Hugging Face: the finding the page shows (made from
//! Interplay's sweep) is the finding made from HF's grid (make_goldens.py --bundled,
//! make_patching_goldens.py), and the numbers and heads it quotes are HF's, picked out here
//! by the rule the guided text states (restated, not the lab's code).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use interplay_lab::PatchingSpec;
use interplay_lab::findings::{Finding, circuits};
use interplay_models::ComputeDevice;
use interplay_models::load::load_path;
use interplay_models::patching::{PatchGrid, PatchTarget, no_progress};
use interplay_testkit::{golden, ids, read_json, root};
use pollster::block_on;
use serde_json::Value;

/// A golden's normalised grid (`[row][column]`) as the lab's grid type.
fn hf_grid(g: &Value, key: &str) -> PatchGrid {
    let rows: Vec<Vec<f32>> = g[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    PatchGrid {
        clean_metric: g["clean_metric"].as_f64().unwrap() as f32,
        corrupt_metric: g["corrupt_metric"].as_f64().unwrap() as f32,
        patched: rows.clone(),
        grid: rows,
    }
}

/// make_patching_goldens.py stores the raw patched metric: normalised here as the lab does,
/// (v − corrupt) / (clean − corrupt), in f64.
fn normalised(g: &Value, keys: &[&str]) -> Value {
    let mut g = g.clone();
    let (c, k) = (
        g["clean_metric"].as_f64().unwrap(),
        g["corrupt_metric"].as_f64().unwrap(),
    );
    for key in keys {
        for row in g[*key].as_array_mut().unwrap() {
            for v in row.as_array_mut().unwrap() {
                *v = ((v.as_f64().unwrap() - k) / (c - k)).into();
            }
        }
    }
    g
}

fn at(g: &Value, key: &str, r: usize, c: usize) -> f64 {
    g[key][r][c].as_f64().unwrap()
}

/// Runs `spec` on `model` (the CPU), then checks the finding of guided experiment `id` against
/// the one made from HF's grid `g[key]`; returns the finding's text.
fn same_finding(
    id: &str,
    spec: &PatchingSpec,
    model: &std::path::Path,
    g: &Value,
    key: &str,
) -> String {
    let m = load_path(model, &ComputeDevice::cpu().device).unwrap();
    let r = spec.resolve(m.tokenizer.as_ref()).unwrap();
    assert_eq!(r.clean, ids(&g["clean"]), "{id}: the golden's clean prompt");
    assert_eq!(
        r.corrupt,
        ids(&g["corrupt"]),
        "{id}: the golden's corrupted prompt"
    );
    assert_eq!(r.answer as u64, g["answer"].as_u64().unwrap());
    assert_eq!(r.wrong as u64, g["wrong"].as_u64().unwrap());
    let ours = block_on(spec.run(&m, &mut no_progress)).unwrap();
    let cols: Vec<String> = (0..r.clean.len()).map(|i| i.to_string()).collect();
    let hf = hf_grid(g, key);
    assert_eq!(ours.grid.len(), hf.grid.len(), "{id}: rows");
    let a = circuits(id, spec, &ours, &cols).expect("a finding");
    let b = circuits(id, spec, &hf, &cols).expect("a finding from HF's grid");
    eprintln!("{id}: {}", a.shows);
    same_finding_text(&a, &b, id);
    a.shows
}

/// The resid_pre finding: the second name is where layer 0 peaks, the last position takes over
/// for good from some layer; the quoted values at two decimals.
fn check_positions(id: &str, shows: &str, g: &Value) {
    let rows = g["resid_pre"].as_array().unwrap().len();
    let cols = g["resid_pre"][0].as_array().unwrap().len();
    let last = cols - 1;
    let s2 = (0..cols)
        .max_by(|&a, &b| at(g, "resid_pre", 0, a).total_cmp(&at(g, "resid_pre", 0, b)))
        .unwrap();
    let moved = (0..rows)
        .find(|&l| (l..rows).all(|k| at(g, "resid_pre", k, last) > at(g, "resid_pre", k, s2)))
        .unwrap();
    assert!(moved > 0 && s2 != last, "{id}: HF's grid shows no move");
    let want = format!(
        "Patching restores most at the second name (position {s2}) in layers 0–{} ({:.2} at \
         layer 0), and at the last position from layer {moved} on ({:.2} at the last row).",
        moved - 1,
        at(g, "resid_pre", 0, s2),
        at(g, "resid_pre", rows - 1, last)
    );
    same_text_to_the_last_digit(shows, &want);
}

#[test]
fn ioi_3l_position_finding_is_hugging_faces() {
    let g = read_json(&root().join("tests/fixtures/bundled/ioi-3l.json"));
    let shows = same_finding(
        "ioi-bundled",
        &PatchingSpec::ioi_bundled(),
        &root().join("public/bundled/ioi-3l"),
        &g,
        "resid_pre",
    );
    check_positions("ioi-bundled", &shows, &g);
}

#[test]
fn smollm2_ioi_findings_are_hugging_faces() {
    let Some(path) = interplay_testkit::smollm2() else {
        return;
    };
    let g = &normalised(
        &golden("patching")["models"]["smollm2"],
        &["resid_pre", "head_out"],
    );
    let spec = PatchingSpec::ioi_smollm2();
    let shows = same_finding("ioi", &spec, &path, g, "resid_pre");
    check_positions("ioi", &shows, g);

    // The head finding: HF's three strongest heads, their values and sum, how many pass 0.1.
    let heads = PatchingSpec {
        target: PatchTarget::HeadOut,
        ..spec
    };
    let shows = same_finding("ioi-heads", &heads, &path, g, "head_out");
    let grid = g["head_out"].as_array().unwrap();
    let mut all: Vec<(usize, usize, f64)> = grid
        .iter()
        .enumerate()
        .flat_map(|(l, row)| {
            row.as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(move |(h, v)| (l, h, v.as_f64().unwrap()))
        })
        .collect();
    all.sort_by(|a, b| b.2.total_cmp(&a.2));
    let top = &all[..3];
    let named = top
        .iter()
        .map(|(l, h, v)| format!("L{l}H{h} ({v:.2})"))
        .collect::<Vec<_>>()
        .join(", ");
    let sum: f64 = top.iter().map(|t| t.2).sum();
    let strong = all.iter().filter(|t| t.2 > 0.1).count();
    let want = format!(
        "The three heads that restore most: {named} — together {sum:.2} of the difference; \
         {strong} of {} heads restore more than 0.1 alone; the strongest is in layer {} of {}",
        all.len(),
        top[0].0,
        grid.len()
    );
    // HF's second head (0.2652) and the sum (1.0645) sit near rounding boundaries: to the last
    // digit, as the other findings.
    let n = want.split_whitespace().count();
    let head: Vec<&str> = shows.split_whitespace().take(n).collect();
    same_text_to_the_last_digit(&head.join(" "), &want);
}

/// The Dynamics lab's guided findings made from the references' numbers (ReservoirPy, NumPy)
/// are the ones made from Interplay's runs (the CPU); the Izhikevich rhythm against numpy.fft.
#[test]
fn dynamics_findings_are_the_references() {
    use interplay_dynamics::spiking::SpikingResult;
    use interplay_dynamics::tasks::{EiSweepRow, MemoryCapacityResult, PredictionResult};
    use interplay_dynamics::whatwhen::WhatWhenResult;
    use interplay_dynamics::{DynamicsSpec, MemoryCapacitySpec};
    use interplay_lab::findings::{DynamicsRun, dynamics, strongest_rhythm_hz};
    use interplay_lab::guided::{self, Guided};
    let g = read_json(&root().join("tests/fixtures/dynamics/golden.json"));
    let cpu = ComputeDevice::cpu().device;
    let f64s = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };

    // Each golden's spec is the page's guided experiment's.
    let guided = |id: &str, spec: &Value| {
        let want = Guided::spec_of(guided::DYNAMICS, id).expect("a guided experiment");
        let got: DynamicsSpec = serde_json::from_value(spec.clone()).unwrap();
        assert_eq!(got, want, "{id}: the golden's spec is not the guided one");
        got
    };

    // Mackey-Glass demo: NRMSE and R² as ReservoirPy's.
    let mg = &g["guided"]["mackey_glass"];
    let DynamicsSpec::Prediction(spec) = guided("mackey-glass", &mg["spec"]) else {
        panic!("not a prediction")
    };
    let ours = block_on(spec.run(&cpu, &mut no_progress)).unwrap();
    let theirs = PredictionResult {
        nrmse: mg["nrmse"].as_f64().unwrap(),
        r2: mg["r2"].as_f64().unwrap(),
        ..ours.clone()
    };
    let a = dynamics("mackey-glass", DynamicsRun::Prediction(&ours)).unwrap();
    let b = dynamics("mackey-glass", DynamicsRun::Prediction(&theirs)).unwrap();
    eprintln!("mackey-glass: {}", a.shows);
    same_finding_text(&a, &b, "dynamics");

    // Memory capacity (the default spec, the guided one): ReservoirPy's MC and r² per delay.
    let mc = &g["memory_capacity"];
    let DynamicsSpec::MemoryCapacity(spec) = guided("memory", &mc["spec"]) else {
        panic!("not memory capacity")
    };
    assert_eq!(spec, MemoryCapacitySpec::default());
    let ours = block_on(spec.run(&cpu, &mut no_progress)).unwrap();
    let theirs = MemoryCapacityResult {
        mc: mc["mc"].as_f64().unwrap(),
        mc_k: f64s(&mc["mc_k"]),
        balance: vec![],
    };
    let units = MemoryCapacitySpec::default().reservoir.units;
    let a = dynamics("memory", DynamicsRun::Memory(&ours, units)).unwrap();
    let b = dynamics("memory", DynamicsRun::Memory(&theirs, units)).unwrap();
    eprintln!("memory: {}", a.shows);
    same_finding_text(&a, &b, "dynamics");

    // Both E/I sweeps: the homogeneous finding compares with the heterogeneous sweep.
    let rows = |key: &str| -> Vec<EiSweepRow> {
        serde_json::from_value(g["guided"][key]["rows"].clone()).unwrap()
    };
    let run = |key: &str| -> Vec<EiSweepRow> {
        let id = if key == "ei_balance" {
            "ei-balance"
        } else {
            key
        };
        let DynamicsSpec::EiSweep(spec) = guided(id, &g["guided"][key]["spec"]) else {
            panic!("not a sweep")
        };
        block_on(spec.run(&cpu, &mut |_| {}, &mut no_progress)).unwrap()
    };
    let (hetero, homo) = (run("ei_balance"), run("homogeneous"));
    let (hetero_np, homo_np) = (rows("ei_balance"), rows("homogeneous"));
    for (id, ours, theirs) in [
        (
            "ei-balance",
            DynamicsRun::Sweep(&hetero, None),
            DynamicsRun::Sweep(&hetero_np, None),
        ),
        (
            "homogeneous",
            DynamicsRun::Sweep(&homo, Some(&hetero)),
            DynamicsRun::Sweep(&homo_np, Some(&hetero_np)),
        ),
    ] {
        let (a, b) = (dynamics(id, ours).unwrap(), dynamics(id, theirs).unwrap());
        eprintln!("{id}: {}", a.shows);
        same_finding_text(&a, &b, id);
    }

    // The Izhikevich finding's rhythm: on NumPy's per-ms counts, the frequency numpy.fft puts
    // the most power at (whole-Hz bins over one second); its rates are checked against NumPy
    // in dynamics/spiking_golden.
    let sp = read_json(&root().join("tests/fixtures/dynamics/spiking.json"));
    let pop: Vec<u32> = sp["izhikevich"]["pop"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[0].as_u64().unwrap() as u32)
        .collect();
    let want = g["guided"]["izhikevich_rhythm_hz"].as_f64().unwrap();
    assert_eq!(strongest_rhythm_hz(&pop), Some(want));
    let numpy = SpikingResult {
        rate_exc_hz: sp["izhikevich"]["rate_exc_hz"].as_f64().unwrap(),
        rate_inh_hz: sp["izhikevich"]["rate_inh_hz"].as_f64().unwrap(),
        pop_exc: pop,
        ..SpikingResult::default()
    };
    // The page's guided network is the golden's (it also traces two cells, which only records).
    let mut izh = sp["izhikevich"]["spec"].clone();
    izh["trace_neurons"] = serde_json::json!([0, 850]);
    let DynamicsSpec::Spiking(spec) = guided("izhikevich", &izh) else {
        panic!("not spiking")
    };
    let f = dynamics("izhikevich", DynamicsRun::Spiking(&numpy)).unwrap();
    eprintln!("izhikevich (NumPy's run): {}", f.shows);
    assert!(
        f.shows
            .contains(&format!("strongest rhythm is at {want:.0} Hz"))
    );
    // Interplay's run of it: the same rhythm, and rates within 2 % of NumPy's (spike for spike
    // for 200 ms, then the chaotic network parts; dynamics/spiking_golden).
    let ours = block_on(spec.run(&cpu, &mut |_| {}, &mut no_progress)).unwrap();
    let g = dynamics("izhikevich", DynamicsRun::Spiking(&ours)).unwrap();
    eprintln!("izhikevich (Interplay's run): {}", g.shows);
    assert_eq!(strongest_rhythm_hz(&ours.pop_exc), Some(want));
    assert_eq!((&g.claim, g.agrees), (&f.claim, f.agrees));
    for (a, b) in [
        (ours.rate_exc_hz, numpy.rate_exc_hz),
        (ours.rate_inh_hz, numpy.rate_inh_hz),
    ] {
        assert!((a - b).abs() <= 0.02 * b, "rate {a} Hz vs NumPy {b}");
    }

    // The sparse 10 000-neuron guided run, whole: NumPy's restatement of it (1 s).
    let sparse = &sp["sparse_izhikevich_1s"];
    let DynamicsSpec::Spiking(spec) = guided("sparse-10k", &sparse["spec"]) else {
        panic!("not spiking")
    };
    let ours = block_on(spec.run(&cpu, &mut |_| {}, &mut no_progress)).unwrap();
    let g = dynamics("sparse-10k", DynamicsRun::Spiking(&ours)).unwrap();
    eprintln!("sparse-10k (Interplay's run): {}", g.shows);
    let numpy = SpikingResult {
        rate_exc_hz: sparse["rate_exc_hz"].as_f64().unwrap(),
        rate_inh_hz: sparse["rate_inh_hz"].as_f64().unwrap(),
        pop_exc: sparse["pop"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c[0].as_u64().unwrap() as u32)
            .collect(),
        ..SpikingResult::default()
    };
    let f = dynamics("sparse-10k", DynamicsRun::Spiking(&numpy)).unwrap();
    eprintln!("sparse-10k (NumPy's run): {}", f.shows);
    assert_eq!((&g.claim, g.agrees), (&f.claim, f.agrees));
    let want = sparse["rhythm_hz"].as_f64().unwrap();
    assert_eq!(strongest_rhythm_hz(&numpy.pop_exc), Some(want));
    assert_eq!(strongest_rhythm_hz(&ours.pop_exc), Some(want));
    for (a, b) in [
        (ours.rate_exc_hz, numpy.rate_exc_hz),
        (ours.rate_inh_hz, numpy.rate_inh_hz),
    ] {
        assert!((a - b).abs() <= 0.02 * b, "sparse rate {a} Hz vs NumPy {b}");
    }

    // What/when, both rules: the learned magnitudes of the NumPy restatement
    // (make_whatwhen_goldens.py) give the page's finding.
    let ww = read_json(&root().join("tests/fixtures/dynamics/whatwhen.json"));
    for (id, key) in [
        ("what-when", "three_factor_default"),
        ("rls", "rls_default"),
    ] {
        let c = &ww[key];
        let mut spec = c["spec"].clone();
        spec["experiment"] = "what-when".into();
        let DynamicsSpec::WhatWhen(spec) = guided(id, &spec) else {
            panic!("not what/when")
        };
        let ours = block_on(spec.run(&cpu, &mut |_| {}, &mut no_progress)).unwrap();
        let theirs = WhatWhenResult {
            learned: serde_json::from_value(c["learned"].clone()).unwrap(),
            ..WhatWhenResult::default()
        };
        let a = dynamics(id, DynamicsRun::WhatWhen(&ours, &spec)).unwrap();
        let b = dynamics(id, DynamicsRun::WhatWhen(&theirs, &spec)).unwrap();
        eprintln!("{id}: {}", a.shows);
        // float32 RLS drifts from float64 by up to 5e-3 (dynamics/whatwhen_golden).
        same_finding_text(&a, &b, id);
    }
}

/// `a` and `b` are the same text, but for numbers that may differ by one unit in their last
/// printed digit (a reference and a float32 run on either side of a rounding boundary).
fn same_text_to_the_last_digit(a: &str, b: &str) {
    let split = |t: &str| -> Vec<String> {
        t.split_whitespace()
            .map(|w| {
                w.trim_end_matches([',', ';', '.', ')', '%'])
                    .trim_start_matches('(')
                    .to_string()
            })
            .collect()
    };
    // One unit in the last digit of a printed number: "6.33e-4" → 1e-6, "0.27" → 0.01.
    let unit = |w: &str| {
        let (mantissa, exp) = w.split_once('e').unwrap_or((w, "0"));
        let decimals = mantissa.split_once('.').map_or(0, |(_, d)| d.len());
        10f64.powi(exp.parse::<i32>().unwrap() - decimals as i32)
    };
    let (x, y) = (split(a), split(b));
    assert_eq!(x.len(), y.len(), "{a}\n{b}");
    for (p, q) in x.iter().zip(&y) {
        match (p.parse::<f64>(), q.parse::<f64>()) {
            (Ok(u), Ok(v)) => assert!(
                (u - v).abs() <= unit(p).max(unit(q)) * 1.000001,
                "{p} vs {q}: {a}\n{b}"
            ),
            _ => assert_eq!(p, q, "{a}\n{b}"),
        }
    }
}

/// The same finding: claim and verdict exactly, the text to the last digit.
fn same_finding_text(a: &Finding, b: &Finding, what: &str) {
    assert_eq!((&a.claim, a.agrees), (&b.claim, b.agrees), "{what}");
    same_text_to_the_last_digit(&a.shows, &b.shows);
}
