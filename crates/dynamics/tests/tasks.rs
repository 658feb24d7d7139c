//! The Dynamics experiments end to end on the CPU device: known behaviours, not timings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use burn::tensor::Device;
use interplay_dynamics::spiking::{CellType, NeuronModel};
use interplay_dynamics::{
    Adaptation, DynamicsError, DynamicsSpec, EiParams, EsnParams, MemoryCapacitySpec,
    PredictionSpec, SpikingSpec, Task,
};
use interplay_models::patching::{Progress, no_progress};

fn cpu() -> Device {
    Device::flex()
}

#[test]
fn mackey_glass_one_step_is_predicted_well() {
    let spec = PredictionSpec {
        steps: 3000,
        train: 2000,
        test: 500,
        reservoir: EsnParams {
            units: 100,
            leak: 0.3,
            spectral_radius: 0.9,
            ..EsnParams::default()
        },
        ..PredictionSpec::default()
    };
    let r = pollster::block_on(spec.run(&cpu(), &mut no_progress)).unwrap();
    assert_eq!(r.prediction.len(), 500);
    assert!(r.nrmse < 0.02, "nrmse {}", r.nrmse);
    assert!(r.r2 > 0.99, "r2 {}", r.r2);
}

#[test]
fn narma_and_santa_fe_run() {
    for task in [Task::Narma10, Task::SantaFe] {
        let spec = PredictionSpec {
            task,
            steps: 2500,
            train: 1500,
            test: 500,
            ridge: 1e-5,
            reservoir: EsnParams {
                units: 100,
                ..EsnParams::default()
            },
            ..PredictionSpec::default()
        };
        let r = pollster::block_on(spec.run(&cpu(), &mut no_progress)).unwrap();
        assert!(
            r.nrmse.is_finite() && r.nrmse < 0.3,
            "{task:?} nrmse {}",
            r.nrmse
        );
    }
}

#[test]
fn memory_capacity_is_positive_and_bounded_by_units() {
    let spec = MemoryCapacitySpec {
        train: 2000,
        test: 500,
        ..MemoryCapacitySpec::default()
    };
    let r = pollster::block_on(spec.run(&cpu(), &mut no_progress)).unwrap();
    assert_eq!(r.mc_k.len(), 50);
    assert!(r.mc > 10.0 && r.mc <= 100.0, "mc {}", r.mc);
    // Short delays are remembered almost perfectly, long ones not.
    assert!(r.mc_k[0] > 0.95 && r.mc_k[49] < r.mc_k[0]);
}

#[test]
fn izhikevich_2003_network_has_its_published_rates() {
    let r = pollster::block_on(SpikingSpec::default().run(&cpu(), &mut |_| {}, &mut no_progress))
        .unwrap();
    // Izhikevich (2003): about 7.6 Hz (excitatory) and 7.2 Hz (inhibitory) over 1 s.
    assert!(
        (3.0..15.0).contains(&r.rate_exc_hz) && (3.0..20.0).contains(&r.rate_inh_hz),
        "{} {}",
        r.rate_exc_hz,
        r.rate_inh_hz
    );
    assert_eq!(r.pop_exc.len(), 1000);
    assert_eq!(r.raster.len(), r.spikes);
}

#[test]
fn single_cell_types_and_lif_behave() {
    // A lone regular-spiking cell with constant-ish drive fires; traces are clipped at 30 mV.
    let spec = SpikingSpec {
        model: NeuronModel::Izhikevich {
            excitatory_type: Some(CellType::RegularSpiking),
            inhibitory_type: None,
        },
        excitatory: 1,
        inhibitory: 0,
        ms: 300,
        noise_exc: 10.0,
        trace_neurons: vec![0],
        ..SpikingSpec::default()
    };
    let r = pollster::block_on(spec.run(&cpu(), &mut |_| {}, &mut no_progress)).unwrap();
    assert_eq!(r.traces[0].len(), 300);
    assert!(r.traces[0].iter().all(|&v| v <= 30.0));
    let lif = SpikingSpec {
        model: NeuronModel::Lif {
            tau_ms: 20.0,
            threshold: -50.0,
            rest: -65.0,
            refractory_ms: 2.0,
        },
        ms: 300,
        ..SpikingSpec::default()
    };
    let r = pollster::block_on(lif.run(&cpu(), &mut |_| {}, &mut no_progress)).unwrap();
    assert!(r.spikes > 0 && r.rate_exc_hz < 500.0, "{}", r.rate_exc_hz);
}

#[test]
fn self_adaptation_moves_rates_toward_targets() {
    let params = |adapt: bool| EsnParams {
        units: 100,
        spectral_radius: 0.95,
        bias: 0.2,
        input_connectivity: 1.0,
        ei: Some(EiParams {
            inhibition: 0.5,
            adaptation: adapt.then_some(Adaptation {
                steps: 1500,
                ..Adaptation::default()
            }),
            ..EiParams::default()
        }),
        ..EsnParams::default()
    };
    let rate = |adapt: bool| {
        let spec = MemoryCapacitySpec {
            k_max: 10,
            warmup: 1500,
            train: 500,
            test: 100,
            reservoir: params(adapt),
            ..MemoryCapacitySpec::default()
        };
        // Mean rate after adaptation, from the E/I balance trace's companion: the states.
        let r = pollster::block_on(spec.run(&cpu(), &mut no_progress)).unwrap();
        r.balance
    };
    let fixed = rate(false);
    let adapted = rate(true);
    let tail = |b: &[(f32, f32)]| {
        let t = &b[b.len() - 200..];
        t.iter().map(|(e, i)| (e + i) as f64).sum::<f64>() / t.len() as f64
    };
    // Inhibitory gains grow where rates exceed the 0.2 target: net recurrent input falls.
    assert!(
        tail(&adapted) < tail(&fixed),
        "{} vs {}",
        tail(&adapted),
        tail(&fixed)
    );
}

#[test]
fn specs_round_trip_and_cancel() {
    let spec = DynamicsSpec::MemoryCapacity(MemoryCapacitySpec::default());
    let text = serde_json::to_string(&spec).unwrap();
    assert!(text.contains("\"experiment\":\"memory-capacity\""));
    assert_eq!(serde_json::from_str::<DynamicsSpec>(&text).unwrap(), spec);
    // Links from before the RLS readout had its name still open.
    let old: interplay_dynamics::whatwhen::Rule =
        serde_json::from_str(r#"{"rule":"force","alpha":2.0}"#).unwrap();
    assert_eq!(old, interplay_dynamics::whatwhen::Rule::Rls { alpha: 2.0 });
    let link: DynamicsSpec =
        serde_json::from_str(r#"{"experiment":"what-when","rule":{"rule":"force","alpha":2.0}}"#)
            .unwrap();
    let DynamicsSpec::WhatWhen(w) = link else {
        panic!("not what-when")
    };
    assert_eq!(w.rule, old);
    assert!(
        serde_json::to_string(&old)
            .unwrap()
            .contains(r#""rule":"rls""#)
    );
    let minimal: DynamicsSpec =
        serde_json::from_str(r#"{"experiment":"spiking","ms":20}"#).unwrap();
    let DynamicsSpec::Spiking(s) = minimal else {
        panic!("not spiking")
    };
    assert_eq!((s.ms, s.excitatory), (20, 800));

    let mut cancel = |_: usize, _: usize| -> Progress { Box::pin(async { false }) };
    let err = pollster::block_on(SpikingSpec::default().run(&cpu(), &mut |_| {}, &mut cancel))
        .unwrap_err();
    assert!(matches!(err, DynamicsError::Cancelled));
}

#[test]
fn bad_parameters_are_refused_with_a_message() {
    let bad = PredictionSpec {
        train: 50,
        warmup: 100,
        ..PredictionSpec::default()
    };
    let e = pollster::block_on(bad.run(&cpu(), &mut no_progress)).unwrap_err();
    assert!(e.to_string().contains("warm-up"), "{e}");
    let bad = SpikingSpec {
        trace_neurons: vec![5000],
        ..SpikingSpec::default()
    };
    let e = pollster::block_on(bad.run(&cpu(), &mut |_| {}, &mut no_progress)).unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    let bad = PredictionSpec {
        reservoir: EsnParams {
            leak: 0.0,
            ..EsnParams::default()
        },
        ..PredictionSpec::default()
    };
    assert!(pollster::block_on(bad.run(&cpu(), &mut no_progress)).is_err());
}

#[test]
fn three_factor_readout_learns_what_and_when_and_readapts_where_rls_does_not() {
    use interplay_dynamics::whatwhen::{Rule, WhatWhenSpec};
    let run = |spec: &WhatWhenSpec| {
        pollster::block_on(spec.run(&cpu(), &mut |_| {}, &mut no_progress)).unwrap()
    };
    let three = run(&WhatWhenSpec::default());
    let [before, after] = [&three.learned[0], &three.learned[1]];
    // Magnitudes follow the probabilities (0.8 / 0.2, then swapped) without a reset ...
    assert!(before[0] > 2.0 * before[1], "{before:?}");
    assert!(after[1] > 1.5 * after[0], "{after:?}");
    // ... and the readout fires in the stimulus window more than elsewhere.
    let late: Vec<_> = three
        .trials
        .iter()
        .filter(|t| t.phase == 0)
        .skip(30)
        .collect();
    let inside: f64 = late.iter().map(|t| t.in_window[0]).sum();
    let outside: f64 = late.iter().map(|t| t.outside[0]).sum();
    assert!(inside > 1.5 * outside, "{inside} vs {outside}");

    let rls = run(&WhatWhenSpec {
        rule: Rule::Rls { alpha: 1.0 },
        ..WhatWhenSpec::default()
    });
    // RLS's gain has shrunk by the swap: it still favours the old stimulus.
    assert!(rls.learned[0][0] > 2.0 * rls.learned[0][1]);
    assert!(
        rls.learned[1][0] > rls.learned[1][1],
        "{:?}",
        rls.learned[1]
    );
}

#[test]
fn empty_what_when_blocks_are_refused_not_a_panic() {
    use interplay_dynamics::whatwhen::WhatWhenSpec;
    let mut spec = WhatWhenSpec::default();
    spec.phases[1].trials = 0;
    let e = pollster::block_on(spec.run(&cpu(), &mut |_| {}, &mut no_progress)).unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");
    let spec = WhatWhenSpec {
        trial_ms: 0,
        ..WhatWhenSpec::default()
    };
    assert!(pollster::block_on(spec.run(&cpu(), &mut |_| {}, &mut no_progress)).is_err());
}

/// The what/when readouts' CPU form (slices) and WebGPU form (the network's kernel and the
/// readout kernel) learn the same: the readouts differ only in rounding.
#[test]
fn what_when_cpu_and_gpu_forms_agree() {
    use interplay_dynamics::whatwhen::{Phase, Rule, WhatWhenSpec};
    let Some(gpu) = interplay_testkit::wgpu_device() else {
        return;
    };
    for rule in [WhatWhenSpec::default().rule, Rule::Rls { alpha: 1.0 }] {
        let spec = WhatWhenSpec {
            phases: vec![
                Phase {
                    trials: 4,
                    when_ms: 40,
                    probabilities: vec![0.8, 0.2],
                },
                Phase {
                    trials: 3,
                    when_ms: 60,
                    probabilities: vec![0.2, 0.8],
                },
            ],
            rule,
            ..WhatWhenSpec::default()
        };
        let run = |dev: &Device| {
            pollster::block_on(spec.run(dev, &mut |_| {}, &mut no_progress)).unwrap()
        };
        let (a, b) = (run(&cpu()), run(&gpu.device));
        assert_eq!(a.trials.len(), b.trials.len());
        let mut worst = 0f64;
        for (x, y) in a.trials.iter().zip(&b.trials) {
            assert_eq!(x.presented, y.presented);
            for (p, q) in x
                .in_window
                .iter()
                .chain(&x.outside)
                .zip(y.in_window.iter().chain(&y.outside))
            {
                worst = worst.max((p - q).abs());
            }
        }
        eprintln!("{:?}: largest readout difference {worst:.2e}", spec.rule);
        assert!(
            worst < 1e-4,
            "{:?}: CPU and wgpu readouts differ by {worst}",
            spec.rule
        );
    }
}

/// `params`' reservoir driven by `u` on the CPU and on `gpu`: the largest differences of states,
/// gains and E/I balance (after checking the reservoir did not stay silent).
fn reservoir_forms_differ(params: &EsnParams, u: &[f64], gpu: &Device) -> (f32, f32, f32) {
    use interplay_dynamics::esn::Reservoir;
    let run = |dev: &Device| {
        let r = Reservoir::new(params, 1, dev).unwrap();
        pollster::block_on(r.run(u, &mut no_progress)).unwrap()
    };
    let (a, b) = (run(&cpu()), run(gpu));
    assert!(
        a.states.iter().any(|&x| x > 0.05),
        "the reservoir stayed silent"
    );
    let worst = |x: &[f32], y: &[f32]| {
        assert_eq!(x.len(), y.len());
        x.iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max)
    };
    let flat = |v: &[(f32, f32)]| v.iter().flat_map(|p| [p.0, p.1]).collect::<Vec<_>>();
    (
        worst(&a.states, &b.states),
        worst(&a.gains, &b.gains),
        worst(&flat(&a.balance), &flat(&b.balance)),
    )
}

/// The E/I reservoir's CPU form (compressed rows, ReLU, inhibitory gains, adaptation window)
/// and its WebGPU kernel give the same states, balance and gains, across chunk boundaries
/// (600 steps: chunks of 250, 250 and 100).
#[test]
fn ei_reservoir_cpu_and_gpu_forms_agree() {
    use interplay_dynamics::{Adaptation, EiParams};
    let Some(gpu) = interplay_testkit::wgpu_device() else {
        return;
    };
    let params = EsnParams {
        units: 120,
        spectral_radius: 0.95,
        ei: Some(EiParams {
            inhibition: 1.5,
            adaptation: Some(Adaptation {
                steps: 300,
                target_spread: 0.1,
                ..Adaptation::default()
            }),
            ..EiParams::default()
        }),
        ..EsnParams::default()
    };
    let u: Vec<f64> = (0..600).map(|t| (t as f64 * 0.07).sin() * 0.8).collect();
    let (states, gains, balance) = reservoir_forms_differ(&params, &u, &gpu.device);
    eprintln!("E/I: states {states:.1e}, gains {gains:.1e}, balance {balance:.1e}");
    assert!(states < 1e-4 && gains < 1e-4 && balance < 1e-4);
}

/// A sparse network (10 000 neurons, 100 synapses each) on the CPU and on WebGPU: the kernel
/// gathers each neuron's input in the order the CPU adds it, so the LIF network (no fused
/// multiply-add to differ in) is spike for spike, and the Izhikevich network is for its first
/// tens of ms and at the same rates after.
#[test]
fn sparse_networks_agree_on_cpu_and_gpu() {
    let Some(gpu) = interplay_testkit::wgpu_device() else {
        return;
    };
    let sparse = SpikingSpec {
        excitatory: 8000,
        inhibitory: 2000,
        synapses_per_neuron: 100,
        // Ten times the classic inhibitory weights and eight times the excitatory ones on a
        // tenth of the synapses: the classic network's rates (the page's guided experiment).
        weight_exc: 4.0,
        weight_inh: 10.0,
        ms: 200,
        raster: true,
        ..SpikingSpec::default()
    };
    let lif = SpikingSpec {
        model: NeuronModel::Lif {
            tau_ms: 20.0,
            threshold: -50.0,
            rest: -65.0,
            refractory_ms: 2.0,
        },
        weight_exc: 0.5,
        ..sparse.clone()
    };
    for spec in [lif, sparse] {
        let run = |dev: &Device| {
            pollster::block_on(spec.run(dev, &mut |_| {}, &mut no_progress)).unwrap()
        };
        let (a, b) = (run(&cpu()), run(&gpu.device));
        let first_diff = a
            .raster
            .iter()
            .zip(&b.raster)
            .find(|(x, y)| x != y)
            .map_or(spec.ms, |(x, _)| x.0 as usize);
        eprintln!(
            "{:?}: CPU {:.2}/{:.2} Hz, GPU {:.2}/{:.2} Hz, identical for {first_diff} ms",
            spec.model, a.rate_exc_hz, a.rate_inh_hz, b.rate_exc_hz, b.rate_inh_hz
        );
        assert!(a.rate_exc_hz > 1.0 && a.rate_exc_hz < 100.0);
        if matches!(spec.model, NeuronModel::Lif { .. }) {
            assert_eq!(a.raster, b.raster);
        } else {
            assert!(first_diff >= 20, "the trains part at {first_diff} ms");
            for (x, y) in [
                (a.rate_exc_hz, b.rate_exc_hz),
                (a.rate_inh_hz, b.rate_inh_hz),
            ] {
                assert!((x - y).abs() <= 0.05 * x, "rates {x} vs {y}");
            }
        }
    }
}

/// Dense networks stop at 10 000 neurons; with a fixed number of synapses per neuron a network
/// may have up to 100 000 (the synapse cap still holds).
#[test]
fn sparse_networks_may_have_100_000_neurons() {
    let sparse = |excitatory| SpikingSpec {
        excitatory,
        inhibitory: 20_000,
        synapses_per_neuron: 1,
        ms: 1,
        ..SpikingSpec::default()
    };
    let run =
        |spec: &SpikingSpec| pollster::block_on(spec.run(&cpu(), &mut |_| {}, &mut no_progress));
    assert!(run(&sparse(80_000)).is_ok());
    let err = run(&sparse(80_001)).unwrap_err().to_string();
    assert!(err.contains("100 000"), "{err}");
    let dense = SpikingSpec {
        excitatory: 10_001,
        ms: 1,
        ..SpikingSpec::default()
    };
    assert!(
        run(&dense)
            .unwrap_err()
            .to_string()
            .contains("10 000 neurons")
    );
}

/// A dense 650-unit E/I reservoir on WebGPU: more units than the kernel's threads (each owns
/// three), and at 39 steps per dispatch (the work bound) dispatches that start on odd steps;
/// the states, gains and balance are the CPU form's to rounding.
#[test]
fn large_dense_reservoir_cpu_and_gpu_forms_agree() {
    use interplay_dynamics::{Adaptation, EiParams};
    let Some(gpu) = interplay_testkit::wgpu_device() else {
        return;
    };
    let params = EsnParams {
        units: 650,
        rc_connectivity: 1.0,
        spectral_radius: 0.9,
        leak: 0.5,
        ei: Some(EiParams {
            adaptation: Some(Adaptation {
                steps: 100,
                ..Adaptation::default()
            }),
            ..EiParams::default()
        }),
        ..EsnParams::default()
    };
    let u: Vec<f64> = (0..300).map(|t| (t as f64 * 0.05).sin() + 0.2).collect();
    let (states, gains, balance) = reservoir_forms_differ(&params, &u, &gpu.device);
    eprintln!("650 units: states {states:.1e}, gains {gains:.1e}, balance {balance:.1e}");
    assert!(states < 1e-5 && gains < 1e-5 && balance < 1e-5);
}

/// Weights given from outside (`Reservoir::from_weights`) are checked: a message, not a panic.
#[test]
fn bad_reservoir_weights_are_refused() {
    use interplay_dynamics::esn::{Reservoir, ReservoirWeights};
    let good = ReservoirWeights {
        units: 2,
        inputs: 1,
        w: vec![0.0, 0.5, -0.5, 0.0],
        w_in: vec![1.0, -1.0],
        bias: vec![0.0; 2],
        excitatory: None,
    };
    assert!(Reservoir::from_weights(good.clone(), 0.5, None, &cpu()).is_ok());
    for bad in [
        ReservoirWeights {
            units: 0,
            w: vec![],
            w_in: vec![],
            bias: vec![],
            ..good.clone()
        },
        ReservoirWeights {
            w: vec![0.0; 3],
            ..good.clone()
        },
        ReservoirWeights {
            excitatory: Some(3),
            ..good.clone()
        },
        ReservoirWeights {
            w_in: vec![1e39, 0.0],
            ..good.clone()
        },
    ] {
        let err = Reservoir::from_weights(bad, 0.5, None, &cpu()).err();
        assert!(err.is_some_and(|e| e.to_string().contains("reservoir weights")));
    }
    assert!(Reservoir::from_weights(good, 0.0, None, &cpu()).is_err());
}
