//! `interplay`: the native runner of Interplay's experiments, for researchers and for checks
//! against the page. Every command prints JSON on stdout; `interplay <command> --help` lists its
//! flags. Usage errors (an unknown or misspelt flag, a value out of range) exit with code 2 and a
//! suggestion; a run that fails exits with code 1 and a message on stderr.
//!
//! `run` takes an experiment spec exported from the page (or written by hand; any lab, see
//! `interplay_lab::Experiment`) and prints the same numbers the page shows. A spec naming the
//! bundled model `"smollm2"` finds it under `public/models/` unless `--model` is given.
//! `--model` is a `.gguf` file or a folder with `model.safetensors` + `config.json`
//! (+ `tokenizer.json`).

mod circuits;
mod dynamics;
mod merge;
mod neurofeedback;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use interplay_lab::bundled::Bundled;
use interplay_lab::{Experiment, PatchingSpec};
use interplay_models::device::read_f32;
use interplay_models::load::{LoadedModel, load_path};
use interplay_models::patching::{PatchTarget, no_progress, patch_sweep};
use interplay_models::{Backend, ComputeDevice, registry};
use serde_json::json;

/// Interplay's experiments from the command line: the same computations as the page, JSON out.
#[derive(Parser)]
#[command(name = "interplay", version, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Next-token logits of a prompt (the last position, or every position).
    Logits(LogitsArgs),
    /// An activation-patching sweep over layers and positions (or heads).
    Patch(PatchArgs),
    /// Head ablation (zero, mean or resample) scored at the last position.
    Ablate(circuits::AblateArgs),
    /// Path patching from sender heads to receivers' q/k/v (Wang et al. 2022).
    PathPatch(circuits::PathPatchArgs),
    /// Token ids and strings of a text under a model's tokenizer.
    Tokenize(TokenizeArgs),
    /// Run an experiment spec exported from the page ("Export spec"), of any lab.
    Run(RunArgs),
    /// Echo state network prediction (Mackey-Glass, NARMA-10, Santa Fe laser).
    Esn(dynamics::EsnArgs),
    /// Memory capacity of an echo state network.
    MemoryCapacity(dynamics::MemoryCapacityArgs),
    /// An Izhikevich (2003) network of excitatory and inhibitory neurons.
    Izhikevich(dynamics::SpikingArgs),
    /// A leaky integrate-and-fire network (the Izhikevich command's flags plus the cell's).
    Lif(dynamics::LifArgs),
    /// The metacognition paradigm: can a model report its own activations?
    Neurofeedback(neurofeedback::NeurofeedbackArgs),
    /// Task arithmetic, TIES or DARE over safetensors (identical keys) or GGUF checkpoints.
    Merge(merge::MergeArgs),
    /// Fine-tune the Merge lab's MLP on a task (standard or linearised).
    Finetune(merge::FinetuneArgs),
    /// Retrain the Merge lab's bundled task suite and write its model card.
    TrainSuite(merge::TrainSuiteArgs),
    /// Retrain one of the bundled transformers (Circuits and Neurofeedback labs) on the CPU.
    TrainBundled(TrainBundledArgs),
}

/// A comma-separated list as the flags take it: spaces around items and empty items are ignored
/// (`--ids "1, 2,3,"` is 1, 2, 3).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct List<T>(pub Vec<T>);

impl<T: std::str::FromStr> std::str::FromStr for List<T>
where
    T::Err: std::fmt::Display,
{
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let items = s
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(|x| x.parse::<T>().map_err(|e| format!("{x:?}: {e}")))
            .collect::<Result<Vec<T>, String>>()?;
        if items.is_empty() {
            return Err("give at least one value (comma-separated)".into());
        }
        Ok(List(items))
    }
}

/// `--device`, shared by every command that computes.
#[derive(Args, Clone, Copy)]
pub(crate) struct DeviceArg {
    /// Where to compute: cpu or wgpu (Vulkan/Metal; lavapipe without a GPU).
    #[arg(long, default_value = "cpu", value_name = "cpu|wgpu")]
    device: Backend,
}

impl DeviceArg {
    pub(crate) fn init(self) -> Result<ComputeDevice> {
        Ok(pollster::block_on(ComputeDevice::init(self.device))?)
    }
}

#[derive(Args)]
struct LogitsArgs {
    /// A .gguf file, or a folder with model.safetensors + config.json.
    #[arg(long)]
    model: PathBuf,
    /// Token ids, comma-separated.
    #[arg(long)]
    ids: List<u32>,
    /// Logits at every position, not only the last.
    #[arg(long)]
    all_positions: bool,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Args)]
struct PatchArgs {
    /// A .gguf file, or a folder with model.safetensors + config.json.
    #[arg(long)]
    model: PathBuf,
    /// Clean prompt's token ids, comma-separated.
    #[arg(long)]
    clean_ids: List<u32>,
    /// Corrupted prompt's token ids (as many as the clean prompt's).
    #[arg(long)]
    corrupt_ids: List<u32>,
    /// What to patch: resid_pre, resid_mid, resid_post, attn_out, mlp_out, head_out,
    /// head_out_pos.
    #[arg(long)]
    hook: PatchTarget,
    /// The clean prompt's answer token id.
    #[arg(long)]
    answer: u32,
    /// The token id the corrupted prompt favours.
    #[arg(long)]
    wrong: u32,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Args)]
struct TokenizeArgs {
    /// A .gguf file, or a folder with a tokenizer.json.
    #[arg(long)]
    model: PathBuf,
    /// The text to tokenize (may start with '-').
    #[arg(long, allow_hyphen_values = true)]
    text: String,
}

#[derive(Args)]
struct RunArgs {
    /// The spec file (JSON; "Export spec" in the page writes one).
    spec: PathBuf,
    /// Where the spec's model is, when it is not bundled (Circuits and Neurofeedback specs).
    #[arg(long)]
    model: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Args)]
struct TrainBundledArgs {
    /// induction-2l, ioi-3l, icl-3l or icl-word-3l.
    #[arg(long, value_parser = ["induction-2l", "ioi-3l", "icl-3l", "icl-word-3l"])]
    model: String,
    /// Training steps [default: 8000 induction-2l, 3000 ioi-3l, 400 icl-3l, 3000 icl-word-3l].
    #[arg(long, value_parser = clap::value_parser!(usize))]
    steps: Option<usize>,
    /// Seed of the initialisation and the data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output folder [default: public/bundled/<model>].
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(crate) fn load(path: &Path, dev: &ComputeDevice) -> Result<LoadedModel> {
    load_path(path, &dev.device).with_context(|| format!("loading {}", path.display()))
}

/// Where a spec's model lives: `--model` if given, else the fetched SmolLM2 or a bundled model's
/// folder, else the name itself as a path.
pub(crate) fn model_path(model: &str, flag: Option<&Path>) -> PathBuf {
    match flag {
        Some(p) => p.to_path_buf(),
        None if model == registry::SMOLLM2_ID => registry::smollm2_path(Path::new(".")),
        None if Bundled::from_id(model).is_some() => registry::bundled_path(Path::new("."), model),
        None => PathBuf::from(model),
    }
}

fn logits(a: &LogitsArgs) -> Result<serde_json::Value> {
    let dev = a.device.init()?;
    let m = load(&a.model, &dev)?;
    let tokens = m.model.tokens(std::slice::from_ref(&a.ids.0))?;
    Ok(if a.all_positions {
        let logits = m.model.forward(tokens);
        let v = logits.dims()[2];
        let values = pollster::block_on(read_f32(logits))?;
        let rows: Vec<&[f32]> = values.chunks(v).collect();
        json!({ "logits": rows, "device": dev.backend })
    } else {
        let last = pollster::block_on(read_f32(m.model.last_logits(tokens)?))?;
        json!({ "logits": last, "device": dev.backend })
    })
}

fn patch(a: &PatchArgs) -> Result<serde_json::Value> {
    let dev = a.device.init()?;
    let m = load(&a.model, &dev)?;
    let grid = pollster::block_on(patch_sweep(
        &m.model,
        &a.clean_ids.0,
        &a.corrupt_ids.0,
        a.hook,
        a.answer,
        a.wrong,
        &mut no_progress,
    ))?;
    if (grid.clean_metric - grid.corrupt_metric).abs() < 1e-12 {
        eprintln!(
            "warning: the clean and corrupted metrics are equal; the normalised grid is 0 everywhere"
        );
    }
    Ok(json!({
        "clean_metric": grid.clean_metric,
        "corrupt_metric": grid.corrupt_metric,
        "grid": grid.grid,
        "patched": grid.patched,
        "device": dev.backend,
    }))
}

fn tokenize(a: &TokenizeArgs) -> Result<serde_json::Value> {
    let m = load(&a.model, &ComputeDevice::cpu())?;
    let tk = m.tokenizer.as_ref().ok_or_else(|| {
        anyhow!(
            "this model has no tokenizer: {}",
            m.tokenizer_note.clone().unwrap_or_default()
        )
    })?;
    let ids = tk.encode(&a.text)?;
    Ok(json!({ "ids": ids, "tokens": tk.display_tokens(&ids) }))
}

/// `interplay run SPEC`: any lab's experiment, through the one experiment type.
fn run_spec_file(a: &RunArgs) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(&a.spec)
        .with_context(|| format!("reading {}", a.spec.display()))?;
    let experiment = Experiment::from_json(&text, None)
        .with_context(|| format!("reading {}", a.spec.display()))?;
    let model = a.model.as_deref();
    match experiment {
        Experiment::Circuits(spec) => run_patching(&spec, model, a.device),
        Experiment::Merge(spec) => merge::run_spec(&spec, a.device),
        Experiment::Neurofeedback(spec) => neurofeedback::run_spec(&spec, model, a.device),
        Experiment::Dynamics(spec) => dynamics::run_spec(&spec, a.device),
        Experiment::RelationNeurons(spec) => run_relation_neurons(&spec, model, a.device),
        Experiment::CircuitReuse(spec) => run_circuit_reuse(&spec, model, a.device),
        Experiment::RecallReasoning(spec) => run_recall_reasoning(&spec, model, a.device),
        Experiment::AttributionPatching(spec) => run_attribution(&spec, model, a.device),
        Experiment::EdgeAttribution(spec) => run_edges(&spec, model, a.device),
        Experiment::ClampedTraining(spec) => run_clamped(&spec, a.device),
        Experiment::SubspacePatching(spec) => run_subspace(&spec, model, a.device),
    }
}

/// The induction model trained with and without the spec's clamps: `{spec, result, device}`.
fn run_clamped(
    spec: &interplay_lab::clamp::ClampSpec,
    device: DeviceArg,
) -> Result<serde_json::Value> {
    let dev = device.init()?;
    // Minutes of training: say how far it is on stderr (stdout is the JSON).
    let mut report = |done: usize, total: usize| -> interplay_models::patching::Progress {
        if done.is_multiple_of(100) || done == total {
            eprintln!("training: step {done} of {total}");
        }
        Box::pin(async { true })
    };
    let result = pollster::block_on(spec.run(&dev.device, &mut |_, _| {}, &mut report))?;
    Ok(json!({
        "spec": spec,
        "result": result,
        "device": dev.backend,
    }))
}

/// Directions learned by DAS on the spec's model (`ioi-3l` or SmolLM2) and patched along:
/// `{spec, result, device}`.
fn run_subspace(
    spec: &interplay_lab::subspace::SubspaceSpec,
    model: Option<&Path>,
    device: DeviceArg,
) -> Result<serde_json::Value> {
    let mut report = |done: usize, total: usize| -> interplay_models::patching::Progress {
        if done.is_multiple_of(100) || done == total {
            eprintln!("learning directions: step {done} of {total}");
        }
        Box::pin(async { true })
    };
    run_on_model(json!(spec), &spec.model, model, device, |m| {
        pollster::block_on(spec.run(m, &mut report)).map(|r| json!(r))
    })
}

/// Attribution patching and the activation-patching sweep it estimates: `{spec, result, device}`.
fn run_attribution(
    spec: &interplay_lab::attribution::AttributionSpec,
    model: Option<&Path>,
    device: DeviceArg,
) -> Result<serde_json::Value> {
    run_on_model(json!(spec), &spec.model, model, device, |m| {
        pollster::block_on(spec.run(m, &mut no_progress)).map(|r| json!(r))
    })
}

/// Edge attribution patching, the top edges' exact effects and the faithfulness curve:
/// `{spec, result, device}`.
fn run_edges(
    spec: &interplay_lab::edges::EdgeSpec,
    model: Option<&Path>,
    device: DeviceArg,
) -> Result<serde_json::Value> {
    run_on_model(json!(spec), &spec.model, model, device, |m| {
        pollster::block_on(spec.run(m, &mut no_progress)).map(|r| json!(r))
    })
}

/// An experiment on the model its spec names (or `--model`): `{spec, result, device}`.
fn run_on_model(
    spec: serde_json::Value,
    name: &str,
    model: Option<&Path>,
    device: DeviceArg,
    run: impl FnOnce(&LoadedModel) -> Result<serde_json::Value, interplay_lab::LabError>,
) -> Result<serde_json::Value> {
    let (dev, m) = load_named(name, model, device)?;
    let result = run(&m)?;
    Ok(json!({
        "spec": spec,
        "result": result,
        "device": dev.backend,
    }))
}

fn run_relation_neurons(
    spec: &interplay_lab::neurons::NeuronsSpec,
    model: Option<&Path>,
    device: DeviceArg,
) -> Result<serde_json::Value> {
    run_on_text(json!(spec), &spec.model, model, device, |m, tk| {
        pollster::block_on(interplay_lab::neurons::run(spec, m, tk, &mut no_progress))
            .map(|r| json!(r))
    })
}

fn run_circuit_reuse(
    spec: &interplay_lab::reuse::ReuseSpec,
    model: Option<&Path>,
    device: DeviceArg,
) -> Result<serde_json::Value> {
    run_on_text(json!(spec), &spec.model, model, device, |m, tk| {
        pollster::block_on(interplay_lab::reuse::run(spec, m, tk, &mut no_progress))
            .map(|r| json!(r))
    })
}

fn run_recall_reasoning(
    spec: &interplay_lab::recall::RecallSpec,
    model: Option<&Path>,
    device: DeviceArg,
) -> Result<serde_json::Value> {
    run_on_text(json!(spec), &spec.model, model, device, |m, tk| {
        pollster::block_on(interplay_lab::recall::run(spec, m, tk, &mut no_progress))
            .map(|r| json!(r))
    })
}

/// An experiment whose inputs are text: the spec's model (or `--model`) with its tokenizer, the
/// run, and `{spec, result, device}`.
fn run_on_text(
    spec: serde_json::Value,
    name: &str,
    model: Option<&Path>,
    device: DeviceArg,
    run: impl FnOnce(
        &interplay_models::Transformer,
        &interplay_models::tokenizer::TextTokenizer,
    ) -> std::result::Result<serde_json::Value, interplay_lab::LabError>,
) -> Result<serde_json::Value> {
    let dev = device.init()?;
    let m = load(&model_path(name, model), &dev)?;
    let tk = m.tokenizer.as_ref().ok_or_else(|| {
        anyhow!(
            "this model has no tokenizer (the experiment's prompts are text): {}",
            m.tokenizer_note.clone().unwrap_or_default()
        )
    })?;
    let result = run(&m.model, tk)?;
    Ok(json!({ "spec": spec, "result": result, "device": dev.backend }))
}

/// The model a spec names (SmolLM2, a bundled model) or the file given with `--model`, on the
/// device asked for.
fn load_named(
    name: &str,
    model: Option<&Path>,
    device: DeviceArg,
) -> Result<(ComputeDevice, LoadedModel)> {
    if model.is_none() && name != registry::SMOLLM2_ID && Bundled::from_id(name).is_none() {
        bail!("the spec names model {name:?}: give its file with --model");
    }
    let dev = device.init()?;
    let m = load(&model_path(name, model), &dev)?;
    Ok((dev, m))
}

fn run_patching(
    spec: &PatchingSpec,
    model: Option<&Path>,
    device: DeviceArg,
) -> Result<serde_json::Value> {
    let (dev, m) = load_named(&spec.model, model, device)?;
    let grid = pollster::block_on(spec.run(&m, &mut no_progress))?;
    Ok(json!({
        "spec": spec,
        "clean_metric": grid.clean_metric,
        "corrupt_metric": grid.corrupt_metric,
        "grid": grid.grid,
        "patched": grid.patched,
        "device": dev.backend,
    }))
}

/// Train one of the bundled transformers from its seeded initialisation.
fn train_bundled(a: &TrainBundledArgs) -> Result<serde_json::Value> {
    use interplay_lab::bundled::train_bundled;
    let which = Bundled::from_id(&a.model)
        .ok_or_else(|| anyhow!("--model must be one of {:?}", Bundled::ALL.map(|b| b.id())))?;
    let steps = a.steps.unwrap_or(match which {
        Bundled::Induction => 8000,
        Bundled::Ioi => 3000,
        Bundled::Icl => 400,
        Bundled::IclWord => 3000,
    });
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| registry::bundled_path(Path::new("."), which.id()));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // Training runs on the CPU: reproducible, and the models are small.
    let dev = ComputeDevice::cpu();
    let t0 = std::time::Instant::now();
    let trained = pollster::block_on(train_bundled(
        which,
        steps,
        a.seed,
        &dev.device,
        &mut |s, l| {
            if (s + 1) % 100 == 0 {
                eprintln!(
                    "step {:5}  loss {l:.4}  ({:.0} s)",
                    s + 1,
                    t0.elapsed().as_secs_f64()
                );
            }
        },
    ))?;
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(out.join(name), bytes).with_context(|| format!("writing {name}"))
    };
    write("model.safetensors", &trained.safetensors)?;
    write("config.json", trained.config_json.as_bytes())?;
    write("tokenizer.json", trained.tokenizer_json.as_bytes())?;
    let report = serde_json::to_value(&trained.report)?;
    write(
        "train.json",
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    Ok(report)
}

fn run(cmd: &Cmd) -> Result<serde_json::Value> {
    match cmd {
        Cmd::Logits(a) => logits(a),
        Cmd::Patch(a) => patch(a),
        Cmd::Ablate(a) => circuits::ablate(a),
        Cmd::PathPatch(a) => circuits::path_patch(a),
        Cmd::Tokenize(a) => tokenize(a),
        Cmd::Run(a) => run_spec_file(a),
        Cmd::Esn(a) => dynamics::esn(a),
        Cmd::MemoryCapacity(a) => dynamics::memory_capacity(a),
        Cmd::Izhikevich(a) => dynamics::izhikevich(a),
        Cmd::Lif(a) => dynamics::lif(a),
        Cmd::Neurofeedback(a) => neurofeedback::command(a),
        Cmd::Merge(a) => merge::command(a),
        Cmd::Finetune(a) => merge::finetune(a),
        Cmd::TrainSuite(a) => merge::train_suite(a),
        Cmd::TrainBundled(a) => train_bundled(a),
    }
}

fn main() -> ExitCode {
    // A bug must still read as a message, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("interplay: internal error: {info}");
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    return ExitCode::SUCCESS;
                }
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    return ExitCode::from(2);
                }
                _ => {}
            }
            // clap's text starts with "error: " and ends with a usage line and a suggestion.
            eprint!("interplay: {}", e.render());
            return ExitCode::from(2);
        }
    };
    match run(&cli.cmd) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("interplay: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
