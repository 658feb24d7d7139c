//! The one place that chooses a compute device and reads results back.
//!
//! The page asks for a WebGPU adapter first and falls back to Burn's CPU backend (Flex) in
//! WebAssembly when there is none; natively the CLI and the tests pick by name. Every read of a
//! tensor goes through [`read_f32`], which is asynchronous: a synchronous readback panics on
//! WebGPU (burn#4487).

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Which backend computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Burn's wgpu backend: WebGPU in the page, Vulkan/Metal natively.
    Wgpu,
    /// Burn's Flex CPU backend (WebAssembly SIMD in the page, on every core where the page is
    /// cross-origin isolated).
    Cpu,
}

impl Backend {
    /// Short label shown in the page's device indicator and the CLI's `--device`.
    pub fn label(self) -> &'static str {
        match self {
            Backend::Wgpu => "WebGPU",
            Backend::Cpu => "CPU",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Wgpu => "wgpu",
            Backend::Cpu => "cpu",
        })
    }
}

impl std::str::FromStr for Backend {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "wgpu" | "webgpu" | "gpu" => Ok(Backend::Wgpu),
            "cpu" | "flex" => Ok(Backend::Cpu),
            other => Err(ModelError::Input(format!(
                "unknown device {other:?}: use \"cpu\" or \"wgpu\""
            ))),
        }
    }
}

/// Whether `device` is the CPU (Flex): code with a fused CPU form takes it there.
pub fn is_cpu(device: &Device) -> bool {
    *device == Device::flex()
}

/// A ready device and what it is.
#[derive(Clone, Debug)]
pub struct ComputeDevice {
    /// The Burn device every tensor of a run is created on.
    pub device: Device,
    /// Which backend it is.
    pub backend: Backend,
    /// Adapter description where the backend reports one (e.g. "swiftshader").
    pub adapter: String,
}

impl ComputeDevice {
    /// The CPU device: always available.
    pub fn cpu() -> Self {
        Self {
            device: Device::flex(),
            backend: Backend::Cpu,
            adapter: "Flex (Rust, WebAssembly SIMD in the page)".into(),
        }
    }

    /// Initialise the wgpu device asynchronously (required in the browser, fine natively).
    ///
    /// Initialising twice returns the already-initialised runtime's device.
    #[cfg(feature = "webgpu")]
    pub async fn wgpu() -> Result<Self> {
        use std::sync::OnceLock;
        static READY: OnceLock<Device> = OnceLock::new();
        if let Some(device) = READY.get() {
            return Ok(Self::wgpu_from(device.clone()));
        }
        let device = match Device::wgpu_options().init_async().await {
            Ok(d) => d,
            // Another caller initialised the runtime first (tests run in parallel; the page may
            // ask twice): a handle to the same default device reuses it.
            Err(e) if e.to_string().contains("already initialized") => {
                Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)
            }
            Err(e) => return Err(ModelError::Device(format!("no WebGPU adapter: {e}"))),
        };
        let device = READY.get_or_init(|| device).clone();
        Ok(Self::wgpu_from(device))
    }

    /// This build has no wgpu backend (the page's threaded CPU engine).
    #[cfg(not(feature = "webgpu"))]
    pub async fn wgpu() -> Result<Self> {
        Err(ModelError::Device(
            "this build computes on the CPU only (no WebGPU)".into(),
        ))
    }

    #[cfg(feature = "webgpu")]
    fn wgpu_from(device: Device) -> Self {
        Self {
            device,
            backend: Backend::Wgpu,
            adapter: "wgpu".into(),
        }
    }

    /// The device for `backend`; wgpu failures are returned, not papered over.
    pub async fn init(backend: Backend) -> Result<Self> {
        match backend {
            Backend::Cpu => Ok(Self::cpu()),
            Backend::Wgpu => Self::wgpu().await,
        }
    }

    /// The preferred device with the page's fallback rule: wgpu if it comes up, else the CPU,
    /// with the reason the GPU was not used.
    pub async fn init_with_fallback(preferred: Backend) -> (Self, Option<String>) {
        match Self::init(preferred).await {
            Ok(dev) => (dev, None),
            Err(e) => (Self::cpu(), Some(e.to_string())),
        }
    }
}

/// Counts the GPU kernels launched while it lives (each launch is one dispatch on wgpu), for
/// the benchmarks' dispatches-per-step figures. Process-wide: launches from any thread count,
/// and cubecl keeps one observer, so two counters must not overlap.
#[cfg(feature = "webgpu")]
pub struct DispatchCounter {
    count: std::sync::Arc<LaunchCount>,
    _watching: cubecl::logging::LaunchObservation,
}

#[cfg(feature = "webgpu")]
#[derive(Default)]
struct LaunchCount(std::sync::atomic::AtomicUsize);

#[cfg(feature = "webgpu")]
impl cubecl::logging::LaunchObserver for LaunchCount {
    fn launched(&self, _kernel: &'static str) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(feature = "webgpu")]
impl DispatchCounter {
    /// Start counting.
    pub fn start() -> Self {
        let count = std::sync::Arc::new(LaunchCount::default());
        let watching = cubecl::logging::LaunchObservation::new(count.clone());
        Self {
            count,
            _watching: watching,
        }
    }

    /// Kernels launched so far.
    pub fn count(&self) -> usize {
        self.count.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// An f32 device buffer of `shape` beside `like` (its client and device), uninitialised: for a
/// kernel that writes every entry (the fused transformer blocks, the Dynamics kernels).
#[cfg(feature = "webgpu")]
pub fn empty_f32(
    shape: &[usize],
    like: &burn::backend::wgpu::CubeTensor,
) -> burn::backend::wgpu::CubeTensor {
    let client = &like.client;
    burn::backend::wgpu::CubeTensor::new_contiguous(
        client.clone(),
        like.device.clone(),
        shape.to_vec().into(),
        client.empty(shape.iter().product::<usize>() * size_of::<f32>()),
        burn::tensor::DType::F32,
    )
}

/// Read a float tensor back to the host, asynchronously, as a flat row-major vector.
///
/// # Shapes
/// - `tensor`: any `[d0, .., dn]`; returns `d0 * .. * dn` values.
pub async fn read_f32<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    let data = tensor
        .into_data_async()
        .await
        .map_err(|e| readback_error(format!("{e:?}")))?;
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Device(format!("unexpected result type: {e:?}")))
}

/// Why the GPU device was lost, once it has been. A WebGPU device can be lost at any time (a
/// driver reset, the browser's GPU process crashing); cubecl then fails every readback on it, and
/// the device never comes back without a reload, so callers switch to the CPU.
pub fn device_lost() -> Option<String> {
    LOST.lock().ok().and_then(|g| g.clone())
}

static LOST: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// A failed readback as a message; a lost device is remembered (see [`device_lost`]).
fn readback_error(e: String) -> ModelError {
    // The error's Debug text can carry a "No backtrace available" line; the first says it.
    let e = e.lines().next().unwrap_or_default().to_string();
    let lower = e.to_ascii_lowercase();
    // cubecl reports a lost wgpu device as "poisoned" on every readback after the loss.
    if lower.contains("poison") || lower.contains("device was lost") {
        if let Ok(mut g) = LOST.lock() {
            g.get_or_insert_with(|| e.clone());
        }
        return ModelError::Device(format!(
            "the GPU device was lost ({e}); Interplay switches to the CPU: run it again"
        ));
    }
    ModelError::Device(format!("reading a result back failed: {e}"))
}

/// A real computation that proves a device end to end: a seeded matrix product on the device
/// checked against a float64 product on the host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceCheck {
    /// Matrix size n of the n×n·n×n product.
    pub n: usize,
    /// Largest |device − reference| over all entries.
    pub max_abs_err: f64,
    /// Sum of the device result (a fingerprint the page and the tests compare across devices).
    pub checksum: f64,
}

/// The check's product: on WebGPU the fused transformer blocks' kernel (so the first forward
/// finds it compiled), elsewhere Burn's matmul.
///
/// # Shapes
/// - `a`: `[n, k]`; `b`: `[k, m]`; returns `[n, m]`.
fn check_product(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    #[cfg(feature = "webgpu")]
    if !is_cpu(&a.device())
        && let Some(p) = crate::transformer::fused_product(&a, &b)
    {
        return p;
    }
    a.matmul(b)
}

/// Run [`DeviceCheck`] on `dev`.
pub async fn device_check(dev: &ComputeDevice, n: usize) -> Result<DeviceCheck> {
    // A small LCG keeps the inputs identical on every platform without a RNG dependency.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let a: Vec<f32> = (0..n * n).map(|_| next()).collect();
    let b: Vec<f32> = (0..n * n).map(|_| next()).collect();
    let ta = Tensor::<2>::from_data(
        burn::tensor::TensorData::new(a.clone(), [n, n]),
        &dev.device,
    );
    let tb = Tensor::<2>::from_data(
        burn::tensor::TensorData::new(b.clone(), [n, n]),
        &dev.device,
    );
    let got = read_f32(check_product(ta, tb)).await?;
    let mut max_abs_err = 0f64;
    let mut checksum = 0f64;
    for i in 0..n {
        for j in 0..n {
            let r: f64 = (0..n)
                .map(|k| a[i * n + k] as f64 * b[k * n + j] as f64)
                .sum();
            let g = got[i * n + j] as f64;
            max_abs_err = max_abs_err.max((g - r).abs());
            checksum += g;
        }
    }
    Ok(DeviceCheck {
        n,
        max_abs_err,
        checksum,
    })
}
