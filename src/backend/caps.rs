//! What the adapter can do, read once when a [`Device`](crate::Device) opens: its class, its
//! subgroup width, whether its driver cuts long loops, and the limits webgrad works within.
//!
//! Nothing outside `backend/` looks at the adapter: ops ask the [policy](super::policy), and the
//! policy reads these capabilities.

/// The kind of adapter, as far as kernel choice is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdapterClass {
    /// A discrete or integrated hardware GPU (or a virtual one): workgroup-memory tiles, many
    /// workgroups in flight, cheap dispatches.
    Gpu,
    /// A software adapter running on the CPU (lavapipe, WARP, SwiftShader): invocations run in
    /// SIMD lanes, barriers and workgroup memory are slow, dispatches cost tens of µs.
    Cpu,
    /// A CPU adapter whose subgroups are exactly its 8 SIMD lanes (llvmpipe on 256-bit
    /// vectors), with subgroup operations enabled: kernels share fetched operands across a
    /// subgroup.
    CpuSimd8,
}

impl AdapterClass {
    /// The name used by `WEBGRAD_KERNELS` and in test names.
    pub fn name(self) -> &'static str {
        match self {
            AdapterClass::Gpu => "gpu",
            AdapterClass::Cpu => "cpu",
            AdapterClass::CpuSimd8 => "cpu-simd8",
        }
    }

    /// The class named `name` (as [`name`](Self::name) spells it, any case).
    pub fn parse(name: &str) -> Option<AdapterClass> {
        [AdapterClass::Gpu, AdapterClass::Cpu, AdapterClass::CpuSimd8]
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether this is a software adapter (either CPU class).
    pub fn is_cpu(self) -> bool {
        matches!(self, AdapterClass::Cpu | AdapterClass::CpuSimd8)
    }
}

/// The adapter limits webgrad works within: the device is opened with the adapter's own
/// limits (not wgpu's conservative defaults), and these are the ones kernels depend on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest storage-buffer binding in bytes: the largest tensor.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer in bytes.
    pub max_buffer_size: u64,
    /// Largest 2-D texture side in texels (CPU-adapter kernels read operands as textures).
    pub max_texture_dimension_2d: u32,
    /// Largest dispatch along one grid dimension; larger grids are folded into 2-D.
    pub max_compute_workgroups_per_dimension: u32,
    /// Alignment of a dynamic uniform-buffer offset (each dispatch's parameters).
    pub min_uniform_buffer_offset_alignment: u32,
}

impl Limits {
    /// The largest tensor in bytes: one storage binding.
    pub fn max_tensor_bytes(&self) -> u64 {
        self.max_storage_buffer_binding_size
            .min(self.max_buffer_size)
    }
}

impl Limits {
    /// webgrad's view of wgpu's limits (crate-internal, so that no wgpu type is part of the
    /// public API).
    pub(crate) fn from_wgpu(l: &wgpu::Limits) -> Limits {
        Limits {
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_buffer_size: l.max_buffer_size,
            max_texture_dimension_2d: l.max_texture_dimension_2d,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            min_uniform_buffer_offset_alignment: l.min_uniform_buffer_offset_alignment,
        }
    }
}

/// llvmpipe ends every shader invocation's loops after 65,535 iterations in total, silently.
/// Kernels whose loops grow with the data split their work so that one invocation stays well
/// below that: this many iterations, which leaves room for the loops' own overheads.
pub const LLVMPIPE_LOOP_BUDGET: usize = 8192;

/// Most slots (taps, channels) a kernel with unrolled slots unrolls. (SwiftShader once needed
/// fewer: its compile time exploded with unrolled code that was full of short-circuit `&&`
/// branches, 165 s for conv_backward_weight's 16 taps. Without those branches it takes under a
/// second; see the shaders' note on `&` in prelude.wgsl.)
pub const UNROLL_SLOTS: usize = 16;

/// Everything about the adapter that kernel choice depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caps {
    pub class: AdapterClass,
    /// The subgroup width when the adapter has a fixed one and subgroup operations are enabled.
    pub subgroup_size: Option<u32>,
    /// Most loop iterations one invocation may run, where the driver cuts longer loops
    /// (llvmpipe, on Vulkan and GL alike); `None` where loops run to completion.
    pub loop_budget: Option<usize>,
    /// The shader compiler is slow (SwiftShader, a second or more for a large kernel): kernels
    /// share pipeline variants where they can, so that a first step compiles fewer.
    pub slow_compiler: bool,
    /// GPU timestamps bracket the dispatch between them. Not on llvmpipe: after in-place
    /// writes and texture copies its timestamp pairs close before the dispatch has run
    /// (a 1000 x 784 x 256 product "took" 0.3 ms of a 10 ms run), so profiles there time each
    /// dispatch from the host instead.
    pub timestamps_bracket_dispatches: bool,
    /// Pipelines can compile in the background while the queue runs (WebGPU's
    /// `createComputePipelineAsync` in a page; wgpu natively has no such call).
    pub compiles_in_background: bool,
    pub limits: Limits,
}

/// What the adapter reports, reduced to what [`Caps::from_report`] needs (so the rules can be
/// tested without an adapter).
pub(crate) struct AdapterReport<'a> {
    pub name: &'a str,
    pub device_type: wgpu::DeviceType,
    /// The subgroup width range, and whether subgroup operations were enabled on the device.
    pub subgroup_sizes: (u32, u32),
    pub subgroups_enabled: bool,
    /// The adapter is the browser's (WebGPU in a page).
    pub browser: bool,
    pub limits: Limits,
}

impl Caps {
    pub(crate) fn from_report(r: &AdapterReport) -> Caps {
        let cpu = r.device_type == wgpu::DeviceType::Cpu;
        // llvmpipe serves GL as well as Vulkan; on GL wgpu may not call it a CPU.
        let llvmpipe = r.name.to_ascii_lowercase().contains("llvmpipe");
        let fixed_subgroup = (r.subgroup_sizes.0 == r.subgroup_sizes.1 && r.subgroups_enabled)
            .then_some(r.subgroup_sizes.0);
        let class = match (cpu || llvmpipe, fixed_subgroup) {
            (true, Some(8)) => AdapterClass::CpuSimd8,
            (true, _) => AdapterClass::Cpu,
            (false, _) => AdapterClass::Gpu,
        };
        // A browser names no adapter: its CPU adapter is SwiftShader (Chromium's fallback).
        let slow_compiler =
            r.name.to_ascii_lowercase().contains("swiftshader") || (r.browser && cpu);
        Caps {
            class,
            subgroup_size: fixed_subgroup,
            // Every software adapter is treated as llvmpipe is: the cut-off is known there,
            // and an untested one may have its own.
            loop_budget: (cpu || llvmpipe).then_some(LLVMPIPE_LOOP_BUDGET),
            slow_compiler,
            timestamps_bracket_dispatches: !llvmpipe,
            compiles_in_background: r.browser,
            limits: r.limits.clone(),
        }
    }

    /// The same capabilities with a slow shader compiler's choices (see
    /// [`DeviceOptions::force_slow_compiler`](crate::DeviceOptions::force_slow_compiler)).
    pub(crate) fn with_slow_compiler(self) -> Caps {
        Caps {
            slow_compiler: true,
            ..self
        }
    }

    /// The same capabilities, compiling pipelines in the background (see
    /// [`DeviceOptions::force_background_compiles`](crate::DeviceOptions::force_background_compiles)).
    pub(crate) fn with_background_compiles(self) -> Caps {
        Caps {
            compiles_in_background: true,
            ..self
        }
    }

    /// Whether to ask the device for subgroup operations: only the 8-lane CPU kernels use them.
    pub(crate) fn wants_subgroups(info: &wgpu::AdapterInfo, features: wgpu::Features) -> bool {
        info.device_type == wgpu::DeviceType::Cpu
            && info.subgroup_min_size == 8
            && info.subgroup_max_size == 8
            && features.contains(wgpu::Features::SUBGROUP)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn limits() -> Limits {
        Limits {
            max_storage_buffer_binding_size: 128 << 20,
            max_buffer_size: 256 << 20,
            max_texture_dimension_2d: 16384,
            max_compute_workgroups_per_dimension: 65535,
            min_uniform_buffer_offset_alignment: 256,
        }
    }

    fn report(name: &str, device_type: wgpu::DeviceType, sub: (u32, u32), on: bool) -> Caps {
        Caps::from_report(&AdapterReport {
            name,
            device_type,
            subgroup_sizes: sub,
            subgroups_enabled: on,
            browser: false,
            limits: limits(),
        })
    }

    #[test]
    fn swiftshader_has_a_slow_compiler() {
        let native = report(
            "SwiftShader Device (Subzero)",
            wgpu::DeviceType::Cpu,
            (4, 4),
            false,
        );
        let page = Caps::from_report(&AdapterReport {
            name: "",
            device_type: wgpu::DeviceType::Cpu,
            subgroup_sizes: (4, 4),
            subgroups_enabled: false,
            browser: true,
            limits: limits(),
        });
        assert_eq!(page.class, AdapterClass::Cpu);
        assert!(native.slow_compiler && page.slow_compiler);
        let lavapipe = report("llvmpipe", wgpu::DeviceType::Cpu, (8, 8), true);
        assert!(!lavapipe.slow_compiler);
    }

    #[test]
    fn lavapipe_is_a_simd8_cpu_adapter_with_a_loop_budget() {
        let c = report(
            "llvmpipe (LLVM 15.0.6, 256 bits)",
            wgpu::DeviceType::Cpu,
            (8, 8),
            true,
        );
        assert_eq!(c.class, AdapterClass::CpuSimd8);
        assert_eq!(c.loop_budget, Some(LLVMPIPE_LOOP_BUDGET));
        let off = report("llvmpipe", wgpu::DeviceType::Cpu, (8, 8), false);
        assert_eq!(off.class, AdapterClass::Cpu);
        assert_eq!(off.subgroup_size, None);
    }

    #[test]
    fn profiles_on_llvmpipe_are_timed_from_the_host() {
        let lavapipe = report(
            "llvmpipe (LLVM 15.0.6, 256 bits)",
            wgpu::DeviceType::Cpu,
            (8, 8),
            true,
        );
        let gl = report(
            "llvmpipe (LLVM 15.0.6, 256 bits)",
            wgpu::DeviceType::Other,
            (4, 128),
            false,
        );
        let gpu = report(
            "NVIDIA H200",
            wgpu::DeviceType::DiscreteGpu,
            (32, 32),
            false,
        );
        assert!(!lavapipe.timestamps_bracket_dispatches && !gl.timestamps_bracket_dispatches);
        assert!(gpu.timestamps_bracket_dispatches);
    }

    #[test]
    fn llvmpipe_on_gl_keeps_its_loop_budget() {
        let c = report(
            "llvmpipe (LLVM 15.0.6, 256 bits)",
            wgpu::DeviceType::Other,
            (4, 128),
            false,
        );
        assert_eq!(c.class, AdapterClass::Cpu);
        assert_eq!(c.loop_budget, Some(LLVMPIPE_LOOP_BUDGET));
    }

    #[test]
    fn gpus_have_no_loop_budget() {
        for t in [
            wgpu::DeviceType::DiscreteGpu,
            wgpu::DeviceType::IntegratedGpu,
        ] {
            let c = report("NVIDIA H100", t, (32, 32), false);
            assert_eq!(c.class, AdapterClass::Gpu);
            assert_eq!(c.loop_budget, None);
        }
    }

    #[test]
    fn class_names_round_trip() {
        for c in [AdapterClass::Gpu, AdapterClass::Cpu, AdapterClass::CpuSimd8] {
            assert_eq!(AdapterClass::parse(c.name()), Some(c));
        }
        assert_eq!(AdapterClass::parse("tpu"), None);
    }
}
