//! Interplay's page: the app shell (labs as navigation, device indicator and switch) and one
//! module per lab; and the engine the labs compute in. Two binaries share this library: the
//! page's (`main.rs`, the UI, built without WebGPU) and the engine's (`bin/interplay-engine.rs`).
//!
//! | module | what |
//! |---|---|
//! | [`runtime`] | the device the page asks the engine for (WebGPU, else CPU), shared with every lab |
//! | [`engine`] | the engine: labs' computations off the main thread, in their own wasm module (`bin/interplay-engine.rs`; page side and engine side) |
//! | [`assets`] | fetching bundled files relative to the page (works from any sub-path) |
//! | [`shell`] | header, navigation, device switch, start-up check |
//! | [`speclab`] | what every spec lab shares: the opening spec (link, draft, default), autosave, run state |
//! | [`share`] | share links (the one `Experiment` type), embed flags, spec export — a leaf the labs use |
//! | [`offline`] | service worker registration (offline use) |
//! | [`models`] | the loaded model (bundled or from the user's disk), rebuilt on device switch |
//! | [`circuits`] | Circuits lab: model loading, prompt view |
//! | [`ablation`] | Circuits lab: head ablation and path patching |
//! | [`guided`] | Circuits lab: guided experiments (presets + text) |
//! | [`patching`] | Circuits lab: activation patching panel (spec in the URL) |
//! | [`neurons`] | Circuits lab: relation-specific neurons (spec in the URL) |
//! | [`neurofeedback`] | Neurofeedback lab: directions, reporting accuracy against N, control task, share links |
//! | [`dynamics`] | Dynamics lab: spiking/reservoir experiments, raster and line plots, share links |
//! | [`plots`] | heatmap, line plot, palettes, export |
//! | [`views`] | Circuits lab: attention, logit lens, attribution, head detectors |

pub mod ablation;
pub mod assets;
pub mod circuits;
pub mod clamp;
pub mod dynamics;
pub mod edges;
pub mod engine;
pub mod guided;
pub mod merge;
pub mod models;
pub mod neurofeedback;
pub mod neurons;
pub mod offline;
pub mod patching;
pub mod plots;
pub mod recall;
pub mod reuse;
pub mod runtime;
pub mod share;
pub mod shell;
pub mod speclab;
pub mod subspace;
pub mod views;

pub use shell::App;

/// Run the module's static constructors, once, first thing in `main` (both modules call it).
///
/// wasm-ld's static constructors: cubecl registers its kernels' IR through `inventory`. A bin
/// crate is linked as a "command": unless the module calls `__wasm_call_ctors` itself, wasm-ld
/// wraps *every* export in a call to it, so each JS → wasm call (every `JsValue` the page or the
/// engine touches) re-ran hundreds of constructors — seconds per streamed result. One explicit
/// call at start turns that off (lld's documented rule; see the `inventory` crate's wasm notes).
pub fn run_static_constructors() {
    #[cfg(target_family = "wasm")]
    call_ctors();
}

#[cfg(target_family = "wasm")]
#[allow(unsafe_code)]
fn call_ctors() {
    unsafe extern "C" {
        fn __wasm_call_ctors();
    }
    // SAFETY: called once, first thing in `main`, before any code reads what they set up.
    unsafe { __wasm_call_ctors() }
}
