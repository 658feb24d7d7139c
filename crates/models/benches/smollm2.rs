//! Benchmark (prints figures, asserts nothing): SmolLM2-135M-Instruct on the native CPU device.
//! forward on the 14-token IOI prompt; forward caching every hook; the full resid_pre patching
//! sweep (31 × 14); greedy generation of 32 tokens after it (key/value cache, one readback per
//! token). `cargo xtask bench` prints PyTorch's figures (tests/bench/peer_smollm2.py)
//! beside these.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Instant;

use interplay_models::device::read_f32;
use interplay_models::generate::{Sampling, generate};
use interplay_models::hooks::{HookPlan, HookPoint};
use interplay_models::load::load_path;
use interplay_models::patching::{PatchTarget, no_progress, patch_sweep};
use interplay_models::{Backend, ComputeDevice};

fn median_ms(mut f: impl FnMut(), reps: usize) -> f64 {
    f(); // warm-up
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[t.len() / 2]
}

fn all_hooks(n_layers: usize) -> Vec<HookPoint> {
    let mut v = vec![HookPoint::Embed, HookPoint::LnFinal];
    for l in 0..n_layers {
        v.extend([
            HookPoint::ResidPre(l),
            HookPoint::ResidMid(l),
            HookPoint::ResidPost(l),
            HookPoint::AttnOut(l),
            HookPoint::MlpOut(l),
            HookPoint::Q(l),
            HookPoint::K(l),
            HookPoint::V(l),
            HookPoint::Z(l),
            HookPoint::AttnScores(l),
            HookPoint::Pattern(l),
            HookPoint::MlpPre(l),
            HookPoint::MlpPost(l),
        ]);
    }
    v
}

fn main() {
    // INTERPLAY_BENCH_MODEL: another copy of SmolLM2 (a GGUF, or a safetensors folder such as
    // tests/bench/random_smollm2.py writes on a machine that cannot fetch the weights).
    let path = std::env::var_os("INTERPLAY_BENCH_MODEL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            interplay_models::registry::smollm2_path(
                &std::path::PathBuf::from(
                    std::env::var("CARGO_MANIFEST_DIR")
                        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
                )
                .join("../.."),
            )
        });
    if !path.exists() {
        println!(
            "SmolLM2 missing at {}: run `cargo xtask fetch-models`",
            path.display()
        );
        return;
    }
    let backend: Backend = std::env::var("INTERPLAY_BENCH_DEVICE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(Backend::Cpu);
    let dev = pollster::block_on(ComputeDevice::init(backend)).expect("device");
    let t = Instant::now();
    let loaded = load_path(&path, &dev.device).expect("load");
    println!(
        "ours  [{}] load {}: {:.0} ms",
        dev.backend,
        if path.is_dir() {
            "safetensors"
        } else {
            "GGUF + dequantise"
        },
        t.elapsed().as_secs_f64() * 1e3
    );
    let m = &loaded.model;
    let tk = loaded.tokenizer.as_ref().expect("tokenizer");
    let clean = tk
        .encode("When Mary and John went to the store, John gave a drink to")
        .expect("ids");
    let corrupt = tk
        .encode("When Mary and John went to the store, Mary gave a drink to")
        .expect("ids");
    let (mary, john) = (
        tk.encode(" Mary").expect("id")[0],
        tk.encode(" John").expect("id")[0],
    );
    let tokens = m.tokens(std::slice::from_ref(&clean)).expect("tokens");
    #[cfg(feature = "webgpu")]
    if dev.backend == Backend::Wgpu {
        // Hardware-independent: kernels launched (one dispatch each on wgpu).
        use interplay_models::device::DispatchCounter;
        let _ = pollster::block_on(read_f32(m.forward(tokens.clone()))); // warm-up
        let count = DispatchCounter::start();
        let _ = pollster::block_on(read_f32(m.forward(tokens.clone())));
        let fwd = count.count();
        drop(count);
        let decode = |n: usize| {
            let count = DispatchCounter::start();
            let g = pollster::block_on(generate(m, &clean, n, &[], Sampling::Greedy));
            assert_eq!(g.expect("generates").tokens.len(), n);
            count.count()
        };
        let (one, five) = (decode(1), decode(5));
        println!(
            "ours  [{}] dispatches: forward {fwd} ({:.1} per layer), {:.1} per generated token",
            dev.backend,
            fwd as f64 / m.config.n_layers as f64,
            (five - one) as f64 / 4.0
        );
    }
    let fwd = median_ms(
        || {
            let _ = pollster::block_on(read_f32(m.forward(tokens.clone())));
        },
        10,
    );
    let plan = HookPlan::caching(all_hooks(m.config.n_layers));
    let cached = median_ms(
        || {
            let (logits, cache) = m.run_with_hooks(tokens.clone(), &plan);
            let _ = pollster::block_on(read_f32(logits));
            let _ =
                pollster::block_on(read_f32(cache.r3(HookPoint::ResidPre(29)).expect("cached")));
        },
        5,
    );
    let sweep = median_ms(
        || {
            let _ = pollster::block_on(patch_sweep(
                m,
                &clean,
                &corrupt,
                PatchTarget::ResidPre,
                mary,
                john,
                &mut no_progress,
            ));
        },
        3,
    );
    println!(
        "ours  [{}] forward, {} tokens: {fwd:.1} ms",
        dev.backend,
        clean.len()
    );
    println!(
        "ours  [{}] forward caching every hook: {cached:.1} ms",
        dev.backend
    );
    println!(
        "ours  [{}] resid_pre patching sweep (31 × {}): {:.2} s",
        dev.backend,
        clean.len(),
        sweep / 1e3
    );
    let new_tokens = 32;
    let gen_ms = median_ms(
        || {
            let g = pollster::block_on(generate(m, &clean, new_tokens, &[], Sampling::Greedy));
            assert_eq!(g.expect("generates").tokens.len(), new_tokens);
        },
        3,
    );
    println!(
        "ours  [{}] greedy generation, {new_tokens} tokens after {} (key/value cache): {:.2} s, {:.1} tokens/s",
        dev.backend,
        clean.len(),
        gen_ms / 1e3,
        new_tokens as f64 / (gen_ms / 1e3)
    );
}
