//! `softmax` and `log_softmax` over a dimension: `shaders/softmax.wgsl`.

use crate::error::Result;
use crate::kernel::{kernel_params, shader, Bind, Shader};
use crate::shape::resolve_dim;
use crate::tape::Op;
use crate::tensor::Tensor;

pub(crate) static SHADER: Shader = shader!("softmax");

kernel_params! {
    /// `Params` of `shaders/softmax.wgsl`: rows [outer, n, inner] along n.
    pub(crate) struct SoftmaxParams for "softmax" {
        outer: u32,
        n: u32,
        inner: u32,
        log: u32,
    }
}

pub(crate) struct Saved {
    y: Tensor,
    params: SoftmaxParams,
    rows: usize,
}

fn softmax_impl(x: &Tensor, dim: isize, log: bool) -> Result<Tensor> {
    let name = if log { "log_softmax" } else { "softmax" };
    let d = resolve_dim(dim, x.rank(), name)?;
    let shape = x.shape();
    let (outer, n, inner) = if shape.is_empty() {
        (1, 1, 1)
    } else {
        (
            shape[..d].iter().product::<usize>(),
            shape[d],
            shape[d + 1..].iter().product::<usize>(),
        )
    };
    if n * 4 > x.device().policy().loop_limit() {
        // A row too long for one invocation's loops: compose it from staged reductions.
        // The max is a constant shift (softmax does not depend on it), so it is detached.
        let m = x.detach().max_dim(d as isize, true)?.0;
        let z = x.sub(&m)?;
        let e = z.exp()?;
        let s = e.sum_dim(d as isize, true)?;
        return if log { z.sub(&s.log()?) } else { e.div(&s) };
    }
    let dev = x.device();
    let storage = dev.storage(x.numel())?;
    let params = SoftmaxParams {
        outer: outer as u32,
        n: n as u32,
        inner: inner as u32,
        log: log as u32,
    };
    let rows = outer * inner;
    if n > 0 {
        dev.dispatch(
            &SHADER,
            "softmax_forward",
            &[Bind::Read(x.buffer()), Bind::Write(storage.buffer())],
            &params,
            rows.div_ceil(64) as u32,
        )?;
    }
    let y = Tensor::leaf(storage.clone(), shape.to_vec());
    Ok(Tensor::from_op(storage, shape.to_vec(), &[x], || {
        Op::Softmax(Saved { y, params, rows })
    }))
}

pub(crate) fn backward(s: &Saved, g: &Tensor) -> Result<Tensor> {
    let dev = g.device();
    let gx = Tensor::uninit(dev, g.shape())?;
    if s.params.n > 0 {
        dev.dispatch(
            &SHADER,
            "softmax_backward",
            &[
                Bind::Read(s.y.buffer()),
                Bind::Read(g.buffer()),
                Bind::Write(gx.buffer()),
            ],
            &s.params,
            s.rows.div_ceil(64) as u32,
        )?;
    }
    Ok(gx)
}

impl Tensor {
    /// `exp(x) / sum(exp(x))` over `dim`, computed stably.
    pub fn softmax(&self, dim: isize) -> Result<Tensor> {
        softmax_impl(self, dim, false)
    }

    /// `x - log(sum(exp(x)))` over `dim`, computed stably.
    pub fn log_softmax(&self, dim: isize) -> Result<Tensor> {
        softmax_impl(self, dim, true)
    }
}
