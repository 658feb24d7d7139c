//! Offline use: the service worker (`sw.js`, next to `index.html`) caches what the page loads,
//! so a visited page keeps working with no network. Registered relative to the page, so it
//! works from any sub-path.

use wasm_bindgen::{JsCast, JsValue};

/// Register `sw.js` if the browser supports service workers (browsers refuse them on `file://`
/// and on plain-HTTP hosts other than localhost; the page works without).
pub fn register_service_worker() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let nav: JsValue = window.navigator().into();
    let Ok(container) = js_sys::Reflect::get(&nav, &"serviceWorker".into()) else {
        return;
    };
    if container.is_undefined() || container.is_null() {
        return;
    }
    let Ok(register) = js_sys::Reflect::get(&container, &"register".into()) else {
        return;
    };
    let Ok(register) = register.dyn_into::<js_sys::Function>() else {
        return;
    };
    if let Ok(promise) = register.call1(&container, &"./sw.js".into())
        && let Ok(promise) = promise.dyn_into::<js_sys::Promise>()
    {
        // A refused registration is not an error for the page.
        let ignore = wasm_bindgen::closure::Closure::<dyn FnMut(JsValue)>::new(|_| {});
        let _ = promise.catch(&ignore);
        ignore.forget();
    }
}
