//! Ablating a component: its mean output over the questions, the interventions that replace it,
//! and the questions scored with a set of components ablated together.

use burn::tensor::{Int, Tensor, TensorData, s};
use interplay_models::Transformer;
use interplay_models::device::read_f32;
use interplay_models::hooks::{Act, Action, HookPlan, HookPoint, Intervention, Selector};

use super::{Ablation, Component, Item, Part, RecallSpec, Scope, Score};
use crate::LabError;

/// Per layer, the mean over every position of every question of `hook_attn_out` `[d_model]`,
/// `hook_mlp_out` `[d_model]` and `attn.hook_z` `[heads · d_head]`.
pub struct Means {
    attn: Vec<Vec<f32>>,
    mlp: Vec<Vec<f32>>,
    z: Vec<Vec<f32>>,
}

/// Equal-length batches of at most 16 items, in a fixed order.
fn batches(items: &[&Item]) -> Vec<Vec<usize>> {
    crate::neurons::equal_length_batches(items.iter().map(|it| it.ids.len()))
}

/// The components' mean outputs over `items` (see [`Means`]).
pub async fn means(m: &Transformer, items: &[&Item]) -> Result<Means, LabError> {
    let nl = m.config.n_layers;
    let hooks: Vec<HookPoint> = (0..nl)
        .flat_map(|l| [HookPoint::AttnOut(l), HookPoint::MlpOut(l), HookPoint::Z(l)])
        .collect();
    let plan = HookPlan::caching(hooks.iter().copied());
    let mut sums: Vec<Vec<f64>> = vec![Vec::new(); hooks.len()];
    let mut count = 0usize;
    for g in batches(items) {
        let ids: Vec<Vec<u32>> = g.iter().map(|&i| items[i].ids.clone()).collect();
        count += ids.len() * ids[0].len();
        let cache = m.activations(m.tokens(&ids)?, None, &plan)?;
        // Per hook, the sum over batch and positions, flattened: `[d]` or `[heads · d_head]`.
        let mut parts = Vec::with_capacity(hooks.len());
        for &h in &hooks {
            let a = cache.get(h).ok_or_else(|| {
                LabError::Spec(format!("internal: {h} was asked for and not recorded"))
            })?;
            let flat: Tensor<2> = match a {
                Act::R3(t) => {
                    let [b, p, d] = t.dims();
                    t.clone().reshape([b * p, d])
                }
                Act::R4(t) => {
                    let [b, p, nh, dh] = t.dims();
                    t.clone().reshape([b * p, nh * dh])
                }
            };
            parts.push(flat.sum_dim(0));
        }
        let widths: Vec<usize> = parts.iter().map(|t| t.dims()[1]).collect();
        let all = read_f32(Tensor::cat(parts, 1)).await?;
        let mut at = 0;
        for (s, w) in sums.iter_mut().zip(widths) {
            if s.is_empty() {
                *s = vec![0.0; w];
            }
            for (x, &y) in s.iter_mut().zip(&all[at..at + w]) {
                *x += f64::from(y);
            }
            at += w;
        }
    }
    let n = count.max(1) as f64;
    let mut it = sums
        .into_iter()
        .map(|s| s.into_iter().map(|x| (x / n) as f32).collect::<Vec<f32>>());
    let (mut attn, mut mlp, mut z) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..nl {
        attn.push(it.next().unwrap_or_default());
        mlp.push(it.next().unwrap_or_default());
        z.push(it.next().unwrap_or_default());
    }
    Ok(Means { attn, mlp, z })
}

/// The interventions that ablate `c` in a run of `p` tokens (`batch` 1: broadcast over rows).
pub(super) fn ablate(
    m: &Transformer,
    c: Component,
    ablation: Ablation,
    scope: Scope,
    p: usize,
    means: Option<&Means>,
) -> Intervention {
    let cfg = &m.config;
    let selector = match scope {
        Scope::All => Selector::all(),
        Scope::Last => Selector::position(p - 1),
    };
    let (hook, selector) = match c.part {
        Part::Attn => (HookPoint::AttnOut(c.layer), selector),
        Part::Mlp => (HookPoint::MlpOut(c.layer), selector),
        Part::Head(h) => (HookPoint::Z(c.layer), selector.at_heads(vec![h])),
    };
    let action = match (ablation, means) {
        (Ablation::Mean, Some(mu)) => {
            let device = m.device();
            let src = match c.part {
                Part::Attn | Part::Mlp => {
                    let v = if c.part == Part::Attn {
                        &mu.attn[c.layer]
                    } else {
                        &mu.mlp[c.layer]
                    };
                    let d = v.len();
                    Act::R3(
                        Tensor::<3>::from_data(TensorData::new(v.clone(), [1, 1, d]), &device)
                            .expand([1, p, d]),
                    )
                }
                Part::Head(_) => {
                    let (nh, dh) = (cfg.n_heads, cfg.d_head);
                    Act::R4(
                        Tensor::<4>::from_data(
                            TensorData::new(mu.z[c.layer].clone(), [1, 1, nh, dh]),
                            &device,
                        )
                        .expand([1, p, nh, dh]),
                    )
                }
            };
            Action::Mean(src)
        }
        _ => Action::Zero,
    };
    Intervention {
        hook,
        selector,
        action,
    }
}

/// Scores of `items` with `off` ablated together (an empty list: the model as it is).
pub(super) async fn score_with(
    m: &Transformer,
    items: &[&Item],
    off: &[Component],
    spec: &RecallSpec,
    means: Option<&Means>,
) -> Result<Score, LabError> {
    let mut margins = vec![0f64; items.len()];
    let mut answered = 0;
    let device = m.device();
    for g in batches(items) {
        let ids: Vec<Vec<u32>> = g.iter().map(|&i| items[i].ids.clone()).collect();
        let (b, p) = (ids.len(), ids[0].len());
        let mut plan = HookPlan::default();
        for &c in off {
            plan.interventions
                .push(ablate(m, c, spec.ablation, spec.scope, p, means));
        }
        let (resid, _, _) = m.extend_residual(m.tokens(&ids)?, None, &plan)?;
        let d = m.config.d_model;
        let last = resid.slice(s![.., p - 1..p, ..]).reshape([b, d]);
        // Every option of the batch, then each row's own: `[b, Σ options]`.
        let cols: Vec<i32> = g
            .iter()
            .flat_map(|&i| items[i].options.iter().map(|&t| t as i32))
            .collect();
        let k = cols.len();
        let logits = read_f32(m.logits_of(
            last,
            Tensor::<1, Int>::from_data(TensorData::new(cols, [k]), &device),
        ))
        .await?;
        let mut at = 0;
        for (row, &i) in g.iter().enumerate() {
            let n = items[i].options.len();
            let (ok, margin) = items[i].score(&logits[row * k + at..row * k + at + n]);
            answered += usize::from(ok);
            margins[i] = margin;
            at += n;
        }
    }
    Ok(Score::of(margins, answered))
}
