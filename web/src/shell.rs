//! The app shell: title, the four labs as navigation, the device indicator and switch, and the
//! start-up check that proves the whole path (assets → tokenizer → device → async readback).

use leptos::prelude::*;
use leptos::task::spawn_local;

use interplay_models::device::DeviceCheck;
use interplay_models::{Backend, TextTokenizer};

use crate::assets::{fetch_bytes, mark, now_ms};
use crate::runtime::{self, DeviceStatus};
use interplay_lab::{Experiment, LabKind};

use crate::share::{Embed, current_hash};

/// A page of the app: the start page or one lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// Start page: what Interplay is and the start-up check.
    Home,
    /// One of the four labs.
    Lab(LabKind),
}

impl Page {
    /// Every page, in the navigation's order.
    fn all() -> impl Iterator<Item = Page> {
        std::iter::once(Page::Home).chain(LabKind::ALL.into_iter().map(Page::Lab))
    }

    fn slug(self) -> &'static str {
        match self {
            Page::Home => "home",
            Page::Lab(l) => l.slug(),
        }
    }

    fn title(self) -> &'static str {
        match self {
            Page::Home => "Start",
            Page::Lab(l) => l.title(),
        }
    }

    /// The page a hash (`#/merge?spec=...`) routes to. Routing stays on the hash, by hand:
    /// leptos_router 0.8 routes on the path only (hash routing is leptos-rs/leptos#2184, open),
    /// and path routes would 404 on a static host under a sub-path and offline.
    fn from_hash(hash: &str) -> Page {
        LabKind::from_hash(hash).map_or(Page::Home, Page::Lab)
    }
}

/// The page a hash names when Interplay has no such page (`#/circuts?spec=...`, a typo or a link
/// from a later version): the start page opens instead, and says why.
fn unknown_route(hash: &str) -> Option<String> {
    // Split as `LabKind::from_hash` does, so every hash that opens Start unasked gets the sentence.
    let route = hash.trim_start_matches('#').trim_start_matches('/');
    let name = route.split(['?', '/']).next().unwrap_or_default();
    (!name.is_empty() && name != Page::Home.slug() && LabKind::from_slug(name).is_none())
        .then(|| name.to_string())
}

/// The device the URL asks for (`?device=cpu`), else WebGPU.
fn requested_backend() -> Backend {
    web_sys::window()
        .and_then(|w| w.location().search().ok())
        .and_then(|s| web_sys::UrlSearchParams::new_with_str(&s).ok())
        .and_then(|p| p.get("device"))
        .and_then(|d| d.parse().ok())
        .unwrap_or(Backend::Wgpu)
}

/// The start-up computation's result, as the page shows it.
#[derive(Clone, Debug, PartialEq)]
struct Startup {
    tokens: Vec<(String, u32)>,
    check: Option<DeviceCheck>,
    backend: Backend,
    compute_ms: f64,
    since_navigation_ms: f64,
}

const SENTENCE: &str = "When Mary and John went to the store, John gave a drink to";

async fn load_gpt2() -> Result<TextTokenizer, String> {
    let enc = fetch_bytes("tokenizers/gpt2/encoder.json")
        .await
        .map_err(|e| e.to_string())?;
    let bpe = fetch_bytes("tokenizers/gpt2/vocab.bpe")
        .await
        .map_err(|e| e.to_string())?;
    let bpe = String::from_utf8(bpe).map_err(|e| format!("vocab.bpe is not UTF-8: {e}"))?;
    TextTokenizer::gpt2_from_bpe(&enc, &bpe).map_err(|e| e.to_string())
}

/// The start sentence's tokens as the page shows them, with their ids.
async fn sentence_tokens() -> Result<Vec<(String, u32)>, String> {
    let tk = load_gpt2().await?;
    let ids = tk.encode(SENTENCE).map_err(|e| e.to_string())?;
    mark("interplay:tokenizer");
    Ok(tk.display_tokens(&ids).into_iter().zip(ids).collect())
}

/// Have the engine bring up `ask` (falling back to the CPU) and run the check on it, while the
/// tokenizer loads: its fetch and parse overlap the engine's start and the GPU's. `preferred`
/// is what the user or the URL asked for (the CPU is asked for where the browser has no WebGPU).
async fn run_startup(
    preferred: Backend,
    ask: Backend,
    device: RwSignal<Option<DeviceStatus>>,
) -> Result<Startup, String> {
    let (tx, rx) = futures_channel::oneshot::channel();
    spawn_local(async move {
        let _ = tx.send(sentence_tokens().await);
    });
    mark("interplay:start");
    let no_webgpu = ask != preferred;
    let (_, done) = crate::engine::submit(
        crate::engine::Task::DeviceCheck { n: 64 },
        ask,
        |_| {},
        |_| {},
    );
    let (output, ran) = done.await.map_err(|e| e.to_string())?;
    mark("interplay:check");
    let status = DeviceStatus {
        backend: ran.backend,
        fallback_reason: ran.fallback.clone().or_else(|| {
            no_webgpu.then(|| "this browser does not offer WebGPU (no navigator.gpu)".into())
        }),
    };
    runtime::chose(&status);
    device.set(Some(status));
    let crate::engine::Output::DeviceCheck(check) = output else {
        return Err("the engine answered the device check with something else".into());
    };
    let tokens = rx
        .await
        .map_err(|_| "the tokenizer's load was cancelled".to_string())??;
    Ok(Startup {
        tokens,
        check: Some(check),
        backend: ran.backend,
        compute_ms: ran.ms,
        since_navigation_ms: now_ms(),
    })
}

/// The whole page.
#[component]
pub fn App() -> impl IntoView {
    let (lab, set_lab) = signal(Page::from_hash(&current_hash()));
    let device = RwSignal::new(None::<DeviceStatus>);
    let startup = RwSignal::new(None::<Result<Startup, String>>);
    let busy = RwSignal::new(true);

    // Follow the URL hash so the back button and shared links move between labs.
    let on_hash = wasm_bindgen::closure::Closure::<dyn Fn()>::new(move || {
        set_lab.set(Page::from_hash(&current_hash()));
    });
    if let Some(w) = web_sys::window() {
        w.set_onhashchange(Some(wasm_bindgen::JsCast::unchecked_ref(on_hash.as_ref())));
    }
    on_hash.forget();

    let start = move |preferred: Backend| {
        busy.set(true);
        // Where the browser has no WebGPU at all, the CPU at once: the CPU's engine is then the
        // only engine module the page loads. Set now, before any other job can be sent.
        let ask = if preferred == Backend::Wgpu && !runtime::browser_has_webgpu() {
            Backend::Cpu
        } else {
            preferred
        };
        runtime::asking(ask);
        spawn_local(async move {
            let result = run_startup(preferred, ask, device).await;
            if let Err(e) = &result {
                // The engine did not answer: the page keeps the device asked for (its runs
                // then say why they fail), and the header says what happened.
                let status = DeviceStatus {
                    backend: preferred,
                    fallback_reason: Some(format!("the engine did not start: {e}")),
                };
                runtime::chose(&status);
                device.set(Some(status));
            }
            startup.set(Some(result));
            busy.set(false);
            // The device now (a GPU lost during the check has moved the page to the CPU).
            crate::engine::warm(runtime::current());
        });
    };
    start(requested_backend());
    runtime::on_device_lost(move |status| device.set(Some(status)));

    provide_context(DeviceContext { device });
    let embed = Embed::from_hash(&current_hash());
    let compact = embed.embed;
    provide_context(embed);

    view! {
        <header class="top" class:embed=compact>
            <h1>"Interplay"<small>"interpretability playground"</small></h1>
            <nav class="labs" aria-label="Labs" hidden=compact>
                {Page::all().map(|l| view! {
                    <a href=format!("#/{}", l.slug())
                       data-testid=format!("nav-{}", l.slug())
                       aria-current=move || (lab.get() == l).then_some("page")>
                        {l.title()}
                    </a>
                }).collect_view()}
            </nav>
            <DeviceSwitch device=device busy=busy on_switch=Callback::new(start)/>
        </header>
        <main class:embed=compact>
            {move || (lab.get() == Page::Home).then(|| unknown_route(&current_hash())).flatten().map(|name| view! {
                <p class="error card" role="alert" data-testid="route-error">
                    {format!("This link asks for a page called “{name}”, which Interplay does not have, so the start page opened. The labs are {}.",
                        LabKind::ALL.map(|l| l.title()).join(", "))}
                </p>
            })}
            {move || match lab.get() {
                Page::Home => view! { <Home startup=startup busy=busy/> }.into_any(),
                Page::Lab(LabKind::Circuits) => view! { <crate::circuits::CircuitsLab/> }.into_any(),
                Page::Lab(LabKind::Dynamics) => view! { <crate::dynamics::DynamicsLab/> }.into_any(),
                Page::Lab(LabKind::Merge) => view! { <crate::merge::MergeLab/> }.into_any(),
                Page::Lab(LabKind::Neurofeedback) => view! { <crate::neurofeedback::NeurofeedbackLab/> }.into_any(),
            }}
        </main>
    }
}

/// Shared page state every lab reads.
#[derive(Clone, Copy)]
pub struct DeviceContext {
    /// The device in use, once chosen.
    pub device: RwSignal<Option<DeviceStatus>>,
}

/// Device indicator and switch.
#[component]
fn DeviceSwitch(
    /// The page's device status.
    device: RwSignal<Option<DeviceStatus>>,
    /// True while a device is being brought up or a computation runs.
    busy: RwSignal<bool>,
    /// Called with the backend the user picked.
    on_switch: Callback<Backend>,
) -> impl IntoView {
    let label = move || match device.get() {
        None => ("badge pending", "starting…".to_string()),
        Some(s) => match s.backend {
            Backend::Wgpu => ("badge gpu", "WebGPU".to_string()),
            // The engine's CPU device: the threaded module's pool, or one thread and why.
            Backend::Cpu => {
                let t = crate::engine::cpu_threads();
                let text = match (t.threads, t.note) {
                    (1, Some(why)) => format!("CPU × 1 thread — {why}"),
                    (1, None) => "CPU × 1 thread".to_string(),
                    (n, _) => format!("CPU × {n} threads"),
                };
                ("badge cpu", text)
            }
        },
    };
    let title = move || {
        device
            .get()
            .and_then(|s| s.fallback_reason)
            .map(|r| format!("WebGPU unavailable: {r}"))
            .unwrap_or_else(|| {
                "Dynamics, Merge and Neurofeedback runs and the Circuits sweep compute in a background worker, so the page stays responsive; on the CPU it uses every core where the page is cross-origin isolated".into()
            })
    };
    view! {
        <div class="device">
            <span class="muted">"Device"</span>
            <span data-testid="device-indicator" class=move || label().0 title=title
                  data-backend=move || device.get().map(|s| s.backend.to_string()).unwrap_or_default()
                  data-engine=crate::engine::phase>
                {move || label().1}
            </span>
            {move || device.get().and_then(|s| s.fallback_reason).filter(|r| r.contains("was lost")).map(|r| view! {
                <span class="error" role="alert" data-testid="device-lost" title=r>"GPU lost: computing on the CPU"</span>
            })}
            <label class="muted" for="device-switch">"use"</label>
            <select id="device-switch" data-testid="device-switch"
                    prop:disabled=move || busy.get()
                    prop:value=move || device.get().map(|s| s.backend.to_string()).unwrap_or_else(|| "wgpu".into())
                    on:change=move |ev| {
                        if let Ok(b) = event_target_value(&ev).parse::<Backend>() {
                            on_switch.run(b);
                        }
                    }>
                <option value="wgpu">"WebGPU"</option>
                <option value="cpu">"CPU"</option>
            </select>
        </div>
    }
}

/// What each lab is for, in three lines, and the experiment to try first in it (a link that
/// opens the lab with that experiment and runs it: bundled models only, so it starts at once).
fn lab_overview() -> [(LabKind, &'static str, &'static str, Experiment); 4] {
    use interplay_dynamics::DynamicsSpec;
    use interplay_dynamics::spiking::SpikingSpec;
    use interplay_lab::PatchingSpec;
    use interplay_lab::mergelab::MergeSpec;
    use interplay_lab::neurofeedback::NeurofeedbackSpec;
    [
        (
            LabKind::Circuits,
            "Look inside a transformer — attention patterns, the logit lens, direct logit \
             attribution, induction and name-mover heads — then test a circuit the way \
             TransformerLens does: activation patching, head ablation, path patching. SmolLM2-135M, \
             two tiny models trained here, or your own GGUF or safetensors file.",
            "Which layer carries the name? Activation patching on the bundled IOI model",
            Experiment::Circuits(PatchingSpec::ioi_bundled()),
        ),
        (
            LabKind::Merge,
            "Merge fine-tuned models without training: task arithmetic, TIES, DARE, AdaMerging. \
             See each task's accuracy after the merge, where task vectors conflict in sign, and \
             fine-tune your own task vector in the page.",
            "Four fine-tunes of a digits classifier merged into one with TIES",
            Experiment::Merge(MergeSpec::default()),
        ),
        (
            LabKind::Neurofeedback,
            "Can a model report its own activations? Pick a direction in the residual stream, \
             label sentences by it, and test whether the model learns to report the label from \
             examples in its prompt — with shuffled-label and random-direction controls.",
            "The in-context labelling experiment on the bundled 3-layer model",
            Experiment::Neurofeedback(NeurofeedbackSpec::icl_bundled()),
        ),
        (
            LabKind::Dynamics,
            "Spiking and reservoir networks: Izhikevich's thousand neurons, echo state networks \
             predicting chaotic series, memory capacity, excitation–inhibition balance, and the \
             what/when prediction paradigm with a three-factor learning rule.",
            "One second of Izhikevich's 1,000-neuron network: spikes and rhythms",
            Experiment::Dynamics(DynamicsSpec::Spiking(SpikingSpec::default())),
        ),
    ]
}

/// The start page.
#[component]
fn Home(
    /// Result of the start-up check.
    startup: RwSignal<Option<Result<Startup, String>>>,
    /// Whether it is still running.
    busy: RwSignal<bool>,
) -> impl IntoView {
    let ctx = use_context::<DeviceContext>();
    let fallback = move || {
        ctx.and_then(|c| c.device.get())
            .and_then(|s| s.fallback_reason)
    };
    view! {
        <section class="card">
            <h2>"An interpretability playground that runs in your browser"</h2>
            <p>"Interplay runs real models on your own GPU through WebGPU, or on the CPU inside \
                WebAssembly when WebGPU is missing. Nothing you load leaves this page."</p>
            {move || fallback().map(|r| view! {
                <div class="notice" data-testid="fallback-notice">
                    <p>"WebGPU is not available in this browser, so Interplay computes on the CPU inside                         WebAssembly. Everything works; large models are slower."</p>
                    <details><summary>"Why"</summary><p class="muted">{r}</p></details>
                </div>
            })}
        </section>
        <section class="card" data-testid="overview">
            <h2>"The labs"</h2>
            <ul class="overview">
            {lab_overview().into_iter().map(|(lab, what, first, e)| view! {
                <li data-testid=format!("overview-{}", lab.slug())>
                    <h3><a href=format!("#/{}", lab.slug())>{lab.title()}</a></h3>
                    <p>{what}</p>
                    <p>"Try this first: "<a data-testid=format!("try-{}", lab.slug()) href=format!("{}&run=1", e.link())>{first}</a></p>
                </li>
            }).collect_view()}
            </ul>
        </section>
        <section class="card" aria-live="polite">
            <h2>"Start-up check"</h2>
            <p class="muted">"The bundled GPT-2 tokenizer reads a sentence, and the device computes a \
                seeded 64×64 matrix product that is checked against a float64 reference."</p>
            <div data-testid="startup-status"
                 data-state=move || match (busy.get(), startup.get()) {
                     (true, _) | (_, None) => "running",
                     (false, Some(Ok(_))) => "done",
                     (false, Some(Err(_))) => "error",
                 }>
            {move || match startup.get() {
                None => view! { <p class="muted">"Running…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" data-testid="startup-error">{e}</p> }.into_any(),
                Some(Ok(s)) => {
                    let ids = s.tokens.iter().map(|(_, id)| id.to_string()).collect::<Vec<_>>().join(",");
                    let check = s.check.clone();
                    view! {
                        <div class="tokens" data-testid="startup-tokens" data-ids=ids>
                            {s.tokens.into_iter().map(|(t, id)| view! {
                                <span class="tok" title=format!("token id {id}")>{t}<small>{id}</small></span>
                            }).collect_view()}
                        </div>
                        <dl class="facts">
                            <dt>"computed on"</dt>
                            <dd data-testid="startup-backend">{s.backend.label()}</dd>
                            <dt>"max |device − reference|"</dt>
                            <dd data-testid="startup-error-max">{check.as_ref().map(|c| format!("{:.2e}", c.max_abs_err))}</dd>
                            <dt>"checksum"</dt>
                            <dd data-testid="startup-checksum">{check.as_ref().map(|c| format!("{:.6}", c.checksum))}</dd>
                            <dt>"device time"</dt>
                            <dd data-testid="startup-time">{format!("{:.1} ms", s.compute_ms)}</dd>
                            <dt>"navigation → result"</dt>
                            <dd data-testid="startup-since-nav">{format!("{:.0} ms", s.since_navigation_ms)}</dd>
                        </dl>
                    }.into_any()
                }
            }}
            </div>
        </section>
    }
}
