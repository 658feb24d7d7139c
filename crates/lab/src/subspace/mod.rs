//! Subspace patching and its illusion (Makelov, Lange & Nanda 2023, "Is This the Subspace You
//! Are Looking for?"). Distributed alignment search (DAS) learns a unit direction `v` at one
//! hook so that patching only the activation's component along it, `x ← x + ((x_src − x)·v) v`,
//! from a source prompt into a base prompt makes the model act as the source would. The prompts
//! are IOI's, on the bundled `ioi-3l` model (its own vocabulary) or on a model with a tokenizer
//! (SmolLM2) as text. The variable is either which of the opening's two names is repeated (the
//! source is the base with the other name repeated, "When Mary and Tom …, Mary gave a drink to"
//! for "…, Tom gave a drink to") or the paper's position variable, the opening's order swapped;
//! either way carrying it over should make the model name the base's subject. On `ioi-3l` the
//! order changes nothing at the last position, even patched whole (it tells the names apart by
//! identity, not by place); SmolLM2 carries it.
//!
//! A direction can do that without being what the model uses: in an MLP's hidden layer most
//! directions are never read (the null space of `W_out`, 192 of 256 dimensions here), and `v`
//! can pair a null-space part that differs between the prompts with a part the output reads but
//! that never varies on its own (dormant). So beside the patch's effect the experiment reports
//! how much of `v` lies in the row space of the weights that read the hook, and the effect of
//! each part patched alone, and the same for the whole activation patched.

use interplay_models::hooks::HookPoint;
use interplay_models::patching::Progress;
use interplay_models::rng::Rng;
use interplay_models::{LoadedModel, TextTokenizer, Transformer};
use serde::{Deserialize, Serialize};

use crate::LabError;
use crate::bundled::{
    Bundled, IOI_NAMES, IOI_OBJECTS, IOI_PLACES, IOI_TEMPLATES, IoiPrompt, ioi_held_out, ioi_prompt,
};

mod cache;
mod learn;
mod reading;
use cache::{Cached, Patch, shift_tensor};
use learn::{can_learn, learn};
use reading::reading_space;

/// The experiment; in JSON a Circuits spec with `"experiment": "subspace-patching"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "experiment", rename = "subspace-patching")]
pub struct SubspaceSpec {
    /// Where a direction is learned, at the last position (1–4 hooks: `hook_resid_pre`,
    /// `hook_resid_mid`, `hook_resid_post` or `mlp.hook_post` of any layer).
    #[serde(default = "default_hooks")]
    pub hooks: Vec<HookPoint>,
    /// Adam steps per direction (1–2000).
    #[serde(default = "default_steps")]
    pub steps: usize,
    /// Prompt pairs per step (1–256).
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Adam's learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Seed of the initial direction and of the batches.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// How each source differs from its base.
    #[serde(default)]
    pub counterfactual: Counterfactual,
    /// The model: `"ioi-3l"` (the bundled IOI model) or one whose tokenizer reads every name,
    /// place and object as one token with its leading space (`"smollm2"`).
    #[serde(default = "default_model")]
    pub model: String,
    /// How many of the 20 names the prompts use (6–20; the pairs grow with its square, and the
    /// held-out pairs, `a ≡ s mod 5`, need 6).
    #[serde(default = "default_names")]
    pub names: usize,
}

/// How a source prompt differs from its base; either way the patch should make the model name
/// the base's subject.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Counterfactual {
    /// The other opening name is repeated ("When Mary and Tom …, Mary gave …" for "…, Tom
    /// gave …"): the source's answer is the base's subject.
    #[default]
    Repeat,
    /// The opening's two names swap places ("When Tom and Mary …, Tom gave …"), Makelov et al.'s
    /// position variable: the source's answer is still the indirect object, but were the
    /// position read, carrying it over would point the model at the other name.
    Order,
}

fn default_hooks() -> Vec<HookPoint> {
    vec![HookPoint::MlpPost(1), HookPoint::ResidPost(1)]
}
fn default_steps() -> usize {
    200
}
fn default_batch() -> usize {
    32
}
fn default_lr() -> f64 {
    1e-2
}
fn default_seed() -> u64 {
    1
}
fn default_model() -> String {
    SubspaceSpec::MODEL.into()
}
fn default_names() -> usize {
    IOI_NAMES.len()
}

/// Mean logit difference and how often the output flipped, over the held-out pairs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// Mean of `logit(indirect object) − logit(subject)` at the last position.
    pub logit_diff: f32,
    /// The share of pairs whose subject now outscores the indirect object.
    pub flipped: f32,
}

/// One learned direction and what patching along it does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Direction {
    /// Where.
    pub hook: HookPoint,
    /// The activation's width there.
    pub width: usize,
    /// Training loss (cross-entropy towards the subject, patched) at each step, before its
    /// update.
    pub loss: Vec<f32>,
    /// The learned unit direction `v` (`[width]`).
    pub direction: Vec<f32>,
    /// The whole activation at the last position patched from the source.
    pub full: Effect,
    /// Patched along `v`.
    pub along: Effect,
    /// Patched along `v`'s part in the row space of the reading weights, normalised (`None`
    /// when `v` has none).
    pub row: Option<Effect>,
    /// Patched along `v`'s part in their null space, normalised (`None` when it has none).
    pub null: Option<Effect>,
    /// `|v_row|²`: the share of `v` in the row space of the weights that read the hook.
    pub row_share: f32,
    /// The dimension of that null space.
    pub null_dim: usize,
    /// Of the patched coefficient `(x_src − x)·v` (summed as squares over the held-out pairs),
    /// the share its null-space part makes: `Σ (δ·v_null)(δ·v) / Σ (δ·v)²`, `δ = x_src − x`.
    /// Near 1: the prompts differ along `v` only where the model does not read.
    pub from_null: f32,
    /// What reads the hook, in words.
    pub readers: String,
}

/// What the experiment found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubspaceOutcome {
    /// Held-out prompt pairs (name pairs never trained on, every template, both orders).
    pub test_pairs: usize,
    /// The held-out pairs unpatched.
    pub unpatched: Effect,
    /// One per hook, in the spec's order.
    pub directions: Vec<Direction>,
}

/// One base/source pair.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    /// The base prompt's ids.
    pub base: Vec<u32>,
    /// The source (see [`Counterfactual`]).
    pub source: Vec<u32>,
    /// The indirect object's id (the base's answer).
    pub io: u32,
    /// The subject's id (what the model should say when the position is carried over).
    pub subject: u32,
}

/// Every pair of one split in the bundled model's vocabulary, per template (each template's
/// prompts share a length): for each ordered pair of the first `names` names (held out or not
/// by [`ioi_held_out`]) both opening orders, the source made by `counterfactual`.
pub fn pairs(held_out: bool, counterfactual: Counterfactual, names: usize) -> Vec<Vec<Pair>> {
    let built: Result<_, LabError> = build_pairs(held_out, counterfactual, names, |prompt, _| {
        Ok((prompt.ids.clone(), [prompt.answer, prompt.subject]))
    });
    built.unwrap_or_default()
}

/// The same pairs as text through `tk` ("When Mary and John went to the office, John gave a
/// book to"): each of the first `names` names, every place and every object must be one token
/// with its leading space, and a template's prompts one length.
pub fn text_pairs(
    tk: &TextTokenizer,
    held_out: bool,
    counterfactual: Counterfactual,
    names: usize,
) -> Result<Vec<Vec<Pair>>, LabError> {
    // Only the names the spec uses need to be one token; every place and object may appear.
    let n = names.min(IOI_NAMES.len());
    let mut name_ids = Vec::with_capacity(n);
    for (i, w) in IOI_NAMES[..n]
        .iter()
        .chain(&IOI_PLACES)
        .chain(&IOI_OBJECTS)
        .enumerate()
    {
        let id = tk.single_token(&format!(" {w}")).map_err(|e| {
            LabError::Spec(format!(
                "subspace patching needs \" {w}\" to be one token of this model's tokenizer: {e}"
            ))
        })?;
        if i < n {
            name_ids.push(id);
        }
    }
    let groups = build_pairs(held_out, counterfactual, names, |prompt, [a, s]| {
        let text = prompt.text.replace(" ,", ",").replace(" .", ".");
        let ids = tk.encode(&text).map_err(LabError::Model)?;
        Ok((ids, [name_ids[a], name_ids[s]]))
    })?;
    for (t, g) in groups.iter().enumerate() {
        if g.iter()
            .any(|p| p.base.len() != g[0].base.len() || p.source.len() != g[0].base.len())
        {
            return Err(LabError::Spec(format!(
                "template {t}'s prompts are not all one length on this tokenizer"
            )));
        }
    }
    Ok(groups)
}

/// The pairs of one split, each prompt made by `encode` from the prompt and its (indirect
/// object, subject) name indices: its ids and those names' ids.
fn build_pairs(
    held_out: bool,
    counterfactual: Counterfactual,
    names: usize,
    mut encode: impl FnMut(&IoiPrompt, [usize; 2]) -> Result<(Vec<u32>, [u32; 2]), LabError>,
) -> Result<Vec<Vec<Pair>>, LabError> {
    let n = names.min(IOI_NAMES.len());
    (0..IOI_TEMPLATES.len())
        .map(|t| {
            let mut out = Vec::new();
            for a in 0..n {
                for s in 0..n {
                    if a == s || ioi_held_out(a, s) != held_out {
                        continue;
                    }
                    let (p, o) = (
                        (a + 3 * s) % IOI_PLACES.len(),
                        (5 * a + s) % IOI_OBJECTS.len(),
                    );
                    for abba in [true, false] {
                        let (base, [io, subject]) =
                            encode(&ioi_prompt(t, a, s, p, o, abba), [a, s])?;
                        let (source, _) = match counterfactual {
                            Counterfactual::Repeat => {
                                encode(&ioi_prompt(t, s, a, p, o, !abba), [s, a])?
                            }
                            Counterfactual::Order => {
                                encode(&ioi_prompt(t, a, s, p, o, !abba), [a, s])?
                            }
                        };
                        out.push(Pair {
                            base,
                            source,
                            io,
                            subject,
                        });
                    }
                }
            }
            Ok(out)
        })
        .collect()
}

impl SubspaceSpec {
    /// The value of its `"experiment"` key.
    pub const EXPERIMENT: &str = "subspace-patching";
    /// The model it runs on by default.
    pub const MODEL: &str = "ioi-3l";

    /// The guided experiment: an MLP's hidden layer beside the residual stream it writes to.
    pub fn guided() -> Self {
        Self {
            hooks: default_hooks(),
            steps: default_steps(),
            batch: default_batch(),
            lr: default_lr(),
            seed: default_seed(),
            counterfactual: Counterfactual::Repeat,
            model: default_model(),
            names: default_names(),
        }
    }

    /// The guided experiment on SmolLM2, where the paper's illusion shows: layer 20's MLP
    /// activation beside its residual output, the opening's order swapped (8 names: 448 prompts
    /// to run once, so that the page learns both directions in minutes).
    pub fn smollm2() -> Self {
        Self {
            hooks: vec![HookPoint::MlpPost(20), HookPoint::ResidPost(20)],
            steps: 400,
            batch: 32,
            lr: 0.05,
            seed: 1,
            counterfactual: Counterfactual::Order,
            model: "smollm2".into(),
            names: 8,
        }
    }

    /// The spec's limits for a model of `n_layers` layers, checked before any run.
    pub fn check(&self, n_layers: usize) -> Result<(), LabError> {
        let bad = |m: String| Err(LabError::Spec(m));
        if self.hooks.is_empty() || self.hooks.len() > 4 {
            return bad(format!(
                "hooks: give 1 to 4 hooks, not {}",
                self.hooks.len()
            ));
        }
        for (i, h) in self.hooks.iter().enumerate() {
            if !matches!(
                h,
                HookPoint::ResidPre(_)
                    | HookPoint::ResidMid(_)
                    | HookPoint::ResidPost(_)
                    | HookPoint::MlpPost(_)
            ) {
                return bad(format!(
                    "hooks: {h} is not one this experiment patches (use blocks.L.hook_resid_pre, \
                     hook_resid_mid, hook_resid_post or mlp.hook_post)"
                ));
            }
            if h.layer().is_some_and(|l| l >= n_layers) {
                return bad(format!(
                    "hooks: {h} does not exist (the model has layers 0 to {})",
                    n_layers.saturating_sub(1)
                ));
            }
            if self.hooks[..i].contains(h) {
                return bad(format!("hooks: {h} is listed twice"));
            }
        }
        if !(1..=2000).contains(&self.steps) {
            return bad(format!("steps: give 1 to 2000, not {}", self.steps));
        }
        if !(1..=256).contains(&self.batch) {
            return bad(format!("batch: give 1 to 256 pairs, not {}", self.batch));
        }
        if !(6..=IOI_NAMES.len()).contains(&self.names) {
            return bad(format!(
                "names: give 6 to {} (the held-out pairs need 6), not {}",
                IOI_NAMES.len(),
                self.names
            ));
        }
        if !(self.lr > 0.0 && self.lr <= 1.0) {
            return bad(format!(
                "lr: give a learning rate in (0, 1], not {}",
                self.lr
            ));
        }
        Ok(())
    }

    /// Learn a direction at each hook, then patch along it and its parts on the held-out pairs.
    /// `progress(done, total)` counts training steps; resolving to `false` cancels.
    pub async fn run(
        &self,
        m: &LoadedModel,
        progress: &mut dyn FnMut(usize, usize) -> Progress,
    ) -> Result<SubspaceOutcome, LabError> {
        let model = &m.model;
        self.check(model.config.n_layers)?;
        can_learn()?;
        let (train, test) = (self.pairs_on(m, false)?, self.pairs_on(m, true)?);
        Cached::check_fits(model, &[&train, &test], &self.hooks)?;
        let train = Cached::of(model, &train, &self.hooks).await?;
        let test = Cached::of(model, &test, &self.hooks).await?;
        let unpatched = test.effect(model, self.hooks[0], Patch::Nothing).await?;
        let total = self.steps * self.hooks.len();
        let mut directions = Vec::with_capacity(self.hooks.len());
        for (i, &hook) in self.hooks.iter().enumerate() {
            let done = i * self.steps;
            let (v, loss) = learn(self, model, &train, hook, self.steps, &mut |d, _| {
                progress(done + d, total)
            })
            .await?;
            directions.push(assess(model, &test, hook, v, loss).await?);
        }
        Ok(SubspaceOutcome {
            test_pairs: test.len(),
            unpatched,
            directions,
        })
    }

    /// The losses of the first `n` steps and the direction after them, at `hook` (the
    /// references check these).
    pub async fn first_steps(
        &self,
        m: &LoadedModel,
        hook: HookPoint,
        n: usize,
    ) -> Result<(Vec<f32>, Vec<f32>), LabError> {
        self.check(m.model.config.n_layers)?;
        can_learn()?;
        let train = self.pairs_on(m, false)?;
        Cached::check_fits(&m.model, &[&train], &[hook])?;
        let train = Cached::of(&m.model, &train, &[hook]).await?;
        let mut quiet = interplay_models::patching::no_progress;
        let (v, loss) = learn(self, &m.model, &train, hook, n, &mut quiet).await?;
        Ok((loss, v))
    }
}

impl SubspaceSpec {
    /// The pairs of one split for model `m`: the bundled IOI model's own ids, or text through
    /// the model's tokenizer.
    pub fn pairs_on(&self, m: &LoadedModel, held_out: bool) -> Result<Vec<Vec<Pair>>, LabError> {
        let want = Bundled::Ioi.config();
        let c = &m.model.config;
        if c.d_vocab == want.d_vocab && c.n_layers == want.n_layers && c.d_model == want.d_model {
            return Ok(pairs(held_out, self.counterfactual, self.names));
        }
        let tk = m.tokenizer.as_ref().ok_or_else(|| {
            LabError::Spec(
                "subspace patching writes its prompts as text, and this model has no tokenizer \
                 (load ioi-3l or SmolLM2)"
                    .into(),
            )
        })?;
        text_pairs(tk, held_out, self.counterfactual, self.names)
    }
}

/// The unnormalised initial direction: `d` standard normal draws (in `f32`, as PyTorch keeps
/// them).
pub(super) fn draw(rng: &mut Rng, d: usize) -> Vec<f64> {
    (0..d).map(|_| rng.normal() as f32 as f64).collect()
}

/// The unit direction a run of seed `seed` starts from at a hook of width `d`.
pub fn initial_direction(seed: u64, d: usize) -> Vec<f32> {
    let w = draw(&mut Rng::new(seed), d);
    let l = norm(&w);
    w.iter().map(|x| (x / l) as f32).collect()
}

/// The last position's logits of `pair`'s base prompt patched along the unit `v` at `hook`'s
/// last position from its source (what the references check).
///
/// # Shapes
/// - `v`: `[width]` → `[d_vocab]`.
pub async fn patched_logits(
    model: &Transformer,
    pair: &Pair,
    hook: HookPoint,
    v: &[f32],
) -> Result<Vec<f32>, LabError> {
    let one = Cached::of(model, &[vec![pair.clone()]], &[hook]).await?;
    let c: f64 = one
        .delta(0, 0, 0)
        .iter()
        .zip(v)
        .map(|(d, u)| d * *u as f64)
        .sum();
    let shift: Vec<f32> = v.iter().map(|&u| (c * u as f64) as f32).collect();
    let shift = shift_tensor(&[shift], pair.base.len(), &model.device());
    let logits = one.resumed_logits(model, 0, &[0], hook, shift)?;
    Ok(interplay_models::device::read_f32(logits).await?)
}

pub(super) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub(super) fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// The effects of patching along `v` and its parts at `hook` on the held-out pairs.
async fn assess(
    model: &Transformer,
    test: &Cached,
    hook: HookPoint,
    v: Vec<f32>,
    loss: Vec<f32>,
) -> Result<Direction, LabError> {
    let (basis, readers) = reading_space(model, hook).await?;
    let v64: Vec<f64> = v.iter().map(|&x| x as f64).collect();
    let d = v64.len();
    let mut row = vec![0f64; d];
    for b in &basis {
        let c = dot(b, &v64);
        for j in 0..d {
            row[j] += c * b[j];
        }
    }
    let null: Vec<f64> = v64.iter().zip(&row).map(|(a, r)| a - r).collect();
    let unit = |x: &[f64]| {
        let l = norm(x);
        (l > 1e-6).then(|| x.iter().map(|a| a / l).collect::<Vec<f64>>())
    };
    let (row_u, null_u) = (unit(&row), unit(&null));
    let k = test.index(hook)?;
    let (mut from_null, mut total) = (0f64, 0f64);
    for (t, group) in test.groups.iter().enumerate() {
        for i in 0..group.pairs.len() {
            let dl = test.delta(k, t, i);
            let c = dot(&dl, &v64);
            from_null += dot(&dl, &null) * c;
            total += c * c;
        }
    }
    let full = test.effect(model, hook, Patch::Whole).await?;
    let along = test.effect(model, hook, Patch::Along(&v64)).await?;
    let row_e = match &row_u {
        Some(u) => Some(test.effect(model, hook, Patch::Along(u)).await?),
        None => None,
    };
    let null_e = match &null_u {
        Some(u) => Some(test.effect(model, hook, Patch::Along(u)).await?),
        None => None,
    };
    Ok(Direction {
        hook,
        width: d,
        loss,
        direction: v,
        full,
        along,
        row: row_e,
        null: null_e,
        row_share: dot(&row, &row) as f32,
        null_dim: d - basis.len(),
        from_null: if total > 0.0 {
            (from_null / total) as f32
        } else {
            0.0
        },
        readers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_differ_only_in_the_repeated_name() {
        let train = pairs(false, Counterfactual::Repeat, 20);
        let test = pairs(true, Counterfactual::Repeat, 20);
        assert_eq!(train.len(), 4);
        let n: usize = test.iter().map(Vec::len).sum();
        assert!(n > 0 && train[0].len() > test[0].len());
        for p in train.iter().chain(&test).flatten() {
            assert_eq!(p.base.len(), p.source.len());
            let differ: Vec<usize> = (0..p.base.len())
                .filter(|&i| p.base[i] != p.source[i])
                .collect();
            assert_eq!(differ.len(), 1, "one word differs");
            assert_eq!(p.base[differ[0]], p.subject);
            assert_eq!(
                p.source[differ[0]], p.io,
                "the source repeats the other name"
            );
        }
    }

    /// Through a tokenizer that lacks the 20th name: the first 6 names still make pairs (the
    /// bundled model's ids, as `pairs` gives them); all 20 are a message naming it.
    #[test]
    fn text_pairs_need_only_the_names_used() {
        let mut json: serde_json::Value =
            serde_json::from_str(&crate::bundled::Bundled::Ioi.tokenizer_json()).expect("json");
        let last = IOI_NAMES[IOI_NAMES.len() - 1];
        json["model"]["vocab"]
            .as_object_mut()
            .expect("a vocabulary")
            .remove(last);
        let tk = TextTokenizer::from_json(json.to_string().as_bytes()).expect("a tokenizer");
        let six = text_pairs(&tk, false, Counterfactual::Repeat, 6).expect("6 names");
        assert_eq!(six, pairs(false, Counterfactual::Repeat, 6));
        let all = text_pairs(&tk, false, Counterfactual::Repeat, 20).expect_err("20 names");
        assert!(all.to_string().contains(&format!("\" {last}\"")), "{all}");
    }

    #[test]
    fn order_pairs_swap_the_opening() {
        for (r, o) in pairs(false, Counterfactual::Repeat, 20)
            .iter()
            .flatten()
            .zip(pairs(false, Counterfactual::Order, 20).iter().flatten())
        {
            assert_eq!(r.base, o.base);
            assert_eq!((r.io, r.subject), (o.io, o.subject));
            let differ: Vec<usize> = (0..o.base.len())
                .filter(|&i| o.base[i] != o.source[i])
                .collect();
            assert_eq!(differ.len(), 2, "the two opening names swap");
            assert_eq!(o.base[differ[0]], o.source[differ[1]]);
        }
    }

    #[test]
    fn specs_out_of_range_are_messages() {
        let ok = SubspaceSpec::guided();
        assert!(ok.check(3).is_ok());
        let bad = |f: fn(&mut SubspaceSpec)| {
            let mut s = ok.clone();
            f(&mut s);
            s.check(3).expect_err("refused").to_string()
        };
        assert!(bad(|s| s.hooks.clear()).contains("1 to 4"));
        assert!(bad(|s| s.hooks[0] = HookPoint::Z(0)).contains("not one"));
        assert!(bad(|s| s.hooks[0] = HookPoint::MlpPost(3)).contains("does not exist"));
        assert!(bad(|s| s.hooks.push(HookPoint::MlpPost(1))).contains("twice"));
        assert!(bad(|s| s.steps = 0).contains("steps"));
        assert!(bad(|s| s.batch = 1000).contains("batch"));
        assert!(bad(|s| s.lr = 0.0).contains("lr"));
    }
}
