//! `interplay neurofeedback`: the Neurofeedback lab's reporting (and control) task from flags;
//! `interplay run` runs the same spec exported by the page.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use clap::Args;
use interplay_lab::neurofeedback::{
    BUNDLED_SETS, Bins, Direction, ExplicitControl, NeurofeedbackSpec, Pooling, PromptFormat,
    Sentences, run,
};
use interplay_models::ComputeDevice;
use interplay_models::HookPoint;
use interplay_models::load::LoadedModel;
use interplay_models::patching::no_progress;
use serde_json::{Value, json};

use crate::{DeviceArg, List, load, model_path};

/// `interplay neurofeedback --model M --layer L --direction pc1,random --sentences S ..`
#[derive(Args)]
pub struct NeurofeedbackArgs {
    /// smollm2, icl-word-3l, icl-3l, a .gguf file or a model folder.
    #[arg(long)]
    model: String,
    /// The layer whose activations are read.
    #[arg(long)]
    layer: usize,
    /// The hook at that layer.
    #[arg(long, default_value = "resid_post",
          value_parser = ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"])]
    hook: String,
    /// Directions, comma-separated: pc1, pc2, .., probe, random.
    #[arg(long)]
    direction: List<Direction>,
    /// A bundled set (sentiment, icl-words, icl-word) or a file: one sentence a line, optional "| 1"/"| 0".
    #[arg(long)]
    sentences: String,
    /// Numbers of in-context examples N, comma-separated.
    #[arg(long, default_value = "0,4,16")]
    examples: List<usize>,
    /// Seed of the examples and queries [default: 1].
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Several seeds, comma-separated (instead of --seed).
    #[arg(long)]
    seeds: Option<List<u64>>,
    /// The two label words, each one token: above the median, below.
    #[arg(long, default_value = "A,B")]
    labels: List<String>,
    /// Mean over tokens or the last token.
    #[arg(long, default_value = "mean", value_parser = ["mean", "last"])]
    pooling: String,
    /// chat or plain [default: chat when the tokenizer has ChatML tokens].
    #[arg(long, value_parser = ["chat", "plain"])]
    format: Option<String>,
    /// Label only the top and bottom Q of the projections (0 < Q < 0.5) instead of a median split.
    #[arg(long)]
    quantiles: Option<f64>,
    /// Held-out sentences queried per seed and N.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..))]
    queries: u64,
    /// Leave out the shuffled-label control.
    #[arg(long)]
    no_shuffled: bool,
    /// Run the implicit control task at the largest N (chat format).
    #[arg(long)]
    control: bool,
    /// Run the explicit control task: the model writes a sentence of each label (chat format).
    #[arg(long)]
    explicit: bool,
    /// Explicit task: the most tokens written (1 to 64) [default: 24].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    max_tokens: Option<u64>,
    /// Explicit task: 0 is greedy, above 0 samples at that temperature [default: 0].
    #[arg(long)]
    temperature: Option<f64>,
    /// Explicit task: sentences per seed, direction and label (1 to 8) [default: 1].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=8))]
    samples: Option<u64>,
    #[command(flatten)]
    device: DeviceArg,
}

impl NeurofeedbackArgs {
    fn hook(&self) -> HookPoint {
        let l = self.layer;
        match self.hook.as_str() {
            "resid_pre" => HookPoint::ResidPre(l),
            "resid_mid" => HookPoint::ResidMid(l),
            "attn_out" => HookPoint::AttnOut(l),
            "mlp_out" => HookPoint::MlpOut(l),
            _ => HookPoint::ResidPost(l),
        }
    }

    /// `--explicit`, or any of its settings, asks for the explicit control task.
    fn explicit(&self) -> Option<ExplicitControl> {
        let wanted = self.explicit
            || self.max_tokens.is_some()
            || self.temperature.is_some()
            || self.samples.is_some();
        let d = ExplicitControl::default();
        wanted.then(|| ExplicitControl {
            max_tokens: self.max_tokens.map_or(d.max_tokens, |n| n as usize),
            temperature: self.temperature.unwrap_or(d.temperature),
            samples: self.samples.map_or(d.samples, |n| n as usize),
        })
    }
}

pub fn command(a: &NeurofeedbackArgs) -> Result<Value> {
    let sentences = if BUNDLED_SETS.contains(&a.sentences.as_str()) {
        Sentences::Bundled(a.sentences.clone())
    } else {
        let text = std::fs::read_to_string(&a.sentences)
            .map_err(|e| anyhow!("reading {}: {e}", a.sentences))?;
        Sentences::Pasted(text)
    };
    let labels: [String; 2] = a
        .labels
        .0
        .iter()
        .map(|s| s.trim().to_string())
        .collect::<Vec<_>>()
        .try_into()
        .map_err(|_| anyhow!("--labels takes two words, e.g. A,B"))?;
    // One load serves the format choice and the run.
    let dev = a.device.init()?;
    let m = load(&model_path(&a.model, None), &dev)?;
    let format = match a.format.as_deref() {
        Some("chat") => PromptFormat::Chat,
        Some(_) => PromptFormat::Plain,
        // Chat when the tokenizer has ChatML tokens.
        None => match m
            .tokenizer
            .as_ref()
            .and_then(|t| t.token_to_id("<|im_start|>"))
        {
            Some(_) => PromptFormat::Chat,
            None => PromptFormat::Plain,
        },
    };
    let spec = NeurofeedbackSpec {
        model: a.model.clone(),
        hook: a.hook(),
        pooling: if a.pooling == "last" {
            Pooling::Last
        } else {
            Pooling::Mean
        },
        sentences,
        directions: a.direction.0.clone(),
        examples: a.examples.0.clone(),
        seeds: match (&a.seeds, a.seed) {
            (Some(s), _) => s.0.clone(),
            (None, Some(s)) => vec![s],
            (None, None) => vec![1],
        },
        bins: a.quantiles.map_or(Bins::Median, Bins::Quantiles),
        queries: a.queries as usize,
        shuffled: !a.no_shuffled,
        labels,
        format,
        control: a.control,
        explicit: a.explicit(),
    };
    run_loaded(&spec, &m, &dev)
}

/// Run a spec; `model` (from `--model`) overrides where the model is found.
pub fn run_spec(
    spec: &NeurofeedbackSpec,
    model: Option<&Path>,
    device: DeviceArg,
) -> Result<Value> {
    let dev = device.init()?;
    let path: PathBuf = model_path(&spec.model, model);
    run_loaded(spec, &load(&path, &dev)?, &dev)
}

fn run_loaded(spec: &NeurofeedbackSpec, m: &LoadedModel, dev: &ComputeDevice) -> Result<Value> {
    let tk = m.tokenizer.as_ref().ok_or_else(|| {
        anyhow!(
            "this model has no tokenizer: {}",
            m.tokenizer_note.clone().unwrap_or_default()
        )
    })?;
    let result = pollster::block_on(run(spec, &m.model, tk, &mut no_progress))?;
    Ok(json!({ "spec": spec, "result": result, "device": dev.backend }))
}
