//! Learned merge coefficients: AdaMerging's entropy minimisation and aTLAS-style coefficients
//! from a few labels, task-wise or per parameter block.

use super::*;

/// The merged tasks' test inputs, stacked.
///
/// # Shapes
/// - returns `[450 · tasks, 64]`
pub(super) fn unlabeled_inputs(device: &Device, tasks: &[Task]) -> Result<Tensor<2>, LabError> {
    let mut x = Vec::new();
    for t in tasks {
        x.extend(Dataset::task(*t, Split::Test)?.x);
    }
    let n = x.len() / suite::INPUTS;
    Ok(Tensor::from_data(
        TensorData::new(x, [n, suite::INPUTS]),
        device,
    ))
}

/// Index of the coefficient group of parameter tensor `i` (suite order: fc1.weight, fc1.bias,
/// fc2.weight, ...).
pub(super) fn group_of(granularity: Granularity, i: usize) -> usize {
    match granularity {
        Granularity::TaskWise => 0,
        Granularity::LayerWise => i / 2,
        Granularity::BlockWise => i,
    }
}

/// Names of the coefficient groups.
pub(super) fn group_names(granularity: Granularity) -> Vec<String> {
    match granularity {
        Granularity::TaskWise => vec!["all parameters".into()],
        Granularity::LayerWise => LAYERS.iter().map(|(n, _, _)| n.to_string()).collect(),
        Granularity::BlockWise => suite::parameter_names(),
    }
}

/// A host tensor on the device as rank 2 (biases as `[1, out]`).
pub(super) fn upload2(t: &HostTensor, device: &Device) -> Tensor<2> {
    let shape = match t.shape.as_slice() {
        [r, c] => [*r, *c],
        _ => [1, t.data.len()],
    };
    Tensor::from_data(TensorData::new(t.data.clone(), shape), device)
}

/// The learned-coefficient problem: θ(λ) = base + Σₖ λₖ,g τₖ,g over the parameter groups of a
/// [`Granularity`], and the loss the coefficients minimise on the tasks' data.
pub(super) struct Coefficients {
    granularity: Granularity,
    tasks: usize,
    /// `[tensor]`, suite order, each rank 2 (biases `[1, out]`).
    base: Vec<Tensor<2>>,
    /// `[task][tensor]`, shaped as `base`.
    vectors: Vec<Vec<Tensor<2>>>,
    /// `[examples, 64]`.
    x: Tensor<2>,
    /// `[examples, 10]` one-hot labels (few-shot only).
    y: Option<Tensor<2>>,
    loss: Loss,
    /// The base network for linearised models.
    at: Option<Box<Mlp>>,
}

impl Coefficients {
    /// The problem for `models` (fine-tunes of `base` on `tasks`) under `spec.adamerging`.
    pub(super) fn new(
        device: &Device,
        base: &Weights,
        models: &[Weights],
        tasks: &[Task],
        spec: &MergeSpec,
    ) -> Result<Self, LabError> {
        let opts = &spec.adamerging;
        let names = suite::parameter_names();
        let tvs = merge::task_vectors(base, models)?;
        // Linearised: the gradient is the base's backward pass (see `suite`).
        let at = if spec.fine_tuning.linearised() {
            Some(Box::new(Mlp::upload(base, device)?))
        } else {
            None
        };
        let base_t: Vec<Tensor<2>> = names.iter().map(|n| upload2(&base[n], device)).collect();
        let vectors: Vec<Vec<Tensor<2>>> = tvs
            .iter()
            .map(|tv| {
                names
                    .iter()
                    .map(|n| {
                        upload2(
                            &HostTensor {
                                shape: base[n].shape.clone(),
                                data: tv[n].clone(),
                            },
                            device,
                        )
                    })
                    .collect()
            })
            .collect();
        let (x, y, loss) = match opts.objective {
            Objective::Entropy => (unlabeled_inputs(device, tasks)?, None, Loss::Entropy),
            Objective::FewShot => {
                let mut d = Dataset {
                    x: Vec::new(),
                    y: Vec::new(),
                };
                for t in tasks {
                    let s = Dataset::task(*t, Split::Train)?.per_class(opts.shots);
                    d.x.extend(s.x);
                    d.y.extend(s.y);
                }
                let mut oh = vec![0f32; d.len() * suite::CLASSES];
                for (i, l) in d.y.iter().enumerate() {
                    oh[i * suite::CLASSES + *l as usize] = 1.0;
                }
                let oh = Tensor::from_data(TensorData::new(oh, [d.len(), suite::CLASSES]), device);
                (d.inputs(device), Some(oh), Loss::CrossEntropy)
            }
        };
        Ok(Self {
            granularity: opts.granularity,
            tasks: models.len(),
            base: base_t,
            vectors,
            x,
            y,
            loss,
            at,
        })
    }

    /// Coefficients per task (`groups()` each).
    pub(super) fn groups(&self) -> usize {
        group_names(self.granularity).len()
    }

    /// θ(λ) for `lambda` (`[task · groups + group]`), one tensor per parameter in suite order,
    /// each shaped as the base's (weights `[out, in]`, biases `[1, out]`).
    pub(super) fn params(&self, lambda: &[f64]) -> Vec<Tensor<2>> {
        let g = self.groups();
        (0..self.base.len())
            .map(|i| {
                let mut p = self.base[i].clone();
                for (task, tv) in self.vectors.iter().enumerate() {
                    p = p + tv[i].clone() * lambda[task * g + group_of(self.granularity, i)];
                }
                p
            })
            .collect()
    }

    /// The loss at `lambda` and ∂L/∂λₖ,g = Σ_{tensors in g} ⟨∂L/∂θ, τₖ⟩, in `lambda`'s layout.
    /// One readback.
    pub(super) async fn loss_and_gradient(
        &self,
        lambda: &[f64],
    ) -> Result<(f64, Vec<f64>), LabError> {
        let p = self.params(lambda);
        let mlp = Mlp {
            layers: p.chunks(2).map(|c| (c[0].clone(), c[1].clone())).collect(),
            at: self.at.clone(),
        };
        let (value, grads) = mlp.gradients(self.x.clone(), self.y.clone(), self.loss);
        let flat: Vec<Tensor<2>> = grads.into_iter().flat_map(|(w, b)| [w, b]).collect();
        let mut parts = vec![value];
        for tv in &self.vectors {
            for (gr, t) in flat.iter().zip(tv) {
                parts.push((gr.clone() * t.clone()).sum());
            }
        }
        let read = read_f32(Tensor::cat(parts, 0)).await?;
        let (n, g) = (self.base.len(), self.groups());
        let mut grad = vec![0f64; self.tasks * g];
        for task in 0..self.tasks {
            for i in 0..n {
                grad[task * g + group_of(self.granularity, i)] += read[1 + task * n + i] as f64;
            }
        }
        Ok((read[0] as f64, grad))
    }
}

/// Learn merge coefficients by gradient descent (Adam, full batch), clamped to [0, 1] as in
/// AdaMerging.
pub(super) async fn adamerge(
    device: &Device,
    base: &Weights,
    models: &[Weights],
    tasks: &[Task],
    spec: &MergeSpec,
    tick: &mut impl AsyncFnMut(usize) -> Result<(), LabError>,
) -> Result<(Weights, Learned), LabError> {
    let opts = &spec.adamerging;
    let names = suite::parameter_names();
    let problem = Coefficients::new(device, base, models, tasks, spec)?;
    let groups = group_names(opts.granularity);
    let (k, g) = (tasks.len(), groups.len());
    let mut lambda = vec![spec.lambda.clamp(0.0, 1.0); k * g];
    let (mut m, mut v) = (vec![0f64; k * g], vec![0f64; k * g]);
    let mut losses = Vec::with_capacity(opts.steps);
    for step in 1..=opts.steps {
        let (loss, grad) = problem.loss_and_gradient(&lambda).await?;
        losses.push(loss);
        let (b1, b2) = (0.9f64, 0.999f64);
        for j in 0..k * g {
            m[j] = b1 * m[j] + (1.0 - b1) * grad[j];
            v[j] = b2 * v[j] + (1.0 - b2) * grad[j] * grad[j];
            let mh = m[j] / (1.0 - b1.powi(step as i32));
            let vh = v[j] / (1.0 - b2.powi(step as i32));
            lambda[j] = (lambda[j] - opts.lr * mh / (vh.sqrt() + 1e-8)).clamp(0.0, 1.0);
        }
        if !losses[losses.len() - 1].is_finite() {
            return Err(LabError::Spec(
                "the AdaMerging loss became NaN: lower its learning rate".into(),
            ));
        }
        tick(1).await?;
    }
    let p = problem.params(&lambda);
    let mut w = Weights::new();
    for (i, n) in names.iter().enumerate() {
        w.insert(
            n.clone(),
            HostTensor {
                shape: base[n].shape.clone(),
                data: read_f32(p[i].clone()).await?,
            },
        );
    }
    Ok((
        w,
        Learned {
            groups,
            coefficients: lambda.chunks(g).map(<[f64]>::to_vec).collect(),
            losses,
        },
    ))
}
