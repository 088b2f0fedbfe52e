//! The matrix product as one backend function, [`gemm`]: a description of the product
//! ([`Gemm`]: strided operands, batch, sum over the batch, epilogue) in, kernels recorded.
//! `ops/matmul.rs` (matmul, linear and their gradients) and `ops/conv.rs` (the im2col
//! lowering) call it. It splits the product into pieces within the loop budget and hands them
//! to the schedule the policy chooses: workgroup tiles (`portable/matmul.rs`) or register blocks
//! (`cpu/matmul.rs`). The shaders share `shaders/matmul_common.wgsl`, and with it one `Params`.

use super::policy::{GemmKernel, GemmSchedule};
use super::{cpu, portable};
use crate::device::Device;
use crate::error::Result;
use crate::kernel::{kernel_params, Bind, Shader};

kernel_params! {
    /// `Params` of `shaders/matmul_common.wgsl`, which every matrix-product module starts
    /// with: C[bi] = A[bi] B[bi] over strided operands.
    pub(crate) struct MatmulParams for "matmul", "cpu/matmul_blocked", "cpu/matmul_subgroup" {
        batch: u32,
        m: u32,
        n: u32,
        k: u32,
        a_off: u32,
        a_bs: u32,
        a_rs: u32,
        a_cs: u32,
        b_off: u32,
        b_bs: u32,
        b_rs: u32,
        b_cs: u32,
        c_off: u32,
        c_bs: u32,
        sum_batch: u32,
        /// Read where the policy puts the epilogue in the parameters; otherwise the pipeline
        /// constants ACCUMULATE, HAS_BIAS and RELU hold these.
        accumulate: u32,
        has_bias: u32,
        relu: u32,
    }
}

/// One operand of a strided batched product: element (bi, r, c) is at
/// `offset + bi * batch_stride + r * row_stride + c * col_stride`.
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a> {
    pub buf: &'a wgpu::Buffer,
    pub offset: usize,
    pub batch_stride: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> Operand<'a> {
    /// A contiguous [batch?, rows, cols] matrix; `batched` false repeats it for every batch.
    pub fn rows(buf: &'a wgpu::Buffer, rows: usize, cols: usize, batched: bool) -> Self {
        Operand {
            buf,
            offset: 0,
            batch_stride: if batched { rows * cols } else { 0 },
            row_stride: cols,
            col_stride: 1,
        }
    }
    /// The transpose of a contiguous [batch?, rows, cols] matrix, read in place.
    pub fn transposed(buf: &'a wgpu::Buffer, rows: usize, cols: usize, batched: bool) -> Self {
        Operand {
            buf,
            offset: 0,
            batch_stride: if batched { rows * cols } else { 0 },
            row_stride: 1,
            col_stride: cols,
        }
    }
    pub fn at(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }
    pub fn batch_stride(mut self, stride: usize) -> Self {
        self.batch_stride = stride;
        self
    }
}

/// A strided batched product `C[bi] = A[bi] x B[bi]` of [m, k] x [k, n] matrices.
/// C[bi, r, c] is written at `c_offset + bi * c_batch_stride + r * n + c`.
pub(crate) struct Gemm<'a> {
    pub a: Operand<'a>,
    pub b: Operand<'a>,
    pub c: &'a wgpu::Buffer,
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub c_offset: usize,
    pub c_batch_stride: usize,
    /// One output: the sum over the batch of the products.
    pub sum_batch: bool,
    /// Add to C instead of overwriting it.
    pub accumulate: bool,
    /// Added to every row of C ([n]).
    pub bias: Option<&'a wgpu::Buffer>,
    /// C = relu(C) once the sum is complete.
    pub relu: bool,
    /// Also the sums of A's rows over k, into this [m] buffer (a Linear's bias gradient, with
    /// its weight gradient); only where [`Gemm::sums_rows`] says the kernel does it.
    pub a_row_sums: Option<&'a wgpu::Buffer>,
}

impl<'a> Gemm<'a> {
    /// C contiguous [batch, m, n], overwritten.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        a: Operand<'a>,
        b: Operand<'a>,
        c: &'a wgpu::Buffer,
        batch: usize,
        m: usize,
        n: usize,
        k: usize,
    ) -> Self {
        Gemm {
            a,
            b,
            c,
            batch,
            m,
            n,
            k,
            c_offset: 0,
            c_batch_stride: m * n,
            sum_batch: false,
            accumulate: false,
            bias: None,
            relu: false,
            a_row_sums: None,
        }
    }

    /// Whether a one-batch product of these sizes sums A's rows as it goes (`a_row_sums`):
    /// where the policy runs it as matmul_rows in one piece.
    pub fn sums_rows(dev: &Device, m: usize, n: usize, k: usize) -> bool {
        dev.policy().gemm_sums_rows(m, n, k)
    }

    /// The dispatches' shares of the product (k and the batch not 0): one invocation's loop
    /// over k, times the batch when summing over it, stays within `budget` iterations.
    fn pieces(&self, budget: usize) -> Vec<Piece> {
        let k_step = self.k.min(budget);
        let b_step = if self.sum_batch {
            (budget / k_step).max(1)
        } else {
            self.batch
        };
        let mut pieces = Vec::new();
        for b0 in (0..self.batch).step_by(b_step) {
            for k0 in (0..self.k).step_by(k_step) {
                let first = pieces.is_empty();
                pieces.push(Piece {
                    batch: b_step.min(self.batch - b0),
                    k: k_step.min(self.k - k0),
                    a_off: self.a.offset + b0 * self.a.batch_stride + k0 * self.a.col_stride,
                    b_off: self.b.offset + b0 * self.b.batch_stride + k0 * self.b.row_stride,
                    // Without sum_batch every batch has its own output, so pieces split only k.
                    c_off: self.c_offset
                        + if self.sum_batch {
                            0
                        } else {
                            b0 * self.c_batch_stride
                        },
                    accumulate: self.accumulate || !first,
                    // The bias is added once, by the piece that starts each output, and the
                    // activation by the piece that completes it.
                    bias: self.bias.is_some() && first,
                    relu: self.relu && b0 + b_step >= self.batch && k0 + k_step >= self.k,
                });
            }
        }
        pieces
    }

    /// Records one dispatch of `kernel` (an entry point of `shader`) over `piece`: bindings
    /// 1.. are `binds`, and the pipeline's constants the epilogue's and `constants`.
    pub(super) fn record(
        &self,
        dev: &Device,
        shader: &Shader,
        kernel: GemmKernel,
        piece: &Piece,
        binds: &[Bind],
        constants: &[(&'static str, u32)],
    ) -> Result<()> {
        let params = MatmulParams {
            batch: piece.batch as u32,
            m: self.m as u32,
            n: self.n as u32,
            k: piece.k as u32,
            a_off: piece.a_off as u32,
            a_bs: self.a.batch_stride as u32,
            a_rs: self.a.row_stride as u32,
            a_cs: self.a.col_stride as u32,
            b_off: piece.b_off as u32,
            b_bs: self.b.batch_stride as u32,
            b_rs: self.b.row_stride as u32,
            b_cs: self.b.col_stride as u32,
            c_off: piece.c_off as u32,
            c_bs: self.c_batch_stride as u32,
            sum_batch: self.sum_batch as u32,
            accumulate: piece.accumulate as u32,
            has_bias: piece.bias as u32,
            relu: piece.relu as u32,
        };
        let (tile_m, tile_n) = kernel.tile();
        let out_batches = if self.sum_batch { 1 } else { piece.batch };
        let tiles = self.m.div_ceil(tile_m) * self.n.div_ceil(tile_n) * out_batches;
        let all = Gemm::constants(dev, piece, constants);
        dev.dispatch_with(shader, kernel.entry(), &all, binds, &params, tiles as u32)
    }

    /// The pipeline constants of a dispatch over `piece`: the epilogue's, compiled into the
    /// pipeline (see matmul_common.wgsl's HAS_BIAS) or read from the parameters where the
    /// policy says so, then the kernel's own `constants`.
    pub(super) fn constants(
        dev: &Device,
        piece: &Piece,
        constants: &[(&'static str, u32)],
    ) -> Vec<(&'static str, u32)> {
        let mut all = match dev.policy().gemm_epilogue_in_params() {
            true => vec![("EPILOGUE_IN_PARAMS", 1)],
            false => vec![
                ("HAS_BIAS", piece.bias as u32),
                ("ACCUMULATE", piece.accumulate as u32),
                ("RELU", piece.relu as u32),
            ],
        };
        all.extend_from_slice(constants);
        all
    }

    /// Binding 4: the bias, or A (unread) without one.
    pub(super) fn bias_bind(&self) -> Bind<'a> {
        Bind::Read(self.bias.unwrap_or(self.a.buf))
    }
}

/// One dispatch's share of a split product.
#[derive(Clone, Copy)]
pub(crate) struct Piece {
    pub batch: usize,
    pub k: usize,
    pub a_off: usize,
    pub b_off: usize,
    pub c_off: usize,
    pub accumulate: bool,
    pub bias: bool,
    pub relu: bool,
}

/// Records the product `g` on `dev`: split into several dispatches where one invocation's loop
/// over k (times the batch, when summing over it) would exceed the loop limit, each run by the
/// schedule the policy chooses.
pub(crate) fn gemm(dev: &Device, g: &Gemm) -> Result<()> {
    let out_batches = if g.sum_batch { 1 } else { g.batch };
    if out_batches * g.m * g.n == 0 {
        return Ok(());
    }
    debug_assert!(
        g.a_row_sums.is_none() || (g.batch == 1 && Gemm::sums_rows(dev, g.m, g.n, g.k)),
        "a_row_sums without the kernel that writes them"
    );
    if g.k == 0 || g.batch == 0 {
        if !g.accumulate {
            // An empty sum: zero the output matrices.
            for ob in 0..out_batches {
                let start = (g.c_offset + ob * g.c_batch_stride) as u64 * 4;
                dev.clear_range(g.c, start, (g.m * g.n) as u64 * 4);
            }
        }
        return Ok(());
    }
    let policy = dev.policy();
    if let Some(done) = split_thin(dev, g)? {
        return Ok(done);
    }
    let pieces = g.pieces(policy.gemm_k_step());
    match policy.gemm_schedule() {
        GemmSchedule::Tiles => portable::matmul::run(dev, g, &pieces),
        GemmSchedule::Blocks => cpu::matmul::run(dev, g, &pieces),
    }
}

/// Most scratch values (16 MiB) a split product may use; larger ones run unsplit.
const SPLIT_SCRATCH_MAX: usize = 1 << 22;

/// Runs a thin product with a long sum (where the policy splits it: a few output tiles, many
/// terms each) as parallel slices into a scratch buffer, then sums the slices into C with a
/// second product, `ones[1, slices] x scratch[slices, m * n]`, which also accumulates. With
/// `sum_batch` the slices are the batch's products; otherwise k is cut into equal slices, and
/// the rest of k (fewer terms than a slice) is added last. `None` where it does not apply:
/// one output batch and no epilogue but accumulation.
fn split_thin(dev: &Device, g: &Gemm) -> Result<Option<()>> {
    let one_output = g.sum_batch || g.batch == 1;
    if !one_output || g.bias.is_some() || g.relu || g.a_row_sums.is_some() {
        return Ok(None);
    }
    let (tile_m, tile_n) = GemmKernel::Tiled.tile();
    let tiles = g.m.div_ceil(tile_m) * g.n.div_ceil(tile_n);
    let serial = g.k * if g.sum_batch { g.batch } else { 1 };
    let slices = dev.policy().gemm_slices(tiles, serial);
    if slices < 2 {
        return Ok(None);
    }
    // A sum over a batch of many more products than slices keeps its in-kernel sum (one
    // workgroup per product would mostly compute padding of its tile).
    let by_batch = g.sum_batch && g.batch > 1;
    if by_batch && g.batch > 2 * slices {
        return Ok(None);
    }
    let (parts, k_slice) = if by_batch {
        (g.batch, g.k)
    } else {
        (slices, g.k / slices)
    };
    let mn = g.m * g.n;
    if parts * mn > SPLIT_SCRATCH_MAX {
        return Ok(None);
    }
    let scratch = dev.storage(parts * mn)?;
    let sliced = |op: Operand<'_>, step: usize| -> usize {
        if by_batch {
            op.batch_stride
        } else {
            k_slice * step
        }
    };
    let a = g.a.batch_stride(sliced(g.a, g.a.col_stride));
    let b = g.b.batch_stride(sliced(g.b, g.b.row_stride));
    gemm(
        dev,
        &Gemm::new(a, b, scratch.buffer(), parts, g.m, g.n, k_slice),
    )?;
    let ones = crate::Tensor::full(dev, &[parts], 1.0)?;
    let mut total = Gemm::new(
        Operand::rows(ones.buffer(), 1, parts, false),
        Operand::rows(scratch.buffer(), parts, mn, false),
        g.c,
        1,
        1,
        mn,
        parts,
    );
    total.c_offset = g.c_offset;
    total.accumulate = g.accumulate;
    gemm(dev, &total)?;
    let done = parts * k_slice;
    if !by_batch && done < g.k {
        let mut rest = Gemm::new(
            g.a.at(g.a.offset + done * g.a.col_stride),
            g.b.at(g.b.offset + done * g.b.row_stride),
            g.c,
            1,
            g.m,
            g.n,
            g.k - done,
        );
        rest.c_offset = g.c_offset;
        rest.accumulate = true;
        gemm(dev, &rest)?;
    }
    Ok(Some(()))
}
