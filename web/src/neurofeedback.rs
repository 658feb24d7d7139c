//! Neurofeedback lab: the metacognition paradigm (Ji-An et al. 2025) on the page's model. The
//! experiment is one [`NeurofeedbackSpec`]: it lives in the URL (`#/neurofeedback?spec=...`), is
//! autosaved, exports as JSON and runs in the CLI (`interplay run spec.json`) to the same numbers.

use leptos::prelude::*;
use leptos::task::spawn_local;

use interplay_lab::bundled::Bundled;
use interplay_lab::neurofeedback::{
    BUNDLED_SETS, Bins, Direction, ExplicitControl, NeurofeedbackResult, NeurofeedbackSpec,
    Pooling, PromptFormat, Sentences,
};
use interplay_models::HookPoint;

use crate::engine::{Output, Part, Task};
use crate::models::{self, ModelInfo};
use crate::plots::{Heatmap, LinePlot, Series};
use crate::speclab::{
    Announce, BadInputs, ComputedOn, FindingView, RunControls, RunState, autosave, initial_spec,
    run_on_open, state_of,
};
use interplay_lab::{Experiment, LabKind};

const DRAFT_KEY: &str = "interplay.neurofeedback";

type Guided = interplay_lab::guided::Guided<NeurofeedbackSpec>;

const GUIDED: &[Guided] = interplay_lab::guided::NEUROFEEDBACK;

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn hook_kind(h: HookPoint) -> &'static str {
    match h {
        HookPoint::ResidPre(_) => "resid_pre",
        HookPoint::ResidMid(_) => "resid_mid",
        HookPoint::AttnOut(_) => "attn_out",
        HookPoint::MlpOut(_) => "mlp_out",
        _ => "resid_post",
    }
}

fn make_hook(kind: &str, l: usize) -> HookPoint {
    match kind {
        "resid_pre" => HookPoint::ResidPre(l),
        "resid_mid" => HookPoint::ResidMid(l),
        "attn_out" => HookPoint::AttnOut(l),
        "mlp_out" => HookPoint::MlpOut(l),
        _ => HookPoint::ResidPost(l),
    }
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(", ")
}

/// Parse a comma-separated list, or say what is wrong.
fn parse_list<T>(text: &str, what: &str) -> Result<Vec<T>, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| {
            x.trim()
                .parse()
                .map_err(|e| format!("{what}: cannot read {:?} ({e})", x.trim()))
        })
        .collect()
}

/// The lab.
#[component]
pub fn NeurofeedbackLab() -> impl IntoView {
    let init = initial_spec(DRAFT_KEY, NeurofeedbackSpec::icl_bundled);
    let from_link = init.from_link;
    let spec = RwSignal::new(init.spec);
    let st = RunState::new(init.link_error);
    let info = RwSignal::new(models::info());
    let load_status = RwSignal::new(None::<Result<String, String>>);
    let loads = RwSignal::new(0u32);
    let input_error = RwSignal::new(None::<String>);
    let bad = BadInputs::new();
    let outcome = RwSignal::new(None::<Result<NeurofeedbackResult, String>>);
    // The spec the shown result came from (for the guided finding).
    let ran = RwSignal::new(None::<NeurofeedbackSpec>);
    let facts = RwSignal::new((String::new(), 0.0f64));
    let lock = crate::share::locked();
    // The text fields, kept as typed (a half-typed list is not lost to a parse error).
    let dirs_text = RwSignal::new(join(&spec.get_untracked().directions));
    let ns_text = RwSignal::new(join(&spec.get_untracked().examples));
    let seeds_text = RwSignal::new(join(&spec.get_untracked().seeds));

    autosave(DRAFT_KEY, move || spec.get());

    let load_model = move |key: String| {
        st.busy.set(true);
        spawn_local(async move {
            let r = match models::fetch_source(&key, load_status).await {
                Ok(source) => models::load_in_engine(source)
                    .await
                    .map_err(|e| format!("Could not load the model: {e}")),
                Err(e) => Err(e),
            };
            match r {
                Ok(i) => {
                    load_status.set(Some(Ok(format!("Loaded {}", i.name))));
                    info.set(Some(i));
                }
                Err(e) => load_status.set(Some(Err(e))),
            }
            loads.update(|n| *n += 1);
            st.busy.set(false);
        });
    };
    // A share link (or the draft) naming a bundled model loads it; SmolLM2 (98 MB) loads by
    // itself only when embedded.
    let embed = use_context::<crate::share::Embed>().is_some_and(|e| e.embed);
    {
        let key = spec.get_untracked().model;
        let wanted = Bundled::from_id(&key).is_some() || (key == "smollm2" && (embed || from_link));
        if wanted && models::info().is_none_or(|i| i.key != key) {
            load_model(key);
        }
    }

    let set_guided = move |make: fn() -> NeurofeedbackSpec| {
        let s = make();
        dirs_text.set(join(&s.directions));
        ns_text.set(join(&s.examples));
        seeds_text.set(join(&s.seeds));
        let key = s.model.clone();
        bad.clear();
        spec.set(s);
        outcome.set(None);
        input_error.set(None);
        if models::info().is_none_or(|i| i.key != key)
            && (Bundled::from_id(&key).is_some() || key == "smollm2")
        {
            load_model(key);
        }
    };

    let run_click = move |_| {
        if bad.refuse_run() {
            return;
        }
        let fields = (|| -> Result<(), String> {
            let directions: Vec<Direction> = parse_list(&dirs_text.get_untracked(), "directions")?;
            let examples: Vec<usize> = parse_list(&ns_text.get_untracked(), "N")?;
            let seeds: Vec<u64> = parse_list(&seeds_text.get_untracked(), "seeds")?;
            spec.update(|s| {
                s.directions = directions;
                s.examples = examples;
                s.seeds = seeds;
            });
            Ok(())
        })();
        if let Err(e) = fields {
            input_error.set(Some(e));
            return;
        }
        let s = spec.get_untracked();
        let i = match models::info() {
            Some(i) => i,
            None => {
                input_error.set(Some(format!(
                    "load a model first: this experiment uses {:?}",
                    s.model
                )));
                return;
            }
        };
        if i.key != s.model {
            input_error.set(Some(format!(
                "the experiment names model {:?} but {:?} is loaded: load it, or set the model to {:?} in the spec",
                s.model, i.key, i.key
            )));
            return;
        }
        input_error.set(None);
        st.start(&s, 1);
        ran.set(Some(s.clone()));
        spawn_local(async move {
            // The engine computes; the model goes to it again if it restarted or changed device.
            let r = match models::ensure_in_engine(Some(st.job)).await {
                Err(e) => Err(e),
                Ok(()) => match st
                    .compute(
                        Task::Experiment(Box::new(Experiment::Neurofeedback(s))),
                        |_: Part| {},
                    )
                    .await
                {
                    Ok((Output::Neurofeedback(r), ran)) => {
                        facts.set((ran.backend.label().to_string(), ran.ms));
                        Ok(r)
                    }
                    Ok(_) => Err("the engine answered with another lab's result".to_string()),
                    Err(e) => Err(e.to_string()),
                },
            };
            outcome.set(Some(r));
            st.finish();
        });
    };

    run_on_open(
        from_link,
        st,
        move || models::info().is_some_and(|i| i.key == spec.get_untracked().model),
        move || run_click(()),
    );

    let set_layer = move |ev| {
        let t = event_target_value(&ev);
        match t.trim().parse::<usize>() {
            Ok(l) => {
                spec.update(|s| s.hook = make_hook(hook_kind(s.hook), l));
                bad.accept("nf-layer");
            }
            Err(_) => bad.reject("nf-layer", t, "layer: a whole number ≥ 0".into()),
        }
    };
    let json_text = move || serde_json::to_string_pretty(&spec.get()).unwrap_or_default();
    let pasted = move || match &spec.get().sentences {
        Sentences::Pasted(t) => Some(t.clone()),
        Sentences::Bundled(_) => None,
    };

    // An embed shows the result first, in the page's order too (not only on screen), so
    // the keyboard and screen readers reach it first.
    let result = view! {
        <section class="card result" data-testid="nf-status" data-seq=move || st.runs.get()
                 data-state=move || state_of(st.busy.get(), &outcome.get())>
            <h2>"Result"</h2>
            <Announce what="Neurofeedback run" busy=st.busy outcome=outcome/>
            <ComputedOn st=st facts=facts prefix="nf-"/>
            {move || outcome.get().map(|o| match o {
                Err(e) => view! { <p class="error" role="alert" data-testid="nf-error">{e}</p> }.into_any(),
                Ok(r) => result_view(r, spec.get_untracked()).into_any(),
            })}
            {move || (!st.busy.get()).then(|| {
                let ran = ran.get()?;
                let id = Guided::of(GUIDED, &ran)?;
                outcome.with(|o| interplay_lab::findings::neurofeedback(id, &ran, o.as_ref()?.as_ref().ok()?))
            }).flatten().map(|f| view! { <FindingView finding=f testid="nf-finding"/> })}
        </section>
    };
    let (first, last) = crate::share::result_first(result);
    view! {
        <div class="lab" data-testid="lab-neurofeedback">
        {first}
        <section class="card" data-testid="nf-guided" hidden=crate::share::hidden("guided")>
            <h2>"Neurofeedback lab"</h2>
            <p>"Can a language model report, and move, its own internal activations? Sentences get a label \
                from the projection of the model's activation on a direction (above the median: the first \
                label). The model sees N labelled examples and labels new sentences; if it can read that \
                direction in itself, accuracy rises above 50% as N grows (Ji-An et al. 2025)."</p>
            <ul class="guided">
            {GUIDED.iter().map(|g| { let make = g.spec; view! {
                <li><button data-testid=format!("nf-guided-{}", g.id) prop:disabled=move || st.busy.get() || lock
                    on:click=move |_| set_guided(make)>{g.title}</button>" "<span class="muted">{g.text(LabKind::Neurofeedback)}</span></li>
            }}).collect_view()}
            </ul>
            {move || st.link_error.get().map(|e| view! { <p class="error" role="alert" data-testid="nf-link-error">{e}</p> })}
        </section>
        <section class="card" data-testid="nf-model" hidden=crate::share::hidden("model")>
            <h2>"Model"</h2>
            <div class="row">
                <button data-testid="nf-load-icl-3l" on:click=move |_| load_model("icl-3l".into()) prop:disabled=move || st.busy.get()>"Load icl-3l (bundled, tiny; never learned)"</button>
                <button data-testid="nf-load-icl-word-3l" on:click=move |_| load_model("icl-word-3l".into()) prop:disabled=move || st.busy.get()>"Load icl-word-3l (bundled, tiny; labels in context)"</button>
                <button data-testid="nf-load-smollm2" on:click=move |_| load_model("smollm2".into()) prop:disabled=move || st.busy.get()>"Load SmolLM2-135M-Instruct"</button>
                <span class="muted">"…or load any model in the Circuits lab; it is shared by every lab."</span>
            </div>
            <div data-testid="nf-model-load" data-seq=move || loads.get()></div>
            {move || load_status.get().map(|s| match s {
                Ok(m) => view! { <p class="muted" data-testid="nf-model-status">{m}</p> }.into_any(),
                Err(e) => view! { <p class="error" role="alert" data-testid="nf-model-error">{e}</p> }.into_any(),
            })}
            {move || info.get().map(|i: ModelInfo| view! {
                <p data-testid="nf-model-name" data-key=i.key.clone()>{format!("{} — {}", i.name, i.summary)}</p>
            })}
        </section>
        <section class="card" data-testid="nf-experiment">
            <h2>"Experiment"</h2>
            <div class="row">
                <label>"model (key) "<input type="text" data-testid="nf-model-key" prop:disabled=lock prop:value=move || spec.get().model
                    on:change=move |ev| spec.update(|s| s.model = event_target_value(&ev).trim().to_string())/></label>
                <label>"activation "<select data-testid="nf-hook" prop:disabled=lock
                    on:change=move |ev| { let k = event_target_value(&ev); spec.update(|s| s.hook = make_hook(&k, s.hook.layer().unwrap_or(0))) }>
                    {["resid_post", "resid_pre", "resid_mid", "attn_out", "mlp_out"].map(|k| view! {
                        <option value=k selected=move || hook_kind(spec.get().hook) == k>{k}</option> })}
                </select></label>
                <label>"layer "<input type="number" min="0" data-testid="nf-layer" prop:disabled=lock
                    prop:value=move || bad.text("nf-layer").unwrap_or_else(|| spec.get().hook.layer().unwrap_or(0).to_string()) on:change=set_layer/></label>
                <label>"pooling "<select data-testid="nf-pooling" prop:disabled=lock
                    on:change=move |ev| { let last = event_target_value(&ev) == "last"; spec.update(|s| s.pooling = if last { Pooling::Last } else { Pooling::Mean }) }>
                    <option value="mean" selected=move || spec.get().pooling == Pooling::Mean>"mean over tokens"</option>
                    <option value="last" selected=move || spec.get().pooling == Pooling::Last>"last token"</option>
                </select></label>
            </div>
            <div class="row">
                <label>"directions "<input type="text" size="28" data-testid="nf-directions" prop:disabled=lock
                    title="pc1, pc2, .. (principal components), probe (logistic regression on the sentences' concept), random"
                    prop:value=move || dirs_text.get() on:input=move |ev| dirs_text.set(event_target_value(&ev))/></label>
                <label>"N examples "<input type="text" size="14" data-testid="nf-examples" prop:disabled=lock
                    prop:value=move || ns_text.get() on:input=move |ev| ns_text.set(event_target_value(&ev))/></label>
                <label>"seeds "<input type="text" size="6" data-testid="nf-seeds" prop:disabled=lock
                    prop:value=move || seeds_text.get() on:input=move |ev| seeds_text.set(event_target_value(&ev))/></label>
                <label>"queries per run "<input type="number" min="1" data-testid="nf-queries" prop:disabled=lock
                    prop:value=move || spec.get().queries
                    on:change=move |ev| if let Ok(q) = event_target_value(&ev).parse() { spec.update(|s| s.queries = q) }/></label>
            </div>
            <div class="row">
                <label>"labels "<input type="text" size="4" data-testid="nf-label-a" prop:disabled=lock prop:value=move || spec.get().labels[0].clone()
                    on:change=move |ev| spec.update(|s| s.labels[0] = event_target_value(&ev))/></label>
                <label>" / "<input type="text" size="4" data-testid="nf-label-b" prop:disabled=lock prop:value=move || spec.get().labels[1].clone()
                    on:change=move |ev| spec.update(|s| s.labels[1] = event_target_value(&ev))/></label>
                <label>"prompt "<select data-testid="nf-format" prop:disabled=lock
                    on:change=move |ev| { let chat = event_target_value(&ev) == "chat"; spec.update(|s| s.format = if chat { PromptFormat::Chat } else { PromptFormat::Plain }) }>
                    <option value="chat" selected=move || spec.get().format == PromptFormat::Chat>"chat template"</option>
                    <option value="plain" selected=move || spec.get().format == PromptFormat::Plain>"plain: sentence -> label"</option>
                </select></label>
                <label>"labels "<select data-testid="nf-bins" prop:disabled=lock
                    title="median: every sentence is labelled; quantiles: only the top and bottom q, the ambiguous middle is left out"
                    on:change=move |ev| { let q = event_target_value(&ev) == "quantiles"; spec.update(|s| s.bins = if q { Bins::Quantiles(0.25) } else { Bins::Median }) }>
                    <option value="median" selected=move || spec.get().bins == Bins::Median>"split at the median"</option>
                    <option value="quantiles" selected=move || matches!(spec.get().bins, Bins::Quantiles(_))>"top / bottom quantile"</option>
                </select></label>
                {move || match spec.get().bins { Bins::Quantiles(q) => Some(view! {
                    <label>"q "<input type="number" min="0.05" max="0.45" step="0.05" size="4" data-testid="nf-quantile" prop:disabled=lock
                        prop:value=q on:change=move |ev| if let Ok(v) = event_target_value(&ev).parse() { spec.update(|s| s.bins = Bins::Quantiles(v)) }/></label> }),
                    Bins::Median => None }}
                <label><input type="checkbox" data-testid="nf-shuffled" prop:disabled=lock prop:checked=move || spec.get().shuffled
                    on:change=move |ev| spec.update(|s| s.shuffled = event_target_checked(&ev))/>" shuffled-label control"</label>
                <label><input type="checkbox" data-testid="nf-control" prop:disabled=lock prop:checked=move || spec.get().control
                    on:change=move |ev| spec.update(|s| s.control = event_target_checked(&ev))/>" implicit control (chat)"</label>
                <label><input type="checkbox" data-testid="nf-explicit" prop:disabled=lock prop:checked=move || spec.get().explicit.is_some()
                    on:change=move |ev| { let on = event_target_checked(&ev); spec.update(|s| s.explicit = on.then(ExplicitControl::default)) }/>
                    " explicit control: the model writes (chat)"</label>
            </div>
            {move || spec.get().explicit.map(|e| view! {
                <div class="row">
                    <label>"tokens per sentence "<input type="number" min="1" max="64" data-testid="nf-max-tokens" prop:disabled=lock
                        prop:value=e.max_tokens
                        on:change=move |ev| if let Ok(v) = event_target_value(&ev).parse() { spec.update(|s| if let Some(x) = s.explicit.as_mut() { x.max_tokens = v }) }/></label>
                    <label>"temperature "<input type="number" min="0" max="5" step="0.1" data-testid="nf-temperature" prop:disabled=lock
                        title="0: greedy decoding (the most likely token each step); above 0: seeded sampling"
                        prop:value=e.temperature
                        on:change=move |ev| if let Ok(v) = event_target_value(&ev).parse() { spec.update(|s| if let Some(x) = s.explicit.as_mut() { x.temperature = v }) }/></label>
                    <label>"sentences per seed and label "<input type="number" min="1" max="8" data-testid="nf-samples" prop:disabled=lock
                        prop:value=e.samples
                        on:change=move |ev| if let Ok(v) = event_target_value(&ev).parse() { spec.update(|s| if let Some(x) = s.explicit.as_mut() { x.samples = v }) }/></label>
                </div>
            })}
            <div class="row">
                <label>"sentences "<select data-testid="nf-sentences" prop:disabled=lock
                    on:change=move |ev| { let v = event_target_value(&ev); spec.update(|s| s.sentences = if v == "pasted" {
                        Sentences::Pasted(String::new()) } else { Sentences::Bundled(v) }) }>
                    {BUNDLED_SETS.map(|b| view! { <option value=b selected=move || spec.get().sentences == Sentences::Bundled(b.into())>{b}</option> })}
                    <option value="pasted" selected=move || pasted().is_some()>"my own (paste below)"</option>
                </select></label>
            </div>
            {move || pasted().map(|t| view! {
                <label for="nf-pasted">"One sentence per line; end a line with | 1 or | 0 to give its concept (for the probe)."</label>
                <textarea id="nf-pasted" rows="6" cols="70" data-testid="nf-pasted" prop:disabled=lock prop:value=t
                    on:change=move |ev| spec.update(|s| s.sentences = Sentences::Pasted(event_target_value(&ev)))></textarea>
            })}
            <details><summary>"Full spec (JSON): every parameter, editable"</summary>
                <textarea rows="12" cols="70" data-testid="nf-spec-json" prop:disabled=lock
                    prop:value=move || bad.text("nf-spec-json").unwrap_or_else(json_text)
                    on:change={move |ev| { let t = event_target_value(&ev); match serde_json::from_str::<NeurofeedbackSpec>(&t) {
                        Ok(s) => { bad.clear(); dirs_text.set(join(&s.directions)); ns_text.set(join(&s.examples)); seeds_text.set(join(&s.seeds)); spec.set(s); input_error.set(None) }
                        Err(e) => bad.reject("nf-spec-json", t, format!("the spec (JSON) is not valid: {e}")),
                    }}}></textarea>
            </details>
            {move || bad.message().or_else(|| input_error.get()).map(|e| view! { <p class="error" role="alert" data-testid="nf-input-error">{e}</p> })}
            <RunControls st=st prefix="nf-" label="Run" on_run=Callback::new(run_click)
                blocked=Signal::derive(move || info.get().is_none())/>
            <crate::share::ShareLinks share=st.share prefix="nf-" hide="guided,model"
                spec_json=Callback::new(move |()| crate::share::export_json(&spec.get_untracked()))/>
        </section>
        {last}
        </div>
    }
}

fn result_view(r: NeurofeedbackResult, spec: NeurofeedbackSpec) -> impl IntoView {
    let xs: Vec<f64> = spec.examples.iter().map(|&n| n as f64).collect();
    let mut series: Vec<Series> = r
        .directions
        .iter()
        .map(|d| Series {
            name: d.direction.to_string(),
            values: d.mean.clone(),
        })
        .collect();
    // One shuffled-label series (mean over directions) keeps the plot readable; the table has
    // each direction's.
    if spec.shuffled {
        let k = r.directions.len() as f64;
        series.push(Series {
            name: "shuffled labels (mean)".into(),
            values: (0..xs.len())
                .map(|i| {
                    r.directions
                        .iter()
                        .filter_map(|d| d.shuffled.as_ref().map(|s| s[i]))
                        .sum::<f64>()
                        / k
                })
                .collect(),
        });
    }
    let last = xs.len() - 1;
    let pcs: Vec<(usize, f64, f64)> = r
        .directions
        .iter()
        .filter_map(|d| match d.direction {
            Direction::Pc(k) => Some((k, d.variance_explained, d.mean[last])),
            _ => None,
        })
        .collect();
    let mut by_variance = pcs.clone();
    by_variance.sort_by(|a, b| a.1.total_cmp(&b.1));
    let json = serde_json::to_string(&r).unwrap_or_default();
    let n_max = spec.examples[last];
    let names: Vec<String> = r
        .directions
        .iter()
        .map(|d| d.direction.to_string())
        .collect();
    view! {
        <p>{match spec.bins {
            Bins::Median => format!("{} sentences; labels split each direction's projections at the median. Chance is 50%.", r.sentences),
            Bins::Quantiles(q) => format!("{} sentences; per direction the top {:.0}% of projections get the first label and the bottom {:.0}% \
                the second; the middle is neither example nor query. Chance is 50%.", r.sentences, q * 100.0, q * 100.0),
        }}</p>
        <LinePlot series=series xs=xs xlabel="N (in-context examples)".to_string() y_range=(0.0, 1.0)
            reference=(0.5, "chance".to_string())
            ylabel="reporting accuracy".to_string() testid="nf-accuracy".to_string()/>
        <table class="data" data-testid="nf-table">
            <caption>"Accuracy per direction (mean over seeds), shuffled-label control at the largest N"</caption>
            <thead><tr><th scope="col">"direction"</th><th scope="col">"variance explained"</th>
                {spec.examples.iter().map(|n| view! { <th scope="col">{format!("N = {n}")}</th> }).collect_view()}
                <th scope="col">{format!("shuffled, N = {n_max}")}</th></tr></thead>
            <tbody>{r.directions.iter().map(|d| view! {
                <tr data-direction=d.direction.to_string()><th scope="row">{d.direction.to_string()}</th>
                    <td>{format!("{:.2}%", d.variance_explained * 100.0)}</td>
                    {d.mean.iter().map(|a| view! { <td>{pct(*a)}</td> }).collect_view()}
                    <td>{d.shuffled.as_ref().map(|s| pct(s[last])).unwrap_or_else(|| "–".into())}</td></tr>
            }).collect_view()}</tbody>
        </table>
        {(pcs.len() > 1).then(|| view! {
            <LinePlot series={vec![Series { name: format!("accuracy at N = {n_max}"), values: pcs.iter().map(|p| p.2).collect() }]}
                xs={pcs.iter().map(|p| p.0 as f64).collect::<Vec<_>>()} xlabel="PC rank".to_string()
                y_range=(0.0, 1.0) reference=(0.5, "chance".to_string())
                ylabel="reporting accuracy".to_string() testid="nf-by-rank".to_string()/>
            // The same points against variance explained (ascending, so the axis runs left to right).
            <LinePlot series={vec![Series { name: format!("accuracy at N = {n_max}"), values: by_variance.iter().map(|p| p.2).collect() }]}
                xs={by_variance.iter().map(|p| p.1 * 100.0).collect::<Vec<_>>()} xlabel="variance explained (%)".to_string()
                y_range=(0.0, 1.0) reference=(0.5, "chance".to_string())
                ylabel="reporting accuracy".to_string() testid="nf-by-variance".to_string()/>
        })}
        <details><summary>"Variance explained by the first principal components"</summary>
            <p class="mono">{r.pc_variance.iter().enumerate().map(|(i, v)| format!("PC{}: {:.2}%", i + 1, v * 100.0)).collect::<Vec<_>>().join(" · ")}</p>
        </details>
        <h3>"Projections"</h3>
        {r.directions.iter().map(|d| histogram(d.direction.to_string(), &d.projections, d.cuts)).collect_view()}
        {r.control.clone().map(|c| view! {
            <h3>"Control task"</h3>
            <p class="muted">{format!("With {} examples in context, the model is asked for a sentence of each label and reads held-out \
                sentences. Each cell: the mean projection for the first label minus the second, along the column's direction, \
                in standard deviations of that projection. Control works when the diagonal is large and positive and the rest near 0.", c.examples)}</p>
            <Heatmap rows={names.iter().map(|n| format!("target {n}")).collect::<Vec<_>>()} cols={names.clone()}
                values={c.shift.iter().map(|r| r.iter().map(|&v| v as f32).collect()).collect::<Vec<_>>()}
                what="shift (sd)".to_string() testid="nf-control-shift".to_string()/>
        })}
        {r.explicit.clone().map(|c| {
            let labels = spec.labels.clone();
            view! {
            <h3>"Explicit control: the model writes"</h3>
            <p class="muted">{format!("With {} examples of a direction's labels in context, the model is asked to write a sentence of each \
                label. Left: its own activations over the tokens it wrote; right: the same sentence read alone (does the text carry \
                the label, or only the state it was written in?). Each cell: mean projection for the first label minus the second, \
                in standard deviations.", c.examples)}</p>
            <div class="row">
                <Heatmap rows={names.iter().map(|n| format!("target {n}")).collect::<Vec<_>>()} cols={names.clone()}
                    values={c.shift.iter().map(|r| r.iter().map(|&v| v as f32).collect()).collect::<Vec<_>>()}
                    what="shift while writing (sd)".to_string() testid="nf-explicit-shift".to_string()/>
                <Heatmap rows={names.iter().map(|n| format!("target {n}")).collect::<Vec<_>>()} cols={names.clone()}
                    values={c.shift_alone.iter().map(|r| r.iter().map(|&v| v as f32).collect()).collect::<Vec<_>>()}
                    what="shift read alone (sd)".to_string() testid="nf-explicit-shift-alone".to_string()/>
            </div>
            <table class="data" data-testid="nf-written">
                <caption>"What the model wrote (z: projection on the target direction, in standard deviations from the set's mean)"</caption>
                <thead><tr><th scope="col">"direction"</th><th scope="col">"asked for"</th><th scope="col">"seed"</th>
                    <th scope="col">"sentence"</th><th scope="col">"z while writing"</th><th scope="col">"z read alone"</th></tr></thead>
                <tbody>{c.sentences.iter().map(|w| view! {
                    <tr><td>{w.direction.to_string()}</td><td>{labels[w.label.min(1)].clone()}</td><td>{w.seed}</td>
                        <td>{if w.finished { w.text.clone() } else { format!("{} …", w.text) }}</td>
                        <td>{format!("{:+.2}", w.z)}</td><td>{format!("{:+.2}", w.z_alone)}</td></tr>
                }).collect_view()}</tbody>
            </table>
        }})}
        <details><summary>"An example prompt (first seed, largest N)"</summary><pre data-testid="nf-prompt">{r.example_prompt.clone()}</pre></details>
        <pre hidden data-testid="nf-result-json">{json}</pre>
    }
}

/// A small histogram of projections with the label cuts marked (one line for the median split;
/// with quantile bins the middle, unlabelled, is grey).
fn histogram(name: String, values: &[f64], cuts: [f64; 2]) -> impl IntoView + use<> {
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let bins = 24usize;
    let mut counts = vec![0usize; bins];
    for &v in values {
        let b = (((v - lo) / span) * bins as f64) as usize;
        counts[b.min(bins - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let (w, h) = (320.0f64, 70.0f64);
    let bw = w / bins as f64;
    let [x0, x1] = cuts.map(|c| (c - lo) / span * w);
    let caption = if cuts[0] == cuts[1] {
        format!(
            "{name}: median {:.3} (blue: first label, orange: second)",
            cuts[0]
        )
    } else {
        format!(
            "{name}: cuts {:.3} / {:.3} (blue: first label, orange: second, grey: left out)",
            cuts[0], cuts[1]
        )
    };
    view! {
        <figure class="histogram">
            <svg viewBox=format!("0 0 {w} {}", h + 14.0) width="320" role="img"
                 aria-label=format!("distribution of projections: {caption}")>
                {counts.iter().enumerate().map(|(i, &c)| { let bh = c as f64 / top * h; view! {
                    <rect x={i as f64 * bw} y={h - bh} width={bw - 1.0} height=bh fill={let c = (i as f64 + 0.5) * bw; if c > x1 { "#0072B2" } else if c < x0 { "#E69F00" } else { "#BBBBBB" }}>
                        <title>{format!("{c} sentences")}</title></rect> }}).collect_view()}
                {[x0, x1].map(|x| view! { <line x1=x x2=x y1=0.0 y2=h stroke="#000" stroke-dasharray="3 2"/> })}
                <text x=0.0 y=h + 12.0 font-size="10">{format!("{lo:.2}")}</text>
                <text x=w y=h + 12.0 font-size="10" text-anchor="end">{format!("{hi:.2}")}</text>
            </svg>
            <figcaption class="muted">{caption.clone()}</figcaption>
        </figure>
    }
}
