//! Constant fill: `shaders/fill.wgsl`.

use crate::error::Result;
use crate::kernel::{shader, Bind, Shader};
use crate::ops::unary::groups;
use crate::tensor::Tensor;

static SHADER: Shader = shader!("fill");

/// Overwrites every element of `t` with `value` (recorded in order, not on the tape).
pub(crate) fn fill(t: &Tensor, value: f32) -> Result<()> {
    let n = t.numel();
    t.device().dispatch(
        &SHADER,
        "fill",
        &[Bind::Write(t.buffer())],
        &[n as u32, value.to_bits()],
        groups(n),
    )
}
