//! `sum`, `mean` and `max` over all elements or one dimension: `shaders/reduce.wgsl`.

use crate::error::{shape_err, Result};
use std::sync::Arc;

use crate::device::Device;
use crate::kernel::{kernel_params, shader, Bind, Shader};
use crate::ops::unary::groups;
use crate::shape::{numel, resolve_dim};
use crate::tape::Op;
use crate::tensor::Storage;
use crate::tensor::Tensor;

pub(crate) static SHADER: Shader = shader!("reduce");

kernel_params! {
    /// `Params` of `shaders/reduce.wgsl`.
    pub(crate) struct ReduceParams for "reduce" {
        /// [outer, n, inner] -> [outer, inner], times scale, in chunks.
        outer: u32,
        n: u32,
        inner: u32,
        scale: f32,
        chunk: u32,
    }
}

/// A reduction seen as [outer, n, inner] -> [outer, inner].
#[derive(Clone, Copy, Debug)]
struct Rows {
    outer: usize,
    n: usize,
    inner: usize,
}

impl Rows {
    fn of(shape: &[usize], dim: usize) -> Rows {
        Rows {
            outer: shape[..dim].iter().product(),
            n: shape[dim],
            inner: shape[dim + 1..].iter().product(),
        }
    }
    fn all(shape: &[usize]) -> Rows {
        Rows {
            outer: 1,
            n: numel(shape),
            inner: 1,
        }
    }
    fn params(&self, scale: f32) -> ReduceParams {
        self.chunked(scale, self.n)
    }
    fn chunked(&self, scale: f32, chunk: usize) -> ReduceParams {
        ReduceParams {
            outer: self.outer as u32,
            n: self.n as u32,
            inner: self.inner as u32,
            scale,
            chunk: chunk as u32,
        }
    }
}

pub(crate) struct Saved {
    rows: Rows,
    scale: f32,
    in_shape: Vec<usize>,
}

pub(crate) struct MaxSaved {
    rows: Rows,
    indices: Tensor,
    in_shape: Vec<usize>,
}

fn reduced_shape(shape: &[usize], dim: usize, keepdim: bool) -> Vec<usize> {
    let mut s = shape.to_vec();
    if keepdim {
        s[dim] = 1;
    } else {
        s.remove(dim);
    }
    s
}

/// Sums the rows of `x` times `scale` into a new buffer of [outer, inner] values. Rows longer
/// than one invocation may loop over are summed in chunks, then the chunk sums again.
fn sum_rows_raw(x: &wgpu::Buffer, dev: &Device, rows: Rows, scale: f32) -> Result<Arc<Storage>> {
    let outputs = rows.outer * rows.inner;
    if rows.n == 0 {
        // Empty rows sum to 0 (times scale: a mean's 1/0 gives NaN, as in PyTorch).
        let out = Tensor::full(dev, &[outputs], 0.0 * scale)?;
        return Ok(out.storage().clone());
    }
    // One workgroup per output (a tree reduction with barriers) where the policy says so.
    let wide = dev.policy().sum_rows_wide(outputs, rows.n);
    let limit = dev.policy().serial_sum_limit();
    let (entry, reach) = if wide {
        ("sum_rows_wide", limit.saturating_mul(256))
    } else {
        ("sum_rows", limit)
    };
    let chunk = rows.n.min(reach).max(1);
    let chunks = rows.n.div_ceil(chunk);
    let stage_scale = if chunks == 1 { scale } else { 1.0 };
    let out = dev.storage(outputs * chunks)?;
    let binds = [Bind::Read(x), Bind::Write(out.buffer())];
    let params = rows.chunked(stage_scale, chunk);
    let total = outputs * chunks;
    let grid = if wide { total as u32 } else { groups(total) };
    dev.dispatch(&SHADER, entry, &binds, &params, grid)?;
    if chunks == 1 {
        return Ok(out);
    }
    let next = Rows {
        outer: rows.outer,
        n: chunks,
        inner: rows.inner,
    };
    sum_rows_raw(out.buffer(), dev, next, scale)
}

/// Sums rows, times `scale` (1/n for a mean), recorded on the tape.
fn sum_rows(x: &Tensor, rows: Rows, scale: f32, out_shape: Vec<usize>) -> Result<Tensor> {
    let storage = sum_rows_raw(x.buffer(), x.device(), rows, scale)?;
    Ok(Tensor::from_op(storage, out_shape, &[x], || {
        Op::Reduce(Saved {
            rows,
            scale,
            in_shape: x.shape().to_vec(),
        })
    }))
}

pub(crate) fn backward(s: &Saved, g: &Tensor) -> Result<Tensor> {
    let dev = g.device();
    let gx = Tensor::uninit(dev, &s.in_shape)?;
    dev.dispatch(
        &SHADER,
        "sum_backward",
        &[Bind::Read(g.buffer()), Bind::Write(gx.buffer())],
        &s.rows.params(s.scale),
        groups(gx.numel()),
    )?;
    Ok(gx)
}

pub(crate) fn max_backward(s: &MaxSaved, g: &Tensor) -> Result<Tensor> {
    let dev = g.device();
    let gx = Tensor::uninit(dev, &s.in_shape)?;
    dev.dispatch(
        &SHADER,
        "max_backward",
        &[
            Bind::Read(g.buffer()),
            Bind::Read(s.indices.buffer()),
            Bind::Write(gx.buffer()),
        ],
        &s.rows.params(1.0),
        groups(gx.numel()),
    )?;
    Ok(gx)
}

impl Tensor {
    /// Sum of all elements, as a rank-0 tensor.
    pub fn sum(&self) -> Result<Tensor> {
        sum_rows(self, Rows::all(self.shape()), 1.0, vec![])
    }

    /// Mean of all elements, as a rank-0 tensor.
    pub fn mean(&self) -> Result<Tensor> {
        // An empty tensor's mean is 0 * (1 / 0) = NaN, as in PyTorch.
        let scale = 1.0 / self.numel() as f32;
        sum_rows(self, Rows::all(self.shape()), scale, vec![])
    }

    /// Sum over `dim` (negative counts from the end); `keepdim` keeps it as size 1.
    pub fn sum_dim(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        let d = resolve_dim(dim, self.rank(), "sum_dim")?;
        if self.rank() == 0 {
            return self.copy();
        }
        let rows = Rows::of(self.shape(), d);
        sum_rows(self, rows, 1.0, reduced_shape(self.shape(), d, keepdim))
    }

    /// Mean over `dim`.
    pub fn mean_dim(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        let d = resolve_dim(dim, self.rank(), "mean_dim")?;
        if self.rank() == 0 {
            return self.copy();
        }
        let rows = Rows::of(self.shape(), d);
        let scale = 1.0 / rows.n as f32;
        sum_rows(self, rows, scale, reduced_shape(self.shape(), d, keepdim))
    }

    /// Maximum over `dim`: (values, indices). Indices are stored as f32 (exact below 2^24);
    /// ties go to the first occurrence and NaN propagates, as in PyTorch.
    pub fn max_dim(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        let d = resolve_dim(dim, self.rank(), "max_dim")?;
        if self.rank() == 0 {
            return Ok((self.copy()?, Tensor::zeros(self.device(), &[])?));
        }
        if self.shape()[d] == 0 {
            return shape_err(
                "max_dim",
                format!("dim {dim} of shape {:?} is empty", self.shape()),
            );
        }
        let rows = Rows::of(self.shape(), d);
        let dev = self.device();
        let out_shape = reduced_shape(self.shape(), d, keepdim);
        let outputs = rows.outer * rows.inner;
        let values = dev.storage(outputs)?;
        let indices = Tensor::uninit(dev, &out_shape)?;
        let limit = dev.policy().serial_sum_limit();
        if rows.n <= limit {
            dev.dispatch(
                &SHADER,
                "max_rows",
                &[
                    Bind::Read(self.buffer()),
                    Bind::Write(values.buffer()),
                    Bind::Write(indices.buffer()),
                ],
                &rows.params(1.0),
                groups(outputs),
            )?;
        } else {
            // Long rows: the max of each chunk (with its global index), then of the chunks.
            let chunk = limit;
            let chunks = rows.n.div_ceil(chunk);
            if chunks > limit {
                return Err(crate::Error::Invalid(format!(
                    "max_dim: dim {dim} of {:?} is too long ({} elements)",
                    self.shape(),
                    rows.n
                )));
            }
            let part_val = dev.storage(outputs * chunks)?;
            let part_idx = dev.storage(outputs * chunks)?;
            dev.dispatch(
                &SHADER,
                "max_rows",
                &[
                    Bind::Read(self.buffer()),
                    Bind::Write(part_val.buffer()),
                    Bind::Write(part_idx.buffer()),
                ],
                &rows.chunked(1.0, chunk),
                groups(outputs * chunks),
            )?;
            let merged = Rows {
                outer: rows.outer,
                n: chunks,
                inner: rows.inner,
            };
            dev.dispatch(
                &SHADER,
                "max_merge",
                &[
                    Bind::Read(part_val.buffer()),
                    Bind::Read(part_idx.buffer()),
                    Bind::Write(values.buffer()),
                    Bind::Write(indices.buffer()),
                ],
                &merged.params(1.0),
                groups(outputs),
            )?;
        }
        let saved_idx = indices.clone();
        let values = Tensor::from_op(values, out_shape, &[self], || {
            Op::Max(MaxSaved {
                rows,
                indices: saved_idx,
                in_shape: self.shape().to_vec(),
            })
        });
        Ok((values, indices))
    }

    /// Indices of the maxima over `dim` (as f32 values).
    pub fn argmax(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        Ok(self.detach().max_dim(dim, keepdim)?.1)
    }
}
