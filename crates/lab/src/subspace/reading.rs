//! The row space of the weights that read a hook: the directions of an activation that change
//! what the model computes next. The rest (the null space) is never read, which is where a
//! subspace patch can hide an illusion.

use interplay_models::Transformer;
use interplay_models::hooks::HookPoint;

use super::{dot, norm};
use crate::LabError;

/// An orthonormal basis (`[k][width]`) of the row space of the weights that read `hook`
/// (the directions of the activation that change what reads it), and what they are in words.
/// `mlp.hook_post`: the MLP's `W_out`. A residual hook: every later attention's `W_Q`, `W_K`,
/// `W_V`, every later MLP's input weights and the unembedding, each behind its LayerNorm,
/// whose centring no direction survives that adds the same to every unit.
pub(super) async fn reading_space(
    model: &Transformer,
    hook: HookPoint,
) -> Result<(Vec<Vec<f64>>, String), LabError> {
    use interplay_models::device::read_f32;

    let c = &model.config;
    let d = c.d_model;
    // Each reader as its columns: vectors of the hook's width.
    let mut columns: Vec<Vec<f64>> = Vec::new();
    let mut push = |m: Vec<f32>, rows: usize, cols: usize, gamma: Option<&[f32]>, centre: bool| {
        for j in 0..cols {
            let mut col: Vec<f64> = (0..rows).map(|i| m[i * cols + j] as f64).collect();
            if let Some(g) = gamma {
                for (x, &s) in col.iter_mut().zip(g) {
                    *x *= s as f64;
                }
            }
            if centre {
                let mean = col.iter().sum::<f64>() / rows as f64;
                for x in &mut col {
                    *x -= mean;
                }
            }
            columns.push(col);
        }
    };
    let readers = match hook {
        HookPoint::MlpPost(l) => {
            let b = &model.blocks[l];
            push(read_f32(b.mlp.w_out.val()).await?, c.d_mlp, d, None, false);
            format!("the MLP's output weights W_out (layer {l})")
        }
        _ => {
            // Which sublayers read it: (layer, attention too?).
            let (first, attn_first) = match hook {
                HookPoint::ResidPre(l) => (l, true),
                HookPoint::ResidMid(l) => (l, false),
                HookPoint::ResidPost(l) => (l + 1, true),
                _ => (0, true),
            };
            for l in first..c.n_layers {
                let b = &model.blocks[l];
                if l > first || attn_first {
                    let g = read_f32(b.ln1.weight.val()).await?;
                    for w in [&b.attn.w_q, &b.attn.w_k, &b.attn.w_v] {
                        let [r, k] = w.val().dims();
                        push(read_f32(w.val()).await?, r, k, Some(&g), !b.ln1.rms);
                    }
                }
                let g = read_f32(b.ln2.weight.val()).await?;
                let mut mats = vec![&b.mlp.w_in];
                if let Some(gate) = &b.mlp.w_gate {
                    mats.push(gate);
                }
                for w in mats {
                    let [r, k] = w.val().dims();
                    push(read_f32(w.val()).await?, r, k, Some(&g), !b.ln2.rms);
                }
            }
            let g = read_f32(model.ln_final.weight.val()).await?;
            let centre = !model.ln_final.rms;
            match &model.unembed {
                Some(u) => {
                    let [r, k] = u.val().dims();
                    push(read_f32(u.val()).await?, r, k, Some(&g), centre);
                }
                None => {
                    // Tied: the embedding `[vocab, d]` read as `[d, vocab]`.
                    let e = model.embed.val().transpose();
                    let [r, k] = e.dims();
                    push(read_f32(e).await?, r, k, Some(&g), centre);
                }
            }
            "every later layer's attention (W_Q, W_K, W_V) and MLP input weights and the \
             unembedding, each behind its LayerNorm"
                .into()
        }
    };
    Ok((orthonormal(columns), readers))
}

/// An orthonormal basis of the span of `vectors` (modified Gram–Schmidt, twice; vectors left
/// with under 1e-6 of their norm are dependent).
fn orthonormal(vectors: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    let mut basis: Vec<Vec<f64>> = Vec::new();
    for mut x in vectors {
        let before = norm(&x);
        if before == 0.0 {
            continue;
        }
        for _ in 0..2 {
            for b in &basis {
                let c = dot(&x, b);
                for (xi, bi) in x.iter_mut().zip(b) {
                    *xi -= c * bi;
                }
            }
        }
        let after = norm(&x);
        if after > 1e-6 * before {
            basis.push(x.iter().map(|v| v / after).collect());
        }
        if basis.len() == x.len() {
            break;
        }
    }
    basis
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orthonormal_drops_dependent_vectors() {
        let b = orthonormal(vec![
            vec![1.0, 0.0, 0.0],
            vec![1.0, 1.0, 0.0],
            vec![2.0, 2.0, 0.0],
        ]);
        assert_eq!(b.len(), 2);
        assert!((dot(&b[0], &b[1])).abs() < 1e-12);
    }
}
