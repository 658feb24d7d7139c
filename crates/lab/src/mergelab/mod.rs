//! The Merge lab's experiment: merge task vectors of the bundled suite ([`crate::suite`]) with
//! task arithmetic, TIES, DARE or learned coefficients (AdaMerging's entropy minimisation on
//! unlabeled test inputs, or aTLAS-style coefficients from a few labels), and evaluate every
//! model on every task. One serde spec, [`MergeSpec`], is shared by the page URL, JSON export,
//! `interplay run spec.json` and the tests.

use burn::tensor::{Device, Tensor, TensorData};
use interplay_models::device::read_f32;
use interplay_models::patching::Progress;
use interplay_models::weights::{HostTensor, Weights};
use serde::{Deserialize, Serialize};

use crate::LabError;
use crate::merge::{self, MergeOptions, MergeReport, Method, TrimScope};
use crate::suite::{self, Dataset, LAYERS, Loss, Mlp, Split, Task, TrainOptions, TrainProgress};

mod adamerging;
mod maps;

use adamerging::*;
use maps::*;

/// How the task vectors are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabMethod {
    /// θ = base + λ Σ τᵢ.
    TaskArithmetic,
    /// Trim, elect sign, disjoint mean (official semantics).
    Ties,
    /// Drop and rescale, then task arithmetic.
    Dare,
    /// θ = base + Σ λᵢ,g τᵢ,g with coefficients learned (see [`AdaOptions`]).
    Adamerging,
}

/// Which parameters share one learned coefficient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    /// One coefficient per task vector (task-wise AdaMerging).
    TaskWise,
    /// One per task and layer (layer-wise AdaMerging).
    LayerWise,
    /// One per task and parameter tensor (aTLAS's blocks).
    BlockWise,
}

/// What the coefficients minimise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// Mean prediction entropy on the tasks' unlabeled test inputs (AdaMerging).
    Entropy,
    /// Cross-entropy on `shots` labelled training examples per class and task (aTLAS-style).
    FewShot,
}

/// How learned coefficients are fitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdaOptions {
    /// Coefficient sharing.
    pub granularity: Granularity,
    /// Loss.
    pub objective: Objective,
    /// Few-shot: labelled examples per class and task.
    pub shots: usize,
    /// Adam steps (full batch).
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f64,
}

impl Default for AdaOptions {
    fn default() -> Self {
        Self {
            granularity: Granularity::LayerWise,
            objective: Objective::Entropy,
            shots: 5,
            steps: 100,
            lr: 0.01,
        }
    }
}

/// How the merged models were fine-tuned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FineTuning {
    /// All parameters, the network as it is.
    #[default]
    Standard,
    /// The network's first-order expansion around the base (Ortiz-Jiménez et al., 2023).
    Linearised,
}

impl FineTuning {
    /// Whether models are linearised.
    pub fn linearised(self) -> bool {
        self == FineTuning::Linearised
    }
}

/// A fine-tune made by the run itself from the bundled base (training is deterministic for a
/// device, so a share link with fine-tunes made in the page still reproduces).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FineTuneSpec {
    /// The task trained on (its training split).
    pub task: Task,
    /// How.
    #[serde(flatten)]
    pub options: TrainOptions,
}

/// A Merge lab experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MergeSpec {
    /// The bundled fine-tunes whose task vectors are merged.
    pub tasks: Vec<Task>,
    /// Standard fine-tunes, or linearised ones (tangent space of the base): then every model —
    /// fine-tunes, merges, sweeps, maps — is evaluated as the linearised network around the base.
    pub fine_tuning: FineTuning,
    /// More task vectors: fine-tunes the run trains from the base (made in the page).
    pub fine_tunes: Vec<FineTuneSpec>,
    /// The method.
    pub method: LabMethod,
    /// λ (negative negates: forgetting); for AdaMerging, the coefficients' starting value.
    pub lambda: f64,
    /// TIES: fraction of entries kept.
    pub density: f64,
    /// DARE: drop probability.
    pub drop: f64,
    /// DARE: seed of the drop masks.
    pub seed: u64,
    /// TIES: trim over all parameters (official) or per tensor.
    pub trim_scope: TrimScope,
    /// AdaMerging / aTLAS settings.
    pub adamerging: AdaOptions,
    /// λ values to sweep with the chosen fixed method (empty: no sweep).
    pub sweep: Vec<f64>,
    /// Two tasks for the weight-disentanglement map (empty: none).
    pub disentangle: Vec<Task>,
    /// The α grid of the disentanglement map.
    pub alphas: Vec<f64>,
}

impl Default for MergeSpec {
    fn default() -> Self {
        Self {
            tasks: Task::FINE_TUNED.to_vec(),
            fine_tuning: FineTuning::Standard,
            fine_tunes: Vec::new(),
            method: LabMethod::Ties,
            lambda: 1.0,
            density: 0.2,
            drop: 0.9,
            seed: 0,
            trim_scope: TrimScope::Global,
            adamerging: AdaOptions::default(),
            sweep: Vec::new(),
            disentangle: Vec::new(),
            alphas: vec![0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5],
        }
    }
}

/// One model's accuracy on every task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRow {
    /// "base", "fine-tuned on mirror", "merged", ...
    pub name: String,
    /// Accuracy per task, in [`MergeOutcome::columns`] order.
    pub accuracy: Vec<f64>,
}

/// One λ of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepRow {
    /// λ.
    pub lambda: f64,
    /// Accuracy per task, in column order.
    pub accuracy: Vec<f64>,
    /// Mean accuracy over the merged tasks.
    pub mean: f64,
    /// Mean prediction entropy on the merged tasks' test inputs (needs no labels).
    pub entropy: f64,
}

/// Sign conflicts between task vectors, per parameter tensor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SignMap {
    /// Parameter tensors (rows).
    pub tensors: Vec<String>,
    /// Task pairs, then "all" (columns).
    pub pairs: Vec<String>,
    /// Fraction of entries where the task vectors have opposite signs, `[tensor][pair]`.
    pub values: Vec<Vec<f64>>,
}

/// The weight-disentanglement error over a two-task α grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Disentanglement {
    /// The two tasks.
    pub tasks: Vec<Task>,
    /// α values (both axes).
    pub alphas: Vec<f64>,
    /// ξ(α₁, α₂) = Σₜ P[f(x; θ₀ + α₁τ₁ + α₂τ₂) ≠ f(x; θ₀ + αₜτₜ)], `[α₁][α₂]`.
    pub error: Vec<Vec<f64>>,
}

/// Learned coefficients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Learned {
    /// Parameter groups sharing a coefficient.
    pub groups: Vec<String>,
    /// Coefficients `[task][group]`.
    pub coefficients: Vec<Vec<f64>>,
    /// Loss at each step.
    pub losses: Vec<f64>,
}

/// What a spec produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergeOutcome {
    /// Task columns ([`Task::ALL`]).
    pub columns: Vec<Task>,
    /// Base, each bundled fine-tune, then the merge.
    pub rows: Vec<ModelRow>,
    /// The merge's accuracy per column.
    pub merged: Vec<f64>,
    /// Merged accuracy / fine-tuned accuracy for each merged model (bundled tasks in spec order,
    /// then the page's fine-tunes).
    pub normalised: Vec<f64>,
    /// Mean accuracy of the merge over the merged tasks.
    pub mean_accuracy: f64,
    /// Mean normalised accuracy.
    pub mean_normalised: f64,
    /// Accuracy on [`Task::Digits`] (the control task nobody fine-tuned for).
    pub control: f64,
    /// Merge statistics (TIES: kept fraction, sign conflicts).
    pub report: MergeReport,
    /// AdaMerging's coefficients.
    pub learned: Option<Learned>,
    /// λ sweep.
    pub sweep: Vec<SweepRow>,
    /// Sign-conflict map of the merged task vectors.
    pub signs: SignMap,
    /// Weight-disentanglement map.
    pub disentanglement: Option<Disentanglement>,
}

impl MergeSpec {
    /// Refuse specs that cannot run, with a message for people.
    pub fn check(&self) -> Result<(), LabError> {
        if self.fine_tunes.len() > 4 {
            return Err(LabError::Spec(
                "at most four fine-tunes made in the page".into(),
            ));
        }
        for f in &self.fine_tunes {
            f.options.check()?;
            if f.options.linearised != self.fine_tuning.linearised() {
                let mode = if f.options.linearised {
                    "linearised"
                } else {
                    "standard"
                };
                return Err(LabError::Spec(format!(
                    "a {mode} fine-tune made in the page merges only with {mode} fine-tunes: set the fine-tuning to {mode}"
                )));
            }
        }
        if self.tasks.is_empty() && self.fine_tunes.is_empty() {
            return Err(LabError::Spec(
                "choose at least one task vector to merge".into(),
            ));
        }
        if let Some(t) = self.tasks.iter().find(|t| **t == Task::Digits) {
            return Err(LabError::Spec(format!(
                "{t} is the base model's own task: there is no fine-tune (task vector) for it"
            )));
        }
        let mut seen = self.tasks.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.tasks.len() {
            return Err(LabError::Spec("each task can be merged once".into()));
        }
        if !self.lambda.is_finite() || self.lambda.abs() > 10.0 {
            return Err(LabError::Spec(
                "λ must be a number between −10 and 10".into(),
            ));
        }
        if self.sweep.len() > 41 || self.sweep.iter().any(|l| !l.is_finite() || l.abs() > 10.0) {
            return Err(LabError::Spec(
                "the sweep takes at most 41 λ values between −10 and 10".into(),
            ));
        }
        if !self.disentangle.is_empty() {
            if self.disentangle.len() != 2
                || self.disentangle[0] == self.disentangle[1]
                || self.disentangle.contains(&Task::Digits)
            {
                return Err(LabError::Spec(
                    "the disentanglement map takes two different fine-tuned tasks".into(),
                ));
            }
            if self.alphas.is_empty()
                || self.alphas.len() > 11
                || self.alphas.iter().any(|a| !a.is_finite() || a.abs() > 10.0)
            {
                return Err(LabError::Spec(
                    "the disentanglement grid takes 1 to 11 α values between −10 and 10".into(),
                ));
            }
        }
        if self.method == LabMethod::Adamerging {
            let a = &self.adamerging;
            if !(1..=2000).contains(&a.steps) {
                return Err(LabError::Spec(
                    "AdaMerging takes between 1 and 2000 steps".into(),
                ));
            }
            if !(a.lr.is_finite() && a.lr > 0.0 && a.lr <= 1.0) {
                return Err(LabError::Spec(
                    "the AdaMerging learning rate must be in (0, 1]".into(),
                ));
            }
            if a.objective == Objective::FewShot && !(1..=100).contains(&a.shots) {
                return Err(LabError::Spec(
                    "few-shot coefficients take 1 to 100 labelled examples per class".into(),
                ));
            }
        }
        let density = if self.density > 1.0 {
            self.density / 100.0
        } else {
            self.density
        };
        if self.method == LabMethod::Ties && !(density > 0.0 && density <= 1.0) {
            return Err(LabError::Spec(
                "the TIES density must be in (0, 1] (or a percentage)".into(),
            ));
        }
        if self.method == LabMethod::Dare && !(0.0..1.0).contains(&self.drop) {
            return Err(LabError::Spec(
                "the DARE drop probability must be in [0, 1)".into(),
            ));
        }
        Ok(())
    }

    /// The fixed-coefficient merge options (AdaMerging starts from task arithmetic).
    fn fixed(&self, lambda: f64) -> MergeOptions {
        MergeOptions {
            method: match self.method {
                LabMethod::Ties => Method::Ties,
                LabMethod::Dare => Method::Dare,
                LabMethod::TaskArithmetic | LabMethod::Adamerging => Method::TaskArithmetic,
            },
            lambda,
            density: self.density,
            drop: self.drop,
            seed: self.seed,
            trim_scope: self.trim_scope,
        }
    }

    /// Steps of work, for progress bars.
    pub fn work(&self) -> usize {
        let ada = if self.method == LabMethod::Adamerging {
            self.adamerging.steps
        } else {
            0
        };
        let grid = if self.disentangle.is_empty() {
            0
        } else {
            self.alphas.len() * (self.alphas.len() + 2)
        };
        2 + ada + self.sweep.len() + grid
    }

    /// The learned-coefficient objective of this spec's bundled fine-tunes (`tasks`,
    /// `fine_tuning`, `adamerging`) at `lambda` (`[task][group]`, unclamped): the loss and its
    /// gradient in the same layout, what each AdaMerging / aTLAS step descends.
    ///
    /// # Errors
    /// A spec [`MergeSpec::check`] refuses, page fine-tunes in the spec (they would have to be
    /// trained first; only bundled fine-tunes are taken), or `lambda` not tasks × groups.
    pub async fn coefficient_gradient(
        &self,
        device: &Device,
        lambda: &[Vec<f64>],
    ) -> Result<(f64, Vec<Vec<f64>>), LabError> {
        self.check()?;
        if !self.fine_tunes.is_empty() {
            return Err(LabError::Spec(
                "the coefficient gradient takes the bundled fine-tunes only".into(),
            ));
        }
        let (k, g) = (
            self.tasks.len(),
            group_names(self.adamerging.granularity).len(),
        );
        if lambda.len() != k || lambda.iter().any(|l| l.len() != g) {
            return Err(LabError::Spec(format!(
                "give {k} × {g} coefficients (tasks × groups)"
            )));
        }
        let lin = self.fine_tuning.linearised();
        let base = suite::bundled(None)?;
        let models: Vec<Weights> = self
            .tasks
            .iter()
            .map(|t| suite::bundled_fine_tune(*t, lin))
            .collect::<Result<_, _>>()?;
        let problem = Coefficients::new(device, &base, &models, &self.tasks, self)?;
        let (loss, grad) = problem.loss_and_gradient(&lambda.concat()).await?;
        Ok((loss, grad.chunks(g).map(<[f64]>::to_vec).collect()))
    }

    /// Run on `device`. `progress(done, total)` is awaited between steps; `false` cancels.
    pub async fn run(
        &self,
        device: &Device,
        progress: &mut dyn FnMut(usize, usize) -> Progress,
    ) -> Result<MergeOutcome, LabError> {
        self.check()?;
        let base = suite::bundled(None)?;
        // Linearised models are expanded around the base.
        let lin = self.fine_tuning.linearised();
        let at = lin.then_some(&base);
        // Fine-tunes made in the page are trained first (the bar shows their steps).
        let mut custom: Vec<(Task, Weights, String)> = Vec::new();
        for (i, f) in self.fine_tunes.iter().enumerate() {
            let data = Dataset::task(f.task, Split::Train)?;
            let mut on_step = |p: TrainProgress| progress(p.step, p.steps);
            let t = suite::train(device, &base, &data, &f.options, &mut on_step).await?;
            let o = &f.options;
            custom.push((
                f.task,
                t.weights,
                format!(
                    "page fine-tune {} on {} ({} epochs, lr {}, batch {}, seed {}{})",
                    i + 1,
                    f.task,
                    o.epochs,
                    o.lr,
                    o.batch,
                    o.seed,
                    if o.linearised { ", linearised" } else { "" }
                ),
            ));
        }
        let total = self.work();
        let mut done = 0usize;
        let mut tick = async |n: usize| -> Result<(), LabError> {
            done += n;
            if progress(done.min(total), total).await {
                Ok(())
            } else {
                Err(LabError::Cancelled)
            }
        };
        let tuned: Vec<(Task, Weights)> = Task::FINE_TUNED
            .into_iter()
            .map(|t| Ok((t, suite::bundled_fine_tune(t, lin)?)))
            .collect::<Result<_, LabError>>()?;
        let tests = suite::test_sets(device)?;
        let mut rows = vec![ModelRow {
            name: "base".into(),
            accuracy: suite::evaluate(device, &base, None, &tests).await?,
        }];
        for (t, w) in &tuned {
            rows.push(ModelRow {
                name: if lin {
                    format!("fine-tuned on {t} (linearised)")
                } else {
                    format!("fine-tuned on {t}")
                },
                accuracy: suite::evaluate(device, w, at, &tests).await?,
            });
        }
        let mut custom_acc = Vec::with_capacity(custom.len());
        for (_, w, name) in &custom {
            let accuracy = suite::evaluate(device, w, at, &tests).await?;
            custom_acc.push(accuracy.clone());
            rows.push(ModelRow {
                name: name.clone(),
                accuracy,
            });
        }
        tick(1).await?;
        let mut models: Vec<Weights> = self
            .tasks
            .iter()
            .map(|t| suite::bundled_fine_tune(*t, lin))
            .collect::<Result<_, _>>()?;
        models.extend(custom.iter().map(|c| c.1.clone()));
        // The task of each merged model, and the distinct tasks the merge is scored on.
        let member_tasks: Vec<Task> = self
            .tasks
            .iter()
            .copied()
            .chain(custom.iter().map(|c| c.0))
            .collect();
        let mut scored = member_tasks.clone();
        scored.sort();
        scored.dedup();
        let labels: Vec<String> = self
            .tasks
            .iter()
            .map(|t| t.name().to_string())
            .chain(
                custom
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("page {} ({})", i + 1, c.0)),
            )
            .collect();
        let (merged_w, report, learned) = if self.method == LabMethod::Adamerging {
            let (w, learned) =
                adamerge(device, &base, &models, &member_tasks, self, &mut tick).await?;
            let report = MergeReport {
                tensors: w.len(),
                parameters: w.values().map(|t| t.data.len()).sum(),
                ..MergeReport::default()
            };
            (w, report, Some(learned))
        } else {
            let (m, r) = merge::merge(&base, &models, &self.fixed(self.lambda))?;
            (m.into_iter().collect::<Weights>(), r, None)
        };
        let merged = suite::evaluate(device, &merged_w, at, &tests).await?;
        tick(1).await?;
        let col = |t: Task| Task::ALL.iter().position(|c| *c == t).unwrap_or(0);
        let normalised: Vec<f64> = self
            .tasks
            .iter()
            .map(|t| {
                let fine = rows[col(*t)].accuracy[col(*t)];
                merged[col(*t)] / fine.max(1e-9)
            })
            .chain(
                custom
                    .iter()
                    .zip(&custom_acc)
                    .map(|((t, _, _), acc)| merged[col(*t)] / acc[col(*t)].max(1e-9)),
            )
            .collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let mean_accuracy = mean(&scored.iter().map(|t| merged[col(*t)]).collect::<Vec<_>>());
        rows.push(ModelRow {
            name: match self.method {
                LabMethod::TaskArithmetic => format!("task arithmetic, λ = {}", self.lambda),
                LabMethod::Ties => format!("TIES, density {}, λ = {}", self.density, self.lambda),
                LabMethod::Dare => format!("DARE, drop {}, λ = {}", self.drop, self.lambda),
                LabMethod::Adamerging => match self.adamerging.objective {
                    Objective::Entropy => "AdaMerging (entropy)".into(),
                    Objective::FewShot => format!("aTLAS-style ({} shots)", self.adamerging.shots),
                },
            },
            accuracy: merged.clone(),
        });

        // λ sweep of the fixed method.
        let unlabeled = unlabeled_inputs(device, &scored)?;
        let mut sweep = Vec::new();
        for &lambda in &self.sweep {
            let (m, _) = merge::merge(&base, &models, &self.fixed(lambda))?;
            let w: Weights = m.into_iter().collect();
            let accuracy = suite::evaluate(device, &w, at, &tests).await?;
            let mlp = Mlp::upload_at(&w, at, device)?;
            let (h, _) = suite::entropy(mlp.forward(unlabeled.clone()));
            let entropy = read_f32(h).await?[0] as f64;
            sweep.push(SweepRow {
                lambda,
                mean: mean(&scored.iter().map(|t| accuracy[col(*t)]).collect::<Vec<_>>()),
                accuracy,
                entropy,
            });
            tick(1).await?;
        }

        let disentanglement = if self.disentangle.is_empty() {
            None
        } else {
            Some(disentangle(device, &base, self, &mut tick).await?)
        };

        Ok(MergeOutcome {
            columns: Task::ALL.to_vec(),
            control: merged[col(Task::Digits)],
            rows,
            merged,
            normalised: normalised.clone(),
            mean_accuracy,
            mean_normalised: mean(&normalised),
            report,
            learned,
            sweep,
            signs: sign_map(&base, &models, &labels)?,
            disentanglement,
        })
    }
}
