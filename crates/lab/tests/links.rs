//! Share links written by the page before the one experiment type (a bare lab spec after
//! `#/{lab}?spec=`) still open, as the lab they name, and equal the spec they were made from.
//! `tests/fixtures/links/saved-v1.tsv` holds such links, each written by the page's encoder of
//! that build (`share::encode` of the lab's spec) for the specs named beside them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use interplay_dynamics::{DynamicsSpec, MemoryCapacitySpec, PredictionSpec, SpikingSpec};
use interplay_lab::experiment::read_link;
use interplay_lab::mergelab::MergeSpec;
use interplay_lab::neurofeedback::NeurofeedbackSpec;
use interplay_lab::{Experiment, LabKind, PatchingSpec};

fn saved() -> Vec<(String, String)> {
    let path = format!(
        "{}/../../tests/fixtures/links/saved-v1.tsv",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, link) = l.split_once('\t').unwrap();
            (name.to_string(), link.to_string())
        })
        .collect()
}

/// The spec each saved link was made from, by the name the fixture gives it.
fn spec_named(name: &str) -> Experiment {
    match name {
        "circuits/ioi-bundled" => Experiment::Circuits(PatchingSpec::ioi_bundled()),
        "circuits/induction-bundled" => Experiment::Circuits(PatchingSpec::induction_bundled()),
        "circuits/ioi-smollm2-embed" => Experiment::Circuits(PatchingSpec::ioi_smollm2()),
        "merge/default" => Experiment::Merge(MergeSpec::default()),
        "neurofeedback/icl-bundled" => Experiment::Neurofeedback(NeurofeedbackSpec::icl_bundled()),
        "neurofeedback/smollm2" => Experiment::Neurofeedback(NeurofeedbackSpec::smollm2()),
        "dynamics/spiking" => Experiment::Dynamics(DynamicsSpec::Spiking(SpikingSpec::default())),
        "dynamics/prediction" => {
            Experiment::Dynamics(DynamicsSpec::Prediction(PredictionSpec::default()))
        }
        "dynamics/memory-capacity" => {
            Experiment::Dynamics(DynamicsSpec::MemoryCapacity(MemoryCapacitySpec::default()))
        }
        other => panic!("unknown saved link {other}"),
    }
}

#[test]
fn links_saved_from_the_page_before_the_tag_still_open() {
    let links = saved();
    assert!(links.len() >= 9, "{}", links.len());
    let mut labs = std::collections::HashSet::new();
    for (name, link) in links {
        assert!(!link.contains("%22lab%22"), "{name}: not an old link");
        let want = spec_named(&name);
        let got = Experiment::from_link(&link).unwrap().unwrap();
        assert_eq!(got, want, "{name}");
        labs.insert(got.lab());
        // The lab's own reader takes it too, and a link of another lab is refused.
        match want.lab() {
            LabKind::Circuits => assert!(read_link::<PatchingSpec>(&link).unwrap().is_ok()),
            LabKind::Merge => assert!(read_link::<MergeSpec>(&link).unwrap().is_ok()),
            LabKind::Neurofeedback => {
                assert!(read_link::<NeurofeedbackSpec>(&link).unwrap().is_ok())
            }
            LabKind::Dynamics => assert!(read_link::<DynamicsSpec>(&link).unwrap().is_ok()),
        }
        if want.lab() != LabKind::Merge {
            assert!(read_link::<MergeSpec>(&link).unwrap().is_err(), "{name}");
        }
        // Re-shared, it becomes a tagged link that opens to the same experiment.
        let again = Experiment::from_link(&got.link()).unwrap().unwrap();
        assert_eq!(again, want, "{name}");
    }
    assert_eq!(labs.len(), 4, "a saved link of every lab");
}

/// A damaged link names the field at fault and what it should hold, in words a student can act
/// on (it used to say "data did not match any variant of untagged enum Prompt").
#[test]
fn a_damaged_link_names_the_field_and_what_it_needs() {
    let msg = |json: &str| {
        Experiment::from_json(json, None)
            .expect_err("refused")
            .to_string()
    };
    let e = msg(
        r#"{"lab": "circuits", "model": "ioi-3l", "clean": 5, "corrupt": "a", "answer": " a", "wrong": " b", "target": "resid_pre"}"#,
    );
    assert!(e.contains("clean: "), "{e}");
    assert!(
        e.contains("the prompt as text, or a list of token ids"),
        "{e}"
    );
    assert!(!e.contains("untagged"), "{e}");
    let e = msg(
        r#"{"model": "ioi-3l", "clean": [1, 2], "corrupt": [1, 3], "answer": -4, "wrong": 2, "target": "resid_pre"}"#,
    );
    assert!(e.contains("answer: "), "{e}");
    assert!(e.contains("one token, as its text"), "{e}");
    // Ids and text still read as before.
    let ok = Experiment::from_json(
        r#"{"lab": "circuits", "model": "m", "clean": [1, 2], "corrupt": "x y", "answer": 3, "wrong": " b", "target": "resid_pre"}"#,
        None,
    );
    assert!(ok.is_ok(), "{ok:?}");
    let e = msg(r#"{"lab": "merge", "tasks": ["mirror"], "lambda": "big"}"#);
    assert!(e.contains("lambda: "), "{e}");
    // Inside the Dynamics lab's own tag too.
    let e = msg(r#"{"lab": "dynamics", "experiment": "spiking", "ms": "long"}"#);
    assert!(e.contains("ms: "), "{e}");
    let e = msg(r#"{"experiment": "prediction", "reservoir": {"units": -3}}"#);
    assert!(e.contains("reservoir.units: "), "{e}");
}
