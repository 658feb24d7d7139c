//! The Dynamics lab's reservoir experiments as serde specs (one per experiment, shared by the
//! page URL, JSON export, the CLI and the tests): time-series prediction and memory capacity.

use burn::tensor::Device;
use interplay_models::patching::Progress;
use serde::{Deserialize, Serialize};

use crate::error::{DynamicsError, Result};
use crate::esn::{EsnParams, Reservoir, RunOutput};
use crate::linalg::{Ridge, nrmse, r2, squared_correlation};
use crate::series::{MackeyGlass, narma10, santafe_laser, uniform_input};

/// Which series to predict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Mackey-Glass (ReservoirPy's defaults), `horizon` steps ahead.
    MackeyGlass,
    /// NARMA-10 from its input u (the horizon is ignored).
    Narma10,
    /// The Santa Fe laser series, `horizon` steps ahead.
    SantaFe,
}

impl std::str::FromStr for Task {
    type Err = DynamicsError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mackey-glass" | "mg" => Ok(Task::MackeyGlass),
            "narma10" | "narma-10" | "narma" => Ok(Task::Narma10),
            "santa-fe" | "santafe" | "laser" => Ok(Task::SantaFe),
            o => Err(DynamicsError::Input(format!(
                "unknown task {o:?}: use mackey-glass, narma10 or santa-fe"
            ))),
        }
    }
}

/// Train a ridge readout on reservoir states to predict a series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PredictionSpec {
    /// The series.
    pub task: Task,
    /// Samples of the series generated.
    pub steps: usize,
    /// Training steps (the first `train`, of which the first `warmup` states are discarded).
    pub train: usize,
    /// Test steps right after training (the reservoir runs on without reset).
    pub test: usize,
    /// Discarded initial states.
    pub warmup: usize,
    /// Steps ahead to predict (1: one-step-ahead).
    pub horizon: usize,
    /// Ridge parameter of the readout.
    pub ridge: f64,
    /// Seed of the series (Mackey-Glass history, NARMA input).
    pub series_seed: u64,
    /// The reservoir.
    pub reservoir: EsnParams,
}

impl Default for PredictionSpec {
    fn default() -> Self {
        Self {
            task: Task::MackeyGlass,
            steps: 10_000,
            train: 5000,
            test: 2000,
            warmup: 100,
            horizon: 1,
            ridge: 1e-7,
            series_seed: 0,
            reservoir: EsnParams {
                units: 500,
                spectral_radius: 0.9,
                leak: 0.3,
                ..EsnParams::default()
            },
        }
    }
}

/// The outcome of a [`PredictionSpec`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictionResult {
    /// NRMSE on the test steps (RMSE / target peak-to-peak).
    pub nrmse: f64,
    /// R² on the test steps.
    pub r2: f64,
    /// Test targets.
    pub target: Vec<f64>,
    /// Test predictions.
    pub prediction: Vec<f64>,
    /// Mean |state| per step over the whole run (the activity trace the page plots).
    pub activity: Vec<f32>,
    /// Per step mean excitatory / inhibitory recurrent input (E/I reservoirs).
    pub balance: Vec<(f32, f32)>,
}

/// Scale to [−1, 1] by the series' own range, as ReservoirPy's tutorials do before training.
fn normalise(x: &mut [f64]) {
    let (lo, hi) = x
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    if hi > lo {
        x.iter_mut()
            .for_each(|v| *v = 2.0 * (*v - lo) / (hi - lo) - 1.0);
    }
}

impl PredictionSpec {
    /// Inputs and aligned targets (`input[t]` predicts `target[t]`), each `train + test` long.
    pub fn series(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        let need = self.train + self.test;
        if self.train <= self.warmup + 1 {
            return Err(DynamicsError::Input(format!(
                "training needs more steps ({}) than the warm-up ({})",
                self.train, self.warmup
            )));
        }
        if self.test == 0 {
            return Err(DynamicsError::Input(
                "the test needs at least one step".into(),
            ));
        }
        if self.steps > 1_000_000 {
            return Err(DynamicsError::Input("at most 1 000 000 steps".into()));
        }
        let h = self.horizon.max(1);
        match self.task {
            Task::Narma10 => {
                if self.steps < need {
                    return Err(DynamicsError::Input(format!(
                        "train + test = {need} steps, but the series has {}",
                        self.steps
                    )));
                }
                let (u, y) = narma10(self.steps, self.series_seed, None)?;
                Ok((u[..need].to_vec(), y[..need].to_vec()))
            }
            Task::MackeyGlass | Task::SantaFe => {
                let mut x = match self.task {
                    Task::MackeyGlass => {
                        MackeyGlass::default().generate(self.steps, None, self.series_seed)?
                    }
                    _ => {
                        let mut s = santafe_laser()?;
                        s.truncate(self.steps);
                        s
                    }
                };
                if x.len() < need + h {
                    return Err(DynamicsError::Input(format!(
                        "train + test + horizon = {} steps, but the series has {}",
                        need + h,
                        x.len()
                    )));
                }
                normalise(&mut x);
                Ok((x[..need].to_vec(), x[h..need + h].to_vec()))
            }
        }
    }

    /// Run on `device`.
    pub async fn run(
        &self,
        device: &Device,
        progress: &mut dyn FnMut(usize, usize) -> Progress,
    ) -> Result<PredictionResult> {
        let (input, target) = self.series()?;
        let res = Reservoir::new(&self.reservoir, 1, device)?;
        let n = self.reservoir.units;
        let mut fit = Ridge::new(n, 1, self.ridge);
        let (from, to) = (self.warmup, self.train);
        let out = res
            .run_with(
                &input,
                &mut training_window(n, from, to, |rows, lo, hi| fit.add(rows, &target[lo..hi])),
                progress,
            )
            .await?;
        let fit = fit.solve()?;
        let prediction = fit.predict(&out.states[self.train * n..]);
        let target = target[self.train..].to_vec();
        Ok(PredictionResult {
            nrmse: nrmse(&target, &prediction),
            r2: r2(&target, &prediction),
            target,
            prediction,
            activity: activity(&out, n),
            balance: out.balance,
        })
    }
}

/// A reservoir's `on_states` callback handing `take(rows, lo, hi)` the rows of each chunk that
/// fall in a readout's training window `[from, to)` (`rows`: `[hi − lo, n]`).
fn training_window(
    n: usize,
    from: usize,
    to: usize,
    mut take: impl FnMut(&[f32], usize, usize) + Send,
) -> impl FnMut(usize, &[f32]) + Send {
    move |first, states| {
        let last = first + states.len() / n;
        let (lo, hi) = (first.max(from), last.min(to));
        if lo < hi {
            take(&states[(lo - first) * n..(hi - first) * n], lo, hi);
        }
    }
}

fn activity(out: &RunOutput, n: usize) -> Vec<f32> {
    out.states
        .chunks_exact(n)
        .map(|s| s.iter().map(|v| v.abs()).sum::<f32>() / n as f32)
        .collect()
}

/// Memory capacity: drive with i.i.d. U(−1, 1) input, train one readout per delay k to output
/// u(t − k), MC = Σₖ r²(u(t − k), yₖ(t)) on the test steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryCapacitySpec {
    /// Largest delay.
    pub k_max: usize,
    /// Discarded initial states (at least `k_max`).
    pub warmup: usize,
    /// Training steps after the warm-up.
    pub train: usize,
    /// Test steps.
    pub test: usize,
    /// Ridge parameter.
    pub ridge: f64,
    /// Seed of the input.
    pub input_seed: u64,
    /// The reservoir.
    pub reservoir: EsnParams,
}

impl Default for MemoryCapacitySpec {
    fn default() -> Self {
        Self {
            k_max: 50,
            warmup: 200,
            train: 4000,
            test: 1000,
            ridge: 1e-4,
            input_seed: 7,
            reservoir: EsnParams {
                units: 100,
                spectral_radius: 1.0,
                input_scaling: 0.1,
                rc_connectivity: 0.1,
                input_connectivity: 1.0,
                seed: 1,
                ..EsnParams::default()
            },
        }
    }
}

/// The outcome of a [`MemoryCapacitySpec`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryCapacityResult {
    /// Σₖ r²ₖ.
    pub mc: f64,
    /// r²ₖ for k = 1..=k_max.
    pub mc_k: Vec<f64>,
    /// Per step mean excitatory / inhibitory recurrent input (E/I reservoirs).
    pub balance: Vec<(f32, f32)>,
}

impl MemoryCapacitySpec {
    /// Run on `device`.
    pub async fn run(
        &self,
        device: &Device,
        progress: &mut dyn FnMut(usize, usize) -> Progress,
    ) -> Result<MemoryCapacityResult> {
        if self.k_max == 0 || self.warmup < self.k_max {
            return Err(DynamicsError::Input(format!(
                "memory capacity needs k_max ≥ 1 and a warm-up ≥ k_max ({})",
                self.k_max
            )));
        }
        if self.train <= self.reservoir.units || self.test < 2 {
            return Err(DynamicsError::Input(
                "memory capacity needs more training steps than units and at least 2 test steps"
                    .into(),
            ));
        }
        let total = self.warmup + self.train + self.test;
        let u = uniform_input(total, self.input_seed);
        let res = Reservoir::new(&self.reservoir, 1, device)?;
        let n = self.reservoir.units;
        let k = self.k_max;
        let targets = |from: usize, to: usize| -> Vec<f64> {
            (from..to)
                .flat_map(|t| (1..=k).map(move |d| (t, d)))
                .map(|(t, d)| u[t - d])
                .collect()
        };
        let split = self.warmup + self.train;
        let mut fit = Ridge::new(n, k, self.ridge);
        let out = res
            .run_with(
                &u,
                &mut training_window(n, self.warmup, split, |rows, lo, hi| {
                    fit.add(rows, &targets(lo, hi))
                }),
                progress,
            )
            .await?;
        let fit = fit.solve()?;
        let pred = fit.predict(&out.states[split * n..]);
        let truth = targets(split, total);
        let mc_k: Vec<f64> = (0..k)
            .map(|d| {
                let a: Vec<f64> = truth.iter().skip(d).step_by(k).copied().collect();
                let b: Vec<f64> = pred.iter().skip(d).step_by(k).copied().collect();
                squared_correlation(&a, &b)
            })
            .collect();
        Ok(MemoryCapacityResult {
            mc: mc_k.iter().sum(),
            mc_k,
            balance: out.balance,
        })
    }
}

/// Any Dynamics-lab experiment: the one spec type the page URL, JSON export, `interplay run` and
/// the tests share (`{"experiment": "prediction", ...}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "experiment", rename_all = "kebab-case")]
pub enum DynamicsSpec {
    /// Time-series prediction with an echo state network.
    Prediction(PredictionSpec),
    /// Memory capacity of an echo state network.
    MemoryCapacity(MemoryCapacitySpec),
    /// A spiking network.
    Spiking(crate::spiking::SpikingSpec),
    /// Memory capacity across E/I balances, with and without self-adaptation.
    EiSweep(EiSweepSpec),
    /// The what/when paradigm with a three-factor (or online RLS) readout.
    WhatWhen(crate::whatwhen::WhatWhenSpec),
}

/// "Boosting Reservoir Computing": memory capacity of E/I reservoirs over a range of inhibition
/// ratios, each with fixed weights and with local self-adaptation of inhibitory gains.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EiSweepSpec {
    /// Inhibition ratios (total inhibitory / total excitatory weight) to try.
    pub inhibitions: Vec<f64>,
    /// The memory-capacity task; its reservoir's `ei` is set per ratio.
    pub base: MemoryCapacitySpec,
    /// The self-adaptation used for the "adapted" column (None: fixed weights only).
    pub adaptation: Option<crate::esn::Adaptation>,
}

impl Default for EiSweepSpec {
    fn default() -> Self {
        let base = MemoryCapacitySpec::default();
        Self {
            inhibitions: vec![0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0],
            base: MemoryCapacitySpec {
                warmup: 2000,
                train: 2000,
                test: 500,
                reservoir: EsnParams {
                    bias: 0.1,
                    spectral_radius: 0.95,
                    ..base.reservoir
                },
                ..base
            },
            adaptation: Some(crate::esn::Adaptation {
                target_spread: 0.15,
                steps: 1800,
                ..crate::esn::Adaptation::default()
            }),
        }
    }
}

/// One row of an [`EiSweepSpec`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EiSweepRow {
    /// Inhibition ratio.
    pub inhibition: f64,
    /// Memory capacity with fixed weights.
    pub mc_fixed: f64,
    /// Memory capacity after self-adaptation (when asked for).
    pub mc_adapted: Option<f64>,
}

impl EiSweepSpec {
    /// Run every ratio on `device`; `on_row` sees each row as it completes.
    pub async fn run(
        &self,
        device: &Device,
        on_row: &mut dyn FnMut(&EiSweepRow),
        progress: &mut dyn FnMut(usize, usize) -> Progress,
    ) -> Result<Vec<EiSweepRow>> {
        if self.inhibitions.is_empty() || self.inhibitions.len() > 50 {
            return Err(DynamicsError::Input(
                "give between 1 and 50 inhibition ratios".into(),
            ));
        }
        let per = if self.adaptation.is_some() { 2 } else { 1 };
        let total = self.inhibitions.len() * per;
        let mut done = 0;
        let mut rows = Vec::new();
        for &inhibition in &self.inhibitions {
            let mut mc = [None, None];
            for (k, adaptation) in [None, self.adaptation.clone()].into_iter().enumerate() {
                if k == 1 && adaptation.is_none() {
                    continue;
                }
                let mut spec = self.base.clone();
                spec.reservoir.ei = Some(crate::esn::EiParams {
                    inhibition,
                    adaptation,
                    ..spec.reservoir.ei.clone().unwrap_or_default()
                });
                let mut inner = |_: usize, _: usize| -> Progress { Box::pin(async { true }) };
                mc[k] = Some(spec.run(device, &mut inner).await?.mc);
                done += 1;
                if !progress(done, total).await {
                    return Err(DynamicsError::Cancelled);
                }
            }
            let row = EiSweepRow {
                inhibition,
                mc_fixed: mc[0].unwrap_or(f64::NAN),
                mc_adapted: mc[1],
            };
            on_row(&row);
            rows.push(row);
        }
        Ok(rows)
    }
}
