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
use crate::device::empty_f32;

/// Threads per workgroup (the attention kernel's tile of keys is one per thread).
const THREADS: u32 = 64;
/// Most workgroups along one axis of a dispatch (WebGPU's guaranteed limit); the linear kernels
/// stride over anything larger.
const MAX_GROUPS: usize = 65_535;
/// Rows per thread in the projections (each weight read serves them all).
const TILE: usize = 4;

/// The kernels (CubeCL).
mod kernels;

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
    let llama = block.is_plain_llama(cfg);
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
        let out = empty_f32(shape, x);
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
                let out = empty_f32(&[b, n, p, dh], &x);
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
                empty_f32(&[b, hkv, p0 + p, dh], &x),
                empty_f32(&[b, hkv, p0 + p, dh], &x),
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
    let z = empty_f32(&[b, p, h, dh], &x);
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
            let out = empty_f32(&[b, p, d], resid);
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
            let post = empty_f32(&[rows, m], &x);
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

/// `x·w` by the blocks' own product kernel (`linear_add`, here with a zero residual and no
/// bias): the start-up check computes with the kernel every fused forward uses, whose first
/// launch compiles in tens of milliseconds on SwiftShader where Burn's general matmul kernel
/// takes ~0.7 s (and again for each new shape). `None` when a tensor is not a dense WebGPU
/// buffer or the shapes disagree.
///
/// # Shapes
/// - `x`: `[rows, k]`; `w`: `[k, n]`; returns `[rows, n]`.
pub(crate) fn product(x: &Tensor<2>, w: &Tensor<2>) -> Option<Tensor<2>> {
    let ([rows, k], [k_w, n]) = (x.dims(), w.dims());
    if k != k_w || rows == 0 || n == 0 || k == 0 {
        return None;
    }
    // An upload, not a fill kernel: nothing else to compile.
    let zero = Tensor::<2>::from_data(
        burn::tensor::TensorData::new(vec![0f32; rows * n], [rows, n]),
        &x.device(),
    );
    let (x, w, zero) = (buffer(x)?, buffer(w)?, buffer(&zero)?);
    let out = empty_f32(&[rows, n], &x);
    // The forward's tile (four rows share each weight read), so its compiled kernel is this one.
    let tile = rows.min(TILE);
    let (count, stride) = groups(rows.div_ceil(tile) * n);
    kernels::linear_add::launch(
        &x.client.clone(),
        count,
        CubeDim::new_1d(THREADS),
        x.into_buffer_arg(),
        w.clone().into_buffer_arg(),
        w.into_buffer_arg(),
        zero.into_buffer_arg(),
        out.clone().into_buffer_arg(),
        rows,
        k,
        n,
        0u32,
        stride,
        tile,
    );
    Some(Tensor::from_primitive::<Cube>(out))
}
