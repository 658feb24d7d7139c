//! The Dynamics lab's commands: `esn`, `memory-capacity`, `izhikevich` (and `lif`).

use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use interplay_dynamics::spiking::NeuronModel;
use interplay_dynamics::{
    Adaptation, DynamicsSpec, EiParams, EsnParams, MemoryCapacitySpec, PredictionSpec, SpikingSpec,
};
use interplay_models::patching::no_progress;
use serde_json::{Value, json};

use crate::{Args, device};

impl Args {
    /// `name`'s value parsed, or `default` when absent.
    pub(crate) fn num<T: FromStr>(&self, name: &str, default: T) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.value(name) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|e| anyhow!("{name} {v:?}: {e}")),
        }
    }
}

/// Reservoir options shared by `esn` and `memory-capacity`, over `base`'s defaults.
fn reservoir(args: &Args, base: EsnParams) -> Result<EsnParams> {
    let mut p = EsnParams {
        units: args.num("--units", base.units)?,
        spectral_radius: args.num("--spectral-radius", base.spectral_radius)?,
        leak: args.num("--leak", base.leak)?,
        input_scaling: args.num("--input-scaling", base.input_scaling)?,
        input_connectivity: args.num("--input-connectivity", base.input_connectivity)?,
        rc_connectivity: args.num("--connectivity", base.rc_connectivity)?,
        bias: args.num("--bias", base.bias)?,
        seed: args.num("--seed", base.seed)?,
        ei: base.ei,
    };
    if args.value("--inhibition").is_some() || args.flag("--adapt") {
        let mut ei = EiParams {
            inhibition: args.num("--inhibition", 1.0)?,
            excitatory_fraction: args.num("--excitatory-fraction", 0.8)?,
            adaptation: None,
        };
        if args.flag("--adapt") {
            let d = Adaptation::default();
            ei.adaptation = Some(Adaptation {
                eta: args.num("--adapt-eta", d.eta)?,
                target_rate: args.num("--target-rate", d.target_rate)?,
                target_spread: args.num("--target-spread", d.target_spread)?,
                steps: args.num("--adapt-steps", d.steps)?,
            });
        }
        p.ei = Some(ei);
    }
    Ok(p)
}

/// Run one Dynamics spec on the chosen device; the JSON result plus wall-clock seconds.
pub fn run_spec(spec: &DynamicsSpec, args: &Args) -> Result<Value> {
    let dev = device(args)?;
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
    Ok(v)
}

/// `esn`, `memory-capacity`, `izhikevich`, `lif`: build the spec from flags and run it.
pub fn command(args: &Args) -> Result<Option<Value>> {
    let spec = match args.cmd.as_str() {
        "esn" => {
            let d = PredictionSpec::default();
            DynamicsSpec::Prediction(PredictionSpec {
                task: args.num("--task", d.task)?,
                steps: args.num("--steps", d.steps)?,
                train: args.num("--train", d.train)?,
                test: args.num("--test", d.test)?,
                warmup: args.num("--warmup", d.warmup)?,
                horizon: args.num("--horizon", d.horizon)?,
                ridge: args.num("--ridge", d.ridge)?,
                series_seed: args.num("--series-seed", d.series_seed)?,
                reservoir: reservoir(args, d.reservoir)?,
            })
        }
        "memory-capacity" => {
            let d = MemoryCapacitySpec::default();
            DynamicsSpec::MemoryCapacity(MemoryCapacitySpec {
                k_max: args.num("--k-max", d.k_max)?,
                warmup: args.num("--warmup", d.warmup)?,
                train: args.num("--train", d.train)?,
                test: args.num("--test", d.test)?,
                ridge: args.num("--ridge", d.ridge)?,
                input_seed: args.num("--input-seed", d.input_seed)?,
                reservoir: reservoir(args, d.reservoir)?,
            })
        }
        "izhikevich" | "lif" => {
            let d = SpikingSpec::default();
            let model = if args.cmd == "lif" {
                NeuronModel::Lif {
                    tau_ms: args.num("--tau", 20.0)?,
                    threshold: args.num("--threshold", -50.0)?,
                    rest: args.num("--rest", -65.0)?,
                    refractory_ms: args.num("--refractory", 2.0)?,
                }
            } else {
                d.model
            };
            DynamicsSpec::Spiking(SpikingSpec {
                model,
                excitatory: args.num("--excitatory", d.excitatory)?,
                inhibitory: args.num("--inhibitory", d.inhibitory)?,
                ms: args.num("--ms", d.ms)?,
                seed: args.num("--seed", d.seed)?,
                noise_exc: args.num("--noise-exc", d.noise_exc)?,
                noise_inh: args.num("--noise-inh", d.noise_inh)?,
                // Delta synapses onto LIF cells need weaker excitation than Izhikevich's currents
                // to stay in an asynchronous regime (~20 Hz instead of runaway firing).
                weight_exc: args.num(
                    "--weight-exc",
                    if args.cmd == "lif" {
                        0.05
                    } else {
                        d.weight_exc
                    },
                )?,
                weight_inh: args.num("--weight-inh", d.weight_inh)?,
                connectivity: args.num("--connectivity", d.connectivity)?,
                poisson_hz: args.num("--poisson-hz", d.poisson_hz)?,
                poisson_weight: args.num("--poisson-weight", d.poisson_weight)?,
                trace_neurons: vec![],
                raster: false,
            })
        }
        _ => return Ok(None),
    };
    run_spec(&spec, args).map(Some)
}

/// A spec file with an `"experiment"` tag is a Dynamics spec.
pub fn parse_spec(text: &str) -> Result<Option<DynamicsSpec>> {
    let v: Value = serde_json::from_str(text).context("the spec is not JSON")?;
    if v.get("experiment").is_none() {
        return Ok(None);
    }
    Ok(Some(
        serde_json::from_value(v).context("not a valid Dynamics experiment spec")?,
    ))
}
