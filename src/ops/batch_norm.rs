//! `batch_norm2d` in training and eval mode, with its backward: `shaders/batch_norm.wgsl`'s
//! channel passes (statistics, normalization, gradient sums, input gradient) and the
//! per-channel finishes between them.

use crate::backend::TexelReads;
use crate::error::{shape_err, Error, Result};
use crate::kernel::{kernel_params, shader, Bind, Shader};
use std::sync::Arc;

use crate::fusion::Producer;
use crate::tape::{no_grad, Op};
use crate::tensor::{Storage, Tensor};

pub(crate) static SHADER: Shader = shader!("batch_norm", Some(group_readers));

/// batch_norm.wgsl's readers of the group at element e of each operand (x, g and the ReLU's
/// output): a quad or one value, from the operand's texture copy where TEXELS says, else from
/// its buffer. One per operand, as WGSL cannot pass a storage array to a helper.
pub(crate) fn group_readers() -> String {
    ["x", "g", "relu_out"]
        .map(|v| {
            format!(
                "fn {v}_group(e: u32) -> vec4<f32> {{
    if (TEXELS) {{
        return texel_group({v}_texels, e);
    }}
    if (QUADS) {{
        return vec4<f32>({v}[e], {v}[e + 1u], {v}[e + 2u], {v}[e + 3u]);
    }}
    return vec4<f32>({v}[e], 0.0, 0.0, 0.0);
}}
"
            )
        })
        .concat()
}

/// Arguments of [`Tensor::batch_norm2d`], named as in `torch.nn.functional.batch_norm`.
#[derive(Clone, Copy, Debug)]
pub struct BatchNormArgs<'a> {
    /// Running mean per channel, updated in training and used in eval mode.
    pub running_mean: Option<&'a Tensor>,
    /// Running (unbiased) variance per channel, likewise.
    pub running_var: Option<&'a Tensor>,
    /// Scale per channel (gamma); `None` for 1.
    pub weight: Option<&'a Tensor>,
    /// Shift per channel (beta); `None` for 0.
    pub bias: Option<&'a Tensor>,
    /// Batch statistics (and running-statistics updates) rather than the running ones.
    pub training: bool,
    /// How fast the running statistics follow the batch's (PyTorch's 0.1).
    pub momentum: f32,
    /// Added to the variance before the square root (PyTorch's 1e-5).
    pub eps: f32,
}

impl Default for BatchNormArgs<'_> {
    fn default() -> Self {
        BatchNormArgs {
            running_mean: None,
            running_var: None,
            weight: None,
            bias: None,
            training: true,
            momentum: 0.1,
            eps: 1e-5,
        }
    }
}

pub(crate) struct Saved {
    x: Tensor,
    stats: Tensor,
    weight: Tensor,
    params: BatchNormParams,
    /// The output, when a ReLU was applied as it was stored: its gradient's mask.
    relu_out: Option<Tensor>,
}

impl Saved {
    /// The epilogue fused into the normalization, as a drawing of the graph names it.
    pub(crate) fn epilogue(&self) -> &'static str {
        if self.relu_out.is_some() {
            "+relu"
        } else {
            ""
        }
    }
}

kernel_params! {
    /// `Params` of `shaders/batch_norm.wgsl`.
    pub(crate) struct BatchNormParams for "batch_norm" {
        len: u32,
        c: u32,
        hw: u32,
        training: u32,
        momentum: f32,
        eps: f32,
        /// Elements per channel (N * H * W).
        m: f32,
        /// Pieces per channel and values per piece (bn_stats, bn_grad_sums).
        chunks: u32,
        per_chunk: u32,
    }
}

fn params(
    len: usize,
    c: usize,
    hw: usize,
    training: bool,
    momentum: f32,
    eps: f32,
    m: usize,
) -> BatchNormParams {
    BatchNormParams {
        len: len as u32,
        c: c as u32,
        hw: hw as u32,
        training: training as u32,
        momentum,
        eps,
        m: m as f32,
        chunks: 1,
        per_chunk: m as u32,
    }
}

/// Which of `shaders/batch_norm.wgsl`'s channel passes (its `PASS` override) a dispatch runs.
#[derive(Clone, Copy)]
enum Pass {
    Statistics = 0,
    GradientSums = 1,
    Normalize = 2,
    InputGradient = 3,
}

/// `p` cut into the pieces the policy picks for `pass`.
fn in_pieces(dev: &crate::Device, p: BatchNormParams, pass: Pass) -> BatchNormParams {
    let c = p.c as usize;
    let reduce = matches!(pass, Pass::Statistics | Pass::GradientSums);
    let (chunks, per_chunk) = dev
        .policy()
        .channel_pieces(p.len as usize / c.max(1), c, reduce);
    BatchNormParams {
        chunks: chunks as u32,
        per_chunk: per_chunk as u32,
        ..p
    }
}

/// Runs `pass` over `x` (and `g`) into `out`, channel by channel in `p`'s pieces (from
/// [`in_pieces`]), with per-channel `constants` (4 per channel) for every pass but the
/// statistics. A reduction writes 3 values per piece. With `relu`, the normalization applies
/// a ReLU and the backward passes mask the gradient where `relu`'s output is not positive.
fn channel_pass(
    pass: Pass,
    p: &BatchNormParams,
    x: &Tensor,
    g: Option<&Tensor>,
    constants: Option<&Tensor>,
    relu: Option<Relu>,
    out: &wgpu::Buffer,
) -> Result<()> {
    let dev = x.device();
    let unused = || Bind::Read(dev.dummy_buffer());
    let relu_out = match relu {
        Some(Relu::Output(y)) => Some(y),
        _ => None,
    };
    // The operands as textures where the policy reads them so (each copy made once per
    // contents: the statistics and the normalization share x's, both backward passes all
    // three).
    let reads = TexelReads::new(dev, &[Some(x), g, relu_out])?;
    dev.dispatch_with(
        &SHADER,
        "bn_channel_pass",
        &[
            ("PASS", pass as u32),
            ("RELU", relu.is_some() as u32),
            ("TEXELS", reads.on() as u32),
            (
                "QUADS",
                dev.policy()
                    .channel_quads(p.hw as usize, p.per_chunk as usize) as u32,
            ),
        ],
        &[
            reads.buffer(dev, Some(x)),
            reads.buffer(dev, g),
            constants.map_or_else(unused, |k| Bind::Read(k.buffer())),
            Bind::Write(out),
            reads.buffer(dev, relu_out),
            reads.texture(dev, 0),
            reads.texture(dev, 1),
            reads.texture(dev, 2),
        ],
        p,
        p.c * p.chunks,
    )
}

/// A ReLU after the normalization: applied as it is stored, or (backward) its output.
#[derive(Clone, Copy)]
enum Relu<'a> {
    Applied,
    Output(&'a Tensor),
}

/// Records the normalization of `x` (statistics `stats` from [`Tensor::batch_norm_nc`]), and
/// a ReLU with `relu`, into `storage`; the op its backward needs. `bias` is in `stats`.
pub(crate) fn normalize_into(
    x: &Tensor,
    stats: &Tensor,
    weight: &Tensor,
    p: BatchNormParams,
    relu: bool,
    storage: &Arc<Storage>,
    shape: &[usize],
) -> Result<Op> {
    if p.len > 0 {
        let pp = in_pieces(x.device(), p, Pass::Normalize);
        let gate = relu.then_some(Relu::Applied);
        channel_pass(
            Pass::Normalize,
            &pp,
            x,
            None,
            Some(stats),
            gate,
            storage.buffer(),
        )?;
    }
    Ok(Op::BatchNorm(Saved {
        x: x.detach(),
        stats: stats.clone(),
        weight: weight.detach(),
        params: p,
        relu_out: relu.then(|| Tensor::leaf(storage.clone(), shape.to_vec())),
    }))
}

/// As PyTorch: one value per channel (`m` of them) cannot be normalised in training, but an
/// empty input (no values) gives an empty output and leaves the running statistics alone.
fn one_value_per_channel(s: &[usize], m: usize, training: bool, op: &str) -> Result<()> {
    if training && m == 1 {
        return Err(Error::Invalid(format!(
            "{op}: training needs more than one value per channel, input {s:?}"
        )));
    }
    Ok(())
}

impl Tensor {
    /// Batch normalization of an NCHW input per channel, as `F.batch_norm`: in training mode
    /// with the batch's statistics (and the running statistics, when given, updated in place
    /// with `momentum`), in eval mode with the running statistics.
    pub fn batch_norm2d(&self, args: BatchNormArgs) -> Result<Tensor> {
        let s = self.shape();
        if s.len() != 4 {
            return shape_err("batch_norm2d", format!("expects an NCHW input, got {s:?}"));
        }
        one_value_per_channel(s, s[0] * s[2] * s[3], args.training, "batch_norm2d")?;
        self.batch_norm_nc(s[0], s[1], s[2] * s[3], args, "batch_norm2d")
    }

    /// Batch normalization of an [N, C] or [N, C, L] input per channel, as `F.batch_norm`
    /// on such inputs (PyTorch's `BatchNorm1d`); the arguments as in
    /// [`Tensor::batch_norm2d`].
    pub fn batch_norm1d(&self, args: BatchNormArgs) -> Result<Tensor> {
        let s = self.shape();
        let l = match s.len() {
            2 => 1,
            3 => s[2],
            _ => {
                return shape_err(
                    "batch_norm1d",
                    format!("expects an [N, C] or [N, C, L] input, got {s:?}"),
                )
            }
        };
        one_value_per_channel(s, s[0] * l, args.training, "batch_norm1d")?;
        self.batch_norm_nc(s[0], s[1], l, args, "batch_norm1d")
    }

    /// Batch normalization of this tensor seen as [n, c, hw] (any shape of that many
    /// elements), per channel: the kernels of [`Tensor::batch_norm2d`], also used by the
    /// layer and group normalizations (one "channel" per normalized row).
    pub(crate) fn batch_norm_nc(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        args: BatchNormArgs,
        op: &'static str,
    ) -> Result<Tensor> {
        let s = self.shape();
        let m = n * hw;
        let dev = self.device();
        for (name, t) in [
            ("running_mean", args.running_mean),
            ("running_var", args.running_var),
            ("weight", args.weight),
            ("bias", args.bias),
        ] {
            if let Some(t) = t {
                dev.same(t.device(), op)?;
                if t.shape() != [c] {
                    return shape_err(
                        op,
                        format!("{name} {:?} should be [{c}] for input {s:?}", t.shape()),
                    );
                }
            }
        }
        if let (false, Some(mean), Some(var)) = (args.training, args.running_mean, args.running_var)
        {
            let folded =
                crate::fusion::batch_norm_eval(self, mean, var, args.weight, args.bias, args.eps)?;
            if let Some(y) = folded {
                return Ok(y);
            }
        }
        let ones;
        let weight = match args.weight {
            Some(w) => w,
            None => {
                ones = Tensor::ones(dev, &[c])?;
                &ones
            }
        };
        let zeros;
        let bias = match args.bias {
            Some(b) => b,
            None => {
                zeros = Tensor::zeros(dev, &[c])?;
                &zeros
            }
        };
        let p = params(
            self.numel(),
            c,
            hw,
            args.training,
            args.momentum,
            args.eps,
            m,
        );
        // Per channel: mean, invstd, weight * invstd, bias (see the shader's header).
        let stats = Tensor::uninit(dev, &[4 * c])?;
        let empty_batch = args.training && m == 0;
        no_grad(|| -> Result<()> {
            if empty_batch {
                return Ok(());
            }
            if args.training {
                // Without running statistics the update goes to scratch buffers.
                let rm = args
                    .running_mean
                    .cloned()
                    .map_or_else(|| Tensor::zeros(dev, &[c]), Ok)?;
                let rv = args
                    .running_var
                    .cloned()
                    .map_or_else(|| Tensor::ones(dev, &[c]), Ok)?;
                // Updated in place below.
                rm.storage().mark_written();
                rv.storage().mark_written();
                let pp = in_pieces(dev, p, Pass::Statistics);
                let pieces = dev.storage(3 * c * pp.chunks as usize)?;
                channel_pass(
                    Pass::Statistics,
                    &pp,
                    self,
                    None,
                    None,
                    None,
                    pieces.buffer(),
                )?;
                return dev.dispatch(
                    &SHADER,
                    "bn_stats_finish",
                    &[
                        Bind::Read(pieces.buffer()),
                        Bind::Read(pieces.buffer()),
                        Bind::Read(weight.buffer()),
                        Bind::Read(bias.buffer()),
                        Bind::Write(rm.buffer()),
                        Bind::Write(rv.buffer()),
                        Bind::Write(stats.buffer()),
                    ],
                    &pp,
                    c.div_ceil(64) as u32,
                );
            }
            // Eval: the running statistics are the statistics; nothing is updated (the
            // running-statistics slots get unused bindings).
            let (Some(mean), Some(var)) = (args.running_mean, args.running_var) else {
                return Err(Error::Invalid(format!(
                    "{op}: eval mode needs running_mean and running_var"
                )));
            };
            dev.dispatch(
                &SHADER,
                "bn_eval_finish",
                &[
                    Bind::Read(mean.buffer()),
                    Bind::Read(var.buffer()),
                    Bind::Read(weight.buffer()),
                    Bind::Read(bias.buffer()),
                    Bind::Write(dev.unused_binding(0)),
                    Bind::Write(dev.unused_binding(1)),
                    Bind::Write(stats.buffer()),
                ],
                &p,
                c.div_ceil(64) as u32,
            )
        })?;
        // The normalization itself waits for its output to be needed, so that a ReLU after it
        // folds in (`fusion.rs`).
        let producer = Producer::BatchNorm {
            x: self.clone(),
            stats,
            weight: weight.clone(),
            bias: bias.clone(),
            params: p,
            relu: false,
        };
        crate::fusion::defer(s.to_vec(), producer)
    }
}

pub(crate) fn backward(s: &Saved, g: &Tensor, need: &[bool]) -> Result<Vec<Option<Tensor>>> {
    let dev = g.device();
    let (len, c) = (s.params.len as usize, s.params.c as usize);
    let (sum_g, sum_g_xhat) = (Tensor::uninit(dev, &[c])?, Tensor::uninit(dev, &[c])?);
    if len == 0 {
        // No values: zero sums and an empty input gradient.
        for t in [&sum_g, &sum_g_xhat] {
            dev.clear_range(t.buffer(), 0, 4 * c as u64);
        }
        let gx = need[0].then(|| Tensor::zeros(dev, g.shape())).transpose()?;
        return Ok(vec![gx, Some(sum_g_xhat), Some(sum_g)]);
    }
    let pp = in_pieces(dev, s.params, Pass::GradientSums);
    let pieces = dev.storage(3 * c * pp.chunks as usize)?;
    channel_pass(
        Pass::GradientSums,
        &pp,
        &s.x,
        Some(g),
        Some(&s.stats),
        s.relu_out.as_ref().map(Relu::Output),
        pieces.buffer(),
    )?;
    // Per channel: the input gradient's a, b, c' and the mean (see the shader's header).
    let coefficients = Tensor::uninit(dev, &[4 * c])?;
    dev.dispatch(
        &SHADER,
        "bn_grad_finish",
        &[
            Bind::Read(pieces.buffer()),
            Bind::Read(s.stats.buffer()),
            Bind::Read(s.weight.buffer()),
            Bind::Write(sum_g.buffer()),
            Bind::Write(sum_g_xhat.buffer()),
            Bind::Write(coefficients.buffer()),
        ],
        &pp,
        c.div_ceil(64) as u32,
    )?;
    let gx = if need[0] {
        let gx = Tensor::uninit(dev, g.shape())?;
        let pe = in_pieces(dev, s.params, Pass::InputGradient);
        channel_pass(
            Pass::InputGradient,
            &pe,
            &s.x,
            Some(g),
            Some(&coefficients),
            s.relu_out.as_ref().map(Relu::Output),
            gx.buffer(),
        )?;
        Some(gx)
    } else {
        None
    };
    Ok(vec![gx, Some(sum_g_xhat), Some(sum_g)])
}
