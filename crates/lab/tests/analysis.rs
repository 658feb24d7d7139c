//! The Circuits lab's analyses against Hugging Face forward hooks
//! (tests/fixtures/make_analysis_goldens.py): the logit lens at every layer, direct logit
//! attribution of every head and MLP, and the head detector scores, on the tiny fixtures, the
//! bundled models and SmolLM2's IOI prompt, on the CPU and wgpu; both from the lab's functions
//! and as the engine (the page's and the CLI's way in) answers the same questions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use interplay_lab::circuits::{
    Attribution, HeadScores, LogitLens, direct_logit_attribution, head_scores, logit_lens,
};
use interplay_lab::inspect::{Inspect, Inspection, LENS_TOP};
use interplay_lab::{Prompt, TokenRef};
use interplay_models::load::load_path;
use interplay_testkit::{devices, fixtures, golden, ids, root};
use pollster::block_on;
use serde_json::Value;

/// `|got − want| ≤ 1e-4 · |want| + floor` for each value.
fn close(what: &str, got: f32, want: &Value, floor: f64) {
    let want = want.as_f64().unwrap();
    let e = (got as f64 - want).abs();
    assert!(
        e <= 1e-4 * want.abs() + floor,
        "{what}: {got} vs Hugging Face {want} (off by {e:e})"
    );
}

/// A `[layer][head]` grid, lengths first.
fn grid(what: &str, got: &[Vec<f32>], want: &Value, floor: f64) {
    let want = want.as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: layers");
    for (l, (g, w)) in got.iter().zip(want).enumerate() {
        let w = w.as_array().unwrap();
        assert_eq!(g.len(), w.len(), "{what}: heads of layer {l}");
        for (h, (g, w)) in g.iter().zip(w).enumerate() {
            close(&format!("{what} {l}.{h}"), *g, w, floor);
        }
    }
}

fn through_json(q: Inspect) -> Inspect {
    serde_json::from_str(&serde_json::to_string(&q).unwrap()).unwrap()
}

/// Logit lens: every layer's top tokens (ids exact, probabilities; the first `k` of the
/// golden's) and both tracked tokens (probability, rank).
fn check_lens(at: &str, lens: &LogitLens, case: &Value, k: usize) {
    let rows = case["lens"].as_array().unwrap();
    assert_eq!(lens.top.len(), rows.len(), "{at}: lens rows");
    assert_eq!(lens.tracked.len(), rows.len(), "{at}: lens rows");
    for (l, row) in rows.iter().enumerate() {
        // log p = logit − logsumexp: logits within 1e-4·max(1, |logit|) move it by at most
        // 1e-4·(max(1, |logit_t|) + Σ p_i max(1, |logit_i|)), both from the reference.
        let lse = row["lse_scale"].as_f64().unwrap();
        let prob = |what: String, got: f32, want: &Value, abs_logit: &Value| {
            let want = want.as_f64().unwrap();
            let tol = 1e-4 * (abs_logit.as_f64().unwrap().max(1.0) + lse);
            let e = (got as f64 - want).abs();
            assert!(
                e <= tol * want + 1e-7,
                "{what}: {got} vs Hugging Face {want} (off by {e:e})"
            );
        };
        let top = row["top"].as_array().unwrap();
        assert_eq!(
            lens.top[l].len(),
            k.min(top.len()),
            "{at}: lens row {l} length"
        );
        for (i, ((id, p), want)) in lens.top[l].iter().zip(top).enumerate() {
            assert_eq!(
                *id as u64,
                want[0].as_u64().unwrap(),
                "{at}: lens row {l}, top {i}"
            );
            prob(
                format!("{at}: lens row {l} top {i} p"),
                *p,
                &want[1],
                &want[2],
            );
        }
        let tracked = row["tracked"].as_array().unwrap();
        assert_eq!(lens.tracked[l].len(), tracked.len());
        for (i, ((p, rank), want)) in lens.tracked[l].iter().zip(tracked).enumerate() {
            prob(
                format!("{at}: lens row {l} tracked {i} p"),
                *p,
                &want[0],
                &want[2],
            );
            assert_eq!(
                *rank as u64,
                want[1].as_u64().unwrap(),
                "{at}: lens row {l}, rank of tracked {i}"
            );
        }
    }
}

/// Direct logit attribution: every component on its own.
fn check_attribution(at: &str, a: &Attribution, case: &Value) {
    let want = &case["attribution"];
    grid(&format!("{at}: DLA head"), &a.heads, &want["heads"], 2e-5);
    let mlps = want["mlps"].as_array().unwrap();
    assert_eq!(a.mlps.len(), mlps.len(), "{at}: MLPs");
    for (l, (g, w)) in a.mlps.iter().zip(mlps).enumerate() {
        close(&format!("{at}: DLA mlp {l}"), *g, w, 2e-5);
    }
    close(&format!("{at}: DLA embed"), a.embed, &want["embed"], 2e-5);
    close(
        &format!("{at}: DLA biases"),
        a.biases,
        &want["biases"],
        2e-5,
    );
    close(&format!("{at}: DLA total"), a.total, &want["total"], 1e-5);
}

/// Head detector scores on the seeded repeated sequence.
fn check_head_scores(at: &str, s: &HeadScores, case: &Value) {
    let want = &case["head_scores"];
    assert_eq!(s.ids, ids(&want["ids"]), "{at}: the repeated sequence");
    for (what, got) in [
        ("induction", &s.induction),
        ("previous", &s.previous),
        ("duplicate", &s.duplicate),
    ] {
        grid(&format!("{at}: {what} score"), got, &want[what], 1e-5);
    }
    close(
        &format!("{at}: loss 1st half"),
        s.loss_first,
        &want["loss_first"],
        1e-5,
    );
    close(
        &format!("{at}: loss 2nd half"),
        s.loss_second,
        &want["loss_second"],
        1e-5,
    );
}

#[test]
fn lens_attribution_and_head_scores_match_hugging_face_hooks() {
    let g = golden("analysis");
    let smollm2 = interplay_testkit::smollm2();
    for dev in devices() {
        for case in g["cases"].as_array().unwrap() {
            let name = case["model"].as_str().unwrap();
            let path = match name {
                "smollm2" => match &smollm2 {
                    Some(p) => p.clone(),
                    None => continue,
                },
                "ioi-3l" | "induction-2l" => root().join("public/bundled").join(name),
                _ => fixtures().join(name),
            };
            let loaded = load_path(&path, &dev.device).unwrap();
            let m = &loaded.model;
            let at = format!("{name} on {}", dev.backend.label());
            let prompt = ids(&case["ids"]);
            let (answer, wrong) = (
                case["answer"].as_u64().unwrap() as u32,
                case["wrong"].as_u64().unwrap() as u32,
            );

            // The lab functions, and the same questions as the engine answers them (the page's
            // and the CLI's way in, through JSON).
            let k = case["k"].as_u64().unwrap() as usize;
            let (half, seed) = (
                case["half"].as_u64().unwrap() as usize,
                case["seed"].as_u64().unwrap(),
            );
            let lens = block_on(logit_lens(m, &prompt, &[answer, wrong], k)).unwrap();
            check_lens(&at, &lens, case, k);
            let a = block_on(direct_logit_attribution(m, &prompt, answer, wrong)).unwrap();
            check_attribution(&at, &a, case);
            let s = block_on(head_scores(m, half, seed)).unwrap();
            check_head_scores(&at, &s, case);

            let at = format!("{at}, engine");
            let q = through_json(Inspect::Analyse {
                prompt: Prompt::Ids(prompt.clone()),
                answer: Some(TokenRef::Id(answer)),
                wrong: Some(TokenRef::Id(wrong)),
            });
            let Inspection::Analysis(an) = block_on(q.run(&loaded)).unwrap() else {
                panic!("{at}: an analysis")
            };
            check_lens(&at, &an.lens, case, LENS_TOP);
            check_attribution(&at, an.dla.as_ref().expect("both tokens given"), case);
            let q = through_json(Inspect::HeadScores { half, seed });
            let Inspection::HeadScores(s) = block_on(q.run(&loaded)).unwrap() else {
                panic!("{at}: head scores")
            };
            check_head_scores(&at, &s, case);
        }
    }
}
