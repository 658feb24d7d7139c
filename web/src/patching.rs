//! Circuits lab: the activation-patching panel. Its state is a [`PatchingSpec`], which lives in
//! the URL (`#/circuits?spec=...`), exports as JSON and runs in the CLI (`interplay run`).

use leptos::prelude::*;
use leptos::task::spawn_local;

use interplay_lab::attribution::AttributionSpec;
use interplay_lab::{Experiment, PatchingSpec, Prompt, TokenRef};
use interplay_models::patching::{PatchGrid, PatchTarget};

use crate::engine::{Output, Part, Task};
use crate::speclab::{RunControls, RunState, autosave, initial_spec, run_on_open, state_of};

/// Where the patching panel autosaves its experiment.
const DRAFT_KEY: &str = "interplay.circuits.patching";
use crate::models;
use crate::plots::{Heatmap, download};

pub(crate) fn prompt_of(s: &str) -> Prompt {
    let ids: Option<Vec<u32>> = s.split(',').map(|x| x.trim().parse().ok()).collect();
    match ids {
        Some(ids) if !s.trim().is_empty() => Prompt::Ids(ids),
        _ => Prompt::Text(s.to_string()),
    }
}

pub(crate) fn token_of(s: &str) -> TokenRef {
    s.trim()
        .parse()
        .map(TokenRef::Id)
        .unwrap_or_else(|_| TokenRef::Text(s.to_string()))
}

pub(crate) fn prompt_text(p: &Prompt) -> String {
    match p {
        Prompt::Text(t) => t.clone(),
        Prompt::Ids(ids) => ids.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
    }
}

pub(crate) fn token_text(t: &TokenRef) -> String {
    match t {
        TokenRef::Text(s) => s.clone(),
        TokenRef::Id(i) => i.to_string(),
    }
}

fn target_name(t: PatchTarget) -> &'static str {
    match t {
        PatchTarget::ResidPre => "resid_pre",
        PatchTarget::ResidMid => "resid_mid",
        PatchTarget::ResidPost => "resid_post",
        PatchTarget::AttnOut => "attn_out",
        PatchTarget::MlpOut => "mlp_out",
        PatchTarget::HeadOut => "head_out",
        PatchTarget::HeadOutPos => "head_out_pos",
    }
}

#[derive(Clone, Debug, PartialEq)]
struct SweepResult {
    grid: PatchGrid,
    rows: Vec<String>,
    cols: Vec<String>,
    spec: PatchingSpec,
    ms: f64,
    backend: String,
    /// With attribution patching: its estimate of the grid, and how well it matches.
    estimate: Option<Estimate>,
}

/// Attribution patching's estimate of a sweep and how well it matches the sweep.
#[derive(Clone, Debug, PartialEq)]
struct Estimate {
    grid: PatchGrid,
    correlation: Option<f64>,
    top_overlap: Option<usize>,
    top: usize,
}

/// How the panel patches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    /// One corrupted run per cell.
    Activation,
    /// Every cell estimated from gradients, beside the sweep.
    Attribution,
}

/// The patching panel.
#[component]
pub fn PatchingPanel(
    /// A guided experiment's setup; the form follows it.
    preset: RwSignal<Option<crate::guided::Preset>>,
) -> impl IntoView {
    // A spec from a share link wins over the default; a damaged link says so.
    // A share link wins; else the autosaved draft; else the IOI default.
    let mut init = initial_spec(DRAFT_KEY, PatchingSpec::ioi_smollm2);
    // An attribution-patching link is this panel's too, with the method set.
    let mut method0 = Method::Activation;
    if let Some(Ok(a)) = crate::share::read_share_link::<AttributionSpec>() {
        method0 = Method::Attribution;
        init = crate::speclab::Initial {
            spec: a.patching(),
            link_error: None,
            from_link: true,
        };
    }
    let method = RwSignal::new(method0);
    let initial = init.spec;
    let model_name = RwSignal::new(initial.model.clone());
    let clean = RwSignal::new(prompt_text(&initial.clean));
    let corrupt = RwSignal::new(prompt_text(&initial.corrupt));
    let answer = RwSignal::new(token_text(&initial.answer));
    let wrong = RwSignal::new(token_text(&initial.wrong));
    let target = RwSignal::new(initial.target);
    let st = RunState::new(init.link_error);
    let result = RwSignal::new(None::<Result<SweepResult, String>>);
    let lock = crate::share::locked();
    // Sweeps compare at a glance on one scale; off, each map uses its own largest value.
    let fixed_scale = RwSignal::new(true);

    // The form as a spec: one derived signal for the run, the autosave and the ablation panel.
    let current = Signal::derive(move || PatchingSpec {
        model: model_name.get(),
        clean: prompt_of(&clean.get()),
        corrupt: prompt_of(&corrupt.get()),
        answer: token_of(&answer.get()),
        wrong: token_of(&wrong.get()),
        target: target.get(),
    });
    let spec = move || current.get_untracked();

    let run = move |_| {
        let Some(info) = models::info() else {
            result.set(Some(Err("load a model first".into())));
            st.runs.update(|n| *n += 1);
            return;
        };
        let mut s = spec();
        s.model = info.key.clone();
        model_name.set(s.model.clone());
        let attribution = method.get_untracked() == Method::Attribution;
        let experiment = if attribution {
            let a = AttributionSpec::from_patching(s.clone());
            st.start(&a, 1);
            Experiment::AttributionPatching(a)
        } else {
            st.start(&s, 1);
            Experiment::Circuits(s.clone())
        };
        spawn_local(async move {
            // The engine computes; the model goes to it again if it restarted or changed device.
            let task = Task::Experiment(Box::new(experiment));
            // Gradients: the gradients engine takes over, and the model is sent to it.
            let sent = if attribution {
                models::ensure_in_gradients_engine(Some(st.job)).await
            } else {
                models::ensure_in_engine(Some(st.job)).await
            };
            let r = match sent {
                Err(e) => Err(e),
                Ok(()) => match st.compute(task, |_: Part| {}).await {
                    Ok((Output::Patching { grid, rows, cols }, ran)) => Ok(SweepResult {
                        grid,
                        rows,
                        cols,
                        spec: s,
                        ms: ran.ms,
                        backend: ran.backend.label().into(),
                        estimate: None,
                    }),
                    Ok((
                        Output::AttributionPatching {
                            outcome,
                            rows,
                            cols,
                        },
                        ran,
                    )) => {
                        let o = *outcome;
                        Ok(SweepResult {
                            grid: o.activation,
                            rows,
                            cols,
                            spec: s,
                            ms: ran.ms,
                            backend: ran.backend.label().into(),
                            estimate: Some(Estimate {
                                grid: o.attribution,
                                correlation: o.correlation,
                                top_overlap: o.top_overlap,
                                top: o.top,
                            }),
                        })
                    }
                    Ok(_) => Err("the engine answered with another lab's result".to_string()),
                    Err(e) => Err(e.to_string()),
                },
            };
            result.set(Some(r));
            st.finish();
        });
    };

    // `run=1`: the sweep runs once the link's model has loaded (the lab loads it).
    run_on_open(
        init.from_link,
        st,
        move || models::info().is_some_and(|i| i.key == model_name.get_untracked()),
        move || run(()),
    );

    // Autosave every edit, so a reload or a crash loses nothing.
    autosave(DRAFT_KEY, move || current.get());
    Effect::new(move |_| {
        if let Some(crate::guided::Preset {
            patching: Some(p),
            attribution,
            ..
        }) = preset.get()
        {
            method.set(if attribution {
                Method::Attribution
            } else {
                Method::Activation
            });
            clean.set(prompt_text(&p.clean));
            corrupt.set(prompt_text(&p.corrupt));
            answer.set(token_text(&p.answer));
            wrong.set(token_text(&p.wrong));
            target.set(p.target);
        }
    });
    // In an embed the result comes first, in the page's order too (see `share::result_first`).
    let result_view = view! {
        <div class="result" data-testid="patch-status" data-seq=move || st.runs.get()
             data-state=move || state_of(st.busy.get(), &result.get())>
        <crate::speclab::Announce what="Patching sweep" busy=st.busy outcome=result/>
        {move || result.get().map(|r| match r {
            Err(e) => view! { <p class="error" role="alert" data-testid="patch-error">{e}</p> }.into_any(),
            Ok(r) => {
                let spec_json = match &r.estimate {
                    Some(_) => crate::share::export_json(&AttributionSpec::from_patching(r.spec.clone())),
                    None => crate::share::export_json(&r.spec),
                };
                let mut data = serde_json::json!({"spec": r.spec, "clean_metric": r.grid.clean_metric,
                    "corrupt_metric": r.grid.corrupt_metric, "grid": r.grid.grid, "patched": r.grid.patched});
                if let Some(e) = &r.estimate {
                    data["attribution"] = serde_json::json!({"grid": e.grid.grid, "patched": e.grid.patched,
                        "correlation": e.correlation, "top_overlap": e.top_overlap, "top": e.top});
                }
                let data = data.to_string();
                let estimate = r.estimate.clone().map(|e| {
                    let (rows, cols) = (r.rows.clone(), r.cols.clone());
                    view! {
                        <dl class="facts">
                            <dt>"correlation, estimate vs sweep"</dt>
                            <dd data-testid="attribution-correlation">{e.correlation.map_or("— (a constant grid)".to_string(), |c| format!("{c:.3}"))}</dd>
                            <dt>{format!("the sweep's top {} cells (largest |effect|) among the estimate's", e.top)}</dt>
                            <dd data-testid="attribution-overlap">{e.top_overlap.map_or("— (a constant grid)".to_string(), |k| format!("{k} of {}", e.top))}</dd>
                        </dl>
                        <p class="muted">"Attribution patching: (clean − corrupted activation) · gradient of the logit \
                            difference on the corrupted run, one backward pass for every cell. Where the metric is close to \
                            linear in the patched activation it matches the sweep below; for large residual-stream patches it does not."</p>
                        {move || view! { <Heatmap rows=rows.clone() cols=cols.clone() values=e.grid.grid.clone()
                                 scale=fixed_scale.get().then_some(1.0)
                                 what="attribution estimate (normalised)".to_string() testid="attribution-grid".to_string()/> }}
                    }
                });
                let finding = crate::guided::sweep_guide(&r.spec)
                    .and_then(|id| interplay_lab::findings::circuits(id, &r.spec, &r.grid, &r.cols))
                    .map(|f| view! { <crate::speclab::FindingView finding=f testid="patch-finding"/> });
                view! {
                    <dl class="facts">
                        <dt>"clean logit difference"</dt><dd data-testid="clean-metric">{format!("{:.4}", r.grid.clean_metric)}</dd>
                        <dt>"corrupted logit difference"</dt><dd data-testid="corrupt-metric">{format!("{:.4}", r.grid.corrupt_metric)}</dd>
                        <dt>"computed on"</dt><dd>{format!("{} in {:.0} ms", r.backend, r.ms)}</dd>
                    </dl>
                    <label><input type="checkbox" data-testid="patch-fixed-scale" prop:checked=move || fixed_scale.get()
                        on:change=move |ev| fixed_scale.set(event_target_checked(&ev))/>
                        " one colour scale for every sweep (±1 = the whole clean–corrupted difference)"</label>
                    {estimate}
                    {move || view! { <Heatmap rows=r.rows.clone() cols=r.cols.clone() values=r.grid.grid.clone()
                             scale=fixed_scale.get().then_some(1.0)
                             what="normalised recovery".to_string() testid="patch-grid".to_string()/> }}
                    {finding}
                    <p>
                        <button on:click=move |_| download("patching.json", "application/json", &data)>"Export JSON"</button>" "
                        <button on:click=move |_| download("spec.json", "application/json", &spec_json)>"Export spec (for `interplay run`)"</button>
                    </p>
                }.into_any()
            }
        })}
        </div>
    };
    let (first, last) = crate::share::result_first(result_view);
    // An embed of another Circuits experiment (relation neurons, circuit reuse) shows that
    // panel only.
    let embedded = use_context::<crate::share::Embed>().is_some_and(|e| e.embed);
    let hidden = crate::share::hidden("patching")
        || (embedded
            && (crate::share::read_share_link::<interplay_lab::neurons::NeuronsSpec>()
                .is_some_and(|r| r.is_ok())
                || crate::share::read_share_link::<interplay_lab::reuse::ReuseSpec>()
                    .is_some_and(|r| r.is_ok())));
    view! {
        <section class="card has-result" data-testid="patching" hidden=hidden>
            <h2>"Activation patching"</h2>
            {first}
            <p class="muted">"Run the corrupted prompt, patch one activation in from the clean run, and see how much of the \
                clean logit difference (answer − wrong) comes back: 1 = fully restored, 0 = no effect. \
                Prompts may be text or comma-separated token ids; both must have the same number of tokens."</p>
            {move || st.link_error.get().map(|e| view! { <p class="error" role="alert" data-testid="link-error">{e}</p> })}
            <div class="grid2">
                <label>"Clean prompt"<input type="text" data-testid="patch-clean" prop:disabled=lock prop:value=move || clean.get() on:input=move |ev| clean.set(event_target_value(&ev))/></label>
                <label>"Corrupted prompt"<input type="text" data-testid="patch-corrupt" prop:disabled=lock prop:value=move || corrupt.get() on:input=move |ev| corrupt.set(event_target_value(&ev))/></label>
                <label>"Answer token"<input type="text" data-testid="patch-answer" prop:disabled=lock prop:value=move || answer.get() on:input=move |ev| answer.set(event_target_value(&ev))/></label>
                <label>"Wrong token"<input type="text" data-testid="patch-wrong" prop:disabled=lock prop:value=move || wrong.get() on:input=move |ev| wrong.set(event_target_value(&ev))/></label>
            </div>
            <label>"Activation "
                // `selected` on the options: the select's value set before its options exist is lost.
                <select data-testid="patch-target" prop:disabled=lock
                        on:change=move |ev| if let Ok(t) = event_target_value(&ev).parse() { target.set(t) }>
                    <option value="resid_pre" selected=move || target_name(target.get()) == "resid_pre">"residual stream before each layer (resid_pre)"</option>
                    <option value="resid_mid" selected=move || target_name(target.get()) == "resid_mid">"residual stream between attention and MLP (resid_mid)"</option>
                    <option value="resid_post" selected=move || target_name(target.get()) == "resid_post">"residual stream after each layer (resid_post)"</option>
                    <option value="attn_out" selected=move || target_name(target.get()) == "attn_out">"attention output (attn_out)"</option>
                    <option value="mlp_out" selected=move || target_name(target.get()) == "mlp_out">"MLP output (mlp_out)"</option>
                    <option value="head_out" selected=move || target_name(target.get()) == "head_out">"each head's output, all positions (head_out)"</option>
                    <option value="head_out_pos" selected=move || target_name(target.get()) == "head_out_pos">"each head's output, position by position (head_out_pos)"</option>
                </select>
            </label>
            <label>"Method "
                <select data-testid="patch-method" prop:disabled=lock
                        on:change=move |ev| method.set(if event_target_value(&ev) == "attribution" { Method::Attribution } else { Method::Activation })>
                    <option value="activation" selected=move || method.get() == Method::Activation>"activation patching: one corrupted run per cell"</option>
                    <option value="attribution" selected=move || method.get() == Method::Attribution>"attribution patching: every cell estimated from gradients, beside the sweep"</option>
                </select>
            </label>
            {move || (method.get() == Method::Attribution).then(|| view! {
                <p class="muted" data-testid="attribution-note">"Gradients come from the gradients engine, a further module \
                    loaded the first time (the model is sent to it again); it then serves every lab, on the CPU with one thread."</p>
            })}
            <RunControls st=st prefix="patch-" label="Run sweep" on_run=Callback::new(run)/>
            <crate::share::ShareLinks share=st.share prefix="" hide="guided,model,prompt,analysis,head-scores,neurons,reuse,recall"/>
            {last}
        </section>
        <crate::ablation::AblationPanel spec=current/>
    }
}
