//! The page's loaded model: where its bytes came from (the bundled SmolLM2, or files the user
//! picked or dropped, which never leave the browser), what the page shows about it, and where
//! it is built — in the engine worker for labs that compute there (Neurofeedback), on the
//! page's device for labs that still compute in the page (Circuits), each only when needed.
//! Switching device rebuilds a model from the kept bytes.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use interplay_lab::bundled::Bundled;
use interplay_models::load::LoadedModel;
use interplay_models::{Backend, registry};
use leptos::prelude::*;

use crate::assets::fetch_bytes;
use crate::engine::worker::{build_model, describe};
use crate::engine::{self, JobId, ModelFile, Output, Task};
use crate::runtime;

pub use crate::engine::ModelInfo;

/// The files a model was loaded from.
#[derive(Clone)]
pub struct ModelSource {
    /// This load, unique for the page's lifetime (the engine holds at most one).
    pub id: u64,
    /// The name specs use: `smollm2`, a bundled model's id, or the user's file name.
    pub key: String,
    /// Shown name.
    pub name: String,
    /// (file name, bytes).
    pub files: Vec<(String, Rc<Vec<u8>>)>,
}

impl ModelSource {
    /// A new load of `files` named `key` / `name`.
    pub fn new(key: String, name: String, files: Vec<(String, Rc<Vec<u8>>)>) -> Self {
        thread_local!(static NEXT: Cell<u64> = const { Cell::new(1) });
        let id = NEXT.with(|n| n.replace(n.get() + 1));
        Self {
            id,
            key,
            name,
            files,
        }
    }
}

/// The current model: its source, what the page shows, and the page's own copy (built only
/// when a lab computes in the page; the engine keeps its own).
struct Slot {
    source: ModelSource,
    info: ModelInfo,
    model: Option<(Backend, Rc<LoadedModel>)>,
}

thread_local! {
    static SLOT: RefCell<Option<Slot>> = const { RefCell::new(None) };
    /// (engine start, source id) of the model the engine holds.
    static IN_ENGINE: Cell<Option<(u32, u64)>> = const { Cell::new(None) };
}

/// Load a model from `source` onto the page's device and make it current (labs that compute
/// in the page). On failure the previous model stays loaded.
pub fn load(source: ModelSource) -> Result<ModelInfo, String> {
    let dev = runtime::current();
    let m = Rc::new(build_model(&source.files, &dev.device)?);
    let info = describe(&source.key, &source.name, &m, dev.backend);
    SLOT.with(|s| {
        *s.borrow_mut() = Some(Slot {
            source,
            info: info.clone(),
            model: Some((dev.backend, m)),
        })
    });
    Ok(info)
}

/// Load a model from `source` in the engine (parsed and dequantised off the main thread) and
/// make it current; the page builds its own copy only if a lab computing in the page asks
/// ([`current`]). On failure the previous model stays loaded.
pub async fn load_in_engine(source: ModelSource) -> Result<ModelInfo, String> {
    let info = send_to_engine(&source, None).await?;
    SLOT.with(|s| {
        *s.borrow_mut() = Some(Slot {
            source,
            info: info.clone(),
            model: None,
        })
    });
    Ok(info)
}

/// Send `source` to the engine; while it loads, `job` names the load, so the lab's Cancel
/// (and leaving the lab) ends it.
async fn send_to_engine(
    source: &ModelSource,
    job: Option<RwSignal<Option<JobId>>>,
) -> Result<ModelInfo, String> {
    // The engine drops what it held before building: until this load succeeds it holds nothing.
    IN_ENGINE.with(|e| e.set(None));
    let files = source
        .files
        .iter()
        .map(|(name, bytes)| ModelFile {
            name: name.clone(),
            bytes: bytes.as_ref().clone(),
        })
        .collect();
    let task = Task::LoadModel {
        key: source.key.clone(),
        name: source.name.clone(),
        files,
    };
    let (id, done) = engine::submit(task, runtime::current().backend, |_| {}, |_| {});
    if let Some(j) = job {
        j.set(Some(id));
    }
    let r = done.await;
    if let Some(j) = job {
        j.set(None);
    }
    match r {
        Ok((Output::Model(info), _)) => {
            IN_ENGINE.with(|e| e.set(Some((engine::starts(), source.id))));
            Ok(info)
        }
        Ok(_) => Err("the engine answered with another result".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Make sure the engine holds the current model (it may have been loaded for the page, or the
/// engine restarted since), sending its files when it does not; `job` as for a load.
pub async fn ensure_in_engine(job: RwSignal<Option<JobId>>) -> Result<(), String> {
    let source = SLOT
        .with(|s| s.borrow().as_ref().map(|sl| sl.source.clone()))
        .ok_or("load a model first")?;
    // A switch of device may start another engine (the threaded one is CPU only), which holds
    // nothing yet.
    engine::prepare(runtime::current().backend);
    if IN_ENGINE.with(|e| e.get()) == Some((engine::starts(), source.id)) {
        return Ok(());
    }
    send_to_engine(&source, Some(job)).await.map(|_| ())
}

/// What the page shows about the current model (builds nothing).
pub fn info() -> Option<ModelInfo> {
    SLOT.with(|s| s.borrow().as_ref().map(|sl| sl.info.clone()))
}

/// The current model on the page's current device, built there if it has not been yet (or
/// the device changed since).
pub fn current() -> Result<(Rc<LoadedModel>, ModelInfo), String> {
    let dev = runtime::current();
    let (source, built) = SLOT.with(|s| {
        s.borrow()
            .as_ref()
            .map(|sl| (sl.source.clone(), sl.model.clone()))
            .ok_or_else(|| "load a model first".to_string())
    })?;
    if let Some((b, m)) = built
        && b == dev.backend
    {
        let info = describe(&source.key, &source.name, &m, b);
        return Ok((m, info));
    }
    let info = load(source)?;
    let m = SLOT.with(|s| {
        s.borrow()
            .as_ref()
            .and_then(|sl| sl.model.as_ref().map(|(_, m)| m.clone()))
    });
    m.map(|m| (m, info))
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
        return Ok(ModelSource::new(b.id().into(), b.title().into(), files));
    }
    status.set(Some(Ok(
        "Fetching SmolLM2-135M-Instruct (98 MB, served by this site)…".into(),
    )));
    let bytes = fetch_bytes(&registry::smollm2_site_path())
        .await
        .map_err(|e| format!("{e}. Run `cargo xtask fetch-models` before building the site."))?;
    status.set(Some(Ok("Dequantising and uploading weights…".into())));
    Ok(ModelSource::new(
        registry::SMOLLM2_ID.into(),
        registry::SMOLLM2_TITLE.into(),
        vec![(registry::SMOLLM2_FILE.into(), Rc::new(bytes))],
    ))
}
