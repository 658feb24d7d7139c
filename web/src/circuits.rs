//! Circuits lab: load a transformer (the bundled SmolLM2-135M-Instruct, or a GGUF/safetensors
//! file from the user's disk, which never leaves the browser), run a prompt, see its tokens and
//! next-token predictions. The engine worker loads the model and computes; the page draws.

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

use interplay_models::tokenizer::visible;

use interplay_lab::bundled::Bundled;
use interplay_lab::inspect::{Continuation, GENERATE_MAX, Inspect, Inspection, Prediction};
use interplay_lab::{PatchingSpec, Prompt};

use crate::assets::{draft_get, draft_set, files_of};
use crate::models::{self, ModelInfo, ModelSource};
use crate::speclab::state_of;

/// Where the prompt box autosaves.
const PROMPT_KEY: &str = "interplay.circuits.prompt";
const IOI_PROMPT: &str = "When Mary and John went to the store, John gave a drink to";

/// One run's result.
#[derive(Clone, Debug, PartialEq)]
struct RunResult {
    prediction: Prediction,
    ms: f64,
    backend: String,
}

fn parse_ids(s: &str) -> Result<Vec<u32>, String> {
    let ids: Result<Vec<u32>, _> = s
        .split([',', ' '])
        .filter(|x| !x.trim().is_empty())
        .map(|x| x.trim().parse::<u32>())
        .collect();
    let ids =
        ids.map_err(|e| format!("token ids must be whole numbers separated by commas ({e})"))?;
    if ids.is_empty() {
        return Err("the prompt is empty: type some text or token ids".into());
    }
    Ok(ids)
}

async fn run_prompt(text: String, ids_text: String) -> Result<RunResult, String> {
    let prompt = prompt_of(text, &ids_text)?;
    match models::ask(Inspect::Predict { prompt }).await? {
        (Inspection::Prediction(prediction), ran) => Ok(RunResult {
            prediction,
            ms: ran.ms,
            backend: ran.backend.label().to_string(),
        }),
        _ => Err("the engine answered with another result".into()),
    }
}

/// The prompt as the engine takes it: ids when given (or when the model has no tokenizer),
/// else the text.
fn prompt_of(text: String, ids_text: &str) -> Result<Prompt, String> {
    let info = models::info().ok_or("load a model first")?;
    if !ids_text.trim().is_empty() || !info.has_tokenizer {
        Ok(Prompt::Ids(parse_ids(ids_text)?))
    } else if text.is_empty() {
        Err("the prompt is empty: type some text".into())
    } else {
        Ok(Prompt::Text(text))
    }
}

/// A continuation and how long it took.
#[derive(Clone, Debug, PartialEq)]
struct Continued {
    c: Continuation,
    ms: f64,
    backend: String,
}

/// Continue the prompt with the loaded model (greedy or sampled), as `generate` does.
#[component]
fn GeneratePanel(
    prompt: RwSignal<String>,
    ids_text: RwSignal<String>,
    info: RwSignal<Option<ModelInfo>>,
) -> impl IntoView {
    let max_new = RwSignal::new("32".to_string());
    let temperature = RwSignal::new("0".to_string());
    let seed = RwSignal::new("0".to_string());
    let busy = RwSignal::new(false);
    let runs = RwSignal::new(0u32);
    let result = RwSignal::new(None::<Result<Continued, String>>);
    let go = move |_| {
        // Every input is checked on every click, from a clean state.
        let query = (|| -> Result<Inspect, String> {
            let n: usize = max_new.get_untracked().trim().parse().map_err(|_| {
                format!("new tokens must be a whole number from 1 to {GENERATE_MAX}")
            })?;
            let t: f64 = temperature
                .get_untracked()
                .trim()
                .parse()
                .map_err(|_| "the temperature must be a number (0 for greedy)".to_string())?;
            let sd: u64 = seed
                .get_untracked()
                .trim()
                .parse()
                .map_err(|_| "the seed must be a whole number ≥ 0".to_string())?;
            Ok(Inspect::Generate {
                prompt: prompt_of(prompt.get_untracked(), &ids_text.get_untracked())?,
                max_new: n,
                temperature: t,
                seed: sd,
            })
        })();
        busy.set(true);
        result.set(None);
        spawn_local(async move {
            let r = match query {
                Err(e) => Err(e),
                Ok(q) => match models::ask(q).await {
                    Ok((Inspection::Continuation(c), ran)) => Ok(Continued {
                        c,
                        ms: ran.ms,
                        backend: ran.backend.label().to_string(),
                    }),
                    Ok(_) => Err("the engine answered with another result".into()),
                    Err(e) => Err(e),
                },
            };
            result.set(Some(r));
            runs.update(|n| *n += 1);
            busy.set(false);
        });
    };
    view! {
        <section class="card" hidden=crate::share::hidden("prompt")>
            <h2>"Continue the prompt"</h2>
            <p class="muted">"The model writes the next tokens itself, one at a time, each fed back in (the key/value cache keeps earlier positions). Temperature 0 picks the most likely token every time; above 0 samples, reproducibly for a seed."</p>
            <div class="row">
                <label>"new tokens "<input type="number" min="1" max=GENERATE_MAX data-testid="generate-max"
                    prop:value=move || max_new.get() on:input=move |ev| max_new.set(event_target_value(&ev))/></label>
                <label>"temperature "<input type="number" min="0" step="0.1" data-testid="generate-temperature"
                    prop:value=move || temperature.get() on:input=move |ev| temperature.set(event_target_value(&ev))/></label>
                <label>"seed "<input type="number" min="0" data-testid="generate-seed"
                    prop:value=move || seed.get() on:input=move |ev| seed.set(event_target_value(&ev))/></label>
                <button data-testid="generate-run" on:click=go
                        prop:disabled=move || busy.get() || info.get().is_none()>"Continue"</button>
            </div>
            <div data-testid="generate-status" data-seq=move || runs.get() aria-live="polite"
                 data-state=move || result.with(|r| state_of(busy.get(), r))>
            {move || result.get().map(|r| match r {
                Err(e) => view! { <p class="error" role="alert" data-testid="generate-error">{e}</p> }.into_any(),
                Ok(Continued { c, ms, backend }) => {
                    let n = c.tokens.len();
                    let ids = c.tokens.iter().map(|t| t.1.to_string()).collect::<Vec<_>>().join(",");
                    let rate = if ms > 0.0 { n as f64 / (ms / 1e3) } else { 0.0 };
                    view! {
                        <p data-testid="generate-text" class="generated">{c.text}</p>
                        <div class="tokens" data-testid="generate-tokens"
                             data-ids=ids>
                            {c.tokens.into_iter().map(|(t, id)| view! {
                                <span class="tok" title=format!("token id {id}")>{t}<small>{id}</small></span>
                            }).collect_view()}
                        </div>
                        <p class="muted" data-testid="generate-rate" data-tokens=n data-ms=ms.to_string()>
                            {format!("{n} new tokens after a {}-token prompt{} on {backend} in {ms:.0} ms: {rate:.1} tokens/s (the prompt's own pass included)",
                                c.prompt_tokens, if c.stopped { ", ended by an end-of-text token," } else { "" })}
                        </p>
                    }.into_any()
                }
            })}
            </div>
        </section>
    }
}

/// The lab.
#[component]
pub fn CircuitsLab() -> impl IntoView {
    let info = RwSignal::new(models::info());
    let status = RwSignal::new(None::<Result<String, String>>);
    let busy = RwSignal::new(false);
    let prompt = RwSignal::new(draft_get(PROMPT_KEY).unwrap_or_else(|| IOI_PROMPT.to_string()));
    Effect::new(move |_| draft_set(PROMPT_KEY, &prompt.get()));
    let ids_text = RwSignal::new(String::new());
    let result = RwSignal::new(None::<Result<RunResult, String>>);
    // Counts finished load attempts so tests (and screen readers) can tell a new outcome.
    let loads = RwSignal::new(0u32);
    let runs = RwSignal::new(0u32);

    // Built in the engine (parsing and dequantising SmolLM2 takes seconds).
    let finish_load = move |source: ModelSource| async move {
        match models::load_in_engine(source).await {
            Ok(i) => {
                status.set(Some(Ok(format!("Loaded {}", i.name))));
                info.set(Some(i));
            }
            Err(e) => status.set(Some(Err(format!("Could not load the model: {e}")))),
        }
        loads.update(|n| *n += 1);
        busy.set(false);
    };

    // A failed load: its message, and the page is ready again (the previous model stays).
    let fail_load = move |msg: String| {
        status.set(Some(Err(msg)));
        loads.update(|n| *n += 1);
        busy.set(false);
    };

    // `key`: "smollm2" (98 MB, fetched from this site) or a bundled model's id (tiny).
    let load_model = move |key: String| {
        busy.set(true);
        spawn_local(async move {
            match models::fetch_source(&key, status).await {
                Ok(source) => finish_load(source).await,
                Err(e) => fail_load(e),
            }
        });
    };

    let load_files = move |files: web_sys::FileList| {
        let v = files_of(&files);
        if v.is_empty() {
            fail_load("no file chosen".into());
            return;
        }
        busy.set(true);
        let name = v
            .iter()
            .map(|(n, _)| n.clone())
            .collect::<Vec<_>>()
            .join(" + ");
        status.set(Some(Ok(format!(
            "Loading {name} (the files stay in this browser)…"
        ))));
        spawn_local(finish_load(ModelSource::new(name.clone(), name, v)));
    };

    let on_pick = move |ev: leptos::ev::Event| {
        if let Some(input) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
            && let Some(files) = input.files()
        {
            load_files(files);
        }
    };
    let on_drop = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        if let Some(files) = ev.data_transfer().and_then(|d| d.files()) {
            load_files(files);
        }
    };

    let run = move |_| {
        busy.set(true);
        let (t, i) = (prompt.get_untracked(), ids_text.get_untracked());
        spawn_local(async move {
            let r = run_prompt(t, i).await;
            result.set(Some(r));
            runs.update(|n| *n += 1);
            busy.set(false);
        });
    };

    // A share link naming a bundled model loads it (it is tiny); an embedded experiment loads
    // its model, SmolLM2 included, without asking.
    let embed = use_context::<crate::share::Embed>().is_some_and(|e| e.embed);
    let linked = crate::share::read_share_link::<PatchingSpec>()
        .and_then(Result::ok)
        .map(|s| s.model)
        .or_else(|| {
            crate::share::read_share_link::<interplay_lab::neurons::NeuronsSpec>()
                .and_then(Result::ok)
                .map(|s| s.model)
        })
        .or_else(|| {
            crate::share::read_share_link::<interplay_lab::reuse::ReuseSpec>()
                .and_then(Result::ok)
                .map(|s| s.model)
        })
        .or_else(|| {
            crate::share::read_share_link::<interplay_lab::recall::RecallSpec>()
                .and_then(Result::ok)
                .map(|s| s.model)
        })
        .or_else(|| {
            crate::share::read_share_link::<interplay_lab::edges::EdgeSpec>()
                .and_then(Result::ok)
                .map(|s| s.model)
        })
        .or_else(|| {
            crate::share::read_share_link::<interplay_lab::subspace::SubspaceSpec>()
                .and_then(Result::ok)
                .map(|s| s.model)
        });
    // A model the page will not load by itself: say what the link needs, not nothing.
    if let Some(m) = &linked
        && models::info().is_none_or(|i| &i.key != m)
    {
        if m == "smollm2" && !embed && !crate::share::run_requested() {
            status.set(Some(Ok(
                "This link's experiment uses SmolLM2-135M-Instruct: press “Load SmolLM2-135M-Instruct” \
                 (98 MB, kept in this browser) to run it."
                    .into(),
            )));
        } else if m != "smollm2" && Bundled::from_id(m).is_none() {
            let what_now = if crate::share::locked() {
                "This locked page cannot load it: ask whoever shared the link for the model file."
            } else {
                "Choose that model's file below to run it."
            };
            status.set(Some(Err(format!(
                "This link's experiment uses the model “{m}”, which Interplay does not bundle: it is \
                 the name of a file the person who shared it loaded. {what_now}"
            ))));
        }
    }
    // `run=1` asks for the experiment itself, so SmolLM2 loads for it too.
    let runs_on_open = crate::share::run_requested();
    // An embed without a link shows SmolLM2; a link's own model, when it is not one the page
    // has, stays unloaded (its message says so) rather than replaced by SmolLM2.
    let wanted = match linked {
        Some(m) => (Bundled::from_id(&m).is_some() || ((embed || runs_on_open) && m == "smollm2"))
            .then_some(m),
        None => embed.then(|| "smollm2".to_string()),
    };
    if let Some(key) = wanted
        && models::info().is_none_or(|i| i.key != key)
    {
        load_model(key);
    }

    // Which models this browser keeps for offline use, asked again after every load.
    let offline_models = RwSignal::new(None::<Vec<&'static str>>);
    Effect::new(move |_| {
        loads.track();
        spawn_local(async move { offline_models.set(Some(models::available_offline().await)) });
    });

    // A locked page keeps the link's model: loading another would change the experiment.
    let lock = crate::share::locked();

    // Guided experiments fill the panels through this preset.
    let preset = RwSignal::new(None::<crate::guided::Preset>);
    Effect::new(move |_| {
        if let Some(crate::guided::Preset {
            prompt: Some((p, _, _)),
            ..
        }) = preset.get()
        {
            prompt.set(p);
            ids_text.set(String::new());
        }
    });

    view! {
        <crate::guided::GuidedPanel preset=preset load_model=Callback::new(load_model)/>
        <section class="card" data-testid="lab-circuits" hidden=crate::share::hidden("model")>
            <h2>"Circuits lab"</h2>
            <p>"Load a transformer and look inside it. Files you choose stay in this browser and are never uploaded."</p>
            <div class="row">
                <button data-testid="load-smollm2" on:click=move |_| load_model("smollm2".into()) prop:disabled=move || busy.get() || lock>
                    "Load SmolLM2-135M-Instruct"
                </button>
                {Bundled::ALL.map(|b| view! {
                    <button data-testid=format!("load-{}", b.id()) title="a tiny model trained by this project; loads instantly"
                            on:click=move |_| load_model(b.id().into()) prop:disabled=move || busy.get() || lock>
                        {format!("Load {}", b.title().trim_start_matches("Bundled: "))}
                    </button>
                })}
                <label class="file" on:dragover=|ev: leptos::ev::DragEvent| ev.prevent_default() on:drop=on_drop>
                    "…or choose / drop a .gguf file, or .safetensors + config.json (+ tokenizer.json): "
                    <input type="file" multiple accept=".gguf,.safetensors,.json" data-testid="model-file"
                           on:change=on_pick prop:disabled=move || busy.get() || lock/>
                </label>
            </div>
            {move || offline_models.get().map(|m| view! {
                <p class="muted" data-testid="offline-models">{if m.is_empty() {
                    "No model is saved for offline use in this browser yet.".to_string()
                } else {
                    format!("Available offline in this browser: {}.", m.join(", "))
                }}</p>
            })}
            <div data-testid="model-load" data-seq=move || loads.get()
                 data-state=move || if busy.get() { "busy" } else { "idle" }></div>
            {move || status.get().map(|s| match s {
                Ok(m) => view! { <p class="muted" data-testid="model-status">{m}</p> }.into_any(),
                Err(e) => view! { <p class="error" role="alert" data-testid="model-error">{e}</p> }.into_any(),
            })}
            {move || info.get().map(|i: ModelInfo| view! {
                <dl class="facts" data-testid="model-info" data-layers=i.n_layers data-heads=i.n_heads data-vocab=i.d_vocab>
                    <dt>"model"</dt><dd data-testid="model-name">{i.name.clone()}</dd>
                    <dt>"shape"</dt><dd>{i.summary.clone()}</dd>
                    {Bundled::from_id(&i.key).map(|b| view! {
                        <dt>"model card"</dt><dd><a href=format!("bundled/README.md#{}", b.id()) target="_blank" data-testid="model-card">"how it was trained, its accuracy"</a></dd>
                    })}
                    <dt>"tokenizer"</dt><dd>{if i.has_tokenizer { "included".to_string() } else { format!("none — give token ids ({})", i.tokenizer_note.clone().unwrap_or_default()) }}</dd>
                </dl>
            })}
        </section>
        <section class="card" hidden=crate::share::hidden("prompt")>
            <h2>"Prompt"</h2>
            <label for="prompt-text">"Text"</label>
            <textarea id="prompt-text" data-testid="prompt-text" rows="2"
                      prop:value=move || prompt.get()
                      on:input=move |ev| prompt.set(event_target_value(&ev))></textarea>
            <label for="prompt-ids">"or token ids (comma-separated; used when filled in)"</label>
            <input id="prompt-ids" data-testid="prompt-ids" type="text"
                   prop:value=move || ids_text.get()
                   on:input=move |ev| ids_text.set(event_target_value(&ev))/>
            <p><button data-testid="run-prompt" on:click=run prop:disabled=move || busy.get() || info.get().is_none()>"Run"</button></p>
            <div data-testid="run-status" data-seq=move || runs.get() data-state=move || result.with(|r| state_of(busy.get(), r))>
            <crate::speclab::Announce what="Prompt run" busy=busy outcome=result/>
            {move || result.get().map(|r| match r {
                Err(e) => view! { <p class="error" role="alert" data-testid="run-error">{e}</p> }.into_any(),
                Ok(RunResult { prediction: r, ms, backend }) => view! {
                    <div class="tokens" data-testid="run-tokens">
                        {r.tokens.into_iter().enumerate().map(|(i, (t, id))| view! {
                            <span class="tok" title=format!("position {i}, token id {id}")>{t}<small>{id}</small></span>
                        }).collect_view()}
                    </div>
                    <p class="muted">{format!("computed on {backend} in {ms:.0} ms")}</p>
                    <table class="top" data-testid="top-tokens">
                        <caption>"Most likely next tokens"</caption>
                        <thead><tr><th>"token"</th><th>"id"</th><th>"probability"</th><th>"logit"</th></tr></thead>
                        <tbody>
                        {r.top.into_iter().map(|t| (t.text, t.id, t.probability, t.logit)).map(|(t, id, p, l)| view! {
                            <tr data-id=id data-logit=l.to_string()>
                                <td class="mono">{visible(&t)}</td><td>{id}</td>
                                <td><span class="bar" style=format!("width:{:.1}%", p * 100.0)></span>{format!("{:.1}%", p * 100.0)}</td>
                                <td>{format!("{l:.3}")}</td>
                            </tr>
                        }).collect_view()}
                        </tbody>
                    </table>
                    {r.last_logits.map(|l| view! { <pre hidden data-testid="last-logits">{serde_json::to_string(&l).unwrap_or_default()}</pre> })}
                }.into_any(),
            })}
            </div>
        </section>
        <GeneratePanel prompt=prompt ids_text=ids_text info=info/>
        <crate::views::AnalysisPanel prompt=prompt ids_text=ids_text preset=preset/>
        <crate::patching::PatchingPanel preset=preset/>
        <crate::views::HeadScoresPanel preset=preset/>
        <crate::neurons::NeuronsPanel preset=preset/>
        <crate::reuse::ReusePanel preset=preset/>
        <crate::recall::RecallPanel preset=preset/>
        <crate::edges::EdgesPanel preset=preset/>
        <crate::clamp::ClampPanel preset=preset/>
        <crate::subspace::SubspacePanel preset=preset/>
    }
}
