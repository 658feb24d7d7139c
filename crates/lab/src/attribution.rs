//! Attribution patching beside activation patching (Circuits lab): the first-order estimate of
//! every patch of one target (`interplay_models::attribution`), the true sweep of the same target
//! (`interplay_models::patching`), and how well the estimate ranks what the sweep finds.
//!
//! The estimate needs gradients, which only a build with autodiff (feature `train`: the CLI, and
//! the page's gradients engine) computes; elsewhere the run says so.

use interplay_models::load::LoadedModel;
use interplay_models::patching::{PatchGrid, PatchTarget, Progress, patch_sweep};
use serde::{Deserialize, Serialize};

use crate::LabError;
use crate::patching::{PatchingSpec, Prompt, TokenRef};

/// The experiment; in JSON a Circuits spec with `"experiment": "attribution-patching"` and the
/// fields of an activation-patching spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "experiment", rename = "attribution-patching")]
pub struct AttributionSpec {
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
    /// Which activation to estimate and patch.
    pub target: PatchTarget,
}

/// What the experiment found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributionOutcome {
    /// The estimates, in the sweep's layout (`patched`: the estimated patched metric).
    pub attribution: PatchGrid,
    /// The true activation-patching sweep of the same target.
    pub activation: PatchGrid,
    /// Pearson correlation of the two normalised grids over every cell; `None` where either is
    /// constant (equal prompts).
    pub correlation: Option<f64>,
    /// How many of the sweep's `top` cells of largest |effect| are among the estimate's `top`;
    /// `None` where either grid is constant (nothing to rank).
    pub top_overlap: Option<usize>,
    /// The `top` compared (ten, or fewer cells).
    pub top: usize,
}

impl AttributionSpec {
    /// The value of its `"experiment"` key.
    pub const EXPERIMENT: &str = "attribution-patching";

    /// IOI on SmolLM2, head outputs: the guided experiment.
    pub fn ioi_smollm2() -> Self {
        Self::from_patching(PatchingSpec {
            target: PatchTarget::HeadOut,
            ..PatchingSpec::ioi_smollm2()
        })
    }

    /// The same prompts, tokens and target as an activation-patching spec.
    pub fn from_patching(p: PatchingSpec) -> Self {
        Self {
            model: p.model,
            clean: p.clean,
            corrupt: p.corrupt,
            answer: p.answer,
            wrong: p.wrong,
            target: p.target,
        }
    }

    /// The activation-patching spec of the same sweep.
    pub fn patching(&self) -> PatchingSpec {
        PatchingSpec {
            model: self.model.clone(),
            clean: self.clean.clone(),
            corrupt: self.corrupt.clone(),
            answer: self.answer.clone(),
            wrong: self.wrong.clone(),
            target: self.target,
        }
    }

    /// Estimate, then sweep. `progress(done, total)` is the sweep's; resolving to `false` cancels.
    pub async fn run(
        &self,
        m: &LoadedModel,
        progress: &mut dyn FnMut(usize, usize) -> Progress,
    ) -> Result<AttributionOutcome, LabError> {
        let r = self.patching().resolve(m.tokenizer.as_ref())?;
        let attribution = estimate(m, &r.clean, &r.corrupt, self.target, r.answer, r.wrong).await?;
        let activation = patch_sweep(
            &m.model,
            &r.clean,
            &r.corrupt,
            self.target,
            r.answer,
            r.wrong,
            progress,
        )
        .await?;
        Ok(compare(attribution, activation))
    }
}

#[cfg(feature = "train")]
async fn estimate(
    m: &LoadedModel,
    clean: &[u32],
    corrupt: &[u32],
    target: PatchTarget,
    answer: u32,
    wrong: u32,
) -> Result<PatchGrid, LabError> {
    Ok(interplay_models::attribution::attribution_sweep(
        &m.model, clean, corrupt, target, answer, wrong,
    )
    .await?)
}

#[cfg(not(feature = "train"))]
async fn estimate(
    _m: &LoadedModel,
    _clean: &[u32],
    _corrupt: &[u32],
    _target: PatchTarget,
    _answer: u32,
    _wrong: u32,
) -> Result<PatchGrid, LabError> {
    Err(LabError::Spec(
        "attribution patching needs gradients, which this engine does not compute (it has no \
         autodiff): in the page the gradients engine did not start (run it again to retry); \
         `interplay run spec.json` computes them too"
            .into(),
    ))
}

/// The two grids side by side, with their correlation and top-10 overlap.
pub fn compare(attribution: PatchGrid, activation: PatchGrid) -> AttributionOutcome {
    let flat = |g: &PatchGrid| {
        g.grid
            .iter()
            .flatten()
            .map(|&v| v as f64)
            .collect::<Vec<_>>()
    };
    let (a, b) = (flat(&attribution), flat(&activation));
    let top = a.len().min(10);
    let ranked = |v: &[f64]| {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[j].abs().total_cmp(&v[i].abs()));
        idx.truncate(top);
        idx
    };
    let (ta, tb) = (ranked(&a), ranked(&b));
    let correlation = pearson(&a, &b);
    let top_overlap = correlation
        .is_some()
        .then(|| tb.iter().filter(|i| ta.contains(i)).count());
    AttributionOutcome {
        correlation,
        top_overlap,
        top,
        attribution,
        activation,
    }
}

/// Pearson's r; `None` when either side is constant or the lengths differ.
pub(crate) fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}
