//! Interplay's model core: the compute device layer, tokenizers, one transformer for the GPT-2
//! and Llama families with TransformerLens hook points, GGUF / safetensors loaders, and the
//! patching engine.
//!
//! | module | what |
//! |---|---|
//! | [`device`] | device choice (WebGPU/wgpu or CPU) and asynchronous readback |
//! | [`tokenizer`] | GPT-2 BPE, HF `tokenizer.json`, GGUF-embedded tokenizers, chat template |
//! | [`budget`] | the memory one block of a run may hold, checked before it runs |
//! | [`config`] | [`TransformerConfig`]: presets, HF `config.json` |
//! | [`transformer`] | [`Transformer`]: the model, written once for every device |
//! | [`hooks`] | [`HookPoint`] names, [`HookPlan`] (cache + interventions) |
//! | [`patching`] | activation-patching sweeps that recompute only what changes |
//! | [`attribution`] | attribution patching: every patch estimated from one backward pass (`train`) |
//! | [`eap`] | edge attribution patching (EAP, EAP-IG; scores need `train`) and edge-patched circuits |
//! | [`generate`] | greedy / seeded sampling with a key/value cache |
//! | [`rng`] | the seeded generator every experiment shares |
//! | [`registry`] | ids and file names of SmolLM2 and the bundled models, and where they live |
//! | [`gguf`], [`safetensors`], [`weights`], [`load`] | checkpoints → [`Transformer`] |
//! | [`error`] | [`ModelError`], the crate's error |

#[cfg(feature = "train")]
pub mod attribution;
pub mod budget;
pub mod config;
pub mod device;
pub mod eap;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod hooks;
pub mod load;
pub mod par;
pub mod patching;
pub mod registry;
pub mod rng;
pub mod safetensors;
pub mod tokenizer;
#[cfg(feature = "train")]
pub mod train;
pub mod transformer;
pub mod weights;

pub use config::{Arch, TransformerConfig};
pub use device::{Backend, ComputeDevice};
pub use error::{ModelError, Result};
pub use hooks::{Act, Action, ActivationCache, HookPlan, HookPoint, Selector};
pub use load::LoadedModel;
pub use tokenizer::TextTokenizer;
pub use transformer::{KvCache, Transformer};
