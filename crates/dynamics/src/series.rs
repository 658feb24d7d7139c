//! Benchmark time series: Mackey-Glass, NARMA-10, the Santa Fe laser, i.i.d. input for memory
//! capacity. Each follows ReservoirPy's definition so numbers compare with it.

use serde::{Deserialize, Serialize};

use crate::error::{DynamicsError, Result};
use crate::rng::Rng;

/// Mackey-Glass parameters; the defaults are ReservoirPy's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MackeyGlass {
    /// Delay τ.
    pub tau: f64,
    /// Production rate a.
    pub a: f64,
    /// Decay rate b.
    pub b: f64,
    /// Exponent n.
    pub n: f64,
    /// Initial condition x0.
    pub x0: f64,
    /// Integration step h.
    pub h: f64,
}

impl Default for MackeyGlass {
    fn default() -> Self {
        Self {
            tau: 17.0,
            a: 0.2,
            b: 0.1,
            n: 10.0,
            x0: 1.2,
            h: 1.0,
        }
    }
}

impl MackeyGlass {
    /// `steps` samples of dx/dt = a x(t−τ)/(1 + x(t−τ)ⁿ) − b x(t), integrated with ReservoirPy's
    /// RK4 scheme. `history` (at least ⌊τ/h⌋ values, most recent last) fixes the past; without
    /// it the past is x0 + 0.2·(U(0,1) − 0.5) drawn from `seed`, as ReservoirPy does.
    pub fn generate(&self, steps: usize, history: Option<&[f64]>, seed: u64) -> Result<Vec<f64>> {
        if !(self.h > 0.0) || !(self.tau >= 0.0) || !self.tau.is_finite() {
            return Err(DynamicsError::Input(
                "Mackey-Glass needs h > 0 and a finite τ ≥ 0".into(),
            ));
        }
        let len = (self.tau / self.h).floor() as usize;
        let mut x = Vec::with_capacity(len + steps);
        match history {
            Some(h) if h.len() < len => {
                return Err(DynamicsError::Input(format!(
                    "the history has {} values; τ/h needs {len}",
                    h.len()
                )));
            }
            Some(h) => x.extend_from_slice(&h[h.len() - len..]),
            None => {
                let mut rng = Rng::new(seed);
                x.extend((0..len).map(|_| self.x0 + 0.2 * (rng.uniform() - 0.5)));
            }
        }
        let mut xt = self.x0;
        for i in len..len + steps {
            x.push(xt);
            let xtau = if self.tau > 0.0 { x[i - len] } else { 0.0 };
            // ReservoirPy's RK4 with a constant delayed term over the step.
            let bh = -self.b * self.h;
            let k1 = bh * xt + self.a * xtau / (1.0 + xtau.powf(self.n));
            let k2 = 2.0 * k1 + bh * k1;
            let k3 = 2.0 * k1 + bh * k2;
            let k4 = k1 + bh * k3;
            xt += (k1 + k2 + k3 + k4) / 6.0;
        }
        Ok(x.split_off(len))
    }
}

/// NARMA-10 (ReservoirPy's `narma` with order 10 and the classic coefficients
/// 0.3, 0.05, 1.5, 0.1): y(t+1) = 0.3 y(t) + 0.05 y(t) Σ y(t−10..t) + 1.5 u(t−10) u(t) + 0.1.
/// Returns `(u, y)`, each `steps` long; `u` ~ U(0, 0.5) from `seed` unless given
/// (`steps + 10` values).
pub fn narma10(steps: usize, seed: u64, u: Option<&[f64]>) -> Result<(Vec<f64>, Vec<f64>)> {
    const ORDER: usize = 10;
    let total = steps + ORDER;
    let u: Vec<f64> = match u {
        Some(u) if u.len() < total => {
            return Err(DynamicsError::Input(format!(
                "NARMA needs {total} input values, got {}",
                u.len()
            )));
        }
        Some(u) => u[..total].to_vec(),
        None => {
            let mut rng = Rng::new(seed);
            (0..total).map(|_| rng.range(0.0, 0.5)).collect()
        }
    };
    let mut y = vec![0.0; total];
    for t in ORDER..total.saturating_sub(1) {
        let s: f64 = y[t - ORDER..t].iter().sum();
        y[t + 1] = 0.3 * y[t] + 0.05 * y[t] * s + 1.5 * u[t - ORDER] * u[t] + 0.1;
    }
    Ok((u[ORDER..].to_vec(), y[ORDER..].to_vec()))
}

/// Where the Santa Fe series lies in the site (`public/`), for the page to fetch.
pub const SANTAFE_FILE: &str = "bundled/dynamics/santafe_laser.u8";

/// Natively the series is compiled in.
#[cfg(not(target_arch = "wasm32"))]
fn santafe_bytes() -> Result<&'static [u8]> {
    Ok(include_bytes!(
        "../../../public/bundled/dynamics/santafe_laser.u8"
    ))
}

/// The series the page fetched ([`provide_santafe`]).
#[cfg(target_arch = "wasm32")]
static SANTAFE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

/// Whether the page has handed over the Santa Fe series.
#[cfg(target_arch = "wasm32")]
pub fn santafe_provided() -> bool {
    SANTAFE.get().is_some()
}

/// Hand over the bytes of [`SANTAFE_FILE`], fetched by the page: only the Santa Fe task reads
/// them, so the page's module does not carry them. The first set handed over stays.
#[cfg(target_arch = "wasm32")]
pub fn provide_santafe(bytes: Vec<u8>) {
    let _ = SANTAFE.set(bytes);
}

#[cfg(target_arch = "wasm32")]
fn santafe_bytes() -> Result<&'static [u8]> {
    SANTAFE.get().map(Vec::as_slice).ok_or_else(|| {
        DynamicsError::Input(format!(
            "the Santa Fe series ({SANTAFE_FILE}) is not loaded; reload the page (offline, it \
             is there once the page has been opened online)"
        ))
    })
}

/// The Santa Fe laser series (data set A, 10 093 samples), as ReservoirPy ships it.
pub fn santafe_laser() -> Result<Vec<f64>> {
    Ok(santafe_bytes()?.iter().map(|&b| b as f64).collect())
}

/// i.i.d. U(−1, 1) input for memory capacity.
pub fn uniform_input(steps: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..steps).map(|_| rng.range(-1.0, 1.0)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mackey_glass_stays_on_its_attractor() {
        let x = MackeyGlass::default().generate(3000, None, 1).unwrap();
        assert_eq!(x.len(), 3000);
        assert_eq!(x[0], 1.2);
        let (lo, hi) = x[500..]
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        assert!(lo > 0.2 && hi < 1.5 && hi - lo > 0.5, "{lo} {hi}");
    }

    #[test]
    fn short_history_is_refused() {
        assert!(
            MackeyGlass::default()
                .generate(10, Some(&[1.0; 3]), 0)
                .is_err()
        );
    }

    #[test]
    fn santafe_has_its_length() {
        let s = santafe_laser().unwrap();
        assert_eq!(s.len(), 10_093);
        assert_eq!(&s[..3], &[86.0, 141.0, 95.0]);
    }
}
