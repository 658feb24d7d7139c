//! Fine-tuning with Adam (standard or linearised), prediction and accuracy.

use super::*;

/// How to fine-tune.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainOptions {
    /// Passes over the data.
    pub epochs: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Examples per step.
    pub batch: usize,
    /// Seed of the example order.
    pub seed: u64,
    /// Train the linearised model around the starting point (tangent-space fine-tuning); the
    /// result is then evaluated and merged as a linearised model around that point.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub linearised: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 10,
            lr: 1e-3,
            batch: 32,
            seed: 0,
            linearised: false,
        }
    }
}

impl TrainOptions {
    /// Refuse settings that cannot train.
    pub fn check(&self) -> Result<(), LabError> {
        if !(1..=500).contains(&self.epochs) {
            return Err(LabError::Spec("epochs must be between 1 and 500".into()));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 1.0) {
            return Err(LabError::Spec("the learning rate must be in (0, 1]".into()));
        }
        if !(1..=4096).contains(&self.batch) {
            return Err(LabError::Spec(
                "the batch size must be between 1 and 4096".into(),
            ));
        }
        Ok(())
    }
}

impl TrainOptions {
    /// How the bundled base was trained (on [`Task::Digits`], from [`init_weights`]`(0)`).
    pub fn base() -> Self {
        Self {
            epochs: 20,
            lr: 1e-3,
            batch: 32,
            seed: 1,
            linearised: false,
        }
    }

    /// How each bundled fine-tune was trained from the base.
    pub fn fine_tune() -> Self {
        Self {
            epochs: 20,
            lr: 1e-3,
            batch: 32,
            seed: 2,
            linearised: false,
        }
    }

    /// How each bundled linearised fine-tune was trained: as [`TrainOptions::fine_tune`], in the
    /// tangent space of the base.
    pub fn linearised_fine_tune() -> Self {
        Self {
            linearised: true,
            ..Self::fine_tune()
        }
    }
}

/// The result of a fine-tune.
#[derive(Clone, Debug)]
pub struct Trained {
    /// The fine-tuned parameters.
    pub weights: Weights,
    /// Mean training loss of each epoch.
    pub losses: Vec<f64>,
}

/// Adam state of one parameter tensor.
pub(crate) struct Adam {
    m: Tensor<2>,
    v: Tensor<2>,
}

/// Where a fine-tune is, for progress reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainProgress {
    /// Steps done.
    pub step: usize,
    /// Steps in all.
    pub steps: usize,
    /// Epochs done.
    pub epoch: usize,
    /// At the end of an epoch: its mean loss.
    pub loss: Option<f64>,
}

/// Fine-tune `init` on `data` with Adam (β = 0.9, 0.999; ε = 1e-8) and minibatches in a seeded
/// order. `progress` is awaited after every step (so a page stays responsive while a GPU queue
/// fills) and, with the epoch's mean loss, after every epoch; resolving to `false` cancels
/// (`LabError::Cancelled`).
pub async fn train(
    device: &Device,
    init: &Weights,
    data: &Dataset,
    opts: &TrainOptions,
    progress: &mut dyn FnMut(TrainProgress) -> Progress,
) -> Result<Trained, LabError> {
    opts.check()?;
    if data.is_empty() {
        return Err(LabError::Spec("there is nothing to train on".into()));
    }
    let mut mlp = Mlp::upload_at(init, opts.linearised.then_some(init), device)?;
    let x_all = data.inputs(device);
    let y_all = data.one_hot(device);
    let mut adam: Vec<(Adam, Adam)> = mlp
        .layers
        .iter()
        .map(|(w, b)| {
            (
                Adam {
                    m: w.zeros_like(),
                    v: w.zeros_like(),
                },
                Adam {
                    m: b.zeros_like(),
                    v: b.zeros_like(),
                },
            )
        })
        .collect();
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    let mut rng = Rng::new(opts.seed);
    let mut step = 0i32;
    let steps = opts.epochs * data.len().div_ceil(opts.batch);
    let mut losses = Vec::with_capacity(opts.epochs);
    for epoch in 0..opts.epochs {
        let order = rng.permutation(data.len());
        let mut total = 0f64;
        let mut batches = 0usize;
        for chunk in order.chunks(opts.batch) {
            let idx: Vec<i64> = chunk.iter().map(|&i| i as i64).collect();
            let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [chunk.len()]), device);
            let x = x_all.clone().select(0, idx.clone());
            let y = y_all.clone().select(0, idx);
            let (loss, grads) = mlp.gradients(x, Some(y), Loss::CrossEntropy);
            batches += 1;
            step += 1;
            let c1 = 1.0 - b1.powi(step);
            let c2 = 1.0 - b2.powi(step);
            let lr = opts.lr * c2.sqrt() / c1;
            for ((p, state), g) in mlp.layers.iter_mut().zip(adam.iter_mut()).zip(grads) {
                for (param, st, grad) in
                    [(&mut p.0, &mut state.0, g.0), (&mut p.1, &mut state.1, g.1)]
                {
                    st.m = st.m.clone() * b1 + grad.clone() * (1.0 - b1);
                    st.v = st.v.clone() * b2 + grad.square() * (1.0 - b2);
                    // Adam with the bias corrections folded into the step size.
                    *param =
                        param.clone() - st.m.clone() / (st.v.clone().sqrt() + eps * c2.sqrt()) * lr;
                }
            }
            // Reading each step's loss waits for the device to finish the step: on WebGPU this
            // keeps the queue short, so the page (and its GPU process) stays responsive.
            total += read_f32(loss).await?[0] as f64;
            let at = TrainProgress {
                step: step as usize,
                steps,
                epoch,
                loss: None,
            };
            if !progress(at).await {
                return Err(LabError::Cancelled);
            }
        }
        let mean = total / batches.max(1) as f64;
        if !mean.is_finite() {
            return Err(LabError::Spec(
                "the loss became NaN or infinite: lower the learning rate".into(),
            ));
        }
        losses.push(mean);
        let at = TrainProgress {
            step: step as usize,
            steps,
            epoch: epoch + 1,
            loss: Some(mean),
        };
        if !progress(at).await {
            return Err(LabError::Cancelled);
        }
    }
    Ok(Trained {
        weights: mlp.download().await?,
        losses,
    })
}

/// Predicted class of every example.
///
/// # Shapes
/// - `x`: `[n, 64]`; returns `n` predictions
pub async fn predict(mlp: &Mlp, x: Tensor<2>) -> Result<Vec<u32>, LabError> {
    let logits = read_f32(mlp.forward(x)).await?;
    Ok(logits.chunks(CLASSES).map(argmax).collect())
}

/// Index of the largest value (first on ties).
pub(crate) fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// Fraction of `pred` equal to the labels.
pub fn accuracy(pred: &[u32], labels: &[u32]) -> f64 {
    let right = pred.iter().zip(labels).filter(|(p, y)| p == y).count();
    right as f64 / labels.len().max(1) as f64
}
