//! Circuits lab: circuit component reuse (Merullo et al. 2023). Its state is a [`ReuseSpec`]
//! (`"experiment": "circuit-reuse"`), in the URL, exported as JSON and run by the CLI
//! (`interplay run`); the engine patches every head on IOI and on Colored Objects, and the page
//! shows both maps, how much their top heads overlap, and Colored Objects accuracy when a few
//! heads are made to attend to the wrong colours.

use leptos::prelude::*;
use leptos::task::spawn_local;

use interplay_lab::Experiment;
use interplay_lab::reuse::{HeadEffect, ReuseResult, ReuseSpec, Score, Tasks};

use crate::engine::{Output, Part, Task};
use crate::models;
use crate::plots::{Heatmap, LinePlot, Series, download};
use crate::speclab::{
    BadInputs, RunControls, RunState, autosave, initial_spec, run_on_open, state_of,
};

/// Where the panel autosaves its experiment.
const DRAFT_KEY: &str = "interplay.circuits.reuse";

/// Heads written `layer.head`, separated by commas or spaces (`19.2, 20.0`).
fn parse_heads(s: &str) -> Result<Vec<[usize; 2]>, String> {
    let heads: Option<Vec<[usize; 2]>> = s
        .split([',', ' '])
        .filter(|x| !x.trim().is_empty())
        .map(|x| {
            let (l, h) = x.trim().split_once('.')?;
            Some([l.parse().ok()?, h.parse().ok()?])
        })
        .collect();
    match heads {
        Some(mut hs) if !hs.is_empty() => {
            hs.sort_unstable();
            hs.dedup();
            Ok(hs)
        }
        Some(_) => Err("give at least one head, e.g. 23.3".into()),
        None => Err(format!(
            "“{s}”: write heads as layer.head separated by commas, e.g. 19.2, 23.3"
        )),
    }
}

fn heads_text(hs: &[[usize; 2]]) -> String {
    hs.iter()
        .map(|[l, h]| format!("{l}.{h}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Clone, Debug, PartialEq)]
struct Run {
    result: ReuseResult,
    spec: ReuseSpec,
}

fn grid_f32(g: &[Vec<f64>]) -> Vec<Vec<f32>> {
    g.iter()
        .map(|r| r.iter().map(|&x| x as f32).collect())
        .collect()
}

fn head_list(hs: &[HeadEffect], k: usize, shared: &[(usize, usize)]) -> String {
    hs.iter()
        .take(k)
        .map(|e| {
            let mark = if shared.contains(&(e.layer, e.head)) {
                "*"
            } else {
                ""
            };
            format!("{}.{}{mark} ({:.2})", e.layer, e.head, e.value)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn score_row(name: &str, heads: String, s: &Score) -> impl IntoView + use<> {
    view! {
        <tr data-condition=name.to_string() data-correct=s.correct data-total=s.total>
            <th scope="row">{name.to_string()}</th>
            <td>{heads}</td>
            <td>{format!("{}/{} ({:.0} %)", s.correct, s.total, 100.0 * s.correct as f64 / s.total.max(1) as f64)}</td>
            <td>{format!("{:+.2}", s.margin)}</td>
        </tr>
    }
}

/// The panel.
#[component]
pub fn ReusePanel(
    /// A guided experiment's setup; the form follows it.
    preset: RwSignal<Option<crate::guided::Preset>>,
) -> impl IntoView {
    let init = initial_spec(DRAFT_KEY, ReuseSpec::smollm2);
    let from_link = init.from_link;
    let spec = RwSignal::new(init.spec);
    let bad = BadInputs::new();
    // A damaged link's message is the patching panel's (one alert, not two).
    let st = RunState::new(None);
    let result = RwSignal::new(None::<Result<Run, String>>);
    let lock = crate::share::locked();
    // An embed shows the panel whose experiment its link holds.
    let embedded = use_context::<crate::share::Embed>().is_some_and(|e| e.embed);
    let hidden = crate::share::hidden("reuse") || (embedded && !from_link);
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
        st.start(&s, s.steps());
        spawn_local(async move {
            let task = Task::Experiment(Box::new(Experiment::CircuitReuse(s.clone())));
            let r = match models::ensure_in_engine(Some(st.job)).await {
                Err(e) => Err(e),
                Ok(()) => match st.compute(task, |_: Part| {}).await {
                    Ok((Output::CircuitReuse(result), _)) => Ok(Run {
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
        if let Some(crate::guided::Preset { reuse: Some(r), .. }) = preset.get() {
            bad.clear();
            spec.set(r);
        }
    });

    let set_heads = move |ev: leptos::ev::Event| {
        let t = event_target_value(&ev);
        match parse_heads(&t) {
            Ok(hs) => {
                spec.update(|s| s.heads = hs);
                bad.accept("reuse-heads");
            }
            Err(e) => bad.reject("reuse-heads", t, e),
        }
    };

    let result_view = move || {
        result.get().map(|r| match r {
            Err(e) => view! { <p class="error" role="alert" data-testid="reuse-error">{e}</p> }.into_any(),
            Ok(Run { result: r, spec }) => {
                let k = spec.top_k;
                let nl = r.ioi.grid.len();
                let nh = r.ioi.grid.first().map_or(0, Vec::len);
                let rows: Vec<String> = (0..nl).map(|l| format!("L{l}")).collect();
                let cols: Vec<String> = (0..nh).map(|h| format!("H{h}")).collect();
                let top = |hs: &[HeadEffect]| -> Vec<(usize, usize)> {
                    hs.iter().take(k).map(|e| (e.layer, e.head)).collect()
                };
                let (ti, tc) = (top(&r.ioi.ranked), top(&r.colored.ranked));
                let shared: Vec<(usize, usize)> = ti.iter().copied().filter(|x| tc.contains(x)).collect();
                let xs: Vec<f64> = (1..=r.overlap.len()).map(|k| k as f64).collect();
                let lines = vec![
                    Series { name: "IOI ∩ Colored Objects".into(), values: r.overlap.clone() },
                    Series { name: "two random sets (chance)".into(), values: r.chance.clone() },
                ];
                let overlap_k = r.overlap.get(k.saturating_sub(1)).copied().unwrap_or(0.0);
                let data = serde_json::json!({"spec": spec, "result": r}).to_string();
                let spec_json = crate::share::export_json(&spec);
                let finding = interplay_lab::findings::reuse(&spec, &r)
                    .map(|f| view! { <crate::speclab::FindingView finding=f testid="reuse-finding"/> });
                let s2 = r.s2_ranked.iter().take(6).map(|e| format!("{}.{} ({:.2})", e.layer, e.head, e.value)).collect::<Vec<_>>().join(", ");
                let control = r.control.clone().map(|c| score_row("random heads (control)", heads_text(&r.control_heads), &c));
                let patched = (spec.pairs > 0).then(|| view! {
                    <dl class="facts">
                        <dt>"IOI logit difference"</dt>
                        <dd>{format!("clean {:+.2}, corrupted {:+.2} (mean of {} pairs)", r.ioi.clean, r.ioi.corrupt, spec.pairs)}</dd>
                        <dt>"Colored Objects logit difference"</dt>
                        <dd>{format!("clean {:+.2}, corrupted {:+.2} (mean of {} pairs)", r.colored.clean, r.colored.corrupt, spec.pairs)}</dd>
                    </dl>
                    <div class="grid2">
                        <div>
                            <h3>"IOI: each head patched"</h3>
                            <Heatmap rows=rows.clone() cols=cols.clone() values=grid_f32(&r.ioi.grid)
                                     what="normalised recovery (IOI)".to_string() testid="reuse-ioi-grid".to_string()/>
                        </div>
                        <div>
                            <h3>"Colored Objects: each head patched"</h3>
                            <Heatmap rows=rows cols=cols values=grid_f32(&r.colored.grid)
                                     what="normalised recovery (Colored Objects)".to_string() testid="reuse-colored-grid".to_string()/>
                        </div>
                    </div>
                    <LinePlot series=lines xs=xs y_range=(0.0, 1.0)
                              xlabel="k, the top k heads of each task".to_string()
                              ylabel="share of top k in common".to_string() testid="reuse-overlap".to_string()/>
                    <p data-testid="reuse-overlap-k" data-overlap=overlap_k>{format!(
                        "Top {k} heads in common: {:.0} % (marked *). IOI: {}. Colored Objects: {}.",
                        100.0 * overlap_k,
                        head_list(&r.ioi.ranked, k, &shared),
                        head_list(&r.colored.ranked, k, &shared)
                    )}</p>
                });
                view! {
                    {patched}
                    {(spec.pairs == 0).then(|| view! { <p class="muted" data-testid="reuse-no-patching">"No pairs patched (pairs = 0): only the IOI attention and the intervention ran."</p> })}
                    <p class="muted" data-testid="reuse-s2">{format!(
                        "IOI heads that attend most from the end to the repeated name (S2), the S-inhibition role: {s2}."
                    )}</p>
                    <table data-testid="reuse-scores">
                        <caption>"Colored Objects answered (the asked object's colour has the highest logit of the three)"</caption>
                        <thead><tr><th>"condition"</th><th>"heads attending to the other colours"</th><th>"answered"</th><th>"mean margin"</th></tr></thead>
                        <tbody>
                            {score_row("model as it is", "none".into(), &r.base)}
                            {score_row("intervention", heads_text(&spec.heads), &r.intervened)}
                            {control}
                        </tbody>
                    </table>
                    {finding}
                    <p>
                        <button on:click=move |_| download("circuit-reuse.json", "application/json", &data)>"Export JSON"</button>" "
                        <button on:click=move |_| download("spec.json", "application/json", &spec_json)>"Export spec (for `interplay run`)"</button>
                    </p>
                }.into_any()
            }
        })
    };

    view! {
        <section class="card has-result" data-testid="reuse" hidden=hidden>
            <h2>"Circuit reuse: IOI and Colored Objects"</h2>
            <p class="muted">"Merullo et al. (2023) find that the heads of the IOI circuit also solve a different task, \
                Colored Objects (“… a red pen, a blue cup … What color is the cup?”), and that making four heads \
                attend to the wrong colours — as IOI's inhibition heads attend to the repeated name — repairs \
                most of the model's Colored Objects mistakes. Here every head is patched on both tasks, the top \
                heads are compared, and the chosen heads are made to attend, at the last position, half to \
                each colour not asked about."</p>
            <p class="muted" data-testid="reuse-prompts">{move || if given.get() {
                "Prompts: the ones given by the link.".to_string()
            } else {
                "Prompts: the bundled ones (16 IOI pairs, 60 one-shot Colored Objects questions).".to_string()
            }}</p>
            <div class="grid2">
                <label>"Pairs patched per task "
                    <input type="number" min="1" step="1" data-testid="reuse-pairs" prop:disabled=lock
                           aria-invalid=move || bad.text("reuse-pairs").is_some().then_some("true")
                           prop:value=move || bad.text("reuse-pairs").unwrap_or_else(|| spec.with(|s| s.pairs.to_string()))
                           on:change=move |ev| bad.number(spec, "reuse-pairs", "pairs", event_target_value(&ev),
                               |s| Some(s.pairs as f64), |s, x| s.pairs = x as usize, true)/>
                </label>
                <label>"Top k heads compared "
                    <input type="number" min="1" step="1" data-testid="reuse-k" prop:disabled=lock
                           aria-invalid=move || bad.text("reuse-k").is_some().then_some("true")
                           prop:value=move || bad.text("reuse-k").unwrap_or_else(|| spec.with(|s| s.top_k.to_string()))
                           on:change=move |ev| bad.number(spec, "reuse-k", "top k", event_target_value(&ev),
                               |s| Some(s.top_k as f64), |s, x| s.top_k = x as usize, true)/>
                </label>
                <label>"Heads to retarget (layer.head)"
                    <input type="text" data-testid="reuse-heads" prop:disabled=lock
                           aria-invalid=move || bad.text("reuse-heads").is_some().then_some("true")
                           prop:value=move || bad.text("reuse-heads").unwrap_or_else(|| spec.with(|s| heads_text(&s.heads)))
                           on:change=set_heads/>
                </label>
                <label><input type="checkbox" data-testid="reuse-control" prop:disabled=lock prop:checked=move || spec.with(|s| s.control)
                              on:change=move |ev| { let on = event_target_checked(&ev); spec.update(|s| s.control = on) }/>" also as many random heads (control)"</label>
                <label>"Seed of the random heads "
                    <input type="number" min="0" step="1" data-testid="reuse-seed" prop:disabled=lock
                           aria-invalid=move || bad.text("reuse-seed").is_some().then_some("true")
                           prop:value=move || bad.text("reuse-seed").unwrap_or_else(|| spec.with(|s| s.seed.to_string()))
                           on:change=move |ev| bad.number(spec, "reuse-seed", "seed", event_target_value(&ev),
                               |s| Some(s.seed as f64), |s, x| s.seed = x as u64, true)/>
                </label>
            </div>
            {move || bad.message().map(|e| view! { <p class="error" role="alert" data-testid="reuse-input-error">{e}</p> })}
            <RunControls st=st prefix="reuse-" label="Patch, compare and intervene" on_run=Callback::new(run)/>
            <crate::share::ShareLinks share=st.share prefix="reuse-" hide="guided,model,prompt,analysis,head-scores,patching,ablation,neurons,recall"/>
            <div class="result" data-testid="reuse-status" data-seq=move || st.runs.get()
                 data-state=move || state_of(st.busy.get(), &result.get())>
                <crate::speclab::Announce what="Circuit reuse" busy=st.busy outcome=result/>
                {result_view}
            </div>
        </section>
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_or_say_why() {
        assert_eq!(parse_heads("23.3, 19.2 19.2"), Ok(vec![[19, 2], [23, 3]]));
        assert!(parse_heads("23").unwrap_err().contains("layer.head"));
        assert!(parse_heads("a.b").unwrap_err().contains("layer.head"));
        assert!(parse_heads(" ").unwrap_err().contains("at least one"));
        assert_eq!(heads_text(&[[19, 2], [23, 3]]), "19.2, 23.3");
    }
}
