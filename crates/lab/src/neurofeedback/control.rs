//! The control tasks' model calls: the examples' cache and the explicit task's written sentence.

use super::*;

/// A sentence the model wrote, and its activations.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    /// The tokens written, without the end-of-turn token.
    pub tokens: Vec<u32>,
    /// Whether the model ended its turn within the limit.
    pub finished: bool,
    /// Pooled activation (`d_model`) over the tokens written, in the prompt that asked for them
    /// (the end-of-turn token alone when the model wrote nothing else).
    pub in_context: Vec<f64>,
    /// Pooled activation of the same tokens read alone.
    pub alone: Vec<f64>,
}

pub(crate) fn missing_activation() -> LabError {
    LabError::Spec("the model cached no activation at the hook".into())
}

/// The keys/values of the control tasks' prompt up to the request: the control instruction and
/// `examples` (`(sentence, label index)`). Every sentence asked for after the same examples
/// starts from it.
pub fn control_cache(
    spec: &NeurofeedbackSpec,
    m: &Transformer,
    tk: &TextTokenizer,
    examples: &[(&str, usize)],
) -> Result<Option<KvCache>, LabError> {
    extend_cache(m, None, &Prompts::new(tk, spec)?.control_prefix(examples)?)
}

/// The explicit control task's raw readout: after the examples of `examples` (from
/// [`control_cache`]) the model is asked for a sentence of label `label` and writes it with
/// `sampling`.
pub async fn write_sentence(
    spec: &NeurofeedbackSpec,
    m: &Transformer,
    tk: &TextTokenizer,
    examples: Option<&KvCache>,
    label: usize,
    sampling: Sampling,
) -> Result<Written, LabError> {
    let prompts = Prompts::new(tk, spec)?;
    let max_tokens = spec.explicit.unwrap_or_default().max_tokens;
    let plan = HookPlan::caching([spec.hook]);
    let (g, trace) = generate_after(
        m,
        examples,
        &prompts.request(label.min(1))?,
        max_tokens,
        &prompts.stop_ids(),
        sampling,
        &plan,
    )
    .await?;
    let mut tokens = g.tokens.clone();
    if g.stopped {
        tokens.pop();
    }
    let measured = if tokens.is_empty() {
        g.tokens.clone()
    } else {
        tokens.clone()
    };
    // Generation read every written token it fed back in context already (one step each, after
    // the request's run); only a last token no step read (the limit reached, or a lone
    // end-of-turn) runs once more, after all the others.
    let mut steps: Vec<Tensor<3>> = trace
        .hooks
        .iter()
        .skip(1)
        .take(measured.len())
        .map(|h| h.r3(spec.hook).ok_or_else(missing_activation))
        .collect::<Result<_, _>>()?;
    let fed = steps.len();
    if fed < measured.len() {
        let rest = m.tokens(&[measured[fed..].to_vec()])?;
        let acts = m.activations(rest, trace.cache.as_ref(), &plan)?;
        steps.push(acts.r3(spec.hook).ok_or_else(missing_activation)?);
    }
    let in_context = read_f32(pool(Tensor::cat(steps, 1), spec.pooling))
        .await?
        .into_iter()
        .map(f64::from)
        .collect();
    let alone = in_context_activations(m, None, &[measured], spec.hook, spec.pooling)
        .await?
        .into_iter()
        .next()
        .ok_or_else(missing_activation)?;
    Ok(Written {
        tokens,
        finished: g.stopped,
        in_context,
        alone,
    })
}
