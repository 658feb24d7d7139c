//! Circuits lab: analysis views of one prompt — attention patterns, logit lens, direct logit
//! attribution — and head detectors on repeated random tokens. Each has hover values and a data
//! table (through [`Heatmap`]) and exports its numbers.

use leptos::prelude::*;
use leptos::task::spawn_local;

use interplay_lab::circuits::HeadScores;
use interplay_lab::inspect::{Analysis, Inspect, Inspection};
use interplay_lab::{Prompt, TokenRef};

use crate::models;
use crate::plots::{Heatmap, download};

/// A token box: empty (none), a number (an id) or text (must be one token).
fn token_ref(t: &str) -> Option<TokenRef> {
    if t.trim().is_empty() {
        return None;
    }
    Some(match t.trim().parse::<u32>() {
        Ok(i) => TokenRef::Id(i),
        Err(_) => TokenRef::Text(t.to_string()),
    })
}

/// Analyse `prompt` in the engine.
async fn analyse(prompt: Prompt, answer: String, wrong: String) -> Result<Analysis, String> {
    let query = Inspect::Analyse {
        prompt,
        answer: token_ref(&answer),
        wrong: token_ref(&wrong),
    };
    match models::ask(query).await? {
        (Inspection::Analysis(a), _) => Ok(*a),
        _ => Err("the engine answered with another result".into()),
    }
}

/// Views of one prompt.
#[component]
pub fn AnalysisPanel(
    /// The prompt text or ids, shared with the prompt box.
    prompt: RwSignal<String>,
    /// Ids typed instead of text.
    ids_text: RwSignal<String>,
    /// A guided experiment's setup.
    preset: RwSignal<Option<crate::guided::Preset>>,
) -> impl IntoView {
    let answer = RwSignal::new(" Mary".to_string());
    let wrong = RwSignal::new(" John".to_string());
    Effect::new(move |_| {
        if let Some(crate::guided::Preset {
            prompt: Some((_, a, w)),
            ..
        }) = preset.get()
        {
            answer.set(a);
            wrong.set(w);
        }
    });
    let busy = RwSignal::new(false);
    let result = RwSignal::new(None::<Result<Analysis, String>>);
    let runs = RwSignal::new(0u32);
    let layer = RwSignal::new(0usize);
    let head = RwSignal::new(0usize);

    let run = move |_| {
        busy.set(true);
        let p = if ids_text.get_untracked().trim().is_empty() {
            Prompt::Text(prompt.get_untracked())
        } else {
            let ids: Result<Vec<u32>, _> = ids_text
                .get_untracked()
                .split(',')
                .map(|x| x.trim().parse::<u32>())
                .collect();
            match ids {
                Ok(ids) => Prompt::Ids(ids),
                Err(e) => {
                    result.set(Some(Err(format!("token ids must be numbers: {e}"))));
                    runs.update(|n| *n += 1);
                    busy.set(false);
                    return;
                }
            }
        };
        let (a, w) = (answer.get_untracked(), wrong.get_untracked());
        spawn_local(async move {
            let r = analyse(p, a, w).await;
            // The panel may be gone (the user left the lab while the engine computed).
            let Some(l) = layer.try_get_untracked() else {
                return;
            };
            if let Ok(an) = &r {
                layer.set(l.min(an.patterns.shape[0].saturating_sub(1)));
                head.set(0);
            }
            result.set(Some(r));
            runs.update(|n| *n += 1);
            busy.set(false);
        });
    };

    view! {
        <section class="card" data-testid="analysis" hidden=crate::share::hidden("analysis")>
            <h2>"Inside one prompt"</h2>
            <p class="muted">"Attention patterns, the logit lens (what the residual stream would predict after each layer) and \
                direct logit attribution (how much each head and MLP writes toward the answer rather than the wrong token)."</p>
            <div class="grid2">
                <label>"Answer token"<input type="text" data-testid="analysis-answer" prop:value=move || answer.get() on:input=move |ev| answer.set(event_target_value(&ev))/></label>
                <label>"Wrong token"<input type="text" data-testid="analysis-wrong" prop:value=move || wrong.get() on:input=move |ev| wrong.set(event_target_value(&ev))/></label>
            </div>
            <p><button data-testid="analysis-run" on:click=run prop:disabled=move || busy.get()>"Analyse the prompt"</button></p>
            <div data-testid="analysis-status" data-seq=move || runs.get()
                 data-state=move || match (busy.get(), result.get()) {
                     (true, _) => "running", (false, None) => "idle",
                     (false, Some(Ok(_))) => "done", (false, Some(Err(_))) => "error" }>
            <crate::speclab::Announce what="Analysis" busy=busy outcome=result/>
            {move || result.get().map(|r| match r {
                Err(e) => view! { <p class="error" role="alert" data-testid="analysis-error">{e}</p> }.into_any(),
                Ok(an) => {
                    let [n_layers, n_heads, _, _] = an.patterns.shape;
                    let an2 = an.clone();
                    let attention = move || {
                        let (l, h) = (layer.get().min(n_layers.saturating_sub(1)), head.get().min(n_heads.saturating_sub(1)));
                        let values = an2.patterns.head(l, h);
                        view! { <Heatmap rows=an2.tokens.clone() cols=an2.tokens.clone() values=values
                                  what=format!("attention of L{l}H{h}, query (row) → key (column)") testid="attention-map".to_string()/> }
                    };
                    let lens_rows: Vec<String> = (0..an.lens.top.len()).map(|l| if l + 1 == an.lens.top.len() { "output".into() } else { format!("L{l} in") }).collect();
                    let lens_vals: Vec<Vec<f32>> = an.lens.tracked.iter().map(|r| r.iter().map(|(p, _)| *p).collect()).collect();
                    let lens_json = serde_json::to_string(&an.lens).unwrap_or_default();
                    let dla_json = an.dla.as_ref().map(|d| serde_json::to_string(d).unwrap_or_default());
                    view! {
                        <h3>"Attention patterns"</h3>
                        {
                            // Overview: every layer × head, attention from the last position to a chosen key.
                            let key = RwSignal::new(an.tokens.len().saturating_sub(1));
                            let an3 = an.clone();
                            let overview = move || {
                                let k = key.get().min(an3.tokens.len().saturating_sub(1));
                                let q = an3.tokens.len().saturating_sub(1);
                                let vals: Vec<Vec<f32>> = (0..n_layers)
                                    .map(|l| (0..n_heads).map(|h| an3.patterns.get(l, h, q, k)).collect())
                                    .collect();
                                view! {
                                    <Heatmap rows=(0..n_layers).map(|l| format!("L{l}")).collect() cols=(0..n_heads).map(|h| format!("H{h}")).collect()
                                        values=vals what=format!("attention from the last token to {}", an3.tokens.get(k).cloned().unwrap_or_default())
                                        testid="attention-overview".to_string()
                                        on_cell=Callback::new(move |(l, h): (usize, usize)| { layer.set(l); head.set(h); })/>
                                }
                            };
                            view! {
                                <label>"overview: attention from the last token to "<select data-testid="attention-key" on:change=move |ev| key.set(event_target_value(&ev).parse().unwrap_or(0))>
                                    {an.tokens.iter().enumerate().map(|(i, t)| view! { <option value=i selected=i + 1 == an.tokens.len()>{t.clone()}</option> }).collect_view()}
                                </select></label>
                                <p class="muted">"Click a head to see its full pattern below."</p>
                                {overview}
                            }
                        }
                        <label>"layer "<select data-testid="attention-layer" on:change=move |ev| layer.set(event_target_value(&ev).parse().unwrap_or(0))>
                            {(0..n_layers).map(|l| view! { <option value=l selected=move || layer.get() == l>{format!("L{l}")}</option> }).collect_view()}
                        </select></label>
                        " "
                        <label>"head "<select data-testid="attention-head" on:change=move |ev| head.set(event_target_value(&ev).parse().unwrap_or(0))>
                            {(0..n_heads).map(|h| view! { <option value=h selected=move || head.get() == h>{format!("H{h}")}</option> }).collect_view()}
                        </select></label>
                        {attention}
                        <h3>"Logit lens"</h3>
                        <table class="data" data-testid="logit-lens">
                            <thead><tr><th>"layer"</th><th>"top predictions"</th>
                                {an.lens_labels.iter().map(|t| view! { <th>{format!("p({t}) / rank")}</th> }).collect_view()}</tr></thead>
                            <tbody>{an.lens.top.iter().zip(&an.lens.tracked).zip(&lens_rows).enumerate().map(|(row, ((top, tr), l))| view! {
                                <tr><th scope="row">{l.clone()}</th>
                                    // Words where the tokenizer has them; the id on hover (and alone without one).
                                    <td>{top.iter().enumerate().map(|(k, (id, p))| {
                                        let word = an.lens_top_words.get(row).and_then(|w| w.get(k));
                                        let label = word.cloned().unwrap_or_else(|| format!("#{id}"));
                                        view! { <span title=format!("token #{id}")>{format!("{label} {:.1}%", p * 100.0)}</span> }
                                    }).collect::<Vec<_>>().into_iter().enumerate().map(|(k, v)| view! { {(k > 0).then_some(", ")}{v} }).collect_view()}</td>
                                    {tr.iter().map(|(p, r)| view! { <td>{format!("{:.2}% / {r}", p * 100.0)}</td> }).collect_view()}
                                </tr>
                            }).collect_view()}</tbody>
                        </table>
                        {(an.lens_labels.len() == 2 && an.dla.is_some()).then(|| {
                            // Where this run commits, from its own lens (the answer is tracked first).
                            let (ahead, top) = an.lens.commit();
                            let (a, w) = (&an.lens_labels[0], &an.lens_labels[1]);
                            let at = |r: usize| lens_rows.get(r).cloned().unwrap_or_default();
                            let text = match ahead {
                                Some(r) => format!("This run: {a} is more probable than {w} from row “{}” to the output{}.", at(r),
                                    top.map(|t| format!(", and the top prediction from row “{}”", at(t)))
                                        .unwrap_or_else(|| format!("; {a} is not the top prediction at the output"))),
                                None => format!("This run: at the output {a} is not more probable than {w}: the model prefers {w} here."),
                            };
                            view! { <p data-testid="lens-commit" data-from=ahead.map(|r| r.to_string()).unwrap_or_default()>{text}</p> }
                        })}
                        {(!an.lens_labels.is_empty()).then(|| view! {
                            <Heatmap rows=lens_rows.clone() cols=an.lens_labels.clone() values=lens_vals.clone()
                                     what="probability under the logit lens".to_string() testid="lens-map".to_string()/>
                        })}
                        <p><button on:click=move |_| download("logit-lens.json", "application/json", &lens_json)>"Export logit lens JSON"</button></p>
                        {an.dla.clone().map(|d| {
                            let rows: Vec<String> = (0..d.heads.len()).map(|l| format!("L{l}")).collect();
                            let mut cols: Vec<String> = (0..d.heads.first().map(Vec::len).unwrap_or(0)).map(|h| format!("H{h}")).collect();
                            cols.push("MLP".into());
                            let vals: Vec<Vec<f32>> = d.heads.iter().zip(&d.mlps).map(|(h, m)| { let mut r = h.clone(); r.push(*m); r }).collect();
                            let sum: f32 = vals.iter().flatten().sum::<f32>() + d.embed + d.biases;
                            let js = dla_json.clone().unwrap_or_default();
                            view! {
                                <h3>"Direct logit attribution"</h3>
                                <p class="muted" data-testid="dla-total" data-total=d.total data-sum=sum>
                                    {format!("{}: model {:.4}; components sum to {:.4} (embedding {:.4}, biases {:.4})", an.answer_label, d.total, sum, d.embed, d.biases)}
                                </p>
                                <Heatmap rows=rows cols=cols values=vals what="direct logit attribution".to_string() testid="dla-map".to_string()/>
                                <p><button on:click=move |_| download("dla.json", "application/json", &js)>"Export attribution JSON"</button></p>
                            }
                        })}
                    }.into_any()
                }
            })}
            </div>
        </section>
    }
}

/// Head detectors on repeated random tokens.
#[component]
pub fn HeadScoresPanel(
    /// A guided experiment's setup.
    preset: RwSignal<Option<crate::guided::Preset>>,
) -> impl IntoView {
    let half = RwSignal::new(20usize);
    Effect::new(move |_| {
        if let Some(crate::guided::Preset {
            induction_half: Some(h),
            ..
        }) = preset.get()
        {
            half.set(h);
        }
    });
    let seed = RwSignal::new(0u64);
    let busy = RwSignal::new(false);
    let result = RwSignal::new(None::<Result<HeadScores, String>>);
    let runs = RwSignal::new(0u32);
    let run = move |_| {
        busy.set(true);
        let (h, s) = (half.get_untracked(), seed.get_untracked());
        spawn_local(async move {
            let r = match models::ask(Inspect::HeadScores { half: h, seed: s }).await {
                Ok((Inspection::HeadScores(s), _)) => Ok(s),
                Ok(_) => Err("the engine answered with another result".into()),
                Err(e) => Err(e),
            };
            result.set(Some(r));
            runs.update(|n| *n += 1);
            busy.set(false);
        });
    };
    view! {
        <section class="card" data-testid="head-scores" hidden=crate::share::hidden("head-scores")>
            <h2>"Induction, previous-token and duplicate-token heads"</h2>
            <p class="muted">"A seeded random sequence is repeated twice. Induction heads attend from a token to the one after its \
                earlier copy; when they work, the loss on the second half falls far below the first."</p>
            <label>"length of each half "<input type="number" min="2" max="256" data-testid="scores-half" prop:value=move || half.get().to_string()
                on:input=move |ev| half.set(event_target_value(&ev).parse().unwrap_or(20))/></label>
            " "
            <label>"seed "<input type="number" data-testid="scores-seed" prop:value=move || seed.get().to_string()
                on:input=move |ev| seed.set(event_target_value(&ev).parse().unwrap_or(0))/></label>
            " "
            <button data-testid="scores-run" on:click=run prop:disabled=move || busy.get()>"Score heads"</button>
            <div data-testid="scores-status" data-seq=move || runs.get()
                 data-state=move || match (busy.get(), result.get()) {
                     (true, _) => "running", (false, None) => "idle",
                     (false, Some(Ok(_))) => "done", (false, Some(Err(_))) => "error" }>
            <crate::speclab::Announce what="Head scores" busy=busy outcome=result/>
            {move || result.get().map(|r| match r {
                Err(e) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
                Ok(s) => {
                    let rows: Vec<String> = (0..s.induction.len()).map(|l| format!("L{l}")).collect();
                    let cols: Vec<String> = (0..s.induction.first().map(Vec::len).unwrap_or(0)).map(|h| format!("H{h}")).collect();
                    let js = serde_json::to_string(&s).unwrap_or_default();
                    view! {
                        <p data-testid="scores-loss" data-first=s.loss_first data-second=s.loss_second>
                            {format!("loss on the first half {:.2}, on the repeated half {:.2}: {}", s.loss_first, s.loss_second,
                                if s.loss_second < s.loss_first {
                                    format!("{:.1}× lower on the repeat, as a model with induction heads should be (Olsson et al. 2022)", s.loss_first / s.loss_second.max(1e-9))
                                } else {
                                    "not lower on the repeat: this model shows no in-context copying here".to_string()
                                })}</p>
                        // One colour scale for the three maps (scores are attention fractions, 0–1), so they compare.
                        <Heatmap rows=rows.clone() cols=cols.clone() values=s.induction.clone() scale=Some(1.0) what="induction score".to_string() testid="induction-map".to_string()/>
                        <Heatmap rows=rows.clone() cols=cols.clone() values=s.previous.clone() scale=Some(1.0) what="previous-token score".to_string() testid="previous-map".to_string()/>
                        <Heatmap rows=rows cols=cols values=s.duplicate.clone() scale=Some(1.0) what="duplicate-token score".to_string() testid="duplicate-map".to_string()/>
                        <p><button on:click=move |_| download("head-scores.json", "application/json", &js)>"Export JSON"</button></p>
                    }.into_any()
                }
            })}
            </div>
        </section>
    }
}
