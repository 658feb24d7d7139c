//! Dynamics lab: spiking and reservoir networks simulated in the page on the chosen device.
//! The whole experiment is one [`DynamicsSpec`]: it lives in the URL (`#/dynamics?spec=...`),
//! is autosaved, exports as JSON and runs in the CLI (`interplay run spec.json`) to the same
//! numbers.

use leptos::prelude::*;
use leptos::task::spawn_local;

use interplay_dynamics::tasks::{MemoryCapacityResult, PredictionResult};
use interplay_dynamics::whatwhen::{Rule, Trial, WhatWhenResult, WhatWhenSpec};
use interplay_dynamics::{
    Adaptation, DynamicsSpec, EiParams, EiSweepRow, EiSweepSpec, EsnParams, MemoryCapacitySpec,
    PredictionSpec, SpikingResult, SpikingSpec, Task,
};
use interplay_lab::share::{decode, encode, spec_param};

use crate::assets::{draft_get, draft_set, now_ms, progress_callback};
use crate::plots::{LINE_COLOURS, LinePlot, Series, download, export_svg};

const DRAFT_KEY: &str = "interplay.dynamics";

/// A guided experiment: a short text and the spec it starts from.
struct Guided {
    id: &'static str,
    title: &'static str,
    text: &'static str,
    spec: fn() -> DynamicsSpec,
}

fn spiking_demo() -> DynamicsSpec {
    DynamicsSpec::Spiking(SpikingSpec {
        trace_neurons: vec![0, 850],
        ..SpikingSpec::default()
    })
}

fn mackey_glass_demo() -> DynamicsSpec {
    DynamicsSpec::Prediction(PredictionSpec {
        steps: 3000,
        train: 2000,
        test: 800,
        reservoir: EsnParams {
            units: 200,
            leak: 0.3,
            spectral_radius: 0.9,
            ..EsnParams::default()
        },
        ..PredictionSpec::default()
    })
}

fn homogeneous_sweep() -> DynamicsSpec {
    let d = EiSweepSpec::default();
    DynamicsSpec::EiSweep(EiSweepSpec {
        adaptation: Some(Adaptation {
            target_spread: 0.0,
            ..d.adaptation.clone().unwrap_or_default()
        }),
        ..d
    })
}

fn force_demo() -> DynamicsSpec {
    DynamicsSpec::WhatWhen(WhatWhenSpec {
        rule: Rule::Force { alpha: 1.0 },
        ..WhatWhenSpec::default()
    })
}

const GUIDED: [Guided; 7] = [
    Guided {
        id: "izhikevich",
        title: "Izhikevich (2003): 1000 spiking neurons",
        text: "800 excitatory and 200 inhibitory cells with heterogeneous parameters, all-to-all random \
               weights and thalamic noise. The paper reports about 8 Hz and alpha/gamma-like population \
               rhythms: look for vertical stripes in the raster and oscillations in the population rate.",
        spec: spiking_demo,
    },
    Guided {
        id: "mackey-glass",
        title: "An echo state network predicts Mackey-Glass",
        text: "A leaky tanh reservoir is driven by the chaotic Mackey-Glass series; only a linear readout \
               is trained (ridge regression). One-step-ahead NRMSE should be well below 1%.",
        spec: mackey_glass_demo,
    },
    Guided {
        id: "memory",
        title: "Memory capacity",
        text: "Drive the reservoir with random input and train a readout for each delay k to recall \
               u(t − k). The r² curve falls with k; its sum (MC) cannot exceed the number of units.",
        spec: || DynamicsSpec::MemoryCapacity(MemoryCapacitySpec::default()),
    },
    Guided {
        id: "ei-balance",
        title: "E/I balance and self-adaptation",
        text: "\"Boosting Reservoir Computing\" reports that balanced or slightly inhibition-dominated \
               reservoirs remember best, and that letting each unit adapt its inhibitory input toward a \
               (heterogeneous) target rate finds that regime without tuning. Compare the fixed and the \
               adapted column across inhibition ratios.",
        spec: || DynamicsSpec::EiSweep(EiSweepSpec::default()),
    },
    Guided {
        id: "homogeneous",
        title: "Homogeneous vs heterogeneous targets",
        text: "The same sweep with one shared target rate for every unit. The paper finds heterogeneous \
               targets work better; compare with the previous experiment's adapted column.",
        spec: homogeneous_sweep,
    },
    Guided {
        id: "what-when",
        title: "What and when: a three-factor readout re-adapts",
        text: "A cue starts each trial of a spiking reservoir; 40 ms later stimulus A comes with \
               probability 0.8 and B with 0.2, then the probabilities swap. Readouts learn with \
               Δw = η · error · attention gate · presynaptic trace: they should fire at the stimulus \
               time with magnitudes near the probabilities, and follow the swap without a reset.",
        spec: || DynamicsSpec::WhatWhen(WhatWhenSpec::default()),
    },
    Guided {
        id: "force",
        title: "The same with FORCE (recursive least squares)",
        text: "FORCE learns the first block quickly, but its gain shrinks as it learns: after the \
               swap it moves slowly unless reset. Compare the learned magnitudes after the swap.",
        spec: force_demo,
    },
];

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Spiking(SpikingResult),
    Prediction(PredictionResult),
    Memory(MemoryCapacityResult),
    Sweep(Vec<EiSweepRow>),
    WhatWhen(WhatWhenResult),
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

fn write_url(spec: &DynamicsSpec) -> String {
    crate::shell::write_share_url("dynamics", &encode(spec))
}

/// The Dynamics lab page.
#[component]
pub fn DynamicsLab() -> impl IntoView {
    let draft = || {
        draft_get(DRAFT_KEY)
            .and_then(|d| serde_json::from_str::<DynamicsSpec>(&d).ok())
            .unwrap_or_else(spiking_demo)
    };
    let (initial, link_error) =
        match spec_param(&crate::shell::current_hash()).map(decode::<DynamicsSpec>) {
            Some(Ok(s)) => (s, None),
            Some(Err(e)) => (draft(), Some(e.to_string())),
            None => (draft(), None),
        };
    let spec = RwSignal::new(initial);
    let json_error = RwSignal::new(None::<String>);
    let link_error = RwSignal::new(link_error);
    let busy = RwSignal::new(false);
    let cancel = RwSignal::new(false);
    let paused = RwSignal::new(false);
    let progress = RwSignal::new((0usize, 0usize));
    let outcome = RwSignal::new(None::<Result<Outcome, String>>);
    let facts = RwSignal::new((String::new(), 0.0f64));
    let runs = RwSignal::new(0u32);
    let share = RwSignal::new(String::new());
    let lock = crate::shell::locked();

    Effect::new(move |_| {
        if let Ok(json) = serde_json::to_string(&spec.get()) {
            draft_set(DRAFT_KEY, &json);
        }
    });

    let run = move |_| {
        let s = spec.get_untracked();
        share.set(write_url(&s));
        busy.set(true);
        cancel.set(false);
        paused.set(false);
        progress.set((0, 1));
        let dev = crate::runtime::current();
        let backend = dev.backend.label();
        spawn_local(async move {
            let t0 = now_ms();
            let mut on_progress = progress_callback(progress, cancel, Some(paused));
            let r = match &s {
                DynamicsSpec::Spiking(x) => {
                    // Stream: each chunk's spikes appear as soon as they are read back.
                    outcome.set(Some(Ok(Outcome::Spiking(SpikingResult::default()))));
                    let mut on_chunk = move |c: &SpikingResult| {
                        outcome.update(|o| {
                            if let Some(Ok(Outcome::Spiking(acc))) = o {
                                acc.extend(c.clone());
                            }
                        })
                    };
                    x.run(&dev.device, &mut on_chunk, &mut on_progress)
                        .await
                        .map(Outcome::Spiking)
                }
                DynamicsSpec::Prediction(x) => x
                    .run(&dev.device, &mut on_progress)
                    .await
                    .map(Outcome::Prediction),
                DynamicsSpec::MemoryCapacity(x) => x
                    .run(&dev.device, &mut on_progress)
                    .await
                    .map(Outcome::Memory),
                DynamicsSpec::EiSweep(x) => {
                    outcome.set(Some(Ok(Outcome::Sweep(vec![]))));
                    let mut on_row = move |row: &EiSweepRow| {
                        outcome.update(|o| {
                            if let Some(Ok(Outcome::Sweep(rows))) = o {
                                rows.push(row.clone());
                            }
                        })
                    };
                    x.run(&dev.device, &mut on_row, &mut on_progress)
                        .await
                        .map(Outcome::Sweep)
                }
                DynamicsSpec::WhatWhen(x) => {
                    outcome.set(Some(Ok(Outcome::WhatWhen(WhatWhenResult::default()))));
                    let mut on_trial = move |t: &Trial| {
                        outcome.update(|o| {
                            if let Some(Ok(Outcome::WhatWhen(r))) = o {
                                r.trials.push(t.clone());
                            }
                        })
                    };
                    x.run(&dev.device, &mut on_trial, &mut on_progress)
                        .await
                        .map(Outcome::WhatWhen)
                }
            };
            facts.set((backend.to_string(), now_ms() - t0));
            outcome.set(Some(r.map_err(|e| e.to_string())));
            runs.update(|n| *n += 1);
            busy.set(false);
        });
    };

    let json_text = move || serde_json::to_string_pretty(&spec.get()).unwrap_or_default();
    view! {
        <div class="lab" data-testid="dynamics-lab">
        <section class="card" data-testid="dyn-guided" hidden=crate::shell::hidden("guided")>
            <h2>"Guided experiments"</h2>
            <ul class="guided">
            {GUIDED.iter().map(|g| { let make = g.spec; view! {
                <li><button data-testid=format!("dyn-guided-{}", g.id) prop:disabled=move || busy.get() || lock
                    on:click=move |_| { spec.set(make()); outcome.set(None); }>{g.title}</button>
                    " "<span class="muted">{g.text}</span></li>
            }}).collect_view()}
            </ul>

        </section>
        <section class="card" data-testid="dyn-experiment">
            <h2>"Experiment"</h2>
            {move || link_error.get().map(|e| view! { <p class="error" role="alert" data-testid="link-error">{e}</p> })}
            <label>"Kind "
                <select data-testid="dyn-kind" prop:disabled=lock prop:value=move || kind(&spec.get())
                        on:change={move |ev| { spec.set(default_of(&event_target_value(&ev))); outcome.set(None); }}>
                    <option value="spiking">"spiking network (Izhikevich / LIF)"</option>
                    <option value="prediction">"echo state network: time-series prediction"</option>
                    <option value="memory-capacity">"echo state network: memory capacity"</option>
                    <option value="ei-sweep">"E/I balance sweep with self-adaptation"</option>
                    <option value="what-when">"what/when predictions: three-factor readout or FORCE"</option>
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
                    <label>{label}" "<input type="number" step="any" data-testid=id prop:disabled=lock prop:value=v.to_string()
                        on:change={move |ev| match event_target_value(&ev).trim().parse::<f64>() {
                            Ok(x) if x.is_finite() && x >= 0.0 => { spec.update(|s| set(s, x)); json_error.set(None) }
                            _ => json_error.set(Some(format!("{label}: enter a number ≥ 0"))),
                        }}/></label>
                })}
            }).collect_view()}
            {move || match spec.get() { DynamicsSpec::EiSweep(e) => Some(view! {
                <label>"Inhibition ratios (comma-separated) "<input type="text" data-testid="dyn-ratios" prop:disabled=lock
                    prop:value={e.inhibitions.iter().map(f64::to_string).collect::<Vec<_>>().join(", ")}
                    on:change={move |ev| {
                        let v: Option<Vec<f64>> = event_target_value(&ev).split(',').map(|x| x.trim().parse().ok()).collect();
                        match v { Some(v) if !v.is_empty() => { spec.update(|s| if let DynamicsSpec::EiSweep(e) = s { e.inhibitions = v }); json_error.set(None) }
                                  _ => json_error.set(Some("inhibition ratios: comma-separated numbers".into())) }
                    }}/></label>
            }), _ => None }}
            </div>
            <details data-testid="dyn-json"><summary>"Full spec (JSON): every parameter, editable"</summary>
                <textarea rows="12" cols="70" data-testid="dyn-spec-json" prop:disabled=lock prop:value=json_text
                    on:change={move |ev| match serde_json::from_str::<DynamicsSpec>(&event_target_value(&ev)) {
                        Ok(s) => { spec.set(s); json_error.set(None) }
                        Err(e) => json_error.set(Some(format!("the spec is not valid: {e}"))),
                    }}></textarea>
            </details>
            {move || json_error.get().map(|e| view! { <p class="error" role="alert" data-testid="dyn-input-error">{e}</p> })}
            <p>
                <button data-testid="dyn-run" on:click=run prop:disabled=move || busy.get()>"Run"</button>" "
                <button data-testid="dyn-pause" on:click=move |_| paused.update(|p| *p = !*p) prop:disabled=move || !busy.get()>
                    {move || if paused.get() { "Resume" } else { "Pause" }}</button>" "
                <button data-testid="dyn-cancel" on:click=move |_| cancel.set(true) prop:disabled=move || !busy.get()>"Cancel"</button>" "
                {move || busy.get().then(|| { let (d, t) = progress.get(); view! { <progress data-testid="dyn-progress" max=t.max(1) value=d></progress> }})}
            </p>
            <crate::shell::ShareLinks share=share prefix="dyn-" hide="guided"
                spec_json=Callback::new(move |()| serde_json::to_string_pretty(&spec.get_untracked()).unwrap_or_default())/>
        </section>
        <section class="card" data-testid="dyn-status" data-seq=move || runs.get() data-ms=move || facts.get().1
                 data-state=move || match (busy.get(), outcome.get()) {
                     (true, _) => "running", (false, None) => "idle",
                     (false, Some(Ok(_))) => "done", (false, Some(Err(_))) => "error" }>
            <h2>"Result"</h2>
            {move || (!busy.get() && !facts.get().0.is_empty()).then(|| { let (b, ms) = facts.get(); view! {
                <p class="muted" data-testid="dyn-computed-on">{format!("computed on {b} in {ms:.0} ms")}</p> }})}
            {move || outcome.get().map(|o| match o {
                Err(e) => view! { <p class="error" role="alert" data-testid="dyn-error">{e}</p> }.into_any(),
                Ok(Outcome::Spiking(r)) => spiking_view(r, spec.get_untracked()).into_any(),
                Ok(Outcome::Prediction(r)) => prediction_view(r).into_any(),
                Ok(Outcome::Memory(r)) => memory_view(r).into_any(),
                Ok(Outcome::Sweep(rows)) => sweep_view(rows).into_any(),
                Ok(Outcome::WhatWhen(r)) => what_when_view(r, spec.get_untracked()).into_any(),
            })}
        </section>
        </div>
    }
}

fn spiking_view(r: SpikingResult, spec: DynamicsSpec) -> impl IntoView {
    let DynamicsSpec::Spiking(s) = spec else {
        return view! { <p></p> }.into_any();
    };
    let n = (s.excitatory + s.inhibitory).max(1) as f64;
    let (w, h) = (640.0, 300.0);
    let ms = s.ms.max(1) as f64;
    // One path per population keeps thousands of spikes cheap to draw.
    let mut paths = [String::new(), String::new()];
    for &(t, j) in &r.raster {
        let k = usize::from(j as usize >= s.excitatory);
        paths[k].push_str(&format!(
            "M{:.1},{:.1}h1.2",
            t as f64 / ms * w,
            (1.0 - j as f64 / n) * h
        ));
    }
    let elapsed = r.pop_exc.len().max(1) as f64 / 1000.0;
    let rate = |c: &[u32], pop: usize| c.iter().sum::<u32>() as f64 / pop.max(1) as f64 / elapsed;
    let (re, ri) = (
        rate(&r.pop_exc, s.excitatory),
        rate(&r.pop_inh, s.inhibitory),
    );
    let bins = |c: &[u32], pop: usize| -> Vec<f64> {
        c.chunks(5)
            .map(|b| b.iter().sum::<u32>() as f64 / pop.max(1) as f64 / (b.len() as f64 / 1000.0))
            .collect()
    };
    let pop = vec![
        Series {
            name: "excitatory".into(),
            values: bins(&r.pop_exc, s.excitatory),
        },
        Series {
            name: "inhibitory".into(),
            values: bins(&r.pop_inh, s.inhibitory),
        },
    ];
    let traces: Vec<Series> = s
        .trace_neurons
        .iter()
        .zip(&r.traces)
        .map(|(i, t)| Series {
            name: format!("neuron {i}"),
            values: t.iter().map(|&v| v as f64).collect(),
        })
        .collect();
    let raster_csv = {
        let mut c = String::from("ms,neuron\n");
        for (t, j) in &r.raster {
            c += &format!("{t},{j}\n");
        }
        c
    };
    view! {
        <dl class="facts">
            <dt>"spikes"</dt><dd data-testid="dyn-spikes">{r.spikes}</dd>
            <dt>"excitatory rate"</dt><dd data-testid="dyn-rate-exc">{format!("{re:.2} Hz")}</dd>
            <dt>"inhibitory rate"</dt><dd data-testid="dyn-rate-inh">{format!("{ri:.2} Hz")}</dd>
        </dl>
        <figure data-testid="dyn-raster" data-spikes=r.spikes>
            <svg xmlns="http://www.w3.org/2000/svg" viewBox=format!("0 0 {w} {h}") width="100%" role="img"
                 aria-label="spike raster: time on x, neuron on y (excitatory below, inhibitory on top)">
                <rect x="0" y="0" width=w height=h fill="none" stroke="#ccc"/>
                <path d=paths[0].clone() stroke=LINE_COLOURS[0] stroke-width="1.4"/>
                <path d=paths[1].clone() stroke=LINE_COLOURS[1] stroke-width="1.4"/>
            </svg>
            <figcaption class="muted">{format!("spike raster over {} ms: excitatory (blue, bottom), inhibitory (vermillion, top)", r.pop_exc.len())}</figcaption>
            <p><button on:click=move |_| export_svg("dyn-raster")>"Export SVG"</button>" "
               <button on:click=move |_| download("raster.csv", "text/csv", &raster_csv)>"Export CSV"</button></p>
        </figure>
        <LinePlot series=pop x0=0.0 dx=5.0 xlabel="ms".to_string() ylabel="rate (Hz, 5 ms bins)".to_string() testid="dyn-pop-rate".to_string()/>
        {(!traces.is_empty()).then(|| view! {
            <LinePlot series=traces xlabel="ms".to_string() ylabel="membrane potential (mV)".to_string() testid="dyn-traces".to_string()/>
        })}
    }.into_any()
}

fn prediction_view(r: PredictionResult) -> impl IntoView {
    let shown = r.target.len().min(500);
    let series = vec![
        Series {
            name: "target".into(),
            values: r.target[..shown].to_vec(),
        },
        Series {
            name: "prediction".into(),
            values: r.prediction[..shown].to_vec(),
        },
    ];
    let balance = (!r.balance.is_empty()).then(|| {
        vec![
            Series {
                name: "excitatory input".into(),
                values: r.balance.iter().map(|b| b.0 as f64).collect(),
            },
            Series {
                name: "inhibitory input".into(),
                values: r.balance.iter().map(|b| b.1 as f64).collect(),
            },
        ]
    });
    let activity = vec![Series {
        name: "mean |state|".into(),
        values: r.activity.iter().map(|&v| v as f64).collect(),
    }];
    view! {
        <dl class="facts">
            <dt>"NRMSE (test)"</dt><dd data-testid="dyn-nrmse">{format!("{:.6}", r.nrmse)}</dd>
            <dt>"R² (test)"</dt><dd data-testid="dyn-r2">{format!("{:.6}", r.r2)}</dd>
        </dl>
        <LinePlot series=series xlabel="test step".to_string() ylabel="value".to_string() testid="dyn-prediction".to_string()/>
        <LinePlot series=activity xlabel="step".to_string() ylabel="activity".to_string() testid="dyn-activity".to_string()/>
        {balance.map(|b| view! { <LinePlot series=b xlabel="step".to_string() ylabel="mean recurrent input".to_string() testid="dyn-balance".to_string()/> })}
    }
}

fn memory_view(r: MemoryCapacityResult) -> impl IntoView {
    let curve = vec![Series {
        name: "r²(u(t−k), y_k(t))".into(),
        values: r.mc_k.clone(),
    }];
    view! {
        <dl class="facts">
            <dt>"memory capacity"</dt><dd data-testid="dyn-mc">{format!("{:.4}", r.mc)}</dd>
        </dl>
        <LinePlot series=curve x0=1.0 xlabel="delay k".to_string() ylabel="r²".to_string() testid="dyn-mc-curve".to_string()/>
    }
}

fn sweep_view(rows: Vec<EiSweepRow>) -> impl IntoView {
    let best = |f: fn(&EiSweepRow) -> Option<f64>| {
        rows.iter()
            .filter_map(|r| f(r).map(|v| (r.inhibition, v)))
            .fold(None, |b: Option<(f64, f64)>, x| match b {
                Some(b) if b.1 >= x.1 => Some(b),
                _ => Some(x),
            })
    };
    let bf = best(|r| Some(r.mc_fixed));
    let ba = best(|r| r.mc_adapted);
    let series = vec![
        Series {
            name: "fixed weights".into(),
            values: rows.iter().map(|r| r.mc_fixed).collect(),
        },
        Series {
            name: "self-adapted".into(),
            values: rows
                .iter()
                .map(|r| r.mc_adapted.unwrap_or(f64::NAN))
                .collect(),
        },
    ];
    view! {
        <table class="data" data-testid="dyn-sweep">
            <caption>"Memory capacity by inhibition ratio (1 = balanced)"</caption>
            <thead><tr><th scope="col">"inhibition / excitation"</th><th scope="col">"MC fixed"</th><th scope="col">"MC adapted"</th></tr></thead>
            <tbody>{rows.iter().map(|r| view! {
                <tr><th scope="row">{format!("{:.2}", r.inhibition)}</th><td>{format!("{:.3}", r.mc_fixed)}</td>
                    <td>{r.mc_adapted.map(|v| format!("{v:.3}")).unwrap_or_default()}</td></tr>
            }).collect_view()}</tbody>
        </table>
        {bf.map(|(i, v)| view! { <p data-testid="dyn-sweep-best">{format!("Best fixed: ratio {i:.2} (MC {v:.2}).")}
            {ba.map(|(ia, va)| format!(" Best adapted: ratio {ia:.2} (MC {va:.2})."))}</p> })}
        <LinePlot series=series xlabel="ratio index (see table)".to_string() ylabel="memory capacity".to_string() testid="dyn-sweep-plot".to_string()/>
    }
}

fn what_when_view(r: WhatWhenResult, spec: DynamicsSpec) -> impl IntoView {
    let DynamicsSpec::WhatWhen(s) = spec else {
        return view! { <p></p> }.into_any();
    };
    let classes = s.phases.first().map(|p| p.probabilities.len()).unwrap_or(0);
    let name = |c: usize| ((b'A' + c as u8) as char).to_string();
    let per_trial: Vec<Series> = (0..classes)
        .map(|c| Series {
            name: format!("readout {} in window", name(c)),
            values: r.trials.iter().map(|t| t.in_window[c]).collect(),
        })
        .chain((0..classes).map(|c| {
            Series {
                name: format!("P({})", name(c)),
                values: r
                    .trials
                    .iter()
                    .map(|t| {
                        s.phases
                            .get(t.phase)
                            .map(|p| p.probabilities[c])
                            .unwrap_or(f64::NAN)
                    })
                    .collect(),
            }
        }))
        .collect();
    let traces: Vec<Series> = r
        .last_traces
        .last()
        .map(|tr| {
            tr.iter()
                .enumerate()
                .map(|(c, v)| Series {
                    name: format!("readout {}", name(c)),
                    values: v.iter().map(|&x| x as f64).collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    view! {
        <table class="data" data-testid="dyn-whatwhen">
            <caption>"Learned magnitude (mean readout in the stimulus window, last quarter of each block) against the probability"</caption>
            <thead><tr><th scope="col">"block"</th>{(0..classes).map(|c| view! { <th scope="col">{format!("{} learned / P", name(c))}</th> }).collect_view()}</tr></thead>
            <tbody>{r.learned.iter().enumerate().map(|(p, l)| view! {
                <tr><th scope="row">{format!("{} (onset {} ms)", p + 1, s.phases.get(p).map(|x| x.when_ms).unwrap_or(0))}</th>
                {l.iter().enumerate().map(|(c, v)| view! { <td>{format!("{v:.3} / {:.2}", s.phases.get(p).map(|x| x.probabilities[c]).unwrap_or(f64::NAN))}</td> }).collect_view()}</tr>
            }).collect_view()}</tbody>
        </table>
        <LinePlot series=per_trial xlabel="trial".to_string() ylabel="readout in window".to_string() testid="dyn-whatwhen-trials".to_string()/>
        {(!traces.is_empty()).then(|| view! {
            <LinePlot series=traces xlabel="ms since cue (last trial)".to_string() ylabel="readout".to_string() testid="dyn-whatwhen-trace".to_string()/>
        })}
    }.into_any()
}
