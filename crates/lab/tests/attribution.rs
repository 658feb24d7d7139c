//! The numbers the attribution guide quotes, from the references alone: PyTorch autograd's
//! estimates (make_attribution_goldens.py) and Hugging Face's sweeps (make_patching_goldens.py) of
//! SmolLM2's IOI pair, compared the way the page and `interplay run` compare them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use interplay_lab::attribution::compare;
use interplay_models::patching::PatchGrid;
use interplay_testkit::golden;
use serde_json::Value;

/// A golden's raw patched metrics of `target` as a grid, normalised as the sweep normalises.
fn grid(g: &Value, target: &str) -> PatchGrid {
    let (clean, corrupt) = (
        g["clean_metric"].as_f64().unwrap() as f32,
        g["corrupt_metric"].as_f64().unwrap() as f32,
    );
    let patched: Vec<Vec<f32>> = g[target]
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
    let norm = patched
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| (v - corrupt) / (clean - corrupt))
                .collect()
        })
        .collect();
    PatchGrid {
        clean_metric: clean,
        corrupt_metric: corrupt,
        grid: norm,
        patched,
    }
}

#[test]
fn the_attribution_guides_numbers_are_the_references() {
    let (at, act) = (golden("attribution"), golden("patching"));
    let (at, act) = (&at["models"]["smollm2"], &act["models"]["smollm2"]);
    if at.is_null() || act.is_null() {
        // Both goldens hold SmolLM2 where setup fetched it when they were made (they do here).
        panic!("the attribution and patching goldens have no SmolLM2 entry");
    }
    // (target, correlation to two digits, top-10 overlap) as the guide states them.
    for (target, r, overlap) in [
        ("head_out", 0.98, 10),
        ("attn_out", 0.98, 9),
        ("resid_pre", 0.86, 2),
    ] {
        let o = compare(grid(at, target), grid(act, target));
        let c = o.correlation.unwrap();
        assert!((c - r).abs() < 0.005, "{target}: correlation {c}");
        assert_eq!((o.top_overlap, o.top), (Some(overlap), 10), "{target}");
    }
    // resid_pre at the repeated name (position 9) in layer 16 restores the whole difference, 1.01
    // (as much as any cell: layer 15's is a hair lower), estimated at 0.44.
    let (est, sweep) = (grid(at, "resid_pre"), grid(act, "resid_pre"));
    let most = sweep
        .grid
        .iter()
        .flatten()
        .fold(0f32, |m, v| m.max(v.abs()));
    assert!(
        (sweep.grid[16][9] - 1.01).abs() < 0.005,
        "{}",
        sweep.grid[16][9]
    );
    assert!(most - sweep.grid[16][9] < 0.005, "largest cell {most}");
    assert!(
        (est.grid[16][9] - 0.44).abs() < 0.005,
        "{}",
        est.grid[16][9]
    );
}
