//! On WebGPU a Llama or GPT-2 block that no hook looks inside is seven kernel launches
//! (dispatches), where its tensor form is ~56: the architecture, counted, not timed. Its own test binary, because
//! the launch counter is process-wide and tests in one binary run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
#![cfg(not(target_family = "wasm"))]

use interplay_models::device::{DispatchCounter, read_f32};
use interplay_models::hooks::{HookPlan, HookPoint};
use interplay_models::load::load_path;
use interplay_models::{KvCache, Transformer};
use interplay_testkit::*;

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    pollster::block_on(f)
}

/// Dispatches of `f`'s launches (the result is read back after counting).
fn dispatched(f: impl FnOnce() -> burn::tensor::Tensor<3>) -> usize {
    let counter = DispatchCounter::start();
    let out = f();
    let n = counter.count();
    block(read_f32(out)).unwrap();
    n
}

#[test]
fn blocks_are_seven_dispatches_on_wgpu() {
    let Some(gpu) = wgpu_device() else {
        return;
    };
    for name in ["tiny-llama", "tiny-gpt2"] {
        count_blocks(name, &gpu.device);
    }
}

fn count_blocks(name: &str, device: &burn::tensor::Device) {
    let load = || load_path(&fixtures().join(name), device).unwrap().model;
    let two = load();
    let mut one = load();
    one.blocks.truncate(1);
    one.config.n_layers = 1;
    let ids = ids(&golden(name)["prompt"]);
    let (head, tail) = ids.split_at(ids.len() - 1);
    let forward = |m: &Transformer, plan: &HookPlan| {
        dispatched(|| {
            m.run_with_hooks(m.tokens(std::slice::from_ref(&ids)).unwrap(), plan)
                .0
        })
    };
    // One token after a cached prefix: a generation step.
    let step = |m: &Transformer| {
        let (_, _, cache): (_, _, KvCache) = m
            .extend(
                m.tokens(&[head.to_vec()]).unwrap(),
                None,
                &HookPlan::default(),
            )
            .unwrap();
        dispatched(|| {
            m.extend(
                m.tokens(&[tail.to_vec()]).unwrap(),
                Some(&cache),
                &HookPlan::default(),
            )
            .unwrap()
            .0
        })
    };
    let none = HookPlan::default();
    // First launches compile kernels (and tune matmuls): warm both up.
    for m in [&two, &one] {
        forward(m, &none);
        step(m);
    }
    let per_layer = forward(&two, &none) - forward(&one, &none);
    eprintln!("{name} on wgpu: {per_layer} dispatches per layer in a forward");
    assert_eq!(per_layer, 7, "{name}: a fused block is seven kernels");
    let per_step = step(&two) - step(&one);
    eprintln!("{name} on wgpu: {per_step} dispatches per layer in a generation step");
    assert_eq!(
        per_step, 8,
        "{name}: a generation step adds the cache's join"
    );

    // A hook inside a block keeps that block in the tensor form (it reads or writes there); the
    // residual entering or leaving it does not.
    let inside = HookPlan::caching([HookPoint::Z(1)]);
    let edges = HookPlan::caching([HookPoint::ResidPre(1), HookPoint::ResidPost(1)]);
    let fused = forward(&two, &none);
    assert!(forward(&two, &inside) > fused + 20, "{name}");
    assert!(forward(&two, &edges) < fused + 3, "{name}");
}
