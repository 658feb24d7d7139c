//! The page's compute device, chosen once at start and switchable by the user.
//!
//! The page itself never touches a device: the engine brings it up (falling back to the CPU
//! where WebGPU fails) and says which it used. This module remembers the page's current choice,
//! so every lab asks the engine for the same device and can say which it was.

use std::cell::RefCell;

use interplay_models::Backend;

/// What the page does when it falls back to the CPU after losing the GPU.
type LostHandler = Box<dyn Fn(DeviceStatus)>;

thread_local! {
    static CURRENT: RefCell<Option<Backend>> = const { RefCell::new(None) };
    static CHOSEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static ON_LOST: RefCell<Option<LostHandler>> = const { RefCell::new(None) };
}

/// What the page shows about its device.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceStatus {
    /// The backend in use.
    pub backend: Backend,
    /// Why WebGPU is not in use, when it was asked for and failed.
    pub fallback_reason: Option<String>,
}

/// The start-up check asks the engine for `backend`: until it answers, the page's other jobs
/// (a model a link names, loading at once) go to the same engine, which falls back as the
/// check does.
pub fn asking(backend: Backend) {
    CURRENT.with(|c| *c.borrow_mut() = Some(backend));
    CHOSEN.with(|c| c.set(false));
}

/// Make `status` (what the engine brought up) the page's device.
pub fn chose(status: &DeviceStatus) {
    CURRENT.with(|c| *c.borrow_mut() = Some(status.backend));
    CHOSEN.with(|c| c.set(true));
}

/// Whether the page's device is chosen (the start-up check may still be running).
pub fn chosen() -> bool {
    CHOSEN.with(|c| c.get())
}

/// The page's current device: the one asked for while the start-up check runs, then the one
/// it brought up; once the WebGPU device has been lost, the CPU.
pub fn current() -> Backend {
    CURRENT.with(|c| c.borrow().unwrap_or(Backend::Cpu))
}

/// The engine fell back to the CPU for `reason`: a GPU it lost stays lost until the page
/// reloads, so the page moves to the CPU and says so.
pub fn engine_fell_back(reason: &str) {
    if !reason.contains("was lost") || current() != Backend::Wgpu {
        return;
    }
    CURRENT.with(|c| *c.borrow_mut() = Some(Backend::Cpu));
    let status = DeviceStatus {
        backend: Backend::Cpu,
        fallback_reason: Some(reason.to_string()),
    };
    ON_LOST.with(|f| {
        if let Some(f) = f.borrow().as_ref() {
            f(status);
        }
    });
}

/// Called with the new status when the page falls back to the CPU after losing the GPU.
pub fn on_device_lost(f: impl Fn(DeviceStatus) + 'static) {
    ON_LOST.with(|c| *c.borrow_mut() = Some(Box::new(f)));
}

/// Whether the browser exposes WebGPU at all (`navigator.gpu`); an adapter may still be missing.
/// Where it does not, the page asks the engine for the CPU at once: the CPU's engine (threaded
/// where the page is isolated) is then the only engine module the page loads.
pub fn browser_has_webgpu() -> bool {
    web_sys::window()
        .map(|w| {
            let nav = w.navigator();
            js_sys::Reflect::get(&nav, &"gpu".into())
                .map(|v| !v.is_undefined() && !v.is_null())
                .unwrap_or(false)
        })
        .unwrap_or(false)
}
