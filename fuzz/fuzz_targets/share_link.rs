//! Any string as a page URL hash: finding the spec and decoding it as each lab's spec gives a
//! spec or an error, never a panic.
#![no_main]

use interplay_dynamics::tasks::DynamicsSpec;
use interplay_lab::PatchingSpec;
use interplay_lab::mergelab::MergeSpec;
use interplay_lab::share::{decode, encode, spec_param};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    for text in [Some(s), spec_param(s)].into_iter().flatten() {
        if let Ok(p) = decode::<PatchingSpec>(text) {
            // What decodes must round-trip.
            assert_eq!(decode::<PatchingSpec>(&encode(&p)).ok(), Some(p));
        }
        let _ = decode::<MergeSpec>(text).map(|m| m.check());
        let _ = decode::<DynamicsSpec>(text);
    }
});
