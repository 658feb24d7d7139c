//! The Dynamics lab's commands: `esn`, `memory-capacity`, `izhikevich` and `lif`. Each builds
//! the lab's spec from its flags (a flag left out keeps the spec's default) and runs it as
//! `interplay run` would.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use interplay_dynamics::spiking::NeuronModel;
use interplay_dynamics::{
    Adaptation, DynamicsSpec, EiParams, EsnParams, MemoryCapacitySpec, PredictionSpec, SpikingSpec,
    Task,
};
use interplay_models::patching::no_progress;
use serde_json::{Value, json};

use crate::DeviceArg;

/// The reservoir's flags, shared by `esn` and `memory-capacity`; absent ones keep the
/// experiment's defaults.
#[derive(Args)]
pub struct ReservoirArgs {
    /// Units N (1 to 4096).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    units: Option<u64>,
    /// Spectral radius ρ the recurrent matrix is scaled to.
    #[arg(long)]
    spectral_radius: Option<f64>,
    /// Leak rate α in (0, 1].
    #[arg(long)]
    leak: Option<f64>,
    /// Scale of the ±1 input weights.
    #[arg(long)]
    input_scaling: Option<f64>,
    /// Fraction of non-zero input weights.
    #[arg(long)]
    input_connectivity: Option<f64>,
    /// Fraction of non-zero recurrent weights.
    #[arg(long)]
    connectivity: Option<f64>,
    /// Constant bias added to every unit.
    #[arg(long, allow_negative_numbers = true)]
    bias: Option<f64>,
    /// Seed of the weights.
    #[arg(long)]
    seed: Option<u64>,
    /// Separate excitatory and inhibitory populations with this inhibition ratio (total
    /// inhibitory / total excitatory weight).
    #[arg(long)]
    inhibition: Option<f64>,
    /// Fraction of excitatory units (with --inhibition or --adapt).
    #[arg(long, default_value_t = 0.8)]
    excitatory_fraction: f64,
    /// Local E/I self-adaptation of the inhibitory gains toward target rates.
    #[arg(long)]
    adapt: bool,
    /// Adaptation's learning rate η.
    #[arg(long, requires = "adapt")]
    adapt_eta: Option<f64>,
    /// Adaptation's mean target rate.
    #[arg(long, requires = "adapt")]
    target_rate: Option<f64>,
    /// Targets are drawn in ±spread around the mean (0: one shared target).
    #[arg(long, requires = "adapt")]
    target_spread: Option<f64>,
    /// Adaptation steps from the start of the run.
    #[arg(long, requires = "adapt")]
    adapt_steps: Option<usize>,
}

impl ReservoirArgs {
    /// The reservoir: these flags over `base`.
    fn params(&self, base: EsnParams) -> EsnParams {
        let mut p = EsnParams {
            units: self.units.map_or(base.units, |u| u as usize),
            spectral_radius: self.spectral_radius.unwrap_or(base.spectral_radius),
            leak: self.leak.unwrap_or(base.leak),
            input_scaling: self.input_scaling.unwrap_or(base.input_scaling),
            input_connectivity: self.input_connectivity.unwrap_or(base.input_connectivity),
            rc_connectivity: self.connectivity.unwrap_or(base.rc_connectivity),
            bias: self.bias.unwrap_or(base.bias),
            seed: self.seed.unwrap_or(base.seed),
            ei: base.ei,
        };
        if self.inhibition.is_some() || self.adapt {
            let d = Adaptation::default();
            p.ei = Some(EiParams {
                inhibition: self.inhibition.unwrap_or(1.0),
                excitatory_fraction: self.excitatory_fraction,
                adaptation: self.adapt.then(|| Adaptation {
                    eta: self.adapt_eta.unwrap_or(d.eta),
                    target_rate: self.target_rate.unwrap_or(d.target_rate),
                    target_spread: self.target_spread.unwrap_or(d.target_spread),
                    steps: self.adapt_steps.unwrap_or(d.steps),
                }),
            });
        }
        p
    }
}

/// `interplay esn`: predict a series with an echo state network and a ridge readout.
#[derive(Args)]
pub struct EsnArgs {
    /// The series: mackey-glass, narma10 or santa-fe.
    #[arg(long)]
    task: Option<Task>,
    /// Samples of the series generated [default: 10000].
    #[arg(long)]
    steps: Option<usize>,
    /// Training steps, warm-up included [default: 5000].
    #[arg(long)]
    train: Option<usize>,
    /// Test steps right after training [default: 2000].
    #[arg(long)]
    test: Option<usize>,
    /// Discarded initial states [default: 100].
    #[arg(long)]
    warmup: Option<usize>,
    /// Steps ahead to predict [default: 1].
    #[arg(long)]
    horizon: Option<usize>,
    /// Ridge parameter of the readout.
    #[arg(long)]
    ridge: Option<f64>,
    /// Seed of the series (Mackey-Glass history, NARMA input).
    #[arg(long)]
    series_seed: Option<u64>,
    #[command(flatten)]
    reservoir: ReservoirArgs,
    #[command(flatten)]
    device: DeviceArg,
}

/// `interplay memory-capacity`: Σ_k r² of readouts trained to recall the input k steps back.
#[derive(Args)]
pub struct MemoryCapacityArgs {
    /// Largest delay k.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    k_max: Option<u64>,
    /// Discarded initial states (at least k-max).
    #[arg(long)]
    warmup: Option<usize>,
    /// Training steps.
    #[arg(long)]
    train: Option<usize>,
    /// Test steps.
    #[arg(long)]
    test: Option<usize>,
    /// Ridge parameter of the readouts.
    #[arg(long)]
    ridge: Option<f64>,
    /// Seed of the i.i.d. input.
    #[arg(long)]
    input_seed: Option<u64>,
    #[command(flatten)]
    reservoir: ReservoirArgs,
    #[command(flatten)]
    device: DeviceArg,
}

/// `interplay izhikevich`: the classic 1000-neuron network, or any size.
#[derive(Args)]
pub struct SpikingArgs {
    /// Excitatory neurons [default: 800].
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    excitatory: Option<u64>,
    /// Inhibitory neurons [default: 200].
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    inhibitory: Option<u64>,
    /// Milliseconds simulated (1 to 600000) [default: 1000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    ms: Option<u64>,
    /// Seed of the cells, weights and drive.
    #[arg(long)]
    seed: Option<u64>,
    /// Standard deviation of the excitatory cells' thalamic input.
    #[arg(long)]
    noise_exc: Option<f64>,
    /// Standard deviation of the inhibitory cells' thalamic input.
    #[arg(long)]
    noise_inh: Option<f64>,
    /// Scale of the excitatory weights (U(0, 1) times this).
    #[arg(long)]
    weight_exc: Option<f64>,
    /// Scale of the inhibitory weights.
    #[arg(long)]
    weight_inh: Option<f64>,
    /// Fraction of synapses present.
    #[arg(long)]
    connectivity: Option<f64>,
    /// Fixed in-degree instead: each neuron receives exactly K synapses from distinct neurons
    /// drawn uniformly (a sparse network, e.g. 10 000 neurons × 100).
    #[arg(long, value_name = "K")]
    synapses_per_neuron: Option<usize>,
    /// Poisson input rate per neuron (Hz).
    #[arg(long)]
    poisson_hz: Option<f64>,
    /// Weight of each Poisson input spike.
    #[arg(long)]
    poisson_weight: Option<f64>,
    #[command(flatten)]
    device: DeviceArg,
}

/// `interplay lif`: the same network of leaky integrate-and-fire cells.
#[derive(Args)]
pub struct LifArgs {
    #[command(flatten)]
    network: SpikingArgs,
    /// Membrane time constant (ms, at least 1).
    #[arg(long, default_value_t = 20.0)]
    tau: f64,
    /// Firing threshold (mV).
    #[arg(long, default_value_t = -50.0, allow_negative_numbers = true)]
    threshold: f64,
    /// Resting and reset potential (mV).
    #[arg(long, default_value_t = -65.0, allow_negative_numbers = true)]
    rest: f64,
    /// Refractory period (ms).
    #[arg(long, default_value_t = 2.0)]
    refractory: f64,
}

pub fn esn(a: &EsnArgs) -> Result<Value> {
    let d = PredictionSpec::default();
    let spec = DynamicsSpec::Prediction(PredictionSpec {
        task: a.task.unwrap_or(d.task),
        steps: a.steps.unwrap_or(d.steps),
        train: a.train.unwrap_or(d.train),
        test: a.test.unwrap_or(d.test),
        warmup: a.warmup.unwrap_or(d.warmup),
        horizon: a.horizon.unwrap_or(d.horizon),
        ridge: a.ridge.unwrap_or(d.ridge),
        series_seed: a.series_seed.unwrap_or(d.series_seed),
        reservoir: a.reservoir.params(d.reservoir),
    });
    run_spec(&spec, a.device)
}

pub fn memory_capacity(a: &MemoryCapacityArgs) -> Result<Value> {
    let d = MemoryCapacitySpec::default();
    let spec = DynamicsSpec::MemoryCapacity(MemoryCapacitySpec {
        k_max: a.k_max.map_or(d.k_max, |k| k as usize),
        warmup: a.warmup.unwrap_or(d.warmup),
        train: a.train.unwrap_or(d.train),
        test: a.test.unwrap_or(d.test),
        ridge: a.ridge.unwrap_or(d.ridge),
        input_seed: a.input_seed.unwrap_or(d.input_seed),
        reservoir: a.reservoir.params(d.reservoir),
    });
    run_spec(&spec, a.device)
}

impl SpikingArgs {
    /// The network with `model` cells; `weight_exc` is the default excitatory weight scale.
    fn spec(&self, model: NeuronModel, weight_exc: f64) -> SpikingSpec {
        let d = SpikingSpec::default();
        SpikingSpec {
            model,
            excitatory: self.excitatory.map_or(d.excitatory, |n| n as usize),
            inhibitory: self.inhibitory.map_or(d.inhibitory, |n| n as usize),
            ms: self.ms.map_or(d.ms, |ms| ms as usize),
            seed: self.seed.unwrap_or(d.seed),
            noise_exc: self.noise_exc.unwrap_or(d.noise_exc),
            noise_inh: self.noise_inh.unwrap_or(d.noise_inh),
            weight_exc: self.weight_exc.unwrap_or(weight_exc),
            weight_inh: self.weight_inh.unwrap_or(d.weight_inh),
            connectivity: self.connectivity.unwrap_or(d.connectivity),
            synapses_per_neuron: self.synapses_per_neuron.unwrap_or(d.synapses_per_neuron),
            poisson_hz: self.poisson_hz.unwrap_or(d.poisson_hz),
            poisson_weight: self.poisson_weight.unwrap_or(d.poisson_weight),
            trace_neurons: vec![],
            raster: false,
        }
    }
}

pub fn izhikevich(a: &SpikingArgs) -> Result<Value> {
    let d = SpikingSpec::default();
    let spec = a.spec(d.model, d.weight_exc);
    run_spec(&DynamicsSpec::Spiking(spec), a.device)
}

pub fn lif(a: &LifArgs) -> Result<Value> {
    let model = NeuronModel::Lif {
        tau_ms: a.tau,
        threshold: a.threshold,
        rest: a.rest,
        refractory_ms: a.refractory,
    };
    // Delta synapses onto LIF cells need weaker excitation than Izhikevich's currents to stay in
    // an asynchronous regime (~20 Hz instead of runaway firing).
    let spec = a.network.spec(model, 0.05);
    run_spec(&DynamicsSpec::Spiking(spec), a.network.device)
}

/// Run one Dynamics spec on the chosen device; the JSON result plus wall-clock seconds (and, on
/// wgpu, the GPU dispatches it took).
pub fn run_spec(spec: &DynamicsSpec, device: DeviceArg) -> Result<Value> {
    let dev = device.init()?;
    let dispatches = interplay_models::device::DispatchCounter::start();
    let start = Instant::now();
    let mut v = match spec {
        DynamicsSpec::Prediction(s) => {
            let r = pollster::block_on(s.run(&dev.device, &mut no_progress))?;
            json!({ "nrmse": r.nrmse, "r2": r.r2 })
        }
        DynamicsSpec::MemoryCapacity(s) => {
            let r = pollster::block_on(s.run(&dev.device, &mut no_progress))?;
            json!({ "mc": r.mc, "mc_k": r.mc_k })
        }
        DynamicsSpec::Spiking(s) => {
            let r = pollster::block_on(s.run(&dev.device, &mut |_| {}, &mut no_progress))?;
            json!({ "spikes": r.spikes, "rate_exc_hz": r.rate_exc_hz, "rate_inh_hz": r.rate_inh_hz })
        }
        DynamicsSpec::WhatWhen(s) => {
            let r = pollster::block_on(s.run(&dev.device, &mut |_| {}, &mut no_progress))?;
            json!({ "learned": r.learned, "trials": r.trials })
        }
        DynamicsSpec::EiSweep(s) => {
            let rows = pollster::block_on(s.run(&dev.device, &mut |_| {}, &mut no_progress))?;
            json!({ "rows": rows })
        }
    };
    v["seconds"] = json!(start.elapsed().as_secs_f64());
    v["device"] = json!(dev.backend);
    if dev.backend == interplay_models::device::Backend::Wgpu {
        v["dispatches"] = json!(dispatches.count());
    }
    Ok(v)
}
