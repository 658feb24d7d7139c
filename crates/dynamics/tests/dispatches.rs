//! On WebGPU the spiking network is one kernel launch (one dispatch) per simulated millisecond,
//! the what/when paradigm two (network and readouts), a reservoir one per chunk of 250 steps:
//! the architecture, counted, not timed. Its own test binary, because the launch counter is
//! process-wide and tests in one binary run in parallel (so the checks are one test).
#![allow(clippy::unwrap_used)]

use interplay_dynamics::spiking::NeuronModel;
use interplay_dynamics::whatwhen::{Phase, Rule, WhatWhenSpec};
use interplay_dynamics::{Adaptation, EiParams, EsnParams, Reservoir, SpikingSpec};
use interplay_models::device::DispatchCounter;
use interplay_models::patching::no_progress;

/// What `f` returns and the GPU dispatches it made (the counter is process-wide: one test).
fn dispatched<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let counter = DispatchCounter::start();
    let out = f();
    (out, counter.count())
}

#[test]
fn dynamics_kernels_dispatch_once_per_ms_or_chunk_on_wgpu() {
    let Some(gpu) = interplay_testkit::wgpu_device() else {
        return;
    };
    // A 300-unit E/I reservoir with adaptation, 600 steps: three chunks, three dispatches.
    let params = EsnParams {
        units: 300,
        ei: Some(EiParams {
            adaptation: Some(Adaptation::default()),
            ..EiParams::default()
        }),
        ..EsnParams::default()
    };
    let u: Vec<f64> = (0..600).map(|t| (t as f64 * 0.1).sin()).collect();
    let res = Reservoir::new(&params, 1, &gpu.device).unwrap();
    let (out, dispatches) =
        dispatched(|| pollster::block_on(res.run(&u, &mut no_progress)).unwrap());
    eprintln!("reservoir: {dispatches} dispatches for 600 steps");
    assert_eq!(out.states.len(), 600 * 300);
    assert_eq!(out.balance.len(), 600);
    assert_eq!(dispatches, 3, "want one dispatch per 250-step chunk");

    // A dense 650-unit reservoir: its work bound allows 39 steps per dispatch, so 250 + 50
    // steps take 7 + 2.
    let dense = EsnParams {
        units: 650,
        rc_connectivity: 1.0,
        ..EsnParams::default()
    };
    let res = Reservoir::new(&dense, 1, &gpu.device).unwrap();
    let (_, dispatches) =
        dispatched(|| pollster::block_on(res.run(&u[..300], &mut no_progress)).unwrap());
    assert_eq!(
        dispatches, 9,
        "want ceil(250 / 39) + ceil(50 / 39) dispatches"
    );

    // What/when, both rules: 3 trials of 250 ms, network and readout kernels each ms.
    for rule in [WhatWhenSpec::default().rule, Rule::Rls { alpha: 1.0 }] {
        let spec = WhatWhenSpec {
            phases: vec![Phase {
                trials: 3,
                when_ms: 40,
                probabilities: vec![0.8, 0.2],
            }],
            rule,
            ..WhatWhenSpec::default()
        };
        let (r, dispatches) = dispatched(|| {
            pollster::block_on(spec.run(&gpu.device, &mut |_| {}, &mut no_progress)).unwrap()
        });
        eprintln!(
            "what/when {:?}: {dispatches} dispatches for 750 ms",
            spec.rule
        );
        assert_eq!(r.trials.len(), 3);
        assert_eq!(
            dispatches,
            2 * 3 * spec.trial_ms,
            "want two dispatches per ms"
        );
    }

    let lif = NeuronModel::Lif {
        tau_ms: 20.0,
        threshold: -50.0,
        rest: -65.0,
        refractory_ms: 2.0,
    };
    for model in [SpikingSpec::default().model, lif] {
        let spec = SpikingSpec {
            model,
            ms: 120,
            trace_neurons: vec![0, 900],
            ..SpikingSpec::default()
        };
        let (r, dispatches) = dispatched(|| {
            pollster::block_on(spec.run(&gpu.device, &mut |_| {}, &mut no_progress)).unwrap()
        });
        eprintln!(
            "{:?}: {dispatches} dispatches for {} ms",
            spec.model, spec.ms
        );
        assert_eq!(r.pop_exc.len(), spec.ms);
        assert!(r.traces.iter().all(|t| t.len() == spec.ms));
        // One kernel per ms: uploads and the per-chunk readback are not dispatches.
        assert_eq!(dispatches, spec.ms, "want one dispatch per ms");
    }
}
