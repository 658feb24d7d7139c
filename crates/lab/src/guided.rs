//! The guided experiments of the Merge, Dynamics and Neurofeedback labs: the spec each one sets
//! up, shared by the page's buttons, the tests and the golden scripts' specs (which the tests
//! compare with these), so a guided run and its reference are the same experiment. Their texts
//! are in [`crate::guides`].

use interplay_dynamics::whatwhen::{Rule, WhatWhenSpec};
use interplay_dynamics::{
    Adaptation, DynamicsSpec, EiSweepSpec, EsnParams, MemoryCapacitySpec, PredictionSpec,
    SpikingSpec,
};

use crate::LabKind;
use crate::mergelab::{AdaOptions, FineTuning, Granularity, LabMethod, MergeSpec, Objective};
use crate::neurofeedback::NeurofeedbackSpec;
use crate::suite::Task;

/// A guided experiment: a title and the spec it starts from; its text is [`Guided::text`].
pub struct Guided<T> {
    /// Its id: the guide file's section, the page's test-id suffix and anchor.
    pub id: &'static str,
    /// Shown title.
    pub title: &'static str,
    /// The experiment it sets up.
    pub spec: fn() -> T,
}

impl<T: PartialEq> Guided<T> {
    /// The id of the guided experiment among `guides` whose spec `ran` is, if any: only a run
    /// of the guided spec itself gets the paper's finding.
    pub fn of(guides: &[Guided<T>], ran: &T) -> Option<&'static str> {
        guides.iter().find(|g| (g.spec)() == *ran).map(|g| g.id)
    }
}

impl<T> Guided<T> {
    /// What to look for, and what this project's runs found (from `crates/lab/guides/`).
    pub fn text(&self, lab: LabKind) -> String {
        crate::guides::text(lab, self.id).unwrap_or_default()
    }

    /// The spec of guided experiment `id` among `guides`.
    pub fn spec_of(guides: &[Guided<T>], id: &str) -> Option<T> {
        guides.iter().find(|g| g.id == id).map(|g| (g.spec)())
    }
}

/// The Neurofeedback lab's guided experiments.
pub const NEUROFEEDBACK: &[Guided<NeurofeedbackSpec>] = &[
    Guided {
        id: "icl-word",
        title: "A model that learned to label in context: icl-word-3l reports its own activations",
        spec: NeurofeedbackSpec::icl_word,
    },
    Guided {
        id: "icl",
        title: "A model that cannot report: the tiny icl-3l (negative control)",
        spec: NeurofeedbackSpec::icl_bundled,
    },
    Guided {
        id: "smollm2",
        title: "The paper's main figure in miniature: SmolLM2, early vs late PCs",
        spec: NeurofeedbackSpec::smollm2,
    },
];

fn lambdas() -> Vec<f64> {
    (0..=10).map(|i| i as f64 / 10.0).collect()
}

/// The Merge lab's guided experiments (the page opens on TIES, the third).
pub const MERGE: &[Guided<MergeSpec>] = &[
    Guided {
        id: "add",
        title: "Adding task vectors: one multi-task model?",
        spec: || MergeSpec {
            method: LabMethod::TaskArithmetic,
            lambda: 0.4,
            sweep: lambdas(),
            ..MergeSpec::default()
        },
    },
    Guided {
        id: "negate",
        title: "Negating a task vector: forgetting",
        spec: || MergeSpec {
            tasks: vec![Task::Mirror],
            method: LabMethod::TaskArithmetic,
            lambda: -1.0,
            sweep: vec![-1.5, -1.25, -1.0, -0.75, -0.5, -0.25, 0.0],
            ..MergeSpec::default()
        },
    },
    Guided {
        id: "ties",
        title: "TIES against task arithmetic when tasks interfere",
        spec: || MergeSpec {
            method: LabMethod::Ties,
            lambda: 1.0,
            density: 0.2,
            sweep: (0..=8).map(|i| i as f64 * 0.25).collect(),
            ..MergeSpec::default()
        },
    },
    Guided {
        id: "adamerging",
        title: "AdaMerging: coefficients learned without labels",
        spec: || MergeSpec {
            method: LabMethod::Adamerging,
            lambda: 0.3,
            sweep: lambdas(),
            ..MergeSpec::default()
        },
    },
    Guided {
        id: "atlas",
        title: "aTLAS-style: per-block coefficients from five labels per class",
        spec: || MergeSpec {
            method: LabMethod::Adamerging,
            lambda: 0.3,
            adamerging: AdaOptions {
                granularity: Granularity::BlockWise,
                objective: Objective::FewShot,
                ..AdaOptions::default()
            },
            ..MergeSpec::default()
        },
    },
    Guided {
        id: "disentangle",
        title: "Weight disentanglement of mirror and flip",
        spec: || MergeSpec {
            method: LabMethod::TaskArithmetic,
            lambda: 0.5,
            tasks: vec![Task::Mirror, Task::Flip],
            disentangle: vec![Task::Mirror, Task::Flip],
            ..MergeSpec::default()
        },
    },
    Guided {
        id: "linearised",
        title: "Task arithmetic in the tangent space",
        spec: || MergeSpec {
            fine_tuning: FineTuning::Linearised,
            method: LabMethod::TaskArithmetic,
            lambda: 0.4,
            sweep: lambdas(),
            ..MergeSpec::default()
        },
    },
];

/// The classic Izhikevich (2003) network, two membrane traces shown (the Dynamics lab opens on it).
pub fn spiking_demo() -> DynamicsSpec {
    DynamicsSpec::Spiking(SpikingSpec {
        trace_neurons: vec![0, 850],
        ..SpikingSpec::default()
    })
}

/// Ten times the classic network with a tenth of its synapses per neuron, 8× (excitatory) and
/// 10× (inhibitory) as strong: the classic network's rates, at O(N · k) cost.
fn sparse_demo() -> DynamicsSpec {
    DynamicsSpec::Spiking(SpikingSpec {
        excitatory: 8000,
        inhibitory: 2000,
        synapses_per_neuron: 100,
        weight_exc: 4.0,
        weight_inh: 10.0,
        ..SpikingSpec::default()
    })
}

/// A 200-unit echo state network on Mackey-Glass (the prediction kind's starting spec).
pub fn mackey_glass_demo() -> DynamicsSpec {
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

fn rls_demo() -> DynamicsSpec {
    DynamicsSpec::WhatWhen(WhatWhenSpec {
        rule: Rule::Rls { alpha: 1.0 },
        ..WhatWhenSpec::default()
    })
}

/// The Dynamics lab's guided experiments.
pub const DYNAMICS: &[Guided<DynamicsSpec>] = &[
    Guided {
        id: "izhikevich",
        title: "Izhikevich (2003): 1000 spiking neurons",
        spec: spiking_demo,
    },
    Guided {
        id: "sparse-10k",
        title: "10 000 neurons, 100 synapses each: faster than real time?",
        spec: sparse_demo,
    },
    Guided {
        id: "mackey-glass",
        title: "An echo state network predicts Mackey-Glass",
        spec: mackey_glass_demo,
    },
    Guided {
        id: "memory",
        title: "Memory capacity",
        spec: || DynamicsSpec::MemoryCapacity(MemoryCapacitySpec::default()),
    },
    Guided {
        id: "ei-balance",
        title: "E/I balance and self-adaptation",
        spec: || DynamicsSpec::EiSweep(EiSweepSpec::default()),
    },
    Guided {
        id: "homogeneous",
        title: "Homogeneous vs heterogeneous targets",
        spec: homogeneous_sweep,
    },
    Guided {
        id: "what-when",
        title: "What and when: a three-factor readout re-adapts",
        spec: || DynamicsSpec::WhatWhen(WhatWhenSpec::default()),
    },
    Guided {
        id: "rls",
        title: "The same with an online RLS readout (FORCE's rule, no feedback)",
        spec: rls_demo,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every guided experiment has its text, and its spec serialises (share links carry it).
    #[test]
    fn every_guided_experiment_has_its_text_and_a_link() {
        fn check<T: serde::Serialize>(lab: LabKind, guides: &[Guided<T>]) {
            for g in guides {
                assert!(!g.text(lab).is_empty(), "{lab:?} {} has no text", g.id);
                assert!(serde_json::to_string(&(g.spec)()).is_ok(), "{}", g.id);
            }
        }
        check(LabKind::Merge, MERGE);
        check(LabKind::Dynamics, DYNAMICS);
        check(LabKind::Neurofeedback, NEUROFEEDBACK);
    }
}
