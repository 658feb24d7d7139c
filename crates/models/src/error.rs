//! The one error type of the models crate: every load, parse and run failure a user can cause.

use thiserror::Error;

/// What went wrong, in words a student can act on.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The file ended before the structure it announced.
    #[error("the file is truncated: {0}")]
    Truncated(String),
    /// The bytes are not the format they claim to be.
    #[error("not a valid {format} file: {reason}")]
    Format {
        /// GGUF, safetensors, config.json, ...
        format: &'static str,
        /// What was found instead.
        reason: String,
    },
    /// A tensor dtype or quantisation this loader does not read.
    #[error("unsupported tensor type {0}")]
    UnsupportedDtype(String),
    /// An architecture other than GPT-2 or Llama.
    #[error("unsupported architecture {0:?}: Interplay runs GPT-2 and Llama-family models")]
    UnsupportedArchitecture(String),
    /// A tensor is missing from the checkpoint.
    #[error("the checkpoint has no tensor {0:?}")]
    MissingTensor(String),
    /// A tensor has a shape other than the config implies.
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    Shape {
        /// Checkpoint key.
        name: String,
        /// Shape in the file.
        found: Vec<usize>,
        /// Shape the config implies.
        expected: Vec<usize>,
    },
    /// A weight holds NaN or infinity.
    #[error("tensor {0:?} contains NaN or infinite values")]
    NonFinite(String),
    /// The tokenizer could not be built or run.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Input the model cannot take (empty prompt, too long, id out of range, ...).
    #[error("{0}")]
    Input(String),
    /// The compute device failed (lost GPU, failed readback).
    #[error("device: {0}")]
    Device(String),
    /// A file could not be read from disk (native only).
    #[error("cannot read {path}")]
    Io {
        /// The path given.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias used across the crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
