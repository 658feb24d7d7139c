//! Specs round-trip through JSON and share links, resolve with clear errors, and run to the same
//! numbers as the sweep they describe.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use interplay_lab::share::{decode, encode, spec_param};
use interplay_lab::{PatchingSpec, Prompt, TokenRef};
use interplay_models::ComputeDevice;
use interplay_models::load::load_path;
use interplay_models::patching::{PatchTarget, no_progress, patch_sweep};

use interplay_testkit::fixtures;

#[test]
fn specs_round_trip_through_json_and_urls() {
    let spec = PatchingSpec::ioi_smollm2();
    let json = serde_json::to_string(&spec).unwrap();
    assert_eq!(serde_json::from_str::<PatchingSpec>(&json).unwrap(), spec);
    let url = format!("#/circuits?spec={}&embed=1", encode(&spec));
    let back: PatchingSpec = decode(spec_param(&url).unwrap()).unwrap();
    assert_eq!(back, spec);
    for bad in ["%", "%zz", "not-json", "%7B%22model%22%3A1%7D", ""] {
        assert!(decode::<PatchingSpec>(bad).is_err(), "{bad}");
    }
}

#[test]
fn resolving_checks_the_pair_and_the_tokens() {
    let mut s = PatchingSpec::ioi_smollm2();
    s.clean = Prompt::Ids(vec![1, 2, 3]);
    s.corrupt = Prompt::Ids(vec![1, 2]);
    s.answer = TokenRef::Id(4);
    s.wrong = TokenRef::Id(5);
    let err = s.resolve(None).unwrap_err().to_string();
    assert!(err.contains("same number of tokens"), "{err}");
    s.corrupt = Prompt::Text("x".into());
    assert!(
        s.resolve(None)
            .unwrap_err()
            .to_string()
            .contains("no tokenizer")
    );
}

#[test]
fn running_a_spec_equals_the_sweep() {
    let m = load_path(&fixtures().join("tiny-gpt2"), &ComputeDevice::cpu().device).unwrap();
    let spec = PatchingSpec {
        model: "tiny-gpt2".into(),
        clean: Prompt::Ids(vec![5, 30, 12, 77, 30, 41, 9, 66]),
        corrupt: Prompt::Ids(vec![5, 58, 12, 77, 58, 41, 9, 66]),
        answer: TokenRef::Id(30),
        wrong: TokenRef::Id(58),
        target: PatchTarget::AttnOut,
    };
    let a = pollster::block_on(spec.run(&m, &mut no_progress)).unwrap();
    let b = pollster::block_on(patch_sweep(
        &m.model,
        &[5, 30, 12, 77, 30, 41, 9, 66],
        &[5, 58, 12, 77, 58, 41, 9, 66],
        PatchTarget::AttnOut,
        30,
        58,
        &mut no_progress,
    ))
    .unwrap();
    assert_eq!(a, b);
}
