//! Loading a model with its tokenizer from bytes (the page: a dropped file or a fetch) or from a
//! path (natively: a `.gguf` file, or a folder with `model.safetensors` + `config.json`
//! [+ `tokenizer.json`]).

use burn::tensor::Device;

use crate::config::TransformerConfig;
use crate::error::{ModelError, Result};
use crate::gguf::Gguf;
use crate::safetensors::read_safetensors;
use crate::tokenizer::TextTokenizer;
use crate::transformer::Transformer;
use crate::transformer::quant::QuantWeights;
use crate::weights::{Source, build_transformer};

/// A model ready to run, with its tokenizer when the checkpoint has one.
#[derive(Debug)]
pub struct LoadedModel {
    /// The network.
    pub model: Transformer,
    /// Its tokenizer (absent for a safetensors folder without `tokenizer.json`).
    pub tokenizer: Option<TextTokenizer>,
    /// Why there is no tokenizer, when there is none.
    pub tokenizer_note: Option<String>,
}

/// The format of a file, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// GGUF.
    Gguf,
    /// safetensors.
    Safetensors,
}

/// Sniff a model file's format.
pub fn sniff(bytes: &[u8]) -> Result<FileKind> {
    if bytes.starts_with(b"GGUF") {
        return Ok(FileKind::Gguf);
    }
    if bytes.len() >= 9 && bytes[8] == b'{' {
        return Ok(FileKind::Safetensors);
    }
    Err(ModelError::Format {
        format: "model",
        reason: "neither GGUF nor safetensors (a model file starts with \"GGUF\" or a safetensors header)".into(),
    })
}

/// Load a GGUF file.
pub fn load_gguf(bytes: &[u8], device: &Device) -> Result<LoadedModel> {
    let g = Gguf::parse(bytes)?;
    let config = g.config()?;
    let (tokenizer, tokenizer_note) = match g.tokenizer() {
        Ok(t) => (Some(t), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let weights = g.weights()?;
    let mut model = build_transformer(config, weights, Source::Gguf, device)?;
    // Decoding on the CPU reads the quantised blocks (about a fifth of the bytes for Q4_1);
    // the f32 weights stay for everything else.
    if crate::device::is_cpu(device) {
        model.quantised = QuantWeights::from_gguf(&g, &model.config).map(std::sync::Arc::new);
    }
    Ok(LoadedModel {
        model,
        tokenizer,
        tokenizer_note,
    })
}

/// Load Hugging Face safetensors with its `config.json` (and `tokenizer.json` if given).
pub fn load_safetensors(
    model: &[u8],
    config_json: &[u8],
    tokenizer_json: Option<&[u8]>,
    device: &Device,
) -> Result<LoadedModel> {
    let config = TransformerConfig::from_hf_json(config_json)?;
    let weights = read_safetensors(model)?;
    let model = build_transformer(config, weights, Source::HuggingFace, device)?;
    let (tokenizer, tokenizer_note) = match tokenizer_json.map(TextTokenizer::from_json) {
        Some(Ok(t)) => (Some(t), None),
        Some(Err(e)) => (None, Some(e.to_string())),
        None => (None, Some("no tokenizer.json: give token ids".into())),
    };
    Ok(LoadedModel {
        model,
        tokenizer,
        tokenizer_note,
    })
}

/// Load from a path: a `.gguf` file or a folder with `model.safetensors` + `config.json`.
#[cfg(not(target_family = "wasm"))]
pub fn load_path(path: &std::path::Path, device: &Device) -> Result<LoadedModel> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|source| ModelError::Io {
            path: p.display().to_string(),
            source,
        })
    };
    if path.is_dir() {
        let model = read(&path.join("model.safetensors"))?;
        let config = read(&path.join("config.json"))?;
        let tok_path = path.join("tokenizer.json");
        let tok = if tok_path.exists() {
            Some(read(&tok_path)?)
        } else {
            None
        };
        return load_safetensors(&model, &config, tok.as_deref(), device);
    }
    let bytes = read(path)?;
    match sniff(&bytes)? {
        FileKind::Gguf => load_gguf(&bytes, device),
        FileKind::Safetensors => {
            let dir = path.parent().unwrap_or(std::path::Path::new("."));
            let config = read(&dir.join("config.json"))?;
            let tok_path = dir.join("tokenizer.json");
            let tok = if tok_path.exists() {
                Some(read(&tok_path)?)
            } else {
                None
            };
            load_safetensors(&bytes, &config, tok.as_deref(), device)
        }
    }
}
