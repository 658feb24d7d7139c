//! The Merge lab's bundled task suite: scikit-learn's digits (the UCI optdigits test set, 1797
//! 8×8 images with 17 grey levels, CC BY 4.0; `public/bundled/merge/digits.u8`, 64 pixels then
//! the label per image) seen through five input transforms that share one ten-digit output space, so models
//! fine-tuned on different tasks can be merged weight by weight.
//!
//! The model is a three-layer ReLU MLP (64 → 128 → 128 → 10) with PyTorch `nn.Linear` names and
//! layout (`fc1.weight` is `[out, in]`). Forward, backward and Adam are written once as Burn
//! tensor code, so the same training runs natively, on the page's WebGPU device or on its CPU.
//! Gradients are written by hand (three layers) rather than through Burn's autodiff backend, which
//! would add a second backend to every build of the page; a finite-difference test checks them.
//!
//! Linearised (tangent-space) fine-tuning (Ortiz-Jiménez et al., 2023) trains the first-order
//! Taylor expansion of the network around the base, f(x; θ₀) + J(θ₀)(θ − θ₀): its forward pass is
//! a Jacobian-vector product written next to the forward pass, and its gradient is the base's own
//! backward pass, since the expansion's Jacobian is J(θ₀) whatever θ is.

use burn::tensor::{Device, Int, Tensor, TensorData, activation};
use interplay_models::device::read_f32;
use interplay_models::patching::Progress;
use interplay_models::weights::{HostTensor, Weights};
use serde::{Deserialize, Serialize};

use crate::LabError;
use interplay_models::rng::Rng;

mod data;
mod eval;
mod mlp;
#[cfg(test)]
mod tests;
mod train;

pub use data::*;
pub use eval::*;
pub use mlp::*;
pub use train::*;
