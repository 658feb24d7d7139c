//! The reservoir's CPU form: one fused step over slices of f32 with the recurrent matrix in
//! compressed rows (ESNs are ~10 % connected), and no tensor operation or allocation per step.
//! The equations are [`Reservoir::run`](super::Reservoir::run)'s tensor form, term for term.

use super::{Adaptation, CHUNK, ReservoirWeights, RunOutput};
use crate::error::{DynamicsError, Result};
use interplay_models::patching::Progress;

/// A matrix's non-zero entries by row: row i's (column, value) pairs are
/// `entries[start[i]..start[i + 1]]`.
pub(crate) struct Rows {
    start: Vec<usize>,
    entries: Vec<(u32, f32)>,
}

impl Rows {
    /// The entries of row-major `[n, n]` `w` whose column `keep`s.
    fn new(w: &[f64], n: usize, keep: impl Fn(usize) -> bool) -> Self {
        let mut start = Vec::with_capacity(n + 1);
        let mut entries = Vec::new();
        start.push(0);
        for row in w.chunks_exact(n) {
            entries.extend(
                row.iter()
                    .enumerate()
                    .filter(|&(j, &v)| v != 0.0 && keep(j))
                    .map(|(j, &v)| (j as u32, v as f32)),
            );
            start.push(entries.len());
        }
        Self { start, entries }
    }

    /// Row `i` times `x`.
    #[inline]
    fn dot(&self, i: usize, x: &[f32]) -> f32 {
        // Four running sums: one would wait on the previous addition at every entry.
        let row = &self.entries[self.start[i]..self.start[i + 1]];
        let mut acc = [0f32; 4];
        let mut quads = row.chunks_exact(4);
        for q in &mut quads {
            for (a, &(j, w)) in acc.iter_mut().zip(q) {
                *a += w * x[j as usize];
            }
        }
        let tail: f32 = quads
            .remainder()
            .iter()
            .map(|&(j, w)| w * x[j as usize])
            .sum();
        (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
    }
}

/// A reservoir's weights laid out for the CPU step.
pub(crate) struct CpuReservoir {
    /// W restricted to excitatory presynaptic units (all units for a signed reservoir).
    exc: Rows,
    /// W of the inhibitory presynaptic units (E/I reservoirs).
    inh: Option<Rows>,
    /// `[N, I]` input weights.
    w_in: Vec<f32>,
    /// `[N]`.
    bias: Vec<f32>,
}

impl CpuReservoir {
    pub(crate) fn new(w: &ReservoirWeights) -> Self {
        let n = w.units;
        let (exc, inh) = match w.excitatory {
            Some(ne) => (
                Rows::new(&w.w, n, |j| j < ne),
                Some(Rows::new(&w.w, n, |j| j >= ne)),
            ),
            None => (Rows::new(&w.w, n, |_| true), None),
        };
        Self {
            exc,
            inh,
            w_in: w.w_in.iter().map(|&v| v as f32).collect(),
            bias: w.bias.iter().map(|&v| v as f32).collect(),
        }
    }

    /// Drive from a zero state with `inputs` (`[T, I]`, checked by the caller): every state,
    /// the final gains and the E/I balance, as the tensor form returns them.
    pub(crate) async fn run(
        &self,
        inputs: &[f64],
        width: usize,
        leak: f64,
        adaptation: Option<&(Adaptation, Vec<f64>)>,
        progress: &mut dyn FnMut(usize, usize) -> Progress,
    ) -> Result<RunOutput> {
        let n = self.bias.len();
        let steps = inputs.len() / width;
        let ei = self.inh.is_some();
        let (keep, take) = ((1.0 - leak) as f32, leak as f32);
        let mut x = vec![0f32; n];
        let mut next = vec![0f32; n];
        let mut gain = vec![1f32; n];
        let targets: Option<(f32, usize, Vec<f32>)> =
            adaptation.map(|(a, t)| (a.eta as f32, a.steps, t.iter().map(|&v| v as f32).collect()));
        let mut out = RunOutput {
            states: Vec::with_capacity(steps * n),
            ..Default::default()
        };
        let mut u = vec![0f32; width];
        for t in 0..steps {
            for (dst, &v) in u.iter_mut().zip(&inputs[t * width..(t + 1) * width]) {
                *dst = v as f32;
            }
            let (mut sum_exc, mut sum_inh) = (0f32, 0f32);
            for i in 0..n {
                let drive = self.w_in[i * width..(i + 1) * width]
                    .iter()
                    .zip(&u)
                    .fold(0f32, |acc, (w, u)| acc + u * w)
                    + self.bias[i];
                let exc = self.exc.dot(i, &x);
                let pre = match &self.inh {
                    Some(inh) => {
                        let inh = inh.dot(i, &x) * gain[i];
                        sum_exc += exc;
                        sum_inh += inh;
                        exc + inh
                    }
                    None => exc,
                } + drive;
                // ReLU that keeps a NaN (f32::max would turn it into 0 and hide a divergence).
                let act = libm::tanhf(if ei && pre <= 0.0 { 0.0 } else { pre });
                next[i] = x[i] * keep + act * take;
            }
            std::mem::swap(&mut x, &mut next);
            if ei {
                out.balance.push((sum_exc / n as f32, sum_inh / n as f32));
            }
            if let Some((eta, until, targets)) = &targets
                && t < *until
            {
                for ((g, &x), &r) in gain.iter_mut().zip(&x).zip(targets) {
                    *g = (*g + (x - r) * eta).max(0.0);
                }
            }
            out.states.extend_from_slice(&x);
            let done = t + 1;
            if done % CHUNK == 0 || done == steps {
                if x.iter().any(|v| !v.is_finite()) {
                    return Err(DynamicsError::Input(
                        "the reservoir diverged (NaN states): lower the spectral radius or input scaling"
                            .into(),
                    ));
                }
                if !progress(done, steps).await {
                    return Err(DynamicsError::Cancelled);
                }
            }
        }
        if ei {
            out.gains = gain;
        }
        Ok(out)
    }
}
