//! Recall vs reasoning ("Disentangling Recall and Reasoning in Transformer Models through
//! Layer-wise Attention and Activation Analysis", 2025), Circuits lab: ablate every layer's
//! attention and MLP (and every head) on fact-recall questions and on multi-step questions whose
//! answer is in the prompt, plot each component's drop on one task against the other, then
//! disable the components most selective for each task together and measure both accuracies on
//! questions the ranking never saw.
//!
//! What is ours, not the paper's, and said so in the guide:
//! - Every question is multiple choice, the options named in the prompt for both tasks (so the
//!   two differ in what the answer needs, not in format); it counts as answered when its answer
//!   has the highest logit of the options at the last position (first on ties). Its margin is
//!   `logit(answer) − max logit(other options)`.
//! - A task's questions alternate between a discovery half (even indices: the sweep and the
//!   ranking) and a test half (odd: the circuits' accuracies), so the circuits are not scored on
//!   the questions that chose them.
//! - A component's drop on a task is the share of the task's mean margin it removes:
//!   `(M − M_ablated) / |M|`; its selectivity is the drop on recall minus the drop on reasoning
//!   (ties: lower layer, then attention, MLP, heads in order, first).
//! - Ablation: zero, or the component's mean output over every position of every question of
//!   both tasks (one vector per head or layer). Scope: every position, or only the last one —
//!   what the last position reads from that component (Geva et al. 2023's knockouts are at the
//!   last position too).
//! - The control disables as many components drawn at random (seeded) from the same pool.

use interplay_models::Transformer;
use interplay_models::patching::{Progress, Variant, intervention_sweep};
use interplay_models::rng::Rng;
use interplay_models::tokenizer::TextTokenizer;
use serde::{Deserialize, Serialize};

use crate::LabError;

mod ablate;

pub use ablate::{Means, means};
use ablate::{ablate, score_with};

/// The bundled questions (`data/recall.json`).
const BUNDLED: &str = include_str!("../../data/recall.json");

/// The most tokens a question may have.
pub const MAX_PROMPT_TOKENS: usize = 96;

/// A multiple-choice question.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Question {
    /// Its template (`"capital"`, `"chain"`, …), shown beside its result.
    #[serde(default)]
    pub kind: String,
    /// The prompt, ending where the answer is the next token (tokenized without BOS).
    pub prompt: String,
    /// The options, each scored by its first token (with its leading space: `" Rome"`).
    pub options: Vec<String>,
    /// Which option is right.
    pub answer: usize,
}

/// The two tasks' questions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecallTasks {
    /// Facts the model has memorised ("Of Rome, Paris and Madrid, the capital of Italy is").
    pub recall: Vec<Question>,
    /// Multi-step questions answered from the prompt alone.
    pub reasoning: Vec<Question>,
}

/// Which questions an experiment uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tasks {
    /// The bundled questions (`data/recall.json`).
    Bundled,
    /// Questions given in the spec.
    Given(RecallTasks),
}

impl Tasks {
    /// The questions.
    pub fn load(&self) -> Result<RecallTasks, LabError> {
        match self {
            Tasks::Given(t) => Ok(t.clone()),
            Tasks::Bundled => serde_json::from_str(BUNDLED)
                .map_err(|e| LabError::Spec(format!("the bundled questions do not parse: {e}"))),
        }
    }
}

/// Which positions an ablation touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every position.
    All,
    /// The last position only.
    Last,
}

/// What an ablated component outputs instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ablation {
    /// Zero.
    Zero,
    /// Its mean output over every position of every question.
    Mean,
}

/// The recall-vs-reasoning experiment; in JSON a Circuits spec with
/// `"experiment": "recall-reasoning"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "experiment", rename = "recall-reasoning")]
pub struct RecallSpec {
    /// Which model: `"smollm2"`, a bundled id or the name of a file the user loaded.
    pub model: String,
    /// The questions.
    pub tasks: Tasks,
    /// Zero or mean ablation.
    pub ablation: Ablation,
    /// Where components are ablated.
    pub scope: Scope,
    /// Also ablate every head, one at a time (else only each layer's attention and MLP).
    pub heads: bool,
    /// How many of the most selective components each circuit disables together.
    pub top_k: usize,
    /// Also disable as many random components (control).
    pub control: bool,
    /// The control's seed.
    pub seed: u64,
}

impl RecallSpec {
    /// The value of its `"experiment"` key.
    pub const EXPERIMENT: &str = "recall-reasoning";

    /// The bundled questions on SmolLM2 (the guided experiment).
    pub fn smollm2() -> Self {
        Self {
            model: "smollm2".into(),
            tasks: Tasks::Bundled,
            ablation: Ablation::Mean,
            scope: Scope::Last,
            heads: true,
            top_k: 10,
            control: true,
            seed: 1,
        }
    }

    /// The run's progress steps: the means, one per discovery question, the circuits.
    pub fn steps(&self, discovery: usize) -> usize {
        1 + discovery + 1
    }
}

/// What a component is within its layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// The attention block's output (`hook_attn_out`).
    Attn,
    /// The MLP's output (`hook_mlp_out`).
    Mlp,
    /// One head's output (`attn.hook_z`).
    Head(usize),
}

/// A component of the model that can be ablated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Component {
    /// Its layer.
    pub layer: usize,
    /// Which part.
    pub part: Part,
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.part {
            Part::Attn => write!(f, "L{} attn", self.layer),
            Part::Mlp => write!(f, "L{} MLP", self.layer),
            Part::Head(h) => write!(f, "head {}.{h}", self.layer),
        }
    }
}

/// One task's questions scored under one condition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Questions answered.
    pub correct: usize,
    /// Questions scored.
    pub total: usize,
    /// Mean margin.
    pub margin: f64,
    /// Per question, `logit(answer) − max logit(other options)`.
    pub margins: Vec<f64>,
}

impl Score {
    fn of(margins: Vec<f64>, answered: usize) -> Self {
        let total = margins.len();
        Self {
            correct: answered,
            total,
            margin: margins.iter().sum::<f64>() / total.max(1) as f64,
            margins,
        }
    }

    /// `correct / total`.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.total.max(1) as f64
    }
}

/// A component's effect on the discovery questions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// The component.
    pub component: Component,
    /// Recall with it ablated.
    pub recall: Score,
    /// Reasoning with it ablated.
    pub reasoning: Score,
    /// Share of recall's mean margin removed.
    pub recall_drop: f64,
    /// Share of reasoning's mean margin removed.
    pub reasoning_drop: f64,
    /// `recall_drop − reasoning_drop`.
    pub selectivity: f64,
}

/// Components disabled together, scored on the test questions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Circuit {
    /// The components.
    pub components: Vec<Component>,
    /// Recall.
    pub recall: Score,
    /// Reasoning.
    pub reasoning: Score,
}

/// What a run found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecallResult {
    /// The discovery questions as the model is (recall).
    pub recall: Score,
    /// The same, reasoning.
    pub reasoning: Score,
    /// Every component's effect, layer by layer: attention, MLP, then heads.
    pub effects: Vec<Effect>,
    /// The test questions as the model is.
    pub test: Circuit,
    /// The `top_k` most recall-selective components disabled together.
    pub recall_circuit: Circuit,
    /// The `top_k` most reasoning-selective.
    pub reasoning_circuit: Circuit,
    /// As many random components (when the spec asks).
    pub control: Option<Circuit>,
}

/// A question tokenized.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// The prompt's ids.
    pub ids: Vec<u32>,
    /// The options' first ids.
    pub options: Vec<u32>,
    /// The right option.
    pub answer: usize,
}

impl Item {
    /// `(answered, margin)` from the options' logits, `[options]`.
    fn score(&self, logits: &[f32]) -> (bool, f64) {
        let of = |j: usize| logits.get(j).copied().unwrap_or(f32::NAN);
        // The first highest option, as `argmax`.
        let best = (0..self.options.len()).fold(0, |b, j| if of(j) > of(b) { j } else { b });
        let other = (0..self.options.len())
            .filter(|&j| j != self.answer)
            .map(of)
            .fold(f32::NEG_INFINITY, f32::max);
        (best == self.answer, f64::from(of(self.answer) - other))
    }
}

fn items(
    qs: &[Question],
    task: &str,
    tk: &TextTokenizer,
    n_ctx: usize,
) -> Result<Vec<Item>, LabError> {
    let limit = MAX_PROMPT_TOKENS.min(n_ctx);
    qs.iter()
        .map(|q| {
            let ids = tk.encode(&q.prompt).map_err(LabError::Model)?;
            if ids.is_empty() {
                return Err(LabError::Spec(format!(
                    "a {task} question's prompt is empty"
                )));
            }
            if ids.len() > limit {
                return Err(LabError::Spec(format!(
                    "the prompt \"{}\" has {} tokens; a question may have at most {limit}",
                    q.prompt,
                    ids.len()
                )));
            }
            if q.options.len() < 2 || q.answer >= q.options.len() {
                return Err(LabError::Spec(format!(
                    "the {task} question \"{}\" needs at least two options and an answer among \
                     them (0 to {})",
                    q.prompt,
                    q.options.len().saturating_sub(1)
                )));
            }
            let options = q
                .options
                .iter()
                .map(|o| {
                    tk.encode(o)
                        .map_err(LabError::Model)?
                        .first()
                        .copied()
                        .ok_or_else(|| {
                            LabError::Spec(format!("an option of \"{}\" is empty", q.prompt))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if (1..options.len()).any(|i| options[..i].contains(&options[i])) {
                return Err(LabError::Spec(format!(
                    "two options of \"{}\" begin with the same token: they cannot be told apart",
                    q.prompt
                )));
            }
            Ok(Item {
                ids,
                options,
                answer: q.answer,
            })
        })
        .collect()
}

/// Both tasks tokenized and checked: `[recall, reasoning]`.
pub fn prepare(
    spec: &RecallSpec,
    m: &Transformer,
    tk: &TextTokenizer,
) -> Result<[Vec<Item>; 2], LabError> {
    let t = spec.tasks.load()?;
    let recall = items(&t.recall, "recall", tk, m.config.n_ctx)?;
    let reasoning = items(&t.reasoning, "reasoning", tk, m.config.n_ctx)?;
    for (name, it) in [("recall", &recall), ("reasoning", &reasoning)] {
        if it.len() < 2 {
            return Err(LabError::Spec(format!(
                "the {name} task needs at least two questions (one to rank components on, one \
                 to test them on); it has {}",
                it.len()
            )));
        }
    }
    // The two circuits are drawn from opposite ends of one ranking: at most half each, so
    // they never share a component.
    let pool = components(m, spec.heads).len();
    if spec.top_k == 0 || spec.top_k > pool / 2 {
        return Err(LabError::Spec(format!(
            "top k must be between 1 and {}, half of the {pool} components ablated (the recall \
             and reasoning circuits must not share one)",
            pool / 2
        )));
    }
    Ok([recall, reasoning])
}

/// The spec checked against the model and tokenizer before anything runs.
pub fn check(spec: &RecallSpec, m: &Transformer, tk: &TextTokenizer) -> Result<(), LabError> {
    prepare(spec, m, tk).map(|_| ())
}

/// Every component ablated, layer by layer: attention, MLP, then the heads when asked.
pub fn components(m: &Transformer, heads: bool) -> Vec<Component> {
    let nh = if heads { m.config.n_heads } else { 0 };
    (0..m.config.n_layers)
        .flat_map(|layer| {
            [Part::Attn, Part::Mlp]
                .into_iter()
                .chain((0..nh).map(Part::Head))
                .map(move |part| Component { layer, part })
        })
        .collect()
}

/// `(M − M_ablated) / |M|`; 0 when the model's margin is 0.
fn drop(base: f64, ablated: f64) -> f64 {
    if base == 0.0 {
        0.0
    } else {
        (base - ablated) / base.abs()
    }
}

/// Components by selectivity for recall, most selective first (ties keep component order);
/// reversed, the same for reasoning.
pub fn ranked(effects: &[Effect]) -> Vec<Component> {
    let mut all: Vec<&Effect> = effects.iter().collect();
    all.sort_by(|a, b| {
        b.selectivity
            .total_cmp(&a.selectivity)
            .then(a.component.cmp(&b.component))
    });
    all.into_iter().map(|e| e.component).collect()
}

/// The most reasoning-selective first (ties keep component order).
pub fn ranked_reasoning(effects: &[Effect]) -> Vec<Component> {
    let mut all: Vec<&Effect> = effects.iter().collect();
    all.sort_by(|a, b| {
        a.selectivity
            .total_cmp(&b.selectivity)
            .then(a.component.cmp(&b.component))
    });
    all.into_iter().map(|e| e.component).collect()
}

/// Run the experiment. `progress(done, total)` resolves to `false` to cancel.
pub async fn run(
    spec: &RecallSpec,
    m: &Transformer,
    tk: &TextTokenizer,
    progress: &mut dyn FnMut(usize, usize) -> Progress,
) -> Result<RecallResult, LabError> {
    let tasks = prepare(spec, m, tk)?;
    let split = |t: &[Item], parity: usize| -> Vec<usize> {
        (0..t.len()).filter(|i| i % 2 == parity).collect()
    };
    let discovery: Vec<(usize, usize)> = (0..2)
        .flat_map(|t| split(&tasks[t], 0).into_iter().map(move |i| (t, i)))
        .collect();
    let total = spec.steps(discovery.len());
    let mut done = 0;
    if !progress(done, total).await {
        return Err(LabError::Cancelled);
    }
    let means = match spec.ablation {
        Ablation::Mean => {
            let all: Vec<&Item> = tasks.iter().flatten().collect();
            Some(means(m, &all).await?)
        }
        Ablation::Zero => None,
    };
    done += 1;
    let pool = components(m, spec.heads);
    // Per task, per discovery question: its margin and answer as the model is, and per
    // component.
    let mut base: [Vec<(bool, f64)>; 2] = [Vec::new(), Vec::new()];
    let mut per: [Vec<Vec<(bool, f64)>>; 2] = [Vec::new(), Vec::new()];
    for &(t, i) in &discovery {
        if !progress(done, total).await {
            return Err(LabError::Cancelled);
        }
        let it = &tasks[t][i];
        let p = it.ids.len();
        let variants: Vec<Variant> = pool
            .iter()
            .map(|&c| Variant {
                layer: c.layer,
                interventions: vec![ablate(m, c, spec.ablation, spec.scope, p, means.as_ref())],
            })
            .collect();
        let from = match spec.scope {
            Scope::All => 0,
            Scope::Last => p - 1,
        };
        let read = intervention_sweep(
            m,
            &it.ids,
            &variants,
            from,
            &it.options,
            // The run's own step, so Cancel and Pause act inside a sweep too.
            &mut |_, _| progress(done, total),
        )
        .await
        .map_err(|e| match e {
            interplay_models::ModelError::Input(s) if s == "cancelled" => LabError::Cancelled,
            e => LabError::Model(e),
        })?;
        base[t].push(it.score(&read.clean));
        per[t].push(read.variants.iter().map(|l| it.score(l)).collect());
        done += 1;
    }
    let score = |v: Vec<(bool, f64)>| {
        let answered = v.iter().filter(|x| x.0).count();
        Score::of(v.into_iter().map(|x| x.1).collect(), answered)
    };
    let [b0, b1] = base;
    let (recall, reasoning) = (score(b0), score(b1));
    let effects: Vec<Effect> = pool
        .iter()
        .enumerate()
        .map(|(j, &component)| {
            let r = score(per[0].iter().map(|q| q[j]).collect());
            let s = score(per[1].iter().map(|q| q[j]).collect());
            let recall_drop = drop(recall.margin, r.margin);
            let reasoning_drop = drop(reasoning.margin, s.margin);
            Effect {
                component,
                recall: r,
                reasoning: s,
                recall_drop,
                reasoning_drop,
                selectivity: recall_drop - reasoning_drop,
            }
        })
        .collect();
    if !progress(done, total).await {
        return Err(LabError::Cancelled);
    }
    let test: [Vec<&Item>; 2] = [0, 1].map(|t| {
        split(&tasks[t], 1)
            .into_iter()
            .map(|i| &tasks[t][i])
            .collect()
    });
    let k = spec.top_k;
    let circuit = async |off: Vec<Component>| -> Result<Circuit, LabError> {
        Ok(Circuit {
            recall: score_with(m, &test[0], &off, spec, means.as_ref()).await?,
            reasoning: score_with(m, &test[1], &off, spec, means.as_ref()).await?,
            components: off,
        })
    };
    let as_is = circuit(Vec::new()).await?;
    let recall_circuit = circuit(ranked(&effects)[..k].to_vec()).await?;
    let reasoning_circuit = circuit(ranked_reasoning(&effects)[..k].to_vec()).await?;
    let control = if spec.control {
        let perm = Rng::new(spec.seed).permutation(pool.len());
        let mut off: Vec<Component> = perm[..k].iter().map(|&j| pool[j]).collect();
        off.sort();
        Some(circuit(off).await?)
    } else {
        None
    };
    let _ = progress(total, total).await;
    Ok(RecallResult {
        recall,
        reasoning,
        effects,
        test: as_is,
        recall_circuit,
        reasoning_circuit,
        control,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn effect(layer: usize, part: Part, selectivity: f64) -> Effect {
        let s = Score::of(Vec::new(), 0);
        Effect {
            component: Component { layer, part },
            recall: s.clone(),
            reasoning: s,
            recall_drop: 0.0,
            reasoning_drop: 0.0,
            selectivity,
        }
    }

    #[test]
    fn ranking_breaks_ties_by_component_order_both_ways() {
        let e = [
            effect(0, Part::Attn, 0.1),
            effect(0, Part::Mlp, 0.5),
            effect(1, Part::Attn, 0.1),
            effect(1, Part::Head(0), -0.3),
        ];
        let names = |v: Vec<Component>| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            names(ranked(&e)),
            ["L0 MLP", "L0 attn", "L1 attn", "head 1.0"]
        );
        assert_eq!(
            names(ranked_reasoning(&e)),
            ["head 1.0", "L0 attn", "L1 attn", "L0 MLP"]
        );
        assert_eq!(drop(2.0, 0.5), 0.75);
        assert_eq!(drop(-2.0, -3.0), 0.5);
        assert_eq!(drop(0.0, 1.0), 0.0);
    }

    #[test]
    fn an_item_is_answered_by_the_first_highest_option() {
        let it = Item {
            ids: vec![1],
            options: vec![5, 6, 7],
            answer: 1,
        };
        assert_eq!(it.score(&[1.0, 3.0, 2.5]), (true, 0.5));
        assert_eq!(it.score(&[3.0, 3.0, 0.0]), (false, 0.0));
    }

    #[test]
    fn the_bundled_questions_load_and_the_guided_spec_round_trips() {
        let t = Tasks::Bundled.load().unwrap();
        assert!(t.recall.len() >= 8 && t.reasoning.len() >= 8);
        assert!(
            t.recall
                .iter()
                .chain(&t.reasoning)
                .all(|q| q.options.len() >= 2 && q.answer < q.options.len())
        );
        let s = RecallSpec::smollm2();
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            json.contains("\"experiment\":\"recall-reasoning\""),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<RecallSpec>(&json).unwrap(), s);
    }
}
