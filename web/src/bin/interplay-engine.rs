//! The engine's module: the labs' computations (Burn on WebGPU and the CPU, the models, every
//! job). `engine.js` instantiates it in a dedicated worker, where `main` serves jobs; where no
//! worker starts, the page imports it and calls [`start_in_page`]. `cargo xtask build` builds
//! it beside the page's module (`dist/engine/`; with `--features threads`, `dist/threads/`).

use wasm_bindgen::prelude::*;

fn main() {
    interplay_web::run_static_constructors();
    console_error_panic_hook::set_once();
    if interplay_web::engine::worker::is_worker() {
        interplay_web::engine::worker::start();
    }
}

/// Serve the page over `port` on the page's own thread (it has no worker); a panic is reported
/// on the `BroadcastChannel` named `panics`.
#[wasm_bindgen]
pub fn start_in_page(port: web_sys::MessagePort, panics: String) {
    interplay_web::engine::worker::start_in_page(port, panics);
}
