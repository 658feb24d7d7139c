//! Interplay's Dynamics lab core: spiking and reservoir networks (a fused CPU form over slices;
//! on WebGPU a kernel per ms for the spiking networks, per chunk of steps for the reservoirs), their
//! readouts and plasticity, and the benchmark tasks.
//!
//! | module | what |
//! |---|---|
//! | [`esn`] | echo state networks (ReservoirPy's equations), E/I populations, self-adaptation |
//! | [`spiking`] | Izhikevich (2003) cell types and network, leaky integrate-and-fire |
//! | [`tasks`] | prediction (Mackey-Glass, NARMA-10, Santa Fe) and memory-capacity specs |
//! | [`whatwhen`] | the what/when paradigm: three-factor Hebbian readout vs an online RLS readout |
//! | [`series`] | the benchmark series generators and bundled data |
//! | [`linalg`] | spectral radius, ridge readout, NRMSE / R² |
//! | [`rng`] | the seeded generator every weight and input comes from |

// Parameter checks say `!(x > 0.0)` on purpose: NaN must fail them too.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod error;
pub mod esn;
pub mod linalg;
pub mod rng;
pub mod series;
pub mod spiking;
pub mod tasks;
pub mod whatwhen;

pub use error::{DynamicsError, Result};
pub use esn::{Adaptation, EiParams, EsnParams, Reservoir};
pub use spiking::{CellType, NeuronModel, SpikingResult, SpikingSpec};
pub use tasks::{DynamicsSpec, EiSweepRow, EiSweepSpec, MemoryCapacitySpec, PredictionSpec, Task};
pub use whatwhen::{WhatWhenResult, WhatWhenSpec};
