//! Edge attribution patching (EAP, EAP-IG) and edge-patched circuits against PyTorch autograd and
//! an explicit PyTorch forward on Hugging Face's models (tests/fixtures/make_eap_goldens.py), on
//! the tiny fixtures on the CPU and wgpu and on SmolLM2's IOI prompts on the CPU; and the split
//! per-head inputs against the plain forward.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
#![cfg(not(target_family = "wasm"))]

use interplay_models::device::read_f32;
use interplay_models::eap::{EdgeGraph, EdgePatcher};
use interplay_models::hooks::{Action, HookPlan, HookPoint, Selector};
use interplay_models::load::load_path;
use interplay_models::patching::no_progress;
use interplay_testkit::*;

fn pair() -> (Vec<u32>, Vec<u32>, u32, u32) {
    let g = golden("patching");
    let p = &g["models"]["tiny-llama"];
    (ids(&p["clean"]), ids(&p["corrupt"]), 30, 58)
}

/// Touching the per-head inputs (split q/k/v copies, the MLP's own input) changes no logit.
#[test]
fn split_inputs_compute_the_same_logits() {
    let (clean, _, _, _) = pair();
    for dev in devices() {
        for name in ["tiny-gpt2", "tiny-llama"] {
            let m = load_path(&fixtures().join(name), &dev.device)
                .unwrap()
                .model;
            let t = || m.tokens(std::slice::from_ref(&clean)).unwrap();
            let plain = pollster::block_on(read_f32(m.forward(t()))).unwrap();
            let mut plan = HookPlan::default();
            for l in 0..m.config.n_layers {
                for hook in [
                    HookPoint::QInput(l),
                    HookPoint::KInput(l),
                    HookPoint::VInput(l),
                ] {
                    plan = plan.with(hook, Selector::all(), Action::Scale(1.0));
                }
                plan.cache.insert(HookPoint::MlpIn(l));
            }
            let (logits, cache) = m.run_with_hooks(t(), &plan);
            let split = pollster::block_on(read_f32(logits)).unwrap();
            for (a, b) in plain.iter().zip(&split) {
                assert!(
                    (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                    "{name}: {a} vs {b}"
                );
            }
            let mid = cache.r3(HookPoint::MlpIn(0)).unwrap();
            assert_eq!(mid.dims(), [1, clean.len(), m.config.d_model]);
        }
    }
}

/// A circuit of every edge is the clean run; of none, the corrupted run.
#[test]
fn all_edges_give_the_clean_metric_and_none_the_corrupted() {
    let (clean, corrupt, a, w) = pair();
    for dev in devices() {
        for name in ["tiny-gpt2", "tiny-llama"] {
            let m = load_path(&fixtures().join(name), &dev.device)
                .unwrap()
                .model;
            let metric = |ids: &[u32]| {
                let l = pollster::block_on(read_f32(
                    m.last_logits(m.tokens(&[ids.to_vec()]).unwrap()).unwrap(),
                ))
                .unwrap();
                l[a as usize] - l[w as usize]
            };
            let patcher = EdgePatcher::new(&m, &clean, &corrupt, a, w).unwrap();
            let all = pollster::block_on(read_f32(patcher.metric(&|_, _| true))).unwrap()[0];
            let none = pollster::block_on(read_f32(patcher.metric(&|_, _| false))).unwrap()[0];
            assert!(
                (all - metric(&clean)).abs() < 1e-4,
                "{name}: {all} vs clean {}",
                metric(&clean)
            );
            assert!(
                (none - metric(&corrupt)).abs() < 1e-4,
                "{name}: {none} vs corrupt {}",
                metric(&corrupt)
            );
        }
    }
}

#[test]
fn the_graph_numbers_its_nodes_as_documented() {
    let g = EdgeGraph {
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
    };
    assert_eq!(g.upstream(), 11);
    assert_eq!(g.downstream(), 2 * 9 + 1);
    assert_eq!(g.upstream_name(5), "m0");
    assert_eq!(g.upstream_name(6), "a1.h0");
    assert_eq!(g.downstream_name(4), "a0.kv0<k>");
    assert_eq!(g.downstream_name(0), "a0.h0<q>");
    assert_eq!(g.downstream_name(8), "m0");
    assert_eq!(g.downstream_name(18), "logits");
    assert_eq!(g.prev(8), 5);
    assert_eq!(g.prev(9), 6);
    // q/k/v of layer 0: 8 readers × 1; m0: 5; layer 1: 8 × 6; m1: 10; logits: 11.
    assert_eq!(g.edges(), 8 + 5 + 48 + 10 + 11);
}

/// Scores within 1e-4 of the largest |score| (they are sums of products over positions and the
/// model dimension: relative to the metric's scale, not to each, possibly tiny, score).
#[cfg(feature = "train")]
fn check_scores(name: &str, m: &interplay_models::Transformer, backend: &str) {
    use interplay_models::eap::{EdgeMethod, edge_attribution};
    let g = golden("eap");
    let want = &g["models"][name];
    let steps = g["steps"].as_u64().unwrap() as usize;
    let (clean, corrupt) = (ids(&want["clean"]), ids(&want["corrupt"]));
    let (a, w) = (
        want["answer"].as_u64().unwrap() as u32,
        want["wrong"].as_u64().unwrap() as u32,
    );
    for (method, key) in [(EdgeMethod::Eap, "eap"), (EdgeMethod::EapIg, "eap_ig")] {
        let got = pollster::block_on(edge_attribution(
            m,
            &clean,
            &corrupt,
            a,
            w,
            method,
            steps,
            &mut no_progress,
        ))
        .unwrap();
        let graph = got.graph;
        let names: Vec<String> = (0..graph.upstream())
            .map(|u| graph.upstream_name(u))
            .collect();
        assert_eq!(
            serde_json::json!(names),
            want["upstream"],
            "{name}: upstream nodes"
        );
        let names: Vec<String> = (0..graph.downstream())
            .map(|v| graph.downstream_name(v))
            .collect();
        assert_eq!(
            serde_json::json!(names),
            want["downstream"],
            "{name}: downstream nodes"
        );
        let cm = want["clean_metric"].as_f64().unwrap();
        assert!(
            (got.clean_metric as f64 - cm).abs() < 1e-4 * cm.abs().max(1.0),
            "{name}: clean metric"
        );
        // (u, v, PyTorch's score)
        let listed: Vec<(usize, usize, f64)> = match want.get(key) {
            Some(rows) => rows
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .flat_map(|(u, row)| {
                    row.as_array()
                        .unwrap()
                        .iter()
                        .enumerate()
                        .map(move |(v, s)| (u, v, s.as_f64().unwrap()))
                })
                .collect(),
            None => want["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let col = if key == "eap" { 2 } else { 3 };
                    (
                        e[0].as_u64().unwrap() as usize,
                        e[1].as_u64().unwrap() as usize,
                        e[col].as_f64().unwrap(),
                    )
                })
                .collect(),
        };
        let scale = listed.iter().map(|e| e.2.abs()).fold(1.0f64, f64::max);
        for (u, v, s) in listed {
            let e = (got.score(u, v) as f64 - s).abs();
            assert!(
                e <= 1e-4 * scale + 1e-6,
                "{name} on {backend}: {key} {} → {} = {}, PyTorch {s}",
                graph.upstream_name(u),
                graph.downstream_name(v),
                got.score(u, v)
            );
        }
    }
}

/// The circuits' metrics, for PyTorch's own edge sets (so no near-tie in the ranking can pick
/// another set), and on the tiny models every edge's exact effect.
fn check_circuits(name: &str, m: &interplay_models::Transformer, backend: &str, exact: bool) {
    use interplay_models::eap::exact_edge_effects;
    let g = golden("eap");
    let want = &g["models"][name];
    let (clean, corrupt) = (ids(&want["clean"]), ids(&want["corrupt"]));
    let (a, w) = (
        want["answer"].as_u64().unwrap() as u32,
        want["wrong"].as_u64().unwrap() as u32,
    );
    let scale = want["clean_metric"]
        .as_f64()
        .unwrap()
        .abs()
        .max(want["corrupt_metric"].as_f64().unwrap().abs())
        .max(1.0);
    let patcher = EdgePatcher::new(m, &clean, &corrupt, a, w).unwrap();
    let vs = patcher.graph().downstream();
    for c in want["circuits"].as_array().unwrap() {
        let mut kept = vec![false; patcher.graph().upstream() * vs];
        for e in c["edges"].as_array().unwrap() {
            kept[e[0].as_u64().unwrap() as usize * vs + e[1].as_u64().unwrap() as usize] = true;
        }
        let got =
            pollster::block_on(read_f32(patcher.metric(&|u, v| kept[u * vs + v]))).unwrap()[0];
        let want_m = c["metric"].as_f64().unwrap();
        assert!(
            (got as f64 - want_m).abs() <= 1e-4 * scale,
            "{name} on {backend}: circuit of {} edges: {got}, PyTorch {want_m}",
            c["n"]
        );
    }
    if exact {
        let graph = patcher.graph();
        let edges: Vec<(usize, usize)> = (0..graph.upstream())
            .flat_map(|u| (0..vs).map(move |v| (u, v)))
            .filter(|&(u, v)| graph.is_edge(u, v))
            .collect();
        let got =
            pollster::block_on(exact_edge_effects(&patcher, &edges, &mut no_progress)).unwrap();
        for (&(u, v), got) in edges.iter().zip(got) {
            let want_e = want["exact"][u][v].as_f64().unwrap();
            assert!(
                (got as f64 - want_e).abs() <= 1e-4 * scale,
                "{name} on {backend}: exact {} → {}: {got}, PyTorch {want_e}",
                graph.upstream_name(u),
                graph.downstream_name(v)
            );
        }
    }
}

#[test]
fn edge_patched_circuits_match_pytorch_on_the_tiny_models() {
    for dev in devices() {
        for name in ["tiny-gpt2", "tiny-llama"] {
            let m = load_path(&fixtures().join(name), &dev.device)
                .unwrap()
                .model;
            for case in ["", "/late"] {
                check_circuits(&format!("{name}{case}"), &m, &dev.backend.to_string(), true);
            }
        }
    }
}

#[cfg(feature = "train")]
#[test]
fn eap_and_eap_ig_match_pytorch_autograd_on_the_tiny_models() {
    for dev in devices() {
        for name in ["tiny-gpt2", "tiny-llama"] {
            let m = load_path(&fixtures().join(name), &dev.device)
                .unwrap()
                .model;
            for case in ["", "/late"] {
                check_scores(&format!("{name}{case}"), &m, &dev.backend.to_string());
            }
        }
    }
}

#[test]
fn edge_patched_circuits_match_pytorch_on_smollm2() {
    let Some(path) = smollm2() else {
        return;
    };
    let m = load_path(&path, &interplay_models::ComputeDevice::cpu().device)
        .unwrap()
        .model;
    check_circuits("smollm2", &m, "cpu", false);
}

#[cfg(feature = "train")]
#[test]
fn eap_and_eap_ig_match_pytorch_autograd_on_smollm2() {
    let Some(path) = smollm2() else {
        return;
    };
    let m = load_path(&path, &interplay_models::ComputeDevice::cpu().device)
        .unwrap()
        .model;
    check_scores("smollm2", &m, "cpu");
}

/// Only edges on a kept path from the input to the logits count as the circuit.
#[test]
fn connected_edges_are_those_on_a_path_from_the_input_to_the_logits() {
    let g = EdgeGraph {
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
    };
    let vs = g.downstream();
    let kept_of = |edges: &[(usize, usize)]| {
        let mut kept = vec![false; g.upstream() * vs];
        for &(u, v) in edges {
            kept[u * vs + v] = true;
        }
        kept
    };
    let logits = vs - 1;
    // input → a0.h0's queries, a0.h0 → logits: a path.
    let path = [(0, 0), (1, logits)];
    assert_eq!(g.connected(&kept_of(&path)), 2);
    // a1.h2 → logits with nothing into a1.h2, m0 → a1.h0's queries with nothing into m0 nor out of
    // a1.h0: neither counts.
    let more = [(0, 0), (1, logits), (g.upstream() - 3, logits), (5, 9)];
    assert_eq!(g.upstream_name(g.upstream() - 3), "a1.h2");
    assert_eq!(g.downstream_name(9), "a1.h0<q>");
    assert_eq!(g.connected(&kept_of(&more)), 2);
    // input → a0.kv1's keys reaches query heads 2 and 3; a0.h3 → logits completes the path.
    let shared = [(0, 5), (4, logits)];
    assert_eq!(g.downstream_name(5), "a0.kv1<k>");
    assert_eq!(g.upstream_name(4), "a0.h3");
    assert_eq!(g.connected(&kept_of(&shared)), 2);
    assert_eq!(
        g.connected(&kept_of(&[(0, 4), (4, logits)])),
        0,
        "kv0 feeds heads 0 and 1 only"
    );
    // Every edge.
    let all: Vec<(usize, usize)> = (0..g.upstream())
        .flat_map(|u| (0..vs).map(move |v| (u, v)))
        .filter(|&(u, v)| g.is_edge(u, v))
        .collect();
    assert_eq!(g.connected(&kept_of(&all)), g.edges());
}
