//! The engine's side: runs jobs and reports through a sink. In the engine worker the sink is
//! `postMessage`; where no worker can start, the page runs the same code through a sink that
//! delivers to the client directly, so there is one statement of every job.

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

use super::protocol::{DynamicsOutput, FromEngine, JobId, Output, Part, Ran, Task, ToEngine};
use crate::assets::{now_ms, sleep_ms, yield_now};

/// Where a job's messages go.
pub(super) type Sink = Rc<dyn Fn(FromEngine)>;

/// A job's controls, set by the page's messages and read at each progress point.
#[derive(Default, Clone, Copy)]
struct Flags {
    cancel: bool,
    paused: bool,
}

thread_local! {
    static FLAGS: RefCell<HashMap<JobId, Flags>> = RefCell::new(HashMap::new());
}

fn flags(id: JobId) -> Flags {
    FLAGS.with(|f| f.borrow().get(&id).copied().unwrap_or_default())
}

/// Take a request as it arrives: a job's controls exist from its `Run` (so a `Cancel` right
/// behind it is honoured) until it ends; controls of ended jobs are dropped. Returns the job
/// to start, if it is a `Run`.
pub(super) fn receive(msg: ToEngine) -> Option<(JobId, Backend, Task)> {
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

/// Start the engine in this dedicated worker: take jobs from `postMessage`, answer the same way.
pub fn start() {
    let scope: web_sys::DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let out = scope.clone();
    let sink: Sink = Rc::new(move |msg: FromEngine| {
        let posted = msg
            .serialize(&serializer())
            .map_err(|e| e.to_string())
            .and_then(|v| out.post_message(&v).map_err(|e| format!("{e:?}")));
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
            let _ = out.post_message(&v);
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
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    sink(FromEngine::Ready);
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
            while flags(id).paused && !flags(id).cancel {
                sleep_ms(20).await;
            }
            !flags(id).cancel
        })
    }
}

/// Run job `id` (taken by [`receive`]) and report its outcome (always exactly one `Done` or
/// `Failed`).
pub(super) async fn run(id: JobId, backend: Backend, task: Task, sink: Sink) {
    let (dev, fallback) = device_for(backend).await;
    let t0 = now_ms();
    let result = compute(id, &dev, task, sink.clone()).await;
    let ran = Ran {
        backend: dev.backend,
        fallback,
        ms: now_ms() - t0,
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

async fn compute(id: JobId, dev: &ComputeDevice, task: Task, sink: Sink) -> Result<Output, String> {
    let device = &dev.device;
    let mut on_progress = progress_of(id, sink.clone());
    let part = move |p: Part| sink(FromEngine::Part { id, part: p });
    match task {
        Task::Experiment(e) => match *e {
            Experiment::Dynamics(spec) => {
                let out = match &spec {
                    DynamicsSpec::Spiking(x) => {
                        let mut on_chunk =
                            |c: &interplay_dynamics::SpikingResult| part(Part::Spikes(c.clone()));
                        x.run(device, &mut on_chunk, &mut on_progress)
                            .await
                            .map(DynamicsOutput::Spiking)
                    }
                    DynamicsSpec::Prediction(x) => x
                        .run(device, &mut on_progress)
                        .await
                        .map(DynamicsOutput::Prediction),
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
            Experiment::Merge(spec) => spec
                .run(device, &mut on_progress)
                .await
                .map(Output::Merge)
                .map_err(|e| e.to_string()),
            other => Err(format!(
                "the engine does not run {} experiments yet; the page runs them",
                other.lab().title()
            )),
        },
        Task::FineTune {
            task,
            pasted,
            options,
        } => {
            let data = match task {
                Some(t) => Ok(Dataset::task(t, Split::Train)),
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
                    suite::evaluate(device, &t.weights, at, &suite::test_sets(device)).await?;
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
