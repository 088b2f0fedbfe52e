//! Running WGSL kernels: shader modules and pipelines compiled once per device, the command
//! batch that dispatches are recorded into, buffer allocation and readback.
//!
//! Every kernel has the same binding layout: binding 0 is a small uniform struct of parameters
//! (sizes, shapes, flags; a [`KernelParams`] struct on the host, declared with
//! [`kernel_params!`] next to its op and checked against the WGSL by a unit test), addressed
//! with a dynamic offset into one per-batch parameter buffer;
//! bindings 1.. are the tensors' buffers, read-only or read-write, or textures holding a
//! tensor's values (`backend/cpu/texels.rs`), which kernels for CPU adapters read their operands from. Parameters are uniforms, not
//! storage: a storage read cannot be hoisted out of a loop past the kernel's storage writes (they
//! might alias), so llvmpipe re-loaded every size in every iteration.
//! Every kernel reads its workgroup index as `wid.x + wid.y * num_workgroups.x`: the host folds
//! grids past the per-dimension limit (65,535 workgroups) into 2-D.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::backend::Limits;
use crate::background;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::platform;
use crate::pool::size_class;

/// A WGSL source file: one op family, forward and backward entry points side by side; the
/// shared files it starts with (`includes`: what several modules of a family have in common,
/// such as `matmul_common.wgsl`); plus, for a family defined by a table (the elementwise ops)
/// or unrolled code, the WGSL that a generator writes.
pub(crate) struct Shader {
    pub name: &'static str,
    pub includes: &'static [&'static str],
    pub source: &'static str,
    pub generated: Option<fn() -> String>,
}

/// Helpers every shader may use (`relu`, `sigmoid`, `is_nan`, `divmod`, `TEXEL_ROW`, the grid
/// indexing, `workgroup_sum`), written once.
const PRELUDE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/prelude.wgsl"));

impl Shader {
    /// The whole WGSL module: the prelude, the shared files, the file, then what its
    /// generator writes.
    pub fn full_source(&self) -> String {
        let generated = self.generated.map(|g| g()).unwrap_or_default();
        let includes = self.includes.join("\n");
        format!("{PRELUDE}\n{includes}\n{}\n{generated}", self.source)
    }
}

/// `shader!("family")`, `shader!("family", generator)`, and either with the shared files it
/// starts with: `shader!("matmul", includes = ["matmul_common"])` (names as the files', under
/// `shaders/`, without `.wgsl`).
macro_rules! shader {
    ($name:literal) => {
        shader!($name, includes = [], None)
    };
    ($name:literal, includes = [$($include:literal),*]) => {
        shader!($name, includes = [$($include),*], None)
    };
    ($name:literal, includes = [$($include:literal),*], $generated:expr) => {
        crate::kernel::Shader {
            name: $name,
            includes: &[$(crate::kernel::shader_file!($include)),*],
            source: crate::kernel::shader_file!($name),
            generated: $generated,
        }
    };
    ($name:literal, $generated:expr) => {
        shader!($name, includes = [], $generated)
    };
}
pub(crate) use shader;

/// The text of `shaders/{name}.wgsl`, compiled in.
macro_rules! shader_file {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/shaders/",
            $name,
            ".wgsl"
        ))
    };
}
pub(crate) use shader_file;

/// A kernel's parameters: the Rust mirror of one shader's `struct Params`, bound at binding 0.
/// Declare one with [`kernel_params!`], next to the op that fills it; the unit test
/// `kernel::tests::params_structs_match_the_shaders` parses every shader with naga and checks
/// each struct's field names, offsets and size against the WGSL uniform layout.
pub(crate) trait KernelParams: bytemuck::Pod {
    /// The shaders (their names in [`shader!`]) whose `Params` struct this mirrors: one,
    /// or several whose structs are the same (matmul's portable and subgroup kernels).
    const SHADERS: &'static [&'static str];
    /// (field name, byte offset) of each field, in declaration order. Fields named `_pad*`
    /// are explicit padding (WGSL rounds a struct holding `vec4`s up to 16 bytes).
    #[allow(dead_code)] // read by the layout test
    const FIELDS: &'static [(&'static str, usize)];
}

/// Declares a kernel's `#[repr(C)]` parameter struct and its [`KernelParams`] impl:
/// `kernel_params! { pub(crate) struct PoolParams for "pool" { planes: u32, .. } }`. Field
/// names are the WGSL member names; `u32`/`i32`/`f32` as in WGSL, `vec4<u32>` as `[u32; 4]`.
macro_rules! kernel_params {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident for $($shader:literal),+ {
            $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $($(#[$fmeta])* pub $field: $ty),*
        }

        impl crate::kernel::KernelParams for $name {
            const SHADERS: &'static [&'static str] = &[$($shader),+];
            const FIELDS: &'static [(&'static str, usize)] =
                &[$((stringify!($field), ::core::mem::offset_of!($name, $field))),*];
        }
    };
}
pub(crate) use kernel_params;

/// How a kernel binds a buffer or a texture (see `backend/cpu/texels.rs`).
pub(crate) enum Bind<'a> {
    Read(&'a wgpu::Buffer),
    Write(&'a wgpu::Buffer),
    /// `texture_2d<f32>` (rgba32float), read with `textureLoad`.
    Texels(&'a wgpu::TextureView),
    /// `texture_storage_2d<rgba32float, write>`.
    WriteTexels(&'a wgpu::TextureView),
}

impl Bind<'_> {
    /// Two bits per binding in the pipeline key.
    fn kind(&self) -> u32 {
        match self {
            Bind::Read(_) => 0,
            Bind::Write(_) => 1,
            Bind::Texels(_) => 2,
            Bind::WriteTexels(_) => 3,
        }
    }
}

/// The layout entry of a binding of `kind` (as [`Bind::kind`]).
fn layout_type(kind: u32) -> wgpu::BindingType {
    let storage = |read_only| wgpu::BindingType::Buffer {
        ty: wgpu::BufferBindingType::Storage { read_only },
        has_dynamic_offset: false,
        min_binding_size: None,
    };
    match kind {
        0 => storage(true),
        1 => storage(false),
        2 => wgpu::BindingType::Texture {
            sample_type: wgpu::TextureSampleType::Float { filterable: false },
            view_dimension: wgpu::TextureViewDimension::D2,
            multisampled: false,
        },
        _ => wgpu::BindingType::StorageTexture {
            access: wgpu::StorageTextureAccess::WriteOnly,
            format: wgpu::TextureFormat::Rgba32Float,
            view_dimension: wgpu::TextureViewDimension::D2,
        },
    }
}

impl Bind<'_> {
    fn resource(&self) -> wgpu::BindingResource<'_> {
        match self {
            Bind::Read(b) | Bind::Write(b) => b.as_entire_binding(),
            Bind::Texels(v) | Bind::WriteTexels(v) => wgpu::BindingResource::TextureView(v),
        }
    }
}

/// Bytes reserved per dispatch for its parameters (and the binding's size).
const PARAM_SLOT: u64 = 256;

/// (shader, entry point, number of bindings, their kinds (2 bits each), override constants)
pub(crate) type PipelineKey = (
    &'static str,
    &'static str,
    u32,
    u32,
    Vec<(&'static str, u32)>,
);

#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
    /// The keys of `pipelines` in the order they were created.
    created: Mutex<Vec<PipelineKey>>,
}

pub(crate) struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// The open command encoder and compute pass that dispatches are recorded into.
pub(crate) struct Batch {
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    params: Vec<u8>,
    params_buffer: wgpu::Buffer,
    slot: u64,
    capacity: u64,
    ops: usize,
    /// Profiling with timestamps: the kernel of each timed dispatch, in order.
    timed: Vec<&'static str>,
}

impl Batch {
    pub fn new(device: &wgpu::Device, limits: &Limits, ops_per_submit: usize) -> Batch {
        let slot = PARAM_SLOT.max(limits.min_uniform_buffer_offset_alignment as u64);
        let capacity = slot * ops_per_submit as u64;
        let params_buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("webgrad params"),
            size: capacity,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Batch {
            encoder: None,
            pass: None,
            params: Vec::with_capacity(capacity as usize),
            params_buffer,
            slot,
            capacity,
            ops: 0,
            timed: Vec::new(),
        }
    }
}

/// A buffer in a writable slot of a dispatch must be in no other slot: the kernel's writes
/// through one would race with (or be lost to) the accesses through the other, and WebGPU
/// refuses such a dispatch even where the kernel leaves a slot alone (so a kernel's unused
/// writable slots hold distinct [`Device::unused_binding`]s). Checked on every dispatch (a few
/// pointer comparisons beside a dispatch's tens of microseconds), so native test runs catch
/// what a browser would refuse; an error naming the kernel, not a panic.
/// How many distinct unused-binding buffers a device keeps (the most unused writable slots of
/// any dispatch: an optimizer's three states).
pub(crate) const UNUSED_BINDINGS: usize = 3;

fn check_binds(shader: &Shader, entry: &str, binds: &[Bind]) -> Result<()> {
    fn buffer<'a>(b: &Bind<'a>) -> Option<&'a wgpu::Buffer> {
        match b {
            Bind::Read(b) | Bind::Write(b) => Some(*b),
            _ => None,
        }
    }
    for (i, a) in binds.iter().enumerate() {
        let Bind::Write(a) = a else { continue };
        for (j, b) in binds.iter().enumerate() {
            if j != i && buffer(b) == Some(*a) {
                let (i, j) = (i.min(j), i.max(j));
                return Err(Error::Invalid(format!(
                    "kernel {}::{entry} binds one buffer to the writable bindings {} and {}",
                    shader.name,
                    i + 1,
                    j + 1
                )));
            }
        }
    }
    Ok(())
}

/// Splits `n` workgroups into an (x, y) grid with x within the per-dimension limit.
pub(crate) fn fold_grid(n: u32, max_dim: u32) -> (u32, u32) {
    if n <= max_dim {
        (n.max(1), 1)
    } else {
        let y = n.div_ceil(max_dim);
        (n.div_ceil(y), y)
    }
}

/// The cache key of `entry`'s pipeline with these constants and bindings.
pub(crate) fn pipeline_key(
    shader: &Shader,
    entry: &'static str,
    constants: &[(&'static str, u32)],
    binds: &[Bind],
) -> PipelineKey {
    let kinds = binds
        .iter()
        .enumerate()
        .fold(0u32, |m, (i, b)| m | b.kind() << (2 * i));
    (
        shader.name,
        entry,
        binds.len() as u32,
        kinds,
        constants.to_vec(),
    )
}

/// The bind group layout of a kernel with `n` bindings (after the parameters) of the `kinds`
/// packed as in the pipeline key.
pub(crate) fn layout_entries(kinds: u32, n: usize) -> Vec<wgpu::BindGroupLayoutEntry> {
    let mut entries = vec![wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: true,
            min_binding_size: None,
        },
        count: None,
    }];
    for i in 0..n {
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: i as u32 + 1,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: layout_type(kinds >> (2 * i) & 3),
            count: None,
        });
    }
    entries
}

impl Device {
    fn pipeline(
        &self,
        shader: &Shader,
        entry: &'static str,
        constants: &[(&'static str, u32)],
        binds: &[Bind],
    ) -> Arc<Pipeline> {
        let key = pipeline_key(shader, entry, constants, binds);
        self.keyed_pipeline(&key, || shader.full_source())
    }

    /// The pipeline of `key`, created on first use from its module's full `source()` (also a
    /// background compile where none can run in the background: `background.rs`).
    pub(crate) fn keyed_pipeline(
        &self,
        key: &PipelineKey,
        source: impl FnOnce() -> String,
    ) -> Arc<Pipeline> {
        if let Some(p) = self.pipelines().pipelines.lock().unwrap().get(key) {
            return p.clone();
        }
        let module = self.module_of(key.0, source);
        let p = Arc::new(self.create_pipeline(&module, key.1, &key.4, key.2 as usize, key.3));
        let mut cache = self.pipelines().pipelines.lock().unwrap();
        cache.insert(key.clone(), p.clone());
        self.pipelines().created.lock().unwrap().push(key.clone());
        p
    }

    /// Whether this device has created the pipeline of `key`.
    pub(crate) fn has_pipeline(&self, key: &PipelineKey) -> bool {
        self.pipelines().pipelines.lock().unwrap().contains_key(key)
    }

    /// The device's module named `name`, created from `source()` on first use.
    fn module_of(&self, name: &'static str, source: impl FnOnce() -> String) -> wgpu::ShaderModule {
        let mut modules = self.pipelines().modules.lock().unwrap();
        modules
            .entry(name)
            .or_insert_with(|| {
                self.wgpu()
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(name),
                        source: wgpu::ShaderSource::Wgsl(source().into()),
                    })
            })
            .clone()
    }

    /// A new pipeline of `entry` whose `n` bindings (after the parameters) are of the `kinds`
    /// packed as in the pipeline key.
    fn create_pipeline(
        &self,
        module: &wgpu::ShaderModule,
        entry: &str,
        constants: &[(&str, u32)],
        n: usize,
        kinds: u32,
    ) -> Pipeline {
        let entries = layout_entries(kinds, n);
        let layout = self
            .wgpu()
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(entry),
                entries: &entries,
            });
        let pipeline_layout = self
            .wgpu()
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(entry),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = self
            .wgpu()
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pipeline_layout),
                module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants
                        .iter()
                        .map(|&(name, v)| (name, v as f64))
                        .collect::<Vec<_>>(),
                    // Every kernel writes its workgroup memory before reading it.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        Pipeline { pipeline, layout }
    }

    /// The pipelines created so far, in order: (shader, entry point, number of bindings,
    /// their kinds, override constants). For [`crate::diagnostics`].
    pub(crate) fn created_pipelines(&self) -> Vec<PipelineKey> {
        self.pipelines().created.lock().unwrap().clone()
    }

    /// Creates the pipeline of `key` on its own (not cached) and awaits the device's answer,
    /// for [`crate::diagnostics`]: milliseconds to the compiled module (0 if this device had
    /// it already) and to the compiled pipeline.
    pub(crate) async fn time_pipeline(
        &self,
        shader: &Shader,
        entry: &str,
        constants: &[(&str, u32)],
        n: usize,
        kinds: u32,
    ) -> Result<(f64, f64)> {
        let known = self
            .pipelines()
            .modules
            .lock()
            .unwrap()
            .contains_key(shader.name);
        let start = platform::Instant::now();
        let module = self.module_of(shader.name, || shader.full_source());
        let module_ms = if known {
            0.0
        } else {
            module.get_compilation_info().await;
            start.elapsed().as_secs_f64() * 1e3
        };
        let start = platform::Instant::now();
        let scope = self.wgpu().push_error_scope(wgpu::ErrorFilter::Validation);
        let p = self.create_pipeline(&module, entry, constants, n, kinds);
        let error = scope.pop().await;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        drop(p);
        match error {
            Some(e) => Err(Error::Invalid(format!("{}::{entry}: {e}", shader.name))),
            None => Ok((module_ms, ms)),
        }
    }

    /// Records one dispatch of `entry` over `workgroups` workgroups (folded into 2-D).
    /// `params` is the shader's `Params` struct (see [`KernelParams`]).
    pub(crate) fn dispatch<P: KernelParams>(
        &self,
        shader: &Shader,
        entry: &'static str,
        binds: &[Bind],
        params: &P,
        workgroups: u32,
    ) -> Result<()> {
        self.dispatch_with(shader, entry, &[], binds, params, workgroups)
    }

    /// [`dispatch`](Self::dispatch) of a pipeline specialised by WGSL `override` constants
    /// (op codes and flags), so a shader's `switch` on them is resolved when it is compiled
    /// rather than evaluated per element (llvmpipe runs every branch of a switch it cannot
    /// prove uniform).
    pub(crate) fn dispatch_with<P: KernelParams>(
        &self,
        shader: &Shader,
        entry: &'static str,
        constants: &[(&'static str, u32)],
        binds: &[Bind],
        params: &P,
        workgroups: u32,
    ) -> Result<()> {
        const { assert!(size_of::<P>() <= PARAM_SLOT as usize) };
        if !P::SHADERS.contains(&shader.name) {
            return Err(Error::Invalid(format!(
                "kernel {}::{entry} given the parameters of {:?}",
                shader.name,
                P::SHADERS
            )));
        }
        if workgroups == 0 {
            return Ok(());
        }
        check_binds(shader, entry, binds)?;
        if background::in_dry_run() {
            self.name_pipeline(shader, entry, constants, binds);
            return Ok(());
        }
        let pipeline = self.pipeline(shader, entry, constants, binds);
        let mut batch = self.batch().lock().unwrap();
        if batch.params.len() as u64 + batch.slot > batch.capacity {
            self.flush_locked(&mut batch)?;
        }
        let offset = batch.params.len() as u64;
        batch.params.extend_from_slice(bytemuck::bytes_of(params));
        let end = (offset + batch.slot) as usize;
        batch.params.resize(end, 0);

        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &batch.params_buffer,
                offset: 0,
                size: wgpu::BufferSize::new(PARAM_SLOT),
            }),
        }];
        for (i, b) in binds.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.resource(),
            });
        }
        let bind_group = self.wgpu().create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.layout,
            entries: &entries,
        });
        let (x, y) = fold_grid(
            workgroups,
            self.limits().max_compute_workgroups_per_dimension,
        );
        let timer = self.profiler().and_then(|p| p.gpu.as_ref());
        let timed = batch.timed.len() as u32;
        let pass_timer = timer.filter(|t| !t.inside_passes);
        if pass_timer.is_some() {
            // This dispatch's pass ends before the next one's.
            batch.pass = None;
        }
        let pass = self.open_pass(&mut batch, pass_timer.map(|t| (&t.queries, 2 * timed)));
        if let Some(t) = timer.filter(|t| t.inside_passes) {
            pass.write_timestamp(&t.queries, 2 * timed);
        }
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, &bind_group, &[offset as u32]);
        pass.dispatch_workgroups(x, y, 1);
        if let Some(t) = timer {
            if t.inside_passes {
                pass.write_timestamp(&t.queries, 2 * timed + 1);
            } else {
                batch.pass = None;
            }
            batch.timed.push(entry);
        }
        batch.ops += 1;
        if let (Some(profile), None) = (self.profiler(), timer) {
            // Profiling without timestamps: run each dispatch alone and time it from the host
            // (includes one submit's overhead, ~0.1 ms on lavapipe).
            self.flush_locked(&mut batch)?;
            let start = platform::Instant::now();
            platform::wait_for_gpu(self.wgpu())?;
            profile.add(entry, start.elapsed().as_secs_f64());
        } else if batch.ops >= self.ops_per_submit()
            || timer.is_some_and(|t| batch.timed.len() >= t.capacity)
        {
            self.flush_locked(&mut batch)?;
        }
        Ok(())
    }

    /// The batch's open compute pass, or a new one; `timed`: the query set and first index
    /// of the two timestamps a new pass writes at its beginning and end.
    fn open_pass<'b>(
        &self,
        batch: &'b mut Batch,
        timed: Option<(&wgpu::QuerySet, u32)>,
    ) -> &'b mut wgpu::ComputePass<'static> {
        if batch.pass.is_none() {
            let encoder = batch.encoder.get_or_insert_with(|| {
                self.wgpu()
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
            });
            let pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: timed.map(|(query_set, first)| {
                        wgpu::ComputePassTimestampWrites {
                            query_set,
                            beginning_of_pass_write_index: Some(first),
                            end_of_pass_write_index: Some(first + 1),
                        }
                    }),
                })
                .forget_lifetime();
            batch.pass = Some(pass);
        }
        batch.pass.as_mut().unwrap()
    }

    /// An elementwise kernel pair over n elements: `entries.1` reads and writes vec4s, 4 per
    /// invocation (1,024 elements per workgroup of 256), over the first n - n % 4 elements;
    /// the scalar `entries.0`, one element per invocation, takes the rest (all of a small
    /// tensor). `params(start)`
    /// gives each its parameters, `start` being the first element the scalar kernel covers.
    /// (On llvmpipe a vec4 load costs far less than four scalar ones.)
    pub(crate) fn dispatch_vec4<P: KernelParams>(
        &self,
        shader: &Shader,
        entries: (&'static str, &'static str),
        constants: &[(&'static str, u32)],
        binds: &[Bind],
        n: usize,
        params: impl Fn(usize) -> P,
    ) -> Result<()> {
        // Small tensors: one scalar dispatch where a dispatch costs more than the vec4 loads
        // would save (see the policy).
        let main = if n < self.policy().vec4_min_elements() {
            0
        } else {
            n - n % 4
        };
        let groups = |elements: usize, per_group: usize| elements.div_ceil(per_group) as u32;
        // A workgroup of the vec4 kernel: 256 invocations x 4 vec4s = 4096 elements.
        self.dispatch_with(
            shader,
            entries.1,
            constants,
            binds,
            &params(0),
            groups(main, 4096),
        )?;
        self.dispatch_with(
            shader,
            entries.0,
            constants,
            binds,
            &params(main),
            groups(n - main, 256),
        )
    }

    /// Ends the compute pass (if any) and returns the encoder, for copies and clears.
    fn encoder<'b>(&self, batch: &'b mut Batch) -> &'b mut wgpu::CommandEncoder {
        batch.pass = None;
        batch.encoder.get_or_insert_with(|| {
            self.wgpu()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        })
    }

    fn flush_locked(&self, batch: &mut Batch) -> Result<()> {
        batch.pass = None;
        let timer = self.profiler().and_then(|p| Some((p, p.gpu.as_ref()?)));
        if let Some(mut encoder) = batch.encoder.take() {
            if !batch.params.is_empty() {
                self.queue()
                    .write_buffer(&batch.params_buffer, 0, &batch.params);
            }
            let readback = timer
                .filter(|_| !batch.timed.is_empty())
                .map(|(_, t)| t.resolve(self.wgpu(), &mut encoder, batch.timed.len()));
            self.queue().submit([encoder.finish()]);
            if let (Some((profile, t)), Some(readback)) = (timer, readback) {
                t.collect(self.wgpu(), profile, &batch.timed, readback)?;
            }
        }
        batch.timed.clear();
        batch.params.clear();
        batch.ops = 0;
        self.buffer_pool().lock().unwrap().recycle_pending();
        self.check_error()
    }

    /// With `WEBGRAD_PROFILE=1`: a table of kernel, calls and total milliseconds so far
    /// (GPU timestamps around each dispatch where the adapter has them, else each dispatch
    /// submitted alone and timed from the host), slowest first. `None` when not profiling.
    pub fn profile_report(&self) -> Option<String> {
        // Timestamps of the dispatches recorded so far are read at a flush.
        self.flush().ok()?;
        Some(self.profiler()?.report())
    }

    /// Clears the profile table (to leave out warm-up and shader compilation).
    pub fn profile_reset(&self) {
        if let Some(profile) = self.profiler() {
            let _ = self.flush();
            profile.table.lock().unwrap().clear();
        }
    }

    /// Submits the recorded commands without waiting for them.
    pub(crate) fn flush(&self) -> Result<()> {
        let mut batch = self.batch().lock().unwrap();
        self.flush_locked(&mut batch)
    }

    /// A storage buffer of at least `bytes`, from the pool when one is free. `gpu_written`:
    /// its first contents come from a recorded command (not a host upload).
    pub(crate) fn alloc(&self, bytes: u64, gpu_written: bool) -> Result<(wgpu::Buffer, u64)> {
        let max = self.limits().max_tensor_bytes();
        if bytes > max {
            return Err(Error::TooLarge(format!(
                "{bytes} bytes exceed the adapter's largest storage binding ({max} bytes) on {}",
                self.info().name
            )));
        }
        let mut class = size_class(bytes);
        if class > max {
            class = bytes.div_ceil(4) * 4;
        }
        let mut pool = self.buffer_pool().lock().unwrap();
        if let Some(taken) = pool.take(class, gpu_written) {
            return Ok(taken);
        }
        pool.note_new(class);
        drop(pool);
        let buf = self.wgpu().create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: class,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok((buf, class))
    }

    /// [`alloc`](Self::alloc) for a deferred storage, whose caller cannot return an error: a
    /// failure is recorded for the next submit or readback to report, and a small placeholder
    /// stands in (kernels' accesses past its end are clamped by wgpu).
    pub(crate) fn alloc_or_placeholder(&self, bytes: u64) -> (wgpu::Buffer, u64) {
        match self.alloc(bytes, true) {
            Ok(b) => b,
            Err(e) => {
                self.record_error(e);
                let placeholder = self.wgpu().create_buffer(&wgpu::BufferDescriptor {
                    label: Some("webgrad placeholder"),
                    size: 16,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                (placeholder, 0)
            }
        }
    }

    /// A buffer for a binding a kernel leaves alone (an optional operand's slot that a
    /// pipeline constant turns off): 256 bytes, never read or written by a kernel, made once
    /// per device rather than a placeholder per dispatch. Read-only slots may share it; a
    /// dispatch with several unused writable slots gives each its own
    /// [`unused_binding`](Self::unused_binding) (see [`check_binds`]).
    pub(crate) fn dummy_buffer(&self) -> &wgpu::Buffer {
        self.unused_binding(0)
    }

    /// The `i`-th of [`UNUSED_BINDINGS`] distinct buffers for slots a kernel leaves alone.
    pub(crate) fn unused_binding(&self, i: usize) -> &wgpu::Buffer {
        &self.dummy_slot().get_or_init(|| {
            std::array::from_fn(|_| {
                self.wgpu().create_buffer(&wgpu::BufferDescriptor {
                    label: Some("webgrad unused binding"),
                    size: 256,
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                })
            })
        })[i]
    }

    pub(crate) fn release(&self, buf: wgpu::Buffer, class: u64) {
        if class == 0 {
            return; // a placeholder, not the pool's
        }
        self.buffer_pool().lock().unwrap().release(class, buf);
    }

    /// Uploads host data; runs at the next submit, before the commands recorded after it.
    pub(crate) fn write(&self, buf: &wgpu::Buffer, data: &[u8]) {
        if !data.is_empty() && !background::in_dry_run() {
            self.queue().write_buffer(buf, 0, data);
        }
    }

    /// Records a zero fill of the first `bytes` of `buf`.
    pub(crate) fn clear(&self, buf: &wgpu::Buffer, bytes: u64) {
        self.clear_range(buf, 0, bytes);
    }

    /// Records a zero fill of `bytes` bytes of `buf` from `start` (both multiples of 4).
    pub(crate) fn clear_range(&self, buf: &wgpu::Buffer, start: u64, bytes: u64) {
        if bytes == 0 || background::in_dry_run() {
            return;
        }
        let mut batch = self.batch().lock().unwrap();
        self.encoder(&mut batch)
            .clear_buffer(buf, start, Some(bytes));
    }

    /// Records a buffer-to-buffer copy.
    pub(crate) fn copy(&self, src: &wgpu::Buffer, dst: &wgpu::Buffer, bytes: u64) {
        self.copy_range(src, 0, dst, 0, bytes);
    }

    /// Records a copy of `bytes` from `src` at `src_offset` to `dst` at `dst_offset` (all
    /// multiples of 4). On lavapipe a copy costs a few microseconds, a dispatch 30-100.
    pub(crate) fn copy_range(
        &self,
        src: &wgpu::Buffer,
        src_offset: u64,
        dst: &wgpu::Buffer,
        dst_offset: u64,
        bytes: u64,
    ) {
        if bytes == 0 || background::in_dry_run() {
            return;
        }
        let mut batch = self.batch().lock().unwrap();
        self.encoder(&mut batch).copy_buffer_to_buffer(
            src,
            src_offset,
            dst,
            dst_offset,
            Some(bytes),
        );
    }

    /// Records a buffer-to-texture copy.
    pub(crate) fn copy_to_texture(
        &self,
        src: wgpu::TexelCopyBufferInfo,
        dst: wgpu::TexelCopyTextureInfo,
        size: wgpu::Extent3d,
    ) {
        if background::in_dry_run() {
            return;
        }
        let mut batch = self.batch().lock().unwrap();
        self.encoder(&mut batch)
            .copy_buffer_to_texture(src, dst, size);
    }

    /// Copies `bytes` of `src` into a mappable buffer and submits everything recorded so far.
    fn stage_readback(&self, src: &wgpu::Buffer, bytes: u64) -> Result<wgpu::Buffer> {
        let staging = self.wgpu().create_buffer(&wgpu::BufferDescriptor {
            label: Some("webgrad readback"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut batch = self.batch().lock().unwrap();
        self.encoder(&mut batch)
            .copy_buffer_to_buffer(src, 0, &staging, 0, Some(bytes));
        self.flush_locked(&mut batch)?;
        Ok(staging)
    }

    fn finish_readback(&self, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
        let bytes = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Device(format!("reading back a buffer: {e}")))?
            .to_vec();
        staging.unmap();
        Ok(bytes)
    }

    /// Reads `bytes` of `src` back to the host, blocking until the GPU is done (refused in a
    /// browser: see [`read_async`](Self::read_async)).
    pub(crate) fn read(&self, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        platform::refuse_blocking("Tensor::to_vec", "Tensor::to_vec_async")?;
        platform::block_on(self.read_async(src, bytes))
    }

    /// Reads `bytes` of `src` back to the host, awaiting the mapping (see `platform.rs` for
    /// how that differs between native code and a page).
    pub(crate) async fn read_async(&self, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.stage_readback(src, bytes)?;
        platform::map_for_reading(self.wgpu(), &staging, staging.size()).await?;
        self.check_error()?;
        let mut out = self.finish_readback(&staging)?;
        out.truncate(bytes as usize);
        self.start_background_compiles();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::{check_binds, fold_grid, Bind, KernelParams, Shader, PARAM_SLOT};
    use std::path::Path;

    /// A Rust parameter struct as the layout test sees it.
    struct Mirror {
        name: &'static str,
        shaders: &'static [&'static str],
        fields: &'static [(&'static str, usize)],
        size: usize,
    }

    fn mirror<P: KernelParams>() -> Mirror {
        Mirror {
            name: std::any::type_name::<P>(),
            shaders: P::SHADERS,
            fields: P::FIELDS,
            size: size_of::<P>(),
        }
    }

    /// Every [`KernelParams`] struct (a new one is added here).
    fn mirrors() -> Vec<Mirror> {
        use crate::backend::conv::ConvParams;
        use crate::backend::gemm::MatmulParams;
        use crate::ops::{batch_norm, binary, dropout, fill, index, layout, loss, pad};
        use crate::ops::{reduce, softmax, unary};
        vec![
            mirror::<batch_norm::BatchNormParams>(),
            mirror::<binary::BinaryParams>(),
            mirror::<ConvParams>(),
            mirror::<dropout::DropoutParams>(),
            mirror::<fill::FillParams>(),
            mirror::<index::IndexParams>(),
            mirror::<layout::LayoutParams>(),
            mirror::<loss::LossParams>(),
            mirror::<MatmulParams>(),
            mirror::<crate::optim::OptimParams>(),
            mirror::<pad::PadParams>(),
            mirror::<crate::backend::pool::PoolParams>(),
            mirror::<reduce::ReduceParams>(),
            mirror::<softmax::SoftmaxParams>(),
            mirror::<unary::UnaryParams>(),
        ]
    }

    /// The shared files (`Shader::includes`), and those each module starts with, as its
    /// `shader!` lists them (a file missing here fails to parse below, one missing there when
    /// the kernel is compiled).
    const SHARED: &[&str] = &["matmul_common", "cpu/matmul_registers", "cpu/conv_window"];
    fn includes(name: &str) -> &'static [&'static str] {
        match name {
            "matmul" => &["matmul_common"],
            "cpu/matmul_blocked" | "cpu/matmul_subgroup" => &SHARED[..2],
            "cpu/conv_implicit" | "cpu/conv_subgroup" => &SHARED[2..],
            _ => &[],
        }
    }

    /// Every `shaders/**/*.wgsl` but the shared files, as (name as in `shader!`, the module's
    /// whole source).
    fn shader_files(dir: &Path, prefix: &str, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            if path.is_dir() {
                shader_files(&path, &format!("{prefix}{stem}/"), out);
            } else if path.extension().is_some_and(|e| e == "wgsl") && stem != "prelude" {
                // The module as it is compiled: prelude, shared files, file, and what a generator
                // writes. The shared files are checked as parts of the modules that use them.
                let name = format!("{prefix}{stem}");
                if SHARED.contains(&name.as_str()) {
                    continue;
                }
                let file = |name: &str| -> &'static str {
                    let path = format!("{}/shaders/{name}.wgsl", env!("CARGO_MANIFEST_DIR"));
                    std::fs::read_to_string(path).unwrap().leak()
                };
                let shader = Shader {
                    name: "",
                    includes: includes(&name)
                        .iter()
                        .map(|i| file(i))
                        .collect::<Vec<_>>()
                        .leak(),
                    source: file(&name),
                    generated: match name.as_str() {
                        "unary" => Some(crate::ops::unary::table_wgsl),
                        "batch_norm" => Some(crate::ops::batch_norm::group_readers),
                        "conv" => Some(crate::backend::conv::params_wgsl),
                        "cpu/conv_implicit" => Some(crate::backend::cpu::conv_implicit::generated),
                        "cpu/matmul_blocked" => Some(crate::backend::cpu::matmul_gen::blocked),
                        "cpu/matmul_subgroup" => Some(crate::backend::cpu::matmul_gen::subgroup),
                        "cpu/conv_subgroup" => {
                            Some(crate::backend::cpu::conv_implicit::subgroup_generated)
                        }
                        _ => None,
                    },
                };
                out.push((name, shader.full_source()));
            }
        }
    }

    /// A shader's `Params` struct with naga's layout: (member name, offset) in order, size.
    fn wgsl_params(name: &str, source: &str) -> Option<(Vec<(String, usize)>, usize)> {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(source)));
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let (handle, ty) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some("Params"))?;
        let naga::TypeInner::Struct { members, .. } = &ty.inner else {
            panic!("{name}.wgsl: Params is not a struct");
        };
        let mut end = 0;
        let mut fields = Vec::new();
        for m in members {
            let layout = layouter[m.ty];
            let offset = layout.alignment.round_up(end);
            // The front end's own offsets agree with the layouter's.
            assert_eq!(offset, m.offset, "{name}.wgsl: Params member offsets");
            fields.push((m.name.clone().unwrap(), offset as usize));
            end = offset + layout.size;
        }
        Some((fields, layouter[handle].size as usize))
    }

    /// The names, offsets and size of each Rust parameter struct are those of its shaders'
    /// `Params` (WGSL's uniform layout, from naga), and every shader with a `Params` has one.
    #[test]
    fn params_structs_match_the_shaders() {
        let mut shaders = Vec::new();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
        shader_files(&dir, "", &mut shaders);
        let mirrors = mirrors();
        let mut checked = 0;
        for (shader, source) in &shaders {
            let Some((wgsl, size)) = wgsl_params(shader, source) else {
                continue;
            };
            let mine: Vec<&Mirror> = mirrors
                .iter()
                .filter(|m| m.shaders.contains(&shader.as_str()))
                .collect();
            let [m] = mine[..] else {
                panic!(
                    "{shader}.wgsl's Params has {} Rust structs, not one",
                    mine.len()
                );
            };
            let rust: Vec<(String, usize)> = m
                .fields
                .iter()
                .filter(|(f, _)| !f.starts_with("_pad"))
                .map(|&(f, o)| (f.to_owned(), o))
                .collect();
            assert_eq!(
                rust, wgsl,
                "{} against {shader}.wgsl's Params: (field, offset)",
                m.name
            );
            assert_eq!(
                m.size, size,
                "{} against {shader}.wgsl's Params: size",
                m.name
            );
            assert!(
                size <= PARAM_SLOT as usize,
                "{shader}.wgsl: Params past the slot"
            );
            checked += 1;
        }
        for m in &mirrors {
            for s in m.shaders {
                assert!(
                    shaders.iter().any(|(name, _)| name == s),
                    "{}: no shader {s}",
                    m.name
                );
            }
        }
        assert_eq!(checked, 19, "shaders with a Params struct");
    }

    /// One buffer in a writable binding and another: an error naming the kernel, from the
    /// dispatch itself (before any pipeline is built); read bindings may repeat a buffer.
    #[test]
    fn one_buffer_in_two_writable_bindings_is_an_error() {
        use crate::ops::dropout::DropoutParams;
        static DROPOUT: Shader = super::shader!("dropout");
        let dev = crate::Device::new().unwrap();
        let (x, y, mask) = (
            dev.storage(4).unwrap(),
            dev.storage(4).unwrap(),
            dev.storage(4).unwrap(),
        );
        let p = DropoutParams {
            len: 4,
            seed: 1,
            p: 0.5,
            scale: 2.0,
        };
        let aliased = [
            Bind::Read(x.buffer()),
            Bind::Write(y.buffer()),
            Bind::Write(y.buffer()),
        ];
        let err = dev
            .dispatch(&DROPOUT, "dropout_forward", &aliased, &p, 1)
            .unwrap_err();
        assert!(matches!(err, crate::Error::Invalid(_)), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("dropout::dropout_forward"), "{message}");
        assert!(message.contains("bindings 2 and 3"), "{message}");

        let distinct = [
            Bind::Read(x.buffer()),
            Bind::Write(y.buffer()),
            Bind::Write(mask.buffer()),
        ];
        assert!(check_binds(&DROPOUT, "dropout_forward", &distinct).is_ok());
        let reads = [Bind::Read(x.buffer()), Bind::Read(x.buffer())];
        assert!(check_binds(&DROPOUT, "dropout_forward", &reads).is_ok());
        // A written buffer that is also read in another slot: refused as WebGPU does.
        let read_and_written = [Bind::Read(y.buffer()), Bind::Write(y.buffer())];
        let err = check_binds(&DROPOUT, "dropout_forward", &read_and_written).unwrap_err();
        assert!(err.to_string().contains("bindings 1 and 2"), "{err}");
        // Unused writable slots: one dummy buffer in two is refused too, distinct ones pass.
        let one_dummy = [
            Bind::Write(dev.unused_binding(0)),
            Bind::Write(dev.unused_binding(0)),
        ];
        assert!(check_binds(&DROPOUT, "dropout_forward", &one_dummy).is_err());
        let dummies = [
            Bind::Write(dev.unused_binding(0)),
            Bind::Write(dev.unused_binding(1)),
        ];
        assert!(check_binds(&DROPOUT, "dropout_forward", &dummies).is_ok());
        dev.dispatch(&DROPOUT, "dropout_forward", &distinct, &p, 1)
            .unwrap();
        dev.sync().unwrap();
    }

    #[test]
    fn fold_grid_stays_within_limit_and_covers_all() {
        for n in [1u32, 65_535, 65_536, 200_000, 16_777_215] {
            let (x, y) = fold_grid(n, 65_535);
            assert!(x <= 65_535 && y <= 65_535);
            assert!(x as u64 * y as u64 >= n as u64);
        }
    }
}
