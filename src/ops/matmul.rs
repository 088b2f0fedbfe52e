//! `matmul` (2-D, batched, broadcast batch dims, 1-D operands as in PyTorch) and `linear`:
//! the tensor API, its validation, and the gradients stated as products. Every product is one
//! call of the backend's [`gemm`] (`backend/gemm.rs`), which reads transposed operands through
//! strides instead of copying them and picks the kernel.

use crate::backend::{gemm, Gemm, Operand};
use crate::device::Device;
use crate::error::{shape_err, Result};
use crate::fusion::{self, Producer};
use crate::shape::{broadcast, numel};
use crate::tape::Op;
use crate::tensor::{Storage, Tensor};
use std::sync::Arc;

/// What matmul's backward reads: the operands as multiplied (batch-expanded where they were
/// broadcast only partly) and the sizes. Nothing of the kernel that ran: the gradients are
/// products of their own, whatever kernel the backend picks for them.
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
    let g = Gemm {
        sum_batch,
        ..Gemm::new(a, b, out.buffer(), batch, m, n, k)
    };
    gemm(dev, &g)?;
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

/// What linear's backward reads: the input, the weight, the sizes, and the output where a
/// fused ReLU made it the gradient's mask.
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
        let dx = Gemm::new(
            Operand::rows(g.buffer(), rows, out, false),
            Operand::rows(s.w.buffer(), out, inp, false),
            gx.buffer(),
            1,
            rows,
            inp,
            out,
        );
        gemm(dev, &dx)?;
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
        let dw = Gemm {
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
        };
        gemm(dev, &dw)?;
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
    // The bias (and the ReLU) are applied in the product's epilogue.
    let y = Gemm {
        bias: bias.map(|b| b.buffer()),
        relu,
        ..Gemm::new(
            Operand::rows(x.buffer(), rows, inp, false),
            Operand::transposed(weight.buffer(), out, inp, false),
            storage.buffer(),
            1,
            rows,
            out,
            inp,
        )
    };
    gemm(dev, &y)?;
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
    /// `[out, in]` (read transposed in place), bias `[out]`.
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
        let mm = Gemm::new(
            Operand::rows(a.buffer(), m, k, a_batched),
            Operand::rows(b.buffer(), k, n, b_batched),
            storage.buffer(),
            batch,
            m,
            n,
            k,
        );
        gemm(dev, &mm)?;
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
