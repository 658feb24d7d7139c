//! The page's loaded model: where its bytes came from (the bundled SmolLM2, or files the user
//! picked or dropped, which never leave the browser) and what the page shows about it. The model
//! itself is built in the engine worker, which every lab asks ([`ask`] for the Circuits lab's
//! questions); the kept files are sent again when the engine restarts or changes device.

use std::cell::{Cell, RefCell};

use interplay_lab::bundled::Bundled;
use interplay_lab::inspect::{Inspect, Inspection};
use interplay_models::registry;
use leptos::prelude::*;

use crate::assets::fetch_blob;
use crate::engine::{self, JobId, ModelFile, Output, Ran, Task};
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
    /// (file name, contents): the user's `File`s or this site's responses as `Blob`s, never read
    /// by the page.
    pub files: Vec<(String, web_sys::Blob)>,
}

impl ModelSource {
    /// A new load of `files` named `key` / `name`.
    pub fn new(key: String, name: String, files: Vec<(String, web_sys::Blob)>) -> Self {
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

/// The current model: its source and what the page shows.
struct Slot {
    source: ModelSource,
    info: ModelInfo,
}

thread_local! {
    static SLOT: RefCell<Option<Slot>> = const { RefCell::new(None) };
    /// (engine start, source id) of the model the engine holds.
    static IN_ENGINE: Cell<Option<(u32, u64)>> = const { Cell::new(None) };
    /// Models on their way to the engine: questions wait for them rather than send another.
    static SENDING: Cell<u32> = const { Cell::new(0) };
}

/// Until no model is on its way to the engine.
async fn sent() {
    while SENDING.with(Cell::get) > 0 {
        crate::assets::sleep_ms(30).await;
    }
}

/// Load a model from `source` in the engine (parsed and dequantised off the main thread) and
/// make it current. On failure the previous model stays current (the engine sends it again
/// when next asked).
pub async fn load_in_engine(source: ModelSource) -> Result<ModelInfo, String> {
    let info = send_to_engine(&source, None).await?;
    SLOT.with(|s| {
        *s.borrow_mut() = Some(Slot {
            source,
            info: info.clone(),
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
    SENDING.with(|x| x.set(x.get() + 1));
    let files = source
        .files
        .iter()
        .map(|(name, blob)| ModelFile {
            name: name.clone(),
            blob: blob.clone(),
        })
        .collect();
    let task = Task::LoadModel {
        key: source.key.clone(),
        name: source.name.clone(),
        files,
    };
    let (id, done) = engine::submit(task, runtime::current(), |_| {}, |_| {});
    if let Some(j) = job {
        j.set(Some(id));
    }
    let r = done.await;
    SENDING.with(|x| x.set(x.get().saturating_sub(1)));
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

/// Make sure the engine holds the current model (the engine may have restarted, or changed
/// device, since), sending its files when it does not; `job` as for a load.
pub async fn ensure_in_engine(job: Option<RwSignal<Option<JobId>>>) -> Result<(), String> {
    ensure(job, false).await
}

/// As [`ensure_in_engine`], in the gradients engine (started now if another engine runs).
pub async fn ensure_in_gradients_engine(
    job: Option<RwSignal<Option<JobId>>>,
) -> Result<(), String> {
    ensure(job, true).await
}

async fn ensure(job: Option<RwSignal<Option<JobId>>>, gradients: bool) -> Result<(), String> {
    // A load (another panel's, or another question's re-send) finishes first: sending the model
    // again would replace it.
    sent().await;
    let source = SLOT
        .with(|s| s.borrow().as_ref().map(|sl| sl.source.clone()))
        .ok_or("load a model first")?;
    // A switch of device may start another engine (the threaded one is CPU only), and so does a
    // need for gradients; a new engine holds nothing yet.
    if gradients {
        engine::prepare_gradients(runtime::current());
    } else {
        engine::prepare(runtime::current());
    }
    if IN_ENGINE.with(|e| e.get()) == Some((engine::starts(), source.id)) {
        return Ok(());
    }
    send_to_engine(&source, job).await.map(|_| ())
}

/// What the page shows about the current model (builds nothing).
pub fn info() -> Option<ModelInfo> {
    SLOT.with(|s| s.borrow().as_ref().map(|sl| sl.info.clone()))
}

/// Ask the engine `query` about the current model on the page's device (sending the model
/// first when the engine does not hold it): the answer and where it was computed.
pub async fn ask(query: Inspect) -> Result<(Inspection, Ran), String> {
    ensure_in_engine(None).await?;
    // Read after any load in flight has finished: the question is about the model now current.
    let key = info().ok_or("load a model first")?.key;
    let task = Task::Inspect { model: key, query };
    let (_, done) = engine::submit(task, runtime::current(), |_| {}, |_| {});
    match done.await {
        Ok((Output::Inspection(i), ran)) => Ok((i, ran)),
        Ok(_) => Err("the engine answered with another result".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The one sentence for a model that is needed offline and was never loaded online.
fn not_saved(title: &str) -> String {
    format!(
        "You are offline, and {title} is not saved in this browser yet: load it once while \
         online, and it stays available offline."
    )
}

/// Which of the site's models this browser holds for offline use (the service worker's
/// caches): their titles, bundled ones first.
pub async fn available_offline() -> Vec<&'static str> {
    let mut out = Vec::new();
    for b in Bundled::ALL {
        if crate::assets::cached(&format!("bundled/{}/model.safetensors", b.id())).await {
            out.push(b.title().trim_start_matches("Bundled: "));
        }
    }
    if crate::assets::cached(&registry::smollm2_site_path()).await {
        out.push(registry::SMOLLM2_TITLE);
    }
    out
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
            let blob = fetch_blob(&format!("bundled/{}/{f}", b.id()))
                .await
                .map_err(|e| {
                    if crate::assets::offline() {
                        not_saved(b.title().trim_start_matches("Bundled: "))
                    } else {
                        format!("{e} (a bundled model file is missing from this site)")
                    }
                })?;
            files.push((f.to_string(), blob));
        }
        return Ok(ModelSource::new(b.id().into(), b.title().into(), files));
    }
    status.set(Some(Ok(
        "Fetching SmolLM2-135M-Instruct (98 MB, served by this site)…".into(),
    )));
    let blob = fetch_blob(&registry::smollm2_site_path())
        .await
        .map_err(|e| {
            if crate::assets::offline() {
                not_saved(registry::SMOLLM2_TITLE)
            } else {
                format!("{e}. Run `cargo xtask fetch-models` before building the site.")
            }
        })?;
    status.set(Some(Ok("Dequantising and uploading weights…".into())));
    Ok(ModelSource::new(
        registry::SMOLLM2_ID.into(),
        registry::SMOLLM2_TITLE.into(),
        vec![(registry::SMOLLM2_FILE.into(), blob)],
    ))
}
