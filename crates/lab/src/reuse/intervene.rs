//! What the circuit-reuse experiment measures besides patching: IOI's attention from the end to
//! the repeated name, and Colored Objects scored with chosen heads made to attend to the colours
//! not asked about.

use std::collections::BTreeMap;

use burn::tensor::{Tensor, TensorData, s};
use interplay_models::Transformer;
use interplay_models::device::read_f32;
use interplay_models::hooks::{Act, Action, HookPlan, HookPoint, Selector};

use super::{BATCH, Pair, Scene, Score};
use crate::LabError;

/// Colored Objects scored under each condition: the heads that attend equally to the colours
/// not asked about at the last position (an empty list: the model as it is). The prompts but
/// their last token run once; each condition runs only the last token on their keys and values
/// (the intervention changes nothing before it).
pub async fn scores(
    m: &Transformer,
    scenes: &[Scene],
    conditions: &[&[[usize; 2]]],
) -> Result<Vec<Score>, LabError> {
    let mut by_len: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, sc) in scenes.iter().enumerate() {
        by_len.entry(sc.ids.len()).or_default().push(i);
    }
    let n = scenes.len();
    let mut answered = vec![vec![false; n]; conditions.len()];
    let mut margins = vec![vec![0f64; n]; conditions.len()];
    let (d, v) = (m.config.d_model, m.config.d_vocab);
    for group in by_len.values() {
        for g in group.chunks(BATCH) {
            let (b, p) = (g.len(), scenes[g[0]].ids.len());
            if p < 2 {
                return Err(LabError::Spec(
                    "a Colored Objects prompt needs more than one token".into(),
                ));
            }
            let prefix: Vec<Vec<u32>> =
                g.iter().map(|&i| scenes[i].ids[..p - 1].to_vec()).collect();
            let last: Vec<Vec<u32>> = g.iter().map(|&i| scenes[i].ids[p - 1..].to_vec()).collect();
            let (_, _, kv) = m.extend_residual(m.tokens(&prefix)?, None, &HookPlan::default())?;
            for (c, heads) in conditions.iter().enumerate() {
                let plan = intervention(m, scenes, g, heads, p);
                let (resid, _, _) = m.extend_residual(m.tokens(&last)?, Some(&kv), &plan)?;
                // [batch, d_vocab] at the last position.
                let logits = read_f32(m.logits_rows(resid.reshape([b, d]))).await?;
                for (row, &i) in g.iter().enumerate() {
                    let sc = &scenes[i];
                    let l = &logits[row * v..(row + 1) * v];
                    let of = |j: usize| l.get(sc.options[j] as usize).copied().unwrap_or(f32::NAN);
                    // The first highest option, as `argmax`.
                    let best =
                        (0..sc.options.len()).fold(0, |b, j| if of(j) > of(b) { j } else { b });
                    answered[c][i] = best == sc.answer;
                    let other = (0..sc.options.len())
                        .filter(|&j| j != sc.answer)
                        .map(of)
                        .fold(f32::NEG_INFINITY, f32::max);
                    margins[c][i] = f64::from(of(sc.answer) - other);
                }
            }
        }
    }
    Ok(answered
        .into_iter()
        .zip(margins)
        .map(|(answered, margins)| Score {
            correct: answered.iter().filter(|&&a| a).count(),
            total: n,
            margin: margins.iter().sum::<f64>() / n.max(1) as f64,
            answered,
            margins,
        })
        .collect())
}

/// IOI: each head's attention from the last position to the subject's second mention (the last
/// position holding the wrong name's token), averaged over the pairs' clean prompts,
/// `[layer][head]`.
pub async fn s2_attention(m: &Transformer, ioi: &[Pair]) -> Result<Vec<Vec<f64>>, LabError> {
    let (nl, nh) = (m.config.n_layers, m.config.n_heads);
    let mut att = vec![vec![0f64; nh]; nl];
    let mut by_len: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, (clean, ..)) in ioi.iter().enumerate() {
        by_len.entry(clean.len()).or_default().push(i);
    }
    let plan = HookPlan::caching((0..nl).map(HookPoint::Pattern));
    let n = ioi.len().max(1) as f64;
    for (&p, group) in &by_len {
        // Every layer's pattern of a batch is held at once: at most ~64 MB of them.
        let per_prompt = nl * nh * p * p * 4;
        let batch = (64 << 20) / per_prompt.max(1);
        for g in group.chunks(batch.clamp(1, BATCH)) {
            let ids: Vec<Vec<u32>> = g.iter().map(|&i| ioi[i].0.clone()).collect();
            let s2: Vec<usize> = g
                .iter()
                .map(|&i| {
                    let (clean, _, _, wrong) = &ioi[i];
                    clean.iter().rposition(|t| t == wrong).ok_or_else(|| {
                        LabError::Spec(
                            "an IOI pair's wrong name does not appear in its clean prompt".into(),
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
            let (_, cache, _) = m.extend_residual(m.tokens(&ids)?, None, &plan)?;
            for (l, row) in att.iter_mut().enumerate() {
                let pat = cache.r4(HookPoint::Pattern(l)).ok_or_else(|| {
                    LabError::Spec(format!(
                        "internal: blocks.{l}.attn.hook_pattern was asked for and not recorded"
                    ))
                })?;
                // [batch, heads, 1, key] from the last query position.
                let last = read_f32(pat.slice(s![.., .., p - 1..p, ..])).await?;
                for (r, &pos) in s2.iter().enumerate() {
                    for (h, a) in row.iter_mut().enumerate() {
                        *a += f64::from(last[(r * nh + h) * p + pos]) / n;
                    }
                }
            }
        }
    }
    Ok(att)
}

/// The plan that makes `heads` attend, at the last position `p − 1`, half to each colour not
/// asked about: `hook_pattern` replaced there by a source `[batch, heads, p, p]` holding that
/// row for every head (the selector picks which heads take it).
fn intervention(
    m: &Transformer,
    scenes: &[Scene],
    batch: &[usize],
    heads: &[[usize; 2]],
    p: usize,
) -> HookPlan {
    let mut plan = HookPlan::default();
    if heads.is_empty() {
        return plan;
    }
    let nh = m.config.n_heads;
    let b = batch.len();
    let mut src = vec![0f32; b * nh * p * p];
    for (row, &i) in batch.iter().enumerate() {
        let sc = &scenes[i];
        let others: Vec<usize> = (0..sc.positions.len())
            .filter(|&j| j != sc.answer)
            .map(|j| sc.positions[j])
            .collect();
        let w = 1.0 / others.len().max(1) as f32;
        for h in 0..nh {
            let base = ((row * nh + h) * p + (p - 1)) * p;
            for &pos in &others {
                src[base + pos] += w;
            }
        }
    }
    let device = m.device();
    let src = Act::R4(Tensor::<4>::from_data(
        TensorData::new(src, [b, nh, p, p]),
        &device,
    ));
    let mut by_layer: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &[l, h] in heads {
        by_layer.entry(l).or_default().push(h);
    }
    for (l, hs) in by_layer {
        plan = plan.with(
            HookPoint::Pattern(l),
            Selector::all().at_positions(vec![p - 1]).at_heads(hs),
            Action::Replace(src.clone()),
        );
    }
    plan
}
