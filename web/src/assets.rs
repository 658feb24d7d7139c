//! Bundled files are fetched with URLs relative to the page, so the built site works from any
//! host and sub-path, and never leaves the page's origin.

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// Why a bundled file could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AssetError {
    /// The request failed or returned a non-2xx status.
    #[error("could not load {url}: {reason}")]
    Fetch {
        /// The relative URL.
        url: String,
        /// What the browser said.
        reason: String,
    },
}

fn js_err(url: &str, e: wasm_bindgen::JsValue) -> AssetError {
    AssetError::Fetch {
        url: url.to_string(),
        reason: e.as_string().unwrap_or_else(|| format!("{e:?}")),
    }
}

/// Fetch `url` (relative to the page, or in the engine worker to `engine.js` beside it): the
/// response, checked to be 2xx.
async fn fetch_ok(url: &str) -> Result<web_sys::Response, AssetError> {
    let global = js_sys::global();
    let request = if let Some(w) = global.dyn_ref::<web_sys::Window>() {
        w.fetch_with_str(url)
    } else if let Some(w) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
        w.fetch_with_str(url)
    } else {
        return Err(AssetError::Fetch {
            url: url.into(),
            reason: "this context cannot fetch".into(),
        });
    };
    let resp = JsFuture::from(request).await.map_err(|e| js_err(url, e))?;
    let resp: web_sys::Response = resp.dyn_into().map_err(|e| js_err(url, e))?;
    if !resp.ok() {
        return Err(AssetError::Fetch {
            url: url.into(),
            reason: format!("HTTP {}", resp.status()),
        });
    }
    Ok(resp)
}

/// Fetch `url` (relative to the page) as bytes.
pub async fn fetch_bytes(url: &str) -> Result<Vec<u8>, AssetError> {
    let resp = fetch_ok(url).await?;
    let buf = JsFuture::from(resp.array_buffer().map_err(|e| js_err(url, e))?)
        .await
        .map_err(|e| js_err(url, e))?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}

/// Fetch `url` (relative to the page) as a `Blob`: the bytes stay with the browser, outside
/// this module's memory, until whoever needs them (the engine) reads them.
pub async fn fetch_blob(url: &str) -> Result<web_sys::Blob, AssetError> {
    let resp = fetch_ok(url).await?;
    let blob = JsFuture::from(resp.blob().map_err(|e| js_err(url, e))?)
        .await
        .map_err(|e| js_err(url, e))?;
    blob.dyn_into().map_err(|e| js_err(url, e))
}

/// Whether the browser says it has no network (`navigator.onLine` is false).
pub fn offline() -> bool {
    js_sys::Reflect::get(&js_sys::global(), &"navigator".into())
        .ok()
        .and_then(|n| js_sys::Reflect::get(&n, &"onLine".into()).ok())
        .and_then(|v| v.as_bool())
        .is_some_and(|online| !online)
}

/// Whether this site's service worker holds `url` (relative to the page) in any of its caches,
/// so it loads with no network.
pub async fn cached(url: &str) -> bool {
    let global = js_sys::global();
    let Some(caches) = js_sys::Reflect::get(&global, &"caches".into())
        .ok()
        .filter(|c| !c.is_undefined())
    else {
        return false;
    };
    let Ok(matcher) = js_sys::Reflect::get(&caches, &"match".into())
        .and_then(|f| f.dyn_into::<js_sys::Function>())
    else {
        return false;
    };
    let Ok(promise) = matcher
        .call1(&caches, &url.into())
        .and_then(|p| p.dyn_into::<js_sys::Promise>())
    else {
        return false;
    };
    JsFuture::from(promise)
        .await
        .is_ok_and(|r| !r.is_undefined() && !r.is_null())
}

/// Milliseconds since this context started (`performance.now()`), in the page or a worker.
pub fn now_ms() -> f64 {
    js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .and_then(|p| p.dyn_into::<web_sys::Performance>().ok())
        .map(|p| p.now())
        .unwrap_or(0.0)
}

/// A named point on the browser's performance timeline (`performance.mark`), where developer
/// tools and the start-up benchmark read how long each phase took.
pub fn mark(name: &str) {
    if let Some(p) = js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .and_then(|p| p.dyn_into::<web_sys::Performance>().ok())
    {
        let _ = p.mark(name);
    }
}

/// Resolve after `ms` milliseconds (`setTimeout` of the page or worker's global scope).
pub async fn sleep_ms(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let global = js_sys::global();
        let set_timeout = js_sys::Reflect::get(&global, &"setTimeout".into())
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        match set_timeout {
            Some(f) => {
                let _ = f.call2(&global, &resolve, &ms.into());
            }
            // No timers at all: go on at once rather than never.
            None => {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// Let the browser paint and handle input (or a worker take its messages) before long work
/// continues.
pub async fn yield_now() {
    sleep_ms(0).await;
}

/// The files of a file list (a picker or a drop) as `(name, Blob)`: handles, not bytes, so
/// nothing is read in the page.
pub fn files_of(files: &web_sys::FileList) -> Vec<(String, web_sys::Blob)> {
    (0..files.length())
        .filter_map(|i| files.get(i))
        .map(|f| (f.name(), web_sys::Blob::from(f)))
        .collect()
}

/// `localStorage` (reached through `Reflect`, so no extra web-sys features): `None` when the
/// browser refuses storage (private mode, sandboxed iframe) — the page then just does not autosave.
fn local_storage() -> Option<wasm_bindgen::JsValue> {
    let w = web_sys::window()?;
    js_sys::Reflect::get(&w, &"localStorage".into())
        .ok()
        .filter(|s| !s.is_null() && !s.is_undefined())
}

fn call_storage(method: &str, args: &[&str]) -> Option<wasm_bindgen::JsValue> {
    let storage = local_storage()?;
    let f: js_sys::Function = js_sys::Reflect::get(&storage, &method.into())
        .ok()?
        .dyn_into()
        .ok()?;
    let args: js_sys::Array = args
        .iter()
        .map(|a| wasm_bindgen::JsValue::from_str(a))
        .collect();
    f.apply(&storage, &args).ok()
}

/// Read an autosaved draft.
pub fn draft_get(key: &str) -> Option<String> {
    call_storage("getItem", &[key]).and_then(|v| v.as_string())
}

/// Autosave a draft (ignored when storage is unavailable or full).
pub fn draft_set(key: &str, value: &str) {
    let _ = call_storage("setItem", &[key, value]);
}
