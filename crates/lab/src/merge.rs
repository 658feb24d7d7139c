//! Model merging over named parameters (one mapper for every architecture): task vectors
//! (fine-tuned − base), task arithmetic, TIES and DARE. TIES follows the official implementation
//! (prateeky2806/ties-merging): `topk_values_mask` keeps |x| ≥ the k-th value of each row, signs
//! are elected by total mass with the majority sign for zeros, and the merge is the disjoint mean.
//!
//! Arithmetic is float32, like the official PyTorch code, so results match it to rounding.

use std::collections::BTreeMap;

use interplay_models::weights::{HostTensor, Weights};
use serde::{Deserialize, Serialize};

use crate::LabError;

/// How task vectors are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// θ = base + λ Σᵢ τᵢ.
    TaskArithmetic,
    /// Trim, elect sign, disjoint mean; θ = base + λ τ_merged.
    Ties,
    /// Drop each entry with probability p and rescale by 1/(1 − p), then task arithmetic.
    Dare,
}

impl std::str::FromStr for Method {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self, LabError> {
        match s {
            "task_arithmetic" | "task-arithmetic" => Ok(Method::TaskArithmetic),
            "ties" => Ok(Method::Ties),
            "dare" => Ok(Method::Dare),
            o => Err(LabError::Spec(format!(
                "unknown merge method {o:?}: use task_arithmetic, ties or dare"
            ))),
        }
    }
}

/// Over what TIES trims to the top-k%.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrimScope {
    /// The flattened vector of all parameters (the official scripts).
    Global,
    /// Each tensor separately.
    PerTensor,
}

impl std::str::FromStr for TrimScope {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self, LabError> {
        match s {
            "global" => Ok(TrimScope::Global),
            "per-tensor" | "per_tensor" => Ok(TrimScope::PerTensor),
            o => Err(LabError::Spec(format!(
                "unknown trim scope {o:?}: use global or per-tensor"
            ))),
        }
    }
}

/// A merge: method and its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MergeOptions {
    /// The method.
    pub method: Method,
    /// Scale λ of the merged task vector.
    pub lambda: f64,
    /// TIES: fraction of entries kept per row (values above 1 are percentages, as officially).
    pub density: f64,
    /// DARE: drop probability p.
    pub drop: f64,
    /// DARE: seed of the drop masks.
    pub seed: u64,
    /// TIES: trim globally or per tensor.
    pub trim_scope: TrimScope,
}

impl Default for MergeOptions {
    fn default() -> Self {
        Self {
            method: Method::TaskArithmetic,
            lambda: 1.0,
            density: 0.2,
            drop: 0.9,
            seed: 0,
            trim_scope: TrimScope::Global,
        }
    }
}

/// What a merge did, for reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MergeReport {
    /// Tensors merged.
    pub tensors: usize,
    /// Parameters merged.
    pub parameters: usize,
    /// TIES: fraction of task-vector entries kept by the trim (mean over models).
    pub kept_fraction: Option<f64>,
    /// TIES: fraction of parameters where the trimmed task vectors disagree in sign.
    pub sign_conflicts: Option<f64>,
}

/// Task vectors τᵢ = θᵢ − θ_base, keyed and ordered by parameter name. Every model must have
/// exactly the base's keys and shapes.
pub fn task_vectors(
    base: &Weights,
    models: &[Weights],
) -> Result<Vec<BTreeMap<String, Vec<f32>>>, LabError> {
    models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if m.len() != base.len() {
                return Err(LabError::Spec(format!(
                    "model {} has {} tensors but the base has {}: merging needs identical keys",
                    i + 1,
                    m.len(),
                    base.len()
                )));
            }
            base.iter()
                .map(|(k, b)| {
                    let t = m.get(k).ok_or_else(|| {
                        LabError::Spec(format!("model {} has no tensor {k:?}", i + 1))
                    })?;
                    if t.shape != b.shape {
                        return Err(LabError::Spec(format!(
                            "tensor {k:?}: model {} has shape {:?}, the base {:?}",
                            i + 1,
                            t.shape,
                            b.shape
                        )));
                    }
                    if t.data.iter().chain(&b.data).any(|v| !v.is_finite()) {
                        return Err(LabError::Spec(format!(
                            "tensor {k:?} holds NaN or infinite values"
                        )));
                    }
                    Ok((
                        k.clone(),
                        t.data.iter().zip(&b.data).map(|(x, y)| x - y).collect(),
                    ))
                })
                .collect()
        })
        .collect()
}

/// Official `topk_values_mask` on one row: keep entries with |x| ≥ the k-th smallest |x|, where
/// k = d − int(d·K). Returns the number kept.
fn trim_row(row: &mut [f32], density: f64) -> usize {
    let d = row.len();
    let keep = (d as f64 * density) as usize;
    let k = d.saturating_sub(keep);
    if d == 0 || k == 0 {
        return d;
    }
    let mut mags: Vec<f32> = row.iter().map(|v| v.abs()).collect();
    let (_, kth, _) = mags.select_nth_unstable_by(k - 1, |a, b| a.total_cmp(b));
    let kth = *kth;
    let mut kept = 0;
    for v in row.iter_mut() {
        if v.abs() >= kth {
            kept += 1;
        } else {
            *v = 0.0;
        }
    }
    kept
}

/// TIES on one segment: `rows[i]` is model i's (trimmed) task vector. Returns the merged vector
/// and the number of sign conflicts.
fn ties_segment(rows: &[Vec<f32>]) -> (Vec<f32>, usize) {
    let d = rows.first().map(Vec::len).unwrap_or(0);
    let sign = |x: f32| {
        if x > 0.0 {
            1.0f32
        } else if x < 0.0 {
            -1.0
        } else {
            0.0
        }
    };
    let mut elected: Vec<f32> = (0..d)
        .map(|j| sign(rows.iter().map(|r| r[j]).sum::<f32>()))
        .collect();
    // resolve_zero_signs(..., "majority"): zeros take the sign of the sum of signs.
    let majority = sign(elected.iter().sum());
    elected
        .iter_mut()
        .filter(|s| **s == 0.0)
        .for_each(|s| *s = majority);
    let mut conflicts = 0;
    let merged = (0..d)
        .map(|j| {
            let (pos, neg) = rows.iter().fold((false, false), |(p, n), r| {
                (p || r[j] > 0.0, n || r[j] < 0.0)
            });
            if pos && neg {
                conflicts += 1;
            }
            let (mut sum, mut count) = (0f32, 0usize);
            for r in rows {
                let keep = if elected[j] > 0.0 {
                    r[j] > 0.0
                } else {
                    r[j] < 0.0
                };
                if keep {
                    sum += r[j];
                    count += 1;
                }
            }
            sum / count.max(1) as f32
        })
        .collect();
    (merged, conflicts)
}

/// Merge `models` into `base` with `opts`.
pub fn merge(
    base: &Weights,
    models: &[Weights],
    opts: &MergeOptions,
) -> Result<(BTreeMap<String, HostTensor>, MergeReport), LabError> {
    if models.is_empty() {
        return Err(LabError::Spec("give at least one model to merge".into()));
    }
    if !opts.lambda.is_finite() {
        return Err(LabError::Spec("λ must be a finite number".into()));
    }
    let density = if opts.density > 1.0 {
        opts.density / 100.0
    } else {
        opts.density
    };
    if opts.method == Method::Ties && !(0.0..=1.0).contains(&density) {
        return Err(LabError::Spec(
            "the TIES density must be in [0, 1] (or a percentage)".into(),
        ));
    }
    if opts.method == Method::Dare && !(0.0..1.0).contains(&opts.drop) {
        return Err(LabError::Spec(
            "the DARE drop probability must be in [0, 1)".into(),
        ));
    }
    let mut tvs = task_vectors(base, models)?;
    let keys: Vec<String> = tvs[0].keys().cloned().collect();
    let parameters: usize = keys.iter().map(|k| tvs[0][k].len()).sum();
    let mut report = MergeReport {
        tensors: keys.len(),
        parameters,
        ..MergeReport::default()
    };
    let lambda = opts.lambda as f32;
    let merged: BTreeMap<String, Vec<f32>> = match opts.method {
        Method::TaskArithmetic | Method::Dare => {
            if opts.method == Method::Dare {
                let mut rng = interplay_models::rng::Rng::new(opts.seed);
                let scale = 1.0 / (1.0 - opts.drop) as f32;
                for tv in &mut tvs {
                    for k in &keys {
                        if let Some(v) = tv.get_mut(k) {
                            for x in v.iter_mut() {
                                *x = if rng.uniform() < opts.drop {
                                    0.0
                                } else {
                                    *x * scale
                                };
                            }
                        }
                    }
                }
            }
            keys.iter()
                .map(|k| {
                    let mut sum = vec![0f32; tvs[0][k].len()];
                    for tv in &tvs {
                        for (s, x) in sum.iter_mut().zip(&tv[k]) {
                            *s += x;
                        }
                    }
                    (k.clone(), sum)
                })
                .collect()
        }
        Method::Ties => {
            // Segments: one flattened vector (global) or one per tensor.
            let segments: Vec<Vec<&String>> = match opts.trim_scope {
                TrimScope::Global => vec![keys.iter().collect()],
                TrimScope::PerTensor => keys.iter().map(|k| vec![k]).collect(),
            };
            let mut out = BTreeMap::new();
            let (mut kept, mut conflicts) = (0usize, 0usize);
            for seg in segments {
                let rows: Vec<Vec<f32>> = tvs
                    .iter()
                    .map(|tv| {
                        let mut row: Vec<f32> =
                            seg.iter().flat_map(|k| tv[*k].iter().copied()).collect();
                        kept += trim_row(&mut row, density);
                        row
                    })
                    .collect();
                let (m, c) = ties_segment(&rows);
                conflicts += c;
                let mut at = 0;
                for k in seg {
                    let n = tvs[0][k].len();
                    out.insert(k.clone(), m[at..at + n].to_vec());
                    at += n;
                }
            }
            report.kept_fraction = Some(kept as f64 / (parameters * tvs.len()).max(1) as f64);
            report.sign_conflicts = Some(conflicts as f64 / parameters.max(1) as f64);
            out
        }
    };
    let out = merged
        .into_iter()
        .map(|(k, tv)| {
            let b = &base[&k];
            let data = b
                .data
                .iter()
                .zip(&tv)
                .map(|(x, t)| x + lambda * t)
                .collect();
            (
                k,
                HostTensor {
                    shape: b.shape.clone(),
                    data,
                },
            )
        })
        .collect();
    Ok((out, report))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn w(pairs: &[(&str, Vec<f32>)]) -> Weights {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    HostTensor {
                        shape: vec![v.len()],
                        data: v.clone(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn task_arithmetic_by_hand() {
        let base = w(&[("a", vec![1.0, 2.0])]);
        let m1 = w(&[("a", vec![2.0, 2.0])]);
        let m2 = w(&[("a", vec![1.0, 0.0])]);
        let opts = MergeOptions {
            lambda: 0.5,
            ..MergeOptions::default()
        };
        let (out, _) = merge(&base, &[m1, m2], &opts).unwrap();
        // τ1 = [1, 0], τ2 = [0, −2]; base + 0.5·[1, −2] = [1.5, 1.0]
        assert_eq!(out["a"].data, vec![1.5, 1.0]);
    }

    #[test]
    fn ties_by_hand() {
        // τ1 = [3, −1, 0.5, 2], τ2 = [−4, 2, 0.1, 1], τ3 = [1, −3, 0.2, −0.5]; density 0.5.
        let base = w(&[("a", vec![0.0; 4])]);
        let ms = [
            w(&[("a", vec![3.0, -1.0, 0.5, 2.0])]),
            w(&[("a", vec![-4.0, 2.0, 0.1, 1.0])]),
            w(&[("a", vec![1.0, -3.0, 0.2, -0.5])]),
        ];
        let opts = MergeOptions {
            method: Method::Ties,
            density: 0.5,
            ..MergeOptions::default()
        };
        let (out, rep) = merge(&base, &ms, &opts).unwrap();
        // Trim: k = 4 − int(4·0.5) = 2, keep |x| ≥ 2nd smallest |x| of each row:
        //   [3, −1, 0, 2], [−4, 2, 0, 1], [1, −3, 0, −0.5].
        // Elected signs of the sums [0, −2, 0, 2.5] → [0, −, 0, +]; the majority sign
        // sign(0 − 1 + 0 + 1) = 0 leaves zeros at 0, which keep negatives (official
        // `where(sign > 0, x > 0, x < 0)`). Disjoint means: [−4, (−1 − 3)/2, 0, (2 + 1)/2].
        assert_eq!(out["a"].data, vec![-4.0, -2.0, 0.0, 1.5]);
        assert!(rep.sign_conflicts.unwrap() > 0.0);
    }

    #[test]
    fn dare_keeps_expectation_and_rejects_bad_p() {
        let base = w(&[("a", vec![0.0; 20_000])]);
        let m = w(&[("a", vec![1.0; 20_000])]);
        let opts = MergeOptions {
            method: Method::Dare,
            drop: 0.9,
            seed: 3,
            ..MergeOptions::default()
        };
        let (out, _) = merge(&base, std::slice::from_ref(&m), &opts).unwrap();
        let mean = out["a"].data.iter().sum::<f32>() / 20_000.0;
        assert!((mean - 1.0).abs() < 0.1, "{mean}");
        assert!(
            out["a"]
                .data
                .iter()
                .all(|&v| v == 0.0 || (v - 10.0).abs() < 1e-4)
        );
        let bad = MergeOptions { drop: 1.0, ..opts };
        assert!(merge(&base, &[m], &bad).is_err());
    }

    #[test]
    fn mismatched_models_are_refused() {
        let base = w(&[("a", vec![0.0; 2])]);
        let other = w(&[("b", vec![0.0; 2])]);
        let e = merge(&base, &[other], &MergeOptions::default()).unwrap_err();
        assert!(e.to_string().contains("no tensor"), "{e}");
    }
}
