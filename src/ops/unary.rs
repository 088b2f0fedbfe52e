//! Elementwise unary ops and scalar arithmetic: `shaders/unary.wgsl`.

use crate::device::Device;
use crate::error::Result;
use crate::kernel::{kernel_params, shader, Bind, Shader};
use crate::tape::Op;
use crate::tensor::Tensor;

static SHADER: Shader = shader!("unary");

kernel_params! {
    /// `Params` of `shaders/unary.wgsl`.
    pub(crate) struct UnaryParams for "unary" {
        len: u32,
        scalar: f32,
        start: u32,
        /// relu_backward_sum_rows: the columns of its [len, cols] operands.
        cols: u32,
    }
}

/// Op codes shared with the shader's `switch`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum UnaryOp {
    Neg,
    Relu,
    Sigmoid,
    Tanh,
    Exp,
    Log,
    Sqrt,
    Powf(f32),
    AddScalar(f32),
    SubScalar(f32),
    MulScalar(f32),
    DivScalar(f32),
    Abs,
}

impl UnaryOp {
    fn code(self) -> (u32, f32) {
        use UnaryOp::*;
        match self {
            Neg => (0, 0.0),
            Relu => (1, 0.0),
            Sigmoid => (2, 0.0),
            Tanh => (3, 0.0),
            Exp => (4, 0.0),
            Log => (5, 0.0),
            Sqrt => (6, 0.0),
            Powf(s) => (7, s),
            AddScalar(s) => (8, s),
            SubScalar(s) => (9, s),
            MulScalar(s) => (10, s),
            DivScalar(s) => (11, s),
            Abs => (12, 0.0),
        }
    }
}

pub(crate) struct Saved {
    pub(crate) op: UnaryOp,
    x: Tensor,
    y: Tensor,
}

pub(crate) fn groups(n: usize) -> u32 {
    n.div_ceil(256) as u32
}

/// The unary kernel pair (`entry4` on vec4s, `entry` on the n % 4 tail) for op `code`.
fn dispatch_vec4(
    dev: &Device,
    entry: &'static str,
    entry4: &'static str,
    code: u32,
    binds: &[Bind],
    n: usize,
    scalar: f32,
) -> Result<()> {
    dev.dispatch_vec4(
        &SHADER,
        (entry, entry4),
        &[("OP", code)],
        binds,
        n,
        |start| UnaryParams {
            len: n as u32,
            scalar,
            start: start as u32,
            cols: 0,
        },
    )
}

fn unary(x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    let dev = x.device();
    let n = x.numel();
    let storage = dev.storage(n)?;
    let (code, s) = op.code();
    dispatch_vec4(
        dev,
        "unary_forward",
        "unary_forward4",
        code,
        &[Bind::Read(x.buffer()), Bind::Write(storage.buffer())],
        n,
        s,
    )?;
    let y = Tensor::leaf(storage.clone(), x.shape().to_vec());
    Ok(Tensor::from_op(storage, x.shape().to_vec(), &[x], || {
        Op::Unary(Saved {
            op,
            x: x.detach(),
            y,
        })
    }))
}

pub(crate) fn backward(s: &Saved, g: &Tensor) -> Result<Tensor> {
    let dev = g.device();
    let n = g.numel();
    let gx = Tensor::uninit(dev, s.x.shape())?;
    let (code, scalar) = s.op.code();
    dispatch_vec4(
        dev,
        "unary_backward",
        "unary_backward4",
        code,
        &[
            Bind::Read(s.x.buffer()),
            Bind::Read(s.y.buffer()),
            Bind::Read(g.buffer()),
            Bind::Write(gx.buffer()),
        ],
        n,
        scalar,
    )?;
    Ok(gx)
}

/// The gradient through a ReLU from its output y: g where y > 0, else 0 (for layers that
/// apply the ReLU in their epilogue).
pub(crate) fn relu_backward(y: &Tensor, g: &Tensor) -> Result<Tensor> {
    let gx = Tensor::uninit(y.device(), y.shape())?;
    dispatch_vec4(
        y.device(),
        "unary_backward",
        "unary_backward4",
        UnaryOp::Relu.code().0,
        &[
            Bind::Read(y.buffer()),
            Bind::Read(y.buffer()),
            Bind::Read(g.buffer()),
            Bind::Write(gx.buffer()),
        ],
        y.numel(),
        0.0,
    )?;
    Ok(gx)
}

/// relu_backward(y, g) for y, g [rows, cols], and its sum over the rows (a Linear + ReLU
/// layer's bias gradient) in the same dispatch; `None` (the caller then runs the two ops) when
/// a column's loop over the rows would pass the loop budget, or on a GPU for more than 1,024
/// rows (there one thread per column would leave it idle; its parallel ops win).
pub(crate) fn relu_backward_sum_rows(
    y: &Tensor,
    g: &Tensor,
    rows: usize,
    cols: usize,
) -> Result<Option<(Tensor, Tensor)>> {
    let dev = y.device();
    if !dev.policy().relu_backward_sums_rows(rows) {
        return Ok(None);
    }
    let gx = Tensor::uninit(dev, y.shape())?;
    let sums = Tensor::uninit(dev, &[cols])?;
    // Four columns per invocation (vec4s) when the rows allow it, in workgroups of 16.
    let (entry, workgroups) = match cols % 4 {
        0 => ("relu_backward_sum_rows4", (cols / 4).div_ceil(16)),
        _ => ("relu_backward_sum_rows", cols.div_ceil(64)),
    };
    dev.dispatch_with(
        &SHADER,
        entry,
        &[("OP", UnaryOp::Relu.code().0)],
        &[
            Bind::Read(y.buffer()),
            Bind::Read(y.buffer()),
            Bind::Read(g.buffer()),
            Bind::Write(gx.buffer()),
            Bind::Write(sums.buffer()),
        ],
        &UnaryParams {
            len: rows as u32,
            cols: cols as u32,
            ..Default::default()
        },
        workgroups as u32,
    )?;
    Ok(Some((gx, sums)))
}

impl Tensor {
    pub fn neg(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Neg)
    }
    /// `max(x, 0)`. Of a `conv2d` or `linear` output, the ReLU folds into that op's kernel
    /// (see `fusion.rs`).
    pub fn relu(&self) -> Result<Tensor> {
        if let Some(y) = crate::fusion::relu(self)? {
            return Ok(y);
        }
        unary(self, UnaryOp::Relu)
    }
    pub fn sigmoid(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Sigmoid)
    }
    pub fn tanh(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Tanh)
    }
    pub fn exp(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Exp)
    }
    pub fn log(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Log)
    }
    pub fn sqrt(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Sqrt)
    }
    pub fn abs(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Abs)
    }
    /// `self ^ exponent` elementwise (defined for negative bases when the exponent is an integer).
    pub fn powf(&self, exponent: f32) -> Result<Tensor> {
        unary(self, UnaryOp::Powf(exponent))
    }
    pub fn add_scalar(&self, s: f32) -> Result<Tensor> {
        unary(self, UnaryOp::AddScalar(s))
    }
    pub fn sub_scalar(&self, s: f32) -> Result<Tensor> {
        unary(self, UnaryOp::SubScalar(s))
    }
    pub fn mul_scalar(&self, s: f32) -> Result<Tensor> {
        unary(self, UnaryOp::MulScalar(s))
    }
    pub fn div_scalar(&self, s: f32) -> Result<Tensor> {
        unary(self, UnaryOp::DivScalar(s))
    }
}
