//! Circuits-lab analyses on a clean run: attention patterns, the logit lens, direct logit
//! attribution, and head detectors on repeated random tokens.

use burn::tensor::{Int, Tensor, TensorData, s};
use interplay_models::device::read_f32;
use interplay_models::hooks::{HookPlan, HookPoint};
use interplay_models::{Arch, Transformer};
use serde::{Deserialize, Serialize};

use crate::LabError;

/// Attention patterns of every layer and head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Patterns {
    /// `pattern[layer][head][query][key]`.
    pub pattern: Vec<Vec<Vec<Vec<f32>>>>,
}

/// Attention patterns for `ids` (one prompt).
pub async fn attention_patterns(m: &Transformer, ids: &[u32]) -> Result<Patterns, LabError> {
    attention_patterns_under(m, ids, &HookPlan::default()).await
}

/// [`attention_patterns`] of the model run under `plan` (a clamped model as it was trained).
pub async fn attention_patterns_under(
    m: &Transformer,
    ids: &[u32],
    plan: &HookPlan,
) -> Result<Patterns, LabError> {
    let n = m.config.n_layers;
    let (h, p) = (m.config.n_heads, ids.len());
    let mut plan = plan.clone();
    plan.cache.extend((0..n).map(HookPoint::Pattern));
    let (_, cache) = m.run_with_hooks(m.tokens(&[ids.to_vec()])?, &plan);
    let all: Vec<Tensor<4>> = (0..n)
        .map(|l| {
            cache
                .r4(HookPoint::Pattern(l))
                .ok_or_else(|| LabError::Spec("missing pattern".into()))
        })
        .collect::<Result<_, _>>()?;
    let flat = read_f32(Tensor::cat(all, 0)).await?;
    let pattern = flat
        .chunks(h * p * p)
        .map(|layer| {
            layer
                .chunks(p * p)
                .map(|head| head.chunks(p).map(<[f32]>::to_vec).collect())
                .collect()
        })
        .collect();
    Ok(Patterns { pattern })
}

/// The logit lens: the final norm and unembedding applied to the residual stream entering each
/// layer (row `n_layers` is the model's own output), at the last position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogitLens {
    /// Per layer: the top tokens `(id, probability)`.
    pub top: Vec<Vec<(u32, f32)>>,
    /// Per layer, per tracked token: `(probability, rank)` (rank 0 = top).
    pub tracked: Vec<Vec<(f32, usize)>>,
    /// The tracked ids.
    pub tracked_ids: Vec<u32>,
}

impl LogitLens {
    /// Where the model commits, for the first two tracked tokens (answer, wrong): the first row
    /// from which the answer stays more probable than the wrong token to the output, and the
    /// first row from which it stays the top prediction. `None` where it never does for good.
    pub fn commit(&self) -> (Option<usize>, Option<usize>) {
        // The first row of the run of rows, ending at the output, where `ok` holds.
        let for_good = |ok: fn(&[(f32, usize)]) -> bool| {
            (0..self.tracked.len())
                .rev()
                .take_while(|&r| ok(&self.tracked[r]))
                .last()
        };
        let ahead = for_good(|t| matches!(t, [a, w, ..] if a.0 > w.0));
        let top = for_good(|t| t.first().is_some_and(|a| a.1 == 0));
        (ahead, top)
    }
}

/// Run the logit lens on `ids`, tracking `tracked` tokens, keeping the `k` top tokens.
pub async fn logit_lens(
    m: &Transformer,
    ids: &[u32],
    tracked: &[u32],
    k: usize,
) -> Result<LogitLens, LabError> {
    let n = m.config.n_layers;
    let v = m.config.d_vocab;
    let plan = HookPlan::caching((0..=n).map(HookPoint::ResidPre));
    let (_, cache) = m.run_with_hooks(m.tokens(&[ids.to_vec()])?, &plan);
    let p = ids.len();
    let d = m.config.d_model;
    let rows: Vec<Tensor<3>> = (0..=n)
        .map(|l| {
            cache
                .r3(HookPoint::ResidPre(l))
                .map(|t| t.slice(s![.., p - 1..p, ..]))
                .ok_or_else(|| LabError::Spec("missing residual".into()))
        })
        .collect::<Result<_, _>>()?;
    let stacked = Tensor::cat(rows, 0); // [n+1, 1, d]
    let normed = m.ln_final.forward(stacked).reshape([n + 1, d]);
    let logits = m.unembed_rows(normed); // [n+1, v]
    let logits = read_f32(logits).await?;
    let mut top = Vec::with_capacity(n + 1);
    let mut tr = Vec::with_capacity(n + 1);
    for row in logits.chunks(v) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let z: f32 = row.iter().map(|x| (x - max).exp()).sum();
        let prob = |i: usize| (row[i] - max).exp() / z;
        let mut order: Vec<usize> = (0..v).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        top.push(order.iter().take(k).map(|&i| (i as u32, prob(i))).collect());
        tr.push(
            tracked
                .iter()
                .map(|&t| {
                    let t = t as usize;
                    let rank = row.iter().filter(|&&x| x > row[t]).count();
                    (prob(t), rank)
                })
                .collect(),
        );
    }
    Ok(LogitLens {
        top,
        tracked: tr,
        tracked_ids: tracked.to_vec(),
    })
}

/// Direct logit attribution of `logit(answer) − logit(wrong)` at the last position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    /// `heads[layer][head]`.
    pub heads: Vec<Vec<f32>>,
    /// `mlps[layer]`.
    pub mlps: Vec<f32>,
    /// Embedding (plus learned positions).
    pub embed: f32,
    /// Attention output biases and the final norm's bias.
    pub biases: f32,
    /// The model's logit difference (the sum of all of the above).
    pub total: f32,
}

/// Each head's and MLP's output at the last position, divided by the final norm's scale from
/// the clean run (held fixed), dotted with `W_U[:, answer] − W_U[:, wrong]`. The components sum
/// to the logit difference.
pub async fn direct_logit_attribution(
    m: &Transformer,
    ids: &[u32],
    answer: u32,
    wrong: u32,
) -> Result<Attribution, LabError> {
    let cfg = &m.config;
    let (n, h, d, p) = (cfg.n_layers, cfg.n_heads, cfg.d_model, ids.len());
    let mut hooks = vec![HookPoint::ResidPre(n)];
    if m.pos_embed.is_some() {
        hooks.push(HookPoint::PosEmbed);
    }
    hooks.push(HookPoint::Embed);
    for l in 0..n {
        hooks.extend([HookPoint::Result(l), HookPoint::MlpOut(l)]);
    }
    let (logits, cache) = m.run_with_hooks(m.tokens(&[ids.to_vec()])?, &HookPlan::caching(hooks));
    let dev = m.device();
    let cols = Tensor::<1, Int>::from_data(
        TensorData::new(vec![answer as i32, wrong as i32], [2]),
        &dev,
    );
    let wu = m.unembed_columns(cols);
    let dir = (wu.clone().slice(s![.., 0..1]) - wu.slice(s![.., 1..2])).reshape([d]);
    // The final norm as a fixed linear map: x ↦ (x − centre(x)) / σ ⊙ w, σ from the clean run.
    let w = m.ln_final.weight.val();
    let last = |t: Tensor<3>| t.slice(s![.., p - 1..p, ..]).reshape([1, d]);
    let x = last(
        cache
            .r3(HookPoint::ResidPre(n))
            .ok_or_else(|| LabError::Spec("missing".into()))?,
    );
    let centred = cfg.arch == Arch::Gpt2;
    let centre = |t: Tensor<2>| {
        if centred {
            t.clone() - t.mean_dim(1)
        } else {
            t
        }
    };
    let xc = centre(x);
    let sigma = (xc.powf_scalar(2.0).mean_dim(1) + m.ln_final.eps).sqrt(); // [1, 1]
    let readout = (w * dir.clone()).reshape([d, 1]); // [d, 1]
    let project = |t: Tensor<2>| centre(t).div(sigma.clone()).matmul(readout.clone()); // [rows, 1]
    let mut parts: Vec<Tensor<2>> = Vec::new();
    let mut embed = last(
        cache
            .r3(HookPoint::Embed)
            .ok_or_else(|| LabError::Spec("missing".into()))?,
    );
    if let Some(pe) = cache.r3(HookPoint::PosEmbed) {
        embed = embed + last(pe);
    }
    parts.push(project(embed));
    for l in 0..n {
        let r = cache
            .r4(HookPoint::Result(l))
            .ok_or_else(|| LabError::Spec("missing".into()))?;
        let r = r.slice(s![.., p - 1..p, .., ..]).reshape([h, d]);
        parts.push(project(r));
        let mo = last(
            cache
                .r3(HookPoint::MlpOut(l))
                .ok_or_else(|| LabError::Spec("missing".into()))?,
        );
        parts.push(project(mo));
    }
    // Attention-output biases (GPT-2) and the final norm's bias.
    let mut bias_parts: Vec<Tensor<2>> = Vec::new();
    for b in m.blocks.iter().filter_map(|b| b.attn.b_o.as_ref()) {
        bias_parts.push(project(b.val().reshape([1, d])));
    }
    let ln_bias = m
        .ln_final
        .bias
        .as_ref()
        .map(|b| b.val().reshape([1, d]).matmul(dir.clone().reshape([d, 1])));
    let v = logits.dims()[2];
    let last_logits = logits.slice(s![0..1, p - 1..p, ..]).reshape([v]);
    let total = last_logits
        .clone()
        .slice(s![answer as usize..answer as usize + 1])
        - last_logits.slice(s![wrong as usize..wrong as usize + 1]);
    let mut all = parts;
    let nb = bias_parts.len();
    all.extend(bias_parts);
    if let Some(lb) = ln_bias {
        all.push(lb);
    }
    all.push(total.reshape([1, 1]));
    let vals = read_f32(Tensor::cat(all, 0)).await?;
    let mut it = vals.into_iter();
    let mut next = || it.next().unwrap_or(f32::NAN);
    let embed = next();
    let mut heads = Vec::with_capacity(n);
    let mut mlps = Vec::with_capacity(n);
    for _ in 0..n {
        heads.push((0..h).map(|_| next()).collect());
        mlps.push(next());
    }
    let mut biases = 0.0;
    for _ in 0..nb {
        biases += next();
    }
    if m.ln_final.bias.is_some() {
        biases += next();
    }
    let total = next();
    Ok(Attribution {
        heads,
        mlps,
        embed,
        biases,
        total,
    })
}

/// Induction, previous-token and duplicate-token scores per head on a seeded random sequence
/// of `half` tokens repeated twice, and the loss on each half.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadScores {
    /// The token ids used (`2 * half`).
    pub ids: Vec<u32>,
    /// `induction[layer][head]`: mean attention from i to i − half + 1 over the second half.
    pub induction: Vec<Vec<f32>>,
    /// `previous[layer][head]`: mean attention from i to i − 1 over the second half.
    pub previous: Vec<Vec<f32>>,
    /// `duplicate[layer][head]`: mean attention from i to i − half over the second half.
    pub duplicate: Vec<Vec<f32>>,
    /// Mean next-token loss on the first and on the second half.
    pub loss_first: f32,
    /// See `loss_first`.
    pub loss_second: f32,
}

/// Seeded ids from the middle of the vocabulary (avoids special and rare tokens at the ends).
pub fn repeated_random_tokens(vocab: usize, half: usize, seed: u64) -> Vec<u32> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let (lo, hi) = (vocab / 4, (3 * vocab / 4).max(vocab / 4 + 1));
    let first: Vec<u32> = (0..half)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (lo + ((state >> 33) as usize % (hi - lo))) as u32
        })
        .collect();
    first.iter().chain(first.iter()).copied().collect()
}

/// Head detector scores (see [`HeadScores`]).
///
/// # Errors
/// A half under 2 tokens, or one whose doubled sequence exceeds the model's context.
pub async fn head_scores(m: &Transformer, half: usize, seed: u64) -> Result<HeadScores, LabError> {
    head_scores_under(m, half, seed, &HookPlan::default()).await
}

/// [`head_scores`] of the model run under `plan` (a clamped model as it was trained; a
/// pattern the plan sets must cover `2 · half` positions).
pub async fn head_scores_under(
    m: &Transformer,
    half: usize,
    seed: u64,
    plan: &HookPlan,
) -> Result<HeadScores, LabError> {
    if half < 2 {
        return Err(LabError::Spec(
            "the repeated sequence needs at least 2 tokens".into(),
        ));
    }
    // The sequence is the half twice: say so in the half's terms, not as a too-long "prompt".
    let ctx = m.config.n_ctx;
    if half.saturating_mul(2) > ctx {
        return Err(LabError::Spec(format!(
            "each half can hold at most {} tokens: the sequence is the half twice and this \
             model's context holds {ctx} positions",
            ctx / 2
        )));
    }
    let ids = repeated_random_tokens(m.config.d_vocab, half, seed);
    let pats = attention_patterns_under(m, &ids, plan).await?;
    let p = ids.len();
    let score = |pat: &Vec<Vec<f32>>, back: usize| -> f32 {
        let qs: Vec<usize> = (half..p).filter(|&i| i >= back).collect();
        qs.iter().map(|&i| pat[i][i - back]).sum::<f32>() / qs.len().max(1) as f32
    };
    let per = |back: usize| -> Vec<Vec<f32>> {
        pats.pattern
            .iter()
            .map(|layer| layer.iter().map(|head| score(head, back)).collect())
            .collect()
    };
    // Next-token loss per position.
    let tokens = m.tokens(std::slice::from_ref(&ids))?;
    let logits = if plan.is_empty() {
        m.forward(tokens)
    } else {
        m.run_with_hooks(tokens, plan).0
    };
    let v = m.config.d_vocab;
    let lp = burn::tensor::activation::log_softmax(logits, 2);
    let lp = read_f32(lp).await?;
    let loss_at = |i: usize| -lp[i * v + ids[i + 1] as usize];
    let first: Vec<f32> = (0..half - 1).map(loss_at).collect();
    let second: Vec<f32> = (half..p - 1).map(loss_at).collect();
    Ok(HeadScores {
        induction: per(half - 1),
        previous: per(1),
        duplicate: per(half),
        loss_first: first.iter().sum::<f32>() / first.len().max(1) as f32,
        loss_second: second.iter().sum::<f32>() / second.len().max(1) as f32,
        ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lens_commits_where_the_answer_leads_for_good() {
        let lens = |rows: &[[(f32, usize); 2]]| LogitLens {
            top: vec![Vec::new(); rows.len()],
            tracked: rows.iter().map(|r| r.to_vec()).collect(),
            tracked_ids: vec![1, 2],
        };
        // Ahead at row 0, behind at row 1, ahead from row 2; top from row 3.
        let l = lens(&[
            [(0.2, 5), (0.1, 9)],
            [(0.1, 7), (0.3, 2)],
            [(0.4, 1), (0.2, 3)],
            [(0.6, 0), (0.1, 4)],
        ]);
        assert_eq!(l.commit(), (Some(2), Some(3)));
        let behind = lens(&[[(0.4, 0), (0.1, 3)], [(0.1, 2), (0.5, 0)]]);
        assert_eq!(behind.commit(), (None, None));
        assert_eq!(lens(&[]).commit(), (None, None));
    }
}
