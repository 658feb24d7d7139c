//! The MLP: initialisation, forward and hand-written backward passes, the linearised model,
//! losses.

use super::*;

/// Parameter names in order (`fc1.weight`, `fc1.bias`, ...).
pub fn parameter_names() -> Vec<String> {
    LAYERS
        .iter()
        .flat_map(|(n, _, _)| [format!("{n}.weight"), format!("{n}.bias")])
        .collect()
}

/// PyTorch's `nn.Linear` initialisation (uniform ±1/√in for weights and biases), seeded.
pub fn init_weights(seed: u64) -> Weights {
    let mut rng = Rng::new(seed);
    let mut w = Weights::new();
    for (name, fan_in, out) in LAYERS {
        let bound = 1.0 / (fan_in as f64).sqrt();
        let mut draw = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
                .collect()
        };
        let weight = draw(out * fan_in);
        let bias = draw(out);
        w.insert(
            format!("{name}.weight"),
            HostTensor {
                shape: vec![out, fan_in],
                data: weight,
            },
        );
        w.insert(
            format!("{name}.bias"),
            HostTensor {
                shape: vec![out],
                data: bias,
            },
        );
    }
    w
}

/// The MLP's parameters on a device: per layer (weight `[out, in]`, bias `[1, out]`), and for a
/// linearised model the point it is expanded around.
#[derive(Clone, Debug)]
pub struct Mlp {
    /// Per layer: weight `[out, in]` and bias `[1, out]`.
    pub layers: Vec<(Tensor<2>, Tensor<2>)>,
    /// Linearised models: θ₀, the parameters the network is expanded around (the base).
    pub at: Option<Box<Mlp>>,
}

/// What a forward pass keeps for the backward pass.
pub(crate) struct Cache {
    /// Input of each layer, `[n, in]`.
    inputs: Vec<Tensor<2>>,
    /// Pre-activation of each hidden layer, `[n, out]`.
    pre: Vec<Tensor<2>>,
}

impl Mlp {
    /// Upload checked weights (every `LAYERS` parameter with its shape, finite values).
    pub fn upload(w: &Weights, device: &Device) -> Result<Mlp, LabError> {
        check_weights(w)?;
        let layers = LAYERS
            .iter()
            .map(|(name, fan_in, out)| {
                let wt = &w[&format!("{name}.weight")];
                let b = &w[&format!("{name}.bias")];
                (
                    Tensor::from_data(TensorData::new(wt.data.clone(), [*out, *fan_in]), device),
                    Tensor::from_data(TensorData::new(b.data.clone(), [1, *out]), device),
                )
            })
            .collect();
        Ok(Mlp { layers, at: None })
    }

    /// `w` as a linearised model around `base`, or as itself when `base` is `None`.
    pub fn upload_at(
        w: &Weights,
        base: Option<&Weights>,
        device: &Device,
    ) -> Result<Mlp, LabError> {
        let mut mlp = Mlp::upload(w, device)?;
        if let Some(b) = base {
            mlp.at = Some(Box::new(Mlp::upload(b, device)?));
        }
        Ok(mlp)
    }

    /// Logits.
    ///
    /// # Shapes
    /// - `x`: `[n, 64]`; returns `[n, 10]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.forward_cached(x).0
    }

    /// Logits and what the backward pass needs. A linearised model keeps θ₀'s activations: its
    /// gradient is θ₀'s backward pass.
    pub(crate) fn forward_cached(&self, x: Tensor<2>) -> (Tensor<2>, Cache) {
        match &self.at {
            Some(at) => self.forward_linear(at, x),
            None => self.forward_plain(x),
        }
    }

    /// f(x; θ₀) + J(θ₀)·(θ − θ₀), the JVP carried layer by layer beside θ₀'s forward pass:
    /// z = h W₀ᵀ + b₀, dz = h dWᵀ + dh W₀ᵀ + db, h' = relu(z), dh' = dz ⊙ 1[z > 0].
    ///
    /// # Shapes
    /// - `x`: `[n, 64]`; returns `[n, 10]` and θ₀'s cache
    pub(crate) fn forward_linear(&self, at: &Mlp, x: Tensor<2>) -> (Tensor<2>, Cache) {
        let mut cache = Cache {
            inputs: Vec::new(),
            pre: Vec::new(),
        };
        let mut h = x;
        let mut dh: Option<Tensor<2>> = None; // the input does not move
        let last = self.layers.len() - 1;
        for (i, ((w0, b0), (w, b))) in at.layers.iter().zip(&self.layers).enumerate() {
            cache.inputs.push(h.clone());
            let z = h.clone().matmul(w0.clone().transpose()) + b0.clone();
            let mut dz = h.matmul((w.clone() - w0.clone()).transpose()) + (b.clone() - b0.clone());
            if let Some(d) = dh {
                dz = dz + d.matmul(w0.clone().transpose());
            }
            if i == last {
                return (z + dz, cache);
            }
            let mask = z.clone().greater_elem(0.0).float();
            cache.pre.push(z.clone());
            dh = Some(dz * mask);
            h = activation::relu(z);
        }
        unreachable!("LAYERS is not empty")
    }

    pub(crate) fn forward_plain(&self, x: Tensor<2>) -> (Tensor<2>, Cache) {
        let mut cache = Cache {
            inputs: Vec::new(),
            pre: Vec::new(),
        };
        let mut h = x;
        let last = self.layers.len() - 1;
        for (i, (w, b)) in self.layers.iter().enumerate() {
            cache.inputs.push(h.clone());
            let z = h.matmul(w.clone().transpose()) + b.clone();
            if i == last {
                return (z, cache);
            }
            cache.pre.push(z.clone());
            h = activation::relu(z);
        }
        unreachable!("LAYERS is not empty")
    }

    /// Gradients of a loss with respect to every parameter, given its gradient at the logits.
    ///
    /// # Shapes
    /// - `dz`: `[n, 10]`; returns per layer (weight `[out, in]`, bias `[1, out]`)
    pub(crate) fn backward(&self, cache: Cache, mut dz: Tensor<2>) -> Vec<(Tensor<2>, Tensor<2>)> {
        if let Some(at) = &self.at {
            return at.backward(cache, dz);
        }
        let mut grads = Vec::with_capacity(self.layers.len());
        for i in (0..self.layers.len()).rev() {
            let input = &cache.inputs[i];
            let dw = dz.clone().transpose().matmul(input.clone());
            let db = dz.clone().sum_dim(0);
            if i > 0 {
                let mask = cache.pre[i - 1].clone().greater_elem(0.0).float();
                dz = dz.matmul(self.layers[i].0.clone()) * mask;
            }
            grads.push((dw, db));
        }
        grads.reverse();
        grads
    }

    /// Read the parameters back to the host.
    pub async fn download(&self) -> Result<Weights, LabError> {
        let mut w = Weights::new();
        for ((name, fan_in, out), (wt, b)) in LAYERS.iter().zip(&self.layers) {
            w.insert(
                format!("{name}.weight"),
                HostTensor {
                    shape: vec![*out, *fan_in],
                    data: read_f32(wt.clone()).await?,
                },
            );
            w.insert(
                format!("{name}.bias"),
                HostTensor {
                    shape: vec![*out],
                    data: read_f32(b.clone()).await?,
                },
            );
        }
        Ok(w)
    }
}

/// Check that `w` is a suite MLP: every parameter present with its shape, values finite.
pub fn check_weights(w: &Weights) -> Result<(), LabError> {
    for (name, fan_in, out) in LAYERS {
        for (key, shape) in [
            (format!("{name}.weight"), vec![out, fan_in]),
            (format!("{name}.bias"), vec![out]),
        ] {
            let t = w.get(&key).ok_or_else(|| {
                LabError::Spec(format!(
                    "the model has no {key:?}: the Merge lab runs the suite's 64-128-128-10 MLP"
                ))
            })?;
            if t.shape != shape {
                return Err(LabError::Spec(format!(
                    "{key:?} has shape {:?}, the suite's MLP needs {shape:?}",
                    t.shape
                )));
            }
            if t.data.iter().any(|v| !v.is_finite()) {
                return Err(LabError::Spec(format!(
                    "{key:?} holds NaN or infinite values"
                )));
            }
        }
    }
    Ok(())
}

/// Mean cross-entropy and its gradient at the logits.
///
/// # Shapes
/// - `logits`, `one_hot`: `[n, 10]`; returns (`[1]` loss, `[n, 10]` gradient)
pub(crate) fn cross_entropy(logits: Tensor<2>, one_hot: Tensor<2>) -> (Tensor<1>, Tensor<2>) {
    let n = logits.dims()[0] as f64;
    let logp = activation::log_softmax(logits, 1);
    let loss = (logp.clone() * one_hot.clone()).sum().neg() / n;
    let grad = (logp.exp() - one_hot) / n;
    (loss, grad)
}

/// Mean prediction entropy and its gradient at the logits (AdaMerging's unsupervised loss):
/// H = −Σ p log p, ∂H/∂zⱼ = −pⱼ (log pⱼ + H).
///
/// # Shapes
/// - `logits`: `[n, 10]`; returns (`[1]` loss, `[n, 10]` gradient)
pub(crate) fn entropy(logits: Tensor<2>) -> (Tensor<1>, Tensor<2>) {
    let n = logits.dims()[0] as f64;
    let logp = activation::log_softmax(logits, 1);
    let p = logp.clone().exp();
    let h = (p.clone() * logp.clone()).sum_dim(1).neg(); // [n, 1]
    let grad = (p * (logp + h.clone())).neg() / n;
    (h.sum() / n, grad)
}

/// Loss at the logits used for learning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Loss {
    /// Cross-entropy against labels.
    CrossEntropy,
    /// Prediction entropy (no labels).
    Entropy,
}

impl Mlp {
    /// Loss and parameter gradients on a batch.
    ///
    /// # Shapes
    /// - `x`: `[n, 64]`, `one_hot`: `[n, 10]` (ignored for entropy); returns (`[1]`, per layer
    ///   (`[out, in]`, `[1, out]`))
    pub(crate) fn gradients(
        &self,
        x: Tensor<2>,
        one_hot: Option<Tensor<2>>,
        loss: Loss,
    ) -> (Tensor<1>, Vec<(Tensor<2>, Tensor<2>)>) {
        let (logits, cache) = self.forward_cached(x);
        let (value, dz) = match (loss, one_hot) {
            (Loss::CrossEntropy, Some(t)) => cross_entropy(logits, t),
            _ => entropy(logits),
        };
        (value, self.backward(cache, dz))
    }
}
