//! The experiment's spec ([`NeurofeedbackSpec`]), its parts (directions, pooling, bins, prompt
//! format) and its results.

use super::*;

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

    /// The guided experiment on the bundled model that learned in-context labelling
    /// (`icl-word-3l`): its 24 words, 12 example candidates and 12 queries per seed.
    pub fn icl_word() -> Self {
        Self {
            model: Bundled::IclWord.id().into(),
            hook: HookPoint::ResidPost(1),
            // One token per item: the mean is that token.
            pooling: Pooling::Mean,
            sentences: Sentences::Bundled("icl-word".into()),
            directions: vec![
                Direction::Pc(1),
                Direction::Pc(2),
                Direction::Pc(3),
                Direction::Pc(8),
                Direction::Probe,
                Direction::Random,
            ],
            examples: vec![0, 2, 4, 8, 12],
            seeds: vec![1, 2, 3, 4, 5, 6],
            bins: Bins::Median,
            queries: 12,
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

    pub(crate) fn check(&self, m: &Transformer) -> Result<(), LabError> {
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
