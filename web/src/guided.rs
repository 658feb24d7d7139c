//! Circuits lab: guided experiments. Each is a short text and a pre-filled setup that reproduces
//! a published finding on a bundled model or SmolLM2-135M-Instruct; the student then runs and
//! explores.

use leptos::prelude::*;

use interplay_lab::{PatchingSpec, Prompt, TokenRef};
use interplay_models::patching::PatchTarget;

/// A guided experiment's preset for the lab's panels.
#[derive(Clone, Debug, PartialEq)]
pub struct Preset {
    /// For the patching, ablation and path-patching panels.
    pub patching: Option<PatchingSpec>,
    /// For the prompt and analysis panels: (prompt, answer, wrong).
    pub prompt: Option<(String, String, String)>,
    /// Half-length for the head detectors.
    pub induction_half: Option<usize>,
}

struct Guide {
    id: &'static str,
    /// The model it runs on (`smollm2` or a bundled id).
    model: &'static str,
    title: &'static str,
    paper: &'static str,
    text: &'static str,
    preset: fn() -> Preset,
}

const GUIDES: &[Guide] = &[
    Guide {
        id: "ioi-bundled",
        model: "ioi-3l",
        title: "IOI on a tiny model (instant)",
        paper: "Wang et al. 2022, \"Interpretability in the Wild\"",
        text: "A 3-layer model trained by this project on IOI template sentences (its model card gives its \
               accuracy on name pairs it never saw; Mary and Tom are one). It loads in a blink, so sweeps \
               finish in seconds. Patch the residual stream: early layers carry the answer at the repeated \
               name, the last layers at the final position. Then patch head outputs to see which heads \
               move the name.",
        preset: || Preset {
            patching: Some(PatchingSpec::ioi_bundled()),
            prompt: Some((
                "When Mary and Tom went to the store, Tom gave a drink to".into(),
                "Mary".into(),
                "Tom".into(),
            )),
            induction_half: None,
        },
    },
    Guide {
        id: "induction-bundled",
        model: "induction-2l",
        title: "Induction heads in a 2-layer model (instant)",
        paper: "Olsson et al. 2022, \"In-context Learning and Induction Heads\"",
        text: "A 2-layer attention-only model trained by this project on word sequences with a repeated \
               stretch: it can only predict the repeat by induction. Score the heads: all four layer-1 heads \
               attend from a word to the word after its earlier copy, and the loss on the repeat falls from \
               about 7 to 0.2. The textbook circuit also has a previous-token head in layer 0; this model has \
               none that the detector sees. How does layer 1 know which word came before each earlier \
               position? The patching sweep changes the word after \"bell\" in the first copy; patch head \
               outputs position by position and look at layer 0's attention to find out.",
        preset: || Preset {
            patching: Some(PatchingSpec::induction_bundled()),
            prompt: Some((
                "cat moon ship rain fork owl bell tree cat moon ship rain fork owl bell".into(),
                "tree".into(),
                "van".into(),
            )),
            induction_half: Some(20),
        },
    },
    Guide {
        id: "ioi",
        model: "smollm2",
        title: "Indirect object identification",
        paper: "Wang et al. 2022, \"Interpretability in the Wild\"",
        text: "In \"When Mary and John went to the store, John gave a drink to\" the model should say \" Mary\": \
               the name that appears once. SmolLM2 puts \" Mary\" about 6 logits above \" John\". The corrupted \
               prompt repeats Mary instead, so its answer flips. Patch the residual stream from the clean run \
               into the corrupted one, layer by layer and position by position: early on the information sits \
               at the second name (position 9); from the middle layers on it has moved to the last position, \
               where the name movers read it. Then use head outputs and path patching to find which heads move it.",
        preset: || Preset {
            patching: Some(PatchingSpec::ioi_smollm2()),
            prompt: Some((
                "When Mary and John went to the store, John gave a drink to".into(),
                " Mary".into(),
                " John".into(),
            )),
            induction_half: None,
        },
    },
    Guide {
        id: "ioi-heads",
        model: "smollm2",
        title: "Which heads carry the name?",
        paper: "Wang et al. 2022; \"Circuit Component Reuse Across Tasks\" (Merullo et al. 2023)",
        text: "The same IOI pair, patching each head's output at all positions. A few late heads restore most \
               of the logit difference: candidate name movers. Knock them out in the ablation panel and watch \
               the logit difference fall; path-patch from earlier heads into their queries to find the heads \
               that tell them where to look.",
        preset: || Preset {
            patching: Some(PatchingSpec {
                target: PatchTarget::HeadOut,
                ..PatchingSpec::ioi_smollm2()
            }),
            prompt: None,
            induction_half: None,
        },
    },
    Guide {
        id: "induction",
        model: "smollm2",
        title: "Induction heads",
        paper: "Olsson et al. 2022; \"What needs to go right for an induction head?\"",
        text: "A random token sequence repeated twice: once the model has seen the first copy it can predict \
               the second by looking back to the token after the current one's earlier occurrence. SmolLM2's \
               loss falls from about 13 on the first half to about 2 on the repeated half. The scores show \
               which heads attend that way (induction), to the previous token, or to the earlier copy itself.",
        preset: || Preset {
            patching: None,
            prompt: None,
            induction_half: Some(50),
        },
    },
    Guide {
        id: "lens",
        model: "smollm2",
        title: "When does the model commit? (logit lens)",
        paper: "nostalgebraist 2020; \"Distributional Semantics Tracing\"",
        text: "Apply the final norm and unembedding to the residual stream after every layer and follow the \
               probability and rank of the right and the wrong answer. The layer where the eventual answer \
               overtakes for good is where the model commits. Try your own prompts where the model is wrong.",
        preset: || Preset {
            patching: Some(PatchingSpec {
                clean: Prompt::Text("The capital of France is".into()),
                corrupt: Prompt::Text("The capital of Italy is".into()),
                answer: TokenRef::Text(" Paris".into()),
                wrong: TokenRef::Text(" Rome".into()),
                ..PatchingSpec::ioi_smollm2()
            }),
            prompt: Some((
                "The capital of France is".into(),
                " Paris".into(),
                " Rome".into(),
            )),
            induction_half: None,
        },
    },
];

/// The guided experiments card.
#[component]
pub fn GuidedPanel(
    /// Where a chosen preset goes; the panels follow it.
    preset: RwSignal<Option<Preset>>,
    /// Called with a model key to load it when it is not the current model.
    load_model: Callback<String>,
) -> impl IntoView {
    let chosen = RwSignal::new(None::<&'static str>);
    view! {
        <section class="card" data-testid="guided" hidden=crate::share::hidden("guided")>
            <h2>"Guided experiments"</h2>
            <p class="muted">"Each sets up the lab to reproduce a published finding, on a tiny bundled model (instant) \
                or on SmolLM2-135M-Instruct. Read, press Set up, then run the panels below."</p>
            <div class="guides">
            {GUIDES.iter().map(|g| {
                let id = g.id;
                let make = g.preset;
                let model = g.model;
                view! {
                    <article class="guide" data-testid=format!("guide-{id}")>
                        <h3>{g.title}</h3>
                        <p class="muted"><em>{g.paper}</em></p>
                        {move || (chosen.get() == Some(id)).then(|| view! { <p>{GUIDES.iter().find(|x| x.id == id).map(|x| x.text)}</p> })}
                        <button data-testid=format!("guide-{id}-setup") on:click=move |_| {
                            chosen.set(Some(id));
                            preset.set(Some(make()));
                            if crate::models::current().map(|(_, i)| i.key != model).unwrap_or(true) {
                                load_model.run(model.to_string());
                            }
                        }>"Set up"</button>
                    </article>
                }
            }).collect_view()}
            </div>
        </section>
    }
}
