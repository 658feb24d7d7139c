//! Merge lab: task vectors of the bundled digits suite merged in the page (task arithmetic, TIES,
//! DARE, AdaMerging / aTLAS-style learned coefficients) and evaluated on every task, plus
//! in-browser fine-tuning. The experiment is one [`MergeSpec`]: it lives in the URL
//! (`#/merge?spec=...`), is autosaved, exports as JSON and runs in the CLI (`interplay run
//! spec.json`) to the same numbers.

use leptos::prelude::*;
use leptos::task::spawn_local;

use interplay_lab::merge::TrimScope;
use interplay_lab::mergelab::{
    FineTuneSpec, FineTuning, Granularity, LabMethod, MergeOutcome, MergeSpec, Objective,
};
use interplay_lab::suite::{Task, TrainOptions};

use crate::engine::{self, Output, Part};
use crate::plots::{Heatmap, LinePlot, Series, download};
use crate::speclab::{
    Announce, BadInputs, ComputedOn, FindingView, RunControls, RunState, autosave, initial_spec,
    run_on_open, state_of,
};
use interplay_lab::{Experiment, LabKind};

mod finetune;

use finetune::*;

const DRAFT_KEY: &str = "interplay.merge";

type Guided = interplay_lab::guided::Guided<MergeSpec>;

const GUIDED: &[Guided] = interplay_lab::guided::MERGE;

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn method_slug(m: LabMethod) -> &'static str {
    match m {
        LabMethod::TaskArithmetic => "task_arithmetic",
        LabMethod::Ties => "ties",
        LabMethod::Dare => "dare",
        LabMethod::Adamerging => "adamerging",
    }
}

/// A comparison-table row kept across runs in this page.
#[derive(Clone, Debug, PartialEq)]
struct Compared {
    name: String,
    merged: Vec<f64>,
    mean: f64,
    normalised: f64,
}

type Getter = fn(&MergeSpec) -> Option<f64>;
type Setter = fn(&mut MergeSpec, f64);

/// Numeric fields: label, test id, read (None: hidden for this method), write.
const FIELDS: &[(&str, &str, Getter, Setter)] = &[
    (
        "λ (AdaMerging: start)",
        "merge-lambda",
        |s| Some(s.lambda),
        |s, v| s.lambda = v,
    ),
    (
        "TIES density (kept fraction)",
        "merge-density",
        |s| (s.method == LabMethod::Ties).then_some(s.density),
        |s, v| s.density = v,
    ),
    (
        "DARE drop probability",
        "merge-drop",
        |s| (s.method == LabMethod::Dare).then_some(s.drop),
        |s, v| s.drop = v,
    ),
    (
        "DARE seed",
        "merge-seed",
        |s| (s.method == LabMethod::Dare).then_some(s.seed as f64),
        |s, v| s.seed = v as u64,
    ),
    (
        "AdaMerging steps",
        "merge-steps",
        |s| (s.method == LabMethod::Adamerging).then_some(s.adamerging.steps as f64),
        |s, v| s.adamerging.steps = v as usize,
    ),
    (
        "AdaMerging learning rate",
        "merge-ada-lr",
        |s| (s.method == LabMethod::Adamerging).then_some(s.adamerging.lr),
        |s, v| s.adamerging.lr = v,
    ),
    (
        "Labels per class (few-shot)",
        "merge-shots",
        |s| {
            (s.method == LabMethod::Adamerging && s.adamerging.objective == Objective::FewShot)
                .then_some(s.adamerging.shots as f64)
        },
        |s, v| s.adamerging.shots = v as usize,
    ),
];

fn parse_list(text: &str) -> Option<Vec<f64>> {
    let t = text.trim();
    if t.is_empty() {
        return Some(Vec::new());
    }
    t.split(',')
        .map(|x| x.trim().parse::<f64>().ok().filter(|v| v.is_finite()))
        .collect()
}

/// The Merge lab page.
#[component]
pub fn MergeLab() -> impl IntoView {
    let init = initial_spec(DRAFT_KEY, GUIDED[2].spec);
    let spec = RwSignal::new(init.spec);
    let st = RunState::new(init.link_error);
    let input_error = RwSignal::new(None::<String>);
    let bad = BadInputs::new();
    // Run's own check of the spec is stale once the spec changes (Run checks again).
    Effect::new(move |_| {
        spec.track();
        input_error.set(None);
    });
    let outcome = RwSignal::new(None::<Result<MergeOutcome, String>>);
    let facts = RwSignal::new((String::new(), 0.0f64));
    let compared = RwSignal::new(Vec::<Compared>::new());
    // The spec the shown outcome came from, and this page's run of "Adding task vectors" (the
    // standard sweep TIES, aTLAS and the linearised sweep are compared with).
    let ran = RwSignal::new(None::<MergeSpec>);
    let standard = RwSignal::new(None::<MergeOutcome>);
    let lock = crate::share::locked();
    autosave(DRAFT_KEY, move || spec.get());

    let run = move |_| {
        if bad.refuse_run() {
            return;
        }
        let s = spec.get_untracked();
        if let Err(e) = s.check() {
            input_error.set(Some(e.to_string()));
            return;
        }
        input_error.set(None);
        st.start(&s, s.work());
        ran.set(Some(s.clone()));
        spawn_local(async move {
            let guide = Guided::of(GUIDED, &s);
            let tasks = s
                .tasks
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join("+");
            // Two merges of the same tasks differ by their fine-tunes too: say which.
            let kind = if s.fine_tuning.linearised() {
                ", linearised fine-tunes"
            } else {
                ""
            };
            let r = match st
                .compute(
                    engine::Task::Experiment(Box::new(Experiment::Merge(s))),
                    |_: Part| {},
                )
                .await
            {
                Ok((Output::Merge(o), ran)) => {
                    facts.set((ran.backend.label().to_string(), ran.ms));
                    Ok(*o)
                }
                Ok(_) => Err("the engine answered with another lab's result".to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let (Ok(o), Some("add")) = (&r, guide) {
                standard.set(Some(o.clone()));
            }
            if let Ok(o) = &r {
                let name = o.rows.last().map(|r| r.name.clone()).unwrap_or_default();
                compared.update(|c| {
                    c.push(Compared {
                        name: format!("{name} [{tasks}{kind}]"),
                        merged: o.merged.clone(),
                        mean: o.mean_accuracy,
                        normalised: o.mean_normalised,
                    })
                });
            }
            outcome.set(Some(r));
            st.finish();
        });
    };

    run_on_open(init.from_link, st, || true, move || run(()));
    let json_text = move || serde_json::to_string_pretty(&spec.get()).unwrap_or_default();
    // An embed shows the result first, in the page's order too (not only on screen), so
    // the keyboard and screen readers reach it first.
    let result = view! {
        <section class="card result" data-testid="merge-status" data-seq=move || st.runs.get() data-ms=move || facts.get().1
                 data-state=move || state_of(st.busy.get(), &outcome.get())>
            <h2>"Result"</h2>
            <Announce what="Merge" busy=st.busy outcome=outcome/>
            <ComputedOn st=st facts=facts prefix="merge-"/>
            {move || outcome.get().map(|o| match o {
                Err(e) => view! { <p class="error" role="alert" data-testid="merge-error">{e}</p> }.into_any(),
                Ok(o) => outcome_view(o, spec.get_untracked()).into_any(),
            })}
            {move || (!st.busy.get()).then(|| finding(&ran.get(), &outcome.get(), standard.get().as_ref())).flatten().map(|f| view! {
                <FindingView finding=f testid="merge-finding"/>
            })}
            {move || (compared.get().len() > 1).then(|| view! {
                <table class="data" data-testid="merge-compare">
                    <caption>"Comparison of this session's merges (accuracy on each task's held-out images)"</caption>
                    <thead><tr><th scope="col">"merge"</th>{Task::ALL.iter().map(|t| view! { <th scope="col">{t.name()}</th> }).collect_view()}
                        <th scope="col">"mean (merged tasks)"</th><th scope="col">"normalised"</th></tr></thead>
                    <tbody>{compared.get().into_iter().map(|c| view! {
                        <tr><th scope="row">{c.name}</th>{c.merged.iter().map(|a| view! { <td>{pct(*a)}</td> }).collect_view()}
                            <td>{pct(c.mean)}</td><td>{pct(c.normalised)}</td></tr>
                    }).collect_view()}</tbody>
                </table>
            })}
        </section>
    };
    let (first, last) = crate::share::result_first(result);
    view! {
        <div class="lab" data-testid="merge-lab">
        {first}
        <section class="card" data-testid="merge-guided" hidden=crate::share::hidden("guided")>
            <h2>"Guided experiments"</h2>
            <p class="muted">"The suite: an MLP trained on scikit-learn's digits (the base) and four \
                fine-tunes of it on the same digits mirrored, upside down, turned a quarter and with ink \
                and paper swapped. All share one ten-digit output, so their weights can be merged. \
                Every model is evaluated on 450 held-out images of each task."</p>
            <ul class="guided">
            {GUIDED.iter().map(|g| { let make = g.spec; view! {
                <li><button data-testid=format!("merge-guided-{}", g.id) prop:disabled=move || st.busy.get() || lock
                    on:click=move |_| { bad.clear(); spec.set(make()); outcome.set(None); input_error.set(None); }>{g.title}</button>
                    " "<span class="muted">{g.text(LabKind::Merge)}</span></li>
            }}).collect_view()}
            </ul>
        </section>
        <section class="card" data-testid="merge-experiment">
            <h2>"Merge"</h2>
            {move || st.link_error.get().map(|e| view! { <p class="error" role="alert" data-testid="link-error">{e}</p> })}
            <fieldset><legend>"Task vectors to merge"</legend>
            {Task::FINE_TUNED.into_iter().map(|t| view! {
                <label><input type="checkbox" data-testid=format!("merge-task-{}", t.name()) prop:disabled=lock
                    prop:checked=move || spec.get().tasks.contains(&t)
                    on:change=move |ev| { let on = event_target_checked(&ev); spec.update(|s| {
                        s.tasks.retain(|x| *x != t);
                        if on { s.tasks.push(t); s.tasks.sort(); }
                    }) }/>{format!(" {} ({}) ", t.name(), t.describe())}</label>
            }).collect_view()}
            {move || (!spec.get().fine_tunes.is_empty()).then(|| view! {
                <ul data-testid="merge-page-finetunes">
                {spec.get().fine_tunes.iter().enumerate().map(|(i, f)| view! {
                    <li>{format!("page fine-tune {} on {} ({} epochs, lr {}, batch {}, seed {}{}) ", i + 1, f.task, f.options.epochs, f.options.lr, f.options.batch, f.options.seed,
                        if f.options.linearised { ", linearised" } else { "" })}
                        <button prop:disabled=lock on:click=move |_| spec.update(|s| { if i < s.fine_tunes.len() { s.fine_tunes.remove(i); } })>"remove"</button></li>
                }).collect_view()}
                </ul>
            })}
            <label>"Fine-tunes "
                <select data-testid="merge-fine-tuning" prop:disabled=lock
                    prop:value=move || if spec.get().fine_tuning.linearised() { "linearised" } else { "standard" }
                    on:change=move |ev| { bad.clear(); let lin = event_target_value(&ev) == "linearised";
                        spec.update(|s| s.fine_tuning = if lin { FineTuning::Linearised } else { FineTuning::Standard }) }>
                    <option value="standard">"standard (all parameters)"</option>
                    <option value="linearised">"linearised (tangent space of the base; every model is run linearised)"</option>
                </select></label>
            </fieldset>
            <label>"Method "
                <select data-testid="merge-method" prop:disabled=lock prop:value=move || method_slug(spec.get().method)
                    on:change=move |ev| { bad.clear(); let m = match event_target_value(&ev).as_str() {
                        "ties" => LabMethod::Ties, "dare" => LabMethod::Dare, "adamerging" => LabMethod::Adamerging,
                        _ => LabMethod::TaskArithmetic }; spec.update(|s| s.method = m) }>
                    <option value="task_arithmetic">"task arithmetic"</option>
                    <option value="ties">"TIES (trim, elect sign, disjoint mean)"</option>
                    <option value="dare">"DARE (drop and rescale)"</option>
                    <option value="adamerging">"learned coefficients (AdaMerging / aTLAS)"</option>
                </select>
            </label>
            {move || (spec.get().method == LabMethod::Ties).then(|| view! {
                <label>" Trim over "
                    <select data-testid="merge-trim" prop:disabled=lock
                        prop:value=move || if spec.get().trim_scope == TrimScope::Global { "global" } else { "per-tensor" }
                        on:change=move |ev| { let g = event_target_value(&ev) == "global";
                            spec.update(|s| s.trim_scope = if g { TrimScope::Global } else { TrimScope::PerTensor }) }>
                        <option value="global">"all parameters (official)"</option>
                        <option value="per-tensor">"each tensor"</option>
                    </select></label>
            })}
            {move || (spec.get().method == LabMethod::Adamerging).then(|| view! {
                <label>" Coefficients "
                    <select data-testid="merge-granularity" prop:disabled=lock
                        prop:value=move || match spec.get().adamerging.granularity { Granularity::TaskWise => "task-wise", Granularity::LayerWise => "layer-wise", Granularity::BlockWise => "block-wise" }
                        on:change=move |ev| { bad.clear(); let g = match event_target_value(&ev).as_str() { "task-wise" => Granularity::TaskWise, "block-wise" => Granularity::BlockWise, _ => Granularity::LayerWise };
                            spec.update(|s| s.adamerging.granularity = g) }>
                        <option value="task-wise">"one per task"</option>
                        <option value="layer-wise">"one per task and layer"</option>
                        <option value="block-wise">"one per task and tensor"</option>
                    </select></label>
                <label>" fitted by "
                    <select data-testid="merge-objective" prop:disabled=lock
                        prop:value=move || if spec.get().adamerging.objective == Objective::Entropy { "entropy" } else { "few-shot" }
                        on:change=move |ev| { bad.clear(); let e = event_target_value(&ev) == "entropy";
                            spec.update(|s| s.adamerging.objective = if e { Objective::Entropy } else { Objective::FewShot }) }>
                        <option value="entropy">"entropy on unlabeled test inputs (AdaMerging)"</option>
                        <option value="few-shot">"a few labels (aTLAS-style)"</option>
                    </select></label>
            })}
            <div class="grid2">
            {FIELDS.iter().map(|&(label, id, get, set)| view! {
                {move || get(&spec.get()).map(|v| view! {
                    <label>{label}" "<input type="number" step="any" data-testid=id prop:disabled=lock
                        prop:value=move || bad.text(id).unwrap_or_else(|| v.to_string())
                        on:change=move |ev| bad.number(spec, id, label, event_target_value(&ev), get, set, false)/></label>
                })}
            }).collect_view()}
            <label>"λ sweep (comma-separated, empty for none) "<input type="text" data-testid="merge-sweep" prop:disabled=lock
                prop:value={move || bad.text("merge-sweep").unwrap_or_else(|| spec.get().sweep.iter().map(f64::to_string).collect::<Vec<_>>().join(", "))}
                on:change={move |ev| { let t = event_target_value(&ev); match parse_list(&t) {
                    Some(v) => { spec.update(|s| s.sweep = v); bad.accept("merge-sweep") }
                    None => bad.reject("merge-sweep", t, "λ sweep: comma-separated numbers".into()),
                }}}/></label>
            <label>"Disentanglement map "
                <select data-testid="merge-disentangle" prop:disabled=lock
                    prop:value={move || spec.get().disentangle.iter().map(|t| t.name()).collect::<Vec<_>>().join("+")}
                    on:change={move |ev| { let v: Vec<Task> = event_target_value(&ev).split('+').filter_map(|t| t.parse().ok()).collect();
                        spec.update(|s| s.disentangle = v) }}>
                    <option value="">"none"</option>
                    {Task::FINE_TUNED.iter().enumerate().flat_map(|(i, a)| Task::FINE_TUNED[i + 1..].iter().map(move |b| {
                        let v = format!("{}+{}", a.name(), b.name());
                        view! { <option value=v.clone()>{format!("{} and {}", a.name(), b.name())}</option> }
                    })).collect_view()}
                </select></label>
            </div>
            <details data-testid="merge-json"><summary>"Full spec (JSON): every parameter, editable"</summary>
                <textarea rows="12" cols="70" data-testid="merge-spec-json" prop:disabled=lock
                    prop:value=move || bad.text("merge-spec-json").unwrap_or_else(json_text)
                    on:change={move |ev| { let t = event_target_value(&ev); match serde_json::from_str::<MergeSpec>(&t) {
                        Ok(s) => { bad.clear(); spec.set(s); input_error.set(None) }
                        Err(e) => bad.reject("merge-spec-json", t, format!("the spec (JSON) is not valid: {e}")),
                    }}}></textarea>
            </details>
            {move || bad.message().or_else(|| input_error.get()).map(|e| view! { <p class="error" role="alert" data-testid="merge-input-error">{e}</p> })}
            <RunControls st=st prefix="merge-" label="Merge and evaluate" on_run=Callback::new(run)/>
            <crate::share::ShareLinks share=st.share prefix="merge-" hide="guided"
                spec_json=Callback::new(move |()| crate::share::export_json(&spec.get_untracked()))/>
        </section>
        {last}
        <FineTune spec=spec/>
        </div>
    }
}

/// The paper's claim and what the run shows, when the run was a guided experiment's.
fn finding(
    ran: &Option<MergeSpec>,
    outcome: &Option<Result<MergeOutcome, String>>,
    standard: Option<&MergeOutcome>,
) -> Option<interplay_lab::findings::Finding> {
    let ran = ran.as_ref()?;
    let id = Guided::of(GUIDED, ran)?;
    interplay_lab::findings::merge(id, ran, outcome.as_ref()?.as_ref().ok()?, standard)
}

fn outcome_view(o: MergeOutcome, spec: MergeSpec) -> impl IntoView {
    let n = o.rows.len();
    let merged_cols: Vec<bool> = o.columns.iter().map(|t| spec.tasks.contains(t)).collect();
    let sweep_plot = (!o.sweep.is_empty()).then(|| {
        let uniform = o.sweep.len() > 1
            && o.sweep
                .windows(2)
                .all(|w| ((w[1].lambda - w[0].lambda) - (o.sweep[1].lambda - o.sweep[0].lambda)).abs() < 1e-9);
        let (x0, dx, xlabel) = if uniform {
            (o.sweep[0].lambda, o.sweep[1].lambda - o.sweep[0].lambda, "λ")
        } else {
            (0.0, 1.0, "sweep point (see table)")
        };
        let mut series: Vec<Series> = vec![Series {
            name: "mean of merged tasks".into(),
            values: o.sweep.iter().map(|r| r.mean).collect(),
        }];
        for (i, t) in o.columns.iter().enumerate() {
            series.push(Series {
                name: t.name().into(),
                values: o.sweep.iter().map(|r| r.accuracy[i]).collect(),
            });
        }
        let lowest = o
            .sweep
            .iter()
            .min_by(|a, b| a.entropy.total_cmp(&b.entropy))
            .map(|r| (r.lambda, r.mean));
        let best = o
            .sweep
            .iter()
            .max_by(|a, b| a.mean.total_cmp(&b.mean))
            .map(|r| (r.lambda, r.mean));
        view! {
            <h3>"λ sweep"</h3>
            <p data-testid="merge-sweep-summary">{format!(
                "Best λ with labels: {} (mean {}). Lowest prediction entropy (no labels): λ = {} (mean {}).",
                best.map(|b| b.0).unwrap_or(0.0), pct(best.map(|b| b.1).unwrap_or(0.0)),
                lowest.map(|b| b.0).unwrap_or(0.0), pct(lowest.map(|b| b.1).unwrap_or(0.0)))}</p>
            <LinePlot series=series x0=x0 dx=dx xlabel=xlabel.to_string() ylabel="accuracy".to_string() testid="merge-sweep-plot".to_string()/>
            <table class="data" data-testid="merge-sweep-table">
                <thead><tr><th scope="col">"λ"</th>{o.columns.iter().map(|t| view! { <th scope="col">{t.name()}</th> }).collect_view()}
                    <th scope="col">"mean"</th><th scope="col">"entropy"</th></tr></thead>
                <tbody>{o.sweep.iter().map(|r| view! {
                    <tr><th scope="row">{r.lambda.to_string()}</th>{r.accuracy.iter().map(|a| view! { <td>{pct(*a)}</td> }).collect_view()}
                        <td>{pct(r.mean)}</td><td>{format!("{:.3}", r.entropy)}</td></tr>
                }).collect_view()}</tbody>
            </table>
        }
    });
    let learned = o.learned.clone().map(|l| {
        let losses = vec![Series {
            name: "loss".into(),
            values: l.losses.clone(),
        }];
        view! {
            <h3>"Learned coefficients"</h3>
            <table class="data" data-testid="merge-coefficients">
                <thead><tr><th scope="col">"task"</th>{l.groups.iter().map(|g| view! { <th scope="col">{g.clone()}</th> }).collect_view()}</tr></thead>
                <tbody>{spec.tasks.iter().zip(&l.coefficients).map(|(t, c)| view! {
                    <tr><th scope="row">{t.name()}</th>{c.iter().map(|v| view! { <td>{format!("{v:.3}")}</td> }).collect_view()}</tr>
                }).collect_view()}</tbody>
            </table>
            <LinePlot series=losses x0=1.0 xlabel="step".to_string() ylabel="objective".to_string() testid="merge-ada-loss".to_string()/>
        }
    });
    let signs = (!o.signs.pairs.is_empty()).then(|| {
        let values: Vec<Vec<f32>> = o
            .signs
            .values
            .iter()
            .map(|r| r.iter().map(|v| *v as f32).collect())
            .collect();
        view! {
            <h3>"Sign conflicts"</h3>
            <p class="muted">"Fraction of each tensor's entries where two task vectors (or any of them, 'all') point in opposite directions: the interference TIES resolves."</p>
            <Heatmap rows=o.signs.tensors.clone() cols=o.signs.pairs.clone() values=values
                what="fraction of entries with opposite signs".to_string() testid="merge-signs".to_string()/>
        }
    });
    let dis = o.disentanglement.clone().map(|d| {
        let labels: Vec<String> = d.alphas.iter().map(|a| format!("{a}")).collect();
        let values: Vec<Vec<f32>> = d
            .error
            .iter()
            .map(|r| r.iter().map(|v| *v as f32).collect())
            .collect();
        view! {
            <h3>{format!("Weight disentanglement: rows α for {}, columns α for {}", d.tasks[0], d.tasks[1])}</h3>
            <p class="muted">"ξ(α₁, α₂): summed over the two tasks, the fraction of images where the merged model disagrees with the single-task model (0 = disentangled, 2 = everything changes)."</p>
            <Heatmap rows=labels.clone() cols=labels values=values what="disentanglement error ξ".to_string() testid="merge-disentangle-map".to_string()/>
        }
    });
    view! {
        <table class="data" data-testid="merge-table">
            <caption>"Accuracy on each task's 450 held-out images (merged tasks marked *)"</caption>
            <thead><tr><th scope="col">"model"</th>
                {o.columns.iter().zip(merged_cols.clone()).map(|(t, m)| view! { <th scope="col">{format!("{}{}", t.name(), if m { " *" } else { "" })}</th> }).collect_view()}
            </tr></thead>
            <tbody>{o.rows.iter().enumerate().map(|(i, r)| view! {
                <tr class=if i + 1 == n { "merged" } else { "" } data-testid=if i + 1 == n { "merge-merged-row" } else { "" }>
                    <th scope="row">{r.name.clone()}</th>
                    {r.accuracy.iter().enumerate().map(|(j, a)| view! { <td data-task=o.columns[j].name() data-value=a.to_string()>{pct(*a)}</td> }).collect_view()}
                </tr>
            }).collect_view()}</tbody>
        </table>
        <dl class="facts">
            <dt>"mean accuracy on the merged tasks"</dt><dd data-testid="merge-mean">{format!("{:.4}", o.mean_accuracy)}</dd>
            <dt>"normalised (merged ÷ fine-tuned, mean)"</dt><dd data-testid="merge-normalised">{format!("{:.4}", o.mean_normalised)}</dd>
            <dt>"control task (digits)"</dt><dd data-testid="merge-control">{format!("{:.4}", o.control)}</dd>
            {o.report.kept_fraction.map(|k| view! { <dt>"TIES: entries kept"</dt><dd>{pct(k)}</dd> })}
            {o.report.sign_conflicts.map(|k| view! { <dt>"TIES: parameters with a sign conflict after trimming"</dt><dd>{pct(k)}</dd> })}
        </dl>
        <p><button on:click={ let o = o.clone(); move |_| download("merge-result.json", "application/json", &serde_json::to_string_pretty(&o).unwrap_or_default()) }>
            "Export result (JSON)"</button></p>
        {learned}
        {sweep_plot}
        {signs}
        {dis}
    }
}
