//! The engine: the labs' long computations run in one dedicated Web Worker, so the page's main
//! thread only draws and answers the user.
//!
//! The engine is its own wasm module (`bin/interplay-engine.rs`, `dist/engine/`, named in the
//! page's `<meta name="interplay-engine">`), started by `engine.js` in a dedicated worker where
//! its `main` calls [`worker::start`]: the page's module carries none of it. The page submits a
//! [`Task`] — for the spec labs, the one `Experiment` type; at start, the device check — and
//! receives progress, streamed [`Part`]s and the [`Output`]. Cancel resolves the job at once on
//! the page and stops the worker at its next progress point. Where no worker can start, the
//! page imports the engine's module itself and talks to it over a `MessageChannel`, the same
//! messages as to the worker.
//!
//! A leaf: it knows the page's device ([`crate::runtime`]) and nothing of the labs' views.

mod held;
/// The allocator that turns a failed allocation into a panic with its size.
#[cfg(target_arch = "wasm32")]
mod oom;
mod protocol;
mod start;
pub mod worker;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use futures_channel::oneshot;
use interplay_models::Backend;
use serde::Serialize;

pub use protocol::*;
use start::{Module, Port, spawn_worker, start_in_page};

/// Why a job gave no result.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// The user cancelled it.
    Cancelled,
    /// It failed; the message is for the user.
    Failed(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Cancelled => f.write_str("cancelled"),
            Failure::Failed(m) => f.write_str(m),
        }
    }
}

/// A finished job: its result and where it ran.
pub type Finished = Result<(Output, Ran), Failure>;

type Callback<T> = Rc<RefCell<dyn FnMut(T)>>;

struct Pending {
    on_progress: Callback<(usize, usize)>,
    on_part: Callback<Part>,
    done: oneshot::Sender<Finished>,
    /// Streamed pieces not yet handed over (see [`PART_BATCH_MS`]).
    parts: Vec<Part>,
}

/// Streamed pieces reach the page's views in batches at most this often: each hand-over
/// redraws a growing result, so fewer redraws keep the main thread free.
const PART_BATCH_MS: u64 = 250;

enum State {
    /// No engine yet (or the last worker stopped): the next job starts one.
    Idle,
    /// The engine is loading; requests wait in `queue`.
    Starting(Port),
    /// The engine takes requests.
    Ready(Port),
}

struct Client {
    state: State,
    /// The worker was started for CPU work (the threaded module where the page is isolated);
    /// WebGPU work needs the engine's own module, so a switch of device starts the other one.
    for_cpu: bool,
    /// The worker starting now is the threaded engine (replaced by the single-threaded one if
    /// it does not start).
    threaded: bool,
    /// The worker is the gradients engine (it serves every job, on WebGPU or one CPU thread).
    gradients: bool,
    /// A job has needed gradients: from then on every engine started is the gradients one, so
    /// a model sent before such a job is where the job runs (a switch back and forth would
    /// send it again each time).
    want_gradients: bool,
    queue: Vec<ToEngine>,
    next: JobId,
    jobs: HashMap<JobId, Pending>,
}

/// The threads the engine's CPU device computes on, and why only one where that is so.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuThreads {
    /// Threads (1: the single-threaded module).
    pub threads: usize,
    /// Why one thread, e.g. "host does not allow threads".
    pub note: Option<String>,
}

/// Threads the engine is asked for: the page's `?threads=N` (benchmarks compare 1 with all),
/// else every core the browser reports, at most 16.
fn threads_asked() -> usize {
    let Some(w) = web_sys::window() else {
        return 1;
    };
    threads_in_url()
        .unwrap_or_else(|| w.navigator().hardware_concurrency() as usize)
        .clamp(1, 16)
}

/// The page's `?threads=N`, if any.
fn threads_in_url() -> Option<usize> {
    web_sys::window()?
        .location()
        .search()
        .ok()
        .and_then(|s| web_sys::UrlSearchParams::new_with_str(&s).ok())
        .and_then(|q| q.get("threads"))
        .and_then(|n| n.parse::<usize>().ok())
}

/// What the page expects before the engine has said: threads need cross-origin isolation
/// (shared memory), which the server's headers or the service worker give.
fn threads_expected() -> CpuThreads {
    let asked = threads_asked();
    let isolated = web_sys::window()
        .and_then(|w| js_sys::Reflect::get(&w, &"crossOriginIsolated".into()).ok())
        .is_some_and(|v| v.is_truthy());
    if asked > 1 && !isolated {
        CpuThreads {
            threads: 1,
            note: Some("host does not allow threads".into()),
        }
    } else {
        CpuThreads {
            threads: asked,
            note: None,
        }
    }
}

/// The engine's CPU threads (reactive: the header follows it).
pub fn cpu_threads() -> CpuThreads {
    use leptos::prelude::Get;
    THREADS.with(|t| t.get())
}

fn set_threads(t: CpuThreads) {
    use leptos::prelude::Set;
    THREADS.with(|s| s.set(t));
}

thread_local! {
    static THREADS: leptos::prelude::ArcRwSignal<CpuThreads> =
        leptos::prelude::ArcRwSignal::new(threads_expected());
    static PHASE: leptos::prelude::ArcRwSignal<&'static str> =
        leptos::prelude::ArcRwSignal::new("idle");
    static STARTS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    static CLIENT: RefCell<Client> = RefCell::new(Client {
        state: State::Idle,
        for_cpu: false,
        threaded: false,
        gradients: false,
        want_gradients: false,
        queue: Vec::new(),
        next: 1,
        jobs: HashMap::new(),
    });
}

/// Submit `task` to run on `backend`. `on_progress(done, total)` and `on_part` are called as the
/// engine reports; the returned future resolves once with the result, a failure, or
/// [`Failure::Cancelled`] as soon as [`cancel`] is called.
pub fn submit(
    task: Task,
    backend: Backend,
    on_progress: impl FnMut((usize, usize)) + 'static,
    on_part: impl FnMut(Part) + 'static,
) -> (JobId, impl Future<Output = Finished>) {
    let (tx, rx) = oneshot::channel();
    let id = CLIENT.with(|c| {
        let mut c = c.borrow_mut();
        let id = c.next;
        c.next += 1;
        c.jobs.insert(
            id,
            Pending {
                on_progress: Rc::new(RefCell::new(on_progress)),
                on_part: Rc::new(RefCell::new(on_part)),
                done: tx,
                parts: Vec::new(),
            },
        );
        id
    });
    send(ToEngine::Run {
        id,
        backend,
        task: Box::new(task),
    });
    let done = async move {
        rx.await.unwrap_or_else(|_| {
            Err(Failure::Failed(
                "the engine stopped before the run finished".into(),
            ))
        })
    };
    (id, done)
}

/// Cancel job `id`: its future resolves now with [`Failure::Cancelled`]; the engine stops it at
/// its next progress point and whatever it still sends is dropped.
pub fn cancel(id: JobId) {
    let pending = CLIENT.with(|c| {
        let mut c = c.borrow_mut();
        // Not started yet: it never will.
        c.queue
            .retain(|m| !matches!(m, ToEngine::Run { id: queued, .. } if *queued == id));
        c.jobs.remove(&id)
    });
    if let Some(p) = pending {
        let _ = p.done.send(Err(Failure::Cancelled));
        send(ToEngine::Cancel { id });
    }
}

/// Hold job `id` at its next progress point (`true`), or let it go on.
pub fn pause(id: JobId, paused: bool) {
    if CLIENT.with(|c| c.borrow().jobs.contains_key(&id)) {
        send(ToEngine::Pause { id, paused });
    }
}

/// How many times an engine has started (a worker, or the page taking over): what the engine
/// held (a model) is gone when this changes.
pub fn starts() -> u32 {
    STARTS.with(|s| s.get())
}

fn started() {
    STARTS.with(|s| s.set(s.get() + 1));
}

/// Deliver `msg` to the engine: post it, queue it while the worker loads, or run it in the page.
fn send(msg: ToEngine) {
    if let ToEngine::Run { id, backend, task } = &msg {
        if task.needs_gradients() {
            CLIENT.with(|c| c.borrow_mut().want_gradients = true);
        }
        switch_engine(Some(*id), *backend);
    }
    let for_cpu = match &msg {
        ToEngine::Run { backend, .. } => *backend == Backend::Cpu,
        _ => false,
    };
    start_if_idle(for_cpu);
    let ready = CLIENT.with(|c| {
        let mut c = c.borrow_mut();
        match &c.state {
            State::Ready(p) => Some(p.clone()),
            State::Starting(_) => {
                c.queue.push(msg.clone());
                None
            }
            // No engine could start: the job has failed already.
            State::Idle => None,
        }
    });
    if let Some(p) = ready {
        post(&p, &msg);
    }
}

/// Start the engine (for CPU work: the threaded one where the page allows) unless one is there:
/// in a worker, else on the page's thread.
fn start_if_idle(for_cpu: bool) {
    let started_as = CLIENT.with(|c| {
        let mut c = c.borrow_mut();
        if !matches!(c.state, State::Idle) {
            return None;
        }
        started();
        let gradients = c.want_gradients;
        c.for_cpu = for_cpu && !gradients;
        c.threaded = c.for_cpu && threads_expected().threads > 1;
        let port = if gradients {
            spawn_worker(Module::Gradients, 1)
        } else {
            spawn_worker(Module::Engine, if for_cpu { threads_asked() } else { 1 })
        };
        c.gradients = gradients && port.is_some();
        // No gradients engine (a site built without it): the plain one, whose gradient jobs say
        // why they cannot run; where no worker starts, the plain engine runs in the page.
        if gradients && port.is_none() {
            c.want_gradients = false;
        }
        let port = port
            .or_else(|| gradients.then(|| spawn_worker(Module::Engine, 1)).flatten())
            .or_else(|| {
                started();
                start_in_page()
            });
        let in_page = matches!(port, Some(Port::Page(_)));
        if let Some(p) = port {
            c.state = State::Starting(p);
        }
        Some((matches!(c.state, State::Starting(_)), in_page))
    });
    publish_phase();
    match started_as {
        Some((false, _)) => {
            stopped_for_good("the site has no engine module: build it with `cargo xtask build`")
        }
        Some((true, true)) => computing_in_page(),
        _ => {}
    }
}

/// Say in the header that the engine runs on the page's thread.
fn computing_in_page() {
    set_threads(CpuThreads {
        threads: 1,
        note: Some("computing in the page".into()),
    });
}

/// Start the engine for `backend` now, before any job needs it: loading it (compiling the
/// module, starting the CPU pool) costs seconds of every core, which is better spent while the
/// student reads than after they press Run (on a 2-core machine the page's own thread then
/// waited up to 0.2 s for a core).
pub fn warm(backend: Backend) {
    // A run in flight keeps its engine (a device switch does not wait for it); the next job
    // switches, as without warming.
    if CLIENT.with(|c| !c.borrow().jobs.is_empty()) {
        return;
    }
    switch_engine(None, backend);
    start_if_idle(backend == Backend::Cpu);
}

/// Where the engine is, for the header's `data-engine`: "idle" (the next job starts it),
/// "starting", "ready" or "in-page" (reactive).
pub fn phase() -> &'static str {
    use leptos::prelude::Get;
    PHASE.with(|p| p.get())
}

/// Publish the engine's state to [`phase`]; called outside any borrow of the client, as a
/// signal's subscribers may submit work.
fn publish_phase() {
    use leptos::prelude::{GetUntracked, Set};
    let now = CLIENT.with(|c| match c.borrow().state {
        State::Idle => "idle",
        State::Starting(_) => "starting",
        State::Ready(Port::Page(_)) => "in-page",
        State::Ready(Port::Worker(_)) => "ready",
    });
    PHASE.with(|p| {
        if p.get_untracked() != now {
            p.set(now);
        }
    });
}

/// Work is about to run on `backend`: where the engine was started for the other kind of device
/// (the threaded CPU module has no WebGPU), stop it, so the next job starts the right one. What
/// the engine held (a model) is gone then ([`starts`] changes): call this before deciding
/// whether to send the model again.
pub fn prepare(backend: Backend) {
    switch_engine(None, backend);
}

/// The next job needs gradients: as [`prepare`], and the engine started from now on is the
/// gradients engine (its own module, loaded now; it serves every lab from then on).
pub fn prepare_gradients(backend: Backend) {
    CLIENT.with(|c| c.borrow_mut().want_gradients = true);
    switch_engine(None, backend);
}

/// As [`prepare`], for job `id` (about to be sent). The engine's other jobs — none, normally:
/// the device switch waits for runs to end — fail with the reason.
fn switch_engine(id: Option<JobId>, backend: Backend) {
    let old = CLIENT.with(|c| {
        let mut c = c.borrow_mut();
        // The engine on the page's thread computes on both devices and stays.
        let live = matches!(
            c.state,
            State::Starting(Port::Worker(_)) | State::Ready(Port::Worker(_))
        );
        // The gradients engine serves every job; the others their own kind of device, unless
        // gradients are wanted now.
        let serves = c.gradients
            || (!c.want_gradients
                && (c.for_cpu == (backend == Backend::Cpu) || threads_expected().threads == 1));
        if !live || serves {
            return None;
        }
        let why = if c.want_gradients {
            "the engine restarted to compute gradients (attribution patching, edge attribution, \
             training); run it again"
        } else {
            "the engine restarted for the other device; run it again"
        };
        match std::mem::replace(&mut c.state, State::Idle) {
            State::Starting(w) | State::Ready(w) => w.terminate(),
            _ => {}
        }
        // The stopped worker's messages and timer are stale from here on.
        started();
        c.queue.clear();
        Some((
            why,
            c.jobs
                .keys()
                .copied()
                .filter(|k| Some(*k) != id)
                .collect::<Vec<_>>(),
        ))
    });
    let switched = old.is_some();
    if let Some((why, others)) = old {
        for other in others {
            finish(other, Err(Failure::Failed(why.into())));
        }
    }
    if switched {
        publish_phase();
    }
}

fn post(w: &Port, msg: &ToEngine) {
    let posted = msg
        .serialize(&worker::serializer())
        .map_err(|e| e.to_string())
        .and_then(|v| w.post_message(&v).map_err(|e| format!("{e:?}")));
    if let (Err(e), ToEngine::Run { id, .. }) = (posted, msg) {
        finish(
            *id,
            Err(Failure::Failed(format!(
                "the engine could not take the request: {e}"
            ))),
        );
    }
}

/// The engine failed. A worker while loading: the threaded engine is replaced by the
/// single-threaded one, the single-threaded one by the engine on the page's thread, which takes
/// the queued jobs. While running: its jobs fail with a message and the next job starts a fresh
/// worker.
fn stopped(reason: &str) {
    enum After {
        Retried,
        NoGradients,
        InPage,
        Gone,
        FailJobs,
    }
    let after = CLIENT.with(|c| {
        let mut c = c.borrow_mut();
        match std::mem::replace(&mut c.state, State::Idle) {
            State::Starting(Port::Worker(w)) => {
                w.terminate();
                started();
                let threaded = std::mem::take(&mut c.threaded);
                // A gradients engine that does not start (offline before it was ever cached, a
                // hung fetch) is replaced by the plain one, whose gradient jobs say why they
                // cannot run; the next job that needs gradients tries it again.
                let gradients = std::mem::take(&mut c.gradients);
                if gradients {
                    c.want_gradients = false;
                }
                if let Some(p) = (threaded || gradients)
                    .then(|| spawn_worker(Module::Engine, 1))
                    .flatten()
                {
                    c.state = State::Starting(p);
                    if gradients {
                        After::NoGradients
                    } else {
                        After::Retried
                    }
                } else if let Some(p) = {
                    started();
                    start_in_page()
                } {
                    c.state = State::Starting(p);
                    After::InPage
                } else {
                    After::Gone
                }
            }
            State::Starting(Port::Page(_)) => After::Gone,
            State::Ready(p) => {
                p.terminate();
                After::FailJobs
            }
            State::Idle => After::FailJobs,
        }
    });
    publish_phase();
    match after {
        After::Retried => {
            web_sys::console::warn_1(
                &format!("the threaded engine did not start ({reason}); using one thread").into(),
            );
            set_threads(CpuThreads {
                threads: 1,
                note: Some(format!("threads did not start: {reason}")),
            });
        }
        After::NoGradients => web_sys::console::warn_1(
            &format!("the gradients engine did not start ({reason}); using the engine without")
                .into(),
        ),
        After::InPage => {
            computing_in_page();
            web_sys::console::warn_1(
                &format!("the engine worker did not start ({reason}); computing in the page")
                    .into(),
            );
        }
        After::Gone => stopped_for_good(reason),
        After::FailJobs => fail_all(&format!(
            "the engine stopped ({reason}); the next run starts it again"
        )),
    }
}

/// No engine could start: the waiting jobs fail with `reason`; the next job tries again.
fn stopped_for_good(reason: &str) {
    CLIENT.with(|c| {
        let mut c = c.borrow_mut();
        c.state = State::Idle;
        c.queue.clear();
    });
    publish_phase();
    fail_all(&format!(
        "the engine could not start ({reason}); the next run tries again"
    ));
}

/// Fail every pending job with `message`.
fn fail_all(message: &str) {
    let jobs: Vec<Pending> = CLIENT.with(|c| c.borrow_mut().jobs.drain().map(|(_, p)| p).collect());
    for p in jobs {
        let _ = p.done.send(Err(Failure::Failed(message.to_string())));
    }
}

/// Hand a message from the engine to its job (messages of cancelled jobs are dropped).
fn dispatch(msg: FromEngine) {
    match msg {
        FromEngine::Ready { threads, note } => {
            // Start-up's phases (the bench reads the first): the engine's module is running.
            crate::assets::mark("interplay:engine");
            let (for_cpu, gradients) = CLIENT.with(|c| {
                let mut c = c.borrow_mut();
                c.threaded = false;
                (c.for_cpu, c.gradients)
            });
            // The engine that serves CPU work: started for it, or the single-threaded one that
            // serves both devices where one thread is all the page may have (the start-up check
            // may have started it for WebGPU, which then fell back or was switched from).
            let expected = threads_expected();
            if gradients {
                set_threads(CpuThreads {
                    threads,
                    note: Some("the gradients engine computes on one thread".into()),
                });
            } else if for_cpu || expected.threads == 1 {
                // One thread: why (the host, or the URL asked for one; not on a 1-core machine).
                let note = note
                    .or_else(|| (threads == 1).then_some(expected.note).flatten())
                    .or_else(|| {
                        (threads == 1 && threads_in_url().is_some())
                            .then(|| "one thread asked for".to_string())
                    });
                set_threads(CpuThreads { threads, note });
            }
            let (w, queue) = CLIENT.with(|c| {
                let mut c = c.borrow_mut();
                let state = std::mem::replace(&mut c.state, State::Idle);
                let w = match state {
                    State::Starting(w) | State::Ready(w) => w,
                    other => {
                        c.state = other;
                        return (None, Vec::new());
                    }
                };
                c.state = State::Ready(w.clone());
                (Some(w), std::mem::take(&mut c.queue))
            });
            publish_phase();
            if let Some(w) = w {
                queue.iter().for_each(|m| post(&w, m));
            }
        }
        FromEngine::Progress { id, done, total } => {
            if let Some(f) =
                CLIENT.with(|c| c.borrow().jobs.get(&id).map(|p| p.on_progress.clone()))
            {
                (f.borrow_mut())((done, total));
            }
        }
        FromEngine::Part { id, part } => {
            let first = CLIENT.with(|c| {
                c.borrow_mut().jobs.get_mut(&id).map(|p| {
                    p.parts.push(part);
                    p.parts.len() == 1
                })
            });
            if first == Some(true) {
                leptos::prelude::set_timeout(
                    move || hand_over(id),
                    std::time::Duration::from_millis(PART_BATCH_MS),
                );
            }
        }
        FromEngine::Done { id, ran, output } => {
            if let Some(r) = &ran.fallback {
                crate::runtime::engine_fell_back(r);
            }
            finish(id, Ok((*output, ran)));
        }
        // A request the engine could not read names no job: every waiting job fails.
        FromEngine::Failed { id: 0, message, .. } => fail_all(&message),
        FromEngine::Failed { id, ran, message } => {
            if let Some(r) = ran.as_ref().and_then(|r| r.fallback.as_ref()) {
                crate::runtime::engine_fell_back(r);
            }
            finish(id, Err(Failure::Failed(message)));
        }
    }
}

/// Hand job `id`'s buffered pieces to its view.
fn hand_over(id: JobId) {
    let batch = CLIENT.with(|c| {
        c.borrow_mut()
            .jobs
            .get_mut(&id)
            .map(|p| (std::mem::take(&mut p.parts), p.on_part.clone()))
    });
    if let Some((parts, f)) = batch {
        let mut f = f.borrow_mut();
        for p in parts {
            f(p);
        }
    }
}

fn finish(id: JobId, result: Finished) {
    hand_over(id);
    if let Some(p) = CLIENT.with(|c| c.borrow_mut().jobs.remove(&id)) {
        let _ = p.done.send(result);
    }
}
