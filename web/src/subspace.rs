//! Circuits lab: subspace patching and its illusion. Its state is a [`SubspaceSpec`]
//! (`"experiment": "subspace-patching"`), in the URL, exported as JSON and run by the CLI
//! (`interplay run`); the gradients engine learns a direction at each chosen hook of the bundled
//! IOI model or SmolLM2 by distributed alignment search, then patches the held-out pairs along
//! it, along its part that the next weights read and along the part they never read.

use leptos::prelude::*;
use leptos::task::spawn_local;

use interplay_lab::Experiment;
use interplay_lab::subspace::{
    Counterfactual, Direction, Effect as Patched, SubspaceOutcome, SubspaceSpec,
};
use interplay_models::hooks::HookPoint;

use crate::engine::{Output, Task};
use crate::models;
use crate::plots::{LinePlot, Series, download};
use crate::speclab::{
    BadInputs, RunControls, RunState, autosave, initial_spec, run_on_open, state_of,
};

/// Where the panel autosaves its experiment.
const DRAFT_KEY: &str = "interplay.circuits.subspace";

/// SmolLM2-135M's layers (what the form offers before it is loaded).
const SMOLLM2_LAYERS: usize = 30;

/// The layers of the spec's model: the loaded one's, else the bundled model's or SmolLM2's.
fn layers_of(model: &str) -> usize {
    models::info()
        .filter(|i| i.key == model)
        .map(|i| i.n_layers)
        .or_else(|| interplay_lab::bundled::Bundled::from_id(model).map(|b| b.config().n_layers))
        .unwrap_or(SMOLLM2_LAYERS)
}

#[derive(Clone, Debug, PartialEq)]
struct Run {
    result: SubspaceOutcome,
    spec: SubspaceSpec,
    ms: f64,
    backend: String,
}

/// Every hook the experiment can learn a direction at, in the model's order.
fn candidates(layers: usize) -> Vec<HookPoint> {
    (0..layers)
        .flat_map(|l| {
            [
                HookPoint::ResidPre(l),
                HookPoint::ResidMid(l),
                HookPoint::MlpPost(l),
                HookPoint::ResidPost(l),
            ]
        })
        .collect()
}

fn effect_cells(e: Option<Patched>, what: &'static str, testid: String) -> impl IntoView + use<> {
    match e {
        Some(e) => view! {
            <tr data-testid=testid data-ld=e.logit_diff.to_string() data-flipped=e.flipped.to_string()>
                <th scope="row">{what}</th>
                <td>{format!("{:.2}", e.logit_diff)}</td>
                <td>{format!("{:.1}%", 100.0 * e.flipped)}</td>
            </tr>
        }
        .into_any(),
        None => view! {
            <tr data-testid=testid><th scope="row">{what}</th><td colspan="2">"(v has no such part)"</td></tr>
        }
        .into_any(),
    }
}

/// One direction's effects and where it lies.
fn direction_view(i: usize, d: &Direction, unpatched: Patched) -> impl IntoView + use<> {
    // The guide's three warning signs (an MLP hook only: a residual hook has no unread part
    // to speak of, so there the split tells nothing).
    let beats_full = d.along.flipped > d.full.flipped + 0.05;
    let row_weak = d.row.is_some_and(|r| {
        (unpatched.logit_diff - r.logit_diff) < 0.5 * (unpatched.logit_diff - d.along.logit_diff)
    });
    let verdict = if d.null_dim <= 1 {
        "A residual-stream direction: the only unread direction is the mean LayerNorm removes, so the split \
         tells nothing here (a random v lies as much in the row space)."
            .to_string()
    } else {
        let signs: Vec<&str> = [
            (
                beats_full,
                "along v flips more pairs than the whole activation patched",
            ),
            (
                row_weak,
                "v's read part alone does less than half of v's effect",
            ),
            (
                d.from_null > 0.5,
                "most of the patched coefficient comes from the unread part",
            ),
        ]
        .into_iter()
        .filter_map(|(on, what)| on.then_some(what))
        .collect();
        if signs.is_empty() {
            "None of the illusion's warning signs.".to_string()
        } else {
            format!("Warning signs of an illusion: {}.", signs.join("; "))
        }
    };
    view! {
        <div data-testid=format!("subspace-direction-{i}") data-hook=d.hook.to_string()
             data-row-share=d.row_share.to_string() data-null-dim=d.null_dim
             data-from-null=d.from_null.to_string()
             data-loss=serde_json::to_string(&d.loss).unwrap_or_default()>
            <table>
                <caption>{format!("{} (width {}): mean logit difference IO − S (indirect object minus subject) on the held-out pairs", d.hook, d.width)}</caption>
                <thead><tr><th>"patched"</th><th>"logit diff"</th><th>"flipped to the subject"</th></tr></thead>
                <tbody>
                    {effect_cells(Some(unpatched), "nothing", format!("subspace-none-{i}"))}
                    {effect_cells(Some(d.full), "the whole activation", format!("subspace-full-{i}"))}
                    {effect_cells(Some(d.along), "along v (learned)", format!("subspace-along-{i}"))}
                    {effect_cells(d.row, "along v's read part alone", format!("subspace-row-{i}"))}
                    {effect_cells(d.null, "along v's unread part alone", format!("subspace-null-{i}"))}
                </tbody>
            </table>
            <p data-testid=format!("subspace-verdict-{i}")>{format!(
                "|v_row|² = {:.2}: the share of v in the row space of {} (its null space has {} dimension{}). \
                 Of the patched coefficient (x_src − x)·v, {:.0}% comes from the unread part. {verdict}",
                // Rounded first, then + 0.0: a share just below zero reads 0%, not -0%.
                d.row_share, d.readers, d.null_dim, if d.null_dim == 1 { "" } else { "s" }, (100.0 * d.from_null).round() + 0.0
            )}</p>
        </div>
    }
}

/// The panel.
#[component]
pub fn SubspacePanel(
    /// A guided experiment's setup; the form follows it.
    preset: RwSignal<Option<crate::guided::Preset>>,
) -> impl IntoView {
    let init = initial_spec(DRAFT_KEY, SubspaceSpec::guided);
    let from_link = init.from_link;
    let spec = RwSignal::new(init.spec);
    let bad = BadInputs::new();
    let st = RunState::new(None);
    let result = RwSignal::new(None::<Result<Run, String>>);
    let lock = crate::share::locked();
    let embedded = use_context::<crate::share::Embed>().is_some_and(|e| e.embed);
    let hidden = crate::share::hidden("subspace") || (embedded && !from_link);

    let run = move |_| {
        if bad.refuse_run() {
            return;
        }
        let s = spec.get_untracked();
        // Refused here, before the gradients engine replaces the engine other panels use.
        if let Err(e) = s.check(layers_of(&s.model)) {
            result.set(Some(Err(e.to_string())));
            st.runs.update(|n| *n += 1);
            return;
        }
        if models::info().is_none_or(|i| i.key != s.model) {
            result.set(Some(Err(format!(
                "load \"{}\" first (the guided experiment's Set up loads it): the experiment runs \
                 on the model its spec names",
                s.model
            ))));
            st.runs.update(|n| *n += 1);
            return;
        }
        st.start(&s, s.steps * s.hooks.len());
        spawn_local(async move {
            let task = Task::Experiment(Box::new(Experiment::SubspacePatching(s.clone())));
            // Gradients: the gradients engine takes over, and the model is sent to it.
            let r = match models::ensure_in_gradients_engine(Some(st.job)).await {
                Err(e) => Err(e),
                Ok(()) => match st.compute(task, |_: crate::engine::Part| {}).await {
                    Ok((Output::SubspacePatching(result), ran)) => Ok(Run {
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
        if let Some(crate::guided::Preset {
            subspace: Some(s), ..
        }) = preset.get()
        {
            bad.clear();
            spec.set(s);
        }
    });

    let result_view = move || {
        result.get().map(|r| match r {
            Err(e) => view! { <p class="error" role="alert" data-testid="subspace-error">{e}</p> }.into_any(),
            Ok(Run { result: r, spec, ms, backend }) => {
                let series: Vec<Series> = r
                    .directions
                    .iter()
                    .map(|d| Series {
                        name: d.hook.to_string(),
                        values: d.loss.iter().map(|&x| f64::from(x)).collect(),
                    })
                    .collect();
                let directions = r
                    .directions
                    .iter()
                    .enumerate()
                    .map(|(i, d)| direction_view(i, d, r.unpatched))
                    .collect_view();
                let data = serde_json::json!({"spec": spec, "result": r}).to_string();
                let spec_json = crate::share::export_json(&spec);
                view! {
                    <dl class="facts">
                        <dt>"held-out pairs"</dt>
                        <dd data-testid="subspace-pairs" data-ld=r.unpatched.logit_diff.to_string()>
                            {format!("{} (name pairs never trained on); unpatched, IO − S = {:.2} on average",
                                r.test_pairs, r.unpatched.logit_diff)}
                        </dd>
                        <dt>"computed on"</dt><dd>{format!("{backend} in {:.1} s", ms / 1000.0)}</dd>
                    </dl>
                    <h3>"Training loss (cross-entropy towards the subject, patched)"</h3>
                    <LinePlot series=series x0=0.0
                        xlabel="Adam step".to_string() ylabel="loss (nats)".to_string()
                        testid="subspace-curve".to_string()/>
                    <div class="grid2">{directions}</div>
                    <p>
                        <button on:click=move |_| download("subspace-patching.json", "application/json", &data)>"Export JSON"</button>" "
                        <button on:click=move |_| download("spec.json", "application/json", &spec_json)>"Export spec (for `interplay run`)"</button>
                    </p>
                }.into_any()
            }
        })
    };

    let whole = move |id: &'static str,
                      label: &'static str,
                      (lo, hi): (usize, usize),
                      get: fn(&SubspaceSpec) -> String,
                      set: fn(&mut SubspaceSpec, usize)| {
        view! {
            <label>{label}" "
                <input type="number" min=lo max=hi step="1" data-testid=id prop:disabled=lock
                       aria-invalid=move || bad.text(id).is_some().then_some("true")
                       prop:value=move || bad.text(id).unwrap_or_else(|| spec.with(get))
                       on:change=move |ev| bad.whole_in(spec, id, label, event_target_value(&ev), (lo, hi), set)/>
            </label>
        }
    };
    // One line per layer, in the order the stream flows; the model's layers.
    // Only a change of model redraws the boxes (a click keeps its focus).
    let layers = Memo::new(move |_| spec.with(|s| layers_of(&s.model)));
    let hook_boxes = move || {
        let all = candidates(layers.get());
        all.chunks(4)
        .map(|layer| {
            let boxes = layer
                .iter()
                .map(|&h| {
                    let name = h.to_string();
                    view! {
                        <label class="inline">
                            <input type="checkbox" data-testid=format!("subspace-hook-{name}") prop:disabled=lock
                                   prop:checked=move || spec.with(|s| s.hooks.contains(&h))
                                   on:change=move |ev| {
                                       let on = event_target_checked(&ev);
                                       // Kept in the model's order, whatever the clicks' order.
                                       spec.update(|s| {
                                           s.hooks.retain(|x| *x != h);
                                           if on {
                                               s.hooks.push(h);
                                           }
                                           let all = candidates(layers_of(&s.model));
                                           s.hooks.sort_by_key(|x| all.iter().position(|c| c == x));
                                       })
                                   }/>
                            " "{name}
                        </label>" "
                    }
                })
                .collect_view();
            view! { <div>{boxes}</div> }
        })
        .collect_view()
    };
    view! {
        <section class="card has-result" data-testid="subspace" hidden=hidden>
            <h2>"Subspace patching and its illusion (DAS)"</h2>
            <p class="muted">"On the bundled IOI model or SmolLM2: each base prompt (\"When Mary and Tom …, Tom gave a drink to\" → Mary) \
                has a source that differs in which opening name is repeated (\"…, Mary gave a drink to\" → Tom) or in the opening's order. \
                Distributed alignment search learns one direction v at each chosen hook (last position) so that \
                patching only the activation's component along v from the source makes the model name the subject. \
                Then the held-out pairs are patched along v, along its part the next weights read, along its part \
                they never read, and as a whole. Needs the gradients engine (loaded on the first run)."</p>
            <label>"Model "
                <select data-testid="subspace-model" prop:disabled=lock
                        on:change=move |ev| {
                            // Another model: its guided setup (its hooks and learning rate).
                            let s = if event_target_value(&ev) == "smollm2" { SubspaceSpec::smollm2() } else { SubspaceSpec::guided() };
                            bad.clear();
                            spec.set(s);
                        }>
                    <option value="ioi-3l" selected=move || spec.with(|s| s.model == "ioi-3l")>
                        "ioi-3l (bundled, seconds)"</option>
                    <option value="smollm2" selected=move || spec.with(|s| s.model == "smollm2")>
                        "SmolLM2-135M-Instruct (shows the illusion; minutes)"</option>
                </select>
            </label>
            <label>"Source prompts "
                <select data-testid="subspace-counterfactual" prop:disabled=lock
                        on:change=move |ev| {
                            let c = if event_target_value(&ev) == "order" { Counterfactual::Order } else { Counterfactual::Repeat };
                            spec.update(|s| s.counterfactual = c)
                        }>
                    <option value="repeat" selected=move || spec.with(|s| s.counterfactual == Counterfactual::Repeat)>
                        "the other name repeated (“…, Mary gave …” for “…, Tom gave …”)"</option>
                    <option value="order" selected=move || spec.with(|s| s.counterfactual == Counterfactual::Order)>
                        "the opening's names swapped (“When Tom and Mary …”), the paper's position variable"</option>
                </select>
            </label>
            <fieldset>
                <legend>"Hooks (1 to 4)"</legend>
                {hook_boxes}
            </fieldset>
            <div class="grid2">
                {whole("subspace-names", "Names used (6 to 20; pairs grow with its square)", (6, 20), |s| s.names.to_string(), |s, x| s.names = x)}
                {whole("subspace-steps", "Adam steps per hook", (1, 2000), |s| s.steps.to_string(), |s, x| s.steps = x)}
                {whole("subspace-batch", "Pairs per step", (1, 256), |s| s.batch.to_string(), |s, x| s.batch = x)}
                {whole("subspace-seed", "Seed (direction and batches)", (0, u32::MAX as usize), |s| s.seed.to_string(), |s, x| s.seed = x as u64)}
                <label>"Learning rate "
                    <input type="number" min="0" max="1" step="any" data-testid="subspace-lr" prop:disabled=lock
                           aria-invalid=move || bad.text("subspace-lr").is_some().then_some("true")
                           prop:value=move || bad.text("subspace-lr").unwrap_or_else(|| spec.with(|s| s.lr.to_string()))
                           on:change=move |ev| bad.number(spec, "subspace-lr", "learning rate", event_target_value(&ev),
                               |s| Some(s.lr), |s, x| s.lr = x, true)/>
                </label>
            </div>
            {move || bad.message().map(|e| view! { <p class="error" role="alert" data-testid="subspace-input-error">{e}</p> })}
            <RunControls st=st prefix="subspace-" label="Learn and patch" on_run=Callback::new(run)/>
            <crate::share::ShareLinks share=st.share prefix="subspace-" hide="guided,model,prompt,analysis,head-scores,patching,ablation,neurons,reuse,recall,edges,clamp"/>
            <div class="result" data-testid="subspace-status" data-seq=move || st.runs.get()
                 data-state=move || state_of(st.busy.get(), &result.get())>
                <crate::speclab::Announce what="Subspace patching" busy=st.busy outcome=result/>
                {result_view}
            </div>
        </section>
    }
}
