//! Relation-specific neurons (Liu et al. 2025, "On Relation-Specific Neurons in Large Language
//! Models"), Circuits lab: find the MLP neurons that fire on the prompts of one relation
//! ("The capital of France is" → " Paris") more often than on the prompts of any other, switch
//! the top k of them off, and measure next-token accuracy on every relation.
//!
//! What is ours, not the paper's, and said so in the guide: a neuron *fires* on a token when its
//! gate pre-activation (`hook_pre`; SiLU and GELU are positive exactly where it is) is above 0;
//! its frequency on a relation is over every token of that relation's prompts; its score for
//! relation r is its frequency on r minus its highest frequency on another relation (ties: lower
//! layer, then lower index, first); deactivating sets `hook_post` to 0 at every position. A fact
//! counts as answered when the answer's first token has the highest logit at the last position.
//! The control switches off k neurons drawn at random (one seeded permutation, so the control's
//! sets are nested like the ranked ones).

use std::collections::BTreeMap;

use burn::tensor::s;
use interplay_models::Transformer;
use interplay_models::device::read_f32;
use interplay_models::hooks::{Action, HookPlan, HookPoint, Selector};
use interplay_models::patching::Progress;
use interplay_models::rng::Rng;
use interplay_models::tokenizer::TextTokenizer;
use serde::{Deserialize, Serialize};

use crate::LabError;

/// The bundled facts SmolLM2-135M-Instruct answers (`data/relations.json`).
const BUNDLED: &str = include_str!("../data/relations.json");

/// The most prompts run together in one batch (of equal token counts).
const BATCH: usize = 16;

/// The most tokens a fact's prompt may have: every layer's `hook_pre` of a batch is held at once
/// (SmolLM2: 16 prompts × 64 tokens × 30 layers × 1536 floats = 190 MB).
pub const MAX_PROMPT_TOKENS: usize = 64;

/// One fact: a prompt and the answer that completes it (its first token is scored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    /// The relation's name, e.g. `"capital"`.
    pub relation: String,
    /// The prompt, tokenized without BOS.
    pub prompt: String,
    /// The answer, with its leading space (`" Paris"`).
    pub answer: String,
}

/// Which facts an experiment uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Facts {
    /// The bundled set (`data/relations.json`): capital, language, opposite.
    Bundled,
    /// Facts given in the spec.
    Given(Vec<Fact>),
}

impl Facts {
    /// The facts, in relation order then file order.
    pub fn load(&self) -> Result<Vec<Fact>, LabError> {
        match self {
            Facts::Given(f) => Ok(f.clone()),
            Facts::Bundled => bundled_facts(),
        }
    }
}

/// The bundled facts.
pub fn bundled_facts() -> Result<Vec<Fact>, LabError> {
    #[derive(Deserialize)]
    struct Entry {
        prompt: String,
        answer: String,
    }
    #[derive(Deserialize)]
    struct File {
        relations: BTreeMap<String, Vec<Entry>>,
    }
    let f: File = serde_json::from_str(BUNDLED)
        .map_err(|e| LabError::Spec(format!("the bundled facts do not parse: {e}")))?;
    Ok(f.relations
        .into_iter()
        .flat_map(|(relation, es)| {
            es.into_iter().map(move |e| Fact {
                relation: relation.clone(),
                prompt: e.prompt,
                answer: e.answer,
            })
        })
        .collect())
}

/// The relation-specific neurons experiment; in JSON a Circuits spec with
/// `"experiment": "relation-neurons"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "experiment", rename = "relation-neurons")]
pub struct NeuronsSpec {
    /// Which model: `"smollm2"`, a bundled id or the name of a file the user loaded.
    pub model: String,
    /// The facts, grouped by relation (at least two relations).
    pub facts: Facts,
    /// The relation whose neurons are ranked and deactivated.
    pub relation: String,
    /// How many of the top neurons to deactivate, one run each (0 = none: the baseline).
    pub ks: Vec<usize>,
    /// Also deactivate k random neurons for each k (control).
    pub random: bool,
    /// The random control's seed.
    pub seed: u64,
}

impl NeuronsSpec {
    /// The value of its `"experiment"` key.
    pub const EXPERIMENT: &str = "relation-neurons";

    /// The numbers of neurons to switch off, ascending, each once (the order the run and its
    /// plot take them in).
    pub fn ks_sorted(&self) -> Vec<usize> {
        let mut ks = self.ks.clone();
        ks.sort_unstable();
        ks.dedup();
        ks
    }

    /// The run's progress steps: the firing counts, then one per run with neurons off.
    pub fn steps(&self) -> usize {
        1 + self.ks_sorted().len() * (1 + usize::from(self.random))
    }

    /// The bundled facts on SmolLM2, the capital relation (the guided experiment).
    pub fn capital_smollm2() -> Self {
        Self {
            model: "smollm2".into(),
            facts: Facts::Bundled,
            relation: "capital".into(),
            ks: vec![0, 10, 30, 100, 300, 1000],
            random: true,
            seed: 1,
        }
    }
}

/// A neuron: `blocks.{layer}.mlp.hook_post[index]`, with its score for the target relation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Neuron {
    /// Its layer.
    pub layer: usize,
    /// Its index in the layer's MLP.
    pub index: usize,
    /// Firing frequency on the target relation minus the highest on another.
    pub score: f64,
    /// Firing frequency on the target relation.
    pub frequency: f64,
}

/// Accuracy on every relation with some neurons deactivated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Neurons deactivated.
    pub k: usize,
    /// Facts answered, per relation (in [`NeuronsResult::relations`] order).
    pub correct: Vec<usize>,
    /// `correct / facts`, per relation.
    pub accuracy: Vec<f64>,
}

/// What a run found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeuronsResult {
    /// The relations, sorted by name.
    pub relations: Vec<String>,
    /// Facts per relation.
    pub facts: Vec<usize>,
    /// Prompt tokens per relation (what the frequencies are over).
    pub tokens: Vec<usize>,
    /// The target relation's top `max(ks)` neurons, best first.
    pub top: Vec<Neuron>,
    /// Accuracy with the top k deactivated, per k of the spec (ascending, each once).
    pub ranked: Vec<Point>,
    /// Accuracy with k random neurons deactivated (when the spec asks).
    pub random: Vec<Point>,
}

/// A fact tokenized.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// The prompt's ids.
    pub ids: Vec<u32>,
    /// The answer's first id.
    pub answer: u32,
    /// Its relation's index among the sorted relations.
    pub relation: usize,
}

/// Batches of items of one token count, at most [`BATCH`] each, in a fixed order.
fn batches(items: &[Item]) -> Vec<Vec<usize>> {
    equal_length_batches(items.iter().map(|it| it.ids.len()))
}

/// Indices of prompts of these token counts grouped by count, at most [`BATCH`] per group,
/// shortest first, each group in the given order (the relation-neurons and recall experiments
/// run prompts this way: a batch's rows must have as many tokens).
pub(crate) fn equal_length_batches(lens: impl IntoIterator<Item = usize>) -> Vec<Vec<usize>> {
    let mut by_len: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, n) in lens.into_iter().enumerate() {
        by_len.entry(n).or_default().push(i);
    }
    by_len
        .into_values()
        .flat_map(|v| v.chunks(BATCH).map(<[usize]>::to_vec).collect::<Vec<_>>())
        .collect()
}

/// The spec's facts checked and tokenized; the relations sorted by name.
pub fn prepare(
    spec: &NeuronsSpec,
    m: &Transformer,
    tk: &TextTokenizer,
) -> Result<(Vec<String>, Vec<Item>), LabError> {
    let facts = spec.facts.load()?;
    let mut relations: Vec<String> = facts.iter().map(|f| f.relation.clone()).collect();
    relations.sort();
    relations.dedup();
    if relations.len() < 2 {
        return Err(LabError::Spec(format!(
            "the facts need at least two relations to compare (they have {})",
            relations.len()
        )));
    }
    if !relations.contains(&spec.relation) {
        return Err(LabError::Spec(format!(
            "no fact has the relation \"{}\"; the facts' relations are {}",
            spec.relation,
            relations.join(", ")
        )));
    }
    let n_neurons = m.config.n_layers * m.config.d_mlp;
    if n_neurons == 0 {
        return Err(LabError::Spec("this model has no MLP neurons".into()));
    }
    if let Some(&k) = spec.ks.iter().find(|&&k| k > n_neurons) {
        return Err(LabError::Spec(format!(
            "k = {k} is more than the model's {n_neurons} MLP neurons"
        )));
    }
    if spec.ks.is_empty() {
        return Err(LabError::Spec(
            "give at least one k (0 is the baseline)".into(),
        ));
    }
    let mut items = Vec::with_capacity(facts.len());
    for f in &facts {
        let ids = tk.encode(&f.prompt).map_err(LabError::Model)?;
        if ids.is_empty() {
            return Err(LabError::Spec(format!(
                "the prompt of a {} fact is empty",
                f.relation
            )));
        }
        if ids.len() > MAX_PROMPT_TOKENS.min(m.config.n_ctx) {
            return Err(LabError::Spec(format!(
                "the prompt \"{}\" has {} tokens; a fact's prompt may have at most {}",
                f.prompt,
                ids.len(),
                MAX_PROMPT_TOKENS.min(m.config.n_ctx)
            )));
        }
        let answer = *tk
            .encode(&f.answer)
            .map_err(LabError::Model)?
            .first()
            .ok_or_else(|| LabError::Spec(format!("the answer to \"{}\" is empty", f.prompt)))?;
        // Found: `relations` is made from these facts.
        let relation = relations
            .iter()
            .position(|r| *r == f.relation)
            .unwrap_or_default();
        items.push(Item {
            ids,
            answer,
            relation,
        });
    }
    Ok((relations, items))
}

/// Per relation, per neuron (`layer · d_mlp + index`), how many of the relation's prompt tokens
/// it fires on (`hook_pre` > 0); and the relations' token counts.
pub async fn firing_counts(
    m: &Transformer,
    items: &[Item],
    n_relations: usize,
) -> Result<(Vec<Vec<u32>>, Vec<usize>), LabError> {
    let (nl, dm) = (m.config.n_layers, m.config.d_mlp);
    let mut counts = vec![vec![0u32; nl * dm]; n_relations];
    let mut tokens = vec![0usize; n_relations];
    let plan = HookPlan::caching((0..nl).map(HookPoint::MlpPre));
    for g in &batches(items) {
        let ids: Vec<Vec<u32>> = g.iter().map(|&i| items[i].ids.clone()).collect();
        let p = ids[0].len();
        let cache = m.activations(m.tokens(&ids)?, None, &plan)?;
        for &i in g {
            tokens[items[i].relation] += p;
        }
        for l in 0..nl {
            let pre = cache.r3(HookPoint::MlpPre(l)).ok_or_else(|| {
                LabError::Spec(format!(
                    "internal: blocks.{l}.mlp.hook_pre was asked for and not recorded"
                ))
            })?;
            // [batch, pos, d_mlp] → tokens each neuron fires on, [batch, 1, d_mlp] (a sum of
            // 0s and 1s, exact in f32), read back instead of every activation.
            let fired = read_f32(pre.greater_elem(0.0).float().sum_dim(1)).await?;
            for (row, &i) in g.iter().enumerate() {
                let c = &mut counts[items[i].relation][l * dm..(l + 1) * dm];
                for (n, &x) in fired[row * dm..(row + 1) * dm].iter().enumerate() {
                    c[n] += x as u32;
                }
            }
        }
    }
    Ok((counts, tokens))
}

/// The target relation's neurons ranked by score (see the module's notes), best first.
pub fn rank(counts: &[Vec<u32>], tokens: &[usize], target: usize, d_mlp: usize) -> Vec<Neuron> {
    let freq = |r: usize, n: usize| f64::from(counts[r][n]) / tokens[r].max(1) as f64;
    let mut all: Vec<Neuron> = (0..counts[target].len())
        .map(|n| {
            let own = freq(target, n);
            let other = (0..counts.len())
                .filter(|&r| r != target)
                .map(|r| freq(r, n))
                .fold(0.0, f64::max);
            Neuron {
                layer: n / d_mlp,
                index: n % d_mlp,
                score: own - other,
                frequency: own,
            }
        })
        .collect();
    // Stable: equal scores keep (layer, index) order.
    all.sort_by(|a, b| b.score.total_cmp(&a.score));
    all
}

/// Each item's last-position logits (`[d_vocab]`) with the neurons `off` (`(layer, index)`)
/// deactivated: `hook_post` set to 0 at every position.
pub async fn last_logits(
    m: &Transformer,
    items: &[Item],
    off: &[(usize, usize)],
) -> Result<Vec<Vec<f32>>, LabError> {
    let mut by_layer: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &(l, i) in off {
        by_layer.entry(l).or_default().push(i);
    }
    let mut plan = HookPlan::default();
    for (l, units) in by_layer {
        plan = plan.with(
            HookPoint::MlpPost(l),
            Selector::all(),
            Action::ZeroUnits(units),
        );
    }
    let mut out = vec![Vec::new(); items.len()];
    let v = m.config.d_vocab;
    let d = m.config.d_model;
    for g in &batches(items) {
        let ids: Vec<Vec<u32>> = g.iter().map(|&i| items[i].ids.clone()).collect();
        let (b, p) = (ids.len(), ids[0].len());
        let (resid, _, _) = m.extend_residual(m.tokens(&ids)?, None, &plan)?;
        // [batch, d_vocab] at the last position.
        let logits =
            read_f32(m.logits_rows(resid.slice(s![.., p - 1..p, ..]).reshape([b, d]))).await?;
        for (row, &i) in g.iter().enumerate() {
            out[i] = logits[row * v..(row + 1) * v].to_vec();
        }
    }
    Ok(out)
}

/// The first highest logit's index, as PyTorch's `argmax`.
pub fn argmax(logits: &[f32]) -> usize {
    logits
        .iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |acc, (j, &x)| {
                if x > acc.1 { (j, x) } else { acc }
            },
        )
        .0
}

/// Facts answered per relation with `off` deactivated.
async fn correct_with(
    m: &Transformer,
    items: &[Item],
    n_relations: usize,
    off: &[(usize, usize)],
) -> Result<Vec<usize>, LabError> {
    let mut correct = vec![0usize; n_relations];
    for (it, l) in items.iter().zip(last_logits(m, items, off).await?) {
        if argmax(&l) == it.answer as usize {
            correct[it.relation] += 1;
        }
    }
    Ok(correct)
}

fn point(k: usize, correct: Vec<usize>, facts: &[usize]) -> Point {
    let accuracy = correct
        .iter()
        .zip(facts)
        .map(|(&c, &n)| c as f64 / n.max(1) as f64)
        .collect();
    Point {
        k,
        correct,
        accuracy,
    }
}

/// Run the experiment. `progress(done, total)` resolves to `false` to cancel.
pub async fn run(
    spec: &NeuronsSpec,
    m: &Transformer,
    tk: &TextTokenizer,
    progress: &mut dyn FnMut(usize, usize) -> Progress,
) -> Result<NeuronsResult, LabError> {
    let (relations, items) = prepare(spec, m, tk)?;
    // Found: `prepare` checked that a fact has it.
    let target = relations
        .iter()
        .position(|r| *r == spec.relation)
        .unwrap_or_default();
    let nr = relations.len();
    let mut facts = vec![0usize; nr];
    for it in &items {
        facts[it.relation] += 1;
    }
    let ks = spec.ks_sorted();
    let total = spec.steps();
    let mut done = 0;
    if !progress(done, total).await {
        return Err(LabError::Cancelled);
    }
    let (counts, tokens) = firing_counts(m, &items, nr).await?;
    let ranked_all = rank(&counts, &tokens, target, m.config.d_mlp);
    done += 1;
    let max_k = ks.last().copied().unwrap_or(0);
    let dm = m.config.d_mlp;
    let shuffled = Rng::new(spec.seed).permutation(m.config.n_layers * dm);
    let mut ranked = Vec::with_capacity(ks.len());
    let mut random = Vec::new();
    for &k in &ks {
        if !progress(done, total).await {
            return Err(LabError::Cancelled);
        }
        let off: Vec<(usize, usize)> = ranked_all[..k].iter().map(|n| (n.layer, n.index)).collect();
        let here = point(k, correct_with(m, &items, nr, &off).await?, &facts);
        ranked.push(here.clone());
        done += 1;
        if spec.random {
            if !progress(done, total).await {
                return Err(LabError::Cancelled);
            }
            // No neuron off is the same run either way.
            let control = if k == 0 {
                here
            } else {
                let off: Vec<(usize, usize)> =
                    shuffled[..k].iter().map(|&n| (n / dm, n % dm)).collect();
                point(k, correct_with(m, &items, nr, &off).await?, &facts)
            };
            random.push(control);
            done += 1;
        }
    }
    let _ = progress(done, total).await;
    Ok(NeuronsResult {
        relations,
        facts,
        tokens,
        top: ranked_all[..max_k].to_vec(),
        ranked,
        random,
    })
}
