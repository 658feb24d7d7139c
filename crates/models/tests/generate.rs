//! Greedy generation with the key/value cache against Hugging Face `generate` (goldens by
//! tests/fixtures/make_generate_goldens.py), on the CPU and wgpu.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use interplay_models::device::read_f32;
use interplay_models::generate::{Sampling, generate, generate_after};
use interplay_models::load::load_path;
use interplay_models::{HookPlan, HookPoint};
use pollster::block_on;
use serde_json::Value;

#[test]
fn greedy_generation_matches_hugging_face_on_every_device() {
    let g: Value = serde_json::from_slice(
        &std::fs::read(interplay_testkit::fixtures().join("generate.json")).unwrap(),
    )
    .unwrap();
    let ids = |v: &Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    for dev in interplay_testkit::devices() {
        for (name, want) in g["models"].as_object().unwrap() {
            let want_hf = want;
            let m =
                load_path(&interplay_testkit::fixtures().join(name), &dev.device).expect("loads");
            let prompt = ids(&want["prompt"]);
            let tokens = ids(&want["tokens"]);
            let out = block_on(generate(
                &m.model,
                &prompt,
                tokens.len(),
                &[],
                Sampling::Greedy,
            ))
            .unwrap();
            assert_eq!(out.tokens, tokens, "{name} on {}", dev.backend.label());
            assert!(!out.stopped);
            // Each step's chosen logit, from one forward pass over prompt + generation.
            let mut all = prompt.clone();
            all.extend(&tokens);
            let logits = block_on(read_f32(
                m.model.forward(m.model.tokens(&[all.clone()]).unwrap()),
            ))
            .unwrap();
            let v = m.model.config.d_vocab;
            let chosen: Vec<f32> = tokens
                .iter()
                .enumerate()
                .map(|(i, &t)| logits[(prompt.len() - 1 + i) * v + t as usize])
                .collect();
            let want: Vec<f64> = want["chosen_logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            let err = interplay_testkit::max_rel_err(&chosen, &want);
            assert!(err < 1e-4, "{name}: chosen logits, relative error {err}");
            // Going on from a cached first half of the prompt writes the same tokens, and the
            // trace's hooks are what one run over prompt + tokens caches at those positions.
            let half = prompt.len() / 2;
            let hook = HookPoint::ResidPost(m.model.config.n_layers - 1);
            let plan = HookPlan::caching([hook]);
            let (_, _, kv) = m
                .model
                .extend(
                    m.model.tokens(&[prompt[..half].to_vec()]).unwrap(),
                    None,
                    &HookPlan::default(),
                )
                .unwrap();
            let (after, trace) = block_on(generate_after(
                &m.model,
                Some(&kv),
                &prompt[half..],
                tokens.len(),
                &[],
                Sampling::Greedy,
                &plan,
            ))
            .unwrap();
            assert_eq!(after.tokens, tokens, "{name}: after a cached prefix");
            assert_eq!(trace.hooks.len(), tokens.len());
            let (_, whole) = m
                .model
                .run_with_hooks(m.model.tokens(&[all.clone()]).unwrap(), &plan);
            let whole = block_on(read_f32(whole.r3(hook).unwrap())).unwrap();
            let d = m.model.config.d_model;
            let steps: Vec<f32> = trace
                .hooks
                .iter()
                .flat_map(|h| block_on(read_f32(h.r3(hook).unwrap())).unwrap())
                .collect();
            // Prompt positions from `half`, then one per token fed back (all but the last).
            let fed = &whole[half * d..(all.len() - 1) * d];
            assert_eq!(steps.len(), fed.len());
            let err = interplay_testkit::max_rel_err(
                &steps,
                &fed.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
            );
            assert!(err < 1e-4, "{name}: traced hooks, relative error {err}");
            // And they are Hugging Face's: the last block's output over prompt + tokens.
            let hf: Vec<f64> = want_hf["resid_post_last"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(hf.len(), all.len() * d, "{name}: HF positions × d_model");
            let err = interplay_testkit::max_rel_err(&steps, &hf[half * d..(all.len() - 1) * d]);
            assert!(
                err < 1e-4,
                "{name}: traced hooks vs Hugging Face, relative error {err}"
            );
            assert_eq!(
                trace.cache.unwrap().k[0].dims()[2],
                all.len() - 1,
                "{name}: the cache holds everything fed"
            );
            // A stop token ends it, and is kept.
            let cut = block_on(generate(
                &m.model,
                &prompt,
                tokens.len(),
                &[tokens[2]],
                Sampling::Greedy,
            ))
            .unwrap();
            let first = tokens.iter().position(|&t| t == tokens[2]).unwrap();
            assert_eq!(cut.tokens, tokens[..=first], "{name}: stop");
            assert!(cut.stopped);
            // As HF `generate` with that token as its end of text.
            let stop = &want_hf["stop"];
            assert_eq!(stop["eos"].as_u64().unwrap() as u32, tokens[2]);
            assert_eq!(
                cut.tokens,
                ids(&stop["tokens"]),
                "{name}: stop vs Hugging Face"
            );
            // Sampling is seeded: the same seed gives the same tokens.
            let s = Sampling::Temperature {
                temperature: 1.0,
                seed: 9,
            };
            let a = block_on(generate(&m.model, &prompt, 8, &[], s)).unwrap();
            let b = block_on(generate(&m.model, &prompt, 8, &[], s)).unwrap();
            assert_eq!(a, b, "{name}: seeded sampling");
            // And the draws are the reference's: HF logits, the sampler and the generator
            // restated in Python (make_generate_goldens.py; its smallest boundary margin is
            // recorded beside the tokens).
            for r in g["models"][name.as_str()]["sampled"].as_array().unwrap() {
                let s = Sampling::Temperature {
                    temperature: r["temperature"].as_f64().unwrap(),
                    seed: r["seed"].as_u64().unwrap(),
                };
                let want = ids(&r["tokens"]);
                let got = block_on(generate(&m.model, &prompt, want.len(), &[], s)).unwrap();
                assert_eq!(got.tokens, want, "{name}: sampled with {s:?}");
            }
            let bad = Sampling::Temperature {
                temperature: 0.0,
                seed: 9,
            };
            assert!(block_on(generate(&m.model, &prompt, 8, &[], bad)).is_err());
            assert!(block_on(generate(&m.model, &[], 8, &[], Sampling::Greedy)).is_err());
        }
    }
}

/// The tiny Llama in quantised GGUF blocks (Q4_0 blocks, Q8_0 embedding and untied output) and
/// the tiny GPT-2 (packed Q4_0 `attn_qkv`, Q8_0 / Q4_1 / Q4_0 others, tied Q8_0 embedding;
/// tests/fixtures/make_quant_model.py): on the CPU decoding reads the kept blocks, and writes
/// Hugging Face's greedy tokens with every step's logits at 1e-4 (transformers dequantises the
/// same file); the kept copy's products equal the f32 weights'; wgpu (no kept copy) agrees.
#[test]
fn decoding_from_q4_0_and_q8_0_blocks_matches_hugging_face() {
    for name in ["tiny-llama", "tiny-gpt2"] {
        decoding_from_blocks_matches_hugging_face(name);
    }
}

fn decoding_from_blocks_matches_hugging_face(name: &str) {
    let dir = interplay_testkit::fixtures().join(name);
    let g = interplay_testkit::read_json(&dir.join("quant_golden.json"));
    let ids = |v: &Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let (prompt, tokens) = (ids(&g["prompt"]), ids(&g["tokens"]));
    for dev in interplay_testkit::devices() {
        let m = load_path(&dir.join("model.q4_0.gguf"), &dev.device)
            .expect("loads")
            .model;
        let on = dev.backend.label();
        if interplay_models::device::is_cpu(&dev.device) {
            let kept = m.quantised.as_ref().expect("blocks kept on the CPU");
            assert!(kept.unembed.is_some(), "{name}: the Q8_0 unembedding kept");
            for b in &kept.blocks {
                // GPT-2 has no gate; its q, k and v are row ranges of the packed attn_qkv.
                for w in [&b.q, &b.k, &b.v, &b.o, &b.up, &b.down] {
                    assert!(w.is_some(), "{name}: every block weight kept");
                }
                assert_eq!(b.gate.is_some(), name == "tiny-llama", "{name}: gate");
            }
        } else {
            assert!(m.quantised.is_none(), "no kept copy on {on}");
        }
        let out = block_on(generate(&m, &prompt, tokens.len(), &[], Sampling::Greedy)).unwrap();
        assert_eq!(out.tokens, tokens, "{name}: greedy tokens on {on}");
        let steps = interplay_testkit::decoding_logits(&m, &prompt, &tokens);
        let want = g["step_logits"].as_array().unwrap();
        assert_eq!(steps.len(), want.len());
        for (i, (got, want)) in steps.iter().zip(want).enumerate() {
            let want: Vec<f64> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            let err = interplay_testkit::max_rel_err(got, &want);
            assert!(
                err < 1e-4,
                "{name}: step {i} on {on}: logits differ from HF by {err}"
            );
        }
        if m.quantised.is_some() {
            let mut plain = m.clone();
            plain.quantised = None;
            for (a, b) in steps
                .iter()
                .zip(interplay_testkit::decoding_logits(&plain, &prompt, &tokens))
            {
                let scale = b.iter().fold(0f32, |s, x| s.max(x.abs()));
                let diff = a
                    .iter()
                    .zip(&b)
                    .fold(0f32, |s, (x, y)| s.max((x - y).abs()));
                assert!(
                    diff <= 1e-5 * scale,
                    "kept blocks vs f32: {diff} (scale {scale})"
                );
            }
        }
    }
}
