//! Circuits lab: clamping during training. Its state is a [`ClampSpec`] (`"experiment":
//! "clamped-training"`), in the URL, exported as JSON and run by the CLI (`interplay run`); the
//! gradients engine trains the induction model from scratch twice on the same weights and
//! batches, without and with the chosen clamps. The page plots both loss curves, marks each
//! phase change and lists what the heads ended up doing.

use leptos::prelude::*;
use leptos::task::spawn_local;

use interplay_lab::Experiment;
use interplay_lab::clamp::{Clamp, ClampKind, ClampOutcome, ClampSpec, WINDOW, moving_mean};

use crate::engine::{Output, Part as Streamed, Task};
use crate::plots::{LinePlot, Series, download};
use crate::speclab::{
    BadInputs, RunControls, RunState, autosave, initial_spec, run_on_open, state_of,
};

/// Where the panel autosaves its experiment.
const DRAFT_KEY: &str = "interplay.circuits.clamp";

#[derive(Clone, Debug, PartialEq)]
struct Run {
    result: ClampOutcome,
    spec: ClampSpec,
    ms: f64,
    backend: String,
}

/// The `WINDOW`-step mean of `loss` at every step from the first full window on.
fn smoothed(loss: &[f32]) -> Vec<f64> {
    moving_mean(loss).into_iter().map(f64::from).collect()
}

fn kind_of(v: &str) -> ClampKind {
    match v {
        "zero" => ClampKind::Zero,
        "mean" => ClampKind::Mean,
        _ => ClampKind::PreviousToken,
    }
}

fn kind_value(k: ClampKind) -> &'static str {
    match k {
        ClampKind::Zero => "zero",
        ClampKind::Mean => "mean",
        ClampKind::PreviousToken => "previous-token",
    }
}

/// Per-head scores of one run as a table (rows: layers; cells: previous-token / induction).
fn heads_table(run: &interplay_lab::clamp::ClampRun, testid: String) -> impl IntoView + use<> {
    let rows = run
        .previous
        .iter()
        .zip(&run.induction)
        .enumerate()
        .map(|(l, (p, i))| {
            let cells = p
                .iter()
                .zip(i)
                .enumerate()
                .map(|(h, (p, i))| {
                    view! {
                        <td data-layer=l data-head=h data-previous=p.to_string() data-induction=i.to_string()>
                            {format!("{p:.2} / {i:.2}")}
                        </td>
                    }
                })
                .collect_view();
            view! { <tr><th scope="row">{format!("layer {l}")}</th>{cells}</tr> }
        })
        .collect_view();
    let heads = run.previous.first().map_or(0, Vec::len);
    view! {
        <table data-testid=testid>
            <caption>{format!("{}: previous-token / induction score per head (clamps held)", run.label)}</caption>
            <thead><tr><th></th>{(0..heads).map(|h| view! { <th>{format!("head {h}")}</th> }).collect_view()}</tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

/// The panel.
#[component]
pub fn ClampPanel(
    /// A guided experiment's setup; the form follows it.
    preset: RwSignal<Option<crate::guided::Preset>>,
) -> impl IntoView {
    let init = initial_spec(DRAFT_KEY, ClampSpec::previous_token_guided);
    let from_link = init.from_link;
    let spec = RwSignal::new(init.spec);
    let bad = BadInputs::new();
    let st = RunState::new(None);
    let result = RwSignal::new(None::<Result<Run, String>>);
    // Each run's losses so far, drawn while training.
    let live = RwSignal::new(Vec::<Vec<f32>>::new());
    let lock = crate::share::locked();
    let embedded = use_context::<crate::share::Embed>().is_some_and(|e| e.embed);
    let hidden = crate::share::hidden("clamp") || (embedded && !from_link);

    let run = move |_| {
        if bad.refuse_run() {
            return;
        }
        let s = spec.get_untracked();
        // Refused here, before the gradients engine replaces the engine other panels use.
        if let Err(e) = s.check() {
            result.set(Some(Err(e.to_string())));
            st.runs.update(|n| *n += 1);
            return;
        }
        let runs = if s.clamps.is_empty() { 1 } else { 2 };
        st.start(&s, s.steps * runs);
        live.set(Vec::new());
        spawn_local(async move {
            // Training needs gradients: the gradients engine takes over (it needs no model).
            let task = Task::Experiment(Box::new(Experiment::ClampedTraining(s.clone())));
            let heard = move |p: Streamed| {
                if let Streamed::Losses { run, losses } = p {
                    live.update(|v| {
                        v.resize_with(v.len().max(run + 1), Vec::new);
                        v[run].extend(losses);
                    })
                }
            };
            let r = match st.compute(task, heard).await {
                Ok((Output::ClampedTraining(result), ran)) => Ok(Run {
                    result: *result,
                    spec: s,
                    ms: ran.ms,
                    backend: ran.backend.label().into(),
                }),
                Ok(_) => Err("the engine answered with another lab's result".to_string()),
                Err(e) => Err(e.to_string()),
            };
            result.set(Some(r));
            st.finish();
        });
    };
    run_on_open(from_link, st, || true, move || run(()));
    autosave(DRAFT_KEY, move || spec.get());
    Effect::new(move |_| {
        if let Some(crate::guided::Preset { clamp: Some(c), .. }) = preset.get() {
            bad.clear();
            spec.set(c);
        }
    });

    let result_view = move || {
        result.get().map(|r| match r {
            Err(e) => view! { <p class="error" role="alert" data-testid="clamp-error">{e}</p> }.into_any(),
            Ok(Run { result: r, spec, ms, backend }) => {
                let series: Vec<Series> = r
                    .runs
                    .iter()
                    .map(|run| Series { name: run.label.clone(), values: smoothed(&run.loss) })
                    .collect();
                let facts = r.runs.iter().enumerate().map(|(i, run)| {
                    let phase = match run.phase_change {
                        Some(s) => format!("step {s}"),
                        None if run.loss.len() < WINDOW => format!("too few steps to tell (under {WINDOW})"),
                        None => format!("none within {} steps", run.loss.len()),
                    };
                    view! {
                        <dt>{run.label.clone()}</dt>
                        <dd data-testid=format!("clamp-run-{i}") data-phase=run.phase_change.map_or(-1, |s| s as i64)
                            data-test-loss=run.test_loss.to_string() data-test-accuracy=run.test_accuracy.to_string()
                            data-loss=serde_json::to_string(&run.loss).unwrap_or_default()>
                            {format!("phase change: {phase}; held-out loss {:.3} nats, top-1 accuracy {:.1}%",
                                run.test_loss, 100.0 * run.test_accuracy)}
                        </dd>
                    }
                }).collect_view();
                let tables = r
                    .runs
                    .iter()
                    .enumerate()
                    .map(|(i, run)| heads_table(run, format!("clamp-heads-{i}")))
                    .collect_view();
                let data = serde_json::json!({"spec": spec, "result": r}).to_string();
                let spec_json = crate::share::export_json(&spec);
                view! {
                    <dl class="facts">
                        {facts}
                        <dt>"phase change threshold"</dt>
                        <dd data-testid="clamp-threshold">{format!("{:.3} nats (half the unclamped run's first {WINDOW} steps)", r.threshold)}</dd>
                        <dt>"computed on"</dt><dd>{format!("{backend} in {:.1} s", ms / 1000.0)}</dd>
                    </dl>
                    <h3>"Training loss (mean of the last 25 steps), on the repeated words"</h3>
                    <LinePlot series=series x0=(WINDOW - 1) as f64 y_range=(0.0, 5.0)
                        reference=(r.threshold as f64, "phase change threshold".to_string())
                        xlabel="training step".to_string() ylabel="loss (nats)".to_string()
                        testid="clamp-curve".to_string()/>
                    <div class="grid2">{tables}</div>
                    <p>
                        <button on:click=move |_| download("clamped-training.json", "application/json", &data)>"Export JSON"</button>" "
                        <button on:click=move |_| download("spec.json", "application/json", &spec_json)>"Export spec (for `interplay run`)"</button>
                    </p>
                }.into_any()
            }
        })
    };

    let whole = move |id: &'static str,
                      label: &'static str,
                      (lo, hi): (usize, usize),
                      get: fn(&ClampSpec) -> String,
                      set: fn(&mut ClampSpec, usize)| {
        view! {
            <label>{label}" "
                <input type="number" min=lo max=hi step="1" data-testid=id prop:disabled=lock
                       aria-invalid=move || bad.text(id).is_some().then_some("true")
                       prop:value=move || bad.text(id).unwrap_or_else(|| spec.with(get))
                       on:change=move |ev| bad.whole_in(spec, id, label, event_target_value(&ev), (lo, hi), set)/>
            </label>
        }
    };
    // The curves as they form; after a cancel or a failure, as far as they got (a finished
    // run's plot replaces them).
    let live_view = move || {
        let v = live.get();
        let unfinished = st.busy.get() || matches!(result.get(), Some(Err(_)));
        (unfinished && v.iter().any(|l| l.len() >= WINDOW)).then(|| {
            let series: Vec<Series> = v
                .iter()
                .enumerate()
                .map(|(i, l)| Series {
                    name: if i == 0 {
                        "unclamped".into()
                    } else {
                        "clamped".into()
                    },
                    values: smoothed(l),
                })
                .collect();
            view! {
                <h3>"Training loss so far (mean of the last 25 steps)"</h3>
                <LinePlot series=series x0=(WINDOW - 1) as f64 y_range=(0.0, 5.0)
                    xlabel="training step".to_string() ylabel="loss (nats)".to_string()
                    testid="clamp-live".to_string()/>
            }
        })
    };
    // Rows are rebuilt only when a clamp is added or removed (an edit keeps the focused select);
    // each select follows the spec through `prop:value`.
    let n_clamps = Memo::new(move |_| spec.with(|s| s.clamps.len()));
    let clamp_rows = move || {
        (0..n_clamps.get())
            .map(|i| {
                let c = spec.with_untracked(|s| s.clamps.get(i).cloned()).unwrap_or(Clamp {
                    layer: 0,
                    head: None,
                    clamp: ClampKind::Zero,
                });
                let set = move |f: Box<dyn Fn(&mut Clamp)>| {
                    spec.update(|s| {
                        if let Some(c) = s.clamps.get_mut(i) {
                            f(c)
                        }
                    })
                };
                let value = move |f: fn(&Clamp) -> String| {
                    move || spec.with(|s| s.clamps.get(i).map(f).unwrap_or_default())
                };
                view! {
                    <li data-testid=format!("clamp-row-{i}")>
                        <select aria-label="layer" data-testid=format!("clamp-layer-{i}") prop:disabled=lock
                                prop:value=value(|c| c.layer.to_string())
                                on:change=move |ev| { let v: usize = event_target_value(&ev).parse().unwrap_or(0); set(Box::new(move |c| c.layer = v)) }>
                            {(0..2).map(|l| view! { <option value=l selected=c.layer == l>{format!("layer {l}")}</option> }).collect_view()}
                        </select>" "
                        <select aria-label="head" data-testid=format!("clamp-head-{i}") prop:disabled=lock
                                prop:value=value(|c| c.head.map_or("all".to_string(), |h| h.to_string()))
                                on:change=move |ev| { let v = event_target_value(&ev).parse().ok(); set(Box::new(move |c| c.head = v)) }>
                            <option value="all" selected=c.head.is_none()>"every head"</option>
                            {(0..4).map(|h| view! { <option value=h selected=c.head == Some(h)>{format!("head {h}")}</option> }).collect_view()}
                        </select>" "
                        <select aria-label="clamp" data-testid=format!("clamp-kind-{i}") prop:disabled=lock
                                prop:value=value(|c| kind_value(c.clamp).to_string())
                                on:change=move |ev| { let v = kind_of(&event_target_value(&ev)); set(Box::new(move |c| c.clamp = v)) }>
                            {[(ClampKind::PreviousToken, "attention fixed to the previous token"),
                              (ClampKind::Zero, "output zeroed"),
                              (ClampKind::Mean, "output held at its mean (over the batch and positions)")]
                                .into_iter()
                                .map(|(k, t)| view! { <option value=kind_value(k) selected=c.clamp == k>{t}</option> })
                                .collect_view()}
                        </select>" "
                        <button prop:disabled=lock aria-label=format!("remove clamp {}", i + 1)
                                on:click=move |_| spec.update(|s| { if i < s.clamps.len() { s.clamps.remove(i); } })>"Remove"</button>
                    </li>
                }
            })
            .collect_view()
    };
    view! {
        <section class="card has-result" data-testid="clamp" hidden=hidden>
            <h2>"Clamping during training (induction heads)"</h2>
            <p class="muted">"Train the 2-layer attention-only induction model from scratch, twice, on the same initial \
                weights and the same batches: once as it is, once with the activations below held fixed for the whole of \
                training. Sequences of random words repeat a stretch; the loss counts only the repeat, which only \
                induction can predict. Watch when the loss suddenly falls (the phase change) in each run. Needs the \
                gradients engine (loaded on the first run)."</p>
            <div class="grid2">
                {whole("clamp-steps", "Training steps", (1, 5000), |s| s.steps.to_string(), |s, x| s.steps = x)}
                {whole("clamp-batch", "Sequences per step", (1, 512), |s| s.batch.to_string(), |s, x| s.batch = x)}
                {whole("clamp-context", "Words per sequence", (8, 48), |s| s.context.to_string(), |s, x| s.context = x)}
                {whole("clamp-warmup", "Warm-up steps", (0, 5000), |s| s.warmup.to_string(), |s, x| s.warmup = x)}
                {whole("clamp-seed", "Seed (weights and batches)", (0, u32::MAX as usize), |s| s.seed.to_string(), |s, x| s.seed = x as u64)}
                <label>"Peak learning rate "
                    <input type="number" min="0" max="0.1" step="any" data-testid="clamp-lr" prop:disabled=lock
                           aria-invalid=move || bad.text("clamp-lr").is_some().then_some("true")
                           prop:value=move || bad.text("clamp-lr").unwrap_or_else(|| spec.with(|s| s.lr.to_string()))
                           on:change=move |ev| bad.number(spec, "clamp-lr", "peak learning rate", event_target_value(&ev),
                               |s| Some(s.lr), |s, x| s.lr = x, true)/>
                </label>
            </div>
            <h3>"Clamped in the second run"</h3>
            <ul class="plain" data-testid="clamp-list">{clamp_rows}</ul>
            <p>
                <button data-testid="clamp-add" prop:disabled=move || lock || spec.with(|s| s.clamps.len() >= 8)
                        on:click=move |_| spec.update(|s| {
                            // The first head no clamp names yet.
                            let (layer, head) = (0..2)
                                .flat_map(|l| (0..4).map(move |h| (l, h)))
                                .find(|&(l, h)| !s.clamps.iter().any(|c| c.layer == l && c.head == Some(h)))
                                .unwrap_or((0, 0));
                            s.clamps.push(Clamp { layer, head: Some(head), clamp: ClampKind::Zero })
                        })>"Add a clamp"</button>
                {move || spec.with(|s| s.clamps.is_empty()).then(|| view! { <span class="muted">" No clamps: only the unclamped run is trained."</span> })}
            </p>
            {move || bad.message().map(|e| view! { <p class="error" role="alert" data-testid="clamp-input-error">{e}</p> })}
            <RunControls st=st prefix="clamp-" label="Train both runs" on_run=Callback::new(run)/>
            <crate::share::ShareLinks share=st.share prefix="clamp-" hide="guided,model,prompt,analysis,head-scores,patching,ablation,neurons,reuse,recall,edges"/>
            <div class="result" data-testid="clamp-status" data-seq=move || st.runs.get()
                 data-state=move || state_of(st.busy.get(), &result.get())>
                <crate::speclab::Announce what="Clamped training" busy=st.busy outcome=result/>
                {live_view}
                {result_view}
            </div>
        </section>
    }
}
