//! Relation-specific neurons (`interplay_lab::neurons`) against Hugging Face + NumPy
//! (`tests/fixtures/make_relation_neurons_goldens.py`) on SmolLM2: the tokens, the firing counts,
//! the ranking, the logits with neurons deactivated and the whole run's accuracies; on the CPU,
//! and trimmed on wgpu.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use interplay_lab::neurons::{
    Facts, Item, NeuronsSpec, argmax, firing_counts, last_logits, prepare, rank, run,
};
use interplay_models::ComputeDevice;
use interplay_models::load::{LoadedModel, load_path};
use interplay_models::patching::no_progress;
use interplay_testkit::{fixtures, golden, ids, max_rel_err, smollm2, wgpu_device};
use serde_json::Value;

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

/// HF's firing counts, per relation (sorted), per neuron.
fn hf_counts(relations: usize) -> Vec<Vec<u32>> {
    let bytes = std::fs::read(fixtures().join("neurons/smollm2-counts.u16")).unwrap();
    let all: Vec<u32> = bytes
        .chunks_exact(2)
        .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])))
        .collect();
    let n = all.len() / relations;
    all.chunks_exact(n).map(<[u32]>::to_vec).collect()
}

/// The golden's neurons as `(layer, index)`.
fn neurons(top: &Value, k: usize) -> Vec<(usize, usize)> {
    top.as_array().unwrap()[..k]
        .iter()
        .map(|n| {
            (
                n[0].as_u64().unwrap() as usize,
                n[1].as_u64().unwrap() as usize,
            )
        })
        .collect()
}

/// The spec a golden case ran.
fn spec_of(g: &Value, facts: Facts) -> NeuronsSpec {
    let s = &g["spec"];
    NeuronsSpec {
        model: "smollm2".into(),
        facts,
        relation: s["relation"].as_str().unwrap().into(),
        ks: usizes(&s["ks"]),
        random: s["random"].as_bool().unwrap(),
        seed: s["seed"].as_u64().unwrap(),
    }
}

/// Prompts and answers tokenized as HF's tokenizer does.
fn check_items(what: &str, items: &[Item], g: &Value) {
    let want: Vec<Vec<u32>> = g["ids"].as_array().unwrap().iter().map(ids).collect();
    let got: Vec<Vec<u32>> = items.iter().map(|i| i.ids.clone()).collect();
    assert_eq!(got, want, "{what}: prompt ids");
    let answers: Vec<u32> = items.iter().map(|i| i.answer).collect();
    assert_eq!(answers, ids(&g["answers"]), "{what}: answer ids");
}

/// With HF's top-k neurons off (k of the golden's `ranked` points), each fact's answer logit
/// and highest logit within 1e-4 relative of HF's, and the same argmax.
async fn check_logits(what: &str, m: &LoadedModel, items: &[Item], g: &Value, point: usize) {
    let p = &g["ranked"][point];
    let k = p["k"].as_u64().unwrap() as usize;
    let off = neurons(&g["top"], k);
    let got = last_logits(&m.model, items, &off).await.unwrap();
    for (i, (l, want)) in got.iter().zip(p["facts"].as_array().unwrap()).enumerate() {
        let best = argmax(l);
        assert_eq!(
            best as u64,
            want[0].as_u64().unwrap(),
            "{what}, k = {k}, fact {i}: argmax"
        );
        let ours = [l[items[i].answer as usize], l[best]];
        let hf = [want[1].as_f64().unwrap(), want[2].as_f64().unwrap()];
        let err = max_rel_err(&ours, &hf);
        assert!(
            err < 1e-4,
            "{what}, k = {k}, fact {i}: logits off HF by {err:e}"
        );
    }
}

/// A neuron's `(layer, index)` score from HF's counts.
type HfScore<'a> = dyn Fn((usize, usize)) -> f64 + 'a;

/// The whole run's accuracies equal HF's, and its top neurons HF's in order — or, where HF's
/// counts are given (`hf_score`: a neuron's score from them, and how far a count differing by a
/// token moves it), a neuron in another place only where HF scores the two within that.
fn check_run(
    what: &str,
    r: &interplay_lab::neurons::NeuronsResult,
    g: &Value,
    hf_score: Option<(&HfScore<'_>, f64)>,
) {
    let relations: Vec<String> = serde_json::from_value(g["relations"].clone()).unwrap();
    assert_eq!(r.relations, relations, "{what}: relations");
    assert_eq!(r.facts, usizes(&g["facts"]), "{what}: facts per relation");
    assert_eq!(
        r.tokens,
        usizes(&g["tokens"]),
        "{what}: tokens per relation"
    );
    let top: Vec<(usize, usize)> = r.top.iter().map(|n| (n.layer, n.index)).collect();
    let want = neurons(&g["top"], r.top.len());
    match hf_score {
        None => assert_eq!(top, want, "{what}: top neurons"),
        Some((score, slack)) => {
            for (i, (&a, &b)) in top.iter().zip(&want).enumerate() {
                let gap = (score(a) - score(b)).abs();
                assert!(
                    a == b || gap <= slack,
                    "{what}: rank {i}: {a:?} where HF has {b:?}, {gap} apart in HF's scores"
                );
            }
        }
    }
    for (kind, points) in [("ranked", &r.ranked), ("random", &r.random)] {
        let want = g[kind].as_array().map_or(&[][..], Vec::as_slice);
        assert_eq!(points.len(), want.len(), "{what}: {kind} points");
        for (p, w) in points.iter().zip(want) {
            assert_eq!(p.k, w["k"].as_u64().unwrap() as usize, "{what}: {kind} k");
            assert_eq!(
                p.correct,
                usizes(&w["correct"]),
                "{what}: {kind}, k = {}",
                p.k
            );
        }
    }
}

#[test]
fn smollm2_matches_hugging_face_when_fetched() {
    let Some(path) = smollm2() else { return };
    let g = golden("neurons");
    let g = &g["guided"];
    let spec = NeuronsSpec::capital_smollm2();
    // The golden ran the guided experiment's spec.
    assert_eq!(spec_of(g, Facts::Bundled), spec, "golden spec");
    let m = load_path(&path, &ComputeDevice::cpu().device).unwrap();
    let tk = m.tokenizer.as_ref().unwrap();
    let (relations, items) = prepare(&spec, &m.model, tk).unwrap();
    check_items("cpu", &items, g);
    pollster::block_on(async {
        let (counts, tokens) = firing_counts(&m.model, &items, relations.len())
            .await
            .unwrap();
        assert_eq!(tokens, usizes(&g["tokens"]), "tokens per relation");
        let hf = hf_counts(relations.len());
        // A gate pre-activation within rounding of 0 may fall on the other side of it in HF
        // (measured: 3 of the 138 240 counts, each by one token).
        let diffs: Vec<u32> = counts
            .iter()
            .flatten()
            .zip(hf.iter().flatten())
            .map(|(&a, &b)| a.abs_diff(b))
            .filter(|&d| d > 0)
            .collect();
        assert!(
            diffs.len() <= 20 && diffs.iter().all(|&d| d == 1),
            "firing counts: {} differ from HF's, by up to {:?}",
            diffs.len(),
            diffs.iter().max()
        );
        // The ranking restated in NumPy, from HF's counts.
        let d_mlp = m.model.config.d_mlp;
        let target = relations.iter().position(|r| *r == spec.relation).unwrap();
        let ranked = rank(&hf, &tokens, target, d_mlp);
        for (i, (n, w)) in ranked.iter().zip(g["top"].as_array().unwrap()).enumerate() {
            assert_eq!(
                (n.layer, n.index),
                (
                    w[0].as_u64().unwrap() as usize,
                    w[1].as_u64().unwrap() as usize
                ),
                "rank {i}"
            );
            assert!(
                (n.score - w[2].as_f64().unwrap()).abs() < 1e-12,
                "rank {i}: score"
            );
            assert!(
                (n.frequency - w[3].as_f64().unwrap()).abs() < 1e-12,
                "rank {i}: frequency"
            );
        }
        for point in [0, 3, 5] {
            check_logits("cpu", &m, &items, g, point).await;
        }
        let r = run(&spec, &m.model, tk, &mut no_progress).await.unwrap();
        let min_tokens = *tokens.iter().min().unwrap() as f64;
        let score = |(l, i): (usize, usize)| {
            let n = l * d_mlp + i;
            let f = |r: usize| f64::from(hf[r][n]) / tokens[r] as f64;
            f(target)
                - (0..hf.len())
                    .filter(|&r| r != target)
                    .map(f)
                    .fold(0.0, f64::max)
        };
        check_run("cpu", &r, g, Some((&score, 2.0 / min_tokens)));
    });
}

#[test]
fn smollm2_trimmed_on_wgpu_matches_hugging_face_when_fetched() {
    let Some(path) = smollm2() else { return };
    let Some(dev) = wgpu_device() else { return };
    let g = golden("neurons");
    let g = &g["trimmed"];
    let facts = Facts::Given(serde_json::from_value(g["given"].clone()).unwrap());
    let spec = spec_of(g, facts);
    let m = load_path(&path, &dev.device).unwrap();
    let tk = m.tokenizer.as_ref().unwrap();
    let (_, items) = prepare(&spec, &m.model, tk).unwrap();
    check_items("wgpu", &items, g);
    pollster::block_on(async {
        check_logits("wgpu", &m, &items, g, 1).await;
        let r = run(&spec, &m.model, tk, &mut no_progress).await.unwrap();
        check_run("wgpu", &r, g, None);
    });
}

#[test]
fn bad_specs_are_messages() {
    let Some(path) = smollm2() else { return };
    let m = load_path(&path, &ComputeDevice::cpu().device).unwrap();
    let tk = m.tokenizer.as_ref().unwrap();
    let err = |spec: NeuronsSpec| prepare(&spec, &m.model, tk).unwrap_err().to_string();
    let base = NeuronsSpec::capital_smollm2();
    let e = err(NeuronsSpec {
        relation: "currency".into(),
        ..base.clone()
    });
    assert!(
        e.contains("no fact has the relation \"currency\"")
            && e.contains("capital, language, opposite"),
        "{e}"
    );
    let e = err(NeuronsSpec {
        ks: vec![10, 1_000_000],
        ..base.clone()
    });
    assert!(
        e.contains("k = 1000000 is more than the model's 46080"),
        "{e}"
    );
    let one = Facts::Given(vec![interplay_lab::neurons::Fact {
        relation: "capital".into(),
        prompt: "The capital of France is".into(),
        answer: " Paris".into(),
    }]);
    let e = err(NeuronsSpec { facts: one, ..base });
    assert!(e.contains("at least two relations"), "{e}");
    let fact = |prompt: &str, answer: &str| interplay_lab::neurons::Fact {
        relation: "capital".into(),
        prompt: prompt.into(),
        answer: answer.into(),
    };
    let with = |f: interplay_lab::neurons::Fact| {
        let mut facts = interplay_lab::neurons::bundled_facts().unwrap();
        facts.push(f);
        NeuronsSpec {
            facts: Facts::Given(facts),
            ..NeuronsSpec::capital_smollm2()
        }
    };
    let e = err(with(fact("The capital of France is", "")));
    assert!(
        e.contains("the answer to \"The capital of France is\" is empty"),
        "{e}"
    );
    let long = "The capital of France is, as everyone knows ".repeat(10);
    let e = err(with(fact(&long, " Paris")));
    assert!(e.contains("a fact's prompt may have at most 64"), "{e}");
    let e = err(NeuronsSpec {
        ks: vec![],
        ..NeuronsSpec::capital_smollm2()
    });
    assert!(e.contains("at least one k"), "{e}");
}

/// The ranking's rule on counts made up here: score = frequency on the target − the highest on
/// another relation; equal scores keep (layer, index) order.
#[test]
fn rank_scores_and_breaks_ties_by_position() {
    // Two relations of 10 tokens each, one layer of 4 neurons.
    let counts = vec![vec![10, 5, 10, 0], vec![0, 5, 0, 10]];
    let r = rank(&counts, &[10, 10], 0, 4);
    let order: Vec<usize> = r.iter().map(|n| n.index).collect();
    assert_eq!(order, [0, 2, 1, 3]);
    assert_eq!(r[0].score, 1.0);
    assert_eq!(r[2].score, 0.0);
    assert_eq!(r[3].score, -1.0);
    assert_eq!(r[3].frequency, 0.0);
}

/// The guided run's finding, made from HF's accuracies, quotes them and agrees with the paper.
#[test]
fn the_finding_made_from_hugging_faces_run() {
    use interplay_lab::neurons::{NeuronsResult, Point};
    let g = golden("neurons");
    let g = &g["guided"];
    let facts = usizes(&g["facts"]);
    let points = |kind: &str| -> Vec<Point> {
        g[kind]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let correct = usizes(&p["correct"]);
                let accuracy = correct
                    .iter()
                    .zip(&facts)
                    .map(|(&c, &n)| c as f64 / n as f64)
                    .collect();
                Point {
                    k: p["k"].as_u64().unwrap() as usize,
                    correct,
                    accuracy,
                }
            })
            .collect()
    };
    let r = NeuronsResult {
        relations: serde_json::from_value(g["relations"].clone()).unwrap(),
        facts: facts.clone(),
        tokens: usizes(&g["tokens"]),
        top: Vec::new(),
        ranked: points("ranked"),
        random: points("random"),
    };
    let f = interplay_lab::findings::neurons(&NeuronsSpec::capital_smollm2(), &r).unwrap();
    // HF: capital 26 → 7 at k = 100 (the first k that halves it); language 19, opposite 21 of 22;
    // 100 random neurons: capital 25.
    let k = g["ranked"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["k"].as_u64().unwrap() > 0 && 2 * p["correct"][0].as_u64().unwrap() <= 26)
        .unwrap();
    let c = usizes(&k["correct"]);
    let want = format!(
        "With the top {} “capital” neurons off the model answers {}/26 capital facts (was 26); the other relations: language {}/19 (was 19), opposite {}/22 (was 22).",
        k["k"], c[0], c[1], c[2]
    );
    assert!(f.shows.starts_with(&want), "{}\n{want}", f.shows);
    assert!(f.shows.ends_with("capital keeps 25/26."), "{}", f.shows);
    assert_eq!(f.agrees, Some(true));
}
