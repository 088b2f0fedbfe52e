//! `matmul` (2-D, batched, broadcast batch dims, 1-D operands as in PyTorch):
//! `shaders/matmul.wgsl`. The backward multiplies by the transposed operands, which the kernel
//! reads through strides instead of copying.

use crate::device::Device;
use crate::error::{shape_err, Result};
use crate::kernel::{shader, Bind, Shader};
use crate::shape::{broadcast, numel};
use crate::tape::Op;
use crate::tensor::Tensor;

static SHADER: Shader = shader!("matmul");

/// One operand of a strided batched product: element (bi, r, c) is at
/// `bi * batch_stride + r * row_stride + c * col_stride`.
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a> {
    pub buf: &'a wgpu::Buffer,
    pub batch_stride: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> Operand<'a> {
    /// A contiguous [batch?, rows, cols] matrix; `batched` false repeats it for every batch.
    pub fn rows(buf: &'a wgpu::Buffer, rows: usize, cols: usize, batched: bool) -> Self {
        Operand {
            buf,
            batch_stride: if batched { rows * cols } else { 0 },
            row_stride: cols,
            col_stride: 1,
        }
    }
    /// The transpose of a contiguous [batch?, rows, cols] matrix, read in place.
    pub fn transposed(buf: &'a wgpu::Buffer, rows: usize, cols: usize, batched: bool) -> Self {
        Operand {
            buf,
            batch_stride: if batched { rows * cols } else { 0 },
            row_stride: 1,
            col_stride: cols,
        }
    }
}

/// Records `out[bi] = a[bi] x b[bi]` for `batch` products of [m, k] x [k, n] into `out`
/// (contiguous [batch, m, n]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    dev: &Device,
    a: Operand,
    b: Operand,
    out: &wgpu::Buffer,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
) -> Result<()> {
    if batch * m * n == 0 {
        return Ok(());
    }
    if k == 0 {
        dev.clear(out, (batch * m * n) as u64 * 4);
        return Ok(());
    }
    let params = [
        batch as u32,
        m as u32,
        n as u32,
        k as u32,
        a.batch_stride as u32,
        a.row_stride as u32,
        a.col_stride as u32,
        b.batch_stride as u32,
        b.row_stride as u32,
        b.col_stride as u32,
    ];
    let (entry, tile) = if dev.0.matmul_tiles {
        ("matmul_tiled", 64)
    } else {
        ("matmul_blocked", 32)
    };
    let tiles = m.div_ceil(tile) * n.div_ceil(tile) * batch;
    dev.dispatch(
        &SHADER,
        entry,
        &[Bind::Read(a.buf), Bind::Read(b.buf), Bind::Write(out)],
        &params,
        tiles as u32,
    )
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

/// Product of [batch?, rows, cols] matrices given as operands; sums over the batch when the
/// result's own operand was not batched (it was broadcast across the batch).
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
    let full = Tensor::uninit(dev, &[batch, m, n])?;
    gemm(dev, a, b, full.buffer(), batch, m, n, k)?;
    let full = if sum_batch && batch > 1 {
        full.sum_dim(0, false)?
    } else {
        full
    };
    full.reshape(shape)
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

impl Tensor {
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
        let storage = dev.storage(batch * m * n)?;
        gemm(
            dev,
            Operand::rows(a.buffer(), m, k, a_batched),
            Operand::rows(b.buffer(), k, n, b_batched),
            storage.buffer(),
            batch,
            m,
            n,
            k,
        )?;
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
