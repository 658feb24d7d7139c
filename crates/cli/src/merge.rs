//! `interplay merge`: task arithmetic, TIES and DARE over checkpoints of identical keys —
//! safetensors files, or GGUF files (dequantised, merged, written back as an F32 GGUF with the
//! base's metadata, so the merged model keeps its tokenizer and loads in the page).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use interplay_lab::merge::{MergeOptions, Method, TrimScope, merge};
use interplay_lab::mergelab::MergeSpec;
use interplay_lab::suite::{
    Dataset, Split, Task, TrainOptions, TrainProgress, bundled, evaluate, init_weights, test_sets,
    to_safetensors, train,
};
use interplay_models::gguf::Gguf;
use interplay_models::patching::no_progress;
use interplay_models::safetensors::{read_safetensors, write_safetensors};
use interplay_models::weights::Weights;
use pollster::block_on;
use serde_json::{Value, json};

use crate::DeviceArg;

fn read(path: &Path) -> Result<Weights> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    read_safetensors(&bytes).with_context(|| path.display().to_string())
}

/// `interplay merge`: the flags of one merge.
#[derive(Args)]
pub struct MergeArgs {
    /// The base checkpoint (.safetensors or .gguf).
    #[arg(long)]
    base: PathBuf,
    /// The fine-tuned checkpoints, of the base's format and keys.
    #[arg(long, num_args = 1.., required = true)]
    models: Vec<PathBuf>,
    /// task_arithmetic, ties or dare.
    #[arg(long)]
    method: Method,
    /// λ, the scale of the merged task vector (negative: forgetting) [default: 1].
    #[arg(long, allow_negative_numbers = true)]
    lambda: Option<f64>,
    /// TIES: fraction of entries kept [default: 0.2].
    #[arg(long)]
    density: Option<f64>,
    /// DARE: drop probability.
    #[arg(long)]
    drop: Option<f64>,
    /// DARE: seed of the drop masks.
    #[arg(long)]
    seed: Option<u64>,
    /// TIES: trim over all parameters at once (global, as the official code) or per-tensor.
    #[arg(long, default_value = "global")]
    trim_scope: TrimScope,
    /// The merged checkpoint: .safetensors, or .gguf for GGUF inputs.
    #[arg(long)]
    out: PathBuf,
}

/// `interplay finetune`: one fine-tune of the Merge lab's MLP.
#[derive(Args)]
pub struct FinetuneArgs {
    /// A bundled task: digits, mirror, flip, rotate, invert.
    #[arg(long, required_unless_present = "data", conflicts_with = "data")]
    task: Option<Task>,
    /// Or a data file: one example a line, 64 pixels (0 to 16, row by row) then the label 0 to 9.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Start from this checkpoint instead of the suite's base.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Epochs [default: the suite's fine-tuning settings].
    #[arg(long)]
    epochs: Option<usize>,
    /// Adam's learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Batch size.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    batch: Option<u64>,
    /// Seed of the batch order.
    #[arg(long)]
    seed: Option<u64>,
    /// Train in the tangent space of the starting point (linearised fine-tuning).
    #[arg(long)]
    linearised: bool,
    /// The fine-tuned checkpoint (.safetensors).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    device: DeviceArg,
}

/// `interplay train-suite`: retrain the bundled suite.
#[derive(Args)]
pub struct TrainSuiteArgs {
    /// Output folder.
    #[arg(long, default_value = "public/bundled/merge")]
    out: PathBuf,
    #[command(flatten)]
    device: DeviceArg,
}

/// `interplay merge --base PATH --models P1 P2 .. --method M --lambda X [--density K]
/// [--drop P --seed S] [--trim-scope global|per-tensor] --out merged.safetensors|merged.gguf`
pub fn command(a: &MergeArgs) -> Result<Value> {
    let base_path = a.base.display().to_string();
    let model_paths: Vec<String> = a.models.iter().map(|p| p.display().to_string()).collect();
    let out = a.out.display().to_string();
    let out = out.as_str();
    let d = MergeOptions::default();
    let opts = MergeOptions {
        method: a.method,
        lambda: a.lambda.unwrap_or(d.lambda),
        density: a.density.unwrap_or(d.density),
        drop: a.drop.unwrap_or(d.drop),
        seed: a.seed.unwrap_or(d.seed),
        trim_scope: a.trim_scope,
    };
    let base_path = base_path.as_str();
    let load = |p: &str| std::fs::read(p).with_context(|| format!("reading {p}"));
    let base_bytes = load(base_path)?;
    let model_bytes = model_paths
        .iter()
        .map(|p| load(p))
        .collect::<Result<Vec<_>>>()?;
    let gguf = is_gguf(&base_bytes);
    for (p, b) in model_paths.iter().zip(&model_bytes) {
        if is_gguf(b) != gguf {
            bail!(
                "{p} is {} but the base {base_path} is {}: merge checkpoints of one format \
                 (convert one of them first)",
                format_name(b),
                format_name(&base_bytes)
            );
        }
    }
    let wants_gguf = out.to_ascii_lowercase().ends_with(".gguf");
    if gguf != wants_gguf {
        bail!(
            "the checkpoints are {} files: write the merge to a .{} file (--out {out})",
            format_name(&base_bytes),
            if gguf { "gguf" } else { "safetensors" }
        );
    }
    let (bytes, report) = if gguf {
        let (base_file, base) = parse(base_path, &base_bytes)?;
        let mut models = Vec::with_capacity(model_bytes.len());
        for (p, b) in model_paths.iter().zip(&model_bytes) {
            let (g, w) = parse(p, b)?;
            if g.architecture() != base_file.architecture() {
                bail!(
                    "{p} is a {:?} model but the base is {:?}: merging needs one architecture",
                    g.architecture(),
                    base_file.architecture()
                );
            }
            models.push(w);
        }
        let (merged, report) = merge(&base, &models, &opts)?;
        // The base's tensor order, so the merged file reads like the base.
        let tensors: Vec<(String, &_)> = base_file
            .tensors
            .iter()
            .filter_map(|t| merged.get(&t.name).map(|v| (t.name.clone(), v)))
            .collect();
        (base_file.write_f32(&tensors), report)
    } else {
        let read = |p: &str, b: &[u8]| read_safetensors(b).with_context(|| p.to_string());
        let base = read(base_path, &base_bytes)?;
        let models = model_paths
            .iter()
            .zip(&model_bytes)
            .map(|(p, b)| read(p, b))
            .collect::<Result<Vec<_>>>()?;
        let (merged, report) = merge(&base, &models, &opts)?;
        let tensors: Vec<(String, &_)> = merged.iter().map(|(k, v)| (k.clone(), v)).collect();
        (write_safetensors(&tensors), report)
    };
    std::fs::write(Path::new(out), bytes).with_context(|| format!("writing {out}"))?;
    Ok(
        json!({ "out": out, "format": if gguf { "gguf" } else { "safetensors" }, "options": opts, "report": report }),
    )
}

/// A GGUF file and its tensors, dequantised.
fn parse<'a>(path: &str, bytes: &'a [u8]) -> Result<(Gguf<'a>, Weights)> {
    let g = Gguf::parse(bytes).with_context(|| path.to_string())?;
    let w = g.weights().with_context(|| path.to_string())?;
    Ok((g, w))
}

fn is_gguf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"GGUF")
}

fn format_name(bytes: &[u8]) -> &'static str {
    if is_gguf(bytes) {
        "GGUF"
    } else {
        "safetensors"
    }
}

/// `interplay train-suite [--out public/bundled/merge] [--device cpu|wgpu]`: retrain the bundled
/// task suite (base on digits, one fine-tune per task) and write its model card.
pub fn train_suite(a: &TrainSuiteArgs) -> Result<Value> {
    let out = a.out.as_path();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let dev = a.device.init()?;
    let quiet = &mut |_: TrainProgress| no_progress(0, 0);
    let base_opts = TrainOptions::base();
    let base_data = Dataset::task(Task::Digits, Split::Train)?;
    let base = block_on(train(
        &dev.device,
        &init_weights(0),
        &base_data,
        &base_opts,
        quiet,
    ))?;
    let mut models = vec![(
        "base".to_string(),
        None,
        false,
        base.weights.clone(),
        base.losses,
    )];
    for linearised in [false, true] {
        for t in Task::FINE_TUNED {
            let data = Dataset::task(t, Split::Train)?;
            let opts = if linearised {
                TrainOptions::linearised_fine_tune()
            } else {
                TrainOptions::fine_tune()
            };
            let ft = block_on(train(&dev.device, &base.weights, &data, &opts, quiet))?;
            let file = if linearised {
                format!("linearised/{}", t.name())
            } else {
                t.name().to_string()
            };
            models.push((file, Some(t), linearised, ft.weights, ft.losses));
        }
    }
    std::fs::create_dir_all(out.join("linearised")).context("creating linearised/")?;
    let tests = test_sets(&dev.device)?;
    let mut table = String::from("| model | ");
    table += &Task::ALL.map(|t| t.name()).join(" | ");
    table += " |\n|---|";
    table += &"---|".repeat(Task::ALL.len());
    table.push('\n');
    let mut report = Vec::new();
    for (name, task, linearised, w, losses) in &models {
        std::fs::write(out.join(format!("{name}.safetensors")), to_safetensors(w)?)
            .with_context(|| format!("writing {name}.safetensors"))?;
        // Linearised fine-tunes are run as the linearised network around the base.
        let at = linearised.then_some(&base.weights);
        let acc = block_on(evaluate(&dev.device, w, at, &tests))?;
        let label = match (task, linearised) {
            (Some(t), false) => format!("`{name}.safetensors` (fine-tuned on {t})"),
            (Some(t), true) => format!("`{name}.safetensors` (linearised fine-tune on {t})"),
            (None, _) => "`base.safetensors` (trained on digits)".into(),
        };
        table += &format!(
            "| {label} | {} |\n",
            acc.iter()
                .map(|a| format!("{:.1}%", a * 100.0))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        report.push(json!({ "model": name, "accuracy": acc, "final_loss": losses.last() }));
    }
    let b = TrainOptions::base();
    let f = TrainOptions::fine_tune();
    let card = format!(
        "# The Merge lab's task suite\n\n\
Made by `cargo run -p interplay-cli --release -- train-suite` (Burn, CPU device; the training code is \
`crates/lab/src/suite/`). Do not edit by hand.\n\n\
**Data**: scikit-learn's digits (the test set of the UCI Optical Recognition of Handwritten Digits \
data, E. Alpaydin and C. Kaynak, CC BY 4.0): 1797 8×8 images, 17 grey levels, in `digits.u8` \
(per image 64 pixels 0–16 row by row, then the label, a byte each). Every fourth image \
(450) is held out for evaluation; the other 1347 are for training. The tasks are the same digits \
seen through five input transforms, so all models share one ten-way output space:\n\n{}\n\
**Model**: a 64 → 128 → 128 → 10 ReLU MLP (PyTorch `nn.Linear` names and layouts, float32, 26 122 \
parameters).\n\n\
**Training**: the base from PyTorch's `nn.Linear` initialisation (seed 0), Adam, lr {}, batch {}, \
{} epochs on digits (order seed {}). Each fine-tune starts from the base: Adam, lr {}, batch {}, {} \
epochs on its task (order seed {}); all parameters are trained. The linearised fine-tunes \
(`linearised/`) are trained the same way in the tangent space of the base (Ortiz-Jiménez et al., \
2023): the model is f(x; θ₀) + J(θ₀)(θ − θ₀), θ₀ the base, and they are evaluated (and merged) \
as that linearised model.\n\n\
**Accuracy on every task's held-out split**:\n\n{table}\n\
The base never saw the transformed tasks; each fine-tune learns its task and partly forgets the \
others. These are the numbers the Merge lab's page shows in its reference rows.\n",
        Task::ALL
            .map(|t| format!("- `{}`: {}", t.name(), t.describe()))
            .join("\n"),
        b.lr,
        b.batch,
        b.epochs,
        b.seed,
        f.lr,
        f.batch,
        f.epochs,
        f.seed,
    );
    std::fs::write(out.join("README.md"), card).context("writing the model card")?;
    Ok(json!({ "models": report, "out": out.display().to_string(), "device": dev.backend }))
}

/// `interplay finetune --task T | --data FILE [--init PATH] [--epochs N --lr X --batch B --seed S]
/// [--linearised] --out model.safetensors`: fine-tune the suite's base (or `--init`) and print the
/// loss curve; `--linearised` trains in the tangent space of the starting point.
pub fn finetune(a: &FinetuneArgs) -> Result<Value> {
    let out = a.out.display().to_string();
    let dev = a.device.init()?;
    let data = match (a.task, &a.data) {
        (Some(t), _) => Dataset::task(t, Split::Train)?,
        (None, Some(p)) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Dataset::parse(&text).with_context(|| p.display().to_string())?
        }
        (None, None) => bail!("give one of --task digits|mirror|flip|rotate|invert or --data FILE"),
    };
    let init = match &a.init {
        Some(p) => read(p)?,
        None => bundled(None)?,
    };
    let d = TrainOptions::fine_tune();
    let opts = TrainOptions {
        epochs: a.epochs.unwrap_or(d.epochs),
        lr: a.lr.unwrap_or(d.lr),
        batch: a.batch.map_or(d.batch, |b| b as usize),
        seed: a.seed.unwrap_or(d.seed),
        linearised: a.linearised,
    };
    let t = block_on(train(&dev.device, &init, &data, &opts, &mut |_| {
        no_progress(0, 0)
    }))?;
    std::fs::write(&a.out, to_safetensors(&t.weights)?)
        .with_context(|| format!("writing {out}"))?;
    let at = opts.linearised.then_some(&init);
    let acc = block_on(evaluate(
        &dev.device,
        &t.weights,
        at,
        &test_sets(&dev.device)?,
    ))?;
    let accuracy: serde_json::Map<String, Value> = Task::ALL
        .iter()
        .zip(&acc)
        .map(|(t, a)| (t.name().to_string(), json!(a)))
        .collect();
    Ok(json!({ "losses": t.losses, "accuracy": accuracy, "out": out, "device": dev.backend }))
}

/// `interplay run spec.json` for a Merge lab spec.
pub fn run_spec(spec: &MergeSpec, device: DeviceArg) -> Result<Value> {
    let dev = device.init()?;
    let outcome = block_on(spec.run(&dev.device, &mut no_progress))?;
    Ok(json!({ "spec": spec, "outcome": outcome, "device": dev.backend }))
}
