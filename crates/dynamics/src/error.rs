//! The Dynamics lab's error type.

use thiserror::Error;

/// What went wrong, in words a student can act on.
#[derive(Debug, Error)]
pub enum DynamicsError {
    /// A parameter or input outside what the network or task accepts.
    #[error("{0}")]
    Input(String),
    /// The device failed (lost GPU, readback error).
    #[error(transparent)]
    Device(#[from] interplay_models::ModelError),
    /// The user cancelled a running simulation.
    #[error("cancelled")]
    Cancelled,
}

/// Result alias for the crate.
pub type Result<T> = std::result::Result<T, DynamicsError>;
