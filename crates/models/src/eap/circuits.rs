//! Circuits evaluated by patching edges: the clean prompt with chosen edges kept and every other
//! edge carrying the corrupted run's activation (Hanna et al.'s `evaluate_graph`), faithfulness
//! curves and single edges' exact effects.

use burn::tensor::{Int, Tensor, TensorData, s};
use serde::{Deserialize, Serialize};

use super::{EdgeGraph, heads_as_rows, rows_as_heads, writer_rows};
use crate::device::read_f32;
use crate::error::{ModelError, Result};
use crate::hooks::{Action, HookPlan, HookPoint, HookRunner, Selector};
use crate::patching::{Progress, check_pair, check_vocab};
use crate::transformer::Transformer;

/// Runs the clean prompt with chosen edges kept and every other edge carrying the corrupted
/// run's activation (a circuit's evaluation, or one edge's exact effect).
pub struct EdgePatcher<'a> {
    model: &'a Transformer,
    graph: EdgeGraph,
    clean: Tensor<2, Int>,
    /// The corrupted run's upstream activations, `[upstream, pos · d_model]`.
    corrupt: Tensor<2>,
    ids: Tensor<1, Int>,
    p: usize,
}

impl<'a> EdgePatcher<'a> {
    /// One corrupted run, kept for every evaluation after it.
    pub fn new(
        model: &'a Transformer,
        clean: &[u32],
        corrupt: &[u32],
        answer: u32,
        wrong: u32,
    ) -> Result<Self> {
        check_pair(clean, corrupt)?;
        check_vocab(&model.config, &[answer, wrong])?;
        let graph = EdgeGraph::of(&model.config);
        let corrupt_ids = model.tokens(&[corrupt.to_vec()])?;
        let cache =
            model.activations(corrupt_ids, None, &HookPlan::caching(graph.writer_hooks()))?;
        let ids = Tensor::<1, Int>::from_data(
            TensorData::new(vec![answer as i32, wrong as i32], [2]),
            &model.device(),
        );
        Ok(Self {
            model,
            graph,
            clean: model.tokens(&[clean.to_vec()])?,
            corrupt: writer_rows(&graph, &cache)?,
            ids,
            p: clean.len(),
        })
    }

    /// The graph.
    pub fn graph(&self) -> EdgeGraph {
        self.graph
    }

    /// The metric with the edges `keep(u, v)` says yes to kept and the others corrupted.
    ///
    /// # Shapes
    /// - returns `[1]`, unread (so many evaluations can be read together).
    pub fn metric(&self, keep: &dyn Fn(usize, usize) -> bool) -> Tensor<1> {
        let (model, g) = (self.model, &self.graph);
        let (p, d) = (self.p, model.config.d_model);
        let device = model.device();
        let empty = HookPlan::default();
        let mut resid = model.embed_tokens(self.clean.clone(), &mut HookRunner::new(&empty, 0));
        let corrupt_row = |u: usize| self.corrupt.clone().slice(s![u..u + 1, ..]);
        // Per upstream node computed so far: corrupt − this run, `[*, pos · d]` blocks.
        let mut diffs = vec![corrupt_row(0) - resid.clone().reshape([1, p * d])];
        // The shifts of readers `vs` (all reading after `prev` upstream nodes): for each, the
        // sum of the differences of its edges left out; `None` when every edge is kept.
        let shifts = |vs: std::ops::Range<usize>, prev: usize, diffs: &[Tensor<2>]| {
            let mut mask = vec![0f32; vs.len() * prev];
            for (r, v) in vs.clone().enumerate() {
                for u in 0..prev {
                    if !keep(u, v) {
                        mask[r * prev + u] = 1.0;
                    }
                }
            }
            if mask.iter().all(|&m| m == 0.0) {
                return None;
            }
            let mask = Tensor::<2>::from_data(TensorData::new(mask, [vs.len(), prev]), &device);
            Some(mask.matmul(Tensor::cat(diffs.to_vec(), 0)))
        };
        let (h, hkv) = (g.n_heads, g.n_kv_heads);
        let per = g.readers_per_layer();
        for l in 0..g.n_layers {
            let v0 = l * per;
            let prev = g.prev(v0);
            let mut plan = HookPlan::caching([HookPoint::Result(l)]);
            // Every attention reader of the layer in one product, `[h + 2·hkv, pos · d]`.
            if let Some(rows) = shifts(v0..v0 + h + 2 * hkv, prev, &diffs) {
                for (hook, range) in [
                    (HookPoint::QInput(l), 0..h),
                    (HookPoint::KInput(l), h..h + hkv),
                    (HookPoint::VInput(l), h + hkv..h + 2 * hkv),
                ] {
                    let part = rows.clone().slice(s![range, ..]);
                    let shift = crate::hooks::Act::R4(rows_as_heads(part, p, d));
                    plan = plan.with(hook, Selector::all(), Action::Shift(shift));
                }
            }
            let mut hooks = HookRunner::new(&plan, 0);
            resid = model.attention_step(l, resid, &mut hooks);
            let heads = hooks.cache.r4(HookPoint::Result(l)).map(heads_as_rows);
            let Some(heads) = heads else {
                unreachable!("the plan caches hook_result")
            };
            let u0 = prev;
            diffs.push(self.corrupt.clone().slice(s![u0..u0 + h, ..]) - heads);

            let mut plan = HookPlan::caching([HookPoint::MlpOut(l)]);
            if let Some(rows) = shifts(v0 + per - 1..v0 + per, g.prev(v0 + per - 1), &diffs) {
                let shift = crate::hooks::Act::R3(rows.reshape([1, p, d]));
                plan = plan.with(HookPoint::MlpIn(l), Selector::all(), Action::Shift(shift));
            }
            let mut hooks = HookRunner::new(&plan, 0);
            resid = model.mlp_step(l, resid, &mut hooks);
            let Some(mlp) = hooks.cache.r3(HookPoint::MlpOut(l)) else {
                unreachable!("the plan caches hook_mlp_out")
            };
            diffs.push(corrupt_row(u0 + h) - mlp.reshape([1, p * d]));
        }
        let logits_v = g.downstream() - 1;
        if let Some(rows) = shifts(logits_v..logits_v + 1, g.upstream(), &diffs) {
            resid = resid + rows.reshape([1, p, d]);
        }
        let last = resid.slice(s![.., p - 1..p, ..]).reshape([1, d]);
        let pair = model.logits_of(last, self.ids.clone()).reshape([2]);
        pair.clone().slice(s![0..1]) - pair.slice(s![1..2])
    }
}

/// One point of a faithfulness curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CircuitPoint {
    /// Edges kept (the top `edges` by |score|).
    pub edges: usize,
    /// How many of them lie on a kept path from the input to the logits (the others change
    /// nothing; [`EdgeGraph::connected`]).
    pub connected: usize,
    /// The metric with only those edges kept.
    pub metric: f32,
}

/// The metric of the circuits made of the top `counts[i]` edges by |score| (counts past the
/// number of edges are clipped to it). `progress(done, total)` is awaited between circuits;
/// resolving to `false` cancels.
pub async fn faithfulness_curve(
    patcher: &EdgePatcher<'_>,
    ranked: &[(usize, usize)],
    counts: &[usize],
    progress: &mut dyn FnMut(usize, usize) -> Progress,
) -> Result<Vec<CircuitPoint>> {
    let g = patcher.graph();
    let vs = g.downstream();
    let mut points = Vec::with_capacity(counts.len());
    for (i, &n) in counts.iter().enumerate() {
        if !progress(i, counts.len()).await {
            return Err(ModelError::Input("cancelled".into()));
        }
        let n = n.min(ranked.len());
        let mut kept = vec![false; g.upstream() * vs];
        for &(u, v) in &ranked[..n] {
            kept[u * vs + v] = true;
        }
        let metric = read_f32(patcher.metric(&|u, v| kept[u * vs + v])).await?[0];
        points.push(CircuitPoint {
            edges: n,
            connected: g.connected(&kept),
            metric,
        });
    }
    progress(counts.len(), counts.len()).await;
    Ok(points)
}

/// The exact effect of corrupting each of `edges` alone in the clean run: the metric with every
/// other edge kept, minus the metric with all kept. `progress` as in [`faithfulness_curve`].
pub async fn exact_edge_effects(
    patcher: &EdgePatcher<'_>,
    edges: &[(usize, usize)],
    progress: &mut dyn FnMut(usize, usize) -> Progress,
) -> Result<Vec<f32>> {
    let all = patcher.metric(&|_, _| true);
    let mut out = Vec::with_capacity(edges.len());
    for (i, &(cu, cv)) in edges.iter().enumerate() {
        if !progress(i, edges.len()).await {
            return Err(ModelError::Input("cancelled".into()));
        }
        out.push(patcher.metric(&|u, v| (u, v) != (cu, cv)) - all.clone());
    }
    progress(edges.len(), edges.len()).await;
    if out.is_empty() {
        return Ok(Vec::new());
    }
    read_f32(Tensor::cat(out, 0)).await
}
