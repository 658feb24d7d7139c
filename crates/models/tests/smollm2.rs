//! SmolLM2-135M-Instruct (the real model we ship, fetched by `cargo xtask setup`) against
//! Hugging Face `transformers` loading the same GGUF: tokenizer, logits, the IOI logit
//! difference, and the resid_pre patching grid. Without the file the test says so and passes,
//! unless `CI` is set, where setup must have fetched it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
#![cfg(not(target_family = "wasm"))]

use interplay_models::ComputeDevice;
use interplay_models::device::{DispatchCounter, read_f32};
use interplay_models::load::load_path;
use interplay_models::patching::{PatchTarget, no_progress, patch_sweep};
use interplay_models::tokenizer::smollm2_chat;
use interplay_testkit::*;

#[test]
fn smollm2_ioi_matches_hf() {
    let Some(path) = smollm2() else {
        return;
    };
    let g = golden("smollm2");
    let dev = ComputeDevice::cpu();
    let loaded = load_path(&path, &dev.device).expect("SmolLM2 loads");
    let tk = loaded.tokenizer.as_ref().expect("GGUF tokenizer");
    let m = &loaded.model;
    assert_eq!(m.config.n_layers, 30);
    assert_eq!(m.config.n_kv_heads, 3);

    // Tokenizer: same ids as HF's tokenizer built from the same GGUF.
    let clean = tk.encode(g["clean_text"].as_str().unwrap()).unwrap();
    assert_eq!(clean, ids(&g["clean"]));
    let corrupt = tk.encode(g["corrupt_text"].as_str().unwrap()).unwrap();
    assert_eq!(corrupt, ids(&g["corrupt"]));
    assert_eq!(smollm2_chat(None, "Hi"), g["chat_text"].as_str().unwrap());
    let chat = tk.encode(&smollm2_chat(None, "Hi")).unwrap();
    assert_eq!(chat, ids(&g["chat_ids"]), "chat template");
    let (mary, john) = (
        g["answer"].as_u64().unwrap() as u32,
        g["wrong"].as_u64().unwrap() as u32,
    );
    assert_eq!(tk.encode(" Mary").unwrap(), vec![mary]);

    // Logits at the last position, fed without BOS.
    let logits = m.forward(m.tokens(std::slice::from_ref(&clean)).unwrap());
    let [_, p, v] = logits.dims();
    let all = pollster::block_on(read_f32(logits)).unwrap();
    let last = &all[(p - 1) * v..];
    let want = logits_head(&g);
    let err = max_rel_err(&last[..want.len()], &want);
    assert!(err < 1e-4, "SmolLM2 logits differ from HF by {err:e}");
    let err = max_rel_err(last, &all_last_logits());
    assert!(
        err < 1e-4,
        "SmolLM2: the {v} last-position logits differ from HF by {err:e}"
    );
    let ld = last[mary as usize] - last[john as usize];
    let hf = g["logit_diff"].as_f64().unwrap();
    assert!(
        ld > 3.0,
        "IOI: \" Mary\" should be well above \" John\", got {ld}"
    );
    assert!(
        (ld as f64 - hf).abs() < 1e-3 * hf.abs().max(1.0),
        "logit diff {ld} vs HF {hf}"
    );

    // The resid_pre patching grid (31 × 14) against HF's hook-by-hook sweep.
    let grid = pollster::block_on(patch_sweep(
        m,
        &clean,
        &corrupt,
        PatchTarget::ResidPre,
        mary,
        john,
        &mut no_progress,
    ))
    .unwrap();
    let want = g["resid_pre"].as_array().unwrap();
    assert_eq!(grid.grid.len(), 31);
    for (l, (row, wrow)) in grid.grid.iter().zip(want).enumerate() {
        for (c, (x, w)) in row.iter().zip(wrow.as_array().unwrap()).enumerate() {
            let w = w.as_f64().unwrap();
            assert!((*x as f64 - w).abs() < 1e-3, "grid[{l}][{c}] = {x}, HF {w}");
        }
    }
}

/// On WebGPU (lavapipe natively) every SmolLM2 block runs as the fused kernels
/// (`transformer::gpu`): head width 64, three key/value heads for nine query heads, 30 layers.
#[test]
fn smollm2_on_wgpu_matches_hf() {
    let (Some(path), Some(gpu)) = (smollm2(), wgpu_device()) else {
        return;
    };
    let g = golden("smollm2");
    let m = load_path(&path, &gpu.device).expect("SmolLM2 loads").model;
    let clean = ids(&g["clean"]);
    // The other test here computes on the CPU (no kernel launches), so the count is this one's.
    let counter = DispatchCounter::start();
    let logits = m.last_logits(m.tokens(&[clean]).unwrap()).unwrap();
    let launched = counter.count();
    drop(counter);
    assert!(
        launched <= 10 * m.config.n_layers,
        "{launched} launches for 30 blocks: not fused"
    );
    let last = pollster::block_on(read_f32(logits)).unwrap();
    let want = logits_head(&g);
    let err = max_rel_err(&last[..want.len()], &want);
    assert!(
        err < 1e-4,
        "SmolLM2 on wgpu: logits differ from HF by {err:e}"
    );
    let err = max_rel_err(&last, &all_last_logits());
    assert!(
        err < 1e-4,
        "SmolLM2 on wgpu: all last-position logits differ from HF by {err:e}"
    );
    let (mary, john) = (
        g["answer"].as_u64().unwrap() as usize,
        g["wrong"].as_u64().unwrap() as usize,
    );
    let ld = (last[mary] - last[john]) as f64;
    let hf = g["logit_diff"].as_f64().unwrap();
    assert!(
        (ld - hf).abs() < 1e-3 * hf.abs().max(1.0),
        "logit diff on wgpu {ld} vs HF {hf}"
    );
}

/// All of HF's last-position logits of the clean prompt (`smollm2/last_logits.f32`, written by
/// `make_goldens.py --smollm2` as little-endian float32), `[d_vocab]`.
fn all_last_logits() -> Vec<f64> {
    let bytes = std::fs::read(fixtures().join("smollm2").join("last_logits.f32")).unwrap();
    let v: Vec<f64> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
        .collect();
    assert_eq!(v.len(), 49_152, "one logit per vocabulary entry");
    v
}

/// HF's first logits at the last position of the clean prompt.
fn logits_head(g: &serde_json::Value) -> Vec<f64> {
    g["last_logits_head"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Decoding reads SmolLM2's weights in their Q4_1/Q8_0 blocks on the CPU: greedy generation
/// after the IOI prompt writes Hugging Face's tokens (transformers dequantises the same GGUF),
/// every step's logits match HF's at 1e-4 relative, and they match the f32 weights' products.
#[test]
fn smollm2_decoding_from_quantised_blocks_matches_hf() {
    let Some(path) = smollm2() else {
        return;
    };
    let g: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("smollm2").join("generate.json")).unwrap(),
    )
    .unwrap();
    let dev = ComputeDevice::cpu();
    let m = load_path(&path, &dev.device).expect("SmolLM2 loads").model;
    let kept = m.quantised.as_ref().expect("Q4_1 blocks kept on the CPU");
    // Q4_1 blocks (24 bytes a block of 32 as kept) and the Q8_0 embedding (36): under a byte
    // a weight, where the f32 weights take 4.
    use burn::module::Module;
    assert!(kept.bytes() < m.num_params(), "{} bytes kept", kept.bytes());
    assert!(
        kept.blocks
            .iter()
            .all(|b| b.q.is_some() && b.down.is_some())
    );
    assert!(kept.unembed.is_some());

    let prompt = ids(&g["prompt"]);
    let tokens = ids(&g["tokens"]);
    let out = pollster::block_on(interplay_models::generate::generate(
        &m,
        &prompt,
        tokens.len(),
        &[],
        interplay_models::generate::Sampling::Greedy,
    ))
    .unwrap();
    assert_eq!(out.tokens, tokens, "greedy tokens differ from HF's");

    let steps = interplay_testkit::decoding_logits(&m, &prompt, &tokens);
    let chosen: Vec<f32> = steps
        .iter()
        .zip(&tokens)
        .map(|(l, &t)| l[t as usize])
        .collect();
    let want: Vec<f64> = g["chosen_logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(chosen.len(), want.len());
    let err = max_rel_err(&chosen, &want);
    assert!(err < 1e-4, "chosen logits differ from HF by {err:e}");

    // The same steps through the f32 weights: the products differ only in their order of sums.
    let mut f32_model = m.clone();
    f32_model.quantised = None;
    let plain = interplay_testkit::decoding_logits(&f32_model, &prompt, &tokens);
    // Both against HF at each step's 20 largest logits.
    let top = g["top20"].as_array().unwrap();
    assert_eq!(top.len(), tokens.len(), "one top-20 per step");
    for (what, run) in [("kept blocks", &steps), ("f32 weights", &plain)] {
        assert_eq!(run.len(), top.len());
        for (i, (l, want)) in run.iter().zip(top).enumerate() {
            let want = want.as_array().unwrap();
            assert_eq!(want.len(), 20);
            let (got, want): (Vec<f32>, Vec<f64>) = want
                .iter()
                .map(|p| (l[p[0].as_u64().unwrap() as usize], p[1].as_f64().unwrap()))
                .unzip();
            let err = max_rel_err(&got, &want);
            assert!(err < 1e-4, "{what}, step {i}: top-20 logits off by {err:e}");
        }
    }
    for (a, b) in steps.iter().zip(&plain) {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f32, |s, x| s.max(x.abs()));
        let diff = a.iter().zip(b).fold(0f32, |s, (x, y)| s.max((x - y).abs()));
        assert!(
            diff <= 1e-5 * scale,
            "step logits differ by {diff} (scale {scale})"
        );
    }
}
