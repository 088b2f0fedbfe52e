//! `matmul` (2-D, batched, broadcast batch dims, 1-D operands as in PyTorch):
//! `shaders/matmul.wgsl`. The backward multiplies by the transposed operands, which the kernel
//! reads through strides instead of copying.

use crate::backend::cpu::texels::Texels;
use crate::backend::policy::GemmKernel;
use crate::device::Device;
use crate::error::{shape_err, Result};
use crate::fusion::{self, Producer};
use crate::kernel::{kernel_params, shader, Bind, Shader};
use crate::shape::{broadcast, numel};
use crate::tape::Op;
use crate::tensor::{Storage, Tensor};
use std::sync::Arc;

static SHADER: Shader = shader!("matmul");
static SUBGROUP_SHADER: Shader = shader!("cpu/matmul_subgroup");

kernel_params! {
    /// `Params` of `shaders/matmul.wgsl` and `shaders/cpu/matmul_subgroup.wgsl` (the same
    /// struct): C[bi] = A[bi] B[bi] over strided operands.
    pub(crate) struct MatmulParams for "matmul", "cpu/matmul_subgroup" {
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
        /// Unread: the pipeline constants ACCUMULATE, HAS_BIAS and RELU hold these.
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
    /// C = max(C, 0) once the sum is complete.
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

    /// Records the product on `dev`, split into several dispatches when one invocation's
    /// loop over k (times the batch, when summing over it) would exceed the loop budget.
    pub fn run(&self, dev: &Device) -> Result<()> {
        let out_batches = if self.sum_batch { 1 } else { self.batch };
        if out_batches * self.m * self.n == 0 {
            return Ok(());
        }
        debug_assert!(
            self.a_row_sums.is_none()
                || (self.batch == 1 && Gemm::sums_rows(dev, self.m, self.n, self.k)),
            "a_row_sums without the kernel that writes them"
        );
        if self.k == 0 || self.batch == 0 {
            if !self.accumulate {
                // An empty sum: zero the output matrices.
                for ob in 0..out_batches {
                    let start = (self.c_offset + ob * self.c_batch_stride) as u64 * 4;
                    dev.clear_range(self.c, start, (self.m * self.n) as u64 * 4);
                }
            }
            return Ok(());
        }
        let budget = dev.policy().gemm_k_step();
        let k_step = self.k.min(budget);
        let b_step = if self.sum_batch {
            (budget / k_step).max(1)
        } else {
            self.batch
        };
        let mut first = true;
        let mut texels = Operands::NotYet;
        for b0 in (0..self.batch).step_by(b_step) {
            for k0 in (0..self.k).step_by(k_step) {
                let piece = Piece {
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
                };
                self.dispatch(dev, &piece, &mut texels)?;
                first = false;
            }
        }
        Ok(())
    }

    fn dispatch(&self, dev: &Device, piece: &Piece, texels: &mut Operands) -> Result<()> {
        // Register blocks: the vec4 kernel over k - k % 4 when the operands' strides allow it
        // (reading them as textures), then matmul_blocked8 adds the rest.
        if dev.policy().gemm_texels(self.m, piece.k) {
            if let (Some(form), Some((a, b))) = (self.vec4_form(piece), texels.get(dev, self)?) {
                let k4 = piece.k - piece.k % 4;
                let main = Piece {
                    k: k4,
                    relu: piece.relu && k4 == piece.k,
                    ..*piece
                };
                self.record(dev, &main, Some(Vec4 { form, a, b }))?;
                if k4 == piece.k {
                    return Ok(());
                }
                let tail = Piece {
                    k: piece.k - k4,
                    a_off: piece.a_off + k4 * self.a.col_stride,
                    b_off: piece.b_off + k4 * self.b.row_stride,
                    accumulate: true,
                    bias: false,
                    ..*piece
                };
                return self.record(dev, &tail, None);
            }
        }
        self.record(dev, piece, None)
    }

    /// How matmul_vec4 can read the operands, (A along k, B along k), if it can: each operand
    /// contiguous along k or across its rows / columns, with offsets and strides multiples of 4.
    fn vec4_form(&self, piece: &Piece) -> Option<(bool, bool)> {
        let aligned = |v: &[usize]| v.iter().all(|x| x % 4 == 0);
        let (a, b) = (&self.a, &self.b);
        let a_k = if a.col_stride == 1 && aligned(&[piece.a_off, a.batch_stride, a.row_stride]) {
            true
        } else if a.row_stride == 1 && aligned(&[piece.a_off, a.batch_stride, a.col_stride]) {
            false
        } else {
            return None;
        };
        let b_k = if b.row_stride == 1 && aligned(&[piece.b_off, b.batch_stride, b.col_stride]) {
            true
        } else if b.col_stride == 1 && aligned(&[piece.b_off, b.batch_stride, b.row_stride]) {
            false
        } else {
            return None;
        };
        Some((a_k, b_k))
    }

    /// Records one kernel over `piece`: matmul_vec4 in the given form, or the adapter's
    /// scalar kernel.
    fn record(&self, dev: &Device, piece: &Piece, vec4: Option<Vec4>) -> Result<()> {
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
        let kernel = dev.policy().gemm_kernel(self.m, vec4.is_some());
        let (entry, (tile_m, tile_n)) = (kernel.entry(), kernel.tile());
        let out_batches = if self.sum_batch { 1 } else { piece.batch };
        let tiles = self.m.div_ceil(tile_m) * self.n.div_ceil(tile_n) * out_batches;
        // The epilogue is compiled into the pipeline (see the shaders' HAS_BIAS).
        let mut constants = vec![
            ("HAS_BIAS", piece.bias as u32),
            ("ACCUMULATE", piece.accumulate as u32),
            ("RELU", piece.relu as u32),
        ];
        let (a, b) = match &vec4 {
            Some(v) => {
                constants.extend([("A_K", v.form.0 as u32), ("B_K", v.form.1 as u32)]);
                (Bind::Texels(v.a), Bind::Texels(v.b))
            }
            None => (Bind::Read(self.a.buf), Bind::Read(self.b.buf)),
        };
        let shader = match kernel {
            GemmKernel::Subgroup8 => &SUBGROUP_SHADER,
            _ => &SHADER,
        };
        // matmul_subgroup stores C as vec4s (binding 5) when its rows and offsets allow (C4),
        // else as floats (binding 3); the other slot holds the device's dummy buffer.
        let subgroup = kernel == GemmKernel::Subgroup8;
        let c4 = subgroup
            && [self.n, piece.c_off, self.c_batch_stride]
                .iter()
                .all(|v| v % 4 == 0);
        let rows = kernel == GemmKernel::Rows;
        let unused = dev.dummy_buffer();
        let mut binds = vec![
            a,
            b,
            Bind::Write(if c4 { unused } else { self.c }),
            // Without a bias the slot holds A (unread).
            Bind::Read(self.bias.unwrap_or(self.a.buf)),
        ];
        if subgroup {
            constants.push(("C4", c4 as u32));
            binds.push(Bind::Write(if c4 { self.c } else { unused }));
        }
        if rows {
            constants.push(("ROW_SUMS", self.a_row_sums.is_some() as u32));
            // Without row sums the slot holds the dummy buffer (unwritten).
            binds.push(Bind::Write(self.a_row_sums.unwrap_or(unused)));
        }
        dev.dispatch_with(shader, entry, &constants, &binds, &params, tiles as u32)
    }
}

/// matmul_vec4's operand form (A along k, B along k) and its operands as textures.
struct Vec4<'t> {
    form: (bool, bool),
    a: &'t wgpu::TextureView,
    b: &'t wgpu::TextureView,
}

/// A product's operands as textures, copied once for all its pieces when the first piece needs
/// them; `Unavailable` when a buffer does not fit in a texture.
enum Operands {
    NotYet,
    Unavailable,
    Copied(Box<(Texels, Option<Texels>)>),
}

impl Operands {
    fn get(
        &mut self,
        dev: &Device,
        gemm: &Gemm,
    ) -> Result<Option<(&wgpu::TextureView, &wgpu::TextureView)>> {
        if let Operands::NotYet = self {
            let a = dev.texels_of(gemm.a.buf)?;
            // A product of a matrix with itself (or its transpose) copies it once.
            let b = if gemm.a.buf == gemm.b.buf {
                None
            } else {
                dev.texels_of(gemm.b.buf)?
            };
            *self = match (a, b) {
                (Some(a), Some(b)) => Operands::Copied(Box::new((a, Some(b)))),
                (Some(a), None) if gemm.a.buf == gemm.b.buf => {
                    Operands::Copied(Box::new((a, None)))
                }
                _ => Operands::Unavailable,
            };
        }
        Ok(match self {
            Operands::Copied(ab) => Some((ab.0.view(), ab.1.as_ref().unwrap_or(&ab.0).view())),
            _ => None,
        })
    }
}

/// One dispatch's share of a split product.
#[derive(Clone, Copy)]
struct Piece {
    batch: usize,
    k: usize,
    a_off: usize,
    b_off: usize,
    c_off: usize,
    accumulate: bool,
    bias: bool,
    relu: bool,
}

pub(crate) struct Saved {
    a: Tensor,
    b: Tensor,
    batch: usize,
    a_batched: bool,
    b_batched: bool,
    m: usize,
    n: usize,
    k: usize,
}

/// Product of [batch?, rows, cols] operands, reshaped to `shape`; summed over the batch when
/// the gradient's own operand was not batched (it was broadcast across the batch).
#[allow(clippy::too_many_arguments)]
fn product(
    dev: &Device,
    a: Operand,
    b: Operand,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    sum_batch: bool,
    shape: &[usize],
) -> Result<Tensor> {
    let out_batches = if sum_batch { 1 } else { batch };
    let out = Tensor::uninit(dev, &[out_batches, m, n])?;
    let mut g = Gemm::new(a, b, out.buffer(), batch, m, n, k);
    g.sum_batch = sum_batch;
    g.run(dev)?;
    out.reshape(shape)
}

pub(crate) fn backward(
    s: &Saved,
    g: &Tensor,
    need_a: bool,
    need_b: bool,
) -> Result<Vec<Option<Tensor>>> {
    let dev = g.device();
    let (batch, m, n, k) = (s.batch, s.m, s.n, s.k);
    let g_op = Operand::rows(g.buffer(), m, n, true);
    let ga = if need_a {
        // dA[bi] = dC[bi] x B[bi]^T
        let bt = Operand::transposed(s.b.buffer(), k, n, s.b_batched);
        Some(product(
            dev,
            g_op,
            bt,
            batch,
            m,
            k,
            n,
            !s.a_batched,
            s.a.shape(),
        )?)
    } else {
        None
    };
    let gb = if !need_b {
        None
    } else if !s.b_batched && s.a_batched {
        // dB = sum_bi A[bi]^T x dC[bi] = A_flat^T x dC_flat with the batch folded into rows.
        let at = Operand::transposed(s.a.buffer(), batch * m, k, false);
        let gf = Operand::rows(g.buffer(), batch * m, n, false);
        Some(product(
            dev,
            at,
            gf,
            1,
            k,
            n,
            batch * m,
            false,
            s.b.shape(),
        )?)
    } else {
        let at = Operand::transposed(s.a.buffer(), m, k, s.a_batched);
        Some(product(
            dev,
            at,
            g_op,
            batch,
            k,
            n,
            m,
            !s.b_batched,
            s.b.shape(),
        )?)
    };
    Ok(vec![ga, gb])
}

pub(crate) struct LinearSaved {
    x: Tensor,
    w: Tensor,
    rows: usize,
    inp: usize,
    out: usize,
    /// The output, when a ReLU was applied in the epilogue (its gradient mask).
    relu_y: Option<Tensor>,
}

/// Gradients of x, the weight and (when there is one) the bias, for those in `need`.
pub(crate) fn linear_backward(
    s: &LinearSaved,
    g: &Tensor,
    need: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let (need_x, need_w) = (need[0], need[1]);
    let dev = g.device();
    let (rows, inp, out) = (s.rows, s.inp, s.out);
    let need_b = need.len() == 3 && need[2];
    // Through the fused ReLU the gradient is masked by y > 0; with a bias gradient to compute,
    // the mask and the bias's sum over the rows come from one kernel.
    let mut gb = None;
    let masked;
    let g = match &s.relu_y {
        Some(y) => {
            let both = match need_b {
                true => crate::ops::unary::relu_backward_sum_rows(y, g, rows, out)?,
                false => None,
            };
            masked = match both {
                Some((m, sums)) => {
                    gb = Some(sums);
                    m
                }
                None => crate::ops::unary::relu_backward(y, g)?,
            };
            &masked
        }
        None => g,
    };
    let gx = if need_x {
        // dX = dY [rows, out] x W [out, in]
        let gx = Tensor::uninit(dev, s.x.shape())?;
        Gemm::new(
            Operand::rows(g.buffer(), rows, out, false),
            Operand::rows(s.w.buffer(), out, inp, false),
            gx.buffer(),
            1,
            rows,
            inp,
            out,
        )
        .run(dev)?;
        Some(gx)
    } else {
        None
    };
    let gw = if need_w {
        // dW = dY^T [out, rows] x X [rows, in]; for narrow layers on CPU adapters its kernel
        // also sums dY^T's rows: the bias gradient, without a dispatch of its own.
        let gw = Tensor::uninit(dev, s.w.shape())?;
        let sums = match need_b && gb.is_none() && Gemm::sums_rows(dev, out, inp, rows) {
            true => Some(Tensor::uninit(dev, &[out])?),
            false => None,
        };
        Gemm {
            a_row_sums: sums.as_ref().map(|t| t.buffer()),
            ..Gemm::new(
                Operand::transposed(g.buffer(), rows, out, false),
                Operand::rows(s.x.buffer(), rows, inp, false),
                gw.buffer(),
                1,
                out,
                inp,
                rows,
            )
        }
        .run(dev)?;
        gb = gb.or(sums);
        Some(gw)
    } else {
        None
    };
    let mut grads = vec![gx, gw];
    if need.len() == 3 {
        // The bias gradient: dY summed over rows (unless the ReLU's kernel summed it).
        grads.push(match (need_b, gb) {
            (true, Some(gb)) => Some(gb),
            (true, None) => Some(g.reshape(&[rows, out])?.sum_dim(0, false)?),
            (false, _) => None,
        });
    }
    Ok(grads)
}

/// `linear` and `linear_relu`.
fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, relu: bool) -> Result<Tensor> {
    x.device().same(weight.device(), "linear")?;
    let xs = x.shape();
    let ws = weight.shape();
    if xs.is_empty() || ws.len() != 2 || xs[xs.len() - 1] != ws[1] {
        return shape_err(
            "linear",
            format!("input {xs:?} and weight {ws:?} do not fit (weight is [out, in])"),
        );
    }
    let (inp, out) = (ws[1], ws[0]);
    if let Some(b) = bias {
        x.device().same(b.device(), "linear")?;
        if b.shape() != [out] {
            return shape_err("linear", format!("bias {:?} should be [{out}]", b.shape()));
        }
    }
    let mut shape = xs.to_vec();
    *shape.last_mut().unwrap() = out;
    if inp > 0 {
        // Computed when first needed (`fusion.rs`), so that a ReLU after it folds in.
        let (x, w, b) = (x.clone(), weight.clone(), bias.cloned());
        return fusion::defer(shape, Producer::Linear { x, w, b, relu });
    }
    // An empty product only zeroes the output: the bias and ReLU are separate ops there.
    let storage = x.device().storage(numel(&shape))?;
    let op = linear_into(x, weight, None, false, &storage, &shape)?;
    let y = Tensor::from_op(storage, shape, &[x, weight], || op);
    let y = match bias {
        Some(b) => y.add(b)?,
        None => y,
    };
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}

/// Records `x weight^T (+ bias) (then ReLU)` into `storage` (in > 0 for the bias and ReLU);
/// the op its backward needs.
pub(crate) fn linear_into(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    relu: bool,
    storage: &Arc<Storage>,
    shape: &[usize],
) -> Result<Op> {
    let dev = x.device();
    let (inp, out) = (weight.shape()[1], weight.shape()[0]);
    let rows = numel(shape) / out.max(1);
    let mut gemm = Gemm::new(
        Operand::rows(x.buffer(), rows, inp, false),
        Operand::transposed(weight.buffer(), out, inp, false),
        storage.buffer(),
        1,
        rows,
        out,
        inp,
    );
    // The bias is added in the product's epilogue.
    gemm.bias = bias.map(|b| b.buffer());
    gemm.relu = relu;
    gemm.run(dev)?;
    // The output itself is the ReLU's gradient mask.
    let relu_y = relu.then(|| Tensor::leaf(storage.clone(), shape.to_vec()));
    Ok(Op::Linear(LinearSaved {
        x: x.detach(),
        w: weight.detach(),
        rows,
        inp,
        out,
        relu_y,
    }))
}

impl Tensor {
    /// `self x weight^T + bias`, as `torch.nn.functional.linear`: input [..., in], weight
    /// [out, in] (read transposed in place), bias [out].
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        linear(self, weight, bias, false)
    }

    /// `relu(linear(self, weight, bias))` with the ReLU applied as the product is stored,
    /// saving a pass over the output (what `Sequential` runs for Linear followed by ReLU).
    pub fn linear_relu(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        linear(self, weight, bias, true)
    }

    /// Matrix product with PyTorch's `matmul` semantics: 2-D x 2-D, batched [..., m, k] x
    /// [..., k, n] with broadcast batch dims, and 1-D operands treated as a row or column vector.
    ///
    /// ```
    /// # use webgrad::{Device, Tensor};
    /// let dev = Device::new()?;
    /// let a = Tensor::from_vec(&dev, vec![1.0, 2.0, 3.0, 4.0], &[2, 2])?;
    /// let b = Tensor::from_vec(&dev, vec![5.0, 6.0, 7.0, 8.0], &[2, 2])?;
    /// assert_eq!(a.matmul(&b)?.to_vec()?, vec![19.0, 22.0, 43.0, 50.0]);
    /// # Ok::<(), webgrad::Error>(())
    /// ```
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        self.device().same(other.device(), "matmul")?;
        let (ra, rb) = (self.rank(), other.rank());
        if ra == 0 || rb == 0 {
            return shape_err(
                "matmul",
                format!(
                    "both operands need at least one dimension, got {:?} and {:?}",
                    self.shape(),
                    other.shape()
                ),
            );
        }
        // 1-D operands: a vector on the left is a row, on the right a column; squeeze after.
        if ra == 1 || rb == 1 {
            let a = if ra == 1 {
                self.reshape(&[1, self.shape()[0]])?
            } else {
                self.clone()
            };
            let b = if rb == 1 {
                other.reshape(&[other.shape()[0], 1])?
            } else {
                other.clone()
            };
            let out = a.matmul(&b)?;
            let mut shape = out.shape().to_vec();
            if rb == 1 {
                shape.pop();
            }
            if ra == 1 {
                shape.remove(shape.len() - if rb == 1 { 1 } else { 2 });
            }
            return out.reshape(&shape);
        }
        let (m, k) = (self.shape()[ra - 2], self.shape()[ra - 1]);
        let (k2, n) = (other.shape()[rb - 2], other.shape()[rb - 1]);
        if k != k2 {
            return shape_err(
                "matmul",
                format!(
                    "shapes {:?} and {:?} cannot be multiplied ({m}x{k} and {k2}x{n})",
                    self.shape(),
                    other.shape()
                ),
            );
        }
        let (ba, bb) = (&self.shape()[..ra - 2], &other.shape()[..rb - 2]);
        let batch_shape = broadcast(ba, bb, "matmul")?;
        let batch = numel(&batch_shape);
        // An operand whose batch dims are all 1 is reused for every batch (stride 0); one that
        // is broadcast only partly is expanded to the full batch first.
        let prepare =
            |t: &Tensor, own: &[usize], rows: usize, cols: usize| -> Result<(Tensor, bool)> {
                if numel(own) == 1 && batch > 1 {
                    Ok((t.clone(), false))
                } else if numel(own) == batch {
                    Ok((t.clone(), true))
                } else {
                    let mut full = batch_shape.clone();
                    full.extend([rows, cols]);
                    Ok((t.expand(&full)?, true))
                }
            };
        let (a, a_batched) = prepare(self, ba, m, k)?;
        let (b, b_batched) = prepare(other, bb, k, n)?;
        let dev = self.device();
        let mut out_shape = batch_shape.clone();
        out_shape.extend([m, n]);
        // Checked: with k = 0 the output may hold far more elements than either operand.
        let storage = dev.storage(crate::shape::check_shape(&out_shape, "matmul")?)?;
        Gemm::new(
            Operand::rows(a.buffer(), m, k, a_batched),
            Operand::rows(b.buffer(), k, n, b_batched),
            storage.buffer(),
            batch,
            m,
            n,
            k,
        )
        .run(dev)?;
        Ok(Tensor::from_op(storage, out_shape, &[&a, &b], || {
            Op::Matmul(Saved {
                a: a.detach(),
                b: b.detach(),
                batch,
                a_batched,
                b_batched,
                m,
                n,
                k,
            })
        }))
    }
}

impl LinearSaved {
    /// The epilogue fused into the product, as a drawing of the graph names it.
    pub(crate) fn epilogue(&self) -> &'static str {
        if self.relu_y.is_some() {
            "+relu"
        } else {
            ""
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Gemm, Operand};
    use crate::{AdapterClass, Device, DeviceOptions, Rng, Tensor};

    /// Every operand form of the CPU kernels (A along k or across rows, B along k or across
    /// columns), with k % 4 tails, a batch, and edges past the 8 x 8 blocks, against float64.
    /// Operand matrices are stored either [rows, cols] or transposed, and read in place.
    #[test]
    fn every_operand_form_matches_float64() {
        // The CPU schedules: matmul_vec4, and matmul_subgroup where the adapter has 8-lane
        // subgroups.
        let classes = Device::new().unwrap().runnable_kernel_classes();
        for class in classes.into_iter().filter(|c| c.is_cpu()) {
            every_operand_form_on(class);
        }
    }

    fn every_operand_form_on(class: AdapterClass) {
        let dev = Device::with_options(DeviceOptions::default().force_kernels(class)).unwrap();
        let mut rng = Rng::new(5);
        for &(batch, m, k, n) in &[
            (1usize, 20usize, 12usize, 36usize),
            (2, 33, 21, 17),
            (1, 70, 5, 9),
            (3, 24, 8, 8),
        ] {
            for a_k in [true, false] {
                for b_k in [true, false] {
                    // A [batch, m, k] stored as [m, k] (a_k) or [k, m]; likewise B [k, n].
                    // Row lengths are padded to a multiple of 4 so that the vec4 kernel applies.
                    let (a_rows, a_cols) = if a_k { (m, k) } else { (k, m) };
                    let (b_rows, b_cols) = if b_k { (n, k) } else { (k, n) };
                    let a_ld = a_cols.div_ceil(4) * 4;
                    let b_ld = b_cols.div_ceil(4) * 4;
                    let a: Vec<f32> = (0..batch * a_rows * a_ld).map(|_| rng.normal()).collect();
                    let b: Vec<f32> = (0..batch * b_rows * b_ld).map(|_| rng.normal()).collect();
                    let at = |bi: usize, r: usize, c: usize| -> f64 {
                        let (i, j) = if a_k { (r, c) } else { (c, r) };
                        a[bi * a_rows * a_ld + i * a_ld + j] as f64
                    };
                    let bt = |bi: usize, r: usize, c: usize| -> f64 {
                        let (i, j) = if b_k { (c, r) } else { (r, c) };
                        b[bi * b_rows * b_ld + i * b_ld + j] as f64
                    };
                    let ta = Tensor::from_slice(&dev, &a, &[a.len()]).unwrap();
                    let tb = Tensor::from_slice(&dev, &b, &[b.len()]).unwrap();
                    let tc = Tensor::uninit(&dev, &[batch * m * n]).unwrap();
                    let op = |buf, rows, ld, along_k: bool, first: bool| {
                        let o = Operand::rows(buf, rows, ld, true);
                        // along_k: element (r, k) of A (or (k, c) of B) at r * ld + k.
                        match (along_k, first) {
                            (true, true) | (false, false) => o,
                            _ => Operand {
                                row_stride: 1,
                                col_stride: ld,
                                ..o
                            },
                        }
                    };
                    let gemm = Gemm::new(
                        op(ta.buffer(), a_rows, a_ld, a_k, true),
                        op(tb.buffer(), b_rows, b_ld, b_k, false),
                        tc.buffer(),
                        batch,
                        m,
                        n,
                        k,
                    );
                    gemm.run(&dev).unwrap();
                    let got = tc.to_vec().unwrap();
                    for bi in 0..batch {
                        for r in 0..m {
                            for c in 0..n {
                                let want: f64 = (0..k).map(|i| at(bi, r, i) * bt(bi, i, c)).sum();
                                let g = got[(bi * m + r) * n + c] as f64;
                                assert!(
                                    (g - want).abs() < 1e-4 * (1.0 + want.abs()),
                                    "a_k {a_k} b_k {b_k} {batch}x{m}x{k}x{n} [{bi},{r},{c}]: {g} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
