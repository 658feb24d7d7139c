//! The Circuits lab's interactive questions about the loaded model — predict the next token,
//! analyse one prompt, score heads, ablate heads, path-patch, continue a prompt — as one serde
//! type, so the engine worker answers them for the page (off its main thread) with the same code
//! the tests run.
//! Unlike an [`crate::Experiment`] they are not shared as links: each is one click's worth.

use interplay_models::TransformerConfig;
use interplay_models::device::read_f32;
use interplay_models::generate::{Sampling, generate};
use interplay_models::load::LoadedModel;
use serde::{Deserialize, Serialize};

use crate::ablation::{AblationKind, Head, ReceiverInput, Scores, ablate_heads, path_patch};
use crate::circuits::{
    Attribution, HeadScores, LogitLens, Patterns, attention_patterns, direct_logit_attribution,
    head_scores, logit_lens,
};
use crate::{LabError, PatchingSpec, Prompt, TokenRef};

/// Tokens the logit lens lists per layer.
pub const LENS_TOP: usize = 3;
/// Next tokens a prediction lists.
const PREDICT_TOP: usize = 10;
/// Up to this vocabulary size a prediction carries every logit (the bundled models; tests read
/// them); SmolLM2's 49,152 would only weigh down the message.
const ALL_LOGITS_UP_TO: usize = 4096;

/// A question about the loaded model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Inspect {
    /// Run a prompt: its tokens and the most likely next tokens.
    Predict {
        /// Text (needs a tokenizer) or ids.
        prompt: Prompt,
    },
    /// Attention patterns, the logit lens and (with both tokens) direct logit attribution.
    Analyse {
        /// Text or ids.
        prompt: Prompt,
        /// The answer token the lens tracks and attribution explains.
        answer: Option<TokenRef>,
        /// The wrong token.
        wrong: Option<TokenRef>,
    },
    /// Induction, previous-token and duplicate-token scores on `half` seeded random tokens
    /// repeated twice.
    HeadScores {
        /// Tokens in each half.
        half: usize,
        /// The random sequence's seed.
        seed: u64,
    },
    /// Head ablation on the clean prompt of a patching spec.
    Ablate {
        /// Prompts and tokens (the sweep's target is not used).
        spec: PatchingSpec,
        /// Heads to ablate.
        heads: Vec<Head>,
        /// How.
        kind: AblationKind,
    },
    /// Path patching from senders to receivers' chosen inputs (Wang et al. 2022).
    PathPatch {
        /// Prompts and tokens.
        spec: PatchingSpec,
        /// Sender heads.
        senders: Vec<Head>,
        /// Receiver heads.
        receivers: Vec<Head>,
        /// Which of their inputs the patch reaches.
        inputs: Vec<ReceiverInput>,
    },
    /// Continue the prompt, as Hugging Face's `generate` (and TransformerLens's): up to
    /// `max_new` tokens with the key/value cache, ending early at an end-of-text token.
    Generate {
        /// Text or ids.
        prompt: Prompt,
        /// At most this many new tokens (1..=[`GENERATE_MAX`]).
        max_new: usize,
        /// 0 for greedy decoding (the highest logit), else sampling from
        /// `softmax(logits / temperature)`.
        #[serde(default)]
        temperature: f64,
        /// The sampling's seed (unused when greedy).
        #[serde(default)]
        seed: u64,
    },
}

/// The most new tokens one [`Inspect::Generate`] writes.
pub const GENERATE_MAX: usize = 512;

/// One of the most likely next tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopToken {
    /// As shown (`#id` without a tokenizer).
    pub text: String,
    /// Its id.
    pub id: u32,
    /// Softmax probability.
    pub probability: f32,
    /// Logit.
    pub logit: f32,
}

/// A prompt's tokens and next-token prediction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// `(shown text, id)` per position.
    pub tokens: Vec<(String, u32)>,
    /// The most likely next tokens, best first.
    pub top: Vec<TopToken>,
    /// Every logit at the last position, for vocabularies up to 4,096 tokens.
    pub last_logits: Option<Vec<f32>>,
}

/// One prompt seen from inside.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// `"{position} {token}"` per position.
    pub tokens: Vec<String>,
    /// Every layer's and head's pattern.
    pub patterns: PatternCube,
    /// The logit lens at the last position.
    pub lens: LogitLens,
    /// Each layer's top predictions as words (`lens.top`'s ids through the tokenizer).
    #[serde(default)]
    pub lens_top_words: Vec<Vec<String>>,
    /// The tracked tokens as shown.
    pub lens_labels: Vec<String>,
    /// Direct logit attribution, when both tokens are given.
    pub dla: Option<Attribution>,
    /// `logit(answer) − logit(wrong)` with the tokens shown (empty without both).
    pub answer_label: String,
}

/// Every layer's and head's attention pattern in one buffer, `[layer][head][query][key]`: it
/// crosses to the page as one byte array, where a nested array would cost a JS call per number
/// (30 layers × 9 heads × 14² positions is 53k numbers; a long prompt, millions).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatternCube {
    /// `[layers, heads, positions, positions]`.
    pub shape: [usize; 4],
    /// The patterns as little-endian f32s.
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
}

impl PatternCube {
    /// The patterns of `p`.
    pub fn new(p: &Patterns) -> Self {
        let layers = p.pattern.len();
        let heads = p.pattern.first().map_or(0, Vec::len);
        let pos = p
            .pattern
            .first()
            .and_then(|l| l.first())
            .map_or(0, Vec::len);
        let bytes = p
            .pattern
            .iter()
            .flatten()
            .flatten()
            .flatten()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        Self {
            shape: [layers, heads, pos, pos],
            bytes,
        }
    }

    /// Attention of head `h` in layer `l` from query `q` to key `k` (0 outside the cube).
    pub fn get(&self, l: usize, h: usize, q: usize, k: usize) -> f32 {
        let [n, nh, p, _] = self.shape;
        if l >= n || h >= nh || q >= p || k >= p {
            return 0.0;
        }
        let i = 4 * (((l * nh + h) * p + q) * p + k);
        self.bytes
            .get(i..i + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0.0, f32::from_le_bytes)
    }

    /// The pattern of head `h` in layer `l`, `[query][key]` (empty outside the cube).
    pub fn head(&self, l: usize, h: usize) -> Vec<Vec<f32>> {
        let [n, nh, p, _] = self.shape;
        if l >= n || h >= nh {
            return Vec::new();
        }
        (0..p)
            .map(|q| (0..p).map(|k| self.get(l, h, q, k)).collect())
            .collect()
    }
}

/// A prompt's continuation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Continuation {
    /// The prompt's length in tokens.
    pub prompt_tokens: usize,
    /// `(shown text, id)` per new token, the end-of-text token included when one was written.
    pub tokens: Vec<(String, u32)>,
    /// The new tokens decoded as text (`#id`s without a tokenizer).
    pub text: String,
    /// Whether it ended on an end-of-text token (otherwise on `max_new` or the context's end).
    pub stopped: bool,
}

/// An answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Inspection {
    /// To [`Inspect::Predict`].
    Prediction(Prediction),
    /// To [`Inspect::Analyse`].
    Analysis(Box<Analysis>),
    /// To [`Inspect::HeadScores`].
    HeadScores(HeadScores),
    /// To [`Inspect::Ablate`] and [`Inspect::PathPatch`]: the clean run's scores and the
    /// ablated or path-patched run's.
    Scores {
        /// The clean run.
        clean: Scores,
        /// The intervened run.
        changed: Scores,
    },
    /// To [`Inspect::Generate`].
    Continuation(Continuation),
}

/// Token `id` as shown: the tokenizer's display form, or `#id` without one.
pub fn shown(m: &LoadedModel, id: u32) -> String {
    m.tokenizer
        .as_ref()
        .map(|t| t.display_tokens(&[id]).remove(0))
        .unwrap_or_else(|| format!("#{id}"))
}

/// The ids of `prompt` (text through the model's tokenizer).
fn prompt_ids(m: &LoadedModel, prompt: &Prompt) -> Result<Vec<u32>, LabError> {
    let ids = match prompt {
        Prompt::Ids(ids) => ids.clone(),
        Prompt::Text(t) if t.is_empty() => {
            return Err(LabError::Spec("the prompt is empty: type some text".into()));
        }
        Prompt::Text(t) => m
            .tokenizer
            .as_ref()
            .ok_or_else(|| LabError::Spec("this model has no tokenizer: give token ids".into()))?
            .encode(t)?,
    };
    // Checks emptiness and the vocabulary.
    m.model.tokens(std::slice::from_ref(&ids))?;
    Ok(ids)
}

/// The most bytes of attention patterns (layers × heads × tokens² × 4) an analysis may hold. Its
/// run keeps about four copies at once (the hook cache, the stacked tensor, its readback, the
/// per-head rows) beside the model, in a wasm memory of at most 4 GiB: 256 MiB keeps the peak
/// near 1 GiB. Over it, a 5,000-character prompt on SmolLM2 (1,270 tokens, 1.7 GB of patterns)
/// trapped the engine instead of answering.
pub const ANALYSIS_PATTERN_BYTES: usize = 256 << 20;

/// Refuse, before computing anything, an analysis whose attention patterns would not fit in
/// [`ANALYSIS_PATTERN_BYTES`]; the message says how many tokens would.
pub fn check_analysis_size(c: &TransformerConfig, tokens: usize) -> Result<(), LabError> {
    let per_pair = c.n_layers * c.n_heads * 4;
    let need = per_pair.saturating_mul(tokens).saturating_mul(tokens);
    if need <= ANALYSIS_PATTERN_BYTES {
        return Ok(());
    }
    let most = longest_analysis(c);
    Err(LabError::Spec(format!(
        "analysing {tokens} tokens would hold {} MB of attention patterns ({} layers × {} heads × \
         {tokens}² token pairs), more than the page can safely hold ({} MB): shorten the prompt to \
         at most {most} tokens. Run and Continue take longer prompts.",
        need >> 20,
        c.n_layers,
        c.n_heads,
        ANALYSIS_PATTERN_BYTES >> 20
    )))
}

/// The most tokens an analysis of a model shaped like `c` may hold the patterns of.
fn longest_analysis(c: &TransformerConfig) -> usize {
    let per_pair = (c.n_layers * c.n_heads * 4).max(1);
    ((ANALYSIS_PATTERN_BYTES / per_pair) as f64).sqrt() as usize
}

/// The id of a single-token `t`, checked against the vocabulary.
fn token_id(m: &LoadedModel, t: &TokenRef) -> Result<u32, LabError> {
    let id = match t {
        TokenRef::Id(i) => *i,
        TokenRef::Text(s) => {
            let tk = m.tokenizer.as_ref().ok_or_else(|| {
                LabError::Spec("this model has no tokenizer: give token ids".into())
            })?;
            tk.single_token(s)?
        }
    };
    if id as usize >= m.model.config.d_vocab {
        return Err(LabError::Spec(format!(
            "token id {id} is outside the vocabulary ({} tokens)",
            m.model.config.d_vocab
        )));
    }
    Ok(id)
}

impl Inspect {
    /// Answer on `m` (on whatever device it lives).
    pub async fn run(&self, m: &LoadedModel) -> Result<Inspection, LabError> {
        let model = &m.model;
        match self {
            Inspect::Predict { prompt } => predict(m, &prompt_ids(m, prompt)?)
                .await
                .map(Inspection::Prediction),
            Inspect::Analyse {
                prompt,
                answer,
                wrong,
            } => {
                let ids = prompt_ids(m, prompt)?;
                check_analysis_size(&model.config, ids.len())?;
                let a = answer.as_ref().map(|t| token_id(m, t)).transpose()?;
                let w = wrong.as_ref().map(|t| token_id(m, t)).transpose()?;
                let patterns = PatternCube::new(&attention_patterns(model, &ids).await?);
                let tracked: Vec<u32> = [a, w].into_iter().flatten().collect();
                let lens = logit_lens(model, &ids, &tracked, LENS_TOP).await?;
                let (dla, answer_label) = match (a, w) {
                    (Some(a), Some(w)) => (
                        Some(direct_logit_attribution(model, &ids, a, w).await?),
                        format!("logit({}) − logit({})", shown(m, a), shown(m, w)),
                    ),
                    _ => (None, String::new()),
                };
                Ok(Inspection::Analysis(Box::new(Analysis {
                    tokens: ids
                        .iter()
                        .enumerate()
                        .map(|(i, &id)| format!("{i} {}", shown(m, id)))
                        .collect(),
                    lens_labels: tracked.iter().map(|&t| shown(m, t)).collect(),
                    lens_top_words: lens
                        .top
                        .iter()
                        .map(|top| top.iter().map(|&(id, _)| shown(m, id)).collect())
                        .collect(),
                    patterns,
                    lens,
                    dla,
                    answer_label,
                })))
            }
            Inspect::HeadScores { half, seed } => {
                // The repeated sequence's patterns are read like an analysis's.
                if check_analysis_size(&model.config, half.saturating_mul(2)).is_err() {
                    return Err(LabError::Spec(format!(
                        "scoring heads on 2 × {half} tokens would hold more attention patterns \
                         than the page can safely hold ({} MB): repeat at most {} tokens",
                        ANALYSIS_PATTERN_BYTES >> 20,
                        longest_analysis(&model.config) / 2
                    )));
                }
                head_scores(model, *half, *seed)
                    .await
                    .map(Inspection::HeadScores)
            }
            Inspect::Ablate { spec, heads, kind } => {
                let p = spec.resolve(m.tokenizer.as_ref())?;
                let (clean, changed) =
                    ablate_heads(model, &p.clean, &p.corrupt, heads, *kind, p.answer, p.wrong)
                        .await?;
                Ok(Inspection::Scores { clean, changed })
            }
            Inspect::PathPatch {
                spec,
                senders,
                receivers,
                inputs,
            } => {
                let p = spec.resolve(m.tokenizer.as_ref())?;
                let (clean, changed) = path_patch(
                    model, &p.clean, &p.corrupt, senders, receivers, inputs, p.answer, p.wrong,
                )
                .await?;
                Ok(Inspection::Scores { clean, changed })
            }
            Inspect::Generate {
                prompt,
                max_new,
                temperature,
                seed,
            } => continue_prompt(m, &prompt_ids(m, prompt)?, *max_new, *temperature, *seed)
                .await
                .map(Inspection::Continuation),
        }
    }
}

/// Up to `max_new` tokens after `ids`, greedy for `temperature` 0, ending at the tokenizer's
/// end-of-text tokens.
async fn continue_prompt(
    m: &LoadedModel,
    ids: &[u32],
    max_new: usize,
    temperature: f64,
    seed: u64,
) -> Result<Continuation, LabError> {
    if !(1..=GENERATE_MAX).contains(&max_new) {
        return Err(LabError::Spec(format!(
            "new tokens must be between 1 and {GENERATE_MAX} (got {max_new})"
        )));
    }
    let sampling = if temperature == 0.0 {
        Sampling::Greedy
    } else {
        Sampling::Temperature { temperature, seed }
    };
    let stop = m
        .tokenizer
        .as_ref()
        .map(|tk| tk.end_of_text_ids())
        .unwrap_or_default();
    let g = generate(&m.model, ids, max_new, &stop, sampling).await?;
    let text = match &m.tokenizer {
        Some(tk) => tk.decode(&g.tokens)?,
        None => g
            .tokens
            .iter()
            .map(|id| format!("#{id}"))
            .collect::<Vec<_>>()
            .join(" "),
    };
    Ok(Continuation {
        prompt_tokens: ids.len(),
        tokens: g.tokens.iter().map(|&id| (shown(m, id), id)).collect(),
        text,
        stopped: g.stopped,
    })
}

/// Tokens and next-token prediction of `ids`.
async fn predict(m: &LoadedModel, ids: &[u32]) -> Result<Prediction, LabError> {
    let last = m.model.last_logits(m.model.tokens(&[ids.to_vec()])?)?;
    let v = last.dims()[1];
    let last = read_f32(last.reshape([v])).await?;
    if last.iter().any(|x| !x.is_finite()) {
        return Err(LabError::Spec(
            "the model produced NaN or infinite logits".into(),
        ));
    }
    let max = last.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let z: f32 = last.iter().map(|x| (x - max).exp()).sum();
    // The top few in the order a stable sort by descending logit gives (ties by id), without
    // sorting all of a 49k vocabulary.
    let by_logit = |a: &usize, b: &usize| last[*b].total_cmp(&last[*a]).then(a.cmp(b));
    let mut order: Vec<usize> = (0..v).collect();
    let take = PREDICT_TOP.min(v);
    if take < v {
        order.select_nth_unstable_by(take, by_logit);
    }
    order.truncate(take);
    order.sort_by(by_logit);
    let top = order
        .iter()
        .map(|&i| TopToken {
            text: shown(m, i as u32),
            id: i as u32,
            probability: (last[i] - max).exp() / z,
            logit: last[i],
        })
        .collect();
    Ok(Prediction {
        tokens: ids.iter().map(|&i| (shown(m, i), i)).collect(),
        top,
        last_logits: (v <= ALL_LOGITS_UP_TO).then_some(last),
    })
}
