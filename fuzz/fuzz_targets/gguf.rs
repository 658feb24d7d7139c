//! Any bytes as a GGUF file: parsing, the model config and every tensor's dequantisation must
//! return an error, never panic or allocate without bound.
#![no_main]

use interplay_models::gguf::Gguf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = Gguf::parse(data) {
        let _ = g.config();
        let _ = g.weights();
    }
});
