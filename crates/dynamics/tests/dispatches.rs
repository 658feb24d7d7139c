//! The spiking network on WebGPU is one kernel launch (one dispatch) per simulated millisecond:
//! the architecture, counted, not timed. Its own test binary, because the launch counter is
//! process-wide and tests in one binary run in parallel.
#![allow(clippy::unwrap_used)]

use interplay_dynamics::SpikingSpec;
use interplay_dynamics::spiking::NeuronModel;
use interplay_models::device::DispatchCounter;
use interplay_models::patching::no_progress;

#[test]
fn spiking_networks_take_one_dispatch_per_ms_on_wgpu() {
    let Some(gpu) = interplay_testkit::wgpu_device() else {
        return;
    };
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
        let counter = DispatchCounter::start();
        let r = pollster::block_on(spec.run(&gpu.device, &mut |_| {}, &mut no_progress)).unwrap();
        let dispatches = counter.count();
        drop(counter);
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
