//! Edge attribution patching (Circuits lab): EAP or EAP-IG scores for every edge between the
//! model's heads and MLPs (`interplay_models::eap`), the exact effect of corrupting each of the
//! top edges alone beside its score, and the faithfulness of the circuits made of the top `n`
//! edges as `n` grows.
//!
//! The scores need gradients (feature `train`: the CLI and the page's gradients engine); the
//! circuits and exact effects are forward runs only.

use interplay_models::eap::{
    EdgeGraph, EdgeMethod, EdgePatcher, EdgeScores, exact_edge_effects, faithfulness_curve,
};
use interplay_models::load::LoadedModel;
use interplay_models::patching::{PatchTarget, Progress};
use serde::{Deserialize, Serialize};

use crate::LabError;
use crate::patching::{PatchingSpec, Prompt, TokenRef};

/// The experiment; in JSON a Circuits spec with `"experiment": "edge-attribution"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "experiment", rename = "edge-attribution")]
pub struct EdgeSpec {
    /// Which model: `"smollm2"`, a bundled id or the name of a file the user loaded.
    pub model: String,
    /// The prompt whose behaviour we explain.
    pub clean: Prompt,
    /// The same prompt with the information removed.
    pub corrupt: Prompt,
    /// The correct next token on the clean prompt.
    pub answer: TokenRef,
    /// The token the corrupted prompt favours.
    pub wrong: TokenRef,
    /// `"eap"` or `"eap-ig"`.
    #[serde(default = "default_method")]
    pub method: EdgeMethod,
    /// EAP-IG's interpolation points (1–100): inputs `corrupt + k/steps · (clean − corrupt)`,
    /// k = 0..steps (Hanna et al.'s points; one step is the corrupted input alone).
    #[serde(default = "default_steps")]
    pub steps: usize,
    /// How many of the top edges are listed, drawn, and patched exactly one at a time (0–200).
    #[serde(default = "default_top")]
    pub top: usize,
    /// The circuit sizes of the faithfulness curve; by default 1, 2, 5, 10, 20, 50, … up to
    /// every edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuits: Option<Vec<usize>>,
}

fn default_method() -> EdgeMethod {
    EdgeMethod::EapIg
}
fn default_steps() -> usize {
    5
}
fn default_top() -> usize {
    20
}

/// One of the top edges.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeRow {
    /// Upstream node (`input`, `a{l}.h{i}`, `m{l}`).
    pub from: String,
    /// Downstream node (`a{l}.h{i}<q|k|v>`, `m{l}`, `logits`).
    pub to: String,
    /// Upstream index.
    pub u: usize,
    /// Downstream index.
    pub v: usize,
    /// The estimated change of the metric when the edge alone is corrupted.
    pub score: f32,
    /// The true change (the edge alone corrupted in the clean run).
    pub exact: f32,
}

/// One circuit of the faithfulness curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Edges kept.
    pub edges: usize,
    /// How many of them lie on a kept path from the input to the logits (what Hanna et al.'s
    /// pruning keeps; the others change nothing).
    pub connected: usize,
    /// The metric with only those edges kept.
    pub metric: f32,
    /// `(metric − corrupt) / (clean − corrupt)`; `None` when the prompts give equal metrics.
    pub faithfulness: Option<f64>,
}

/// What the experiment found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeOutcome {
    /// Upstream node names, in the graph's order.
    pub upstream: Vec<String>,
    /// Downstream node names, in the graph's order.
    pub downstream: Vec<String>,
    /// How many edges the graph has.
    pub edges: usize,
    /// The metric on the clean prompt.
    pub clean_metric: f32,
    /// The metric on the corrupted prompt.
    pub corrupt_metric: f32,
    /// The top edges by |score|.
    pub top: Vec<EdgeRow>,
    /// Pearson correlation of score and exact effect over the top edges; `None` with fewer than
    /// three or where either is constant.
    pub correlation: Option<f64>,
    /// Faithfulness against circuit size.
    pub curve: Vec<CurvePoint>,
}

impl EdgeSpec {
    /// The value of its `"experiment"` key.
    pub const EXPERIMENT: &str = "edge-attribution";

    /// IOI on SmolLM2 by EAP-IG: the guided experiment.
    pub fn ioi_smollm2() -> Self {
        let p = PatchingSpec::ioi_smollm2();
        Self {
            model: p.model,
            clean: p.clean,
            corrupt: p.corrupt,
            answer: p.answer,
            wrong: p.wrong,
            method: default_method(),
            steps: default_steps(),
            top: default_top(),
            circuits: None,
        }
    }

    /// The prompts and tokens as an activation-patching spec (for resolving them).
    pub fn patching(&self) -> PatchingSpec {
        PatchingSpec {
            model: self.model.clone(),
            clean: self.clean.clone(),
            corrupt: self.corrupt.clone(),
            answer: self.answer.clone(),
            wrong: self.wrong.clone(),
            target: PatchTarget::ResidPre,
        }
    }

    /// Scores, exact effects of the top edges, the faithfulness curve. `progress(done, total)`
    /// counts forward runs after the scores; resolving to `false` cancels.
    pub async fn run(
        &self,
        m: &LoadedModel,
        progress: &mut dyn FnMut(usize, usize) -> Progress,
    ) -> Result<EdgeOutcome, LabError> {
        if self.top > 200 {
            return Err(LabError::Spec(format!(
                "top: at most 200 edges are patched one at a time, not {}",
                self.top
            )));
        }
        let counts = match &self.circuits {
            Some(c) if c.is_empty() || c.len() > 40 => {
                return Err(LabError::Spec(
                    "circuits: give 1 to 40 circuit sizes, or leave it out".into(),
                ));
            }
            Some(c) => c.clone(),
            None => default_counts(EdgeGraph::of(&m.model.config).edges()),
        };
        let r = self.patching().resolve(m.tokenizer.as_ref())?;
        if r.clean == r.corrupt {
            return Err(LabError::Spec(
                "the clean and corrupted prompts are the same token for token: no edge carries a \
                 difference, so there is nothing to attribute; change the corrupted prompt"
                    .into(),
            ));
        }
        // Progress counts gradient runs, then single-edge runs, then circuits.
        let runs = match self.method {
            EdgeMethod::Eap => 1,
            EdgeMethod::EapIg => self.steps,
        };
        let (nt, nc) = (self.top, counts.len());
        let total = runs + nt + nc;
        let scores = scores(
            m,
            &r.clean,
            &r.corrupt,
            r.answer,
            r.wrong,
            self.method,
            self.steps,
            &mut |d, _| progress(d, total),
        )
        .await?;
        let patcher = EdgePatcher::new(&m.model, &r.clean, &r.corrupt, r.answer, r.wrong)?;
        let ranked = scores.ranked();
        let top: Vec<(usize, usize)> = ranked.iter().copied().take(self.top).collect();
        let exact =
            exact_edge_effects(&patcher, &top, &mut |d, _| progress(runs + d, total)).await?;
        let points = faithfulness_curve(&patcher, &ranked, &counts, &mut |d, _| {
            progress(runs + nt + d, total)
        })
        .await?;
        Ok(outcome(&scores, &top, &exact, &points))
    }
}

/// 1, 2, 5, 10, 20, 50, … below `n`, then `n`.
pub fn default_counts(n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut decade = 1;
    'outer: loop {
        for k in [1, 2, 5] {
            if k * decade >= n {
                break 'outer;
            }
            out.push(k * decade);
        }
        decade *= 10;
    }
    out.push(n);
    out
}

/// The outcome of scores, the top edges' exact effects and the curve's metrics.
pub fn outcome(
    scores: &EdgeScores,
    top: &[(usize, usize)],
    exact: &[f32],
    points: &[interplay_models::eap::CircuitPoint],
) -> EdgeOutcome {
    let g = scores.graph;
    let (clean, corrupt) = (scores.clean_metric, scores.corrupt_metric);
    let span = (clean - corrupt) as f64;
    let rows: Vec<EdgeRow> = top
        .iter()
        .zip(exact)
        .map(|(&(u, v), &e)| EdgeRow {
            from: g.upstream_name(u),
            to: g.downstream_name(v),
            u,
            v,
            score: scores.score(u, v),
            exact: e,
        })
        .collect();
    let a: Vec<f64> = rows.iter().map(|r| r.score as f64).collect();
    let b: Vec<f64> = rows.iter().map(|r| r.exact as f64).collect();
    EdgeOutcome {
        upstream: (0..g.upstream()).map(|u| g.upstream_name(u)).collect(),
        downstream: (0..g.downstream()).map(|v| g.downstream_name(v)).collect(),
        edges: g.edges(),
        clean_metric: clean,
        corrupt_metric: corrupt,
        correlation: if rows.len() >= 3 {
            crate::attribution::pearson(&a, &b)
        } else {
            None
        },
        top: rows,
        curve: points
            .iter()
            .map(|p| CurvePoint {
                edges: p.edges,
                connected: p.connected,
                metric: p.metric,
                faithfulness: (span.abs() > 1e-6)
                    .then(|| (p.metric as f64 - corrupt as f64) / span),
            })
            .collect(),
    }
}

#[cfg(feature = "train")]
#[allow(clippy::too_many_arguments)]
async fn scores(
    m: &LoadedModel,
    clean: &[u32],
    corrupt: &[u32],
    answer: u32,
    wrong: u32,
    method: EdgeMethod,
    steps: usize,
    progress: &mut dyn FnMut(usize, usize) -> Progress,
) -> Result<EdgeScores, LabError> {
    Ok(interplay_models::eap::edge_attribution(
        &m.model, clean, corrupt, answer, wrong, method, steps, progress,
    )
    .await?)
}

#[cfg(not(feature = "train"))]
#[allow(clippy::too_many_arguments)]
async fn scores(
    _m: &LoadedModel,
    _clean: &[u32],
    _corrupt: &[u32],
    _answer: u32,
    _wrong: u32,
    _method: EdgeMethod,
    _steps: usize,
    _progress: &mut dyn FnMut(usize, usize) -> Progress,
) -> Result<EdgeScores, LabError> {
    Err(LabError::Spec(
        "edge attribution patching needs gradients, which this engine does not compute (it has \
         no autodiff): in the page the gradients engine did not start (run it again to retry); \
         `interplay run spec.json` computes them too"
            .into(),
    ))
}
