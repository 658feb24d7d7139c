//! Starting an engine: in a worker (`engine.js` loads the engine's module, single-threaded or
//! threaded), or on the page's own thread where no worker starts; the [`Port`] the page then
//! reaches it through, and the watch on each start (its messages, panics and time-out).

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use super::{CLIENT, FromEngine, State, dispatch, fail_all, starts, stopped};

/// Where the page reaches the engine.
#[derive(Clone)]
pub(super) enum Port {
    /// The engine worker.
    Worker(web_sys::Worker),
    /// The page's end of the channel to the engine running on the page's own thread.
    Page(web_sys::MessagePort),
}

impl Port {
    pub(super) fn post_message(&self, v: &JsValue) -> Result<(), JsValue> {
        match self {
            Port::Worker(w) => w.post_message(v),
            Port::Page(p) => p.post_message(v),
        }
    }

    pub(super) fn listen(&self, f: &js_sys::Function) {
        match self {
            Port::Worker(w) => w.set_onmessage(Some(f)),
            Port::Page(p) => p.set_onmessage(Some(f)),
        }
    }

    /// Stop the worker. The engine on the page's thread cannot be stopped: the page keeps it.
    pub(super) fn terminate(&self) {
        if let Port::Worker(w) = self {
            w.terminate();
        }
    }
}

/// How long a worker may take to say it is ready before the next fallback (one thread, then the
/// engine on the page's thread), and the engine imported into the page before its jobs fail.
const START_TIMEOUT_MS: u64 = 30_000;

/// The same for the threaded engine (its own module to fetch and compile, then a pool of
/// workers to start); one that does not make it is replaced by the single-threaded one.
const THREADED_START_TIMEOUT_MS: u64 = 60_000;

/// Which of the engine's modules a worker loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Module {
    /// The engine (WebGPU and the CPU; `engine.js` swaps in the threaded build for CPU work
    /// where the page is isolated).
    Engine,
    /// The engine with Burn's autodiff (WebGPU and the single-threaded CPU), loaded only when a
    /// job needs gradients.
    Gradients,
}

impl Module {
    /// The `<meta>` naming the module's glue.
    fn meta(self) -> &'static str {
        match self {
            Module::Engine => "interplay-engine",
            Module::Gradients => "interplay-gradients",
        }
    }
}

/// A module's JavaScript glue, absolute: `cargo xtask build` names it (with a hash of the
/// module, so a browser never pairs this page with another build's engine) in the page's
/// `<meta name="interplay-engine">` (`interplay-gradients` for the gradients engine).
fn engine_url(module: Module) -> Option<String> {
    let doc = web_sys::window()?.document()?;
    let meta = doc
        .query_selector(&format!("meta[name={}]", module.meta()))
        .ok()??;
    let path = meta.get_attribute("content")?;
    web_sys::Url::new_with_base(&path, &doc.base_uri().ok()??)
        .ok()
        .map(|u| u.href())
}

/// Listen to the engine at `port` on behalf of start `generation`: once another start has
/// happened, its messages are stale (a terminated worker's queued messages can still arrive).
fn listen(port: &Port, generation: u32) {
    let on_message =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
            if starts() != generation {
                return;
            }
            match serde_wasm_bindgen::from_value::<FromEngine>(e.data()) {
                Ok(msg) => dispatch(msg),
                Err(e) => fail_all(&format!("the engine sent an unreadable message: {e}")),
            }
        });
    port.listen(on_message.as_ref().unchecked_ref());
    on_message.forget();
}

#[wasm_bindgen(inline_js = "export function load_engine_in_page(url, port, panics) {
  return import(url).then(async (engine) => { await engine.default(); engine.start_in_page(port, panics); });
}")]
extern "C" {
    /// Import the engine's module into the page and start it serving `port`, reporting a panic
    /// on the `BroadcastChannel` named `panics`.
    fn load_engine_in_page(url: &str, port: web_sys::MessagePort, panics: &str) -> js_sys::Promise;
}

/// Start the engine on the page's own thread (no worker could start): its module is imported
/// into the page and serves the page over a `MessageChannel`.
pub(super) fn start_in_page() -> Option<Port> {
    let url = engine_url(Module::Engine)?;
    let channel = web_sys::MessageChannel::new().ok()?;
    let port = Port::Page(channel.port1());
    let generation = starts();
    listen(&port, generation);
    let panics = listen_for_panics(generation);
    let loading =
        wasm_bindgen_futures::JsFuture::from(load_engine_in_page(&url, channel.port2(), &panics));
    stop_unless_ready(generation, START_TIMEOUT_MS);
    leptos::task::spawn_local(async move {
        if let Err(e) = loading.await
            && starts() == generation
        {
            let why = e
                .dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
                .unwrap_or_else(|| format!("{e:?}"));
            stopped(&format!("its module did not load: {why}"));
        }
    });
    Some(port)
}

/// Start the engine worker: `engine.js` beside the page loads `module` (`threads` > 1: the
/// threaded engine where the page is isolated).
pub(super) fn spawn_worker(module: Module, threads: usize) -> Option<Port> {
    let glue = engine_url(module)?;
    let opts = web_sys::WorkerOptions::new();
    opts.set_type(web_sys::WorkerType::Module);
    opts.set_name("interplay-engine");
    let w = web_sys::Worker::new_with_options("engine.js", &opts).ok()?;
    let generation = starts();
    let current = move || starts() == generation;
    listen(&Port::Worker(w.clone()), generation);
    // A script that fails to load gives a plain `Event`; an uncaught exception an `ErrorEvent`.
    let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |e: web_sys::Event| {
        e.prevent_default();
        if !current() {
            return;
        }
        let reason = e
            .dyn_ref::<web_sys::ErrorEvent>()
            .map(|e| e.message())
            .unwrap_or_else(|| "engine.js could not be loaded".into());
        stopped(&reason);
    });
    w.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    on_error.forget();

    let channel = listen_for_panics(generation);
    let init = js_sys::Object::new();
    let set = [
        ("glue", JsValue::from(glue)),
        ("channel", JsValue::from(channel)),
        ("threads", JsValue::from(threads as f64)),
    ]
    .iter()
    .all(|(k, v)| js_sys::Reflect::set(&init, &(*k).into(), v).is_ok());
    if !set || w.post_message(&init).is_err() {
        w.terminate();
        return None;
    }
    // A worker that never answers (a hung import) must not hold the page's runs forever. The
    // threaded engine and the gradients engine (never precached) have their own modules to fetch.
    let timeout = if threads > 1 || module == Module::Gradients {
        THREADED_START_TIMEOUT_MS
    } else {
        START_TIMEOUT_MS
    };
    stop_unless_ready(generation, timeout);
    Some(Port::Worker(w))
}

/// The `BroadcastChannel`, named for this page and start `generation` alone, on which the
/// engine reports a panic on any of its threads with its message (a pool thread's own error
/// never reaches this page; the trap after a panic says only "unreachable").
fn listen_for_panics(generation: u32) -> String {
    let channel = format!(
        "interplay-engine-{}-{generation}",
        (js_sys::Math::random() * 1e12) as u64
    );
    if let Ok(ch) = web_sys::BroadcastChannel::new(&channel) {
        let listening = ch.clone();
        let on_panic =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
                listening.close();
                if starts() == generation {
                    let what = e.data().as_string().unwrap_or_default();
                    stopped(&format!("it panicked: {what}"));
                }
            });
        ch.set_onmessage(Some(on_panic.as_ref().unchecked_ref()));
        on_panic.forget();
    }
    channel
}

/// An engine of start `generation` still loading after `ms` has failed.
fn stop_unless_ready(generation: u32, ms: u64) {
    leptos::prelude::set_timeout(
        move || {
            if starts() == generation
                && CLIENT.with(|c| matches!(c.borrow().state, State::Starting(_)))
            {
                stopped("it did not answer");
            }
        },
        std::time::Duration::from_millis(ms),
    );
}
