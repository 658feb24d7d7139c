//! The page's compute device, chosen once at start and switchable by the user.
//!
//! Device choice itself lives in `interplay_models::device`; this module only remembers the
//! page's current choice so every lab computes on the same device and can say which it was.

use std::cell::RefCell;

use interplay_models::{Backend, ComputeDevice};

thread_local! {
    static CURRENT: RefCell<Option<ComputeDevice>> = const { RefCell::new(None) };
}

/// What the page shows about its device.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceStatus {
    /// The backend in use.
    pub backend: Backend,
    /// Why WebGPU is not in use, when it was asked for and failed.
    pub fallback_reason: Option<String>,
}

/// Bring up `preferred` (falling back to the CPU) and make it the page's device.
pub async fn select(preferred: Backend) -> DeviceStatus {
    let (dev, fallback_reason) = ComputeDevice::init_with_fallback(preferred).await;
    let status = DeviceStatus {
        backend: dev.backend,
        fallback_reason,
    };
    CURRENT.with(|c| *c.borrow_mut() = Some(dev));
    status
}

/// The page's current device (the CPU until [`select`] has run).
pub fn current() -> ComputeDevice {
    CURRENT.with(|c| c.borrow().clone().unwrap_or_else(ComputeDevice::cpu))
}

/// Whether the browser exposes WebGPU at all (`navigator.gpu`); an adapter may still be missing.
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
