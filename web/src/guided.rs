//! Circuits lab: guided experiments. Each is a short text and a pre-filled setup that reproduces
//! a published finding on a bundled model or SmolLM2-135M-Instruct; the student then runs and
//! explores.

use leptos::prelude::*;

use interplay_lab::clamp::ClampSpec;
use interplay_lab::edges::EdgeSpec;
use interplay_lab::neurons::NeuronsSpec;
use interplay_lab::recall::RecallSpec;
use interplay_lab::reuse::ReuseSpec;
use interplay_lab::subspace::SubspaceSpec;
use interplay_lab::{LabKind, PatchingSpec, Prompt, TokenRef};
use interplay_models::patching::PatchTarget;

/// A guided experiment's preset for the lab's panels (what it leaves out: nothing set).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Preset {
    /// For the patching, ablation and path-patching panels.
    pub patching: Option<PatchingSpec>,
    /// The patching panel estimates with attribution patching, beside its sweep.
    pub attribution: bool,
    /// For the prompt and analysis panels: (prompt, answer, wrong).
    pub prompt: Option<(String, String, String)>,
    /// Half-length for the head detectors.
    pub induction_half: Option<usize>,
    /// For the relation-specific neurons panel.
    pub neurons: Option<NeuronsSpec>,
    /// For the circuit-reuse panel.
    pub reuse: Option<ReuseSpec>,
    /// For the recall-vs-reasoning panel.
    pub recall: Option<RecallSpec>,
    /// For the edge-attribution panel.
    pub edges: Option<EdgeSpec>,
    /// For the clamped-training panel.
    pub clamp: Option<ClampSpec>,
    /// For the subspace-patching panel.
    pub subspace: Option<SubspaceSpec>,
}

struct Guide {
    id: &'static str,
    /// The model it runs on (`smollm2` or a bundled id).
    model: &'static str,
    title: &'static str,
    paper: &'static str,
    preset: fn() -> Preset,
}

const GUIDES: &[Guide] = &[
    Guide {
        id: "ioi-bundled",
        model: "ioi-3l",
        title: "IOI on a tiny model (instant)",
        paper: "Wang et al. 2022, \"Interpretability in the Wild\"",
        preset: || Preset {
            patching: Some(PatchingSpec::ioi_bundled()),
            prompt: Some((
                "When Mary and Tom went to the store, Tom gave a drink to".into(),
                "Mary".into(),
                "Tom".into(),
            )),
            ..Preset::default()
        },
    },
    Guide {
        id: "induction-bundled",
        model: "induction-2l",
        title: "Induction heads in a 2-layer model (instant)",
        paper: "Olsson et al. 2022, \"In-context Learning and Induction Heads\"",
        preset: || Preset {
            patching: Some(PatchingSpec::induction_bundled()),
            prompt: Some((
                "cat moon ship rain fork owl bell tree cat moon ship rain fork owl bell".into(),
                "tree".into(),
                "van".into(),
            )),
            induction_half: Some(20),
            ..Preset::default()
        },
    },
    Guide {
        id: "ioi",
        model: "smollm2",
        title: "Indirect object identification",
        paper: "Wang et al. 2022, \"Interpretability in the Wild\"",
        preset: || Preset {
            patching: Some(PatchingSpec::ioi_smollm2()),
            prompt: Some((
                "When Mary and John went to the store, John gave a drink to".into(),
                " Mary".into(),
                " John".into(),
            )),
            ..Preset::default()
        },
    },
    Guide {
        id: "ioi-heads",
        model: "smollm2",
        title: "Which heads carry the name?",
        paper: "Wang et al. 2022; \"Circuit Component Reuse Across Tasks\" (Merullo et al. 2023)",
        preset: || Preset {
            patching: Some(PatchingSpec {
                target: PatchTarget::HeadOut,
                ..PatchingSpec::ioi_smollm2()
            }),
            ..Preset::default()
        },
    },
    Guide {
        id: "attribution",
        model: "smollm2",
        title: "Every patch from one backward pass (attribution patching)",
        paper: "Nanda 2023, \"Attribution Patching\"; Syed et al. 2023, \"Attribution Patching Outperforms Automated Circuit Discovery\"",
        preset: || Preset {
            attribution: true,
            patching: Some(PatchingSpec {
                target: PatchTarget::HeadOut,
                ..PatchingSpec::ioi_smollm2()
            }),
            ..Preset::default()
        },
    },
    Guide {
        id: "edges",
        model: "smollm2",
        title: "The circuit's edges (EAP-IG)",
        paper: "Syed et al. 2023 (EAP); Hanna, Pezzelle and Belinkov 2024, \"Have Faith in Faithfulness\" (EAP-IG)",
        preset: || Preset {
            edges: Some(EdgeSpec::ioi_smollm2()),
            ..Preset::default()
        },
    },
    Guide {
        id: "clamp",
        model: "induction-2l",
        title: "What needs to go right for an induction head? (clamping during training)",
        paper: "Singh et al. 2024, \"What needs to go right for an induction head?\"",
        preset: || Preset {
            clamp: Some(ClampSpec::previous_token_guided()),
            ..Preset::default()
        },
    },
    Guide {
        id: "subspace",
        model: "ioi-3l",
        title: "Is this the subspace you are looking for? (DAS and its illusion)",
        paper: "Makelov, Lange and Nanda 2023, \"Is This the Subspace You Are Looking for?\"",
        preset: || Preset {
            subspace: Some(SubspaceSpec::guided()),
            ..Preset::default()
        },
    },
    Guide {
        id: "subspace-smollm2",
        model: "smollm2",
        title: "The illusion on SmolLM2: a direction that works through a dormant pathway (DAS)",
        paper: "Makelov, Lange and Nanda 2023, \"Is This the Subspace You Are Looking for?\"",
        preset: || Preset {
            subspace: Some(SubspaceSpec::smollm2()),
            ..Preset::default()
        },
    },
    Guide {
        id: "induction",
        model: "smollm2",
        title: "Induction heads",
        paper: "Olsson et al. 2022; \"What needs to go right for an induction head?\"",
        preset: || Preset {
            induction_half: Some(50),
            ..Preset::default()
        },
    },
    Guide {
        id: "lens",
        model: "smollm2",
        title: "When does the model commit? (logit lens)",
        paper: "nostalgebraist 2020; \"Distributional Semantics Tracing\"",
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
            ..Preset::default()
        },
    },
    Guide {
        id: "relation-neurons",
        model: "smollm2",
        title: "Neurons for one relation",
        paper: "Liu et al. 2025, \"On Relation-Specific Neurons in Large Language Models\"",
        preset: || Preset {
            neurons: Some(NeuronsSpec::capital_smollm2()),
            ..Preset::default()
        },
    },
    Guide {
        id: "circuit-reuse",
        model: "smollm2",
        title: "One circuit, two tasks",
        paper: "Merullo et al. 2023, \"Circuit Component Reuse Across Tasks in Transformer Language Models\"",
        preset: || Preset {
            reuse: Some(ReuseSpec::smollm2()),
            ..Preset::default()
        },
    },
    Guide {
        id: "recall-reasoning",
        model: "smollm2",
        title: "Remembering vs working it out",
        paper: "\"Disentangling Recall and Reasoning in Transformer Models through Layer-wise Attention and Activation Analysis\" (2025)",
        preset: || Preset {
            recall: Some(RecallSpec::smollm2()),
            ..Preset::default()
        },
    },
];

/// The guided experiment whose patching sweep `spec` is, if any (the first that presets it).
pub fn sweep_guide(spec: &PatchingSpec) -> Option<&'static str> {
    GUIDES
        .iter()
        .find(|g| (g.preset)().patching.as_ref() == Some(spec))
        .map(|g| g.id)
}

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
                        <p data-testid=format!("guide-{id}-text") class:muted=move || chosen.get() != Some(id)>{interplay_lab::guides::text(LabKind::Circuits, id)}</p>
                        <button data-testid=format!("guide-{id}-setup") aria-label=format!("Set up: {}", g.title) on:click=move |_| {
                            chosen.set(Some(id));
                            preset.set(Some(make()));
                            if crate::models::info().is_none_or(|i| i.key != model) {
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
