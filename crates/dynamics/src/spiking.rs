//! Spiking networks: Izhikevich (2003) neurons with the published cell types and the classic
//! 800 + 200 random network, and leaky integrate-and-fire neurons on the same connectivity.
//!
//! Two forms of one model: on the CPU a fused step over slices ([`cpu`]), on WebGPU one compute
//! kernel per simulated millisecond (`gpu`). Thalamic noise is drawn on the host from the seed, a
//! chunk at a time, so a seed gives the same drive on every device. Spikes come back per chunk
//! (through the asynchronous readback on a GPU) and stream into the page's raster.

use burn::tensor::Device;
use interplay_models::patching::Progress;
use serde::{Deserialize, Serialize};

use crate::error::{DynamicsError, Result};
use crate::rng::Rng;

pub(crate) mod cpu;
#[cfg(feature = "webgpu")]
pub(crate) mod gpu;

/// Milliseconds simulated between two readbacks.
const CHUNK: usize = 50;

/// The most synapses a network may have: 200 MB in either form (10 000 neurons all-to-all
/// would be 800 MB).
const MAX_SYNAPSES: usize = 25_000_000;

/// The most spikes a raster keeps (8 bytes each, drawn one path segment each): a 100,000-neuron
/// network firing for 10 minutes makes billions, which would exhaust the page's memory. Counts
/// and rates always cover the whole run.
pub const RASTER_MAX: usize = 1_000_000;

/// The most neurons whose membrane potential is recorded (4 bytes per neuron per ms).
pub const TRACES_MAX: usize = 16;

/// Izhikevich's published cell types (a, b, c, d).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellType {
    /// Regular spiking (excitatory, adapting).
    RegularSpiking,
    /// Intrinsically bursting.
    IntrinsicallyBursting,
    /// Chattering (fast rhythmic bursts).
    Chattering,
    /// Fast spiking (inhibitory, no adaptation).
    FastSpiking,
    /// Low-threshold spiking (inhibitory).
    LowThreshold,
}

impl CellType {
    /// (a, b, c, d) from Izhikevich (2003), Fig. 2.
    pub fn abcd(self) -> [f64; 4] {
        match self {
            CellType::RegularSpiking => [0.02, 0.2, -65.0, 8.0],
            CellType::IntrinsicallyBursting => [0.02, 0.2, -55.0, 4.0],
            CellType::Chattering => [0.02, 0.2, -50.0, 2.0],
            CellType::FastSpiking => [0.1, 0.2, -65.0, 2.0],
            CellType::LowThreshold => [0.02, 0.25, -65.0, 2.0],
        }
    }
}

/// Which neuron model the network uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum NeuronModel {
    /// Izhikevich (2003): excitatory cells interpolate RS→CH and inhibitory FS→LTS with r ~ U(0,1)
    /// per neuron (heterogeneous), unless `excitatory_type` / `inhibitory_type` fix one type.
    Izhikevich {
        /// Fix every excitatory cell to one type.
        #[serde(default)]
        excitatory_type: Option<CellType>,
        /// Fix every inhibitory cell to one type.
        #[serde(default)]
        inhibitory_type: Option<CellType>,
    },
    /// Leaky integrate-and-fire with delta synapses: v += (v_rest − v)/τ + I each ms; v ≥ θ
    /// fires, resets and is refractory.
    Lif {
        /// Membrane time constant τ (ms).
        tau_ms: f64,
        /// Threshold θ (mV).
        threshold: f64,
        /// Rest and reset potential (mV).
        rest: f64,
        /// Refractory period (ms).
        refractory_ms: f64,
    },
}

/// A random E/I spiking network driven by thalamic noise (Izhikevich 2003 by default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpikingSpec {
    /// Neuron model.
    pub model: NeuronModel,
    /// Excitatory neurons.
    pub excitatory: usize,
    /// Inhibitory neurons.
    pub inhibitory: usize,
    /// Simulated milliseconds (1 ms steps; Izhikevich's v uses two 0.5 ms half-steps).
    pub ms: usize,
    /// Seed of the heterogeneity, the weights and the noise.
    pub seed: u64,
    /// Thalamic noise amplitude onto excitatory cells (× N(0,1) each ms).
    pub noise_exc: f64,
    /// Thalamic noise amplitude onto inhibitory cells.
    pub noise_inh: f64,
    /// Weights from excitatory cells are `weight_exc` · U(0,1).
    pub weight_exc: f64,
    /// Weights from inhibitory cells are −`weight_inh` · U(0,1).
    pub weight_inh: f64,
    /// Fraction of connections present (1: all-to-all, as in the 2003 paper).
    pub connectivity: f64,
    /// Fixed in-degree: each neuron receives exactly this many synapses, from distinct
    /// presynaptic neurons drawn uniformly (itself included); 0: `connectivity` decides. A
    /// large sparse network costs O(N · k) to draw, store and run.
    pub synapses_per_neuron: usize,
    /// Independent Poisson input spike trains, one per neuron, at this rate (Hz; 0: none),
    /// added to the thalamic noise.
    pub poisson_hz: f64,
    /// Input current of one Poisson input spike.
    pub poisson_weight: f64,
    /// Neurons whose membrane potential is recorded (clipped at the 30 mV spike peak).
    pub trace_neurons: Vec<usize>,
    /// Return every spike (for the raster); counts and rates are always returned.
    pub raster: bool,
}

impl Default for SpikingSpec {
    fn default() -> Self {
        Self {
            model: NeuronModel::Izhikevich {
                excitatory_type: None,
                inhibitory_type: None,
            },
            excitatory: 800,
            inhibitory: 200,
            ms: 1000,
            seed: 1,
            noise_exc: 5.0,
            noise_inh: 2.0,
            weight_exc: 0.5,
            weight_inh: 1.0,
            connectivity: 1.0,
            synapses_per_neuron: 0,
            poisson_hz: 0.0,
            poisson_weight: 20.0,
            trace_neurons: vec![],
            raster: true,
        }
    }
}

/// The outcome of a [`SpikingSpec`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpikingResult {
    /// Total spikes.
    pub spikes: usize,
    /// Mean excitatory rate (Hz).
    pub rate_exc_hz: f64,
    /// Mean inhibitory rate (Hz).
    pub rate_inh_hz: f64,
    /// (ms, neuron) of every spike when the raster was asked for, up to [`RASTER_MAX`].
    pub raster: Vec<(u32, u32)>,
    /// Where the raster stops when the run made more than [`RASTER_MAX`] spikes: it holds the
    /// spikes of the ms before this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raster_until_ms: Option<u32>,
    /// Excitatory spikes per ms.
    pub pop_exc: Vec<u32>,
    /// Inhibitory spikes per ms.
    pub pop_inh: Vec<u32>,
    /// One membrane trace (mV per ms) per `trace_neurons` entry.
    pub traces: Vec<Vec<f32>>,
}

impl SpikingResult {
    /// An empty chunk of `len` ms, for [`Self::record`] to count into.
    fn chunk(len: usize) -> Self {
        Self {
            pop_exc: vec![0; len],
            pop_inh: vec![0; len],
            ..Default::default()
        }
    }

    /// Count ms `k` of a chunk starting at `start` ms of a run of `spec`: who fired, ascending.
    fn record(
        &mut self,
        k: usize,
        start: usize,
        fired: impl Iterator<Item = u32>,
        spec: &SpikingSpec,
    ) {
        let ms = (start + k) as u32;
        for j in fired {
            self.spikes += 1;
            if (j as usize) < spec.excitatory {
                self.pop_exc[k] += 1;
            } else {
                self.pop_inh[k] += 1;
            }
            if spec.raster {
                self.raster.push((ms, j));
            }
        }
    }

    /// Fill in the mean rates of a finished run of `spec`.
    fn finish(&mut self, spec: &SpikingSpec) {
        let secs = spec.ms as f64 / 1000.0;
        let rate = |spikes: &[u32], cells: usize| {
            if cells > 0 {
                spikes.iter().sum::<u32>() as f64 / cells as f64 / secs
            } else {
                0.0
            }
        };
        self.rate_exc_hz = rate(&self.pop_exc, spec.excitatory);
        self.rate_inh_hz = rate(&self.pop_inh, spec.inhibitory);
    }

    /// Merge the next chunk of a streamed run.
    pub fn extend(&mut self, next: SpikingResult) {
        self.spikes += next.spikes;
        if self.raster_until_ms.is_none() {
            let room = RASTER_MAX.saturating_sub(self.raster.len());
            match next.raster.get(room) {
                // Cut at a ms boundary: the raster holds whole milliseconds.
                Some(&(cut, _)) => {
                    self.raster
                        .extend(next.raster.into_iter().take_while(|&(t, _)| t < cut));
                    self.raster_until_ms = Some(cut);
                }
                None => self.raster.extend(next.raster),
            }
        }
        self.pop_exc.extend(next.pop_exc);
        self.pop_inh.extend(next.pop_inh);
        if self.traces.is_empty() {
            self.traces = next.traces;
        } else {
            for (a, b) in self.traces.iter_mut().zip(next.traces) {
                a.extend(b);
            }
        }
    }
}

impl SpikingSpec {
    fn check(&self) -> Result<()> {
        let n = self.excitatory + self.inhibitory;
        let bad = |m: String| Err(DynamicsError::Input(m));
        // Sparse networks grow with their synapses, not N²: up to 100 000 neurons (the
        // synapse cap below still holds).
        let most = if self.synapses_per_neuron > 0 {
            100_000
        } else {
            10_000
        };
        if n == 0 || n > most {
            return bad(
                "the network needs between 1 and 10 000 neurons (up to 100 000 with a fixed \
                 number of synapses per neuron)"
                    .into(),
            );
        }
        if self.ms == 0 || self.ms > 600_000 {
            return bad("simulate between 1 ms and 10 minutes".into());
        }
        if !(0.0..=1.0).contains(&self.connectivity) {
            return bad("connectivity must be in [0, 1]".into());
        }
        for v in [
            self.noise_exc,
            self.noise_inh,
            self.weight_exc,
            self.weight_inh,
        ] {
            if !v.is_finite() {
                return bad("noise and weight scales must be finite".into());
            }
        }
        if self.synapses_per_neuron > n {
            return bad(format!(
                "{} synapses per neuron from {n} neurons: at most {n}",
                self.synapses_per_neuron
            ));
        }
        // Both forms hold every synapse (8 bytes each on the CPU and on the GPU).
        let synapses = if self.synapses_per_neuron > 0 {
            n * self.synapses_per_neuron
        } else {
            (n as f64 * n as f64 * self.connectivity) as usize
        };
        if synapses > MAX_SYNAPSES {
            return bad(format!(
                "{synapses} synapses are more than Interplay simulates ({} million): give the \
                 network fewer synapses per neuron, e.g. 100",
                MAX_SYNAPSES / 1_000_000
            ));
        }
        if self.trace_neurons.len() > TRACES_MAX {
            return bad(format!(
                "{} membrane traces asked for: record at most {TRACES_MAX} neurons",
                self.trace_neurons.len()
            ));
        }
        if let Some(&i) = self.trace_neurons.iter().find(|&&i| i >= n) {
            return bad(format!("neuron {i} does not exist (the network has {n})"));
        }
        if let NeuronModel::Lif { tau_ms, .. } = self.model
            && !(tau_ms >= 1.0)
        {
            return bad("the LIF time constant must be at least 1 ms".into());
        }
        Ok(())
    }

    /// Simulate on `device`; `on_chunk` receives each chunk's spikes as they come (the page
    /// draws them) and `progress(done_ms, total_ms)` may cancel.
    pub async fn run(
        &self,
        device: &Device,
        on_chunk: &mut dyn FnMut(&SpikingResult),
        progress: &mut dyn FnMut(usize, usize) -> Progress,
    ) -> Result<SpikingResult> {
        #[cfg(feature = "webgpu")]
        let mut net = if interplay_models::device::is_cpu(device) {
            Form::Cpu(Box::new(cpu::CpuNetwork::new(self)?))
        } else {
            Form::Gpu(Box::new(gpu::GpuNetwork::new(self, device)?))
        };
        #[cfg(not(feature = "webgpu"))]
        let mut net = {
            let _ = device;
            Form::Cpu(Box::new(cpu::CpuNetwork::new(self)?))
        };
        let mut total = SpikingResult::default();
        let mut start = 0;
        while start < self.ms {
            let len = CHUNK.min(self.ms - start);
            let chunk = match &mut net {
                Form::Cpu(net) => net.chunk(self, start, len),
                #[cfg(feature = "webgpu")]
                Form::Gpu(net) => net.chunk(self, start, len).await?,
            };
            on_chunk(&chunk);
            total.extend(chunk);
            start += len;
            if !progress(start, self.ms).await {
                return Err(DynamicsError::Cancelled);
            }
        }
        total.finish(self);
        Ok(total)
    }
}

/// Where a network runs: the CPU form or the WebGPU kernels; both simulate a chunk at a time.
enum Form {
    Cpu(Box<cpu::CpuNetwork>),
    #[cfg(feature = "webgpu")]
    Gpu(Box<gpu::GpuNetwork>),
}

/// The external drive: thalamic noise (and Poisson input spikes), drawn on the host from the
/// seed's noise stream so every device and form gets the same numbers.
pub(crate) struct Drive {
    n: usize,
    ne: usize,
    noise_exc: f64,
    noise_inh: f64,
    poisson_p: f64,
    poisson_weight: f64,
    rng: Rng,
}

impl Drive {
    pub(crate) fn new(spec: &SpikingSpec, rng: Rng) -> Self {
        Self {
            n: spec.excitatory + spec.inhibitory,
            ne: spec.excitatory,
            noise_exc: spec.noise_exc,
            noise_inh: spec.noise_inh,
            poisson_p: spec.poisson_hz / 1000.0,
            poisson_weight: spec.poisson_weight,
            rng,
        }
    }

    /// Fill `out` (`[ms, N]`, row-major) with the next `out.len() / N` ms of input.
    pub(crate) fn fill(&mut self, out: &mut [f32]) {
        for row in out.chunks_exact_mut(self.n) {
            for (k, x) in row.iter_mut().enumerate() {
                let amp = if k < self.ne {
                    self.noise_exc
                } else {
                    self.noise_inh
                };
                let poisson = if self.poisson_p > 0.0 && self.rng.bernoulli(self.poisson_p) {
                    self.poisson_weight
                } else {
                    0.0
                };
                *x = (amp * self.rng.normal() + poisson) as f32;
            }
        }
    }
}

/// A network's parameters as drawn from its seed, on the host: both forms start from these.
pub(crate) struct Drawn {
    /// Per-neuron (a, b, c, d).
    pub(crate) abcd: [Vec<f32>; 4],
    /// The weights' stream, untouched (`Drawn::incoming` / [`Drawn::sparse`] draw S from it).
    rng_w: Rng,
    /// The noise stream, untouched.
    pub(crate) rng_noise: Rng,
}

impl Drawn {
    /// Draw `spec`'s heterogeneity from its seed (the order is the published MATLAB code's: per
    /// neuron r, then S row by row).
    pub(crate) fn new(spec: &SpikingSpec) -> Result<Self> {
        spec.check()?;
        let (ne, ni) = (spec.excitatory, spec.inhibitory);
        let n = ne + ni;
        let base = Rng::new(spec.seed);
        let mut rng_cells = base.fork(1);
        let rng_w = base.fork(2);
        let rng_noise = base.fork(3);

        // Per-neuron parameters (a, b, c, d); heterogeneous via r ~ U(0,1) as in the 2003 code.
        let mut abcd = [vec![0f32; n], vec![0f32; n], vec![0f32; n], vec![0f32; n]];
        let (exc_t, inh_t) = match &spec.model {
            NeuronModel::Izhikevich {
                excitatory_type,
                inhibitory_type,
            } => (*excitatory_type, *inhibitory_type),
            NeuronModel::Lif { .. } => (None, None),
        };
        for k in 0..n {
            let r = rng_cells.uniform();
            let p = if k < ne {
                exc_t.map(CellType::abcd).unwrap_or([
                    0.02,
                    0.2,
                    -65.0 + 15.0 * r * r,
                    8.0 - 6.0 * r * r,
                ])
            } else {
                inh_t
                    .map(CellType::abcd)
                    .unwrap_or([0.02 + 0.08 * r, 0.25 - 0.05 * r, -65.0, 2.0])
            };
            for (dst, v) in abcd.iter_mut().zip(p) {
                dst[k] = v as f32;
            }
        }
        Ok(Self {
            abcd,
            rng_w,
            rng_noise,
        })
    }

    /// The synapses present by postsynaptic neuron (the WebGPU form: a neuron gathers its
    /// input): i's presynaptic neurons, ascending, are `pre[start[i]..start[i + 1]]` with
    /// weights `w[..]` at the same places.
    #[cfg(feature = "webgpu")]
    pub(crate) fn incoming(&self, spec: &SpikingSpec) -> (Vec<u32>, Vec<u32>, Vec<f32>) {
        let n = spec.excitatory + spec.inhibitory;
        let mut start = vec![0u32; n + 1];
        let (mut pre, mut w) = (Vec::new(), Vec::new());
        draw_synapses(spec, self.rng_w.clone(), |i, j, x| {
            start[i + 1] += 1;
            pre.push(j as u32);
            w.push(x);
        });
        for i in 0..n {
            start[i + 1] += start[i];
        }
        (start, pre, w)
    }

    /// The synapses present by presynaptic neuron (the CPU form: a spike adds one list): j's
    /// (post, weight) pairs, ascending post, are `outgoing[start[j]..start[j + 1]]`. Two passes
    /// over the same draws (count, then place) build the lists in place, with no second copy.
    pub(crate) fn sparse(&self, spec: &SpikingSpec) -> (Vec<usize>, Vec<(u32, f32)>) {
        let n = spec.excitatory + spec.inhibitory;
        let mut start = vec![0usize; n + 1];
        draw_synapses(spec, self.rng_w.clone(), |_, j, _| start[j + 1] += 1);
        for j in 0..n {
            start[j + 1] += start[j];
        }
        let mut next = start.clone();
        let mut outgoing = vec![(0u32, 0f32); start[n]];
        draw_synapses(spec, self.rng_w.clone(), |i, j, w| {
            outgoing[next[j]] = (i as u32, w);
            next[j] += 1;
        });
        (start, outgoing)
    }
}

/// Draw S row by row (postsynaptic i, presynaptic j ascending) from `rng`, calling
/// `present(i, j, w)` for each synapse present.
fn draw_synapses(spec: &SpikingSpec, mut rng: Rng, mut present: impl FnMut(usize, usize, f32)) {
    let (ne, n) = (spec.excitatory, spec.excitatory + spec.inhibitory);
    let weight = |j: usize, u: f64| {
        if j < ne {
            (spec.weight_exc * u) as f32
        } else {
            (-spec.weight_inh * u) as f32
        }
    };
    let k = spec.synapses_per_neuron;
    if k > 0 {
        let mut pre = Vec::with_capacity(k);
        // `picked[j] == i + 1`: neuron i already has j (no clearing between neurons).
        let mut picked = vec![0usize; n];
        for i in 0..n {
            // Floyd's sampling: k distinct presynaptic neurons, every subset equally likely.
            pre.clear();
            for m in n - k..n {
                let t = ((rng.uniform() * (m + 1) as f64) as usize).min(m);
                let j = if picked[t] == i + 1 { m } else { t };
                picked[j] = i + 1;
                pre.push(j);
            }
            pre.sort_unstable();
            for &j in &pre {
                present(i, j, weight(j, rng.uniform()));
            }
        }
        return;
    }
    for i in 0..n {
        for j in 0..n {
            let u = rng.uniform();
            if spec.connectivity < 1.0 && !rng.bernoulli(spec.connectivity) {
                continue;
            }
            present(i, j, weight(j, u));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fixed_in_degree_gives_every_neuron_k_distinct_inputs() {
        let spec = SpikingSpec {
            excitatory: 400,
            inhibitory: 100,
            synapses_per_neuron: 30,
            ..SpikingSpec::default()
        };
        let (start, outgoing) = Drawn::new(&spec).unwrap().sparse(&spec);
        let mut inputs = vec![Vec::new(); 500];
        for j in 0..500 {
            for &(i, w) in &outgoing[start[j]..start[j + 1]] {
                inputs[i as usize].push(j);
                assert_eq!(w >= 0.0, j < 400, "sign of {j}'s weight");
            }
        }
        for (i, pre) in inputs.iter().enumerate() {
            let mut distinct = pre.clone();
            distinct.dedup();
            assert_eq!(distinct.len(), 30, "neuron {i}");
        }
        // Uniform over presynaptic neurons: each sends ~30 on average.
        let sent = (0..500).map(|j| start[j + 1] - start[j]);
        assert!(sent.clone().max().unwrap() < 70 && sent.min().unwrap() > 3);
        let too_many = SpikingSpec {
            synapses_per_neuron: 501,
            ..spec
        };
        assert!(Drawn::new(&too_many).is_err());
    }

    #[test]
    fn a_raster_stops_at_a_whole_ms_past_its_cap_while_counts_go_on() {
        // Chunks of 10 ms with 60,000 spikes each: the cap falls inside the 17th chunk.
        let chunk = |c: u32| SpikingResult {
            spikes: 60_000,
            raster: (0..60_000)
                .map(|i| (c * 10 + i / 6_000, i % 6_000))
                .collect(),
            pop_exc: vec![6_000; 10],
            pop_inh: vec![0; 10],
            ..Default::default()
        };
        let mut total = SpikingResult::default();
        for c in 0..20 {
            total.extend(chunk(c));
        }
        assert_eq!(total.spikes, 1_200_000);
        assert_eq!(total.pop_exc.len(), 200);
        // Spike 1,000,000 is the first of ms 166: the raster keeps ms 0..166 whole.
        assert_eq!(total.raster_until_ms, Some(166));
        assert_eq!(total.raster.len(), 166 * 6_000);
        assert!(total.raster.len() <= RASTER_MAX);
        let too_many = SpikingSpec {
            trace_neurons: (0..=TRACES_MAX).collect(),
            ..SpikingSpec::default()
        };
        assert!(too_many.check().is_err());
    }
}
