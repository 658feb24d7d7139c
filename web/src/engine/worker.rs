//! The engine's side: runs jobs and reports through a sink, which posts to the page — from the
//! engine worker, or, where no worker can start, from this module imported into the page (over
//! a `MessageChannel`), so there is one statement of every job. The engine is its own wasm
//! module (`src/bin/interplay-engine.rs`): the page's module does not carry it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use interplay_dynamics::DynamicsSpec;
use interplay_lab::Experiment;
use interplay_lab::suite::{self, Dataset, Split, TrainProgress};
use interplay_models::device::device_lost;
use interplay_models::patching::Progress;
use interplay_models::{Backend, ComputeDevice};
use serde::Serialize;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use interplay_lab::PatchingSpec;
use interplay_models::load::LoadedModel;
use interplay_models::patching::{PatchGrid, PatchTarget};

use super::held::{self, held_model};
use super::protocol::{DynamicsOutput, FromEngine, JobId, Output, Part, Ran, Task, ToEngine};
use crate::assets::{now_ms, sleep_ms, yield_now};

/// Where a job's messages go.
type Sink = Rc<dyn Fn(FromEngine)>;

/// A job's controls, set by the page's messages and read at each progress point.
#[derive(Default, Clone, Copy)]
struct Flags {
    cancel: bool,
    paused: bool,
    /// Time spent paused, left out of the job's compute time.
    paused_ms: f64,
}

thread_local! {
    static FLAGS: RefCell<HashMap<JobId, Flags>> = RefCell::new(HashMap::new());
}

/// The row and column labels of a patching sweep's grid.
fn patch_labels(
    spec: &PatchingSpec,
    m: &LoadedModel,
    grid: &PatchGrid,
) -> Result<(Vec<String>, Vec<String>), String> {
    let resolved = spec
        .resolve(m.tokenizer.as_ref())
        .map_err(|e| e.to_string())?;
    let shown = |id: u32| interplay_lab::inspect::shown(m, id);
    let (n, h) = (m.model.config.n_layers, m.model.config.n_heads);
    let rows = (0..grid.grid.len())
        .map(|l| {
            if spec.target == PatchTarget::HeadOutPos {
                format!("L{}H{}", l / h, l % h)
            } else if l == n {
                "ln_final in".to_string()
            } else {
                format!("L{l}")
            }
        })
        .collect();
    let cols = if spec.target == PatchTarget::HeadOut {
        (0..h).map(|h| format!("H{h}")).collect()
    } else {
        resolved
            .clean
            .iter()
            .enumerate()
            .map(|(i, &id)| format!("{i} {}", shown(id)))
            .collect()
    };
    Ok((rows, cols))
}

fn flags(id: JobId) -> Flags {
    FLAGS.with(|f| f.borrow().get(&id).copied().unwrap_or_default())
}

/// Take a request as it arrives: a job's controls exist from its `Run` (so a `Cancel` right
/// behind it is honoured) until it ends; controls of ended jobs are dropped. Returns the job
/// to start, if it is a `Run`.
fn receive(msg: ToEngine) -> Option<(JobId, Backend, Task)> {
    FLAGS.with(|f| {
        let mut f = f.borrow_mut();
        match msg {
            ToEngine::Run { id, backend, task } => {
                f.insert(id, Flags::default());
                return Some((id, backend, *task));
            }
            ToEngine::Cancel { id } => {
                if let Some(x) = f.get_mut(&id) {
                    x.cancel = true
                }
            }
            ToEngine::Pause { id, paused } => {
                if let Some(x) = f.get_mut(&id) {
                    x.paused = paused
                }
            }
        }
        None
    })
}

/// Whether this wasm instance runs as the engine worker (a dedicated worker's global scope).
pub fn is_worker() -> bool {
    js_sys::global()
        .dyn_into::<web_sys::DedicatedWorkerGlobalScope>()
        .is_ok()
}

/// Where the engine takes requests and posts its answers.
#[derive(Clone)]
enum Endpoint {
    /// Its dedicated worker's global scope.
    Worker(web_sys::DedicatedWorkerGlobalScope),
    /// The engine's end of a `MessageChannel`, where the page runs the engine itself.
    Page(web_sys::MessagePort),
}

impl Endpoint {
    fn post(&self, v: &JsValue) -> Result<(), JsValue> {
        match self {
            Endpoint::Worker(s) => s.post_message(v),
            Endpoint::Page(p) => p.post_message(v),
        }
    }

    fn listen(&self, f: &js_sys::Function) {
        match self {
            Endpoint::Worker(s) => s.set_onmessage(Some(f)),
            Endpoint::Page(p) => p.set_onmessage(Some(f)),
        }
    }
}

/// Start the engine in this dedicated worker: take jobs from `postMessage`, answer the same way.
pub fn start() {
    let scope: web_sys::DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    report_panics(loader_says(&scope, "interplayPanicChannel").as_string());
    let sink = serve(Endpoint::Worker(scope.clone()));
    ready(scope, sink);
}

/// Start the engine on the page's own thread, where no worker could start: the page imported
/// this module and talks to it over `port` exactly as it would to the worker, and hears of a
/// panic on the `BroadcastChannel` named `panics`.
pub fn start_in_page(port: web_sys::MessagePort, panics: String) {
    report_panics(Some(panics));
    let sink = serve(Endpoint::Page(port));
    sink(FromEngine::Ready {
        threads: 1,
        note: Some("computing in the page".into()),
    });
}

/// Take requests at `end` and run them; returns where the engine's messages go.
fn serve(end: Endpoint) -> Sink {
    let out = end.clone();
    let sink: Sink = Rc::new(move |msg: FromEngine| {
        let posted = msg
            .serialize(&serializer())
            .map_err(|e| e.to_string())
            .and_then(|v| out.post(&v).map_err(|e| format!("{e:?}")));
        // A result that cannot be sent still ends its job on the page, with the reason.
        if let (Err(e), FromEngine::Done { id, .. } | FromEngine::Failed { id, .. }) =
            (posted, &msg)
            && let Ok(v) = (FromEngine::Failed {
                id: *id,
                ran: None,
                message: format!("the engine could not send the result: {e}"),
            })
            .serialize(&serializer())
        {
            let _ = out.post(&v);
        }
    });
    let to_page = sink.clone();
    let on_message =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
            match serde_wasm_bindgen::from_value::<ToEngine>(e.data()) {
                Ok(msg) => {
                    if let Some((id, backend, task)) = receive(msg) {
                        let sink = to_page.clone();
                        wasm_bindgen_futures::spawn_local(run(id, backend, task, sink));
                    }
                }
                // Id 0 names no job: the page fails every waiting job with this message.
                Err(e) => to_page(FromEngine::Failed {
                    id: 0,
                    ran: None,
                    message: format!("the engine could not read a request: {e}"),
                }),
            }
        });
    end.listen(on_message.as_ref().unchecked_ref());
    on_message.forget();
    sink
}

/// What `engine.js` set on this worker's global scope before instantiating the module.
fn loader_says(scope: &web_sys::DedicatedWorkerGlobalScope, key: &str) -> JsValue {
    js_sys::Reflect::get(scope, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

/// The single-threaded module: ready at once, saying why it has one thread.
#[cfg(not(feature = "threads"))]
fn ready(scope: web_sys::DedicatedWorkerGlobalScope, sink: Sink) {
    sink(FromEngine::Ready {
        threads: 1,
        note: loader_says(&scope, "interplayThreadsNote").as_string(),
    });
}

/// The threaded module: start the pool Burn's CPU kernels run on (rayon over Web Workers sharing
/// this module's memory), then take jobs. A pool that cannot start is an error the page sees as
/// a failed engine (it then computes itself): without it every parallel kernel would panic.
#[cfg(feature = "threads")]
fn ready(scope: web_sys::DedicatedWorkerGlobalScope, sink: Sink) {
    let threads = loader_says(&scope, "interplayThreads")
        .as_f64()
        .map_or(1, |n| n.clamp(1.0, 64.0) as usize);
    wasm_bindgen_futures::spawn_local(async move {
        match wasm_bindgen_futures::JsFuture::from(wasm_bindgen_rayon::init_thread_pool(threads))
            .await
        {
            Ok(_) => sink(FromEngine::Ready {
                threads,
                note: None,
            }),
            Err(e) => {
                // Thrown from a timer, it reaches the page's `Worker.onerror` (a rejected
                // promise would not), so the page stops waiting and computes itself.
                let msg = format!("the thread pool did not start: {e:?}");
                let throw =
                    Closure::once_into_js(move || -> JsValue { wasm_bindgen::throw_str(&msg) });
                let _ = scope.set_timeout_with_callback(throw.unchecked_ref());
            }
        }
    });
}

/// The `BroadcastChannel` the page listens on for a panic of this engine.
static PANIC_CHANNEL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Tell the page when any thread of this engine panics, with the panic's message (the trap that
/// follows reads only "unreachable"). A panic on a pool thread aborts that thread only: the job
/// waiting for it would wait forever, and no error reaches the page (the pool's workers belong
/// to this worker). The hook runs on the panicking thread and reaches the page over a channel
/// named by the page; the memory (and so the name) is shared by every thread.
fn report_panics(channel: Option<String>) {
    let Some(channel) = channel else { return };
    let _ = PANIC_CHANNEL.set(channel);
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        if let Some(name) = PANIC_CHANNEL.get()
            && let Ok(ch) = web_sys::BroadcastChannel::new(name)
        {
            // The message alone reads as a sentence in the page; the location is in the console.
            let what = info
                .payload_as_str()
                .map_or_else(|| info.to_string(), str::to_string);
            let _ = ch.post_message(&what.into());
        }
    }));
}

/// How messages are encoded: exact 64-bit integers (seeds) as BigInt, maps as objects.
pub(super) fn serializer() -> serde_wasm_bindgen::Serializer {
    serde_wasm_bindgen::Serializer::new()
        .serialize_large_number_types_as_bigints(true)
        .serialize_maps_as_objects(true)
}

/// The device for `backend` with the page's fallback rule; a GPU lost once stays lost.
async fn device_for(backend: Backend) -> (ComputeDevice, Option<String>) {
    match (backend, device_lost()) {
        (Backend::Cpu, _) => (ComputeDevice::cpu(), None),
        (Backend::Wgpu, Some(r)) => (
            ComputeDevice::cpu(),
            Some(format!(
                "the WebGPU device was lost ({r}); reload the page to use it again"
            )),
        ),
        (Backend::Wgpu, None) => ComputeDevice::init_with_fallback(Backend::Wgpu).await,
    }
}

/// The progress callback of job `id`: reports `(done, total)`, lets control messages in,
/// holds while paused, and resolves to `false` once cancelled.
fn progress_of(id: JobId, sink: Sink) -> impl FnMut(usize, usize) -> Progress {
    move |done, total| {
        sink(FromEngine::Progress { id, done, total });
        Box::pin(async move {
            yield_now().await;
            let held = now_ms();
            while flags(id).paused && !flags(id).cancel {
                sleep_ms(20).await;
            }
            let waited = now_ms() - held;
            if waited > 0.0 {
                FLAGS.with(|f| {
                    if let Some(fl) = f.borrow_mut().get_mut(&id) {
                        fl.paused_ms += waited;
                    }
                });
            }
            !flags(id).cancel
        })
    }
}

/// Run job `id` (taken by [`receive`]) and report its outcome (always exactly one `Done` or
/// `Failed`).
async fn run(id: JobId, backend: Backend, task: Task, sink: Sink) {
    let (dev, fallback) = device_for(backend).await;
    let t0 = now_ms();
    let result = compute(id, &dev, task, sink.clone()).await;
    let ran = Ran {
        backend: dev.backend,
        fallback,
        ms: now_ms() - t0 - flags(id).paused_ms,
    };
    let cancelled = flags(id).cancel;
    FLAGS.with(|f| f.borrow_mut().remove(&id));
    sink(match result {
        Ok(output) => FromEngine::Done {
            id,
            ran,
            output: Box::new(output),
        },
        Err(message) => FromEngine::Failed {
            id,
            ran: Some(ran),
            message: if cancelled {
                "cancelled".into()
            } else {
                message
            },
        },
    });
}

/// The Merge suite's checkpoints (`bundled/merge/`), fetched from the site the first time a job
/// needs them: the module does not carry them, since only the Merge lab uses them. Offline they
/// come from the service worker's cache.
#[cfg(target_arch = "wasm32")]
async fn merge_suite() -> Result<(), String> {
    if suite::bundled_provided() {
        return Ok(());
    }
    let mut files = Vec::with_capacity(suite::BUNDLED_FILES.len());
    for name in suite::BUNDLED_FILES {
        let bytes = crate::assets::fetch_bytes(&format!("bundled/merge/{name}"))
            .await
            .map_err(|e| e.to_string())?;
        files.push((name.to_string(), bytes));
    }
    suite::provide_bundled(files).map_err(|e| e.to_string())
}

/// Natively the suite is compiled in.
#[cfg(not(target_arch = "wasm32"))]
async fn merge_suite() -> Result<(), String> {
    Ok(())
}

/// The Santa Fe series, fetched like the Merge suite the first time a Santa Fe run needs it.
#[cfg(target_arch = "wasm32")]
async fn santafe_series() -> Result<(), String> {
    use interplay_dynamics::series;
    if !series::santafe_provided() {
        let bytes = crate::assets::fetch_bytes(series::SANTAFE_FILE)
            .await
            .map_err(|e| e.to_string())?;
        series::provide_santafe(bytes);
    }
    Ok(())
}

/// Natively the series is compiled in.
#[cfg(not(target_arch = "wasm32"))]
async fn santafe_series() -> Result<(), String> {
    Ok(())
}

async fn compute(id: JobId, dev: &ComputeDevice, task: Task, sink: Sink) -> Result<Output, String> {
    let device = &dev.device;
    let mut on_progress = progress_of(id, sink.clone());
    let part = move |p: Part| sink(FromEngine::Part { id, part: p });
    match task {
        Task::DeviceCheck { n } => interplay_models::device::device_check(dev, n)
            .await
            .map(Output::DeviceCheck)
            .map_err(|e| e.to_string()),
        Task::Experiment(e) => match *e {
            Experiment::Dynamics(spec) => {
                let out = match &spec {
                    DynamicsSpec::Spiking(x) => {
                        let mut on_chunk =
                            |c: &interplay_dynamics::SpikingResult| part(Part::Spikes(c.clone()));
                        return x
                            .run(device, &mut on_chunk, &mut on_progress)
                            .await
                            .map(|r| Output::SpikingEnd {
                                rate_exc_hz: r.rate_exc_hz,
                                rate_inh_hz: r.rate_inh_hz,
                            })
                            .map_err(|e| e.to_string());
                    }
                    DynamicsSpec::Prediction(x) => {
                        if x.task == interplay_dynamics::tasks::Task::SantaFe {
                            santafe_series().await?;
                        }
                        x.run(device, &mut on_progress)
                            .await
                            .map(DynamicsOutput::Prediction)
                    }
                    DynamicsSpec::MemoryCapacity(x) => x
                        .run(device, &mut on_progress)
                        .await
                        .map(DynamicsOutput::Memory),
                    DynamicsSpec::EiSweep(x) => {
                        let mut on_row =
                            |r: &interplay_dynamics::EiSweepRow| part(Part::SweepRow(r.clone()));
                        x.run(device, &mut on_row, &mut on_progress)
                            .await
                            .map(DynamicsOutput::Sweep)
                    }
                    DynamicsSpec::WhatWhen(x) => {
                        let mut on_trial =
                            |t: &interplay_dynamics::whatwhen::Trial| part(Part::Trial(t.clone()));
                        x.run(device, &mut on_trial, &mut on_progress)
                            .await
                            .map(DynamicsOutput::WhatWhen)
                    }
                };
                out.map(Output::Dynamics).map_err(|e| e.to_string())
            }
            Experiment::Merge(spec) => {
                merge_suite().await?;
                spec.run(device, &mut on_progress)
                    .await
                    .map(|o| Output::Merge(Box::new(o)))
                    .map_err(|e| e.to_string())
            }
            Experiment::Circuits(spec) => {
                let m = held_model(&spec.model, dev).await?;
                let grid = spec
                    .run(&m, &mut on_progress)
                    .await
                    .map_err(|e| e.to_string())?;
                let (rows, cols) = patch_labels(&spec, &m, &grid)?;
                Ok(Output::Patching { grid, rows, cols })
            }
            Experiment::Neurofeedback(spec) => {
                let m = held_model(&spec.model, dev).await?;
                let tk = m
                    .tokenizer
                    .as_ref()
                    .ok_or("this model has no tokenizer; the experiment needs sentences as text")?;
                interplay_lab::neurofeedback::run(&spec, &m.model, tk, &mut on_progress)
                    .await
                    .map(Output::Neurofeedback)
                    .map_err(|e| e.to_string())
            }
            Experiment::RelationNeurons(spec) => {
                let m = held_model(&spec.model, dev).await?;
                let tk = m
                    .tokenizer
                    .as_ref()
                    .ok_or("this model has no tokenizer; the facts are text")?;
                interplay_lab::neurons::run(&spec, &m.model, tk, &mut on_progress)
                    .await
                    .map(Output::RelationNeurons)
                    .map_err(|e| e.to_string())
            }
            Experiment::CircuitReuse(spec) => {
                let m = held_model(&spec.model, dev).await?;
                let tk = m
                    .tokenizer
                    .as_ref()
                    .ok_or("this model has no tokenizer; the prompts are text")?;
                interplay_lab::reuse::run(&spec, &m.model, tk, &mut on_progress)
                    .await
                    .map(|r| Output::CircuitReuse(Box::new(r)))
                    .map_err(|e| e.to_string())
            }
            Experiment::AttributionPatching(spec) => {
                let m = held_model(&spec.model, dev).await?;
                let outcome = spec
                    .run(&m, &mut on_progress)
                    .await
                    .map_err(|e| e.to_string())?;
                let (rows, cols) = patch_labels(&spec.patching(), &m, &outcome.activation)?;
                Ok(Output::AttributionPatching {
                    outcome: Box::new(outcome),
                    rows,
                    cols,
                })
            }
            Experiment::EdgeAttribution(spec) => {
                let m = held_model(&spec.model, dev).await?;
                spec.run(&m, &mut on_progress)
                    .await
                    .map(|r| Output::EdgeAttribution(Box::new(r)))
                    .map_err(|e| e.to_string())
            }
            Experiment::ClampedTraining(spec) => {
                let mut on_losses = |run: usize, l: &[f32]| {
                    part(Part::Losses {
                        run,
                        losses: l.to_vec(),
                    })
                };
                spec.run(device, &mut on_losses, &mut on_progress)
                    .await
                    .map(|r| Output::ClampedTraining(Box::new(r)))
                    .map_err(|e| e.to_string())
            }
            Experiment::SubspacePatching(spec) => {
                let m = held_model(&spec.model, dev).await?;
                spec.run(&m, &mut on_progress)
                    .await
                    .map(|r| Output::SubspacePatching(Box::new(r)))
                    .map_err(|e| e.to_string())
            }
            Experiment::RecallReasoning(spec) => {
                let m = held_model(&spec.model, dev).await?;
                let tk = m
                    .tokenizer
                    .as_ref()
                    .ok_or("this model has no tokenizer; the questions are text")?;
                interplay_lab::recall::run(&spec, &m.model, tk, &mut on_progress)
                    .await
                    .map(|r| Output::RecallReasoning(Box::new(r)))
                    .map_err(|e| e.to_string())
            }
        },
        Task::Inspect { model, query } => {
            let m = held_model(&model, dev).await?;
            query
                .run(&m)
                .await
                .map(Output::Inspection)
                .map_err(|e| e.to_string())
        }
        Task::LoadModel { key, name, files } => {
            held::load(key, name, files, dev).await.map(Output::Model)
        }
        Task::FineTune {
            task,
            pasted,
            options,
        } => {
            merge_suite().await?;
            let data = match task {
                Some(t) => Dataset::task(t, Split::Train),
                None => Dataset::parse(&pasted),
            };
            let r = async {
                let data = data?;
                options.check()?;
                let base = suite::bundled(None)?;
                let mut on_step = |p: TrainProgress| -> Progress {
                    part(Part::TrainStep {
                        step: p.step,
                        steps: p.steps,
                        epoch: p.epoch,
                        loss: p.loss,
                    });
                    Box::pin(async move {
                        yield_now().await;
                        !flags(id).cancel
                    })
                };
                let t = suite::train(device, &base, &data, &options, &mut on_step).await?;
                let at = options.linearised.then_some(&base);
                let accuracy =
                    suite::evaluate(device, &t.weights, at, &suite::test_sets(device)?).await?;
                Ok::<_, interplay_lab::LabError>(Output::FineTuned {
                    accuracy,
                    safetensors: suite::to_safetensors(&t.weights)?,
                })
            }
            .await;
            r.map_err(|e| match e {
                interplay_lab::LabError::Cancelled => {
                    "Fine-tuning cancelled; the loss so far is kept above.".to_string()
                }
                e => e.to_string(),
            })
        }
    }
}
