//! Circuits lab: relation-specific neurons (Liu et al. 2025). Its state is a [`NeuronsSpec`]
//! (`"experiment": "relation-neurons"`), in the URL, exported as JSON and run by the CLI
//! (`interplay run`); the engine ranks the loaded model's MLP neurons for one relation of the
//! bundled facts, switches off the top k, and the page plots accuracy on every relation beside k
//! random neurons switched off.

use leptos::prelude::*;
use leptos::task::spawn_local;

use interplay_lab::Experiment;
use interplay_lab::neurons::{Facts, NeuronsResult, NeuronsSpec};

use crate::engine::{Output, Part, Task};
use crate::models;
use crate::plots::{LinePlot, Series, download};
use crate::speclab::{
    BadInputs, RunControls, RunState, autosave, initial_spec, run_on_open, state_of,
};

/// Where the panel autosaves its experiment.
const DRAFT_KEY: &str = "interplay.circuits.neurons";

fn parse_ks(s: &str) -> Result<Vec<usize>, String> {
    let ks: Result<Vec<usize>, _> = s
        .split([',', ' '])
        .filter(|x| !x.trim().is_empty())
        .map(|x| x.trim().parse::<usize>())
        .collect();
    match ks {
        Ok(mut ks) if !ks.is_empty() => {
            ks.sort_unstable();
            ks.dedup();
            Ok(ks)
        }
        Ok(_) => Err("give at least one k, e.g. 0, 10, 100".into()),
        Err(_) => Err(format!(
            "“{s}”: write whole numbers of neurons separated by commas, e.g. 0, 10, 100"
        )),
    }
}

fn ks_text(ks: &[usize]) -> String {
    ks.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Clone, Debug, PartialEq)]
struct Run {
    result: NeuronsResult,
    spec: NeuronsSpec,
}

/// One relation's accuracies against k, ranked or random, as a plot series.
fn series(r: &NeuronsResult, random: bool) -> Vec<Series> {
    let points = if random { &r.random } else { &r.ranked };
    r.relations
        .iter()
        .enumerate()
        .map(|(i, name)| Series {
            name: format!(
                "{name}{}",
                if random { " (random neurons off)" } else { "" }
            ),
            values: points.iter().map(|p| p.accuracy[i]).collect(),
        })
        .collect()
}

/// The relations of the facts a spec names (sorted), for the relation menu.
fn relations_of(facts: &Facts) -> Vec<String> {
    let mut r: Vec<String> = facts
        .load()
        .unwrap_or_default()
        .into_iter()
        .map(|f| f.relation)
        .collect();
    r.sort();
    r.dedup();
    r
}

/// The panel.
#[component]
pub fn NeuronsPanel(
    /// A guided experiment's setup; the form follows it.
    preset: RwSignal<Option<crate::guided::Preset>>,
) -> impl IntoView {
    let init = initial_spec(DRAFT_KEY, NeuronsSpec::capital_smollm2);
    let from_link = init.from_link;
    let spec = RwSignal::new(init.spec);
    let bad = BadInputs::new();
    // A damaged link's message is the patching panel's (one alert, not two).
    let st = RunState::new(None);
    let result = RwSignal::new(None::<Result<Run, String>>);
    let lock = crate::share::locked();
    // An embed shows the panel whose experiment its link holds.
    let embedded = use_context::<crate::share::Embed>().is_some_and(|e| e.embed);
    let hidden = crate::share::hidden("neurons") || (embedded && !from_link);
    let relations = Memo::new(move |_| spec.with(|s| relations_of(&s.facts)));
    let given = Memo::new(move |_| spec.with(|s| matches!(s.facts, Facts::Given(_))));

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
            let task = Task::Experiment(Box::new(Experiment::RelationNeurons(s.clone())));
            let r = match models::ensure_in_engine(Some(st.job)).await {
                Err(e) => Err(e),
                Ok(()) => match st.compute(task, |_: Part| {}).await {
                    Ok((Output::RelationNeurons(result), _)) => Ok(Run { result, spec: s }),
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
            neurons: Some(n), ..
        }) = preset.get()
        {
            bad.clear();
            spec.set(n);
        }
    });

    let set_ks = move |ev: leptos::ev::Event| {
        let t = event_target_value(&ev);
        match parse_ks(&t) {
            Ok(ks) => {
                spec.update(|s| s.ks = ks);
                bad.accept("neurons-ks");
            }
            Err(e) => bad.reject("neurons-ks", t, e),
        }
    };

    let result_view = move || {
        result.get().map(|r| match r {
            Err(e) => view! { <p class="error" role="alert" data-testid="neurons-error">{e}</p> }.into_any(),
            Ok(Run { result: r, spec }) => {
                // k from 0 to thousands: a log axis keeps 10 and 30 apart.
                let xs: Vec<f64> = r.ranked.iter().map(|p| (1.0 + p.k as f64).log10()).collect();
                let n_ranked = r.relations.len();
                let mut lines = series(&r, false);
                if !r.random.is_empty() {
                    lines.extend(series(&r, true));
                }
                let data = serde_json::json!({"spec": spec, "result": r}).to_string();
                let spec_json = crate::share::export_json(&spec);
                let finding = interplay_lab::findings::neurons(&spec, &r)
                    .map(|f| view! { <crate::speclab::FindingView finding=f testid="neurons-finding"/> });
                view! {
                    <dl class="facts">
                        <dt>"facts"</dt>
                        <dd>{r.relations.iter().zip(&r.facts).map(|(n, f)| format!("{n} {f}")).collect::<Vec<_>>().join(", ")}</dd>
                    </dl>
                    <LinePlot series=lines xs=xs y_range=(0.0, 1.0) dashed_from=n_ranked
                              xlabel=format!("log₁₀(1 + k), k = neurons of “{}” switched off; dashed: k random neurons", spec.relation)
                              ylabel="accuracy".to_string() testid="neurons-plot".to_string()/>
                    <table data-testid="neurons-table">
                        <caption>"Facts answered (the answer's first token has the highest logit)"</caption>
                        <thead><tr><th>"k"</th>
                            {r.relations.iter().map(|n| view! { <th>{format!("{n}, top k off")}</th> }).collect_view()}
                            {(!r.random.is_empty()).then(|| r.relations.iter().map(|n| view! { <th>{format!("{n}, k random off")}</th> }).collect_view())}
                        </tr></thead>
                        <tbody>
                        {r.ranked.iter().enumerate().map(|(i, p)| {
                            let rnd = r.random.get(i).cloned();
                            let rnd_attr = rnd.as_ref().map(|q| serde_json::to_string(&q.correct).unwrap_or_default()).unwrap_or_default();
                            let facts = r.facts.clone();
                            view! {
                                <tr data-k=p.k data-correct=serde_json::to_string(&p.correct).unwrap_or_default()
                                    data-random=rnd_attr>
                                    <th scope="row">{p.k}</th>
                                    {p.correct.iter().zip(&facts).map(|(c, n)| view! { <td>{format!("{c}/{n}")}</td> }).collect_view()}
                                    {rnd.map(|q| q.correct.iter().zip(&facts).map(|(c, n)| view! { <td>{format!("{c}/{n}")}</td> }).collect_view())}
                                </tr>
                            }
                        }).collect_view()}
                        </tbody>
                    </table>
                    <p class="muted" data-testid="neurons-top">{format!(
                        "Top neurons for “{}” (blocks.L.mlp.hook_post[i]; score = how often it fires on the relation's tokens − most often on another's): {}",
                        spec.relation,
                        r.top.iter().take(8).map(|n| format!("L{}.{} ({:+.2})", n.layer, n.index, n.score)).collect::<Vec<_>>().join(", ")
                    )}</p>
                    {finding}
                    <p>
                        <button on:click=move |_| download("relation-neurons.json", "application/json", &data)>"Export JSON"</button>" "
                        <button on:click=move |_| download("spec.json", "application/json", &spec_json)>"Export spec (for `interplay run`)"</button>
                    </p>
                }.into_any()
            }
        })
    };

    view! {
        <section class="card has-result" data-testid="neurons" hidden=hidden>
            <h2>"Relation-specific neurons"</h2>
            <p class="muted">"Liu et al. (2025) find MLP neurons that respond to a relation (“the capital of …”) \
                rather than to any one fact. Here a neuron's score for a relation is how often it fires \
                (gate pre-activation above 0) on that relation's prompt tokens minus how often it fires on \
                another relation's. Switch off the top k (set to 0 at every position) and see which relations' facts \
                the model still answers, beside k random neurons switched off."</p>
            <p class="muted" data-testid="neurons-facts">{move || if given.get() {
                format!("Facts: the {} given by the link ({}).", spec.with(|s| match &s.facts { Facts::Given(f) => f.len(), Facts::Bundled => 0 }), relations.get().join(", "))
            } else {
                "Facts: the bundled ones SmolLM2-135M-Instruct answers (capital, language, opposite).".to_string()
            }}</p>
            <div class="grid2">
                <label>"Relation "
                    <select data-testid="neurons-relation" prop:disabled=lock
                            on:change=move |ev| { let r = event_target_value(&ev); spec.update(|s| s.relation = r) }>
                        {move || relations.get().into_iter().map(|r| {
                            let (v, label) = (r.clone(), r.clone());
                            view! { <option value=r selected=move || spec.with(|s| s.relation == v)>{label}</option> }
                        }).collect_view()}
                    </select>
                </label>
                <label>"Neurons switched off (k)"
                    <input type="text" data-testid="neurons-ks" prop:disabled=lock
                           aria-invalid=move || bad.text("neurons-ks").is_some().then_some("true")
                           prop:value=move || bad.text("neurons-ks").unwrap_or_else(|| spec.with(|s| ks_text(&s.ks)))
                           on:change=set_ks/>
                </label>
                <label><input type="checkbox" data-testid="neurons-random" prop:disabled=lock prop:checked=move || spec.with(|s| s.random)
                              on:change=move |ev| { let on = event_target_checked(&ev); spec.update(|s| s.random = on) }/>" also k random neurons (control)"</label>
                <label>"Seed of the random neurons "
                    <input type="number" min="0" step="1" data-testid="neurons-seed" prop:disabled=lock
                           aria-invalid=move || bad.text("neurons-seed").is_some().then_some("true")
                           prop:value=move || bad.text("neurons-seed").unwrap_or_else(|| spec.with(|s| s.seed.to_string()))
                           on:change=move |ev| bad.number(spec, "neurons-seed", "seed", event_target_value(&ev),
                               |s| Some(s.seed as f64), |s, x| s.seed = x as u64, true)/>
                </label>
            </div>
            {move || bad.message().map(|e| view! { <p class="error" role="alert" data-testid="neurons-input-error">{e}</p> })}
            <RunControls st=st prefix="neurons-" label="Find and switch off" on_run=Callback::new(run)/>
            <crate::share::ShareLinks share=st.share prefix="neurons-" hide="guided,model,prompt,analysis,head-scores,patching,ablation,reuse,recall"/>
            <div class="result" data-testid="neurons-status" data-seq=move || st.runs.get()
                 data-state=move || state_of(st.busy.get(), &result.get())>
                <crate::speclab::Announce what="Relation neurons" busy=st.busy outcome=result/>
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
    fn ks_parse_or_say_why() {
        assert_eq!(parse_ks("0, 10 100"), Ok(vec![0, 10, 100]));
        assert_eq!(parse_ks("100, 0, 10, 10"), Ok(vec![0, 10, 100]));
        assert!(parse_ks("10, ten").unwrap_err().contains("whole numbers"));
        assert!(parse_ks(" ").unwrap_err().contains("at least one"));
        assert_eq!(
            relations_of(&Facts::Bundled),
            ["capital", "language", "opposite"].map(String::from)
        );
    }
}
