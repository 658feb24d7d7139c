//! Hook points with TransformerLens's names, and the hook plan a run takes: what to cache and
//! which interventions to apply.
//!
//! | hook | shape |
//! |---|---|
//! | `hook_embed`, `hook_pos_embed` | `[batch, pos, d_model]` |
//! | `blocks.{L}.hook_resid_pre/resid_mid/resid_post/attn_out/mlp_out` | `[batch, pos, d_model]` |
//! | `blocks.{L}.attn.hook_q`, `hook_z` | `[batch, pos, n_heads, d_head]` |
//! | `blocks.{L}.attn.hook_k`, `hook_v` | `[batch, pos, n_kv_heads, d_head]` (before RoPE) |
//! | `blocks.{L}.attn.hook_attn_scores`, `hook_pattern` | `[batch, n_heads, query_pos, key_pos]` |
//! | `blocks.{L}.attn.hook_result` | `[batch, pos, n_heads, d_model]` (each head's output) |
//! | `blocks.{L}.mlp.hook_pre`, `hook_post` | `[batch, pos, d_mlp]` |
//! | `blocks.{L}.hook_q_input` | `[batch, pos, n_heads, d_model]` |
//! | `blocks.{L}.hook_k_input`, `hook_v_input` | `[batch, pos, n_kv_heads, d_model]` |
//! | `blocks.{L}.hook_mlp_in` | `[batch, pos, d_model]` |
//! | `ln_final.hook_normalized` | `[batch, pos, d_model]` |
//!
//! For gated (Llama) MLPs `hook_pre` is the gate's pre-activation and `hook_post` the input to
//! the down projection, as in TransformerLens. Masked attention scores hold `-inf`.
//!
//! The input hooks are the residual stream as one consumer alone reads it, before its norm
//! (TransformerLens's `use_split_qkv_input` and `use_hook_mlp_in`): a copy per query head and per
//! key/value head, and the MLP's input apart from the skip connection. Touching one of a layer's
//! q/k/v inputs makes that layer compute its projections per head from its own copies; edge
//! attribution patching reads and patches each consumer's input there.
//!
//! Interventions select positions and heads with a [`Selector`], never through the name.
//! Positions are absolute prompt positions, also when a sweep runs only a suffix of the prompt.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use burn::tensor::{Tensor, s};
use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// A TransformerLens hook point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookPoint {
    /// `hook_embed`
    Embed,
    /// `hook_pos_embed` (learned position embeddings only)
    PosEmbed,
    /// `blocks.{L}.hook_resid_pre`; `ResidPre(n_layers)` is the input to `ln_final`.
    ResidPre(usize),
    /// `blocks.{L}.hook_resid_mid`
    ResidMid(usize),
    /// `blocks.{L}.hook_resid_post`
    ResidPost(usize),
    /// `blocks.{L}.hook_attn_out`
    AttnOut(usize),
    /// `blocks.{L}.hook_mlp_out`
    MlpOut(usize),
    /// `blocks.{L}.attn.hook_q`
    Q(usize),
    /// `blocks.{L}.attn.hook_k`
    K(usize),
    /// `blocks.{L}.attn.hook_v`
    V(usize),
    /// `blocks.{L}.attn.hook_z`
    Z(usize),
    /// `blocks.{L}.attn.hook_attn_scores`
    AttnScores(usize),
    /// `blocks.{L}.attn.hook_pattern`
    Pattern(usize),
    /// `blocks.{L}.attn.hook_result`
    Result(usize),
    /// `blocks.{L}.mlp.hook_pre`
    MlpPre(usize),
    /// `blocks.{L}.mlp.hook_post`
    MlpPost(usize),
    /// `ln_final.hook_normalized`
    LnFinal,
    /// `blocks.{L}.hook_q_input`
    QInput(usize),
    /// `blocks.{L}.hook_k_input`
    KInput(usize),
    /// `blocks.{L}.hook_v_input`
    VInput(usize),
    /// `blocks.{L}.hook_mlp_in`
    MlpIn(usize),
}

impl HookPoint {
    /// The layer the hook belongs to, if any.
    pub fn layer(self) -> Option<usize> {
        use HookPoint::*;
        match self {
            Embed | PosEmbed | LnFinal => None,
            ResidPre(l) | ResidMid(l) | ResidPost(l) | AttnOut(l) | MlpOut(l) | Q(l) | K(l)
            | V(l) | Z(l) | AttnScores(l) | Pattern(l) | Result(l) | MlpPre(l) | MlpPost(l)
            | QInput(l) | KInput(l) | VInput(l) | MlpIn(l) => Some(l),
        }
    }

    /// Whether the hook holds one vector per head (`[batch, pos, head, _]`).
    pub fn is_per_head(self) -> bool {
        matches!(
            self,
            HookPoint::Q(_)
                | HookPoint::K(_)
                | HookPoint::V(_)
                | HookPoint::Z(_)
                | HookPoint::Result(_)
                | HookPoint::QInput(_)
                | HookPoint::KInput(_)
                | HookPoint::VInput(_)
        )
    }

    /// Whether the hook is an attention score/pattern (`[batch, head, query, key]`).
    pub fn is_attention_map(self) -> bool {
        matches!(self, HookPoint::AttnScores(_) | HookPoint::Pattern(_))
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use HookPoint::*;
        match self {
            Embed => write!(f, "hook_embed"),
            PosEmbed => write!(f, "hook_pos_embed"),
            LnFinal => write!(f, "ln_final.hook_normalized"),
            ResidPre(l) => write!(f, "blocks.{l}.hook_resid_pre"),
            ResidMid(l) => write!(f, "blocks.{l}.hook_resid_mid"),
            ResidPost(l) => write!(f, "blocks.{l}.hook_resid_post"),
            AttnOut(l) => write!(f, "blocks.{l}.hook_attn_out"),
            MlpOut(l) => write!(f, "blocks.{l}.hook_mlp_out"),
            Q(l) => write!(f, "blocks.{l}.attn.hook_q"),
            K(l) => write!(f, "blocks.{l}.attn.hook_k"),
            V(l) => write!(f, "blocks.{l}.attn.hook_v"),
            Z(l) => write!(f, "blocks.{l}.attn.hook_z"),
            AttnScores(l) => write!(f, "blocks.{l}.attn.hook_attn_scores"),
            Pattern(l) => write!(f, "blocks.{l}.attn.hook_pattern"),
            Result(l) => write!(f, "blocks.{l}.attn.hook_result"),
            MlpPre(l) => write!(f, "blocks.{l}.mlp.hook_pre"),
            MlpPost(l) => write!(f, "blocks.{l}.mlp.hook_post"),
            QInput(l) => write!(f, "blocks.{l}.hook_q_input"),
            KInput(l) => write!(f, "blocks.{l}.hook_k_input"),
            VInput(l) => write!(f, "blocks.{l}.hook_v_input"),
            MlpIn(l) => write!(f, "blocks.{l}.hook_mlp_in"),
        }
    }
}

impl FromStr for HookPoint {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        use HookPoint::*;
        let bad = || ModelError::Input(format!("unknown hook point {s:?}"));
        match s {
            "hook_embed" => return Ok(Embed),
            "hook_pos_embed" => return Ok(PosEmbed),
            "ln_final.hook_normalized" => return Ok(LnFinal),
            _ => {}
        }
        let rest = s.strip_prefix("blocks.").ok_or_else(bad)?;
        let (layer, name) = rest.split_once('.').ok_or_else(bad)?;
        let l: usize = layer.parse().map_err(|_| bad())?;
        Ok(match name {
            "hook_resid_pre" => ResidPre(l),
            "hook_resid_mid" => ResidMid(l),
            "hook_resid_post" => ResidPost(l),
            "hook_attn_out" => AttnOut(l),
            "hook_mlp_out" => MlpOut(l),
            "attn.hook_q" => Q(l),
            "attn.hook_k" => K(l),
            "attn.hook_v" => V(l),
            "attn.hook_z" => Z(l),
            "attn.hook_attn_scores" => AttnScores(l),
            "attn.hook_pattern" => Pattern(l),
            "attn.hook_result" => Result(l),
            "mlp.hook_pre" => MlpPre(l),
            "mlp.hook_post" => MlpPost(l),
            "hook_q_input" => QInput(l),
            "hook_k_input" => KInput(l),
            "hook_v_input" => VInput(l),
            "hook_mlp_in" => MlpIn(l),
            _ => return Err(bad()),
        })
    }
}

impl Serialize for HookPoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HookPoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An activation: residual-like hooks are rank 3, per-head hooks and attention maps rank 4.
#[derive(Clone, Debug)]
pub enum Act {
    /// `[batch, pos, d]`
    R3(Tensor<3>),
    /// `[batch, pos, head, d]` or `[batch, head, query, key]`
    R4(Tensor<4>),
}

impl Act {
    /// The shape as a vector.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Act::R3(t) => t.dims().to_vec(),
            Act::R4(t) => t.dims().to_vec(),
        }
    }
}

/// Which positions, heads and batch rows an intervention touches (`None` = all).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Selector {
    /// Absolute prompt positions (query positions for attention maps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positions: Option<Vec<usize>>,
    /// Head indices (per-head hooks and attention maps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<Vec<usize>>,
    /// Batch rows (sweeps give each variant its own row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Vec<usize>>,
}

impl Selector {
    /// Everything.
    pub fn all() -> Self {
        Self::default()
    }
    /// One position.
    pub fn position(p: usize) -> Self {
        Self {
            positions: Some(vec![p]),
            ..Self::default()
        }
    }
    /// One head at every position.
    pub fn head(h: usize) -> Self {
        Self {
            heads: Some(vec![h]),
            ..Self::default()
        }
    }
    /// Restrict to some positions.
    pub fn at_positions(mut self, p: Vec<usize>) -> Self {
        self.positions = Some(p);
        self
    }
    /// Restrict to some heads.
    pub fn at_heads(mut self, h: Vec<usize>) -> Self {
        self.heads = Some(h);
        self
    }
    /// Restrict to some batch rows.
    pub fn at_batch(mut self, b: Vec<usize>) -> Self {
        self.batch = Some(b);
        self
    }
}

/// What an intervention does to the selected entries.
#[derive(Clone, Debug)]
pub enum Action {
    /// Replace with the same entries of another run's activation (patching). The source has the
    /// hook's full shape over absolute positions, with batch 1 (broadcast) or the run's batch.
    Replace(Act),
    /// Set to zero (zero ablation).
    Zero,
    /// Replace with a mean activation laid out like `Replace`'s source with batch 1 (mean
    /// ablation over a batch or a dataset; broadcast over the run's batch).
    Mean(Act),
    /// Multiply by a factor.
    Scale(f32),
    /// Add a vector over the last dimension (steering), `[d]`.
    Add(Vec<f32>),
    /// Keep only the part in the span of orthonormal directions `[k][d]`.
    ProjectOnto(Vec<Vec<f32>>),
    /// Remove the part in the span of orthonormal directions `[k][d]`.
    ProjectOut(Vec<Vec<f32>>),
    /// Set chosen units of the last dimension to zero at the selected entries (neuron
    /// deactivation at `hook_post`); units past the dimension are ignored.
    ZeroUnits(Vec<usize>),
    /// Add an activation of the hook's shape, laid out like `Replace`'s source: with a zero
    /// tensor that tracks gradients, the gradient of a metric with respect to the activation
    /// (attribution patching) without cutting the graph through it.
    Shift(Act),
    /// Subspace patching: x ← x + ((source − x) · v) v along a unit direction `v` `[d]`.
    PatchAlong {
        /// The run whose component along `v` is patched in (same layout as `Replace`).
        source: Act,
        /// Unit direction.
        direction: Vec<f32>,
    },
    /// Replace with the run's own mean over its batch and positions (per head), held out of the
    /// gradient: the activation keeps its average but carries nothing about the tokens and
    /// learns nothing (clamping during training).
    OwnMean,
}

/// One intervention at a hook.
#[derive(Clone, Debug)]
pub struct Intervention {
    /// Where.
    pub hook: HookPoint,
    /// Which entries.
    pub selector: Selector,
    /// What.
    pub action: Action,
}

/// What a run caches and changes. Only the hooks asked for are kept (memory matters in a
/// browser); interventions at the same hook apply in order.
#[derive(Clone, Debug, Default)]
pub struct HookPlan {
    /// Hooks to cache (after interventions at that hook).
    pub cache: HashSet<HookPoint>,
    /// Interventions, applied in order.
    pub interventions: Vec<Intervention>,
}

impl HookPlan {
    /// A plan that caches these hooks.
    pub fn caching(hooks: impl IntoIterator<Item = HookPoint>) -> Self {
        Self {
            cache: hooks.into_iter().collect(),
            interventions: Vec::new(),
        }
    }
    /// Add an intervention.
    pub fn with(mut self, hook: HookPoint, selector: Selector, action: Action) -> Self {
        self.interventions.push(Intervention {
            hook,
            selector,
            action,
        });
        self
    }
    /// Whether anything happens at `hook` (so the model computes it).
    pub fn touches(&self, hook: HookPoint) -> bool {
        self.cache.contains(&hook) || self.interventions.iter().any(|i| i.hook == hook)
    }
    /// Whether the plan is empty.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty() && self.interventions.is_empty()
    }
}

/// The activations a run cached, by hook.
#[derive(Clone, Debug, Default)]
pub struct ActivationCache {
    /// Cached activations.
    pub acts: HashMap<HookPoint, Act>,
}

impl ActivationCache {
    /// A rank-3 activation.
    pub fn r3(&self, hook: HookPoint) -> Option<Tensor<3>> {
        match self.acts.get(&hook) {
            Some(Act::R3(t)) => Some(t.clone()),
            _ => None,
        }
    }
    /// A rank-4 activation.
    pub fn r4(&self, hook: HookPoint) -> Option<Tensor<4>> {
        match self.acts.get(&hook) {
            Some(Act::R4(t)) => Some(t.clone()),
            _ => None,
        }
    }
    /// Any activation.
    pub fn get(&self, hook: HookPoint) -> Option<&Act> {
        self.acts.get(&hook)
    }
}

/// The mean of an activation over its batch (dim 0), keeping a batch of 1: the source for
/// [`Action::Mean`] (mean ablation over a batch or a dataset of prompts of equal length).
pub fn mean_over_batch(act: &Act) -> Act {
    match act {
        Act::R3(t) => Act::R3(t.clone().mean_dim(0)),
        Act::R4(t) => Act::R4(t.clone().mean_dim(0)),
    }
}

/// Applies a plan during a forward pass. `pos_offset` is the absolute position of the run's
/// first position (non-zero when a sweep runs only a suffix of the prompt).
pub(crate) struct HookRunner<'a> {
    pub plan: &'a HookPlan,
    pub cache: ActivationCache,
    pub pos_offset: usize,
}

impl<'a> HookRunner<'a> {
    pub fn new(plan: &'a HookPlan, pos_offset: usize) -> Self {
        Self {
            plan,
            cache: ActivationCache::default(),
            pos_offset,
        }
    }

    pub fn touches(&self, hook: HookPoint) -> bool {
        self.plan.touches(hook)
    }

    /// Whether anything happens at a hook inside block `l`: any of its hooks but the residual
    /// entering and leaving it (a block touched inside keeps the tensor form; the others may take
    /// a fused form).
    pub fn touches_inside(&self, l: usize) -> bool {
        let inside = |h: HookPoint| {
            h.layer() == Some(l) && h != HookPoint::ResidPre(l) && h != HookPoint::ResidPost(l)
        };
        let plan = self.plan;
        plan.cache.iter().any(|&h| inside(h)) || plan.interventions.iter().any(|i| inside(i.hook))
    }

    /// Apply interventions to, and maybe cache, a rank-3 activation `[batch, pos, d]`.
    pub fn r3(&mut self, hook: HookPoint, x: Tensor<3>) -> Tensor<3> {
        let x = self.apply(hook, Act::R3(x));
        let Act::R3(x) = x else {
            unreachable!("rank preserved")
        };
        x
    }

    /// Apply interventions to, and maybe cache, a rank-4 activation.
    pub fn r4(&mut self, hook: HookPoint, x: Tensor<4>) -> Tensor<4> {
        let x = self.apply(hook, Act::R4(x));
        let Act::R4(x) = x else {
            unreachable!("rank preserved")
        };
        x
    }

    fn apply(&mut self, hook: HookPoint, mut x: Act) -> Act {
        for iv in self.plan.interventions.iter().filter(|i| i.hook == hook) {
            x = apply_one(x, hook, iv, self.pos_offset);
        }
        if self.plan.cache.contains(&hook) {
            self.cache.acts.insert(hook, x.clone());
        }
        x
    }
}

/// Rank-4 view of any activation, with the "position" axis at dim 1 and the selectable "head"
/// axis at dim 2: residuals become `[b, pos, 1, d]`, attention maps `[b, query, head, key]`.
fn to_uniform(x: Act, attention_map: bool) -> Tensor<4> {
    match x {
        Act::R3(t) => t.unsqueeze_dim(2),
        Act::R4(t) if attention_map => t.swap_dims(1, 2),
        Act::R4(t) => t,
    }
}

fn from_uniform(t: Tensor<4>, like_r3: bool, attention_map: bool) -> Act {
    if like_r3 {
        Act::R3(t.squeeze_dim(2))
    } else if attention_map {
        Act::R4(t.swap_dims(1, 2))
    } else {
        Act::R4(t)
    }
}

fn apply_one(x: Act, hook: HookPoint, iv: &Intervention, pos_offset: usize) -> Act {
    let attn = hook.is_attention_map();
    let is_r3 = matches!(x, Act::R3(_));
    let t = to_uniform(x, attn);
    let [b, p, h, d] = t.dims();
    let device = t.device();
    let sel = &iv.selector;
    // Absolute positions inside this run's window, as (absolute, relative).
    let positions: Vec<(usize, usize)> = match &sel.positions {
        None => (0..p).map(|r| (r + pos_offset, r)).collect(),
        Some(ps) => ps
            .iter()
            .filter(|&&a| a >= pos_offset && a < pos_offset + p)
            .map(|&a| (a, a - pos_offset))
            .collect(),
    };
    let heads: Vec<usize> = match &sel.heads {
        None => (0..h).collect(),
        Some(hs) => hs.iter().copied().filter(|&x| x < h).collect(),
    };
    let rows: Vec<usize> = match &sel.batch {
        None => (0..b).collect(),
        Some(bs) => bs.iter().copied().filter(|&x| x < b).collect(),
    };
    if positions.is_empty() || heads.is_empty() || rows.is_empty() {
        return from_uniform(t, is_r3, attn);
    }
    // A 0/1 mask over [b, p, h, 1] marks the selected entries; x' = x + mask * (new − x).
    let mut mask = vec![0f32; b * p * h];
    for &r in &rows {
        for &(_, rel) in &positions {
            for &hh in &heads {
                mask[(r * p + rel) * h + hh] = 1.0;
            }
        }
    }
    let mask = Tensor::<4>::from_data(burn::tensor::TensorData::new(mask, [b, p, h, 1]), &device);
    // The source window [*, pos_offset .. pos_offset + p] of an absolute-position source.
    let window = |src: &Act| -> Tensor<4> {
        let s4 = to_uniform(src.clone(), attn);
        let s4 = s4.slice(s![.., pos_offset..pos_offset + p, .., ..]);
        s4.expand([b, p, h, d])
    };
    let new = match &iv.action {
        Action::Replace(src) => window(src),
        Action::Zero => t.clone().zeros_like(),
        Action::Mean(m) => window(m),
        Action::OwnMean => t
            .clone()
            .mean_dim(0)
            .mean_dim(1)
            .detach()
            .expand([b, p, h, d]),
        Action::Shift(delta) => t.clone() + window(delta),
        Action::Scale(f) => t.clone().mul_scalar(*f),
        Action::ZeroUnits(units) => {
            let mut keep = vec![1f32; d];
            for &u in units.iter().filter(|&&u| u < d) {
                keep[u] = 0.0;
            }
            let keep = Tensor::<1>::from_data(burn::tensor::TensorData::new(keep, [d]), &device);
            t.clone() * keep.reshape([1, 1, 1, d])
        }
        Action::Add(v) => {
            let v = Tensor::<1>::from_data(
                burn::tensor::TensorData::new(v.clone(), [v.len()]),
                &device,
            );
            t.clone() + v.reshape([1, 1, 1, d])
        }
        Action::ProjectOnto(dirs) | Action::ProjectOut(dirs) => {
            let k = dirs.len();
            let flat: Vec<f32> = dirs.iter().flatten().copied().collect();
            let basis =
                Tensor::<2>::from_data(burn::tensor::TensorData::new(flat, [k, d]), &device);
            // proj = (x · Bᵀ) · B
            let x2 = t.clone().reshape([b * p * h, d]);
            let proj = x2
                .matmul(basis.clone().transpose())
                .matmul(basis)
                .reshape([b, p, h, d]);
            if matches!(iv.action, Action::ProjectOnto(_)) {
                proj
            } else {
                t.clone() - proj
            }
        }
        Action::PatchAlong { source, direction } => {
            let src = window(source);
            let v = Tensor::<1>::from_data(
                burn::tensor::TensorData::new(direction.clone(), [direction.len()]),
                &device,
            )
            .reshape([1, 1, 1, d]);
            let coef = (src - t.clone()).mul(v.clone()).sum_dim(3);
            t.clone() + coef.mul(v)
        }
    };
    // mask_where, not arithmetic: masked attention scores are -inf and must stay finite-safe.
    let mask = mask.greater_elem(0.5).expand([b, p, h, d]);
    from_uniform(t.mask_where(mask, new), is_r3, attn)
}
