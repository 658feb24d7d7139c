//! The Circuits lab's questions as the engine answers them: a prediction's logits are the
//! Hugging Face golden's, each answer equals the analysis function it wraps, a question survives
//! JSON (the engine message's shape), and bad input is a message, not a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use interplay_lab::ablation::{AblationKind, ReceiverInput, ablate_heads, path_patch};
use interplay_lab::circuits::{attention_patterns, direct_logit_attribution, head_scores};
use interplay_lab::inspect::{Inspect, Inspection, PatternCube};
use interplay_lab::{PatchingSpec, Prompt, TokenRef};
use interplay_models::ComputeDevice;
use interplay_models::load::{LoadedModel, load_path};
use pollster::block_on;
use serde_json::Value;

use interplay_testkit::{ids, root, tensor};

fn ioi() -> (LoadedModel, Value) {
    let m = load_path(
        &root().join("public/bundled/ioi-3l"),
        &ComputeDevice::cpu().device,
    )
    .expect("loads");
    let g: Value = serde_json::from_slice(
        &std::fs::read(root().join("tests/fixtures/bundled/ioi-3l.json")).expect("golden"),
    )
    .expect("json");
    (m, g)
}

/// JSON round trip: what crosses to the engine is what was asked.
fn through_json(q: Inspect) -> Inspect {
    let back: Inspect = serde_json::from_str(&serde_json::to_string(&q).unwrap()).unwrap();
    assert_eq!(back, q);
    back
}

#[test]
fn prediction_is_the_hf_last_position_logits() {
    let (m, g) = ioi();
    let text = g["clean_text"].as_str().unwrap().to_string();
    let q = through_json(Inspect::Predict {
        prompt: Prompt::Text(text),
    });
    let Inspection::Prediction(p) = block_on(q.run(&m)).unwrap() else {
        panic!("a prediction")
    };
    let clean = ids(&g["clean"]);
    assert_eq!(p.tokens.iter().map(|t| t.1).collect::<Vec<_>>(), clean);
    let (shape, data) = tensor(&g["logits"]);
    let v = *shape.last().unwrap();
    let want = &data[data.len() - v..];
    let got = p
        .last_logits
        .expect("a small vocabulary carries every logit");
    let err = interplay_testkit::max_rel_err(&got, want);
    assert!(err < 1e-4, "logits max rel err {err}");
    // The top tokens are the golden's, best first, with softmax probabilities.
    let best = (0..v).max_by(|&a, &b| want[a].total_cmp(&want[b])).unwrap();
    assert_eq!(p.top[0].id as usize, best);
    assert_eq!(p.top[0].id, g["answer"].as_u64().unwrap() as u32);
    assert!(p.top.windows(2).all(|w| w[0].logit >= w[1].logit));
    let z: f64 = want.iter().map(|x| (x - want[best]).exp()).sum();
    assert!((p.top[0].probability as f64 - 1.0 / z).abs() < 1e-5);
}

#[test]
fn analysis_is_the_analysis_functions() {
    let (m, g) = ioi();
    let clean = ids(&g["clean"]);
    let (a, w) = (
        g["answer"].as_u64().unwrap() as u32,
        g["wrong"].as_u64().unwrap() as u32,
    );
    let q = through_json(Inspect::Analyse {
        prompt: Prompt::Ids(clean.clone()),
        answer: Some(TokenRef::Text("Mary".into())),
        wrong: Some(TokenRef::Id(w)),
    });
    let Inspection::Analysis(an) = block_on(q.run(&m)).unwrap() else {
        panic!("an analysis")
    };
    assert_eq!(an.tokens.len(), clean.len());
    let pats = block_on(attention_patterns(&m.model, &clean)).unwrap();
    assert_eq!(an.patterns, PatternCube::new(&pats));
    let [n, h, p, _] = an.patterns.shape;
    assert_eq!([n, h, p], [3, pats.pattern[0].len(), clean.len()]);
    for (l, layer) in pats.pattern.iter().enumerate() {
        for (hh, head) in layer.iter().enumerate() {
            assert_eq!(&an.patterns.head(l, hh), head);
        }
    }
    assert_eq!(an.patterns.get(2, 0, 5, 3), pats.pattern[2][0][5][3]);
    // The cube the page draws is Hugging Face's `output_attentions`, entry by entry.
    for l in 0..n {
        let want = &g["hooks"][format!("blocks.{l}.attn.hook_pattern")];
        let shape: Vec<u64> = want["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert_eq!(
            shape,
            [1, h as u64, p as u64, p as u64],
            "layer {l}'s pattern"
        );
        let want = want["data"].as_array().unwrap();
        assert_eq!(want.len(), h * p * p, "layer {l}'s pattern entries");
        for (i, w) in want.iter().enumerate() {
            let (hh, q, k) = (i / (p * p), i / p % p, i % p);
            let got = an.patterns.get(l, hh, q, k) as f64;
            let w = w.as_f64().unwrap();
            assert!(
                (got - w).abs() < 1e-5,
                "pattern {l}.{hh} [{q}, {k}]: {got} vs Hugging Face {w}"
            );
        }
    }
    assert_eq!(an.patterns.get(n, 0, 0, 0), 0.0);
    assert_eq!(
        an.dla,
        Some(block_on(direct_logit_attribution(&m.model, &clean, a, w)).unwrap())
    );
    assert_eq!(an.lens.tracked_ids, vec![a, w]);
    assert_eq!(an.lens_labels.len(), 2);
    // The lens's top predictions come as words too, one per id, through the tokenizer.
    assert_eq!(an.lens_top_words.len(), an.lens.top.len());
    for (words, top) in an.lens_top_words.iter().zip(&an.lens.top) {
        assert_eq!(words.len(), top.len());
        for (word, &(id, _)) in words.iter().zip(top) {
            assert_eq!(word, &interplay_lab::inspect::shown(&m, id));
        }
    }
    assert!(an.answer_label.starts_with("logit("), "{}", an.answer_label);
    // Without both tokens: no attribution, the lens tracks what was given.
    let Inspection::Analysis(one) = block_on(
        Inspect::Analyse {
            prompt: Prompt::Ids(clean),
            answer: Some(TokenRef::Id(a)),
            wrong: None,
        }
        .run(&m),
    )
    .unwrap() else {
        panic!("an analysis")
    };
    assert_eq!(one.dla, None);
    assert_eq!(one.lens.tracked_ids, vec![a]);
}

#[test]
fn scores_and_interventions_are_the_lab_functions() {
    let (m, g) = ioi();
    let q = through_json(Inspect::HeadScores { half: 6, seed: 3 });
    assert_eq!(
        block_on(q.run(&m)).unwrap(),
        Inspection::HeadScores(block_on(head_scores(&m.model, 6, 3)).unwrap())
    );
    let spec = PatchingSpec::ioi_bundled();
    let (clean, corrupt) = (ids(&g["clean"]), ids(&g["corrupt"]));
    let (a, w) = (
        g["answer"].as_u64().unwrap() as u32,
        g["wrong"].as_u64().unwrap() as u32,
    );
    let heads = vec![(2, 0), (1, 1)];
    for kind in [
        AblationKind::Zero,
        AblationKind::Mean,
        AblationKind::Resample,
    ] {
        let q = through_json(Inspect::Ablate {
            spec: spec.clone(),
            heads: heads.clone(),
            kind,
        });
        let (c, x) =
            block_on(ablate_heads(&m.model, &clean, &corrupt, &heads, kind, a, w)).unwrap();
        assert_eq!(
            block_on(q.run(&m)).unwrap(),
            Inspection::Scores {
                clean: c,
                changed: x
            }
        );
    }
    let inputs = vec![ReceiverInput::Q, ReceiverInput::K];
    let q = through_json(Inspect::PathPatch {
        spec,
        senders: vec![(0, 1)],
        receivers: vec![(2, 0)],
        inputs: inputs.clone(),
    });
    let (c, x) = block_on(path_patch(
        &m.model,
        &clean,
        &corrupt,
        &[(0, 1)],
        &[(2, 0)],
        &inputs,
        a,
        w,
    ))
    .unwrap();
    assert_eq!(
        block_on(q.run(&m)).unwrap(),
        Inspection::Scores {
            clean: c,
            changed: x
        }
    );
}

/// The continuation is `generate`'s (checked against Hugging Face's `generate` in the models
/// crate), greedy and seeded, stopping where it stops.
#[test]
fn continuation_is_generate() {
    use interplay_models::generate::{Sampling, generate};
    let (m, g) = ioi();
    let clean = ids(&g["clean"]);
    for (temperature, sampling) in [
        (0.0, Sampling::Greedy),
        (
            0.8,
            Sampling::Temperature {
                temperature: 0.8,
                seed: 7,
            },
        ),
    ] {
        let q = through_json(Inspect::Generate {
            prompt: Prompt::Text(g["clean_text"].as_str().unwrap().into()),
            max_new: 6,
            temperature,
            seed: 7,
        });
        let Inspection::Continuation(c) = block_on(q.run(&m)).unwrap() else {
            panic!("a continuation")
        };
        let tk = m.tokenizer.as_ref().unwrap();
        let want = block_on(generate(
            &m.model,
            &clean,
            6,
            &tk.end_of_text_ids(),
            sampling,
        ))
        .unwrap();
        assert_eq!(c.prompt_tokens, clean.len());
        assert_eq!(
            c.tokens.iter().map(|t| t.1).collect::<Vec<_>>(),
            want.tokens
        );
        assert_eq!(c.stopped, want.stopped);
        assert_eq!(c.text, tk.decode(&want.tokens).unwrap());
    }
    // On the tiny fixtures, the continuation is Hugging Face's `generate` (greedy) and the
    // sampler restated in Python (make_generate_goldens.py), through the engine.
    let g = interplay_testkit::read_json(&interplay_testkit::fixtures().join("generate.json"));
    for (name, want) in g["models"].as_object().unwrap() {
        let m = interplay_models::load::load_path(
            &interplay_testkit::fixtures().join(name),
            &interplay_models::ComputeDevice::cpu().device,
        )
        .unwrap();
        let prompt = ids(&want["prompt"]);
        let mut cases = vec![(0.0, 0, ids(&want["tokens"]))];
        for r in want["sampled"].as_array().unwrap() {
            cases.push((
                r["temperature"].as_f64().unwrap(),
                r["seed"].as_u64().unwrap(),
                ids(&r["tokens"]),
            ));
        }
        for (temperature, seed, tokens) in cases {
            let q = through_json(Inspect::Generate {
                prompt: Prompt::Ids(prompt.clone()),
                max_new: tokens.len(),
                temperature,
                seed,
            });
            let Inspection::Continuation(c) = block_on(q.run(&m)).unwrap() else {
                panic!("a continuation")
            };
            assert_eq!(
                c.tokens.iter().map(|t| t.1).collect::<Vec<_>>(),
                tokens,
                "{name} at T = {temperature}, seed {seed}: the engine vs Hugging Face"
            );
        }
    }
}

#[test]
fn bad_questions_get_messages() {
    let (m, _) = ioi();
    let err = |q: Inspect| block_on(q.run(&m)).unwrap_err().to_string();
    assert!(
        err(Inspect::Predict {
            prompt: Prompt::Text(String::new())
        })
        .contains("empty")
    );
    assert!(
        err(Inspect::Predict {
            prompt: Prompt::Ids(vec![1, 999_999])
        })
        .contains("outside the vocabulary")
    );
    let e = err(Inspect::Analyse {
        prompt: Prompt::Ids(vec![1, 2, 3]),
        answer: Some(TokenRef::Text("Mary went".into())),
        wrong: None,
    });
    assert!(e.contains("exactly one"), "{e}");
    // An analysis too big for the page's memory is refused before it runs, with a length that
    // fits (SmolLM2's shape: 30 layers × 9 heads; a 1,270-token prompt trapped the engine).
    let mut c = m_config_smollm2_like();
    assert!(interplay_lab::inspect::check_analysis_size(&c, 1270).is_err());
    let e = interplay_lab::inspect::check_analysis_size(&c, 1270)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most 498 tokens"), "{e}");
    assert!(interplay_lab::inspect::check_analysis_size(&c, 498).is_ok());
    c.n_layers = 3;
    assert!(interplay_lab::inspect::check_analysis_size(&c, 1270).is_ok());
    // A word the bundled model's word-level vocabulary lacks is refused, not read as <unk>.
    let e = err(Inspect::Analyse {
        prompt: Prompt::Ids(vec![1, 2, 3]),
        answer: Some(TokenRef::Text("Zeus".into())),
        wrong: None,
    });
    assert!(e.contains("not in this model's vocabulary"), "{e}");
    let e = err(Inspect::Analyse {
        prompt: Prompt::Ids(vec![1, 2, 3]),
        answer: Some(TokenRef::Id(1 << 30)),
        wrong: None,
    });
    assert!(e.contains("outside the vocabulary"), "{e}");
    assert!(err(Inspect::HeadScores { half: 1, seed: 0 }).contains("at least 2"));
    let generate = |max_new, temperature| Inspect::Generate {
        prompt: Prompt::Ids(vec![1, 2, 3]),
        max_new,
        temperature,
        seed: 0,
    };
    let e = err(generate(0, 0.0));
    assert!(e.contains("between 1 and 512"), "{e}");
    let e = err(generate(4, -1.0));
    assert!(e.contains("temperature must be above 0"), "{e}");
    let e = err(generate(4, f64::NAN));
    assert!(e.contains("temperature"), "{e}");
}

fn m_config_smollm2_like() -> interplay_models::TransformerConfig {
    let (m, _) = ioi();
    let mut c = m.model.config.clone();
    c.n_layers = 30;
    c.n_heads = 9;
    c
}
