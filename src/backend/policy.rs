//! Kernel policy: the one place that decides which kernel variant runs, and with what tiling,
//! from the adapter's [capabilities](super::caps::Caps) and the problem's shape.
//!
//! Every function here is pure (capabilities and sizes in, a choice out) and unit-tested on the
//! host. Ops ask `dev.policy()`; no op looks at the adapter itself. Tests can make a device
//! choose as another class would (`WEBGRAD_KERNELS`, or `DeviceOptions::force_kernels`) to run
//! every variant on one adapter; only the loop budget, a property of the driver, is never
//! overridden.

use super::caps::{AdapterClass, Caps, UNROLL_SLOTS};

/// A bound on one invocation's loop iterations where the driver sets none: it keeps a single
/// invocation's serial work (and index products on 32-bit targets) bounded.
pub const UNBUDGETED_LOOP_LIMIT: usize = 1 << 24;

/// Most values one GPU invocation sums in sequence. A long serial sum leaves a GPU idle and,
/// in float32, drifts: on an H200 one invocation summing 10,000 broadcast positions missed the
/// float64 sum by more than 1e-2, where a sum in stages does not.
pub const GPU_SERIAL_SUM: usize = 2048;

/// Workgroups a GPU product should have in flight before its k is split across more of them
/// (a few per streaming multiprocessor of a large GPU).
pub const GPU_BUSY_WORKGROUPS: usize = 256;

/// Values per workgroup of an elementwise channel pass on CPU adapters: 16 per invocation.
pub const CPU_ELEMENTWISE_PIECE: usize = 4096;

/// The fewest floats a kernel's operands hold for [`Policy::texel_reads`] to copy them.
pub const TEXEL_READS_MIN: usize = 4096;

/// How a general matrix product is scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmSchedule {
    /// Workgroup-memory tiles with barriers: what GPUs run fastest.
    Tiles,
    /// Register blocks per invocation, no workgroup memory: what CPU adapters run fastest
    /// (their barriers are coroutine switches and per-lane loads gathers).
    Blocks,
}

/// The kernel (entry point of `shaders/matmul.wgsl` or `shaders/cpu/matmul_*.wgsl`) that
/// computes one piece of a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmKernel {
    /// Operands as textures, 8 lanes of a subgroup sharing fetched values.
    Subgroup8,
    /// Operands as textures, vec4 loads along k.
    Vec4,
    /// Workgroup-memory tiles (GPUs).
    Tiled,
    /// 8x8 register blocks, scalar loads.
    Blocked8,
    /// Up to 16 rows of A per workgroup; can also sum A's rows.
    Rows,
}

impl GemmKernel {
    pub fn entry(self) -> &'static str {
        match self {
            GemmKernel::Subgroup8 => "matmul_subgroup",
            GemmKernel::Vec4 => "matmul_vec4",
            GemmKernel::Tiled => "matmul_tiled",
            GemmKernel::Blocked8 => "matmul_blocked8",
            GemmKernel::Rows => "matmul_rows",
        }
    }

    /// Rows and columns of C one workgroup computes.
    pub fn tile(self) -> (usize, usize) {
        match self {
            GemmKernel::Rows => (8, 64),
            _ => (64, 64),
        }
    }
}

/// The largest product (multiply-adds) that runs matmul_rows while its own kernel compiles in
/// the background ([`Policy::gemm_waits_for_pipelines`]).
const GEMM_WAIT_MACS: usize = 1 << 24;

/// How a convolution is lowered to products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvLowering {
    /// The columns are computed inside the product, images innermost (CPU adapters).
    Implicit,
    /// The column matrix is written, then multiplied (GPUs).
    Im2col,
}

/// The capabilities of one device and the kernel class it chooses for.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    caps: Caps,
    class: AdapterClass,
}

impl Policy {
    /// A policy choosing as `class` would (the adapter's own class by default). A class the
    /// adapter cannot run (8-lane subgroup kernels without such subgroups) is an error.
    pub fn new(caps: Caps, force: Option<AdapterClass>) -> Result<Policy, String> {
        let class = force.unwrap_or(caps.class);
        if class == AdapterClass::CpuSimd8 && caps.class != AdapterClass::CpuSimd8 {
            return Err(format!(
                "the {} kernels need a CPU adapter with 8-lane subgroups; this one is {}",
                class.name(),
                caps.class.name()
            ));
        }
        Ok(Policy { caps, class })
    }

    pub fn caps(&self) -> &Caps {
        &self.caps
    }

    /// The class whose kernels this device runs.
    pub fn class(&self) -> AdapterClass {
        self.class
    }

    /// The classes whose kernels this adapter can run, its own first (what the
    /// `for_each_policy` test helper iterates).
    pub fn runnable_classes(caps: &Caps) -> Vec<AdapterClass> {
        let mut all = vec![caps.class];
        for c in [AdapterClass::Cpu, AdapterClass::Gpu] {
            if !all.contains(&c) {
                all.push(c);
            }
        }
        all
    }

    /// Whether profiles time dispatches with GPU timestamps (else each dispatch is submitted
    /// alone and timed from the host, which adds a submit's overhead but cannot misplace it).
    pub fn profile_with_timestamps(&self) -> bool {
        self.caps.timestamps_bracket_dispatches
    }

    /// Most iterations one invocation's loops may run: the driver's budget where it cuts
    /// loops, else [`UNBUDGETED_LOOP_LIMIT`]. Kernels whose loops grow with the data split
    /// their work into stages or dispatches within it.
    pub fn loop_limit(&self) -> usize {
        self.caps.loop_budget.unwrap_or(UNBUDGETED_LOOP_LIMIT)
    }

    /// Most values one invocation sums (or scans) in sequence before a reduction is staged:
    /// the loop limit on CPU adapters, where invocations are few and the budget bounds them;
    /// at most [`GPU_SERIAL_SUM`] for the GPU kernels, for occupancy and float32 precision.
    pub fn serial_sum_limit(&self) -> usize {
        match self.class {
            AdapterClass::Gpu => self.loop_limit().min(GPU_SERIAL_SUM),
            AdapterClass::Cpu | AdapterClass::CpuSimd8 => self.loop_limit(),
        }
    }

    /// conv_backward_weight's taps per block and SLIDE_KW (CPU kernels): blocks of whole
    /// kernel rows slid along the output columns where `slides` (the column stride equals the
    /// column dilation) and a row of `kw` taps fits the unroll width ([`UNROLL_SLOTS`]); else
    /// as many single taps as it allows.
    pub fn conv_weight_taps(&self, kw: usize, slides: bool) -> (usize, usize) {
        let most = UNROLL_SLOTS;
        if slides && kw <= most {
            (most / kw * kw, kw)
        } else {
            (most, 0)
        }
    }

    /// Whether conv_relu_pool_forward slides whole kernel rows of `kw` taps (its ROW_SLIDE,
    /// where both strides equal their dilations): the 2 x 2 window's two rows of kw + 1
    /// columns of image quads, unrolled, must fit the unroll width ([`UNROLL_SLOTS`]).
    pub fn conv_pool_row_slides(&self, kw: usize) -> bool {
        2 * (kw + 1) <= UNROLL_SLOTS
    }

    /// Whether the fused conv + ReLU + pool kernel saves its windows' winners (the backward's
    /// data) even when nothing will read them (`needed` false: inference), so that inference
    /// runs the training step's pipeline instead of compiling one more: where the compiler is
    /// slow (a few hundred milliseconds to seconds per variant, against stores of one u32 per
    /// four windows).
    pub fn conv_pool_saves_winners(&self, needed: bool) -> bool {
        needed || self.caps.slow_compiler
    }

    // ---- elementwise and optimizers

    /// Below this many elements an elementwise op runs as one scalar dispatch instead of a vec4
    /// dispatch plus a scalar tail. On CPU adapters a dispatch costs 30-100 µs, more than the
    /// vec4 loads save on a small tensor; on GPUs a dispatch costs a few µs.
    pub fn vec4_min_elements(&self) -> usize {
        if self.class.is_cpu() {
            4096
        } else {
            0
        }
    }

    /// Optimizer updates of parameters smaller than this run together, over flat copies, in
    /// one dispatch (a copy costs a few µs on lavapipe, a dispatch 30-100). The GPU value is
    /// not measured yet.
    pub fn optimizer_flat_below(&self) -> usize {
        if self.class.is_cpu() {
            16384
        } else {
            4096
        }
    }

    // ---- matrix products

    pub fn gemm_schedule(&self) -> GemmSchedule {
        match self.class {
            AdapterClass::Gpu => GemmSchedule::Tiles,
            AdapterClass::Cpu | AdapterClass::CpuSimd8 => GemmSchedule::Blocks,
        }
    }

    /// Most of k one dispatch covers (the tiled kernel runs about 1.3 loop iterations per k,
    /// the register-block kernels 1).
    pub fn gemm_k_step(&self) -> usize {
        match self.gemm_schedule() {
            GemmSchedule::Tiles => self.loop_limit() / 2,
            GemmSchedule::Blocks => self.loop_limit(),
        }
    }

    /// How many parallel slices a tiled product with `tiles` output tiles and a serial sum of
    /// `serial_k` terms per output (k, times the batch when summed over) is split into: on
    /// GPUs, a thin product with a long sum (a convolution's weight gradient: 150 outputs,
    /// 50,176 terms) otherwise runs on one or two workgroups. Each slice keeps at least
    /// `GPU_SERIAL_SUM / 4` terms; 1 means no split (always on CPU adapters, whose few cores
    /// are busy with any product).
    pub fn gemm_slices(&self, tiles: usize, serial_k: usize) -> usize {
        if self.gemm_schedule() != GemmSchedule::Tiles || tiles >= GPU_BUSY_WORKGROUPS / 2 {
            return 1;
        }
        let by_work = serial_k / (GPU_SERIAL_SUM / 4);
        let by_occupancy = GPU_BUSY_WORKGROUPS.div_ceil(tiles.max(1));
        by_work.min(by_occupancy).max(1)
    }

    /// Whether a one-batch product of these sizes runs matmul_rows in one piece, which can also
    /// sum A's rows (a narrow Linear's bias gradient along with its weight gradient).
    pub fn gemm_sums_rows(&self, m: usize, n: usize, k: usize) -> bool {
        self.gemm_schedule() == GemmSchedule::Blocks
            && (1..=16).contains(&m)
            && n > 0
            && (1..=self.loop_limit()).contains(&k)
    }

    /// Whether the product kernels read their epilogue (bias, accumulation, ReLU) from the
    /// parameters rather than from pipeline constants: where the compiler is slow, so that
    /// every epilogue shares one pipeline (SwiftShader: 200-300 ms per matmul_vec4 variant).
    /// Elsewhere constants, since llvmpipe runs a branch on a uniform masked (each output
    /// would pay for the loads of the parts it does not use).
    pub fn gemm_epilogue_in_params(&self) -> bool {
        self.caps.slow_compiler
    }

    /// Whether the input gradient's pairs kernel reads whether to write its images-innermost
    /// copy from the parameters rather than from a pipeline constant: where the compiler is
    /// slow, so that one pipeline serves both. Otherwise the layer below a convolution
    /// decides which of two pipelines it needs, and in the page the first step's dry run
    /// (`backend/conv.rs`) compiles the one the layer below's later kernels no longer need
    /// (about 0.3 s on SwiftShader). Elsewhere a constant, for the branch it removes.
    pub fn conv_inner_copy_in_params(&self) -> bool {
        self.caps.slow_compiler
    }

    /// Whether a product of `macs` multiply-adds whose kernel's pipeline is not compiled runs
    /// matmul_rows over its plain operands while that pipeline compiles in the background
    /// (`background.rs`): where convolutions wait for theirs
    /// ([`conv_waits_for_pipelines`](Self::conv_waits_for_pipelines)), for products small
    /// enough that matmul_rows costs little more (LeNet-5's training products, up to 7.7 M;
    /// its inference at a batch of 1,000 has 48 M). The texel and register-block products'
    /// pipelines were 0.7-0.9 s of LeNet-5's first step in the page, matmul_rows' 0.1 s.
    pub fn gemm_waits_for_pipelines(&self, macs: usize) -> bool {
        self.conv_waits_for_pipelines() && macs <= GEMM_WAIT_MACS
    }

    /// Whether a product should read its operands as textures with vec4 loads (when their
    /// strides allow): register blocks over more than 16 rows and at least 4 of k.
    pub fn gemm_texels(&self, m: usize, k: usize) -> bool {
        self.gemm_schedule() == GemmSchedule::Blocks && m > 16 && k >= 4
    }

    /// The kernel for a piece of m rows; `texels`: its operands are read as textures.
    pub fn gemm_kernel(&self, m: usize, texels: bool) -> GemmKernel {
        match (texels, self.class, self.gemm_schedule()) {
            (true, AdapterClass::CpuSimd8, _) => GemmKernel::Subgroup8,
            (true, _, _) => GemmKernel::Vec4,
            (false, _, GemmSchedule::Tiles) => GemmKernel::Tiled,
            (false, _, GemmSchedule::Blocks) if m > 16 => GemmKernel::Blocked8,
            (false, _, GemmSchedule::Blocks) => GemmKernel::Rows,
        }
    }

    // ---- convolutions

    /// Channels per block of the CPU convolution kernels (their override CH, 1-8) for a
    /// group of `c` channels: ceil(c / 8) blocks of equal size (6 channels are one block of 6,
    /// 12 two of 6), so that no slot idles.
    pub fn conv_block_channels(&self, c: usize) -> usize {
        c.div_ceil(c.div_ceil(8).max(1)).max(1)
    }

    /// conv_backward_weight's channels per block: as [`conv_block_channels`]
    /// (Self::conv_block_channels), but where the compiler is slow rounded up to a power of
    /// two, so that layers of different widths share its pipeline (LeNet-5's 6 and 16
    /// channels: one pipeline of 0.7-1.0 s on SwiftShader instead of two, for 2 idle channels
    /// of 8 in conv1's weight gradient). The other kernels keep balanced blocks: with the
    /// forward's rounded too, inference in the page took 12% longer.
    pub fn conv_weight_grad_block_channels(&self, c: usize) -> usize {
        let balanced = self.conv_block_channels(c);
        match self.caps.slow_compiler {
            true => balanced.next_power_of_two(),
            false => balanced,
        }
    }

    /// Whether the weight gradient below a fused conv + ReLU + 2 x 2 pool reads the pooled
    /// gradient and the windows' winners (conv_backward_weight's POOLED_G) rather than the
    /// full-size gradient. Where the input needs no gradient, nothing else needs the full-size
    /// one, and its 4 stores per window cost more than the winners' loads. Where it does
    /// (`input_grad`) the full-size one is written for the input gradient anyway, but a slow
    /// compiler reads the pooled one too, so that every such layer shares one pipeline.
    pub fn conv_weight_grad_from_pooled(&self, input_grad: bool) -> bool {
        !input_grad || self.caps.slow_compiler
    }

    /// `implicit_fits`: the implicit kernels' loops and textures can hold this convolution
    /// (`conv_implicit::fits`).
    pub fn conv_lowering(&self, implicit_fits: bool) -> ConvLowering {
        if self.class.is_cpu() && implicit_fits {
            ConvLowering::Implicit
        } else {
            ConvLowering::Im2col
        }
    }

    /// Image quads per lane of conv_subgroup (1: 32 output channels per subgroup, 2: 16) for
    /// a group of `out_g` channels of its output (C_out forward, C for the input gradient),
    /// or None for conv_implicit's kernels: the subgroup kernel needs 8-lane subgroups, the
    /// weight layouts in whole blocks of 8 (`out_g` a multiple of 8), and at least 16
    /// channels to share (with 8, its 4 activation fetches per tap would save one of
    /// conv_forward's 6).
    pub fn conv_lane_quads(&self, out_g: usize) -> Option<usize> {
        if self.class != AdapterClass::CpuSimd8 || out_g < 16 || !out_g.is_multiple_of(8) {
            return None;
        }
        Some(if out_g.is_multiple_of(32) { 1 } else { 2 })
    }

    /// Whether a training convolution that would run the implicit kernels runs im2col and the
    /// products instead until the implicit kernels' pipelines, compiled in the background, are
    /// ready (`backend/conv.rs`, `kernel.rs`'s dry runs). Where the compiler is slow and can
    /// compile in the background (SwiftShader in a page): LeNet-5's implicit pipelines take
    /// 2.2 s of its first step's 2.9 s of compilation there, im2col's 0.1 s. Inference waits
    /// for the implicit pipelines instead: at a batch of 1,000, im2col ran 2.7 s against 0.5.
    pub fn conv_waits_for_pipelines(&self) -> bool {
        self.class.is_cpu() && self.caps.slow_compiler && self.caps.compiles_in_background
    }

    /// conv_lane_quads for the forward fused with ReLU and 2 x 2 pooling: blocks of 32
    /// channels only. With 16, each lane fetches 3 texels per tap, about what
    /// conv_relu_pool_forward's sliding window fetches, and LeNet-5's conv2 measured no faster
    /// while its first step compiled one more module (0.2-0.9 s on lavapipe).
    pub fn conv_pool_lane_quads(&self, out_g: usize) -> Option<usize> {
        self.conv_lane_quads(out_g).filter(|&quads| quads == 1)
    }

    /// Whether memory-bound passes read their large operands from texture copies
    /// (`Storage::texels`) rather than from the storage buffers: on llvmpipe a storage load
    /// runs lane by lane (each lane's value loaded and inserted in turn), while a texel fetch
    /// is one vector gather. A ReLU over 1-4 M floats took 2.5-3.4x less kernel time reading a
    /// texture, and 1.5-2.5x less wall time with the buffer-to-texture copy. Operands of
    /// `floats` values in all: from [`TEXEL_READS_MIN`] up, below which a copy's command and
    /// texture cost more than the loads they save.
    pub fn texel_reads(&self, floats: usize) -> bool {
        self.class == AdapterClass::CpuSimd8 && floats >= TEXEL_READS_MIN
    }

    /// Whether the optimizer's update reads its operands (gradient, parameter, states: `n`
    /// values each) through texture copies, as [`texel_reads`](Self::texel_reads) would for
    /// one operand of `n`. Timed from the host (each update submitted alone, copies
    /// included), LeNet-5's 61,000 values updated together took 0.49 ms per update with the
    /// copies and 1.03 ms without. (A 65,536-value floor before had come from lavapipe's
    /// timestamps, which misplace dispatches that follow copies.)
    pub fn optimizer_texel_reads(&self, n: usize) -> bool {
        self.texel_reads(n)
    }

    /// Whether a convolution's bias gradient is summed in stages (per image and channel, then
    /// over images) rather than by one workgroup per channel: on CPU adapters, which it keeps
    /// busier, and wherever one workgroup's loops could not cover a channel's values.
    pub fn conv_bias_grad_staged(&self, values_per_channel: usize) -> bool {
        self.class.is_cpu() || values_per_channel.div_ceil(256) > self.serial_sum_limit()
    }

    // ---- reductions and fused epilogues

    /// How BatchNorm's channel passes (256 invocations per piece) split each of `c` channels'
    /// `m` values: (pieces per channel, values per piece). A piece keeps each invocation's
    /// loop within the serial-sum limit. A reduction (`reduce`) on a CPU adapter takes whole
    /// channels, each summed by one workgroup; on GPUs channels are cut until about
    /// [`GPU_BUSY_WORKGROUPS`] pieces are in flight, none under 2,048 values. An elementwise
    /// pass is cut into pieces of a few values per invocation (at least
    /// [`CPU_ELEMENTWISE_PIECE`] values on CPU adapters, whose workgroups are loops).
    pub fn channel_pieces(&self, m: usize, c: usize, reduce: bool) -> (usize, usize) {
        let most = 256 * self.serial_sum_limit();
        let per = match (reduce, self.class.is_cpu()) {
            (true, true) => m,
            (true, false) => m.div_ceil(GPU_BUSY_WORKGROUPS.div_ceil(c.max(1))).max(2048),
            (false, true) => CPU_ELEMENTWISE_PIECE,
            (false, false) => 1024,
        };
        // Whole quads per piece where the planes allow them (`channel_quads`).
        let per = per.next_multiple_of(4).clamp(1, most);
        (m.div_ceil(per).max(1), per)
    }

    /// Whether BatchNorm's channel passes take 4 neighbouring values of a plane at a time
    /// (a texel fetch or a vec4 of loads, and one merge of statistics, per quad): wherever
    /// planes of `hw` values and pieces of `per_piece` hold whole quads, on every adapter.
    pub fn channel_quads(&self, hw: usize, per_piece: usize) -> bool {
        hw.is_multiple_of(4) && per_piece.is_multiple_of(4)
    }

    /// Whether a row sum runs one workgroup per output (a tree reduction with barriers): only
    /// when there are too few outputs to occupy the device. Barriers are costly on CPU
    /// adapters, so there it takes fewer outputs.
    pub fn sum_rows_wide(&self, outputs: usize, row_len: usize) -> bool {
        let few = if self.class.is_cpu() { 16 } else { 2048 };
        outputs < few && row_len >= 256
    }

    /// Whether ReLU's backward also sums the masked gradient's rows (a Linear's bias gradient)
    /// in one kernel, one invocation per column: within the loop limit, and on GPUs only for a
    /// few rows (there one thread per column would leave it idle).
    pub fn relu_backward_sums_rows(&self, rows: usize) -> bool {
        rows <= self.loop_limit() && (self.class.is_cpu() || rows <= 1024)
    }

    /// Most classes `cross_entropy` takes: each row's loops run twice over them.
    pub fn cross_entropy_max_classes(&self) -> usize {
        self.loop_limit() / 2
    }

    /// Whether cross-entropy's mean or sum is computed by the loss kernel itself (one
    /// workgroup, each invocation looping over a 64th of the rows): while that loop stays within
    /// the limit, and on a GPU only for up to 1,024 rows (one workgroup would leave it idle).
    pub fn cross_entropy_reduced(&self, rows: usize, classes: usize) -> bool {
        rows.div_ceil(64) * (2 * classes + 2) <= self.loop_limit()
            && (self.class.is_cpu() || rows <= 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::caps::{tests::limits, LLVMPIPE_LOOP_BUDGET};

    fn caps(class: AdapterClass) -> Caps {
        Caps {
            class,
            subgroup_size: (class == AdapterClass::CpuSimd8).then_some(8),
            loop_budget: class.is_cpu().then_some(LLVMPIPE_LOOP_BUDGET),
            slow_compiler: false,
            timestamps_bracket_dispatches: true,
            compiles_in_background: false,
            limits: limits(),
        }
    }

    #[test]
    fn training_convolutions_wait_for_background_pipelines_only_in_a_slow_page() {
        let with = |class, slow, background| {
            let mut c = caps(class);
            c.slow_compiler = slow;
            c.compiles_in_background = background;
            Policy::new(c, None).unwrap().conv_waits_for_pipelines()
        };
        assert!(with(AdapterClass::Cpu, true, true));
        assert!(with(AdapterClass::CpuSimd8, true, true));
        // lavapipe compiles fast enough; natively nothing compiles in the background.
        assert!(!with(AdapterClass::Cpu, false, true));
        assert!(!with(AdapterClass::Cpu, true, false));
        // GPUs run im2col anyway.
        assert!(!with(AdapterClass::Gpu, true, true));
    }

    #[test]
    fn only_small_products_wait_for_background_pipelines() {
        let mut page = caps(AdapterClass::Cpu);
        page.slow_compiler = true;
        page.compiles_in_background = true;
        let p = Policy::new(page, None).unwrap();
        // LeNet-5's largest training product (conv2's input gradient at batch 32), then its
        // first linear layer at an inference batch of 1,000.
        assert!(p.gemm_waits_for_pipelines(150 * 16 * 3200));
        assert!(!p.gemm_waits_for_pipelines(1000 * 400 * 120));
        assert!(!policy(AdapterClass::Cpu).gemm_waits_for_pipelines(1));
    }

    #[test]
    fn conv_weight_taps_slide_whole_rows_within_the_unroll_width() {
        let p = policy(AdapterClass::CpuSimd8);
        assert_eq!(p.conv_weight_taps(5, true), (15, 5));
        assert_eq!(p.conv_weight_taps(3, true), (15, 3));
        assert_eq!(p.conv_weight_taps(3, false), (16, 0));
        assert_eq!(p.conv_weight_taps(17, true), (16, 0));
        // A slow compiler (SwiftShader) unrolls as much since its explosions were fixed.
        let mut slow = caps(AdapterClass::Cpu);
        slow.slow_compiler = true;
        let p = Policy::new(slow, None).unwrap();
        assert_eq!(p.conv_weight_taps(5, true), (15, 5));
    }

    #[test]
    fn conv_pool_row_slides_within_the_unroll_width() {
        let p = policy(AdapterClass::CpuSimd8);
        assert!(p.conv_pool_row_slides(5) && p.conv_pool_row_slides(7));
        assert!(!p.conv_pool_row_slides(8));
        let mut slow = caps(AdapterClass::Cpu);
        slow.slow_compiler = true;
        let p = Policy::new(slow, None).unwrap();
        assert!(p.conv_pool_row_slides(5) && p.conv_pool_row_slides(7));
    }

    #[test]
    fn a_slow_compiler_saves_pool_winners_in_inference_too() {
        let p = policy(AdapterClass::CpuSimd8);
        assert!(p.conv_pool_saves_winners(true) && !p.conv_pool_saves_winners(false));
        let mut slow = caps(AdapterClass::Cpu);
        slow.slow_compiler = true;
        let p = Policy::new(slow, None).unwrap();
        assert!(p.conv_pool_saves_winners(false));
    }

    fn slow_policy() -> Policy {
        let mut slow = caps(AdapterClass::Cpu);
        slow.slow_compiler = true;
        Policy::new(slow, None).unwrap()
    }

    #[test]
    fn a_slow_compiler_shares_weight_grad_blocks_between_widths() {
        let widths = [1, 3, 6, 8, 9, 12, 16, 64];
        let balanced = [1, 3, 6, 8, 5, 6, 8, 8];
        let (p, slow) = (policy(AdapterClass::Cpu), slow_policy());
        assert_eq!(widths.map(|c| p.conv_block_channels(c)), balanced);
        assert_eq!(
            widths.map(|c| p.conv_weight_grad_block_channels(c)),
            balanced
        );
        assert_eq!(widths.map(|c| slow.conv_block_channels(c)), balanced);
        assert_eq!(
            widths.map(|c| slow.conv_weight_grad_block_channels(c)),
            [1, 4, 8, 8, 8, 8, 8, 8]
        );
    }

    #[test]
    fn a_slow_compiler_shares_pooled_weight_grads_epilogues_and_inner_copies() {
        let p = policy(AdapterClass::CpuSimd8);
        assert!(p.conv_weight_grad_from_pooled(false) && !p.conv_weight_grad_from_pooled(true));
        assert!(!p.gemm_epilogue_in_params());
        assert!(!p.conv_inner_copy_in_params());
        let slow = slow_policy();
        assert!(slow.conv_weight_grad_from_pooled(true));
        assert!(slow.gemm_epilogue_in_params());
        assert!(slow.conv_inner_copy_in_params());
    }

    fn policy(class: AdapterClass) -> Policy {
        Policy::new(caps(class), None).unwrap()
    }

    #[test]
    fn gpus_tile_products_and_cpu_adapters_block_them() {
        let gpu = policy(AdapterClass::Gpu);
        assert_eq!(gpu.gemm_schedule(), GemmSchedule::Tiles);
        assert_eq!(gpu.gemm_kernel(64, false), GemmKernel::Tiled);
        assert!(!gpu.gemm_texels(64, 64));
        assert!(!gpu.gemm_sums_rows(8, 120, 84));
        let cpu = policy(AdapterClass::Cpu);
        assert_eq!(cpu.gemm_schedule(), GemmSchedule::Blocks);
        assert!(cpu.gemm_texels(64, 64));
        assert_eq!(cpu.gemm_kernel(64, true), GemmKernel::Vec4);
        assert_eq!(cpu.gemm_kernel(64, false), GemmKernel::Blocked8);
        assert_eq!(cpu.gemm_kernel(16, false), GemmKernel::Rows);
        assert!(cpu.gemm_sums_rows(16, 120, 84));
        assert!(!cpu.gemm_sums_rows(17, 120, 84));
        assert!(!cpu.gemm_sums_rows(8, 120, LLVMPIPE_LOOP_BUDGET + 1));
        let simd8 = policy(AdapterClass::CpuSimd8);
        assert_eq!(simd8.gemm_kernel(64, true), GemmKernel::Subgroup8);
        assert_eq!(simd8.gemm_kernel(64, false), GemmKernel::Blocked8);
    }

    #[test]
    fn batch_norm_channels_split_within_the_loop_and_fill_a_gpu() {
        let cpu = policy(AdapterClass::Cpu);
        assert_eq!(cpu.channel_pieces(64 * 1024, 16, true), (1, 64 * 1024));
        let most = 256 * LLVMPIPE_LOOP_BUDGET;
        assert_eq!(cpu.channel_pieces(most + 1, 3, true), (2, most));
        let gpu = policy(AdapterClass::Gpu);
        // 16 channels of 65,536 values: 16 pieces each, 256 in all.
        assert_eq!(gpu.channel_pieces(64 * 1024, 16, true), (16, 4096));
        assert_eq!(
            gpu.channel_pieces(100, 64, true),
            (1, 2048),
            "small channels stay whole"
        );
        assert_eq!(gpu.channel_pieces(0, 4, true), (1, 2048));
        // Elementwise passes: a few values per invocation.
        assert_eq!(
            cpu.channel_pieces(64 * 1024, 16, false),
            (16, CPU_ELEMENTWISE_PIECE)
        );
        assert_eq!(cpu.channel_pieces(100, 16, false).0, 1);
        assert_eq!(gpu.channel_pieces(64 * 1024, 16, false), (64, 1024));
        // Pieces hold whole quads, so planes of 4k values are taken a quad at a time.
        let (_, per) = gpu.channel_pieces(3 * 10_001, 1, true);
        assert_eq!(per % 4, 0);
        assert_eq!(cpu.channel_pieces(63 * 70, 3, true), (1, 4412));
        assert!(cpu.channel_quads(36, 4412) && gpu.channel_quads(1024, per));
        assert!(
            !cpu.channel_quads(63, 4412),
            "planes of 63 values go one by one"
        );
    }

    #[test]
    fn gpus_stage_long_sums_and_split_thin_products() {
        let gpu = policy(AdapterClass::Gpu);
        assert_eq!(gpu.serial_sum_limit(), GPU_SERIAL_SUM);
        assert_eq!(
            policy(AdapterClass::Cpu).serial_sum_limit(),
            LLVMPIPE_LOOP_BUDGET
        );
        // LeNet's conv1 weight gradient: one 64x64 tile, 64 images x 784 positions.
        assert_eq!(gpu.gemm_slices(1, 64 * 784), 98);
        assert_eq!(gpu.gemm_slices(4, 1 << 20), GPU_BUSY_WORKGROUPS / 4);
        assert_eq!(gpu.gemm_slices(1, 400), 1, "short sums stay whole");
        assert_eq!(
            gpu.gemm_slices(GPU_BUSY_WORKGROUPS, 1 << 20),
            1,
            "busy enough"
        );
        assert_eq!(policy(AdapterClass::Cpu).gemm_slices(1, 1 << 20), 1);
        // The forced GPU class on a budgeted CPU adapter stages as a GPU does.
        let forced = Policy::new(caps(AdapterClass::Cpu), Some(AdapterClass::Gpu)).unwrap();
        assert_eq!(forced.serial_sum_limit(), GPU_SERIAL_SUM);
        assert_eq!(forced.gemm_slices(1, 64 * 784), 98);
    }

    #[test]
    fn only_a_budgeted_driver_stages_loops_at_its_budget() {
        assert_eq!(policy(AdapterClass::Cpu).loop_limit(), LLVMPIPE_LOOP_BUDGET);
        assert_eq!(
            policy(AdapterClass::Gpu).loop_limit(),
            UNBUDGETED_LOOP_LIMIT
        );
        assert_eq!(policy(AdapterClass::Cpu).cross_entropy_max_classes(), 4096);
        assert!(policy(AdapterClass::Gpu).cross_entropy_max_classes() >= 1 << 20);
        // GPU kernels forced on a CPU adapter keep the driver's budget.
        let forced = Policy::new(caps(AdapterClass::Cpu), Some(AdapterClass::Gpu)).unwrap();
        assert_eq!(forced.gemm_schedule(), GemmSchedule::Tiles);
        assert_eq!(forced.loop_limit(), LLVMPIPE_LOOP_BUDGET);
        assert_eq!(forced.gemm_k_step(), LLVMPIPE_LOOP_BUDGET / 2);
    }

    #[test]
    fn the_subgroup_forward_shares_blocks_of_16_or_32_channels() {
        let p = policy(AdapterClass::CpuSimd8);
        assert_eq!(p.conv_lane_quads(64), Some(1));
        assert_eq!(p.conv_lane_quads(16), Some(2));
        assert_eq!(p.conv_lane_quads(48), Some(2));
        assert_eq!(p.conv_lane_quads(8), None);
        assert_eq!(p.conv_lane_quads(20), None);
        assert_eq!(policy(AdapterClass::Cpu).conv_lane_quads(64), None);
        assert_eq!(p.conv_pool_lane_quads(64), Some(1));
        assert_eq!(p.conv_pool_lane_quads(16), None);
        assert!(p.texel_reads(TEXEL_READS_MIN) && !p.texel_reads(TEXEL_READS_MIN - 1));
        assert!(!policy(AdapterClass::Cpu).texel_reads(1 << 20));
        assert!(p.optimizer_texel_reads(61_706) && !p.optimizer_texel_reads(TEXEL_READS_MIN - 1));
        assert!(!policy(AdapterClass::Gpu).texel_reads(1 << 20));
    }

    #[test]
    fn convolutions_lower_by_class_and_fit() {
        assert_eq!(
            policy(AdapterClass::Cpu).conv_lowering(true),
            ConvLowering::Implicit
        );
        assert_eq!(
            policy(AdapterClass::Cpu).conv_lowering(false),
            ConvLowering::Im2col
        );
        assert_eq!(
            policy(AdapterClass::Gpu).conv_lowering(true),
            ConvLowering::Im2col
        );
        assert!(policy(AdapterClass::Cpu).conv_bias_grad_staged(10));
        assert!(!policy(AdapterClass::Gpu).conv_bias_grad_staged(256 * GPU_SERIAL_SUM));
        assert!(policy(AdapterClass::Gpu).conv_bias_grad_staged(256 * GPU_SERIAL_SUM + 1));
        let budgeted = Policy::new(caps(AdapterClass::Cpu), Some(AdapterClass::Gpu)).unwrap();
        assert!(budgeted.conv_bias_grad_staged(256 * LLVMPIPE_LOOP_BUDGET + 1));
    }

    #[test]
    fn reductions_and_epilogues_follow_the_class() {
        let (cpu, gpu) = (policy(AdapterClass::Cpu), policy(AdapterClass::Gpu));
        assert!(cpu.sum_rows_wide(15, 256) && !cpu.sum_rows_wide(16, 256));
        assert!(gpu.sum_rows_wide(2047, 256) && !gpu.sum_rows_wide(10, 255));
        assert!(cpu.relu_backward_sums_rows(4096) && !gpu.relu_backward_sums_rows(4096));
        assert!(gpu.relu_backward_sums_rows(1024));
        assert!(cpu.cross_entropy_reduced(4096, 10) && !gpu.cross_entropy_reduced(4096, 10));
        assert!(!cpu.cross_entropy_reduced(64, 4096));
        assert_eq!(cpu.vec4_min_elements(), 4096);
        assert_eq!(gpu.vec4_min_elements(), 0);
        assert!(cpu.optimizer_flat_below() > gpu.optimizer_flat_below());
    }

    #[test]
    fn subgroup_kernels_need_the_subgroups() {
        assert!(Policy::new(caps(AdapterClass::Cpu), Some(AdapterClass::CpuSimd8)).is_err());
        let classes = Policy::runnable_classes(&caps(AdapterClass::CpuSimd8));
        assert_eq!(
            classes,
            [AdapterClass::CpuSimd8, AdapterClass::Cpu, AdapterClass::Gpu]
        );
        let classes = Policy::runnable_classes(&caps(AdapterClass::Gpu));
        assert_eq!(classes, [AdapterClass::Gpu, AdapterClass::Cpu]);
    }
}
