//! `max_pool2d` (with dilation, ceil_mode and indices), `avg_pool2d` and
//! `adaptive_avg_pool2d` with their backward: the autograd rule. The kernels run behind the
//! backend's pooling functions (`backend/portable/pool.rs`).

use crate::backend::pool::{pool2d_backward, pool2d_forward, PoolGeometry};
use crate::error::{shape_err, Result};
use crate::ops::conv::conv2d_output_size;
use crate::tape::Op;
use crate::tensor::Tensor;

/// Window, stride, padding and dilation (each per axis: height, width) of a 2-D pooling, and
/// how the output size rounds. PyTorch's defaults, as [`Pool2dParams::new`] sets them: stride
/// = kernel, no padding, dilation 1, `ceil_mode` false, `count_include_pad` true.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dParams {
    /// Window height and width.
    pub kernel: (usize, usize),
    /// Step between windows, per axis.
    pub stride: (usize, usize),
    /// Implicit padding on each side, per axis (-inf for max, zeros for average pooling); at
    /// most half the kernel, as PyTorch requires.
    pub padding: (usize, usize),
    /// max_pool2d only: the step between a window's taps, per axis (1: adjacent pixels).
    pub dilation: (usize, usize),
    /// Round the output size up instead of down, as PyTorch's `ceil_mode`: a last window that
    /// hangs past the end of the padded input is kept if it starts inside the input or its
    /// left padding.
    pub ceil_mode: bool,
    /// avg_pool2d only: whether padded zeros count in the average (PyTorch's default: true).
    /// A `ceil_mode` window hanging past the padded input counts only up to its end.
    pub count_include_pad: bool,
}

impl Pool2dParams {
    /// A `k` x `k` window with stride `k` (PyTorch's default stride), no padding, dilation 1.
    pub fn new(k: usize) -> Self {
        Pool2dParams {
            kernel: (k, k),
            stride: (k, k),
            padding: (0, 0),
            dilation: (1, 1),
            ceil_mode: false,
            count_include_pad: true,
        }
    }
    /// Stride `s` along both axes.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = (s, s);
        self
    }
    /// Padding `p` on every side.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = (p, p);
        self
    }
    /// max_pool2d: dilation `d` along both axes (taps `d` pixels apart).
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = (d, d);
        self
    }
    /// Whether the output size rounds up (PyTorch's `ceil_mode`).
    pub fn ceil_mode(mut self, yes: bool) -> Self {
        self.ceil_mode = yes;
        self
    }
    /// avg_pool2d: whether padded zeros count in the average.
    pub fn count_include_pad(mut self, yes: bool) -> Self {
        self.count_include_pad = yes;
        self
    }
}

/// The pooled size along one axis, PyTorch's rule: floor((n + 2 pad - span) / stride) + 1
/// with span = dilation (kernel - 1) + 1, or with `ceil_mode` the ceiling, less one if the
/// last window would start in the right padding.
fn pooled_size(n: usize, k: usize, s: usize, pad: usize, d: usize, ceil: bool) -> Result<usize> {
    let floor = conv2d_output_size(n, k, s, pad, d)?;
    if !ceil {
        return Ok(floor);
    }
    // conv2d_output_size checked that these neither overflow nor go negative.
    let room = n + 2 * pad - (d * (k - 1) + 1);
    let mut out = room.div_ceil(s) + 1;
    if (out - 1) * s >= n + pad {
        out -= 1;
    }
    Ok(out)
}

fn geometry(x: &Tensor, mut p: Pool2dParams, op: &'static str) -> Result<PoolGeometry> {
    let s = x.shape();
    if s.len() != 4 {
        return shape_err(op, format!("expects an NCHW input, got {s:?}"));
    }
    if p.padding.0 * 2 > p.kernel.0 || p.padding.1 * 2 > p.kernel.1 {
        return shape_err(
            op,
            format!(
                "padding {:?} must be at most half the kernel {:?}",
                p.padding, p.kernel
            ),
        );
    }
    let sizes = [p.kernel, p.stride, p.dilation];
    if sizes.iter().any(|&(a, b)| a.max(b) > i32::MAX as usize) {
        return shape_err(
            op,
            format!(
                "kernel {:?}, stride {:?} and dilation {:?} must each be below 2^31",
                p.kernel, p.stride, p.dilation
            ),
        );
    }
    if op != "max_pool2d" && p.dilation != (1, 1) {
        return shape_err(op, format!("has no dilation, got {:?}", p.dilation));
    }
    let size = |i, k, st, pd, d| {
        pooled_size(i, k, st, pd, d, p.ceil_mode).map_err(|e| crate::Error::Shape {
            op,
            msg: format!("input {s:?}: {e}"),
        })
    };
    let ho = size(s[2], p.kernel.0, p.stride.0, p.padding.0, p.dilation.0)?;
    let wo = size(s[3], p.kernel.1, p.stride.1, p.padding.1, p.dilation.1)?;
    // Where rounding up adds no window, ceil_mode changes nothing: the plain kernels (and the
    // fused conv + ReLU + pool) then see the plain parameters.
    if p.ceil_mode {
        let plain = Pool2dParams {
            ceil_mode: false,
            ..p
        };
        let floor = |i, k, st, pd, d| pooled_size(i, k, st, pd, d, false);
        if floor(s[2], p.kernel.0, p.stride.0, p.padding.0, p.dilation.0)? == ho
            && floor(s[3], p.kernel.1, p.stride.1, p.padding.1, p.dilation.1)? == wo
        {
            p = plain;
        }
    }
    Ok(PoolGeometry {
        planes: s[0] * s[1],
        h: s[2],
        w: s[3],
        ho,
        wo,
        p,
        adaptive: false,
    })
}

/// Along one axis of `geo`: the most taps one window reads (the forward's loop) and the most
/// windows that span one input position (the backward's), height (`rows`) or width.
fn axis_loops(geo: &PoolGeometry, rows: bool) -> (usize, usize) {
    let (n, n_out, k, s, d) = if rows {
        (
            geo.h,
            geo.ho,
            geo.p.kernel.0,
            geo.p.stride.0,
            geo.p.dilation.0,
        )
    } else {
        (
            geo.w,
            geo.wo,
            geo.p.kernel.1,
            geo.p.stride.1,
            geo.p.dilation.1,
        )
    };
    if geo.adaptive {
        // A bin spans n / n_out inputs where that divides, else at most ceil(n / n_out) + 1;
        // an input lies in n_out / n bins, or at most ceil(n_out / n) + 1. (Exact where it
        // divides: pooling one axis at a time must see the other axis's 1 x 1 windows.)
        let most = |a: usize, b: usize| a.div_ceil(b) + !a.is_multiple_of(b) as usize;
        return (most(n, n_out), most(n_out, n));
    }
    (k, (d * (k - 1) + 1).div_ceil(s))
}

/// Windows whose loops would pass the device's loop limit (a 256 x 256 global pool on
/// llvmpipe, whose driver silently cuts longer loops) pool one axis at a time: max and average
/// are both separable over a rectangular window, padding and dilation included (the average's
/// count of non-padded cells is the product of the two axes' counts), and the first maximum in
/// row-major order is found either way. `Ok(false)`: the window fits, pool it in one pass;
/// an error where even one axis is too long.
fn by_axes(x: &Tensor, geo: &PoolGeometry, op: &'static str) -> Result<bool> {
    let limit = x.device().policy().loop_limit();
    let (rows, cols) = (axis_loops(geo, true), axis_loops(geo, false));
    if (rows.0 * cols.0).max(rows.1 * cols.1) <= limit {
        return Ok(false);
    }
    if rows.0.max(rows.1) > limit || cols.0.max(cols.1) > limit {
        return shape_err(
            op,
            format!(
                "pooling input {:?} to {}x{} ({:?}) needs more than {limit} loop iterations \
                 per invocation along one axis, more than {} runs",
                x.shape(),
                geo.ho,
                geo.wo,
                geo.p,
                x.device().info().name
            ),
        );
    }
    Ok(true)
}

/// `p` along the width only, then along the height only (see `by_axes`).
fn along_axes(p: Pool2dParams) -> [Pool2dParams; 2] {
    [
        Pool2dParams {
            kernel: (1, p.kernel.1),
            stride: (1, p.stride.1),
            padding: (0, p.padding.1),
            dilation: (1, p.dilation.1),
            ..p
        },
        Pool2dParams {
            kernel: (p.kernel.0, 1),
            stride: (p.stride.0, 1),
            padding: (p.padding.0, 0),
            dilation: (p.dilation.0, 1),
            ..p
        },
    ]
}

pub(crate) struct Saved {
    geo: PoolGeometry,
    /// Max pooling: the argmax of each window; average pooling: `None`.
    argmax: Option<Tensor>,
    in_shape: Vec<usize>,
}

/// dL/dx from g = dL/dy: each window's g to its argmax (max), or spread evenly over the
/// window (average).
pub(crate) fn backward(s: &Saved, g: &Tensor) -> Result<Tensor> {
    pool2d_backward(g, s.argmax.as_ref(), &s.geo, &s.in_shape)
}

/// Runs the forward kernel of `geo` on x: max pooling (with the argmax where the backward
/// needs it or `indices` asks for it) or average pooling.
fn pool(
    x: &Tensor,
    geo: PoolGeometry,
    max: bool,
    indices: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let dev = x.device();
    let shape = vec![x.shape()[0], x.shape()[1], geo.ho, geo.wo];
    let out = dev.storage(geo.planes * geo.ho * geo.wo)?;
    let save = max && (indices || crate::tape::is_grad_enabled() && x.is_requires_grad());
    let argmax = save.then(|| Tensor::uninit(dev, &shape)).transpose()?;
    pool2d_forward(dev, x, out.buffer(), &geo, max, argmax.as_ref())?;
    let y = Tensor::from_op(out, shape, &[x], || {
        Op::Pool(Saved {
            geo,
            argmax: argmax.clone(),
            in_shape: x.shape().to_vec(),
        })
    });
    Ok((y, argmax))
}

impl Tensor {
    /// Max over each window of an NCHW input; padding counts as -inf, as in PyTorch, and a
    /// dilated window that reads no input pixel (all its taps in the padding) gives -inf.
    /// `params` carries PyTorch's `kernel_size`, `stride`, `padding`, `dilation` and
    /// `ceil_mode`. Of a `relu(conv2d(..))` output, a 2 x 2 pool with stride 2 runs with the
    /// convolution as one kernel where the adapter's kernels have that form (see `fusion.rs`).
    pub fn max_pool2d(&self, params: Pool2dParams) -> Result<Tensor> {
        let geo = geometry(self, params, "max_pool2d")?;
        if let Some(y) = crate::fusion::max_pool2d(self, geo.p)? {
            return Ok(y);
        }
        if by_axes(self, &geo, "max_pool2d")? {
            let [w, h] = along_axes(params);
            return self.max_pool2d(w)?.max_pool2d(h);
        }
        Ok(pool(self, geo, true, false)?.0)
    }

    /// `max_pool2d` and, as PyTorch's `return_indices=True`, each window's argmax: the index
    /// `h * W + w` of its maximum within its input plane (the first on ties, the first NaN if
    /// the window holds one, where PyTorch takes the last), stored as f32 since webgrad's
    /// tensors are f32 (exact below 2^24); -1 for a dilated window that reads no input pixel
    /// (PyTorch gives an index outside the window there). The indices carry no gradient.
    /// Windows needing more loop iterations than this device runs in one pass (which
    /// [`Tensor::max_pool2d`] pools one axis at a time) are an error here.
    pub fn max_pool2d_with_indices(&self, params: Pool2dParams) -> Result<(Tensor, Tensor)> {
        let op = "max_pool2d_with_indices";
        let geo = geometry(self, params, "max_pool2d")?;
        if geo.h * geo.w > 1 << 24 {
            return shape_err(
                op,
                format!(
                    "input {:?}: planes past 2^24 pixels have inexact f32 indices",
                    self.shape()
                ),
            );
        }
        if by_axes(self, &geo, op)? {
            return shape_err(
                op,
                format!(
                    "the {:?} window on input {:?} is too large for one pass on {}",
                    params.kernel,
                    self.shape(),
                    self.device().info().name
                ),
            );
        }
        let (y, indices) = pool(self, geo, true, true)?;
        let indices = indices.expect("max pooling with indices saves its argmax");
        Ok((y, indices.detach()))
    }

    /// Average over each window of an NCHW input (PyTorch's `avg_pool2d`: `kernel_size`,
    /// `stride`, `padding`, `ceil_mode`, `count_include_pad`; no dilation).
    pub fn avg_pool2d(&self, params: Pool2dParams) -> Result<Tensor> {
        let geo = geometry(self, params, "avg_pool2d")?;
        if by_axes(self, &geo, "avg_pool2d")? {
            let [w, h] = along_axes(params);
            return self.avg_pool2d(w)?.avg_pool2d(h);
        }
        Ok(pool(self, geo, false, false)?.0)
    }

    /// PyTorch's `adaptive_avg_pool2d`: an NCHW input averaged to `output_size` (height,
    /// width) over PyTorch's bins, rows floor(i H / HO) .. ceil((i + 1) H / HO) of output row
    /// i (columns alike), which may overlap or repeat rows where the output is larger than
    /// the input. `(1, 1)` is global average pooling.
    pub fn adaptive_avg_pool2d(&self, output_size: (usize, usize)) -> Result<Tensor> {
        let op = "adaptive_avg_pool2d";
        let s = self.shape();
        if s.len() != 4 {
            return shape_err(op, format!("expects an NCHW input, got {s:?}"));
        }
        let (ho, wo) = output_size;
        if ho == 0 || wo == 0 || s[2] == 0 || s[3] == 0 {
            return shape_err(
                op,
                format!(
                    "input {s:?} to output size {output_size:?}: every size must be at least 1"
                ),
            );
        }
        // The kernel's bin arithmetic (products such as (i + 1) H) stays exact below 2^24.
        let fits = |n: usize, m: usize| (n + 1).checked_mul(m + 1).is_some_and(|v| v < 1 << 24);
        if !fits(s[2], ho) || !fits(s[3], wo) {
            return shape_err(
                op,
                format!(
                    "input {s:?} to output size {output_size:?}: (input size + 1) times \
                     (output size + 1) must stay below 2^24 per axis"
                ),
            );
        }
        if output_size == (1, 1) {
            // Global average pooling (what a ResNet ends with): the reduction kernels' row
            // mean over each plane, whose backward is one broadcast, about twice as fast on
            // llvmpipe as the general kernels' gather.
            let (n, c) = (s[0], s[1]);
            return self
                .reshape(&[n, c, s[2] * s[3]])?
                .mean_dim(2, true)?
                .reshape(&[n, c, 1, 1]);
        }
        let geo = PoolGeometry {
            planes: s[0] * s[1],
            h: s[2],
            w: s[3],
            ho,
            wo,
            p: Pool2dParams::new(1),
            adaptive: true,
        };
        if by_axes(self, &geo, op)? {
            return self
                .adaptive_avg_pool2d((s[2], wo))?
                .adaptive_avg_pool2d(output_size);
        }
        Ok(pool(self, geo, false, false)?.0)
    }
}
