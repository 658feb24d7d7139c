//! Any bytes as a safetensors file: an error, never a panic or an unbounded allocation.
#![no_main]

use interplay_models::safetensors::read_safetensors;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = read_safetensors(data);
});
