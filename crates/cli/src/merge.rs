//! `interplay merge`: task arithmetic, TIES and DARE over safetensors files of identical keys.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use interplay_lab::merge::{MergeOptions, merge};
use interplay_models::safetensors::{read_safetensors, write_safetensors};
use interplay_models::weights::Weights;
use serde_json::{Value, json};

use crate::Args;

fn read(path: &str) -> Result<Weights> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    read_safetensors(&bytes).with_context(|| path.to_string())
}

/// `interplay merge --base PATH --models P1 P2 .. --method M --lambda X [--density K]
/// [--drop P --seed S] [--trim-scope global|per-tensor] --out merged.safetensors`
pub fn command(args: &Args) -> Result<Value> {
    let base_path = args.need("--base")?;
    let at = args
        .rest
        .iter()
        .position(|a| a == "--models")
        .ok_or_else(|| anyhow!("missing --models P1 P2 .."))?;
    let model_paths: Vec<&String> = args.rest[at + 1..]
        .iter()
        .take_while(|a| !a.starts_with("--"))
        .collect();
    if model_paths.is_empty() {
        bail!("--models needs at least one safetensors file");
    }
    let out = args.need("--out")?;
    let d = MergeOptions::default();
    let opts = MergeOptions {
        method: args.need("--method")?.parse()?,
        lambda: args.num("--lambda", d.lambda)?,
        density: args.num("--density", d.density)?,
        drop: args.num("--drop", d.drop)?,
        seed: args.num("--seed", d.seed)?,
        trim_scope: args.value("--trim-scope").unwrap_or("global").parse()?,
    };
    let base = read(base_path)?;
    let models = model_paths
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<_>>>()?;
    let (merged, report) = merge(&base, &models, &opts)?;
    let tensors: Vec<(String, &_)> = merged.iter().map(|(k, v)| (k.clone(), v)).collect();
    std::fs::write(Path::new(out), write_safetensors(&tensors))
        .with_context(|| format!("writing {out}"))?;
    Ok(json!({ "out": out, "options": opts, "report": report }))
}
