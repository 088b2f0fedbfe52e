//! Constant fill: `shaders/fill.wgsl`.

use crate::error::Result;
use crate::kernel::{kernel_params, shader, Bind, Shader};
use crate::ops::unary::groups;
use crate::tensor::Tensor;

pub(crate) static SHADER: Shader = shader!("fill");

kernel_params! {
    /// `Params` of `shaders/fill.wgsl`.
    pub(crate) struct FillParams for "fill" {
        len: u32,
        value: f32,
    }
}

/// Overwrites every element of `t` with `value` (recorded in order, not on the tape).
pub(crate) fn fill(t: &Tensor, value: f32) -> Result<()> {
    let n = t.numel();
    t.device().dispatch(
        &SHADER,
        "fill",
        &[Bind::Write(t.buffer())],
        &FillParams {
            len: n as u32,
            value,
        },
        groups(n),
    )
}
