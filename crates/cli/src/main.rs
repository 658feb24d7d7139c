//! `interplay`: the native runner of Interplay's experiments, for researchers and for checks
//! against the page. Every command prints JSON on stdout; errors go to stderr with exit code 1.
//!
//! ```text
//! interplay logits   --model PATH --ids 1,2,3 [--all-positions] [--device cpu|wgpu]
//! interplay patch    --model PATH --clean-ids .. --corrupt-ids .. --hook resid_pre|resid_mid|resid_post|attn_out|mlp_out|head_out|head_out_pos
//!                    --answer ID --wrong ID [--device cpu|wgpu]
//! interplay tokenize --model PATH --text "..."
//! interplay run      SPEC.json [--model PATH] [--device cpu|wgpu]
//! interplay esn      --task mackey-glass|narma10|santa-fe --steps N --train N --test N --warmup N
//!                    --units N --spectral-radius X --leak X --input-scaling X --ridge X --seed S
//!                    [--inhibition X [--adapt --target-rate X --target-spread X]]
//! interplay memory-capacity --units N --spectral-radius X --ridge X --k-max K --seed S
//! interplay izhikevich --excitatory N --inhibitory N --ms T --seed S     (also: lif)
//! interplay neurofeedback --model PATH --layer L --direction pc1|..|probe|random --sentences FILE
//!                    --examples 0,4,16 --seed S
//! interplay merge    --base PATH --models P1 P2 .. --method task_arithmetic|ties|dare --lambda X
//!                    [--density K] [--drop P --seed S] [--trim-scope global|per-tensor] --out OUT
//! ```
//! `run` takes an experiment spec exported from the page (or written by hand) and prints the same
//! numbers the page shows. A spec naming the bundled model `"smollm2"` finds it under
//! `public/models/` unless `--model` is given.
//! `--model` is a `.gguf` file or a folder with `model.safetensors` + `config.json`
//! (+ `tokenizer.json`).

mod dynamics;
mod merge;
mod neurofeedback;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use interplay_lab::PatchingSpec;
use interplay_models::device::read_f32;
use interplay_models::load::{LoadedModel, load_path};
use interplay_models::patching::{PatchTarget, no_progress, patch_sweep};
use interplay_models::{Backend, ComputeDevice};
use serde_json::json;

const SMOLLM2: &str = "public/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

const USAGE: &str = "usage:
  interplay logits   --model PATH --ids 1,2,3 [--all-positions] [--device cpu|wgpu]
  interplay patch    --model PATH --clean-ids 1,2,3 --corrupt-ids 1,4,3 --hook HOOK --answer ID --wrong ID [--device cpu|wgpu]
                     HOOK: resid_pre | resid_mid | resid_post | attn_out | mlp_out | head_out | head_out_pos
  interplay tokenize --model PATH --text TEXT
  interplay run      SPEC.json [--model PATH] [--device cpu|wgpu]   (a spec exported from the page)
  interplay esn      --task mackey-glass|narma10|santa-fe [--steps 10000 --train 5000 --test 2000 --warmup 100
                     --units 500 --spectral-radius 0.9 --leak 0.3 --input-scaling 1.0 --ridge 1e-7 --seed 42]
                     [--inhibition X [--adapt --target-rate 0.2 --target-spread 0.1]] [--device cpu|wgpu]
  interplay memory-capacity [--units 100 --spectral-radius 1.0 --ridge 1e-4 --k-max 50 --seed 1] [--device cpu|wgpu]
  interplay izhikevich [--excitatory 800 --inhibitory 200 --ms 1000 --seed 1] [--device cpu|wgpu]   (lif: same flags)
  interplay merge    --base PATH --models P1 P2 .. --method task_arithmetic|ties|dare --lambda X
                     [--density K] [--drop P --seed S] [--trim-scope global|per-tensor] --out merged.safetensors
                     (safetensors of identical keys; GGUF files of one architecture merge into --out merged.gguf)
  interplay finetune --task digits|mirror|flip|rotate|invert | --data FILE [--init PATH] [--epochs 20 --lr 1e-3
                     --batch 32 --seed 2] [--linearised] --out model.safetensors [--device cpu|wgpu]   (the Merge lab's MLP)
  interplay train-suite [--out crates/lab/suite] [--device cpu|wgpu]   (retrain the bundled task suite)
  interplay neurofeedback --model PATH|smollm2|icl-3l --layer L --direction pc1,pc2,..,probe,random
                     --sentences FILE|sentiment|icl-words --examples 0,4,16 --seed S [--seeds 1,2]
                     [--hook resid_post|resid_pre|resid_mid|attn_out|mlp_out --pooling mean|last
                     --queries 24 --labels A,B --format chat|plain --quantiles Q --control --no-shuffled
                     --explicit --max-tokens 24 --temperature 0 --samples 1]
  interplay train-bundled --model induction-2l|ioi-3l|icl-3l [--steps N --seed S] [--out public/bundled/ID]
                     (retrain a Circuits lab bundled model on the CPU; writes model.safetensors,
                     config.json, tokenizer.json, train.json)
--model: a .gguf file, or a folder with model.safetensors + config.json (+ tokenizer.json)";

struct Args {
    cmd: String,
    rest: Vec<String>,
}

impl Args {
    fn value(&self, name: &str) -> Option<&str> {
        self.rest
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.rest.get(i + 1))
            .map(String::as_str)
    }
    fn need(&self, name: &str) -> Result<&str> {
        self.value(name)
            .ok_or_else(|| anyhow!("missing {name}\n\n{USAGE}"))
    }
    fn flag(&self, name: &str) -> bool {
        self.rest.iter().any(|a| a == name)
    }
    fn ids(&self, name: &str) -> Result<Vec<u32>> {
        parse_ids(self.need(name)?)
            .with_context(|| format!("{name} takes comma-separated token ids"))
    }
    fn id(&self, name: &str) -> Result<u32> {
        self.need(name)?
            .trim()
            .parse()
            .with_context(|| format!("{name} takes one token id"))
    }
}

fn parse_ids(s: &str) -> Result<Vec<u32>> {
    let ids = s
        .split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| x.trim().parse::<u32>().map_err(|e| anyhow!("{x:?}: {e}")))
        .collect::<Result<Vec<_>>>()?;
    if ids.is_empty() {
        bail!("no token ids given");
    }
    Ok(ids)
}

fn device(args: &Args) -> Result<ComputeDevice> {
    let backend: Backend = args.value("--device").unwrap_or("cpu").parse()?;
    Ok(pollster::block_on(ComputeDevice::init(backend))?)
}

fn load(args: &Args, dev: &ComputeDevice) -> Result<LoadedModel> {
    let path = PathBuf::from(args.need("--model")?);
    load_path(&path, &dev.device).with_context(|| format!("loading {}", path.display()))
}

fn run(args: &Args) -> Result<serde_json::Value> {
    match args.cmd.as_str() {
        "logits" => {
            let dev = device(args)?;
            let m = load(args, &dev)?;
            let ids = args.ids("--ids")?;
            let tokens = m.model.tokens(std::slice::from_ref(&ids))?;
            Ok(if args.flag("--all-positions") {
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
        "patch" => {
            let dev = device(args)?;
            let m = load(args, &dev)?;
            let target: PatchTarget = args.need("--hook")?.parse()?;
            let grid = pollster::block_on(patch_sweep(
                &m.model,
                &args.ids("--clean-ids")?,
                &args.ids("--corrupt-ids")?,
                target,
                args.id("--answer")?,
                args.id("--wrong")?,
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
        "tokenize" => {
            let dev = ComputeDevice::cpu();
            let m = load(args, &dev)?;
            let tk = m.tokenizer.as_ref().ok_or_else(|| {
                anyhow!(
                    "this model has no tokenizer: {}",
                    m.tokenizer_note.clone().unwrap_or_default()
                )
            })?;
            let text = args.need("--text")?;
            let ids = tk.encode(text)?;
            Ok(json!({ "ids": ids, "tokens": tk.display_tokens(&ids) }))
        }
        "run" => {
            let spec_path = args
                .rest
                .first()
                .filter(|a| !a.starts_with("--"))
                .ok_or_else(|| anyhow!("run takes a spec file\n\n{USAGE}"))?;
            let text = std::fs::read_to_string(spec_path)
                .with_context(|| format!("reading {spec_path}"))?;
            if let Some(spec) = merge::parse_spec(&text)? {
                return merge::run_spec(&spec, args);
            }
            if let Some(spec) = dynamics::parse_spec(&text)? {
                return dynamics::run_spec(&spec, args);
            }
            if let Some(spec) = neurofeedback::parse_spec(&text)? {
                return neurofeedback::run_spec(&spec, args);
            }
            let spec: PatchingSpec = serde_json::from_str(&text)
                .with_context(|| format!("{spec_path} is not a patching spec"))?;
            let dev = device(args)?;
            let path = match args.value("--model") {
                Some(p) => PathBuf::from(p),
                None if spec.model == "smollm2" => PathBuf::from(SMOLLM2),
                None if interplay_lab::bundled::Bundled::from_id(&spec.model).is_some() => {
                    PathBuf::from(format!("public/bundled/{}", spec.model))
                }
                None => bail!(
                    "the spec names model {:?}: give its file with --model",
                    spec.model
                ),
            };
            let m = load_path(&path, &dev.device)
                .with_context(|| format!("loading {}", path.display()))?;
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
        "" | "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(serde_json::Value::Null)
        }
        "merge" => merge::command(args),
        "train-suite" => merge::train_suite(args),
        "train-bundled" => train_bundled(args),
        "finetune" => merge::finetune(args),
        "neurofeedback" => neurofeedback::command(args),
        other => match dynamics::command(args)? {
            Some(v) => Ok(v),
            None => bail!("unknown command {other:?}\n\n{USAGE}"),
        },
    }
}

/// Train one of the Circuits lab's bundled transformers from its seeded initialisation.
fn train_bundled(args: &Args) -> Result<serde_json::Value> {
    use interplay_lab::bundled::{Bundled, train_bundled};
    let id = args.need("--model")?;
    let which = Bundled::from_id(id)
        .ok_or_else(|| anyhow!("--model must be one of {:?}", Bundled::ALL.map(|b| b.id())))?;
    let default_steps = match which {
        Bundled::Induction => 8000,
        Bundled::Ioi => 3000,
        Bundled::Icl => 400,
    };
    let steps = match args.value("--steps") {
        Some(s) => s.parse().context("--steps takes a whole number")?,
        None => default_steps,
    };
    let seed = match args.value("--seed") {
        Some(s) => s.parse().context("--seed takes a whole number")?,
        None => 1,
    };
    let out = std::path::PathBuf::from(
        args.value("--out")
            .map(str::to_string)
            .unwrap_or_else(|| format!("public/bundled/{}", which.id())),
    );
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // Training runs on the CPU: reproducible, and the models are small.
    let dev = ComputeDevice::cpu();
    let t0 = std::time::Instant::now();
    let trained = pollster::block_on(train_bundled(
        which,
        steps,
        seed,
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

fn main() -> ExitCode {
    // A bug must still read as a message, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("interplay: internal error: {info}");
    }));
    let mut all = std::env::args().skip(1);
    let args = Args {
        cmd: all.next().unwrap_or_default(),
        rest: all.collect(),
    };
    match run(&args) {
        Ok(serde_json::Value::Null) => ExitCode::SUCCESS,
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
