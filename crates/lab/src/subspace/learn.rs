//! Learning the direction: Adam on an unnormalised `w`, `v = w/|w|`, the gradient at the patched
//! activation taken through a zero-shift leaf (autodiff: feature `train`).

use interplay_models::Transformer;
use interplay_models::hooks::HookPoint;
use interplay_models::patching::Progress;

use super::{Cached, SubspaceSpec};
use crate::LabError;

/// Adam on the unnormalised `w` with `v = w/|w|` (PyTorch's `Adam`, default betas and eps).
#[cfg(feature = "train")]
struct Adam {
    lr: f64,
    m: Vec<f64>,
    s: Vec<f64>,
    t: i32,
}

#[cfg(feature = "train")]
impl Adam {
    fn step(&mut self, w: &mut [f64], g: &[f64]) {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        self.t += 1;
        let (c1, c2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
        for i in 0..w.len() {
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * g[i];
            self.s[i] = b2 * self.s[i] + (1.0 - b2) * g[i] * g[i];
            w[i] -= self.lr / c1 * self.m[i] / ((self.s[i] / c2).sqrt() + eps);
        }
    }
}

/// Train the direction at `hook` for `n` steps: the unit `v` and the loss of each step.
#[cfg(feature = "train")]
pub(super) async fn learn(
    spec: &SubspaceSpec,
    model: &Transformer,
    train: &Cached,
    hook: HookPoint,
    n: usize,
    progress: &mut dyn FnMut(usize, usize) -> Progress,
) -> Result<(Vec<f32>, Vec<f32>), LabError> {
    use burn::tensor::activation::log_softmax;
    use burn::tensor::{Int, Tensor, TensorData};
    use interplay_models::device::read_f32;
    use interplay_models::rng::Rng;

    use super::{dot, draw, norm, shift_tensor};

    let k = train.index(hook)?;
    let d = train.width(k);
    let mut rng = Rng::new(spec.seed);
    let mut w: Vec<f64> = draw(&mut rng, d);
    let mut adam = Adam {
        lr: spec.lr,
        m: vec![0.0; d],
        s: vec![0.0; d],
        t: 0,
    };
    let device = model.device();
    let mut losses = Vec::with_capacity(n);
    for step in 0..n {
        let t = step % train.groups.len();
        let group = &train.groups[t];
        let idx: Vec<usize> = (0..spec.batch)
            .map(|_| rng.below(group.pairs.len()))
            .collect();
        let len = norm(&w);
        let v: Vec<f64> = w.iter().map(|x| x / len).collect();
        let deltas: Vec<Vec<f64>> = idx.iter().map(|&i| train.delta(k, t, i)).collect();
        let coefs: Vec<f64> = deltas.iter().map(|dl| dot(dl, &v)).collect();
        let shifts: Vec<Vec<f32>> = coefs
            .iter()
            .map(|&c| v.iter().map(|&x| (c * x) as f32).collect())
            .collect();
        let pos = group.pos;
        // The shift is the leaf: its gradient is the loss's gradient at the patched activation.
        let leaf = shift_tensor(&shifts, pos, &device)
            .autodiff()
            .require_grad();
        let last = train.resumed_logits(model, t, &idx, hook, leaf.clone())?;
        let b = idx.len();
        let labels: Vec<i64> = idx.iter().map(|&i| group.pairs[i].subject as i64).collect();
        let labels = Tensor::<2, Int>::from_data(TensorData::new(labels, [b, 1]), &last.device());
        let loss = log_softmax(last, 1).gather(1, labels).mean().neg();
        let grads = loss.backward();
        losses.push(read_f32(loss.detach()).await?[0]);
        let g = leaf
            .grad(&grads)
            .ok_or_else(|| LabError::Spec(format!("no gradient reached {hook}")))?;
        let g = read_f32(
            g.slice(burn::tensor::s![.., pos - 1..pos, ..])
                .reshape([b, d]),
        )
        .await?;
        // x' = x + (δ·v) v: ∂L/∂v = Σ_b (δ_b·v) g_b + (g_b·v) δ_b; through v = w/|w|, the
        // component along v drops out and the rest is divided by |w|.
        let mut gv = vec![0f64; d];
        for (bi, (dl, &c)) in deltas.iter().zip(&coefs).enumerate() {
            let gb: Vec<f64> = g[bi * d..(bi + 1) * d].iter().map(|&x| x as f64).collect();
            let gdotv = dot(&gb, &v);
            for j in 0..d {
                gv[j] += c * gb[j] + gdotv * dl[j];
            }
        }
        let along = dot(&gv, &v);
        let gw: Vec<f64> = gv
            .iter()
            .zip(&v)
            .map(|(g, x)| (g - along * x) / len)
            .collect();
        adam.step(&mut w, &gw);
        if !progress(step + 1, n).await {
            return Err(LabError::Cancelled);
        }
    }
    let len = norm(&w);
    Ok((w.iter().map(|x| (x / len) as f32).collect(), losses))
}

#[cfg(not(feature = "train"))]
pub(super) async fn learn(
    _spec: &SubspaceSpec,
    _model: &Transformer,
    _train: &Cached,
    _hook: HookPoint,
    _n: usize,
    _progress: &mut dyn FnMut(usize, usize) -> Progress,
) -> Result<(Vec<f32>, Vec<f32>), LabError> {
    can_learn().map(|()| (Vec::new(), Vec::new()))
}

/// Learning needs autodiff: said before any forward run.
#[cfg(feature = "train")]
pub(super) fn can_learn() -> Result<(), LabError> {
    Ok(())
}

#[cfg(not(feature = "train"))]
pub(super) fn can_learn() -> Result<(), LabError> {
    Err(LabError::Spec(
        "learning a direction needs gradients, which this engine does not compute (it has no \
         autodiff): in the page the gradients engine did not start (run it again to retry); \
         `interplay run spec.json` learns it too"
            .into(),
    ))
}
