//! Training a GPT-2-family [`Transformer`] from scratch with Burn's autodiff (feature `train`:
//! the CLI, and the page's gradients engine, loaded only when an experiment needs gradients, so
//! the default engine stays without autodiff). The Circuits lab's bundled models are made with
//! this (`interplay_lab::bundled`), and the clamped-training experiment trains with it in the
//! page (`interplay_lab::clamp`).
//!
//! The model is the same [`Transformer`] the page runs, built on an autodiff device, so what is
//! trained is exactly what is later loaded. Parameters are updated by AdamW written here over the
//! module's named parameters (a [`ModuleMapper`]), which lets some parameters be frozen: an
//! attention-only model is a GPT-2 whose MLP weights are zero and stay zero, so Hugging Face's
//! `GPT2LMHeadModel` loads it unchanged.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::{Arch, TransformerConfig};
use crate::device::read_f32;
use crate::error::{ModelError, Result};
use crate::hooks::HookPlan;
use crate::transformer::Transformer;
use crate::weights::{HostTensor, Source, Weights, build_transformer};

pub use crate::rng::Rng;

/// Fresh GPT-2 weights under Hugging Face names, initialised like `GPT2LMHeadModel`
/// (normal(0, 0.02), residual projections scaled by 1/√(2·layers), norms 1, biases 0).
/// With `attn_only` the MLP weights are zero (and [`Trainer`] keeps them so).
pub fn init_gpt2(config: &TransformerConfig, attn_only: bool, seed: u64) -> Result<Weights> {
    if config.arch != Arch::Gpt2 {
        return Err(ModelError::Input(
            "only GPT-2-family models are trained from scratch".into(),
        ));
    }
    config.validate()?;
    let mut rng = Rng::new(seed);
    let (d, m, v) = (config.d_model, config.d_mlp, config.d_vocab);
    let mut w = Weights::new();
    let mut normal = |shape: Vec<usize>, std: f64| HostTensor {
        data: (0..shape.iter().product::<usize>())
            .map(|_| (rng.normal() * std) as f32)
            .collect(),
        shape,
    };
    let fill = |shape: Vec<usize>, x: f32| HostTensor {
        data: vec![x; shape.iter().product()],
        shape,
    };
    let resid_std = 0.02 / (2.0 * config.n_layers as f64).sqrt();
    w.insert("wte.weight".into(), normal(vec![v, d], 0.02));
    w.insert("wpe.weight".into(), normal(vec![config.n_ctx, d], 0.01));
    for l in 0..config.n_layers {
        let n = |s: &str| format!("h.{l}.{s}");
        w.insert(n("ln_1.weight"), fill(vec![d], 1.0));
        w.insert(n("ln_1.bias"), fill(vec![d], 0.0));
        w.insert(n("attn.c_attn.weight"), normal(vec![d, 3 * d], 0.02));
        w.insert(n("attn.c_attn.bias"), fill(vec![3 * d], 0.0));
        w.insert(n("attn.c_proj.weight"), normal(vec![d, d], resid_std));
        w.insert(n("attn.c_proj.bias"), fill(vec![d], 0.0));
        w.insert(n("ln_2.weight"), fill(vec![d], 1.0));
        w.insert(n("ln_2.bias"), fill(vec![d], 0.0));
        if attn_only {
            w.insert(n("mlp.c_fc.weight"), fill(vec![d, m], 0.0));
            w.insert(n("mlp.c_proj.weight"), fill(vec![m, d], 0.0));
        } else {
            w.insert(n("mlp.c_fc.weight"), normal(vec![d, m], 0.02));
            w.insert(n("mlp.c_proj.weight"), normal(vec![m, d], resid_std));
        }
        w.insert(n("mlp.c_fc.bias"), fill(vec![m], 0.0));
        w.insert(n("mlp.c_proj.bias"), fill(vec![d], 0.0));
    }
    w.insert("ln_f.weight".into(), fill(vec![d], 1.0));
    w.insert("ln_f.bias".into(), fill(vec![d], 0.0));
    Ok(w)
}

/// The model's weights under Hugging Face GPT-2 names (Conv1D `[in, out]`, `c_attn` packing
/// q, k, v), ready for `write_safetensors`. Inverse of [`build_transformer`] for GPT-2.
pub async fn export_gpt2(model: &Transformer) -> Result<Vec<(String, HostTensor)>> {
    let c = &model.config;
    if c.arch != Arch::Gpt2 || model.unembed.is_some() {
        return Err(ModelError::Input(
            "only tied-embedding GPT-2 models are exported".into(),
        ));
    }
    async fn host<const D: usize>(p: &Param<Tensor<D>>) -> Result<HostTensor> {
        let t = p.val();
        let shape = t.dims().to_vec();
        Ok(HostTensor {
            data: read_f32(t).await?,
            shape,
        })
    }
    async fn host_opt(p: &Option<Param<Tensor<1>>>, n: usize) -> Result<HostTensor> {
        match p {
            Some(p) => host(p).await,
            None => Ok(HostTensor {
                shape: vec![n],
                data: vec![0.0; n],
            }),
        }
    }
    let d = c.d_model;
    let mut out = vec![("wte.weight".to_string(), host(&model.embed).await?)];
    if let Some(p) = &model.pos_embed {
        out.push(("wpe.weight".into(), host(p).await?));
    }
    for (l, b) in model.blocks.iter().enumerate() {
        let n = |s: &str| format!("h.{l}.{s}");
        out.push((n("ln_1.weight"), host(&b.ln1.weight).await?));
        out.push((n("ln_1.bias"), host_opt(&b.ln1.bias, d).await?));
        let (q, k, v) = (
            host(&b.attn.w_q).await?,
            host(&b.attn.w_k).await?,
            host(&b.attn.w_v).await?,
        );
        let mut packed = Vec::with_capacity(d * 3 * d);
        for r in 0..d {
            for t in [&q, &k, &v] {
                packed.extend_from_slice(&t.data[r * d..(r + 1) * d]);
            }
        }
        out.push((
            n("attn.c_attn.weight"),
            HostTensor {
                shape: vec![d, 3 * d],
                data: packed,
            },
        ));
        let mut bias = host_opt(&b.attn.b_q, d).await?.data;
        bias.extend(host_opt(&b.attn.b_k, d).await?.data);
        bias.extend(host_opt(&b.attn.b_v, d).await?.data);
        out.push((
            n("attn.c_attn.bias"),
            HostTensor {
                shape: vec![3 * d],
                data: bias,
            },
        ));
        out.push((n("attn.c_proj.weight"), host(&b.attn.w_o).await?));
        out.push((n("attn.c_proj.bias"), host_opt(&b.attn.b_o, d).await?));
        out.push((n("ln_2.weight"), host(&b.ln2.weight).await?));
        out.push((n("ln_2.bias"), host_opt(&b.ln2.bias, d).await?));
        out.push((n("mlp.c_fc.weight"), host(&b.mlp.w_in).await?));
        out.push((n("mlp.c_fc.bias"), host_opt(&b.mlp.b_in, c.d_mlp).await?));
        out.push((n("mlp.c_proj.weight"), host(&b.mlp.w_out).await?));
        out.push((n("mlp.c_proj.bias"), host_opt(&b.mlp.b_out, d).await?));
    }
    out.push(("ln_f.weight".into(), host(&model.ln_final.weight).await?));
    out.push(("ln_f.bias".into(), host_opt(&model.ln_final.bias, d).await?));
    Ok(out)
}

/// A Hugging Face `config.json` for a GPT-2 model of this shape (what `load_safetensors` and
/// `transformers.GPT2LMHeadModel` read).
pub fn gpt2_config_json(c: &TransformerConfig) -> serde_json::Value {
    serde_json::json!({
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": c.d_vocab,
        "n_positions": c.n_ctx,
        "n_embd": c.d_model,
        "n_layer": c.n_layers,
        "n_head": c.n_heads,
        "n_inner": c.d_mlp,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": c.norm_eps,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "tie_word_embeddings": true,
    })
}

/// One batch: equal-length rows, the next-token target at each position, and a weight per
/// position (0 where the target is not trained on).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `[batch][pos]` input ids.
    pub inputs: Vec<Vec<u32>>,
    /// `[batch][pos]` target ids.
    pub targets: Vec<Vec<u32>>,
    /// `[batch][pos]` loss weights.
    pub weights: Vec<Vec<f32>>,
}

/// Mean weighted next-token cross-entropy.
///
/// # Shapes
/// - `logits`: `[batch, pos, d_vocab]`, `targets`: `[batch, pos]`, `weights`: `[batch, pos]`
///   → `[1]`.
pub fn cross_entropy(logits: Tensor<3>, targets: Tensor<2, Int>, weights: Tensor<2>) -> Tensor<1> {
    let [b, p, _] = logits.dims();
    let lp = log_softmax(logits, 2).gather(2, targets.reshape([b, p, 1]));
    let w = weights.reshape([b, p, 1]);
    let total = w.clone().sum();
    (lp * w).sum().neg() / total
}

/// AdamW settings.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamW {
    /// Peak learning rate (after a linear warm-up, then cosine decay to 10%).
    pub lr: f64,
    /// Decoupled weight decay on matrices.
    pub weight_decay: f64,
    /// Warm-up steps.
    pub warmup: usize,
    /// Total steps (for the schedule).
    pub steps: usize,
}

impl AdamW {
    fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let t =
            (step - self.warmup) as f64 / (self.steps.saturating_sub(self.warmup)).max(1) as f64;
        self.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos()))
    }
}

/// A transformer under training, on an autodiff device.
pub struct Trainer {
    /// The model (its parameters track gradients).
    pub model: Transformer,
    opt: AdamW,
    step: usize,
    state: HashMap<ParamId, (Tensor<1>, Tensor<1>)>,
    frozen: fn(&str) -> bool,
    plan: HookPlan,
}

impl Trainer {
    /// Build the model from HF GPT-2 weights on `device` with autodiff enabled.
    /// `frozen(path)` names parameters (module paths such as `blocks.0.mlp.b_out`) left as they are.
    pub fn new(
        config: TransformerConfig,
        weights: Weights,
        device: &Device,
        opt: AdamW,
        frozen: fn(&str) -> bool,
    ) -> Result<Self> {
        let device = device.clone().autodiff();
        let model = build_transformer(config, weights, Source::HuggingFace, &device)?;
        Ok(Self {
            model,
            opt,
            step: 0,
            state: HashMap::new(),
            frozen,
            plan: HookPlan::default(),
        })
    }

    /// Run every training forward under `plan` from now on (clamping activations during
    /// training: a head zeroed, held at its mean, its pattern fixed). Tensors in the plan must
    /// live on [`Transformer::device`] of [`Trainer::model`].
    pub fn clamp(&mut self, plan: HookPlan) {
        self.plan = plan;
    }

    /// One optimisation step on `batch`; returns the batch's loss before the step.
    pub async fn step(&mut self, batch: &Batch) -> Result<f32> {
        let (b, p) = (batch.inputs.len(), batch.inputs.first().map_or(0, Vec::len));
        let device = self.model.device();
        let inputs = self.model.tokens(&batch.inputs)?;
        let targets = Tensor::<2, Int>::from_data(
            TensorData::new(
                batch
                    .targets
                    .iter()
                    .flatten()
                    .map(|&t| t as i32)
                    .collect::<Vec<_>>(),
                [b, p],
            ),
            &device,
        );
        let weights = Tensor::<2>::from_data(
            TensorData::new(
                batch.weights.iter().flatten().copied().collect::<Vec<_>>(),
                [b, p],
            ),
            &device,
        );
        let logits = if self.plan.is_empty() {
            self.model.forward(inputs)
        } else {
            self.model.run_with_hooks(inputs, &self.plan).0
        };
        let loss = cross_entropy(logits, targets, weights);
        let grads = loss.backward();
        let value = read_f32(loss.detach()).await?[0];
        if !value.is_finite() {
            return Err(ModelError::NonFinite("training loss".into()));
        }
        let mut mapper = Update {
            grads: &grads,
            state: &mut self.state,
            lr: self.opt.lr_at(self.step),
            wd: self.opt.weight_decay,
            t: (self.step + 1) as i32,
            path: Vec::new(),
            frozen: self.frozen,
        };
        // Tensors are reference-counted: the clone is the same parameters, mapped to new ones.
        self.model = self.model.clone().map(&mut mapper);
        self.step += 1;
        Ok(value)
    }
}

struct Update<'a> {
    grads: &'a burn::tensor::Gradients,
    state: &'a mut HashMap<ParamId, (Tensor<1>, Tensor<1>)>,
    lr: f64,
    wd: f64,
    t: i32,
    path: Vec<String>,
    frozen: fn(&str) -> bool,
}

impl ModuleMapper for Update<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let path = self.path.join(".");
        let grad = tensor.grad(self.grads);
        let Some(grad) = grad.filter(|_| !(self.frozen)(&path)) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let shape = tensor.dims();
        let n: usize = shape.iter().product();
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        let g = grad.reshape([n]);
        let (m, v) = self
            .state
            .remove(&id)
            .unwrap_or_else(|| (g.zeros_like(), g.zeros_like()));
        let m = m * b1 + g.clone() * (1.0 - b1);
        let v = v * b2 + g.clone() * g * (1.0 - b2);
        let mhat = m.clone() / (1.0 - b1.powi(self.t));
        let vhat = v.clone() / (1.0 - b2.powi(self.t));
        // Update on the plain backend, then make the result a fresh leaf that tracks gradients.
        let x = tensor.inner().reshape([n]);
        let decay = if D >= 2 { self.wd * self.lr } else { 0.0 };
        let x = x.clone() - x * decay - mhat / (vhat.sqrt() + eps) * self.lr;
        self.state.insert(id, (m, v));
        let x = Tensor::from_inner(x.reshape(shape)).require_grad();
        Param::from_mapped_value(id, x, mapper)
    }
}

/// Next-token loss and accuracy (argmax = target) of a model over weighted positions, without
/// gradients, for evaluation.
pub async fn evaluate(model: &Transformer, batch: &Batch) -> Result<(f32, f32)> {
    evaluate_with(model, batch, &HookPlan::default()).await
}

/// [`evaluate`] with the model run under `plan` (a clamped model as it was trained).
pub async fn evaluate_with(
    model: &Transformer,
    batch: &Batch,
    plan: &HookPlan,
) -> Result<(f32, f32)> {
    let logits = model.run_with_hooks(model.tokens(&batch.inputs)?, plan).0;
    let [b, p, v] = logits.dims();
    let host = read_f32(log_softmax(logits, 2)).await?;
    let (mut loss, mut correct, mut total) = (0f64, 0f64, 0f64);
    for i in 0..b {
        for j in 0..p {
            let w = batch.weights[i][j] as f64;
            if w == 0.0 {
                continue;
            }
            let row = &host[(i * p + j) * v..(i * p + j + 1) * v];
            let t = batch.targets[i][j] as usize;
            loss -= w * row[t] as f64;
            let best = (0..v)
                .max_by(|&a, &c| row[a].total_cmp(&row[c]))
                .unwrap_or(0);
            correct += w * (best == t) as u8 as f64;
            total += w;
        }
    }
    Ok(((loss / total) as f32, (correct / total) as f32))
}
