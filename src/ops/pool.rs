//! `max_pool2d` and `avg_pool2d` with their backward: the autograd rule. The kernels run
//! behind the backend's pooling functions (`backend/portable/pool.rs`).

use crate::backend::pool::{pool2d_backward, pool2d_forward, PoolGeometry};
use crate::error::{shape_err, Result};
use crate::ops::conv::conv2d_output_size;
use crate::tape::Op;
use crate::tensor::Tensor;

/// Window, stride and padding (each per axis: height, width) of a 2-D pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dParams {
    /// Window height and width.
    pub kernel: (usize, usize),
    /// Step between windows, per axis.
    pub stride: (usize, usize),
    /// Implicit padding on each side, per axis (-inf for max, zeros for average pooling).
    pub padding: (usize, usize),
    /// avg_pool2d only: whether padded zeros count in the average (PyTorch's default: true).
    pub count_include_pad: bool,
}

impl Pool2dParams {
    /// A `k` x `k` window with stride `k` (PyTorch's default stride) and no padding.
    pub fn new(k: usize) -> Self {
        Pool2dParams {
            kernel: (k, k),
            stride: (k, k),
            padding: (0, 0),
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
    /// avg_pool2d: whether padded zeros count in the average.
    pub fn count_include_pad(mut self, yes: bool) -> Self {
        self.count_include_pad = yes;
        self
    }
}

fn geometry(x: &Tensor, p: Pool2dParams, op: &'static str) -> Result<PoolGeometry> {
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
    let size = |i, k, st, pd| {
        conv2d_output_size(i, k, st, pd, 1).map_err(|e| crate::Error::Shape {
            op,
            msg: format!("input {s:?}: {e}"),
        })
    };
    Ok(PoolGeometry {
        planes: s[0] * s[1],
        h: s[2],
        w: s[3],
        ho: size(s[2], p.kernel.0, p.stride.0, p.padding.0)?,
        wo: size(s[3], p.kernel.1, p.stride.1, p.padding.1)?,
        p,
    })
}

/// The most iterations one invocation's loops run: the forward visits a window's taps, the
/// backward the windows that contain an input pixel.
fn loops(p: &Pool2dParams) -> usize {
    let windows = |k: usize, s: usize| k.div_ceil(s.max(1));
    (p.kernel.0 * p.kernel.1).max(windows(p.kernel.0, p.stride.0) * windows(p.kernel.1, p.stride.1))
}

/// Windows whose loops would pass the device's loop limit (a 256 x 256 global pool on
/// llvmpipe, whose driver silently cuts longer loops) pool one axis at a time: max and average
/// are both separable over a rectangular window, padding included (the average's count of
/// non-padded cells is the product of the two axes' counts), and the first maximum in
/// row-major order is found either way. `None`: the window fits, pool it in one pass.
fn by_axes(
    x: &Tensor,
    p: Pool2dParams,
    op: &'static str,
    pool: impl Fn(&Tensor, Pool2dParams) -> Result<Tensor>,
) -> Result<Option<Tensor>> {
    let limit = x.device().policy().loop_limit();
    if loops(&p) <= limit {
        return Ok(None);
    }
    let along_w = Pool2dParams {
        kernel: (1, p.kernel.1),
        stride: (1, p.stride.1),
        padding: (0, p.padding.1),
        ..p
    };
    let along_h = Pool2dParams {
        kernel: (p.kernel.0, 1),
        stride: (p.stride.0, 1),
        padding: (p.padding.0, 0),
        ..p
    };
    if loops(&along_w) > limit || loops(&along_h) > limit {
        return shape_err(
            op,
            format!(
                "a {:?} window with stride {:?} on input {:?} needs more than {limit} loop \
                 iterations per invocation along one axis, more than {} runs",
                p.kernel,
                p.stride,
                x.shape(),
                x.device().info().name
            ),
        );
    }
    Ok(Some(pool(&pool(x, along_w)?, along_h)?))
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

impl Tensor {
    /// Max over each window of an NCHW input; padding counts as -inf, as in PyTorch.
    /// Of a `relu(conv2d(..))` output, a 2 x 2 pool with stride 2 runs with the convolution
    /// as one kernel where the adapter's kernels have that form (see `fusion.rs`).
    pub fn max_pool2d(&self, params: Pool2dParams) -> Result<Tensor> {
        let geo = geometry(self, params, "max_pool2d")?;
        if let Some(y) = crate::fusion::max_pool2d(self, params)? {
            return Ok(y);
        }
        if let Some(y) = by_axes(self, params, "max_pool2d", Tensor::max_pool2d)? {
            return Ok(y);
        }
        let dev = self.device();
        let shape = vec![self.shape()[0], self.shape()[1], geo.ho, geo.wo];
        let out = dev.storage(geo.planes * geo.ho * geo.wo)?;
        // The argmax is kept for the backward only.
        let save = crate::tape::is_grad_enabled() && self.is_requires_grad();
        let argmax = save.then(|| Tensor::uninit(dev, &shape)).transpose()?;
        pool2d_forward(dev, self, out.buffer(), &geo, true, argmax.as_ref())?;
        Ok(Tensor::from_op(out, shape, &[self], || {
            Op::Pool(Saved {
                geo,
                argmax,
                in_shape: self.shape().to_vec(),
            })
        }))
    }

    /// Average over each window of an NCHW input.
    pub fn avg_pool2d(&self, params: Pool2dParams) -> Result<Tensor> {
        let geo = geometry(self, params, "avg_pool2d")?;
        if let Some(y) = by_axes(self, params, "avg_pool2d", Tensor::avg_pool2d)? {
            return Ok(y);
        }
        let dev = self.device();
        let shape = vec![self.shape()[0], self.shape()[1], geo.ho, geo.wo];
        let out = dev.storage(geo.planes * geo.ho * geo.wo)?;
        pool2d_forward(dev, self, out.buffer(), &geo, false, None)?;
        Ok(Tensor::from_op(out, shape, &[self], || {
            Op::Pool(Saved {
                geo,
                argmax: None,
                in_shape: self.shape().to_vec(),
            })
        }))
    }
}
