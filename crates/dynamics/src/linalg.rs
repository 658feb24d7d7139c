//! Host-side linear algebra in float64, as ReservoirPy does it with NumPy/SciPy: the spectral
//! radius used to scale reservoirs, and the closed-form ridge readout.

use nalgebra::DMatrix;

use crate::error::{DynamicsError, Result};

/// Largest eigenvalue modulus of a square row-major `n × n` matrix (real Schur form, exact up to
/// rounding; ReservoirPy uses ARPACK for the same number).
pub fn spectral_radius(w: &[f64], n: usize) -> Result<f64> {
    if w.len() != n * n {
        return Err(DynamicsError::Input(format!(
            "matrix has {} entries, expected {n}×{n}",
            w.len()
        )));
    }
    if n == 0 {
        return Ok(0.0);
    }
    let m = DMatrix::from_row_slice(n, n, w);
    let eig = m.complex_eigenvalues();
    Ok(eig.iter().map(|z| z.norm()).fold(0.0, f64::max))
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
    if inputs == 0 || outputs == 0 || !x.len().is_multiple_of(inputs) {
        return Err(DynamicsError::Input("ridge: empty or ragged inputs".into()));
    }
    let t = x.len() / inputs;
    if y.len() != t * outputs {
        return Err(DynamicsError::Input(format!(
            "ridge: {t} input rows but {} target values for {outputs} outputs",
            y.len()
        )));
    }
    if t < 2 {
        return Err(DynamicsError::Input(
            "ridge: at least two training steps are needed".into(),
        ));
    }
    let mut xm = DMatrix::<f64>::from_iterator(inputs, t, x.iter().map(|&v| v as f64)).transpose();
    let mut ym = DMatrix::<f64>::from_row_slice(t, outputs, y);
    let x_mean: Vec<f64> = (0..inputs).map(|j| xm.column(j).mean()).collect();
    let y_mean: Vec<f64> = (0..outputs).map(|j| ym.column(j).mean()).collect();
    for (j, m) in x_mean.iter().enumerate() {
        xm.column_mut(j).add_scalar_mut(-m);
    }
    for (j, m) in y_mean.iter().enumerate() {
        ym.column_mut(j).add_scalar_mut(-m);
    }
    let mut gram = xm.tr_mul(&xm);
    for i in 0..inputs {
        gram[(i, i)] += ridge;
    }
    let rhs = xm.tr_mul(&ym);
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
