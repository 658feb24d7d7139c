//! Entry point. In the page: install the panic hook and mount the app. In the engine worker
//! (the same module, started by `engine.js`): serve jobs. Everything else lives in the library.

// wasm-ld's static constructors (cubecl registers its kernels' IR through `inventory`). A bin
// crate is linked as a "command": unless the module calls `__wasm_call_ctors` itself, wasm-ld
// wraps *every* export in a call to it, so each JS → wasm call (every `JsValue` the page or the
// engine touches) re-ran hundreds of constructors — seconds per streamed result. One explicit
// call at start turns that off (lld's documented rule; see the `inventory` crate's wasm notes).
#[cfg(target_family = "wasm")]
#[allow(unsafe_code)]
mod ctors {
    unsafe extern "C" {
        fn __wasm_call_ctors();
    }

    /// Run the module's static constructors, once, before anything else.
    pub fn run() {
        // SAFETY: called once, first thing in `main`, before any code reads what they set up.
        unsafe { __wasm_call_ctors() }
    }
}

fn main() {
    #[cfg(target_family = "wasm")]
    ctors::run();
    console_error_panic_hook::set_once();
    if interplay_web::engine::worker::is_worker() {
        interplay_web::engine::worker::start();
        return;
    }
    interplay_web::offline::register_service_worker();
    leptos::mount::mount_to_body(interplay_web::App);
}
