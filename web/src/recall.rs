//! Circuits lab: recall vs reasoning. Its state is a [`RecallSpec`]
//! (`"experiment": "recall-reasoning"`), in the URL, exported as JSON and run by the CLI
//! (`interplay run`); the engine ablates every layer's attention and MLP (and every head) on
//! fact-recall and on in-context reasoning questions, and the page plots each component's drop
//! on one task against the other, then disables the most selective components for each task
//! and scores both tasks on questions the ranking never saw.

use leptos::prelude::*;
use leptos::task::spawn_local;

use interplay_lab::Experiment;
use interplay_lab::recall::{
    Ablation, Circuit, Effect as ComponentEffect, Part, RecallResult, RecallSpec, Scope, Tasks,
    ranked, ranked_reasoning,
};

use crate::engine::{Output, Part as Streamed, Task};
use crate::models;
use crate::plots::{LinePlot, Point, ScatterPlot, Series, download};
use crate::speclab::{
    BadInputs, RunControls, RunState, autosave, initial_spec, run_on_open, state_of,
};

/// Where the panel autosaves its experiment.
const DRAFT_KEY: &str = "interplay.circuits.recall";

#[derive(Clone, Debug, PartialEq)]
struct Run {
    result: RecallResult,
    spec: RecallSpec,
}

fn pct(c: usize, n: usize) -> String {
    format!("{c}/{n} ({:.0} %)", 100.0 * c as f64 / n.max(1) as f64)
}

fn circuit_row(name: &str, c: &Circuit) -> impl IntoView + use<> {
    let components = if c.components.is_empty() {
        "none".to_string()
    } else {
        c.components
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let names = c
        .components
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("|");
    view! {
        <tr data-circuit=name.to_string() data-recall=c.recall.correct data-reasoning=c.reasoning.correct data-components=names>
            <th scope="row">{name.to_string()}</th>
            <td>{pct(c.recall.correct, c.recall.total)}</td>
            <td>{pct(c.reasoning.correct, c.reasoning.total)}</td>
            <td class="muted">{components}</td>
        </tr>
    }
}

fn top_list(
    effects: &[ComponentEffect],
    order: &[interplay_lab::recall::Component],
    k: usize,
) -> String {
    order
        .iter()
        .take(k)
        .filter_map(|c| effects.iter().find(|e| e.component == *c))
        .map(|e| {
            format!(
                "{} ({:+.0} % / {:+.0} %)",
                e.component,
                100.0 * e.recall_drop,
                100.0 * e.reasoning_drop
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The panel.
#[component]
pub fn RecallPanel(
    /// A guided experiment's setup; the form follows it.
    preset: RwSignal<Option<crate::guided::Preset>>,
) -> impl IntoView {
    let init = initial_spec(DRAFT_KEY, RecallSpec::smollm2);
    let from_link = init.from_link;
    let spec = RwSignal::new(init.spec);
    let bad = BadInputs::new();
    // A damaged link's message is the patching panel's (one alert, not two).
    let st = RunState::new(None);
    let result = RwSignal::new(None::<Result<Run, String>>);
    let lock = crate::share::locked();
    // An embed shows the panel whose experiment its link holds.
    let embedded = use_context::<crate::share::Embed>().is_some_and(|e| e.embed);
    let hidden = crate::share::hidden("recall") || (embedded && !from_link);
    let given = Memo::new(move |_| spec.with(|s| matches!(s.tasks, Tasks::Given(_))));

    let run = move |_| {
        if bad.refuse_run() {
            return;
        }
        let Some(info) = models::info() else {
            result.set(Some(Err("load a model first".into())));
            st.runs.update(|n| *n += 1);
            return;
        };
        spec.update(|s| s.model = info.key.clone());
        let s = spec.get_untracked();
        let discovery = s
            .tasks
            .load()
            .map(|t| t.recall.len().div_ceil(2) + t.reasoning.len().div_ceil(2))
            .unwrap_or(0);
        st.start(&s, s.steps(discovery));
        spawn_local(async move {
            let task = Task::Experiment(Box::new(Experiment::RecallReasoning(s.clone())));
            let r = match models::ensure_in_engine(Some(st.job)).await {
                Err(e) => Err(e),
                Ok(()) => match st.compute(task, |_: Streamed| {}).await {
                    Ok((Output::RecallReasoning(result), _)) => Ok(Run {
                        result: *result,
                        spec: s,
                    }),
                    Ok(_) => Err("the engine answered with another lab's result".to_string()),
                    Err(e) => Err(e.to_string()),
                },
            };
            result.set(Some(r));
            st.finish();
        });
    };
    run_on_open(
        from_link,
        st,
        move || models::info().is_some_and(|i| spec.with_untracked(|s| i.key == s.model)),
        move || run(()),
    );
    autosave(DRAFT_KEY, move || spec.get());
    Effect::new(move |_| {
        if let Some(crate::guided::Preset {
            recall: Some(r), ..
        }) = preset.get()
        {
            bad.clear();
            spec.set(r);
        }
    });

    let result_view = move || {
        result.get().map(|r| match r {
            Err(e) => view! { <p class="error" role="alert" data-testid="recall-error">{e}</p> }.into_any(),
            Ok(Run { result: r, spec }) => {
                let k = spec.top_k;
                let group = |p: Part| match p {
                    Part::Attn => 0,
                    Part::Mlp => 1,
                    Part::Head(_) => 2,
                };
                let points: Vec<Point> = r.effects.iter().map(|e| Point {
                    name: e.component.to_string(),
                    group: group(e.component.part),
                    x: e.recall_drop,
                    y: e.reasoning_drop,
                }).collect();
                let mut groups = vec!["layer attention".to_string(), "layer MLP".to_string()];
                if spec.heads {
                    groups.push("head".into());
                }
                let layers = r.effects.iter().map(|e| e.component.layer + 1).max().unwrap_or(0);
                let by_layer = |part: Part, recall: bool| -> Vec<f64> {
                    (0..layers).map(|l| r.effects.iter()
                        .find(|e| e.component.layer == l && e.component.part == part)
                        .map_or(f64::NAN, |e| if recall { e.recall_drop } else { e.reasoning_drop }))
                        .collect()
                };
                let lines = vec![
                    Series { name: "attention, recall".into(), values: by_layer(Part::Attn, true) },
                    Series { name: "MLP, recall".into(), values: by_layer(Part::Mlp, true) },
                    Series { name: "attention, reasoning".into(), values: by_layer(Part::Attn, false) },
                    Series { name: "MLP, reasoning".into(), values: by_layer(Part::Mlp, false) },
                ];
                let top_recall = top_list(&r.effects, &ranked(&r.effects), k);
                let top_reasoning = top_list(&r.effects, &ranked_reasoning(&r.effects), k);
                let data = serde_json::json!({"spec": spec, "result": r}).to_string();
                let spec_json = crate::share::export_json(&spec);
                let finding = interplay_lab::findings::recall(&spec, &r)
                    .map(|f| view! { <crate::speclab::FindingView finding=f testid="recall-finding"/> });
                let control = r.control.as_ref().map(|c| circuit_row("as many random components (control)", c));
                view! {
                    <dl class="facts" data-testid="recall-base">
                        <dt>"Recall, discovery half"</dt>
                        <dd>{format!("{} answered, mean margin {:+.2}", pct(r.recall.correct, r.recall.total), r.recall.margin)}</dd>
                        <dt>"Reasoning, discovery half"</dt>
                        <dd>{format!("{} answered, mean margin {:+.2}", pct(r.reasoning.correct, r.reasoning.total), r.reasoning.margin)}</dd>
                    </dl>
                    <div class="grid2">
                        <div>
                            <h3>"Each component ablated: share of each task's margin lost"</h3>
                            <ScatterPlot points=points groups=groups
                                xlabel="drop on recall".to_string() ylabel="drop on reasoning".to_string()
                                testid="recall-scatter".to_string()/>
                        </div>
                        <div>
                            <h3>"By layer"</h3>
                            <LinePlot series=lines dashed_from=2
                                xlabel="layer".to_string() ylabel="share of margin lost".to_string()
                                testid="recall-layers".to_string()/>
                        </div>
                    </div>
                    <p data-testid="recall-top">{format!(
                        "Most recall-selective (drop on recall / on reasoning): {top_recall}. \
                         Most reasoning-selective: {top_reasoning}."
                    )}</p>
                    <table data-testid="recall-circuits">
                        <caption>{format!("Test half (questions the ranking never saw), the top {k} components of each kind disabled together")}</caption>
                        <thead><tr><th>"disabled"</th><th>"recall answered"</th><th>"reasoning answered"</th><th>"components"</th></tr></thead>
                        <tbody>
                            {circuit_row("nothing (the model as it is)", &r.test)}
                            {circuit_row("recall circuit", &r.recall_circuit)}
                            {circuit_row("reasoning circuit", &r.reasoning_circuit)}
                            {control}
                        </tbody>
                    </table>
                    {finding}
                    <p>
                        <button on:click=move |_| download("recall-reasoning.json", "application/json", &data)>"Export JSON"</button>" "
                        <button on:click=move |_| download("spec.json", "application/json", &spec_json)>"Export spec (for `interplay run`)"</button>
                    </p>
                }.into_any()
            }
        })
    };

    view! {
        <section class="card has-result" data-testid="recall" hidden=hidden>
            <h2>"Recall vs reasoning"</h2>
            <p class="muted">"Do remembering a fact and working an answer out of the prompt use different parts of \
                the model? Every layer's attention and MLP (and every head) is ablated in turn on both kinds of \
                question; each component's drop on recall is plotted against its drop on reasoning. Components \
                far from the diagonal are selective; the most selective ones for each task are then disabled \
                together on held-out questions."</p>
            <p class="muted" data-testid="recall-prompts">{move || if given.get() {
                "Questions: the ones given by the link.".to_string()
            } else {
                "Questions: the bundled ones (24 recall: capitals, languages, opposites; 24 reasoning: \
                 sequences, comparisons, two-shot addition). Even ones rank the components, odd ones test them."
                    .to_string()
            }}</p>
            <div class="grid2">
                <label>"Ablation "
                    <select data-testid="recall-ablation" prop:disabled=lock
                            on:change=move |ev| { let v = event_target_value(&ev); spec.update(|s| s.ablation = if v == "zero" { Ablation::Zero } else { Ablation::Mean }) }>
                        <option value="mean" selected=move || spec.with(|s| s.ablation == Ablation::Mean)>"mean (its average output)"</option>
                        <option value="zero" selected=move || spec.with(|s| s.ablation == Ablation::Zero)>"zero"</option>
                    </select>
                </label>
                <label>"Where "
                    <select data-testid="recall-scope" prop:disabled=lock
                            on:change=move |ev| { let v = event_target_value(&ev); spec.update(|s| s.scope = if v == "all" { Scope::All } else { Scope::Last }) }>
                        <option value="last" selected=move || spec.with(|s| s.scope == Scope::Last)>"last position only"</option>
                        <option value="all" selected=move || spec.with(|s| s.scope == Scope::All)>"every position (slower)"</option>
                    </select>
                </label>
                <label><input type="checkbox" data-testid="recall-heads" prop:disabled=lock prop:checked=move || spec.with(|s| s.heads)
                              on:change=move |ev| { let on = event_target_checked(&ev); spec.update(|s| s.heads = on) }/>" every head too (else layers only)"</label>
                <label>"Components per circuit (top k) "
                    <input type="number" min="1" step="1" data-testid="recall-k" prop:disabled=lock
                           aria-invalid=move || bad.text("recall-k").is_some().then_some("true")
                           prop:value=move || bad.text("recall-k").unwrap_or_else(|| spec.with(|s| s.top_k.to_string()))
                           on:change=move |ev| bad.number(spec, "recall-k", "top k", event_target_value(&ev),
                               |s| Some(s.top_k as f64), |s, x| s.top_k = x as usize, true)/>
                </label>
                <label><input type="checkbox" data-testid="recall-control" prop:disabled=lock prop:checked=move || spec.with(|s| s.control)
                              on:change=move |ev| { let on = event_target_checked(&ev); spec.update(|s| s.control = on) }/>" also as many random components (control)"</label>
                <label>"Seed of the random components "
                    <input type="number" min="0" step="1" data-testid="recall-seed" prop:disabled=lock
                           aria-invalid=move || bad.text("recall-seed").is_some().then_some("true")
                           prop:value=move || bad.text("recall-seed").unwrap_or_else(|| spec.with(|s| s.seed.to_string()))
                           on:change=move |ev| bad.number(spec, "recall-seed", "seed", event_target_value(&ev),
                               |s| Some(s.seed as f64), |s, x| s.seed = x as u64, true)/>
                </label>
            </div>
            {move || bad.message().map(|e| view! { <p class="error" role="alert" data-testid="recall-input-error">{e}</p> })}
            <RunControls st=st prefix="recall-" label="Ablate, compare and test circuits" on_run=Callback::new(run)/>
            <crate::share::ShareLinks share=st.share prefix="recall-" hide="guided,model,prompt,analysis,head-scores,patching,ablation,neurons,reuse"/>
            <div class="result" data-testid="recall-status" data-seq=move || st.runs.get()
                 data-state=move || state_of(st.busy.get(), &result.get())>
                <crate::speclab::Announce what="Recall vs reasoning" busy=st.busy outcome=result/>
                {result_view}
            </div>
        </section>
    }
}
