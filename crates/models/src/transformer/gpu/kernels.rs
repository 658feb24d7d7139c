//! The fused blocks' kernels, in CubeCL's Rust subset (compiled to WGSL at first launch).
//! Literals carry their type. Shapes are row-major; each kernel's doc gives its own.

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
