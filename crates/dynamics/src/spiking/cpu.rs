//! The spiking networks' CPU form: one fused step over slices of f32, with no tensor operation
//! and no allocation per step (a tensor step was ~15 operations, each with its own overhead and
//! buffers). The WebGPU kernels (`super::gpu`) state the same equations, term for term in the
//! same order, so the two forms agree to rounding. A spike adds its neuron's outgoing weights
//! (CSR), so the synaptic input costs what the network fires, not N².

use super::{Drawn, Drive, NeuronModel, SpikingResult, SpikingSpec};
use crate::error::Result;

/// A spiking network's state and parameters on the host.
pub(crate) struct CpuNetwork {
    model: NeuronModel,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
    d: Vec<f32>,
    /// Neuron j's outgoing synapses (post, weight) are `outgoing[start[j]..start[j + 1]]`.
    start: Vec<usize>,
    outgoing: Vec<(u32, f32)>,
    /// Membrane potential (mV), `[N]`.
    pub(crate) v: Vec<f32>,
    /// Recovery variable (Izhikevich), `[N]`.
    u: Vec<f32>,
    /// Refractory time left (LIF, ms), `[N]`.
    refractory: Vec<f32>,
    /// This step's synaptic input, `[N]`.
    syn: Vec<f32>,
    /// Who fired in the last step, ascending.
    pub(crate) fired: Vec<u32>,
    /// A chunk's drive, `[len, N]` (kept between chunks: no allocation per chunk).
    input: Vec<f32>,
    pub(crate) drive: Drive,
}

impl CpuNetwork {
    /// Build `spec`'s network from its seed: the same draws as the WebGPU form's.
    pub(crate) fn new(spec: &SpikingSpec) -> Result<Self> {
        let drawn = Drawn::new(spec)?;
        let (start, outgoing) = drawn.sparse(spec);
        let Drawn {
            abcd: [a, b, c, d],
            rng_noise,
            ..
        } = drawn;
        let n = spec.excitatory + spec.inhibitory;
        let (v, u) = match &spec.model {
            NeuronModel::Izhikevich { .. } => {
                let v = vec![-65f32; n];
                let u = b.iter().zip(&v).map(|(b, v)| b * v).collect();
                (v, u)
            }
            NeuronModel::Lif { rest, .. } => (vec![*rest as f32; n], vec![0.0; n]),
        };
        Ok(Self {
            model: spec.model.clone(),
            a,
            b,
            c,
            d,
            start,
            outgoing,
            v,
            u,
            refractory: vec![0.0; n],
            syn: vec![0.0; n],
            fired: Vec::with_capacity(n),
            input: Vec::new(),
            drive: Drive::new(spec, rng_noise),
        })
    }

    /// Advance 1 ms with external input `input` (`[N]`); [`Self::fired`] then lists who fired.
    pub(crate) fn step(&mut self, input: &[f32]) {
        let threshold = match self.model {
            NeuronModel::Izhikevich { .. } => 30.0,
            NeuronModel::Lif { threshold, .. } => threshold as f32,
        };
        self.fired.clear();
        for (k, &v) in self.v.iter().enumerate() {
            if v >= threshold {
                self.fired.push(k as u32);
            }
        }
        self.syn.fill(0.0);
        for &j in &self.fired {
            let j = j as usize;
            for &(i, w) in &self.outgoing[self.start[j]..self.start[j + 1]] {
                self.syn[i as usize] += w;
            }
        }
        match self.model {
            NeuronModel::Izhikevich { .. } => {
                for &j in &self.fired {
                    let j = j as usize;
                    self.v[j] = self.c[j];
                    self.u[j] += self.d[j];
                }
                for (k, (v, u)) in self.v.iter_mut().zip(&mut self.u).enumerate() {
                    let i = input[k] + self.syn[k];
                    // Two 0.5 ms half-steps for v (numerical stability, as in the paper).
                    for _ in 0..2 {
                        let dv = *v * *v * 0.04 + *v * 5.0 + 140.0 - *u + i;
                        *v += dv * 0.5;
                    }
                    *u += self.a[k] * (self.b[k] * *v - *u);
                }
            }
            NeuronModel::Lif {
                tau_ms,
                rest,
                refractory_ms,
                ..
            } => {
                let (tau, rest, refr) = (tau_ms as f32, rest as f32, refractory_ms as f32);
                for r in &mut self.refractory {
                    *r = (*r - 1.0).max(0.0);
                }
                for &j in &self.fired {
                    self.v[j as usize] = rest;
                    self.refractory[j as usize] = refr;
                }
                for (k, v) in self.v.iter_mut().enumerate() {
                    let active = if self.refractory[k] <= 0.0 { 1.0 } else { 0.0 };
                    *v += ((-*v + rest) / tau + (input[k] + self.syn[k])) * active;
                }
            }
        }
    }
}

impl CpuNetwork {
    /// Simulate `len` ms from `start` ms of a run of `spec` (one chunk of
    /// [`SpikingSpec::run`]).
    pub(crate) fn chunk(&mut self, spec: &SpikingSpec, start: usize, len: usize) -> SpikingResult {
        let n = self.v.len();
        self.input.resize(len * n, 0.0);
        let mut input = std::mem::take(&mut self.input);
        self.drive.fill(&mut input);
        let mut chunk = SpikingResult::chunk(len);
        chunk.traces = vec![Vec::with_capacity(len); spec.trace_neurons.len()];
        for (k, row) in input.chunks_exact(n).enumerate() {
            self.step(row);
            chunk.record(k, start, self.fired.iter().copied(), spec);
            for (trace, &j) in chunk.traces.iter_mut().zip(&spec.trace_neurons) {
                trace.push(self.v[j].min(30.0));
            }
        }
        self.input = input;
        chunk
    }
}
