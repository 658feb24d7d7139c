//! `interplay ablate` and `interplay path-patch`: the Circuits lab's head ablation and path
//! patching from the command line, so they can be checked from outside like `patch` (metric =
//! logit(answer) − logit(wrong) at the last position).

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Result, bail};
use clap::Args;
use interplay_lab::ablation::{
    AblationKind, Head, Receiver, ReceiverInput, ablate_heads, path_patch_receivers,
};
use serde_json::json;

use crate::{DeviceArg, List, load};

/// A head as the flags write it: `LAYER.HEAD` (e.g. `9.6`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct HeadArg(Head);

impl FromStr for HeadArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("a head is LAYER.HEAD, e.g. 9.6 (got {s:?})");
        let (l, h) = s.split_once('.').ok_or_else(bad)?;
        Ok(HeadArg((
            l.trim().parse().map_err(|_| bad())?,
            h.trim().parse().map_err(|_| bad())?,
        )))
    }
}

/// A receiver as the flags write it: `LAYER.HEAD:q`, `:k` or `:v`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ReceiverArg(Receiver);

impl FromStr for ReceiverArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("a receiver is LAYER.HEAD:q, :k or :v, e.g. 14.1:q (got {s:?})");
        let (head, input) = s.split_once(':').ok_or_else(bad)?;
        let input = match input.trim() {
            "q" => ReceiverInput::Q,
            "k" => ReceiverInput::K,
            "v" => ReceiverInput::V,
            _ => return Err(bad()),
        };
        Ok(ReceiverArg((head.parse::<HeadArg>()?.0, input)))
    }
}

/// How ablated heads are replaced.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum Mode {
    /// The heads' hook_z set to 0 at every position.
    Zero,
    /// The mean of the prompt's and the reference prompt's hook_z, per position.
    Mean,
    /// The reference prompt's hook_z (resample ablation).
    Resample,
}

#[derive(Args)]
pub(crate) struct AblateArgs {
    /// A .gguf file, or a folder with model.safetensors + config.json.
    #[arg(long)]
    model: PathBuf,
    /// The prompt's token ids, comma-separated.
    #[arg(long)]
    ids: List<u32>,
    /// The heads to ablate, LAYER.HEAD comma-separated (e.g. 9.6,10.0).
    #[arg(long)]
    heads: List<HeadArg>,
    /// What replaces the heads' output (hook_z).
    #[arg(long, value_enum)]
    mode: Mode,
    /// The reference prompt's token ids (as many as --ids); needed by mean and resample.
    #[arg(long)]
    reference_ids: Option<List<u32>>,
    /// The answer token id.
    #[arg(long)]
    answer: u32,
    /// The token id the metric subtracts.
    #[arg(long)]
    wrong: u32,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Args)]
pub(crate) struct PathPatchArgs {
    /// A .gguf file, or a folder with model.safetensors + config.json.
    #[arg(long)]
    model: PathBuf,
    /// Clean prompt's token ids, comma-separated.
    #[arg(long)]
    clean_ids: List<u32>,
    /// Corrupted prompt's token ids (as many as the clean prompt's).
    #[arg(long)]
    corrupt_ids: List<u32>,
    /// Sender heads, LAYER.HEAD comma-separated: their output comes from the corrupted run.
    #[arg(long)]
    senders: List<HeadArg>,
    /// Receivers, LAYER.HEAD:q|k|v comma-separated (each in a later layer than the first
    /// sender's): the input
    /// the path reaches. For grouped-query models (e.g. SmolLM2) a k or v receiver replaces its
    /// key/value head's input (head / group size), which its whole query group reads.
    #[arg(long)]
    receivers: List<ReceiverArg>,
    /// The clean prompt's answer token id.
    #[arg(long)]
    answer: u32,
    /// The token id the corrupted prompt favours.
    #[arg(long)]
    wrong: u32,
    #[command(flatten)]
    device: DeviceArg,
}

pub(crate) fn ablate(a: &AblateArgs) -> Result<serde_json::Value> {
    let (kind, reference) = match (a.mode, &a.reference_ids) {
        // Zero ablation reads no reference prompt.
        (Mode::Zero, _) => (AblationKind::Zero, &a.ids),
        (Mode::Mean, Some(r)) => (AblationKind::Mean, r),
        (Mode::Resample, Some(r)) => (AblationKind::Resample, r),
        (m, None) => bail!(
            "--mode {} needs --reference-ids: the prompt whose head outputs replace (or are averaged with) the prompt's",
            if matches!(m, Mode::Mean) {
                "mean"
            } else {
                "resample"
            }
        ),
    };
    let dev = a.device.init()?;
    let m = load(&a.model, &dev)?;
    let heads: Vec<Head> = a.heads.0.iter().map(|h| h.0).collect();
    let (clean, ablated) = pollster::block_on(ablate_heads(
        &m.model,
        &a.ids.0,
        &reference.0,
        &heads,
        kind,
        a.answer,
        a.wrong,
    ))?;
    Ok(json!({
        "clean_metric": clean.logit_diff,
        "metric": ablated.logit_diff,
        "p_answer": ablated.probability,
        "kl": ablated.kl,
        "device": dev.backend,
    }))
}

pub(crate) fn path_patch(a: &PathPatchArgs) -> Result<serde_json::Value> {
    let dev = a.device.init()?;
    let m = load(&a.model, &dev)?;
    let senders: Vec<Head> = a.senders.0.iter().map(|h| h.0).collect();
    let receivers: Vec<Receiver> = a.receivers.0.iter().map(|r| r.0).collect();
    let s = pollster::block_on(path_patch_receivers(
        &m.model,
        &a.clean_ids.0,
        &a.corrupt_ids.0,
        &senders,
        &receivers,
        a.answer,
        a.wrong,
    ))?;
    Ok(json!({
        "clean_metric": s.clean.logit_diff,
        "corrupt_metric": s.corrupt.logit_diff,
        "patched_metric": s.patched.logit_diff,
        "device": dev.backend,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_receivers_parse_or_say_how_to_write_them() {
        assert_eq!("9.6".parse::<HeadArg>(), Ok(HeadArg((9, 6))));
        assert_eq!(
            "14.1:k".parse::<ReceiverArg>(),
            Ok(ReceiverArg(((14, 1), ReceiverInput::K)))
        );
        assert!("9".parse::<HeadArg>().unwrap_err().contains("LAYER.HEAD"));
        assert!("14.1:z".parse::<ReceiverArg>().unwrap_err().contains(":q"));
    }
}
