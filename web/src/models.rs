//! The page's loaded model: where its bytes came from (the bundled SmolLM2, or files the user
//! picked or dropped, which never leave the browser) and the model built from them on the
//! page's current device. Switching device rebuilds the model from the kept bytes.

use std::cell::RefCell;
use std::rc::Rc;

use interplay_lab::bundled::Bundled;
use interplay_models::load::{FileKind, LoadedModel, load_gguf, load_safetensors, sniff};
use interplay_models::{Arch, Backend, registry};
use leptos::prelude::*;

use crate::assets::fetch_bytes;
use crate::runtime;

/// The files a model was loaded from.
#[derive(Clone)]
pub struct ModelSource {
    /// The name specs use: `smollm2`, a bundled model's id, or the user's file name.
    pub key: String,
    /// Shown name.
    pub name: String,
    /// (file name, bytes).
    pub files: Vec<(String, Rc<Vec<u8>>)>,
}

/// What the page shows about the model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// The name specs use (see [`ModelSource::key`]).
    pub key: String,
    /// Shown name.
    pub name: String,
    /// One-line description.
    pub summary: String,
    /// Whether text prompts work (else token ids).
    pub has_tokenizer: bool,
    /// Why there is no tokenizer.
    pub tokenizer_note: Option<String>,
    /// Device the weights live on.
    pub backend: Backend,
    /// Layers.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Vocabulary size.
    pub d_vocab: usize,
}

struct Slot {
    source: ModelSource,
    model: Rc<LoadedModel>,
    backend: Backend,
}

thread_local! {
    static SLOT: RefCell<Option<Slot>> = const { RefCell::new(None) };
}

fn build(source: &ModelSource) -> Result<LoadedModel, String> {
    let device = runtime::current().device;
    let find = |suffix: &str| {
        source
            .files
            .iter()
            .find(|(n, _)| n.to_ascii_lowercase().ends_with(suffix))
    };
    if let Some((_, b)) = source
        .files
        .iter()
        .find(|(_, b)| matches!(sniff(b), Ok(FileKind::Gguf)))
    {
        return load_gguf(b, &device).map_err(|e| e.to_string());
    }
    let model = source
        .files
        .iter()
        .find(|(_, b)| matches!(sniff(b), Ok(FileKind::Safetensors)))
        .ok_or_else(|| {
            "no model file: choose a .gguf file, or a .safetensors file together with its config.json".to_string()
        })?;
    let config = find("config.json").ok_or_else(|| {
        "a safetensors model needs its config.json: select both files together".to_string()
    })?;
    let tokenizer = find("tokenizer.json").map(|(_, b)| b.as_slice());
    load_safetensors(&model.1, &config.1, tokenizer, &device).map_err(|e| e.to_string())
}

fn info(source: &ModelSource, m: &LoadedModel, backend: Backend) -> ModelInfo {
    let c = &m.model.config;
    let family = match c.arch {
        Arch::Gpt2 => "GPT-2",
        Arch::Llama => "Llama",
    };
    let gqa = if c.n_kv_heads != c.n_heads {
        format!(" sharing {} key/value heads", c.n_kv_heads)
    } else {
        String::new()
    };
    ModelInfo {
        key: source.key.clone(),
        name: source.name.clone(),
        summary: format!(
            "{family}: {} layers, d_model {}, {} heads{gqa}, vocabulary {}",
            c.n_layers, c.d_model, c.n_heads, c.d_vocab
        ),
        has_tokenizer: m.tokenizer.is_some(),
        tokenizer_note: m.tokenizer_note.clone(),
        backend,
        n_layers: c.n_layers,
        n_heads: c.n_heads,
        d_vocab: c.d_vocab,
    }
}

/// Load a model from `source` onto the page's device and make it current. On failure the
/// previous model stays loaded.
pub fn load(source: ModelSource) -> Result<ModelInfo, String> {
    let backend = runtime::current().backend;
    let m = Rc::new(build(&source)?);
    let i = info(&source, &m, backend);
    SLOT.with(|s| {
        *s.borrow_mut() = Some(Slot {
            source,
            model: m,
            backend,
        })
    });
    Ok(i)
}

/// The current model on the current device (rebuilt if the device changed since loading).
pub fn current() -> Result<(Rc<LoadedModel>, ModelInfo), String> {
    let backend = runtime::current().backend;
    let (source, model, loaded_on) = SLOT.with(|s| {
        s.borrow()
            .as_ref()
            .map(|sl| (sl.source.clone(), sl.model.clone(), sl.backend))
            .ok_or_else(|| "load a model first".to_string())
    })?;
    if loaded_on == backend {
        let i = info(&source, &model, backend);
        return Ok((model, i));
    }
    let i = load(source)?;
    let m = SLOT.with(|s| s.borrow().as_ref().map(|sl| sl.model.clone()));
    m.map(|m| (m, i))
        .ok_or_else(|| "model vanished".to_string())
}

/// Fetch a named model's files from this site: `smollm2` or a bundled model's id. Progress goes
/// to `status`.
pub async fn fetch_source(
    key: &str,
    status: RwSignal<Option<Result<String, String>>>,
) -> Result<ModelSource, String> {
    if let Some(b) = Bundled::from_id(key) {
        status.set(Some(Ok(format!("Loading {}…", b.title()))));
        let mut files = Vec::new();
        for f in ["model.safetensors", "config.json", "tokenizer.json"] {
            let bytes = fetch_bytes(&format!("bundled/{}/{f}", b.id()))
                .await
                .map_err(|e| format!("{e} (a bundled model file is missing from this site)"))?;
            files.push((f.to_string(), Rc::new(bytes)));
        }
        return Ok(ModelSource {
            key: b.id().into(),
            name: b.title().into(),
            files,
        });
    }
    status.set(Some(Ok(
        "Fetching SmolLM2-135M-Instruct (98 MB, served by this site)…".into(),
    )));
    let bytes = fetch_bytes(&registry::smollm2_site_path())
        .await
        .map_err(|e| format!("{e}. Run `cargo xtask fetch-models` before building the site."))?;
    status.set(Some(Ok("Dequantising and uploading weights…".into())));
    Ok(ModelSource {
        key: registry::SMOLLM2_ID.into(),
        name: registry::SMOLLM2_TITLE.into(),
        files: vec![(registry::SMOLLM2_FILE.into(), Rc::new(bytes))],
    })
}
