//! The Merge lab's bundled task suite: scikit-learn's digits (the UCI optdigits test set, 1797
//! 8×8 images with 17 grey levels, CC BY 4.0; `data/digits.u8`, 64 pixels then the label per
//! image) seen through five input transforms that share one ten-digit output space, so models
//! fine-tuned on different tasks can be merged weight by weight.
//!
//! The model is a three-layer ReLU MLP (64 → 128 → 128 → 10) with PyTorch `nn.Linear` names and
//! layout (`fc1.weight` is `[out, in]`). Forward, backward and Adam are written once as Burn
//! tensor code, so the same training runs natively, on the page's WebGPU device or on its CPU.
//! Gradients are written by hand (three layers) rather than through Burn's autodiff backend, which
//! would add a second backend to every build of the page; a finite-difference test checks them.
//!
//! Linearised (tangent-space) fine-tuning (Ortiz-Jiménez et al., 2023) trains the first-order
//! Taylor expansion of the network around the base, f(x; θ₀) + J(θ₀)(θ − θ₀): its forward pass is
//! a Jacobian-vector product written next to the forward pass, and its gradient is the base's own
//! backward pass, since the expansion's Jacobian is J(θ₀) whatever θ is.

use burn::tensor::{Device, Int, Tensor, TensorData, activation};
use interplay_models::device::read_f32;
use interplay_models::patching::Progress;
use interplay_models::weights::{HostTensor, Weights};
use serde::{Deserialize, Serialize};

use crate::LabError;

/// Input features: 8×8 pixels scaled to [0, 1].
pub const INPUTS: usize = 64;
/// Hidden width of both hidden layers.
pub const HIDDEN: usize = 128;
/// Output classes: the ten digits.
pub const CLASSES: usize = 10;
/// The layers: name, inputs, outputs. Parameters are `{name}.weight` `[out, in]` and
/// `{name}.bias` `[out]`.
pub const LAYERS: [(&str, usize, usize); 3] = [
    ("fc1", INPUTS, HIDDEN),
    ("fc2", HIDDEN, HIDDEN),
    ("head", HIDDEN, CLASSES),
];

static DIGITS: &[u8] = include_bytes!("../data/digits.u8");

/// One task of the suite: the digits under an input transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// The digits as scanned (the base model's pre-training task; the control task).
    Digits,
    /// Mirrored left to right.
    Mirror,
    /// Upside down (mirrored top to bottom).
    Flip,
    /// Rotated a quarter turn clockwise.
    Rotate,
    /// Ink and paper swapped (16 − pixel).
    Invert,
}

impl Task {
    /// Every task, base task first.
    pub const ALL: [Task; 5] = [
        Task::Digits,
        Task::Mirror,
        Task::Flip,
        Task::Rotate,
        Task::Invert,
    ];
    /// The tasks the bundled fine-tuned models were trained on.
    pub const FINE_TUNED: [Task; 4] = [Task::Mirror, Task::Flip, Task::Rotate, Task::Invert];

    /// The spec name.
    pub fn name(self) -> &'static str {
        match self {
            Task::Digits => "digits",
            Task::Mirror => "mirror",
            Task::Flip => "flip",
            Task::Rotate => "rotate",
            Task::Invert => "invert",
        }
    }

    /// One line for people.
    pub fn describe(self) -> &'static str {
        match self {
            Task::Digits => "digits as scanned",
            Task::Mirror => "digits mirrored left to right",
            Task::Flip => "digits upside down",
            Task::Rotate => "digits turned a quarter clockwise",
            Task::Invert => "digits with ink and paper swapped",
        }
    }

    /// Pixel (r, c) of the transformed image, in [0, 1].
    fn pixel(self, img: &[u8], r: usize, c: usize) -> f32 {
        let at = |r: usize, c: usize| f32::from(img[r * 8 + c]) / 16.0;
        match self {
            Task::Digits => at(r, c),
            Task::Mirror => at(r, 7 - c),
            Task::Flip => at(7 - r, c),
            Task::Rotate => at(7 - c, r),
            Task::Invert => 1.0 - at(r, c),
        }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Task {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self, LabError> {
        Task::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                LabError::Spec(format!(
                    "unknown task {s:?}: use digits, mirror, flip, rotate or invert"
                ))
            })
    }
}

/// Which part of the 1797 images: every fourth image is held out for evaluation (450), the rest
/// (1347) is for training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Images with index % 4 ≠ 0.
    Train,
    /// Images with index % 4 = 0.
    Test,
}

/// Labelled inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Inputs `[n, 64]`, row-major.
    pub x: Vec<f32>,
    /// Labels `[n]`, each < 10.
    pub y: Vec<u32>,
}

impl Dataset {
    /// A task's split of the bundled digits.
    pub fn task(task: Task, split: Split) -> Dataset {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (i, row) in DIGITS.chunks_exact(INPUTS + 1).enumerate() {
            if (i % 4 == 0) != (split == Split::Test) {
                continue;
            }
            for r in 0..8 {
                for c in 0..8 {
                    x.push(task.pixel(row, r, c));
                }
            }
            y.push(u32::from(row[INPUTS]));
        }
        Dataset { x, y }
    }

    /// A user's data: one example per line, 64 numbers (pixels 0..16, row by row) then the label
    /// 0..9, separated by commas or spaces; blank lines and lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<Dataset, LabError> {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|f| !f.is_empty())
                .collect();
            if fields.len() != INPUTS + 1 {
                return Err(LabError::Spec(format!(
                    "line {}: expected 64 pixel values and a label (65 numbers), found {}",
                    n + 1,
                    fields.len()
                )));
            }
            for f in &fields[..INPUTS] {
                let v: f32 = f.parse().map_err(|_| {
                    LabError::Spec(format!("line {}: {f:?} is not a number", n + 1))
                })?;
                if !(0.0..=16.0).contains(&v) {
                    return Err(LabError::Spec(format!(
                        "line {}: pixel {v} is outside 0..16",
                        n + 1
                    )));
                }
                x.push(v / 16.0);
            }
            let label: u32 = fields[INPUTS]
                .parse()
                .ok()
                .filter(|l| *l < CLASSES as u32)
                .ok_or_else(|| {
                    LabError::Spec(format!(
                        "line {}: the label {:?} is not a digit 0..9",
                        n + 1,
                        fields[INPUTS]
                    ))
                })?;
            y.push(label);
        }
        if y.is_empty() {
            return Err(LabError::Spec(
                "the data has no examples: paste lines of 64 pixels and a label".into(),
            ));
        }
        Ok(Dataset { x, y })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The first `per_class` examples of each class (few-shot subsets).
    pub fn per_class(&self, per_class: usize) -> Dataset {
        let mut seen = [0usize; CLASSES];
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (i, &l) in self.y.iter().enumerate() {
            if seen[l as usize] < per_class {
                seen[l as usize] += 1;
                x.extend_from_slice(&self.x[i * INPUTS..(i + 1) * INPUTS]);
                y.push(l);
            }
        }
        Dataset { x, y }
    }

    /// Inputs on the device.
    ///
    /// # Shapes
    /// - returns `[n, 64]`
    pub fn inputs(&self, device: &Device) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(self.x.clone(), [self.len(), INPUTS]),
            device,
        )
    }

    /// One-hot labels on the device.
    ///
    /// # Shapes
    /// - returns `[n, 10]`
    fn one_hot(&self, device: &Device) -> Tensor<2> {
        let mut v = vec![0f32; self.len() * CLASSES];
        for (i, &l) in self.y.iter().enumerate() {
            v[i * CLASSES + l as usize] = 1.0;
        }
        Tensor::from_data(TensorData::new(v, [self.len(), CLASSES]), device)
    }
}

/// Parameter names in order (`fc1.weight`, `fc1.bias`, ...).
pub fn parameter_names() -> Vec<String> {
    LAYERS
        .iter()
        .flat_map(|(n, _, _)| [format!("{n}.weight"), format!("{n}.bias")])
        .collect()
}

/// PyTorch's `nn.Linear` initialisation (uniform ±1/√in for weights and biases), seeded.
pub fn init_weights(seed: u64) -> Weights {
    let mut rng = SplitMix(seed);
    let mut w = Weights::new();
    for (name, fan_in, out) in LAYERS {
        let bound = 1.0 / (fan_in as f64).sqrt();
        let mut draw = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| ((rng.next() * 2.0 - 1.0) * bound) as f32)
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

/// A small seeded generator (SplitMix64) for initialisation and shuffling.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    /// Uniform in [0, 1).
    pub(crate) fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniformly shuffled 0..n.
    fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = ((self.next() * (i + 1) as f64) as usize).min(i);
            p.swap(i, j);
        }
        p
    }
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
struct Cache {
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
    fn forward_cached(&self, x: Tensor<2>) -> (Tensor<2>, Cache) {
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
    fn forward_linear(&self, at: &Mlp, x: Tensor<2>) -> (Tensor<2>, Cache) {
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

    fn forward_plain(&self, x: Tensor<2>) -> (Tensor<2>, Cache) {
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
    fn backward(&self, cache: Cache, mut dz: Tensor<2>) -> Vec<(Tensor<2>, Tensor<2>)> {
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
fn cross_entropy(logits: Tensor<2>, one_hot: Tensor<2>) -> (Tensor<1>, Tensor<2>) {
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
struct Adam {
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
    let mut rng = SplitMix(opts.seed);
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

/// The bundled models: the base (trained on [`Task::Digits`]) and one fine-tune per
/// [`Task::FINE_TUNED`], trained by `interplay train-suite` (see `suite/README.md`).
pub fn bundled(task: Option<Task>) -> Result<Weights, LabError> {
    let bytes: &[u8] = match task {
        None | Some(Task::Digits) => include_bytes!("../suite/base.safetensors"),
        Some(Task::Mirror) => include_bytes!("../suite/mirror.safetensors"),
        Some(Task::Flip) => include_bytes!("../suite/flip.safetensors"),
        Some(Task::Rotate) => include_bytes!("../suite/rotate.safetensors"),
        Some(Task::Invert) => include_bytes!("../suite/invert.safetensors"),
    };
    Ok(interplay_models::safetensors::read_safetensors(bytes)?)
}

/// The bundled linearised fine-tunes (tangent space of the base, [`TrainOptions::linearised_fine_tune`]),
/// one per [`Task::FINE_TUNED`], trained by `interplay train-suite`. They are meant to be run as
/// linearised models around the base ([`Mlp::upload_at`]).
pub fn bundled_linearised(task: Task) -> Result<Weights, LabError> {
    let bytes: &[u8] = match task {
        Task::Digits => {
            return Err(LabError::Spec(format!(
                "{task} is the base model's own task: there is no fine-tune for it"
            )));
        }
        Task::Mirror => include_bytes!("../suite/linearised/mirror.safetensors"),
        Task::Flip => include_bytes!("../suite/linearised/flip.safetensors"),
        Task::Rotate => include_bytes!("../suite/linearised/rotate.safetensors"),
        Task::Invert => include_bytes!("../suite/linearised/invert.safetensors"),
    };
    Ok(interplay_models::safetensors::read_safetensors(bytes)?)
}

/// A bundled fine-tune, standard or linearised.
pub fn bundled_fine_tune(task: Task, linearised: bool) -> Result<Weights, LabError> {
    if linearised {
        bundled_linearised(task)
    } else {
        bundled(Some(task))
    }
}

/// Weights as safetensors bytes (suite parameter order).
pub fn to_safetensors(w: &Weights) -> Result<Vec<u8>, LabError> {
    check_weights(w)?;
    let names = parameter_names();
    let tensors: Vec<(String, &HostTensor)> = names.iter().map(|n| (n.clone(), &w[n])).collect();
    Ok(interplay_models::safetensors::write_safetensors(&tensors))
}

/// Every task's test split, stacked so a model is scored on all of them in one pass (one
/// dispatch chain and one readback instead of one per task: readbacks dominate on WebGPU).
#[derive(Clone, Debug)]
pub struct TestSets {
    /// Inputs of [`Task::ALL`] in order, `[5 · 450, 64]`.
    x: Tensor<2>,
    /// Labels per task, in [`Task::ALL`] order.
    y: Vec<Vec<u32>>,
}

/// Every task's test inputs on the device with their labels.
pub fn test_sets(device: &Device) -> TestSets {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for t in Task::ALL {
        let d = Dataset::task(t, Split::Test);
        x.extend(d.x);
        y.push(d.y);
    }
    let n = x.len() / INPUTS;
    TestSets {
        x: Tensor::from_data(TensorData::new(x, [n, INPUTS]), device),
        y,
    }
}

/// Accuracy of `w` on every task's test split, in [`Task::ALL`] order; with `at`, of `w` as a
/// linearised model around `at`.
pub async fn evaluate(
    device: &Device,
    w: &Weights,
    at: Option<&Weights>,
    tests: &TestSets,
) -> Result<Vec<f64>, LabError> {
    let mlp = Mlp::upload_at(w, at, device)?;
    let pred = predict(&mlp, tests.x.clone()).await?;
    let mut at = 0;
    Ok(tests
        .y
        .iter()
        .map(|y| {
            let acc = accuracy(&pred[at..at + y.len()], y);
            at += y.len();
            acc
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use interplay_models::patching::no_progress;
    use std::collections::BTreeMap;

    #[test]
    fn splits_and_transforms() {
        let train = Dataset::task(Task::Digits, Split::Train);
        let test = Dataset::task(Task::Digits, Split::Test);
        assert_eq!((train.len(), test.len()), (1347, 450));
        let m = Dataset::task(Task::Mirror, Split::Test);
        let r = Dataset::task(Task::Rotate, Split::Test);
        let inv = Dataset::task(Task::Invert, Split::Test);
        assert_eq!(m.y, test.y);
        // Row 0 of image 0 mirrored; rotating puts the bottom-left pixel at the top-left.
        assert_eq!(m.x[0], test.x[7]);
        assert_eq!(r.x[0], test.x[56]);
        assert!((inv.x[3] - (1.0 - test.x[3])).abs() < 1e-7);
    }

    /// The loss in float64 on the host: an independent reference for the device code.
    fn host_loss(w: &BTreeMap<String, Vec<f64>>, data: &Dataset, loss: Loss) -> f64 {
        let mut total = 0.0;
        for (k, &label) in data.y.iter().enumerate() {
            let mut h: Vec<f64> = data.x[k * INPUTS..(k + 1) * INPUTS]
                .iter()
                .map(|v| *v as f64)
                .collect();
            for (li, (name, fan_in, out)) in LAYERS.iter().enumerate() {
                let wt = &w[&format!("{name}.weight")];
                let b = &w[&format!("{name}.bias")];
                let mut z: Vec<f64> = (0..*out)
                    .map(|o| b[o] + (0..*fan_in).map(|i| wt[o * fan_in + i] * h[i]).sum::<f64>())
                    .collect();
                if li + 1 < LAYERS.len() {
                    z.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                h = z;
            }
            let m = h.iter().cloned().fold(f64::MIN, f64::max);
            let lse = m + h.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            total += match loss {
                Loss::CrossEntropy => lse - h[label as usize],
                Loss::Entropy => -h.iter().map(|v| (v - lse).exp() * (v - lse)).sum::<f64>(),
            };
        }
        total / data.len() as f64
    }

    #[test]
    fn gradients_match_float64_finite_differences() {
        let device = Device::flex();
        let w = init_weights(3);
        let w64: BTreeMap<String, Vec<f64>> = w
            .iter()
            .map(|(k, t)| (k.clone(), t.data.iter().map(|v| *v as f64).collect()))
            .collect();
        let data = Dataset::task(Task::Digits, Split::Test).per_class(2);
        for loss in [Loss::CrossEntropy, Loss::Entropy] {
            let mlp = Mlp::upload(&w, &device).unwrap();
            let (value, grads) =
                mlp.gradients(data.inputs(&device), Some(data.one_hot(&device)), loss);
            let value = pollster::block_on(read_f32(value)).unwrap()[0] as f64;
            let reference = host_loss(&w64, &data, loss);
            assert!((value - reference).abs() < 1e-5 * reference.abs().max(1.0));
            for (li, (name, _, _)) in LAYERS.iter().enumerate() {
                let g = pollster::block_on(read_f32(grads[li].0.clone())).unwrap();
                let key = format!("{name}.weight");
                let mut rng = SplitMix(li as u64);
                for _ in 0..6 {
                    let j = (rng.next() * g.len() as f64) as usize;
                    let h = 1e-6;
                    let mut plus = w64.clone();
                    plus.get_mut(&key).unwrap()[j] += h;
                    let mut minus = w64.clone();
                    minus.get_mut(&key).unwrap()[j] -= h;
                    let fd = (host_loss(&plus, &data, loss) - host_loss(&minus, &data, loss))
                        / (2.0 * h);
                    assert!(
                        (fd - g[j] as f64).abs() < 1e-4 * fd.abs().max(1e-2),
                        "{loss:?} {key}[{j}]: float64 {fd} vs device {}",
                        g[j]
                    );
                }
            }
        }
    }

    #[test]
    fn the_linearised_model_is_the_first_order_expansion() {
        let device = Device::flex();
        let base = bundled(None).unwrap();
        let x = Dataset::task(Task::Mirror, Split::Test)
            .per_class(3)
            .inputs(&device);
        let shifted = |scale: f32| -> Weights {
            base.iter()
                .map(|(k, t)| {
                    let mut t = t.clone();
                    for (i, v) in t.data.iter_mut().enumerate() {
                        *v += scale * (((i * 7919) % 13) as f32 - 6.0) / 6.0;
                    }
                    (k.clone(), t)
                })
                .collect()
        };
        let logits = |w: &Weights, at: Option<&Weights>| {
            let mlp = Mlp::upload_at(w, at, &device).unwrap();
            pollster::block_on(read_f32(mlp.forward(x.clone()))).unwrap()
        };
        let f0 = logits(&base, None);
        let max_diff = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max)
        };
        // At θ₀ it is the network.
        assert!(max_diff(&logits(&base, Some(&base)), &f0) < 1e-5);
        // Affine in θ: f(θ₀ + 2Δ) − f₀ = 2 (f(θ₀ + Δ) − f₀).
        let (l1, l2) = (
            logits(&shifted(0.01), Some(&base)),
            logits(&shifted(0.02), Some(&base)),
        );
        let twice: Vec<f32> = l1.iter().zip(&f0).map(|(a, b)| 2.0 * (a - b)).collect();
        let got: Vec<f32> = l2.iter().zip(&f0).map(|(a, b)| a - b).collect();
        assert!(max_diff(&got, &twice) < 1e-4, "{}", max_diff(&got, &twice));
        // First order: for a small step it agrees with the network to second order.
        let (lin, net) = (
            logits(&shifted(1e-3), Some(&base)),
            logits(&shifted(1e-3), None),
        );
        let step = max_diff(&net, &f0);
        assert!(
            step > 1e-3 && max_diff(&lin, &net) < 0.05 * step,
            "{} vs {step}",
            max_diff(&lin, &net)
        );
        // Its gradient is the base's gradient at θ₀, wherever θ is.
        let y = Dataset::task(Task::Mirror, Split::Test)
            .per_class(3)
            .one_hot(&device);
        let g_base = Mlp::upload(&base, &device)
            .unwrap()
            .gradients(x.clone(), Some(y.clone()), Loss::Entropy)
            .1;
        let g_lin = Mlp::upload_at(&base, Some(&base), &device)
            .unwrap()
            .gradients(x.clone(), Some(y), Loss::Entropy)
            .1;
        for (a, b) in g_base.into_iter().zip(g_lin) {
            let (a, b) = (
                pollster::block_on(read_f32(a.0)).unwrap(),
                pollster::block_on(read_f32(b.0)).unwrap(),
            );
            assert!(max_diff(&a, &b) < 1e-6);
        }
    }

    #[test]
    fn training_lowers_the_loss_and_cancels() {
        let device = Device::flex();
        let data = Dataset::task(Task::Mirror, Split::Train).per_class(20);
        let opts = TrainOptions {
            epochs: 5,
            ..TrainOptions::default()
        };
        let base = bundled(None).unwrap();
        let t = pollster::block_on(train(&device, &base, &data, &opts, &mut |_| {
            no_progress(0, 0)
        }))
        .unwrap();
        assert!(t.losses[4] < t.losses[0] * 0.7, "{:?}", t.losses);
        let mut cancel = |p: TrainProgress| -> Progress { Box::pin(async move { p.epoch < 2 }) };
        let r = pollster::block_on(train(&device, &base, &data, &opts, &mut cancel));
        assert!(matches!(r, Err(LabError::Cancelled)));
    }

    #[test]
    fn user_data_is_checked() {
        let line = format!("{} 7", vec!["16"; 64].join(","));
        let d = Dataset::parse(&format!("# mine\n{line}\n\n")).unwrap();
        assert_eq!((d.len(), d.y[0], d.x[0]), (1, 7, 1.0));
        assert!(
            Dataset::parse("1,2,3")
                .unwrap_err()
                .to_string()
                .contains("65 numbers")
        );
        let bad = format!("{} 12", vec!["1"; 64].join(","));
        assert!(
            Dataset::parse(&bad)
                .unwrap_err()
                .to_string()
                .contains("not a digit")
        );
        assert!(Dataset::parse("").is_err());
    }
}
