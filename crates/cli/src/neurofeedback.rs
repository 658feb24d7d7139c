//! `interplay neurofeedback`: the Neurofeedback lab's reporting (and control) task from flags or
//! from a spec exported by the page.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use interplay_lab::bundled::Bundled;
use interplay_lab::neurofeedback::{
    Bins, Direction, ExplicitControl, NeurofeedbackSpec, Pooling, PromptFormat, Sentences, run,
};
use interplay_models::ComputeDevice;
use interplay_models::HookPoint;
use interplay_models::load::{LoadedModel, load_path};
use interplay_models::patching::no_progress;
use serde_json::{Value, json};

use crate::{Args, SMOLLM2, device};

/// A Neurofeedback spec, if `text` is one (it has `directions`).
pub fn parse_spec(text: &str) -> Result<Option<NeurofeedbackSpec>> {
    let v: Value = serde_json::from_str(text).context("the spec is not JSON")?;
    if v.get("directions").is_none() {
        return Ok(None);
    }
    Ok(Some(
        serde_json::from_value(v).context("not a valid Neurofeedback spec")?,
    ))
}

fn list<T: std::str::FromStr>(s: &str, what: &str) -> Result<Vec<T>> {
    s.split(',')
        .map(|x| {
            x.trim()
                .parse()
                .map_err(|_| anyhow!("{what}: cannot read {x:?}"))
        })
        .collect()
}

/// `interplay neurofeedback --model PATH --layer L --direction pc1,probe,random --sentences FILE
/// --examples 0,4,16 --seed S ..`
pub fn command(args: &Args) -> Result<Value> {
    let model = args.need("--model")?;
    let layer: usize = args
        .need("--layer")?
        .parse()
        .context("--layer takes a number")?;
    let hook = match args.value("--hook").unwrap_or("resid_post") {
        "resid_pre" => HookPoint::ResidPre(layer),
        "resid_mid" => HookPoint::ResidMid(layer),
        "resid_post" => HookPoint::ResidPost(layer),
        "attn_out" => HookPoint::AttnOut(layer),
        "mlp_out" => HookPoint::MlpOut(layer),
        other => {
            bail!("--hook: use resid_pre|resid_mid|resid_post|attn_out|mlp_out, not {other:?}")
        }
    };
    let directions: Vec<Direction> = args
        .need("--direction")?
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let sentences = args.need("--sentences")?;
    let sentences = if interplay_lab::neurofeedback::BUNDLED_SETS.contains(&sentences) {
        Sentences::Bundled(sentences.into())
    } else {
        Sentences::Pasted(
            std::fs::read_to_string(sentences).with_context(|| format!("reading {sentences}"))?,
        )
    };
    let seeds = match (args.value("--seeds"), args.value("--seed")) {
        (Some(s), _) => list(s, "--seeds")?,
        (None, Some(s)) => vec![s.parse().context("--seed takes a whole number")?],
        (None, None) => vec![1],
    };
    let labels: Vec<String> = args
        .value("--labels")
        .unwrap_or("A,B")
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let labels: [String; 2] = labels
        .try_into()
        .map_err(|_| anyhow!("--labels takes two words, e.g. A,B"))?;
    let pooling = match args.value("--pooling").unwrap_or("mean") {
        "mean" => Pooling::Mean,
        "last" => Pooling::Last,
        other => bail!("--pooling: mean or last, not {other:?}"),
    };
    // One load serves the format choice and the run.
    let dev = device(args)?;
    let m = load(&model_path(model, None)?, &dev)?;
    let format = match args.value("--format") {
        Some("chat") => PromptFormat::Chat,
        Some("plain") => PromptFormat::Plain,
        Some(other) => bail!("--format: chat or plain, not {other:?}"),
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
        model: model.into(),
        hook,
        pooling,
        sentences,
        directions,
        examples: list(args.value("--examples").unwrap_or("0,4,16"), "--examples")?,
        seeds,
        bins: match args.value("--quantiles") {
            Some(q) => Bins::Quantiles(
                q.parse()
                    .context("--quantiles takes a fraction, e.g. 0.25")?,
            ),
            None => Bins::Median,
        },
        queries: args
            .value("--queries")
            .unwrap_or("24")
            .parse()
            .context("--queries takes a number")?,
        shuffled: !args.flag("--no-shuffled"),
        labels,
        format,
        control: args.flag("--control"),
        explicit: explicit(args)?,
    };
    run_loaded(&spec, &m, &dev)
}

/// `--explicit [--max-tokens 24 --temperature 0 --samples 1]`.
fn explicit(args: &Args) -> Result<Option<ExplicitControl>> {
    let wanted = args.flag("--explicit")
        || ["--max-tokens", "--temperature", "--samples"]
            .iter()
            .any(|f| args.value(f).is_some());
    if !wanted {
        return Ok(None);
    }
    let d = ExplicitControl::default();
    Ok(Some(ExplicitControl {
        max_tokens: args.value("--max-tokens").map_or(Ok(d.max_tokens), |v| {
            v.parse().context("--max-tokens takes a whole number")
        })?,
        temperature: args.value("--temperature").map_or(Ok(d.temperature), |v| {
            v.parse()
                .context("--temperature takes a number (0 = greedy)")
        })?,
        samples: args.value("--samples").map_or(Ok(d.samples), |v| {
            v.parse().context("--samples takes a whole number")
        })?,
    }))
}

fn model_path(model: &str, flag: Option<&str>) -> Result<PathBuf> {
    Ok(match flag {
        Some(p) => PathBuf::from(p),
        None if model == "smollm2" => PathBuf::from(SMOLLM2),
        None if Bundled::from_id(model).is_some() => {
            PathBuf::from(format!("public/bundled/{model}"))
        }
        None => PathBuf::from(model),
    })
}

/// Run a spec; `--model` overrides where the model is found.
pub fn run_spec(spec: &NeurofeedbackSpec, args: &Args) -> Result<Value> {
    let dev = device(args)?;
    let path = model_path(
        &spec.model,
        args.value("--model").filter(|_| args.cmd == "run"),
    )?;
    run_loaded(spec, &load(&path, &dev)?, &dev)
}

fn load(path: &std::path::Path, dev: &ComputeDevice) -> Result<LoadedModel> {
    load_path(path, &dev.device).with_context(|| format!("loading {}", path.display()))
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
