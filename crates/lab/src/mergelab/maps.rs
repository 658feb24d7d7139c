//! The sign-conflict map and the weight-disentanglement map.

use super::*;

/// Fraction of entries where task vectors have opposite signs, per tensor and task pair (and
/// over all merged tasks: any positive and any negative).
pub(super) fn sign_map(
    base: &Weights,
    models: &[Weights],
    tasks: &[String],
) -> Result<SignMap, LabError> {
    let tvs = merge::task_vectors(base, models)?;
    let names = suite::parameter_names();
    let mut pairs = Vec::new();
    let mut idx = Vec::new();
    for a in 0..tasks.len() {
        for b in a + 1..tasks.len() {
            pairs.push(format!("{} / {}", tasks[a], tasks[b]));
            idx.push((a, b));
        }
    }
    if tasks.len() > 2 {
        pairs.push("all".into());
    }
    let values = names
        .iter()
        .map(|n| {
            let len = tvs[0][n].len().max(1) as f64;
            let mut row: Vec<f64> = idx
                .iter()
                .map(|&(a, b)| {
                    tvs[a][n]
                        .iter()
                        .zip(&tvs[b][n])
                        .filter(|(x, y)| **x * **y < 0.0)
                        .count() as f64
                        / len
                })
                .collect();
            if tasks.len() > 2 {
                let any = (0..tvs[0][n].len())
                    .filter(|&j| {
                        tvs.iter().any(|tv| tv[n][j] > 0.0) && tvs.iter().any(|tv| tv[n][j] < 0.0)
                    })
                    .count();
                row.push(any as f64 / len);
            }
            row
        })
        .collect();
    Ok(SignMap {
        tensors: names,
        pairs,
        values,
    })
}

/// The weight-disentanglement error (Ortiz-Jiménez et al. 2023) over the spec's α grid, with
/// plain task arithmetic of the two tasks' vectors.
pub(super) async fn disentangle(
    device: &Device,
    base: &Weights,
    spec: &MergeSpec,
    tick: &mut impl AsyncFnMut(usize) -> Result<(), LabError>,
) -> Result<Disentanglement, LabError> {
    let tasks = [spec.disentangle[0], spec.disentangle[1]];
    let models: Vec<Weights> = tasks
        .iter()
        .map(|t| suite::bundled_fine_tune(*t, spec.fine_tuning.linearised()))
        .collect::<Result<_, _>>()?;
    let tvs = merge::task_vectors(base, &models)?;
    let at = spec.fine_tuning.linearised().then_some(base);
    let data: Vec<Dataset> = tasks
        .iter()
        .map(|t| Dataset::task(*t, Split::Test))
        .collect::<Result<_, _>>()?;
    let inputs: Vec<Tensor<2>> = data.iter().map(|d| d.inputs(device)).collect();
    let combine = |a: [f64; 2]| -> Weights {
        base.iter()
            .map(|(n, b)| {
                let data = b
                    .data
                    .iter()
                    .enumerate()
                    .map(|(j, x)| x + (a[0] as f32) * tvs[0][n][j] + (a[1] as f32) * tvs[1][n][j])
                    .collect();
                (
                    n.clone(),
                    HostTensor {
                        shape: b.shape.clone(),
                        data,
                    },
                )
            })
            .collect()
    };
    // Predictions of each single-task model θ₀ + αₜτₜ on its own task.
    let mut single: Vec<Vec<Vec<u32>>> = vec![Vec::new(), Vec::new()];
    for (t, s) in single.iter_mut().enumerate() {
        for &a in &spec.alphas {
            let mut c = [0.0; 2];
            c[t] = a;
            let mlp = Mlp::upload_at(&combine(c), at, device)?;
            s.push(suite::predict(&mlp, inputs[t].clone()).await?);
            tick(1).await?;
        }
    }
    let mut error = Vec::with_capacity(spec.alphas.len());
    for (i, &a1) in spec.alphas.iter().enumerate() {
        let mut row = Vec::with_capacity(spec.alphas.len());
        for (j, &a2) in spec.alphas.iter().enumerate() {
            let mlp = Mlp::upload_at(&combine([a1, a2]), at, device)?;
            let mut xi = 0.0;
            for t in 0..2 {
                let pred = suite::predict(&mlp, inputs[t].clone()).await?;
                let reference = &single[t][if t == 0 { i } else { j }];
                xi += 1.0 - suite::accuracy(&pred, reference);
            }
            row.push(xi);
            tick(1).await?;
        }
        error.push(row);
    }
    Ok(Disentanglement {
        tasks: tasks.to_vec(),
        alphas: spec.alphas.clone(),
        error,
    })
}
