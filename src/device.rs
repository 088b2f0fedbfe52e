//! The device: one wgpu adapter + device + queue, and everything that must exist once per device
//! (shader modules and pipelines, the buffer pool, the command batch, the random generator).
//!
//! Ops do not submit work themselves: [`Device::dispatch`](crate::kernel) records into the
//! device's current command encoder, and the batch is submitted at a readback, at
//! [`Device::sync`], or every `ops_per_submit` dispatches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::backend::caps::{AdapterClass, AdapterReport, Caps, Limits};
use crate::backend::policy::Policy;
use crate::background::Background;
use crate::error::{Error, Result};
use crate::kernel::{Batch, PipelineCache};
use crate::platform;
use crate::pool::BufferPool;
use crate::profile::Profiler;
use crate::rng::Rng;
use crate::tensor::Storage;

/// Which adapter to open, and how. `Default` reads `WEBGRAD_BACKEND`, `WEBGRAD_ADAPTER`,
/// `WEBGRAD_PROFILE`, `WEBGRAD_KERNELS` and `WEBGRAD_SLOW_COMPILER`.
///
/// ```
/// # use webgrad::{Device, DeviceOptions};
/// let dev = Device::with_options(DeviceOptions::default().with_ops_per_submit(512))?;
/// # Ok::<(), webgrad::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct DeviceOptions {
    backend: Option<String>,
    adapter: Option<String>,
    ops_per_submit: usize,
    profile: bool,
    /// Kernels chosen as this class would (tests and benchmarks; see `backend/policy.rs`).
    kernels: Option<String>,
    /// Kernels chosen as for a slow shader compiler (tests; see `Caps::slow_compiler`).
    slow_compiler: bool,
    /// Kernel choices as where pipelines compile in the background (tests; see
    /// `Caps::compiles_in_background`).
    background_compiles: bool,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        DeviceOptions {
            backend: var("WEBGRAD_BACKEND"),
            adapter: var("WEBGRAD_ADAPTER"),
            ops_per_submit: 2048,
            profile: var("WEBGRAD_PROFILE").is_some_and(|v| v != "0"),
            kernels: var("WEBGRAD_KERNELS"),
            slow_compiler: var("WEBGRAD_SLOW_COMPILER").is_some_and(|v| v != "0"),
            background_compiles: false,
        }
    }
}

impl DeviceOptions {
    /// `vulkan`, `metal`, `dx12` or `gl` (by default all are tried, GL last).
    pub fn with_backend(mut self, backend: &str) -> Self {
        self.backend = Some(backend.to_string());
        self
    }

    /// A case-insensitive substring of the adapter name, e.g. `llvmpipe` or `nvidia`.
    pub fn with_adapter(mut self, name: &str) -> Self {
        self.adapter = Some(name.to_string());
        self
    }

    /// Submit the recorded commands after this many dispatches even without a readback
    /// (default 2,048).
    pub fn with_ops_per_submit(mut self, ops: usize) -> Self {
        self.ops_per_submit = ops.max(1);
        self
    }

    /// Time every kernel ([`Device::profile_report`]); by default on when `WEBGRAD_PROFILE=1`.
    pub fn with_profile(mut self, profile: bool) -> Self {
        self.profile = profile;
        self
    }

    /// Runs the kernels another adapter class would choose (`gpu`, `cpu`, `cpu-simd8`), for
    /// testing every kernel variant on one adapter. Not a tuning knob.
    #[doc(hidden)]
    pub fn force_kernels(mut self, class: AdapterClass) -> Self {
        self.kernels = Some(class.name().to_string());
        self
    }

    /// Chooses kernels as for an adapter whose shader compiler is slow (the browser's
    /// SwiftShader: less unrolled code, pipelines shared between variants), for testing those
    /// choices on any adapter. Not a tuning knob.
    #[doc(hidden)]
    pub fn force_slow_compiler(mut self) -> Self {
        self.slow_compiler = true;
        self
    }

    /// Chooses kernels as where pipelines compile in the background (a page): with a slow
    /// compiler, training convolutions run im2col until the implicit kernels' pipelines are
    /// ready. Natively nothing compiles in the background, so a variant's dry run compiles its
    /// pipelines at once and the switch comes at the op's next call: for testing the switch on
    /// any adapter. Not a tuning knob.
    #[doc(hidden)]
    pub fn force_background_compiles(mut self) -> Self {
        self.background_compiles = true;
        self
    }
}

/// What adapter a [`Device`] runs on.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// The adapter's name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// The wgpu backend: Vulkan, Metal, Dx12 or Gl.
    pub backend: String,
    /// Discrete, integrated or virtual GPU, or CPU (a software adapter).
    pub device_type: String,
    /// The driver's name and version.
    pub driver: String,
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let details: Vec<&str> = [&self.backend, &self.device_type, &self.driver]
            .into_iter()
            .map(String::as_str)
            .filter(|d| !d.is_empty())
            .collect();
        write!(f, "{} ({})", self.name, details.join(", "))
    }
}

/// A handle to a GPU device; cheap to clone, all clones share one device.
#[derive(Clone)]
pub struct Device(Arc<DeviceInner>);

struct DeviceInner {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: DeviceInfo,
    /// The adapter's capabilities and the kernel choices that follow from them.
    policy: Policy,
    pipelines: PipelineCache,
    /// Pipelines compiling in the background (`background.rs`).
    background: Background,
    batch: Mutex<Batch>,
    pool: Mutex<BufferPool>,
    rng: Mutex<Rng>,
    /// The first uncaptured wgpu error, reported at the next dispatch or readback.
    wgpu_error: Arc<Mutex<Option<String>>>,
    /// The first error of a deferred computation (`fusion.rs`), reported the same way.
    deferred_error: Mutex<Option<Error>>,
    /// Deferred storages, to compute before an in-place write to one of their inputs.
    deferred: Mutex<Vec<Weak<Storage>>>,
    ops_per_submit: usize,
    /// Per-kernel times when `WEBGRAD_PROFILE` is set.
    profile: Option<Profiler>,
    next_tensor_id: AtomicU64,
    /// [`Device::unused_binding`]'s buffers, made when first asked for.
    dummy: OnceLock<[wgpu::Buffer; crate::kernel::UNUSED_BINDINGS]>,
    /// [`Device::unused_texels`]' texture, made when first asked for.
    dummy_texels: OnceLock<wgpu::TextureView>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Device({})", self.0.info)
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

fn parse_backend(name: &str) -> Result<wgpu::Backends> {
    match name.to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Ok(wgpu::Backends::VULKAN),
        "metal" | "mtl" => Ok(wgpu::Backends::METAL),
        "dx12" | "d3d12" => Ok(wgpu::Backends::DX12),
        "gl" | "gles" | "opengl" => Ok(wgpu::Backends::GL),
        other => Err(Error::Invalid(format!(
            "unknown backend {other:?} (WEBGRAD_BACKEND): use vulkan, metal, dx12 or gl"
        ))),
    }
}

/// An error's message followed by each of its causes (wgpu's top-level message alone is often
/// just "Validation Error").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let line = c.to_string();
        if !text.contains(&line) {
            text += &format!(": {line}");
        }
        cause = c.source();
    }
    text
}

/// Lower is better: real GPUs first, software adapters last; native APIs before GL.
fn adapter_rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let api = if info.backend == wgpu::Backend::Gl {
        1
    } else {
        0
    };
    (kind, api)
}

/// Every adapter of `backends`. GL only when no native API has one: probing EGL is slow and
/// noisy headless.
#[cfg(not(target_arch = "wasm32"))]
async fn find_adapters(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let enumerate = |backends: wgpu::Backends| {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = backends;
        // Validation layers are a debugging aid that slows every dispatch; wgpu's own
        // validation stays on.
        desc.flags = wgpu::InstanceFlags::empty();
        wgpu::Instance::new(desc).enumerate_adapters(backends)
    };
    let native = backends - wgpu::Backends::GL - wgpu::Backends::BROWSER_WEBGPU;
    let mut adapters = if native.is_empty() {
        Vec::new()
    } else {
        enumerate(native).await
    };
    if adapters.is_empty() && backends.contains(wgpu::Backends::GL) {
        adapters = enumerate(wgpu::Backends::GL).await;
    }
    adapters
}

/// The page's WebGPU adapter (`navigator.gpu.requestAdapter`), if the browser offers one.
#[cfg(target_arch = "wasm32")]
async fn find_adapters(_backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    thread_local! {
        // One instance for the page's lifetime: Chromium fails a device's buffer mappings
        // ("A valid external Instance reference no longer exists") once the instance it came
        // from is collected, and natively wgpu keeps it alive for us.
        static INSTANCE: wgpu::Instance = {
            let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
            desc.backends = wgpu::Backends::BROWSER_WEBGPU;
            wgpu::Instance::new(desc)
        };
    }
    let instance = INSTANCE.with(|i| i.clone());
    let options = wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    };
    instance
        .request_adapter(&options)
        .await
        .into_iter()
        .collect()
}

/// Opens a device on `adapter` with its own limits, the profiler's features when profiling,
/// and subgroup operations where the 8-lane CPU kernels use them; also says which of those
/// subgroup features it asked for.
async fn open_device(
    adapter: &wgpu::Adapter,
    opts: &DeviceOptions,
    forced: Option<AdapterClass>,
) -> Result<(wgpu::Device, wgpu::Queue, wgpu::Features)> {
    let ai = adapter.get_info();
    let subgroups = match forced {
        None | Some(AdapterClass::CpuSimd8) if Caps::wants_subgroups(&ai, adapter.features()) => {
            wgpu::Features::SUBGROUP
        }
        _ => wgpu::Features::empty(),
    };
    let (device, queue) = adapter
        .request_device(&wgpu::DeviceDescriptor {
            label: Some("webgrad"),
            required_features: crate::profile::wanted_features(adapter, opts.profile) | subgroups,
            required_limits: adapter.limits(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        })
        .await
        .map_err(|e| {
            Error::Device(format!(
                "{} refused to open a device: {}",
                ai.name,
                with_causes(&e)
            ))
        })?;
    Ok((device, queue, subgroups))
}

/// Why `device` cannot create a compute pipeline that writes a storage buffer (None when it
/// can): the least any kernel needs.
async fn compute_pipeline_error(device: &wgpu::Device) -> Option<String> {
    const PROBE: &str = "@group(0) @binding(0) var<storage, read_write> x: array<f32>;\n\
                         @compute @workgroup_size(1) fn main() { x[0] = 1.0; }";
    // wgpu reports a shader its backend cannot translate as an internal error.
    let invalid = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("compute probe"),
        source: wgpu::ShaderSource::Wgsl(PROBE.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("compute probe"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let internal = internal.pop().await;
    let invalid = invalid.pop().await;
    drop(pipeline);
    internal.or(invalid).map(|e| with_causes(&e))
}

impl Device {
    /// Opens the best adapter: a hardware GPU if there is one, else a software adapter.
    /// `WEBGRAD_BACKEND` and `WEBGRAD_ADAPTER` narrow the choice. Blocks the thread while the
    /// adapter opens: in a browser use [`new_async`](Self::new_async).
    pub fn new() -> Result<Device> {
        Device::with_options(DeviceOptions::default())
    }

    /// Opens a device with the given options (backend, adapter name, batching, profiling).
    /// Blocking, like [`new`](Self::new).
    pub fn with_options(opts: DeviceOptions) -> Result<Device> {
        platform::refuse_blocking("Device::new", "Device::new_async")?;
        platform::block_on(Device::with_options_async(opts))
    }

    /// Like [`new`](Self::new), but awaits the adapter: the way to open a device in a web
    /// page (the browser's WebGPU adapter), and usable natively from any executor.
    pub async fn new_async() -> Result<Device> {
        Device::with_options_async(DeviceOptions::default()).await
    }

    /// Like [`with_options`](Self::with_options), awaiting the adapter (see
    /// [`new_async`](Self::new_async)).
    pub async fn with_options_async(opts: DeviceOptions) -> Result<Device> {
        let backends = match &opts.backend {
            Some(b) if !platform::WEB => parse_backend(b)?,
            _ => {
                wgpu::Backends::VULKAN
                    | wgpu::Backends::METAL
                    | wgpu::Backends::DX12
                    | wgpu::Backends::GL
                    | wgpu::Backends::BROWSER_WEBGPU
            }
        };
        // An adapter without compute shaders (a GL context below ES 3.1 / GL 4.3) can open a
        // device but create no pipeline: leave it out, and name it if nothing else is left.
        let (adapters, no_compute): (Vec<_>, Vec<_>) =
            find_adapters(backends).await.into_iter().partition(|a| {
                a.get_downlevel_capabilities()
                    .flags
                    .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
            });
        let named = |list: &[wgpu::Adapter]| -> Vec<String> {
            list.iter()
                .map(|a| {
                    let i = a.get_info();
                    format!("{} ({:?})", i.name, i.backend)
                })
                .collect()
        };
        let (mut no_compute, found) = (named(&no_compute), named(&adapters));
        let forced = match &opts.kernels {
            None => None,
            Some(name) => Some(AdapterClass::parse(name).ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown kernel class {name:?} (WEBGRAD_KERNELS): use gpu, cpu or cpu-simd8"
                ))
            })?),
        };
        let wanted = opts.adapter.as_ref().map(|s| s.to_ascii_lowercase());
        let mut ranked: Vec<_> = adapters
            .into_iter()
            .filter(|a| match &wanted {
                Some(w) => a.get_info().name.to_ascii_lowercase().contains(w),
                None => true,
            })
            .collect();
        ranked.sort_by_key(|a| adapter_rank(&a.get_info()));
        let matched = !ranked.is_empty();
        let mut opened = None;
        for adapter in ranked {
            let (device, queue, subgroups) = open_device(&adapter, &opts, forced).await?;
            // wgpu's GL backend can claim compute shaders for a context whose GLSL version
            // has none (NVIDIA's EGL, wgpu issue 4751): every pipeline then fails. Such an
            // adapter is left out like one that lacks them.
            if adapter.get_info().backend == wgpu::Backend::Gl {
                if let Some(e) = compute_pipeline_error(&device).await {
                    let e = e.split_whitespace().collect::<Vec<_>>().join(" ");
                    let name = adapter.get_info().name;
                    no_compute.push(format!("{name} (Gl: no compute pipeline: {e})"));
                    continue;
                }
            }
            opened = Some((adapter, device, queue, subgroups));
            break;
        }
        let Some((adapter, device, queue, subgroups)) = opened else {
            let hint = if platform::WEB {
                "the browser offers no WebGPU adapter (Chromium: --enable-unsafe-webgpu where \
                 it is not on by default)"
            } else {
                "on Linux without a GPU, install a software Vulkan driver: \
                 `apt-get install mesa-vulkan-drivers` (lavapipe)"
            };
            return Err(Error::NoAdapter(if !found.is_empty() && !matched {
                format!(
                    "no adapter matches WEBGRAD_ADAPTER={:?} among [{}]",
                    opts.adapter.unwrap_or_default(),
                    found.join(", ")
                )
            } else if !no_compute.is_empty() {
                format!(
                    "no adapter for {backends:?} runs compute shaders: [{}] lack them",
                    no_compute.join(", ")
                )
            } else {
                format!("wgpu found no adapter for {backends:?}; {hint}")
            }));
        };
        let ai = adapter.get_info();
        let limits = adapter.limits();

        let wgpu_error = Arc::new(Mutex::new(None::<String>));
        let sink = wgpu_error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap();
            if slot.is_none() {
                *slot = Some(with_causes(&e));
            }
        }));

        let info = DeviceInfo {
            // A browser may keep the adapter's name to itself.
            name: match ai.name.is_empty() {
                true => "WebGPU adapter (unnamed)".to_string(),
                false => ai.name.clone(),
            },
            backend: format!("{:?}", ai.backend),
            device_type: format!("{:?}", ai.device_type),
            driver: format!("{} {}", ai.driver, ai.driver_info)
                .trim()
                .to_string(),
        };
        let mut caps = Caps::from_report(&AdapterReport {
            name: &ai.name,
            device_type: ai.device_type,
            subgroup_sizes: (ai.subgroup_min_size, ai.subgroup_max_size),
            subgroups_enabled: !subgroups.is_empty(),
            browser: ai.backend == wgpu::Backend::BrowserWebGpu,
            limits: Limits::from_wgpu(&limits),
        });
        if opts.slow_compiler {
            caps = caps.with_slow_compiler();
        }
        if opts.background_compiles {
            caps = caps.with_background_compiles();
        }
        let policy = Policy::new(caps, forced).map_err(Error::Invalid)?;
        let batch = Batch::new(&device, &policy.caps().limits, opts.ops_per_submit.max(1));
        let profile = opts
            .profile
            .then(|| Profiler::new(&device, &queue, policy.profile_with_timestamps()));
        Ok(Device(Arc::new(DeviceInner {
            policy,
            pipelines: PipelineCache::default(),
            background: Background::default(),
            batch: Mutex::new(batch),
            pool: Mutex::new(BufferPool::default()),
            rng: Mutex::new(Rng::new(0)),
            wgpu_error,
            deferred_error: Mutex::new(None),
            deferred: Mutex::new(Vec::new()),
            ops_per_submit: opts.ops_per_submit.max(1),
            profile,
            next_tensor_id: AtomicU64::new(1),
            dummy: OnceLock::new(),
            dummy_texels: OnceLock::new(),
            device,
            queue,
            info,
        })))
    }

    /// Which adapter and backend this device runs on.
    pub fn info(&self) -> &DeviceInfo {
        &self.0.info
    }

    /// The limits the device was opened with (the adapter's own, not wgpu's defaults).
    pub fn limits(&self) -> &Limits {
        &self.0.policy.caps().limits
    }

    /// The adapter class whose kernels this device runs (its own unless forced).
    pub fn kernel_class(&self) -> AdapterClass {
        self.0.policy.class()
    }

    /// Every adapter class whose kernels this device's adapter can run, its own first: what
    /// the test suite iterates to cover every kernel variant.
    #[doc(hidden)]
    pub fn runnable_kernel_classes(&self) -> Vec<AdapterClass> {
        Policy::runnable_classes(self.0.policy.caps())
    }

    /// The kernel policy (crate-internal: ops ask it which variant to run).
    pub(crate) fn policy(&self) -> &Policy {
        &self.0.policy
    }

    /// Seeds the generator behind `rand`, `randn` and dropout masks.
    pub fn manual_seed(&self, seed: u64) {
        *self.0.rng.lock().unwrap() = Rng::new(seed);
    }

    /// Computes every deferred output still held (see [`Tensor::relu`](crate::Tensor::relu)),
    /// submits all recorded work and waits until the GPU has finished it. Blocking: in a
    /// browser use [`sync_async`](Self::sync_async).
    pub fn sync(&self) -> Result<()> {
        platform::refuse_blocking("Device::sync", "Device::sync_async")?;
        self.submit_all()?;
        platform::wait_for_gpu(self.wgpu())?;
        self.start_background_compiles();
        self.check_error()
    }

    /// Like [`sync`](Self::sync), but awaits the GPU instead of blocking (natively the wait
    /// still blocks the thread, as wgpu runs its callbacks only when polled).
    pub async fn sync_async(&self) -> Result<()> {
        self.submit_all()?;
        platform::submitted_work_done(self.wgpu(), self.queue()).await?;
        self.start_background_compiles();
        self.check_error()
    }

    /// Computes the deferred outputs still held and submits everything recorded.
    fn submit_all(&self) -> Result<()> {
        let deferred: Vec<Arc<Storage>> = {
            let list = self.0.deferred.lock().unwrap();
            list.iter().filter_map(|w| w.upgrade()).collect()
        };
        for s in deferred {
            crate::fusion::materialize(&s);
        }
        self.flush()
    }

    /// Bytes of GPU memory held by tensors and the buffer pool.
    pub fn memory_allocated(&self) -> u64 {
        self.0.pool.lock().unwrap().allocated_bytes()
    }

    /// The most bytes held by live tensors at once since [`reset_peak_memory`](Device::reset_peak_memory)
    /// (Self::reset_peak_memory) or the device's creation.
    pub fn peak_memory_in_use(&self) -> u64 {
        self.0.pool.lock().unwrap().peak_in_use()
    }

    /// Starts peak-memory tracking afresh from the memory in use now.
    pub fn reset_peak_memory(&self) {
        self.0.pool.lock().unwrap().reset_peak();
    }

    /// Bytes of GPU memory held by live tensors (excluding free pooled buffers).
    pub fn memory_in_use(&self) -> u64 {
        self.0.pool.lock().unwrap().in_use_bytes()
    }

    /// Releases the idle buffers held by the pool (as `torch.cuda.empty_cache`).
    pub fn empty_cache(&self) {
        self.0.pool.lock().unwrap().trim();
    }

    /// The wgpu device (for the kernel mechanics in `kernel.rs` and `backend/cpu/texels.rs`).
    pub(crate) fn wgpu(&self) -> &wgpu::Device {
        &self.0.device
    }

    pub(crate) fn queue(&self) -> &wgpu::Queue {
        &self.0.queue
    }

    /// Shader modules and pipelines compiled so far.
    pub(crate) fn pipelines(&self) -> &PipelineCache {
        &self.0.pipelines
    }

    /// The recorded, not yet submitted dispatches.
    pub(crate) fn background(&self) -> &Background {
        &self.0.background
    }

    pub(crate) fn batch(&self) -> &Mutex<Batch> {
        &self.0.batch
    }

    /// How many dispatches a command batch takes before it is submitted.
    pub(crate) fn ops_per_submit(&self) -> usize {
        self.0.ops_per_submit
    }

    pub(crate) fn buffer_pool(&self) -> &Mutex<BufferPool> {
        &self.0.pool
    }

    /// The seeded generator of `rand`, `randn`, initialisation and dropout masks.
    pub(crate) fn rng(&self) -> &Mutex<Rng> {
        &self.0.rng
    }

    pub(crate) fn profiler(&self) -> Option<&Profiler> {
        self.0.profile.as_ref()
    }

    /// Where [`Device::unused_binding`] keeps its buffers.
    pub(crate) fn dummy_slot(&self) -> &OnceLock<[wgpu::Buffer; crate::kernel::UNUSED_BINDINGS]> {
        &self.0.dummy
    }

    /// Where [`Device::unused_texels`] keeps its texture.
    pub(crate) fn dummy_texels_slot(&self) -> &OnceLock<wgpu::TextureView> {
        &self.0.dummy_texels
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.0.next_tensor_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Keeps the first error of a computation that could not return it (a deferred op), for
    /// the next submit or readback to report.
    pub(crate) fn record_error(&self, e: Error) {
        let mut slot = self.0.deferred_error.lock().unwrap();
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    pub(crate) fn register_deferred(&self, storage: &Arc<Storage>) {
        let mut list = self.0.deferred.lock().unwrap();
        list.retain(|w| {
            w.upgrade()
                .is_some_and(|s| s.with_deferred(|_| ()).is_some())
        });
        list.push(Arc::downgrade(storage));
    }

    /// Computes every live deferred storage whose values read `input` (before it is written
    /// in place).
    pub(crate) fn materialize_readers_of(&self, input: &Arc<Storage>) {
        let readers: Vec<Arc<Storage>> = self
            .0
            .deferred
            .lock()
            .unwrap()
            .iter()
            .filter_map(|w| w.upgrade())
            .filter(|s| s.with_deferred(|d| d.reads(input)) == Some(true))
            .collect();
        for s in readers {
            crate::fusion::materialize(&s);
        }
    }

    pub(crate) fn check_error(&self) -> Result<()> {
        if let Some(e) = self.0.deferred_error.lock().unwrap().take() {
            return Err(e);
        }
        match self.0.wgpu_error.lock().unwrap().take() {
            Some(e) => Err(Error::Device(e)),
            None => Ok(()),
        }
    }

    pub(crate) fn same(&self, other: &Device, op: &'static str) -> Result<()> {
        if self == other {
            Ok(())
        } else {
            Err(Error::DeviceMismatch(op))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Device;

    /// wgpu's uncaptured errors say only "Validation Error" at the top; the cause names the
    /// problem, and the error a caller gets keeps it.
    #[test]
    fn device_errors_keep_their_causes() {
        let dev = Device::new().unwrap();
        let buffer = || {
            dev.0.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: 16,
                usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let (a, b) = (buffer(), buffer());
        // A copy of 3 bytes breaks wgpu's 4-byte copy alignment.
        dev.copy_range(&a, 0, &b, 0, 3);
        let err = dev.sync().unwrap_err().to_string();
        assert!(err.to_lowercase().contains("align"), "{err}");
    }
}
