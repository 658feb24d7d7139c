//! The "what and when" paradigm ("Joint encoding of 'what' and 'when' predictions through
//! error-modulated plasticity in reservoir spiking networks", seeds): a cue starts each trial of
//! a heterogeneous Izhikevich reservoir; at a fixed time one of several stimuli follows with
//! given probabilities. One readout per stimulus learns, online, to fire at that time with a
//! magnitude equal to the stimulus' probability, and re-adapts when timing or probabilities
//! change.
//!
//! Learning rules:
//! - three-factor: Δwᵢ = η · Eᵢ(t) · A(t) · r(t) / (|r(t)|² + 1), with Eᵢ = targetᵢ − yᵢ the readout's error (the
//!   neuromodulatory factor), A an attention gate that opens around the *expected* stimulus time
//!   (itself learned from the onsets seen) and stays at a floor elsewhere, r the exponentially
//!   filtered spike trains; fast weights learn within a trial and are consolidated into slow
//!   weights between trials (w_slow += κ (w_fast − w_slow)), which start the next trial;
//! - an online recursive-least-squares readout for comparison (FORCE's rule, without FORCE's
//!   feedback of the readout into the network): fast at first, but its gain P shrinks, so it
//!   adapts slowly to a change unless reset.
//!
//! Stimuli are not fed to the reservoir: the readouts must predict from the cue-evoked dynamics.

use burn::tensor::Device;
use interplay_models::patching::Progress;
use serde::{Deserialize, Serialize};

use crate::error::{DynamicsError, Result};
use crate::rng::Rng;
use crate::spiking::SpikingSpec;
use crate::spiking::cpu::CpuNetwork;

#[cfg(feature = "webgpu")]
mod gpu;
#[cfg(feature = "webgpu")]
use gpu::GpuLearner;

/// A block of trials with one timing and one set of stimulus probabilities.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// Trials in this block.
    pub trials: usize,
    /// Stimulus onset after the cue (ms).
    pub when_ms: usize,
    /// Probability of each stimulus ("what"); the rest is "no stimulus".
    pub probabilities: Vec<f64>,
}

/// How the readout learns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "rule")]
pub enum Rule {
    /// Error-modulated, attention-gated three-factor Hebbian rule.
    ThreeFactor {
        /// Learning rate η.
        eta: f64,
        /// The gate is 1 within ± this many ms of the expected window.
        gate_ms: f64,
        /// Gate value elsewhere (so the readout also learns to stay silent).
        gate_floor: f64,
        /// Consolidation rate κ of slow weights per trial.
        consolidation: f64,
        /// Rate at which the expected onset follows the onsets seen.
        timing_rate: f64,
    },
    /// An online recursive-least-squares readout (no reset at a change): FORCE's learning rule
    /// (Sussillo & Abbott 2009) without its feedback of the readout into the network, so not
    /// FORCE itself. Links saying `"rule": "force"` open as this.
    #[serde(alias = "force")]
    Rls {
        /// Initial P = I / α.
        alpha: f64,
    },
}

/// The what/when experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WhatWhenSpec {
    /// The reservoir (its `ms`, raster and trace settings are ignored).
    pub network: SpikingSpec,
    /// Trial length (ms).
    pub trial_ms: usize,
    /// Cue length (ms) at the start of each trial.
    pub cue_ms: usize,
    /// Extra input current to cued neurons during the cue.
    pub cue_current: f64,
    /// Fraction of excitatory neurons that receive the cue.
    pub cue_fraction: f64,
    /// Length of the target window after onset (ms).
    pub stimulus_ms: usize,
    /// Shortest synaptic trace time constant (ms) of r.
    pub trace_ms: f64,
    /// Longest trace time constant (ms): each neuron's is log-uniform between the two, so the
    /// cue-evoked traces decay at many rates and together tell the time since the cue.
    pub trace_max_ms: f64,
    /// The blocks of trials, in order (a change of probabilities or timing between blocks).
    pub phases: Vec<Phase>,
    /// The learning rule.
    pub rule: Rule,
    /// Seed of the stimulus sequence.
    pub seed: u64,
}

impl Default for WhatWhenSpec {
    fn default() -> Self {
        Self {
            network: SpikingSpec {
                excitatory: 200,
                inhibitory: 50,
                noise_exc: 3.0,
                noise_inh: 1.5,
                raster: false,
                ..SpikingSpec::default()
            },
            trial_ms: 250,
            cue_ms: 20,
            cue_current: 40.0,
            cue_fraction: 0.5,
            stimulus_ms: 20,
            trace_ms: 10.0,
            trace_max_ms: 300.0,
            phases: vec![
                Phase {
                    trials: 40,
                    when_ms: 40,
                    probabilities: vec![0.8, 0.2],
                },
                Phase {
                    trials: 40,
                    when_ms: 40,
                    probabilities: vec![0.2, 0.8],
                },
            ],
            rule: Rule::ThreeFactor {
                eta: 0.05,
                gate_ms: 10.0,
                gate_floor: 0.05,
                consolidation: 0.3,
                timing_rate: 0.2,
            },
            seed: 3,
        }
    }
}

/// One trial's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// Index of its phase.
    pub phase: usize,
    /// Which stimulus came (None: none).
    pub presented: Option<usize>,
    /// Mean predicted readout (consolidated weights, fixed during the trial) per stimulus inside
    /// the window [onset, onset + stimulus_ms).
    pub in_window: Vec<f64>,
    /// Mean readout per stimulus outside the window.
    pub outside: Vec<f64>,
    /// The expected onset the gate was centred on (three-factor rule).
    pub expected_when: f64,
}

/// The outcome of a [`WhatWhenSpec`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WhatWhenResult {
    /// Every trial.
    pub trials: Vec<Trial>,
    /// Per phase, the readout time course of its last trial: `[stimulus][ms]`.
    pub last_traces: Vec<Vec<Vec<f32>>>,
    /// Per phase and stimulus, mean in-window readout over the phase's last quarter of trials
    /// (the learned magnitude, to compare with the probability).
    pub learned: Vec<Vec<f64>>,
}

impl WhatWhenSpec {
    fn check(&self) -> Result<usize> {
        let bad = |m: &str| Err(DynamicsError::Input(m.to_string()));
        let classes = self
            .phases
            .first()
            .map(|p| p.probabilities.len())
            .unwrap_or(0);
        if classes == 0 || classes > 8 {
            return bad("give between 1 and 8 stimulus probabilities per phase");
        }
        for p in &self.phases {
            if p.probabilities.len() != classes {
                return bad("every phase needs the same number of stimuli");
            }
            if p.probabilities.iter().any(|q| !(0.0..=1.0).contains(q))
                || p.probabilities.iter().sum::<f64>() > 1.0 + 1e-9
            {
                return bad("probabilities must be in [0, 1] and sum to at most 1");
            }
            if p.when_ms < self.cue_ms || p.when_ms + self.stimulus_ms > self.trial_ms {
                return bad(
                    "each onset must come after the cue and leave the window inside the trial",
                );
            }
        }
        // Empty trials, windows or blocks would leave nothing to read back or to average.
        if self.trial_ms == 0 || self.stimulus_ms == 0 || self.phases.iter().any(|p| p.trials == 0)
        {
            return bad("trials, the stimulus window and every block need at least 1 (ms / trial)");
        }
        // RLS keeps an N × N matrix and updates all of it every ms.
        let n = self.network.excitatory + self.network.inhibitory;
        if matches!(self.rule, Rule::Rls { .. }) && n > 4096 {
            return bad("the RLS readout keeps an N × N matrix: at most 4096 neurons");
        }
        let total: usize = self.phases.iter().map(|p| p.trials).sum();
        if total == 0 || total * self.trial_ms > 2_000_000 {
            return bad("between 1 trial and 2000 s of simulated time");
        }
        if !(self.trace_ms >= 1.0
            && self.trace_max_ms >= self.trace_ms
            && (0.0..=1.0).contains(&self.cue_fraction))
        {
            return bad("the trace time constant must be ≥ 1 ms and the cue fraction in [0, 1]");
        }
        Ok(classes)
    }

    /// Run on `device`; `on_trial` sees each trial as it completes (the page plots them live).
    pub async fn run(
        &self,
        device: &Device,
        on_trial: &mut dyn FnMut(&Trial),
        progress: &mut dyn FnMut(usize, usize) -> Progress,
    ) -> Result<WhatWhenResult> {
        let classes = self.check()?;
        let n = self.network.excitatory + self.network.inhibitory;
        let t_len = self.trial_ms;
        let mut rng = Rng::new(self.seed);
        let cued = (self.network.excitatory as f64 * self.cue_fraction).round() as usize;
        // [T, N]: the cue current of one trial (the same every trial).
        let mut cue = vec![0f32; t_len * n];
        for t in 0..self.cue_ms.min(t_len) {
            for j in 0..cued {
                cue[t * n + j] = self.cue_current as f32;
            }
        }
        let mut rng_tau = Rng::new(self.seed).fork(9);
        let decay: Vec<f32> = (0..n)
            .map(|_| {
                let ln = self.trace_ms.ln()
                    + rng_tau.uniform() * (self.trace_max_ms.ln() - self.trace_ms.ln());
                (-1.0 / ln.exp()).exp() as f32
            })
            .collect();
        #[cfg(feature = "webgpu")]
        let mut learner = if interplay_models::device::is_cpu(device) {
            Learner::Cpu(Box::new(CpuLearner::new(self, classes, cue, decay)?))
        } else {
            Learner::Gpu(Box::new(GpuLearner::new(
                self, classes, cue, decay, device,
            )?))
        };
        #[cfg(not(feature = "webgpu"))]
        let mut learner = {
            let _ = device;
            Learner::Cpu(Box::new(CpuLearner::new(self, classes, cue, decay)?))
        };
        let mut expected = self.trial_ms as f64 / 2.0;
        let total: usize = self.phases.iter().map(|p| p.trials).sum();
        let mut out = WhatWhenResult::default();
        let mut done = 0;
        for (pi, phase) in self.phases.iter().enumerate() {
            let mut last = Vec::new();
            for _ in 0..phase.trials {
                // Which stimulus comes this trial.
                let u = rng.uniform();
                let mut acc = 0.0;
                let presented = phase.probabilities.iter().position(|&p| {
                    acc += p;
                    u < acc
                });
                let onset = phase.when_ms;
                let mut target = vec![0f32; t_len * classes];
                if let Some(c) = presented {
                    for t in onset..onset + self.stimulus_ms {
                        target[t * classes + c] = 1.0;
                    }
                }
                let gate: Vec<f32> = (0..t_len)
                    .map(|t| match self.rule {
                        Rule::ThreeFactor {
                            gate_ms,
                            gate_floor,
                            ..
                        } => {
                            let (lo, hi) = (
                                expected - gate_ms,
                                expected + self.stimulus_ms as f64 + gate_ms,
                            );
                            if (t as f64) >= lo && (t as f64) < hi {
                                1.0
                            } else {
                                gate_floor as f32
                            }
                        }
                        Rule::Rls { .. } => 1.0,
                    })
                    .collect();
                let y = match &mut learner {
                    #[cfg(feature = "webgpu")]
                    Learner::Gpu(l) => l.trial(target, gate).await?,
                    Learner::Cpu(l) => l.trial(&self.rule, &target, &gate),
                };
                if y.iter().any(|v| !v.is_finite()) {
                    return Err(DynamicsError::Input(
                        "the readout diverged: lower the learning rate".into(),
                    ));
                }
                let mean = |c: usize, inside: bool| {
                    let vals: Vec<f64> = (0..t_len)
                        .filter(|&t| (t >= onset && t < onset + self.stimulus_ms) == inside)
                        .map(|t| y[t * classes + c] as f64)
                        .collect();
                    vals.iter().sum::<f64>() / vals.len().max(1) as f64
                };
                let trial = Trial {
                    phase: pi,
                    presented,
                    in_window: (0..classes).map(|c| mean(c, true)).collect(),
                    outside: (0..classes).map(|c| mean(c, false)).collect(),
                    expected_when: expected,
                };
                if let (Rule::ThreeFactor { timing_rate, .. }, Some(_)) = (&self.rule, presented) {
                    expected += timing_rate * (onset as f64 - expected);
                }
                on_trial(&trial);
                out.trials.push(trial);
                last = (0..classes)
                    .map(|c| (0..t_len).map(|t| y[t * classes + c]).collect())
                    .collect();
                done += 1;
                if !progress(done, total).await {
                    return Err(DynamicsError::Cancelled);
                }
            }
            out.last_traces.push(last);
            let mine: Vec<&Trial> = out.trials.iter().filter(|t| t.phase == pi).collect();
            let tail = &mine[mine.len() - (mine.len() / 4).max(1)..];
            out.learned.push(
                (0..classes)
                    .map(|c| tail.iter().map(|t| t.in_window[c]).sum::<f64>() / tail.len() as f64)
                    .collect(),
            );
        }
        Ok(out)
    }
}

/// Where the trials run: on WebGPU (the network's kernel and the readout's, [`gpu`]), or the
/// CPU form.
enum Learner {
    #[cfg(feature = "webgpu")]
    Gpu(Box<GpuLearner>),
    Cpu(Box<CpuLearner>),
}

/// The per-ms updates over slices on the CPU (the spiking network's fused step): no tensor
/// operation or allocation per ms.
struct CpuLearner {
    net: CpuNetwork,
    /// `[T, N]`.
    cue: Vec<f32>,
    decay: Vec<f32>,
    trace: Vec<f32>,
    /// `[N, C]`: consolidated, and this trial's fast weights.
    w_slow: Vec<f32>,
    w: Vec<f32>,
    /// RLS: `[N, N]` and the gain vector `[N]`.
    p_rls: Option<Vec<f32>>,
    k: Vec<f32>,
    /// `[T, N]` of this trial's input.
    input: Vec<f32>,
    classes: usize,
}

impl CpuLearner {
    fn new(spec: &WhatWhenSpec, classes: usize, cue: Vec<f32>, decay: Vec<f32>) -> Result<Self> {
        let n = decay.len();
        Ok(Self {
            net: CpuNetwork::new(&spec.network)?,
            input: vec![0.0; cue.len()],
            cue,
            decay,
            trace: vec![0.0; n],
            w_slow: vec![0.0; n * classes],
            w: vec![0.0; n * classes],
            p_rls: match spec.rule {
                Rule::Rls { alpha } => {
                    let mut p = vec![0f32; n * n];
                    let diag = (1.0 / alpha) as f32;
                    (0..n).for_each(|i| p[i * n + i] = diag);
                    Some(p)
                }
                Rule::ThreeFactor { .. } => None,
            },
            k: vec![0.0; n],
            classes,
        })
    }

    /// One trial with `target` (`[T, C]`) and `gate` (`[T]`): the consolidated readout's
    /// prediction, `[T, C]` row-major.
    fn trial(&mut self, rule: &Rule, target: &[f32], gate: &[f32]) -> Vec<f32> {
        let (n, classes) = (self.decay.len(), self.classes);
        self.net.drive.fill(&mut self.input);
        for (x, c) in self.input.iter_mut().zip(&self.cue) {
            *x += c;
        }
        self.w.copy_from_slice(&self.w_slow);
        let mut ys = Vec::with_capacity(gate.len() * classes);
        let mut err = vec![0f32; classes];
        for (t, &g) in gate.iter().enumerate() {
            self.net.step(&self.input[t * n..(t + 1) * n]);
            for (r, d) in self.trace.iter_mut().zip(&self.decay) {
                *r *= d;
            }
            for &j in &self.net.fired {
                self.trace[j as usize] += 1.0;
            }
            for c in 0..classes {
                let (mut y, mut predicted) = (0f32, 0f32);
                for (i, &r) in self.trace.iter().enumerate() {
                    y += r * self.w[i * classes + c];
                    predicted += r * self.w_slow[i * classes + c];
                }
                err[c] = target[t * classes + c] - y;
                ys.push(predicted);
            }
            match (rule, &mut self.p_rls) {
                (Rule::ThreeFactor { eta, .. }, _) => {
                    let norm = 1.0 / (self.trace.iter().map(|r| r * r).sum::<f32>() + 1.0);
                    let eta = *eta as f32;
                    for (w, &r) in self.w.chunks_exact_mut(classes).zip(&self.trace) {
                        for (w, e) in w.iter_mut().zip(&err) {
                            *w += r * (e * g * norm) * eta;
                        }
                    }
                }
                (Rule::Rls { .. }, Some(p)) => {
                    for (k, row) in self.k.iter_mut().zip(p.chunks_exact(n)) {
                        *k = row.iter().zip(&self.trace).map(|(p, r)| p * r).sum();
                    }
                    let c = 1.0
                        / (self
                            .trace
                            .iter()
                            .zip(&self.k)
                            .map(|(r, k)| r * k)
                            .sum::<f32>()
                            + 1.0);
                    for (row, &ki) in p.chunks_exact_mut(n).zip(&self.k) {
                        for (p, &kj) in row.iter_mut().zip(&self.k) {
                            *p -= ki * kj * c;
                        }
                    }
                    for (i, &ki) in self.k.iter().enumerate() {
                        for (cl, e) in err.iter().enumerate() {
                            self.w[i * classes + cl] += ki * e * c;
                        }
                    }
                }
                _ => {}
            }
        }
        match rule {
            Rule::ThreeFactor { consolidation, .. } => {
                let kappa = *consolidation as f32;
                for (s, w) in self.w_slow.iter_mut().zip(&self.w) {
                    *s += (w - *s) * kappa;
                }
            }
            Rule::Rls { .. } => self.w_slow.copy_from_slice(&self.w),
        }
        ys
    }
}
