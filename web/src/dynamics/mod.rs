//! Dynamics lab: spiking and reservoir networks simulated in the page on the chosen device.
//! The whole experiment is one [`DynamicsSpec`]: it lives in the URL (`#/dynamics?spec=...`),
//! is autosaved, exports as JSON and runs in the CLI (`interplay run spec.json`) to the same
//! numbers.

use leptos::prelude::*;
use leptos::task::spawn_local;

use interplay_dynamics::tasks::{MemoryCapacityResult, PredictionResult};
use interplay_dynamics::whatwhen::{WhatWhenResult, WhatWhenSpec};
use interplay_dynamics::{
    Adaptation, DynamicsSpec, EiParams, EiSweepRow, EiSweepSpec, EsnParams, MemoryCapacitySpec,
    SpikingResult, SpikingSpec, Task,
};

use crate::engine::{self, DynamicsOutput, Output, Part};
use crate::plots::{LINE_COLOURS, LinePlot, Series, download};
use crate::speclab::{
    Announce, BadInputs, ComputedOn, FindingView, RunControls, RunState, autosave, initial_spec,
    run_on_open, state_of,
};
use interplay_lab::guided::{mackey_glass_demo, spiking_demo};
use interplay_lab::{Experiment, LabKind};

mod views;

use views::*;

const DRAFT_KEY: &str = "interplay.dynamics";

type Guided = interplay_lab::guided::Guided<DynamicsSpec>;

const GUIDED: &[Guided] = interplay_lab::guided::DYNAMICS;

/// A run's result, as the engine returns it.
type Outcome = DynamicsOutput;

/// The paper's claim and what the run shows, when the run was a guided experiment's.
fn finding(
    ran: &Option<DynamicsSpec>,
    outcome: &Option<Result<Outcome, String>>,
    hetero: Option<&[interplay_dynamics::EiSweepRow]>,
) -> Option<interplay_lab::findings::Finding> {
    use interplay_lab::findings::{DynamicsRun, dynamics};
    let id = Guided::of(GUIDED, ran.as_ref()?)?;
    let run = match (outcome.as_ref()?.as_ref().ok()?, ran.as_ref()?) {
        (Outcome::Spiking(r), _) => DynamicsRun::Spiking(r),
        (Outcome::Prediction(r), _) => DynamicsRun::Prediction(r),
        (Outcome::Memory(r), DynamicsSpec::MemoryCapacity(m)) => {
            DynamicsRun::Memory(r, m.reservoir.units)
        }
        (Outcome::Sweep(rows), _) => DynamicsRun::Sweep(rows, hetero),
        (Outcome::WhatWhen(r), DynamicsSpec::WhatWhen(w)) => DynamicsRun::WhatWhen(r, w),
        _ => return None,
    };
    dynamics(id, run)
}

fn kind(spec: &DynamicsSpec) -> &'static str {
    match spec {
        DynamicsSpec::Spiking(_) => "spiking",
        DynamicsSpec::Prediction(_) => "prediction",
        DynamicsSpec::MemoryCapacity(_) => "memory-capacity",
        DynamicsSpec::EiSweep(_) => "ei-sweep",
        DynamicsSpec::WhatWhen(_) => "what-when",
    }
}

fn default_of(kind: &str) -> DynamicsSpec {
    match kind {
        "prediction" => mackey_glass_demo(),
        "memory-capacity" => DynamicsSpec::MemoryCapacity(MemoryCapacitySpec::default()),
        "ei-sweep" => DynamicsSpec::EiSweep(EiSweepSpec::default()),
        "what-when" => DynamicsSpec::WhatWhen(WhatWhenSpec::default()),
        _ => spiking_demo(),
    }
}

fn reservoir_mut(spec: &mut DynamicsSpec) -> Option<&mut EsnParams> {
    match spec {
        DynamicsSpec::Prediction(p) => Some(&mut p.reservoir),
        DynamicsSpec::MemoryCapacity(m) => Some(&mut m.reservoir),
        DynamicsSpec::EiSweep(s) => Some(&mut s.base.reservoir),
        DynamicsSpec::Spiking(_) | DynamicsSpec::WhatWhen(_) => None,
    }
}

fn reservoir(spec: &DynamicsSpec) -> Option<&EsnParams> {
    match spec {
        DynamicsSpec::Prediction(p) => Some(&p.reservoir),
        DynamicsSpec::MemoryCapacity(m) => Some(&m.reservoir),
        DynamicsSpec::EiSweep(s) => Some(&s.base.reservoir),
        DynamicsSpec::Spiking(_) | DynamicsSpec::WhatWhen(_) => None,
    }
}

/// Traced neurons that no longer exist after a size change are dropped, not an error.
fn keep_traces(x: &mut SpikingSpec) {
    let n = x.excitatory + x.inhibitory;
    x.trace_neurons.retain(|&i| i < n);
}

type Getter = fn(&DynamicsSpec) -> Option<f64>;
type Setter = fn(&mut DynamicsSpec, f64);

/// The form's numeric fields: label, test id, read, write. A field shows when it applies.
const FIELDS: &[(&str, &str, Getter, Setter)] = &[
    (
        "Excitatory neurons",
        "dyn-exc",
        |s| match s {
            DynamicsSpec::Spiking(x) => Some(x.excitatory as f64),
            _ => None,
        },
        |s, v| {
            if let DynamicsSpec::Spiking(x) = s {
                x.excitatory = v as usize;
                keep_traces(x)
            }
        },
    ),
    (
        "Inhibitory neurons",
        "dyn-inh",
        |s| match s {
            DynamicsSpec::Spiking(x) => Some(x.inhibitory as f64),
            _ => None,
        },
        |s, v| {
            if let DynamicsSpec::Spiking(x) = s {
                x.inhibitory = v as usize;
                keep_traces(x)
            }
        },
    ),
    (
        "Synapses per neuron (0: the connectivity fraction, all-to-all by default)",
        "dyn-synapses",
        |s| match s {
            DynamicsSpec::Spiking(x) => Some(x.synapses_per_neuron as f64),
            _ => None,
        },
        |s, v| {
            if let DynamicsSpec::Spiking(x) = s {
                x.synapses_per_neuron = v as usize
            }
        },
    ),
    (
        "Milliseconds",
        "dyn-ms",
        |s| match s {
            DynamicsSpec::Spiking(x) => Some(x.ms as f64),
            _ => None,
        },
        |s, v| {
            if let DynamicsSpec::Spiking(x) = s {
                x.ms = v as usize
            }
        },
    ),
    (
        "Thalamic noise (excitatory)",
        "dyn-noise-exc",
        |s| match s {
            DynamicsSpec::Spiking(x) => Some(x.noise_exc),
            _ => None,
        },
        |s, v| {
            if let DynamicsSpec::Spiking(x) = s {
                x.noise_exc = v
            }
        },
    ),
    (
        "Inhibitory weight scale",
        "dyn-w-inh",
        |s| match s {
            DynamicsSpec::Spiking(x) => Some(x.weight_inh),
            _ => None,
        },
        |s, v| {
            if let DynamicsSpec::Spiking(x) = s {
                x.weight_inh = v
            }
        },
    ),
    (
        "Seed",
        "dyn-seed",
        |s| match s {
            DynamicsSpec::Spiking(x) => Some(x.seed as f64),
            _ => reservoir(s).map(|r| r.seed as f64),
        },
        |s, v| match s {
            DynamicsSpec::Spiking(x) => x.seed = v as u64,
            other => {
                if let Some(r) = reservoir_mut(other) {
                    r.seed = v as u64
                }
            }
        },
    ),
    (
        "Units",
        "dyn-units",
        |s| reservoir(s).map(|r| r.units as f64),
        |s, v| {
            if let Some(r) = reservoir_mut(s) {
                r.units = v as usize
            }
        },
    ),
    (
        "Spectral radius",
        "dyn-sr",
        |s| reservoir(s).map(|r| r.spectral_radius),
        |s, v| {
            if let Some(r) = reservoir_mut(s) {
                r.spectral_radius = v
            }
        },
    ),
    (
        "Leak rate",
        "dyn-leak",
        |s| reservoir(s).map(|r| r.leak),
        |s, v| {
            if let Some(r) = reservoir_mut(s) {
                r.leak = v
            }
        },
    ),
    (
        "Input scaling",
        "dyn-input-scaling",
        |s| reservoir(s).map(|r| r.input_scaling),
        |s, v| {
            if let Some(r) = reservoir_mut(s) {
                r.input_scaling = v
            }
        },
    ),
    (
        "Inhibition ratio (E/I reservoir; empty: signed weights)",
        "dyn-inhibition",
        |s| match s {
            DynamicsSpec::EiSweep(_) => None,
            _ => reservoir(s).and_then(|r| r.ei.as_ref().map(|e| e.inhibition)),
        },
        |s, v| {
            if let Some(r) = reservoir_mut(s) {
                r.ei.get_or_insert_with(EiParams::default).inhibition = v
            }
        },
    ),
    (
        "Ridge",
        "dyn-ridge",
        |s| match s {
            DynamicsSpec::Prediction(p) => Some(p.ridge),
            DynamicsSpec::MemoryCapacity(m) => Some(m.ridge),
            DynamicsSpec::EiSweep(e) => Some(e.base.ridge),
            _ => None,
        },
        |s, v| match s {
            DynamicsSpec::Prediction(p) => p.ridge = v,
            DynamicsSpec::MemoryCapacity(m) => m.ridge = v,
            DynamicsSpec::EiSweep(e) => e.base.ridge = v,
            _ => {}
        },
    ),
    (
        "Training steps",
        "dyn-train",
        |s| match s {
            DynamicsSpec::Prediction(p) => Some(p.train as f64),
            DynamicsSpec::MemoryCapacity(m) => Some(m.train as f64),
            _ => None,
        },
        |s, v| match s {
            DynamicsSpec::Prediction(p) => p.train = v as usize,
            DynamicsSpec::MemoryCapacity(m) => m.train = v as usize,
            _ => {}
        },
    ),
    (
        "Test steps",
        "dyn-test",
        |s| match s {
            DynamicsSpec::Prediction(p) => Some(p.test as f64),
            DynamicsSpec::MemoryCapacity(m) => Some(m.test as f64),
            _ => None,
        },
        |s, v| match s {
            DynamicsSpec::Prediction(p) => p.test = v as usize,
            DynamicsSpec::MemoryCapacity(m) => m.test = v as usize,
            _ => {}
        },
    ),
    (
        "Series length",
        "dyn-steps",
        |s| match s {
            DynamicsSpec::Prediction(p) => Some(p.steps as f64),
            _ => None,
        },
        |s, v| {
            if let DynamicsSpec::Prediction(p) = s {
                p.steps = v as usize
            }
        },
    ),
    (
        "Largest delay k",
        "dyn-kmax",
        |s| match s {
            DynamicsSpec::MemoryCapacity(m) => Some(m.k_max as f64),
            _ => None,
        },
        |s, v| {
            if let DynamicsSpec::MemoryCapacity(m) = s {
                m.k_max = v as usize
            }
        },
    ),
    (
        "Target-rate spread (0: homogeneous)",
        "dyn-spread",
        |s| match s {
            DynamicsSpec::EiSweep(e) => e.adaptation.as_ref().map(|a| a.target_spread),
            _ => None,
        },
        |s, v| {
            if let DynamicsSpec::EiSweep(e) = s {
                e.adaptation
                    .get_or_insert_with(Adaptation::default)
                    .target_spread = v
            }
        },
    ),
];

/// The Dynamics lab page.
#[component]
pub fn DynamicsLab() -> impl IntoView {
    let init = initial_spec(DRAFT_KEY, spiking_demo);
    let spec = RwSignal::new(init.spec);
    let st = RunState::new(init.link_error);
    let bad = BadInputs::new();
    let paused = RwSignal::new(false);
    // The spec of the run shown (the form may have changed since), and the last E/I balance
    // sweep's rows.
    let ran = RwSignal::new(None::<DynamicsSpec>);
    let hetero = RwSignal::new(None::<Vec<interplay_dynamics::EiSweepRow>>);
    let outcome = RwSignal::new(None::<Result<Outcome, String>>);
    let facts = RwSignal::new((String::new(), 0.0f64));
    let lock = crate::share::locked();
    autosave(DRAFT_KEY, move || spec.get());

    let run = move |_| {
        if bad.refuse_run() {
            return;
        }
        let s = spec.get_untracked();
        st.start(&s, 1);
        ran.set(Some(s.clone()));
        // Read now: the signals are gone if the student leaves the lab before the run ends.
        let guide = Guided::of(GUIDED, &s);
        paused.set(false);
        // The last run's time and device must not be read as this one's.
        facts.set((String::new(), 0.0));
        // Streamed pieces fill the view while the engine computes.
        outcome.set(match &s {
            DynamicsSpec::Spiking(_) => Some(Ok(Outcome::Spiking(SpikingResult::default()))),
            DynamicsSpec::EiSweep(_) => Some(Ok(Outcome::Sweep(vec![]))),
            DynamicsSpec::WhatWhen(_) => Some(Ok(Outcome::WhatWhen(WhatWhenResult::default()))),
            DynamicsSpec::Prediction(_) | DynamicsSpec::MemoryCapacity(_) => None,
        });
        let on_part = move |p: Part| {
            outcome.update(|o| match (o, p) {
                (Some(Ok(Outcome::Spiking(acc))), Part::Spikes(c)) => acc.extend(c),
                (Some(Ok(Outcome::Sweep(rows))), Part::SweepRow(r)) => rows.push(r),
                (Some(Ok(Outcome::WhatWhen(r))), Part::Trial(t)) => r.trials.push(t),
                _ => {}
            })
        };
        spawn_local(async move {
            let task = engine::Task::Experiment(Box::new(Experiment::Dynamics(s)));
            let r = match st.compute(task, on_part).await {
                Ok((Output::Dynamics(o), ran)) => {
                    facts.set((ran.backend.label().to_string(), ran.ms));
                    Ok(o)
                }
                // The spikes came as parts: the run's rates complete them.
                Ok((
                    Output::SpikingEnd {
                        rate_exc_hz,
                        rate_inh_hz,
                    },
                    ran,
                )) => {
                    facts.set((ran.backend.label().to_string(), ran.ms));
                    match outcome.get_untracked() {
                        Some(Ok(Outcome::Spiking(mut acc))) => {
                            acc.rate_exc_hz = rate_exc_hz;
                            acc.rate_inh_hz = rate_inh_hz;
                            Ok(Outcome::Spiking(acc))
                        }
                        _ => Err("the spiking run's spikes did not reach the page".to_string()),
                    }
                }
                Ok(_) => Err("the engine answered with another lab's result".to_string()),
                Err(e) => Err(e.to_string()),
            };
            // The heterogeneous sweep, for the homogeneous one's finding to compare with.
            if let (Ok(Outcome::Sweep(rows)), Some("ei-balance")) = (&r, guide) {
                hetero.set(Some(rows.clone()));
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
        <section class="card result" data-testid="dyn-status" data-seq=move || st.runs.get() data-ms=move || facts.get().1
                 data-state=move || outcome.with(|o| state_of(st.busy.get(), o))>
            <h2>"Result"</h2>
            <Announce what="Dynamics run" busy=st.busy outcome=outcome/>
            <ComputedOn st=st facts=facts prefix="dyn-"/>
            {move || outcome.get().map(|o| match o {
                Err(e) => view! { <p class="error" role="alert" data-testid="dyn-error">{e}</p> }.into_any(),
                Ok(Outcome::Spiking(r)) => spiking_view(r, spec.get_untracked(), facts.get_untracked()).into_any(),
                Ok(Outcome::Prediction(r)) => prediction_view(r).into_any(),
                Ok(Outcome::Memory(r)) => memory_view(r).into_any(),
                Ok(Outcome::Sweep(rows)) => sweep_view(rows).into_any(),
                Ok(Outcome::WhatWhen(r)) => what_when_view(r, spec.get_untracked()).into_any(),
            })}
            {move || (!st.busy.get()).then(|| finding(&ran.get(), &outcome.get(), hetero.get().as_deref())).flatten().map(|f| view! {
                <FindingView finding=f testid="dyn-finding"/>
            })}
        </section>
    };
    let (first, last) = crate::share::result_first(result);
    view! {
        <div class="lab" data-testid="dynamics-lab">
        {first}
        <section class="card" data-testid="dyn-guided" hidden=crate::share::hidden("guided")>
            <h2>"Guided experiments"</h2>
            <ul class="guided">
            {GUIDED.iter().map(|g| { let make = g.spec; view! {
                <li><button data-testid=format!("dyn-guided-{}", g.id) prop:disabled=move || st.busy.get() || lock
                    on:click=move |_| { bad.clear(); spec.set(make()); outcome.set(None); }>{g.title}</button>
                    " "<span class="muted">{g.text(LabKind::Dynamics)}</span></li>
            }}).collect_view()}
            </ul>

        </section>
        <section class="card" data-testid="dyn-experiment">
            <h2>"Experiment"</h2>
            {move || st.link_error.get().map(|e| view! { <p class="error" role="alert" data-testid="link-error">{e}</p> })}
            <label>"Kind "
                <select data-testid="dyn-kind" prop:disabled=lock prop:value=move || kind(&spec.get())
                        on:change={move |ev| { bad.clear(); spec.set(default_of(&event_target_value(&ev))); outcome.set(None); }}>
                    <option value="spiking">"spiking network (Izhikevich / LIF)"</option>
                    <option value="prediction">"echo state network: time-series prediction"</option>
                    <option value="memory-capacity">"echo state network: memory capacity"</option>
                    <option value="ei-sweep">"E/I balance sweep with self-adaptation"</option>
                    <option value="what-when">"what/when predictions: three-factor or online RLS readout"</option>
                </select>
            </label>
            {move || matches!(spec.get(), DynamicsSpec::Prediction(_)).then(|| view! {
                <label>" Series "
                    <select data-testid="dyn-task" prop:disabled=lock
                        prop:value=move || match &spec.get() { DynamicsSpec::Prediction(p) => match p.task { Task::MackeyGlass => "mackey-glass", Task::Narma10 => "narma10", Task::SantaFe => "santa-fe" }, _ => "" }
                        on:change={move |ev| if let Ok(t) = event_target_value(&ev).parse::<Task>() { spec.update(|s| if let DynamicsSpec::Prediction(p) = s { p.task = t }) }}>
                        <option value="mackey-glass">"Mackey-Glass (τ = 17)"</option>
                        <option value="narma10">"NARMA-10"</option>
                        <option value="santa-fe">"Santa Fe laser"</option>
                    </select>
                </label>
            })}
            <div class="grid2">
            {FIELDS.iter().map(|&(label, id, get, set)| view! {
                {move || get(&spec.get()).map(|v| view! {
                    <label>{label}" "<input type="number" step="any" data-testid=id prop:disabled=lock
                        prop:value=move || bad.text(id).unwrap_or_else(|| v.to_string())
                        on:change=move |ev| bad.number(spec, id, label, event_target_value(&ev), get, set, true)/></label>
                })}
            }).collect_view()}
            {move || match spec.get() { DynamicsSpec::EiSweep(e) => Some(view! {
                <label>"Inhibition ratios (comma-separated) "<input type="text" data-testid="dyn-ratios" prop:disabled=lock
                    prop:value=move || bad.text("dyn-ratios").unwrap_or_else(|| e.inhibitions.iter().map(f64::to_string).collect::<Vec<_>>().join(", "))
                    on:change={move |ev| {
                        let t = event_target_value(&ev);
                        let v: Option<Vec<f64>> = t.split(',').map(|x| x.trim().parse().ok().filter(|x: &f64| x.is_finite())).collect();
                        match v { Some(v) if !v.is_empty() => { spec.update(|s| if let DynamicsSpec::EiSweep(e) = s { e.inhibitions = v }); bad.accept("dyn-ratios") }
                                  _ => bad.reject("dyn-ratios", t, "inhibition ratios: comma-separated numbers".into()) }
                    }}/></label>
            }), _ => None }}
            </div>
            <details data-testid="dyn-json"><summary>"Full spec (JSON): every parameter, editable"</summary>
                <textarea rows="12" cols="70" data-testid="dyn-spec-json" prop:disabled=lock
                    prop:value=move || bad.text("dyn-spec-json").unwrap_or_else(json_text)
                    on:change={move |ev| { let t = event_target_value(&ev); match serde_json::from_str::<DynamicsSpec>(&t) {
                        Ok(s) => { bad.clear(); spec.set(s) }
                        Err(e) => bad.reject("dyn-spec-json", t, format!("the spec (JSON) is not valid: {e}")),
                    }}}></textarea>
            </details>
            {move || bad.message().map(|e| view! { <p class="error" role="alert" data-testid="dyn-input-error">{e}</p> })}
            <RunControls st=st prefix="dyn-" label="Run" on_run=Callback::new(run) paused=paused/>
            <crate::share::ShareLinks share=st.share prefix="dyn-" hide="guided"
                spec_json=Callback::new(move |()| crate::share::export_json(&spec.get_untracked()))/>
        </section>
        {last}
        </div>
    }
}
