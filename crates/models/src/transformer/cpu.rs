//! A Llama block on the CPU with everything between its products done in plain loops over the
//! values: RMSNorm, RoPE, the causal attention of each query (scores, softmax, the sum over
//! values) and `silu(gate) · up`, with the residual adds. The products stay those of
//! [`super::linear`] (tiles, the quantised copy, gemm). The tensor form spends ~40 tensor ops
//! per block between its products, each allocating and, in the page, dispatched through Burn's
//! generic element-wise kernels: a quarter of SmolLM2's 14-token forward in one page thread.
//! Here a block is 7 products, 3 small tensors built from values, and one `cat` of the cache.
//!
//! A block with a hook inside keeps the tensor form (every device's reference, checked against
//! Hugging Face); the numbers here are the tensor form's up to the order of f32 sums
//! (tests/gpu_block.rs compares both with each other and with Hugging Face).

use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::{Tensor, TensorData};

use super::{Block, linear, quant, rows};
use crate::config::TransformerConfig;

/// Blocks computed here since the process started (tests and the bench read it).
static FUSED: AtomicUsize = AtomicUsize::new(0);

/// How many blocks took the fused CPU form so far in this process.
pub fn fused_blocks() -> usize {
    FUSED.load(Ordering::Relaxed)
}

/// A dense CPU tensor's values, copied out (`None`: not dense f32 on the CPU).
fn owned<const D: usize>(t: &Tensor<D>) -> Option<Vec<f32>> {
    let n = t.dims().iter().product();
    let p = rows::dense(t)?;
    Some(rows::values(&p, n)?.to_vec())
}

/// `x / sqrt(mean(x²) + eps) · g` per row of `d` values (the tensor form's order).
fn rms_norm(x: &[f32], g: &[f32], d: usize, eps: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(d) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let r = (ms + eps as f32).sqrt();
        out.extend(row.iter().zip(g).map(|(v, w)| v / r * w));
    }
    out
}

/// RoPE in place, rotate-half layout (as Hugging Face): per head of `dh` values,
/// `t · cos + (−x₂, x₁) · sin` with the tables of the row's position.
///
/// # Shapes
/// - `x`: `[batch, pos, heads, dh]`; `cos`, `sin`: `[pos, dh]`.
fn rope(x: &mut [f32], cos: &[f32], sin: &[f32], p: usize, heads: usize, dh: usize) {
    let half = dh / 2;
    for (r, row) in x.chunks_exact_mut(heads * dh).enumerate() {
        let i = r % p;
        let (c, s) = (&cos[i * dh..(i + 1) * dh], &sin[i * dh..(i + 1) * dh]);
        for t in row.chunks_exact_mut(dh) {
            let (x1, x2) = t.split_at_mut(half);
            for j in 0..half {
                let (a, b) = (x1[j], x2[j]);
                x1[j] = a * c[j] + -b * s[j];
                x2[j] = b * c[half + j] + a * s[half + j];
            }
        }
    }
}

/// `[batch, pos, heads, dh]` → `[batch, heads, pos, dh]` (the key/value cache's layout).
fn heads_first(x: &[f32], b: usize, p: usize, heads: usize, dh: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    for bi in 0..b {
        for i in 0..p {
            for hi in 0..heads {
                let from = ((bi * p + i) * heads + hi) * dh;
                let to = ((bi * heads + hi) * p + i) * dh;
                out[to..to + dh].copy_from_slice(&x[from..from + dh]);
            }
        }
    }
    out
}

/// Causal grouped-query attention: for each batch row, query head and query `i` (absolute
/// position `p0 + i`), softmax over keys `0..=p0 + i` of `q·k / √dh`, then the pattern's sum of
/// values. Query head `hi` reads key/value head `hi / g` (HF's `repeat_kv`).
///
/// # Shapes
/// - `q`: `[batch, pos, heads, dh]`; `k`, `v`: `[batch, kv_heads, p0 + pos, dh]`
/// - returns `z`, `[batch, pos, heads, dh]`.
#[allow(clippy::too_many_arguments)]
fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (b, p, p0): (usize, usize, usize),
    h: usize,
    hkv: usize,
    dh: usize,
) -> Vec<f32> {
    let total = p0 + p;
    let g = h / hkv;
    let scale = (dh as f32).sqrt();
    let units: Vec<(usize, usize)> = (0..b)
        .flat_map(|bi| (0..h).map(move |hi| (bi, hi)))
        .collect();
    // Each (batch row, head) on its own; on the CPU's threads when there is enough of them.
    let one = |&(bi, hi): &(usize, usize)| {
        let base = (bi * hkv + hi / g) * total * dh;
        let (kh, vh) = (&k[base..base + total * dh], &v[base..base + total * dh]);
        let mut out = vec![0.0f32; p * dh];
        let mut s = vec![0.0f32; total];
        for i in 0..p {
            let qi = &q[((bi * p + i) * h + hi) * dh..][..dh];
            let seen = p0 + i + 1;
            let mut max = f32::NEG_INFINITY;
            for (j, sj) in s[..seen].iter_mut().enumerate() {
                let kj = &kh[j * dh..(j + 1) * dh];
                *sj = qi.iter().zip(kj).map(|(a, c)| a * c).sum::<f32>() / scale;
                max = max.max(*sj);
            }
            let mut sum = 0.0f32;
            for sj in &mut s[..seen] {
                *sj = (*sj - max).exp();
                sum += *sj;
            }
            let zi = &mut out[i * dh..(i + 1) * dh];
            for (j, &e) in s[..seen].iter().enumerate() {
                let w = e / sum;
                for (z, vj) in zi.iter_mut().zip(&vh[j * dh..(j + 1) * dh]) {
                    *z += w * vj;
                }
            }
        }
        out
    };
    let parts = if crate::par::threads() > 1 && b * h * p * total * dh >= 1 << 18 {
        crate::par::map(&units, one)
    } else {
        units.iter().map(one).collect()
    };
    let mut z = vec![0.0f32; b * p * h * dh];
    for (&(bi, hi), part) in units.iter().zip(parts) {
        for i in 0..p {
            z[((bi * p + i) * h + hi) * dh..][..dh].copy_from_slice(&part[i * dh..(i + 1) * dh]);
        }
    }
    z
}

/// Block `block` on `resid` in the fused CPU form, or `None` where it has none (not a Llama
/// block without biases, not dense f32 on the CPU, e.g. an autodiff tensor, weights or a prefix
/// whose shapes disagree with the config or the run) and the caller runs the tensor form.
/// `rope` is the run's (cos, sin) for positions from `offset`, the prefix's length; `kept` the
/// block's quantised copies.
///
/// # Shapes
/// - `resid`: `[batch, pos, d_model]`; `prefix`: keys/values of earlier positions,
///   `[batch or 1, n_kv_heads, pos0, d_head]`; `rope`: `[1, pos, 1, d_head]` each;
/// - returns `([batch, pos, d_model], k, v)` with k, v the prefix's and the run's,
///   `[batch, n_kv_heads, pos0 + pos, d_head]`.
pub(super) fn block(
    cfg: &TransformerConfig,
    block: &Block,
    resid: &Tensor<3>,
    prefix: Option<&(Tensor<4>, Tensor<4>)>,
    rope_tables: Option<&(Tensor<4>, Tensor<4>)>,
    offset: usize,
    kept: Option<&quant::QuantBlock>,
) -> Option<(Tensor<3>, Tensor<4>, Tensor<4>)> {
    let (a, m) = (&block.attn, &block.mlp);
    let llama = block.is_plain_llama(cfg);
    let w_gate = m.w_gate.as_ref()?;
    let (h, hkv, dh, d) = (cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.d_model);
    let [b, p, _] = resid.dims();
    if !llama || hkv == 0 || !h.is_multiple_of(hkv) || !dh.is_multiple_of(2) || b * p == 0 {
        return None;
    }
    // The loops index by the config's shapes: anything else is left to the tensor form (whose
    // tensor ops check what they are given).
    let mlp = cfg.d_mlp;
    let shapes = [
        (a.w_q.val().dims(), [d, h * dh]),
        (a.w_k.val().dims(), [d, hkv * dh]),
        (a.w_v.val().dims(), [d, hkv * dh]),
        (a.w_o.val().dims(), [h * dh, d]),
        (w_gate.val().dims(), [d, mlp]),
        (m.w_in.val().dims(), [d, mlp]),
        (m.w_out.val().dims(), [mlp, d]),
    ];
    let norms = [block.ln1.weight.val().dims(), block.ln2.weight.val().dims()];
    let prefix_fits = prefix.is_none_or(|(pk, pv)| {
        let [pb, ph, p0, pd] = pk.dims();
        pv.dims() == pk.dims() && (pb == 1 || pb == b) && ph == hkv && pd == dh && p0 == offset
    });
    if resid.dims()[2] != d
        || shapes.iter().any(|(got, want)| got != want)
        || norms.iter().any(|n| *n != [d])
        || !prefix_fits
        || (prefix.is_none() && offset != 0)
    {
        return None;
    }
    let (cos, sin) = rope_tables?;
    let (cos, sin) = (owned(cos)?, owned(sin)?);
    let x = owned(resid)?;
    let (g1, g2) = (
        owned(&block.ln1.weight.val())?,
        owned(&block.ln2.weight.val())?,
    );
    let device = resid.device();
    let tensor = |v: Vec<f32>, cols: usize| {
        Tensor::<3>::from_data(TensorData::new(v, [b, p, cols]), &device)
    };
    let kept = |f: fn(&quant::QuantBlock) -> &Option<quant::QuantMatrix>| {
        kept.and_then(|qb| f(qb).as_ref())
    };

    let xn = tensor(rms_norm(&x, &g1, d, block.ln1.eps), d);
    let mut q = owned(&linear(xn.clone(), &a.w_q, &None, kept(|b| &b.q)))?;
    let mut k = owned(&linear(xn.clone(), &a.w_k, &None, kept(|b| &b.k)))?;
    let v = owned(&linear(xn, &a.w_v, &None, kept(|b| &b.v)))?;
    rope(&mut q, &cos, &sin, p, h, dh);
    rope(&mut k, &cos, &sin, p, hkv, dh);
    let cache = |t: Vec<f32>| {
        Tensor::<4>::from_data(
            TensorData::new(heads_first(&t, b, p, hkv, dh), [b, hkv, p, dh]),
            &device,
        )
    };
    let (mut k_all, mut v_all) = (cache(k), cache(v));
    let mut p0 = 0;
    if let Some((pk, pv)) = prefix
        && pk.dims()[2] > 0
    {
        p0 = pk.dims()[2];
        k_all = Tensor::cat(vec![pk.clone().expand([b, hkv, p0, dh]), k_all], 2);
        v_all = Tensor::cat(vec![pv.clone().expand([b, hkv, p0, dh]), v_all], 2);
    }
    let z = attention(&q, &owned(&k_all)?, &owned(&v_all)?, (b, p, p0), h, hkv, dh);
    let o = owned(&linear(tensor(z, h * dh), &a.w_o, &None, kept(|b| &b.o)))?;
    let mid: Vec<f32> = x.iter().zip(&o).map(|(r, a)| r + a).collect();

    let xn = tensor(rms_norm(&mid, &g2, d, block.ln2.eps), d);
    let gate = owned(&linear(xn.clone(), w_gate, &None, kept(|b| &b.gate)))?;
    let up = owned(&linear(xn, &m.w_in, &None, kept(|b| &b.up)))?;
    // silu(g) · u, silu(g) = g · sigmoid(g).
    let post: Vec<f32> = gate
        .iter()
        .zip(&up)
        .map(|(g, u)| g * (1.0 / (1.0 + (-g).exp())) * u)
        .collect();
    let down = owned(&linear(
        tensor(post, cfg.d_mlp),
        &m.w_out,
        &None,
        kept(|b| &b.down),
    ))?;
    let out: Vec<f32> = mid.iter().zip(&down).map(|(r, a)| r + a).collect();
    FUSED.fetch_add(1, Ordering::Relaxed);
    Some((tensor(out, d), k_all, v_all))
}
