//! The Dynamics lab's result views: raster and traces, predictions, memory-capacity curves, E/I
//! sweeps, what/when trials.

use super::*;

/// `facts`: (device, milliseconds) of the run, for how it compares with real time.
pub(super) fn spiking_view(
    r: SpikingResult,
    spec: DynamicsSpec,
    facts: (String, f64),
) -> impl IntoView {
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
    // Made when asked for: a streamed raster redraws often.
    let raster = r.raster.clone();
    let raster_csv = move || {
        let mut c = String::from("ms,neuron\n");
        for (t, j) in &raster {
            c += &format!("{t},{j}\n");
        }
        c
    };
    // Only a finished run says how it kept up (a streamed part has no time yet). The time is
    // the engine's, pauses left out, drawing the network and compiling kernels included.
    let simulated = r.pop_exc.len() as f64;
    let realtime = (facts.1 > 0.0 && simulated >= s.ms as f64).then(|| {
        let (device, took) = facts;
        let x = simulated / took;
        if x >= 1.0 {
            format!(
                "{x:.1}× real time on {device}: {simulated:.0} ms of network in {took:.0} ms, \
                 set-up included"
            )
        } else {
            // Rounded down: 0.996 must not read "slower than real time (1.00×)".
            let x = (x * 100.0).floor() / 100.0;
            format!(
                "slower than real time on {device} ({x:.2}×): {simulated:.0} ms of network took \
                 {:.1} s, set-up included",
                took / 1000.0
            )
        }
    });
    view! {
        {realtime.map(|t| view! { <p data-testid="dyn-realtime">{t}</p> })}
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
            {r.raster_until_ms.map(|t| view! {
                <p class="notice" data-testid="dyn-raster-cut">{format!(
                    "The raster shows the first {t} ms: a run keeps at most {} spikes to draw. The spike count and the rates cover all {} ms.",
                    interplay_dynamics::spiking::RASTER_MAX, r.pop_exc.len()
                )}</p>
            })}
            <p><button on:click=move |_| export_svg("dyn-raster")>"Export SVG"</button>" "
               <button on:click=move |_| download("raster.csv", "text/csv", &raster_csv())>"Export CSV"</button></p>
        </figure>
        <LinePlot series=pop x0=0.0 dx=5.0 xlabel="ms".to_string() ylabel="rate (Hz, 5 ms bins)".to_string() testid="dyn-pop-rate".to_string()/>
        {(!traces.is_empty()).then(|| view! {
            <LinePlot series=traces xlabel="ms".to_string() ylabel="membrane potential (mV)".to_string() testid="dyn-traces".to_string()/>
        })}
    }.into_any()
}

pub(super) fn prediction_view(r: PredictionResult) -> impl IntoView {
    // Every test step (the plot decimates long series; the table and CSV keep every value).
    let series = vec![
        Series {
            name: "target".into(),
            values: r.target.clone(),
        },
        Series {
            name: "prediction".into(),
            values: r.prediction.clone(),
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

pub(super) fn memory_view(r: MemoryCapacityResult) -> impl IntoView {
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

pub(super) fn sweep_view(rows: Vec<EiSweepRow>) -> impl IntoView {
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
    // Plotted against the ratio itself, in order, whatever order the ratios were given in.
    let mut sorted: Vec<&EiSweepRow> = rows.iter().collect();
    sorted.sort_by(|a, b| a.inhibition.total_cmp(&b.inhibition));
    let ratios: Vec<f64> = sorted.iter().map(|r| r.inhibition).collect();
    let series = vec![
        Series {
            name: "fixed weights".into(),
            values: sorted.iter().map(|r| r.mc_fixed).collect(),
        },
        Series {
            name: "self-adapted".into(),
            values: sorted
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
        <LinePlot series=series xs=ratios xlabel="inhibition / excitation (1 = balanced)".to_string() ylabel="memory capacity".to_string() testid="dyn-sweep-plot".to_string()/>
    }
}

pub(super) fn what_when_view(r: WhatWhenResult, spec: DynamicsSpec) -> impl IntoView {
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
