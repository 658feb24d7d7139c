//! The Neurofeedback lab: the metacognition paradigm of Ji-An et al. (2025), "Language Models Are
//! Capable of Metacognitive Monitoring and Control of Their Internal Activations".
//!
//! 1. **Directions**: the activation at one residual hook (mean over a sentence's tokens, or its
//!    last token) over a set of sentences; principal components, a logistic-regression probe for
//!    the sentences' concept, or a random unit vector (control).
//! 2. **Labels**: a sentence is `labels[0]` when its projection on the direction is above the
//!    median, else `labels[1]` — or, with quantile bins, `labels[0]` in the top q and `labels[1]`
//!    in the bottom q, the ambiguous middle left out of examples and queries.
//! 3. **Reporting**: N labelled examples in context, then a held-out sentence; the model's answer
//!    is whichever label token has the higher logit. Accuracy against N, per direction, with
//!    seeds, a shuffled-label control and (by choosing `random`) a random-direction control.
//! 4. **Control** (implicit, chat models): with examples in context as requests for a label
//!    answered by a sentence of that label, the model is asked for a sentence of a target label
//!    and a given one stands as its answer; the shift of its activation's projection
//!    between the two targets, in standard deviations of the projection over the sentence set,
//!    along the target direction and along every other direction.
//! 5. **Explicit control** (chat models): the model writes a sentence of the target label
//!    (greedy or seeded sampling); its own activations over the tokens it wrote are projected the
//!    same way, and so is the sentence read alone (does the content carry the label, or only the
//!    state it was written in?).
//!
//! Everything host-side (PCA, probe, medians) is f64 and deterministic, so the page and the CLI
//! give the same numbers for the same spec.

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Int, Tensor, TensorData, s};
use interplay_models::device::read_f32;
use interplay_models::generate::{Sampling, generate_after};
use interplay_models::hooks::{HookPlan, HookPoint};
use interplay_models::patching::Progress;
use interplay_models::rng::Rng;
use interplay_models::tokenizer::TextTokenizer;
use interplay_models::{KvCache, Transformer};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::LabError;
use crate::bundled::{
    Bundled, ICL_ARROW, ICL_SENTENCE, ICL_WORD_WORDS, ICL_WORDS, INDUCTION_WORDS,
};

mod control;
mod prompts;
mod run;
mod sentences;
mod spec;
mod stats;
#[cfg(test)]
mod tests;

pub use control::*;
pub use prompts::*;
pub use run::*;
pub use sentences::*;
pub use spec::*;
pub use stats::*;
