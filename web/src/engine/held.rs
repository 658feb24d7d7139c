//! The model the engine holds for the Circuits lab's questions and the Neurofeedback and
//! patching runs that name it: reading the student's files, building the model on a device,
//! what the page shows about it, and rebuilding it when a job asks for the other device.

use std::cell::RefCell;
use std::rc::Rc;

use interplay_models::load::{FileKind, LoadedModel, load_gguf, load_safetensors, sniff};
use interplay_models::{Arch, Backend, ComputeDevice};
use wasm_bindgen::JsCast;

use super::protocol::{ModelFile, ModelInfo};

/// The model the engine holds: its files (kept as `Blob`s, so a device switch rebuilds it
/// without holding a second copy of the bytes) and the model built from them on the device of
/// the last job.
struct Held {
    /// This load's number in the engine: a rebuild finishing after another load keeps nothing.
    load: u64,
    key: String,
    files: Vec<ModelFile>,
    built: Option<(Backend, Rc<LoadedModel>)>,
}

thread_local! {
    static MODEL: RefCell<Option<Held>> = const { RefCell::new(None) };
    static LOADS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Load model `key` (shown as `name`) from `files` on `dev` and hold it, replacing the one held.
pub(super) async fn load(
    key: String,
    name: String,
    files: Vec<ModelFile>,
    dev: &ComputeDevice,
) -> Result<ModelInfo, String> {
    // The previous model goes first: two large models need not fit at once.
    MODEL.with(|m| *m.borrow_mut() = None);
    let load = LOADS.with(|n| n.replace(n.get() + 1)) + 1;
    // A later load that started while this one read its files wins.
    let replaced = || LOADS.with(|n| n.get()) != load;
    let bytes = read_files(&files).await?;
    if replaced() {
        return Err("a newer model load replaced this one".into());
    }
    let model = Rc::new(build_model(&bytes, &dev.device)?);
    drop(bytes);
    let info = describe(&key, &name, &model, dev.backend);
    if replaced() {
        return Err("a newer model load replaced this one".into());
    }
    MODEL.with(|m| {
        *m.borrow_mut() = Some(Held {
            load,
            key,
            files,
            built: Some((dev.backend, model)),
        })
    });
    Ok(info)
}

/// The held model on `dev` (rebuilt there if it was built for another device), checked to be
/// the one `key` names.
pub(super) async fn held_model(key: &str, dev: &ComputeDevice) -> Result<Rc<LoadedModel>, String> {
    let (load, files) = MODEL.with(|m| {
        let m = m.borrow();
        let held = m
            .as_ref()
            .ok_or_else(|| format!("load a model first: this experiment uses {key:?}"))?;
        if held.key != key {
            return Err(format!(
                "the experiment names model {key:?} but {:?} is loaded: load it, or set the model to {:?} in the spec",
                held.key, held.key
            ));
        }
        match &held.built {
            Some((b, model)) if *b == dev.backend => Ok((held.load, Err(model.clone()))),
            _ => Ok((held.load, Ok(held.files.clone()))),
        }
    })?;
    let files = match files {
        Err(built) => return Ok(built),
        Ok(files) => files,
    };
    // The other device's copy goes first: two copies need not fit at once.
    MODEL.with(|m| {
        if let Some(held) = m.borrow_mut().as_mut()
            && held.load == load
        {
            held.built = None;
        }
    });
    let model = Rc::new(build_model(&read_files(&files).await?, &dev.device)?);
    MODEL.with(|m| {
        if let Some(held) = m.borrow_mut().as_mut()
            && held.load == load
        {
            held.built = Some((dev.backend, model.clone()));
        }
    });
    Ok(model)
}

/// Read a model's files into this engine's memory.
async fn read_files(files: &[ModelFile]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let buf = wasm_bindgen_futures::JsFuture::from(f.blob.array_buffer())
            .await
            .map_err(|e| {
                // A DOMException (the file changed or moved on disk since it was chosen) is an
                // Error with a message.
                let why = e
                    .dyn_ref::<js_sys::Error>()
                    .map(|e| String::from(e.message()))
                    .or_else(|| e.as_string())
                    .unwrap_or_else(|| format!("{e:?}"));
                format!(
                    "could not read {} ({why}); if it changed on disk, choose it again",
                    f.name
                )
            })?;
        out.push((f.name.clone(), js_sys::Uint8Array::new(&buf).to_vec()));
    }
    Ok(out)
}

/// Build a model from its files on `device`: a GGUF file alone, or safetensors with its
/// `config.json` (and `tokenizer.json` when there is one).
fn build_model(
    files: &[(String, Vec<u8>)],
    device: &burn::tensor::Device,
) -> Result<LoadedModel, String> {
    let find = |suffix: &str| {
        files
            .iter()
            .find(|(n, _)| n.to_ascii_lowercase().ends_with(suffix))
    };
    if let Some((_, b)) = files
        .iter()
        .find(|(_, b)| matches!(sniff(b), Ok(FileKind::Gguf)))
    {
        return load_gguf(b, device).map_err(|e| e.to_string());
    }
    let model = files
        .iter()
        .find(|(_, b)| matches!(sniff(b), Ok(FileKind::Safetensors)))
        .ok_or_else(|| not_a_model(files))?;
    let config = find("config.json").ok_or_else(|| {
        "a safetensors model needs its config.json: select both files together".to_string()
    })?;
    let tokenizer = find("tokenizer.json").map(|(_, b)| b.as_slice());
    load_safetensors(&model.1, &config.1, tokenizer, device).map_err(|e| e.to_string())
}

/// Why none of `files` is a model: a file named like one that is not (damaged, or another
/// format renamed) is named, so the student does not look for a missing file.
fn not_a_model(files: &[(String, Vec<u8>)]) -> String {
    let named = |ext: &str| {
        files
            .iter()
            .find(|(n, _)| n.to_ascii_lowercase().ends_with(ext))
    };
    if let Some((n, b)) = named(".gguf") {
        let start = String::from_utf8_lossy(&b[..b.len().min(4)])
            .escape_debug()
            .to_string();
        return format!(
            "{n} is not a GGUF model: a GGUF file starts with \"GGUF\", this one starts with \"{start}\" \
             ({} bytes). Is the download damaged, or is it another format renamed?",
            b.len()
        );
    }
    if let Some((n, b)) = named(".safetensors") {
        return format!(
            "{n} is not a safetensors model: it has no safetensors header ({} bytes). Is the \
             download damaged?",
            b.len()
        );
    }
    "no model file: choose a .gguf file, or a .safetensors file together with its config.json"
        .to_string()
}

/// What the page shows about model `m` (named `key`/`name`) living on `backend`.
fn describe(key: &str, name: &str, m: &LoadedModel, backend: Backend) -> ModelInfo {
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
        key: key.to_string(),
        name: name.to_string(),
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
