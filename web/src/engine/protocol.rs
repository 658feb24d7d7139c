//! The messages between the page and the engine worker. Both sides are this crate, so one set
//! of serde types; they cross `postMessage` through `serde-wasm-bindgen` (numbers stay exact
//! f64, 64-bit integers travel as BigInt, bytes as a `Uint8Array`, a model file's `Blob` as
//! itself).

use interplay_dynamics::tasks::{MemoryCapacityResult, PredictionResult};
use interplay_dynamics::whatwhen::{Trial, WhatWhenResult};
use interplay_dynamics::{EiSweepRow, SpikingResult};
use interplay_lab::Experiment;
use interplay_lab::inspect::{Inspect, Inspection};
use interplay_lab::mergelab::MergeOutcome;
use interplay_lab::neurofeedback::NeurofeedbackResult;
use interplay_lab::suite::{Task as SuiteTask, TrainOptions};
use interplay_models::Backend;
use interplay_models::device::DeviceCheck;
use interplay_models::patching::PatchGrid;
use serde::{Deserialize, Serialize};

/// A job's number, unique for the page's lifetime.
pub type JobId = u32;

/// What the engine is asked to compute.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Task {
    /// The start page's check: an `n`×`n` seeded matrix product on the device, checked against
    /// a float64 product (`interplay_models::device::device_check`; on WebGPU by the fused
    /// transformer blocks' product kernel, not Burn's matmul, which hooked runs use). It brings the device up, so
    /// its [`Ran`] says which device the page has and why not WebGPU where it fell back.
    DeviceCheck {
        /// Matrix size.
        n: usize,
    },
    /// One experiment of a spec lab, exactly as a share link or `interplay run` states it.
    Experiment(Box<Experiment>),
    /// A question about the held model (the Circuits lab's prompt run, analyses, head scores,
    /// ablation, path patching).
    Inspect {
        /// The model it is about (the key the page loaded it under).
        model: String,
        /// The question.
        query: Inspect,
    },
    /// Load a model (parse, dequantise, upload to the device) and keep it for the experiments
    /// that follow; its files stay in the engine, so a device switch rebuilds it there.
    LoadModel {
        /// The name specs use.
        key: String,
        /// Shown name.
        name: String,
        /// The files, as the user picked them or the site served them (kept by the engine, so
        /// a device switch rebuilds the model from them).
        files: Vec<ModelFile>,
    },
    /// Fine-tune the Merge suite's base: on a bundled task's training split, or on pasted data
    /// (the page's text format, parsed by the engine).
    FineTune {
        /// The bundled task, or `None` for `pasted`.
        task: Option<SuiteTask>,
        /// Pasted training data (used when `task` is `None`).
        pasted: String,
        /// Optimiser settings.
        options: TrainOptions,
    },
}

impl Task {
    /// Whether the task needs gradients, which only the gradients engine's module computes
    /// (attribution patching, edge attribution patching, clamped training, subspace patching's
    /// directions).
    pub fn needs_gradients(&self) -> bool {
        matches!(self, Task::Experiment(e) if matches!(
            **e,
            Experiment::AttributionPatching(_)
                | Experiment::EdgeAttribution(_)
                | Experiment::ClampedTraining(_)
                | Experiment::SubspacePatching(_)
        ))
    }
}

/// One file of a model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelFile {
    /// File name (`model.safetensors`, `config.json`, `tokenizer.json`, `*.gguf`).
    pub name: String,
    /// Its bytes, as a `Blob`: the `File` the user picked, or a response from this site. A
    /// posted `Blob` shares its bytes with the engine (nothing is copied); the engine reads it
    /// into its memory once per build, and the page never reads it at all.
    #[serde(with = "serde_wasm_bindgen::preserve")]
    pub blob: web_sys::Blob,
}

/// What the page shows about a loaded model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The name specs use (`smollm2`, a bundled model's id, or the user's file name).
    pub key: String,
    /// Shown name.
    pub name: String,
    /// One-line description.
    pub summary: String,
    /// Whether text prompts work (else token ids).
    pub has_tokenizer: bool,
    /// Why there is no tokenizer.
    pub tokenizer_note: Option<String>,
    /// Device the weights live on.
    pub backend: Backend,
    /// Layers.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Vocabulary size.
    pub d_vocab: usize,
}

/// Page → engine.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ToEngine {
    /// Start a job on `backend` (the engine falls back to the CPU as the page does).
    Run {
        /// The job.
        id: JobId,
        /// The device the page asks for.
        backend: Backend,
        /// What to compute.
        task: Box<Task>,
    },
    /// Stop a job at its next progress point; the page has already moved on.
    Cancel {
        /// The job.
        id: JobId,
    },
    /// Hold a job at its next progress point, or let it go on.
    Pause {
        /// The job.
        id: JobId,
        /// Hold (`true`) or go on.
        paused: bool,
    },
}

/// Engine → page.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum FromEngine {
    /// The engine has started and takes jobs.
    Ready {
        /// The threads its CPU device computes on (1: the single-threaded module).
        threads: usize,
        /// Why it has one thread where more were asked for (e.g. "host does not allow threads").
        note: Option<String>,
    },
    /// `(done, total)` units of a job's work.
    Progress {
        /// The job.
        id: JobId,
        /// Units done.
        done: usize,
        /// Units in all.
        total: usize,
    },
    /// A streamed piece of a job's result, shown before the job ends.
    Part {
        /// The job.
        id: JobId,
        /// The piece.
        part: Part,
    },
    /// A job finished.
    Done {
        /// The job.
        id: JobId,
        /// Where and how long it ran.
        ran: Ran,
        /// Its result.
        output: Box<Output>,
    },
    /// A job failed (bad input, a lost GPU, cancelled); the message is for the user.
    Failed {
        /// The job.
        id: JobId,
        /// Where it ran, when it got that far.
        ran: Option<Ran>,
        /// What went wrong.
        message: String,
    },
}

/// Where a job ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ran {
    /// The backend that computed.
    pub backend: Backend,
    /// Why it is not the one asked for (no adapter; the GPU was lost).
    pub fallback: Option<String>,
    /// Milliseconds of compute in the engine (time spent paused left out).
    pub ms: f64,
}

/// A streamed piece of a result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Part {
    /// Spikes of the next chunk of a spiking run.
    Spikes(SpikingResult),
    /// One ratio of an E/I sweep.
    SweepRow(EiSweepRow),
    /// One trial of the what/when paradigm.
    Trial(Trial),
    /// The newest training losses of run `run` of a clamped-training experiment.
    Losses {
        /// 0: the unclamped run, 1: the clamped one.
        run: usize,
        /// The losses of the steps since the last part.
        losses: Vec<f32>,
    },
    /// One fine-tuning step.
    TrainStep {
        /// Steps done.
        step: usize,
        /// Steps in all.
        steps: usize,
        /// Epochs done.
        epoch: usize,
        /// At the end of an epoch: its mean loss.
        loss: Option<f64>,
    },
}

/// A Dynamics experiment's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DynamicsOutput {
    /// Raster, traces, rates.
    Spiking(SpikingResult),
    /// ESN prediction.
    Prediction(PredictionResult),
    /// Memory capacity.
    Memory(MemoryCapacityResult),
    /// E/I sweep rows.
    Sweep(Vec<EiSweepRow>),
    /// What/when trials.
    WhatWhen(WhatWhenResult),
}

/// A job's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Output {
    /// The start page's device check.
    DeviceCheck(DeviceCheck),
    /// A Dynamics experiment.
    Dynamics(DynamicsOutput),
    /// The end of a spiking run whose raster, counts and traces came as [`Part::Spikes`]: only
    /// what the end adds, so a long run's million spikes cross to the page once, not twice.
    SpikingEnd {
        /// Mean excitatory rate (Hz).
        rate_exc_hz: f64,
        /// Mean inhibitory rate (Hz).
        rate_inh_hz: f64,
    },
    /// A Merge experiment.
    Merge(Box<MergeOutcome>),
    /// A Circuits patching sweep, with its grid's row and column labels.
    Patching {
        /// The sweep.
        grid: PatchGrid,
        /// Row labels (`L3`, `L3H7`, `ln_final in`).
        rows: Vec<String>,
        /// Column labels (`5 ␣Mary`, `H7`).
        cols: Vec<String>,
    },
    /// A Neurofeedback experiment.
    Neurofeedback(NeurofeedbackResult),
    /// A Circuits relation-specific neurons experiment.
    RelationNeurons(interplay_lab::neurons::NeuronsResult),
    /// A Circuits circuit-reuse experiment.
    CircuitReuse(Box<interplay_lab::reuse::ReuseResult>),
    /// A Circuits recall-vs-reasoning experiment.
    RecallReasoning(Box<interplay_lab::recall::RecallResult>),
    /// Attribution patching beside the sweep it estimates, with the grids' labels (as
    /// [`Output::Patching`]'s).
    AttributionPatching {
        /// Both grids, their correlation and overlap.
        outcome: Box<interplay_lab::attribution::AttributionOutcome>,
        /// Row labels.
        rows: Vec<String>,
        /// Column labels.
        cols: Vec<String>,
    },
    /// Edge attribution patching: the top edges, their exact effects, the faithfulness curve.
    EdgeAttribution(Box<interplay_lab::edges::EdgeOutcome>),
    /// The induction model trained with and without clamps: loss curves, phase changes.
    ClampedTraining(Box<interplay_lab::clamp::ClampOutcome>),
    /// Directions learned by DAS, the effects of patching along them and their parts.
    SubspacePatching(Box<interplay_lab::subspace::SubspaceOutcome>),
    /// The answer to a question about the held model.
    Inspection(Inspection),
    /// A model the engine loaded.
    Model(ModelInfo),
    /// A fine-tune of the suite's base.
    FineTuned {
        /// Accuracy on every task ([`SuiteTask::ALL`] order).
        accuracy: Vec<f64>,
        /// The fine-tuned weights as safetensors.
        #[serde(with = "serde_bytes")]
        safetensors: Vec<u8>,
    },
}
