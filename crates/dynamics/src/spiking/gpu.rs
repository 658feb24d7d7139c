//! The spiking networks' WebGPU form: one compute kernel per simulated millisecond (a tensor
//! step was ~15 operations, each its own dispatch). The equations are the CPU form's
//! ([`cpu`](super::cpu)), term for term in the same order; each neuron gathers its synaptic input
//! over its own presynaptic list (compressed rows, ascending), as the CPU form adds the fired
//! neurons' lists, so a sparse 10 000-neuron network costs what its synapses cost.
//!
//! State lives in one buffer of two halves, `[4, N]` (v, u, v, u; LIF keeps its refractory
//! time where Izhikevich keeps u): a step reads one half and writes the other, so who fired in
//! the last step is read from v itself and needs no buffer of its own. A step also writes who
//! fired and the new v into a record, `[2, T, N]`, that comes back once per chunk.

use burn::backend::Cube;
use burn::backend::wgpu::CubeTensor;
use burn::tensor::{DType, Device, Tensor, TensorData};
use cubecl::prelude::{CubeCount, CubeDim, CubeElement};
use interplay_models::device::read_f32;

use super::{Drawn, Drive, NeuronModel, SpikingResult, SpikingSpec};
use crate::error::{DynamicsError, Result};

/// Threads per workgroup: small enough for every WebGPU adapter (SwiftShader runs a
/// workgroup's invocations together on one core).
const WORKGROUP: u32 = 64;

/// The kernels, in CubeCL's Rust subset (compiled to WGSL at first launch). Literals carry
/// their type: an unsuffixed float would be an f64 here.
mod kernels {
    use cubecl::prelude::*;

    /// Neuron `i`'s synaptic input: the weights of its presynaptic neurons whose v (in the
    /// half of `state` at `src`) reached `threshold`, added in ascending presynaptic order as
    /// the CPU form adds them. Shapes as [`izhikevich_step`]'s.
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn synaptic_input(
        // `&mut` only because the kernels' state is (CubeCL passes it on as it is).
        state: &mut [f32],
        graph: &[u32],
        w: &[f32],
        n: usize,
        i: usize,
        src: usize,
        all_to_all: u32,
        threshold: f32,
    ) -> f32 {
        let mut syn = 0.0f32;
        let lo = graph[i] as usize;
        for k in lo..graph[i + 1] as usize {
            let mut j = k - lo;
            if all_to_all == 0u32 {
                j = graph[n + 1usize + k] as usize;
            }
            if state[src + j] >= threshold {
                syn += w[k];
            }
        }
        syn
    }

    /// One ms of the Izhikevich network for neuron `ABSOLUTE_POS`.
    ///
    /// # Shapes
    /// - `state`: `[2, 2, N]`, read from half `parity`, written to the other;
    /// - `cells`: `[4, N]`, a | b | c | d; `input`: `[T_in, N]`, row `row` is this ms's drive;
    /// - `graph`: `[N + 1 + S]`, u32: row starts, then the presynaptic neuron of each of the S
    ///   synapses, by postsynaptic neuron (just the row starts when `all_to_all`: synapse k
    ///   of a row comes from neuron k); `w`: `[S]`, their weights;
    /// - `record`: `[2, T, N]`, fired (0/1) then v, row `at`.
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn izhikevich_step(
        state: &mut [f32],
        cells: &[f32],
        input: &[f32],
        graph: &[u32],
        w: &[f32],
        record: &mut [f32],
        n: usize,
        row: usize,
        at: usize,
        len: usize,
        parity: usize,
        all_to_all: u32,
    ) {
        let i = ABSOLUTE_POS;
        if i < n {
            let src = parity * 2usize * n;
            let dst = (1usize - parity) * 2usize * n;
            let syn = synaptic_input(state, graph, w, n, i, src, all_to_all, 30.0f32);
            let mut v = state[src + i];
            let mut u = state[src + n + i];
            let mut fired = 0.0f32;
            if v >= 30.0f32 {
                fired = 1.0f32;
                v = cells[2usize * n + i];
                u += cells[3usize * n + i];
            }
            let x = input[row * n + i] + syn;
            // Two 0.5 ms half-steps for v (numerical stability, as in the paper).
            let dv = v * v * 0.04f32 + v * 5.0f32 + 140.0f32 - u + x;
            v += dv * 0.5f32;
            let dv = v * v * 0.04f32 + v * 5.0f32 + 140.0f32 - u + x;
            v += dv * 0.5f32;
            u += cells[i] * (cells[n + i] * v - u);
            state[dst + i] = v;
            state[dst + n + i] = u;
            record[at * n + i] = fired;
            record[(len + at) * n + i] = v;
        }
    }

    /// One ms of the LIF network for neuron `ABSOLUTE_POS` (shapes as
    /// [`izhikevich_step`]'s; the refractory time left is kept where u is).
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn lif_step(
        state: &mut [f32],
        input: &[f32],
        graph: &[u32],
        w: &[f32],
        record: &mut [f32],
        n: usize,
        row: usize,
        at: usize,
        len: usize,
        parity: usize,
        all_to_all: u32,
        threshold: f32,
        rest: f32,
        tau: f32,
        refractory: f32,
    ) {
        let i = ABSOLUTE_POS;
        if i < n {
            let src = parity * 2usize * n;
            let dst = (1usize - parity) * 2usize * n;
            let syn = synaptic_input(state, graph, w, n, i, src, all_to_all, threshold);
            let mut v = state[src + i];
            let mut r = state[src + n + i] - 1.0f32;
            if r < 0.0f32 {
                r = 0.0f32;
            }
            let mut fired = 0.0f32;
            if v >= threshold {
                fired = 1.0f32;
                v = rest;
                r = refractory;
            }
            let mut active = 0.0f32;
            if r <= 0.0f32 {
                active = 1.0f32;
            }
            v += ((-v + rest) / tau + (input[row * n + i] + syn)) * active;
            state[dst + i] = v;
            state[dst + n + i] = r;
            record[at * n + i] = fired;
            record[(len + at) * n + i] = v;
        }
    }
}

/// A spiking network on a WebGPU device: parameters, weights and state in device buffers.
pub(crate) struct GpuNetwork {
    model: NeuronModel,
    pub(crate) drive: Drive,
    n: usize,
    /// `[4, N]`: two halves of (v, u), the present one at `parity`.
    state: CubeTensor,
    /// `[4, N]`: a | b | c | d.
    cells: CubeTensor,
    /// u32 `[N + 1 + S]`: row starts, then each synapse's presynaptic neuron, by postsynaptic
    /// (only the row starts when every neuron receives from every neuron).
    graph: CubeTensor,
    all_to_all: bool,
    /// `[S]`: the synapses' weights, in `graph`'s order.
    w: CubeTensor,
    /// Which half of `state` holds the present.
    parity: usize,
    device: Device,
}

/// `tensor`'s device buffer; the kernels index it as a dense row-major f32 array. (With Burn's
/// `fusion` feature the primitive would be a fusion handle and this would not compile.)
pub(crate) fn primitive<const D: usize>(tensor: Tensor<D>) -> Result<CubeTensor> {
    let p = tensor.try_into_primitive::<Cube>().map_err(|e| {
        DynamicsError::Input(format!("the Dynamics kernels need a WebGPU device: {e:?}"))
    })?;
    if !p.is_contiguous() || p.dtype != DType::F32 {
        return Err(DynamicsError::Input(
            "the Dynamics kernels need a contiguous f32 tensor".into(),
        ));
    }
    Ok(p)
}

/// `data` as a flat f32 buffer on `device`.
pub(crate) fn upload(data: Vec<f32>, device: &Device) -> Result<CubeTensor> {
    let len = data.len();
    primitive(Tensor::<1>::from_data(TensorData::new(data, [len]), device))
}

/// `data` as a u32 buffer beside `like` (its client and device).
pub(crate) fn upload_u32(data: &[u32], like: &CubeTensor) -> CubeTensor {
    let client = &like.client;
    CubeTensor::new_contiguous(
        client.clone(),
        like.device.clone(),
        [data.len()].into(),
        client.create_from_slice(u32::as_bytes(data)),
        DType::U32,
    )
}

pub(crate) use interplay_models::device::empty_f32;

impl GpuNetwork {
    /// Build `spec`'s network from its seed: the same draws as the CPU form's.
    pub(crate) fn new(spec: &SpikingSpec, device: &Device) -> Result<Self> {
        let drawn = Drawn::new(spec)?;
        let n = spec.excitatory + spec.inhibitory;
        let (v, u) = match &spec.model {
            NeuronModel::Izhikevich { .. } => {
                let v = vec![-65f32; n];
                let u = drawn.abcd[1].iter().zip(&v).map(|(b, v)| b * v).collect();
                (v, u)
            }
            NeuronModel::Lif { rest, .. } => (vec![*rest as f32; n], vec![0.0; n]),
        };
        let mut state = v;
        state.extend(u);
        state.extend_from_within(..);
        let upload = |data: Vec<f32>, shape: [usize; 2]| {
            primitive(Tensor::<2>::from_data(TensorData::new(data, shape), device))
        };
        let state = upload(state, [4, n])?;
        let (start, pre, mut w) = drawn.incoming(spec);
        // A network with no synapses still binds a buffer (WebGPU has no empty bindings).
        if w.is_empty() {
            w.push(0.0);
        }
        // Each is one buffer: past the device's largest binding the kernel would fail at its
        // first readback with no word of why.
        let bytes = ((n + 1 + pre.len()) * size_of::<u32>()) as u64;
        let limit = state.client.properties().memory.max_page_size;
        if bytes > limit {
            return Err(DynamicsError::Input(format!(
                "{} synapses need {} MB in one GPU buffer, more than this GPU's {} MB: run this \
                 network on the CPU, or give it fewer synapses per neuron",
                pre.len(),
                bytes >> 20,
                limit >> 20
            )));
        }
        // All-to-all: a row's synapse k comes from neuron k, so the N² indices stay home.
        let all_to_all = pre.len() == n * n;
        let mut graph = start;
        if !all_to_all {
            graph.extend(pre);
        }
        let graph = upload_u32(&graph, &state);
        let Drawn {
            abcd, rng_noise, ..
        } = drawn;
        Ok(Self {
            model: spec.model.clone(),
            drive: Drive::new(spec, rng_noise),
            n,
            state,
            cells: upload(abcd.concat(), [4, n])?,
            w: {
                let s = w.len();
                upload(w, [1, s])?
            },
            graph,
            all_to_all,
            parity: 0,
            device: device.clone(),
        })
    }

    /// The next `len` ms of drive, `[len, N]`, drawn on the host and uploaded.
    pub(crate) fn noise(&mut self, len: usize) -> Tensor<2> {
        let mut noise = vec![0f32; len * self.n];
        self.drive.fill(&mut noise);
        Tensor::<2>::from_data(TensorData::new(noise, [len, self.n]), &self.device)
    }

    /// A record for `len` ms, `[2, len, N]`: who fired, then v.
    pub(crate) fn record(&self, len: usize) -> CubeTensor {
        empty_f32(&[2, len, self.n], &self.state)
    }

    /// Advance 1 ms with row `row` of `input` (`[T, N]`) as the drive, recording into row `at`
    /// of `record` (`[2, len, N]`): one dispatch.
    pub(crate) fn launch(
        &mut self,
        input: &CubeTensor,
        row: usize,
        record: &CubeTensor,
        at: usize,
    ) {
        let n = self.n;
        let len = record.meta.shape()[1];
        let client = self.state.client.clone();
        let count = CubeCount::Static((n as u32).div_ceil(WORKGROUP), 1, 1);
        let dim = CubeDim::new_1d(WORKGROUP);
        let (state, graph, w) = (self.state.clone(), self.graph.clone(), self.w.clone());
        let (input, out) = (input.clone(), record.clone());
        match self.model {
            NeuronModel::Izhikevich { .. } => kernels::izhikevich_step::launch(
                &client,
                count,
                dim,
                state.into_buffer_arg(),
                self.cells.clone().into_buffer_arg(),
                input.into_buffer_arg(),
                graph.into_buffer_arg(),
                w.into_buffer_arg(),
                out.into_buffer_arg(),
                n,
                row,
                at,
                len,
                self.parity,
                u32::from(self.all_to_all),
            ),
            NeuronModel::Lif {
                tau_ms,
                threshold,
                rest,
                refractory_ms,
            } => kernels::lif_step::launch(
                &client,
                count,
                dim,
                state.into_buffer_arg(),
                input.into_buffer_arg(),
                graph.into_buffer_arg(),
                w.into_buffer_arg(),
                out.into_buffer_arg(),
                n,
                row,
                at,
                len,
                self.parity,
                u32::from(self.all_to_all),
                threshold as f32,
                rest as f32,
                tau_ms as f32,
                refractory_ms as f32,
            ),
        }
        self.parity = 1 - self.parity;
    }
}

impl GpuNetwork {
    /// Simulate `len` ms from `start` ms of a run of `spec` (one chunk of
    /// [`SpikingSpec::run`]): a dispatch per ms, one readback.
    pub(crate) async fn chunk(
        &mut self,
        spec: &SpikingSpec,
        start: usize,
        len: usize,
    ) -> Result<SpikingResult> {
        let n = self.n;
        let input = primitive(self.noise(len))?;
        let record = self.record(len);
        for k in 0..len {
            self.launch(&input, k, &record, k);
        }
        let data = read_f32(Tensor::<3>::from_primitive::<Cube>(record)).await?;
        let (fired, v) = data.split_at(len * n);
        let mut chunk = SpikingResult::chunk(len);
        for (k, row) in fired.chunks_exact(n).enumerate() {
            let who = row.iter().enumerate().filter(|e| *e.1 > 0.5);
            chunk.record(k, start, who.map(|(j, _)| j as u32), spec);
        }
        chunk.traces = spec
            .trace_neurons
            .iter()
            .map(|&j| v.iter().skip(j).step_by(n).map(|&x| x.min(30.0)).collect())
            .collect();
        Ok(chunk)
    }
}
