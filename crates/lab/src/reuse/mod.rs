//! Circuit component reuse (Merullo, Eickhoff & Pavlick 2023, "Circuit Component Reuse Across
//! Tasks in Transformer Language Models"), Circuits lab: patch every attention head on two tasks
//! — indirect object identification and Colored Objects — compare the heads that matter, then
//! intervene on a few middle-layer heads and measure Colored Objects accuracy.
//!
//! What is ours, not the paper's, and said so in the guide:
//! - Head effects are activation patching of each head's output (`attn.hook_z`, every position)
//!   from the clean into the corrupted run, the metric `logit(answer) − logit(wrong)` at the last
//!   position, averaged over the task's first `pairs` pairs, then normalised once:
//!   `(mean patched − mean corrupt) / (mean clean − mean corrupt)`. A Colored Objects pair asks
//!   about another object of the same scene, so the answer flips to that object's colour.
//! - Heads are ranked by that recovery (ties: lower layer, then lower head, first); the overlap at
//!   k is the share of one task's top k heads that are among the other's. Two random sets of k of
//!   N heads share k/N of theirs on average: the chance line.
//! - A Colored Objects item counts as answered when the asked object's colour has the highest
//!   logit of the scene's three colours (first on ties): the task is multiple choice.
//! - The intervention, after the paper's: at the last position each chosen head attends equally
//!   to the two colours not asked about (`hook_pattern` replaced there), as an IOI S-inhibition
//!   head attends to the repeated name, so later heads are told which colours not to copy. A
//!   colour's position is the last one where its token appears in the prompt. The control does
//!   the same to as many heads drawn at random (seeded).

use interplay_models::Transformer;
use interplay_models::patching::{PatchTarget, Progress, patch_sweep};
use interplay_models::rng::Rng;
use interplay_models::tokenizer::TextTokenizer;
use serde::{Deserialize, Serialize};

use crate::LabError;

mod intervene;

pub use intervene::{s2_attention, scores};

/// The bundled prompts (`data/reuse.json`).
const BUNDLED: &str = include_str!("../../data/reuse.json");

/// The most prompts run together in one batch.
const BATCH: usize = 16;

/// The most tokens a prompt may have (a batch's patterns are `[16, heads, p, p]` per layer).
pub const MAX_PROMPT_TOKENS: usize = 128;

/// An IOI pair: the clean prompt, its corruption (the other name repeats), the indirect object
/// and the subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IoiPair {
    /// "When Mary and John went to the store, John gave a drink to".
    pub clean: String,
    /// The same with the other name repeated.
    pub corrupt: String,
    /// The clean answer (`" Mary"`), one token.
    pub answer: String,
    /// The corrupted prompt's answer (`" John"`), one token.
    pub wrong: String,
}

/// A Colored Objects item: a scene of three coloured objects and a question about one of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColoredItem {
    /// The prompt, ending where the colour is the next token.
    pub prompt: String,
    /// The same scene asking about another object (the patching pair's corruption).
    pub corrupt: String,
    /// The scene's three colours, each one token with its leading space (`" red"`).
    pub options: Vec<String>,
    /// Which option the prompt asks for.
    pub answer: usize,
    /// Which option `corrupt` asks for.
    pub wrong: usize,
}

/// The prompts of both tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReuseTasks {
    /// IOI pairs (the first `pairs` are patched).
    pub ioi: Vec<IoiPair>,
    /// Colored Objects items (the first `pairs` are patched; all are scored).
    pub colored: Vec<ColoredItem>,
}

/// Which prompts an experiment uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tasks {
    /// The bundled prompts (`data/reuse.json`).
    Bundled,
    /// Prompts given in the spec.
    Given(ReuseTasks),
}

impl Tasks {
    /// The prompts.
    pub fn load(&self) -> Result<ReuseTasks, LabError> {
        match self {
            Tasks::Given(t) => Ok(t.clone()),
            Tasks::Bundled => serde_json::from_str(BUNDLED)
                .map_err(|e| LabError::Spec(format!("the bundled prompts do not parse: {e}"))),
        }
    }
}

/// The circuit-reuse experiment; in JSON a Circuits spec with `"experiment": "circuit-reuse"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "experiment", rename = "circuit-reuse")]
pub struct ReuseSpec {
    /// Which model: `"smollm2"`, a bundled id or the name of a file the user loaded.
    pub model: String,
    /// The prompts.
    pub tasks: Tasks,
    /// How many pairs of each task the head patching averages over (0: no patching, only the
    /// IOI attention and the intervention — minutes on a slow device).
    pub pairs: usize,
    /// The k whose top-k overlap the result states (the curve covers every k up to 50, or k).
    pub top_k: usize,
    /// The heads intervened on, `[layer, head]`.
    pub heads: Vec<[usize; 2]>,
    /// Also intervene on as many random heads (control).
    pub control: bool,
    /// The control's seed.
    pub seed: u64,
}

impl ReuseSpec {
    /// The value of its `"experiment"` key.
    pub const EXPERIMENT: &str = "circuit-reuse";

    /// The run's progress steps: one per patched pair, the IOI attention, the scoring.
    pub fn steps(&self) -> usize {
        self.pairs.saturating_mul(2).saturating_add(2)
    }

    /// The bundled prompts on SmolLM2 (the guided experiment).
    pub fn smollm2() -> Self {
        Self {
            model: "smollm2".into(),
            tasks: Tasks::Bundled,
            pairs: 4,
            top_k: 10,
            heads: GUIDED_HEADS.to_vec(),
            control: true,
            seed: 1,
        }
    }
}

/// The guided experiment's heads: IOI's four that attend most from the last position to the
/// repeated name on the bundled pairs (a run's `s2_ranked`; the reference test checks it).
pub const GUIDED_HEADS: [[usize; 2]; 4] = [[19, 2], [20, 0], [23, 3], [25, 2]];

/// A head and a number about it (a task's recovery, an attention weight).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadEffect {
    /// Its layer.
    pub layer: usize,
    /// Its index in the layer.
    pub head: usize,
    /// The number.
    pub value: f64,
}

/// One task's head patching.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskHeads {
    /// Mean clean metric over the pairs.
    pub clean: f64,
    /// Mean corrupted metric.
    pub corrupt: f64,
    /// Recovery, `[layer][head]`.
    pub grid: Vec<Vec<f64>>,
    /// Every head, best first.
    pub ranked: Vec<HeadEffect>,
}

/// Colored Objects accuracy under one condition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Items answered (the asked colour the highest of the three).
    pub correct: usize,
    /// Items scored.
    pub total: usize,
    /// Mean of the margins.
    pub margin: f64,
    /// Which items were answered.
    pub answered: Vec<bool>,
    /// Per item, `logit(asked colour) − max logit(other colours)`.
    pub margins: Vec<f64>,
}

/// What a run found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReuseResult {
    /// IOI's head patching (empty grids when no pair was patched).
    pub ioi: TaskHeads,
    /// Colored Objects' head patching.
    pub colored: TaskHeads,
    /// Overlap at k = 1, 2, …: the share of IOI's top k heads among Colored Objects' top k.
    pub overlap: Vec<f64>,
    /// What two random sets of k heads share on average, k/N, same k.
    pub chance: Vec<f64>,
    /// IOI: each head's attention from the last position to the repeated name (S2), averaged
    /// over every IOI pair, `[layer][head]` — what marks an S-inhibition head.
    pub s2_attention: Vec<Vec<f64>>,
    /// The same, every head, highest first.
    pub s2_ranked: Vec<HeadEffect>,
    /// Colored Objects accuracy without intervention.
    pub base: Score,
    /// With the spec's heads attending to the other colours.
    pub intervened: Score,
    /// With as many random heads doing so (when the spec asks).
    pub control: Option<Score>,
    /// The control's heads.
    pub control_heads: Vec<[usize; 2]>,
}

/// A Colored Objects item tokenized.
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    /// The prompt's ids.
    pub ids: Vec<u32>,
    /// The options' ids.
    pub options: Vec<u32>,
    /// The asked option.
    pub answer: usize,
    /// The options' positions (the last occurrence of each in the prompt).
    pub positions: Vec<usize>,
}

fn one_token(tk: &TextTokenizer, s: &str, what: &str) -> Result<u32, LabError> {
    tk.single_token(s)
        .map_err(|e| LabError::Spec(format!("{what}: {e}")))
}

fn encode(tk: &TextTokenizer, s: &str, limit: usize) -> Result<Vec<u32>, LabError> {
    let ids = tk.encode(s).map_err(LabError::Model)?;
    if ids.is_empty() {
        return Err(LabError::Spec("a prompt is empty".into()));
    }
    if ids.len() > limit {
        return Err(LabError::Spec(format!(
            "the prompt \"{s}\" has {} tokens; a prompt may have at most {limit}",
            ids.len()
        )));
    }
    Ok(ids)
}

/// The spec's Colored Objects items checked and tokenized.
pub fn scenes(
    tasks: &ReuseTasks,
    tk: &TextTokenizer,
    n_ctx: usize,
) -> Result<Vec<Scene>, LabError> {
    let limit = MAX_PROMPT_TOKENS.min(n_ctx);
    tasks
        .colored
        .iter()
        .map(|c| {
            if c.options.len() < 2 {
                return Err(LabError::Spec(format!(
                    "the Colored Objects item \"{}\" needs at least two colours",
                    c.prompt
                )));
            }
            if c.answer >= c.options.len() || c.wrong >= c.options.len() || c.answer == c.wrong {
                return Err(LabError::Spec(format!(
                    "the Colored Objects item \"{}\": answer and wrong must be two different \
                     options (0 to {})",
                    c.prompt,
                    c.options.len() - 1
                )));
            }
            let ids = encode(tk, &c.prompt, limit)?;
            if ids.len() < 2 {
                return Err(LabError::Spec(format!(
                    "the Colored Objects prompt \"{}\" needs more than one token",
                    c.prompt
                )));
            }
            let options = c
                .options
                .iter()
                .map(|o| one_token(tk, o, "a colour"))
                .collect::<Result<Vec<_>, _>>()?;
            if (1..options.len()).any(|i| options[..i].contains(&options[i])) {
                return Err(LabError::Spec(format!(
                    "the Colored Objects item \"{}\" names a colour twice",
                    c.prompt
                )));
            }
            let positions = options
                .iter()
                .zip(&c.options)
                .map(|(&o, name)| {
                    ids.iter().rposition(|&t| t == o).ok_or_else(|| {
                        LabError::Spec(format!(
                            "the colour \"{name}\" does not appear in \"{}\"",
                            c.prompt
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Scene {
                ids,
                options,
                answer: c.answer,
                positions,
            })
        })
        .collect()
}

/// A patching pair: clean ids, corrupt ids, answer id, wrong id.
pub type Pair = (Vec<u32>, Vec<u32>, u32, u32);

/// Every IOI pair, and the Colored Objects pairs to patch, tokenized and checked.
fn pairs(
    spec: &ReuseSpec,
    tasks: &ReuseTasks,
    tk: &TextTokenizer,
    n_ctx: usize,
) -> Result<(Vec<Pair>, Vec<Pair>), LabError> {
    let limit = MAX_PROMPT_TOKENS.min(n_ctx);
    if tasks.ioi.len() < spec.pairs || tasks.colored.len() < spec.pairs {
        return Err(LabError::Spec(format!(
            "{} pairs asked for, but there are {} IOI pairs and {} Colored Objects items",
            spec.pairs,
            tasks.ioi.len(),
            tasks.colored.len()
        )));
    }
    let ioi = tasks
        .ioi
        .iter()
        .map(|p| {
            Ok((
                encode(tk, &p.clean, limit)?,
                encode(tk, &p.corrupt, limit)?,
                one_token(tk, &p.answer, "an IOI answer")?,
                one_token(tk, &p.wrong, "an IOI wrong name")?,
            ))
        })
        .collect::<Result<Vec<_>, LabError>>()?;
    let colored = tasks.colored[..spec.pairs]
        .iter()
        .map(|c| {
            let opt = |i: usize| {
                c.options
                    .get(i)
                    .ok_or_else(|| LabError::Spec(format!("\"{}\" has no option {i}", c.prompt)))
                    .and_then(|o| one_token(tk, o, "a colour"))
            };
            Ok((
                encode(tk, &c.prompt, limit)?,
                encode(tk, &c.corrupt, limit)?,
                opt(c.answer)?,
                opt(c.wrong)?,
            ))
        })
        .collect::<Result<Vec<_>, LabError>>()?;
    for (clean, _, _, wrong) in &ioi {
        if !clean.contains(wrong) {
            return Err(LabError::Spec(format!(
                "an IOI pair's wrong name (token {wrong}) does not appear in its clean prompt: \
                 it should be the name that repeats"
            )));
        }
    }
    for (clean, corrupt, ..) in ioi.iter().chain(&colored) {
        if clean.len() != corrupt.len() {
            return Err(LabError::Spec(format!(
                "a clean prompt has {} tokens and its corruption {}: a pair must have as many",
                clean.len(),
                corrupt.len()
            )));
        }
    }
    Ok((ioi, colored))
}

/// The spec checked against the model and tokenizer before anything runs.
pub fn check(spec: &ReuseSpec, m: &Transformer, tk: &TextTokenizer) -> Result<(), LabError> {
    let tasks = spec.tasks.load()?;
    pairs(spec, &tasks, tk, m.config.n_ctx)?;
    scenes(&tasks, tk, m.config.n_ctx)?;
    check_heads(spec, m)
}

fn check_heads(spec: &ReuseSpec, m: &Transformer) -> Result<(), LabError> {
    let (nl, nh) = (m.config.n_layers, m.config.n_heads);
    if spec.heads.is_empty() {
        return Err(LabError::Spec(
            "choose at least one head to intervene on".into(),
        ));
    }
    if let Some([l, h]) = spec.heads.iter().find(|[l, h]| *l >= nl || *h >= nh) {
        return Err(LabError::Spec(format!(
            "there is no head {l}.{h}: this model has {nl} layers of {nh} heads"
        )));
    }
    if spec.top_k == 0 || spec.top_k > nl * nh {
        return Err(LabError::Spec(format!(
            "top k must be between 1 and the model's {} heads",
            nl * nh
        )));
    }
    Ok(())
}

/// Head patching averaged over pairs, then normalised (see the module's notes).
fn task_heads(grids: &[(f32, f32, Vec<Vec<f32>>)]) -> TaskHeads {
    let n = grids.len().max(1) as f64;
    let clean = grids.iter().map(|g| f64::from(g.0)).sum::<f64>() / n;
    let corrupt = grids.iter().map(|g| f64::from(g.1)).sum::<f64>() / n;
    let (nl, nh) = grids
        .first()
        .map(|g| (g.2.len(), g.2.first().map_or(0, Vec::len)))
        .unwrap_or((0, 0));
    let denom = clean - corrupt;
    let grid: Vec<Vec<f64>> = (0..nl)
        .map(|l| {
            (0..nh)
                .map(|h| {
                    let mean = grids.iter().map(|g| f64::from(g.2[l][h])).sum::<f64>() / n;
                    if denom == 0.0 {
                        0.0
                    } else {
                        (mean - corrupt) / denom
                    }
                })
                .collect()
        })
        .collect();
    TaskHeads {
        clean,
        corrupt,
        ranked: rank(&grid),
        grid,
    }
}

/// Every head by its value, highest first; ties keep (layer, head) order.
pub fn rank(grid: &[Vec<f64>]) -> Vec<HeadEffect> {
    let mut all: Vec<HeadEffect> = grid
        .iter()
        .enumerate()
        .flat_map(|(layer, row)| {
            row.iter()
                .enumerate()
                .map(move |(head, &value)| HeadEffect { layer, head, value })
        })
        .collect();
    all.sort_by(|a, b| b.value.total_cmp(&a.value));
    all
}

/// The share of `a`'s top k among `b`'s top k, for k = 1..=`max_k`.
pub fn overlap(a: &[HeadEffect], b: &[HeadEffect], max_k: usize) -> Vec<f64> {
    (1..=max_k.min(a.len()).min(b.len()))
        .map(|k| {
            let shared = a[..k]
                .iter()
                .filter(|x| {
                    b[..k]
                        .iter()
                        .any(|y| (y.layer, y.head) == (x.layer, x.head))
                })
                .count();
            shared as f64 / k as f64
        })
        .collect()
}

/// Run the experiment. `progress(done, total)` resolves to `false` to cancel.
pub async fn run(
    spec: &ReuseSpec,
    m: &Transformer,
    tk: &TextTokenizer,
    progress: &mut dyn FnMut(usize, usize) -> Progress,
) -> Result<ReuseResult, LabError> {
    let tasks = spec.tasks.load()?;
    let (ioi_all, colored_pairs) = pairs(spec, &tasks, tk, m.config.n_ctx)?;
    let ioi_pairs = &ioi_all[..spec.pairs];
    let sc = scenes(&tasks, tk, m.config.n_ctx)?;
    check_heads(spec, m)?;
    let total = spec.steps();
    let mut done = 0;
    let mut grids = [Vec::new(), Vec::new()];
    for (t, ps) in [ioi_pairs, &colored_pairs[..]].into_iter().enumerate() {
        for (clean, corrupt, answer, wrong) in ps {
            if !progress(done, total).await {
                return Err(LabError::Cancelled);
            }
            let g = patch_sweep(
                m,
                clean,
                corrupt,
                PatchTarget::HeadOut,
                *answer,
                *wrong,
                // The run's own step, so Cancel and Pause act inside a sweep too.
                &mut |_, _| progress(done, total),
            )
            .await?;
            grids[t].push((g.clean_metric, g.corrupt_metric, g.patched));
            done += 1;
        }
    }
    let [gi, gc] = grids;
    let (ioi, colored) = (task_heads(&gi), task_heads(&gc));
    let n = m.config.n_layers * m.config.n_heads;
    let overlap = overlap(&ioi.ranked, &colored.ranked, spec.top_k.max(50));
    let chance = (1..=overlap.len()).map(|k| k as f64 / n as f64).collect();
    if !progress(done, total).await {
        return Err(LabError::Cancelled);
    }
    let s2 = s2_attention(m, &ioi_all).await?;
    done += 1;
    let nh = m.config.n_heads;
    let control_heads: Vec<[usize; 2]> = if spec.control {
        Rng::new(spec.seed)
            .permutation(n)
            .into_iter()
            .take(spec.heads.len())
            .map(|x| [x / nh, x % nh])
            .collect()
    } else {
        Vec::new()
    };
    if !progress(done, total).await {
        return Err(LabError::Cancelled);
    }
    let mut conditions: Vec<&[[usize; 2]]> = vec![&[], &spec.heads];
    if spec.control {
        conditions.push(&control_heads);
    }
    let mut got = scores(m, &sc, &conditions).await?.into_iter();
    done += 1;
    let (Some(base), Some(intervened)) = (got.next(), got.next()) else {
        return Err(LabError::Spec(
            "internal: a condition was not scored".into(),
        ));
    };
    let control = got.next();
    let _ = progress(done, total).await;
    Ok(ReuseResult {
        ioi,
        colored,
        overlap,
        chance,
        s2_ranked: rank(&s2),
        s2_attention: s2,
        base,
        intervened,
        control,
        control_heads,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ranking_breaks_ties_by_layer_then_head_and_overlap_counts_shared_heads() {
        let a = rank(&[vec![0.5, 0.1], vec![0.5, 0.9]]);
        let order: Vec<(usize, usize)> = a.iter().map(|e| (e.layer, e.head)).collect();
        assert_eq!(order, [(1, 1), (0, 0), (1, 0), (0, 1)]);
        let b = rank(&[vec![0.0, 0.2], vec![0.3, 1.0]]);
        // b's order: 1.1, 1.0, 0.1, 0.0. Top 2: {1.1, 0.0} vs {1.1, 1.0}; top 3 shares 1.1, 1.0.
        assert_eq!(overlap(&a, &b, 10), vec![1.0, 0.5, 2.0 / 3.0, 1.0]);
    }

    #[test]
    fn recovery_is_normalised_after_averaging_pairs() {
        let t = task_heads(&[
            (4.0, -2.0, vec![vec![1.0, -2.0]]),
            (2.0, 0.0, vec![vec![3.0, 0.0]]),
        ]);
        assert_eq!((t.clean, t.corrupt), (3.0, -1.0));
        // Means 2 and −1: (2 + 1) / 4, (−1 + 1) / 4.
        assert_eq!(t.grid, vec![vec![0.75, 0.0]]);
        assert_eq!((t.ranked[0].layer, t.ranked[0].head), (0, 0));
        // Clean = corrupt: nothing to recover, no division by zero.
        let flat = task_heads(&[(1.0, 1.0, vec![vec![5.0]])]);
        assert_eq!(flat.grid, vec![vec![0.0]]);
        // No pair patched (pairs = 0): nothing ranked, no overlap.
        let none = task_heads(&[]);
        assert!(none.grid.is_empty() && none.ranked.is_empty());
        assert!(overlap(&none.ranked, &none.ranked, 50).is_empty());
    }

    #[test]
    fn the_bundled_prompts_load_and_the_guided_spec_round_trips() {
        let t = Tasks::Bundled.load().unwrap();
        assert_eq!((t.ioi.len(), t.colored.len()), (16, 60));
        assert!(
            t.colored
                .iter()
                .all(|c| c.options.len() == 3 && c.answer != c.wrong)
        );
        let s = ReuseSpec::smollm2();
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"experiment\":\"circuit-reuse\""), "{json}");
        assert_eq!(serde_json::from_str::<ReuseSpec>(&json).unwrap(), s);
        assert_eq!(s.steps(), 10);
    }
}
