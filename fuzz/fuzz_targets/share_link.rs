//! Any string as a page URL hash or an exported spec file: reading it as the one experiment type
//! gives an experiment or an error, never a panic, and what reads must round-trip.
#![no_main]

use interplay_lab::Experiment;
use interplay_lab::mergelab::MergeSpec;
use interplay_lab::share::spec_param;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let mut found = Vec::new();
    if let Some(Ok(e)) = Experiment::from_link(s) {
        found.push(e);
    }
    if spec_param(s).is_none() {
        found.extend(Experiment::from_json(s, None).ok());
    }
    for e in found {
        // What decodes must round-trip through a link and through JSON.
        assert_eq!(Experiment::from_link(&e.link()).and_then(Result::ok).as_ref(), Some(&e));
        assert_eq!(Experiment::from_json(&e.to_json(), None).ok().as_ref(), Some(&e));
        if let Experiment::Merge(m) = &e {
            let _ = MergeSpec::check(m);
        }
    }
});
