//! Entry point: install the panic hook and mount the app. Everything else lives in the library.

fn main() {
    console_error_panic_hook::set_once();
    interplay_web::offline::register_service_worker();
    leptos::mount::mount_to_body(interplay_web::App);
}
