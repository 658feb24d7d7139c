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
use crate::bundled::{Bundled, ICL_ARROW, ICL_SENTENCE, ICL_WORDS, INDUCTION_WORDS};

/// The bundled English sentence set: 150 positive and 150 negative everyday sentences written for
/// the project, in twin pairs that differ mostly in their sentiment (concept: sentiment,
/// 1 = positive); a few hundred, as the paradigm asks, so accuracies rest on enough queries.
pub const SENTIMENT: &str = include_str!("../data/sentiment.txt");

/// How a sentence's activations become one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over the sentence's tokens after the first.
    Mean,
    /// The last token.
    Last,
}

/// A direction in the residual stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The k-th principal component (1 = most variance).
    Pc(usize),
    /// The logistic-regression probe for the sentences' concept.
    Probe,
    /// A random unit vector (seeded by the spec's first seed).
    Random,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Direction::Pc(k) => write!(f, "pc{k}"),
            Direction::Probe => f.write_str("probe"),
            Direction::Random => f.write_str("random"),
        }
    }
}

impl FromStr for Direction {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self, LabError> {
        match s.trim() {
            "probe" => Ok(Direction::Probe),
            "random" => Ok(Direction::Random),
            other => other
                .strip_prefix("pc")
                .and_then(|k| k.parse::<usize>().ok())
                .filter(|&k| k >= 1)
                .map(Direction::Pc)
                .ok_or_else(|| {
                    LabError::Spec(format!(
                        "unknown direction {other:?}: use pc1, pc2, .., probe or random"
                    ))
                }),
        }
    }
}

impl Serialize for Direction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Direction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How prompts are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptFormat {
    /// ChatML (SmolLM2-Instruct): a system instruction, then one user turn per sentence and
    /// one assistant turn per label.
    Chat,
    /// Plain text: `sentence -> label` per line (base models, the bundled `icl-3l`).
    Plain,
}

/// Where the sentences come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sentences {
    /// A bundled set: `"sentiment"` (English, for real models) or `"icl-words"` (4-word
    /// sentences in `icl-3l`'s vocabulary).
    Bundled(String),
    /// Pasted text: one sentence per line, optionally ending in `| 1` or `| 0` (its concept,
    /// needed for the probe).
    Pasted(String),
}

/// One sentence and its concept label, when known.
#[derive(Clone, Debug, PartialEq)]
pub struct Sentence {
    /// The text.
    pub text: String,
    /// The concept (for the probe).
    pub concept: Option<bool>,
}

/// The bundled sentence sets' names.
pub const BUNDLED_SETS: [&str; 2] = ["sentiment", "icl-words"];

impl Sentences {
    /// The sentences, checked.
    pub fn load(&self) -> Result<Vec<Sentence>, LabError> {
        let list = match self {
            Sentences::Bundled(name) => match name.as_str() {
                "sentiment" => parse_sentences(SENTIMENT)?,
                "icl-words" => icl_words_set(),
                other => {
                    return Err(LabError::Spec(format!(
                        "unknown bundled sentence set {other:?} (use {BUNDLED_SETS:?})"
                    )));
                }
            },
            Sentences::Pasted(text) => parse_sentences(text)?,
        };
        if list.len() < 8 {
            return Err(LabError::Spec(format!(
                "the experiment needs at least 8 sentences (one per line); it has {}",
                list.len()
            )));
        }
        Ok(list)
    }
}

/// Parse one sentence per line with an optional `| 0` / `| 1` concept; blank lines are skipped.
pub fn parse_sentences(text: &str) -> Result<Vec<Sentence>, LabError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (text, concept) = match line.rsplit_once('|') {
            Some((t, c)) => match c.trim() {
                "1" => (t.trim(), Some(true)),
                "0" => (t.trim(), Some(false)),
                other => {
                    return Err(LabError::Spec(format!(
                        "line {}: after `|` put the concept, 0 or 1 (found {other:?})",
                        i + 1
                    )));
                }
            },
            None => (line, None),
        };
        if text.is_empty() {
            return Err(LabError::Spec(format!(
                "line {}: the sentence is empty",
                i + 1
            )));
        }
        if text.chars().count() > 400 {
            return Err(LabError::Spec(format!(
                "line {}: a sentence may have at most 400 characters",
                i + 1
            )));
        }
        out.push(Sentence {
            text: text.to_string(),
            concept,
        });
    }
    Ok(out)
}

/// The animals among `icl-3l`'s words: the concept of the `icl-words` set.
const ICL_ANIMALS: [&str; 9] = [
    "bird", "cat", "cow", "dog", "duck", "fish", "frog", "goat", "horse",
];

/// 160 four-word sentences of distinct words in `icl-3l`'s vocabulary (seeded), concept: the
/// sentence names an animal.
pub fn icl_words_set() -> Vec<Sentence> {
    let words = &INDUCTION_WORDS[..ICL_WORDS];
    let mut rng = Rng::new(0x5E7);
    (0..160)
        .map(|_| {
            let mut pick: Vec<usize> = Vec::with_capacity(ICL_SENTENCE);
            while pick.len() < ICL_SENTENCE {
                let w = rng.below(ICL_WORDS);
                if !pick.contains(&w) {
                    pick.push(w);
                }
            }
            let text: Vec<&str> = pick.iter().map(|&w| words[w]).collect();
            Sentence {
                concept: Some(text.iter().any(|w| ICL_ANIMALS.contains(w))),
                text: text.join(" "),
            }
        })
        .collect()
}

/// How a direction's projections become the two labels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bins {
    /// Above the median: `labels[0]`; the rest: `labels[1]` (the paper's split).
    #[default]
    Median,
    /// At or above the `1 − q` quantile: `labels[0]`; at or below the `q` quantile: `labels[1]`;
    /// sentences in between get no label and are neither examples nor queries (`0 < q < 0.5`).
    Quantiles(f64),
}

/// The `q` quantile of `v` with linear interpolation between order statistics (NumPy's default).
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let h = (s.len().saturating_sub(1)) as f64 * q.clamp(0.0, 1.0);
    let (i, f) = (h.floor() as usize, h - h.floor());
    match s.get(i + 1) {
        Some(next) => s[i] + f * (next - s[i]),
        None => s.get(i).copied().unwrap_or(0.0),
    }
}

/// Each sentence's label index (`None`: between the bins) and the two cuts `[low, high]`.
pub fn bin_labels(proj: &[f64], bins: Bins) -> (Vec<Option<usize>>, [f64; 2]) {
    match bins {
        Bins::Median => {
            let m = median(proj);
            (
                proj.iter().map(|&p| Some(usize::from(p <= m))).collect(),
                [m, m],
            )
        }
        Bins::Quantiles(q) => {
            let (lo, hi) = (quantile(proj, q), quantile(proj, 1.0 - q));
            (
                proj.iter()
                    .map(|&p| {
                        if p >= hi {
                            Some(0)
                        } else if p <= lo {
                            Some(1)
                        } else {
                            None
                        }
                    })
                    .collect(),
                [lo, hi],
            )
        }
    }
}

/// One neurofeedback experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeurofeedbackSpec {
    /// Which model: `"smollm2"`, a bundled id (`"icl-3l"`) or the name of a file the user loaded.
    pub model: String,
    /// Where activations are read: a residual-stream hook (`blocks.L.hook_resid_post`, ..).
    pub hook: HookPoint,
    /// Mean over tokens or last token.
    pub pooling: Pooling,
    /// The sentence set.
    pub sentences: Sentences,
    /// Directions to test.
    pub directions: Vec<Direction>,
    /// Numbers of in-context examples.
    pub examples: Vec<usize>,
    /// Seeds: each picks the examples and the held-out queries.
    pub seeds: Vec<u64>,
    /// How projections become labels (median split by default).
    #[serde(default)]
    pub bins: Bins,
    /// Held-out sentences queried per seed and N.
    pub queries: usize,
    /// Also run every direction with the examples' labels shuffled (control).
    pub shuffled: bool,
    /// The two label words (each one token): `[above the median, below]`.
    pub labels: [String; 2],
    /// Chat template or plain text.
    pub format: PromptFormat,
    /// Run the implicit control task at the largest N (chat format only).
    pub control: bool,
    /// Run the explicit control task at the largest N (chat format only): the model writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explicit: Option<ExplicitControl>,
}

/// How the explicit control task's sentences are written.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplicitControl {
    /// The most tokens the model may write (1 to 64).
    pub max_tokens: usize,
    /// 0: greedy decoding; above 0: sampling at that temperature, seeded by the spec's seeds.
    pub temperature: f64,
    /// Sentences written per seed, target direction and label (1 to 8; 1 when greedy).
    pub samples: usize,
}

impl Default for ExplicitControl {
    fn default() -> Self {
        Self {
            max_tokens: 24,
            temperature: 0.0,
            samples: 1,
        }
    }
}

impl NeurofeedbackSpec {
    /// The guided experiment on the bundled in-context labelling model.
    pub fn icl_bundled() -> Self {
        Self {
            model: Bundled::Icl.id().into(),
            hook: HookPoint::ResidPost(1),
            pooling: Pooling::Mean,
            sentences: Sentences::Bundled("icl-words".into()),
            directions: vec![
                Direction::Pc(1),
                Direction::Pc(2),
                Direction::Pc(8),
                Direction::Probe,
                Direction::Random,
            ],
            examples: vec![0, 2, 4, 8, 16],
            seeds: vec![1, 2],
            bins: Bins::Median,
            queries: 40,
            shuffled: true,
            labels: ["A".into(), "B".into()],
            format: PromptFormat::Plain,
            control: false,
            explicit: None,
        }
    }

    /// The guided experiment on SmolLM2-135M-Instruct: early versus late PCs as N grows.
    pub fn smollm2() -> Self {
        Self {
            model: "smollm2".into(),
            hook: HookPoint::ResidPost(15),
            pooling: Pooling::Mean,
            sentences: Sentences::Bundled("sentiment".into()),
            directions: vec![
                Direction::Pc(1),
                Direction::Pc(2),
                Direction::Pc(16),
                Direction::Probe,
                Direction::Random,
            ],
            examples: vec![0, 4, 16],
            seeds: vec![1],
            bins: Bins::Median,
            queries: 24,
            shuffled: true,
            labels: ["A".into(), "B".into()],
            format: PromptFormat::Chat,
            control: true,
            explicit: Some(ExplicitControl::default()),
        }
    }

    fn check(&self, m: &Transformer) -> Result<(), LabError> {
        if !matches!(
            self.hook,
            HookPoint::ResidPre(_)
                | HookPoint::ResidMid(_)
                | HookPoint::ResidPost(_)
                | HookPoint::AttnOut(_)
                | HookPoint::MlpOut(_)
        ) {
            return Err(LabError::Spec(format!(
                "{} is not a residual-stream hook (use hook_resid_pre/mid/post, attn_out or mlp_out)",
                self.hook
            )));
        }
        let n = m.config.n_layers;
        if self.hook.layer().is_some_and(|l| l >= n) {
            return Err(LabError::Spec(format!(
                "{} is past the model's last layer ({})",
                self.hook,
                n - 1
            )));
        }
        if self.directions.is_empty() || self.directions.len() > 12 {
            return Err(LabError::Spec("choose 1 to 12 directions".into()));
        }
        if self.examples.is_empty() || self.examples.len() > 12 {
            return Err(LabError::Spec("give 1 to 12 values of N".into()));
        }
        if self.seeds.is_empty() || self.seeds.len() > 10 {
            return Err(LabError::Spec("give 1 to 10 seeds".into()));
        }
        if self.queries == 0 {
            return Err(LabError::Spec(
                "query at least one held-out sentence".into(),
            ));
        }
        if let Bins::Quantiles(q) = self.bins
            && !(q > 0.0 && q < 0.5)
        {
            return Err(LabError::Spec(format!(
                "quantile bins take q between 0 and 0.5 (the top and bottom q are labelled); got {q}"
            )));
        }
        if self.labels[0] == self.labels[1] || self.labels.iter().any(|l| l.trim().is_empty()) {
            return Err(LabError::Spec(
                "the two labels must be different words".into(),
            ));
        }
        if (self.control || self.explicit.is_some()) && self.format != PromptFormat::Chat {
            return Err(LabError::Spec(
                "the control task asks the model for a sentence: it needs the chat format".into(),
            ));
        }
        if let Some(e) = &self.explicit {
            if !(1..=64).contains(&e.max_tokens) {
                return Err(LabError::Spec(
                    "the model may write 1 to 64 tokens per sentence".into(),
                ));
            }
            if !(1..=8).contains(&e.samples) {
                return Err(LabError::Spec(
                    "write 1 to 8 sentences per seed, direction and label".into(),
                ));
            }
            if !(e.temperature >= 0.0 && e.temperature <= 5.0) {
                return Err(LabError::Spec(
                    "the temperature must be between 0 (greedy) and 5".into(),
                ));
            }
            if e.temperature == 0.0 && e.samples > 1 {
                return Err(LabError::Spec(
                    "greedy decoding writes the same sentence every time: use one sample, or a temperature above 0".into(),
                ));
            }
        }
        Ok(())
    }
}

/// The reporting task for one direction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectionResult {
    /// Which direction.
    pub direction: Direction,
    /// Fraction of the activations' variance along it.
    pub variance_explained: f64,
    /// Each sentence's projection.
    pub projections: Vec<f64>,
    /// The median (the label boundary of the median split).
    pub median: f64,
    /// The label cuts `[low, high]`: below `low` the second label, above `high` the first (both
    /// the median for the median split).
    #[serde(default)]
    pub cuts: [f64; 2],
    /// `accuracy[seed][i]`: accuracy with `examples[i]` examples.
    pub accuracy: Vec<Vec<f64>>,
    /// Mean over seeds, per N.
    pub mean: Vec<f64>,
    /// The shuffled-label control: mean over seeds, per N.
    pub shuffled: Option<Vec<f64>>,
}

/// The control task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ControlResult {
    /// Examples in context.
    pub examples: usize,
    /// `shift[target][measured]`: with `directions[target]`'s examples and target labels, the
    /// mean projection for `labels[0]` minus that for `labels[1]` along `directions[measured]`,
    /// in standard deviations of that projection over the sentence set.
    pub shift: Vec<Vec<f64>>,
}

/// One sentence the model wrote in the explicit control task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WrittenSentence {
    /// Whose labels were in context (the target direction).
    pub direction: Direction,
    /// The label asked for (index into the spec's labels).
    pub label: usize,
    /// The seed of the examples (and of the sampling).
    pub seed: u64,
    /// What the model wrote (without the end-of-turn token).
    pub text: String,
    /// Whether it ended its turn within the token limit.
    pub finished: bool,
    /// Projection on the target direction of the activations while writing, as a z-score over
    /// the sentence set (mean 0, sd 1).
    pub z: f64,
    /// The same for the written sentence read alone.
    pub z_alone: f64,
}

/// The explicit control task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplicitControlResult {
    /// Examples in context.
    pub examples: usize,
    /// `shift[target][measured]` as in [`ControlResult`], for the activations while the model
    /// writes (over the tokens it wrote).
    pub shift: Vec<Vec<f64>>,
    /// The same for the written sentences read alone.
    pub shift_alone: Vec<Vec<f64>>,
    /// Every sentence written.
    pub sentences: Vec<WrittenSentence>,
}

/// Everything the lab shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeurofeedbackResult {
    /// Sentences used.
    pub sentences: usize,
    /// Fraction of variance of each of the first principal components.
    pub pc_variance: Vec<f64>,
    /// Per direction.
    pub directions: Vec<DirectionResult>,
    /// The control task, when asked for.
    pub control: Option<ControlResult>,
    /// The explicit control task, when asked for.
    #[serde(default)]
    pub explicit: Option<ExplicitControlResult>,
    /// The prompt of the first seed at the largest N, for the first query (to show).
    pub example_prompt: String,
}

/// Token pieces of the prompts.
struct Prompts<'a> {
    tk: &'a TextTokenizer,
    format: PromptFormat,
    label_ids: [u32; 2],
    labels: [String; 2],
}

/// The control tasks' instruction.
pub const CONTROL_INSTRUCTION: &str = "Each sentence has a hidden label, A or B, that depends on the sentence. When I ask for a label, write one new sentence with that label.";

/// The chat format's instruction.
pub const INSTRUCTION: &str = "Each sentence I send has a hidden label, A or B, that depends on the sentence. Reply with the label only.";

impl<'a> Prompts<'a> {
    fn new(tk: &'a TextTokenizer, spec: &NeurofeedbackSpec) -> Result<Self, LabError> {
        let mut ids = [0u32; 2];
        for (i, l) in spec.labels.iter().enumerate() {
            // A label follows "->" after a space (plain) or the assistant header (chat).
            let text = match spec.format {
                PromptFormat::Plain => format!(" {}", l.trim()),
                PromptFormat::Chat => l.trim().to_string(),
            };
            let t = tk.encode(&text)?;
            ids[i] = match t.as_slice() {
                [id] => *id,
                _ => {
                    return Err(LabError::Spec(format!(
                        "the label {l:?} is {} tokens for this tokenizer; choose one-token labels",
                        t.len()
                    )));
                }
            };
        }
        if spec.format == PromptFormat::Chat && tk.token_to_id("<|im_start|>").is_none() {
            return Err(LabError::Spec(
                "this tokenizer has no chat template tokens (<|im_start|>): use the plain format"
                    .into(),
            ));
        }
        Ok(Self {
            tk,
            format: spec.format,
            label_ids: ids,
            labels: spec.labels.clone(),
        })
    }

    fn instruction(&self) -> String {
        INSTRUCTION.replace(
            "A or B",
            &format!("{} or {}", self.labels[0], self.labels[1]),
        )
    }

    /// The prompt's start: the instruction (chat) and the examples `(sentence, label index)`.
    fn prefix(&self, examples: &[(&str, usize)]) -> Result<Vec<u32>, LabError> {
        let mut ids = Vec::new();
        match self.format {
            PromptFormat::Chat => {
                ids.extend(self.tk.encode(&format!(
                    "<|im_start|>system\n{}<|im_end|>\n",
                    self.instruction()
                ))?);
                for (s, l) in examples {
                    ids.extend(self.query(s)?);
                    ids.push(self.label_ids[*l]);
                    ids.extend(self.tk.encode("<|im_end|>\n")?);
                }
            }
            PromptFormat::Plain => {
                for (s, l) in examples {
                    ids.extend(self.query(s)?);
                    ids.push(self.label_ids[*l]);
                    ids.extend(self.tk.encode("\n")?);
                }
            }
        }
        Ok(ids)
    }

    /// A query: the sentence, ready for the label.
    fn query(&self, s: &str) -> Result<Vec<u32>, LabError> {
        Ok(match self.format {
            PromptFormat::Chat => self.tk.encode(&format!(
                "<|im_start|>user\n{s}<|im_end|>\n<|im_start|>assistant\n"
            ))?,
            PromptFormat::Plain => self.tk.encode(&format!("{s} {ICL_ARROW}"))?,
        })
    }

    /// The tokens that end the model's turn.
    fn stop_ids(&self) -> Vec<u32> {
        ["<|im_end|>", "<|endoftext|>"]
            .iter()
            .filter_map(|t| self.tk.token_to_id(t))
            .collect()
    }

    /// The control tasks' prompt start: the control instruction and the examples the other way
    /// round — a request for each example's label, answered by its sentence — so the model has
    /// seen what a sentence of each label looks like (and that it is asked for a sentence, not a
    /// label).
    fn control_prefix(&self, examples: &[(&str, usize)]) -> Result<Vec<u32>, LabError> {
        let mut ids = self.tk.encode(&format!(
            "<|im_start|>system\n{}<|im_end|>\n",
            CONTROL_INSTRUCTION.replace(
                "A or B",
                &format!("{} or {}", self.labels[0], self.labels[1]),
            )
        ))?;
        for (s, l) in examples {
            ids.extend(self.request(*l)?);
            ids.extend(self.tk.encode(&format!("{s}<|im_end|>\n"))?);
        }
        Ok(ids)
    }

    /// The control task's request for a sentence of label `l`, after which the sentence is read
    /// (implicit) or written (explicit).
    fn request(&self, l: usize) -> Result<Vec<u32>, LabError> {
        Ok(self.tk.encode(&format!(
            "<|im_start|>user\nWrite a sentence whose label is {}.<|im_end|>\n<|im_start|>assistant\n",
            self.labels[l]
        ))?)
    }
}

/// Pool a sentence's `[batch, pos, d]` activations to `[batch, d]`. The mean leaves out the
/// first token (when there are others): read alone, it is the attention sink, whose huge
/// activations would otherwise be the first principal component of every set.
fn pool(x: Tensor<3>, pooling: Pooling) -> Tensor<2> {
    let [b, p, d] = x.dims();
    match pooling {
        Pooling::Mean => x
            .slice(s![.., usize::from(p > 1)..p, ..])
            .mean_dim(1)
            .reshape([b, d]),
        Pooling::Last => x.slice(s![.., p - 1..p, ..]).reshape([b, d]),
    }
}

/// Pooled activations of every sentence read alone, `n × d_model` on the host. Sentences of
/// equal token count run as one batch.
pub async fn activations(
    m: &Transformer,
    tk: &TextTokenizer,
    sentences: &[Sentence],
    hook: HookPoint,
    pooling: Pooling,
) -> Result<Vec<Vec<f64>>, LabError> {
    let ids: Vec<Vec<u32>> = sentences
        .iter()
        .map(|s| tk.encode(&s.text))
        .collect::<Result<_, _>>()?;
    if let Some(i) = ids.iter().position(Vec::is_empty) {
        return Err(LabError::Spec(format!(
            "sentence {} has no tokens for this tokenizer",
            i + 1
        )));
    }
    in_context_activations(m, None, &ids, hook, pooling).await
}

/// The mean of the rows.
fn mean_row(x: &[Vec<f64>]) -> Vec<f64> {
    let d = x[0].len();
    let mut m = vec![0.0; d];
    for r in x {
        for (a, b) in m.iter_mut().zip(r) {
            *a += b;
        }
    }
    m.iter_mut().for_each(|a| *a /= x.len() as f64);
    m
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn normalise(v: &mut [f64]) {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Principal components of the rows of `x` (`n × d`): the first `k` unit directions (sign: the
/// largest-magnitude entry positive) and every component's fraction of the total variance.
/// Eigenvectors of the `n × n` Gram matrix by the cyclic Jacobi method (exact to round-off, and
/// cheap for a few hundred sentences whatever `d_model` is).
pub fn pca(x: &[Vec<f64>], k: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    let n = x.len();
    let mu = mean_row(x);
    let xc: Vec<Vec<f64>> = x
        .iter()
        .map(|r| r.iter().zip(&mu).map(|(a, b)| a - b).collect())
        .collect();
    let mut g = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in i..n {
            let v = dot(&xc[i], &xc[j]);
            g[i][j] = v;
            g[j][i] = v;
        }
    }
    let (vals, vecs) = jacobi_eigen(g);
    let total: f64 = vals
        .iter()
        .map(|v| v.max(0.0))
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| vals[b].total_cmp(&vals[a]));
    let d = mu.len();
    let mut dirs = Vec::new();
    for &i in order.iter().take(k.min(n)) {
        // Principal axis = Xcᵀ u (normalised).
        let mut v = vec![0.0; d];
        for (r, row) in xc.iter().enumerate() {
            let w = vecs[r][i];
            for (a, b) in v.iter_mut().zip(row) {
                *a += w * b;
            }
        }
        normalise(&mut v);
        let big = v
            .iter()
            .copied()
            .max_by(|a, b| a.abs().total_cmp(&b.abs()))
            .unwrap_or(1.0);
        if big < 0.0 {
            v.iter_mut().for_each(|a| *a = -*a);
        }
        dirs.push(v);
    }
    let frac = order.iter().map(|&i| vals[i].max(0.0) / total).collect();
    (dirs, frac)
}

/// Eigen-decomposition of a symmetric matrix: `(values, vectors)` with `vectors[r][i]` the r-th
/// entry of the i-th eigenvector.
fn jacobi_eigen(mut a: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = a.len();
    let mut v: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    let scale: f64 = a.iter().map(|r| dot(r, r)).sum::<f64>().sqrt();
    for _sweep in 0..60 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-14 * scale.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() <= 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let sn = t * c;
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - sn * akq;
                    row[q] = sn * akp + c * akq;
                }
                let (rp, rq) = (a[p].clone(), a[q].clone());
                for (k, (apk, aqk)) in rp.into_iter().zip(rq).enumerate() {
                    a[p][k] = c * apk - sn * aqk;
                    a[q][k] = sn * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - sn * vq;
                    row[q] = sn * vp + c * vq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i][i]).collect(), v)
}

/// L2-regularised logistic regression on standardised features; the direction (in the original
/// activation space) is the weight vector mapped back and normalised.
pub fn probe(x: &[Vec<f64>], y: &[bool]) -> Result<Vec<f64>, LabError> {
    let pos = y.iter().filter(|&&b| b).count();
    if pos == 0 || pos == y.len() {
        return Err(LabError::Spec(
            "the probe needs sentences of both concepts (mark lines with | 1 and | 0)".into(),
        ));
    }
    let (n, d) = (x.len(), x[0].len());
    let mu = mean_row(x);
    let sd: Vec<f64> = (0..d)
        .map(|j| {
            let v = x.iter().map(|r| (r[j] - mu[j]).powi(2)).sum::<f64>() / n as f64;
            v.sqrt().max(1e-8)
        })
        .collect();
    let z: Vec<Vec<f64>> = x
        .iter()
        .map(|r| (0..d).map(|j| (r[j] - mu[j]) / sd[j]).collect())
        .collect();
    let (mut w, mut b) = (vec![0.0; d], 0.0);
    let (lr, l2) = (0.5, 1e-2);
    for _ in 0..500 {
        let mut gw = vec![0.0; d];
        let mut gb = 0.0;
        for (r, &t) in z.iter().zip(y) {
            let p = 1.0 / (1.0 + (-(dot(&w, r) + b)).exp());
            let e = p - f64::from(u8::from(t));
            for (g, v) in gw.iter_mut().zip(r) {
                *g += e * v;
            }
            gb += e;
        }
        for (wj, g) in w.iter_mut().zip(&gw) {
            *wj -= lr * (g / n as f64 + l2 * *wj);
        }
        b -= lr * gb / n as f64;
    }
    let mut dir: Vec<f64> = w.iter().zip(&sd).map(|(a, s)| a / s).collect();
    normalise(&mut dir);
    Ok(dir)
}

/// A random unit vector of length `d`.
pub fn random_direction(d: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed ^ 0xD12E_C710);
    let mut v: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
    normalise(&mut v);
    v
}

/// The median of `v` (mean of the two middle values for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// A seeded permutation of `0..n` (Fisher–Yates).
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i + 1);
        p.swap(i, j);
    }
    p
}

/// The split of one seed: the example pool (first half of a permutation, in order) and the
/// queries (the start of the second half).
pub fn split(n: usize, seed: u64, queries: usize) -> (Vec<usize>, Vec<usize>) {
    let p = permutation(n, seed);
    let half = n / 2;
    let q = p[half..].iter().copied().take(queries).collect();
    (p[..half].to_vec(), q)
}

/// [`split`] keeping only labelled sentences: the example pool (first half of the seed's
/// permutation) and up to `queries` held-out queries (second half).
pub fn labelled_split(
    n: usize,
    seed: u64,
    queries: usize,
    label: &[Option<usize>],
) -> (Vec<usize>, Vec<usize>) {
    let p = permutation(n, seed);
    let half = n / 2;
    let keep = |i: &&usize| label[**i].is_some();
    (
        p[..half].iter().filter(keep).copied().collect(),
        p[half..]
            .iter()
            .filter(keep)
            .take(queries)
            .copied()
            .collect(),
    )
}

/// Indices of `items` grouped by length (queries of equal length run as one batch).
fn by_length(items: &[Vec<u32>]) -> Vec<Vec<usize>> {
    let mut lengths: Vec<usize> = items.iter().map(Vec::len).collect();
    lengths.sort_unstable();
    lengths.dedup();
    lengths
        .into_iter()
        .map(|len| {
            (0..items.len())
                .filter(|&i| items[i].len() == len)
                .collect()
        })
        .collect()
}

/// The keys/values of `tokens` read after `cache` (`cache` itself when `tokens` is empty), so
/// prompts that share a beginning run it once.
fn extend_cache(
    m: &Transformer,
    cache: Option<&KvCache>,
    tokens: &[u32],
) -> Result<Option<KvCache>, LabError> {
    if tokens.is_empty() {
        return Ok(cache.cloned());
    }
    Ok(Some(
        m.extend_residual(m.tokens(&[tokens.to_vec()])?, cache, &HookPlan::default())?
            .2,
    ))
}

/// For every query, `(logit labels[0], logit labels[1])` after `prefix` + the query. Queries of
/// equal length share one batched run after the cached prefix (one readback in all).
async fn answer_logits(
    m: &Transformer,
    prefix: &[u32],
    queries: &[Vec<u32>],
    label_ids: [u32; 2],
) -> Result<Vec<[f32; 2]>, LabError> {
    let cache = extend_cache(m, None, prefix)?;
    let d = m.config.d_model;
    let ids = Tensor::<1, Int>::from_data(
        TensorData::new(label_ids.map(|i| i as i32).to_vec(), [2]),
        &m.device(),
    );
    let groups = by_length(queries);
    let mut picked = Vec::new();
    for rows in &groups {
        let batch: Vec<Vec<u32>> = rows.iter().map(|&i| queries[i].clone()).collect();
        let p = batch[0].len();
        let (resid, _, _) =
            m.extend_residual(m.tokens(&batch)?, cache.as_ref(), &HookPlan::default())?;
        let last = resid.slice(s![.., p - 1..p, ..]).reshape([rows.len(), d]);
        picked.push(m.logits_of(last, ids.clone())); // [rows, 2]
    }
    let flat = read_f32(Tensor::cat(picked, 0)).await?;
    let mut out = vec![[0f32; 2]; queries.len()];
    for (k, &i) in groups.iter().flatten().enumerate() {
        out[i] = [flat[2 * k], flat[2 * k + 1]];
    }
    Ok(out)
}

/// The reporting task's raw readout: the two label logits of each query after `examples`
/// (`(sentence, label index)`), and the token ids of the first query's whole prompt.
pub async fn label_logits(
    spec: &NeurofeedbackSpec,
    m: &Transformer,
    tk: &TextTokenizer,
    examples: &[(&str, usize)],
    queries: &[&str],
) -> Result<(Vec<[f32; 2]>, Vec<u32>), LabError> {
    let prompts = Prompts::new(tk, spec)?;
    let prefix = prompts.prefix(examples)?;
    let qs: Vec<Vec<u32>> = queries
        .iter()
        .map(|q| prompts.query(q))
        .collect::<Result<_, _>>()?;
    let mut first = prefix.clone();
    first.extend(qs.first().cloned().unwrap_or_default());
    Ok((
        answer_logits(m, &prefix, &qs, prompts.label_ids).await?,
        first,
    ))
}

/// Pooled activation (`d_model`) at `hook` of each `sentence` read after the prefix whose
/// keys/values are `prefix` (sentences of equal length batched).
async fn in_context_activations(
    m: &Transformer,
    prefix: Option<&KvCache>,
    sentences: &[Vec<u32>],
    hook: HookPoint,
    pooling: Pooling,
) -> Result<Vec<Vec<f64>>, LabError> {
    let plan = HookPlan::caching([hook]);
    let d = m.config.d_model;
    let groups = by_length(sentences);
    let mut pooled = Vec::new();
    for rows in &groups {
        let batch: Vec<Vec<u32>> = rows.iter().map(|&i| sentences[i].clone()).collect();
        let acts = m.activations(m.tokens(&batch)?, prefix, &plan)?;
        let a = acts.r3(hook).ok_or_else(missing_activation)?;
        pooled.push(pool(a, pooling));
    }
    let flat = read_f32(Tensor::cat(pooled, 0)).await?;
    let mut out = vec![Vec::new(); sentences.len()];
    for (k, &i) in groups.iter().flatten().enumerate() {
        out[i] = flat[k * d..(k + 1) * d]
            .iter()
            .map(|&x| f64::from(x))
            .collect();
    }
    Ok(out)
}

/// A sentence the model wrote, and its activations.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    /// The tokens written, without the end-of-turn token.
    pub tokens: Vec<u32>,
    /// Whether the model ended its turn within the limit.
    pub finished: bool,
    /// Pooled activation (`d_model`) over the tokens written, in the prompt that asked for them
    /// (the end-of-turn token alone when the model wrote nothing else).
    pub in_context: Vec<f64>,
    /// Pooled activation of the same tokens read alone.
    pub alone: Vec<f64>,
}

fn missing_activation() -> LabError {
    LabError::Spec("the model cached no activation at the hook".into())
}

/// The keys/values of the control tasks' prompt up to the request: the control instruction and
/// `examples` (`(sentence, label index)`). Every sentence asked for after the same examples
/// starts from it.
pub fn control_cache(
    spec: &NeurofeedbackSpec,
    m: &Transformer,
    tk: &TextTokenizer,
    examples: &[(&str, usize)],
) -> Result<Option<KvCache>, LabError> {
    extend_cache(m, None, &Prompts::new(tk, spec)?.control_prefix(examples)?)
}

/// The explicit control task's raw readout: after the examples of `examples` (from
/// [`control_cache`]) the model is asked for a sentence of label `label` and writes it with
/// `sampling`.
pub async fn write_sentence(
    spec: &NeurofeedbackSpec,
    m: &Transformer,
    tk: &TextTokenizer,
    examples: Option<&KvCache>,
    label: usize,
    sampling: Sampling,
) -> Result<Written, LabError> {
    let prompts = Prompts::new(tk, spec)?;
    let max_tokens = spec.explicit.unwrap_or_default().max_tokens;
    let plan = HookPlan::caching([spec.hook]);
    let (g, trace) = generate_after(
        m,
        examples,
        &prompts.request(label.min(1))?,
        max_tokens,
        &prompts.stop_ids(),
        sampling,
        &plan,
    )
    .await?;
    let mut tokens = g.tokens.clone();
    if g.stopped {
        tokens.pop();
    }
    let measured = if tokens.is_empty() {
        g.tokens.clone()
    } else {
        tokens.clone()
    };
    // Generation read every written token it fed back in context already (one step each, after
    // the request's run); only a last token no step read (the limit reached, or a lone
    // end-of-turn) runs once more, after all the others.
    let mut steps: Vec<Tensor<3>> = trace
        .hooks
        .iter()
        .skip(1)
        .take(measured.len())
        .map(|h| h.r3(spec.hook).ok_or_else(missing_activation))
        .collect::<Result<_, _>>()?;
    let fed = steps.len();
    if fed < measured.len() {
        let rest = m.tokens(&[measured[fed..].to_vec()])?;
        let acts = m.activations(rest, trace.cache.as_ref(), &plan)?;
        steps.push(acts.r3(spec.hook).ok_or_else(missing_activation)?);
    }
    let in_context = read_f32(pool(Tensor::cat(steps, 1), spec.pooling))
        .await?
        .into_iter()
        .map(f64::from)
        .collect();
    let alone = in_context_activations(m, None, &[measured], spec.hook, spec.pooling)
        .await?
        .into_iter()
        .next()
        .ok_or_else(missing_activation)?;
    Ok(Written {
        tokens,
        finished: g.stopped,
        in_context,
        alone,
    })
}

/// Run the whole experiment. `progress(done, total)` resolves to `false` to cancel.
pub async fn run(
    spec: &NeurofeedbackSpec,
    m: &Transformer,
    tk: &TextTokenizer,
    progress: &mut dyn FnMut(usize, usize) -> Progress,
) -> Result<NeurofeedbackResult, LabError> {
    spec.check(m)?;
    let sentences = spec.sentences.load()?;
    let prompts = Prompts::new(tk, spec)?;
    let n = sentences.len();
    let max_n = spec.examples.iter().copied().max().unwrap_or(0);
    if max_n > n / 2 {
        return Err(LabError::Spec(format!(
            "N = {max_n} examples needs at least {} sentences (half are kept for queries); the set has {n}",
            2 * max_n
        )));
    }
    let runs_per_dir = spec.seeds.len() * spec.examples.len() * (1 + usize::from(spec.shuffled));
    let written_per_dir = spec
        .explicit
        .map_or(0, |e| 2 * spec.seeds.len() * e.samples);
    let total = 1
        + spec.directions.len() * runs_per_dir
        + usize::from(spec.control) * spec.directions.len() * 2
        + spec.directions.len() * written_per_dir;
    let mut done = 0;
    if !progress(done, total).await {
        return Err(LabError::Cancelled);
    }

    let x = activations(m, tk, &sentences, spec.hook, spec.pooling).await?;
    done += 1;
    let k = spec
        .directions
        .iter()
        .map(|d| match d {
            Direction::Pc(k) => *k,
            _ => 1,
        })
        .max()
        .unwrap_or(1)
        .max(10);
    let max_pc = n.min(x[0].len()) - 1;
    if let Some(Direction::Pc(bad)) = spec
        .directions
        .iter()
        .find(|d| matches!(d, Direction::Pc(k) if *k > max_pc))
    {
        return Err(LabError::Spec(format!(
            "pc{bad} does not exist: {n} sentences give at most {max_pc} components"
        )));
    }
    let (pcs, pc_variance) = pca(&x, k);
    let mu = mean_row(&x);
    let total_var: f64 = x
        .iter()
        .map(|r| r.iter().zip(&mu).map(|(a, b)| (a - b).powi(2)).sum::<f64>())
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    let seed0 = spec.seeds[0];

    // Directions, projections, labels.
    let mut vecs = Vec::new();
    for d in &spec.directions {
        vecs.push(match d {
            Direction::Pc(k) => pcs[k - 1].clone(),
            Direction::Probe => {
                let y: Option<Vec<bool>> = sentences.iter().map(|s| s.concept).collect();
                let y = y.ok_or_else(|| {
                    LabError::Spec(
                        "the probe needs every sentence's concept: end each line with | 1 or | 0"
                            .into(),
                    )
                })?;
                probe(&x, &y)?
            }
            Direction::Random => random_direction(x[0].len(), seed0),
        });
    }
    let query_ids: Vec<Vec<u32>> = sentences
        .iter()
        .map(|s| prompts.query(&s.text))
        .collect::<Result<_, _>>()?;
    let mut results = Vec::new();
    let mut example_prompt = String::new();
    for (di, d) in spec.directions.iter().enumerate() {
        let u = &vecs[di];
        let proj: Vec<f64> = x.iter().map(|r| dot(r, u)).collect();
        let med = median(&proj);
        let (label, cuts) = bin_labels(&proj, spec.bins);
        let var = x
            .iter()
            .map(|r| (dot(r, u) - dot(&mu, u)).powi(2))
            .sum::<f64>()
            / total_var;
        let mut accuracy = Vec::new();
        let mut shuffled_acc = Vec::new();
        for &seed in &spec.seeds {
            let (pool_idx, queries) = labelled_split(n, seed, spec.queries, &label);
            if pool_idx.len() < max_n || queries.is_empty() {
                return Err(LabError::Spec(format!(
                    "with these bins {d} labels {} of seed {seed}'s example pool and {} held-out queries: \
                     N = {max_n} needs {max_n} examples and at least one query (widen the bins or lower N)",
                    pool_idx.len(),
                    queries.len()
                )));
            }
            let qs: Vec<Vec<u32>> = queries.iter().map(|&i| query_ids[i].clone()).collect();
            let mut row = Vec::new();
            let mut srow = Vec::new();
            for shuffle in [false, true] {
                if shuffle && !spec.shuffled {
                    continue;
                }
                for &nn in &spec.examples {
                    let chosen = &pool_idx[..nn];
                    let mut labs: Vec<usize> = chosen.iter().filter_map(|&i| label[i]).collect();
                    if shuffle {
                        let p = permutation(nn, seed ^ 0x5_4FF1E);
                        labs = p.iter().map(|&j| labs[j]).collect();
                    }
                    let ex: Vec<(&str, usize)> = chosen
                        .iter()
                        .zip(&labs)
                        .map(|(&i, &l)| (sentences[i].text.as_str(), l))
                        .collect();
                    let prefix = prompts.prefix(&ex)?;
                    if di == 0 && seed == seed0 && !shuffle && nn == max_n {
                        let mut all = prefix.clone();
                        all.extend(&qs[0]);
                        example_prompt = tk.decode(&all)?;
                    }
                    let logits = answer_logits(m, &prefix, &qs, prompts.label_ids).await?;
                    let right = logits
                        .iter()
                        .zip(&queries)
                        .filter(|(l, q)| Some(usize::from(l[1] > l[0])) == label[**q])
                        .count();
                    let acc = right as f64 / queries.len() as f64;
                    if shuffle {
                        srow.push(acc);
                    } else {
                        row.push(acc);
                    }
                    done += 1;
                    if !progress(done, total).await {
                        return Err(LabError::Cancelled);
                    }
                }
            }
            accuracy.push(row);
            if spec.shuffled {
                shuffled_acc.push(srow);
            }
        }
        let mean_over = |rows: &[Vec<f64>]| -> Vec<f64> {
            (0..spec.examples.len())
                .map(|i| rows.iter().map(|r| r[i]).sum::<f64>() / rows.len() as f64)
                .collect()
        };
        results.push(DirectionResult {
            direction: *d,
            variance_explained: var,
            mean: mean_over(&accuracy),
            shuffled: spec.shuffled.then(|| mean_over(&shuffled_acc)),
            accuracy,
            projections: proj,
            median: med,
            cuts,
        });
    }

    // Mean and standard deviation of each direction's projection over the set: the control
    // tasks' units.
    let (centre, sd): (Vec<f64>, Vec<f64>) = results
        .iter()
        .map(|r| {
            let p = &r.projections;
            let m = p.iter().sum::<f64>() / p.len() as f64;
            let sd = (p.iter().map(|a| (a - m).powi(2)).sum::<f64>() / p.len() as f64)
                .sqrt()
                .max(1e-12);
            (m, sd)
        })
        .unzip();
    let labels_of = |r: &DirectionResult| bin_labels(&r.projections, spec.bins).0;
    // A seed's control examples: the first N labelled sentences of its example pool.
    let control_examples = |label: &[Option<usize>], seed: u64| -> Vec<(&str, usize)> {
        labelled_split(n, seed, spec.queries, label)
            .0
            .iter()
            .take(max_n)
            .filter_map(|&i| label[i].map(|l| (sentences[i].text.as_str(), l)))
            .collect()
    };
    let control = if spec.control {
        let (_, queries) = split(n, seed0, spec.queries);
        let read: Vec<Vec<u32>> = queries
            .iter()
            .map(|&i| tk.encode(&sentences[i].text))
            .collect::<Result<_, _>>()?;
        let mut shift = Vec::new();
        for r in &results {
            let ex = control_examples(&labels_of(r), seed0);
            // The examples run once; each label's request continues them.
            let base = control_cache(spec, m, tk, &ex)?;
            let mut mean_proj = [vec![0.0; vecs.len()], vec![0.0; vecs.len()]];
            for (t, slot) in mean_proj.iter_mut().enumerate() {
                let prefix = extend_cache(m, base.as_ref(), &prompts.request(t)?)?;
                let acts =
                    in_context_activations(m, prefix.as_ref(), &read, spec.hook, spec.pooling)
                        .await?;
                for (j, u) in vecs.iter().enumerate() {
                    slot[j] = acts.iter().map(|a| dot(a, u)).sum::<f64>() / acts.len() as f64;
                }
                done += 1;
                if !progress(done, total).await {
                    return Err(LabError::Cancelled);
                }
            }
            shift.push(
                (0..vecs.len())
                    .map(|j| (mean_proj[0][j] - mean_proj[1][j]) / sd[j])
                    .collect(),
            );
        }
        Some(ControlResult {
            examples: max_n,
            shift,
        })
    } else {
        None
    };
    let explicit = match spec.explicit {
        Some(e) => {
            let mut shift = Vec::new();
            let mut shift_alone = Vec::new();
            let mut written = Vec::new();
            for (di, r) in results.iter().enumerate() {
                let label = labels_of(r);
                // Sums of projections (in context, alone) per target label and direction.
                let mut sums = [
                    [vec![0.0; vecs.len()], vec![0.0; vecs.len()]],
                    [vec![0.0; vecs.len()], vec![0.0; vecs.len()]],
                ];
                let mut count = [0usize; 2];
                for &seed in &spec.seeds {
                    let ex = control_examples(&label, seed);
                    // Both labels' requests, every sample, continue one run of the examples.
                    let cache = control_cache(spec, m, tk, &ex)?;
                    for t in 0..2 {
                        for k in 0..e.samples {
                            let sampling = if e.temperature > 0.0 {
                                Sampling::Temperature {
                                    temperature: e.temperature,
                                    seed: seed
                                        ^ ((di as u64) << 40)
                                        ^ ((t as u64) << 32)
                                        ^ ((k as u64) << 16)
                                        ^ 0x0037_17E5,
                                }
                            } else {
                                Sampling::Greedy
                            };
                            let w =
                                write_sentence(spec, m, tk, cache.as_ref(), t, sampling).await?;
                            for (j, u) in vecs.iter().enumerate() {
                                sums[t][0][j] += dot(&w.in_context, u);
                                sums[t][1][j] += dot(&w.alone, u);
                            }
                            count[t] += 1;
                            let z = |a: &[f64]| (dot(a, &vecs[di]) - centre[di]) / sd[di];
                            written.push(WrittenSentence {
                                direction: r.direction,
                                label: t,
                                seed,
                                text: tk.decode(&w.tokens)?.trim().to_string(),
                                finished: w.finished,
                                z: z(&w.in_context),
                                z_alone: z(&w.alone),
                            });
                            done += 1;
                            if !progress(done, total).await {
                                return Err(LabError::Cancelled);
                            }
                        }
                    }
                }
                let row = |which: usize| -> Vec<f64> {
                    (0..vecs.len())
                        .map(|j| {
                            let a = sums[0][which][j] / count[0].max(1) as f64;
                            let b = sums[1][which][j] / count[1].max(1) as f64;
                            (a - b) / sd[j]
                        })
                        .collect()
                };
                shift.push(row(0));
                shift_alone.push(row(1));
            }
            Some(ExplicitControlResult {
                examples: max_n,
                shift,
                shift_alone,
                sentences: written,
            })
        }
        None => None,
    };
    progress(total, total).await;
    Ok(NeurofeedbackResult {
        sentences: n,
        pc_variance: pc_variance.into_iter().take(k).collect(),
        directions: results,
        control,
        explicit,
        example_prompt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_parse_and_print() {
        for s in ["pc1", "pc12", "probe", "random"] {
            assert_eq!(
                s.parse::<Direction>().map(|d| d.to_string()).ok(),
                Some(s.into())
            );
        }
        for bad in ["pc0", "pc", "pcx", "lda", ""] {
            assert!(bad.parse::<Direction>().is_err(), "{bad}");
        }
        let spec = NeurofeedbackSpec::smollm2();
        let json = serde_json::to_string(&spec).unwrap_or_default();
        assert!(json.contains("\"pc16\"") && json.contains("blocks.15.hook_resid_post"));
        let back: NeurofeedbackSpec = serde_json::from_str(&json).expect("round trip");
        assert_eq!(back, spec);
    }

    #[test]
    fn sentences_parse_with_concepts_and_say_what_is_wrong() {
        let s = parse_sentences("a good day | 1\n\n  a bad day |0 \nno concept\n").expect("parses");
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[0].text.as_str(), s[0].concept),
            ("a good day", Some(true))
        );
        assert_eq!(s[1].concept, Some(false));
        assert_eq!(s[2].concept, None);
        let e = parse_sentences("fine\nbroken | yes").expect_err("bad concept");
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(parse_sentences(" | 1").is_err());
        let few = Sentences::Pasted("one\ntwo".into())
            .load()
            .expect_err("too few");
        assert!(few.to_string().contains("at least 8"), "{few}");
        let sentiment = Sentences::Bundled("sentiment".into())
            .load()
            .expect("bundled");
        assert_eq!(sentiment.len(), 300);
        assert_eq!(
            sentiment.iter().filter(|s| s.concept == Some(true)).count(),
            150
        );
        assert_eq!(icl_words_set().len(), 160);
    }

    #[test]
    fn pca_finds_the_axes_of_a_known_cloud() {
        // Points spread 3:2:0.5 along three orthogonal (rotated) axes.
        let axes = [
            [0.6, 0.8, 0.0, 0.0],
            [-0.8, 0.6, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ];
        let scale = [3.0, 2.0, 0.5];
        let mut rng = Rng::new(3);
        let x: Vec<Vec<f64>> = (0..200)
            .map(|_| {
                let c: Vec<f64> = scale.iter().map(|s| s * rng.normal()).collect();
                (0..4)
                    .map(|j| 1.0 + (0..3).map(|a| c[a] * axes[a][j]).sum::<f64>())
                    .collect()
            })
            .collect();
        let (dirs, frac) = pca(&x, 3);
        for a in 0..3 {
            let cos = dot(&dirs[a], &axes[a]).abs();
            assert!(cos > 0.97, "PC{} cos {cos}", a + 1);
        }
        assert!((frac.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(frac[0] > frac[1] && frac[1] > frac[2] && frac[3] < 1e-12);
        // Eigen-decomposition of a small symmetric matrix by hand: [[2,1],[1,2]] → 3, 1.
        let (vals, _) = jacobi_eigen(vec![vec![2.0, 1.0], vec![1.0, 2.0]]);
        let mut v = vals.clone();
        v.sort_by(f64::total_cmp);
        assert!((v[0] - 1.0).abs() < 1e-12 && (v[1] - 3.0).abs() < 1e-12);
    }

    #[test]
    fn probe_separates_labelled_points_and_medians_split() {
        let mut rng = Rng::new(5);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..100 {
            let c = i % 2 == 0;
            let shift = if c { 2.0 } else { -2.0 };
            x.push(vec![rng.normal() + shift, rng.normal() * 3.0, rng.normal()]);
            y.push(c);
        }
        let w = probe(&x, &y).expect("probe");
        assert!(w[0] > 0.9, "probe direction {w:?}");
        assert!(probe(&x, &[true; 100]).is_err());
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let p = permutation(10, 7);
        let mut s = p.clone();
        s.sort_unstable();
        assert_eq!(s, (0..10).collect::<Vec<_>>());
        let (pool, q) = split(10, 7, 3);
        assert_eq!(pool.len(), 5);
        assert_eq!(q.len(), 3);
        assert!(q.iter().all(|i| !pool.contains(i)));
        let r = random_direction(16, 1);
        assert!((dot(&r, &r) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn quantile_bins_label_the_tails_and_leave_the_middle_out() {
        // NumPy: np.quantile([1, 2, 3, 4], [0.25, 0.5]) = [1.75, 2.5].
        assert!((quantile(&[4.0, 1.0, 3.0, 2.0], 0.25) - 1.75).abs() < 1e-12);
        assert_eq!(
            quantile(&[4.0, 1.0, 3.0, 2.0], 0.5),
            median(&[1.0, 2.0, 3.0, 4.0])
        );
        let proj: Vec<f64> = (1..=8).map(f64::from).collect();
        let (labels, cuts) = bin_labels(&proj, Bins::Quantiles(0.25));
        assert_eq!(cuts, [2.75, 6.25]);
        assert_eq!(
            labels,
            [Some(1), Some(1), None, None, None, None, Some(0), Some(0)]
        );
        let (labels, cuts) = bin_labels(&proj, Bins::Median);
        assert_eq!(cuts, [4.5, 4.5]);
        assert_eq!(labels.iter().filter(|l| **l == Some(0)).count(), 4);
        // The labelled split keeps the seed's order and drops unlabelled sentences.
        let (pool, q) = labelled_split(8, 3, 8, &labels);
        assert_eq!((pool, q), split(8, 3, 8));
        let tails = bin_labels(&proj, Bins::Quantiles(0.25)).0;
        let (pool, q) = labelled_split(8, 3, 8, &tails);
        assert!(pool.iter().chain(&q).all(|&i| tails[i].is_some()));
        assert_eq!(pool.len() + q.len(), 4);
        let json = serde_json::to_string(&Bins::Quantiles(0.25)).unwrap_or_default();
        assert_eq!(json, r#"{"quantiles":0.25}"#);
        assert_eq!(
            serde_json::to_string(&Bins::Median).unwrap_or_default(),
            r#""median""#
        );
    }
}
