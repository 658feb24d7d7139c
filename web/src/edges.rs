//! Circuits lab: edge attribution patching (EAP, EAP-IG). Its state is an [`EdgeSpec`]
//! (`"experiment": "edge-attribution"`), in the URL, exported as JSON and run by the CLI
//! (`interplay run`); the gradients engine scores every edge between the model's heads and MLPs,
//! patches the top edges one at a time for their true effect, and evaluates the circuits of the
//! top `n` edges. The page draws the top edges as a circuit, the scores against the true effects,
//! and faithfulness against circuit size.

use leptos::prelude::*;
use leptos::task::spawn_local;

use interplay_lab::Experiment;
use interplay_lab::edges::{EdgeOutcome, EdgeRow, EdgeSpec};
use interplay_models::eap::EdgeMethod;

use crate::engine::{Output, Part as Streamed, Task};
use crate::models;
use crate::patching::{prompt_of, prompt_text, token_of, token_text};
use crate::plots::{LinePlot, Point, ScatterPlot, Series, download};
use crate::speclab::{
    BadInputs, RunControls, RunState, autosave, initial_spec, run_on_open, state_of,
};

/// Where the panel autosaves its experiment.
const DRAFT_KEY: &str = "interplay.circuits.edges";

#[derive(Clone, Debug, PartialEq)]
struct Run {
    result: EdgeOutcome,
    spec: EdgeSpec,
    ms: f64,
    backend: String,
}

/// Where a node sits in the circuit drawing: its row (input 0, then per layer attention and
/// MLP, logits last) and its column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Column {
    /// Query head `i`.
    Head(usize),
    /// Key/value head `j` (grouped), drawn below the middle of the query heads that read it.
    Kv(usize),
    /// The MLPs' column, right of the heads.
    Mlp,
    /// The input and the logits, centred.
    Centre,
}

fn place(name: &str) -> (usize, Column) {
    let head = |s: &str, tag: &str| -> Option<(usize, usize)> {
        let (l, rest) = s.strip_prefix('a')?.split_once(tag)?;
        let h: String = rest.chars().take_while(char::is_ascii_digit).collect();
        Some((l.parse().ok()?, h.parse().ok()?))
    };
    if name == "input" {
        (0, Column::Centre)
    } else if name == "logits" {
        (usize::MAX, Column::Centre)
    } else if let Some((l, h)) = head(name, ".h") {
        (1 + 2 * l, Column::Head(h))
    } else if let Some((l, j)) = head(name, ".kv") {
        (1 + 2 * l, Column::Kv(j))
    } else {
        let l: usize = name
            .strip_prefix('m')
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        (2 + 2 * l, Column::Mlp)
    }
}

/// The top edges as a circuit: the nodes they touch, by layer from the input (bottom) to the
/// logits (top), heads in columns and the MLPs in a column of their own, and each edge as a
/// curve coloured by its score's sign (blue: corrupting it raises the logit difference,
/// vermilion: lowers it) and as thick as its |score|. An edge into a head's queries, keys or
/// values is labelled q, k or v at its end; grouped keys/values are their own nodes (`kv`).
#[component]
fn CircuitView(
    rows: Vec<EdgeRow>,
    /// Query heads per layer.
    heads: usize,
    /// Key/value heads per layer.
    kv_heads: usize,
    testid: String,
) -> impl IntoView {
    let mut names: Vec<String> = rows
        .iter()
        .flat_map(|r| [r.from.clone(), node_of(&r.to)])
        .collect();
    names.sort_by_key(|n| place(n));
    names.dedup();
    let mut levels: Vec<usize> = names.iter().map(|n| place(n).0).collect();
    levels.dedup();
    let (heads, group) = (heads.max(1), (heads / kv_heads.max(1)).max(1));
    let (w, row_h, top) = (640.0f64, 44.0f64, 18.0f64);
    let (x0, span) = (40.0, w - 180.0);
    let h = top * 2.0 + 14.0 + row_h * (levels.len().max(1) - 1) as f64;
    let at = |name: &str| -> (f64, f64) {
        let (level, col) = place(name);
        let row = levels.iter().position(|&l| l == level).unwrap_or(0);
        let y = h - top - row_h * row as f64;
        let head_x = |i: f64| x0 + span * (i + 0.5) / heads as f64;
        match col {
            Column::Head(i) => (head_x(i as f64), y),
            Column::Kv(j) => (
                head_x((j * group) as f64 + (group as f64 - 1.0) / 2.0),
                y + 14.0,
            ),
            Column::Mlp => (w - 70.0, y),
            Column::Centre => (x0 + span / 2.0, y),
        }
    };
    let biggest = rows
        .iter()
        .map(|r| r.score.abs())
        .fold(0.0f32, f32::max)
        .max(1e-12);
    let edges = rows
        .iter()
        .enumerate()
        .map(|(k, r)| {
            let (x1, y1) = at(&r.from);
            let (x2, y2) = at(&node_of(&r.to));
            // Fixed colours by sign (a diverging scale would fade small edges to white).
            let colour = if r.score >= 0.0 { "#0072B2" } else { "#D55E00" };
            let width = 1.0 + 4.0 * (r.score.abs() / biggest);
            let port = r.to.rsplit_once('<').map(|(_, p)| p.trim_end_matches('>').to_string());
            // Curves bow sideways in proportion to the rows they cross (alternating sides), so a
            // long edge does not run through the nodes between its ends.
            let side = if k % 2 == 0 { 1.0 } else { -1.0 };
            let (cx, cy) = ((x1 + x2) / 2.0 + side * 0.25 * (y1 - y2).abs(), (y1 + y2) / 2.0);
            let d = format!("M{x1:.1},{y1:.1} Q{cx:.1},{cy:.1} {x2:.1},{y2:.1}");
            view! {
                <path d=d stroke=colour stroke-width=format!("{width:.2}") fill="none" opacity="0.85"
                      data-from=r.from.clone() data-to=r.to.clone()>
                    <title>{format!("{} → {}: score {:+.3}, exact {:+.3}", r.from, r.to, r.score, r.exact)}</title>
                </path>
                {port.map(|p| view! { <text x=x2 - 9.0 y=y2 + 13.0 font-size="9" fill="#555">{p}</text> })}
            }
        })
        .collect_view();
    let nodes = names
        .iter()
        .map(|n| {
            let (x, y) = at(n);
            view! {
                <circle cx=x cy=y r="4" fill="#333"/>
                <text x=x + 6.0 y=y - 5.0 font-size="10">{n.clone()}</text>
            }
        })
        .collect_view();
    let svg_id = testid.clone();
    view! {
        <figure data-testid=testid>
            <svg xmlns="http://www.w3.org/2000/svg" viewBox=format!("0 0 {w} {h}") width="100%" role="img"
                 aria-label=format!("circuit of the top {} edges", rows.len())>
                {edges}
                {nodes}
            </svg>
            <figcaption class="muted">"Input at the bottom, logits at the top, heads in columns, MLPs on the right; \
                blue: corrupting the edge raises the logit difference, vermilion: lowers it; thickness: |score|."</figcaption>
            <p><button on:click=move |_| crate::plots::export_svg(&svg_id)>"Export SVG"</button></p>
        </figure>
    }
}

/// The node a downstream name belongs to (`a3.h1<q>` → `a3.h1`).
fn node_of(to: &str) -> String {
    to.split('<').next().unwrap_or(to).to_string()
}

/// The panel.
#[component]
pub fn EdgesPanel(
    /// A guided experiment's setup; the form follows it.
    preset: RwSignal<Option<crate::guided::Preset>>,
) -> impl IntoView {
    let init = initial_spec(DRAFT_KEY, EdgeSpec::ioi_smollm2);
    let from_link = init.from_link;
    let spec = RwSignal::new(init.spec);
    let bad = BadInputs::new();
    // A damaged link's message is the patching panel's (one alert, not two).
    let st = RunState::new(None);
    let result = RwSignal::new(None::<Result<Run, String>>);
    let lock = crate::share::locked();
    let embedded = use_context::<crate::share::Embed>().is_some_and(|e| e.embed);
    let hidden = crate::share::hidden("edges") || (embedded && !from_link);

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
        st.start(&s, 1);
        spawn_local(async move {
            let task = Task::Experiment(Box::new(Experiment::EdgeAttribution(s.clone())));
            // Gradients: the gradients engine takes over, and the model is sent to it.
            let r = match models::ensure_in_gradients_engine(Some(st.job)).await {
                Err(e) => Err(e),
                Ok(()) => match st.compute(task, |_: Streamed| {}).await {
                    Ok((Output::EdgeAttribution(result), ran)) => Ok(Run {
                        result: *result,
                        spec: s,
                        ms: ran.ms,
                        backend: ran.backend.label().into(),
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
        if let Some(crate::guided::Preset { edges: Some(e), .. }) = preset.get() {
            bad.clear();
            spec.set(e);
        }
    });

    let result_view = move || {
        result.get().map(|r| match r {
            Err(e) => view! { <p class="error" role="alert" data-testid="edges-error">{e}</p> }.into_any(),
            Ok(Run { result: r, spec, ms, backend }) => {
                let method = match spec.method {
                    EdgeMethod::Eap => "EAP".to_string(),
                    EdgeMethod::EapIg => format!("EAP-IG ({} steps)", spec.steps),
                };
                let points: Vec<Point> = r.top.iter().map(|e| Point {
                    name: format!("{} → {}", e.from, e.to),
                    group: 0,
                    x: e.score as f64,
                    y: e.exact as f64,
                }).collect();
                let xs: Vec<f64> = r.curve.iter().map(|p| (p.edges.max(1) as f64).log10()).collect();
                let curve = vec![Series {
                    name: "faithfulness".into(),
                    values: r.curve.iter().map(|p| p.faithfulness.unwrap_or(f64::NAN)).collect(),
                }];
                let table = r.top.iter().map(|e| view! {
                    <tr data-from=e.from.clone() data-to=e.to.clone() data-score=e.score.to_string() data-exact=e.exact.to_string()>
                        <td>{e.from.clone()}</td><td>{e.to.clone()}</td>
                        <td>{format!("{:+.4}", e.score)}</td><td>{format!("{:+.4}", e.exact)}</td>
                    </tr>
                }).collect_view();
                let curve_rows = r.curve.iter().map(|p| view! {
                    <tr data-edges=p.edges data-connected=p.connected data-metric=p.metric.to_string()>
                        <td>{p.edges}</td><td>{p.connected}</td><td>{format!("{:.4}", p.metric)}</td>
                        <td>{p.faithfulness.map_or("—".to_string(), |f| format!("{f:.3}"))}</td>
                    </tr>
                }).collect_view();
                let data = serde_json::json!({"spec": spec, "result": r}).to_string();
                let spec_json = crate::share::export_json(&spec);
                let n_top = r.top.len();
                // Heads per layer, from layer 0's readers.
                let n_heads = r.downstream.iter().filter(|n| n.starts_with("a0.") && n.ends_with("<q>")).count();
                let n_kv = r.downstream.iter().filter(|n| n.starts_with("a0.") && n.ends_with("<k>")).count();
                view! {
                    <dl class="facts">
                        <dt>"clean logit difference"</dt><dd data-testid="edges-clean">{format!("{:.4}", r.clean_metric)}</dd>
                        <dt>"corrupted logit difference"</dt><dd data-testid="edges-corrupt">{format!("{:.4}", r.corrupt_metric)}</dd>
                        <dt>"edges in the model"</dt><dd data-testid="edges-count">{r.edges}</dd>
                        <dt>{format!("correlation, {method} score vs exact effect, over the top {n_top} edges")}</dt>
                        <dd data-testid="edges-correlation">{r.correlation.map_or("—".to_string(), |c| format!("{c:.3}"))}</dd>
                        <dt>"computed on"</dt><dd>{format!("{backend} in {ms:.0} ms")}</dd>
                    </dl>
                    <div class="grid2">
                        <div>
                            <h3>{format!("The top {n_top} edges")}</h3>
                            <CircuitView rows=r.top.clone() heads=n_heads kv_heads=n_kv testid="edges-circuit".to_string()/>
                        </div>
                        <div>
                            <h3>"Score against the exact effect of corrupting the edge alone"</h3>
                            <ScatterPlot points=points groups=vec!["edge".to_string()]
                                xlabel="score (estimated change)".to_string() ylabel="exact change".to_string()
                                testid="edges-scatter".to_string()/>
                        </div>
                    </div>
                    <h3>"Faithfulness of the circuit of the top n edges"</h3>
                    <LinePlot series=curve xs=xs y_range=(0.0, 1.0) reference=(1.0, "the whole model".to_string())
                        xlabel="log₁₀ of the number of edges kept".to_string()
                        ylabel="faithfulness".to_string() testid="edges-curve".to_string()/>
                    <table data-testid="edges-curve-table">
                        <caption>"Every other edge carries the corrupted run's activation; faithfulness = (metric − corrupted) / (clean − corrupted)"</caption>
                        <thead><tr><th>"edges kept"</th><th>"on a path from input to logits"</th><th>"logit difference"</th><th>"faithfulness"</th></tr></thead>
                        <tbody>{curve_rows}</tbody>
                    </table>
                    <table data-testid="edges-top">
                        <caption>"Top edges by |score|: the estimated and the exact change of the logit difference when the edge alone is corrupted"</caption>
                        <thead><tr><th>"from"</th><th>"to"</th><th>"score"</th><th>"exact"</th></tr></thead>
                        <tbody>{table}</tbody>
                    </table>
                    <p>
                        <button on:click=move |_| download("edge-attribution.json", "application/json", &data)>"Export JSON"</button>" "
                        <button on:click=move |_| download("spec.json", "application/json", &spec_json)>"Export spec (for `interplay run`)"</button>
                    </p>
                }.into_any()
            }
        })
    };

    let text_input = move |testid: &'static str,
                           get: fn(&EdgeSpec) -> String,
                           set: fn(&mut EdgeSpec, &str)| {
        view! {
            <input type="text" data-testid=testid prop:disabled=lock
                   prop:value=move || spec.with(get)
                   on:input=move |ev| { let v = event_target_value(&ev); spec.update(|s| set(s, &v)) }/>
        }
    };
    view! {
        <section class="card has-result" data-testid="edges" hidden=hidden>
            <h2>"Edge attribution (circuit discovery)"</h2>
            <p class="muted">"Which connections between heads and MLPs carry the behaviour? Every edge — one component's \
                output read by a later head's queries, keys or values, an MLP, or the logits — gets a score from \
                gradients (EAP; EAP-IG averages them along the way from the corrupted to the clean input). The top \
                edges are then corrupted one at a time for their true effect, and the circuits of the top n edges \
                are run with every other edge corrupted. Prompts may be text or comma-separated token ids of equal \
                length. Needs the gradients engine (loaded on the first run)."</p>
            <div class="grid2">
                <label>"Clean prompt"{text_input("edges-clean-prompt", |s| prompt_text(&s.clean), |s, v| s.clean = prompt_of(v))}</label>
                <label>"Corrupted prompt"{text_input("edges-corrupt-prompt", |s| prompt_text(&s.corrupt), |s, v| s.corrupt = prompt_of(v))}</label>
                <label>"Answer token"{text_input("edges-answer", |s| token_text(&s.answer), |s, v| s.answer = token_of(v))}</label>
                <label>"Wrong token"{text_input("edges-wrong", |s| token_text(&s.wrong), |s, v| s.wrong = token_of(v))}</label>
                <label>"Method "
                    <select data-testid="edges-method" prop:disabled=lock
                            on:change=move |ev| { let v = event_target_value(&ev); spec.update(|s| s.method = if v == "eap" { EdgeMethod::Eap } else { EdgeMethod::EapIg }) }>
                        <option value="eap-ig" selected=move || spec.with(|s| s.method == EdgeMethod::EapIg)>"EAP-IG (integrated gradients)"</option>
                        <option value="eap" selected=move || spec.with(|s| s.method == EdgeMethod::Eap)>"EAP (one gradient)"</option>
                    </select>
                </label>
                <label title="Inputs corrupted + k/steps · (clean − corrupted), k = 0 … steps − 1: one step is the corrupted input alone">"EAP-IG steps "
                    <input type="number" min="1" max="100" step="1" data-testid="edges-steps"
                           prop:disabled=move || lock || spec.with(|s| s.method == EdgeMethod::Eap)
                           aria-invalid=move || bad.text("edges-steps").is_some().then_some("true")
                           prop:value=move || bad.text("edges-steps").unwrap_or_else(|| spec.with(|s| s.steps.to_string()))
                           on:change=move |ev| bad.whole_in(spec, "edges-steps", "EAP-IG steps", event_target_value(&ev),
                               (1, 100), |s, x| s.steps = x)/>
                </label>
                <label>"Top edges (drawn and patched exactly) "
                    <input type="number" min="1" max="200" step="1" data-testid="edges-top-n" prop:disabled=lock
                           aria-invalid=move || bad.text("edges-top-n").is_some().then_some("true")
                           prop:value=move || bad.text("edges-top-n").unwrap_or_else(|| spec.with(|s| s.top.to_string()))
                           on:change=move |ev| bad.whole_in(spec, "edges-top-n", "top edges", event_target_value(&ev),
                               (1, 200), |s, x| s.top = x)/>
                </label>
            </div>
            {move || bad.message().map(|e| view! { <p class="error" role="alert" data-testid="edges-input-error">{e}</p> })}
            <RunControls st=st prefix="edges-" label="Score edges and test circuits" on_run=Callback::new(run)/>
            <crate::share::ShareLinks share=st.share prefix="edges-" hide="guided,model,prompt,analysis,head-scores,patching,ablation,neurons,reuse,recall"/>
            <div class="result" data-testid="edges-status" data-seq=move || st.runs.get()
                 data-state=move || state_of(st.busy.get(), &result.get())>
                <crate::speclab::Announce what="Edge attribution" busy=st.busy outcome=result/>
                {result_view}
            </div>
        </section>
    }
}
