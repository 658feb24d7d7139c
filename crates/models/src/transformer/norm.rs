//! The block's normalisations in their tensor form (every device's reference).

use burn::module::{Module, Param};
use burn::tensor::Tensor;

/// LayerNorm (with bias) or RMSNorm (without).
#[derive(Module, Debug)]
pub struct Norm {
    /// Scale, `[d_model]`.
    pub weight: Param<Tensor<1>>,
    /// Shift, `[d_model]` (LayerNorm only).
    pub bias: Option<Param<Tensor<1>>>,
    /// Epsilon.
    #[module(skip)]
    pub eps: f64,
    /// RMSNorm when true.
    #[module(skip)]
    pub rms: bool,
}

impl Norm {
    /// # Shapes
    /// - `x`: `[batch, pos, d_model]` → same.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let d = x.dims()[2];
        let w = self.weight.val().reshape([1, 1, d]);
        let y = if self.rms {
            let ms = x.clone().powf_scalar(2.0).mean_dim(2);
            x / (ms + self.eps).sqrt()
        } else {
            let mean = x.clone().mean_dim(2);
            let xc = x - mean;
            let var = xc.clone().powf_scalar(2.0).mean_dim(2);
            xc / (var + self.eps).sqrt()
        };
        let y = y * w;
        match &self.bias {
            Some(b) => y + b.val().reshape([1, 1, d]),
            None => y,
        }
    }
}
