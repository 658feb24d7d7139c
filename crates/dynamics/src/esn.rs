//! Echo state networks: leaky tanh rate units, x(t+1) = (1 − α) x(t) + α f(W_in u(t) + W x(t) + b),
//! as ReservoirPy's `Reservoir`; optionally split into excitatory and inhibitory populations
//! (Dale's law, non-negative rates) with local E/I self-adaptation of inhibitory gains.
//!
//! Weights are drawn on the host from [`Rng`], so a seed gives the same reservoir on every device.
//! The recurrence has two forms: on the CPU a fused step over compressed rows ([`cpu`]), on
//! WebGPU one kernel per chunk of steps ([`gpu`]), whose states come back through the
//! asynchronous readback.

use burn::tensor::Device;
use interplay_models::patching::Progress;
use serde::{Deserialize, Serialize};

use crate::error::{DynamicsError, Result};
use crate::linalg::spectral_radius;
use crate::rng::Rng;

mod cpu;
#[cfg(feature = "webgpu")]
mod gpu;

/// Steps simulated between two readbacks (and progress reports).
const CHUNK: usize = 250;

/// How a reservoir is built; defaults follow ReservoirPy's `Reservoir`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EsnParams {
    /// Number of units N.
    pub units: usize,
    /// Spectral radius ρ the recurrent matrix is scaled to.
    pub spectral_radius: f64,
    /// Leak rate α ∈ (0, 1].
    pub leak: f64,
    /// Scale of the ±1 input weights.
    pub input_scaling: f64,
    /// Fraction of non-zero input weights.
    pub input_connectivity: f64,
    /// Fraction of non-zero recurrent weights.
    pub rc_connectivity: f64,
    /// Constant bias added to every unit.
    pub bias: f64,
    /// Seed of the weights.
    pub seed: u64,
    /// Separate excitatory and inhibitory populations (None: ReservoirPy's signed normal W).
    pub ei: Option<EiParams>,
}

impl Default for EsnParams {
    fn default() -> Self {
        Self {
            units: 100,
            spectral_radius: 0.9,
            leak: 1.0,
            input_scaling: 1.0,
            input_connectivity: 0.1,
            rc_connectivity: 0.1,
            bias: 0.0,
            seed: 42,
            ei: None,
        }
    }
}

/// An excitatory/inhibitory reservoir ("Boosting Reservoir Computing with Brain-inspired
/// Adaptive Dynamics"): units have rates f(x) = tanh(max(x, 0)) ∈ [0, 1); a unit's outgoing
/// weights all share its sign.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EiParams {
    /// Fraction of excitatory units (the rest are inhibitory).
    pub excitatory_fraction: f64,
    /// Total inhibitory weight divided by total excitatory weight: 1 is balanced, above 1
    /// inhibition-dominated, below 1 excitation-dominated.
    pub inhibition: f64,
    /// Local self-adaptation of each unit's inhibitory gain toward a target rate.
    pub adaptation: Option<Adaptation>,
}

impl Default for EiParams {
    fn default() -> Self {
        Self {
            excitatory_fraction: 0.8,
            inhibition: 1.0,
            adaptation: None,
        }
    }
}

/// g_i ← max(0, g_i + η (r_i(t) − ρ_i)) on each unit's inhibitory input, during the first `steps`
/// steps of a run (then frozen, so the readout sees a fixed network).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Adaptation {
    /// Learning rate η.
    pub eta: f64,
    /// Mean target rate ρ̄.
    pub target_rate: f64,
    /// Targets are U(ρ̄ − spread, ρ̄ + spread) per unit: 0 is homogeneous, above 0 heterogeneous.
    pub target_spread: f64,
    /// Number of adaptation steps from the start of the run.
    pub steps: usize,
}

impl Default for Adaptation {
    fn default() -> Self {
        Self {
            eta: 0.01,
            target_rate: 0.2,
            target_spread: 0.0,
            steps: 2000,
        }
    }
}

/// The host copy of a reservoir's weights (row-major; W[i][j] is the weight from j to i).
#[derive(Clone, Debug, PartialEq)]
pub struct ReservoirWeights {
    /// Units N.
    pub units: usize,
    /// Input width I.
    pub inputs: usize,
    /// `[N, N]` recurrent weights.
    pub w: Vec<f64>,
    /// `[N, I]` input weights.
    pub w_in: Vec<f64>,
    /// `[N]` biases.
    pub bias: Vec<f64>,
    /// Number of excitatory units (the first ones) for E/I reservoirs.
    pub excitatory: Option<usize>,
}

impl ReservoirWeights {
    /// Shapes and values both forms rely on; `targets`: the adaptation targets' count.
    fn check(&self, targets: Option<usize>) -> Result<()> {
        let (n, i) = (self.units, self.inputs);
        let bad = |m: &str| Err(DynamicsError::Input(format!("reservoir weights: {m}")));
        if n == 0 || n > 4096 || i == 0 {
            return bad("between 1 and 4096 units and at least one input");
        }
        if self.w.len() != n * n || self.w_in.len() != n * i || self.bias.len() != n {
            return bad("W must be [N, N], W_in [N, I] and the bias [N]");
        }
        if self.excitatory.is_some_and(|ne| ne > n) || targets.is_some_and(|t| t != n) {
            return bad("more excitatory units or adaptation targets than units");
        }
        let finite = |v: &f64| (*v as f32).is_finite();
        if !self
            .w
            .iter()
            .chain(&self.w_in)
            .chain(&self.bias)
            .all(finite)
        {
            return bad("every weight must be a finite f32");
        }
        Ok(())
    }

    /// Draw weights for `params` with `inputs` input channels.
    pub fn generate(params: &EsnParams, inputs: usize) -> Result<Self> {
        check_params(params, inputs)?;
        let n = params.units;
        let mut rng_in = Rng::new(params.seed).fork(2);
        let excitatory = params
            .ei
            .as_ref()
            .map(|ei| ((n as f64) * ei.excitatory_fraction).round() as usize);
        let mut w = recurrent(params);
        let rho = spectral_radius(&w, n)?;
        if rho > 0.0 {
            let k = params.spectral_radius / rho;
            w.iter_mut().for_each(|v| *v *= k);
        }
        let w_in = (0..n * inputs)
            .map(|_| {
                if rng_in.bernoulli(params.input_connectivity) {
                    let sign = if rng_in.bernoulli(0.5) { 1.0 } else { -1.0 };
                    sign * params.input_scaling
                } else {
                    0.0
                }
            })
            .collect();
        Ok(Self {
            units: n,
            inputs,
            w,
            w_in,
            bias: vec![params.bias; n],
            excitatory,
        })
    }
}

/// The recurrent matrix `params` draws (`[N, N]` row-major, W[i][j] from j to i), before it is
/// scaled to the spectral radius: N(0, 1) entries present with probability `rc_connectivity`;
/// for E/I reservoirs their magnitudes, column j carrying unit j's sign (Dale's law) and the
/// inhibitory columns scaled so total inhibitory weight is `inhibition` × total excitatory.
pub fn recurrent(params: &EsnParams) -> Vec<f64> {
    let n = params.units;
    let mut rng_w = Rng::new(params.seed).fork(1);
    let mut w = vec![0.0; n * n];
    for v in w.iter_mut() {
        if rng_w.bernoulli(params.rc_connectivity) {
            *v = rng_w.normal();
        }
    }
    if let Some(ei) = &params.ei {
        let ne = ((n as f64) * ei.excitatory_fraction).round() as usize;
        let (mut sum_e, mut sum_i) = (0.0, 0.0);
        for i in 0..n {
            for j in 0..n {
                let v = &mut w[i * n + j];
                *v = v.abs();
                if j < ne {
                    sum_e += *v;
                } else {
                    sum_i += *v;
                }
            }
        }
        let scale = if sum_i > 0.0 {
            ei.inhibition * sum_e / sum_i
        } else {
            0.0
        };
        for i in 0..n {
            for j in ne..n {
                w[i * n + j] *= -scale;
            }
        }
    }
    w
}

fn check_params(p: &EsnParams, inputs: usize) -> Result<()> {
    let bad = |m: &str| Err(DynamicsError::Input(m.to_string()));
    if p.units == 0 || p.units > 4096 {
        return bad("the reservoir needs between 1 and 4096 units");
    }
    if inputs == 0 {
        return bad("the reservoir needs at least one input");
    }
    if !(p.leak > 0.0 && p.leak <= 1.0) {
        return bad("the leak rate must be in (0, 1]");
    }
    if !(p.spectral_radius >= 0.0 && p.spectral_radius.is_finite()) {
        return bad("the spectral radius must be a finite number ≥ 0");
    }
    for (name, v) in [
        ("input connectivity", p.input_connectivity),
        ("recurrent connectivity", p.rc_connectivity),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(DynamicsError::Input(format!(
                "the {name} must be in [0, 1]"
            )));
        }
    }
    // Finite in f32 too: the forms compute in f32, where 1e39 is already infinite.
    if !(p.input_scaling as f32).is_finite() || !(p.bias as f32).is_finite() {
        return bad("input scaling and bias must be finite (and below 1e38)");
    }
    if let Some(ei) = &p.ei {
        if !(ei.excitatory_fraction > 0.0 && ei.excitatory_fraction < 1.0) {
            return bad("the excitatory fraction must be in (0, 1)");
        }
        if !(ei.inhibition >= 0.0 && ei.inhibition.is_finite()) {
            return bad("the inhibition ratio must be a finite number ≥ 0");
        }
        if let Some(a) = &ei.adaptation
            && !(a.eta >= 0.0
                && a.target_rate > 0.0
                && a.target_rate < 1.0
                && a.target_spread >= 0.0)
        {
            return bad("adaptation needs η ≥ 0, a target rate in (0, 1) and a spread ≥ 0");
        }
    }
    Ok(())
}

/// The error of a run whose states stopped being finite numbers (tanh keeps finite inputs in
/// [−1, 1], so it takes inputs or weights that overflow f32).
fn diverged() -> DynamicsError {
    DynamicsError::Input(
        "the reservoir's states are not finite: the input series or the input scaling is too \
         large for 32-bit floats"
            .into(),
    )
}

/// A reservoir on a device.
pub struct Reservoir {
    /// The host copy of its weights.
    pub weights: ReservoirWeights,
    leak: f64,
    adaptation: Option<(Adaptation, Vec<f64>)>,
    form: Form,
}

/// Where a reservoir runs: the CPU form or the WebGPU kernel.
enum Form {
    Cpu(cpu::CpuReservoir),
    #[cfg(feature = "webgpu")]
    Gpu(Box<gpu::GpuReservoir>),
}

/// What a run returns.
#[derive(Clone, Debug, Default)]
pub struct RunOutput {
    /// `[T, N]` states, row-major.
    pub states: Vec<f32>,
    /// Final inhibitory gains per unit (E/I reservoirs; empty otherwise).
    pub gains: Vec<f32>,
    /// Per step, mean excitatory and mean inhibitory recurrent input over units (E/I only).
    pub balance: Vec<(f32, f32)>,
}

impl Reservoir {
    /// Build from `params` for `inputs` channels on `device`.
    pub fn new(params: &EsnParams, inputs: usize, device: &Device) -> Result<Self> {
        let weights = ReservoirWeights::generate(params, inputs)?;
        let adaptation = match params.ei.as_ref().and_then(|e| e.adaptation.clone()) {
            Some(a) => {
                let mut rng = Rng::new(params.seed).fork(3);
                let targets = (0..params.units)
                    .map(|_| {
                        (a.target_rate + a.target_spread * (2.0 * rng.uniform() - 1.0))
                            .clamp(0.01, 0.99)
                    })
                    .collect();
                Some((a, targets))
            }
            None => None,
        };
        Self::from_weights(weights, params.leak, adaptation, device)
    }

    /// Use given weights (e.g. a ReservoirPy reservoir's, in the golden tests).
    pub fn from_weights(
        weights: ReservoirWeights,
        leak: f64,
        adaptation: Option<(Adaptation, Vec<f64>)>,
        device: &Device,
    ) -> Result<Self> {
        weights.check(adaptation.as_ref().map(|(_, t)| t.len()))?;
        if !(leak > 0.0 && leak <= 1.0) {
            return Err(DynamicsError::Input(
                "the leak rate must be in (0, 1]".into(),
            ));
        }
        #[cfg(feature = "webgpu")]
        let form = if interplay_models::device::is_cpu(device) {
            Form::Cpu(cpu::CpuReservoir::new(&weights))
        } else {
            Form::Gpu(Box::new(gpu::GpuReservoir::new(
                &weights,
                leak,
                adaptation.as_ref(),
                device,
            )?))
        };
        #[cfg(not(feature = "webgpu"))]
        let form = {
            let _ = device;
            Form::Cpu(cpu::CpuReservoir::new(&weights))
        };
        Ok(Self {
            weights,
            leak,
            adaptation,
            form,
        })
    }

    /// Drive the reservoir from a zero state with `inputs` (`[T, I]` row-major) and return every
    /// state. `progress(done, total)` is awaited after each chunk; returning false cancels.
    pub async fn run(
        &self,
        inputs: &[f64],
        progress: &mut dyn FnMut(usize, usize) -> Progress,
    ) -> Result<RunOutput> {
        self.run_with(inputs, &mut |_, _| {}, progress).await
    }

    /// [`Reservoir::run`], handing each chunk of states to `on_states(first step, [len, N])` as
    /// it is made: on the CPU while the next chunk simulates, on another thread where there is
    /// one (a readout can take in its training states while the run goes on).
    pub async fn run_with(
        &self,
        inputs: &[f64],
        on_states: &mut (dyn FnMut(usize, &[f32]) + Send),
        progress: &mut dyn FnMut(usize, usize) -> Progress,
    ) -> Result<RunOutput> {
        let i = self.weights.inputs;
        if !inputs.len().is_multiple_of(i) {
            return Err(DynamicsError::Input("ragged input series".into()));
        }
        if inputs.iter().any(|v| !v.is_finite()) {
            return Err(DynamicsError::Input(
                "the input series holds NaN or infinite values".into(),
            ));
        }
        match &self.form {
            Form::Cpu(cpu) => {
                cpu.run(
                    inputs,
                    i,
                    self.leak,
                    self.adaptation.as_ref(),
                    on_states,
                    progress,
                )
                .await
            }
            #[cfg(feature = "webgpu")]
            Form::Gpu(gpu) => gpu.run(inputs, on_states, progress).await,
        }
    }
}
