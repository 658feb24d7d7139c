//! The page's module: install the panic hook and mount the app. The labs' computations are in
//! the engine's module (`bin/interplay-engine.rs`), which the page starts in a worker when it
//! first needs it, so this module carries no Burn kernels, no WebGPU stack and no models.

fn main() {
    interplay_web::run_static_constructors();
    console_error_panic_hook::set_once();
    interplay_web::offline::register_service_worker();
    leptos::mount::mount_to_body(interplay_web::App);
}
