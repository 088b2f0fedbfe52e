//! `conv2d` by im2col + matmul, with its backward (col2im, weight and bias gradients):
//! `shaders/conv.wgsl`, and the products through `backend::gemm`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::backend::cpu::conv_implicit;
use crate::backend::cpu::texels::Texels;
use crate::backend::{gemm, Gemm, Operand};
use crate::device::Device;
use crate::error::{shape_err, Error, Result};
use crate::fusion::{self, Producer};
use crate::kernel::{kernel_params, shader, Bind, Shader};
use crate::ops::pool::Pool2dParams;
use crate::ops::unary::groups;
use crate::tape::Op;
use crate::tensor::{Storage, Tensor};

static SHADER: Shader = shader!("conv");

/// Most bytes one im2col column chunk may take; larger batches are processed in chunks.
const COLUMN_BUDGET: u64 = 64 << 20;

/// Stride, zero padding, dilation (each per axis: height, width) and groups of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
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
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = (s, s);
        self
    }
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = (p, p);
        self
    }
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = (d, d);
        self
    }
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

kernel_params! {
    /// `Params` of `shaders/conv.wgsl`.
    pub(crate) struct ConvParams for "conv" {
        n0: u32,
        nb: u32,
        c: u32,
        h: u32,
        w: u32,
        kh: u32,
        kw: u32,
        ho: u32,
        wo: u32,
        sh: u32,
        sw: u32,
        ph: u32,
        pw: u32,
        dh: u32,
        dw: u32,
        /// epilogue / bias_grad: output channels and the number of images.
        c_out: u32,
        n: u32,
        /// epilogue: add the bias; apply ReLU.
        has_bias: u32,
        relu: u32,
    }
}

/// The sizes of one convolution, shared by forward and backward.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub ho: usize,
    pub wo: usize,
    pub p: Conv2dParams,
    /// Images per im2col chunk.
    pub chunk: usize,
}

impl Geometry {
    fn rows(&self) -> usize {
        self.c * self.kh * self.kw
    }
    fn pixels(&self) -> usize {
        self.ho * self.wo
    }
    fn params(&self, n0: usize, nb: usize) -> ConvParams {
        let p = &self.p;
        ConvParams {
            n0: n0 as u32,
            nb: nb as u32,
            c: self.c as u32,
            h: self.h as u32,
            w: self.w as u32,
            kh: self.kh as u32,
            kw: self.kw as u32,
            ho: self.ho as u32,
            wo: self.wo as u32,
            sh: p.stride.0 as u32,
            sw: p.stride.1 as u32,
            ph: p.padding.0 as u32,
            pw: p.padding.1 as u32,
            dh: p.dilation.0 as u32,
            dw: p.dilation.1 as u32,
            c_out: self.c_out as u32,
            n: self.n as u32,
            has_bias: 0,
            relu: 0,
        }
    }
    /// The (first image, count) of each im2col chunk.
    fn chunks(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.n)
            .step_by(self.chunk)
            .map(move |n0| (n0, self.chunk.min(self.n - n0)))
    }
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
    let mut geo = Geometry {
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
        chunk: 1,
    };
    let per_image = (geo.rows() as u64)
        .saturating_mul(geo.pixels() as u64)
        .saturating_mul(4);
    let max = x.device().limits().max_tensor_bytes();
    if per_image > max {
        return Err(Error::TooLarge(format!(
            "conv2d: one image's column matrix ({per_image} bytes for input {xs:?}, weight {ws:?}) \
             exceeds the adapter's largest storage binding ({max} bytes)"
        )));
    }
    geo.chunk = ((COLUMN_BUDGET.min(max) / per_image.max(1)) as usize).clamp(1, geo.n.max(1));
    Ok(geo)
}

fn im2col(
    dev: &Device,
    x: &Tensor,
    cols: &Tensor,
    geo: &Geometry,
    n0: usize,
    nb: usize,
) -> Result<()> {
    dev.dispatch(
        &SHADER,
        "im2col",
        &[Bind::Read(x.buffer()), Bind::Write(cols.buffer())],
        &geo.params(n0, nb),
        groups(nb * geo.rows() * geo.pixels()),
    )
}

/// What the backward needs of the input: x itself (im2col path), or its images-innermost copy
/// (implicit path), so that only one of the two is kept alive.
enum SavedInput {
    Nchw(Tensor),
    ImagesInner(Arc<Texels>),
}

pub(crate) struct Saved {
    x: SavedInput,
    w: Tensor,
    has_bias: bool,
    /// The output, when a ReLU was applied in the epilogue (its gradient mask).
    relu_y: Option<Tensor>,
    /// With ReLU and 2 x 2 max pooling fused in (conv_relu_pool): the op's output is pooled.
    pool: Option<Box<Pooled>>,
    /// The weights laid out for the input gradient, when the forward wrote them (implicit path).
    wb: Option<Box<Texels>>,
    /// x's producer reads its gradient images-innermost (`Storage::grad_images_inner`): the
    /// input gradient is then written that way too.
    input_inner: bool,
    geo: Geometry,
}

/// What the backward of conv_relu_pool keeps: the pooled output and each window's winner
/// (images innermost, 4 images' codes packed per u32: see `conv_implicit::ReluPool`).
struct Pooled {
    y: Tensor,
    winners: Arc<Storage>,
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
    let dev = x.device();
    let geo = geometry(x, w, bias, p)?;
    let input_grad = crate::tape::is_grad_enabled() && x.is_requires_grad();
    let input_inner = x.0.storage.grad_images_inner.load(Ordering::Relaxed);
    // An empty batch has an empty output and nothing to compute.
    let (xt, wb) = if geo.n == 0 {
        (None, None)
    } else if conv_implicit::applies(dev, &geo) {
        let (xt, wb) =
            conv_implicit::forward(x, w, bias, relu, &geo, storage.buffer(), input_grad)?;
        (Some(xt), wb)
    } else {
        explicit_forward(dev, x, w, bias, relu, &geo, storage.buffer())?;
        (None, None)
    };
    let relu_y = relu.then(|| Tensor::leaf(storage.clone(), out_shape.to_vec()));
    Ok(Op::Conv2d(Saved {
        x: match xt {
            Some(xt) => SavedInput::ImagesInner(xt),
            None => SavedInput::Nchw(x.detach()),
        },
        w: w.detach(),
        has_bias: bias.is_some(),
        relu_y,
        pool: None,
        wb: wb.map(Box::new),
        input_inner,
        geo,
    }))
}

/// conv2d_relu_max_pool2d with 2 x 2 pooling as one kernel, when the implicit path applies and
/// the convolution's output is even-sized; `None` otherwise (`fusion.rs` asks).
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
    if geo.n == 0 || !conv_implicit::applies(dev, &geo) || geo.ho % 2 == 1 || geo.wo % 2 == 1 {
        return Ok(None);
    }
    let shape = vec![geo.n, geo.c_out, geo.ho / 2, geo.wo / 2];
    let storage = dev.storage(shape.iter().product())?;
    let records = crate::tape::is_grad_enabled()
        && (x.is_requires_grad()
            || w.is_requires_grad()
            || bias.is_some_and(|b| b.is_requires_grad()));
    let out = storage.buffer();
    // With a gradient to record, also the winning pixel of each window.
    let input_grad = records && x.is_requires_grad();
    let input_inner = x.0.storage.grad_images_inner.load(Ordering::Relaxed);
    let fused = conv_implicit::forward_relu_pool(x, w, bias, &geo, out, records, input_grad)?;
    storage.set_images_inner(geo.n, Arc::new(fused.out_inner));
    // Without x's gradient the backward reads the pooled gradient images-innermost.
    storage
        .grad_images_inner
        .store(records && !input_grad, Ordering::Relaxed);
    let y = Tensor::leaf(storage.clone(), shape.clone());
    let mut inputs = vec![x, w];
    inputs.extend(bias);
    Ok(Some(Tensor::from_op(storage, shape, &inputs, || {
        Op::Conv2d(Saved {
            x: SavedInput::ImagesInner(fused.xt),
            w: w.detach(),
            has_bias: bias.is_some(),
            relu_y: None,
            pool: fused.winners.map(|winners| Box::new(Pooled { y, winners })),
            wb: fused.wb.map(Box::new),
            input_inner,
            geo,
        })
    })))
}

/// im2col in batch chunks, a product per image and group, then the bias and ReLU.
fn explicit_forward(
    dev: &Device,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    relu: bool,
    geo: &Geometry,
    out: &wgpu::Buffer,
) -> Result<()> {
    let p = geo.p;
    let (g, rows, pixels) = (p.groups, geo.rows(), geo.pixels());
    let (cout_g, rows_g) = (geo.c_out / g, rows / g);
    let cols = Tensor::uninit(dev, &[geo.chunk, rows, pixels])?;
    for (n0, nb) in geo.chunks() {
        im2col(dev, x, &cols, geo, n0, nb)?;
        for gi in 0..g {
            // out[n0 + ni, group gi] = W_gi [cout_g, rows_g] x cols[ni, group gi] [rows_g, pixels]
            let mut mm = Gemm::new(
                Operand::rows(w.buffer(), cout_g, rows_g, false).at(gi * cout_g * rows_g),
                Operand::rows(cols.buffer(), rows_g, pixels, true)
                    .at(gi * rows_g * pixels)
                    .batch_stride(rows * pixels),
                out,
                nb,
                cout_g,
                pixels,
                rows_g,
            );
            mm.c_offset = (n0 * geo.c_out + gi * cout_g) * pixels;
            mm.c_batch_stride = geo.c_out * pixels;
            gemm(dev, &mm)?;
        }
    }
    if bias.is_some() || relu {
        let params = ConvParams {
            has_bias: bias.is_some() as u32,
            relu: relu as u32,
            ..geo.params(0, geo.n)
        };
        dev.dispatch(
            &SHADER,
            "epilogue",
            // Without a bias the slot holds the weights (unread).
            &[Bind::Read(bias.unwrap_or(w).buffer()), Bind::Write(out)],
            &params,
            groups(geo.n * geo.c_out * pixels),
        )?;
    }
    Ok(())
}

pub(crate) fn backward(s: &Saved, g: &Tensor, need: &[bool]) -> Result<Vec<Option<Tensor>>> {
    let dev = g.device();
    let geo = &s.geo;
    let (need_x, need_w) = (need[0], need[1]);
    let need_b = s.has_bias && need.get(2).copied().unwrap_or(false);
    if geo.n == 0 {
        // An empty batch: no images to sum over, so zero weight and bias gradients.
        let zeros =
            |need: bool, shape: &[usize]| need.then(|| Tensor::zeros(dev, shape)).transpose();
        let mut out = vec![
            zeros(need_x, &[0, geo.c, geo.h, geo.w])?,
            zeros(need_w, s.w.shape())?,
        ];
        if s.has_bias {
            out.push(zeros(need_b, &[geo.c_out])?);
        }
        return Ok(out);
    }
    if let (Some(pool), SavedInput::ImagesInner(xt)) = (&s.pool, &s.x) {
        // g is the pooled gradient. The input gradient reads g at every pixel of the
        // convolution, routed to the winners (pool_grad); without it, the weight gradient reads
        // the pooled g and the winners' codes itself, and no full-size gradient is written.
        let full = match need_x {
            true => Some(conv_implicit::pool_grad_images_inner(
                dev,
                g,
                &pool.winners,
                geo,
            )?),
            false => None,
        };
        let gx = match &full {
            Some(gt) => Some(conv_implicit::backward_input(
                dev,
                gt,
                &s.w,
                s.wb.as_deref(),
                geo,
                s.input_inner,
            )?),
            None => None,
        };
        let (gw, gb) = if need_w {
            let pooled;
            let (gt, winners) = match &full {
                Some(gt) => (gt, None),
                None => {
                    pooled = conv_implicit::images_inner(dev, g, geo, None)?;
                    (&*pooled, Some(&*pool.winners))
                }
            };
            let (gw, gb) =
                conv_implicit::backward_weight(dev, xt, gt, winners, geo, s.w.shape(), need_b)?;
            (Some(gw), gb)
        } else if need_b {
            // Each window's gradient reaches the convolution's output once (at its winner)
            // where the pooled value is positive: the bias gradient sums g masked by y > 0.
            let masked = crate::ops::unary::relu_backward(&pool.y, g)?;
            let pooled = masked.numel() / (geo.n * geo.c_out).max(1);
            let per_channel = masked
                .reshape(&[geo.n, geo.c_out, pooled])?
                .sum_dim(2, false)?;
            (None, Some(per_channel.sum_dim(0, false)?))
        } else {
            (None, None)
        };
        let mut out = vec![gx, gw];
        if s.has_bias {
            out.push(gb);
        }
        return Ok(out);
    }
    let xt = match &s.x {
        SavedInput::ImagesInner(xt) => Some(xt),
        SavedInput::Nchw(_) => None,
    };
    let implicit = xt.is_some() && (need_x || need_w);
    // Through a fused ReLU the gradient is g where the output is positive. The implicit path
    // applies that mask as it re-lays g out, when nothing else reads g (the bias gradient
    // comes with the weight gradient); otherwise the masked g is computed here.
    let mask_in_layout = implicit && (need_w || !need_b);
    let masked;
    let g = match &s.relu_y {
        Some(y) if !mask_in_layout => {
            masked = crate::ops::unary::relu_backward(y, g)?;
            &masked
        }
        _ => g,
    };
    let layout_mask = s.relu_y.as_ref().filter(|_| mask_in_layout);
    // The implicit path computes the bias gradient with the weight gradient.
    let mut gb = None;
    let (gx, gw) = if let Some(xt) = xt.filter(|_| implicit) {
        let gt = conv_implicit::images_inner(dev, g, geo, layout_mask)?;
        let gx = match need_x {
            true => Some(conv_implicit::backward_input(
                dev,
                &gt,
                &s.w,
                s.wb.as_deref(),
                geo,
                s.input_inner,
            )?),
            false => None,
        };
        let gw = match need_w {
            true => {
                let (gw, b) =
                    conv_implicit::backward_weight(dev, xt, &gt, None, geo, s.w.shape(), need_b)?;
                gb = b;
                Some(gw)
            }
            false => None,
        };
        (gx, gw)
    } else if need_x || need_w {
        explicit_backward(s, g, need_x, need_w)?
    } else {
        (None, None)
    };
    let mut out = vec![gx, gw];
    if s.has_bias {
        out.push(match gb {
            Some(gb) => Some(gb),
            None => bias_backward(s, g, need_b)?,
        });
    }
    Ok(out)
}

/// The input and weight gradients through products with the column matrix and col2im.
fn explicit_backward(
    s: &Saved,
    g: &Tensor,
    need_x: bool,
    need_w: bool,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let dev = g.device();
    let geo = &s.geo;
    let (gs, rows, pixels) = (geo.p.groups, geo.rows(), geo.pixels());
    let (cout_g, rows_g) = (geo.c_out / gs, rows / gs);
    let gx = if need_x {
        Some(Tensor::uninit(dev, &[geo.n, geo.c, geo.h, geo.w])?)
    } else {
        None
    };
    let gw = if need_w {
        Some(Tensor::uninit(dev, s.w.shape())?)
    } else {
        None
    };
    let cols = Tensor::uninit(dev, &[geo.chunk, rows, pixels])?;
    for (ci, (n0, nb)) in geo.chunks().enumerate() {
        if let Some(gw) = &gw {
            let SavedInput::Nchw(x) = &s.x else {
                unreachable!("the im2col path saves x in NCHW");
            };
            im2col(dev, x, &cols, geo, n0, nb)?;
            for gi in 0..gs {
                // gW_gi += sum over images of g[n, gi] [cout_g, pixels] x cols[n, gi]^T
                let mut mm = Gemm::new(
                    Operand::rows(g.buffer(), cout_g, pixels, true)
                        .at((n0 * geo.c_out + gi * cout_g) * pixels)
                        .batch_stride(geo.c_out * pixels),
                    Operand::transposed(cols.buffer(), rows_g, pixels, true)
                        .at(gi * rows_g * pixels)
                        .batch_stride(rows * pixels),
                    gw.buffer(),
                    nb,
                    cout_g,
                    rows_g,
                    pixels,
                );
                mm.c_offset = gi * cout_g * rows_g;
                mm.sum_batch = true;
                mm.accumulate = ci > 0;
                gemm(dev, &mm)?;
            }
        }
        if let Some(gx) = &gx {
            for gi in 0..gs {
                // gcols[n, gi] = W_gi^T [rows_g, cout_g] x g[n, gi] [cout_g, pixels]
                let mut mm = Gemm::new(
                    Operand::transposed(s.w.buffer(), cout_g, rows_g, false)
                        .at(gi * cout_g * rows_g),
                    Operand::rows(g.buffer(), cout_g, pixels, true)
                        .at((n0 * geo.c_out + gi * cout_g) * pixels)
                        .batch_stride(geo.c_out * pixels),
                    cols.buffer(),
                    nb,
                    rows_g,
                    pixels,
                    cout_g,
                );
                mm.c_offset = gi * rows_g * pixels;
                mm.c_batch_stride = rows * pixels;
                gemm(dev, &mm)?;
            }
            dev.dispatch(
                &SHADER,
                "col2im",
                &[Bind::Read(cols.buffer()), Bind::Write(gx.buffer())],
                &geo.params(n0, nb),
                groups(nb * geo.c * geo.h * geo.w),
            )?;
        }
    }
    Ok((gx, gw))
}

/// The bias gradient: g summed over images and pixels.
fn bias_backward(s: &Saved, g: &Tensor, need: bool) -> Result<Option<Tensor>> {
    let dev = g.device();
    let geo = &s.geo;
    let pixels = geo.pixels();
    let gb = if !need {
        None
    } else if dev.policy().conv_bias_grad_staged(geo.n * pixels) {
        // Staged sums: per (image, channel) rows, then over images. On CPU adapters this
        // spreads over more invocations than one workgroup per channel (and it is also the way
        // when there are too many values per channel for one workgroup's loops).
        let per_channel = g.reshape(&[geo.n, geo.c_out, pixels])?.sum_dim(2, false)?;
        Some(per_channel.sum_dim(0, false)?)
    } else {
        let gb = Tensor::uninit(dev, &[geo.c_out])?;
        dev.dispatch(
            &SHADER,
            "bias_grad",
            &[Bind::Read(g.buffer()), Bind::Write(gb.buffer())],
            &geo.params(0, geo.n),
            geo.c_out as u32,
        )?;
        Some(gb)
    };
    Ok(gb)
}

impl Tensor {
    /// 2-D convolution (cross-correlation, as PyTorch) of an NCHW input with a weight
    /// [C_out, C_in/groups, KH, KW] and an optional bias [C_out].
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
