//! What every block of one run shares: RoPE's cos/sin tables and the causal mask.

use burn::tensor::{Tensor, TensorData};

use super::Transformer;
use crate::config::Arch;

/// What every block of one run shares and only positions decide: RoPE's cos/sin tables and the
/// causal mask. Built once per run, not per layer (each is a host-side table and an upload).
pub(super) struct RunTables {
    /// cos and sin for the run's positions, `[1, pos, 1, d_head]` (Llama only).
    pub(super) rope: Option<(Tensor<4>, Tensor<4>)>,
    /// `true` where query `i` must not see key `j`, `[1, 1, pos, offset + pos]`.
    pub(super) mask: Tensor<4, burn::tensor::Bool>,
}

impl Transformer {
    /// The tables of a run of `resid`'s positions starting at absolute position `offset` (the
    /// prefix's keys/values hold positions `0..offset`): RoPE for `offset..offset + p`, and the
    /// causal mask — query `i` sees keys `0..=offset + i`.
    ///
    /// # Shapes
    /// - `resid`: `[batch, pos, d_model]` (only its length and device are read).
    pub(super) fn run_tables(&self, resid: &Tensor<3>, offset: usize) -> RunTables {
        let [_, p, _] = resid.dims();
        let device = &resid.device();
        let rope = (self.config.arch == Arch::Llama).then(|| {
            let dh = self.config.d_head;
            let half = dh / 2;
            let mut cos = Vec::with_capacity(p * dh);
            let mut sin = Vec::with_capacity(p * dh);
            for pos in offset..offset + p {
                // HF layout: the angle table is repeated for both halves of the head.
                for _half in 0..2 {
                    for i in 0..half {
                        let inv = self.config.rope_theta.powf(-(2.0 * i as f64) / dh as f64);
                        let a = pos as f64 * inv;
                        cos.push(a.cos() as f32);
                        sin.push(a.sin() as f32);
                    }
                }
            }
            let c = Tensor::<4>::from_data(TensorData::new(cos, [1, p, 1, dh]), device);
            let s = Tensor::<4>::from_data(TensorData::new(sin, [1, p, 1, dh]), device);
            (c, s)
        });
        let total = offset + p;
        let mut mask = Vec::with_capacity(p * total);
        for i in 0..p {
            for j in 0..total {
                mask.push(j > offset + i);
            }
        }
        let mask = Tensor::from_data(TensorData::new(mask, [1, 1, p, total]), device);
        RunTables { rope, mask }
    }
}
