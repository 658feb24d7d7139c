//! One transformer for the GPT-2 and Llama families, written once for every Burn device, with
//! TransformerLens hook points (see [`crate::hooks`]).
//!
//! GPT-2 (Radford et al. 2019): learned positions, LayerNorm, GELU (tanh) MLP, tied unembedding.
//! Llama (Touvron et al. 2023), e.g. SmolLM2-135M: RoPE (rotate-half layout, as Hugging Face),
//! RMSNorm, SwiGLU MLP, grouped-query attention. Weights are stored as `[d_in, d_out]` so every
//! projection is `x · W`.

use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor, TensorData, s};

use crate::config::TransformerConfig;
use crate::error::{ModelError, Result};
use crate::hooks::{ActivationCache, HookPlan, HookPoint, HookRunner};

/// Llama and GPT-2 blocks on WebGPU in seven kernels (the tensor form below is every device's
/// reference).
#[cfg(feature = "webgpu")]
mod gpu;
#[cfg(feature = "webgpu")]
pub(crate) use gpu::product as fused_product;

/// A few rows times the weights on the CPU (decoding), read where the weights lie.
mod rows;

/// Llama blocks on the CPU with the glue between products in plain loops.
mod cpu;
pub use cpu::fused_blocks as fused_cpu_blocks;

/// Linear weights kept in their GGUF blocks for the CPU's few-row products.
pub mod quant;

/// RoPE tables and the causal mask, built once per run.
mod tables;

/// One block's tensor form: attention and MLP halves, per-head input copies.
mod block;

/// LayerNorm and RMSNorm.
mod norm;
pub use norm::Norm;

/// Multi-head (grouped-query) self-attention.
#[derive(Module, Debug)]
pub struct Attention {
    /// `[d_model, n_heads * d_head]`
    pub w_q: Param<Tensor<2>>,
    /// `[n_heads * d_head]`
    pub b_q: Option<Param<Tensor<1>>>,
    /// `[d_model, n_kv_heads * d_head]`
    pub w_k: Param<Tensor<2>>,
    /// `[n_kv_heads * d_head]`
    pub b_k: Option<Param<Tensor<1>>>,
    /// `[d_model, n_kv_heads * d_head]`
    pub w_v: Param<Tensor<2>>,
    /// `[n_kv_heads * d_head]`
    pub b_v: Option<Param<Tensor<1>>>,
    /// `[n_heads * d_head, d_model]`
    pub w_o: Param<Tensor<2>>,
    /// `[d_model]`
    pub b_o: Option<Param<Tensor<1>>>,
}

/// The MLP: GELU (`w_gate` absent) or SwiGLU (`silu(x·W_gate) ⊙ (x·W_in)`).
#[derive(Module, Debug)]
pub struct Mlp {
    /// `[d_model, d_mlp]` (the "up" projection for SwiGLU)
    pub w_in: Param<Tensor<2>>,
    /// `[d_mlp]`
    pub b_in: Option<Param<Tensor<1>>>,
    /// `[d_model, d_mlp]`
    pub w_gate: Option<Param<Tensor<2>>>,
    /// `[d_mlp, d_model]`
    pub w_out: Param<Tensor<2>>,
    /// `[d_model]`
    pub b_out: Option<Param<Tensor<1>>>,
}

/// One transformer block.
#[derive(Module, Debug)]
pub struct Block {
    /// Norm before attention.
    pub ln1: Norm,
    /// Attention.
    pub attn: Attention,
    /// Norm before the MLP.
    pub ln2: Norm,
    /// MLP.
    pub mlp: Mlp,
}

impl Block {
    /// A Llama block as the fused forms take it (WebGPU's kernels, the CPU's loops): RMSNorms
    /// without bias, no projection biases, a gated MLP.
    pub(crate) fn is_plain_llama(&self, cfg: &TransformerConfig) -> bool {
        let (a, m) = (&self.attn, &self.mlp);
        cfg.arch == crate::config::Arch::Llama
            && [&self.ln1, &self.ln2]
                .iter()
                .all(|n| n.rms && n.bias.is_none())
            && [&a.b_q, &a.b_k, &a.b_v, &a.b_o, &m.b_in, &m.b_out]
                .iter()
                .all(|b| b.is_none())
            && m.w_gate.is_some()
    }
}

/// The model.
#[derive(Module, Debug)]
pub struct Transformer {
    /// `W_E`, `[d_vocab, d_model]`
    pub embed: Param<Tensor<2>>,
    /// `W_pos`, `[n_ctx, d_model]` (GPT-2 only)
    pub pos_embed: Option<Param<Tensor<2>>>,
    /// The blocks.
    pub blocks: Vec<Block>,
    /// Final norm.
    pub ln_final: Norm,
    /// `W_U`, `[d_model, d_vocab]`; `None` when tied to `W_Eᵀ`.
    pub unembed: Option<Param<Tensor<2>>>,
    /// Shape and family.
    #[module(skip)]
    pub config: TransformerConfig,
    /// The linear weights in their GGUF blocks, for products of a few rows on the CPU (set by
    /// the GGUF loader on the CPU; `None` elsewhere). A copy: code that changes the weights
    /// (none does on a loaded model) must clear it.
    #[module(skip)]
    pub quantised: Option<std::sync::Arc<quant::QuantWeights>>,
}

/// Keys and values of earlier positions (already rotated), one per block run (every layer, or
/// those from the block a [`Transformer::resume`] starts at), so a run can start in the middle
/// of a prompt.
#[derive(Clone, Debug)]
pub struct KvCache {
    /// Per block: `[batch or 1, n_kv_heads, pos, d_head]`.
    pub k: Vec<Tensor<4>>,
    /// Per layer: same as `k`.
    pub v: Vec<Tensor<4>>,
}

impl KvCache {
    /// How many positions the cache holds.
    pub fn positions(&self) -> usize {
        self.k.first().map_or(0, |k| k.dims()[2])
    }
}

/// `x · W (+ b)` for `x: [batch, pos, d_in]`, `W: [d_in, d_out]` → `[batch, pos, d_out]`;
/// `q` is `W` kept quantised (`[d_out, d_in]`), read instead where a few rows allow.
fn linear(
    x: Tensor<3>,
    w: &Param<Tensor<2>>,
    b: &Option<Param<Tensor<1>>>,
    q: Option<&quant::QuantMatrix>,
) -> Tensor<3> {
    let [bs, p, d] = x.dims();
    let w = w.val();
    let o = w.dims()[1];
    let x = x.reshape([bs * p, d]);
    let y = q
        .filter(|q| q.dims() == [o, d])
        .and_then(|q| rows::quantised(&x, q))
        .or_else(|| rows::matmul(&x, &w))
        .unwrap_or_else(|| x.matmul(w));
    let y = match b {
        Some(b) => y + b.val().reshape([1, o]),
        None => y,
    };
    y.reshape([bs, p, o])
}

impl Transformer {
    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.embed.val().device()
    }

    /// Token ids as a tensor, after checking them.
    ///
    /// # Shapes
    /// - `ids`: `batch` rows of equal length `pos` → `[batch, pos]`.
    pub fn tokens(&self, ids: &[Vec<u32>]) -> Result<Tensor<2, Int>> {
        let b = ids.len();
        let p = ids.first().map(Vec::len).unwrap_or(0);
        if b == 0 || p == 0 {
            return Err(ModelError::Input("the prompt is empty".into()));
        }
        if ids.iter().any(|r| r.len() != p) {
            return Err(ModelError::Input(
                "prompts in one batch must have the same number of tokens".into(),
            ));
        }
        self.check_context(b, p, p)?;
        let mut flat = Vec::with_capacity(b * p);
        for &id in ids.iter().flatten() {
            if id as usize >= self.config.d_vocab {
                return Err(ModelError::Input(format!(
                    "token id {id} is outside the vocabulary (size {})",
                    self.config.d_vocab
                )));
            }
            flat.push(id as i32);
        }
        Ok(Tensor::from_data(
            TensorData::new(flat, [b, p]),
            &self.device(),
        ))
    }

    /// Logits for every position.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, pos]` → `[batch, pos, d_vocab]`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.run_with_hooks(tokens, &HookPlan::default()).0
    }

    /// Logits of the last position only (what a next-token readout needs: the unembedding of
    /// every other position is a fifth of SmolLM2's weights per token, for nothing).
    ///
    /// # Shapes
    /// - `tokens`: `[batch, pos]` → `[batch, d_vocab]`.
    pub fn last_logits(&self, tokens: Tensor<2, Int>) -> Result<Tensor<2>> {
        let [b, p] = tokens.dims();
        let (resid, _, _) = self.extend_residual(tokens, None, &HookPlan::default())?;
        let d = self.config.d_model;
        Ok(self.logits_rows(resid.slice(s![.., p - 1..p, ..]).reshape([b, d])))
    }

    /// Logits and the cached activations under a hook plan.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, pos]` → logits `[batch, pos, d_vocab]`.
    pub fn run_with_hooks(
        &self,
        tokens: Tensor<2, Int>,
        plan: &HookPlan,
    ) -> (Tensor<3>, ActivationCache) {
        let mut hooks = HookRunner::new(plan, 0);
        let resid = self.embed_tokens(tokens, &mut hooks);
        let (resid, _) = self.run_blocks(resid, 0..self.config.n_layers, None, &mut hooks, false);
        let logits = self.unembed_resid(resid, &mut hooks);
        (logits, hooks.cache)
    }

    /// Run `tokens` as the continuation of a prefix whose keys and values are in `prefix` (from
    /// an earlier `extend`), under a hook plan. Prompts that share a beginning (in-context
    /// examples) compute it once. Returns the logits of the new positions, their cached hooks,
    /// and the keys/values of prefix + new positions.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, pos]`; `prefix`: per layer `[1 or batch, n_kv_heads, pos0, d_head]`
    /// - returns logits `[batch, pos, d_vocab]` and a cache of `pos0 + pos` positions.
    pub fn extend(
        &self,
        tokens: Tensor<2, Int>,
        prefix: Option<&KvCache>,
        plan: &HookPlan,
    ) -> Result<(Tensor<3>, ActivationCache, KvCache)> {
        let (resid, mut hooks, kv) = self.extend_blocks(tokens, prefix, plan)?;
        let logits = self.unembed_resid(resid, &mut hooks);
        Ok((logits, hooks.cache, kv))
    }

    /// [`extend`](Self::extend) without the unembedding: the residual stream after the last
    /// block (the input to `ln_final`). A prompt's beginning only needs its keys/values, and a
    /// label readout only two columns of `W_U` ([`logits_of`](Self::logits_of)); the full
    /// unembedding is a fifth of SmolLM2's weights.
    ///
    /// # Shapes
    /// - as `extend`, returning the residual `[batch, pos, d_model]` instead of logits.
    pub fn extend_residual(
        &self,
        tokens: Tensor<2, Int>,
        prefix: Option<&KvCache>,
        plan: &HookPlan,
    ) -> Result<(Tensor<3>, ActivationCache, KvCache)> {
        let (resid, hooks, kv) = self.extend_blocks(tokens, prefix, plan)?;
        Ok((resid, hooks.cache, kv))
    }

    /// The activations `plan` caches for `tokens` read after `prefix`, running only the blocks
    /// its hooks need (TransformerLens's `stop_at_layer`): reading layer 15 of SmolLM2's 30
    /// skips half the blocks and the unembedding. Interventions past the last cached hook have
    /// no effect on what is returned, so they are not run.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, pos]`; `prefix` as in `extend`; cached activations of the new
    ///   positions.
    pub fn activations(
        &self,
        tokens: Tensor<2, Int>,
        prefix: Option<&KvCache>,
        plan: &HookPlan,
    ) -> Result<ActivationCache> {
        let n = self.config.n_layers;
        // Blocks `0..end` compute every cached hook; `hook_resid_pre` of layer `n` (the last
        // block's output) needs them all, and `ln_final` the whole run.
        let mut end = 0;
        for hook in &plan.cache {
            match (hook, hook.layer()) {
                (HookPoint::LnFinal, _) => return Ok(self.extend(tokens, prefix, plan)?.1),
                (_, Some(l)) => end = end.max((l + 1).min(n)),
                (_, None) => {}
            }
        }
        let [b, p] = tokens.dims();
        let offset = prefix.map_or(0, KvCache::positions);
        self.check_context(b, p, offset + p)?;
        let mut hooks = HookRunner::new(plan, offset);
        let resid = self.embed_tokens(tokens, &mut hooks);
        self.run_blocks(resid, 0..end, prefix, &mut hooks, false);
        Ok(hooks.cache)
    }

    /// Resume a run at block `from` for new positions whose residual stream entering it is
    /// `resid`, after a prefix whose keys/values for blocks `from..n_layers` are in `prefix`
    /// (`prefix.k[0]` is block `from`'s): the blocks before `from` are not run again. A patch at
    /// one position of a prompt computes only that position from the patched layer on; with an
    /// autodiff shift in `plan`, backward runs through those blocks alone. Returns the residual
    /// after the last block (for [`logits_rows`](Self::logits_rows)) and the cached hooks.
    ///
    /// # Shapes
    /// - `resid`: `[batch, pos, d_model]`; `prefix`: per block `[1 or batch, n_kv_heads, pos0,
    ///   d_head]` → `[batch, pos, d_model]`.
    pub fn resume(
        &self,
        resid: Tensor<3>,
        from: usize,
        prefix: &KvCache,
        plan: &HookPlan,
    ) -> Result<(Tensor<3>, ActivationCache)> {
        let n = self.config.n_layers;
        if from >= n || prefix.k.len() != n - from || prefix.v.len() != n - from {
            return Err(ModelError::Input(format!(
                "resuming at block {from} of {n} needs the keys/values of {} blocks, not {}",
                n.saturating_sub(from),
                prefix.k.len()
            )));
        }
        let [b, p, _] = resid.dims();
        let offset = prefix.positions();
        self.check_context(b, p, offset + p)?;
        let mut hooks = HookRunner::new(plan, offset);
        let (resid, _) = self.run_blocks(resid, from..n, Some(prefix), &mut hooks, false);
        Ok((resid, hooks.cache))
    }

    /// Logits of some rows of a residual from [`extend_residual`](Self::extend_residual) (e.g.
    /// the last position only): `ln_final`, then `W_U`.
    ///
    /// # Shapes
    /// - `resid`: `[rows, d_model]` → `[rows, d_vocab]`.
    pub fn logits_rows(&self, resid: Tensor<2>) -> Tensor<2> {
        self.unembed_rows(self.final_norm_rows(resid))
    }

    /// Logits of chosen vocabulary entries only: `ln_final`, then the columns `ids` of `W_U`.
    ///
    /// # Shapes
    /// - `resid`: `[rows, d_model]` (residual after the last block), `ids`: `[k]` → `[rows, k]`.
    pub fn logits_of(&self, resid: Tensor<2>, ids: Tensor<1, Int>) -> Tensor<2> {
        self.final_norm_rows(resid)
            .matmul(self.unembed_columns(ids))
    }

    /// # Shapes
    /// - `resid`: `[rows, d_model]` → same.
    fn final_norm_rows(&self, resid: Tensor<2>) -> Tensor<2> {
        let [r, d] = resid.dims();
        self.ln_final
            .forward(resid.reshape([1, r, d]))
            .reshape([r, d])
    }

    /// `batch` rows of `queries` new positions, `positions` in all with the cache: within the
    /// context (GPT-2's learned positions end at `n_ctx`; a Llama model was trained up to it) and
    /// within [`BLOCK_BUDGET`](crate::budget::BLOCK_BUDGET) (a trap in the page otherwise).
    fn check_context(&self, batch: usize, queries: usize, positions: usize) -> Result<()> {
        if positions > self.config.n_ctx {
            return Err(ModelError::Input(format!(
                "the prompt has {positions} tokens; this model's context holds {}",
                self.config.n_ctx
            )));
        }
        crate::budget::check_prompt(
            &self.config,
            batch,
            queries,
            positions,
            crate::budget::BLOCK_BUDGET,
        )
    }

    /// Every block on `tokens` after `prefix` under `plan`: the residual after the last block,
    /// the hooks so far (the unembedding may add `ln_final`'s) and the keys/values of prefix +
    /// new positions.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, pos]` → `[batch, pos, d_model]`, a cache of `pos0 + pos` positions.
    fn extend_blocks<'a>(
        &self,
        tokens: Tensor<2, Int>,
        prefix: Option<&KvCache>,
        plan: &'a HookPlan,
    ) -> Result<(Tensor<3>, HookRunner<'a>, KvCache)> {
        let [b, p] = tokens.dims();
        let mut hooks = HookRunner::new(plan, prefix.map_or(0, KvCache::positions));
        self.check_context(b, p, hooks.pos_offset + p)?;
        let resid = self.embed_tokens(tokens, &mut hooks);
        let (resid, kv) = self.run_blocks(resid, 0..self.config.n_layers, prefix, &mut hooks, true);
        let kv = kv.ok_or_else(|| ModelError::Device("missing key/value cache".into()))?;
        Ok((resid, hooks, kv))
    }

    /// Embedding (plus learned positions from `hooks.pos_offset`), hooks `hook_embed`,
    /// `hook_pos_embed`.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, pos]` → `[batch, pos, d_model]`.
    pub(crate) fn embed_tokens(&self, tokens: Tensor<2, Int>, hooks: &mut HookRunner) -> Tensor<3> {
        let [b, p] = tokens.dims();
        let o = hooks.pos_offset;
        let d = self.config.d_model;
        let e = self
            .embed
            .val()
            .select(0, tokens.reshape([b * p]))
            .reshape([b, p, d]);
        let e = hooks.r3(HookPoint::Embed, e);
        match &self.pos_embed {
            Some(w) => {
                let pe = w
                    .val()
                    .slice(s![o..o + p, ..])
                    .reshape([1, p, d])
                    .expand([b, p, d]);
                let pe = hooks.r3(HookPoint::PosEmbed, pe);
                e + pe
            }
            None => e,
        }
    }

    /// Run `blocks` (a range of layers) on a residual stream whose first position is
    /// `hooks.pos_offset`. `prefix` holds keys/values of positions `0..pos_offset` for every
    /// block run, from `blocks.start` (`k[0]` is its first; needed when the offset is non-zero). With `record_kv` the rotated keys/values of
    /// the prefix and this run are returned, `[batch, n_kv_heads, pos_offset + pos, d_head]`.
    ///
    /// # Shapes
    /// - `resid`: `[batch, pos, d_model]` → the residual after the last block run (the input to
    ///   `ln_final` when that is the model's last), same shape.
    pub(crate) fn run_blocks(
        &self,
        mut resid: Tensor<3>,
        blocks: std::ops::Range<usize>,
        prefix: Option<&KvCache>,
        hooks: &mut HookRunner,
        record_kv: bool,
    ) -> (Tensor<3>, Option<KvCache>) {
        let mut kv = record_kv.then(|| KvCache {
            k: Vec::new(),
            v: Vec::new(),
        });
        let last = blocks.end == self.config.n_layers;
        let tables = self.run_tables(&resid, hooks.pos_offset);
        let on_cpu = crate::device::is_cpu(&resid.device());
        let run = || {
            for (l, block) in self
                .blocks
                .iter()
                .enumerate()
                .take(blocks.end)
                .skip(blocks.start)
            {
                let pre =
                    prefix.map(|c| (c.k[l - blocks.start].clone(), c.v[l - blocks.start].clone()));
                let (r, k, v) = self.block_forward(l, block, resid, pre, &tables, hooks);
                resid = r;
                if let Some(kv) = kv.as_mut() {
                    kv.k.push(k);
                    kv.v.push(v);
                }
            }
            resid
        };
        // On the CPU the blocks run on a pool thread (see `par::install`).
        let resid = if on_cpu {
            crate::par::install(run)
        } else {
            run()
        };
        let resid = if last {
            hooks.r3(HookPoint::ResidPre(self.config.n_layers), resid)
        } else {
            resid
        };
        (resid, kv)
    }

    /// Run block `l` alone on a residual stream starting at `hooks.pos_offset`, with keys and
    /// values of earlier positions for this layer in `prefix` (`k[0]`, `v[0]`).
    ///
    /// # Shapes
    /// - `resid`: `[batch, pos, d_model]` → same.
    pub(crate) fn run_one_block(
        &self,
        l: usize,
        resid: Tensor<3>,
        prefix: Option<&KvCache>,
        hooks: &mut HookRunner,
    ) -> Tensor<3> {
        let pre = prefix.map(|c| (c.k[0].clone(), c.v[0].clone()));
        let tables = self.run_tables(&resid, hooks.pos_offset);
        self.block_forward(l, &self.blocks[l], resid, pre, &tables, hooks)
            .0
    }

    /// Final norm and unembedding, hook `ln_final.hook_normalized`.
    ///
    /// # Shapes
    /// - `resid`: `[batch, pos, d_model]` → `[batch, pos, d_vocab]`.
    pub(crate) fn unembed_resid(&self, resid: Tensor<3>, hooks: &mut HookRunner) -> Tensor<3> {
        let x = self.ln_final.forward(resid);
        let x = hooks.r3(HookPoint::LnFinal, x);
        let [b, p, d] = x.dims();
        let logits = self.unembed_rows(x.reshape([b * p, d]));
        logits.reshape([b, p, self.config.d_vocab])
    }

    /// `x · W_U`. With tied embeddings it is computed as `(W_E · xᵀ)ᵀ`: the same products, but
    /// the CPU's gemm then reads `W_E` where it lies instead of repacking all of it on every
    /// call (a fifth of a 14-token SmolLM2 forward went to that copy).
    ///
    /// # Shapes
    /// - `x`: `[rows, d_model]` → `[rows, d_vocab]`.
    pub fn unembed_rows(&self, x: Tensor<2>) -> Tensor<2> {
        let kept = self.quantised.as_ref().and_then(|q| q.unembed.as_ref());
        if let Some(y) = kept
            .filter(|q| q.dims() == [self.config.d_vocab, self.config.d_model])
            .and_then(|q| rows::quantised(&x, q))
        {
            return y;
        }
        match &self.unembed {
            Some(w) => {
                let w = w.val();
                rows::matmul(&x, &w).unwrap_or_else(|| x.matmul(w))
            }
            None => {
                let e = self.embed.val();
                rows::matmul_transposed(&x, &e)
                    .unwrap_or_else(|| e.matmul(x.transpose()).transpose())
            }
        }
    }

    /// The columns `ids` of `W_U` (rows of `W_E` when tied), without copying the rest.
    ///
    /// # Shapes
    /// - `ids`: `[k]` → `[d_model, k]`.
    pub fn unembed_columns(&self, ids: Tensor<1, Int>) -> Tensor<2> {
        match &self.unembed {
            Some(w) => w.val().select(1, ids),
            None => self.embed.val().select(0, ids).transpose(),
        }
    }
}
