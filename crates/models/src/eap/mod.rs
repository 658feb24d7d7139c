//! Edge attribution patching over the edges between a transformer's components: EAP (Syed et
//! al. 2023) and EAP with integrated gradients (EAP-IG; Hanna, Pezzelle and Belinkov 2024), and
//! circuits evaluated by patching edges (their `evaluate_graph`).
//!
//! **The graph.** Upstream nodes (what writes to the residual stream), in order: `input` (the
//! residual entering block 0), then per layer `a{l}.h{i}` (head i's write, `hook_result` without
//! the output bias) and `m{l}` (the MLP's output). Downstream nodes (what reads it), in order: per
//! layer the queries of each head `a{l}.h{i}<q>`, the keys and the values of each key/value head
//! `a{l}.h{j}<k>`, `a{l}.h{j}<v>` (grouped-query models keep their shared keys/values: one input per
//! key/value head, as the model computes them, named `a{l}.kv{j}<k>`, `a{l}.kv{j}<v>`; Hanna et
//! al.'s code ungroups them into one per query head, so its graph of such a model has more edges),
//! the MLP `m{l}`; then `logits`. Every upstream node
//! computed before a downstream node reads the residual stream has an edge to it.
//!
//! **Scores** (Hanna et al.'s convention): `(a_u(corrupt) − a_u(clean)) · ∂m/∂x_v`, summed over
//! positions and the model dimension, where `x_v` is the residual stream as `v` alone reads it
//! before its norm (the `hook_q_input`/`hook_k_input`/`hook_v_input`/`hook_mlp_in` hooks, the
//! final residual for `logits`): a first-order estimate of how much corrupting that one edge in
//! the clean run changes the metric. EAP takes the gradient at the clean run; EAP-IG averages it
//! over runs whose input is moved from the corrupted input towards the clean one in `steps` equal
//! steps (`k/steps`, k = 0..steps, their code's points).
//!
//! **Circuits.** A set of edges is evaluated on the clean prompt with every other edge carrying
//! the corrupted run's activation instead: each downstream node reads the current residual plus,
//! for each edge into it that is left out, `a_u(corrupt) − a_u(this run)`. All edges give the clean
//! metric back, none the corrupted one.

use burn::tensor::Tensor;
#[cfg(feature = "train")]
use burn::tensor::TensorData;
use serde::{Deserialize, Serialize};

use crate::config::TransformerConfig;
use crate::error::{ModelError, Result};
use crate::hooks::{ActivationCache, HookPoint};
#[cfg(feature = "train")]
use crate::{
    device::read_f32,
    hooks::{Action, HookPlan, Selector},
    patching::{Progress, check_pair, check_vocab},
    transformer::Transformer,
};

/// Circuits evaluated by patching edges.
mod circuits;
pub use circuits::{CircuitPoint, EdgePatcher, exact_edge_effects, faithfulness_curve};

/// The edges of one model: how many heads and layers, and how nodes are numbered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeGraph {
    /// Layers.
    pub n_layers: usize,
    /// Query heads per layer.
    pub n_heads: usize,
    /// Key/value heads per layer.
    pub n_kv_heads: usize,
}

/// What a downstream node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// Query head `i` of layer `l`.
    Q(usize, usize),
    /// Key/value head `j` of layer `l`, its keys.
    K(usize, usize),
    /// Key/value head `j` of layer `l`, its values.
    V(usize, usize),
    /// The MLP of layer `l`.
    Mlp(usize),
    /// The unembedding.
    Logits,
}

impl EdgeGraph {
    /// The graph of a model.
    pub fn of(cfg: &TransformerConfig) -> Self {
        Self {
            n_layers: cfg.n_layers,
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.n_kv_heads,
        }
    }

    /// Upstream nodes: `1 + n_layers · (n_heads + 1)`.
    pub fn upstream(&self) -> usize {
        1 + self.n_layers * (self.n_heads + 1)
    }

    /// Downstream nodes per layer: queries, keys, values, MLP.
    fn readers_per_layer(&self) -> usize {
        self.n_heads + 2 * self.n_kv_heads + 1
    }

    /// Downstream nodes: `n_layers · (n_heads + 2 · n_kv_heads + 1) + 1`.
    pub fn downstream(&self) -> usize {
        self.n_layers * self.readers_per_layer() + 1
    }

    /// Downstream node `v`.
    pub fn reader(&self, v: usize) -> Reader {
        let per = self.readers_per_layer();
        if v >= self.n_layers * per {
            return Reader::Logits;
        }
        let (l, i) = (v / per, v % per);
        let (h, k) = (self.n_heads, self.n_kv_heads);
        if i < h {
            Reader::Q(l, i)
        } else if i < h + k {
            Reader::K(l, i - h)
        } else if i < h + 2 * k {
            Reader::V(l, i - h - k)
        } else {
            Reader::Mlp(l)
        }
    }

    /// How many upstream nodes are computed before downstream node `v` reads: the edges into
    /// `v` come from upstream nodes `0..prev(v)`.
    pub fn prev(&self, v: usize) -> usize {
        let before = |l: usize| 1 + l * (self.n_heads + 1);
        match self.reader(v) {
            Reader::Q(l, _) | Reader::K(l, _) | Reader::V(l, _) => before(l),
            Reader::Mlp(l) => before(l) + self.n_heads,
            Reader::Logits => self.upstream(),
        }
    }

    /// Whether `u → v` is an edge.
    pub fn is_edge(&self, u: usize, v: usize) -> bool {
        v < self.downstream() && u < self.prev(v)
    }

    /// How many edges there are.
    pub fn edges(&self) -> usize {
        (0..self.downstream()).map(|v| self.prev(v)).sum()
    }

    /// The layer of upstream node `u` (`None` for the input).
    pub fn writer_layer(&self, u: usize) -> Option<usize> {
        (u > 0).then(|| (u - 1) / (self.n_heads + 1))
    }

    /// Upstream node `u`'s name: `input`, `a{l}.h{i}`, `m{l}`.
    pub fn upstream_name(&self, u: usize) -> String {
        match self.writer_layer(u) {
            None => "input".into(),
            Some(l) => {
                let i = (u - 1) % (self.n_heads + 1);
                if i < self.n_heads {
                    format!("a{l}.h{i}")
                } else {
                    format!("m{l}")
                }
            }
        }
    }

    /// Downstream node `v`'s name: `a{l}.h{i}<q>`, `a{l}.h{j}<k>`, `a{l}.h{j}<v>`, `m{l}`,
    /// `logits`; with grouped keys/values `a{l}.kv{j}<k>`, `a{l}.kv{j}<v>` (key/value head `j`,
    /// read by query heads `j·g .. (j+1)·g`, `g = n_heads / n_kv_heads`).
    pub fn downstream_name(&self, v: usize) -> String {
        let kv = if self.n_kv_heads == self.n_heads {
            "h"
        } else {
            "kv"
        };
        match self.reader(v) {
            Reader::Q(l, i) => format!("a{l}.h{i}<q>"),
            Reader::K(l, j) => format!("a{l}.{kv}{j}<k>"),
            Reader::V(l, j) => format!("a{l}.{kv}{j}<v>"),
            Reader::Mlp(l) => format!("m{l}"),
            Reader::Logits => "logits".into(),
        }
    }

    /// The upstream nodes that read through downstream node `v` (the head of its queries, the
    /// query heads sharing its keys/values, the MLP); none for the logits.
    fn writers_reading_through(&self, v: usize) -> std::ops::Range<usize> {
        let head = |l: usize, i: usize| 1 + l * (self.n_heads + 1) + i;
        let g = self.n_heads / self.n_kv_heads.max(1);
        match self.reader(v) {
            Reader::Q(l, i) => head(l, i)..head(l, i) + 1,
            Reader::K(l, j) | Reader::V(l, j) => head(l, j * g)..head(l, (j + 1) * g),
            Reader::Mlp(l) => head(l, self.n_heads)..head(l, self.n_heads) + 1,
            Reader::Logits => 0..0,
        }
    }

    /// How many of the edges `kept[u · downstream + v]` lie on a path of kept edges from the
    /// input to the logits (Hanna et al. prune the others: they carry the corrupted activation
    /// whether kept or not, so they change no metric).
    pub fn connected(&self, kept: &[bool]) -> usize {
        let (us, vs) = (self.upstream(), self.downstream());
        let is_kept = |u: usize, v: usize| kept.get(u * vs + v).copied().unwrap_or(false);
        // Forward: a node is reached when a kept edge from a reached node enters one of its
        // readers. Upstream indices are in the order the model computes them.
        let mut reached = vec![false; us];
        reached[0] = true;
        for v in 0..vs {
            let entered = (0..self.prev(v)).any(|u| reached[u] && is_kept(u, v));
            if entered {
                for w in self.writers_reading_through(v) {
                    reached[w] = true;
                }
            }
        }
        // Backward: a node reaches the logits when a kept edge leaves it for the logits or for a
        // reader of a node that reaches them.
        let mut reaches = vec![false; us];
        let logits = vs - 1;
        let into = |v: usize, reaches: &[bool]| {
            v == logits || self.writers_reading_through(v).any(|w| reaches[w])
        };
        for u in (0..us).rev() {
            reaches[u] = (0..vs).any(|v| is_kept(u, v) && self.is_edge(u, v) && into(v, &reaches));
        }
        (0..us)
            .flat_map(|u| (0..vs).map(move |v| (u, v)))
            .filter(|&(u, v)| {
                is_kept(u, v) && self.is_edge(u, v) && reached[u] && into(v, &reaches)
            })
            .count()
    }

    /// The hooks whose activations are the upstream nodes' (besides `hook_resid_pre` of layer 0).
    fn writer_hooks(&self) -> Vec<HookPoint> {
        let mut hooks = vec![HookPoint::ResidPre(0)];
        for l in 0..self.n_layers {
            hooks.push(HookPoint::Result(l));
            hooks.push(HookPoint::MlpOut(l));
        }
        hooks
    }
}

/// Scores of every edge of a graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeScores {
    /// The graph.
    pub graph: EdgeGraph,
    /// `[upstream][downstream]` row-major; 0 where there is no edge.
    pub scores: Vec<f32>,
    /// The metric on the clean prompt.
    pub clean_metric: f32,
    /// The metric on the corrupted prompt.
    pub corrupt_metric: f32,
}

impl EdgeScores {
    /// The score of `u → v`.
    pub fn score(&self, u: usize, v: usize) -> f32 {
        self.scores[u * self.graph.downstream() + v]
    }

    /// Every edge, largest |score| first (ties: lower `u`, then lower `v`).
    pub fn ranked(&self) -> Vec<(usize, usize)> {
        let g = &self.graph;
        let mut edges: Vec<(usize, usize)> = (0..g.upstream())
            .flat_map(|u| (0..g.downstream()).map(move |v| (u, v)))
            .filter(|&(u, v)| g.is_edge(u, v))
            .collect();
        edges.sort_by(|&a, &b| {
            self.score(b.0, b.1)
                .abs()
                .total_cmp(&self.score(a.0, a.1).abs())
                .then(a.cmp(&b))
        });
        edges
    }
}

/// Which gradient the scores use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdgeMethod {
    /// EAP: the gradient at the clean run.
    Eap,
    /// EAP-IG: the gradient averaged over inputs between the corrupted and the clean one.
    EapIg,
}

/// The upstream nodes' activations of one cached run, one row each, in the graph's order.
///
/// # Shapes
/// - a cache of a batch-1 run over `pos` positions → `[upstream, pos · d_model]`.
pub(super) fn writer_rows(graph: &EdgeGraph, cache: &ActivationCache) -> Result<Tensor<2>> {
    let missing = |h: HookPoint| ModelError::Input(format!("{h} was not computed"));
    let input = cache
        .r3(HookPoint::ResidPre(0))
        .ok_or_else(|| missing(HookPoint::ResidPre(0)))?;
    let [_, p, d] = input.dims();
    let mut rows = vec![input.reshape([1, p * d])];
    for l in 0..graph.n_layers {
        let heads = cache
            .r4(HookPoint::Result(l))
            .ok_or_else(|| missing(HookPoint::Result(l)))?;
        rows.push(heads_as_rows(heads));
        let mlp = cache
            .r3(HookPoint::MlpOut(l))
            .ok_or_else(|| missing(HookPoint::MlpOut(l)))?;
        rows.push(mlp.reshape([1, p * d]));
    }
    Ok(Tensor::cat(rows, 0))
}

/// # Shapes
/// - `x`: `[batch, pos, n, d]` → `[n, batch · pos · d]` (batch 1 in use).
pub(super) fn heads_as_rows(x: Tensor<4>) -> Tensor<2> {
    let [b, p, n, d] = x.dims();
    x.reshape([b * p, n, d])
        .swap_dims(0, 1)
        .reshape([n, b * p * d])
}

/// # Shapes
/// - `rows`: `[n, pos · d]` → `[1, pos, n, d]`, the layout of a per-head input hook.
pub(super) fn rows_as_heads(rows: Tensor<2>, p: usize, d: usize) -> Tensor<4> {
    let n = rows.dims()[0];
    rows.reshape([n, p, d])
        .swap_dims(0, 1)
        .reshape([1, p, n, d])
}

/// Edge scores by EAP or EAP-IG (`steps` interpolation points, ignored by EAP) for the metric
/// `logit(answer) − logit(wrong)` at the last position. Needs autodiff (feature `train`).
#[cfg(feature = "train")]
#[allow(clippy::too_many_arguments)] // the patching sweep's inputs, the method and its progress
pub async fn edge_attribution(
    model: &Transformer,
    clean: &[u32],
    corrupt: &[u32],
    answer: u32,
    wrong: u32,
    method: EdgeMethod,
    steps: usize,
    progress: &mut dyn FnMut(usize, usize) -> Progress,
) -> Result<EdgeScores> {
    use crate::attribution::logit_diff;
    use crate::budget::{BLOCK_BUDGET, block_bytes};
    use crate::hooks::Act;

    check_pair(clean, corrupt)?;
    let cfg = &model.config;
    check_vocab(cfg, &[answer, wrong])?;
    let graph = EdgeGraph::of(cfg);
    let (p, d) = (clean.len(), cfg.d_model);
    let (h, hkv) = (cfg.n_heads, cfg.n_kv_heads);
    let alphas: Vec<f32> = match method {
        EdgeMethod::Eap => vec![1.0],
        EdgeMethod::EapIg => {
            if steps == 0 || steps > 100 {
                return Err(ModelError::Input(format!(
                    "EAP-IG takes 1 to 100 steps, not {steps}"
                )));
            }
            (0..steps).map(|k| k as f32 / steps as f32).collect()
        }
    };
    // `tokens` refuses ids outside the vocabulary and prompts past the context.
    let (clean_ids, corrupt_ids) = (
        model.tokens(&[clean.to_vec()])?,
        model.tokens(&[corrupt.to_vec()])?,
    );
    // A gradient run keeps every block's activations (and the per-head copies of the residual)
    // for the backward pass, and its logits. In 64 bits: the page's `usize` is 32.
    let row_bytes = cfg.n_layers as u64
        * (block_bytes(cfg, 1, p, p) as u64 + 4 * (p * d) as u64 * (h + 2 * hkv) as u64)
        + 8 * p as u64 * cfg.d_vocab as u64;
    if row_bytes > BLOCK_BUDGET as u64 {
        return Err(ModelError::Input(format!(
            "edge attribution keeps every layer's activations for its backward pass: {p} tokens \
             would need about {} MB, more than can be held at once ({} MB); shorten the prompts",
            row_bytes >> 20,
            BLOCK_BUDGET >> 20
        )));
    }

    let writers = HookPlan::caching(graph.writer_hooks());
    let (logits, clean_cache) = model.run_with_hooks(clean_ids, &writers);
    let clean_metric = read_f32(logit_diff(logits, answer, wrong)).await?[0];
    let (logits, corrupt_cache) = model.run_with_hooks(corrupt_ids, &writers);
    let corrupt_metric = read_f32(logit_diff(logits, answer, wrong)).await?[0];
    let diff = writer_rows(&graph, &corrupt_cache)? - writer_rows(&graph, &clean_cache)?;
    let input = |c: &ActivationCache| {
        c.r3(HookPoint::ResidPre(0))
            .ok_or_else(|| ModelError::Input("the input was not computed".into()))
    };
    let (clean_input, corrupt_input) = (input(&clean_cache)?, input(&corrupt_cache)?);

    // Gradients at every reader's input, summed over the interpolation points.
    let device = model.device();
    let mut grads: Option<Tensor<2>> = None;
    // One interpolation point per run: progress and cancel between them, and memory for one.
    for (i, chunk) in alphas.chunks(1).enumerate() {
        if !progress(i, alphas.len()).await {
            return Err(ModelError::Input("cancelled".into()));
        }
        let c = chunk.len();
        let alpha = Tensor::<1>::from_data(TensorData::new(chunk.to_vec(), [c]), &device)
            .reshape([c, 1, 1]);
        let inputs = corrupt_input.clone().expand([c, p, d])
            + (clean_input.clone() - corrupt_input.clone()).expand([c, p, d]) * alpha;
        let mut plan = HookPlan::default().with(
            HookPoint::ResidPre(0),
            Selector::all(),
            Action::Replace(Act::R3(inputs)),
        );
        let mut leaves = Vec::new();
        let leaf4 = |n: usize| {
            Tensor::<4>::zeros([c, p, n, d], &device)
                .autodiff()
                .require_grad()
        };
        for l in 0..graph.n_layers {
            for (hook, n) in [
                (HookPoint::QInput(l), h),
                (HookPoint::KInput(l), hkv),
                (HookPoint::VInput(l), hkv),
            ] {
                let leaf = leaf4(n);
                plan = plan.with(hook, Selector::all(), Action::Shift(Act::R4(leaf.clone())));
                leaves.push(Act::R4(leaf));
            }
            let leaf = Tensor::<3>::zeros([c, p, d], &device)
                .autodiff()
                .require_grad();
            plan = plan.with(
                HookPoint::MlpIn(l),
                Selector::all(),
                Action::Shift(Act::R3(leaf.clone())),
            );
            leaves.push(Act::R3(leaf));
        }
        let leaf = Tensor::<3>::zeros([c, p, d], &device)
            .autodiff()
            .require_grad();
        plan = plan.with(
            HookPoint::ResidPre(graph.n_layers),
            Selector::all(),
            Action::Shift(Act::R3(leaf.clone())),
        );
        leaves.push(Act::R3(leaf));

        let tokens = model.tokens(&vec![clean.to_vec(); c])?;
        let (logits, _) = model.run_with_hooks(tokens, &plan);
        let g = logit_diff(logits, answer, wrong).backward();
        let missing = || ModelError::Input("no gradient reached a reader's input".into());
        let mut rows = Vec::with_capacity(leaves.len());
        for leaf in &leaves {
            rows.push(match leaf {
                Act::R4(t) => heads_as_rows(t.grad(&g).ok_or_else(missing)?.sum_dim(0)),
                Act::R3(t) => t
                    .grad(&g)
                    .ok_or_else(missing)?
                    .sum_dim(0)
                    .reshape([1, p * d]),
            });
        }
        let chunk_grads = Tensor::cat(rows, 0);
        grads = Some(match grads {
            Some(s) => s + chunk_grads,
            None => chunk_grads,
        });
    }
    progress(alphas.len(), alphas.len()).await;
    let grads = grads
        .ok_or_else(|| ModelError::Input("no gradient run".into()))?
        .div_scalar(alphas.len() as f64);
    let scores = diff.matmul(grads.transpose());
    let mut scores = read_f32(scores.reshape([graph.upstream() * graph.downstream()])).await?;
    let vs = graph.downstream();
    for (i, s) in scores.iter_mut().enumerate() {
        if !graph.is_edge(i / vs, i % vs) {
            *s = 0.0;
        }
    }
    Ok(EdgeScores {
        graph,
        scores,
        clean_metric,
        corrupt_metric,
    })
}
