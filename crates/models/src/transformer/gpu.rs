//! A transformer block on WebGPU in seven kernel launches, eight after a cached prefix, where
//! the tensor form takes ~56 (every tensor op is its own dispatch: Burn's `fusion` is off).
//! Llama (RMSNorm, RoPE, grouped-query attention, SwiGLU):
//!
//! 1–3. `norm_heads` ×3: RMSNorm folded into the projection (`x·(g ⊙ W) / rms(x)` reads each
//!      row once for both) for q, k and v; q and k leave rotated (RoPE) and laid out as
//!      `[batch, heads, pos, d_head]`, the key/value cache's layout;
//! (+)  `join`: after a prefix, its keys/values and the run's into one cache;
//! 4.   `attention`: scores, the causal mask, softmax and the pattern's sum over values per
//!      query and head (an online softmax over tiles of 64 keys: no score matrix is written);
//! 5.   `linear_add`: the output projection added to the residual;
//! 6.   `norm_gate_up`: RMSNorm, the gate and up projections and `silu(gate) · up`;
//! 7.   `linear_add`: the down projection added to the residual.
//!
//! GPT-2 (LayerNorm, biases, GELU) is the same seven with `ln_linear` (LayerNorm + projection
//! + bias) for q, k, v and for the MLP's first half with GELU, and biases in `linear_add`.
//!
//! A block with a hook inside keeps the tensor form (that is where activations are read and
//! written); so do blocks of other shapes (a Llama with biases, head width over 128). The
//! numbers are the tensor form's up to the order of f32 sums (the goldens check both against
//! Hugging Face at 1e-4).

use burn::backend::Cube;
use burn::backend::wgpu::CubeTensor;
use burn::tensor::{DType, Tensor};
use cubecl::prelude::{CubeCount, CubeDim};

use super::Block;
use crate::config::{Arch, TransformerConfig};

/// Threads per workgroup (the attention kernel's tile of keys is one per thread).
const THREADS: u32 = 64;
/// Most workgroups along one axis of a dispatch (WebGPU's guaranteed limit); the linear kernels
/// stride over anything larger.
const MAX_GROUPS: usize = 65_535;
/// Rows per thread in the projections (each weight read serves them all).
const TILE: usize = 4;

/// The kernels, in CubeCL's Rust subset (compiled to WGSL at first launch). Literals carry
/// their type.
mod kernels {
    use cubecl::prelude::*;

    /// The row of `x` that row `r0 + j` of a tile reads: past the last row, the last again (its
    /// results are never written).
    #[cube]
    fn tile_row(r0: usize, j: usize, rows: usize) -> usize {
        let mut r = r0 + j;
        if r >= rows {
            r = rows - 1usize;
        }
        r
    }

    /// RMSNorm of each row of `x` and its projection onto `heads` heads of `dh`, rotated by
    /// RoPE when `rope` is 1. Each thread owns a pair of columns `(i, i + dh/2)` of one head
    /// (RoPE's rotate-half pairs) for a tile of `tile` rows, so each weight read serves them
    /// all, and strides by `stride` threads.
    ///
    /// # Shapes
    /// - `x`: `[rows, d]` with rows = batch · p (position fastest); `g`: `[d]`;
    /// - `w`: `[d, heads · dh]`; `cos`, `sin`: `[p, dh]` (read only with `rope`);
    /// - `out`: `[batch, heads, p, dh]`.
    #[cube(launch)]
    #[allow(clippy::too_many_arguments, clippy::manual_div_ceil)]
    pub fn norm_heads(
        x: &[f32],
        g: &[f32],
        w: &[f32],
        cos: &[f32],
        sin: &[f32],
        out: &mut [f32],
        rows: usize,
        d: usize,
        heads: usize,
        dh: usize,
        p: usize,
        dim: f32,
        eps: f32,
        rope: u32,
        stride: usize,
        #[comptime] tile: usize,
    ) {
        let half = dh / 2usize;
        let per_tile = heads * half;
        let n = heads * dh;
        let tiles = (rows + tile - 1usize) / tile;
        let mut ss = Array::<f32>::new(tile);
        let mut a1 = Array::<f32>::new(tile);
        let mut a2 = Array::<f32>::new(tile);
        let mut t = ABSOLUTE_POS;
        while t < tiles * per_tile {
            let r0 = (t / per_tile) * tile;
            let hd = (t % per_tile) / half;
            let i = t % half;
            let c1 = hd * dh + i;
            let c2 = c1 + half;
            #[unroll]
            for j in 0..tile {
                ss[j] = 0.0f32;
                a1[j] = 0.0f32;
                a2[j] = 0.0f32;
            }
            for k in 0..d {
                let w1 = w[k * n + c1] * g[k];
                let w2 = w[k * n + c2] * g[k];
                #[unroll]
                for j in 0..tile {
                    let xv = x[tile_row(r0, j, rows) * d + k];
                    ss[j] += xv * xv;
                    a1[j] += xv * w1;
                    a2[j] += xv * w2;
                }
            }
            #[unroll]
            for j in 0..tile {
                let r = r0 + j;
                if r < rows {
                    let inv = 1.0f32 / (ss[j] / dim + eps).sqrt();
                    let mut y1 = a1[j] * inv;
                    let mut y2 = a2[j] * inv;
                    let pos = r % p;
                    if rope == 1u32 {
                        // HF's `q·cos + rotate_half(q)·sin`, rotate_half = (-x2, x1).
                        let r1 = y1 * cos[pos * dh + i] - y2 * sin[pos * dh + i];
                        let r2 = y2 * cos[pos * dh + i + half] + y1 * sin[pos * dh + i + half];
                        y1 = r1;
                        y2 = r2;
                    }
                    let o = (((r / p) * heads + hd) * p + pos) * dh;
                    out[o + i] = y1;
                    out[o + i + half] = y2;
                }
            }
            t += stride;
        }
    }

    /// RMSNorm of each row of `x`, then `silu(x̂·W_gate) · (x̂·W_up)`; a thread owns one column
    /// of a tile of rows.
    ///
    /// # Shapes
    /// - `x`: `[rows, d]`; `g`: `[d]`; `wg`, `wu`: `[d, m]`; `out`: `[rows, m]`.
    #[cube(launch)]
    #[allow(clippy::too_many_arguments, clippy::manual_div_ceil)]
    pub fn norm_gate_up(
        x: &[f32],
        g: &[f32],
        wg: &[f32],
        wu: &[f32],
        out: &mut [f32],
        rows: usize,
        d: usize,
        m: usize,
        dim: f32,
        eps: f32,
        stride: usize,
        #[comptime] tile: usize,
    ) {
        let tiles = (rows + tile - 1usize) / tile;
        let mut ss = Array::<f32>::new(tile);
        let mut ag = Array::<f32>::new(tile);
        let mut au = Array::<f32>::new(tile);
        let mut t = ABSOLUTE_POS;
        while t < tiles * m {
            let r0 = (t / m) * tile;
            let c = t % m;
            #[unroll]
            for j in 0..tile {
                ss[j] = 0.0f32;
                ag[j] = 0.0f32;
                au[j] = 0.0f32;
            }
            for k in 0..d {
                let w1 = wg[k * m + c] * g[k];
                let w2 = wu[k * m + c] * g[k];
                #[unroll]
                for j in 0..tile {
                    let xv = x[tile_row(r0, j, rows) * d + k];
                    ss[j] += xv * xv;
                    ag[j] += xv * w1;
                    au[j] += xv * w2;
                }
            }
            #[unroll]
            for j in 0..tile {
                let r = r0 + j;
                if r < rows {
                    let inv = 1.0f32 / (ss[j] / dim + eps).sqrt();
                    let gate = ag[j] * inv;
                    out[r * m + c] = gate / (1.0f32 + (0.0f32 - gate).exp()) * (au[j] * inv);
                }
            }
            t += stride;
        }
    }

    /// `resid + (x·W + bias)` (the bias read only when `has_bias` is 1); a thread owns one
    /// column of a tile of rows.
    ///
    /// # Shapes
    /// - `x`: `[rows, k]`; `w`: `[k, n]`; `bias`: `[n]`; `resid`, `out`: `[rows, n]`.
    #[cube(launch)]
    #[allow(clippy::too_many_arguments, clippy::manual_div_ceil)]
    pub fn linear_add(
        x: &[f32],
        w: &[f32],
        bias: &[f32],
        resid: &[f32],
        out: &mut [f32],
        rows: usize,
        k: usize,
        n: usize,
        has_bias: u32,
        stride: usize,
        #[comptime] tile: usize,
    ) {
        let tiles = (rows + tile - 1usize) / tile;
        let mut a = Array::<f32>::new(tile);
        let mut t = ABSOLUTE_POS;
        while t < tiles * n {
            let r0 = (t / n) * tile;
            let c = t % n;
            #[unroll]
            for j in 0..tile {
                a[j] = 0.0f32;
            }
            for kk in 0..k {
                let wv = w[kk * n + c];
                #[unroll]
                for j in 0..tile {
                    a[j] += x[tile_row(r0, j, rows) * k + kk] * wv;
                }
            }
            #[unroll]
            for j in 0..tile {
                let r = r0 + j;
                if r < rows {
                    let mut y = a[j];
                    if has_bias == 1u32 {
                        y += bias[c];
                    }
                    out[r * n + c] = resid[r * n + c] + y;
                }
            }
            t += stride;
        }
    }

    /// GPT-2's LayerNorm of each row of `x` and a projection with bias, `LN(x)·W + bias`:
    /// laid out as heads (`[batch, n / dh, p, dh]`, for q, k, v) when `heads` is 1, else as rows
    /// through GELU (tanh form; the MLP's first half). The mean takes its own pass over the row,
    /// as Hugging Face's LayerNorm does, so the variance is of centred values. A thread owns one
    /// column of a tile of rows.
    ///
    /// # Shapes
    /// - `x`: `[rows, d]` (rows = batch · p); `g`, `lb`: `[d]`, the norm's scale and shift;
    /// - `w`: `[d, n]`; `bias`: `[n]`; `out`: as above.
    #[cube(launch)]
    #[allow(clippy::too_many_arguments, clippy::manual_div_ceil)]
    pub fn ln_linear(
        x: &[f32],
        g: &[f32],
        lb: &[f32],
        w: &[f32],
        bias: &[f32],
        out: &mut [f32],
        rows: usize,
        d: usize,
        n: usize,
        dh: usize,
        p: usize,
        dim: f32,
        eps: f32,
        heads: u32,
        stride: usize,
        #[comptime] tile: usize,
    ) {
        let tiles = (rows + tile - 1usize) / tile;
        let mut mu = Array::<f32>::new(tile);
        let mut ss = Array::<f32>::new(tile);
        let mut a = Array::<f32>::new(tile);
        let mut t = ABSOLUTE_POS;
        while t < tiles * n {
            let r0 = (t / n) * tile;
            let c = t % n;
            #[unroll]
            for j in 0..tile {
                mu[j] = 0.0f32;
                ss[j] = 0.0f32;
                a[j] = 0.0f32;
            }
            for k in 0..d {
                #[unroll]
                for j in 0..tile {
                    mu[j] += x[tile_row(r0, j, rows) * d + k];
                }
            }
            #[unroll]
            for j in 0..tile {
                mu[j] /= dim;
            }
            // Σ_k LN(x)_k W_kc = inv · Σ_k (x_k − μ) g_k W_kc + Σ_k shift_k W_kc.
            let mut shift = 0.0f32;
            for k in 0..d {
                let wv = w[k * n + c];
                let gw = g[k] * wv;
                shift += lb[k] * wv;
                #[unroll]
                for j in 0..tile {
                    let xc = x[tile_row(r0, j, rows) * d + k] - mu[j];
                    ss[j] += xc * xc;
                    a[j] += xc * gw;
                }
            }
            #[unroll]
            for j in 0..tile {
                let r = r0 + j;
                if r < rows {
                    let inv = 1.0f32 / (ss[j] / dim + eps).sqrt();
                    let mut y = a[j] * inv + shift + bias[c];
                    if heads == 1u32 {
                        let o = (((r / p) * (n / dh) + c / dh) * p + r % p) * dh + c % dh;
                        out[o] = y;
                    } else {
                        // tanh(u) = 1 − 2 / (e^{2u} + 1): no overflow to inf/inf.
                        let u = 0.797_884_6f32 * (y + 0.044_715f32 * y * y * y);
                        let th = 1.0f32 - 2.0f32 / ((2.0f32 * u).exp() + 1.0f32);
                        y = 0.5f32 * y * (1.0f32 + th);
                        out[r * n + c] = y;
                    }
                }
            }
            t += stride;
        }
    }

    /// The prefix's keys and values, then the run's: one cache per layer, as the tensor form's
    /// concatenation. Each thread strides over entries of both.
    ///
    /// # Shapes
    /// - `pk`, `pv`: `[1 or batch, kv_heads, p0, dh]`, batch, head and position strides
    ///   `pre_batch` (0 for one shared prefix), `pre_head` and `pre_pos`, dimensions dense;
    /// - `k`, `v`: `[batch, kv_heads, p, dh]`; `kc`, `vc`: `[batch, kv_heads, p0 + p, dh]`.
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        pk: &[f32],
        pv: &[f32],
        k: &[f32],
        v: &[f32],
        kc: &mut [f32],
        vc: &mut [f32],
        len: usize,
        kv_heads: usize,
        p: usize,
        p0: usize,
        dh: usize,
        pre_batch: usize,
        pre_head: usize,
        pre_pos: usize,
        stride: usize,
    ) {
        let total = p0 + p;
        let mut t = ABSOLUTE_POS;
        while t < len {
            let e = t % dh;
            let j = (t / dh) % total;
            let bh = t / (dh * total);
            if j < p0 {
                let at = (bh / kv_heads) * pre_batch + (bh % kv_heads) * pre_head + j * pre_pos + e;
                kc[t] = pk[at];
                vc[t] = pv[at];
            } else {
                let at = (bh * p + j - p0) * dh + e;
                kc[t] = k[at];
                vc[t] = v[at];
            }
            t += stride;
        }
    }

    /// Causal attention for one query (`CUBE_POS_X`) of one head of one batch row
    /// (`CUBE_POS_Y` = batch · heads + head), 64 threads: each scores one key of a tile of 64
    /// (shared memory), then every thread folds the tile into its running softmax (max, sum)
    /// and its one or two dimensions of the output. The query at run position `qi` sees keys
    /// `0..=p0 + qi` (the prefix's `p0`, then the run's).
    ///
    /// # Shapes
    /// - `q`: `[batch, heads, p, dh]`; `k`, `v`: `[batch, kv_heads, p0 + p, dh]`;
    /// - `z`: `[batch, p, heads, dh]`. `dh` ≤ 128.
    #[cube(launch)]
    #[allow(clippy::too_many_arguments, clippy::manual_div_ceil)]
    pub fn attention(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        z: &mut [f32],
        p: usize,
        p0: usize,
        heads: usize,
        kv_heads: usize,
        dh: usize,
        scale: f32,
    ) {
        let qi = CUBE_POS_X as usize;
        let bh = CUBE_POS_Y as usize;
        let tid = UNIT_POS_X as usize;
        let bi = bh / heads;
        let hd = bh % heads;
        let kvh = hd / (heads / kv_heads);
        let mut qs = Shared::<[f32]>::new_slice(128usize);
        let mut sc = Shared::<[f32]>::new_slice(64usize);
        let qb = ((bi * heads + hd) * p + qi) * dh;
        if tid < dh {
            qs[tid] = q[qb + tid];
        }
        if tid + 64usize < dh {
            qs[tid + 64usize] = q[qb + tid + 64usize];
        }
        sync_cube();
        let seen = p0 + qi + 1usize;
        let tiles = (seen + 63usize) / 64usize;
        let kb = (bi * kv_heads + kvh) * (p0 + p) * dh;
        // Running max, sum and output; the max starts below any score (WGSL has no -inf).
        let mut m = scale * 0.0f32 - 3.0e38f32;
        let mut l = scale * 0.0f32;
        let mut acc0 = scale * 0.0f32;
        let mut acc1 = scale * 0.0f32;
        for tile in 0..tiles {
            let j = tile * 64usize + tid;
            let mut s = 0.0f32;
            if j < seen {
                for e in 0..dh {
                    s += qs[e] * k[kb + j * dh + e];
                }
            }
            sc[tid] = s * scale;
            sync_cube();
            let mut count = seen - tile * 64usize;
            if count > 64usize {
                count = 64usize;
            }
            let mut mt = m;
            for u in 0..count {
                mt = select(sc[u] > mt, sc[u], mt);
            }
            let corr = (m - mt).exp();
            l *= corr;
            acc0 *= corr;
            acc1 *= corr;
            for u in 0..count {
                let e = (sc[u] - mt).exp();
                l += e;
                let at = kb + (tile * 64usize + u) * dh + tid;
                if tid < dh {
                    acc0 += e * v[at];
                }
                if tid + 64usize < dh {
                    acc1 += e * v[at + 64usize];
                }
            }
            m = mt;
            // Every thread has read the tile before the next one overwrites it.
            sync_cube();
        }
        let zb = ((bi * p + qi) * heads + hd) * dh;
        if tid < dh {
            z[zb + tid] = acc0 / l;
        }
        if tid + 64usize < dh {
            z[zb + tid + 64usize] = acc1 / l;
        }
    }
}

/// Which fused form computes `block`, if one does: a Llama block without biases (RMSNorm,
/// RoPE, gated MLP) or a GPT-2 block (LayerNorm and projections with biases, GELU MLP, one
/// key/value head per query head); even head size up to 128 (two output dimensions per
/// attention thread).
pub(super) fn form(cfg: &TransformerConfig, block: &Block) -> Option<Arch> {
    let a = &block.attn;
    let m = &block.mlp;
    let shape = cfg.d_head.is_multiple_of(2)
        && cfg.d_head <= 128
        && cfg.n_heads.is_multiple_of(cfg.n_kv_heads.max(1));
    let llama = cfg.arch == Arch::Llama
        && [&block.ln1, &block.ln2]
            .iter()
            .all(|n| n.rms && n.bias.is_none())
        && [&a.b_q, &a.b_k, &a.b_v, &a.b_o, &m.b_in, &m.b_out]
            .iter()
            .all(|b| b.is_none())
        && m.w_gate.is_some();
    let gpt2 = cfg.arch == Arch::Gpt2
        && cfg.n_heads == cfg.n_kv_heads
        && [&block.ln1, &block.ln2]
            .iter()
            .all(|n| !n.rms && n.bias.is_some())
        && [&a.b_q, &a.b_k, &a.b_v, &a.b_o, &m.b_in, &m.b_out]
            .iter()
            .all(|b| b.is_some())
        && m.w_gate.is_none();
    match () {
        _ if !shape => None,
        _ if llama => Some(Arch::Llama),
        _ if gpt2 => Some(Arch::Gpt2),
        _ => None,
    }
}

/// A bias's buffer (`None` in, or not a dense WebGPU buffer: `None` out).
fn bias_buffer(b: &Option<burn::module::Param<Tensor<1>>>) -> Option<CubeTensor> {
    buffer(&b.as_ref()?.val())
}

/// `tensor`'s device buffer when the kernels can read it as a dense row-major f32 array.
fn buffer<const D: usize>(tensor: &Tensor<D>) -> Option<CubeTensor> {
    let p = tensor.clone().try_into_primitive::<Cube>().ok()?;
    (p.dtype == DType::F32 && p.is_contiguous() && !p.meta.is_tiled()).then_some(p)
}

/// A prefix's keys or values, `[batch or 1, kv_heads, p0, dh]`, and its batch, head and
/// position strides: the join reads any layout whose last dimension is dense — a view of a
/// longer cache (a sweep's prefix is the first `p0` positions of a recorded run), one row
/// shared by a batch, or the tensor form's `[batch, pos, heads, dh]`-ordered cache.
fn prefix_buffer(tensor: &Tensor<4>) -> Option<(CubeTensor, [usize; 3])> {
    let p = tensor.clone().try_into_primitive::<Cube>().ok()?;
    let st = p.meta.strides();
    let dense = p.dtype == DType::F32 && !p.meta.is_tiled() && st[3] == 1;
    let strides = [st[0], st[1], st[2]];
    dense.then_some((p, strides))
}

/// An f32 buffer of `shape` beside `like`, for a kernel to write every entry of.
fn empty(shape: &[usize], like: &CubeTensor) -> CubeTensor {
    let client = &like.client;
    CubeTensor::new_contiguous(
        client.clone(),
        like.device.clone(),
        shape.to_vec().into(),
        client.empty(shape.iter().product::<usize>() * size_of::<f32>()),
        DType::F32,
    )
}

/// Workgroups for `work` items of the striding kernels, and the stride (threads launched).
fn groups(work: usize) -> (CubeCount, usize) {
    let n = work.div_ceil(THREADS as usize).clamp(1, MAX_GROUPS);
    (CubeCount::Static(n as u32, 1, 1), n * THREADS as usize)
}

/// Block `block` on `resid` in seven kernels (eight after a prefix), or `None` when it has no
/// fused form or a tensor is not a dense WebGPU buffer (the caller then runs the tensor form).
/// `rope` is the run's (cos, sin) table (Llama).
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
    rope: Option<&(Tensor<4>, Tensor<4>)>,
) -> Option<(Tensor<3>, Tensor<4>, Tensor<4>)> {
    let form = form(cfg, block)?;
    let (h, hkv, dh, d, m) = (
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.d_head,
        cfg.d_model,
        cfg.d_mlp,
    );
    let [b, p, _] = resid.dims();
    let rows = b * p;
    if b == 0 || p == 0 || b * h > MAX_GROUPS || p > MAX_GROUPS {
        return None;
    }
    let x = buffer(resid)?;
    let a = &block.attn;
    let (wq, wk, wv, wo) = (
        buffer(&a.w_q.val())?,
        buffer(&a.w_k.val())?,
        buffer(&a.w_v.val())?,
        buffer(&a.w_o.val())?,
    );
    let mlp = &block.mlp;
    let (w_in, w_out) = (buffer(&mlp.w_in.val())?, buffer(&mlp.w_out.val())?);
    let (g1, g2) = (
        buffer(&block.ln1.weight.val())?,
        buffer(&block.ln2.weight.val())?,
    );
    let (p0, pk, pv, pre) = match prefix {
        Some((pk, pv)) if pk.dims()[2] > 0 => {
            let [pb, ph, p0, pd] = pk.dims();
            // Keys and values of one shape, this block's heads, one row or one per batch row.
            if pv.dims() != pk.dims() || ph != hkv || pd != dh || (pb != 1 && pb != b) {
                return None;
            }
            let (pk, pv) = (prefix_buffer(pk)?, prefix_buffer(pv)?);
            if pk.1 != pv.1 {
                return None;
            }
            let [s0, s1, s2] = pk.1;
            (
                p0,
                Some(pk.0),
                Some(pv.0),
                [if pb == 1 { 0 } else { s0 }, s1, s2],
            )
        }
        _ => (0, None, None, [0, 0, 0]),
    };

    let client = x.client.clone();
    let (dim, eps1, eps2) = (d as f32, block.ln1.eps as f32, block.ln2.eps as f32);
    // Rows per thread: four share each weight read; a generation step has one.
    let tile = rows.min(TILE);
    let tiles = rows.div_ceil(tile);
    // GPT-2's LayerNorm + projection (+ bias), as heads or through GELU as rows.
    let ln_linear = |x: &CubeTensor,
                     g: &CubeTensor,
                     lb: &CubeTensor,
                     w: &CubeTensor,
                     bias: &CubeTensor,
                     shape: &[usize],
                     heads: bool,
                     eps: f32| {
        let n = shape.iter().product::<usize>() / rows;
        let out = empty(shape, x);
        let (count, stride) = groups(tiles * n);
        kernels::ln_linear::launch(
            &client,
            count,
            CubeDim::new_1d(THREADS),
            x.clone().into_buffer_arg(),
            g.clone().into_buffer_arg(),
            lb.clone().into_buffer_arg(),
            w.clone().into_buffer_arg(),
            bias.clone().into_buffer_arg(),
            out.clone().into_buffer_arg(),
            rows,
            d,
            n,
            dh,
            p,
            dim,
            eps,
            u32::from(heads),
            stride,
            tile,
        );
        out
    };
    let (q, k, v) = match form {
        Arch::Llama => {
            let (cos, sin) = rope?;
            let (cos, sin) = (buffer(cos)?, buffer(sin)?);
            let heads = |w: &CubeTensor, n: usize, rope: bool| {
                let out = empty(&[b, n, p, dh], &x);
                let (count, stride) = groups(tiles * n * dh / 2);
                kernels::norm_heads::launch(
                    &client,
                    count,
                    CubeDim::new_1d(THREADS),
                    x.clone().into_buffer_arg(),
                    g1.clone().into_buffer_arg(),
                    w.clone().into_buffer_arg(),
                    cos.clone().into_buffer_arg(),
                    sin.clone().into_buffer_arg(),
                    out.clone().into_buffer_arg(),
                    rows,
                    d,
                    n,
                    dh,
                    p,
                    dim,
                    eps1,
                    u32::from(rope),
                    stride,
                    tile,
                );
                out
            };
            (
                heads(&wq, h, true),
                heads(&wk, hkv, true),
                heads(&wv, hkv, false),
            )
        }
        Arch::Gpt2 => {
            let lb = buffer(&block.ln1.bias.as_ref()?.val())?;
            let (bq, bk, bv) = (
                bias_buffer(&a.b_q)?,
                bias_buffer(&a.b_k)?,
                bias_buffer(&a.b_v)?,
            );
            let heads = |w: &CubeTensor, bias: &CubeTensor| {
                ln_linear(&x, &g1, &lb, w, bias, &[b, h, p, dh], true, eps1)
            };
            (heads(&wq, &bq), heads(&wk, &bk), heads(&wv, &bv))
        }
    };

    // With a prefix the run's keys/values join it in one cache (what the block returns).
    let (k, v) = match (pk, pv) {
        (Some(pk), Some(pv)) => {
            let (kc, vc) = (
                empty(&[b, hkv, p0 + p, dh], &x),
                empty(&[b, hkv, p0 + p, dh], &x),
            );
            let len = b * hkv * (p0 + p) * dh;
            let (count, stride) = groups(len);
            kernels::join::launch(
                &client,
                count,
                CubeDim::new_1d(THREADS),
                pk.into_buffer_arg(),
                pv.into_buffer_arg(),
                k.into_buffer_arg(),
                v.into_buffer_arg(),
                kc.clone().into_buffer_arg(),
                vc.clone().into_buffer_arg(),
                len,
                hkv,
                p,
                p0,
                dh,
                pre[0],
                pre[1],
                pre[2],
                stride,
            );
            (kc, vc)
        }
        _ => (k, v),
    };
    let z = empty(&[b, p, h, dh], &x);
    kernels::attention::launch(
        &client,
        CubeCount::Static(p as u32, (b * h) as u32, 1),
        CubeDim::new_1d(THREADS),
        q.into_buffer_arg(),
        k.clone().into_buffer_arg(),
        v.clone().into_buffer_arg(),
        z.clone().into_buffer_arg(),
        p,
        p0,
        h,
        hkv,
        dh,
        1.0 / (dh as f32).sqrt(),
    );

    // `resid + x·W (+ bias)`; without a bias the weight stands in for the unread binding.
    let linear_add =
        |x: &CubeTensor, w: &CubeTensor, bias: Option<CubeTensor>, resid: &CubeTensor, k: usize| {
            let out = empty(&[b, p, d], resid);
            let (count, stride) = groups(tiles * d);
            let has_bias = u32::from(bias.is_some());
            kernels::linear_add::launch(
                &client,
                count,
                CubeDim::new_1d(THREADS),
                x.clone().into_buffer_arg(),
                w.clone().into_buffer_arg(),
                bias.unwrap_or_else(|| w.clone()).into_buffer_arg(),
                resid.clone().into_buffer_arg(),
                out.clone().into_buffer_arg(),
                rows,
                k,
                d,
                has_bias,
                stride,
                tile,
            );
            out
        };
    let (b_o, b_out) = match form {
        Arch::Llama => (None, None),
        Arch::Gpt2 => (Some(bias_buffer(&a.b_o)?), Some(bias_buffer(&mlp.b_out)?)),
    };
    let mid = linear_add(&z, &wo, b_o, &x, h * dh);

    let post = match form {
        Arch::Llama => {
            let wg = buffer(&mlp.w_gate.as_ref()?.val())?;
            let post = empty(&[rows, m], &x);
            let (count, stride) = groups(tiles * m);
            kernels::norm_gate_up::launch(
                &client,
                count,
                CubeDim::new_1d(THREADS),
                mid.clone().into_buffer_arg(),
                g2.into_buffer_arg(),
                wg.into_buffer_arg(),
                w_in.into_buffer_arg(),
                post.clone().into_buffer_arg(),
                rows,
                d,
                m,
                dim,
                eps2,
                stride,
                tile,
            );
            post
        }
        Arch::Gpt2 => {
            let lb = buffer(&block.ln2.bias.as_ref()?.val())?;
            let b_in = bias_buffer(&mlp.b_in)?;
            ln_linear(&mid, &g2, &lb, &w_in, &b_in, &[rows, m], false, eps2)
        }
    };
    let out = linear_add(&post, &w_out, b_out, &mid, m);
    Some((
        Tensor::from_primitive::<Cube>(out),
        Tensor::from_primitive::<Cube>(k),
        Tensor::from_primitive::<Cube>(v),
    ))
}
