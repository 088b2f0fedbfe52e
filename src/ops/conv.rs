//! `conv2d` and its backward: the autograd rule. The kernels run behind the backend's
//! convolution functions (`backend/conv.rs`), which pick the variant (im2col or implicit GEMM)
//! and keep what it needs for the backward.

use std::sync::Arc;

use crate::backend::conv::{self as backend, ConvSaved, Geometry, Needs};
use crate::error::{shape_err, Error, Result};
use crate::fusion::{self, Producer};
use crate::ops::pool::Pool2dParams;
use crate::tape::Op;
use crate::tensor::{Storage, Tensor};

/// Stride, zero padding, dilation (each per axis: height, width) and groups of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Step between output pixels, per axis.
    pub stride: (usize, usize),
    /// Zeros added on each side, per axis.
    pub padding: (usize, usize),
    /// Spacing between kernel taps, per axis (1: dense).
    pub dilation: (usize, usize),
    /// Channel groups convolved independently (1: every output channel sees every input
    /// channel).
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

impl Conv2dParams {
    /// Stride `s` along both axes.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = (s, s);
        self
    }
    /// Zero padding `p` on every side.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = (p, p);
        self
    }
    /// Dilation `d` along both axes.
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = (d, d);
        self
    }
    /// `g` channel groups.
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
}

/// Output length of a convolution or pooling along one axis:
/// floor((input + 2 padding - dilation (kernel - 1) - 1) / stride) + 1.
pub fn conv2d_output_size(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Result<usize> {
    if stride == 0 || dilation == 0 || kernel == 0 {
        return Err(Error::Invalid(format!(
            "kernel {kernel}, stride {stride} and dilation {dilation} must all be at least 1"
        )));
    }
    let span = dilation
        .checked_mul(kernel - 1)
        .and_then(|s| s.checked_add(1));
    let padded = padding.checked_mul(2).and_then(|p| p.checked_add(input));
    let (Some(span), Some(padded)) = (span, padded) else {
        return Err(Error::Invalid(format!(
            "input size {input}, kernel {kernel}, padding {padding} and dilation {dilation}: \
             the padded input or the kernel's span overflows"
        )));
    };
    if padded < span {
        return Err(Error::Invalid(format!(
            "input size {input} with padding {padding} is smaller than the kernel's span \
             {span} (kernel {kernel}, dilation {dilation}): the output would be empty"
        )));
    }
    Ok((padded - span) / stride + 1)
}

/// Receptive field of a stack of layers given as (kernel, stride): 1 + sum over layers of
/// (kernel - 1) x the product of the strides before it.
pub fn receptive_field(layers: &[(usize, usize)]) -> usize {
    let mut field = 1;
    let mut jump = 1;
    for &(k, s) in layers {
        field += (k.saturating_sub(1)) * jump;
        jump *= s;
    }
    field
}

fn geometry(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: Conv2dParams) -> Result<Geometry> {
    let (xs, ws) = (x.shape(), w.shape());
    if xs.len() != 4 || ws.len() != 4 {
        return shape_err(
            "conv2d",
            format!("expects input [N, C, H, W] and weight [C_out, C_in/groups, KH, KW], got {xs:?} and {ws:?}"),
        );
    }
    let g = p.groups;
    if g == 0 || xs[1] % g != 0 || ws[0] % g != 0 {
        return shape_err(
            "conv2d",
            format!(
                "groups = {g} must divide both the input channels ({}) and the output channels ({})",
                xs[1], ws[0]
            ),
        );
    }
    if ws[1] * g != xs[1] {
        return shape_err(
            "conv2d",
            format!(
                "weight {ws:?} expects {} input channels ({} x groups {g}), input {xs:?} has {}",
                ws[1] * g,
                ws[1],
                xs[1]
            ),
        );
    }
    if let Some(b) = bias {
        if b.shape() != [ws[0]] {
            return shape_err(
                "conv2d",
                format!(
                    "bias {:?} should be [{}] (one per output channel)",
                    b.shape(),
                    ws[0]
                ),
            );
        }
    }
    let size = |i, k, s, pd, d| {
        conv2d_output_size(i, k, s, pd, d).map_err(|e| Error::Shape {
            op: "conv2d",
            msg: format!("input {xs:?}, weight {ws:?}: {e}"),
        })
    };
    let ho = size(xs[2], ws[2], p.stride.0, p.padding.0, p.dilation.0)?;
    let wo = size(xs[3], ws[3], p.stride.1, p.padding.1, p.dilation.1)?;
    // Large paddings give outputs far larger than the input: their size must not wrap.
    crate::shape::check_shape(&[xs[0], ws[0], ho, wo], "conv2d")?;
    let geo = Geometry {
        n: xs[0],
        c: xs[1],
        h: xs[2],
        w: xs[3],
        c_out: ws[0],
        kh: ws[2],
        kw: ws[3],
        ho,
        wo,
        p,
    };
    backend::check(x.device(), &geo)?;
    Ok(geo)
}

pub(crate) struct Saved {
    /// What the backend's variant keeps for the backward (x, or its re-laid-out copy).
    saved: ConvSaved,
    w: Tensor,
    has_bias: bool,
    /// The output, when a ReLU was applied in the epilogue: its gradient's mask (with the 2 x 2
    /// max pooling fused in too, the pooled output).
    relu_out: Option<Tensor>,
    geo: Geometry,
}

/// `conv2d` and `conv2d_relu`: checked now, computed when first needed (`fusion.rs`), so that a
/// ReLU and a 2 x 2 max-pool after it fold into its kernel.
fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: Conv2dParams,
    relu: bool,
) -> Result<Tensor> {
    let dev = x.device();
    dev.same(w.device(), "conv2d")?;
    if let Some(b) = bias {
        dev.same(b.device(), "conv2d")?;
    }
    let geo = geometry(x, w, bias, p)?;
    let out_shape = vec![geo.n, geo.c_out, geo.ho, geo.wo];
    let producer = Producer::Conv {
        x: x.clone(),
        w: w.clone(),
        b: bias.cloned(),
        p,
        relu,
    };
    fusion::defer(out_shape, producer)
}

/// Records the convolution (and ReLU) into `storage`; the op its backward needs.
pub(crate) fn conv2d_into(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: Conv2dParams,
    relu: bool,
    storage: &Arc<Storage>,
    out_shape: &[usize],
) -> Result<Op> {
    let geo = geometry(x, w, bias, p)?;
    let input_grad = crate::tape::is_grad_enabled() && x.is_requires_grad();
    let saved = backend::conv2d_forward(x, w, bias, relu, &geo, storage, input_grad)?;
    Ok(Op::Conv2d(Saved {
        saved,
        w: w.detach(),
        has_bias: bias.is_some(),
        relu_out: relu.then(|| Tensor::leaf(storage.clone(), out_shape.to_vec())),
        geo,
    }))
}

/// conv2d_relu_max_pool2d with 2 x 2 pooling as one kernel, where the backend has one for this
/// convolution; `None` otherwise (`fusion.rs` asks).
pub(crate) fn conv_relu_pool(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: Conv2dParams,
) -> Result<Option<Tensor>> {
    let dev = x.device();
    dev.same(w.device(), "conv2d")?;
    if let Some(b) = bias {
        dev.same(b.device(), "conv2d")?;
    }
    let geo = geometry(x, w, bias, p)?;
    if !backend::relu_pool_fuses(x, w, bias, &geo) {
        return Ok(None);
    }
    let shape = vec![geo.n, geo.c_out, geo.ho / 2, geo.wo / 2];
    let storage = dev.storage(shape.iter().product())?;
    let records = crate::tape::is_grad_enabled()
        && (x.is_requires_grad()
            || w.is_requires_grad()
            || bias.is_some_and(|b| b.is_requires_grad()));
    let input_grad = records && x.is_requires_grad();
    let saved = backend::conv2d_relu_pool_forward(x, w, bias, &geo, &storage, records, input_grad)?;
    let y = Tensor::leaf(storage.clone(), shape.clone());
    let mut inputs = vec![x, w];
    inputs.extend(bias);
    Ok(Some(Tensor::from_op(storage, shape, &inputs, || {
        Op::Conv2d(Saved {
            saved,
            w: w.detach(),
            has_bias: bias.is_some(),
            relu_out: Some(y),
            geo,
        })
    })))
}

/// The gradients of y = conv(x, w) + b (then ReLU, then 2 x 2 max pooling, where fused) from
/// g = dL/dy.
pub(crate) fn backward(s: &Saved, g: &Tensor, need: &[bool]) -> Result<Vec<Option<Tensor>>> {
    let dev = g.device();
    let geo = &s.geo;
    let need = Needs {
        x: need[0],
        w: need[1],
        b: s.has_bias && need.get(2).copied().unwrap_or(false),
    };
    let mut out = if geo.n == 0 {
        // An empty batch: no images to sum over, so zero weight and bias gradients.
        let zeros =
            |need: bool, shape: &[usize]| need.then(|| Tensor::zeros(dev, shape)).transpose();
        vec![
            zeros(need.x, &[0, geo.c, geo.h, geo.w])?,
            zeros(need.w, s.w.shape())?,
            zeros(need.b, &[geo.c_out])?,
        ]
    } else {
        // gy = dL/d(conv(x, w) + b): g through the fused ReLU (where the output is positive)
        // and pooling (at each window's winner).
        let gy = backend::conv2d_output_grad(&s.saved, g, s.relu_out.as_ref(), geo, need)?;
        // dL/dx: the transposed convolution of gy with w.
        let gx = need
            .x
            .then(|| backend::conv2d_input_grad(&s.saved, &gy, &s.w, geo))
            .transpose()?;
        // dL/dw: gy correlated with x, summed over images; dL/db: gy summed over images and
        // pixels (with dL/dw, where the variant sums both in one pass).
        let (gw, gb) = match need.w {
            true => {
                let (gw, gb) = backend::conv2d_weight_grad(&s.saved, &gy, &s.w, geo, need.b)?;
                (Some(gw), gb)
            }
            false => (None, None),
        };
        let gb = match gb {
            None if need.b => Some(backend::conv2d_bias_grad(&gy, geo)?),
            gb => gb,
        };
        vec![gx, gw, gb]
    };
    out.truncate(if s.has_bias { 3 } else { 2 });
    Ok(out)
}

impl Tensor {
    /// 2-D convolution (cross-correlation, as PyTorch) of an NCHW input with a weight
    /// `[C_out, C_in/groups, KH, KW]` and an optional bias `[C_out]`.
    ///
    /// ```
    /// # use webgrad::{Conv2dParams, Device, Tensor};
    /// let dev = Device::new()?;
    /// // A 4 x 4 image and a 3 x 3 kernel that sums each window.
    /// let x = Tensor::from_vec(&dev, (0..16).map(|v| v as f32).collect(), &[1, 1, 4, 4])?;
    /// let w = Tensor::ones(&dev, &[1, 1, 3, 3])?;
    /// let y = x.conv2d(&w, None, Conv2dParams::default())?;
    /// assert_eq!(y.shape(), &[1, 1, 2, 2]); // (4 - 3) / 1 + 1
    /// assert_eq!(y.to_vec()?, vec![45.0, 54.0, 81.0, 90.0]);
    /// // Padding 1 and stride 2: (4 + 2 - 3) / 2 + 1 = 2 again, windows centred on 0, 2.
    /// let y = x.conv2d(&w, None, Conv2dParams::default().padding(1).stride(2))?;
    /// assert_eq!(y.to_vec()?, vec![10.0, 24.0, 51.0, 90.0]);
    /// # Ok::<(), webgrad::Error>(())
    /// ```
    ///
    /// ```
    /// # use webgrad::{Device, Tensor, Conv2dParams};
    /// let dev = Device::new()?;
    /// let x = Tensor::ones(&dev, &[1, 1, 4, 4])?;
    /// let w = Tensor::ones(&dev, &[1, 1, 3, 3])?;
    /// let y = x.conv2d(&w, None, Conv2dParams::default().padding(1))?;
    /// assert_eq!(y.shape(), &[1, 1, 4, 4]);
    /// assert_eq!(y.to_vec()?[0], 4.0); // a corner sees 2 x 2 ones
    /// # Ok::<(), webgrad::Error>(())
    /// ```
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        params: Conv2dParams,
    ) -> Result<Tensor> {
        conv2d(self, weight, bias, params, false)
    }

    /// `max_pool2d(relu(conv2d(self, weight, bias, params)), pool)`. On CPU adapters, when the
    /// pooling is 2 x 2 with stride 2 over an even-sized output, one kernel computes it without
    /// storing the convolution's output, and the backward starts from the pooled gradient;
    /// otherwise it is the three ops in turn. (What `Sequential` runs for Conv2d, ReLU,
    /// MaxPool2d.)
    pub fn conv2d_relu_max_pool2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        params: Conv2dParams,
        pool: Pool2dParams,
    ) -> Result<Tensor> {
        self.conv2d_relu(weight, bias, params)?.max_pool2d(pool)
    }

    /// `relu(conv2d(self, weight, bias, params))` with the ReLU applied as the convolution is
    /// stored, and its gradient folded into the backward's first pass over g (what
    /// `Sequential` runs for Conv2d followed by ReLU).
    pub fn conv2d_relu(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        params: Conv2dParams,
    ) -> Result<Tensor> {
        conv2d(self, weight, bias, params, true)
    }
}

impl Saved {
    /// The epilogues fused into the convolution, as a drawing of the graph names them.
    pub(crate) fn epilogue(&self) -> &'static str {
        match &self.relu_out {
            None => "",
            // The fused pooling's output is half the convolution's height.
            Some(y) if y.shape()[2] != self.geo.ho => "+relu+max_pool2d",
            Some(_) => "+relu",
        }
    }
}
