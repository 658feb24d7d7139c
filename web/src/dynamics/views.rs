//! The Dynamics lab's result views: raster and traces, predictions, memory-capacity curves, E/I
//! sweeps, what/when trials.

use super::*;
use wasm_bindgen::JsCast;

/// `facts`: (device, milliseconds) of the run, for how it compares with real time.
pub(super) fn spiking_view(
    mut r: SpikingResult,
    spec: DynamicsSpec,
    facts: (String, f64),
) -> impl IntoView {
    let DynamicsSpec::Spiking(s) = spec else {
        return view! { <p></p> }.into_any();
    };
    let geometry = RasterGeometry {
        ms: s.ms.max(1) as f64,
        neurons: (s.excitatory + s.inhibitory).max(1) as f64,
        excitatory: s.excitatory,
    };
    // Up to a million spikes: drawn as pixels into a canvas, not as SVG (a streamed run redraws
    // every quarter second, and a path of every spike took the page's main thread 100-250 ms to
    // format and parse). The SVG export is made when asked for.
    let raster = std::rc::Rc::new(std::mem::take(&mut r.raster));
    let canvas = NodeRef::<leptos::html::Canvas>::new();
    Effect::new({
        let raster = raster.clone();
        move |_| {
            if let Some(c) = canvas.get() {
                draw_raster(&c, &raster, &geometry);
            }
        }
    });
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
    let raster_csv = {
        let raster = raster.clone();
        move || {
            let mut c = String::from("ms,neuron\n");
            for (t, j) in raster.iter() {
                c += &format!("{t},{j}\n");
            }
            c
        }
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
            <canvas node_ref=canvas class="raster" width=RASTER_PX.0 height=RASTER_PX.1 role="img"
                    aria-label="spike raster: time on x, neuron on y (excitatory below, inhibitory on top)"></canvas>
            <figcaption class="muted">{format!("spike raster over {} ms: excitatory (blue, bottom), inhibitory (vermillion, top)", r.pop_exc.len())}</figcaption>
            {r.raster_until_ms.map(|t| view! {
                <p class="notice" data-testid="dyn-raster-cut">{format!(
                    "The raster shows the first {t} ms: a run keeps at most {} spikes to draw. The spike count and the rates cover all {} ms.",
                    interplay_dynamics::spiking::RASTER_MAX, r.pop_exc.len()
                )}</p>
            })}
            <p><button on:click=move |_| download("dyn-raster.svg", "image/svg+xml", &raster_svg(&raster, &geometry))>"Export SVG"</button>" "
               <button on:click=move |_| download("raster.csv", "text/csv", &raster_csv())>"Export CSV"</button></p>
        </figure>
        <LinePlot series=pop x0=0.0 dx=5.0 xlabel="ms".to_string() ylabel="rate (Hz, 5 ms bins)".to_string() testid="dyn-pop-rate".to_string()/>
        {(!traces.is_empty()).then(|| view! {
            <LinePlot series=traces xlabel="ms".to_string() ylabel="membrane potential (mV)".to_string() testid="dyn-traces".to_string()/>
        })}
    }.into_any()
}

/// Where a raster's spikes go: the run's length and its neurons (excitatory first).
#[derive(Clone, Copy)]
struct RasterGeometry {
    ms: f64,
    neurons: f64,
    excitatory: usize,
}

impl RasterGeometry {
    /// Spike (`t` ms, neuron `j`) in a `w` × `h` box: time on x, neuron 0 at the bottom.
    fn at(&self, (t, j): (u32, u32), w: f64, h: f64) -> (f64, f64) {
        (t as f64 / self.ms * w, (1.0 - j as f64 / self.neurons) * h)
    }

    /// 0 for an excitatory neuron, 1 for an inhibitory one (their colours' index).
    fn population(&self, j: u32) -> usize {
        usize::from(j as usize >= self.excitatory)
    }
}

/// The raster canvas's size in pixels: twice the 640 × 300 the page shows, for sharp screens.
const RASTER_PX: (u32, u32) = (1280, 600);

/// Draw `raster` into `canvas`: a 2 × 2 pixel mark per spike in its population's colour on
/// white, set in one pixel buffer (a million spikes take a few ms; no drawing call per spike).
fn draw_raster(canvas: &web_sys::HtmlCanvasElement, raster: &[(u32, u32)], g: &RasterGeometry) {
    let (w, h) = (canvas.width() as usize, canvas.height() as usize);
    if w < 2 || h < 2 {
        return;
    }
    let colours = [rgb(LINE_COLOURS[0]), rgb(LINE_COLOURS[1])];
    let mut px = vec![255u8; w * h * 4];
    for &(t, j) in raster {
        let (x, y) = g.at((t, j), w as f64, h as f64);
        // Clamped so the first and last neurons and ms stay inside.
        let (x, y) = ((x as usize).min(w - 2), (y as usize).min(h - 2));
        let c = colours[g.population(j)];
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let i = ((y + dy) * w + x + dx) * 4;
            px[i..i + 3].copy_from_slice(&c);
        }
    }
    let put = || -> Result<(), wasm_bindgen::JsValue> {
        let ctx: web_sys::CanvasRenderingContext2d = canvas
            .get_context("2d")?
            .ok_or_else(|| wasm_bindgen::JsValue::from_str("no 2d canvas"))?
            .dyn_into()?;
        let img = web_sys::ImageData::new_with_u8_clamped_array_and_sh(
            wasm_bindgen::Clamped(&px),
            w as u32,
            h as u32,
        )?;
        ctx.put_image_data(&img, 0.0, 0.0)
    };
    if let Err(e) = put() {
        web_sys::console::warn_1(&format!("the raster could not be drawn: {e:?}").into());
    }
}

/// `#rrggbb` as bytes (black if malformed: the palette is ours).
fn rgb(hex: &str) -> [u8; 3] {
    let byte = |i: usize| {
        hex.get(i..i + 2)
            .and_then(|b| u8::from_str_radix(b, 16).ok())
            .unwrap_or(0)
    };
    [byte(1), byte(3), byte(5)]
}

/// The raster as a standalone SVG (vector: one path per population), for the export.
fn raster_svg(raster: &[(u32, u32)], g: &RasterGeometry) -> String {
    let (w, h) = (640.0, 300.0);
    let mut paths = [String::new(), String::new()];
    for &spike in raster {
        let (x, y) = g.at(spike, w, h);
        paths[g.population(spike.1)].push_str(&format!("M{x:.1},{y:.1}h1.2"));
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\">\
         <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"white\" stroke=\"#ccc\"/>\
         <path d=\"{}\" stroke=\"{}\" stroke-width=\"1.4\"/><path d=\"{}\" stroke=\"{}\" stroke-width=\"1.4\"/></svg>",
        paths[0], LINE_COLOURS[0], paths[1], LINE_COLOURS[1]
    )
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
