//! The convolution's backend functions: `conv2d_forward` (and the fused conv + ReLU + 2 x 2
//! max-pool, `conv2d_relu_pool_forward`), `conv2d_output_grad`, `conv2d_input_grad`,
//! `conv2d_weight_grad` and `conv2d_bias_grad`. Each asks the policy how the convolution is
//! lowered and runs the portable kernels (im2col + products, `portable/conv.rs`) or the CPU
//! adapter's (implicit GEMM with images innermost, `cpu/conv_implicit.rs`). What a variant
//! keeps for its backward travels in an opaque [`ConvSaved`], and the gradient at the
//! convolution's output in an opaque [`OutputGrad`], so the autograd rule (`ops/conv.rs`)
//! states the math without knowing the variants.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::backend::cpu::conv_implicit;
use crate::backend::cpu::texels::Texels;
use crate::backend::policy::ConvLowering;
use crate::backend::portable::conv as portable;
use crate::background;
use crate::device::Device;
use crate::error::Result;
use crate::kernel::{kernel_params, KernelParams};
use crate::ops::conv::Conv2dParams;
use crate::tensor::{Storage, Tensor};

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
}

kernel_params! {
    /// `Params` of both convolution shaders, `shaders/conv.wgsl` and
    /// `shaders/cpu/conv_implicit.wgsl` (its WGSL is generated from this: [`params_wgsl`]).
    pub(crate) struct ConvParams for "conv", "cpu/conv_implicit", "cpu/conv_subgroup" {
        n: u32,
        c: u32,
        h: u32,
        w: u32,
        c_out: u32,
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
        groups: u32,
        /// Add the bias; apply ReLU after it (conv_forward, im2col's epilogue).
        has_bias: u32,
        relu: u32,
        /// im2col, col2im: the chunk of images from n0, nb of them.
        n0: u32,
        nb: u32,
        /// Image quads (images padded to a multiple of 4, divided by 4).
        nq: u32,
        /// conv_backward_weight: a part is a group of quads x a band of output rows.
        rows_per_part: u32,
        quads_per_part: u32,
        /// sum_parts4: number of parts, and conv_backward_weight's taps and channels per
        /// block (the layout of its partial sums).
        parts: u32,
        weight_taps: u32,
        weight_ch: u32,
        /// weight_layouts: channels per block of the forward and backward layouts (0: not
        /// written).
        layout_ch: u32,
        layout_ch_b: u32,
        /// images_inner: channels x pixels of the tensor being re-laid out.
        planes: u32,
        /// conv_backward_input_pairs: also write the gradient with images innermost, where
        /// the policy reads that from the parameters rather than from WRITE_INNER.
        write_inner: u32,
    }
}

/// `ConvParams` as the WGSL `struct Params` that both convolution shaders are given (every
/// field a u32; the comments are on the Rust struct).
pub(crate) fn params_wgsl() -> String {
    const { assert!(size_of::<ConvParams>() == 4 * ConvParams::FIELDS.len()) };
    let fields: String = ConvParams::FIELDS
        .iter()
        .map(|(name, _)| format!("    {name}: u32,\n"))
        .collect();
    format!("struct Params {{\n{fields}}}\n")
}

impl Geometry {
    /// The kernels' parameters: the geometry, the other fields 0 (set by the kernels' callers).
    pub fn params(&self) -> ConvParams {
        let p = &self.p;
        ConvParams {
            n: self.n as u32,
            c: self.c as u32,
            h: self.h as u32,
            w: self.w as u32,
            c_out: self.c_out as u32,
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
            groups: p.groups as u32,
            ..ConvParams::default()
        }
    }
}

/// How this device lowers the convolution.
fn lowering(dev: &Device, geo: &Geometry) -> ConvLowering {
    dev.policy().conv_lowering(conv_implicit::fits(dev, geo))
}

/// One call of a convolution as far as its kernels' pipelines depend on it: the gradients its
/// backward will compute and what is fused into it. (Whether x's producer reads its gradient
/// images-innermost matters too, but changes as x's producer switches: the dry run covers
/// both.)
#[derive(Clone, Copy)]
struct Call {
    need: Needs,
    relu: bool,
    pooled: bool,
    has_bias: bool,
}

impl Call {
    fn new(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, relu: bool, pooled: bool) -> Call {
        let grads = crate::tape::is_grad_enabled();
        Call {
            need: Needs {
                x: grads && x.is_requires_grad(),
                w: grads && w.is_requires_grad(),
                b: grads && bias.is_some_and(|b| b.is_requires_grad()),
            },
            relu,
            pooled,
            has_bias: bias.is_some(),
        }
    }

    fn records(&self) -> bool {
        self.need.x || self.need.w || self.need.b
    }

    /// The bytes that tell this call's variant apart, for `Device::variant_ready`.
    fn key(&self, geo: &Geometry) -> Vec<u8> {
        let mut key = bytemuck::bytes_of(&geo.params()).to_vec();
        key.extend(
            [
                self.need.x,
                self.need.w,
                self.need.b,
                self.relu,
                self.pooled,
                self.has_bias,
            ]
            .map(u8::from),
        );
        key
    }
}

/// How this call of the convolution is lowered: as [`lowering`], except that a training call
/// runs im2col while the implicit kernels' pipelines compile in the background, where the
/// policy has it wait for them (`Policy::conv_waits_for_pipelines`, `background.rs`). The
/// images-innermost copies the implicit kernels leave on tensors are extras next to the NCHW
/// values every variant writes, so calls of either lowering mix freely.
fn lowering_for(dev: &Device, geo: &Geometry, call: &Call) -> ConvLowering {
    let base = lowering(dev, geo);
    if base != ConvLowering::Implicit
        || !call.records()
        || !dev.policy().conv_waits_for_pipelines()
        || background::in_dry_run()
        || portable::check(dev, geo).is_err()
    {
        return base;
    }
    if !call.pooled {
        // The unfused call that fusion falls back to while the fused variant compiles: its
        // own implicit pipelines would be of no use once the fused ones are ready.
        let fused = Call {
            pooled: true,
            relu: true,
            ..*call
        };
        let key = fused.key(geo);
        if dev.variant_known(&key) && !dev.variant_ready(key, || Ok(())) {
            return ConvLowering::Im2col;
        }
    }
    match dev.variant_ready(call.key(geo), || implicit_dry_run(dev, geo, call)) {
        true => ConvLowering::Implicit,
        false => ConvLowering::Im2col,
    }
}

/// The implicit kernels of `call`, forward and backward, on tensors of its shapes, for a dry
/// run (`Device::dry_run`): what the call will dispatch once they are ready, whether or not
/// x's producer reads its gradient images-innermost.
fn implicit_dry_run(dev: &Device, geo: &Geometry, call: &Call) -> Result<()> {
    for input_inner in [false, true] {
        if input_inner && !call.need.x {
            break;
        }
        implicit_dry_run_once(dev, geo, call, input_inner)?;
    }
    Ok(())
}

fn implicit_dry_run_once(
    dev: &Device,
    geo: &Geometry,
    call: &Call,
    input_inner: bool,
) -> Result<()> {
    let x = Tensor::uninit(dev, &[geo.n, geo.c, geo.h, geo.w])?;
    x.storage()
        .grad_images_inner
        .store(input_inner, Ordering::Relaxed);
    let w = Tensor::uninit(dev, &[geo.c_out, geo.c / geo.p.groups, geo.kh, geo.kw])?;
    let bias = match call.has_bias {
        true => Some(Tensor::uninit(dev, &[geo.c_out])?),
        false => None,
    };
    let shape = match call.pooled {
        true => vec![geo.n, geo.c_out, geo.ho / 2, geo.wo / 2],
        false => vec![geo.n, geo.c_out, geo.ho, geo.wo],
    };
    let out = dev.storage(shape.iter().product())?;
    let saved = match call.pooled {
        true => conv2d_relu_pool_forward(&x, &w, bias.as_ref(), geo, &out, true, call.need.x)?,
        false => conv2d_forward(&x, &w, bias.as_ref(), call.relu, geo, &out, call.need.x)?,
    };
    let relu_out = (call.relu || call.pooled).then(|| Tensor::leaf(out, shape.clone()));
    let g = Tensor::uninit(dev, &shape)?;
    let need = call.need;
    let gy = conv2d_output_grad(&saved, &g, relu_out.as_ref(), geo, need)?;
    if need.x {
        conv2d_input_grad(&saved, &gy, &w, geo)?;
    }
    let summed = match need.w {
        true => conv2d_weight_grad(&saved, &gy, &w, geo, need.b)?
            .1
            .is_some(),
        false => false,
    };
    if need.b && !summed {
        conv2d_bias_grad(&gy, geo)?;
    }
    Ok(())
}

/// Errors the convolution's lowering would meet, raised when the op is called rather than
/// when its deferred output is computed.
pub(crate) fn check(dev: &Device, geo: &Geometry) -> Result<()> {
    match lowering(dev, geo) {
        ConvLowering::Im2col => portable::check(dev, geo),
        ConvLowering::Implicit => Ok(()),
    }
}

/// What a convolution's backward needs besides the weights, kept by the variant that ran the
/// forward (only one of x and its re-laid-out copy is kept alive).
pub(crate) struct ConvSaved(Saved);

enum Saved {
    /// An empty batch: nothing ran.
    Empty,
    /// im2col: x itself.
    Im2col(Tensor),
    Implicit(Box<ImplicitSaved>),
}

struct ImplicitSaved {
    /// x with images innermost (the weight gradient reads it).
    xt: Arc<Texels>,
    /// The weights laid out for the input gradient, when the forward wrote them.
    wb: Option<Texels>,
    /// x's producer reads its gradient images-innermost (`Storage::grad_images_inner`): the
    /// input gradient is then written that way too.
    input_inner: bool,
    /// With ReLU and 2 x 2 max pooling fused in: each window's winner (images innermost, 4
    /// images' codes packed per u32: see `conv_implicit::ReluPool`).
    winners: Option<Arc<Storage>>,
}

/// out = conv(x, w) + bias (then ReLU with `relu`), recorded into `out` ([N, C_out, HO, WO]).
/// `input_grad`: a training forward whose input needs its gradient (the implicit path then
/// lays the weights out for it in the same dispatch).
pub(crate) fn conv2d_forward(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    relu: bool,
    geo: &Geometry,
    out: &Arc<Storage>,
    input_grad: bool,
) -> Result<ConvSaved> {
    let dev = x.device();
    if geo.n == 0 {
        // An empty batch has an empty output and nothing to compute.
        return Ok(ConvSaved(Saved::Empty));
    }
    let call = Call::new(x, w, bias, relu, false);
    Ok(ConvSaved(match lowering_for(dev, geo, &call) {
        ConvLowering::Implicit => {
            let input_inner = x.storage().grad_images_inner.load(Ordering::Relaxed);
            let (xt, wb) = conv_implicit::forward(x, w, bias, relu, geo, out, input_grad)?;
            Saved::Implicit(Box::new(ImplicitSaved {
                xt,
                wb,
                input_inner,
                winners: None,
            }))
        }
        ConvLowering::Im2col => {
            portable::forward(dev, x, w, bias, relu, geo, out.buffer())?;
            Saved::Im2col(x.detach())
        }
    }))
}

/// Whether `conv2d_relu_pool_forward` runs this convolution: the implicit lowering has the
/// fused kernel, for an even-sized output.
pub(crate) fn relu_pool_fuses(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    geo: &Geometry,
) -> bool {
    geo.ho.is_multiple_of(2)
        && geo.wo.is_multiple_of(2)
        && lowering_for(x.device(), geo, &Call::new(x, w, bias, true, true))
            == ConvLowering::Implicit
}

/// max_pool2d(relu(conv(x, w) + bias), 2) into `out` ([N, C_out, HO / 2, WO / 2]) as one
/// kernel, never storing the convolution's output (where [`relu_pool_fuses`]). `records`: the
/// op is recorded for a backward, `input_grad`: x needs its gradient.
pub(crate) fn conv2d_relu_pool_forward(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    geo: &Geometry,
    out: &Arc<Storage>,
    records: bool,
    input_grad: bool,
) -> Result<ConvSaved> {
    let input_inner = x.storage().grad_images_inner.load(Ordering::Relaxed);
    let fused =
        conv_implicit::forward_relu_pool(x, w, bias, geo, out.buffer(), records, input_grad)?;
    // The next convolution reads the output images-innermost as written here.
    out.set_images_inner(geo.n, Arc::new(fused.out_inner));
    // Without x's gradient the backward reads the pooled gradient images-innermost.
    out.grad_images_inner
        .store(records && !input_grad, Ordering::Relaxed);
    Ok(ConvSaved(Saved::Implicit(Box::new(ImplicitSaved {
        xt: fused.xt,
        wb: fused.wb,
        input_inner,
        winners: fused.winners,
    }))))
}

/// The gradient at the convolution's output, in the forms the variant's backward kernels
/// read (prepared once for the input, weight and bias gradients).
pub(crate) struct OutputGrad {
    /// NCHW, through the ReLU (im2col's products, and bias sums on their own).
    nchw: Option<Tensor>,
    /// Images innermost, through the ReLU and the pooling (implicit GEMM).
    inner: Option<Arc<Texels>>,
    /// Under the fused pooling, for the weight gradient where the policy has it read this
    /// (`Policy::conv_weight_grad_from_pooled`): the pooled gradient images innermost, which
    /// the weight gradient routes to the winners itself.
    pooled: Option<Arc<Texels>>,
}

/// Which gradients a backward computes: of x, w and the bias.
#[derive(Clone, Copy)]
pub(crate) struct Needs {
    pub x: bool,
    pub w: bool,
    pub b: bool,
}

/// The gradient at the convolution's output from g, the gradient of the op's output: through
/// the fused ReLU (g where `relu_out`, the op's output, is positive) and the fused pooling (g
/// at each window's winner). With the weight gradient the implicit path sums the bias with it
/// ([`conv2d_weight_grad`]); otherwise the bias sums read the NCHW form.
pub(crate) fn conv2d_output_grad(
    s: &ConvSaved,
    g: &Tensor,
    relu_out: Option<&Tensor>,
    geo: &Geometry,
    need: Needs,
) -> Result<OutputGrad> {
    let dev = g.device();
    let masked = || match relu_out {
        Some(y) => crate::ops::unary::relu_backward(y, g),
        None => Ok(g.clone()),
    };
    let mut out = OutputGrad {
        nchw: None,
        inner: None,
        pooled: None,
    };
    match &s.0 {
        Saved::Empty => {}
        Saved::Im2col(_) => out.nchw = Some(masked()?),
        Saved::Implicit(imp) => {
            // The bias sums read the masked g in NCHW when no weight gradient sums it.
            if need.b && !need.w {
                out.nchw = Some(masked()?);
            }
            match &imp.winners {
                // The full-size gradient for the input gradient, and the pooled one for the
                // weight gradient where the policy has it read that.
                Some(winners) => {
                    if need.x {
                        let routed = conv_implicit::pool_grad_images_inner(dev, g, winners, geo)?;
                        out.inner = Some(Arc::new(routed));
                    }
                    if need.w && dev.policy().conv_weight_grad_from_pooled(need.x) {
                        out.pooled = Some(conv_implicit::images_inner(dev, g, geo, None)?);
                    }
                }
                // Re-laid out once for both gradients, the ReLU's mask applied on the way
                // (or re-laid out from the masked g already there).
                None if need.x || need.w => {
                    out.inner = Some(match &out.nchw {
                        Some(m) => conv_implicit::images_inner(dev, m, geo, None)?,
                        None => conv_implicit::images_inner(dev, g, geo, relu_out)?,
                    });
                }
                None => {}
            }
        }
    }
    Ok(out)
}

/// The input gradient: the transposed convolution of the output gradient with w.
pub(crate) fn conv2d_input_grad(
    s: &ConvSaved,
    gy: &OutputGrad,
    w: &Tensor,
    geo: &Geometry,
) -> Result<Tensor> {
    let dev = w.device();
    match &s.0 {
        Saved::Empty => Tensor::zeros(dev, &[0, geo.c, geo.h, geo.w]),
        Saved::Im2col(_) => portable::input_grad(dev, nchw(gy), w, geo),
        Saved::Implicit(imp) => {
            let gt = gy.inner.as_ref().expect("conv2d_output_grad for x");
            conv_implicit::backward_input(dev, gt, w, imp.wb.as_ref(), geo, imp.input_inner)
        }
    }
}

/// The weight gradient (the output gradient correlated with x, summed over images) and, where
/// the variant sums it in the same pass and `with_bias`, the bias gradient.
pub(crate) fn conv2d_weight_grad(
    s: &ConvSaved,
    gy: &OutputGrad,
    w: &Tensor,
    geo: &Geometry,
    with_bias: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let dev = w.device();
    match &s.0 {
        Saved::Empty => Ok((Tensor::zeros(dev, w.shape())?, None)),
        Saved::Im2col(x) => Ok((
            portable::weight_grad(dev, x, nchw(gy), w.shape(), geo)?,
            None,
        )),
        Saved::Implicit(imp) => {
            let (gt, winners) = match (&gy.pooled, &imp.winners, &gy.inner) {
                (Some(pooled), Some(winners), _) => (&**pooled, Some(&**winners)),
                (None, _, Some(gt)) => (&**gt, None),
                _ => unreachable!("conv2d_output_grad for w"),
            };
            conv_implicit::backward_weight(dev, &imp.xt, gt, winners, geo, w.shape(), with_bias)
        }
    }
}

/// The bias gradient: the output gradient summed over images and pixels.
pub(crate) fn conv2d_bias_grad(gy: &OutputGrad, geo: &Geometry) -> Result<Tensor> {
    portable::bias_grad(nchw(gy), geo.c_out)
}

fn nchw(gy: &OutputGrad) -> &Tensor {
    gy.nchw
        .as_ref()
        .expect("conv2d_output_grad prepared the NCHW gradient")
}
