//! Head ablation and path patching (Wang et al. 2022, "Interpretability in the Wild"), with the
//! metrics a student compares runs by: logit difference, answer probability, KL divergence to
//! the clean run — all at the last position.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Tensor, s};
use interplay_models::Transformer;
use interplay_models::device::read_f32;
use interplay_models::hooks::{Act, Action, HookPlan, HookPoint, Selector, mean_over_batch};
use serde::{Deserialize, Serialize};

use crate::LabError;

/// How a run is scored against the clean run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// `logit(answer) − logit(wrong)`.
    LogitDiff,
    /// `p(answer)`.
    Probability,
    /// `KL(clean ‖ run)` of the next-token distributions.
    Kl,
}

/// Scores of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// `logit(answer) − logit(wrong)`.
    pub logit_diff: f32,
    /// `p(answer)`.
    pub probability: f32,
    /// `KL(clean ‖ run)`.
    pub kl: f32,
}

impl Scores {
    /// The chosen metric.
    pub fn get(&self, m: Metric) -> f32 {
        match m {
            Metric::LogitDiff => self.logit_diff,
            Metric::Probability => self.probability,
            Metric::Kl => self.kl,
        }
    }
}

/// Last-position log-probabilities, `[batch, vocab]`.
fn last_logprobs(logits: Tensor<3>) -> Tensor<2> {
    let [b, p, v] = logits.dims();
    log_softmax(logits.slice(s![.., p - 1..p, ..]).reshape([b, v]), 1)
}

async fn score_all(
    runs: Vec<Tensor<3>>,
    clean: Tensor<3>,
    answer: u32,
    wrong: u32,
) -> Result<Vec<Scores>, LabError> {
    let clean_lp = read_f32(last_logprobs(clean)).await?;
    let n = runs.len();
    let lps = read_f32(Tensor::cat(
        runs.into_iter().map(last_logprobs).collect(),
        0,
    ))
    .await?;
    let v = clean_lp.len();
    Ok((0..n)
        .map(|i| {
            let lp = &lps[i * v..(i + 1) * v];
            // Summed in f64: over a 49k vocabulary an f32 sum drifts by ~1e-4 relative.
            let kl = clean_lp
                .iter()
                .zip(lp)
                .map(|(&c, &r)| f64::from(c).exp() * (f64::from(c) - f64::from(r)))
                .sum::<f64>()
                .max(0.0) as f32;
            Scores {
                // Log-probabilities differ from logits by one constant per row.
                logit_diff: lp[answer as usize] - lp[wrong as usize],
                probability: lp[answer as usize].exp(),
                kl,
            }
        })
        .collect())
}

/// The metric's two tokens must be in the vocabulary.
fn check_vocab(m: &Transformer, answer: u32, wrong: u32) -> Result<(), LabError> {
    let v = m.config.d_vocab;
    match [answer, wrong].into_iter().find(|&t| t as usize >= v) {
        Some(t) => Err(LabError::Spec(format!(
            "token id {t} is outside the vocabulary (size {v})"
        ))),
        None => Ok(()),
    }
}

/// How ablated heads are replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AblationKind {
    /// Zero the head's output (`hook_z`).
    Zero,
    /// The head's mean output over the clean and corrupted prompts, per position.
    Mean,
    /// The head's output on the corrupted prompt (resample ablation).
    Resample,
}

/// A head, `(layer, head)`.
pub type Head = (usize, usize);

/// Clean run, and the clean run with `heads` ablated; returns `(clean, ablated)` scores.
pub async fn ablate_heads(
    m: &Transformer,
    clean: &[u32],
    corrupt: &[u32],
    heads: &[Head],
    kind: AblationKind,
    answer: u32,
    wrong: u32,
) -> Result<(Scores, Scores), LabError> {
    interplay_models::patching::check_pair(clean, corrupt)?;
    check_vocab(m, answer, wrong)?;
    let n = m.config.n_layers;
    for &(l, h) in heads {
        if l >= n || h >= m.config.n_heads {
            return Err(LabError::Spec(format!("no head L{l}H{h} in this model")));
        }
    }
    let layers: Vec<usize> = {
        let mut v: Vec<usize> = heads.iter().map(|x| x.0).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let both = m.tokens(&[clean.to_vec(), corrupt.to_vec()])?;
    let (both_logits, cache) = m.run_with_hooks(
        both,
        &HookPlan::caching(layers.iter().map(|&l| HookPoint::Z(l))),
    );
    let clean_logits = both_logits.slice(s![0..1, .., ..]);
    let mut plan = HookPlan::default();
    for &l in &layers {
        let hs: Vec<usize> = heads.iter().filter(|x| x.0 == l).map(|x| x.1).collect();
        let z = cache
            .get(HookPoint::Z(l))
            .cloned()
            .ok_or_else(|| LabError::Spec("missing".into()))?;
        let action = match kind {
            AblationKind::Zero => Action::Zero,
            AblationKind::Mean => Action::Mean(mean_over_batch(&z)),
            AblationKind::Resample => match z {
                Act::R4(t) => Action::Replace(Act::R4(t.slice(s![1..2, .., .., ..]))),
                Act::R3(_) => return Err(LabError::Spec("unexpected activation".into())),
            },
        };
        plan.interventions
            .push(interplay_models::hooks::Intervention {
                hook: HookPoint::Z(l),
                selector: Selector::all().at_heads(hs),
                action,
            });
    }
    let (ablated, _) = m.run_with_hooks(m.tokens(&[clean.to_vec()])?, &plan);
    let s = score_all(
        vec![clean_logits.clone(), ablated],
        clean_logits,
        answer,
        wrong,
    )
    .await?;
    Ok((s[0].clone(), s[1].clone()))
}

/// Which input of a receiver head a path patch reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiverInput {
    /// Queries.
    Q,
    /// Keys.
    K,
    /// Values.
    V,
}

/// A receiver of a path patch: a head and the input of it the path reaches.
pub type Receiver = (Head, ReceiverInput);

/// The runs of one path patch, scored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathScores {
    /// The clean prompt.
    pub clean: Scores,
    /// The corrupted prompt (its KL is to the clean run too).
    pub corrupt: Scores,
    /// The clean prompt with the path patched.
    pub patched: Scores,
}

/// Path patching with the same inputs (`inputs`) reached on every receiver; returns `(clean,
/// path-patched)` scores. See [`path_patch_receivers`].
#[allow(clippy::too_many_arguments)]
pub async fn path_patch(
    m: &Transformer,
    clean: &[u32],
    corrupt: &[u32],
    senders: &[Head],
    receivers: &[Head],
    inputs: &[ReceiverInput],
    answer: u32,
    wrong: u32,
) -> Result<(Scores, Scores), LabError> {
    let each: Vec<Receiver> = receivers
        .iter()
        .flat_map(|&r| inputs.iter().map(move |&i| (r, i)))
        .collect();
    let s = path_patch_receivers(m, clean, corrupt, senders, &each, answer, wrong).await?;
    Ok((s.clean, s.patched))
}

/// Path patching: the senders' outputs from the corrupted run reach only the receivers' chosen
/// inputs; everything else keeps its clean value.
///
/// 1. Run clean and corrupted, caching every head's output (`hook_z`).
/// 2. Run the clean prompt with the senders' outputs from the corrupted run and every other
///    head frozen at its clean output (MLPs and norms recompute), caching the receivers' q/k/v
///    (the projections' outputs, before RoPE).
/// 3. Run the clean prompt with only those receiver inputs replaced, everything downstream
///    recomputing.
///
/// With grouped-query attention a receiver's key/value head is shared by its query group, so
/// patching k or v reaches the whole group.
pub async fn path_patch_receivers(
    m: &Transformer,
    clean: &[u32],
    corrupt: &[u32],
    senders: &[Head],
    receivers: &[Receiver],
    answer: u32,
    wrong: u32,
) -> Result<PathScores, LabError> {
    interplay_models::patching::check_pair(clean, corrupt)?;
    let cfg = &m.config;
    let (n, h) = (cfg.n_layers, cfg.n_heads);
    for &(l, hh) in senders.iter().chain(receivers.iter().map(|r| &r.0)) {
        if l >= n || hh >= h {
            return Err(LabError::Spec(format!("no head L{l}H{hh} in this model")));
        }
    }
    if receivers.is_empty() || senders.is_empty() {
        return Err(LabError::Spec(
            "choose senders, receivers and at least one of q, k, v".into(),
        ));
    }
    let first_sender = senders.iter().map(|x| x.0).min().unwrap_or(0);
    let first_receiver = receivers.iter().map(|x| x.0.0).min().unwrap_or(0);
    if first_receiver <= first_sender {
        return Err(LabError::Spec(
            "every receiver must sit in a later layer than the first sender".into(),
        ));
    }
    check_vocab(m, answer, wrong)?;
    let both = m.tokens(&[clean.to_vec(), corrupt.to_vec()])?;
    let (both_logits, cache) = m.run_with_hooks(both, &HookPlan::caching((0..n).map(HookPoint::Z)));
    let clean_logits = both_logits.clone().slice(s![0..1, .., ..]);
    let corrupt_logits = both_logits.slice(s![1..2, .., ..]);
    let z = |l: usize, row: usize| -> Result<Act, LabError> {
        match cache.get(HookPoint::Z(l)) {
            Some(Act::R4(t)) => Ok(Act::R4(t.clone().slice(s![row..row + 1, .., .., ..]))),
            _ => Err(LabError::Spec("missing head output".into())),
        }
    };
    let recv_hook = |l: usize, i: ReceiverInput| match i {
        ReceiverInput::Q => HookPoint::Q(l),
        ReceiverInput::K => HookPoint::K(l),
        ReceiverInput::V => HookPoint::V(l),
    };
    // The (layer, input) sites the receivers read, each once, in order.
    let sites: Vec<(usize, ReceiverInput)> = {
        let mut v: Vec<(usize, ReceiverInput)> = Vec::new();
        for &((l, _), i) in receivers {
            if !v.contains(&(l, i)) {
                v.push((l, i));
            }
        }
        v
    };
    // Step 2: senders corrupted, other heads frozen clean; cache the receivers' inputs.
    let mut plan = HookPlan::caching(sites.iter().map(|&(l, i)| recv_hook(l, i)));
    for l in 0..n {
        let sent: Vec<usize> = senders.iter().filter(|x| x.0 == l).map(|x| x.1).collect();
        let frozen: Vec<usize> = (0..h).filter(|hh| !sent.contains(hh)).collect();
        if !frozen.is_empty() {
            plan = plan.with(
                HookPoint::Z(l),
                Selector::all().at_heads(frozen),
                Action::Replace(z(l, 0)?),
            );
        }
        if !sent.is_empty() {
            plan = plan.with(
                HookPoint::Z(l),
                Selector::all().at_heads(sent),
                Action::Replace(z(l, 1)?),
            );
        }
    }
    let clean_tokens = m.tokens(&[clean.to_vec()])?;
    let (_, recv_cache) = m.run_with_hooks(clean_tokens.clone(), &plan);
    // Step 3: the clean run with only the receivers' inputs replaced (for k and v the
    // receiver's key/value head).
    let g = cfg.group_size();
    let mut plan = HookPlan::default();
    for &(l, i) in &sites {
        let mut heads: Vec<usize> = receivers
            .iter()
            .filter(|r| r.0.0 == l && r.1 == i)
            .map(|r| {
                if i == ReceiverInput::Q {
                    r.0.1
                } else {
                    r.0.1 / g
                }
            })
            .collect();
        heads.sort_unstable();
        heads.dedup();
        let hook = recv_hook(l, i);
        let src = recv_cache
            .get(hook)
            .cloned()
            .ok_or_else(|| LabError::Spec("missing".into()))?;
        plan = plan.with(hook, Selector::all().at_heads(heads), Action::Replace(src));
    }
    let (patched, _) = m.run_with_hooks(clean_tokens, &plan);
    let sc = score_all(
        vec![clean_logits.clone(), corrupt_logits, patched],
        clean_logits,
        answer,
        wrong,
    )
    .await?;
    let [clean, corrupt, patched]: [Scores; 3] = sc
        .try_into()
        .map_err(|_| LabError::Spec("path patching scored the wrong number of runs".into()))?;
    Ok(PathScores {
        clean,
        corrupt,
        patched,
    })
}
