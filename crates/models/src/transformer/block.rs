//! One block's tensor form (every device's reference): the attention half and the MLP half,
//! per-head input copies when a hook reads or patches them, and the fused forms taken where no
//! hook looks inside.

use burn::module::Param;
use burn::tensor::activation::{gelu_approximate, silu, softmax};
use burn::tensor::{Tensor, s};

use super::tables::RunTables;
use super::{Block, Norm, Transformer, linear, quant};
use crate::hooks::{HookPoint, HookRunner};

impl Transformer {
    /// One block. Returns the new residual and the rotated keys/values of the prefix and this
    /// run (the layer's cache after it).
    ///
    /// # Shapes
    /// - `resid`: `[batch, pos, d_model]`
    /// - `prefix`: keys/values of earlier positions, `[batch or 1, n_kv_heads, pos0, d_head]`
    /// - returns `([batch, pos, d_model], k, v)` with k, v
    ///   `[batch, n_kv_heads, pos0 + pos, d_head]`
    pub(super) fn block_forward(
        &self,
        l: usize,
        block: &Block,
        resid: Tensor<3>,
        prefix: Option<(Tensor<4>, Tensor<4>)>,
        tables: &RunTables,
        hooks: &mut HookRunner,
    ) -> (Tensor<3>, Tensor<4>, Tensor<4>) {
        let cfg = &self.config;
        let resid = hooks.r3(HookPoint::ResidPre(l), resid);
        // On WebGPU a block whose inside no hook reads or writes runs as seven kernels.
        #[cfg(feature = "webgpu")]
        if !hooks.touches_inside(l)
            && !crate::device::is_cpu(&resid.device())
            && let Some((r, k, v)) =
                super::gpu::block(cfg, block, &resid, prefix.as_ref(), tables.rope.as_ref())
        {
            return (hooks.r3(HookPoint::ResidPost(l), r), k, v);
        }
        let kept_block = self.quantised.as_ref().and_then(|w| w.blocks.get(l));
        // On the CPU such a block runs its glue in plain loops between the products.
        if !hooks.touches_inside(l)
            && crate::device::is_cpu(&resid.device())
            && let Some((r, k, v)) = super::cpu::block(
                cfg,
                block,
                &resid,
                prefix.as_ref(),
                tables.rope.as_ref(),
                hooks.pos_offset,
                kept_block,
            )
        {
            return (hooks.r3(HookPoint::ResidPost(l), r), k, v);
        }
        let (resid, k, v) = self.attention_half(l, block, resid, prefix, tables, hooks);
        let resid = self.mlp_half(l, block, resid, hooks);
        (resid, k, v)
    }

    /// The tensor form of block `l`'s attention: `hook_resid_pre`'s residual (already hooked) to
    /// `hook_resid_mid`'s, with the rotated keys/values of the prefix and this run.
    ///
    /// # Shapes
    /// - as [`block_forward`](Self::block_forward), returning `resid_mid` `[batch, pos, d_model]`.
    fn attention_half(
        &self,
        l: usize,
        block: &Block,
        resid: Tensor<3>,
        prefix: Option<(Tensor<4>, Tensor<4>)>,
        tables: &RunTables,
        hooks: &mut HookRunner,
    ) -> (Tensor<3>, Tensor<4>, Tensor<4>) {
        let cfg = &self.config;
        let kept_block = self.quantised.as_ref().and_then(|w| w.blocks.get(l));
        let (h, hkv, dh, d) = (cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.d_model);
        let [b, p, _] = resid.dims();

        let a = &block.attn;
        let kept = |f: fn(&quant::QuantBlock) -> &Option<quant::QuantMatrix>| {
            kept_block.and_then(|qb| f(qb).as_ref())
        };
        let split = [
            HookPoint::QInput(l),
            HookPoint::KInput(l),
            HookPoint::VInput(l),
        ]
        .into_iter()
        .any(|hook| hooks.touches(hook));
        let (q, k, v) = if split {
            let ln = &block.ln1;
            (
                split_projection(ln, &resid, h, &a.w_q, &a.b_q, HookPoint::QInput(l), hooks),
                split_projection(ln, &resid, hkv, &a.w_k, &a.b_k, HookPoint::KInput(l), hooks),
                split_projection(ln, &resid, hkv, &a.w_v, &a.b_v, HookPoint::VInput(l), hooks),
            )
        } else {
            let x = block.ln1.forward(resid.clone());
            (
                linear(x.clone(), &a.w_q, &a.b_q, kept(|b| &b.q)).reshape([b, p, h, dh]),
                linear(x.clone(), &a.w_k, &a.b_k, kept(|b| &b.k)).reshape([b, p, hkv, dh]),
                linear(x, &a.w_v, &a.b_v, kept(|b| &b.v)).reshape([b, p, hkv, dh]),
            )
        };
        let q = hooks.r4(HookPoint::Q(l), q);
        let k = hooks.r4(HookPoint::K(l), k);
        let v = hooks.r4(HookPoint::V(l), v);
        let (q, k) = if let Some((cos, sin)) = &tables.rope {
            let rot = |t: Tensor<4>| {
                let x1 = t.clone().slice(s![.., .., .., 0..dh / 2]);
                let x2 = t.clone().slice(s![.., .., .., dh / 2..dh]);
                let rh = Tensor::cat(vec![x2.neg(), x1], 3);
                t * cos.clone() + rh * sin.clone()
            };
            (rot(q), rot(k))
        } else {
            (q, k)
        };
        // [batch, heads, pos, d_head]
        let q = q.swap_dims(1, 2);
        let mut k = k.swap_dims(1, 2);
        let mut v = v.swap_dims(1, 2);
        if let Some((pk, pv)) = prefix {
            let p0 = pk.dims()[2];
            if p0 > 0 {
                k = Tensor::cat(vec![pk.expand([b, hkv, p0, dh]), k], 2);
                v = Tensor::cat(vec![pv.expand([b, hkv, p0, dh]), v], 2);
            }
        }
        let total = k.dims()[2];
        // Grouped-query attention without copying keys/values per head: the `g` query heads of
        // one key/value head (heads `kv * g .. kv * g + g`, as HF's `repeat_kv`) are stacked
        // as `g * pos` rows against that head's keys, `[batch, n_kv_heads, g * pos, ..]`, the
        // same layout as `[batch, heads, pos, ..]`.
        let g = cfg.group_size();
        let scores = q
            .reshape([b, hkv, g * p, dh])
            .matmul(k.clone().transpose())
            .reshape([b, h, p, total])
            .div_scalar((dh as f64).sqrt());
        let mask = tables.mask.clone().expand([b, h, p, total]);
        let scores = scores.mask_fill(mask, f32::NEG_INFINITY);
        let scores = hooks.r4(HookPoint::AttnScores(l), scores);
        let pattern = softmax(scores, 3);
        let pattern = hooks.r4(HookPoint::Pattern(l), pattern);
        let z = pattern
            .reshape([b, hkv, g * p, total])
            .matmul(v.clone())
            .reshape([b, h, p, dh])
            .swap_dims(1, 2); // [b, p, h, dh]
        let z = hooks.r4(HookPoint::Z(l), z);
        let attn_out = if hooks.touches(HookPoint::Result(l)) {
            // Each head's write to the residual stream: z_h · W_O[h]  → [b, p, h, d]
            let wo = a.w_o.val().reshape([1, h, dh, d]);
            let result = z.swap_dims(1, 2).matmul(wo).swap_dims(1, 2);
            let result = hooks.r4(HookPoint::Result(l), result);
            let out = result.sum_dim(2).reshape([b, p, d]);
            match &a.b_o {
                Some(bo) => out + bo.val().reshape([1, 1, d]),
                None => out,
            }
        } else {
            linear(z.reshape([b, p, h * dh]), &a.w_o, &a.b_o, kept(|b| &b.o))
        };
        let attn_out = hooks.r3(HookPoint::AttnOut(l), attn_out);
        let resid = hooks.r3(HookPoint::ResidMid(l), resid + attn_out);
        (resid, k, v)
    }

    /// The tensor form of block `l`'s MLP: `hook_resid_mid`'s residual (already hooked) to
    /// `hook_resid_post`'s.
    ///
    /// # Shapes
    /// - `resid`: `[batch, pos, d_model]` → same.
    fn mlp_half(
        &self,
        l: usize,
        block: &Block,
        resid: Tensor<3>,
        hooks: &mut HookRunner,
    ) -> Tensor<3> {
        let kept_block = self.quantised.as_ref().and_then(|w| w.blocks.get(l));
        let kept = |f: fn(&quant::QuantBlock) -> &Option<quant::QuantMatrix>| {
            kept_block.and_then(|qb| f(qb).as_ref())
        };
        let mlp_in = hooks.r3(HookPoint::MlpIn(l), resid.clone());
        let x = block.ln2.forward(mlp_in);
        let m = &block.mlp;
        let post = match &m.w_gate {
            Some(wg) => {
                let gate = linear(x.clone(), wg, &None, kept(|b| &b.gate));
                let gate = hooks.r3(HookPoint::MlpPre(l), gate);
                silu(gate) * linear(x, &m.w_in, &m.b_in, kept(|b| &b.up))
            }
            None => {
                let pre = linear(x, &m.w_in, &m.b_in, kept(|b| &b.up));
                let pre = hooks.r3(HookPoint::MlpPre(l), pre);
                gelu_approximate(pre)
            }
        };
        let post = hooks.r3(HookPoint::MlpPost(l), post);
        let mlp_out = linear(post, &m.w_out, &m.b_out, kept(|b| &b.down));
        let mlp_out = hooks.r3(HookPoint::MlpOut(l), mlp_out);
        hooks.r3(HookPoint::ResidPost(l), resid + mlp_out)
    }

    /// Block `l`'s attention and MLP as two steps on a whole prompt (no prefix), in the tensor
    /// form, each under its own hooks: for runs whose interventions on the MLP's input depend on
    /// what this block's heads wrote (edge patching).
    ///
    /// # Shapes
    /// - `resid`: `[batch, pos, d_model]` (hooked as `hook_resid_pre` by `attention`'s plan) →
    ///   same, after the half.
    pub(crate) fn attention_step(
        &self,
        l: usize,
        resid: Tensor<3>,
        hooks: &mut HookRunner,
    ) -> Tensor<3> {
        let tables = self.run_tables(&resid, 0);
        let resid = hooks.r3(HookPoint::ResidPre(l), resid);
        self.attention_half(l, &self.blocks[l], resid, None, &tables, hooks)
            .0
    }

    /// See [`attention_step`](Self::attention_step).
    pub(crate) fn mlp_step(&self, l: usize, resid: Tensor<3>, hooks: &mut HookRunner) -> Tensor<3> {
        self.mlp_half(l, &self.blocks[l], resid, hooks)
    }
}

/// One projection computed per head from each head's own copy of the residual stream (the
/// `hook_q_input`/`hook_k_input`/`hook_v_input` hooks), each copy through the block's first
/// norm: equal to the plain projection when no hook changes the copies.
///
/// # Shapes
/// - `resid`: `[batch, pos, d_model]`, `w`: `[d_model, n * d_head]` → `[batch, pos, n, d_head]`.
fn split_projection(
    norm: &Norm,
    resid: &Tensor<3>,
    n: usize,
    w: &Param<Tensor<2>>,
    bias: &Option<Param<Tensor<1>>>,
    hook: HookPoint,
    hooks: &mut HookRunner,
) -> Tensor<4> {
    let [b, p, d] = resid.dims();
    let w = w.val();
    let dh = w.dims()[1] / n;
    let x = resid.clone().reshape([b, p, 1, d]).expand([b, p, n, d]);
    let x = hooks.r4(hook, x);
    let x = norm.forward(x.reshape([b, p * n, d])).reshape([b, p, n, d]);
    // [1, n, d, dh]: head i's columns of W.
    let w = w.reshape([d, n, dh]).swap_dims(0, 1).reshape([1, n, d, dh]);
    let y = x.swap_dims(1, 2).matmul(w).swap_dims(1, 2);
    match bias {
        Some(bb) => y + bb.val().reshape([1, 1, n, dh]),
        None => y,
    }
}
