//! Text generation with a key/value cache: greedy decoding (Hugging Face `generate` with
//! `do_sample=False`) or seeded temperature sampling. Each step reads the last position's logits
//! back asynchronously, so the same code runs on WebGPU and on the CPU.

use burn::tensor::s;

use crate::device::read_f32;
use crate::error::{ModelError, Result};
use crate::hooks::{ActivationCache, HookPlan, HookPoint};
use crate::rng::Rng;
use crate::transformer::{KvCache, Transformer};

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    /// The highest logit (the lowest id among ties, as `torch.argmax`).
    Greedy,
    /// From `softmax(logits / temperature)`, drawn with a [`Rng`] seeded by `seed`.
    Temperature {
        /// Above zero; 1 samples the model's own distribution.
        temperature: f64,
        /// The draw's seed.
        seed: u64,
    },
}

/// What [`generate`] produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// The new tokens, the stop token included when one was produced.
    pub tokens: Vec<u32>,
    /// Whether generation ended on a stop token (otherwise on `max_new` or the context's end).
    pub stopped: bool,
}

/// The model's state after [`generate_after`]: what a caller needs to read activations over the
/// written tokens or to go on from them without running anything twice.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// Keys/values of the prefix, the prompt and every token fed back (all but the last one
    /// chosen, which no step has read yet); `None` when nothing ran.
    pub cache: Option<KvCache>,
    /// The hooks the plan cached, one entry per run: the prompt first (`[1, prompt, ..]`), then
    /// one for each token fed back (`[1, 1, ..]`), in order.
    pub hooks: Vec<ActivationCache>,
}

/// The token `sampling` chooses from one position's logits.
fn choose(logits: &[f32], sampling: Sampling, rng: &mut Option<Rng>) -> u32 {
    match (sampling, rng.as_mut()) {
        (Sampling::Temperature { temperature, .. }, Some(rng)) => {
            let t = temperature.max(1e-6);
            let top = logits
                .iter()
                .fold(f64::NEG_INFINITY, |m, &l| m.max(f64::from(l)));
            let w: Vec<f64> = logits
                .iter()
                .map(|&l| ((f64::from(l) - top) / t).exp())
                .collect();
            let mut u = rng.uniform() * w.iter().sum::<f64>();
            for (i, wi) in w.iter().enumerate() {
                if u < *wi {
                    return i as u32;
                }
                u -= wi;
            }
            (w.len() - 1) as u32
        }
        _ => {
            let mut best = 0;
            for (i, &l) in logits.iter().enumerate() {
                if l > logits[best] {
                    best = i;
                }
            }
            best as u32
        }
    }
}

/// Continue `prompt` by up to `max_new` tokens, ending early after any token of `stop` (or when
/// a GPT-2 model's context is full).
///
/// # Shapes
/// - `prompt`: token ids `[pos]` (not empty); one readback of `[d_vocab]` per new token.
pub async fn generate(
    m: &Transformer,
    prompt: &[u32],
    max_new: usize,
    stop: &[u32],
    sampling: Sampling,
) -> Result<Generation> {
    let (g, _) = generate_after(
        m,
        None,
        prompt,
        max_new,
        stop,
        sampling,
        &HookPlan::default(),
    )
    .await?;
    Ok(g)
}

/// [`generate`] continuing a prefix whose keys/values are in `prefix` (prompts that share their
/// examples compute them once), caching the hooks of `plan` at every position it runs.
///
/// # Shapes
/// - `prefix`: per layer `[1, n_kv_heads, pos0, d_head]`; `prompt`: token ids `[pos]` (not
///   empty); the trace's hooks as [`Trace::hooks`].
pub async fn generate_after(
    m: &Transformer,
    prefix: Option<&KvCache>,
    prompt: &[u32],
    max_new: usize,
    stop: &[u32],
    sampling: Sampling,
    plan: &HookPlan,
) -> Result<(Generation, Trace)> {
    if prompt.is_empty() {
        return Err(ModelError::Input("the prompt is empty".into()));
    }
    if let Sampling::Temperature { temperature, .. } = sampling
        && !(temperature > 0.0 && temperature.is_finite())
    {
        return Err(ModelError::Input(format!(
            "the temperature must be above 0 (got {temperature}); use greedy decoding for 0"
        )));
    }
    let mut rng = match sampling {
        Sampling::Temperature { seed, .. } => Some(Rng::new(seed)),
        Sampling::Greedy => None,
    };
    // Generation stops at the end of the context; a prompt past it is refused.
    let limit = m.config.n_ctx;
    let start = prefix.map_or(0, KvCache::positions) + prompt.len();
    if start > limit {
        return Err(ModelError::Input(format!(
            "the prompt has {start} tokens; this model's context holds {limit}"
        )));
    }
    let v = m.config.d_vocab;
    let mut out = Vec::new();
    let mut trace = Trace {
        cache: prefix.cloned(),
        hooks: Vec::new(),
    };
    let mut input = prompt.to_vec();
    let mut len = prefix.map_or(0, KvCache::positions);
    let mut stopped = false;
    for _ in 0..max_new {
        if len + input.len() > limit {
            break;
        }
        let p = input.len();
        let tokens = m.tokens(&[input])?;
        // Only the last position's logits are read: unembedding the whole prompt would cost a
        // fifth of SmolLM2's weights per prompt token. A plan that hooks `ln_final` gets it all.
        let (last, hooks, kv) = if plan.touches(HookPoint::LnFinal) {
            let (logits, hooks, kv) = m.extend(tokens, trace.cache.as_ref(), plan)?;
            (logits.slice(s![.., p - 1..p, ..]).reshape([v]), hooks, kv)
        } else {
            let (resid, hooks, kv) = m.extend_residual(tokens, trace.cache.as_ref(), plan)?;
            let d = m.config.d_model;
            let row = resid.slice(s![.., p - 1..p, ..]).reshape([1, d]);
            (m.logits_rows(row).reshape([v]), hooks, kv)
        };
        len += p;
        trace.cache = Some(kv);
        trace.hooks.push(hooks);
        let last = read_f32(last).await?;
        let next = choose(&last, sampling, &mut rng);
        out.push(next);
        if stop.contains(&next) {
            stopped = true;
            break;
        }
        input = vec![next];
    }
    Ok((
        Generation {
            tokens: out,
            stopped,
        },
        trace,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum_and_sampling_follows_the_distribution() {
        let mut none = None;
        assert_eq!(
            choose(&[0.0, 2.0, 2.0, 1.0], Sampling::Greedy, &mut none),
            1
        );
        let s = Sampling::Temperature {
            temperature: 1.0,
            seed: 3,
        };
        let mut rng = Some(Rng::new(3));
        // p = softmax([ln 1, ln 3]) = [0.25, 0.75].
        let logits = [0.0f32, 3f32.ln()];
        let ones = (0..4000)
            .filter(|_| choose(&logits, s, &mut rng) == 1)
            .count();
        assert!((ones as f64 / 4000.0 - 0.75).abs() < 0.03, "{ones}");
        // A tiny temperature is greedy.
        let cold = Sampling::Temperature {
            temperature: 1e-4,
            seed: 1,
        };
        let mut rng = Some(Rng::new(1));
        assert!((0..50).all(|_| choose(&[0.0, 0.1, -1.0], cold, &mut rng) == 1));
    }
}
