//! Interplay's experiments. Each is one serde spec type that round-trips through the page URL
//! (share links), JSON import/export, the native CLI (`interplay run spec.json`) and the tests,
//! so the same spec gives the same numbers everywhere.
//!
//! | module | experiment |
//! |---|---|
//! | [`attribution`] | attribution patching beside activation patching: both grids, their correlation and top-10 overlap |
//! | [`ablation`] | head ablation (zero, mean, resample), path patching, metrics |
//! | [`bundled`] | the Circuits lab's bundled induction and IOI models: vocabularies, data, training |
//! | [`clamp`] | clamping during training: the induction model trained with and without chosen activations clamped, loss curves and the phase change |
//! | [`circuits`] | attention patterns, logit lens, direct logit attribution, head detectors |
//! | [`inspect`] | the Circuits lab's interactive questions (predict, analyse, score heads, ablate, path-patch) |
//! | [`guides`] | the guided experiments' texts (Markdown, one file per lab) |
//! | [`edges`] | edge attribution patching (EAP, EAP-IG), the top edges' exact effects, the faithfulness curve |
//! | [`experiment`] | the one experiment type every link, export, `interplay run` and test reads |
//! | [`merge`] | task vectors, task arithmetic, TIES (official semantics), DARE |
//! | [`mergelab`] | the Merge lab's spec: merges of the bundled suite, AdaMerging, sweeps, maps |
//! | [`neurofeedback`] | the metacognition paradigm: directions, labels, reporting and control |
//! | [`neurons`] | relation-specific MLP neurons: ranked by firing frequency, deactivated, accuracy per relation |
//! | [`patching`] | activation patching sweeps (Circuits lab) |
//! | [`recall`] | recall vs reasoning: layer and head ablations on both tasks, selectivity, circuits tested on held-out questions |
//! | [`reuse`] | circuit component reuse: head patching on IOI and Colored Objects, overlap, the attention intervention |
//! | [`share`] | the URL encoding every spec uses |
//! | [`suite`] | the bundled digits task suite, its MLP, fine-tuning and evaluation |

pub mod ablation;
pub mod attribution;
pub mod bundled;
pub mod circuits;
pub mod clamp;
pub mod edges;
pub mod experiment;
pub mod findings;
pub mod guided;
pub mod guides;
pub mod inspect;
pub mod merge;
pub mod mergelab;
pub mod neurofeedback;
pub mod neurons;
pub mod patching;
pub mod recall;
pub mod reuse;
pub mod share;
pub mod subspace;
pub mod suite;

pub use experiment::{Experiment, LabKind, LabSpec};
pub use patching::{PatchingSpec, Prompt, TokenRef};

/// Why a spec cannot run.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The spec itself is malformed or inconsistent.
    #[error("{0}")]
    Spec(String),
    /// The user cancelled the run.
    #[error("cancelled")]
    Cancelled,
    /// The model failed.
    #[error(transparent)]
    Model(#[from] interplay_models::ModelError),
}
