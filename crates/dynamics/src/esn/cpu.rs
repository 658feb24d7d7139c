//! The reservoir's CPU form: one fused step over slices of f32 with the recurrent matrix in
//! compressed rows (ESNs are ~10 % connected), and no tensor operation or allocation per step.
//! The equations are ReservoirPy's (see [`super`]); the WebGPU kernel ([`super::gpu`]) states them
//! term for term in the same order.

use super::{Adaptation, CHUNK, ReservoirWeights, RunOutput};
use crate::error::{DynamicsError, Result};
use interplay_models::patching::Progress;

/// Length of the buffer a [`Rows::dot`] reads: every `u16` column index is inside it, so the
/// compiler drops the bounds check from each of the product's gathers (a tenth of a 500-unit
/// ESN's time). Reservoirs have at most 4096 units (`check_params`).
const GATHER: usize = 1 << 16;

/// A state padded to [`GATHER`] entries (the units first, zeros after).
type Padded = [f32; GATHER];

/// A matrix's non-zero entries by row: row i's columns and values are
/// `cols[start[i]..start[i + 1]]` and `vals[..]` alike.
pub(crate) struct Rows {
    start: Vec<usize>,
    cols: Vec<u16>,
    vals: Vec<f32>,
}

impl Rows {
    /// The entries of row-major `[n, n]` `w` whose column `keep`s.
    fn new(w: &[f64], n: usize, keep: impl Fn(usize) -> bool) -> Self {
        debug_assert!(n <= GATHER);
        let mut start = Vec::with_capacity(n + 1);
        let (mut cols, mut vals) = (Vec::new(), Vec::new());
        start.push(0);
        for row in w.chunks_exact(n) {
            for (j, &v) in row.iter().enumerate() {
                if v != 0.0 && keep(j) {
                    cols.push(j as u16);
                    vals.push(v as f32);
                }
            }
            start.push(cols.len());
        }
        Self { start, cols, vals }
    }

    /// Row `i` times `x`.
    #[inline]
    fn dot(&self, i: usize, x: &Padded) -> f32 {
        // Four running sums: one would wait on the previous addition at every entry.
        let (cols, vals) = (
            &self.cols[self.start[i]..self.start[i + 1]],
            &self.vals[self.start[i]..self.start[i + 1]],
        );
        let mut acc = [0f32; 4];
        let (mut cq, mut vq) = (cols.chunks_exact(4), vals.chunks_exact(4));
        for (c, v) in (&mut cq).zip(&mut vq) {
            for k in 0..4 {
                acc[k] += v[k] * x[c[k] as usize];
            }
        }
        let tail: f32 = cq
            .remainder()
            .iter()
            .zip(vq.remainder())
            .map(|(&j, &w)| w * x[j as usize])
            .sum();
        (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
    }
}

/// tanh in f32 as the rational minimax approximation Eigen, XLA and ONNX Runtime use (odd
/// degree 13 over even degree 6, clamped at ±7.905, where the approximation reaches ±1):
/// branch-free, so the update loop vectorises; libm's `tanhf` was a fifth of a 500-unit ESN's
/// time. Within 4e-7 relative of the exact tanh (test below: every 97th float up to 10), far
/// inside the 1e-4 the goldens ask; the same arithmetic on every target, so wasm and native
/// agree bit for bit.
#[inline(always)]
#[allow(clippy::excessive_precision)]
fn tanh(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311_107_635_498_05;
    const ALPHA: [f32; 7] = [
        -2.760_768_477_423_55e-16,
        2.000_187_904_824_77e-13,
        -8.604_671_522_137_35e-11,
        5.122_297_090_371_14e-08,
        1.485_722_357_179_79e-05,
        6.372_619_288_754_36e-04,
        4.893_524_558_917_86e-03,
    ];
    const BETA: [f32; 4] = [
        1.198_258_394_667_02e-06,
        1.185_347_056_866_54e-04,
        2.268_434_632_439_00e-03,
        4.893_525_185_543_85e-03,
    ];
    // `clamp`, not f32::min/max: a NaN stays a NaN (a divergence must show).
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let p = ALPHA.iter().fold(0.0, |p, &a| p * x2 + a) * x;
    let q = BETA.iter().fold(0.0, |q, &b| q * x2 + b);
    p / q
}

/// A reservoir's weights laid out for the CPU step.
pub(crate) struct CpuReservoir {
    /// W restricted to excitatory presynaptic units (all units for a signed reservoir).
    exc: Rows,
    /// W of the inhibitory presynaptic units (E/I reservoirs).
    inh: Option<Rows>,
    /// `[I, N]` input weights (transposed, so one input's drive is a pass over units).
    w_in_t: Vec<f32>,
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
            w_in_t: (0..w.inputs * n)
                .map(|k| w.w_in[(k % n) * w.inputs + k / n] as f32)
                .collect(),
            bias: w.bias.iter().map(|&v| v as f32).collect(),
        }
    }

    /// Drive from a zero state with `inputs` (`[T, I]`, checked by the caller): every state,
    /// the final gains and the E/I balance, as the WebGPU form returns them. Each chunk of
    /// states goes to `on_states(first step, [len, N])` while the next chunk simulates (on
    /// another thread where there is one).
    pub(crate) async fn run(
        &self,
        inputs: &[f64],
        width: usize,
        leak: f64,
        adaptation: Option<&(Adaptation, Vec<f64>)>,
        on_states: &mut (dyn FnMut(usize, &[f32]) + Send),
        progress: &mut dyn FnMut(usize, usize) -> Progress,
    ) -> Result<RunOutput> {
        let n = self.bias.len();
        let steps = inputs.len() / width;
        let mut stepper = Stepper {
            net: self,
            inputs,
            width,
            keep: (1.0 - leak) as f32,
            take: leak as f32,
            x: vec![0f32; GATHER]
                .into_boxed_slice()
                .try_into()
                .map_err(|_| DynamicsError::Input("reservoir state buffer".into()))?,
            drive: vec![0f32; n],
            pre: vec![0f32; n],
            gain: vec![1f32; n],
            targets: adaptation
                .map(|(a, t)| (a.eta as f32, a.steps, t.iter().map(|&v| v as f32).collect())),
            balance: Vec::with_capacity(if self.inh.is_some() { steps } else { 0 }),
        };
        // Zeroed by the allocator, untouched until written: the chunks are disjoint slices.
        let mut states = vec![0f32; steps * n];
        let (mut fed, mut done) = (0, 0);
        while done < steps {
            let len = CHUNK.min(steps - done);
            let (before, rest) = states.split_at_mut(done * n);
            let chunk = &mut rest[..len * n];
            let last = &before[fed * n..];
            if last.is_empty() {
                stepper.simulate(done, chunk);
            } else {
                interplay_models::par::join(
                    || on_states(fed, last),
                    || stepper.simulate(done, chunk),
                );
            }
            (fed, done) = (done, done + len);
            // Every state of the chunk, before the readout sees it (as on the GPU).
            if states[fed * n..done * n].iter().any(|v| !v.is_finite()) {
                return Err(super::diverged());
            }
            if !progress(done, steps).await {
                return Err(DynamicsError::Cancelled);
            }
        }
        if fed < done {
            on_states(fed, &states[fed * n..]);
        }
        Ok(RunOutput {
            states,
            gains: if self.inh.is_some() {
                stepper.gain
            } else {
                Vec::new()
            },
            balance: stepper.balance,
        })
    }
}

/// A run's moving parts: the state, its buffers and what it records.
struct Stepper<'a> {
    net: &'a CpuReservoir,
    /// `[T, width]`.
    inputs: &'a [f64],
    width: usize,
    /// 1 − α and α.
    keep: f32,
    take: f32,
    /// The state (`[N]`, padded to [`GATHER`]).
    x: Box<Padded>,
    /// `[N]` each: the input drive W_in u, the pre-activation, inhibitory gains.
    drive: Vec<f32>,
    pre: Vec<f32>,
    gain: Vec<f32>,
    /// η, adaptation steps, `[N]` target rates.
    targets: Option<(f32, usize, Vec<f32>)>,
    /// Per step mean excitatory and inhibitory recurrent input (E/I reservoirs).
    balance: Vec<(f32, f32)>,
}

impl Stepper<'_> {
    /// Steps `first..first + T`, writing each new state into `out` (`[T, N]`).
    fn simulate(&mut self, first: usize, out: &mut [f32]) {
        let net = self.net;
        let n = self.pre.len();
        let ei = net.inh.is_some();
        let (keep, take) = (self.keep, self.take);
        for (t, row) in (first..).zip(out.chunks_exact_mut(n)) {
            // The input drive W_in u, then the whole pre-activation, then the update in place
            // (every recurrent sum reads the previous state before any unit changes).
            let u = &self.inputs[t * self.width..(t + 1) * self.width];
            for (c, &u) in u.iter().enumerate() {
                let (u, w) = (u as f32, &net.w_in_t[c * n..(c + 1) * n]);
                if c == 0 {
                    self.drive.iter_mut().zip(w).for_each(|(d, &w)| *d = u * w);
                } else {
                    self.drive.iter_mut().zip(w).for_each(|(d, &w)| *d += u * w);
                }
            }
            let (mut sum_exc, mut sum_inh) = (0f32, 0f32);
            for (i, p) in self.pre.iter_mut().enumerate() {
                let exc = net.exc.dot(i, &self.x);
                let rec = match &net.inh {
                    Some(inh) => {
                        let inh = inh.dot(i, &self.x) * self.gain[i];
                        sum_exc += exc;
                        sum_inh += inh;
                        exc + inh
                    }
                    None => exc,
                };
                *p = rec + (self.drive[i] + net.bias[i]);
            }
            // Separate loops so each is a straight pass the compiler vectorises.
            if ei {
                for (x, &p) in self.x[..n].iter_mut().zip(&self.pre) {
                    // ReLU that keeps a NaN (f32::max would turn it into 0 and hide a divergence).
                    *x = *x * keep + tanh(if p <= 0.0 { 0.0 } else { p }) * take;
                }
                self.balance.push((sum_exc / n as f32, sum_inh / n as f32));
            } else {
                for (x, &p) in self.x[..n].iter_mut().zip(&self.pre) {
                    *x = *x * keep + tanh(p) * take;
                }
            }
            if let Some((eta, until, targets)) = &self.targets
                && t < *until
            {
                for ((g, &x), &r) in self.gain.iter_mut().zip(&self.x[..n]).zip(targets) {
                    // Not f32::max, which would turn a NaN into 0: as the kernel does.
                    let v = *g + (x - r) * eta;
                    *g = if v < 0.0 { 0.0 } else { v };
                }
            }
            row.copy_from_slice(&self.x[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    /// The approximation against f64's tanh over every float in [−10, 10] at a fine stride
    /// (all of them near 0, where relative error is hardest).
    #[test]
    fn tanh_is_within_4e_7_relative() {
        let mut worst = 0f64;
        let mut x = 1e-30f32;
        while x < 10.0 {
            for v in [x, -x] {
                let want = (v as f64).tanh();
                let err = ((super::tanh(v) as f64 - want) / want).abs();
                worst = worst.max(err);
            }
            x = f32::from_bits(x.to_bits() + 97);
        }
        assert!(worst < 4e-7, "worst relative error {worst:e}");
        assert_eq!(super::tanh(0.0), 0.0);
        assert!(super::tanh(100.0) <= 1.0 && super::tanh(-100.0) >= -1.0);
        assert!(super::tanh(f32::NAN).is_nan());
    }
}
