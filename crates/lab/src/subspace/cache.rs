//! The prompt pairs' activations, computed once, and the patched runs: each base prompt is run
//! whole once, keeping the hooks' values at its last position, the residual entering the
//! earliest hook's block there, and the keys/values of the blocks from that one on for the
//! other positions. A patch at the last position then changes that position alone (attention is
//! causal), so a patched run resumes there for one position: on SmolLM2 (30 blocks, DAS at block
//! 20) a tenth of a prompt's work instead of all of it, and backward goes through ten blocks.

use std::collections::HashMap;

use burn::tensor::{Int, Tensor, TensorData, s};
use interplay_models::hooks::{Act, Action, HookPlan, HookPoint, Selector};
use interplay_models::{KvCache, Transformer};

use super::{Pair, dot};
use crate::LabError;

/// Prompts run together while caching and evaluating (the page's block budget allows it for
/// SmolLM2's 19-token prompts).
const CHUNK: usize = 32;

/// One template's pairs (their prompts share a length) and what was cached of them.
pub(super) struct Group {
    pub(super) pairs: Vec<Pair>,
    /// `rows[hook][r]`: `[width]`, the hook's value at the last position of prompt `r`: pair
    /// `i`'s base is row `i`; sources that are no base follow.
    rows: Vec<Vec<Vec<f32>>>,
    /// Pair `i`'s source row.
    source_row: Vec<usize>,
    /// The residual entering block `from` at the bases' last position, `[pairs, 1, d_model]`.
    resid: Tensor<3>,
    /// Keys/values of blocks `from..n_layers` at the bases' other positions, per block
    /// `[pairs, n_kv_heads, pos − 1, d_head]`.
    prefix: KvCache,
    /// The prompts' length.
    pub(super) pos: usize,
}

/// Every group of one split, with the hooks' values.
pub(super) struct Cached {
    pub(super) groups: Vec<Group>,
    hooks: Vec<HookPoint>,
    /// The earliest hook's block: where patched runs resume.
    pub(super) from: usize,
}

impl Cached {
    /// Refuse before any run when the keys/values kept for `splits` (every split's pairs) would
    /// not fit: they grow with the pairs, the prompts' length and the blocks after the earliest
    /// hook (SmolLM2, 20 names, layer 0: 2.5 GB).
    pub(super) fn check_fits(
        model: &Transformer,
        splits: &[&[Vec<Pair>]],
        hooks: &[HookPoint],
    ) -> Result<(), LabError> {
        let c = &model.config;
        let from = hooks.iter().filter_map(|h| h.layer()).min().unwrap_or(0);
        let per_position = 2 * c.n_layers.saturating_sub(from) * c.n_kv_heads * c.d_head * 4;
        let bytes: usize = splits
            .iter()
            .flat_map(|s| s.iter())
            .map(|g| g.len() * g.first().map_or(0, |p| p.base.len().saturating_sub(1)))
            .sum::<usize>()
            * per_position;
        let budget = interplay_models::budget::BLOCK_BUDGET;
        if bytes > budget {
            return Err(LabError::Spec(format!(
                "the prompts' keys and values from layer {from} on would take {} MB, over the {} MB \
                 a run may hold: use fewer names or a later hook",
                bytes >> 20,
                budget >> 20
            )));
        }
        Ok(())
    }

    /// Run every base prompt (and each source that is not also a base) once.
    pub(super) async fn of(
        model: &Transformer,
        pairs: &[Vec<Pair>],
        hooks: &[HookPoint],
    ) -> Result<Self, LabError> {
        let from = hooks.iter().filter_map(|h| h.layer()).min().unwrap_or(0);
        let n = model.config.n_layers;
        let mut plan_hooks = hooks.to_vec();
        plan_hooks.push(HookPoint::ResidPre(from));
        let plan = HookPlan::caching(plan_hooks);
        let mut groups = Vec::with_capacity(pairs.len());
        for group in pairs.iter().filter(|g| !g.is_empty()) {
            let pos = group[0].base.len();
            let mut rows: Vec<Vec<Vec<f32>>> = vec![Vec::new(); hooks.len()];
            let mut resid = Vec::new();
            let (mut ks, mut vs) = (vec![Vec::new(); n - from], vec![Vec::new(); n - from]);
            for chunk in group.chunks(CHUNK) {
                let ids: Vec<Vec<u32>> = chunk.iter().map(|p| p.base.clone()).collect();
                let (_, cache, kv) = model.extend_residual(model.tokens(&ids)?, None, &plan)?;
                for (k, &h) in hooks.iter().enumerate() {
                    rows[k].extend(read_last(cache.r3(h), h).await?);
                }
                let r = cache
                    .r3(HookPoint::ResidPre(from))
                    .ok_or_else(|| LabError::Spec("the residual was not computed".into()))?;
                resid.push(r.slice(s![.., pos - 1..pos, ..]));
                for l in from..n {
                    ks[l - from].push(kv.k[l].clone().slice(s![.., .., 0..pos - 1, ..]));
                    vs[l - from].push(kv.v[l].clone().slice(s![.., .., 0..pos - 1, ..]));
                }
            }
            // A source that is also a base (the order counterfactual's always are) is not run
            // again.
            let mut row_of: HashMap<&[u32], usize> = group
                .iter()
                .enumerate()
                .map(|(i, p)| (p.base.as_slice(), i))
                .collect();
            let mut extra: Vec<Vec<u32>> = Vec::new();
            let mut source_row = Vec::with_capacity(group.len());
            for p in group {
                let r = match row_of.get(p.source.as_slice()) {
                    Some(&r) => r,
                    None => {
                        let r = group.len() + extra.len();
                        extra.push(p.source.clone());
                        row_of.insert(p.source.as_slice(), r);
                        r
                    }
                };
                source_row.push(r);
            }
            let stop = HookPlan::caching(hooks.iter().copied());
            for chunk in extra.chunks(CHUNK) {
                let cache = model.activations(model.tokens(chunk)?, None, &stop)?;
                for (k, &h) in hooks.iter().enumerate() {
                    rows[k].extend(read_last(cache.r3(h), h).await?);
                }
            }
            groups.push(Group {
                pairs: group.clone(),
                rows,
                source_row,
                resid: Tensor::cat(resid, 0),
                prefix: KvCache {
                    k: ks.into_iter().map(|t| Tensor::cat(t, 0)).collect(),
                    v: vs.into_iter().map(|t| Tensor::cat(t, 0)).collect(),
                },
                pos,
            });
        }
        Ok(Self {
            groups,
            hooks: hooks.to_vec(),
            from,
        })
    }

    pub(super) fn len(&self) -> usize {
        self.groups.iter().map(|g| g.pairs.len()).sum()
    }

    pub(super) fn index(&self, hook: HookPoint) -> Result<usize, LabError> {
        self.hooks
            .iter()
            .position(|&h| h == hook)
            .ok_or_else(|| LabError::Spec(format!("{hook} was not computed")))
    }

    /// The width of the activation at hook `k`.
    #[cfg(feature = "train")]
    pub(super) fn width(&self, k: usize) -> usize {
        self.groups
            .first()
            .and_then(|g| g.rows[k].first())
            .map_or(0, Vec::len)
    }

    /// `x_src − x` of pair `i` of group `t` at hook `k`.
    pub(super) fn delta(&self, k: usize, t: usize, i: usize) -> Vec<f64> {
        let g = &self.groups[t];
        g.rows[k][g.source_row[i]]
            .iter()
            .zip(&g.rows[k][i])
            .map(|(s, b)| (*s - *b) as f64)
            .collect()
    }

    /// The bases `idx` of group `t` at their last position, resumed at block `from` with `shift`
    /// added at `hook` (a shift of autodiff kind makes the logits differentiable in it).
    ///
    /// # Shapes
    /// - `shift`: `[idx.len(), pos, width]` (non-zero at the last position) →
    ///   `[idx.len(), d_vocab]`.
    pub(super) fn resumed_logits(
        &self,
        model: &Transformer,
        t: usize,
        idx: &[usize],
        hook: HookPoint,
        shift: Tensor<3>,
    ) -> Result<Tensor<2>, LabError> {
        let g = &self.groups[t];
        let device = model.device();
        let rows: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
        let sel = Tensor::<1, Int>::from_data(TensorData::new(rows, [idx.len()]), &device);
        let pick = |ts: &[Tensor<4>]| -> Vec<Tensor<4>> {
            ts.iter()
                .map(|x| x.clone().select(0, sel.clone()))
                .collect()
        };
        let prefix = KvCache {
            k: pick(&g.prefix.k),
            v: pick(&g.prefix.v),
        };
        let plan = HookPlan::default().with(hook, Selector::all(), Action::Shift(Act::R3(shift)));
        let (out, _) = model.resume(g.resid.clone().select(0, sel), self.from, &prefix, &plan)?;
        let [b, _, d] = out.dims();
        Ok(model.logits_rows(out.reshape([b, d])))
    }

    /// The effect over these pairs of `patch` at `hook`.
    pub(super) async fn effect(
        &self,
        model: &Transformer,
        hook: HookPoint,
        patch: Patch<'_>,
    ) -> Result<super::Effect, LabError> {
        let k = self.index(hook)?;
        let (mut sum, mut flipped, mut n) = (0f64, 0usize, 0usize);
        for (t, g) in self.groups.iter().enumerate() {
            let all: Vec<usize> = (0..g.pairs.len()).collect();
            for idx in all.chunks(CHUNK) {
                let shifts: Vec<Vec<f32>> = idx
                    .iter()
                    .map(|&i| {
                        let d = self.delta(k, t, i);
                        match patch {
                            Patch::Whole => d.iter().map(|&x| x as f32).collect(),
                            Patch::Nothing => vec![0.0; d.len()],
                            Patch::Along(u) => {
                                let c = dot(&d, u);
                                u.iter().map(|&x| (c * x) as f32).collect()
                            }
                        }
                    })
                    .collect();
                let shift = shift_tensor(&shifts, g.pos, &model.device());
                let logits = self.resumed_logits(model, t, idx, hook, shift)?;
                let last = interplay_models::device::read_f32(logits).await?;
                let v = model.config.d_vocab;
                for (j, &i) in idx.iter().enumerate() {
                    let p = &g.pairs[i];
                    let row = &last[j * v..(j + 1) * v];
                    let ld = row[p.io as usize] - row[p.subject as usize];
                    sum += ld as f64;
                    flipped += usize::from(ld < 0.0);
                    n += 1;
                }
            }
        }
        Ok(super::Effect {
            logit_diff: (sum / n.max(1) as f64) as f32,
            flipped: flipped as f32 / n.max(1) as f32,
        })
    }
}

/// What a patch at the last position carries over from the source.
#[derive(Clone, Copy)]
pub(super) enum Patch<'a> {
    /// Nothing (the base as it is).
    Nothing,
    /// The whole activation.
    Whole,
    /// Its component along a unit direction.
    Along(&'a [f64]),
}

/// Each row's value of a cached hook at the last position.
///
/// # Shapes
/// - `act`: `[batch, pos, width]` → `[batch][width]`.
async fn read_last(act: Option<Tensor<3>>, h: HookPoint) -> Result<Vec<Vec<f32>>, LabError> {
    let a = act.ok_or_else(|| LabError::Spec(format!("{h} was not computed")))?;
    let [b, p, d] = a.dims();
    let last =
        interplay_models::device::read_f32(a.slice(s![.., p - 1..p, ..]).reshape([b, d])).await?;
    Ok(last.chunks(d).map(<[f32]>::to_vec).collect())
}

/// `[batch, pos, width]` zeros but for each row's `shift` at the last position.
pub(super) fn shift_tensor(
    shifts: &[Vec<f32>],
    pos: usize,
    device: &burn::tensor::Device,
) -> Tensor<3> {
    let d = shifts.first().map_or(0, Vec::len);
    let mut data = vec![0f32; shifts.len() * pos * d];
    for (b, s) in shifts.iter().enumerate() {
        let at = (b * pos + pos - 1) * d;
        data[at..at + d].copy_from_slice(s);
    }
    Tensor::from_data(TensorData::new(data, [shifts.len(), pos, d]), device)
}
