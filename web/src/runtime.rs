//! The page's compute device, chosen once at start and switchable by the user.
//!
//! Device choice itself lives in `interplay_models::device`; this module only remembers the
//! page's current choice so every lab computes on the same device and can say which it was.

use std::cell::RefCell;

use interplay_models::device::device_lost;
use interplay_models::{Backend, ComputeDevice};

/// What the page does when it falls back to the CPU after losing the GPU.
type LostHandler = Box<dyn Fn(DeviceStatus)>;

thread_local! {
    static CURRENT: RefCell<Option<ComputeDevice>> = const { RefCell::new(None) };
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

/// Bring up `preferred` (falling back to the CPU) and make it the page's device.
pub async fn select(preferred: Backend) -> DeviceStatus {
    // A lost WebGPU device stays lost until the page reloads.
    let (dev, fallback_reason) = match device_lost() {
        Some(r) if preferred == Backend::Wgpu => (
            ComputeDevice::cpu(),
            Some(format!(
                "the WebGPU device was lost ({r}); reload the page to use it again"
            )),
        ),
        _ => ComputeDevice::init_with_fallback(preferred).await,
    };
    let status = DeviceStatus {
        backend: dev.backend,
        fallback_reason,
    };
    CURRENT.with(|c| *c.borrow_mut() = Some(dev));
    status
}

/// Whether [`select`] has chosen the page's device (the start-up check may still be running).
pub fn chosen() -> bool {
    CURRENT.with(|c| c.borrow().is_some())
}

/// The page's current device (the CPU until [`select`] has run). Once the WebGPU device has
/// been lost this is the CPU, and the page is told (see [`on_device_lost`]).
pub fn current() -> ComputeDevice {
    let dev = CURRENT.with(|c| c.borrow().clone().unwrap_or_else(ComputeDevice::cpu));
    if dev.backend == Backend::Wgpu
        && let Some(reason) = device_lost()
    {
        let cpu = ComputeDevice::cpu();
        CURRENT.with(|c| *c.borrow_mut() = Some(cpu.clone()));
        let status = DeviceStatus {
            backend: Backend::Cpu,
            fallback_reason: Some(format!(
                "the WebGPU device was lost ({reason}); reload the page to use it again"
            )),
        };
        ON_LOST.with(|f| {
            if let Some(f) = f.borrow().as_ref() {
                f(status);
            }
        });
        return cpu;
    }
    dev
}

/// The engine fell back to the CPU for `reason`: a GPU it lost is lost for the page too (the
/// same browser GPU process), so the page moves to the CPU and says so.
pub fn engine_fell_back(reason: &str) {
    if !reason.contains("was lost") {
        return;
    }
    let on_gpu = CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .is_some_and(|d| d.backend == Backend::Wgpu)
    });
    if !on_gpu {
        return;
    }
    CURRENT.with(|c| *c.borrow_mut() = Some(ComputeDevice::cpu()));
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
