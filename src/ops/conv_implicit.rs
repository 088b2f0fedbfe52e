//! Convolution as an implicit GEMM (`shaders/conv_implicit.wgsl`): the im2col columns are
//! computed inside the product instead of being written to a buffer. Chosen on CPU adapters,
//! where the column matrix's traffic and the gathers of a separate product dominate.

use crate::device::Device;
use crate::error::Result;
use crate::kernel::{shader, Bind, Shader, LOOP_BUDGET};
use crate::ops::conv::Geometry;
use crate::tensor::Tensor;

static SHADER: Shader = shader!("conv_implicit");

/// Whether this convolution runs as an implicit GEMM: on adapters that prefer it, when each
/// invocation's loops stay within the loop budget.
pub(crate) fn applies(dev: &Device, geo: &Geometry) -> bool {
    let g = geo.p.groups;
    let taps = geo.kh * geo.kw;
    let loops = |k: usize| k * 2 + 16;
    dev.0.conv_implicit
        && loops(geo.c / g * taps) <= LOOP_BUDGET
        && loops(geo.c_out / g * taps) <= LOOP_BUDGET
        && geo.ho * (geo.wo + 1) + 16 <= LOOP_BUDGET
}

/// The kernels' parameters (`images_per_part` only matters for the weight gradient).
fn params(geo: &Geometry, has_bias: bool, images_per_part: usize) -> [u32; 18] {
    let p = &geo.p;
    [
        geo.n as u32,
        geo.c as u32,
        geo.h as u32,
        geo.w as u32,
        geo.c_out as u32,
        geo.kh as u32,
        geo.kw as u32,
        geo.ho as u32,
        geo.wo as u32,
        p.stride.0 as u32,
        p.stride.1 as u32,
        p.padding.0 as u32,
        p.padding.1 as u32,
        p.dilation.0 as u32,
        p.dilation.1 as u32,
        p.groups as u32,
        has_bias as u32,
        images_per_part as u32,
    ]
}

/// Workgroups: (images or parts) x groups x 8-row tiles x 128-column tiles.
fn grid(outer: usize, groups: usize, rows: usize, cols: usize) -> u32 {
    (outer * groups * rows.div_ceil(8) * cols.div_ceil(128)) as u32
}

/// out = conv(x, w) + bias, into `out` ([N, C_out, HO, WO]).
pub(crate) fn forward(
    dev: &Device,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    geo: &Geometry,
    out: &wgpu::Buffer,
) -> Result<()> {
    let g = geo.p.groups;
    dev.dispatch(
        &SHADER,
        "conv_forward",
        &[
            Bind::Read(x.buffer()),
            Bind::Read(w.buffer()),
            // Without a bias the slot holds the weights (unread).
            Bind::Read(bias.unwrap_or(w).buffer()),
            Bind::Write(out),
        ],
        &params(geo, bias.is_some(), 1),
        grid(geo.n, g, geo.c_out / g, geo.ho * geo.wo),
    )
}

/// The input gradient (a transposed convolution of g with w).
pub(crate) fn backward_input(
    dev: &Device,
    g: &Tensor,
    w: &Tensor,
    geo: &Geometry,
) -> Result<Tensor> {
    let groups = geo.p.groups;
    let gx = Tensor::uninit(dev, &[geo.n, geo.c, geo.h, geo.w])?;
    let strided = geo.p.stride != (1, 1);
    dev.dispatch_with(
        &SHADER,
        "conv_backward_input",
        &[("STRIDED", strided as u32)],
        &[
            Bind::Read(g.buffer()),
            Bind::Read(w.buffer()),
            Bind::Write(gx.buffer()),
        ],
        &params(geo, false, 1),
        grid(geo.n, groups, geo.c / groups, geo.h * geo.w),
    )?;
    Ok(gx)
}

/// The weight gradient: partial sums over parts of the batch and 4 column phases, computed in
/// parallel, then summed.
pub(crate) fn backward_weight(
    dev: &Device,
    x: &Tensor,
    g: &Tensor,
    geo: &Geometry,
    w_shape: &[usize],
) -> Result<Tensor> {
    let groups = geo.p.groups;
    // Each invocation walks every 4th output column of every output row.
    let per_image = geo.ho * (geo.wo.div_ceil(4) + 1) + 1;
    let by_budget = ((LOOP_BUDGET - 16) / per_image).max(1);
    // At least 8 parts when the batch allows, so both cores have work on small weights.
    let images_per_part = by_budget.min(geo.n.div_ceil(8)).max(1);
    let parts = geo.n.div_ceil(images_per_part);
    let cols = geo.c / groups * geo.kh * geo.kw;
    let partial = Tensor::uninit(dev, &[parts * 4, geo.c_out * cols])?;
    dev.dispatch(
        &SHADER,
        "conv_backward_weight",
        &[
            Bind::Read(x.buffer()),
            Bind::Read(g.buffer()),
            Bind::Write(partial.buffer()),
        ],
        &params(geo, false, images_per_part),
        (parts * groups * (geo.c_out / groups).div_ceil(8) * cols.div_ceil(32)) as u32,
    )?;
    partial.sum_dim(0, false)?.reshape(w_shape)
}
