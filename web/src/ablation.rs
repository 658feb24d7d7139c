//! Circuits lab: head ablation (click heads, see the metric change) and path patching from
//! sender heads to receiver heads, on the clean/corrupted pair of the patching panel.

use leptos::prelude::*;
use leptos::task::spawn_local;

use interplay_lab::PatchingSpec;
use interplay_lab::ablation::{AblationKind, Head, ReceiverInput, Scores};
use interplay_lab::inspect::{Inspect, Inspection};

use crate::models;

/// `(clean, changed)` scores of an ablation or path patch, computed by the engine.
async fn scores(query: Inspect) -> Result<(Scores, Scores), String> {
    match models::ask(query).await? {
        (Inspection::Scores { clean, changed }, _) => Ok((clean, changed)),
        _ => Err("the engine answered with another result".into()),
    }
}

fn parse_heads(s: &str) -> Result<Vec<Head>, String> {
    s.split([',', ' '])
        .filter(|x| !x.trim().is_empty())
        .map(|x| {
            let x = x.trim().trim_start_matches(['L', 'l']);
            let (l, h) = x
                .split_once(['.', 'H', 'h'])
                .ok_or_else(|| format!("{x:?}: write heads as L.H, e.g. 9.6"))?;
            Ok((
                l.parse().map_err(|_| format!("{x:?}: bad layer"))?,
                h.parse().map_err(|_| format!("{x:?}: bad head"))?,
            ))
        })
        .collect()
}

fn scores_view(label: &'static str, s: &Scores, testid: &'static str) -> impl IntoView {
    view! {
        <tr data-testid=testid data-logit-diff=s.logit_diff data-kl=s.kl>
            <th scope="row">{label}</th>
            <td>{format!("{:.4}", s.logit_diff)}</td>
            <td>{format!("{:.2}%", s.probability * 100.0)}</td>
            <td>{format!("{:.4}", s.kl)}</td>
        </tr>
    }
}

/// Head ablation and path patching.
#[component]
pub fn AblationPanel(
    /// The experiment's current spec (prompts and tokens).
    spec: Signal<PatchingSpec>,
) -> impl IntoView {
    let ablated = RwSignal::new(Vec::<Head>::new());
    let kind = RwSignal::new(AblationKind::Zero);
    let result = RwSignal::new(None::<Result<(Scores, Scores), String>>);
    let shape = RwSignal::new(None::<(usize, usize)>);
    let busy = RwSignal::new(false);
    let runs = RwSignal::new(0u32);
    // Clicks do not wait for the engine: only the latest question's answer is shown.
    let asked = StoredValue::new(0u32);

    let rerun = move || {
        busy.set(true);
        let s = spec.get_untracked();
        let heads = ablated.get_untracked();
        let k = kind.get_untracked();
        let n = asked.get_value() + 1;
        asked.set_value(n);
        spawn_local(async move {
            let r = match models::info() {
                None => Err("load a model first".to_string()),
                Some(i) => {
                    shape.set(Some((i.n_layers, i.n_heads)));
                    scores(Inspect::Ablate {
                        spec: s,
                        heads,
                        kind: k,
                    })
                    .await
                }
            };
            // The newest question only, and only while the panel exists.
            if asked.try_get_value() == Some(n) {
                result.set(Some(r));
                runs.update(|n| *n += 1);
                busy.set(false);
            }
        });
    };

    let toggle = move |h: Head| {
        ablated.update(|v| {
            if let Some(i) = v.iter().position(|x| *x == h) {
                v.remove(i);
            } else {
                v.push(h);
            }
        });
        rerun();
    };

    // Path patching.
    let senders = RwSignal::new(String::new());
    let receivers = RwSignal::new(String::new());
    let (q, k, v) = (
        RwSignal::new(true),
        RwSignal::new(true),
        RwSignal::new(true),
    );
    let pp = RwSignal::new(None::<Result<(Scores, Scores), String>>);
    let pp_runs = RwSignal::new(0u32);
    let pp_busy = RwSignal::new(false);
    let run_pp = move |_| {
        pp_busy.set(true);
        let s = spec.get_untracked();
        let (sn, rc) = (senders.get_untracked(), receivers.get_untracked());
        let mut inputs = Vec::new();
        if q.get_untracked() {
            inputs.push(ReceiverInput::Q)
        }
        if k.get_untracked() {
            inputs.push(ReceiverInput::K)
        }
        if v.get_untracked() {
            inputs.push(ReceiverInput::V)
        }
        spawn_local(async move {
            let r = match (parse_heads(&sn), parse_heads(&rc)) {
                (Ok(senders), Ok(receivers)) => {
                    scores(Inspect::PathPatch {
                        spec: s,
                        senders,
                        receivers,
                        inputs,
                    })
                    .await
                }
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
            pp.set(Some(r));
            pp_runs.update(|n| *n += 1);
            pp_busy.set(false);
        });
    };

    // Its heads and paths are not part of the share link, so a locked embed (`lock=1`) has
    // nothing of the author's to show here and nothing the reader may change: it is hidden.
    let hidden = crate::share::hidden("ablation") || crate::share::locked();
    view! {
        <section class="card" data-testid="ablation" hidden=hidden>
            <h2>"Head ablation"</h2>
            <p class="muted">"Click heads to knock them out on the clean prompt; the scores update at once. \
                Zero sets a head's output to 0, mean uses its average over the clean and corrupted prompts, \
                resample uses its output on the corrupted prompt."</p>
            <label>"ablation "<select data-testid="ablation-kind" on:change=move |ev| {
                kind.set(match event_target_value(&ev).as_str() { "mean" => AblationKind::Mean, "resample" => AblationKind::Resample, _ => AblationKind::Zero });
                rerun();
            }>
                <option value="zero">"zero"</option><option value="mean">"mean"</option><option value="resample">"resample"</option>
            </select></label>
            " "
            <button data-testid="ablation-start" on:click=move |_| rerun() prop:disabled=move || busy.get()>"Show heads"</button>
            " "
            <button on:click=move |_| { ablated.set(vec![]); rerun(); }>"Clear"</button>
            {move || shape.get().map(|(n, h)| view! {
                <div class="headgrid" role="grid" aria-label="heads: click to ablate" data-testid="head-grid"
                     style=format!("grid-template-columns: 3rem repeat({h}, 1.6rem)")>
                    {(0..n).map(|l| view! {
                        <span class="muted">{format!("L{l}")}</span>
                        {(0..h).map(|hh| view! {
                            <button class="head" data-testid=format!("head-{l}-{hh}")
                                aria-pressed=move || ablated.get().contains(&(l, hh)).to_string()
                                aria-label=format!("layer {l} head {hh}")
                                title=format!("L{l}H{hh}") on:click=move |_| toggle((l, hh))>{hh}</button>
                        }).collect_view()}
                    }).collect_view()}
                </div>
            })}
            <div data-testid="ablation-status" data-seq=move || runs.get()>
            <crate::speclab::Announce what="Head ablation" busy=busy outcome=result/>
            {move || result.get().map(|r| match r {
                Err(e) => view! { <p class="error" role="alert" data-testid="ablation-error">{e}</p> }.into_any(),
                Ok((c, a)) => view! {
                    <table class="data"><thead><tr><th></th><th>"logit diff"</th><th>"p(answer)"</th><th>"KL to clean"</th></tr></thead>
                    <tbody>{scores_view("clean", &c, "ablation-clean")}{scores_view("ablated", &a, "ablation-ablated")}</tbody></table>
                }.into_any(),
            })}
            </div>
            <h2>"Path patching"</h2>
            <p class="muted">"The senders' outputs from the corrupted run reach only the receivers' chosen inputs; \
                every other path keeps its clean value (Wang et al. 2022). Heads as layer.head, e.g. 9.6, 10.0."</p>
            <div class="grid2">
                <label>"sender heads"<input type="text" data-testid="pp-senders" prop:value=move || senders.get() on:input=move |ev| senders.set(event_target_value(&ev))/></label>
                <label>"receiver heads"<input type="text" data-testid="pp-receivers" prop:value=move || receivers.get() on:input=move |ev| receivers.set(event_target_value(&ev))/></label>
            </div>
            <label><input type="checkbox" prop:checked=move || q.get() on:change=move |ev| q.set(event_target_checked(&ev))/>" queries"</label>" "
            <label><input type="checkbox" prop:checked=move || k.get() on:change=move |ev| k.set(event_target_checked(&ev))/>" keys"</label>" "
            <label><input type="checkbox" prop:checked=move || v.get() on:change=move |ev| v.set(event_target_checked(&ev))/>" values"</label>" "
            <button data-testid="pp-run" on:click=run_pp prop:disabled=move || pp_busy.get()>"Path-patch"</button>
            <div data-testid="pp-status" data-seq=move || pp_runs.get()>
            <crate::speclab::Announce what="Path patching" busy=pp_busy outcome=pp/>
            {move || pp.get().map(|r| match r {
                Err(e) => view! { <p class="error" role="alert" data-testid="pp-error">{e}</p> }.into_any(),
                Ok((c, a)) => view! {
                    <table class="data"><thead><tr><th></th><th>"logit diff"</th><th>"p(answer)"</th><th>"KL to clean"</th></tr></thead>
                    <tbody>{scores_view("clean", &c, "pp-clean")}{scores_view("path-patched", &a, "pp-patched")}</tbody></table>
                }.into_any(),
            })}
            </div>
        </section>
    }
}
