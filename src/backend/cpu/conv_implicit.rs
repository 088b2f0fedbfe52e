//! Convolution as an implicit GEMM with images innermost (`shaders/cpu/conv_implicit.wgsl`): the
//! im2col columns are computed inside the product instead of being written to a buffer, and
//! the activations are read from a copy laid out [C, H, W, images] so that one vec4 load
//! brings the same tap of 4 images. Chosen on CPU adapters, where every load is a loop over
//! the SIMD lanes and the number of load instructions sets the speed.

use std::sync::Arc;

use crate::backend::caps::LLVMPIPE_LOOP_BUDGET;
use crate::backend::conv::{params_wgsl, ConvParams, Geometry};
use crate::backend::cpu::conv_acc_gen::ROW_TAPS;
use crate::backend::cpu::texels::{Texels, TEXEL_ROW};
use crate::backend::TexelReads;
use crate::device::Device;
use crate::error::Result;
use crate::kernel::{shader, Bind, Shader};
use crate::tensor::{Storage, Tensor};

pub(crate) static SHADER: Shader = shader!(
    "cpu/conv_implicit",
    includes = ["cpu/conv_window"],
    Some(generated)
);

/// The module's generated WGSL: its `Params` (shared with im2col's shader), the accumulators
/// and their helpers, and the weight-gradient kernel (see `conv_acc_gen.rs` and
/// `conv_weight_gen.rs`).
pub(crate) fn generated() -> String {
    use super::{conv_acc_gen, conv_weight_gen};
    [
        params_wgsl(),
        conv_acc_gen::accumulators(),
        conv_acc_gen::fma_helpers(),
        conv_acc_gen::store_helpers(),
        conv_acc_gen::window_rows(),
        conv_weight_gen::conv_backward_weight(),
    ]
    .join("\n")
}

/// conv_subgroup: the forward (also fused with ReLU and pooling) and the input gradient where
/// the adapter's subgroups are its 8 SIMD lanes (`Policy::conv_lane_quads`).
pub(crate) static SUBGROUP: Shader = shader!(
    "cpu/conv_subgroup",
    includes = ["cpu/conv_window"],
    Some(subgroup_generated)
);

pub(crate) fn subgroup_generated() -> String {
    [params_wgsl(), super::conv_acc_gen::subgroup()].join("\n")
}

/// Most loop iterations of one invocation of these kernels: the driver's budget, and where
/// there is none the same size of work per invocation (the parts were tuned at it).
fn loop_limit(dev: &Device) -> usize {
    dev.policy().loop_limit().min(LLVMPIPE_LOOP_BUDGET)
}

/// Whether the implicit kernels can run this convolution: a batch of images (an empty one
/// runs nothing), each invocation's loops within the loop limit, the operands in textures,
/// and index arithmetic in u32.
pub(crate) fn fits(dev: &Device, geo: &Geometry) -> bool {
    if geo.n == 0 {
        return false;
    }
    let g = geo.p.groups;
    let taps = geo.kh * geo.kw;
    let loops = |k: usize| k * 2 + 16;
    let limit = loop_limit(dev);
    loops(geo.c / g * taps) <= limit
        && loops(geo.c_out / g * taps) <= limit
        && geo.ho * (geo.wo + 1) + 16 <= limit
        && weight_parts(dev, geo, limit).is_some()
        // The kernels' operands fit in textures.
        && largest_operand(dev, geo).div_ceil(4 * TEXEL_ROW as usize)
            <= dev.limits().max_texture_dimension_2d as usize
        // Index arithmetic in the kernels stays within u32 and the divmod's 2^24.
        && (geo.n.div_ceil(4) * 4 * geo.c.max(geo.c_out) * geo.h.max(geo.ho) * geo.w.max(geo.wo))
            < 1 << 31
}

/// Floats in the largest tensor a kernel reads as a texture: x or g with images innermost (the
/// padded batch times the larger of the input and output planes), or a weight layout.
fn largest_operand(dev: &Device, geo: &Geometry) -> usize {
    let images = quads(geo) * 4;
    let planes = (geo.c * geo.h * geo.w).max(geo.c_out * geo.ho * geo.wo);
    let (g, taps) = (geo.p.groups, geo.kh * geo.kw);
    let weights = (geo.c * channel_blocks(dev, geo.c_out / g))
        .max(geo.c_out * channel_blocks(dev, geo.c / g))
        * taps
        * 8;
    (images * planes).max(weights)
}

/// A texture for `floats` values of a re-laid-out operand; `fits` checked that it fits.
fn texels(dev: &Device, floats: usize) -> Texels {
    dev.texels(floats.div_ceil(4) as u64)
        .expect("fits() checked that the operands fit in textures")
}

/// Channels per block (the kernels' override CH) for a group of `c` channels: the policy's
/// choice.
fn block_channels(dev: &Device, c: usize) -> usize {
    dev.policy().conv_block_channels(c)
}

/// Channel blocks of a group of `c` channels (the kernels' channel_blocks).
fn channel_blocks(dev: &Device, c: usize) -> usize {
    c.div_ceil(block_channels(dev, c))
}

/// conv_backward_weight's channels per block (its CH) and blocks for a group of `c` output
/// channels: the policy's choice, which may differ from the other kernels'.
fn weight_grad_blocks(dev: &Device, c: usize) -> (usize, usize) {
    let ch = dev.policy().conv_weight_grad_block_channels(c);
    (ch, c.div_ceil(ch))
}

/// conv_backward_weight's taps per block and SLIDE_KW (the policy's choice).
fn weight_taps(dev: &Device, geo: &Geometry) -> (usize, usize) {
    let slides = geo.p.stride.1 == geo.p.dilation.1;
    dev.policy().conv_weight_taps(geo.kw, slides)
}

/// conv_relu_pool_forward's ROW_SLIDE: the kernel width when both strides equal their
/// dilations, the kernel is at most ROW_TAPS wide (the generated code's taps) and the policy
/// lets its rows slide (their taps are unrolled), else 0.
fn row_slide(dev: &Device, geo: &Geometry) -> usize {
    let p = &geo.p;
    if p.stride == p.dilation && geo.kw <= ROW_TAPS && dev.policy().conv_pool_row_slides(geo.kw) {
        geo.kw
    } else {
        0
    }
}

/// Image quads: the batch padded to a multiple of 4, in vec4s.
fn quads(geo: &Geometry) -> usize {
    geo.n.div_ceil(4)
}

/// How conv_backward_weight splits the sum over images and output pixels into parts computed
/// in parallel: (quads per part, rows per part, parts). About 128 invocations (16 SIMD groups
/// per core on lavapipe; 512 cost 30-40% more in sum_parts4 and no less in the weight
/// gradient, 64 left the cores short), each invocation's loops within the loop budget, and at
/// most `limit` parts for sum_parts4 to add up. None if that cannot be met.
fn weight_parts(dev: &Device, geo: &Geometry, limit: usize) -> Option<(usize, usize, usize)> {
    let groups = geo.p.groups;
    let nq = quads(geo);
    let k_len = geo.c / groups * geo.kh * geo.kw;
    let per_part = groups
        * weight_grad_blocks(dev, geo.c_out / groups).1
        * k_len.div_ceil(weight_taps(dev, geo).0);
    let quads_per_part = nq.div_ceil(limit / 4).max(1);
    let quad_groups = nq.div_ceil(quads_per_part);
    let mut bands = 128usize
        .div_ceil(per_part * quad_groups)
        .clamp(1, geo.ho.max(1));
    // Loop iterations of one invocation: quads x rows x (columns + 1).
    let rows_fit = (limit - 16) / (quads_per_part * (geo.wo + 1) + 1);
    if rows_fit == 0 {
        return None;
    }
    bands = bands.max(geo.ho.div_ceil(rows_fit));
    let rows_per_part = geo.ho.div_ceil(bands).max(1);
    let parts = quad_groups * geo.ho.div_ceil(rows_per_part).max(1);
    (parts <= limit).then_some((quads_per_part, rows_per_part, parts))
}

/// The kernels' parameters, `parts` being (quads per part, rows per part, parts); relu is 0
/// here, set by the callers that use it.
fn params(
    geo: &Geometry,
    has_bias: bool,
    parts: (usize, usize, usize),
    planes: usize,
) -> ConvParams {
    ConvParams {
        has_bias: has_bias as u32,
        nq: quads(geo) as u32,
        rows_per_part: parts.1 as u32,
        quads_per_part: parts.0 as u32,
        parts: parts.2 as u32,
        planes: planes as u32,
        ..geo.params()
    }
}

/// Workgroups of 64 invocations for `n` invocations.
fn grid(n: usize) -> u32 {
    n.div_ceil(64) as u32
}

/// An [N, C, H, W] tensor (x, or the output gradient) as [C, H, W, images padded to 4], in a
/// texture; with `relu_out`, only where that (a fused ReLU's output) is positive: the gradient
/// through it.
pub(crate) fn images_inner(
    dev: &Device,
    t: &Tensor,
    geo: &Geometry,
    relu_out: Option<&Tensor>,
) -> Result<Arc<Texels>> {
    if relu_out.is_none() {
        // A deferred tensor is computed first: its kernel may write this layout too.
        t.buffer();
        if let Some(written) = t.storage().images_inner(geo.n) {
            return Ok(written);
        }
    }
    let planes = t.numel() / geo.n.max(1);
    let nq = quads(geo);
    let out = texels(dev, planes * nq * 4);
    let params = params(geo, false, (0, 0, 0), planes);
    // 4 x 4 blocks with vec4 loads and stores when the planes allow it.
    let (entry, invocations) = if planes.is_multiple_of(4) {
        ("images_inner4", planes / 4 * nq)
    } else {
        ("images_inner", planes * nq)
    };
    // Texture copies of the operands where the policy reads them so.
    let reads = TexelReads::new(dev, &[Some(t), relu_out])?;
    dev.dispatch_with(
        &SHADER,
        entry,
        &[
            ("RELU_MASK", relu_out.is_some() as u32),
            ("TEXELS", reads.on() as u32),
        ],
        &[
            reads.buffer(dev, Some(t)),
            Bind::WriteTexels(out.view()),
            // Without a mask the slot holds t (unread).
            reads.buffer(dev, Some(relu_out.unwrap_or(t))),
            reads.texture(dev, 0),
            reads.texture(dev, 1),
        ],
        &params,
        grid(invocations),
    )?;
    Ok(Arc::new(out))
}

/// The size (floats) and block channels (the kernels' CH) of a weight layout: blocks of output
/// channels for the forward, of input channels for the input gradient.
fn layout_size(dev: &Device, geo: &Geometry, forward: bool) -> (usize, usize) {
    let g = geo.p.groups;
    let taps = geo.kh * geo.kw;
    if forward {
        let cout_g = geo.c_out / g;
        let len = g * (geo.c / g * taps) * channel_blocks(dev, cout_g) * 8;
        (len, block_channels(dev, cout_g))
    } else {
        let cin_g = geo.c / g;
        let len = geo.c_out * taps * channel_blocks(dev, cin_g) * 8;
        (len, block_channels(dev, cin_g))
    }
}

/// The weights re-laid out (in textures) so that a block of channels at one tap is two texels:
/// for the forward (`forward`), for the input gradient (`backward`), or both from one
/// dispatch (each dispatch has a fixed cost, and a training forward whose input needs its
/// gradient would otherwise leave the backward its own).
fn weight_layouts(
    dev: &Device,
    w: &Tensor,
    geo: &Geometry,
    forward: bool,
    backward: bool,
) -> Result<(Option<Texels>, Option<Texels>)> {
    let (len_f, ch_f) = layout_size(dev, geo, true);
    let (len_b, ch_b) = layout_size(dev, geo, false);
    let layout = |on: bool, len: usize| on.then(|| texels(dev, len));
    let (wf, wb) = (layout(forward, len_f), layout(backward, len_b));
    // A layout not asked for: a one-texel placeholder fills its slot (unwritten).
    let unused = texels(dev, 4);
    fn view<'a>(t: &'a Option<Texels>, unused: &'a Texels) -> &'a wgpu::TextureView {
        t.as_ref().unwrap_or(unused).view()
    }
    let groups = |on: bool, len: usize| if on { len / 8 } else { 0 };
    let params = ConvParams {
        layout_ch: if forward { ch_f as u32 } else { 0 },
        layout_ch_b: if backward { ch_b as u32 } else { 0 },
        ..params(geo, false, (0, 0, 0), 0)
    };
    dev.dispatch(
        &SHADER,
        "weight_layouts",
        &[
            Bind::Read(w.buffer()),
            Bind::WriteTexels(view(&wf, &unused)),
            // Binding 3 is unread here.
            Bind::Read(w.buffer()),
            Bind::WriteTexels(view(&wb, &unused)),
        ],
        &params,
        // One invocation per group of 8 slots.
        grid(groups(forward, len_f).max(groups(backward, len_b))),
    )?;
    Ok((wf, wb))
}

/// out = conv(x, w) + bias (then ReLU with `relu`), into `out` ([N, C_out, HO, WO]). Returns
/// x with images innermost (the weight gradient reads it too) and, with `input_grad`, the
/// weights laid out for the input gradient.
pub(crate) fn forward(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    relu: bool,
    geo: &Geometry,
    out: &Arc<Storage>,
    input_grad: bool,
) -> Result<(Arc<Texels>, Option<Texels>)> {
    let dev = x.device();
    let g = geo.p.groups;
    let xt = images_inner(dev, x, geo, None)?;
    let out_storage = out;
    let out = out.buffer();
    let mut params = params(geo, bias.is_some(), (0, 0, 0), 0);
    params.relu = relu as u32;
    let (wf, wb) = weight_layouts(dev, w, geo, true, input_grad)?;
    let wf = wf.expect("asked for");
    let cout_g = geo.c_out / g;
    let mut binds = vec![
        Bind::Texels(xt.view()),
        Bind::Texels(wf.view()),
        // Without a bias the slot holds the weights (unread).
        Bind::Read(bias.unwrap_or(w).buffer()),
        Bind::Write(out),
    ];
    if let Some(lane_quads) = dev.policy().conv_lane_quads(cout_g) {
        // With a fused ReLU the output is also written images innermost, for the convolution
        // that most often reads it next (conv -> ReLU -> conv, and in eval mode conv -> folded
        // BatchNorm -> ReLU -> conv), which then skips its re-layout; otherwise the slot holds
        // a placeholder (unwritten).
        let inner = texels(
            dev,
            if relu {
                geo.c_out * geo.ho * geo.wo * quads(geo) * 4
            } else {
                4
            },
        );
        binds.extend([
            Bind::WriteTexels(inner.view()),
            Bind::Write(dev.dummy_buffer()),
        ]);
        let what = SubgroupConv::Forward { inner: relu };
        subgroup_conv(dev, geo, lane_quads, what, &binds, &params)?;
        if relu {
            out_storage.set_images_inner(geo.n, Arc::new(inner));
        }
        return Ok((xt, wb));
    }
    let invocations = quads(geo).div_ceil(4) * g * channel_blocks(dev, cout_g) * geo.ho * geo.wo;
    dev.dispatch_with(
        &SHADER,
        "conv_forward",
        &[("CH", block_channels(dev, cout_g) as u32)],
        &binds,
        &params,
        grid(invocations),
    )?;
    Ok((xt, wb))
}

/// What a conv_subgroup dispatch computes (its entry point and override constants).
#[derive(Clone, Copy, PartialEq)]
enum SubgroupConv {
    /// Also written images innermost with `inner`.
    Forward { inner: bool },
    /// With the winner codes saved (`save`).
    ReluPool { save: bool },
    /// Also written images innermost with `inner`.
    InputGrad { inner: bool },
}

/// conv_subgroup over `geo`, `lane_quads` image quads per lane. `binds`: slots 1-4 (the
/// source, the weights, the bias, the output), 5 (the images-innermost output or a
/// placeholder) and 6 (the winner codes or the dummy buffer).
fn subgroup_conv(
    dev: &Device,
    geo: &Geometry,
    lane_quads: usize,
    what: SubgroupConv,
    binds: &[Bind],
    params: &ConvParams,
) -> Result<()> {
    debug_assert!(
        lane_quads == 1 || !matches!(what, SubgroupConv::ReluPool { .. }),
        "the pooled kernel's stores are generated for one quad per lane"
    );
    let (entry, chans, pixels) = match what {
        SubgroupConv::InputGrad { .. } => ("conv_input_grad_subgroup", geo.c, geo.h * geo.w),
        SubgroupConv::Forward { .. } => ("conv_forward_subgroup", geo.c_out, geo.ho * geo.wo),
        SubgroupConv::ReluPool { .. } => ("conv_relu_pool_subgroup", geo.c_out, geo.ho * geo.wo),
    };
    // Subgroups of 8 lanes x lane_quads image quads at one pixel, 32 / lane_quads channels
    // each; a block's lanes padded to whole subgroups (the shader's `columns`).
    let columns = (pixels * quads(geo).div_ceil(lane_quads)).next_multiple_of(8);
    let blocks = (chans / geo.p.groups).div_ceil(32 / lane_quads);
    dev.dispatch_with(
        &SUBGROUP,
        entry,
        &[
            ("QL", lane_quads as u32),
            (
                "TRANSPOSED",
                matches!(what, SubgroupConv::InputGrad { .. }) as u32,
            ),
            (
                "WRITE_INNER",
                matches!(
                    what,
                    SubgroupConv::InputGrad { inner: true } | SubgroupConv::Forward { inner: true }
                ) as u32,
            ),
            ("POOL", matches!(what, SubgroupConv::ReluPool { .. }) as u32),
            (
                "SAVE_ARGMAX",
                (what == SubgroupConv::ReluPool { save: true }) as u32,
            ),
        ],
        binds,
        params,
        (geo.p.groups * blocks * columns).div_ceil(32) as u32,
    )
}

/// What forward_relu_pool returns besides its output: x with images innermost (for the weight
/// gradient), the output with images innermost (for the next convolution: `Storage::
/// images_inner`) and, when asked for, each window's winner code for the backward (0-3, or 4
/// where the pooled value is not positive; u32 (channel * windows + window) * quads + quad,
/// the index of the output's texel, holds its 4 images' codes in bytes 0-3), and the weights
/// laid out for the input gradient when asked for.
pub(crate) struct ReluPool {
    pub xt: Arc<Texels>,
    pub out_inner: Texels,
    pub winners: Option<Arc<Storage>>,
    pub wb: Option<Texels>,
}

/// max_pool2d(relu(conv(x, w) + bias), 2) into `out` ([N, C_out, HO / 2, WO / 2]) without
/// storing the convolution (HO and WO even).
pub(crate) fn forward_relu_pool(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    geo: &Geometry,
    out: &wgpu::Buffer,
    save_winners: bool,
    input_grad: bool,
) -> Result<ReluPool> {
    let dev = x.device();
    let g = geo.p.groups;
    let xt = images_inner(dev, x, geo, None)?;
    let (wf, wb) = weight_layouts(dev, w, geo, true, input_grad)?;
    let wf = wf.expect("asked for");
    // Invocations: 4 images x CH channels at one 2 x 2 window.
    let cout_g = geo.c_out / g;
    let windows = (geo.ho / 2) * (geo.wo / 2);
    let invocations = quads(geo) * g * channel_blocks(dev, cout_g) * windows;
    // Without the winners, the device's dummy buffer fills their slot (unwritten). The policy
    // may have them saved when not asked for (the training pipeline shared by inference).
    let per_window = geo.c_out * windows * quads(geo) * 4;
    let saves = dev.policy().conv_pool_saves_winners(save_winners);
    let winners = match saves {
        true => Some(dev.storage(per_window / 4)?),
        false => None,
    };
    let out_inner = texels(dev, per_window);
    if let Some(lane_quads) = dev.policy().conv_pool_lane_quads(cout_g) {
        let binds = [
            Bind::Texels(xt.view()),
            Bind::Texels(wf.view()),
            Bind::Read(bias.unwrap_or(w).buffer()),
            Bind::Write(out),
            Bind::WriteTexels(out_inner.view()),
            Bind::Write(winners.as_ref().map_or(dev.dummy_buffer(), |w| w.buffer())),
        ];
        let what = SubgroupConv::ReluPool { save: saves };
        let params = params(geo, bias.is_some(), (0, 0, 0), 0);
        subgroup_conv(dev, geo, lane_quads, what, &binds, &params)?;
        return Ok(ReluPool {
            xt,
            out_inner,
            winners: winners.filter(|_| save_winners),
            wb,
        });
    }
    dev.dispatch_with(
        &SHADER,
        "conv_relu_pool_forward",
        &[
            ("SAVE_ARGMAX", saves as u32),
            ("SLIDE", (geo.p.stride.1 == geo.p.dilation.1) as u32),
            ("ROW_SLIDE", row_slide(dev, geo) as u32),
            ("CH", block_channels(dev, cout_g) as u32),
        ],
        &[
            Bind::Texels(xt.view()),
            Bind::Texels(wf.view()),
            Bind::Read(bias.unwrap_or(w).buffer()),
            Bind::Write(out),
            Bind::Write(winners.as_ref().map_or(dev.dummy_buffer(), |w| w.buffer())),
            Bind::WriteTexels(out_inner.view()),
        ],
        &params(geo, bias.is_some(), (0, 0, 0), 0),
        grid(invocations),
    )?;
    Ok(ReluPool {
        xt,
        out_inner,
        winners: winners.filter(|_| save_winners),
        wb,
    })
}

/// The gradient of forward_relu_pool's output with respect to the convolution's output,
/// with images innermost (what backward_input and backward_weight read): g at each window's
/// winning pixel where the pooled value was positive (the `winners` codes).
pub(crate) fn pool_grad_images_inner(
    dev: &Device,
    g: &Tensor,
    winners: &Storage,
    geo: &Geometry,
) -> Result<Texels> {
    let nq = quads(geo);
    let gt = texels(dev, geo.c_out * geo.ho * geo.wo * nq * 4);
    let windows = geo.c_out * (geo.ho / 2) * (geo.wo / 2) * nq;
    dev.dispatch(
        &SHADER,
        "pool_grad_images_inner",
        &[
            Bind::Read(g.buffer()),
            Bind::Read(winners.buffer()),
            Bind::WriteTexels(gt.view()),
        ],
        &params(geo, false, (0, 0, 0), 0),
        grid(windows),
    )?;
    Ok(gt)
}

/// The input gradient (a transposed convolution of g with w); `gt` is g with images innermost,
/// `wb` the weights laid out for it if the forward wrote them. With `inner_too`, where the
/// pairs kernel applies, the gradient's images-innermost copy is written with it and kept on
/// its storage (`Storage::images_inner`) for the backward of the op below.
pub(crate) fn backward_input(
    dev: &Device,
    gt: &Texels,
    w: &Tensor,
    wb: Option<&Texels>,
    geo: &Geometry,
    inner_too: bool,
) -> Result<Tensor> {
    let groups = geo.p.groups;
    let gx = Tensor::uninit(dev, &[geo.n, geo.c, geo.h, geo.w])?;
    let laid_out;
    let wb = match wb {
        Some(wb) => wb,
        None => {
            laid_out = weight_layouts(dev, w, geo, false, true)?.1;
            laid_out.as_ref().expect("asked for")
        }
    };
    if let Some(lane_quads) = dev.policy().conv_lane_quads(geo.c / groups) {
        let inner = texels(
            dev,
            if inner_too {
                geo.c * geo.h * geo.w * quads(geo) * 4
            } else {
                4
            },
        );
        let binds = [
            Bind::Texels(gt.view()),
            Bind::Texels(wb.view()),
            // The bias slot is unread here.
            Bind::Read(w.buffer()),
            Bind::Write(gx.buffer()),
            Bind::WriteTexels(inner.view()),
            Bind::Write(dev.dummy_buffer()),
        ];
        let params = params(geo, false, (0, 0, 0), 0);
        let what = SubgroupConv::InputGrad { inner: inner_too };
        subgroup_conv(dev, geo, lane_quads, what, &binds, &params)?;
        if inner_too {
            gx.storage().set_images_inner(geo.n, Arc::new(inner));
        }
        return Ok(gx);
    }
    let strided = geo.p.stride != (1, 1);
    let blocks = groups * channel_blocks(dev, geo.c / groups);
    // With unit stride and dilation along the width, pairs of neighbouring pixels share the
    // gradient columns they read (8 images per invocation); otherwise 16 images at one pixel.
    let (entry, invocations) = if geo.p.stride.1 == 1 && geo.p.dilation.1 == 1 {
        let pairs = geo.h * geo.w.div_ceil(2);
        (
            "conv_backward_input_pairs",
            quads(geo).div_ceil(2) * blocks * pairs,
        )
    } else {
        let pixels = geo.h * geo.w;
        (
            "conv_backward_input",
            quads(geo).div_ceil(4) * blocks * pixels,
        )
    };
    let pairs = entry == "conv_backward_input_pairs";
    let inner_too = inner_too && pairs;
    // Without the copy, one-texel placeholders fill its slot and the unused one before it.
    let inner = texels(
        dev,
        if inner_too {
            geo.c * geo.h * geo.w * quads(geo) * 4
        } else {
            4
        },
    );
    let unused = texels(dev, 4);
    let mut binds = vec![
        Bind::Texels(gt.view()),
        Bind::Texels(wb.view()),
        // The bias slot is unread here.
        Bind::Read(w.buffer()),
        Bind::Write(gx.buffer()),
    ];
    if pairs {
        binds.extend([
            Bind::WriteTexels(unused.view()),
            Bind::WriteTexels(inner.view()),
        ]);
    }
    let mut constants = vec![
        ("STRIDED", strided as u32),
        ("CH", block_channels(dev, geo.c / groups) as u32),
    ];
    let mut params = params(geo, false, (0, 0, 0), 0);
    if pairs {
        if dev.policy().conv_inner_copy_in_params() {
            constants.push(("WRITE_INNER", 0));
            params.write_inner = inner_too as u32;
        } else {
            constants.push(("WRITE_INNER", inner_too as u32));
        }
    }
    dev.dispatch_with(
        &SHADER,
        entry,
        &constants,
        &binds,
        &params,
        grid(invocations),
    )?;
    if inner_too {
        gx.storage().set_images_inner(geo.n, Arc::new(inner));
    }
    Ok(gx)
}

/// The weight gradient (and, with `with_bias`, the bias gradient) from x and g, both with
/// images innermost: partial sums over parts (image quads x bands of output rows) computed in
/// parallel, then added up by sum_parts4. With `winners` (a fused ReLU + 2 x 2 pooling), `gt`
/// is the pooled gradient and `winners` its windows' codes from forward_relu_pool.
pub(crate) fn backward_weight(
    dev: &Device,
    xt: &Texels,
    gt: &Texels,
    winners: Option<&Storage>,
    geo: &Geometry,
    w_shape: &[usize],
    with_bias: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let groups = geo.p.groups;
    let parts = weight_parts(dev, geo, loop_limit(dev)).expect("fits() checked the partition");
    let k_len = geo.c / groups * geo.kh * geo.kw;
    let (ch, blocks) = weight_grad_blocks(dev, geo.c_out / groups);
    let taps = weight_taps(dev, geo).0;
    // A part's row of partial sums (the shader's partial_layout): 16 slots per channel and
    // tap block, then 8 per channel block for the bias.
    let row_len =
        geo.c_out * k_len.div_ceil(taps) * 16 + if with_bias { groups * blocks * 8 } else { 0 };
    let partial = Tensor::uninit(dev, &[parts.2, row_len])?;
    let per_part = groups * blocks * k_len.div_ceil(taps);
    let params = ConvParams {
        weight_taps: taps as u32,
        weight_ch: ch as u32,
        ..params(geo, with_bias, parts, 0)
    };
    // Workgroups of 32: its grid is small (about 128-320 invocations), and lavapipe runs each
    // workgroup on one thread, so halves split it more evenly between the threads.
    let invocations = parts.2 * per_part;
    dev.dispatch_with(
        &SHADER,
        "conv_backward_weight",
        &[
            ("CH", ch as u32),
            ("TAPS", taps as u32),
            ("SLIDE_KW", weight_taps(dev, geo).1 as u32),
            ("WG", 32),
            ("POOLED_G", winners.is_some() as u32),
        ],
        &[
            Bind::Texels(xt.view()),
            Bind::Texels(gt.view()),
            Bind::Write(partial.buffer()),
            // Without pooling the codes' slot holds the dummy buffer (unread).
            Bind::Read(winners.map_or_else(|| dev.dummy_buffer(), |w| w.buffer())),
        ],
        &params,
        invocations.div_ceil(32) as u32,
    )?;
    let gw = Tensor::uninit(dev, w_shape)?;
    let gb = Tensor::uninit(dev, &[if with_bias { geo.c_out } else { 1 }])?;
    // The partial sums read through a texture copy where the policy says so.
    let reads = TexelReads::new(dev, &[Some(&partial)])?;
    dev.dispatch_with(
        &SHADER,
        "sum_parts4",
        &[("TEXELS", reads.on() as u32)],
        &[
            reads.buffer(dev, Some(&partial)),
            Bind::Write(gw.buffer()),
            Bind::Write(gb.buffer()),
            reads.texture(dev, 0),
        ],
        &params,
        grid(row_len / 4),
    )?;
    Ok((gw, with_bias.then_some(gb)))
}
