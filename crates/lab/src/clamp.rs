//! Clamping during training (Singh et al. 2024, "What needs to go right for an induction
//! head?"): train the 2-layer attention-only model of the induction task from scratch twice, on
//! the same initial weights and the same batches, once as it is and once with chosen
//! activations clamped throughout training — a head's output zeroed or held at its mean, a
//! head's attention fixed to the previous token — and compare the loss curves: the phase change
//! (the sudden fall of the loss when induction heads form) moves or disappears.
//!
//! The model is `induction-2l`'s architecture (`bundled::Bundled::Induction`) with `context`
//! positions, trained by `interplay_models::train` (autodiff: feature `train`, the CLI and the
//! page's gradients engine) on `bundled::induction_batch_of`'s sequences.

use interplay_models::hooks::{Action, HookPlan, HookPoint, Selector};
use interplay_models::patching::Progress;
use serde::{Deserialize, Serialize};

use crate::LabError;

/// The experiment; in JSON a Circuits spec with `"experiment": "clamped-training"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "experiment", rename = "clamped-training")]
pub struct ClampSpec {
    /// Training steps (1–5000).
    #[serde(default = "default_steps")]
    pub steps: usize,
    /// Sequences per step (1–512).
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Positions per sequence (8–48, the model's context).
    #[serde(default = "default_context")]
    pub context: usize,
    /// Peak learning rate of AdamW (reached after `warmup` steps, then cosine decay to 10%).
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Linear warm-up steps.
    #[serde(default = "default_warmup")]
    pub warmup: usize,
    /// Seed of the initial weights and of the batches (both runs share them).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// What the clamped run holds fixed (empty: only the unclamped run).
    #[serde(default)]
    pub clamps: Vec<Clamp>,
}

fn default_steps() -> usize {
    600
}
fn default_batch() -> usize {
    256
}
fn default_context() -> usize {
    32
}
fn default_lr() -> f64 {
    5e-3
}
fn default_warmup() -> usize {
    30
}
fn default_seed() -> u64 {
    1
}

/// One clamped activation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Clamp {
    /// Layer (0 or 1).
    pub layer: usize,
    /// Head (0–3); `None` clamps every head of the layer.
    #[serde(default)]
    pub head: Option<usize>,
    /// How.
    pub clamp: ClampKind,
}

/// How an activation is clamped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClampKind {
    /// The head's output (`hook_z`) is zero: the head is gone.
    Zero,
    /// The head's output is its mean over the batch and every position, held out of the
    /// gradient: it adds a constant. Each sequence makes 1/batch of it (the spec asks for 32
    /// sequences or more), so it carries next to nothing about any one sequence's tokens — its
    /// later words included.
    Mean,
    /// The head's attention (`hook_pattern`) is fixed to the previous token (position 0 to
    /// itself): a perfect previous-token head from the first step, whose values still learn.
    PreviousToken,
}

impl Clamp {
    /// "L0H1 output zeroed", "L0 (every head) attention fixed to the previous token".
    pub fn label(&self) -> String {
        let what = match self.clamp {
            ClampKind::Zero => "output zeroed",
            ClampKind::Mean => "output held at its mean",
            ClampKind::PreviousToken => "attention fixed to the previous token",
        };
        match self.head {
            Some(h) => format!("L{}H{h} {what}", self.layer),
            None => format!("L{} (every head) {what}", self.layer),
        }
    }
}

/// One training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClampRun {
    /// "unclamped" or the clamps' labels.
    pub label: String,
    /// The clamps this run held.
    pub clamps: Vec<Clamp>,
    /// Training loss at every step (before the step's update), nats.
    pub loss: Vec<f32>,
    /// The first step whose 25-step mean loss (steps s−24..=s) is below the threshold; `None`
    /// when it never is.
    pub phase_change: Option<usize>,
    /// Loss and accuracy of the top prediction on 256 held-out sequences (the clamps held).
    pub test_loss: f32,
    /// See `test_loss`.
    pub test_accuracy: f32,
    /// `previous[layer][head]`: attention from i to i − 1 over the second half of a repeated
    /// random sequence (the lab's head detectors, clamps held).
    pub previous: Vec<Vec<f32>>,
    /// `induction[layer][head]`: attention from i to i − half + 1 there.
    pub induction: Vec<Vec<f32>>,
}

/// What the experiment found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClampOutcome {
    /// The phase-change threshold: half the unclamped run's mean loss over its first 25 steps.
    pub threshold: f32,
    /// The unclamped run, then the clamped one (when the spec clamps anything).
    pub runs: Vec<ClampRun>,
}

/// The window of the moving mean that finds the phase change.
pub const WINDOW: usize = 25;

impl ClampSpec {
    /// The value of its `"experiment"` key.
    pub const EXPERIMENT: &str = "clamped-training";

    /// The guided experiment: layer 0's head 0 attends to the previous token from the start.
    pub fn previous_token_guided() -> Self {
        Self {
            steps: default_steps(),
            batch: default_batch(),
            context: default_context(),
            lr: default_lr(),
            warmup: default_warmup(),
            seed: default_seed(),
            clamps: vec![Clamp {
                layer: 0,
                head: Some(0),
                clamp: ClampKind::PreviousToken,
            }],
        }
    }

    /// The spec's limits, checked before any training.
    pub fn check(&self) -> Result<(), LabError> {
        let bad = |m: String| Err(LabError::Spec(m));
        let c = crate::bundled::Bundled::Induction.config();
        if !(1..=5000).contains(&self.steps) {
            return bad(format!("steps: give 1 to 5000, not {}", self.steps));
        }
        if !(1..=512).contains(&self.batch) {
            return bad(format!(
                "batch: give 1 to 512 sequences, not {}",
                self.batch
            ));
        }
        if !(8..=c.n_ctx).contains(&self.context) {
            return bad(format!(
                "context: give 8 to {} positions, not {}",
                c.n_ctx, self.context
            ));
        }
        if !(self.lr > 0.0 && self.lr <= 0.1) {
            return bad(format!(
                "lr: give a learning rate in (0, 0.1], not {}",
                self.lr
            ));
        }
        if self.warmup > self.steps {
            return bad(format!(
                "warmup: at most the {} training steps, not {}",
                self.steps, self.warmup
            ));
        }
        if self.clamps.len() > 8 {
            return bad("clamps: at most 8".into());
        }
        // A mean over few sequences would carry each one's own (later) words back to it.
        if self.clamps.iter().any(|k| k.clamp == ClampKind::Mean) && self.batch < 32 {
            return bad(format!(
                "clamps: a head held at its mean needs a mean over at least 32 sequences, not {}: \
                 with fewer, each sequence's own later words weigh enough in it to be read",
                self.batch
            ));
        }
        for (i, a) in self.clamps.iter().enumerate() {
            if self.clamps[..i].contains(a) {
                return bad(format!("clamps: {} is listed twice", a.label()));
            }
        }
        for k in &self.clamps {
            if k.layer >= c.n_layers {
                return bad(format!(
                    "clamps: layer {} does not exist (the model has layers 0 and 1)",
                    k.layer
                ));
            }
            if k.head.is_some_and(|h| h >= c.n_heads) {
                return bad(format!(
                    "clamps: head {} does not exist (each layer has heads 0 to {})",
                    k.head.unwrap_or(0),
                    c.n_heads - 1
                ));
            }
        }
        Ok(())
    }

    /// Train the unclamped run and, when the spec clamps anything, the clamped one.
    /// `on_losses(run, losses)` hears each run's newest losses every few steps (a live curve);
    /// `progress(done, total)` counts training steps of both runs; resolving to `false` cancels.
    pub async fn run(
        &self,
        device: &burn::tensor::Device,
        on_losses: &mut dyn FnMut(usize, &[f32]),
        progress: &mut dyn FnMut(usize, usize) -> Progress,
    ) -> Result<ClampOutcome, LabError> {
        self.check()?;
        let sets: Vec<Vec<Clamp>> = if self.clamps.is_empty() {
            vec![Vec::new()]
        } else {
            vec![Vec::new(), self.clamps.clone()]
        };
        let total = self.steps * sets.len();
        let mut runs = Vec::new();
        for (i, clamps) in sets.into_iter().enumerate() {
            let done = i * self.steps;
            let mut heard = |l: &[f32]| on_losses(i, l);
            runs.push(
                train_run(self, clamps, device, &mut heard, &mut |d, _| {
                    progress(done + d, total)
                })
                .await?,
            );
        }
        let head: Vec<f32> = runs[0].loss.iter().take(WINDOW).copied().collect();
        let threshold = head.iter().sum::<f32>() / head.len().max(1) as f32 / 2.0;
        for r in &mut runs {
            r.phase_change = phase_change(&r.loss, threshold);
        }
        Ok(ClampOutcome { threshold, runs })
    }
}

/// The [`WINDOW`]-step mean of `loss` ending at each step from `WINDOW − 1` on (what the
/// page plots and the phase change reads).
pub fn moving_mean(loss: &[f32]) -> Vec<f32> {
    (WINDOW - 1..loss.len())
        .map(|s| loss[s + 1 - WINDOW..=s].iter().sum::<f32>() / WINDOW as f32)
        .collect()
}

/// The first step whose [`WINDOW`]-step mean loss is below `threshold`.
pub fn phase_change(loss: &[f32], threshold: f32) -> Option<usize> {
    moving_mean(loss)
        .iter()
        .position(|&m| m < threshold)
        .map(|i| i + WINDOW - 1)
}

/// The hook plan that holds `clamps` on a model of `n_heads` heads and `context` positions on
/// `device`.
pub fn clamp_plan(
    clamps: &[Clamp],
    n_heads: usize,
    context: usize,
    device: &burn::tensor::Device,
) -> HookPlan {
    let mut plan = HookPlan::default();
    for k in clamps {
        let selector = match k.head {
            Some(h) => Selector::head(h),
            None => Selector::all(),
        };
        let (hook, action) = match k.clamp {
            ClampKind::Zero => (HookPoint::Z(k.layer), Action::Zero),
            ClampKind::Mean => (HookPoint::Z(k.layer), Action::OwnMean),
            ClampKind::PreviousToken => (
                HookPoint::Pattern(k.layer),
                Action::Replace(previous_token_pattern(n_heads, context, device)),
            ),
        };
        plan = plan.with(hook, selector, action);
    }
    plan
}

/// Every head attending from each position to the one before (position 0 to itself).
///
/// # Shapes
/// → `[1, n_heads, context, context]` (`hook_pattern`'s layout, batch 1 broadcast).
fn previous_token_pattern(
    n_heads: usize,
    context: usize,
    device: &burn::tensor::Device,
) -> interplay_models::hooks::Act {
    let mut one = vec![0f32; context * context];
    for q in 0..context {
        one[q * context + q.saturating_sub(1)] = 1.0;
    }
    let data: Vec<f32> = (0..n_heads).flat_map(|_| one.iter().copied()).collect();
    interplay_models::hooks::Act::R4(burn::tensor::Tensor::from_data(
        burn::tensor::TensorData::new(data, [1, n_heads, context, context]),
        device,
    ))
}

/// The model trained for the first `n` of the spec's steps under `clamps` (the schedule is
/// the whole run's), the plan that held them, and the loss at every step.
#[cfg(feature = "train")]
async fn train(
    spec: &ClampSpec,
    clamps: &[Clamp],
    device: &burn::tensor::Device,
    n: usize,
    on_losses: &mut dyn FnMut(&[f32]),
    progress: &mut dyn FnMut(usize, usize) -> Progress,
) -> Result<(interplay_models::Transformer, HookPlan, Vec<f32>), LabError> {
    use interplay_models::TransformerConfig;
    use interplay_models::train::{AdamW, Rng, Trainer, init_gpt2};

    use crate::bundled::{Bundled, induction_batch_of};

    let config = TransformerConfig {
        n_ctx: spec.context,
        ..Bundled::Induction.config()
    };
    let weights = init_gpt2(&config, true, spec.seed)?;
    let opt = AdamW {
        lr: spec.lr,
        weight_decay: 0.01,
        warmup: spec.warmup,
        steps: spec.steps,
    };
    // Attention-only: the MLP (and the norm that feeds only it) stays as initialised (zero).
    let frozen: fn(&str) -> bool = |p| p.contains(".mlp.") || p.contains(".ln2.");
    let n_heads = config.n_heads;
    let mut trainer = Trainer::new(config, weights, device, opt, frozen)?;
    let plan = clamp_plan(clamps, n_heads, spec.context, &trainer.model.device());
    trainer.clamp(plan.clone());
    let mut rng = Rng::new(spec.seed ^ 0xDA7A);
    let (mut loss, mut sent) = (Vec::with_capacity(n), 0);
    for step in 0..n {
        let batch = induction_batch_of(&mut rng, spec.batch, spec.context);
        loss.push(trainer.step(&batch).await?);
        if (step + 1) % 5 == 0 || step + 1 == n {
            on_losses(&loss[sent..]);
            sent = loss.len();
        }
        if !progress(step + 1, n).await {
            return Err(LabError::Cancelled);
        }
    }
    Ok((trainer.model, plan, loss))
}

#[cfg(feature = "train")]
impl ClampSpec {
    /// The losses of the first `n` training steps under `clamps` (the references check these).
    pub async fn first_losses(
        &self,
        clamps: &[Clamp],
        device: &burn::tensor::Device,
        n: usize,
    ) -> Result<Vec<f32>, LabError> {
        self.check()?;
        let n = n.min(self.steps);
        let mut quiet = interplay_models::patching::no_progress;
        Ok(train(self, clamps, device, n, &mut |_| {}, &mut quiet)
            .await?
            .2)
    }
}

#[cfg(feature = "train")]
async fn train_run(
    spec: &ClampSpec,
    clamps: Vec<Clamp>,
    device: &burn::tensor::Device,
    on_losses: &mut dyn FnMut(&[f32]),
    progress: &mut dyn FnMut(usize, usize) -> Progress,
) -> Result<ClampRun, LabError> {
    use interplay_models::train::{Rng, evaluate_with};

    use crate::bundled::induction_batch_of;
    use crate::circuits::head_scores_under;

    let (model, plan, loss) = train(spec, &clamps, device, spec.steps, on_losses, progress).await?;
    let mut rng = Rng::new(0x7E57);
    let (test_loss, test_accuracy) = evaluate_with(
        &model,
        &induction_batch_of(&mut rng, 256, spec.context),
        &plan,
    )
    .await?;
    // Head detectors under the clamps: what the trained model does as it was trained (the
    // detection sequence is `2 · (context / 2)` positions, which a pattern clamp must cover).
    let half = spec.context / 2;
    let under = clamp_plan(&clamps, model.config.n_heads, 2 * half, &model.device());
    let scores = head_scores_under(&model, half, 1, &under).await?;
    Ok(ClampRun {
        label: if clamps.is_empty() {
            "unclamped".into()
        } else {
            clamps
                .iter()
                .map(Clamp::label)
                .collect::<Vec<_>>()
                .join(", ")
        },
        clamps,
        loss,
        phase_change: None,
        test_loss,
        test_accuracy,
        previous: scores.previous,
        induction: scores.induction,
    })
}

#[cfg(not(feature = "train"))]
async fn train_run(
    _spec: &ClampSpec,
    _clamps: Vec<Clamp>,
    _device: &burn::tensor::Device,
    _on_losses: &mut dyn FnMut(&[f32]),
    _progress: &mut dyn FnMut(usize, usize) -> Progress,
) -> Result<ClampRun, LabError> {
    Err(LabError::Spec(
        "training needs gradients, which this engine does not compute (it has no autodiff): in \
         the page the gradients engine did not start (run it again to retry); `interplay run \
         spec.json` trains too"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_change_is_the_first_window_below_the_threshold() {
        let mut loss = vec![4.0f32; 60];
        for l in loss.iter_mut().skip(40) {
            *l = 0.5;
        }
        // The window ending at s holds s − 39 values of 0.5: its mean is below 2 from 15 of them.
        let s = phase_change(&loss, 2.0).expect("falls");
        assert_eq!(s, 54);
        assert_eq!(phase_change(&[4.0; 60], 2.0), None);
        assert_eq!(phase_change(&[0.1; 10], 2.0), None, "shorter than a window");
    }

    #[test]
    fn specs_out_of_range_are_messages() {
        let ok = ClampSpec::previous_token_guided();
        assert!(ok.check().is_ok());
        let bad = |f: fn(&mut ClampSpec)| {
            let mut s = ok.clone();
            f(&mut s);
            s.check().expect_err("refused").to_string()
        };
        assert!(bad(|s| s.steps = 0).contains("steps"));
        assert!(bad(|s| s.context = 64).contains("context"));
        assert!(bad(|s| s.clamps[0].layer = 2).contains("layer 2"));
        assert!(bad(|s| s.clamps[0].head = Some(4)).contains("head 4"));
        assert!(bad(|s| s.warmup = 10_000).contains("warmup"));
        assert!(bad(|s| s.lr = 0.0).contains("lr"));
        assert!(bad(|s| s.clamps.push(s.clamps[0].clone())).contains("listed twice"));
        let small_mean = |s: &mut ClampSpec| {
            s.batch = 4;
            s.clamps[0].clamp = ClampKind::Mean;
        };
        assert!(bad(small_mean).contains("at least 32 sequences"));
    }
}
