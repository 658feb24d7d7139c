//! The reservoir's WebGPU form: a whole chunk of steps in one dispatch (a tensor step was ~10
//! operations, each its own dispatch). One workgroup runs the chunk: each of its threads owns
//! the units `i ≡ thread (mod 256)`, and a storage barrier between steps lets every thread read
//! the state the others just wrote — no second dispatch per step, which a grid of workgroups
//! would need (WebGPU has no barrier across workgroups). Reservoirs have at most 4096 units, a
//! few thousand multiply-adds per thread and step.
//!
//! The equations are the CPU form's ([`cpu`](super::cpu)) term for term, in the same order: each
//! unit's recurrent sum over its compressed row with four running sums, the same rational tanh.
//! The GPU compiler may still fuse a multiply and an add (lavapipe does), so the forms agree to
//! rounding, not bit for bit.

use burn::backend::Cube;
use burn::backend::wgpu::CubeTensor;
use burn::tensor::{Device, Tensor};
use cubecl::prelude::{CubeCount, CubeDim};
use interplay_models::device::read_f32;
use interplay_models::patching::Progress;

use super::{Adaptation, CHUNK, ReservoirWeights, RunOutput};
use crate::error::{DynamicsError, Result};
use crate::spiking::gpu::{empty_f32, upload, upload_u32};

/// Threads in the one workgroup: WebGPU's guaranteed maximum.
const THREADS: usize = 256;

/// Multiply-adds one dispatch may do (recurrent entries plus input weights, times steps): a
/// 500-unit ESN at 10 % runs its 250-step chunk in one dispatch, a dense 4096-unit one a step.
const WORK_PER_DISPATCH: usize = 1 << 24;

/// The kernel, in CubeCL's Rust subset (compiled to WGSL at first launch). Literals carry their
/// type: an unsuffixed float would be an f64 here.
mod kernels {
    use cubecl::prelude::*;

    /// [`cpu::tanh`](super::super::cpu): the same rational function, the same constants (as
    /// written there), the same Horner order.
    #[cube]
    #[allow(clippy::excessive_precision)]
    fn tanh_rational(v: f32) -> f32 {
        // Comparisons keep a NaN a NaN, as the CPU's `clamp` does.
        let high = 7.905_311_107_635_498_05f32;
        let low = 0.0f32 - high;
        let x = select(v > high, high, select(v < low, low, v));
        let x2 = x * x;
        let p1 = x2 * (0.0f32 - 2.760_768_477_423_55e-16f32) + 2.000_187_904_824_77e-13f32;
        let p2 = p1 * x2 - 8.604_671_522_137_35e-11f32;
        let p3 = p2 * x2 + 5.122_297_090_371_14e-08f32;
        let p4 = p3 * x2 + 1.485_722_357_179_79e-05f32;
        let p5 = p4 * x2 + 6.372_619_288_754_36e-04f32;
        let p = (p5 * x2 + 4.893_524_558_917_86e-03f32) * x;
        let q1 = x2 * 1.198_258_394_667_02e-06f32 + 1.185_347_056_866_54e-04f32;
        let q2 = q1 * x2 + 2.268_434_632_439_00e-03f32;
        let q = q2 * x2 + 4.893_525_185_543_85e-03f32;
        p / q
    }

    /// Entries `lo..hi` of the compressed rows times the state half at `src`, with the CPU's
    /// four running sums and sequential tail.
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn row_dot(
        graph: &[u32],
        w: &[f32],
        // `&mut` only because the kernel's state is (CubeCL passes it on as it is).
        state: &mut [f32],
        cols: usize,
        lo: usize,
        hi: usize,
        src: usize,
    ) -> f32 {
        let quads = (hi - lo) / 4usize;
        let mut a0 = 0.0f32;
        let mut a1 = 0.0f32;
        let mut a2 = 0.0f32;
        let mut a3 = 0.0f32;
        for q in 0..quads {
            let b = lo + q * 4usize;
            a0 += w[b] * state[src + graph[cols + b] as usize];
            a1 += w[b + 1usize] * state[src + graph[cols + b + 1usize] as usize];
            a2 += w[b + 2usize] * state[src + graph[cols + b + 2usize] as usize];
            a3 += w[b + 3usize] * state[src + graph[cols + b + 3usize] as usize];
        }
        let mut tail = 0.0f32;
        for k in lo + quads * 4usize..hi {
            tail += w[k] * state[src + graph[cols + k] as usize];
        }
        (a0 + a1) + (a2 + a3) + tail
    }

    /// `len` steps of the reservoir, from step `first` of the run, reading input rows and
    /// writing record rows `at..at + len` (of `rows`).
    ///
    /// # Shapes
    /// - `state`: `[2N + N]`: two halves of the state (the present one at `parity`), the
    ///   inhibitory gains;
    /// - `params`: `[N·I + N + N]`: W_in row-major `[N, I]`, the bias, the adaptation targets;
    /// - `graph`: u32 `[2(N + 1) + S]`: row starts of the excitatory (or all) entries, row
    ///   starts of the inhibitory ones, then each entry's column (presynaptic unit);
    ///   `w`: `[S]`, the entries' weights;
    /// - `input`: `[rows, I]`; `record`: `[rows·N (+ rows·2·threads)]`: the states, then (E/I
    ///   reservoirs) per step each thread's sums of excitatory and inhibitory input.
    #[cube(launch)]
    // `div_ceil` is not in CubeCL's subset.
    #[allow(clippy::too_many_arguments, clippy::manual_div_ceil)]
    pub fn esn_chunk(
        state: &mut [f32],
        params: &[f32],
        graph: &[u32],
        w: &[f32],
        input: &[f32],
        record: &mut [f32],
        n: usize,
        width: usize,
        len: usize,
        at: usize,
        rows: usize,
        parity: usize,
        first: usize,
        until: usize,
        eta: f32,
        keep: f32,
        take: f32,
        ei: u32,
        threads: usize,
    ) {
        let tid = ABSOLUTE_POS;
        let gains = 2usize * n;
        let cols = 2usize * n + 2usize;
        let per = (n + threads - 1usize) / threads;
        for step in 0..len {
            let t = at + step;
            let src = ((parity + step) % 2usize) * n;
            let dst = n - src;
            let mut sum_exc = 0.0f32;
            let mut sum_inh = 0.0f32;
            for k in 0..per {
                let i = tid + k * threads;
                if i < n {
                    let mut drive = 0.0f32;
                    for c in 0..width {
                        drive += input[t * width + c] * params[i * width + c];
                    }
                    let exc = row_dot(
                        graph,
                        w,
                        state,
                        cols,
                        graph[i] as usize,
                        graph[i + 1usize] as usize,
                        src,
                    );
                    let mut rec = exc;
                    if ei == 1u32 {
                        let inh = row_dot(
                            graph,
                            w,
                            state,
                            cols,
                            graph[n + 1usize + i] as usize,
                            graph[n + 2usize + i] as usize,
                            src,
                        ) * state[gains + i];
                        sum_exc += exc;
                        sum_inh += inh;
                        rec = exc + inh;
                    }
                    let mut pre = rec + (drive + params[n * width + i]);
                    // E/I units have non-negative rates (a NaN passes, as on the CPU).
                    if ei == 1u32 && pre <= 0.0f32 {
                        pre = 0.0f32;
                    }
                    let x = state[src + i] * keep + tanh_rational(pre) * take;
                    state[dst + i] = x;
                    record[t * n + i] = x;
                    if first + step < until {
                        let mut g = state[gains + i] + (x - params[n * width + n + i]) * eta;
                        if g < 0.0f32 {
                            g = 0.0f32;
                        }
                        state[gains + i] = g;
                    }
                }
            }
            // This thread's share of the step's E/I balance; the host adds the shares.
            if ei == 1u32 {
                let share = rows * n + (t * 2usize) * threads + tid;
                record[share] = sum_exc;
                record[share + threads] = sum_inh;
            }
            // Every thread's new state visible to all before the next step. Nothing else is
            // between two barriers: a first version had thread 0 add the shares after the
            // barrier while the others went on, and on lavapipe the last steps of each chunk
            // were then never written (cause not found; this form has no such step).
            sync_storage();
        }
    }
}

/// A reservoir on a WebGPU device: its weights in device buffers.
pub(crate) struct GpuReservoir {
    n: usize,
    width: usize,
    ei: bool,
    /// Recurrent entries (the work of one step).
    nnz: usize,
    keep: f32,
    take: f32,
    /// η and the number of adaptation steps (0: none).
    eta: f32,
    until: usize,
    /// `[N·I + N + N]`: W_in, bias, adaptation targets.
    params: CubeTensor,
    /// u32 `[2(N + 1) + S]`: excitatory row starts, inhibitory row starts, columns.
    graph: CubeTensor,
    /// `[S]`.
    w: CubeTensor,
    device: Device,
}

impl GpuReservoir {
    pub(crate) fn new(
        weights: &ReservoirWeights,
        leak: f64,
        adaptation: Option<&(Adaptation, Vec<f64>)>,
        device: &Device,
    ) -> Result<Self> {
        let n = weights.units;
        let ne = weights.excitatory.unwrap_or(n);
        // Row i's entries W[i][j] by ascending j: those from excitatory units (all units for a
        // signed reservoir) in one set of rows, the inhibitory ones in another, as the CPU has.
        let mut start = Vec::with_capacity(2 * n + 2);
        let (mut cols, mut vals) = (Vec::new(), Vec::new());
        for part in [0..ne, ne..n] {
            start.push(cols.len() as u32);
            for row in weights.w.chunks_exact(n) {
                for j in part.clone() {
                    if row[j] != 0.0 {
                        cols.push(j as u32);
                        vals.push(row[j] as f32);
                    }
                }
                start.push(cols.len() as u32);
            }
        }
        let nnz = cols.len();
        let mut graph = start;
        graph.extend(cols);
        // A reservoir with no recurrent weight still binds a buffer (WebGPU has no empty one).
        if vals.is_empty() {
            vals.push(0.0);
        }
        let mut params: Vec<f32> = weights.w_in.iter().map(|&v| v as f32).collect();
        params.extend(weights.bias.iter().map(|&v| v as f32));
        match adaptation {
            Some((_, targets)) => params.extend(targets.iter().map(|&v| v as f32)),
            None => params.extend(std::iter::repeat_n(0f32, n)),
        }
        let params = upload(params, device)?;
        let graph = upload_u32(&graph, &params);
        Ok(Self {
            n,
            width: weights.inputs,
            ei: weights.excitatory.is_some(),
            nnz,
            keep: (1.0 - leak) as f32,
            take: leak as f32,
            eta: adaptation.map_or(0.0, |(a, _)| a.eta as f32),
            until: adaptation.map_or(0, |(a, _)| a.steps),
            params,
            graph,
            w: upload(vals, device)?,
            device: device.clone(),
        })
    }

    /// Drive from a zero state with `inputs` (`[T, I]`, checked by the caller): a dispatch and a
    /// readback per chunk, each chunk of states handed to `on_states(first step, [len, N])`.
    pub(crate) async fn run(
        &self,
        inputs: &[f64],
        on_states: &mut (dyn FnMut(usize, &[f32]) + Send),
        progress: &mut dyn FnMut(usize, usize) -> Progress,
    ) -> Result<RunOutput> {
        let (n, width) = (self.n, self.width);
        let steps = inputs.len() / width;
        // The state at zero, gains at one.
        let mut init = vec![0f32; 3 * n];
        init[2 * n..3 * n].fill(1.0);
        let state = upload(init, &self.device)?;
        let client = state.client.clone();
        let mut out = RunOutput {
            states: Vec::with_capacity(steps * n),
            ..Default::default()
        };
        let mut start = 0;
        while start < steps {
            let len = CHUNK.min(steps - start);
            let u: Vec<f32> = inputs[start * width..(start + len) * width]
                .iter()
                .map(|&v| v as f32)
                .collect();
            let input = upload(u, &self.device)?;
            // The balance shares only for E/I reservoirs.
            let size = len * n + if self.ei { len * 2 * THREADS } else { 0 };
            // Steps per dispatch: a bounded amount of work each, so a large dense reservoir
            // never holds the GPU for long in one dispatch (a driver's watchdog would reset it).
            let per_step = self.nnz + n * (width + 1);
            let span = (WORK_PER_DISPATCH / per_step.max(1)).clamp(1, len);
            let record = empty_f32(&[size], &state);
            for at in (0..len).step_by(span) {
                kernels::esn_chunk::launch(
                    &client,
                    CubeCount::Static(1, 1, 1),
                    CubeDim::new_1d(THREADS as u32),
                    state.clone().into_buffer_arg(),
                    self.params.clone().into_buffer_arg(),
                    self.graph.clone().into_buffer_arg(),
                    self.w.clone().into_buffer_arg(),
                    input.clone().into_buffer_arg(),
                    record.clone().into_buffer_arg(),
                    n,
                    width,
                    span.min(len - at),
                    at,
                    len,
                    (start + at) % 2,
                    start + at,
                    // The adaptation window as the kernel's 32-bit scalar can hold it.
                    self.until.min(steps),
                    self.eta,
                    self.keep,
                    self.take,
                    u32::from(self.ei),
                    THREADS,
                );
            }
            let data = read_f32(Tensor::<1>::from_primitive::<Cube>(record)).await?;
            let (states, balance) = data.split_at(len * n);
            if states.iter().any(|v| !v.is_finite()) {
                return Err(super::diverged());
            }
            on_states(start, states);
            out.states.extend_from_slice(states);
            if self.ei {
                // Mean excitatory and inhibitory input: the threads' shares added in order.
                let mean = |shares: &[f32]| shares.iter().sum::<f32>() / n as f32;
                out.balance.extend(
                    balance
                        .chunks_exact(2 * THREADS)
                        .map(|s| (mean(&s[..THREADS]), mean(&s[THREADS..]))),
                );
            }
            start += len;
            if !progress(start, steps).await {
                return Err(DynamicsError::Cancelled);
            }
        }
        if self.ei {
            let state = read_f32(Tensor::<1>::from_primitive::<Cube>(state)).await?;
            out.gains = state[2 * n..3 * n].to_vec();
        }
        Ok(out)
    }
}
