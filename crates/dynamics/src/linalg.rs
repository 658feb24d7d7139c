//! Host-side linear algebra in float64, as ReservoirPy does it with NumPy/SciPy: the spectral
//! radius used to scale reservoirs, and the closed-form ridge readout.

use std::ops::AddAssign;

use nalgebra::DMatrix;

use crate::error::{DynamicsError, Result};

/// Largest eigenvalue modulus of a square row-major `n × n` matrix.
///
/// Up to [`DENSE_MAX`] rows: every eigenvalue from the real Schur form (exact up to rounding).
/// Larger: restarted Arnoldi on the non-zero entries (ReservoirPy asks ARPACK, an implicitly
/// restarted Arnoldi, for the same number): a few hundred sparse products instead of an
/// O(n³) decomposition (0.8 s of the 500-unit ESN's 1.7 s was its Schur form).
pub fn spectral_radius(w: &[f64], n: usize) -> Result<f64> {
    if w.len() != n * n {
        return Err(DynamicsError::Input(format!(
            "matrix has {} entries, expected {n}×{n}",
            w.len()
        )));
    }
    if w.iter().any(|v| !v.is_finite()) {
        return Err(DynamicsError::Input(
            "the matrix holds NaN or infinite values".into(),
        ));
    }
    if n <= DENSE_MAX {
        return Ok(dense_radius(&DMatrix::from_row_slice(n, n, w)));
    }
    // Not converged (a clustered outer spectrum): the exact answer, however long it takes.
    Ok(arnoldi_radius(&SparseRows::new(w, n))
        .unwrap_or_else(|| dense_radius(&DMatrix::from_row_slice(n, n, w))))
}

/// Matrices up to this many rows get the exact dense eigenvalues.
pub const DENSE_MAX: usize = 64;

/// Krylov subspace size per Arnoldi cycle.
const KRYLOV: usize = 64;

/// An Arnoldi cycle stops the search once the Ritz pair's residual is below this, relative to
/// the eigenvalue's modulus.
const ARNOLDI_TOL: f64 = 1e-9;

fn dense_radius(m: &DMatrix<f64>) -> f64 {
    m.complex_eigenvalues()
        .iter()
        .map(|z| z.norm())
        .fold(0.0, f64::max)
}

/// A matrix's non-zero entries by row, for products with vectors.
struct SparseRows {
    n: usize,
    start: Vec<usize>,
    entries: Vec<(usize, f64)>,
}

impl SparseRows {
    fn new(w: &[f64], n: usize) -> Self {
        let mut start = vec![0];
        let mut entries = Vec::new();
        for row in w.chunks_exact(n) {
            entries.extend(row.iter().copied().enumerate().filter(|e| e.1 != 0.0));
            start.push(entries.len());
        }
        Self { n, start, entries }
    }

    /// `y = W x`.
    fn mul(&self, x: &[f64], y: &mut [f64]) {
        for (i, y) in y.iter_mut().enumerate() {
            let row = &self.entries[self.start[i]..self.start[i + 1]];
            let mut acc = [0f64; 4];
            let mut quads = row.chunks_exact(4);
            for q in &mut quads {
                for (a, &(j, w)) in acc.iter_mut().zip(q) {
                    *a += w * x[j];
                }
            }
            let tail: f64 = quads.remainder().iter().map(|&(j, w)| w * x[j]).sum();
            *y = (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail;
        }
    }
}

/// `a · b` with eight running sums: one sum waits on the previous addition at every element
/// (the Arnoldi search spent most of its time there), eight vectorise.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += a[k] * b[k];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// The spectral radius by explicitly restarted Arnoldi: build an orthonormal Krylov basis V and
/// the Hessenberg H = Vᵀ W V, take H's eigenvalue of largest modulus (a Ritz value) and its
/// eigenvector y; stop when the residual ‖W V y − λ V y‖ = h_{m+1,m} |y_m| is small, else restart
/// from V y (its real and imaginary parts summed, which keeps both members of a complex pair).
/// `None` when it has not converged after 400 cycles.
fn arnoldi_radius(a: &SparseRows) -> Option<f64> {
    use nalgebra::Complex;
    let n = a.n;
    let m = KRYLOV.min(n);
    // A start vector with every component (a deterministic pseudo-random one).
    let mut rng = crate::rng::Rng::new(0x5eed);
    let mut start: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    for _ in 0..400 {
        let norm = dot(&start, &start).sqrt();
        if !(norm > 0.0) {
            return None;
        }
        let mut v: Vec<Vec<f64>> = vec![start.iter().map(|x| x / norm).collect()];
        let mut h = DMatrix::<f64>::zeros(m + 1, m);
        let mut size = m;
        for j in 0..m {
            let mut w = vec![0.0; n];
            a.mul(&v[j], &mut w);
            // Gram-Schmidt twice: once is not enough in floating point.
            for _ in 0..2 {
                for (i, vi) in v.iter().enumerate() {
                    let c = dot(&w, vi);
                    h[(i, j)] += c;
                    w.iter_mut().zip(vi).for_each(|(w, v)| *w -= c * v);
                }
            }
            let next = dot(&w, &w).sqrt();
            h[(j + 1, j)] = next;
            if next <= 1e-13 * h.column(j).norm().max(f64::MIN_POSITIVE) {
                // An invariant subspace: its eigenvalues are exact.
                size = j + 1;
                break;
            }
            v.push(w.iter().map(|x| x / next).collect());
        }
        let hm = h.view((0, 0), (size, size)).into_owned();
        let ritz = hm.complex_eigenvalues();
        let lambda = ritz
            .iter()
            .copied()
            .max_by(|a, b| a.norm().total_cmp(&b.norm()))?;
        let best = lambda.norm();
        if size < m || best == 0.0 {
            return Some(best);
        }
        // The Ritz vector y: inverse iteration on H − λI (shifted off λ so it is solvable).
        let hc = hm.map(|x| Complex::new(x, 0.0));
        let shift = lambda * Complex::new(1.0 + 1e-10, 0.0);
        let lu = (hc - nalgebra::DMatrix::<Complex<f64>>::identity(size, size) * shift).lu();
        let mut y = nalgebra::DVector::<Complex<f64>>::from_element(size, Complex::new(1.0, 0.0));
        for _ in 0..3 {
            let z = lu.solve(&y)?;
            y = z.unscale(z.norm());
        }
        let residual = h[(size, size - 1)] * y[size - 1].norm();
        if residual <= ARNOLDI_TOL * best {
            return Some(best);
        }
        start = (0..n)
            .map(|k| {
                let z: Complex<f64> = (0..size).map(|i| y[i] * v[i][k]).sum();
                z.re + z.im
            })
            .collect();
    }
    None
}

/// A fitted linear readout `y = x · W + b`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// `[inputs, outputs]`, row-major.
    pub w: Vec<f64>,
    /// `[outputs]`.
    pub b: Vec<f64>,
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
}

impl Linear {
    /// Apply to `t` rows of `x` (`[t, inputs]`, row-major f32 states) → `[t, outputs]`.
    pub fn predict(&self, x: &[f32]) -> Vec<f64> {
        let t = x.len() / self.inputs.max(1);
        let mut y = Vec::with_capacity(t * self.outputs);
        for row in x.chunks_exact(self.inputs) {
            for o in 0..self.outputs {
                let mut acc = self.b[o];
                for (i, &xi) in row.iter().enumerate() {
                    acc += xi as f64 * self.w[i * self.outputs + o];
                }
                y.push(acc);
            }
        }
        y
    }
}

/// Ridge regression with an intercept, exactly ReservoirPy's `Ridge(ridge, fit_bias=True)`:
/// `W = (Xcᵀ Xc + ridge·I)⁻¹ Xcᵀ Yc` on centred data, `b = ȳ − x̄ W`.
///
/// # Shapes
/// - `x`: `[t, inputs]` row-major (reservoir states), `y`: `[t, outputs]` row-major targets.
pub fn ridge(x: &[f32], y: &[f64], inputs: usize, outputs: usize, ridge: f64) -> Result<Linear> {
    let mut fit = Ridge::new(inputs, outputs, ridge);
    fit.add(x, y);
    fit.solve()
}

/// [`ridge`] taking its rows in blocks as they are produced — a reservoir's states chunk by
/// chunk, while it simulates the next chunk on another thread — with the same result up to
/// rounding.
///
/// It sums `(x − s)(x − s)ᵀ`, `(x − s)(y − r)ᵀ`, `x` and `y`, with shifts `s`, `r` the first
/// block's means; [`Ridge::solve`] centres with `Σ (x − x̄)(x − x̄)ᵀ = Σ (x − s)(x − s)ᵀ − T d dᵀ`,
/// `d = x̄ − s`. With `s` near `x̄` that subtraction loses no digits (for one block `d` is 0 and
/// this is plain centring).
pub struct Ridge {
    inputs: usize,
    outputs: usize,
    ridge: f64,
    rows: usize,
    /// `[inputs]`, `[outputs]`.
    shift_x: Vec<f64>,
    shift_y: Vec<f64>,
    sum_x: Vec<f64>,
    sum_y: Vec<f64>,
    /// `[inputs, inputs]`: the lower triangle of Σ (x − s)(x − s)ᵀ.
    gram: DMatrix<f64>,
    /// `[inputs, outputs]`: Σ (x − s)(y − r)ᵀ.
    cross: DMatrix<f64>,
    /// The first bad block (reported by `solve`, so a producer's callback need not fail).
    error: Option<DynamicsError>,
}

impl Ridge {
    /// An empty fit of `inputs` → `outputs` with ridge parameter `ridge`.
    pub fn new(inputs: usize, outputs: usize, ridge: f64) -> Self {
        let error = (inputs == 0 || outputs == 0)
            .then(|| DynamicsError::Input("ridge: empty or ragged inputs".into()));
        Self {
            inputs,
            outputs,
            ridge,
            rows: 0,
            shift_x: vec![0.0; inputs],
            shift_y: vec![0.0; outputs],
            sum_x: vec![0.0; inputs],
            sum_y: vec![0.0; outputs],
            gram: DMatrix::zeros(inputs, inputs),
            cross: DMatrix::zeros(inputs, outputs),
            error,
        }
    }

    /// Take `t` more rows: `x` `[t, inputs]` row-major, `y` `[t, outputs]` row-major.
    pub fn add(&mut self, x: &[f32], y: &[f64]) {
        let (n, o) = (self.inputs, self.outputs);
        if self.error.is_some() {
            return;
        }
        if !x.len().is_multiple_of(n) {
            self.error = Some(DynamicsError::Input("ridge: empty or ragged inputs".into()));
            return;
        }
        let t = x.len() / n;
        if y.len() != t * o {
            self.error = Some(DynamicsError::Input(format!(
                "ridge: {t} input rows but {} target values for {o} outputs",
                y.len()
            )));
            return;
        }
        if t == 0 {
            return;
        }
        for row in x.chunks_exact(n) {
            self.sum_x
                .iter_mut()
                .zip(row)
                .for_each(|(m, &v)| *m += v as f64);
        }
        for row in y.chunks_exact(o) {
            self.sum_y.iter_mut().zip(row).for_each(|(m, &v)| *m += v);
        }
        if self.rows == 0 {
            self.shift_x = self.sum_x.iter().map(|v| v / t as f64).collect();
            self.shift_y = self.sum_y.iter().map(|v| v / t as f64).collect();
        }
        self.rows += t;
        // The shifted block as (x − s)ᵀ, `[inputs, t]` column-major: the states' own row-major
        // layout, so this is one sequential pass.
        let mut shifted = Vec::with_capacity(x.len());
        for row in x.chunks_exact(n) {
            shifted.extend(row.iter().zip(&self.shift_x).map(|(&v, s)| v as f64 - s));
        }
        let xt = DMatrix::<f64>::from_vec(n, t, shifted);
        let mut yc = DMatrix::<f64>::from_row_slice(t, o, y);
        for (j, s) in self.shift_y.iter().enumerate() {
            yc.column_mut(j).add_scalar_mut(-s);
        }
        add_lower_gram(&mut self.gram, &xt);
        self.cross.gemm(1.0, &xt, &yc, 1.0);
    }

    /// The readout, or why there is none.
    pub fn solve(self) -> Result<Linear> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.rows < 2 {
            return Err(DynamicsError::Input(
                "ridge: at least two training steps are needed".into(),
            ));
        }
        let (inputs, outputs, t) = (self.inputs, self.outputs, self.rows as f64);
        let x_mean: Vec<f64> = self.sum_x.iter().map(|v| v / t).collect();
        let y_mean: Vec<f64> = self.sum_y.iter().map(|v| v / t).collect();
        let d: Vec<f64> = x_mean
            .iter()
            .zip(&self.shift_x)
            .map(|(m, s)| m - s)
            .collect();
        let e: Vec<f64> = y_mean
            .iter()
            .zip(&self.shift_y)
            .map(|(m, s)| m - s)
            .collect();
        let mut gram = self.gram;
        for j in 0..inputs {
            for i in j..inputs {
                let v = gram[(i, j)] - t * d[i] * d[j];
                gram[(i, j)] = v;
                gram[(j, i)] = v;
            }
            gram[(j, j)] += self.ridge;
        }
        let mut rhs = self.cross;
        for i in 0..inputs {
            for (k, e) in e.iter().enumerate() {
                rhs[(i, k)] -= t * d[i] * e;
            }
        }
        let w = match gram.clone().cholesky() {
            Some(ch) => ch.solve(&rhs),
            // Rounding can make a ridge-less Gram matrix lose definiteness; LU still solves it.
            None => gram.lu().solve(&rhs).ok_or_else(|| {
                DynamicsError::Input(
                    "ridge: the states are linearly dependent; raise the ridge parameter".into(),
                )
            })?,
        };
        let b: Vec<f64> = (0..outputs)
            .map(|o| y_mean[o] - (0..inputs).map(|i| x_mean[i] * w[(i, o)]).sum::<f64>())
            .collect();
        let mut flat = Vec::with_capacity(inputs * outputs);
        for i in 0..inputs {
            for o in 0..outputs {
                flat.push(w[(i, o)]);
            }
        }
        if flat.iter().chain(&b).any(|v| !v.is_finite()) {
            return Err(DynamicsError::Input(
                "ridge: the fit is not finite (states diverged?); raise the ridge parameter".into(),
            ));
        }
        Ok(Linear {
            w: flat,
            b,
            inputs,
            outputs,
        })
    }
}

/// `g += A·Aᵀ` on the lower triangle, for `a` = Xᵀ (`[inputs, t]`): blocks of rows on the
/// CPU's threads, block `[lo, hi)` taking columns `0..hi` only — about half the products of the
/// full matrix product, which was a quarter of the 500-unit ESN's time.
fn add_lower_gram(g: &mut DMatrix<f64>, a: &DMatrix<f64>) {
    let (n, t) = a.shape();
    // Aᵀ as a view of A's own storage (element (r, c) of Aᵀ is A's (c, r)): no transposed copy.
    let at = nalgebra::DMatrixView::from_slice_with_strides(a.as_slice(), t, n, n, 1);
    // Four blocks of equal triangle area (boundaries at n·√(p/4)), so any split over threads is
    // even; each packs its slice of Aᵀ once (more, smaller blocks spent as long packing as
    // multiplying).
    let parts = if n >= 256 { 4 } else { 1 };
    let edge = |p: usize| ((n as f64) * (p as f64 / parts as f64).sqrt()).round() as usize;
    let blocks: Vec<(usize, usize)> = (0..parts).map(|p| (edge(p), edge(p + 1))).collect();
    let rows =
        interplay_models::par::map(&blocks, |&(lo, hi)| a.rows(lo, hi - lo) * at.columns(0, hi));
    for ((lo, hi), block) in blocks.into_iter().zip(rows) {
        g.view_mut((lo, 0), (hi - lo, hi)).add_assign(&block);
    }
}

/// Root mean squared error divided by the target's peak-to-peak range (ReservoirPy's default
/// `nrmse(norm="minmax")`).
pub fn nrmse(target: &[f64], pred: &[f64]) -> f64 {
    let n = target.len().min(pred.len());
    if n == 0 {
        return f64::NAN;
    }
    let mse = (0..n).map(|i| (target[i] - pred[i]).powi(2)).sum::<f64>() / n as f64;
    let (lo, hi) = target[..n]
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    mse.sqrt() / (hi - lo)
}

/// Coefficient of determination 1 − SS_res / SS_tot (ReservoirPy's `rsquare`).
pub fn r2(target: &[f64], pred: &[f64]) -> f64 {
    let n = target.len().min(pred.len());
    if n == 0 {
        return f64::NAN;
    }
    let mean = target[..n].iter().sum::<f64>() / n as f64;
    let ss_res: f64 = (0..n).map(|i| (target[i] - pred[i]).powi(2)).sum();
    let ss_tot: f64 = target[..n].iter().map(|v| (v - mean).powi(2)).sum();
    1.0 - ss_res / ss_tot
}

/// Squared Pearson correlation (the memory-capacity score of one delay).
pub fn squared_correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n < 2 {
        return 0.0;
    }
    let ma = a[..n].iter().sum::<f64>() / n as f64;
    let mb = b[..n].iter().sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (da, db) = (a[i] - ma, b[i] - mb);
        sab += da * db;
        saa += da * da;
        sbb += db * db;
    }
    if saa == 0.0 || sbb == 0.0 {
        return 0.0;
    }
    sab * sab / (saa * sbb)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn spectral_radius_of_known_matrices() {
        // Rotation by 90° scaled by 2: eigenvalues ±2i.
        let r = spectral_radius(&[0.0, -2.0, 2.0, 0.0], 2).unwrap();
        assert!((r - 2.0).abs() < 1e-12);
        let r = spectral_radius(&[3.0, 1.0, 0.0, -4.0], 2).unwrap();
        assert!((r - 4.0).abs() < 1e-12);
    }

    /// Rows given in blocks (as a reservoir streams them) fit what all rows at once fit, also
    /// when the data sit far from 0 (the shifted sums must not cancel digits).
    #[test]
    fn ridge_in_blocks_matches_ridge_at_once() {
        let mut rng = crate::rng::Rng::new(3);
        let (inputs, outputs, t) = (300, 2, 900);
        let x: Vec<f32> = (0..t * inputs)
            .map(|k| 5.0 + (k % inputs) as f32 * 0.01 + rng.normal() as f32)
            .collect();
        let y: Vec<f64> = (0..t * outputs).map(|_| 3.0 + rng.normal()).collect();
        let whole = ridge(&x, &y, inputs, outputs, 1e-6).unwrap();
        let mut parts = Ridge::new(inputs, outputs, 1e-6);
        for (lo, hi) in [(0, 150), (150, 400), (400, 401), (401, 900)] {
            parts.add(&x[lo * inputs..hi * inputs], &y[lo * outputs..hi * outputs]);
        }
        let parts = parts.solve().unwrap();
        let scale = whole.w.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (a, b) in whole
            .w
            .iter()
            .zip(&parts.w)
            .chain(whole.b.iter().zip(&parts.b))
        {
            assert!((a - b).abs() <= 1e-9 * scale.max(1.0), "{a} vs {b}");
        }
        let mut bad = Ridge::new(inputs, outputs, 1e-6);
        bad.add(&x[..inputs], &y[..3]);
        assert!(bad.solve().is_err());
    }

    #[test]
    fn ridge_recovers_a_linear_map() {
        // y = 2 x0 − x1 + 0.5
        let x: Vec<f32> = vec![0., 0., 1., 0., 0., 1., 1., 1., 2., -1.];
        let y: Vec<f64> = x
            .chunks(2)
            .map(|r| 2.0 * r[0] as f64 - r[1] as f64 + 0.5)
            .collect();
        let fit = ridge(&x, &y, 2, 1, 0.0).unwrap();
        assert!((fit.w[0] - 2.0).abs() < 1e-9 && (fit.w[1] + 1.0).abs() < 1e-9);
        assert!((fit.b[0] - 0.5).abs() < 1e-9);
        let p = fit.predict(&x);
        assert!(nrmse(&y, &p) < 1e-9);
        assert!((r2(&y, &p) - 1.0).abs() < 1e-12);
    }
}
