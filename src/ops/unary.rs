//! Elementwise unary ops and scalar arithmetic: `shaders/unary.wgsl`.

use crate::device::Device;
use crate::error::Result;
use crate::kernel::{kernel_params, shader, Bind, Shader};
use crate::tape::Op;
use crate::tensor::Tensor;

pub(crate) static SHADER: Shader = shader!("unary", Some(table_wgsl));

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

/// One elementwise op: WGSL expressions for its value y = f(x) and for its derivative dy/dx,
/// over the input `x`, the output `y` and the op's scalar `s` (`relu` and `sigmoid` are in
/// `shaders/prelude.wgsl`, `signed_pow` in `shaders/unary.wgsl`).
struct Row {
    name: &'static str,
    forward: &'static str,
    derivative: &'static str,
}

/// The elementwise unary ops, forward and derivative side by side; a row's index is its op
/// code (the shader's `OP` override constant). Adding an elementwise op is a row here, its
/// `UnaryOp` case and `Tensor` method below, and a test.
#[rustfmt::skip]
const TABLE: &[Row] = &[
    Row { name: "neg",        forward: "-x",                          derivative: "-1.0" },
    Row { name: "relu",       forward: "relu(x)",                     derivative: "select(0.0, 1.0, x > 0.0)" },
    Row { name: "sigmoid",    forward: "sigmoid(x)",                  derivative: "y * (1.0 - y)" },
    // tanh saturates to +-1 in f32 beyond |x| = 10; clamping avoids inf/inf inside.
    Row { name: "tanh",       forward: "tanh(clamp(x, -15.0, 15.0))", derivative: "1.0 - y * y" },
    Row { name: "exp",        forward: "exp(x)",                      derivative: "y" },
    Row { name: "log",        forward: "log(x)",                      derivative: "1.0 / x" },
    Row { name: "sqrt",       forward: "sqrt(x)",                     derivative: "0.5 / y" },
    Row { name: "powf",       forward: "signed_pow(x, s)",            derivative: "s * signed_pow(x, s - 1.0)" },
    Row { name: "add_scalar", forward: "x + s",                       derivative: "1.0" },
    Row { name: "sub_scalar", forward: "x - s",                       derivative: "1.0" },
    Row { name: "mul_scalar", forward: "x * s",                       derivative: "s" },
    Row { name: "div_scalar", forward: "x / s",                       derivative: "1.0 / s" },
    Row { name: "abs",        forward: "abs(x)",                      derivative: "sign(x)" },
];

/// The WGSL the table generates: a code constant per op (`const RELU: u32 = 1u;`) and the
/// `forward(op, x, s)` and `derivative(op, x, y, s)` switches over them.
pub(crate) fn table_wgsl() -> String {
    let mut out = String::from("// Generated from the op table in src/ops/unary.rs.\n");
    for (code, row) in TABLE.iter().enumerate() {
        out += &format!("const {}: u32 = {code}u;\n", row.name.to_uppercase());
    }
    let switch = |signature: &str, expr: fn(&Row) -> &str, default: &str| {
        let mut f = format!("fn {signature} -> f32 {{\n    switch op {{\n");
        for row in TABLE {
            let (name, e) = (row.name.to_uppercase(), expr(row));
            f += &format!("        case {name}: {{ return {e}; }}\n");
        }
        f + &format!("        default: {{ return {default}; }}\n    }}\n}}\n")
    };
    out += &switch("forward(op: u32, x: f32, s: f32)", |r| r.forward, "x");
    out += &switch(
        "derivative(op: u32, x: f32, y: f32, s: f32)",
        |r| r.derivative,
        "1.0",
    );
    out
}

/// An elementwise op with its scalar, if it takes one.
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
    /// Its row's name in the table, and its scalar.
    fn row(self) -> (&'static str, f32) {
        use UnaryOp::*;
        match self {
            Neg => ("neg", 0.0),
            Relu => ("relu", 0.0),
            Sigmoid => ("sigmoid", 0.0),
            Tanh => ("tanh", 0.0),
            Exp => ("exp", 0.0),
            Log => ("log", 0.0),
            Sqrt => ("sqrt", 0.0),
            Powf(s) => ("powf", s),
            AddScalar(s) => ("add_scalar", s),
            SubScalar(s) => ("sub_scalar", s),
            MulScalar(s) => ("mul_scalar", s),
            DivScalar(s) => ("div_scalar", s),
            Abs => ("abs", 0.0),
        }
    }

    /// The op code (its row's index) and its scalar.
    fn code(self) -> (u32, f32) {
        let (name, s) = self.row();
        let code = TABLE
            .iter()
            .position(|r| r.name == name)
            .expect("every UnaryOp has a row in TABLE");
        (code as u32, s)
    }

    /// The op's name (error messages).
    pub(crate) fn name(self) -> &'static str {
        self.row().0
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
    /// `-x` elementwise.
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
    /// The logistic function `1 / (1 + exp(-x))` elementwise.
    ///
    /// ```
    /// # use webgrad::{Device, Tensor};
    /// let dev = Device::new()?;
    /// let x = Tensor::from_vec(&dev, vec![0.0, 2.0], &[2])?;
    /// let y = x.sigmoid()?.to_vec()?;
    /// assert_eq!(y[0], 0.5);
    /// assert!((y[1] - 0.880797).abs() < 1e-6);
    /// # Ok::<(), webgrad::Error>(())
    /// ```
    pub fn sigmoid(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Sigmoid)
    }
    /// `tanh(x)` elementwise.
    pub fn tanh(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Tanh)
    }
    /// `e^x` elementwise.
    pub fn exp(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Exp)
    }
    /// The natural logarithm elementwise (NaN below 0, -inf at 0).
    pub fn log(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Log)
    }
    /// The square root elementwise (NaN below 0).
    pub fn sqrt(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Sqrt)
    }
    /// `|x|` elementwise (its gradient at 0 is 0, as PyTorch's).
    pub fn abs(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Abs)
    }
    /// `self ^ exponent` elementwise (defined for negative bases when the exponent is an integer).
    pub fn powf(&self, exponent: f32) -> Result<Tensor> {
        unary(self, UnaryOp::Powf(exponent))
    }
    /// `x + s` elementwise.
    pub fn add_scalar(&self, s: f32) -> Result<Tensor> {
        unary(self, UnaryOp::AddScalar(s))
    }
    /// `x - s` elementwise.
    pub fn sub_scalar(&self, s: f32) -> Result<Tensor> {
        unary(self, UnaryOp::SubScalar(s))
    }
    /// `x * s` elementwise.
    pub fn mul_scalar(&self, s: f32) -> Result<Tensor> {
        unary(self, UnaryOp::MulScalar(s))
    }
    /// `x / s` elementwise.
    pub fn div_scalar(&self, s: f32) -> Result<Tensor> {
        unary(self, UnaryOp::DivScalar(s))
    }
}

#[cfg(test)]
mod tests {
    use super::{table_wgsl, UnaryOp, TABLE};

    #[test]
    fn every_op_has_one_row_and_the_table_generates_its_switches() {
        use UnaryOp::*;
        let ops = [
            Neg,
            Relu,
            Sigmoid,
            Tanh,
            Exp,
            Log,
            Sqrt,
            Powf(2.0),
            AddScalar(1.0),
            SubScalar(1.0),
            MulScalar(2.0),
            DivScalar(2.0),
            Abs,
        ];
        let mut codes: Vec<u32> = ops.iter().map(|op| op.code().0).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), TABLE.len(), "one row per op, one op per row");
        let wgsl = table_wgsl();
        assert!(wgsl.contains("const RELU: u32 = 1u;"), "{wgsl}");
        assert!(
            wgsl.contains("case TANH: { return 1.0 - y * y; }"),
            "{wgsl}"
        );
    }
}
