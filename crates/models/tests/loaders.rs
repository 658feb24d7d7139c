//! Checkpoint parsing: quantisation against gguf-py, and every bad file giving a typed error.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
#![cfg(not(target_family = "wasm"))]

use interplay_models::gguf::Gguf;
use interplay_models::load::{load_gguf, load_path, load_safetensors};
use interplay_models::patching::{PatchTarget, no_progress, patch_sweep};
use interplay_models::safetensors::read_safetensors;
use interplay_models::{ComputeDevice, ModelError};
use interplay_testkit::*;

#[test]
fn every_quantisation_matches_gguf_py() {
    let bytes = std::fs::read(fixtures().join("quants/quants.gguf")).unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    let gold = golden("quants");
    let want = gold["tensors"].as_object().unwrap();
    assert_eq!(want.len(), 11);
    for info in &g.tensors {
        let t = g.tensor(info).unwrap();
        let (shape, w) = tensor(&want[&info.name]);
        assert_eq!(t.shape, shape, "{}", info.name);
        let err = t
            .data
            .iter()
            .zip(&w)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-6, "{}: max error {err}", info.name);
    }
}

#[test]
fn gguf_written_as_f32_reads_back_with_its_metadata() {
    // Quantised tensors (every block type) and a whole model: metadata kept key for key (the
    // tokenizer and chat template live there), tensors equal to their dequantised values, the
    // model's config unchanged.
    for file in ["quants/quants.gguf", "tiny-llama/model.gguf"] {
        let bytes = std::fs::read(fixtures().join(file)).unwrap();
        let g = Gguf::parse(&bytes).unwrap();
        let w = g.weights().unwrap();
        let tensors: Vec<(String, _)> = g
            .tensors
            .iter()
            .map(|t| (t.name.clone(), &w[&t.name]))
            .collect();
        let out = g.write_f32(&tensors);
        let h = Gguf::parse(&out).unwrap();
        assert_eq!(h.metadata, g.metadata, "{file}");
        assert_eq!(
            h.tensors.iter().map(|t| &t.name).collect::<Vec<_>>(),
            g.tensors.iter().map(|t| &t.name).collect::<Vec<_>>()
        );
        assert!(h.tensors.iter().all(|t| t.ggml_type == 0));
        assert_eq!(h.weights().unwrap(), w, "{file}");
        if file.starts_with("tiny-llama") {
            assert_eq!(h.config().unwrap(), g.config().unwrap());
        }
    }
}

fn gguf_bytes() -> Vec<u8> {
    std::fs::read(fixtures().join("tiny-llama/model.gguf")).unwrap()
}

fn st_bytes() -> (Vec<u8>, Vec<u8>) {
    let d = fixtures().join("tiny-gpt2");
    (
        std::fs::read(d.join("model.safetensors")).unwrap(),
        std::fs::read(d.join("config.json")).unwrap(),
    )
}

#[test]
fn truncated_and_corrupt_files_give_clear_errors() {
    let dev = ComputeDevice::cpu().device;
    let g = gguf_bytes();
    for cut in [0, 3, 10, 30, 200, g.len() / 2, g.len() - 1] {
        let err = load_gguf(&g[..cut], &dev).expect_err("truncated GGUF must fail");
        let msg = err.to_string();
        assert!(
            matches!(err, ModelError::Truncated(_) | ModelError::Format { .. }),
            "cut {cut}: {msg}"
        );
    }
    let mut wrong_magic = g.clone();
    wrong_magic[0] = b'X';
    assert!(
        load_gguf(&wrong_magic, &dev)
            .unwrap_err()
            .to_string()
            .contains("GGUF")
    );

    // An oversized metadata count or string length must not allocate or panic.
    let mut huge = g.clone();
    huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(load_gguf(&huge, &dev).is_err());

    // Inputs cargo fuzz found crashing (tests/fixtures/fuzz/), now clear errors.
    let fuzz = fixtures().join("fuzz");
    for f in std::fs::read_dir(&fuzz).expect("fuzz fixtures").flatten() {
        let bytes = std::fs::read(f.path()).unwrap();
        let name = f.file_name().to_string_lossy().to_string();
        if name.ends_with(".gguf") {
            assert!(load_gguf(&bytes, &dev).is_err(), "{name}");
        } else if name.ends_with(".safetensors") {
            assert!(read_safetensors(&bytes).is_err(), "{name}");
        }
    }

    let (st, cfg) = st_bytes();
    for cut in [0, 4, 8, 100, st.len() - 1] {
        assert!(
            load_safetensors(&st[..cut], &cfg, None, &dev).is_err(),
            "cut {cut}"
        );
    }
    let mut huge_header = st.clone();
    huge_header[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(load_safetensors(&huge_header, &cfg, None, &dev).is_err());
    assert!(load_safetensors(&st, b"{not json", None, &dev).is_err());
    let bad_arch = br#"{"model_type": "bert", "hidden_size": 8}"#;
    assert!(matches!(
        load_safetensors(&st, bad_arch, None, &dev),
        Err(ModelError::UnsupportedArchitecture(_))
    ));
}

/// Rewrite one F32 value inside a safetensors file.
fn poison(st: &[u8], name: &str, value: f32) -> Vec<u8> {
    let n = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&st[8..8 + n]).unwrap();
    let off = header[name]["data_offsets"][0].as_u64().unwrap() as usize;
    let mut out = st.to_vec();
    out[8 + n + off..8 + n + off + 4].copy_from_slice(&value.to_le_bytes());
    out
}

#[test]
fn nan_weights_and_wrong_shapes_are_refused() {
    let dev = ComputeDevice::cpu().device;
    let (st, cfg) = st_bytes();
    let bad = poison(&st, "transformer.h.0.mlp.c_fc.weight", f32::NAN);
    match load_safetensors(&bad, &cfg, None, &dev) {
        Err(ModelError::NonFinite(name)) => assert!(name.contains("c_fc")),
        other => panic!("expected NonFinite, got {other:?}"),
    }
    let mut cfg_v: serde_json::Value = serde_json::from_slice(&cfg).unwrap();
    cfg_v["n_embd"] = 48.into();
    let wrong = serde_json::to_vec(&cfg_v).unwrap();
    assert!(matches!(
        load_safetensors(&st, &wrong, None, &dev),
        Err(ModelError::Shape { .. })
    ));
}

#[test]
fn bad_prompts_give_input_errors() {
    let dev = ComputeDevice::cpu();
    let m = load_path(&fixtures().join("tiny-gpt2"), &dev.device)
        .unwrap()
        .model;
    assert!(matches!(m.tokens(&[vec![]]), Err(ModelError::Input(_))));
    assert!(matches!(
        m.tokens(&[vec![1, 2, 96]]),
        Err(ModelError::Input(_))
    ));
    assert!(matches!(
        m.tokens(&[vec![1; 33]]),
        Err(ModelError::Input(_))
    ));
    let r = pollster::block_on(patch_sweep(
        &m,
        &[1, 2, 3],
        &[1, 2],
        PatchTarget::ResidPre,
        4,
        5,
        &mut no_progress,
    ));
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("same number of tokens"), "{msg}");
    let r = pollster::block_on(patch_sweep(
        &m,
        &[1, 2],
        &[1, 3],
        PatchTarget::ResidPre,
        400,
        5,
        &mut no_progress,
    ));
    assert!(r.is_err());
}

#[test]
fn safetensors_folder_without_tokenizer_loads() {
    let dev = ComputeDevice::cpu();
    let m = load_path(&fixtures().join("tiny-llama"), &dev.device).unwrap();
    assert!(m.tokenizer.is_none());
    assert!(m.tokenizer_note.is_some());
}
