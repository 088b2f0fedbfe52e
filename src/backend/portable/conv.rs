//! Convolution by im2col + matrix products (`shaders/conv.wgsl` and the products of
//! `ops/matmul.rs`): the forward unfolds each image's receptive fields into a column matrix
//! and multiplies it by the weights; the backward multiplies the output gradient by the
//! weights and folds the columns back (col2im), or by the column matrix for the weight
//! gradient. What GPUs run (`Policy::conv_lowering`).

use crate::backend::conv::{params_wgsl, ConvParams, Geometry};
use crate::backend::gemm::{gemm, Gemm, Operand};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::kernel::{shader, Bind, Shader};
use crate::ops::unary::groups;
use crate::tensor::Tensor;

/// The module's generated WGSL is its `Params`, shared with the implicit-GEMM shader.
pub(crate) static SHADER: Shader = shader!("conv", Some(params_wgsl));

/// Most bytes one im2col column chunk may take; larger batches are processed in chunks.
const COLUMN_BUDGET: u64 = 64 << 20;

/// Rows of the column matrix: one per input channel and tap.
fn rows(geo: &Geometry) -> usize {
    geo.c * geo.kh * geo.kw
}

fn pixels(geo: &Geometry) -> usize {
    geo.ho * geo.wo
}

/// Bytes of one image's column matrix.
fn column_bytes(geo: &Geometry) -> u64 {
    (rows(geo) as u64)
        .saturating_mul(pixels(geo) as u64)
        .saturating_mul(4)
}

/// An error if one image's column matrix exceeds the adapter's largest storage binding.
pub(crate) fn check(dev: &Device, geo: &Geometry) -> Result<()> {
    let (per_image, max) = (column_bytes(geo), dev.limits().max_tensor_bytes());
    if per_image > max {
        return Err(Error::TooLarge(format!(
            "conv2d: one image's column matrix ({per_image} bytes for input [{}, {}, {}, {}], \
             weight [{}, {}, {}, {}]) exceeds the adapter's largest storage binding ({max} bytes)",
            geo.n,
            geo.c,
            geo.h,
            geo.w,
            geo.c_out,
            geo.c / geo.p.groups,
            geo.kh,
            geo.kw
        )));
    }
    Ok(())
}

/// Images per column chunk: within the budget and the largest binding.
fn chunk(dev: &Device, geo: &Geometry) -> usize {
    let budget = COLUMN_BUDGET.min(dev.limits().max_tensor_bytes());
    ((budget / column_bytes(geo).max(1)) as usize).clamp(1, geo.n.max(1))
}

/// The (first image, count) of each column chunk.
fn chunks(dev: &Device, geo: &Geometry) -> impl Iterator<Item = (usize, usize)> {
    let (n, chunk) = (geo.n, chunk(dev, geo));
    (0..n).step_by(chunk).map(move |n0| (n0, chunk.min(n - n0)))
}

/// A buffer for one chunk's column matrix.
fn columns(dev: &Device, geo: &Geometry) -> Result<Tensor> {
    Tensor::uninit(dev, &[chunk(dev, geo), rows(geo), pixels(geo)])
}

fn chunk_params(geo: &Geometry, n0: usize, nb: usize) -> ConvParams {
    ConvParams {
        n0: n0 as u32,
        nb: nb as u32,
        ..geo.params()
    }
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
        &chunk_params(geo, n0, nb),
        groups(nb * rows(geo) * pixels(geo)),
    )
}

/// conv(x, w) + bias (then ReLU with `relu`) into `out`: im2col in batch chunks, a product
/// per chunk and group, then the bias and ReLU.
pub(crate) fn forward(
    dev: &Device,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    relu: bool,
    geo: &Geometry,
    out: &wgpu::Buffer,
) -> Result<()> {
    let (g, rows, pixels) = (geo.p.groups, rows(geo), pixels(geo));
    let (cout_g, rows_g) = (geo.c_out / g, rows / g);
    let cols = columns(dev, geo)?;
    for (n0, nb) in chunks(dev, geo) {
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
            ..geo.params()
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

/// The input gradient: per chunk, the column gradient W^T g, folded back by col2im.
pub(crate) fn input_grad(dev: &Device, g: &Tensor, w: &Tensor, geo: &Geometry) -> Result<Tensor> {
    let (gs, rows, pixels) = (geo.p.groups, rows(geo), pixels(geo));
    let (cout_g, rows_g) = (geo.c_out / gs, rows / gs);
    let gx = Tensor::uninit(dev, &[geo.n, geo.c, geo.h, geo.w])?;
    let cols = columns(dev, geo)?;
    for (n0, nb) in chunks(dev, geo) {
        for gi in 0..gs {
            // gcols[n, gi] = W_gi^T [rows_g, cout_g] x g[n, gi] [cout_g, pixels]
            let mut mm = Gemm::new(
                Operand::transposed(w.buffer(), cout_g, rows_g, false).at(gi * cout_g * rows_g),
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
            &chunk_params(geo, n0, nb),
            groups(nb * geo.c * geo.h * geo.w),
        )?;
    }
    Ok(gx)
}

/// The weight gradient: per chunk, g times the column matrix transposed, summed over images.
pub(crate) fn weight_grad(
    dev: &Device,
    x: &Tensor,
    g: &Tensor,
    w_shape: &[usize],
    geo: &Geometry,
) -> Result<Tensor> {
    let (gs, rows, pixels) = (geo.p.groups, rows(geo), pixels(geo));
    let (cout_g, rows_g) = (geo.c_out / gs, rows / gs);
    let gw = Tensor::uninit(dev, w_shape)?;
    let cols = columns(dev, geo)?;
    for (ci, (n0, nb)) in chunks(dev, geo).enumerate() {
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
    Ok(gw)
}

/// The bias gradient of an output gradient [N, C_out, ...]: summed over images and pixels.
pub(crate) fn bias_grad(g: &Tensor, c_out: usize) -> Result<Tensor> {
    let dev = g.device();
    let n = g.shape()[0];
    let pixels = g.numel() / (n * c_out).max(1);
    if dev.policy().conv_bias_grad_staged(n * pixels) {
        // Staged sums: per (image, channel) rows, then over images. On CPU adapters this
        // spreads over more invocations than one workgroup per channel (and it is also the way
        // when there are too many values per channel for one workgroup's loops).
        let per_channel = g.reshape(&[n, c_out, pixels])?.sum_dim(2, false)?;
        return per_channel.sum_dim(0, false);
    }
    let gb = Tensor::uninit(dev, &[c_out])?;
    let params = ConvParams {
        n: n as u32,
        c_out: c_out as u32,
        ho: pixels as u32,
        wo: 1,
        ..ConvParams::default()
    };
    dev.dispatch(
        &SHADER,
        "bias_grad",
        &[Bind::Read(g.buffer()), Bind::Write(gb.buffer())],
        &params,
        c_out as u32,
    )?;
    Ok(gb)
}
