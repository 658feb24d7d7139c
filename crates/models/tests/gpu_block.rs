//! The fused Llama blocks — WebGPU's seven kernels (`transformer::gpu`) and the CPU's plain-loop
//! glue (`transformer::cpu`) — against the tensor form, and against Hugging Face on the same weights (tests/fixtures/make_gpu_block_golden.py), on what
//! the other fixtures do not reach: head widths 96 and 128
//! (two output dimensions per attention thread), more than 64 keys (several tiles of the online
//! softmax), a prefix shared by a batch, one prefix per batch row, a prefix that is a view of a
//! longer cache and one the tensor form left. Every run is counted to prove it ran fused (the
//! launch counter is process-wide: this binary has one test).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
#![cfg(not(target_family = "wasm"))]

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData, s};
use interplay_models::config::{Arch, TransformerConfig};
use interplay_models::device::{DispatchCounter, read_f32};
use interplay_models::hooks::{HookPlan, HookPoint};
use interplay_models::rng::Rng;
use interplay_models::transformer::{Attention, Block, Mlp, Norm};
use interplay_models::{ComputeDevice, KvCache, Transformer};
use interplay_testkit::*;

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    pollster::block_on(f)
}

/// A random Llama with head width `dh`, 4 query heads on 2 key/value heads, on `device` (the
/// same draws on every device).
fn model(device: &Device, dh: usize) -> Transformer {
    let config = TransformerConfig {
        arch: Arch::Llama,
        n_layers: 2,
        d_model: 96,
        n_heads: 4,
        n_kv_heads: 2,
        d_head: dh,
        d_mlp: 80,
        d_vocab: 50,
        n_ctx: 512,
        norm_eps: 1e-5,
        rope_theta: 10_000.0,
        tied_embeddings: false,
    };
    let mut rng = Rng::new(7);
    let mut w = |shape: [usize; 2], std: f64| {
        let data: Vec<f32> = (0..shape[0] * shape[1])
            .map(|_| (rng.normal() * std) as f32)
            .collect();
        Param::from_tensor(Tensor::<2>::from_data(TensorData::new(data, shape), device))
    };
    let (d, hd, kvd, m) = (96, 4 * dh, 2 * dh, 80);
    let mut blocks = Vec::new();
    for _ in 0..2 {
        blocks.push(Block {
            ln1: norm(device, 1.1),
            attn: Attention {
                w_q: w([d, hd], 0.1),
                b_q: None,
                w_k: w([d, kvd], 0.1),
                b_k: None,
                w_v: w([d, kvd], 0.1),
                b_v: None,
                w_o: w([hd, d], 0.05),
                b_o: None,
            },
            ln2: norm(device, 0.9),
            mlp: Mlp {
                w_in: w([d, m], 0.1),
                b_in: None,
                w_gate: Some(w([d, m], 0.1)),
                w_out: w([m, d], 0.1),
                b_out: None,
            },
        });
    }
    Transformer {
        embed: w([50, d], 1.0),
        pos_embed: None,
        blocks,
        ln_final: norm(device, 1.0),
        unembed: Some(w([d, 50], 0.2)),
        config,
        quantised: None,
    }
}

fn norm(device: &Device, scale: f32) -> Norm {
    let g: Vec<f32> = (0..96).map(|i| scale + 0.01 * i as f32).collect();
    Norm {
        weight: Param::from_tensor(Tensor::<1>::from_data(TensorData::new(g, [96]), device)),
        bias: None,
        eps: 1e-5,
        rms: true,
    }
}

/// `f`'s result and the kernels it launched.
fn counted<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let counter = DispatchCounter::start();
    let out = f();
    (out, counter.count())
}

/// Logits of 80 tokens; then 11 more (the kernels take rows in fours: a remainder) in a batch
/// of two rows after a shared 69-token prefix; one more token per row after that batch's own
/// caches; 11 after a 69-position view of the 80-token run's cache; 11 after a cache the tensor
/// form made (a hook inside every block). Every run but the last under `plan` (empty: fused
/// blocks where the device has them). Returns the values and each run's launches.
fn runs(m: &Transformer, plan: &HookPlan) -> (Vec<Vec<f32>>, Vec<usize>) {
    let ids: Vec<u32> = (0..80).map(|i| (i * 7 + 3) % 50).collect();
    let none = plan;
    let extend = |ids: &[Vec<u32>], prefix: Option<&KvCache>| {
        counted(|| m.extend(m.tokens(ids).unwrap(), prefix, none).unwrap())
    };
    let ((full, _, cache), n_full) = extend(std::slice::from_ref(&ids), None);
    let ((_, _, prefix), _) = extend(&[ids[..69].to_vec()], None);
    let rows = vec![
        ids[69..].to_vec(),
        ids[69..].iter().rev().copied().collect(),
    ];
    let ((batch, _, joined), n_batch) = extend(&rows, Some(&prefix));
    let ((per_row, _, _), n_per_row) = extend(&[vec![5], vec![9]], Some(&joined));
    let view = KvCache {
        k: cache
            .k
            .iter()
            .map(|k| k.clone().slice(s![.., .., 0..69, ..]))
            .collect(),
        v: cache
            .v
            .iter()
            .map(|v| v.clone().slice(s![.., .., 0..69, ..]))
            .collect(),
    };
    let ((tail, _, _), n_tail) = extend(&[ids[69..].to_vec()], Some(&view));
    let inside = HookPlan::caching([HookPoint::Z(0), HookPoint::Z(1)]);
    let (_, _, tensor_form) = m
        .extend(m.tokens(&[ids[..69].to_vec()]).unwrap(), None, &inside)
        .unwrap();
    let ((after_tensor, _, _), n_after) = extend(&[ids[69..].to_vec()], Some(&tensor_form));
    assert_eq!(joined.positions(), 80);
    let read = |t: Tensor<3>| block(read_f32(t)).unwrap();
    let out = vec![
        read(full),
        read(batch),
        read(tail),
        read(per_row),
        read(after_tensor),
        block(read_f32(joined.k[1].clone())).unwrap(),
        block(read_f32(joined.v[1].clone())).unwrap(),
    ];
    (out, vec![n_full, n_batch, n_per_row, n_tail, n_after])
}

/// One test: the launch counter and the CPU's fused-block counter are process-wide.
#[test]
fn fused_blocks_equal_the_tensor_form() {
    // The CPU's fused form (`transformer::cpu`) against the tensor form, on every run.
    let cpu = ComputeDevice::cpu().device;
    let tensor_form = HookPlan::caching([HookPoint::Z(0), HookPoint::Z(1)]);
    let mut on_cpu = Vec::new();
    for dh in [128, 96] {
        let before = interplay_models::transformer::fused_cpu_blocks();
        let (fused, _) = runs(&model(&cpu, dh), &HookPlan::default());
        // 6 runs of 2 blocks without a hook inside.
        assert_eq!(
            interplay_models::transformer::fused_cpu_blocks() - before,
            12,
            "d_head {dh}: the CPU's fused blocks did not run"
        );
        // A hook inside block 0 only: each run mixes the forms (block 1 fused after block 0's
        // tensor form, and on the caches it made).
        let before = interplay_models::transformer::fused_cpu_blocks();
        let (mixed, _) = runs(&model(&cpu, dh), &HookPlan::caching([HookPoint::Z(0)]));
        assert_eq!(
            interplay_models::transformer::fused_cpu_blocks() - before,
            6
        );
        let (tensor, _) = runs(&model(&cpu, dh), &tensor_form);
        for (form, got) in [("fused", &fused), ("mixed", &mixed)] {
            for (i, (f, t)) in got.iter().zip(&tensor).enumerate() {
                let err = max_rel_err(f, &f64s(t));
                assert!(
                    err < 1e-4,
                    "d_head {dh}, run {i}: the CPU's {form} blocks differ from the tensor form by {err:e}"
                );
            }
        }
        on_cpu.push(fused);
    }
    let Some(gpu) = wgpu_device() else {
        check_against_hf(&on_cpu[0], None, 128);
        check_against_hf(&on_cpu[1], None, 96);
        return;
    };
    for (dh, want) in [128, 96].into_iter().zip(on_cpu) {
        let (got, launches) = runs(&model(&gpu.device, dh), &HookPlan::default());
        // The continuation after a prefix is the full run's last 11 positions.
        let v = 50;
        assert!(max_rel_err(&want[1][..11 * v], &f64s(&want[0][69 * v..])) < 1e-4);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let err = max_rel_err(g, &f64s(w));
            assert!(
                err < 1e-4,
                "d_head {dh}, run {i}: WebGPU differs from the CPU by {err:e}"
            );
        }
        check_against_hf(&want, Some(&got), dh);
        // Fused, two blocks are at most 16 launches (+ embedding, final norm, unembedding);
        // in the tensor form they would be over 100.
        for (i, n) in launches.into_iter().enumerate() {
            assert!(n < 50, "d_head {dh}, run {i}: {n} launches: not fused");
        }
    }
}

/// The CPU's runs (and WebGPU's) against Hugging Face on the same weights
/// (make_gpu_block_golden.py).
fn check_against_hf(want: &[Vec<f32>], got: Option<&Vec<Vec<f32>>>, dh: usize) {
    {
        let g = golden("gpu_block");
        let case = g["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["d_head"] == dh)
            .unwrap();
        let rows = |v: &serde_json::Value, from: usize| -> Vec<f64> {
            v.as_array().unwrap()[from..]
                .iter()
                .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
                .collect()
        };
        let flat = |v: &serde_json::Value| -> Vec<f64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let (a, a_tail, b_tail) = (
            rows(&case["logits_a"], 0),
            rows(&case["logits_a"], 69),
            rows(&case["logits_b"], 69),
        );
        let batch: Vec<f64> = a_tail.iter().chain(&b_tail).copied().collect();
        let next: Vec<f64> = flat(&case["next_a"])
            .into_iter()
            .chain(flat(&case["next_b"]))
            .collect();
        let devices = [("CPU", Some(want)), ("WebGPU", got.map(Vec::as_slice))];
        for (device, out) in devices.into_iter().filter_map(|(n, o)| Some((n, o?))) {
            for (run, hf) in [(0, &a), (1, &batch), (2, &a_tail), (3, &next), (4, &a_tail)] {
                assert_eq!(out[run].len(), hf.len(), "d_head {dh}, run {run}: length");
                let err = max_rel_err(&out[run], hf);
                assert!(
                    err < 1e-4,
                    "d_head {dh}, run {run} on {device}: differs from Hugging Face by {err:e}"
                );
            }
        }
    }
}

fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}
