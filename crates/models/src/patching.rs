//! Activation patching (Meng et al. 2022; Wang et al. 2022), the TransformerLens convention:
//! run the **corrupted** prompt, patch in activations from the **clean** run, and report how much
//! of the clean metric comes back: `(patched − corrupt) / (clean − corrupt)` (1 = fully
//! restored, 0 = no effect). The metric is the logit difference `logit(answer) − logit(wrong)`
//! at the last position.
//!
//! Sweeps recompute only what a patch can change. Patching layer `L` at position `p` changes
//! nothing before layer `L` and, attention being causal, nothing before position `p`. So every
//! variant starts at layer `L` from the corrupted run's residual stream, runs only positions
//! `p..`, takes keys and values of earlier positions from the corrupted run, and evaluates the
//! metric at the last position only (two unembedding columns, not the whole vocabulary).
//! Variants sharing `p` advance through the layers together in one batch that grows by the
//! variants starting at each layer. Positions before the first token where the two prompts
//! differ hold the same activations in both runs, so patching them changes nothing and is not
//! run (their patched metric is the corrupted one).

use std::future::Future;
use std::pin::Pin;

use burn::tensor::{Int, Tensor, TensorData, s};
use serde::{Deserialize, Serialize};

use crate::config::TransformerConfig;
use crate::device::read_f32;
use crate::error::{ModelError, Result};
use crate::hooks::{Act, Action, HookPlan, HookPoint, HookRunner, Intervention, Selector};
use crate::transformer::{KvCache, Transformer};

/// What a sweep patches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatchTarget {
    /// `hook_resid_pre` by layer × position (plus a final row for the input to `ln_final`).
    ResidPre,
    /// `hook_resid_mid` by layer × position.
    ResidMid,
    /// `hook_resid_post` by layer × position.
    ResidPost,
    /// `hook_attn_out` by layer × position.
    AttnOut,
    /// `hook_mlp_out` by layer × position.
    MlpOut,
    /// Each head's output (`attn.hook_z` of that head) at all positions, by layer × head.
    HeadOut,
    /// Each head's output at one position, by (layer, head) × position (rows `l * n_heads + h`).
    HeadOutPos,
}

impl PatchTarget {
    pub(crate) fn hook(self, l: usize) -> HookPoint {
        match self {
            PatchTarget::ResidPre => HookPoint::ResidPre(l),
            PatchTarget::ResidMid => HookPoint::ResidMid(l),
            PatchTarget::ResidPost => HookPoint::ResidPost(l),
            PatchTarget::AttnOut => HookPoint::AttnOut(l),
            PatchTarget::MlpOut => HookPoint::MlpOut(l),
            PatchTarget::HeadOut | PatchTarget::HeadOutPos => HookPoint::Z(l),
        }
    }

    /// Whether rows are (layer, head) pairs or columns heads, i.e. the sweep patches heads.
    pub fn per_head(self) -> bool {
        matches!(self, PatchTarget::HeadOut | PatchTarget::HeadOutPos)
    }
}

impl std::str::FromStr for PatchTarget {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "resid_pre" => PatchTarget::ResidPre,
            "resid_mid" => PatchTarget::ResidMid,
            "resid_post" => PatchTarget::ResidPost,
            "attn_out" => PatchTarget::AttnOut,
            "mlp_out" => PatchTarget::MlpOut,
            "head_out" => PatchTarget::HeadOut,
            "head_out_pos" => PatchTarget::HeadOutPos,
            other => {
                return Err(ModelError::Input(format!(
                    "unknown patch target {other:?}: use resid_pre, resid_mid, resid_post, attn_out, mlp_out, head_out or head_out_pos"
                )));
            }
        })
    }
}

/// The result of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchGrid {
    /// Metric of the clean run.
    pub clean_metric: f32,
    /// Metric of the corrupted run.
    pub corrupt_metric: f32,
    /// Normalised recovery, `grid[layer][position]` (`[layer][head]` for head outputs at all
    /// positions, `[layer * n_heads + head][position]` per position).
    pub grid: Vec<Vec<f32>>,
    /// The patched metric itself, same layout.
    pub patched: Vec<Vec<f32>>,
}

impl PatchGrid {
    /// The grid of raw patched metrics `patched`, normalised: `(patched − corrupt) / (clean −
    /// corrupt)`, 0 everywhere when the two runs' metrics are equal.
    pub fn new(clean_metric: f32, corrupt_metric: f32, patched: Vec<Vec<f32>>) -> Self {
        let denom = clean_metric - corrupt_metric;
        let grid = patched
            .iter()
            .map(|row| {
                row.iter()
                    .map(|&v| {
                        if denom == 0.0 {
                            0.0
                        } else {
                            (v - corrupt_metric) / denom
                        }
                    })
                    .collect()
            })
            .collect();
        Self {
            clean_metric,
            corrupt_metric,
            grid,
            patched,
        }
    }
}

/// The logit-difference metric, evaluated cheaply from residual streams.
struct LogitDiff {
    /// `W_U[:, answer] − W_U[:, wrong]`, `[d_model, 1]`.
    direction: Tensor<2>,
}

impl LogitDiff {
    fn new(model: &Transformer, answer: u32, wrong: u32) -> Result<Self> {
        check_vocab(&model.config, &[answer, wrong])?;
        let d = model.config.d_model;
        let cols = Tensor::<1, Int>::from_data(
            TensorData::new(vec![answer as i32, wrong as i32], [2]),
            &model.device(),
        );
        let two = model.unembed_columns(cols); // [d, 2]
        let direction = two.clone().slice(s![.., 0..1]) - two.slice(s![.., 1..2]);
        Ok(Self {
            direction: direction.reshape([d, 1]),
        })
    }

    /// # Shapes
    /// - `resid`: input to `ln_final` at the last position, `[n, d_model]` → `[n]`.
    fn eval(&self, model: &Transformer, resid: Tensor<2>) -> Tensor<1> {
        let [n, d] = resid.dims();
        let x = model
            .ln_final
            .forward(resid.reshape([n, 1, d]))
            .reshape([n, d]);
        x.matmul(self.direction.clone()).reshape([n])
    }
}

fn last_position(resid: Tensor<3>) -> Tensor<2> {
    let [b, p, d] = resid.dims();
    resid.slice(s![.., p - 1..p, ..]).reshape([b, d])
}

/// (rows, columns) of a sweep's grid for a model of `n` layers and `h` heads on `p` tokens.
pub fn grid_shape(target: PatchTarget, n: usize, h: usize, p: usize) -> (usize, usize) {
    match target {
        PatchTarget::ResidPre => (n + 1, p),
        PatchTarget::HeadOut => (n, h),
        PatchTarget::HeadOutPos => (n * h, p),
        _ => (n, p),
    }
}

/// Token ids (answers, read tokens) inside the model's vocabulary.
pub fn check_vocab(cfg: &TransformerConfig, ids: &[u32]) -> Result<()> {
    let v = cfg.d_vocab;
    match ids.iter().find(|&&t| t as usize >= v) {
        Some(t) => Err(ModelError::Input(format!(
            "token id {t} is outside the vocabulary (size {v})"
        ))),
        None => Ok(()),
    }
}

/// Check a clean/corrupted pair: both non-empty, of the same length.
pub fn check_pair(clean: &[u32], corrupt: &[u32]) -> Result<()> {
    if clean.is_empty() || corrupt.is_empty() {
        return Err(ModelError::Input("a prompt is empty".into()));
    }
    if clean.len() != corrupt.len() {
        return Err(ModelError::Input(format!(
            "the clean prompt has {} tokens and the corrupted one {}: patching needs the same number of tokens",
            clean.len(),
            corrupt.len()
        )));
    }
    Ok(())
}

/// A full run that keeps the residual stream entering every layer (and `ln_final`), the hooks
/// in `extra`, and the rotated keys/values of every layer.
struct Recorded {
    resid_pre: Vec<Tensor<3>>,
    kv: KvCache,
    acts: crate::hooks::ActivationCache,
}

fn record(model: &Transformer, ids: &[u32], extra: &[HookPoint]) -> Result<Recorded> {
    let n = model.config.n_layers;
    let tokens = model.tokens(&[ids.to_vec()])?;
    let mut plan = HookPlan::caching((0..=n).map(HookPoint::ResidPre));
    plan.cache.extend(extra.iter().copied());
    let mut hooks = HookRunner::new(&plan, 0);
    let resid = model.embed_tokens(tokens, &mut hooks);
    let (_, kv) = model.run_blocks(resid, 0..n, None, &mut hooks, true);
    let acts = hooks.cache;
    let resid_pre = (0..=n)
        .map(|l| {
            acts.r3(HookPoint::ResidPre(l))
                .ok_or_else(|| ModelError::Device("missing cached residual".into()))
        })
        .collect::<Result<Vec<_>>>()?;
    let kv = kv.ok_or_else(|| ModelError::Device("missing key/value cache".into()))?;
    Ok(Recorded {
        resid_pre,
        kv,
        acts,
    })
}

/// What a sweep's progress callback returns: resolves to `false` to cancel. Being a future lets
/// the page yield to the browser between batches, so it never freezes.
pub type Progress = Pin<Box<dyn Future<Output = bool>>>;

/// A progress callback that never cancels (CLI, tests).
pub fn no_progress(_done: usize, _total: usize) -> Progress {
    Box::pin(async { true })
}

/// Patch `target` from the clean run into the corrupted one, for every layer and position
/// (or head). `progress(done, total)` is awaited between batches; resolving to `false` cancels.
pub async fn patch_sweep(
    model: &Transformer,
    clean: &[u32],
    corrupt: &[u32],
    target: PatchTarget,
    answer: u32,
    wrong: u32,
    progress: &mut dyn FnMut(usize, usize) -> Progress,
) -> Result<PatchGrid> {
    check_pair(clean, corrupt)?;
    let cfg = &model.config;
    let (n, p_len, h) = (cfg.n_layers, clean.len(), cfg.n_heads);
    // Positions before the first token where the prompts differ read the same tokens in both
    // runs (attention is causal), so their activations are equal and a patch there changes
    // nothing: those variants keep the corrupted metric without running, and head outputs
    // patched at every position start at the first difference. (IOI's name swap is at position 9
    // of 14: 15 suffix positions to run per layer instead of 105.)
    let first_diff = clean
        .iter()
        .zip(corrupt)
        .position(|(a, b)| a != b)
        .unwrap_or(p_len);
    let starts: Vec<usize> = match target {
        PatchTarget::HeadOut if first_diff < p_len => vec![first_diff],
        PatchTarget::HeadOut => Vec::new(),
        _ => (first_diff..p_len).collect(),
    };
    let per_layer = if target.per_head() { h } else { 1 };
    let total = starts.len();
    // The last layer's batch holds every variant of a start position; fewer positions run at
    // once when they would not fit in memory together.
    let group = match starts.first() {
        Some(&first) => crate::budget::sweep_width(
            cfg,
            n * per_layer,
            p_len - first,
            p_len,
            parallel_width(model),
            crate::budget::BLOCK_BUDGET,
        )?,
        None => 1,
    };
    let metric = LogitDiff::new(model, answer, wrong)?;
    let targets: Vec<HookPoint> = (0..n).map(|l| target.hook(l)).collect();
    // The two full runs are independent too (on the CPU's threads; one after the other on a GPU).
    let runs: [(&[u32], &[HookPoint]); 2] = [(clean, &targets), (corrupt, &[])];
    let record_run = |&(ids, extra): &(&[u32], &[HookPoint])| record(model, ids, extra);
    let mut runs = if parallel_width(model) > 1 {
        crate::par::map(&runs, record_run)
    } else {
        runs.iter().map(record_run).collect()
    };
    let missing = || ModelError::Device("missing recorded run".into());
    let corrupt_run = runs.pop().ok_or_else(missing)??;
    let clean_run = runs.pop().ok_or_else(missing)??;

    let mut outputs: Vec<Tensor<1>> = vec![
        metric.eval(model, last_position(clean_run.resid_pre[n].clone())),
        metric.eval(model, last_position(corrupt_run.resid_pre[n].clone())),
    ];
    // One start position's variants, through every layer: its outputs in grid order.
    let position = |&p: &usize| -> Result<Vec<Tensor<1>>> {
        let mut outputs = Vec::new();
        let mut resid: Option<Tensor<3>> = None;
        let mut rows = 0usize;
        for l in 0..n {
            // New variants join at layer l from the corrupted stream, positions p.. only.
            let fresh = corrupt_run.resid_pre[l].clone().slice(s![.., p..p_len, ..]);
            let [_, sfx, d] = fresh.dims();
            let fresh = fresh.expand([per_layer, sfx, d]);
            let mut plan = HookPlan::default();
            let src = match clean_run.acts.get(target.hook(l)) {
                Some(a) => a.clone(),
                None => return Err(ModelError::Device("missing clean activation".into())),
            };
            for j in 0..per_layer {
                let selector = match target {
                    PatchTarget::HeadOut => Selector::head(j),
                    PatchTarget::HeadOutPos => Selector::head(j).at_positions(vec![p]),
                    _ => Selector::position(p),
                }
                .at_batch(vec![rows + j]);
                plan.interventions.push(Intervention {
                    hook: target.hook(l),
                    selector,
                    action: Action::Replace(src.clone()),
                });
            }
            rows += per_layer;
            let batch = match resid.take() {
                Some(r) => Tensor::cat(vec![r, fresh], 0),
                None => fresh,
            };
            let prefix = (p > 0).then(|| KvCache {
                k: vec![corrupt_run.kv.k[l].clone().slice(s![.., .., 0..p, ..])],
                v: vec![corrupt_run.kv.v[l].clone().slice(s![.., .., 0..p, ..])],
            });
            let mut hooks = HookRunner::new(&plan, p);
            resid = Some(model.run_one_block(l, batch, prefix.as_ref(), &mut hooks));
        }
        if let Some(r) = resid {
            outputs.push(metric.eval(model, last_position(r)));
        }
        if target == PatchTarget::ResidPre {
            // The final row patches the input to ln_final; only the last position reaches the
            // metric.
            let src = if p == p_len - 1 {
                &clean_run
            } else {
                &corrupt_run
            };
            outputs.push(metric.eval(model, last_position(src.resid_pre[n].clone())));
        }
        Ok(outputs)
    };
    // Start positions are independent: on the CPU, several at once on the CPU's threads
    // (progress and cancel between groups).
    let mut done = 0;
    for ps in starts.chunks(group) {
        if !progress(done, total).await {
            return Err(ModelError::Input("cancelled".into()));
        }
        for out in crate::par::map(ps, position) {
            outputs.extend(out?);
        }
        done += ps.len();
    }
    progress(total, total).await;
    let values = read_f32(Tensor::cat(outputs, 0)).await?;
    let (clean_metric, corrupt_metric) = (values[0], values[1]);
    let (rows_out, cols) = grid_shape(target, n, h, p_len);
    let mut patched = vec![vec![corrupt_metric; cols]; rows_out];
    let mut it = values[2..].iter().copied();
    for &p in &starts {
        for l in 0..n {
            for j in 0..per_layer {
                let v = it.next().unwrap_or(f32::NAN);
                match target {
                    PatchTarget::HeadOut => patched[l][j] = v,
                    PatchTarget::HeadOutPos => patched[l * h + j][p] = v,
                    _ => patched[l][p] = v,
                }
            }
        }
        if target == PatchTarget::ResidPre {
            patched[n][p] = it.next().unwrap_or(f32::NAN);
        }
    }
    Ok(PatchGrid::new(clean_metric, corrupt_metric, patched))
}

/// One variant of an [`intervention_sweep`]: interventions at hooks of one layer's block (the
/// sweep sets their selectors' batch rows).
#[derive(Clone, Debug)]
pub struct Variant {
    /// The layer whose block every intervention is in.
    pub layer: usize,
    /// What changes there.
    pub interventions: Vec<Intervention>,
}

/// What an [`intervention_sweep`] read: logits of the chosen tokens at the last position.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepReadout {
    /// The unchanged run's, `[k]`.
    pub clean: Vec<f32>,
    /// Each variant's, in the order given, `[variants][k]`.
    pub variants: Vec<Vec<f32>>,
}

/// Run `ids` once per variant (ablating a head, a layer's attention or MLP, …) and read the
/// logits of `read` at the last position, recomputing only what each variant can change: it
/// enters at its layer from the unchanged run's residual stream, and only positions `from..`
/// run, with keys and values of earlier positions from the unchanged run — so every
/// intervention must select positions `from..` only (ablating at the last position: `from` is
/// the last one). Variants of one layer join a batch that grows layer by layer, as in
/// [`patch_sweep`]; when all of them would not fit in [`crate::budget::BLOCK_BUDGET`], they run
/// in several such batches. `progress(done, total)` counts variants and may cancel.
///
/// # Shapes
/// - `ids`: `[pos]`, `from < pos`; `read`: `[k]` token ids → logits `[k]` per run.
pub async fn intervention_sweep(
    model: &Transformer,
    ids: &[u32],
    variants: &[Variant],
    from: usize,
    read: &[u32],
    progress: &mut dyn FnMut(usize, usize) -> Progress,
) -> Result<SweepReadout> {
    intervention_sweep_within(
        model,
        ids,
        variants,
        from,
        read,
        crate::budget::BLOCK_BUDGET,
        progress,
    )
    .await
}

/// [`intervention_sweep`] holding at most `budget` bytes per block (tests split a sweep into
/// several batches with a small one).
pub async fn intervention_sweep_within(
    model: &Transformer,
    ids: &[u32],
    variants: &[Variant],
    from: usize,
    read: &[u32],
    budget: usize,
    progress: &mut dyn FnMut(usize, usize) -> Progress,
) -> Result<SweepReadout> {
    let cfg = &model.config;
    let (n, p_len) = (cfg.n_layers, ids.len());
    if from >= p_len {
        return Err(ModelError::Input(format!(
            "a sweep from position {from} of a {p_len}-token prompt runs nothing"
        )));
    }
    if let Some(v) = variants.iter().find(|v| v.layer >= n) {
        return Err(ModelError::Input(format!(
            "there is no layer {}: the model has {n}",
            v.layer
        )));
    }
    // A hook outside the variant's block, or a position before `from`, would be skipped
    // without a word (the run starts at that block and position): refuse instead.
    for v in variants {
        for iv in &v.interventions {
            if iv.hook.layer() != Some(v.layer) {
                return Err(ModelError::Input(format!(
                    "a variant of layer {} intervenes at {}: a sweep's variant may only touch \
                     hooks inside its own layer's block",
                    v.layer, iv.hook
                )));
            }
            let early = match &iv.selector.positions {
                None => from > 0,
                Some(ps) => ps.iter().any(|&p| p < from || p >= p_len),
            };
            if early {
                return Err(ModelError::Input(format!(
                    "an intervention at {} selects positions outside {from}..{p_len}, the \
                     positions this sweep runs",
                    iv.hook
                )));
            }
        }
    }
    if read.is_empty() {
        return Err(ModelError::Input(
            "a sweep must read at least one token".into(),
        ));
    }
    check_vocab(cfg, read)?;
    let cols = Tensor::<1, Int>::from_data(
        TensorData::new(
            read.iter().map(|&t| t as i32).collect::<Vec<_>>(),
            [read.len()],
        ),
        &model.device(),
    );
    let readout = |resid: Tensor<3>| model.logits_of(last_position(resid), cols.clone());
    let run = record(model, ids, &[])?;
    let k = read.len();
    let clean = read_f32(readout(run.resid_pre[n].clone())).await?;
    // Variants by layer (stable), so each batch's rows are in joining order.
    let mut order: Vec<usize> = (0..variants.len()).collect();
    order.sort_by_key(|&i| variants[i].layer);
    let one = crate::budget::block_bytes(cfg, 1, p_len - from, p_len).max(1);
    let rows_max = (budget / one).max(1);
    if one > budget {
        crate::budget::check_prompt(cfg, 1, p_len - from, p_len, budget)?;
    }
    let mut out = vec![Vec::new(); variants.len()];
    let total = variants.len();
    let mut done = 0;
    for group in order.chunks(rows_max) {
        if !progress(done, total).await {
            return Err(ModelError::Input("cancelled".into()));
        }
        let first = variants[group[0]].layer;
        let mut resid: Option<Tensor<3>> = None;
        let mut rows = 0usize;
        let mut next = 0usize;
        for l in first..n {
            let mut plan = HookPlan::default();
            let joining = group[next..]
                .iter()
                .take_while(|&&i| variants[i].layer == l)
                .count();
            for (j, &i) in group[next..next + joining].iter().enumerate() {
                for iv in &variants[i].interventions {
                    plan.interventions.push(Intervention {
                        hook: iv.hook,
                        selector: iv.selector.clone().at_batch(vec![rows + j]),
                        action: iv.action.clone(),
                    });
                }
            }
            next += joining;
            rows += joining;
            let batch = match (resid.take(), joining) {
                (r, 0) => r,
                (r, _) => {
                    let fresh = run.resid_pre[l].clone().slice(s![.., from..p_len, ..]);
                    let [_, q, d] = fresh.dims();
                    let fresh = fresh.expand([joining, q, d]);
                    Some(match r {
                        Some(r) => Tensor::cat(vec![r, fresh], 0),
                        None => fresh,
                    })
                }
            };
            let Some(batch) = batch else { continue };
            let prefix = (from > 0).then(|| KvCache {
                k: vec![run.kv.k[l].clone().slice(s![.., .., 0..from, ..])],
                v: vec![run.kv.v[l].clone().slice(s![.., .., 0..from, ..])],
            });
            let mut hooks = HookRunner::new(&plan, from);
            resid = Some(model.run_one_block(l, batch, prefix.as_ref(), &mut hooks));
        }
        if let Some(r) = resid {
            let logits = read_f32(readout(r)).await?;
            for (row, &i) in group.iter().enumerate() {
                out[i] = logits[row * k..(row + 1) * k].to_vec();
            }
        }
        done += group.len();
    }
    progress(total, total).await;
    Ok(SweepReadout {
        clean,
        variants: out,
    })
}

/// How many start positions to run at once on `model`'s device: on the CPU four per thread, else
/// one (the GPU takes one stream of work). Fewer per thread leaves threads idle: a thread whose
/// matmul was split finds no other work while it waits (SmolLM2's sweep on 2 threads: 6.9 s with
/// two per thread, 4.8 s with four, 4.8 s with all at once).
fn parallel_width(model: &Transformer) -> usize {
    if model.device() == burn::tensor::Device::flex() && crate::par::threads() > 1 {
        4 * crate::par::threads()
    } else {
        1
    }
}

/// The same sweep done the obvious way: one full forward pass per variant. Slow; it exists to
/// check [`patch_sweep`] against.
pub async fn patch_sweep_naive(
    model: &Transformer,
    clean: &[u32],
    corrupt: &[u32],
    target: PatchTarget,
    answer: u32,
    wrong: u32,
) -> Result<PatchGrid> {
    check_pair(clean, corrupt)?;
    let cfg = &model.config;
    let (n, p_len, h) = (cfg.n_layers, clean.len(), cfg.n_heads);
    let (rows_out, cols) = grid_shape(target, n, h, p_len);
    let layers = if target == PatchTarget::ResidPre {
        n + 1
    } else {
        n
    };
    let hooks: Vec<HookPoint> = (0..layers).map(|l| target.hook(l)).collect();
    let (clean_logits, clean_cache) =
        model.run_with_hooks(model.tokens(&[clean.to_vec()])?, &HookPlan::caching(hooks));
    let corrupt_tokens = model.tokens(&[corrupt.to_vec()])?;
    let corrupt_logits = model.forward(corrupt_tokens.clone());
    let ld = |logits: Tensor<3>| -> Tensor<1> {
        let v = logits.dims()[2];
        let last = last_position(logits).reshape([v]);
        last.clone().slice(s![answer as usize..answer as usize + 1])
            - last.slice(s![wrong as usize..wrong as usize + 1])
    };
    let mut outs = vec![ld(clean_logits), ld(corrupt_logits)];
    for r in 0..rows_out {
        let l = if target == PatchTarget::HeadOutPos {
            r / h
        } else {
            r
        };
        for c in 0..cols {
            let src: Act = clean_cache
                .get(target.hook(l))
                .cloned()
                .ok_or_else(|| ModelError::Device("missing clean activation".into()))?;
            let selector = match target {
                PatchTarget::HeadOut => Selector::head(c),
                PatchTarget::HeadOutPos => Selector::head(r % h).at_positions(vec![c]),
                _ => Selector::position(c),
            };
            let plan = HookPlan::default().with(target.hook(l), selector, Action::Replace(src));
            let (logits, _) = model.run_with_hooks(corrupt_tokens.clone(), &plan);
            outs.push(ld(logits));
        }
    }
    let values = read_f32(Tensor::cat(outs, 0)).await?;
    let (clean_metric, corrupt_metric) = (values[0], values[1]);
    let patched: Vec<Vec<f32>> = values[2..].chunks(cols).map(<[f32]>::to_vec).collect();
    Ok(PatchGrid::new(clean_metric, corrupt_metric, patched))
}
