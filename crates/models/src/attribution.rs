//! Attribution patching (Nanda 2023; Syed et al. 2023, "Attribution Patching Outperforms
//! Automated Circuit Discovery"): a first-order estimate of every activation patch from one
//! clean run, one corrupted run and one backward pass. For an activation `a` the patched metric
//! is estimated as `m(corrupt) + (a_clean − a_corrupt) · ∂m/∂a` at the corrupted run, summed over
//! the entries a patch replaces. The grid has [`patch_sweep`](crate::patching::patch_sweep)'s
//! layout and normalisation, so the two can be shown side by side and correlated: where the
//! metric is close to linear in the patched activation they agree; where it is not (attention
//! saturating, a norm's rescaling) they differ, which is the method's known weakness.
//!
//! The gradient of the metric with respect to each hooked activation is taken by adding a zero
//! tensor that tracks gradients at each hook ([`Action::Shift`]): the weights stay constants (no
//! weight gradient is computed) and the graph through every activation stays whole, so one
//! backward pass gives all of them.

use burn::tensor::{Tensor, s};

use crate::budget::{BLOCK_BUDGET, block_bytes};
use crate::device::read_f32;
use crate::error::{ModelError, Result};
use crate::hooks::{Act, Action, HookPlan, HookPoint, Selector};
use crate::patching::{PatchGrid, PatchTarget, check_pair, check_vocab, grid_shape};
use crate::transformer::Transformer;

/// The hooks whose activations `target` patches, one per grid row group: every layer's, plus
/// the input to the final norm for `resid_pre`.
fn hooks(target: PatchTarget, n_layers: usize) -> Vec<HookPoint> {
    let layers = if target == PatchTarget::ResidPre {
        n_layers + 1
    } else {
        n_layers
    };
    (0..layers).map(|l| target.hook(l)).collect()
}

/// `logit(answer) − logit(wrong)` at the last position, summed over the batch (the metric whose
/// gradients attribution and edge attribution patching take).
///
/// # Shapes
/// - `logits`: `[batch, pos, d_vocab]` → `[1]`.
pub(crate) fn logit_diff(logits: Tensor<3>, answer: u32, wrong: u32) -> Tensor<1> {
    let [b, p, v] = logits.dims();
    let last = logits.slice(s![.., p - 1..p, ..]).reshape([b, v]);
    let (a, w) = (answer as usize, wrong as usize);
    (last.clone().slice(s![.., a..a + 1]) - last.slice(s![.., w..w + 1]))
        .sum_dim(0)
        .reshape([1])
}

/// The attribution-patching estimate of patching `target` from the clean run into the corrupted
/// one, for every layer and position (or head), in [`PatchGrid`]'s layout: `patched` holds the
/// estimated patched metric, `grid` its normalised recovery. Needs a build with autodiff
/// (feature `train`); any device.
pub async fn attribution_sweep(
    model: &Transformer,
    clean: &[u32],
    corrupt: &[u32],
    target: PatchTarget,
    answer: u32,
    wrong: u32,
) -> Result<PatchGrid> {
    check_pair(clean, corrupt)?;
    let cfg = &model.config;
    check_vocab(cfg, &[answer, wrong])?;
    let (n, h, p) = (cfg.n_layers, cfg.n_heads, clean.len());
    // The backward pass needs what every block computed (the graph keeps it), and the logits.
    // In 64 bits: the page's `usize` is 32, and a long prompt's product would wrap.
    let need =
        |t: usize| n as u64 * block_bytes(cfg, 1, t, t) as u64 + 8 * t as u64 * cfg.d_vocab as u64;
    if need(p) > BLOCK_BUDGET as u64 {
        let most = (1..p)
            .rev()
            .find(|&t| need(t) <= BLOCK_BUDGET as u64)
            .unwrap_or(0);
        return Err(ModelError::Input(format!(
            "attribution patching keeps every layer's activations for its backward pass: {p} \
             tokens would need about {} MB, more than can be held at once ({} MB); shorten the \
             prompts to at most {most} tokens",
            need(p) >> 20,
            BLOCK_BUDGET >> 20
        )));
    }
    // Before the first token where the prompts differ both runs' activations are equal (attention
    // is causal): no estimate there, as the sweep patches nothing there (the clean run may take
    // a fused form and the corrupted one the tensor form, which differ by rounding).
    let first_diff = clean
        .iter()
        .zip(corrupt)
        .position(|(a, b)| a != b)
        .unwrap_or(p);
    let hooks = hooks(target, n);
    // `tokens` refuses ids outside the vocabulary (a student's typed ids), as the sweep does.
    let (clean_ids, corrupt_ids) = (
        model.tokens(&[clean.to_vec()])?,
        model.tokens(&[corrupt.to_vec()])?,
    );

    // The clean run: its activations at every hook, and its metric.
    let (logits, clean_acts) =
        model.run_with_hooks(clean_ids, &HookPlan::caching(hooks.iter().copied()));
    let clean_metric = read_f32(logit_diff(logits, answer, wrong)).await?[0];

    // The corrupted run with a zero leaf added at every hook: the leaves' gradients are the
    // metric's gradients with respect to the activations.
    let mut plan = HookPlan::caching(hooks.iter().copied());
    let mut leaves = Vec::with_capacity(hooks.len());
    for &hook in &hooks {
        let act = clean_acts
            .get(hook)
            .ok_or_else(|| ModelError::Input(format!("{hook} was not computed")))?;
        let leaf = match act {
            Act::R3(t) => Act::R3(t.zeros_like().autodiff().require_grad()),
            Act::R4(t) => Act::R4(t.zeros_like().autodiff().require_grad()),
        };
        plan = plan.with(hook, Selector::all(), Action::Shift(leaf.clone()));
        leaves.push(leaf);
    }
    let (logits, corrupt_acts) = model.run_with_hooks(corrupt_ids, &plan);
    let metric = logit_diff(logits, answer, wrong);
    let grads = metric.backward();
    let corrupt_metric = read_f32(metric.detach()).await?[0];

    // Per hook, (clean − corrupt) · gradient summed over the model dimension: `[pos]` for
    // residual-like hooks, `[pos, head]` for `hook_z`.
    let mut effects = Vec::with_capacity(hooks.len());
    for ((&hook, leaf), clean_act) in hooks
        .iter()
        .zip(&leaves)
        .zip(hooks.iter().map(|&k| clean_acts.get(k)))
    {
        let missing = || ModelError::Input(format!("no gradient reached {hook}"));
        let effect = match (leaf, clean_act, corrupt_acts.get(hook)) {
            (Act::R3(leaf), Some(Act::R3(c)), Some(Act::R3(x))) => {
                let g = leaf.grad(&grads).ok_or_else(missing)?;
                let diff = c.clone().inner() - x.clone().detach().inner();
                (diff * g).sum_dim(2).reshape([p])
            }
            (Act::R4(leaf), Some(Act::R4(c)), Some(Act::R4(x))) => {
                let g = leaf.grad(&grads).ok_or_else(missing)?;
                let diff = c.clone().inner() - x.clone().detach().inner();
                (diff * g).sum_dim(3).reshape([p * h])
            }
            _ => return Err(missing()),
        };
        effects.push(read_f32(effect).await?);
    }

    let (rows, cols) = grid_shape(target, n, h, p);
    let mut patched = vec![vec![corrupt_metric; cols]; rows];
    for (l, e) in effects.iter().enumerate() {
        match target {
            PatchTarget::HeadOut => {
                for hh in 0..h {
                    patched[l][hh] += (first_diff..p).map(|pos| e[pos * h + hh]).sum::<f32>();
                }
            }
            PatchTarget::HeadOutPos => {
                for hh in 0..h {
                    for pos in first_diff..p {
                        patched[l * h + hh][pos] += e[pos * h + hh];
                    }
                }
            }
            _ => {
                for pos in first_diff..p {
                    patched[l][pos] += e[pos];
                }
            }
        }
    }
    Ok(PatchGrid::new(clean_metric, corrupt_metric, patched))
}
