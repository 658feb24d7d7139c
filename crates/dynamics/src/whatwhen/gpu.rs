//! The what/when readouts on WebGPU: per simulated ms, the network's kernel and one readout
//! kernel (traces, prediction, error, the three-factor or RLS update, consolidation at the end
//! of a trial) — two dispatches per ms, where tensor code took ~15. The readout kernel is one
//! workgroup that owns the neurons by thread, as the reservoir kernel does: its sums over all
//! neurons are per-thread shares that every thread adds up in the same order after a storage
//! barrier, so no thread works alone between barriers. The equations are the CPU learner's term
//! for term; only the order of those sums differs.

use burn::backend::Cube;
use burn::backend::wgpu::CubeTensor;
use burn::tensor::{Device, Tensor};
use cubecl::prelude::{CubeCount, CubeDim};
use interplay_models::device::read_f32;

use super::{Rule, WhatWhenSpec};
use crate::error::Result;
use crate::spiking::gpu::{GpuNetwork, empty_f32, upload};

/// Threads in the readout's one workgroup: WebGPU's guaranteed maximum.
const THREADS: usize = 256;

/// The kernel, in CubeCL's Rust subset. Literals carry their type.
mod kernels {
    use cubecl::prelude::*;

    /// The sum of the threads' shares in slot `q` of the scratch at `scratch` (every thread
    /// adds them in the same order, so all get the same total).
    #[cube]
    fn total(learn: &mut [f32], scratch: usize, q: usize, threads: usize) -> f32 {
        let mut s = 0.0f32;
        for k in 0..threads {
            s += learn[scratch + q * threads + k];
        }
        s
    }

    /// Ms `t` of a trial for every readout.
    ///
    /// # Shapes
    /// - `record`: `[2, T, N]`, the network's record of this trial (fired 0/1, then v);
    /// - `learn`: `[N + 2·N·C + N + (2C + 2)·threads]`: traces r, this trial's weights w and
    ///   the consolidated w_slow (`[N, C]` each), the RLS gain k, per-thread shares (y by class,
    ///   prediction by class, |r|², r·k);
    /// - `p`: RLS `[N, N]` (one unused entry for the three-factor rule);
    /// - `trial`: `[N + T·C + T]`: each neuron's trace decay, targets `[T, C]`, the gate `[T]`;
    /// - `out`: `[T, C]`: the consolidated readout's prediction.
    #[cube(launch)]
    // `div_ceil` is not in CubeCL's subset.
    #[allow(clippy::too_many_arguments, clippy::manual_div_ceil)]
    pub fn readout_step(
        record: &[f32],
        learn: &mut [f32],
        p: &mut [f32],
        trial: &[f32],
        out: &mut [f32],
        n: usize,
        classes: usize,
        t_len: usize,
        t: usize,
        rls: u32,
        eta: f32,
        kappa: f32,
        threads: usize,
    ) {
        let tid = ABSOLUTE_POS;
        let per = (n + threads - 1usize) / threads;
        let w = n;
        let ws = n + n * classes;
        let kk = n + 2usize * n * classes;
        let scratch = kk + n;
        let targets = n;
        let gates = n + t_len * classes;
        // Traces, this thread's shares of y, the prediction and |r|²; a trial starts from the
        // consolidated weights.
        for c in 0..classes {
            learn[scratch + c * threads + tid] = 0.0f32;
            learn[scratch + (classes + c) * threads + tid] = 0.0f32;
        }
        let mut rr = 0.0f32;
        for k in 0..per {
            let i = tid + k * threads;
            if i < n {
                let r = learn[i] * trial[i] + record[t * n + i];
                learn[i] = r;
                rr += r * r;
                for c in 0..classes {
                    if t == 0usize {
                        learn[w + i * classes + c] = learn[ws + i * classes + c];
                    }
                    learn[scratch + c * threads + tid] += r * learn[w + i * classes + c];
                    learn[scratch + (classes + c) * threads + tid] +=
                        r * learn[ws + i * classes + c];
                }
            }
        }
        learn[scratch + 2usize * classes * threads + tid] = rr;
        sync_storage();
        let gate = trial[gates + t];
        let norm = 1.0f32 / (total(learn, scratch, 2usize * classes, threads) + 1.0f32);
        if rls == 1u32 {
            // k = P r for this thread's rows (every trace is written now), then r·k.
            let mut rk = 0.0f32;
            for k in 0..per {
                let i = tid + k * threads;
                if i < n {
                    let mut ki = 0.0f32;
                    for j in 0..n {
                        ki += p[i * n + j] * learn[j];
                    }
                    learn[kk + i] = ki;
                    rk += learn[i] * ki;
                }
            }
            learn[scratch + (2usize * classes + 1usize) * threads + tid] = rk;
            sync_storage();
        }
        // RLS: 1 / (r·k + 1) (the three-factor rule never writes that slot: it reads 1).
        let gain = 1.0f32 / (total(learn, scratch, 2usize * classes + 1usize, threads) + 1.0f32);
        if rls == 1u32 {
            for k in 0..per {
                let i = tid + k * threads;
                if i < n {
                    let ki = learn[kk + i];
                    for j in 0..n {
                        p[i * n + j] -= ki * learn[kk + j] * gain;
                    }
                }
            }
        }
        for c in 0..classes {
            let err = trial[targets + t * classes + c] - total(learn, scratch, c, threads);
            // Every thread adds the shares; one writes (no thread loops alone).
            let predicted = total(learn, scratch, classes + c, threads);
            if tid == 0usize {
                out[t * classes + c] = predicted;
            }
            for k in 0..per {
                let i = tid + k * threads;
                if i < n {
                    let at = w + i * classes + c;
                    if rls == 1u32 {
                        learn[at] += learn[kk + i] * err * gain;
                    } else {
                        learn[at] += learn[i] * (err * gate * norm) * eta;
                    }
                    // The end of a trial consolidates (RLS keeps its weights).
                    if t + 1usize == t_len {
                        let s = ws + i * classes + c;
                        if rls == 1u32 {
                            learn[s] = learn[at];
                        } else {
                            learn[s] += (learn[at] - learn[s]) * kappa;
                        }
                    }
                }
            }
        }
    }
}

/// The what/when readouts and their network on a WebGPU device.
pub(super) struct GpuLearner {
    net: GpuNetwork,
    /// `[T, N]` cue current of a trial.
    cue: Vec<f32>,
    /// `[N]` trace decay per neuron.
    decay: Vec<f32>,
    /// The readout state (see [`kernels::readout_step`]).
    learn: CubeTensor,
    /// RLS `[N, N]`.
    p: CubeTensor,
    rls: bool,
    eta: f32,
    kappa: f32,
    classes: usize,
    device: Device,
}

impl GpuLearner {
    pub(super) fn new(
        spec: &WhatWhenSpec,
        classes: usize,
        cue: Vec<f32>,
        decay: Vec<f32>,
        device: &Device,
    ) -> Result<Self> {
        let n = decay.len();
        let (rls, eta, kappa, p) = match spec.rule {
            Rule::Rls { alpha } => {
                let mut p = vec![0f32; n * n];
                (0..n).for_each(|i| p[i * n + i] = (1.0 / alpha) as f32);
                (true, 0.0, 1.0, p)
            }
            Rule::ThreeFactor {
                eta, consolidation, ..
            } => (false, eta as f32, consolidation as f32, vec![0.0]),
        };
        Ok(Self {
            net: GpuNetwork::new(&spec.network, device)?,
            cue,
            decay,
            learn: upload(
                vec![0f32; 2 * n + 2 * n * classes + (2 * classes + 2) * THREADS],
                device,
            )?,
            p: upload(p, device)?,
            rls,
            eta,
            kappa,
            classes,
            device: device.clone(),
        })
    }

    /// One trial with `target` (`[T, C]`) and `gate` (`[T]`): the consolidated readout's
    /// prediction, `[T, C]` row-major. Two dispatches per ms, one readback.
    pub(super) async fn trial(&mut self, target: Vec<f32>, gate: Vec<f32>) -> Result<Vec<f32>> {
        let (n, classes, t_len) = (self.decay.len(), self.classes, gate.len());
        let mut input = vec![0f32; t_len * n];
        self.net.drive.fill(&mut input);
        for (x, c) in input.iter_mut().zip(&self.cue) {
            *x += c;
        }
        let input = upload(input, &self.device)?;
        let mut trial = self.decay.clone();
        trial.extend(target);
        trial.extend(gate);
        let trial = upload(trial, &self.device)?;
        let record = self.net.record(t_len);
        let client = self.learn.client.clone();
        let out = empty_f32(&[t_len * classes], &self.learn);
        for t in 0..t_len {
            self.net.launch(&input, t, &record, t);
            kernels::readout_step::launch(
                &client,
                CubeCount::Static(1, 1, 1),
                CubeDim::new_1d(THREADS as u32),
                record.clone().into_buffer_arg(),
                self.learn.clone().into_buffer_arg(),
                self.p.clone().into_buffer_arg(),
                trial.clone().into_buffer_arg(),
                out.clone().into_buffer_arg(),
                n,
                classes,
                t_len,
                t,
                u32::from(self.rls),
                self.eta,
                self.kappa,
                THREADS,
            );
        }
        Ok(read_f32(Tensor::<1>::from_primitive::<Cube>(out)).await?)
    }
}
