//! Elementwise unary ops and scalar arithmetic: `shaders/unary.wgsl`.

use crate::backend::TexelReads;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::kernel::{kernel_params, shader, Bind, Shader};
use crate::tape::Op;
use crate::tensor::Tensor;

pub(crate) static SHADER: Shader = shader!("unary", Some(table_wgsl));

kernel_params! {
    /// `Params` of `shaders/unary.wgsl`.
    pub(crate) struct UnaryParams for "unary" {
        len: u32,
        start: u32,
        /// relu_backward_sum_rows: the columns of its [len, cols] operands.
        cols: u32,
        /// The op's parameters (`UnaryOp::row`).
        a: f32,
        b: f32,
    }
}

/// One elementwise op: WGSL expressions for its value y = f(x) and for its derivative dy/dx,
/// over the input `x`, the output `y` and the op's parameters `a` and `b` (`relu` and
/// `sigmoid` are in `shaders/prelude.wgsl`, the other helpers in `shaders/unary.wgsl`).
struct Row {
    name: &'static str,
    forward: &'static str,
    derivative: &'static str,
}

/// The elementwise unary ops, forward and derivative side by side; a row's index is its op
/// code (the shader's `OP` override constant). Adding an elementwise op is a row here, its
/// `UnaryOp` case and `Tensor` method below, and a test. At a kink the derivative is
/// PyTorch's choice: the side `select`'s condition puts the kink on.
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
    Row { name: "powf",       forward: "signed_pow(x, a)",            derivative: "a * signed_pow(x, a - 1.0)" },
    Row { name: "add_scalar", forward: "x + a",                       derivative: "1.0" },
    Row { name: "sub_scalar", forward: "x - a",                       derivative: "1.0" },
    Row { name: "mul_scalar", forward: "x * a",                       derivative: "a" },
    Row { name: "div_scalar", forward: "x / a",                       derivative: "1.0 / a" },
    Row { name: "abs",        forward: "abs(x)",                      derivative: "sign(x)" },
    // a: the slope below 0.
    Row { name: "leaky_relu", forward: "select(a * x, x, x > 0.0)",   derivative: "select(a, 1.0, x > 0.0)" },
    // a: alpha.
    Row { name: "elu",        forward: "select(a * (exp(x) - 1.0), x, x > 0.0)",
                              derivative: "select(a * exp(x), 1.0, x > 0.0)" },
    Row { name: "gelu",       forward: "x * normal_cdf(x)",
                              derivative: "normal_cdf(x) + x * 0.3989422804 * exp(-0.5 * x * x)" },
    Row { name: "gelu_tanh",  forward: "x * sigmoid(gelu_tanh_2u(x))",
                              derivative: "gelu_tanh_derivative(x)" },
    Row { name: "silu",       forward: "x * sigmoid(x)",
                              derivative: "sigmoid(x) * (1.0 + x * (1.0 - sigmoid(x)))" },
    // a: beta, b: the threshold of beta x above which softplus is x.
    Row { name: "softplus",   forward: "softplus(x, a, b)",           derivative: "select(sigmoid(a * x), 1.0, a * x > b)" },
    // a: min, b: max (max wins where min > max). The gradient is 0 at the bounds, as
    // PyTorch 2.15 gives it for clamp and hardtanh.
    Row { name: "clamp",      forward: "clamp_nan(x, a, b)",          derivative: "select(0.0, 1.0, x > a && x < b)" },
];

/// The WGSL the table generates: a code constant per op (`const RELU: u32 = 1u;`) and the
/// `forward(x, a, b)` and `derivative(x, y, a, b)` switches over them on the pipeline's `OP`
/// (read in place, not passed in: SwiftShader inlines calls without folding constant
/// arguments, so a switch on an argument compiled every op at every call site; Chromium
/// compiled unary_forward4 in 38-65 ms this way, 110-155 ms that way).
pub(crate) fn table_wgsl() -> String {
    let mut out = String::from("// Generated from the op table in src/ops/unary.rs.\n");
    for (code, row) in TABLE.iter().enumerate() {
        out += &format!("const {}: u32 = {code}u;\n", row.name.to_uppercase());
    }
    let switch = |signature: &str, expr: fn(&Row) -> &str, default: &str| {
        let mut f = format!("fn {signature} -> f32 {{\n    switch OP {{\n");
        for row in TABLE {
            let (name, e) = (row.name.to_uppercase(), expr(row));
            f += &format!("        case {name}: {{ return {e}; }}\n");
        }
        f + &format!("        default: {{ return {default}; }}\n    }}\n}}\n")
    };
    out += &switch("forward(x: f32, a: f32, b: f32)", |r| r.forward, "x");
    out += &switch(
        "derivative(x: f32, y: f32, a: f32, b: f32)",
        |r| r.derivative,
        "1.0",
    );
    out
}

/// How [`Tensor::gelu`] computes the normal CDF: PyTorch's `approximate` argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GeluApproximate {
    /// The exact form `x Phi(x)` with the normal CDF `Phi` (`approximate="none"`).
    #[default]
    None,
    /// `x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2` (`approximate="tanh"`).
    Tanh,
}

impl std::str::FromStr for GeluApproximate {
    type Err = Error;

    /// PyTorch's strings: `"none"` or `"tanh"`.
    ///
    /// ```
    /// # use webgrad::GeluApproximate;
    /// assert_eq!("tanh".parse::<GeluApproximate>()?, GeluApproximate::Tanh);
    /// assert!("erf".parse::<GeluApproximate>().is_err());
    /// # Ok::<(), webgrad::Error>(())
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(GeluApproximate::None),
            "tanh" => Ok(GeluApproximate::Tanh),
            _ => Err(Error::Invalid(format!(
                "gelu: approximate must be \"none\" or \"tanh\", not {s:?}"
            ))),
        }
    }
}

/// An elementwise op with its parameters, if it takes any.
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
    LeakyRelu { negative_slope: f32 },
    Elu { alpha: f32 },
    Gelu(GeluApproximate),
    Silu,
    Softplus { beta: f32, threshold: f32 },
    Clamp { min: f32, max: f32 },
}

impl UnaryOp {
    /// Its row's name in the table, and its parameters `a` and `b`.
    fn row(self) -> (&'static str, [f32; 2]) {
        use UnaryOp::*;
        match self {
            Neg => ("neg", [0.0; 2]),
            Relu => ("relu", [0.0; 2]),
            Sigmoid => ("sigmoid", [0.0; 2]),
            Tanh => ("tanh", [0.0; 2]),
            Exp => ("exp", [0.0; 2]),
            Log => ("log", [0.0; 2]),
            Sqrt => ("sqrt", [0.0; 2]),
            Powf(s) => ("powf", [s, 0.0]),
            AddScalar(s) => ("add_scalar", [s, 0.0]),
            SubScalar(s) => ("sub_scalar", [s, 0.0]),
            MulScalar(s) => ("mul_scalar", [s, 0.0]),
            DivScalar(s) => ("div_scalar", [s, 0.0]),
            Abs => ("abs", [0.0; 2]),
            LeakyRelu { negative_slope } => ("leaky_relu", [negative_slope, 0.0]),
            Elu { alpha } => ("elu", [alpha, 0.0]),
            Gelu(GeluApproximate::None) => ("gelu", [0.0; 2]),
            Gelu(GeluApproximate::Tanh) => ("gelu_tanh", [0.0; 2]),
            Silu => ("silu", [0.0; 2]),
            Softplus { beta, threshold } => ("softplus", [beta, threshold]),
            Clamp { min, max } => ("clamp", [min, max]),
        }
    }

    /// The op code (its row's index) and its parameters.
    fn code(self) -> (u32, [f32; 2]) {
        let (name, ab) = self.row();
        let code = TABLE
            .iter()
            .position(|r| r.name == name)
            .expect("every UnaryOp has a row in TABLE");
        (code as u32, ab)
    }

    /// The op's name (error messages).
    pub(crate) fn name(self) -> &'static str {
        self.row().0
    }

    /// Whether the derivative reads the input x and the output y (the words of its WGSL):
    /// the backward copies only those for its texel reads.
    fn derivative_reads(self) -> (bool, bool) {
        let name = self.row().0;
        let row = TABLE.iter().find(|r| r.name == name).expect("a row per op");
        let (mut x, mut y) = (false, false);
        for w in row
            .derivative
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        {
            x |= w == "x";
            y |= w == "y";
        }
        (x, y)
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

/// The unary kernel pair (`entry4` on vec4s, `entry` on the n % 4 tail) for op `code`, with
/// TEXELS from `reads`.
#[allow(clippy::too_many_arguments)]
fn dispatch_vec4(
    dev: &Device,
    entry: &'static str,
    entry4: &'static str,
    code: u32,
    reads: &TexelReads,
    binds: &[Bind],
    n: usize,
    [a, b]: [f32; 2],
) -> Result<()> {
    dev.dispatch_vec4(
        &SHADER,
        (entry, entry4),
        &[("OP", code), ("TEXELS", reads.on() as u32)],
        binds,
        n,
        |start| UnaryParams {
            len: n as u32,
            start: start as u32,
            cols: 0,
            a,
            b,
        },
    )
}

fn unary(x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    let dev = x.device();
    let n = x.numel();
    let storage = dev.storage(n)?;
    let (code, ab) = op.code();
    let reads = TexelReads::new(dev, &[Some(x)])?;
    dispatch_vec4(
        dev,
        "unary_forward",
        "unary_forward4",
        code,
        &reads,
        &[
            reads.buffer(dev, Some(x)),
            Bind::Write(storage.buffer()),
            reads.texture(dev, 0),
        ],
        n,
        ab,
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
    let (code, ab) = s.op.code();
    let (x, y) = s.op.derivative_reads();
    backward_of(code, ab, x.then_some(&s.x), y.then_some(&s.y), g)
}

/// gx = g * derivative(x, y) for op `code`, where the derivative reads x and y only if given.
fn backward_of(
    code: u32,
    ab: [f32; 2],
    x: Option<&Tensor>,
    y: Option<&Tensor>,
    g: &Tensor,
) -> Result<Tensor> {
    let dev = g.device();
    let n = g.numel();
    let gx = Tensor::uninit(dev, g.shape())?;
    let reads = TexelReads::new(dev, &[x, y, Some(g)])?;
    dispatch_vec4(
        dev,
        "unary_backward",
        "unary_backward4",
        code,
        &reads,
        &[
            reads.buffer(dev, x),
            reads.buffer(dev, y),
            reads.buffer(dev, Some(g)),
            Bind::Write(gx.buffer()),
            reads.texture(dev, 0),
            reads.texture(dev, 1),
            reads.texture(dev, 2),
        ],
        n,
        ab,
    )?;
    Ok(gx)
}

/// The gradient through a ReLU from its output y: g where y > 0, else 0 (for layers that
/// apply the ReLU in their epilogue).
pub(crate) fn relu_backward(y: &Tensor, g: &Tensor) -> Result<Tensor> {
    // relu's derivative reads x; where x > 0 exactly when y > 0, y stands in for it.
    backward_of(UnaryOp::Relu.code().0, [0.0; 2], Some(y), None, g)
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

    /// `x` where `x > 0`, else `negative_slope * x` (`torch.nn.functional.leaky_relu`; its
    /// gradient at 0 is `negative_slope`, as PyTorch's).
    pub fn leaky_relu(&self, negative_slope: f32) -> Result<Tensor> {
        unary(self, UnaryOp::LeakyRelu { negative_slope })
    }
    /// `x` where `x > 0`, else `alpha * (e^x - 1)` (`torch.nn.functional.elu`; its gradient at
    /// 0 is `alpha`, as PyTorch's).
    pub fn elu(&self, alpha: f32) -> Result<Tensor> {
        unary(self, UnaryOp::Elu { alpha })
    }
    /// The Gaussian error linear unit `x Phi(x)`, `Phi` the standard normal CDF, exact or by
    /// PyTorch's tanh approximation (`torch.nn.functional.gelu`).
    ///
    /// ```
    /// # use webgrad::{Device, GeluApproximate, Tensor};
    /// let dev = Device::new()?;
    /// let x = Tensor::from_vec(&dev, vec![-1.0, 1.0], &[2])?;
    /// let y = x.gelu(GeluApproximate::None)?.to_vec()?;
    /// assert!((y[0] + 0.158655).abs() < 1e-6 && (y[1] - 0.841345).abs() < 1e-6);
    /// # Ok::<(), webgrad::Error>(())
    /// ```
    pub fn gelu(&self, approximate: GeluApproximate) -> Result<Tensor> {
        unary(self, UnaryOp::Gelu(approximate))
    }
    /// `x * sigmoid(x)` elementwise (`torch.nn.functional.silu`, also called swish).
    pub fn silu(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Silu)
    }
    /// `log(1 + e^(beta x)) / beta`, and `x` where `beta * x > threshold`
    /// (`torch.nn.functional.softplus`; PyTorch's defaults are `beta` 1, `threshold` 20).
    /// Exact for large `|x|` (no overflow, and `e^(beta x) / beta` far below 0). An error for
    /// `beta` 0 or a NaN parameter; a negative `beta` computes as in PyTorch.
    pub fn softplus(&self, beta: f32, threshold: f32) -> Result<Tensor> {
        if beta == 0.0 || beta.is_nan() || threshold.is_nan() {
            return Err(Error::Invalid(format!(
                "softplus: beta must be nonzero and threshold a number (beta {beta}, threshold {threshold})"
            )));
        }
        unary(self, UnaryOp::Softplus { beta, threshold })
    }
    /// `x` limited to `[min_val, max_val]` (`torch.nn.functional.hardtanh`; PyTorch's defaults
    /// are -1 and 1); the gradient is 0 outside and at the bounds. An error if
    /// `min_val > max_val`, as in PyTorch.
    pub fn hardtanh(&self, min_val: f32, max_val: f32) -> Result<Tensor> {
        if min_val > max_val || min_val.is_nan() || max_val.is_nan() {
            return Err(Error::Invalid(format!(
                "hardtanh: min_val ({min_val}) cannot be greater than max_val ({max_val})"
            )));
        }
        self.clamp(min_val, max_val)
    }
    /// `min(max(x, min), max)` elementwise (`torch.clamp`): where `min > max` every element is
    /// `max`, as in PyTorch. The gradient is 1 strictly inside `(min, max)` and 0 elsewhere,
    /// the bounds included (PyTorch 2.15's); NaN stays NaN.
    ///
    /// ```
    /// # use webgrad::{Device, Tensor};
    /// let dev = Device::new()?;
    /// let x = Tensor::from_vec(&dev, vec![-2.0, 0.5, 3.0], &[3])?;
    /// assert_eq!(x.clamp(0.0, 1.0)?.to_vec()?, vec![0.0, 0.5, 1.0]);
    /// assert_eq!(x.clamp(1.0, 0.0)?.to_vec()?, vec![0.0, 0.0, 0.0]);
    /// # Ok::<(), webgrad::Error>(())
    /// ```
    pub fn clamp(&self, min: f32, max: f32) -> Result<Tensor> {
        unary(self, UnaryOp::Clamp { min, max })
    }
}

#[cfg(test)]
mod tests {
    use super::{table_wgsl, GeluApproximate, UnaryOp, TABLE};

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
            LeakyRelu {
                negative_slope: 0.01,
            },
            Elu { alpha: 1.0 },
            Gelu(GeluApproximate::None),
            Gelu(GeluApproximate::Tanh),
            Silu,
            Softplus {
                beta: 1.0,
                threshold: 20.0,
            },
            Clamp {
                min: -1.0,
                max: 1.0,
            },
        ];
        let mut codes: Vec<u32> = ops.iter().map(|op| op.code().0).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), TABLE.len(), "one row per op, one op per row");
        let wgsl = table_wgsl();
        assert!(wgsl.contains("const RELU: u32 = 1u;"), "{wgsl}");
        assert!(wgsl.contains("fn forward(x: f32, a: f32, b: f32) -> f32 {\n    switch OP {"));
        assert!(
            wgsl.contains("case TANH: { return 1.0 - y * y; }"),
            "{wgsl}"
        );
    }
}
