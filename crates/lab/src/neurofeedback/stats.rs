//! Host-side statistics in f64: PCA, the logistic-regression probe, random directions, medians
//! and the seeded splits into examples and queries.

use super::*;

/// The mean of the rows.
pub(crate) fn mean_row(x: &[Vec<f64>]) -> Vec<f64> {
    let d = x[0].len();
    let mut m = vec![0.0; d];
    for r in x {
        for (a, b) in m.iter_mut().zip(r) {
            *a += b;
        }
    }
    m.iter_mut().for_each(|a| *a /= x.len() as f64);
    m
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub(crate) fn normalise(v: &mut [f64]) {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Principal components of the rows of `x` (`n × d`): the first `k` unit directions (sign: the
/// largest-magnitude entry positive) and every component's fraction of the total variance.
/// Eigenvectors of the `n × n` Gram matrix by the cyclic Jacobi method (exact to round-off, and
/// cheap for a few hundred sentences whatever `d_model` is).
pub fn pca(x: &[Vec<f64>], k: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    let n = x.len();
    let mu = mean_row(x);
    let xc: Vec<Vec<f64>> = x
        .iter()
        .map(|r| r.iter().zip(&mu).map(|(a, b)| a - b).collect())
        .collect();
    let mut g = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in i..n {
            let v = dot(&xc[i], &xc[j]);
            g[i][j] = v;
            g[j][i] = v;
        }
    }
    let (vals, vecs) = jacobi_eigen(g);
    let total: f64 = vals
        .iter()
        .map(|v| v.max(0.0))
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| vals[b].total_cmp(&vals[a]));
    let d = mu.len();
    let mut dirs = Vec::new();
    for &i in order.iter().take(k.min(n)) {
        // Principal axis = Xcᵀ u (normalised).
        let mut v = vec![0.0; d];
        for (r, row) in xc.iter().enumerate() {
            let w = vecs[r][i];
            for (a, b) in v.iter_mut().zip(row) {
                *a += w * b;
            }
        }
        normalise(&mut v);
        let big = v
            .iter()
            .copied()
            .max_by(|a, b| a.abs().total_cmp(&b.abs()))
            .unwrap_or(1.0);
        if big < 0.0 {
            v.iter_mut().for_each(|a| *a = -*a);
        }
        dirs.push(v);
    }
    let frac = order.iter().map(|&i| vals[i].max(0.0) / total).collect();
    (dirs, frac)
}

/// Eigen-decomposition of a symmetric matrix: `(values, vectors)` with `vectors[r][i]` the r-th
/// entry of the i-th eigenvector.
pub(crate) fn jacobi_eigen(mut a: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = a.len();
    let mut v: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    let scale: f64 = a.iter().map(|r| dot(r, r)).sum::<f64>().sqrt();
    for _sweep in 0..60 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-14 * scale.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() <= 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let sn = t * c;
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - sn * akq;
                    row[q] = sn * akp + c * akq;
                }
                let (rp, rq) = (a[p].clone(), a[q].clone());
                for (k, (apk, aqk)) in rp.into_iter().zip(rq).enumerate() {
                    a[p][k] = c * apk - sn * aqk;
                    a[q][k] = sn * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - sn * vq;
                    row[q] = sn * vp + c * vq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i][i]).collect(), v)
}

/// L2-regularised logistic regression on standardised features; the direction (in the original
/// activation space) is the weight vector mapped back and normalised.
pub fn probe(x: &[Vec<f64>], y: &[bool]) -> Result<Vec<f64>, LabError> {
    let pos = y.iter().filter(|&&b| b).count();
    if pos == 0 || pos == y.len() {
        return Err(LabError::Spec(
            "the probe needs sentences of both concepts (mark lines with | 1 and | 0)".into(),
        ));
    }
    let (n, d) = (x.len(), x[0].len());
    let mu = mean_row(x);
    let sd: Vec<f64> = (0..d)
        .map(|j| {
            let v = x.iter().map(|r| (r[j] - mu[j]).powi(2)).sum::<f64>() / n as f64;
            v.sqrt().max(1e-8)
        })
        .collect();
    let z: Vec<Vec<f64>> = x
        .iter()
        .map(|r| (0..d).map(|j| (r[j] - mu[j]) / sd[j]).collect())
        .collect();
    let (mut w, mut b) = (vec![0.0; d], 0.0);
    let (lr, l2) = (0.5, 1e-2);
    for _ in 0..500 {
        let mut gw = vec![0.0; d];
        let mut gb = 0.0;
        for (r, &t) in z.iter().zip(y) {
            let p = 1.0 / (1.0 + (-(dot(&w, r) + b)).exp());
            let e = p - f64::from(u8::from(t));
            for (g, v) in gw.iter_mut().zip(r) {
                *g += e * v;
            }
            gb += e;
        }
        for (wj, g) in w.iter_mut().zip(&gw) {
            *wj -= lr * (g / n as f64 + l2 * *wj);
        }
        b -= lr * gb / n as f64;
    }
    let mut dir: Vec<f64> = w.iter().zip(&sd).map(|(a, s)| a / s).collect();
    normalise(&mut dir);
    Ok(dir)
}

/// A random unit vector of length `d`.
pub fn random_direction(d: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed ^ 0xD12E_C710);
    let mut v: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
    normalise(&mut v);
    v
}

/// The median of `v` (mean of the two middle values for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// A seeded permutation of `0..n` (Fisher–Yates).
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i + 1);
        p.swap(i, j);
    }
    p
}

/// The split of one seed: the example pool (first half of a permutation, in order) and the
/// queries (the start of the second half).
pub fn split(n: usize, seed: u64, queries: usize) -> (Vec<usize>, Vec<usize>) {
    let p = permutation(n, seed);
    let half = n / 2;
    let q = p[half..].iter().copied().take(queries).collect();
    (p[..half].to_vec(), q)
}

/// [`split`] keeping only labelled sentences: the example pool (first half of the seed's
/// permutation) and up to `queries` held-out queries (second half).
pub fn labelled_split(
    n: usize,
    seed: u64,
    queries: usize,
    label: &[Option<usize>],
) -> (Vec<usize>, Vec<usize>) {
    let p = permutation(n, seed);
    let half = n / 2;
    let keep = |i: &&usize| label[**i].is_some();
    (
        p[..half].iter().filter(keep).copied().collect(),
        p[half..]
            .iter()
            .filter(keep)
            .take(queries)
            .copied()
            .collect(),
    )
}
